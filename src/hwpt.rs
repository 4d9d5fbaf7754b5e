//! Hardware page tables (`IOMMU_HWPT_ALLOC`) and what the IOMMU behind a
//! device can do (`IOMMU_GET_HW_INFO`).
//!
//! An [`Ioas`] is the address space; an [`Hwpt`] is one IOMMU page table
//! built from it, allocated for a device's IOMMU, with flags that change
//! what it can do. A device attaches to either: [`Device::attach`] takes
//! any [`PageTable`], and the state says which (`Device<Attached<Ioas>>`,
//! `Device<Attached<Hwpt>>`). Mappings still go through the IOAS, with the
//! crate's memory model unchanged: the HWPT holds its IOAS, and every
//! mapping of the IOAS is in the HWPT.
//!
//! What a page table can do is in its type: `Hwpt<Paging>` is a plain
//! page table; `Hwpt<DirtyTracking>` and `Hwpt<NestParent>` are allocated
//! with the flags that make them one, and only they will have the
//! operations those flags allow. An IOMMU without the capability refuses
//! the allocation with an error naming it ([`HwInfo`] tells beforehand).
//!
//! ```no_run
//! use iommufd::hwpt::{Hwpt, Paging, DirtyTracking};
//! use iommufd::{Access, DmaBuffer, Iova};
//! # fn f(fd: &iommufd::Iommufd, dev: iommufd::Device<iommufd::BlockDma>) -> Result<(), Box<dyn std::error::Error>> {
//! let ioas = fd.alloc_ioas()?;
//! let info = dev.hw_info()?;
//! println!("{:?}, dirty tracking: {}", info.kind, info.dirty_tracking());
//! let hwpt = Hwpt::<Paging>::alloc(&dev, &ioas)?;
//! let dev = dev.attach(&hwpt).map_err(iommufd::Error::from)?; // Device<Attached<Hwpt>>
//! let buf = ioas.map(DmaBuffer::new(4096)?, Iova::Any, Access::READ).map_err(iommufd::Error::from)?;
//! let dev = dev.replace(&ioas).map_err(iommufd::Error::from)?; // back to Device<Attached<Ioas>>
//! if let Err(e) = Hwpt::<DirtyTracking>::alloc(&dev, &ioas) {
//!     eprintln!("{e}"); // e.g. "... the IOMMU has no dirty tracking ..."
//! }
//! # drop(buf); Ok(()) }
//! ```

use crate::device::{sealed, Bound, Device};
use crate::error::{Error, ErrorKind, Result};
use crate::ioas::Ioas;
use crate::sys;
use nix::errno::Errno;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// What a device attaches to: an [`Ioas`] (the kernel picks or makes the
/// page table) or an [`Hwpt`]. Sealed.
pub trait PageTable: sealed::Sealed + Clone + Send + Sync + 'static {
    /// The attached state's name, for `Debug`.
    const STATE: &'static str;
    #[doc(hidden)]
    fn pt_id(&self) -> u32;
    #[doc(hidden)]
    fn pt_ioas(&self) -> &Ioas;
    #[doc(hidden)]
    fn pt_hwpt(&self) -> Option<Hwpt<()>>;
    #[doc(hidden)]
    fn pt_from(ioas: &Ioas, hwpt: Option<&Hwpt<()>>) -> Self;
}

impl sealed::Sealed for Ioas {}
impl PageTable for Ioas {
    const STATE: &'static str = "Attached<Ioas>";
    #[inline]
    fn pt_id(&self) -> u32 {
        self.id()
    }
    #[inline]
    fn pt_ioas(&self) -> &Ioas {
        self
    }
    #[inline]
    fn pt_hwpt(&self) -> Option<Hwpt<()>> {
        None
    }
    #[inline]
    fn pt_from(ioas: &Ioas, _: Option<&Hwpt<()>>) -> Self {
        ioas.clone()
    }
}

/// A plain paging HWPT.
#[derive(Debug)]
pub struct Paging(());
/// An HWPT allocated with `IOMMU_HWPT_ALLOC_DIRTY_TRACKING`.
#[derive(Debug)]
pub struct DirtyTracking(());
/// An HWPT allocated with `IOMMU_HWPT_ALLOC_NEST_PARENT`: the stage-2 of a
/// nested translation.
#[derive(Debug)]
pub struct NestParent(());

