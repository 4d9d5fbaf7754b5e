//! The seam between the typed API and the two kernel paths.
//!
//! The state machine ([`Device`](crate::Device), [`Group`](crate::Group),
//! [`Ioas`](crate::Ioas)) says *when* an operation may happen; this module
//! says *how* the kernel does it on the path in use:
//!
//! - [`cdev`]: the VFIO device cdev bound to `/dev/iommu` (iommufd);
//! - [`legacy`]: the VFIO group fd in a type1v2 container, with a blocking
//!   domain built out of an empty container.
//!
//! Three values carry the path, each made once by a constructor and never
//! asked about again by the typed layer:
//!
//! | value | held by | cdev | legacy |
//! |---|---|---|---|
//! | [`Ctx`] | [`Iommufd`](crate::Iommufd) | the `/dev/iommu` fd | nothing: containers are per group |
//! | [`Space`] | an IOAS | nothing: the IOAS id is enough | the list of mappings and the containers attached |
//! | [`Link`] | a device | the cdev fd and its path | the group, and once bound the device fd and container |
//!
//! Every operation is one method here with one `match` over the path; the
//! work itself lives in the backend's own file. An operation only one path
//! has is answered on the other by [`unsupported`], in that one `match`.
//!
//! Why enums and not a trait: most operations involve two of these values at
//! once (a device's link and an IOAS's space, or two spaces for a copy), and a
//! `match` on the pair names the combinations that cannot happen in one place,
//! where trait objects would need downcasts. The set of paths is closed (the
//! kernel has two), so the compiler's exhaustiveness check is the reminder a
//! new operation needs.

pub(crate) mod cdev;
pub(crate) mod legacy;

use crate::error::{Error, ErrorKind, Result};
use crate::iova::{Access, IovaRange, IovaRanges};
use crate::sys;
use nix::errno::Errno;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

/// Which path a device or iommufd uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `/dev/iommu` and the VFIO device cdev.
    Iommufd,
    /// `/dev/vfio/vfio` (type1v2 containers) and `/dev/vfio/<group>`.
    LegacyContainer,
}

/// The path the kernel offers: iommufd + cdev when both are there, else legacy.
///
/// Once both nodes have been seen the answer is kept: they do not go away
/// while the modules that made them are in use. "Legacy" is asked again each
/// time, since `vfio` or `iommufd` may be loaded later.
pub fn detect() -> Backend {
    use std::sync::atomic::{AtomicBool, Ordering};
    static CDEV_SEEN: AtomicBool = AtomicBool::new(false);
    if CDEV_SEEN.load(Ordering::Relaxed) {
        return Backend::Iommufd;
    }
    if Path::new("/dev/iommu").exists() && Path::new("/dev/vfio/devices").exists() {
        CDEV_SEEN.store(true, Ordering::Relaxed);
        Backend::Iommufd
    } else {
        Backend::LegacyContainer
    }
}

/// The DMA context behind an [`Iommufd`](crate::Iommufd).
pub(crate) enum Ctx {
    /// An open `/dev/iommu`.
    Cdev(OwnedFd),
    /// The legacy path: each bound group gets a container of its own.
    Legacy,
}

impl Ctx {
    /// `IOMMU_OPTION(RLIMIT_MODE)`: `op` set or get, `val` the value to set.
    pub(crate) fn rlimit_mode(&self, op: u16, val: u64) -> std::result::Result<u64, Errno> {
        match self {
            Ctx::Cdev(fd) => cdev::rlimit_mode_option(fd.as_fd(), op, val),
            Ctx::Legacy => Err(Errno::ENOTTY),
        }
    }

    pub(crate) fn kind(&self) -> Backend {
        match self {
            Ctx::Cdev(_) => Backend::Iommufd,
            Ctx::Legacy => Backend::LegacyContainer,
        }
    }

