//! `Device<S>`: a VFIO device whose security context is its type.

use crate::backend::{self, cdev, legacy, Backend, Link};
use crate::error::{Error, ErrorKind, Fallback, Result, TransitionError};
use crate::ioas::Ioas;
use crate::iommufd::Iommufd;
use crate::region::{pci, Bar, Mmio, RegionInfo};
use crate::sys::{self, vfio};
use crate::sysfs;
use nix::errno::Errno;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, OnceLock};

mod sealed {
    pub trait Sealed {}
}

/// A device state (type state). Sealed: only this crate's states exist.
pub trait State: sealed::Sealed + 'static {
    /// The state's name, for `Debug`.
    const NAME: &'static str;
}

/// States in which the device is bound to an iommufd and its fd is usable.
pub trait Bound: State {}

/// Opened, not bound: the kernel refuses every ioctl and mmap on the fd (type state).
/// See the [crate docs](crate#security-contexts).
#[derive(Debug)]
pub struct Unbound(());

/// Bound to an iommufd, DMA blocked: the group sits in a blocking domain (type state).
/// See the [crate docs](crate#security-contexts).
#[derive(Debug)]
pub struct BlockDma(());

/// Attached to a page table `P` (an [`Ioas`]): DMA goes through its mappings (type state).
/// See the [crate docs](crate#security-contexts).
#[derive(Debug)]
pub struct Attached<P = Ioas>(PhantomData<fn() -> P>);

impl sealed::Sealed for Unbound {}
impl sealed::Sealed for BlockDma {}
impl<P: 'static> sealed::Sealed for Attached<P> {}
impl State for Unbound {
    const NAME: &'static str = "Unbound";
}
impl State for BlockDma {
    const NAME: &'static str = "BlockDma";
}
impl State for Attached<Ioas> {
    const NAME: &'static str = "Attached<Ioas>";
}
impl Bound for BlockDma {}
impl Bound for Attached<Ioas> {}

/// Everything a device holds, whatever its state. Field order is drop order:
/// BAR mappings go first (MMIO is torn down before the fd closes), then the
/// link with the fd (closing it detaches and unbinds), then the IOAS and
/// iommufd handles.
pub(crate) struct Inner {
    pub(crate) bars: Vec<Option<Bar>>,
    /// The device fd and the kernel path it came through.
    pub(crate) link: Link,
    /// The BDF, or the cdev path when the BDF is unknown: for messages.
    pub(crate) name: String,
    pub(crate) attached: Option<(Ioas, u32)>,
    pub(crate) bound: Option<(Iommufd, u32)>,
    /// Region info by index, queried once: it cannot change while the fd is
    /// bound, and config-space accesses would otherwise pay an ioctl each.
    regions: [OnceLock<RegionInfo>; CACHED_REGIONS],
    /// Whether config writes turned memory decoding off (see [`crate::decoding`]).
    pub(crate) decoding: crate::decoding::Decoding,
    /// `VFIO_DEVICE_FEATURE_MIGRATION` flags (0: none), probed once.
    pub(crate) migration: OnceLock<u64>,
}

/// vfio-pci has 9 regions (6 BARs, ROM, config, VGA); a few more for
/// device-specific ones. Higher indexes are queried every time.
const CACHED_REGIONS: usize = 12;

impl Inner {
    #[inline]
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.link.fd().expect("a bound or cdev device has an fd")
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some((ioas, _)) = &self.attached {
            self.link.release(ioas.space());
        }
    }
}

/// A VFIO device in state `S`: [`Unbound`], [`BlockDma`] or [`Attached`].
///
/// Transitions consume the device and issue the ioctl; on failure they hand it
/// back unchanged inside a [`TransitionError`]. Methods that need a bound fd
/// (regions, MMIO, config space, IRQs, reset) exist only in bound states.
pub struct Device<S: State> {
    /// Boxed: a failed transition hands the device back inside a `Result`,
    /// which stays small this way.
    pub(crate) inner: Box<Inner>,
    state: PhantomData<S>,
}

impl<S: State> Device<S> {
    /// The device's name: its BDF, or its cdev path when opened by path.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    fn fail<T>(self, e: Error) -> std::result::Result<T, TransitionError<Self>> {
        Err(TransitionError::new(self, e))
    }
}

pub(crate) fn make<T: State>(inner: impl Into<Box<Inner>>) -> Device<T> {
    Device {
        inner: inner.into(),
        state: PhantomData,
    }
}

/// The error for a device that shares its IOMMU group: it must be opened
/// with its group.
fn multi_device_group(
    name: &str,
    group: u32,
    members: &[sysfs::PciDevice],
    backend: Backend,
) -> Error {
    let list: Vec<String> = members
        .iter()
        .map(|m| format!("{} ({})", m.bdf, m.driver.as_deref().unwrap_or("no driver")))
        .collect();
    let opener = match backend {
        Backend::Iommufd => "open",
        Backend::LegacyContainer => "open_legacy",
    };
    Error::new(ErrorKind::MultiDeviceGroup, "open VFIO device", name.to_string())
        .detail(format!("IOMMU group {group} has {} devices: {}", members.len(), list.join(", ")))
        .hint(format!("devices of one group share one IOAS: open them together with iommufd::Group::{opener}({group})"))
}

