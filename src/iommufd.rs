//! `/dev/iommu`: the iommufd context every object lives in.

use crate::backend::{self, Backend, Ctx};
use crate::error::{Error, ErrorKind, Result, TransitionError};
use nix::errno::Errno;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, Weak};

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
    shared: Arc<Shared>,
}

/// What every handle of one iommufd shares.
struct Shared {
    /// `/dev/iommu`, or the legacy path (containers are made per group at bind).
    ctx: Ctx,
    /// The object ids that a value of this process holds (see
    /// [`crate::owner`]): an id here has exactly one owner, so it cannot be
    /// adopted again.
    held: crate::owner::HeldIds,
}

/// Every iommufd fd a value of this process holds, to refuse adopting one
/// of them again (see [`Iommufd::adopt`]).
static LIVE: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

impl Iommufd {
    fn with(ctx: Ctx) -> Iommufd {
        let shared = Arc::new(Shared {
            ctx,
            held: Default::default(),
        });
        if shared.ctx.iommufd_fd().is_some() {
            let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
            live.retain(|w| w.strong_count() > 0);
            live.push(Arc::downgrade(&shared));
        }
        Iommufd { shared }
    }

    /// The live `Iommufd` of this process whose fd shares `fd`'s open file
    /// (a dup of it, or the same file received back through a socket).
    fn holder_of(fd: BorrowedFd<'_>) -> Option<Iommufd> {
        let live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        live.iter().filter_map(Weak::upgrade).find_map(|shared| {
            let theirs = shared.ctx.iommufd_fd()?;
            same_open_file(theirs, fd).then(|| Iommufd {
                shared: shared.clone(),
            })
        })
    }
}