    #[inline]
    pub(crate) fn iommufd_fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Ctx::Cdev(fd) => Some(fd.as_fd()),
            Ctx::Legacy => None,
        }
    }

    /// `IOMMU_IOAS_CHANGE_PROCESS`. The legacy path has no equivalent: a
    /// type1 container accounts pinned pages to the process that mapped them.
    pub(crate) fn change_process(&self) -> Result<()> {
        match self {
            Ctx::Cdev(fd) => cdev::change_process(fd.as_fd()).map_err(|e| {
                Error::sys(
                    "IOMMU_IOAS_CHANGE_PROCESS",
                    format!("iommufd {}", fd.as_raw_fd()),
                    e,
                )
            }),
            Ctx::Legacy => Err(Error::new(
                ErrorKind::Unsupported,
                "IOMMU_IOAS_CHANGE_PROCESS",
                "legacy container",
            )
            .errno(Errno::EOPNOTSUPP)
            .detail(
                "the legacy VFIO container path cannot move its pinned memory to another process",
            )),
        }
    }

    /// `IOMMU_HWPT_ALLOC` of a paging HWPT with `flags` on IOAS `ioas` for
    /// device `dev_id`; its id. The legacy path has no HWPT objects.
    pub(crate) fn hwpt_alloc(
        &self,
        dev_id: u32,
        ioas: u32,
        flags: u32,
    ) -> std::result::Result<u32, Errno> {
        match self {
            Ctx::Cdev(fd) => sys::hwpt_alloc(fd.as_fd(), dev_id, ioas, flags),
            Ctx::Legacy => Err(Errno::ENOTTY),
        }
    }

    /// `IOMMU_GET_HW_INFO` of device `dev_id` into `data`.
    pub(crate) fn hw_info(
        &self,
        dev_id: u32,
        data: &mut [u64],
        in_type: Option<u32>,
    ) -> std::result::Result<sys::IommuHwInfo, Errno> {
        match self {
            Ctx::Cdev(fd) => sys::get_hw_info(fd.as_fd(), dev_id, data, in_type),
            Ctx::Legacy => Err(Errno::ENOTTY),
        }
    }

    /// `IOMMU_HWPT_ALLOC` with driver data: a nested HWPT on `parent` (a
    /// nest parent or a vIOMMU), or a paging HWPT on an IOAS with `flags`
    /// for a driver that takes data for those (the test driver).
    pub(crate) fn hwpt_alloc_data(
        &self,
        (dev_id, parent, flags): (u32, u32, u32),
        data_type: u32,
        data: &[u64],
        fault_id: Option<u32>,
    ) -> std::result::Result<u32, Errno> {
        match self {
            Ctx::Cdev(fd) => sys::hwpt_alloc_data(
                fd.as_fd(),
                (dev_id, parent, flags),
                data_type,
                data,
                fault_id,
            ),
            Ctx::Legacy => Err(Errno::ENOTTY),
        }
    }

    /// `IOMMU_FAULT_QUEUE_ALLOC`: (id, fd).
    pub(crate) fn fault_queue_alloc(&self) -> std::result::Result<(u32, OwnedFd), Errno> {
        match self {
            Ctx::Cdev(fd) => sys::fault_queue_alloc(fd.as_fd()).map(|(id, raw)| {
                // SAFETY: the kernel just installed `raw` for us.
                (id, unsafe {
                    <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw)
                })
            }),
            Ctx::Legacy => Err(Errno::ENOTTY),
        }
    }

    /// `IOMMU_HWPT_INVALIDATE`; entries handled.
    pub(crate) fn invalidate(
        &self,
        id: u32,
        data_type: u32,
        entry_len: usize,
        entries: &[u8],
    ) -> std::result::Result<u32, (Errno, u32)> {
        match self {
            Ctx::Cdev(fd) => sys::hwpt_invalidate(fd.as_fd(), id, data_type, entry_len, entries),
            Ctx::Legacy => Err((Errno::ENOTTY, 0)),
        }
    }

    /// `IOMMU_VIOMMU_ALLOC`, with driver data `data` (in and out; empty
    /// for none).
    pub(crate) fn viommu_alloc(
        &self,
        type_: u32,
        dev_id: u32,
        hwpt: u32,
        data: &mut [u8],
    ) -> std::result::Result<u32, Errno> {
        match self {
            Ctx::Cdev(fd) => sys::viommu_alloc(fd.as_fd(), type_, dev_id, hwpt, data),
            Ctx::Legacy => Err(Errno::ENOTTY),
        }
    }

    /// `IOMMU_HW_QUEUE_ALLOC`: the queue's id.
    pub(crate) fn hw_queue_alloc(
        &self,
        viommu: u32,
        type_: u32,
        index: u32,
        iova: u64,
        len: u64,
    ) -> std::result::Result<u32, Errno> {
        match self {
            Ctx::Cdev(fd) => sys::hw_queue_alloc(fd.as_fd(), viommu, type_, index, iova, len),
            Ctx::Legacy => Err(Errno::ENOTTY),
        }
    }

    /// `mmap` of `len` bytes at `offset` of the iommufd, shared, read and
    /// write: a page an object of it hands out (a vIOMMU's). The caller
    /// unmaps it ([`munmap`]).
    pub(crate) fn mmap(&self, offset: u64, len: usize) -> std::result::Result<NonNull<u8>, Errno> {
        use nix::sys::mman::{mmap, MapFlags, ProtFlags};
        let Ctx::Cdev(fd) = self else {
            return Err(Errno::ENOTTY);
        };
        let len = std::num::NonZeroUsize::new(len).ok_or(Errno::EINVAL)?;
        let offset = i64::try_from(offset).map_err(|_| Errno::EOVERFLOW)?;
        // SAFETY: a new shared mapping of the iommufd at an address the
        // kernel chooses: nothing of this process is replaced, and nothing
        // refers to it until the caller wraps it.
        unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd.as_fd(),
                offset,
            )
        }
        .map(|p| p.cast())
    }

    /// `IOMMU_VEVENTQ_ALLOC`: (id, fd).
    pub(crate) fn veventq_alloc(
        &self,
        viommu: u32,
        type_: u32,
        depth: u32,
    ) -> std::result::Result<(u32, OwnedFd), Errno> {
        match self {
            Ctx::Cdev(fd) => {
                sys::veventq_alloc(fd.as_fd(), viommu, type_, depth).map(|(id, raw)| {
                    // SAFETY: the kernel just installed `raw` for us.
                    (id, unsafe {
                        <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw)
                    })
                })
            }
            Ctx::Legacy => Err(Errno::ENOTTY),
        }
    }

    /// `IOMMU_VDEVICE_ALLOC`.
    pub(crate) fn vdevice_alloc(
        &self,
        viommu: u32,
        dev_id: u32,
        virt_id: u64,
    ) -> std::result::Result<u32, Errno> {
        match self {
            Ctx::Cdev(fd) => sys::vdevice_alloc(fd.as_fd(), viommu, dev_id, virt_id),
            Ctx::Legacy => Err(Errno::ENOTTY),
        }
    }

    /// `IOMMU_HWPT_SET_DIRTY_TRACKING`.
    pub(crate) fn set_dirty_tracking(&self, hwpt: u32, on: bool) -> std::result::Result<(), Errno> {
        match self {
            Ctx::Cdev(fd) => sys::hwpt_set_dirty_tracking(fd.as_fd(), hwpt, on),
            Ctx::Legacy => Err(Errno::ENOTTY),
        }
    }

    /// `IOMMU_HWPT_GET_DIRTY_BITMAP` into `bitmap`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn get_dirty_bitmap(
        &self,
        hwpt: u32,
        iova: u64,
        len: u64,
        page_size: u64,
        flags: u32,
        bitmap: &mut [u64],
    ) -> std::result::Result<(), Errno> {
        match self {
            Ctx::Cdev(fd) => {
                sys::hwpt_get_dirty_bitmap(fd.as_fd(), hwpt, iova, len, page_size, flags, bitmap)
            }
            Ctx::Legacy => Err(Errno::ENOTTY),
        }
    }

    /// `IOMMU_TEST_CMD` (the kernel's iommufd test driver).
    ///
    /// # Safety
    /// As `sys::test_cmd`.
    #[cfg(feature = "iommufd-test-driver")]
    pub(crate) unsafe fn test_cmd(
        &self,
        cmd: &mut sys::IommuTestCmd,
    ) -> std::result::Result<(), Errno> {
        match self {
            // SAFETY: forwarded: this function's contract.
            Ctx::Cdev(fd) => unsafe { sys::test_cmd(fd.as_fd(), cmd) },
            Ctx::Legacy => Err(Errno::ENOTTY),
        }
    }

    /// `IOMMU_DESTROY` of object `id` (an HWPT); nothing on the legacy path.
    pub(crate) fn destroy(&self, id: u32) {
        if let Ctx::Cdev(fd) = self {
            let _ = cdev::destroy(fd.as_fd(), id);
        }
    }

    /// The `/dev/iommu` fd behind a cdev [`Space`]: they are made together.
    #[inline]
    fn fd(&self) -> BorrowedFd<'_> {
        self.iommufd_fd()
            .expect("a cdev IOAS lives in a /dev/iommu context")
    }
}