/// The name (BDF, or mdev UUID) of the device behind cdev `fd`, if sysfs says
/// it is alone in its IOMMU group.
/// `what` names the fd in errors, and is only called for one.
fn lone_device_name(fd: &OwnedFd, what: &dyn Fn() -> String) -> Result<String> {
    let sys = Path::new("/sys");
    let (name, group) = sysfs::cdev_device(sys, fd.as_fd(), what)?;
    if sysfs::group_size(sys, group)? > 1 {
        let members = sysfs::group_members(sys, group)?;
        return Err(multi_device_group(&name, group, &members, Backend::Iommufd));
    }
    Ok(name)
}

/// The name of the device behind `fd` if it can be adopted: alone in its
/// IOMMU group, and bound (it answers `VFIO_DEVICE_GET_INFO`).
pub(crate) fn adoptable(fd: &OwnedFd) -> Result<String> {
    let name = lone_device_name(fd, &|| format!("device fd {}", fd.as_raw_fd()))?;
    let mut info = vfio::vfio_device_info {
        argsz: sys::argsz::<vfio::vfio_device_info>(),
        ..Default::default()
    };
    match sys::ioctl(fd.as_fd(), sys::raw::vfio_device_get_info, &mut info) {
        Ok(_) => Ok(name),
        Err(e) => Err(Error::sys("VFIO_DEVICE_GET_INFO", name, e)
            .kind_(ErrorKind::InvalidInput)
            .detail(
                "the device fd is not bound to an iommufd (an unbound cdev refuses every ioctl)",
            )
            .hint("open and bind the device (Device::from_fd, then bind) instead of adopting it")),
    }
}

/// A fresh unbound device: no BARs, not bound, not attached.
fn unbound(link: Link, name: String) -> Device<Unbound> {
    make(Inner {
        bars: Vec::new(),
        link,
        name,
        attached: None,
        bound: None,
        regions: Default::default(),
        decoding: Default::default(),
        migration: OnceLock::new(),
    })
}

impl Device<Unbound> {
    /// Opens the VFIO cdev of the PCI device `bdf` (e.g. `"0000:00:02.0"`),
    /// found through sysfs `.../vfio-dev/vfioN`.
    ///
    /// # Errors
    /// - [`ErrorKind::NotVfioPci`], with the `driver_override` commands, when the device is not on vfio-pci;
    /// - [`ErrorKind::MultiDeviceGroup`] when its IOMMU group has other members: open it with [`crate::Group`];
    /// - [`ErrorKind::NoDeviceCdev`] when the kernel has no VFIO cdev.
    pub fn open(bdf: &str) -> Result<Self> {
        Self::open_in(Path::new("/sys"), Path::new("/dev"), bdf, backend::detect())
    }

    /// Opens `bdf` through the legacy path (`/dev/vfio/<group>`) even when the
    /// kernel has the cdev; bind it to an [`Iommufd::open_legacy`] context.
    ///
    /// # Errors
    /// As [`open`](Self::open); [`ErrorKind::PathConflict`] when the group is
    /// held through the cdev (the kernel forbids mixing the paths in a group).
    pub fn open_legacy(bdf: &str) -> Result<Self> {
        Self::open_in(
            Path::new("/sys"),
            Path::new("/dev"),
            bdf,
            Backend::LegacyContainer,
        )
    }

    pub(crate) fn open_in(sys: &Path, dev: &Path, bdf: &str, backend: Backend) -> Result<Self> {
        // The cdev path needs no group number when the device is alone in
        // its group: from the device's `vfio-dev` directory, list the cdev
        // name and count the group's members through `../iommu_group`.
        // Anything else (no cdev, no group, several members, legacy) takes
        // the long way, which also says why.
        if backend == Backend::Iommufd {
            if let Some(dir) = sysfs::CdevDir::open(sys, bdf) {
                if let (Some(name), true) = (dir.cdev_name(), dir.alone_in_group()) {
                    return Self::open_cdev_named(dev, bdf, &name);
                }
            }
        }
        let group = sysfs::group_of(sys, bdf)?;
        if sysfs::group_size(sys, group)? > 1 {
            let members = sysfs::group_members(sys, group)?;
            return Err(multi_device_group(bdf, group, &members, backend));
        }
        match backend {
            Backend::Iommufd => Self::open_member(sys, dev, bdf),
            Backend::LegacyContainer => {
                sysfs::require_vfio_pci(sys, bdf)?;
                Self::open_legacy_member(legacy::open_group(dev, group)?, bdf)
            }
        }
    }

    /// A legacy-path member of an opened group.
    pub(crate) fn open_legacy_member(group: Arc<legacy::LegacyGroup>, bdf: &str) -> Result<Self> {
        Ok(unbound(
            Link::Legacy(legacy::Link::new(group)),
            bdf.to_string(),
        ))
    }

    /// Opens one device without the single-device-group check (for `Group`).
    pub(crate) fn open_member(sys: &Path, dev: &Path, bdf: &str) -> Result<Self> {
        Self::open_cdev_named(dev, bdf, &sysfs::cdev_name(sys, bdf)?)
    }

    /// Opens `bdf`'s cdev `/dev/vfio/devices/<name>`.
    fn open_cdev_named(dev: &Path, bdf: &str, name: &str) -> Result<Self> {
        let (fd, path) = cdev::open_named(dev, bdf, name)?;
        Ok(unbound(
            Link::Cdev {
                fd,
                path: Some(path),
            },
            bdf.to_string(),
        ))
    }

