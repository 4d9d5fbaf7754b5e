//! Peer-to-peer DMA: a range of one device's BAR exported as a dma-buf
//! (`VFIO_DEVICE_FEATURE_DMA_BUF`) and mapped into an IOAS
//! (`IOMMU_IOAS_MAP_FILE`), so that another device's DMA reaches it.
//!
//! ```no_run
//! use iommufd::{Access, Iova};
//! # fn f(gpu: &iommufd::Device<iommufd::BlockDma>, nic: &iommufd::Device<iommufd::Attached>,
//! #      ioas: &iommufd::Ioas) -> Result<(), Box<dyn std::error::Error>> {
//! // The NIC DMAs into the first 64 KiB of the GPU's BAR 2.
//! let window = gpu.export_bar(2, 0, 64 << 10)?;
//! let p2p = ioas.map_peer_bar(window, Iova::Any, Access::READ_WRITE).map_err(iommufd::Error::from)?;
//! println!("BAR window at IOVA {:#x}", p2p.iova());
//! drop(p2p); // unmapped; only now can the GPU unbind or change state
//! # Ok(()) }
//! ```
//!
//! # Ownership
//!
//! The export borrows the exporting device, and the [`Mapping`] owns the
//! export, so while the IOAS maps the BAR the exporting device cannot be
//! unbound, closed, or moved to another state (each consumes it):
//! `ui-tests/compile-fail/unbind_while_bar_exported`. Nor can it be reset
//! (a reset takes `&mut`, and the kernel revokes exports at a reset:
//! `reset_while_bar_exported`), and a config write that would turn its
//! memory decoding off is refused while an export lives (`Busy`; the
//! kernel revokes exports then too). Leaking the mapping
//! (`mem::forget`) ends the borrow without unmapping; the kernel covers that
//! case itself: vfio-pci revokes the dma-buf when the device is closed,
//! reset, or stops decoding memory, and iommufd then removes the IOMMU
//! entries (`iopt_revoke_notify`), so the IOAS never reaches the BAR of a
//! device that is gone. A BAR is device memory, never memory the CPU uses
//! as Rust memory, so no `&`/`&mut` question arises; the mapping has no
//! CPU view (use the exporter's [`Mmio`](crate::Mmio)).

use crate::device::{Bound, Device};
use crate::error::{Error, ErrorKind, Result, TransitionError};
use crate::ioas::{Access, Ioas, Iova, Mapping};
use crate::sys::{self, vfio};
use nix::errno::Errno;
use std::fmt;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

/// `VFIO_DEVICE_FEATURE_DMA_BUF` (include/uapi/linux/vfio.h, Linux 7.3).
const VFIO_DEVICE_FEATURE_DMA_BUF: u32 = 11;

/// A range of a bound device's BAR, exported as a dma-buf. It borrows the
/// device; [`Ioas::map_peer_bar`] is the only thing to do with it.
///
/// Example: [the `p2p` module docs](crate::p2p).
pub struct BarDmaBuf<'d> {
    fd: OwnedFd,
    bar: u32,
    offset: u64,
    len: u64,
    name: String,
    /// The exporter's decoding state, which counts this export (see
    /// [`crate::device::decoding`]); the borrow is the export's of its device.
    decoding: &'d crate::device::decoding::Decoding,
}

impl Drop for BarDmaBuf<'_> {
    fn drop(&mut self) {
        self.decoding.unexported();
    }
}

impl fmt::Debug for BarDmaBuf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarDmaBuf")
            .field("device", &self.name)
            .field("bar", &self.bar)
            .field("offset", &format_args!("{:#x}", self.offset))
            .field("len", &format_args!("{:#x}", self.len))
            .finish()
    }
}