/// The kernel side of an IOAS.
pub(crate) enum Space {
    /// An `IOMMU_IOAS_ALLOC` object; the id says which.
    Cdev,
    /// Mappings replayed into the containers of the groups attached (boxed:
    /// an IOAS of the cdev path carries one pointer's worth of it, so that
    /// its allocation and drop stay as cheap).
    Legacy(Box<legacy::Space>),
}

/// Why a map-family call failed: the kernel said no (classified by the
/// caller, who knows the IOAS's mappings and ranges), or the path cannot do it.
pub(crate) enum MapFail {
    Sys(&'static str, Errno),
    Other(Error),
}

impl From<Error> for MapFail {
    fn from(e: Error) -> Self {
        MapFail::Other(e)
    }
}

/// A device a hot reset affects: (id, segment, bus, devfn), as
/// `struct vfio_pci_dependent_device`.
pub(crate) type Dependent = (u32, u16, u8, u8);

/// The error for an operation the legacy container path does not have.
pub(crate) fn unsupported(op: &'static str, ioas: u32) -> Error {
    Error::new(ErrorKind::Unsupported, op, format!("IOAS {ioas}"))
        .errno(Errno::EOPNOTSUPP)
        .detail("not available on the legacy VFIO container path (type1 has no equivalent)")
}

impl Space {
    /// A new, empty IOAS in `ctx`: its id and kernel side.
    pub(crate) fn alloc(ctx: &Ctx) -> Result<(u32, Space)> {
        match ctx {
            Ctx::Cdev(fd) => Ok((cdev::ioas_alloc(fd.as_fd())?, Space::Cdev)),
            Ctx::Legacy => Ok((legacy::next_ioas_id(), Space::Legacy(Box::default()))),
        }
    }