/// What an HWPT was allocated as (type state). Sealed.
pub trait Kind: sealed::Sealed + Send + Sync + 'static {
    #[doc(hidden)]
    const FLAGS: u32;
    #[doc(hidden)]
    const NAME: &'static str;
}
impl sealed::Sealed for Paging {}
impl sealed::Sealed for DirtyTracking {}
impl sealed::Sealed for NestParent {}
impl Kind for Paging {
    const FLAGS: u32 = 0;
    const NAME: &'static str = "paging";
}
impl Kind for DirtyTracking {
    const FLAGS: u32 = sys::IOMMU_HWPT_ALLOC_DIRTY_TRACKING;
    const NAME: &'static str = "dirty-tracking";
}
impl Kind for NestParent {
    const FLAGS: u32 = sys::IOMMU_HWPT_ALLOC_NEST_PARENT;
    const NAME: &'static str = "nest-parent";
}
/// The kind-erased handle a device holds while attached.
impl sealed::Sealed for () {}
impl Kind for () {
    const FLAGS: u32 = 0;
    const NAME: &'static str = "any";
}

struct HwptInner {
    ioas: Ioas,
    id: u32,
}

impl Drop for HwptInner {
    fn drop(&mut self) {
        // Every device attached to it holds a handle, so none is now.
        self.ioas.iommufd().ctx().destroy(self.id);
    }
}

/// A hardware page table on an [`Ioas`], of kind `K` ([`Paging`],
/// [`DirtyTracking`], [`NestParent`]). A handle: clones share it; it is
/// destroyed (`IOMMU_DESTROY`) when the last handle goes, and every device
/// attached to it holds one.
pub struct Hwpt<K = Paging> {
    inner: Arc<HwptInner>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Hwpt<K> {
    fn clone(&self) -> Self {
        Hwpt {
            inner: self.inner.clone(),
            kind: PhantomData,
        }
    }
}

impl<K: Kind> fmt::Debug for Hwpt<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hwpt")
            .field("id", &self.inner.id)
            .field("kind", &K::NAME)
            .field("ioas", &self.inner.ioas.id())
            .finish()
    }
}

/// Something bound to an iommufd with a device id, for which an HWPT can be
/// allocated: a bound [`Device`]. Sealed: no way to forge one.
pub trait HwptDevice: sealed::Sealed {
    #[doc(hidden)]
    fn hwpt_dev(&self) -> (&crate::Iommufd, u32, &str);
}

impl<S: Bound> sealed::Sealed for Device<S> {}
impl<S: Bound> HwptDevice for Device<S> {
    fn hwpt_dev(&self) -> (&crate::Iommufd, u32, &str) {
        (self.iommufd(), self.dev_id(), self.name())
    }
}

impl<K: Kind> Hwpt<K> {
    /// Allocates an HWPT of kind `K` on `ioas` for the IOMMU behind `dev`
    /// (`IOMMU_HWPT_ALLOC`).
    ///
    /// # Errors
    /// An IOAS of another iommufd is refused first. `EOPNOTSUPP` names the
    /// capability the IOMMU lacks (dirty tracking, nesting);
    /// [`ErrorKind::Unsupported`] on the legacy path and kernels before 6.6.
    #[doc(alias = "IOMMU_HWPT_ALLOC")]
    pub fn alloc(dev: &impl HwptDevice, ioas: &Ioas) -> Result<Self> {
        let (fd, dev_id, name) = dev.hwpt_dev();
        if !fd.same_as(ioas.iommufd()) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "IOMMU_HWPT_ALLOC",
                format!("{name} on IOAS {}", ioas.id()),
            )
            .detail("the IOAS belongs to another iommufd than the one the device is bound to"));
        }
        match fd.ctx().hwpt_alloc(dev_id, ioas.id(), K::FLAGS) {
            Ok(id) => Ok(Hwpt {
                inner: Arc::new(HwptInner {
                    ioas: ioas.clone(),
                    id,
                }),
                kind: PhantomData,
            }),
            Err(e) => Err(alloc_error::<K>(name, ioas.id(), e)),
        }
    }
}

