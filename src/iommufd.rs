//! `/dev/iommu`: the iommufd context every object lives in.

use crate::backend::{self, Backend, Ctx};
use crate::error::{Error, ErrorKind, Result, TransitionError};
use nix::errno::Errno;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

/// An open iommufd (`/dev/iommu`): the context that owns IOASes and that
/// devices bind to.
///
/// `Iommufd` is a cheap handle: clones share one file descriptor, and the fd is
/// closed when the last handle (including the ones held by [`Ioas`](crate::Ioas) values and
/// bound devices) is dropped. Two `Iommufd` values compare equal only if they
/// are clones of one another; IOAS ids are only meaningful within one iommufd,
/// so the crate refuses to attach a device to an IOAS of another iommufd.
#[derive(Clone)]
pub struct Iommufd {
    /// `/dev/iommu`, or the legacy path (containers are made per group at bind).
    ctx: Arc<Ctx>,
}

impl Iommufd {
    /// Opens the kernel's DMA context: `/dev/iommu` when the kernel has
    /// iommufd and the VFIO device cdev, otherwise the legacy VFIO container
    /// path (see [`open_legacy`](Self::open_legacy)). [`backend`](Self::backend) tells which.
    ///
    /// # Errors
    /// As [`open_iommufd`](Self::open_iommufd) when iommufd is there;
    /// [`ErrorKind::NoIommufd`] when neither path is.
    pub fn open() -> Result<Self> {
        match backend::detect() {
            Backend::Iommufd => Self::open_iommufd(),
            Backend::LegacyContainer => Self::open_legacy(),
        }
    }

    /// Uses the legacy path: each bound group gets a type1v2 container of its
    /// own (`/dev/vfio/vfio`), and devices are opened through their group
    /// (`/dev/vfio/<group>`). For kernels before 6.6, or by choice.
    ///
    /// # Errors
    /// [`ErrorKind::NoIommufd`] when `/dev/vfio/vfio` does not exist.
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn open_legacy() -> Result<Self> {
        if !backend::legacy::available() {
            return Err(Error::new(ErrorKind::NoIommufd, "open", "/dev/vfio/vfio")
                .errno(Errno::ENOENT)
                .detail("neither /dev/iommu with /dev/vfio/devices nor the legacy /dev/vfio/vfio exists")
                .hint("load vfio-pci (modprobe vfio-pci) on a kernel with CONFIG_IOMMUFD + CONFIG_VFIO_DEVICE_CDEV, or CONFIG_VFIO_CONTAINER"));
        }
        Ok(Iommufd {
            ctx: Arc::new(Ctx::Legacy),
        })
    }

    /// Which path this context uses.
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn backend(&self) -> Backend {
        self.ctx.kind()
    }

    /// Opens `/dev/iommu`.
    ///
    /// # Errors
    /// [`ErrorKind::NoIommufd`] when the node does not exist (a kernel without
    /// `CONFIG_IOMMUFD`); the errno from `open` otherwise (`EACCES` for an
    /// unprivileged process: see [`from_fd`](Self::from_fd)).
    pub fn open_iommufd() -> Result<Self> {
        let path = "/dev/iommu";
        match backend::cdev::open_rw(std::path::Path::new(path)) {
            Ok(fd) => Ok(Iommufd::from_fd(fd)),
            Err(Errno::ENOENT) => Err(Error::sys("open", path, Errno::ENOENT)
                .kind_(ErrorKind::NoIommufd)
                .hint("this kernel has no iommufd: enable CONFIG_IOMMUFD (Linux >= 6.2), or use the legacy VFIO container path")),
            Err(e) => Err(Error::sys("open", path, e).hint(
                "opening /dev/iommu needs read/write access; an unprivileged VMM can receive the fd from a privileged helper and use Iommufd::from_fd",
            )),
        }
    }

    /// Wraps an iommufd received from elsewhere (a privileged helper, as libvirt does).
    ///
    /// The fd is not checked here; an fd that is not an iommufd makes the first
    /// operation on it fail (for example [`Device::bind`](crate::Device::bind)
    /// fails and hands the device back).
    pub fn from_fd(fd: OwnedFd) -> Self {
        Iommufd {
            ctx: Arc::new(Ctx::Cdev(fd)),
        }
    }

    /// Wraps an iommufd received from another process, checked: `fd` must be
    /// an open `/dev/iommu` (the same character device, by `fstat`), so that
    /// IOAS ids and device ids received with it mean what they say.
    ///
    /// # Errors
    /// The fd is handed back: [`ErrorKind::InvalidInput`] when it is not
    /// `/dev/iommu`; [`ErrorKind::NoIommufd`] when this kernel has none.
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn adopt(fd: OwnedFd) -> std::result::Result<Self, TransitionError<OwnedFd>> {
        use nix::sys::stat::{fstat, stat};
        let node = match stat("/dev/iommu") {
            Ok(st) => st,
            Err(e) => {
                let err = Error::sys("adopt", "/dev/iommu", e)
                    .kind_(ErrorKind::NoIommufd)
                    .detail("this kernel has no /dev/iommu to compare the fd with");
                return Err(TransitionError::new(fd, err));
            }
        };
        match fstat(fd.as_fd()) {
            Ok(st)
                if st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFCHR
                    && st.st_rdev == node.st_rdev =>
            {
                Ok(Iommufd::from_fd(fd))
            }
            got => {
                let err = Error::new(
                    ErrorKind::InvalidInput,
                    "adopt",
                    format!("fd {}", fd.as_raw_fd()),
                )
                .detail(match got {
                    Ok(_) => "the fd is not an open /dev/iommu".to_string(),
                    Err(e) => format!("the fd cannot be inspected (fstat: {e})"),
                });
                Err(TransitionError::new(fd, err))
            }
        }
    }

