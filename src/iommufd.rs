//! `/dev/iommu`: the iommufd context every object lives in.

use crate::backend::{self, Backend, Ctx};
use crate::error::{Error, ErrorKind, Result};
use nix::errno::Errno;
use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
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

    pub(crate) fn same_as(&self, other: &Iommufd) -> bool {
        Arc::ptr_eq(&self.ctx, &other.ctx)
    }

    pub(crate) fn ctx(&self) -> &Ctx {
        &self.ctx
    }
}

impl Iommufd {
    /// The `/dev/iommu` fd, or `None` on the legacy path.
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