impl BarDmaBuf<'_> {
    /// The BAR index.
    ///
    /// Example: [the `p2p` module docs](crate::p2p).
    pub fn bar(&self) -> u32 {
        self.bar
    }
    /// The offset of the range in the BAR.
    ///
    /// Example: [the `p2p` module docs](crate::p2p).
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// The length of the range.
    ///
    /// Example: [the `p2p` module docs](crate::p2p).
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether the range is empty (never: exporting refuses it).
    ///
    /// Example: [the `p2p` module docs](crate::p2p).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<S: Bound> Device<S> {
    /// Exports `[offset, offset + len)` of BAR `bar` as a dma-buf
    /// (`VFIO_DEVICE_FEATURE_DMA_BUF`), for another device's DMA; see
    /// [`p2p`](crate::p2p). The export borrows this device.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an empty or page-unaligned range, or
    /// one past the BAR's end (checked first); [`ErrorKind::Unsupported`]
    /// when this kernel's vfio-pci cannot export (Linux 6.12 cannot); from
    /// the kernel, `EINVAL` when the BAR cannot be mapped (an I/O BAR, a BAR
    /// that is not mmap-able) or memory decoding is off.
    #[doc(alias = "VFIO_DEVICE_FEATURE_DMA_BUF")]
    pub fn export_bar(&self, bar: u32, offset: u64, len: u64) -> Result<BarDmaBuf<'_>> {
        if bar >= crate::pci::ROM {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "VFIO_DEVICE_FEATURE_DMA_BUF",
                format!("{} region {bar}", self.name()),
            )
            .detail(format!(
                "region {bar} is not a BAR: only BARs 0 to 5 can be exported"
            )));
        }
        let page = crate::dma::page_size() as u64;
        let info = self.region_info(bar)?;
        if len == 0
            || offset % page != 0
            || len % page != 0
            || offset.checked_add(len).is_none_or(|end| end > info.size)
        {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "VFIO_DEVICE_FEATURE_DMA_BUF",
                format!("{} BAR{bar}", self.name()),
            )
            .detail(format!(
                "[{offset:#x}, +{len:#x}) is not a non-empty, page-aligned range inside the {:#x}-byte BAR",
                info.size
            )));
        }
        // struct vfio_device_feature_dma_buf with one range.
        let flags = (nix::libc::O_RDWR | nix::libc::O_CLOEXEC) as u32;
        let mut payload = [
            u64::from(bar) | (u64::from(flags) << 32),
            1u64 << 32, // flags 0, nr_ranges 1
            offset,
            len,
        ];
        let export = || {
            // SAFETY: the payload holds no pointers: the region index, open
            // flags, one range; the kernel returns a new fd, which we own.
            let got = unsafe {
                sys::vfio::device_feature_ptr(
                    self.device_fd(),
                    vfio::VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF,
                    &mut payload,
                )
            };
            match got {
                // SAFETY: the ioctl returned a new fd installed for us.
                Ok(fd) if fd >= 0 => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
                Ok(fd) => Err(Error::new(
                    ErrorKind::Kernel,
                    "VFIO_DEVICE_FEATURE_DMA_BUF",
                    self.name().to_string(),
                )
                .detail(format!("the kernel returned {fd}, not an fd"))),
                Err(e) => Err(self.export_error(bar, e)),
            }
        };
        let decoding = &self.inner.decoding;
        let fd = decoding.exporting(export)?;
        Ok(BarDmaBuf {
            fd,
            bar,
            offset,
            len,
            name: self.name().to_string(),
            decoding,
        })
    }

    #[cold]
    fn export_error(&self, bar: u32, e: Errno) -> Error {
        let err = Error::sys(
            "VFIO_DEVICE_FEATURE_DMA_BUF",
            format!("{} BAR{bar}", self.name()),
            e,
        );
        match e {
            Errno::ENOTTY | Errno::EOPNOTSUPP => err
                .kind_(ErrorKind::Unsupported)
                .detail("this kernel's vfio-pci cannot export a BAR as a dma-buf (no VFIO_DEVICE_FEATURE_DMA_BUF; Linux 6.12 has none)"),
            Errno::EINVAL => err.detail(
                "the kernel refused the export: the BAR must be a memory BAR that can be mmapped, with memory decoding on (PCI command register), and the kernel needs CONFIG_PCI_P2PDMA",
            ),
            _ => err,
        }
    }
}

impl Ioas {
    /// Maps an exported BAR range ([`Device::export_bar`]) for DMA
    /// (`IOMMU_IOAS_MAP_FILE` of the dma-buf): the devices attached to
    /// this IOAS reach the exporting device's BAR at the returned IOVA.
    /// The mapping owns the export, so it borrows the exporting device.
    ///
    /// # Errors
    /// As [`Ioas::map_file`]; the export is handed back.
    #[doc(alias = "IOMMU_IOAS_MAP_FILE")]
    ///
    /// Example: [the `p2p` module docs](crate::p2p).
    pub fn map_peer_bar<'d>(
        &self,
        buf: BarDmaBuf<'d>,
        iova: Iova,
        access: Access,
    ) -> std::result::Result<Mapping<BarDmaBuf<'d>>, TransitionError<BarDmaBuf<'d>>> {
        match self.map_fd(buf.fd.as_fd(), 0, buf.len, iova, access) {
            Ok(at) => Ok(self.file_mapping(at, buf.len, buf)),
            Err(e) => Err(TransitionError::new(buf, e)),
        }
    }
}