    /// `bdf`, another device of `of`'s IOMMU group, opened through the same
    /// path, unbound (for [`Group`](crate::Group)).
    pub(crate) fn sibling<S: State>(of: &Device<S>, bdf: &str) -> Result<Self> {
        let (link, name) = of.inner.link.sibling(bdf)?;
        Ok(unbound(link, name))
    }

    /// Opens a VFIO device cdev by path (`/dev/vfio/devices/vfioN`).
    ///
    /// # Errors
    /// The errno from `open`; as [`from_fd`](Self::from_fd) for what sysfs
    /// says about the device (a member of a multi-device group is refused).
    pub fn open_cdev(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let fd = cdev::open_rw(path).map_err(|e| {
            let err = Error::sys("open", path.display().to_string(), e);
            if e == Errno::ENOENT {
                err.kind_(ErrorKind::InvalidInput)
                    .detail("no such file: VFIO device cdevs are /dev/vfio/devices/vfioN")
            } else {
                err
            }
        })?;
        let name = lone_device_name(&fd, &|| path.display().to_string())?;
        Ok(unbound(
            Link::Cdev {
                fd,
                path: Some(path.to_path_buf()),
            },
            name,
        ))
    }

    /// Wraps a device cdev fd received from elsewhere (a privileged helper).
    /// Such a device cannot be [`unbind`](Device::unbind)-ed (there is no path
    /// to reopen), only closed.
    ///
    /// The kernel binds an open *file*, not an fd: a duplicate of `fd` that
    /// the caller keeps (`dup`, `SCM_RIGHTS`, a fork) shares the binding,
    /// which lasts until the last fd of the file is closed, whatever
    /// [`close`](Device::close) does to this one. Meanwhile the device cannot
    /// be bound through another open (its `bind` fails with `EINVAL`,
    /// reported as [`ErrorKind::Busy`]). Give the crate the only copy.
    ///
    /// The fd's device is looked up in sysfs (`/sys/dev/char/MAJ:MIN`), and
    /// must be alone in its IOMMU group, as for [`open`](Self::open): a member
    /// of a larger group bound on its own would be typed `BlockDma` while a
    /// sibling could move the whole group into a page table.
    ///
    /// # Errors
    /// The fd is handed back: [`ErrorKind::InvalidInput`] when it is not a
    /// VFIO device cdev (`/dev/null`, a group fd, a file);
    /// [`ErrorKind::MultiDeviceGroup`] for a member of a multi-device group.
    /// A process without sysfs can use [`from_fd_unchecked`](Self::from_fd_unchecked).
    pub fn from_fd(fd: OwnedFd) -> std::result::Result<Self, TransitionError<OwnedFd>> {
        match lone_device_name(&fd, &|| format!("device fd {}", fd.as_raw_fd())) {
            Ok(name) => Ok(unbound(Link::Cdev { fd, path: None }, name)),
            Err(e) => Err(TransitionError::new(fd, e)),
        }
    }

    /// Wraps a device cdev fd without asking sysfs about it, for a sandboxed
    /// process that has no `/sys`.
    ///
    /// # Safety
    /// `fd` must be a VFIO device cdev whose device is alone in its IOMMU group
    /// (or has no IOMMU group of its own, as an mdev). Otherwise the crate's
    /// types lie: a sibling of the device could move the whole group into a
    /// page table while this device is typed [`BlockDma`], and its DMA would
    /// reach that page table.
    pub unsafe fn from_fd_unchecked(fd: OwnedFd) -> Self {
        // Named from sysfs when it is there (errors read better), unchecked.
        let what = || format!("device fd {}", fd.as_raw_fd());
        let name = sysfs::cdev_device(Path::new("/sys"), fd.as_fd(), &what)
            .map_or_else(|_| what(), |(name, _)| name);
        unbound(Link::Cdev { fd, path: None }, name)
    }

    /// Binds the device to `iommufd` (`VFIO_DEVICE_BIND_IOMMUFD`): the kernel
    /// claims DMA ownership of the device's whole IOMMU group and parks it in a
    /// blocking domain. No DMA is possible until [`attach`](Device::attach).
    ///
    /// # Errors
    /// The device comes back unbound. `EPERM` is explained: a group member on a
    /// driver that does its own DMA ([`ErrorKind::GroupNotViable`], naming it),
    /// or no interrupt remapping ([`ErrorKind::NoInterruptRemapping`]).
    /// `EBADF`/`EBADFD` mean the fd is not an iommufd; `EINVAL`
    /// ([`ErrorKind::Busy`]) that the device is bound through another open
    /// file of its cdev (see [`from_fd`](Self::from_fd)).
    ///
    /// An SR-IOV VF whose PF is on vfio-pci needs the VF token the PF's
    /// owner set ([`bind_with_vf_token`](Self::bind_with_vf_token)); without
    /// one the kernel answers `EACCES` ([`ErrorKind::VfToken`]). On kernels
    /// whose cdev does not check VF tokens (Linux 6.12) the crate refuses
    /// such a VF itself, before the ioctl, naming the kernel
    /// ([`bind_ignoring_vf_token`](Self::bind_ignoring_vf_token) to accept
    /// the risk). Whether the kernel checks is asked once per process.
    #[doc(alias = "VFIO_DEVICE_BIND_IOMMUFD")]
    pub fn bind(
        self,
        iommufd: &Iommufd,
    ) -> std::result::Result<Device<BlockDma>, TransitionError<Self>> {
        self.bind_token(iommufd, cdev::VfToken::Check)
    }