#[cold]
fn alloc_error<K: Kind>(name: &str, ioas: u32, e: Errno) -> Error {
    let err = Error::sys(
        "IOMMU_HWPT_ALLOC",
        format!("{name} on IOAS {ioas} ({} HWPT)", K::NAME),
        e,
    );
    match e {
        Errno::EOPNOTSUPP => {
            let what = match K::FLAGS {
                sys::IOMMU_HWPT_ALLOC_DIRTY_TRACKING => {
                    "the IOMMU behind the device has no dirty tracking (IOMMU_HW_CAP_DIRTY_TRACKING is not among its hw_info capabilities; emulated VT-d has none)"
                }
                sys::IOMMU_HWPT_ALLOC_NEST_PARENT => {
                    "the IOMMU behind the device cannot nest (no stage-1 over stage-2 translation; emulated VT-d without x-flts=on has none)"
                }
                _ => "the IOMMU behind the device cannot make this page table",
            };
            err.kind_(ErrorKind::Unsupported).detail(what)
        }
        Errno::ENOTTY => err
            .kind_(ErrorKind::Unsupported)
            .detail("no HWPT objects here: the legacy container path, or a kernel before 6.6"),
        Errno::ENOENT => err
            .kind_(ErrorKind::InvalidInput)
            .detail("the device id or the IOAS id is not in this iommufd"),
        _ => err,
    }
}

impl<K: Kind> Hwpt<K> {
    /// The HWPT's id in its iommufd.
    pub fn id(&self) -> u32 {
        self.inner.id
    }

    /// The IOAS whose mappings it holds.
    pub fn ioas(&self) -> &Ioas {
        &self.inner.ioas
    }

    /// The same HWPT, its kind erased: what an attached device holds.
    fn erased(&self) -> Hwpt<()> {
        Hwpt {
            inner: self.inner.clone(),
            kind: PhantomData,
        }
    }
}

impl<K: Kind> sealed::Sealed for Hwpt<K> {}
impl<K: Kind> PageTable for Hwpt<K> {
    const STATE: &'static str = "Attached<Hwpt>";
    #[inline]
    fn pt_id(&self) -> u32 {
        self.inner.id
    }
    #[inline]
    fn pt_ioas(&self) -> &Ioas {
        &self.inner.ioas
    }
    #[inline]
    fn pt_hwpt(&self) -> Option<Hwpt<()>> {
        Some(self.erased())
    }
    #[inline]
    fn pt_from(_: &Ioas, hwpt: Option<&Hwpt<()>>) -> Self {
        // The device's state says `Attached<Hwpt<K>>`: the handle it holds
        // is of that HWPT, allocated as a `K`.
        let h = hwpt.expect("attached to an HWPT");
        Hwpt {
            inner: h.inner.clone(),
            kind: PhantomData,
        }
    }
}

/// What the IOMMU behind a device is and can do (`IOMMU_GET_HW_INFO`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwInfo {
    /// The IOMMU and its driver's registers.
    pub kind: IommuKind,
    /// `IOMMU_HW_CAP_*`.
    pub capabilities: u64,
    /// log2 of the PASIDs the device may use; 0: no PASID.
    pub max_pasid_log2: u8,
}

impl HwInfo {
    /// `IOMMU_HW_CAP_DIRTY_TRACKING`: [`Hwpt<DirtyTracking>`] can be allocated.
    pub fn dirty_tracking(&self) -> bool {
        self.capabilities & sys::IOMMU_HW_CAP_DIRTY_TRACKING != 0
    }
    /// The device can be attached at a PASID.
    pub fn pasid(&self) -> bool {
        self.max_pasid_log2 > 0
    }
}

/// The IOMMU type, with its driver's data decoded (`IOMMU_HW_INFO_TYPE_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IommuKind {
    /// The driver reports nothing (`IOMMU_HW_INFO_TYPE_NONE`), as the
    /// iommufd test driver does for some devices.
    None,
    /// Intel VT-d (`struct iommu_hw_info_vtd`).
    IntelVtd {
        /// `IOMMU_HW_INFO_VTD_*` flags.
        flags: u32,
        /// The capability register.
        cap_reg: u64,
        /// The extended capability register.
        ecap_reg: u64,
    },
    /// ARM SMMUv3 (`struct iommu_hw_info_arm_smmuv3`).
    ArmSmmuV3 {
        /// Flags.
        flags: u32,
        /// `IDR0`..`IDR5`.
        idr: [u32; 6],
        /// `IIDR`.
        iidr: u32,
        /// `AIDR`.
        aidr: u32,
    },
    /// AMD-Vi (`struct iommu_hw_info_amd`).
    Amd {
        /// The extended feature register.
        efr: u64,
        /// The second extended feature register.
        efr2: u64,
    },
    /// A type this crate does not decode: its number and raw bytes.
    Unknown {
        /// `IOMMU_HW_INFO_TYPE_*`.
        type_: u32,
        /// The driver's struct as the kernel wrote it.
        data: Vec<u8>,
    },
}