    /// The kernel side of IOAS `id`, which already exists in `ctx` (made by
    /// another process that handed the iommufd over): checked by asking the
    /// kernel for its IOVA ranges, which fails unless `id` is an IOAS there.
    pub(crate) fn adopt(ctx: &Ctx, id: u32) -> Result<Space> {
        match ctx {
            Ctx::Cdev(fd) => cdev::iova_ranges(fd.as_fd(), id).map(|_| Space::Cdev),
            Ctx::Legacy => Err(unsupported("adopt", id)),
        }
    }

    /// Frees the IOAS (its last handle is gone: nothing is attached or mapped by us).
    pub(crate) fn destroy(&self, ctx: &Ctx, id: u32) {
        match self {
            Space::Cdev => {
                let _ = cdev::destroy(ctx.fd(), id);
            }
            Space::Legacy(_) => {}
        }
    }

    pub(crate) fn iova_ranges(&self, ctx: &Ctx, id: u32) -> Result<IovaRanges> {
        match self {
            Space::Cdev => cdev::iova_ranges(ctx.fd(), id),
            Space::Legacy(s) => s.iova_ranges(),
        }
    }

    pub(crate) fn allow_iovas(&self, ctx: &Ctx, id: u32, ranges: &[IovaRange]) -> Result<()> {
        match self {
            Space::Cdev => cdev::allow_iovas(ctx.fd(), id, ranges),
            Space::Legacy(_) => Err(unsupported("IOMMU_IOAS_ALLOW_IOVAS", id)),
        }
    }

    /// `IOMMU_OPTION(HUGE_PAGES)`: `op` set or get, `val` the value to set.
    pub(crate) fn huge_pages_option(&self, ctx: &Ctx, id: u32, op: u16, val: u64) -> Result<u64> {
        match self {
            Space::Cdev => cdev::huge_pages_option(ctx.fd(), id, op, val),
            Space::Legacy(_) => Err(unsupported("IOMMU_OPTION(HUGE_PAGES)", id)),
        }
    }

    /// Maps `[va, va + len)` at `fixed` (or where there is room); returns the IOVA.
    ///
    /// # Safety
    /// `[va, va + len)` must stay mapped memory of this process until the
    /// returned IOVA is unmapped.
    #[inline]
    pub(crate) unsafe fn map(
        &self,
        ctx: &Ctx,
        id: u32,
        va: NonNull<u8>,
        len: u64,
        fixed: Option<u64>,
        access: Access,
    ) -> std::result::Result<u64, MapFail> {
        match self {
            // SAFETY: forwarded: this function's contract.
            Space::Cdev => unsafe { cdev::map(ctx.fd(), id, va, len, fixed, access) },
            // SAFETY: forwarded: this function's contract.
            Space::Legacy(s) => unsafe { s.map(va, len, fixed, access) },
        }
    }