    /// Binds an SR-IOV VF with the VF token its PF's owner set
    /// (`VFIO_DEVICE_BIND_FLAG_TOKEN`; see [`Device::set_vf_token`]).
    ///
    /// # Errors
    /// As [`bind`](Self::bind); `EACCES` is a wrong token
    /// ([`ErrorKind::VfToken`]); a kernel whose cdev takes no token
    /// (Linux 6.12) is [`ErrorKind::Unsupported`], naming its version.
    pub fn bind_with_vf_token(
        self,
        iommufd: &Iommufd,
        token: &[u8; 16],
    ) -> std::result::Result<Device<BlockDma>, TransitionError<Self>> {
        self.bind_token(iommufd, cdev::VfToken::Given(token))
    }

    /// Binds without a VF token and without the crate's check that this
    /// kernel would check one: for a VF on a kernel whose cdev ignores VF
    /// tokens (Linux 6.12), when the caller knows the PF's owner consents.
    /// On a kernel that checks, the kernel still does.
    pub fn bind_ignoring_vf_token(
        self,
        iommufd: &Iommufd,
    ) -> std::result::Result<Device<BlockDma>, TransitionError<Self>> {
        self.bind_token(iommufd, cdev::VfToken::Unchecked)
    }

    fn bind_token(
        self,
        iommufd: &Iommufd,
        token: cdev::VfToken<'_>,
    ) -> std::result::Result<Device<BlockDma>, TransitionError<Self>> {
        let mut inner = self.inner;
        match inner.link.bind(iommufd.ctx(), &inner.name, token) {
            Ok(id) => {
                inner.bound = Some((iommufd.clone(), id));
                Ok(make(inner))
            }
            Err(e) => make::<Unbound>(inner).fail(e),
        }
    }

    /// Closes the fd.
    pub fn close(self) {}
}

impl Device<BlockDma> {
    /// Attaches the device to `ioas` (`VFIO_DEVICE_ATTACH_IOMMUFD_PT`): DMA now
    /// goes through the IOAS's mappings. Query [`Ioas::iova_ranges`] again
    /// afterwards: attaching narrows them.
    ///
    /// # Errors
    /// The device comes back in `BlockDma`. An IOAS of another iommufd is
    /// refused before the ioctl (IOAS ids are per iommufd, so the kernel could
    /// otherwise find a different object under the same id).
    #[doc(alias = "VFIO_DEVICE_ATTACH_IOMMUFD_PT")]
    pub fn attach(
        self,
        ioas: &Ioas,
    ) -> std::result::Result<Device<Attached<Ioas>>, TransitionError<Self>> {
        match attach_pt(&self.inner, ioas) {
            Ok(pt) => {
                let mut inner = self.inner;
                inner.attached = Some((ioas.clone(), pt));
                Ok(make(inner))
            }
            Err(e) => self.fail(e),
        }
    }
}

/// Refuses an IOAS of another iommufd: IOAS ids are per iommufd, so the
/// kernel could find a different object under the same id.
fn same_iommufd(inner: &Inner, ioas: &Ioas) -> Result<()> {
    let (fd, _) = inner.bound.as_ref().expect("bound state has an iommufd");
    if fd.same_as(ioas.iommufd()) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::InvalidInput,
        "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
        format!("{} -> IOAS {}", inner.name, ioas.id()),
    )
    .detail("the IOAS belongs to another iommufd than the one the device is bound to")
    .hint("allocate the IOAS on the same Iommufd (or a clone of it) that the device was bound to"))
}

fn attach_pt(inner: &Inner, ioas: &Ioas) -> Result<u32> {
    same_iommufd(inner, ioas)?;
    inner.link.attach(&inner.name, ioas.id(), ioas.space())
}