impl IommuKind {
    fn decode(type_: u32, bytes: &[u8]) -> IommuKind {
        let u32_at = |o: usize| {
            bytes
                .get(o..o + 4)
                .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
        };
        let u64_at = |o: usize| {
            bytes
                .get(o..o + 8)
                .map(|b| u64::from_ne_bytes(b.try_into().unwrap()))
        };
        let decoded = match type_ {
            0 => Some(IommuKind::None),
            1 => (|| {
                Some(IommuKind::IntelVtd {
                    flags: u32_at(0)?,
                    cap_reg: u64_at(8)?,
                    ecap_reg: u64_at(16)?,
                })
            })(),
            2 => (|| {
                let mut idr = [0u32; 6];
                for (i, r) in idr.iter_mut().enumerate() {
                    *r = u32_at(8 + 4 * i)?;
                }
                Some(IommuKind::ArmSmmuV3 {
                    flags: u32_at(0)?,
                    idr,
                    iidr: u32_at(32)?,
                    aidr: u32_at(36)?,
                })
            })(),
            4 => (|| {
                Some(IommuKind::Amd {
                    efr: u64_at(0)?,
                    efr2: u64_at(8)?,
                })
            })(),
            _ => None,
        };
        decoded.unwrap_or_else(|| IommuKind::Unknown {
            type_,
            data: bytes.to_vec(),
        })
    }
}

impl<S: Bound> Device<S> {
    /// What the IOMMU behind this device is and can do (`IOMMU_GET_HW_INFO`).
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] on the legacy path and kernels before 6.6.
    #[doc(alias = "IOMMU_GET_HW_INFO")]
    pub fn hw_info(&self) -> Result<HwInfo> {
        let mut data = [0u64; 32];
        let got = self.iommufd().ctx().hw_info(self.dev_id(), &mut data);
        let h = got.map_err(|e| {
            let err = Error::sys("IOMMU_GET_HW_INFO", self.name().to_string(), e);
            if e == Errno::ENOTTY {
                err.kind_(ErrorKind::Unsupported).detail(
                    "no IOMMU_GET_HW_INFO here: the legacy container path, or a kernel before 6.6",
                )
            } else {
                err
            }
        })?;
        let len = (h.data_len as usize).min(data.len() * 8);
        let bytes: Vec<u8> = data
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .take(len)
            .collect();
        Ok(HwInfo {
            kind: IommuKind::decode(h.data_type, &bytes),
            capabilities: h.out_capabilities,
            max_pasid_log2: h.out_max_pasid_log2,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hw_info_decodes_known_types_and_keeps_unknown_ones() {
        let mut vtd = vec![0u8; 24];
        vtd[0..4].copy_from_slice(&1u32.to_ne_bytes());
        vtd[8..16].copy_from_slice(&0xd2008c22260206u64.to_ne_bytes());
        vtd[16..24].copy_from_slice(&0xf00f5eu64.to_ne_bytes());
        assert_eq!(
            IommuKind::decode(1, &vtd),
            IommuKind::IntelVtd {
                flags: 1,
                cap_reg: 0xd2008c22260206,
                ecap_reg: 0xf00f5e
            }
        );
        // Short data is not decoded as what it is not: kept raw.
        assert!(matches!(
            IommuKind::decode(1, &vtd[..12]),
            IommuKind::Unknown { type_: 1, .. }
        ));
        assert_eq!(
            IommuKind::decode(99, &[1, 2, 3]),
            IommuKind::Unknown {
                type_: 99,
                data: vec![1, 2, 3]
            }
        );
        assert_eq!(IommuKind::decode(0, &[]), IommuKind::None);
    }
}