/// Whether `a` and `b` are one open file (one `struct file`): file status
/// flags belong to the open file, so flipping `O_NONBLOCK` on `b` shows on
/// `a` exactly then. The flag is put back at once; iommufd's ioctls do not
/// look at it. (`kcmp` would say it directly, but needs
/// `CONFIG_CHECKPOINT_RESTORE`, which VMM hosts often lack.)
fn same_open_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = |fd| fcntl(fd, FcntlArg::F_GETFL).map(OFlag::from_bits_retain);
    let (Ok(fa), Ok(fb)) = (flags(a), flags(b)) else {
        return false;
    };
    if fa.contains(OFlag::O_NONBLOCK) != fb.contains(OFlag::O_NONBLOCK) {
        return false;
    }
    if fcntl(b, FcntlArg::F_SETFL(fb ^ OFlag::O_NONBLOCK)).is_err() {
        return false;
    }
    let same = flags(a).is_ok_and(|now| now != fa);
    let _ = fcntl(b, FcntlArg::F_SETFL(fb));
    same
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
        Ok(Iommufd::with(Ctx::Legacy))
    }

    /// Which path this context uses.
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn backend(&self) -> Backend {
        self.shared.ctx.kind()
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
            // A fresh open file: no value can hold it.
            Ok(fd) => Ok(Iommufd::with(Ctx::Cdev(fd))),
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
    /// fails and hands the device back). An fd that shares its open file
    /// with an `Iommufd` of this process (a dup of its fd) gives a clone of
    /// that one, and is closed: one open iommufd has one family of handles
    /// in a process (see [`adopt`](Self::adopt), which refuses instead).
    pub fn from_fd(fd: OwnedFd) -> Self {
        Iommufd::holder_of(fd.as_fd()).unwrap_or_else(|| Iommufd::with(Ctx::Cdev(fd)))
    }

    /// Wraps an iommufd received from another process, checked: `fd` must be
    /// an open `/dev/iommu` (the same character device, by `fstat`), so that
    /// IOAS ids and device ids received with it mean what they say, and
    /// must not be one this process holds already: one open iommufd has one
    /// `Iommufd` (and its clones) in a process, which knows every object id
    /// its values hold.
    ///
    /// # Errors
    /// The fd is handed back: [`ErrorKind::InvalidInput`] when it is not
    /// `/dev/iommu`; [`ErrorKind::Busy`] when it is the open file of an
    /// `Iommufd` of this process (a dup; clone that one instead);
    /// [`ErrorKind::NoIommufd`] when this kernel has none.
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
                match Iommufd::holder_of(fd.as_fd()) {
                    None => Ok(Iommufd::with(Ctx::Cdev(fd))),
                    Some(_) => {
                        let err = Error::new(
                            ErrorKind::Busy,
                            "adopt",
                            format!("fd {}", fd.as_raw_fd()),
                        )
                        .detail("an Iommufd of this process holds this open /dev/iommu already (the fd is a dup of its fd, or came back through a socket); a second one would not know what the first holds, and its handles would act on the first one's objects")
                        .hint("clone the Iommufd that holds it instead of adopting the fd");
                        Err(TransitionError::new(fd, err))
                    }
                }
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

    /// How the kernel charges the pages this iommufd pins
    /// (`IOMMU_OPTION_RLIMIT_MODE`, get).
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] on the legacy path.
    #[doc(alias = "IOMMU_OPTION_RLIMIT_MODE")]
    pub fn pin_accounting(&self) -> Result<PinAccounting> {
        let v = self
            .ctx()
            .rlimit_mode(crate::sys::IOMMU_OPTION_OP_GET, 0)
            .map_err(|e| self.rlimit_error(e))?;
        Ok(if v == 0 {
            PinAccounting::User
        } else {
            PinAccounting::Process
        })
    }

    /// Sets how the kernel charges the pages this iommufd pins
    /// (`IOMMU_OPTION_RLIMIT_MODE`, set): before any object is made in it.
    ///
    /// ```no_run
    /// use iommufd::{Iommufd, PinAccounting};
    /// # fn main() -> iommufd::Result<()> {
    /// let fd = Iommufd::open()?;
    /// fd.set_pin_accounting(PinAccounting::Process)?; // first, as type1 charges
    /// let ioas = fd.alloc_ioas()?;
    /// # let _ = ioas; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `EPERM` without `CAP_SYS_RESOURCE`; `EBUSY` once the iommufd holds
    /// an object (an IOAS, a bound device); each said so.
    /// [`ErrorKind::Unsupported`] on the legacy path.
    #[doc(alias = "IOMMU_OPTION_RLIMIT_MODE")]
    pub fn set_pin_accounting(&self, mode: PinAccounting) -> Result<()> {
        let val = match mode {
            PinAccounting::User => 0,
            PinAccounting::Process => 1,
        };
        self.ctx()
            .rlimit_mode(crate::sys::IOMMU_OPTION_OP_SET, val)
            .map(drop)
            .map_err(|e| self.rlimit_error(e))
    }

    #[cold]
    fn rlimit_error(&self, e: Errno) -> Error {
        let err = Error::sys("IOMMU_OPTION(RLIMIT_MODE)", "the iommufd", e);
        match e {
            Errno::ENOTTY => err
                .kind_(ErrorKind::Unsupported)
                .detail("the legacy VFIO container path has no iommufd options"),
            Errno::EPERM => err
                .detail("setting it needs CAP_SYS_RESOURCE")
                .hint("run with CAP_SYS_RESOURCE, or leave the default (charged to the user)"),
            Errno::EBUSY => err
                .kind_(ErrorKind::Busy)
                .detail("the iommufd already holds an object (an IOAS, a bound device): the mode is set before any")
                .hint("set it right after Iommufd::open"),
            _ => err,
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
    /// Pages pinned by a process that had `CAP_IPC_LOCK` at the map are
    /// charged to no one's limit, and this call leaves them as they are:
    /// their `VmPin` stays with the process that mapped them (measured on
    /// 7.3). An unprivileged VMM, the case this call exists for, sees them
    /// move.
    ///
    /// # Errors
    /// `EINVAL` ([`ErrorKind::InvalidInput`]): a mapping made by address is in
    /// the iommufd. [`ErrorKind::Unsupported`] before Linux 6.13 and on the
    /// legacy path.
    #[doc(alias = "IOMMU_IOAS_CHANGE_PROCESS")]
    pub fn change_process(&self) -> Result<()> {
        self.shared
            .ctx
            .change_process()
            .map_err(change_process_error)
    }

    /// The fd back, when this is the only handle (nothing was made on it yet).
    pub(crate) fn into_fd(self) -> std::result::Result<OwnedFd, Self> {
        match Arc::try_unwrap(self.shared) {
            Ok(Shared {
                ctx: Ctx::Cdev(fd), ..
            }) => Ok(fd),
            Ok(shared) => Err(Iommufd {
                shared: Arc::new(shared),
            }),
            Err(shared) => Err(Iommufd { shared }),
        }
    }

    pub(crate) fn same_as(&self, other: &Iommufd) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Refuses, before any ioctl, an object of `other` (`what`: "the IOAS",
    /// "the page table") for a device bound to this iommufd (see
    /// [`crate::owner::same_iommufd`], which takes several).
    #[inline]
    pub(crate) fn check_own(
        &self,
        other: &Iommufd,
        op: &'static str,
        obj: impl FnOnce() -> String,
        what: &str,
    ) -> crate::Result<()> {
        crate::owner::same_iommufd(op, obj, self, &[(other, what)])
    }

    pub(crate) fn ctx(&self) -> &Ctx {
        &self.shared.ctx
    }

    /// The table of object ids held in this process (see [`crate::owner`]).
    pub(crate) fn held(&self) -> &crate::owner::HeldIds {
        &self.shared.held
    }

    /// How many handles of this iommufd exist in this process (clones,
    /// and those held by its objects).
    pub(crate) fn handles(&self) -> usize {
        Arc::strong_count(&self.shared)
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
        self.shared.ctx.iommufd_fd()
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

/// How the kernel charges the pages an iommufd pins
/// ([`Iommufd::set_pin_accounting`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinAccounting {
    /// Against the user's `RLIMIT_MEMLOCK` (`user->locked_vm`): the default.
    User,
    /// Against the process (`mm->pinned_vm`), as VFIO's type1 charges.
    Process,
}