impl Device<Attached<Ioas>> {
    /// Takes over a device that another process bound and attached and then
    /// handed over with its iommufd (see [`handover`](crate::handover)), in the
    /// state the kernel reports, not the state a message claims:
    ///
    /// - the fd's device is looked up in sysfs and must be alone in its
    ///   IOMMU group, as for [`Device::from_fd`] (adoption is no way around
    ///   the group rules: a member of a larger group belongs to a [`Group`](crate::Group));
    /// - it must answer `VFIO_DEVICE_GET_INFO`, which an unbound cdev refuses,
    ///   so it is bound;
    /// - its attachment is then established, not trusted: the crate attaches
    ///   it to `ioas` (`VFIO_DEVICE_ATTACH_IOMMUFD_PT`), which the kernel
    ///   makes a no-op when the device is already there (same page table:
    ///   no window in which DMA is blocked or goes elsewhere), and a replace
    ///   or an attach when it was elsewhere or blocked.
    ///
    /// What the kernel cannot report is which iommufd the fd is bound to:
    /// that is why `ioas` must come from the iommufd handed over *with* the
    /// device ([`Iommufd::adopt`](crate::Iommufd::adopt) checks it is one).
    /// A device bound to another iommufd either fails the attach (no such
    /// IOAS id there) or lands in that iommufd's IOAS of the same id, whose
    /// mappings are memory the kernel holds or that process owns, never
    /// memory this process uses as ordinary Rust memory. `dev_id` (from
    /// the bind, for [`Device::dev_id`]) is taken as given.
    ///
    /// # Errors
    /// The fd is handed back: [`ErrorKind::MultiDeviceGroup`],
    /// [`ErrorKind::InvalidInput`] for an fd that is not a bound VFIO device
    /// cdev, or the attach's error; after a failed attach the device is
    /// detached (blocked), so the error says where it is.
    pub fn adopt(
        fd: OwnedFd,
        ioas: &Ioas,
        dev_id: u32,
    ) -> std::result::Result<Self, TransitionError<OwnedFd>> {
        let name = match adoptable(&fd) {
            Ok(name) => name,
            Err(e) => return Err(TransitionError::new(fd, e)),
        };
        // A constructor of the cdev path, like `from_fd`: a legacy IOAS has
        // no kernel object to attach to.
        if ioas.iommufd().iommufd_fd().is_none() {
            let err = Error::new(ErrorKind::Unsupported, "adopt", name)
                .detail("the IOAS is on the legacy container path, which has no device handover");
            return Err(TransitionError::new(fd, err));
        }
        match cdev::attach(fd.as_fd(), ioas.id(), &name) {
            Ok(pt) => {
                let mut dev = unbound(Link::Cdev { fd, path: None }, name);
                dev.inner.bound = Some((ioas.iommufd().clone(), dev_id));
                dev.inner.attached = Some((ioas.clone(), pt));
                Ok(make(dev.inner))
            }
            Err(e) => {
                let e = match cdev::detach(fd.as_fd(), &name) {
                    Ok(()) => e.append_detail("the device is detached now: its DMA is blocked".into()),
                    Err(d) => e.append_detail(format!(
                        "detaching it failed too ({d}), so where its DMA goes is unknown: close the fd to unbind it"
                    )),
                };
                Err(TransitionError::new(fd, e))
            }
        }
    }

    /// Moves the device to `ioas` in one ioctl (an atomic replace: there is no
    /// moment in which DMA is unblocked to nowhere or to both).
    ///
    /// On the legacy path type1 cannot swap atomically: the group's old
    /// mappings are removed before the new ones are made, so DMA faults in
    /// between, but never reaches memory of either IOAS that it should not.
    ///
    /// # Errors
    /// The device comes back where the kernel left it, as a [`Fallback`]:
    /// almost always [`Fallback::Kept`], still attached to its current IOAS.
    /// A failure in the middle of the kernel's switch (an allocation, or
    /// copying the answer back) can leave the device reaching nothing while
    /// the kernel still counts it on the old IOAS, so after such a failure
    /// the crate detaches the device and attaches it to the old IOAS again.
    /// If that attach fails too, the device is blocked and comes back as
    /// [`Fallback::Blocked`]; if even the detach fails, it is closed
    /// ([`Fallback::Closed`]). The error says which happened.
    #[doc(alias = "VFIO_DEVICE_ATTACH_IOMMUFD_PT")]
    pub fn replace(self, ioas: &Ioas) -> std::result::Result<Self, TransitionError<Replaced>> {
        match self.replace_once(ioas) {
            Ok(d) => Ok(d),
            Err((d, e, false)) => Err(TransitionError::new(Fallback::Kept(d), e)),
            Err((d, e, true)) => {
                let old = d.ioas().clone();
                let (back, e) = d.reattach(&old, e);
                Err(TransitionError::new(back, e))
            }
        }
    }

    /// One replace, no recovery: on error the device, the error, and
    /// whether its attachment to the old IOAS may be lost.
    pub(crate) fn replace_once(
        self,
        ioas: &Ioas,
    ) -> std::result::Result<Self, (Self, Error, bool)> {
        let moved = same_iommufd(&self.inner, ioas)
            .map_err(|e| (e, false))
            .and_then(|()| {
                self.inner.link.replace(
                    &self.inner.name,
                    self.ioas().space(),
                    (ioas.id(), ioas.space()),
                )
            });
        match moved {
            Ok(pt) => {
                let mut inner = self.inner;
                inner.attached = Some((ioas.clone(), pt));
                Ok(make(inner))
            }
            Err((e, lost)) => Err((self, e, lost)),
        }
    }

    /// Makes the device's attachment true again after a failure that may
    /// have lost it: detach (a known state, blocked), then attach to `ioas`
    /// (twice, for a transient shortage). Returns where the device is, and
    /// `e` saying so.
    #[cold]
    #[inline(never)]
    fn reattach(self, ioas: &Ioas, e: Error) -> (Replaced, Error) {
        let id = ioas.id();
        let blocked = match self.detach() {
            Ok(b) => b,
            Err(de) => {
                let (dev, de) = de.into_parts();
                drop(dev);
                return (Fallback::Closed, e.append_detail(format!(
                    "the old attachment may be lost, and detaching to re-establish it failed too ({de}): the device was closed"
                )));
            }
        };
        let blocked = match blocked.attach(ioas) {
            Ok(d) => {
                return (
                    Fallback::Kept(d),
                    e.append_detail(format!(
                        "the device was detached and attached to IOAS {id} again, where it is now"
                    )),
                )
            }
            Err(ae) => ae.into_inner(),
        };
        match blocked.attach(ioas) {
            Ok(d) => (Fallback::Kept(d), e.append_detail(format!(
                "the device was detached and attached to IOAS {id} again (at the second try), where it is now"
            ))),
            Err(ae) => {
                let (b, ae) = ae.into_parts();
                (Fallback::Blocked(b), e.append_detail(format!(
                    "the old attachment may be lost, and attaching to IOAS {id} again failed ({ae}): the device is blocked (BlockDma)"
                )))
            }
        }
    }