    /// Whether [`map_file`](Self::map_file) can work: not on the legacy
    /// path, nor once the kernel said it lacks `IOMMU_IOAS_MAP_FILE`.
    #[inline]
    pub(crate) fn maps_files(&self) -> bool {
        match self {
            Space::Cdev => cdev::maps_files(),
            Space::Legacy(_) => false,
        }
    }

    /// Maps `len` bytes of `file` from `start` (`IOMMU_IOAS_MAP_FILE`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn map_file(
        &self,
        ctx: &Ctx,
        id: u32,
        file: BorrowedFd<'_>,
        start: u64,
        len: u64,
        fixed: Option<u64>,
        access: Access,
    ) -> std::result::Result<u64, MapFail> {
        match self {
            Space::Cdev => cdev::map_file(ctx.fd(), id, file, start, len, fixed, access),
            Space::Legacy(_) => Err(unsupported("IOMMU_IOAS_MAP_FILE", id).into()),
        }
    }

    /// Maps the pages of `src` (mapping `src_iova` of IOAS `src_id`, at CPU
    /// address `src_va` when it has one) into this IOAS as well.
    ///
    /// # Safety
    /// As [`map`](Self::map) for `src_va`, when it is `Some`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn copy(
        &self,
        ctx: &Ctx,
        id: u32,
        src: (&Space, u32, u64, Option<NonNull<u8>>),
        len: u64,
        fixed: Option<u64>,
        access: Access,
    ) -> std::result::Result<u64, MapFail> {
        let (src_space, src_id, src_iova, src_va) = src;
        match (self, src_space, src_va) {
            (Space::Cdev, Space::Cdev, _) => {
                cdev::copy(ctx.fd(), id, src_id, src_iova, len, fixed, access)
            }
            // Type1 has no COPY: a second MAP_DMA of the same memory.
            // SAFETY: forwarded: this function's contract.
            (Space::Legacy(s), Space::Legacy(_), Some(va)) => unsafe {
                s.map(va, len, fixed, access)
            },
            _ => Err(Error::new(
                ErrorKind::InvalidInput,
                "IOMMU_IOAS_COPY",
                format!("IOAS {id}"),
            )
            .detail(
                "on the legacy container path only memory mappings of legacy IOASes can be copied",
            )
            .into()),
        }
    }

    /// Unmaps exactly whole mappings in `[iova, iova + len)`; returns the bytes unmapped.
    #[inline]
    pub(crate) fn unmap(
        &self,
        ctx: &Ctx,
        id: u32,
        iova: u64,
        len: u64,
    ) -> std::result::Result<u64, Errno> {
        match self {
            Space::Cdev => cdev::unmap(ctx.fd(), id, iova, len),
            Space::Legacy(s) => s.unmap(iova, len),
        }
    }
}

/// The kernel side of a device: its fd, and how it was reached.
pub(crate) enum Link {
    /// A VFIO device cdev; `path` to reopen it on unbind (`None` when the fd
    /// came from elsewhere).
    Cdev { fd: OwnedFd, path: Option<PathBuf> },
    /// A device of a legacy VFIO group.
    Legacy(legacy::Link),
}

fn path_conflict(name: &str, detail: &'static str, hint: &'static str) -> Error {
    Error::new(ErrorKind::PathConflict, "bind", name.to_string())
        .detail(detail)
        .hint(hint)
}