    /// Makes this process the owner of the pinned-memory accounting of every
    /// mapping in every IOAS of this iommufd (`IOMMU_IOAS_CHANGE_PROCESS`,
    /// Linux 6.13): after a live update, the new VMM process's
    /// `RLIMIT_MEMLOCK` and `VmPin` count the guest RAM, not the old one's.
    ///
    /// The kernel moves only mappings made by file offset
    /// (`IOMMU_IOAS_MAP_FILE`: [`Ioas::map_file`](crate::Ioas::map_file),
    /// [`Ioas::map_huge`](crate::Ioas::map_huge), a shared memfd guest RAM
    /// region), and refuses the whole call if any mapping of the iommufd,
    /// in any IOAS, was made by address. Nothing changes on failure, and DMA
    /// goes on. [`Mapping::by_file`](crate::Mapping::by_file) tells the kinds
    /// apart; [`handover`](crate::handover) refuses a by-address mapping
    /// before anything leaves the old process.
    ///
    /// # Errors
    /// `EINVAL` ([`ErrorKind::InvalidInput`]): a mapping made by address is in
    /// the iommufd. [`ErrorKind::Unsupported`] before Linux 6.13 and on the
    /// legacy path.
    #[doc(alias = "IOMMU_IOAS_CHANGE_PROCESS")]
    pub fn change_process(&self) -> Result<()> {
        self.ctx.change_process().map_err(change_process_error)
    }

    /// The fd back, when this is the only handle (nothing was made on it yet).
    pub(crate) fn into_fd(self) -> std::result::Result<OwnedFd, Self> {
        match Arc::try_unwrap(self.ctx) {
            Ok(Ctx::Cdev(fd)) => Ok(fd),
            Ok(ctx) => Err(Iommufd { ctx: Arc::new(ctx) }),
            Err(ctx) => Err(Iommufd { ctx }),
        }
    }

    pub(crate) fn same_as(&self, other: &Iommufd) -> bool {
        Arc::ptr_eq(&self.ctx, &other.ctx)
    }

    /// Refuses, before any ioctl, an object of `other` (`what`: "the IOAS",
    /// "the page table") for a device bound to this iommufd: ids are per
    /// iommufd, so the kernel could find a different object under the same
    /// id.
    #[inline]
    pub(crate) fn check_own(
        &self,
        other: &Iommufd,
        op: &'static str,
        obj: impl FnOnce() -> String,
        what: &str,
    ) -> crate::Result<()> {
        if self.same_as(other) {
            return Ok(());
        }
        Err(foreign(op, obj(), what))
    }

    pub(crate) fn ctx(&self) -> &Ctx {
        &self.ctx
    }
}

#[cold]
fn change_process_error(e: Error) -> Error {
    match e.raw_errno() {
        Some(Errno::EINVAL) => e.kind_(ErrorKind::InvalidInput).detail(
            "some IOAS of this iommufd holds a mapping made by address (IOMMU_IOAS_MAP: Ioas::map, map_user_va, a private or anonymous guest RAM region), and the kernel moves only mappings made by file offset; nothing changed",
        ).hint("unmap it, or map that memory from a memfd with Ioas::map_file (guest RAM: a shared memfd-backed vm-memory region)"),
        Some(Errno::ENOTTY) => e
            .kind_(ErrorKind::Unsupported)
            .detail("this kernel has no IOMMU_IOAS_CHANGE_PROCESS (added in Linux 6.13)"),
        _ => e,
    }
}

impl Iommufd {
    /// The `/dev/iommu` fd, or `None` on the legacy path.
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn iommufd_fd(&self) -> Option<BorrowedFd<'_>> {
        self.ctx.iommufd_fd()
    }
}

impl PartialEq for Iommufd {
    fn eq(&self, other: &Self) -> bool {
        self.same_as(other)
    }
}
impl Eq for Iommufd {}

impl fmt::Debug for Iommufd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.iommufd_fd() {
            Some(fd) => f
                .debug_struct("Iommufd")
                .field("fd", &fd.as_raw_fd())
                .finish(),
            None => f
                .debug_struct("Iommufd")
                .field("backend", &"legacy container")
                .finish(),
        }
    }
}

#[cold]
fn foreign(op: &'static str, obj: String, what: &str) -> crate::Error {
    crate::Error::new(crate::ErrorKind::InvalidInput, op, obj)
        .detail(format!(
            "{what} belongs to another iommufd than the one the device is bound to"
        ))
        .hint(format!(
            "allocate {what} on the same Iommufd (or a clone of it) that the device was bound to"
        ))
}