    /// Detaches (`VFIO_DEVICE_DETACH_IOMMUFD_PT`): the device's group goes back
    /// to the blocking domain, so DMA is blocked again.
    #[doc(alias = "VFIO_DEVICE_DETACH_IOMMUFD_PT")]
    pub fn detach(self) -> std::result::Result<Device<BlockDma>, TransitionError<Self>> {
        match self
            .inner
            .link
            .detach(&self.inner.name, self.ioas().space())
        {
            Ok(()) => {
                let mut inner = self.inner;
                inner.attached = None;
                Ok(make(inner))
            }
            Err(e) => self.fail(e),
        }
    }

    /// The IOAS the device is attached to.
    pub fn ioas(&self) -> &Ioas {
        &self
            .inner
            .attached
            .as_ref()
            .expect("attached state has an IOAS")
            .0
    }

    /// The id of the hardware page table the kernel attached the device to
    /// (devices of one group share it).
    pub fn hwpt_id(&self) -> u32 {
        self.inner
            .attached
            .as_ref()
            .expect("attached state has an IOAS")
            .1
    }
}

/// What a failed [`Device::replace`] hands back (see [`Fallback`]).
pub type Replaced = Fallback<Device<Attached<Ioas>>, Device<BlockDma>>;

/// Device information (`struct vfio_device_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Raw `VFIO_DEVICE_FLAGS_*`.
    pub flags: u32,
    /// Number of regions.
    pub num_regions: u32,
    /// Number of IRQ indexes.
    pub num_irqs: u32,
}

impl DeviceInfo {
    /// The device supports `VFIO_DEVICE_RESET`.
    pub fn can_reset(&self) -> bool {
        self.flags & vfio::VFIO_DEVICE_FLAGS_RESET != 0
    }
    /// A PCI device.
    pub fn is_pci(&self) -> bool {
        self.flags & vfio::VFIO_DEVICE_FLAGS_PCI != 0
    }
}

/// Methods for every bound state.
impl<S: Bound> Device<S> {
    /// The device id the iommufd gave at bind.
    pub fn dev_id(&self) -> u32 {
        self.inner.bound.as_ref().map_or(0, |b| b.1)
    }

    /// The iommufd the device is bound to.
    pub fn iommufd(&self) -> &Iommufd {
        &self
            .inner
            .bound
            .as_ref()
            .expect("bound state has an iommufd")
            .0
    }

    /// `VFIO_DEVICE_GET_INFO`.
    #[doc(alias = "VFIO_DEVICE_GET_INFO")]
    pub fn info(&self) -> Result<DeviceInfo> {
        let mut arg = vfio::vfio_device_info {
            argsz: sys::argsz::<vfio::vfio_device_info>(),
            ..Default::default()
        };
        sys::ioctl(self.inner.fd(), sys::raw::vfio_device_get_info, &mut arg)
            .map_err(|e| Error::sys("VFIO_DEVICE_GET_INFO", self.inner.name.clone(), e))?;
        Ok(DeviceInfo {
            flags: arg.flags,
            num_regions: arg.num_regions,
            num_irqs: arg.num_irqs,
        })
    }

    /// `VFIO_DEVICE_GET_REGION_INFO`, with the capability chain decoded.
    #[doc(alias = "VFIO_DEVICE_GET_REGION_INFO")]
    pub fn region_info(&self, index: u32) -> Result<RegionInfo> {
        self.cached_region(index).map(std::borrow::Cow::into_owned)
    }