impl Link {
    /// The device fd; `None` only for an unbound legacy device, whose fd
    /// comes from its group at bind.
    #[inline]
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Link::Cdev { fd, .. } => Some(fd.as_fd()),
            Link::Legacy(l) => l.fd(),
        }
    }

    /// Binds the device to `ctx`; returns its device id. On error `self` is unchanged.
    pub(crate) fn bind(&mut self, ctx: &Ctx, name: &str, token: cdev::VfToken<'_>) -> Result<u32> {
        match (self, ctx) {
            (Link::Cdev { fd, .. }, Ctx::Cdev(ifd)) => {
                cdev::bind(fd.as_fd(), ifd.as_fd(), name, token)
            }
            (Link::Legacy(_), Ctx::Legacy) if matches!(token, cdev::VfToken::Given(_)) => {
                Err(Error::new(ErrorKind::Unsupported, "bind", name.to_string())
                    .detail("a VF token on the legacy group path is passed when the group opens the device; this crate does not do that yet"))
            }
            (Link::Legacy(l), Ctx::Legacy) => l.bind(name).map(|()| 0),
            (Link::Legacy(_), Ctx::Cdev(_)) => Err(path_conflict(
                name,
                "the device was opened through its VFIO group (legacy path) but the context is /dev/iommu",
                "bind it to Iommufd::open_legacy(), or open the device with Device::open on a kernel with the cdev",
            )),
            (Link::Cdev { .. }, Ctx::Legacy) => Err(path_conflict(
                name,
                "the device was opened through the VFIO cdev but the context is a legacy container",
                "bind it to Iommufd::open_iommufd(), or open the device with Device::open_legacy",
            )),
        }
    }

    /// Attaches a bound device to IOAS `id`; returns the page table id.
    pub(crate) fn attach(&self, name: &str, id: u32, space: &Space) -> Result<u32> {
        match (self, space) {
            (Link::Cdev { fd, .. }, Space::Cdev) => cdev::attach(fd.as_fd(), id, name),
            (Link::Legacy(l), Space::Legacy(s)) => l.attach(name, id, s),
            _ => Err(mismatch("attach", name)),
        }
    }

    /// Moves an attached device from IOAS `old` to `new`; returns the page
    /// table id. On error, the `bool` says whether the device may have lost
    /// its attachment to `old` on the way (the caller then re-establishes
    /// it); when false, the kernel left the device where it was.
    pub(crate) fn replace(
        &self,
        name: &str,
        old: &Space,
        (id, new): (u32, &Space),
    ) -> std::result::Result<u32, (Error, bool)> {
        match (self, old, new) {
            // The same ioctl: the kernel replaces atomically when it succeeds.
            (Link::Cdev { fd, .. }, _, Space::Cdev) => {
                cdev::attach(fd.as_fd(), id, name).map_err(|e| {
                    let lost = e.raw_errno().is_some_and(cdev::replace_may_lose);
                    (e, lost)
                })
            }
            (Link::Legacy(l), Space::Legacy(old), Space::Legacy(new)) => {
                l.replace(name, old, id, new)
            }
            _ => Err((mismatch("replace", name), false)),
        }
    }

    /// Detaches an attached device from `space`: back to blocking.
    pub(crate) fn detach(&self, name: &str, space: &Space) -> Result<()> {
        match (self, space) {
            (Link::Cdev { fd, .. }, _) => cdev::detach(fd.as_fd(), name),
            (Link::Legacy(l), Space::Legacy(s)) => l.detach(s),
            (Link::Legacy(_), Space::Cdev) => Err(mismatch("detach", name)),
        }
    }

    /// Attaches (or replaces) `pasid` of a bound device to page table `pt`;
    /// returns the page table id. The legacy path has no PASID attach.
    pub(crate) fn attach_pasid(&self, pasid: u32, pt: u32) -> std::result::Result<u32, Errno> {
        match self {
            Link::Cdev { fd, .. } => cdev::attach_pasid(fd.as_fd(), pasid, pt),
            Link::Legacy(_) => Err(Errno::ENOTTY),
        }
    }

    /// Detaches `pasid` of a bound device.
    pub(crate) fn detach_pasid(&self, pasid: u32) -> std::result::Result<(), Errno> {
        match self {
            Link::Cdev { fd, .. } => cdev::detach_pasid(fd.as_fd(), pasid),
            Link::Legacy(_) => Err(Errno::ENOTTY),
        }
    }

    /// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`: the flags and, per device the
    /// reset affects, (id, segment, bus, devfn). The id is a device id of
    /// the iommufd on the cdev path, a group number on the legacy path
    /// (see [`reset_id`](Self::reset_id)).
    pub(crate) fn hot_reset_info(&self, name: &str) -> Result<(u32, Vec<Dependent>)> {
        let fd = self.fd().expect("a bound device has an fd");
        let mut buf = vec![0u32; 3 + 2 * 8];
        loop {
            match sys::hot_reset_info(fd, &mut buf) {
                Ok(_) => break,
                Err(Errno::ENOSPC) if (buf[2] as usize) * 2 + 3 > buf.len() => {
                    buf.resize(3 + 2 * buf[2] as usize, 0)
                }
                Err(e) => {
                    return Err(Error::sys(
                        "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
                        name.to_string(),
                        e,
                    ))
                }
            }
        }
        // The count is the kernel's; never index past what it could fill.
        let n = (buf[2] as usize).min((buf.len() - 3) / 2);
        let devices = buf[3..3 + 2 * n]
            .chunks(2)
            .map(|w| (w[0], w[1] as u16, (w[1] >> 16) as u8, (w[1] >> 24) as u8))
            .collect();
        Ok((buf[1], devices))
    }

    /// What [`hot_reset_info`](Self::hot_reset_info) reports for this
    /// device when its holder holds it: its device id (cdev), its group (legacy).
    pub(crate) fn reset_id(&self, dev_id: u32) -> u32 {
        match self {
            Link::Cdev { .. } => dev_id,
            Link::Legacy(l) => l.group.number,
        }
    }

    /// `VFIO_DEVICE_PCI_HOT_RESET`: ownership proven by the iommufd (cdev,
    /// no fds) or by this device's group fd (legacy).
    pub(crate) fn hot_reset(&self, name: &str) -> Result<()> {
        let fd = self.fd().expect("a bound device has an fd");
        let r = match self {
            Link::Cdev { .. } => sys::hot_reset(fd, &[]),
            Link::Legacy(l) => sys::hot_reset(fd, &[l.group.fd.as_fd()]),
        };
        r.map(drop)
            .map_err(|e| Error::sys("VFIO_DEVICE_PCI_HOT_RESET", name.to_string(), e))
    }

    /// The link of the same device, unbound: the cdev reopened, or the group
    /// kept for the next bind. `self` is untouched; dropping it then unbinds.
    pub(crate) fn reopen(&self, name: &str) -> Result<Link> {
        match self {
            Link::Cdev { path: Some(p), fd } => Ok(Link::Cdev {
                fd: cdev::reopen(p, fd.as_fd(), name)?,
                path: Some(p.clone()),
            }),
            Link::Cdev { path: None, .. } => Err(Error::new(
                ErrorKind::InvalidInput,
                "unbind",
                name.to_string(),
            )
            .detail(
                "the device was made from an fd: there is no cdev path to reopen; use close()",
            )),
            Link::Legacy(l) => Ok(Link::Legacy(l.unbound())),
        }
    }

    /// The unbound link of `bdf`, another device of this device's IOMMU
    /// group, reached the way this one was: its cdev (found through sysfs,
    /// never a stored name), or the same open group fd on the legacy path.
    pub(crate) fn sibling(&self, bdf: &str) -> Result<(Link, String)> {
        match self {
            Link::Cdev { .. } => {
                let name = crate::sysfs::cdev_name(Path::new("/sys"), bdf)?;
                let (fd, path) = cdev::open_named(Path::new("/dev"), bdf, &name)?;
                Ok((
                    Link::Cdev {
                        fd,
                        path: Some(path),
                    },
                    bdf.to_string(),
                ))
            }
            Link::Legacy(l) => Ok((Link::Legacy(l.unbound()), bdf.to_string())),
        }
    }

    /// Called when the device goes away while attached to `space`, before its
    /// fd closes. On the cdev closing the fd detaches; on the legacy path the
    /// group's last device takes the mappings out of its container.
    pub(crate) fn release(&self, space: &Space) {
        if let (Link::Legacy(l), Space::Legacy(s)) = (self, space) {
            let _ = l.detach(s);
        }
    }
}

/// A device and an IOAS of different paths: [`Device`](crate::Device) checks
/// that both come from one [`Iommufd`](crate::Iommufd) first, so this is a
/// crate bug if it is ever seen.
fn mismatch(op: &'static str, name: &str) -> Error {
    Error::new(ErrorKind::PathConflict, op, name.to_string())
        .detail("the device and the IOAS are on different VFIO paths (cdev vs legacy container)")
}

/// Unmaps what [`Ctx::mmap`] mapped.
///
/// # Safety
/// `ptr` and `len` are one mapping [`Ctx::mmap`] returned, not unmapped
/// yet, and nothing refers to its memory any more.
pub(crate) unsafe fn munmap(ptr: NonNull<u8>, len: usize) {
    // SAFETY: forwarded: the caller's contract.
    let _ = unsafe { nix::sys::mman::munmap(ptr.cast(), len) };
}