    /// The region info of `index`, from the cache once it has been asked.
    fn cached_region(&self, index: u32) -> Result<std::borrow::Cow<'_, RegionInfo>> {
        use std::borrow::Cow;
        let Some(slot) = self.inner.regions.get(index as usize) else {
            return region_info(self.inner.fd(), &self.inner.name, index).map(Cow::Owned);
        };
        if let Some(info) = slot.get() {
            return Ok(Cow::Borrowed(info));
        }
        let info = region_info(self.inner.fd(), &self.inner.name, index)?;
        Ok(Cow::Borrowed(slot.get_or_init(|| info)))
    }

    /// Where region `index` lies in the device fd, and its size: a cache
    /// lookup once asked, so a region read or write is one `pread`/`pwrite`.
    #[inline]
    fn region_span(&self, index: u32) -> Result<(u64, u64)> {
        match self
            .inner
            .regions
            .get(index as usize)
            .and_then(OnceLock::get)
        {
            Some(info) => Ok((info.offset, info.size)),
            None => self.region_span_slow(index),
        }
    }

    #[cold]
    #[inline(never)]
    fn region_span_slow(&self, index: u32) -> Result<(u64, u64)> {
        let info = self.cached_region(index)?;
        Ok((info.offset, info.size))
    }

    /// mmaps BAR `index` (every mmap-able area of it) and keeps the mapping in
    /// the device. The mapping moves with the device through attach, detach
    /// and replace, and is unmapped on unbind or close, before the fd closes.
    /// Mapping an already-mapped BAR does nothing.
    ///
    /// # Errors
    /// An index that is not a BAR, or a BAR the kernel does not let us mmap.
    pub fn map_bar(&mut self, index: u32) -> Result<()> {
        if index > 5 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "map BAR",
                format!("{} region {index}", self.inner.name),
            )
            .detail("BARs are regions 0 to 5"));
        }
        if self
            .inner
            .bars
            .get(index as usize)
            .is_some_and(Option::is_some)
        {
            return Ok(());
        }
        if let Some(why) = self.inner.decoding.off() {
            return Err(crate::decoding::decoding_off(&self.inner.name, index, why));
        }
        let info = self.region_info(index)?;
        if info.size == 0 || !info.mmappable() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "map BAR",
                format!("{} BAR{index}", self.inner.name),
            )
            .detail(if info.size == 0 {
                "the BAR is not implemented"
            } else {
                "the kernel does not allow mmap of this BAR"
            }));
        }
        let bar = Bar::map(self.inner.fd(), info, &self.inner.name)?;
        if self.inner.bars.len() <= index as usize {
            self.inner.bars.resize_with(index as usize + 1, || None);
        }
        self.inner.bars[index as usize] = Some(bar);
        Ok(())
    }

    /// Unmaps BAR `index`, mapped with [`map_bar`](Self::map_bar); false when
    /// it was not mapped. No [`Mmio`] view can be alive (they borrow the
    /// device). Needed before a config write that turns memory decoding off
    /// (see [`config_write`](Self::config_write)).
    pub fn unmap_bar(&mut self, index: u32) -> bool {
        self.inner
            .bars
            .get_mut(index as usize)
            .and_then(Option::take)
            .is_some()
    }

    /// A view of BAR `index`, mapped earlier with [`map_bar`](Self::map_bar).
    /// The view borrows the device, so it cannot outlive the binding.
    pub fn mmio(&self, index: u32) -> Result<Mmio<'_>> {
        match self.inner.bars.get(index as usize).and_then(Option::as_ref) {
            Some(bar) => Ok(Mmio::new(self.inner.fd(), bar, &self.inner.name)),
            None => Err(Error::new(
                ErrorKind::InvalidInput,
                "MMIO",
                format!("{} BAR{index}", self.inner.name),
            )
            .detail("BAR not mapped: call map_bar first")),
        }
    }

    /// Reads PCI config space at `offset` (pread on the config region).
    #[inline]
    pub fn config_read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.region_read(pci::CONFIG, offset, buf)
    }

    /// Writes PCI config space at `offset` (pwrite on the config region).
    ///
    /// A write that would turn memory decoding off while a BAR is mapped is
    /// refused ([`ErrorKind::Busy`]): clearing the memory-space bit of the
    /// command register, or putting the device into D3hot through its power
    /// management capability. vfio-pci revokes BAR mappings while decoding
    /// is off, so the next [`Mmio`] access would kill the process with
    /// `SIGBUS`. [`unmap_bar`](Self::unmap_bar) first; while decoding is off,
    /// [`map_bar`](Self::map_bar) refuses, and [`region_read`](Self::region_read)
    /// of a BAR fails with `EIO` instead of faulting. See the [crate
    /// docs](crate#mmio-and-memory-decoding).
    #[inline]
    pub fn config_write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.region_write(pci::CONFIG, offset, data)
    }

    /// Reads region `index` at `offset` with pread.
    #[inline]
    pub fn region_read(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<()> {
        let (at, size) = self.region_span(index)?;
        self.check_region(index, size, offset, buf.len(), "pread")?;
        match nix::sys::uio::pread(self.inner.fd(), buf, (at + offset) as i64) {
            Ok(n) if n == buf.len() => Ok(()),
            r => Err(self.region_io_error("pread", index, offset, buf.len(), r)),
        }
    }

    /// Writes region `index` at `offset` with pwrite. Config space writes
    /// are checked as in [`config_write`](Self::config_write).
    #[inline]
    pub fn region_write(&self, index: u32, offset: u64, data: &[u8]) -> Result<()> {
        let (at, size) = self.region_span(index)?;
        self.check_region(index, size, offset, data.len(), "pwrite")?;
        if index == pci::CONFIG && crate::decoding::may_touch(offset, data.len()) {
            return self.guarded_config_write(at, offset, data);
        }
        self.pwrite_at(index, at, offset, data)
    }

    /// The `pwrite` of a region write whose checks are done.
    #[inline]
    pub(crate) fn pwrite_at(&self, index: u32, at: u64, offset: u64, data: &[u8]) -> Result<()> {
        match nix::sys::uio::pwrite(self.inner.fd(), data, (at + offset) as i64) {
            Ok(n) if n == data.len() => Ok(()),
            r => Err(self.region_io_error("pwrite", index, offset, data.len(), r)),
        }
    }

    /// The error of a region `pread`/`pwrite` that failed (`Err`) or moved
    /// fewer than `want` bytes (`Ok(n)`).
    #[cold]
    #[inline(never)]
    fn region_io_error(
        &self,
        op: &'static str,
        index: u32,
        offset: u64,
        want: usize,
        r: nix::Result<usize>,
    ) -> Error {
        match r {
            Err(e) => Error::sys(
                op,
                format!("{} region {index} offset {offset:#x}", self.inner.name),
                e,
            ),
            Ok(n) => Error::new(ErrorKind::Kernel, op, self.inner.name.clone())
                .detail(format!("short {op}: {n} of {want} bytes")),
        }
    }

    #[inline]
    fn check_region(
        &self,
        index: u32,
        size: u64,
        offset: u64,
        n: usize,
        op: &'static str,
    ) -> Result<()> {
        if offset.checked_add(n as u64).is_some_and(|e| e <= size) {
            Ok(())
        } else {
            Err(self.region_range_error(index, size, offset, n, op))
        }
    }

    #[cold]
    #[inline(never)]
    fn region_range_error(
        &self,
        index: u32,
        size: u64,
        offset: u64,
        n: usize,
        op: &'static str,
    ) -> Error {
        Error::new(
            ErrorKind::InvalidInput,
            op,
            format!("{} region {index} offset {offset:#x}", self.inner.name),
        )
        .detail(format!("{n} bytes do not fit in the {size:#x}-byte region"))
    }

    /// Resets the device (`VFIO_DEVICE_RESET`).
    ///
    /// # Errors
    /// `EINVAL` when the device has no reset method ([`DeviceInfo::can_reset`] is false).
    #[doc(alias = "VFIO_DEVICE_RESET")]
    pub fn reset(&self) -> Result<()> {
        sys::device_reset(self.inner.fd()).map(drop).map_err(|e| {
            let err = Error::sys("VFIO_DEVICE_RESET", self.inner.name.clone(), e);
            if e == Errno::EINVAL {
                err.detail("the device offers no reset (no FLR, PM or bus reset); check DeviceInfo::can_reset")
            } else {
                err
            }
        })
    }

    /// Unbinds by closing the fd and reopening the cdev: the kernel detaches
    /// the device, returns its group to the default domain, and the new fd is
    /// unbound. BAR mappings are torn down first.
    ///
    /// # Errors
    /// If the cdev cannot be reopened (or the device was made with
    /// [`Device::from_fd`]), the device comes back bound, BARs still mapped.
    pub fn unbind(self) -> std::result::Result<Device<Unbound>, TransitionError<Self>> {
        match self.inner.link.reopen(&self.inner.name) {
            Ok(link) => {
                let name = self.inner.name.clone();
                drop(self); // BARs unmapped, then the old fd closed: the kernel unbinds.
                Ok(unbound(link, name))
            }
            Err(e) => self.fail(e),
        }
    }

    /// Closes the device: BARs unmapped, fd closed (the kernel detaches and
    /// unbinds once no other fd of the same open file remains: see
    /// [`Device::from_fd`]).
    pub fn close(self) {}

    pub(crate) fn device_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd()
    }
}

pub(crate) fn region_info(fd: BorrowedFd<'_>, name: &str, index: u32) -> Result<RegionInfo> {
    let bytes = sys::query_with_caps(32, |buf| sys::region_info(fd, index, buf)).map_err(|e| {
        let err = Error::sys(
            "VFIO_DEVICE_GET_REGION_INFO",
            format!("{name} region {index}"),
            e,
        );
        if e != Errno::EINVAL {
            return err;
        }
        // Diagnosed only now that the kernel said no: how many regions are there?
        let mut arg = vfio::vfio_device_info {
            argsz: sys::argsz::<vfio::vfio_device_info>(),
            ..Default::default()
        };
        match sys::ioctl(fd, sys::raw::vfio_device_get_info, &mut arg) {
            Ok(_) if index >= arg.num_regions => {
                err.kind_(ErrorKind::InvalidInput).detail(format!(
                    "the device has regions 0 to {}",
                    arg.num_regions.saturating_sub(1)
                ))
            }
            _ => err,
        }
    })?;
    RegionInfo::decode(&bytes).map_err(|e| {
        Error::new(
            ErrorKind::Kernel,
            "VFIO_DEVICE_GET_REGION_INFO",
            format!("{name} region {index}"),
        )
        .detail(format!("malformed capability chain: {e}"))
    })
}

impl<S: State> fmt::Debug for Device<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct(&format!("Device<{}>", S::NAME));
        d.field("name", &self.inner.name);
        if let Some((_, id)) = &self.inner.bound {
            d.field("dev_id", id);
        }
        if let Some((ioas, pt)) = &self.inner.attached {
            d.field("ioas", &ioas.id()).field("hwpt", pt);
        }
        d.finish()
    }
}

/// A device in any state, for tables and hot-plug code that should not be
/// generic over the state. Move the typed device out to transition it.
#[derive(Debug)]
pub enum AnyDevice {
    /// Opened, not bound.
    Unbound(Device<Unbound>),
    /// Bound, DMA blocked.
    BlockDma(Device<BlockDma>),
    /// Attached to an IOAS.
    Attached(Device<Attached<Ioas>>),
}

impl AnyDevice {
    /// The state's name.
    pub fn state(&self) -> &'static str {
        match self {
            AnyDevice::Unbound(_) => Unbound::NAME,
            AnyDevice::BlockDma(_) => BlockDma::NAME,
            AnyDevice::Attached(_) => <Attached<Ioas>>::NAME,
        }
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        match self {
            AnyDevice::Unbound(d) => d.name(),
            AnyDevice::BlockDma(d) => d.name(),
            AnyDevice::Attached(d) => d.name(),
        }
    }
}

impl From<Device<Unbound>> for AnyDevice {
    fn from(d: Device<Unbound>) -> Self {
        AnyDevice::Unbound(d)
    }
}
impl From<Device<BlockDma>> for AnyDevice {
    fn from(d: Device<BlockDma>) -> Self {
        AnyDevice::BlockDma(d)
    }
}
impl From<Device<Attached<Ioas>>> for AnyDevice {
    fn from(d: Device<Attached<Ioas>>) -> Self {
        AnyDevice::Attached(d)
    }
}
