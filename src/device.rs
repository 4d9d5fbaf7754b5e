//! `Device<S>`: a VFIO device whose security context is its type.
//!
//! # Example
//!
//! ```no_run
//! use iommufd::{Device, Iommufd};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fd = Iommufd::open()?;
//! let ioas = fd.alloc_ioas()?;
//! let dev = Device::open("0000:00:02.0")?;      // Device<Unbound>
//! let mut dev = dev.bind(&fd)?;                  // Device<BlockDma>
//! println!("{:?}, BAR0 {:#x} bytes", dev.info()?, dev.region_info(0)?.size);
//! dev.map_bar(0)?;
//! let mut cmd = [0u8; 2];
//! dev.config_read(4, &mut cmd)?;                 // the PCI command register
//! let dev = dev.attach(&ioas)?;                  // Device<Attached<Ioas>>
//! let id = dev.mmio(0)?.read32(0)?;
//! let dev = dev.detach()?;
//! dev.unbind()?.close();
//! # let _ = id; Ok(()) }
//! ```

use crate::backend::{self, cdev, legacy, Backend, Link};
use crate::error::{Error, ErrorKind, Fallback, Result, TransitionError};
use crate::ioas::Ioas;
use crate::iommufd::Iommufd;
use crate::pt::{self, HeldPt, PageTable, PasidTable};
use crate::region::{Bar, RegionInfo};
use crate::sysfs;
use nix::errno::Errno;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, OnceLock};

mod adopt;
pub(crate) mod decoding;
mod info;
mod regions;

pub(crate) use adopt::adoptable;

pub use info::DeviceInfo;

pub(crate) mod sealed {
    ///
    /// Example: [the `device` module docs](crate::device).
    pub trait Sealed {}
}

/// A device state (type state). Sealed: only this crate's states exist.
///
/// Example: [the `device` module docs](crate::device).
pub trait State: sealed::Sealed + 'static {
    /// The state's name, for `Debug`.
    const NAME: &'static str;
}

/// States in which the device is bound to an iommufd and its fd is usable.
///
/// Example: [the `device` module docs](crate::device).
pub trait Bound: State {}

/// Opened, not bound: the kernel refuses every ioctl and mmap on the fd (type state).
/// See the [crate docs](crate#security-contexts).
#[derive(Debug)]
pub struct Unbound(());

/// Bound to an iommufd, DMA blocked: the group sits in a blocking domain (type state).
/// See the [crate docs](crate#security-contexts).
#[derive(Debug)]
pub struct BlockDma(());

/// Attached to a page table `P` (an [`Ioas`], or an [`Hwpt`](crate::hwpt::Hwpt)): DMA goes
/// through its mappings (type state).
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
impl<P: PageTable> State for Attached<P> {
    const NAME: &'static str = P::STATE;
}
impl Bound for BlockDma {}
impl<P: PageTable> Bound for Attached<P> {}

/// Everything a device holds, whatever its state. Field order is drop order:
/// BAR mappings go first (MMIO is torn down before the fd closes), then the
/// link with the fd (closing it detaches and unbinds), then the IOAS and
/// iommufd handles.
pub(crate) struct Inner {
    /// BARs mapped by `map_bar`, by index, each boxed. Not `Bar`s inline:
    /// six of them made every `Device::open` copy and zero ~800 bytes more
    /// (+1100 instructions, `guest_overhead`). Not a vector either: its
    /// first growth cost `map_bar`'s first call the allocator's reserve
    /// path on top of the allocation (#29). Six pointers are 48 bytes, and
    /// a `map_bar` is one allocation of one `Bar`.
    pub(crate) bars: [Option<Box<Bar>>; 6],
    /// The device fd and the kernel path it came through.
    pub(crate) link: Link,
    /// The BDF, or the cdev path when the BDF is unknown: for messages.
    pub(crate) name: String,
    pub(crate) attached: Option<(Ioas, u32)>,
    /// The HWPT attached to, when the page table is one (kept alive here).
    pub(crate) hwpt: Option<HeldPt>,
    /// The PASIDs attached and their HWPTs (kept alive here).
    pub(crate) pasids: PasidTable,
    pub(crate) bound: Option<(Iommufd, u32)>,
    /// Region info by index, queried once: it cannot change while the fd is
    /// bound, and config-space accesses would otherwise pay an ioctl each.
    /// A BAR mapped before its info was asked otherwise keeps the info in
    /// its `Bar` instead, and lookups look there (see `map_bar`);
    /// `unmap_bar` moves it here.
    regions: [OnceLock<RegionInfo>; CACHED_REGIONS],
    /// Whether config writes turned memory decoding off (see [`decoding`]).
    pub(crate) decoding: decoding::Decoding,
    /// `VFIO_DEVICE_FEATURE_MIGRATION` flags (0: none), probed once.
    pub(crate) migration: OnceLock<u64>,
    /// Bit `i`: IRQ index `i` was enabled by a routing through this value
    /// and not disabled since, so a failed re-route can say what the kernel
    /// left (see [`crate::irq`]).
    pub(crate) irqs_on: std::sync::atomic::AtomicU8,
    /// For an mdev: its instance is open here, so removing it would wait
    /// for this fd (see [`crate::mdev::Mdev::remove`]). After `link`: the
    /// record goes once the fd is closed.
    _mdev: Option<crate::owner::OpenMdev>,
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

impl Inner {
    /// Detaches every PASID of the device (before the RID's detach: a
    /// `BlockDma` device reaches nothing). On error, those detached so far
    /// are out of the table.
    fn detach_pasids(&mut self) -> Result<()> {
        let pasids: Vec<u32> = self.pasids.iter().map(|(p, _)| p).collect();
        for p in pasids {
            self.link.detach_pasid(p).map_err(|e| {
                Error::sys(
                    "VFIO_DEVICE_DETACH_IOMMUFD_PT",
                    format!("{} PASID {p}", self.name),
                    e,
                )
            })?;
            self.pasids.remove(p);
        }
        Ok(())
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
///
/// Example: [the `device` module docs](crate::device).
pub struct Device<S: State> {
    /// Boxed: a failed transition hands the device back inside a `Result`,
    /// which stays small this way.
    pub(crate) inner: Box<Inner>,
    state: PhantomData<S>,
}

impl<S: State> Device<S> {
    /// The device's name: its BDF, or its cdev path when opened by path.
    ///
    /// Example: [the `device` module docs](crate::device).
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

/// A fresh unbound device: no BARs, not bound, not attached.
fn unbound(link: Link, name: String) -> Device<Unbound> {
    make(Inner {
        bars: Default::default(),
        link,
        attached: None,
        hwpt: None,
        pasids: Default::default(),
        bound: None,
        regions: Default::default(),
        decoding: Default::default(),
        migration: OnceLock::new(),
        irqs_on: Default::default(),
        _mdev: sysfs::is_uuid(&name).then(|| crate::owner::OpenMdev::new(&name)),
        name,
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
    ///
    /// Example: [the `device` module docs](crate::device).
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
    ///
    /// Example: [the `device` module docs](crate::device).
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
    ///
    /// Example: [the `device` module docs](crate::device).
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
    ///
    /// Example: [the `device` module docs](crate::device).
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
    ///
    /// Example: [the `device` module docs](crate::device).
    pub fn attach<P: PageTable>(
        self,
        pt: &P,
    ) -> std::result::Result<Device<Attached<P>>, TransitionError<Self>> {
        match attach_pt(&self.inner, pt) {
            Ok(id) => {
                pt.pt_ioas().pinned();
                let mut inner = self.inner;
                inner.attached = Some((pt.pt_ioas().clone(), id));
                inner.hwpt = pt.pt_held();
                Ok(make(inner))
            }
            Err(e) => self.fail(e),
        }
    }
}

/// Refuses an IOAS of another iommufd (see [`Iommufd::check_own`]).
pub(crate) fn same_iommufd(inner: &Inner, ioas: &Ioas) -> Result<()> {
    let (fd, _) = inner.bound.as_ref().expect("bound state has an iommufd");
    fd.check_own(
        ioas.iommufd(),
        "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
        || format!("{} -> IOAS {}", inner.name, ioas.id()),
        "the IOAS",
    )
}

fn attach_pt<P: PageTable>(inner: &Inner, pt: &P) -> Result<u32> {
    let ioas = pt.pt_ioas();
    same_iommufd(inner, ioas)?;
    inner
        .link
        .attach(&inner.name, pt.pt_id(), ioas.space())
        .map_err(|e| {
            let e = ioas.reserved_error(&inner.name, e);
            ioas.unpinned_error(pt::rid_error(e, &inner.pasids, pt))
        })
}

impl<P: PageTable> Device<Attached<P>> {
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
    ///
    /// Example: [the `device` module docs](crate::device).
    pub fn replace<Q: PageTable>(
        self,
        to: &Q,
    ) -> std::result::Result<Device<Attached<Q>>, TransitionError<Replaced<P>>> {
        match self.replace_once(to) {
            Ok(d) => Ok(d),
            Err((d, e, false)) => Err(TransitionError::new(Fallback::Kept(d), e)),
            Err((d, e, true)) => {
                let old = d.page_table();
                let (back, e) = d.reattach(&old, e);
                Err(TransitionError::new(back, e))
            }
        }
    }

    /// One replace, no recovery: on error the device, the error, and
    /// whether its attachment to the old IOAS may be lost.
    pub(crate) fn replace_once<Q: PageTable>(
        self,
        to: &Q,
    ) -> std::result::Result<Device<Attached<Q>>, (Self, Error, bool)> {
        let ioas = to.pt_ioas();
        let moved = same_iommufd(&self.inner, ioas)
            .map_err(|e| (e, false))
            .and_then(|()| {
                self.inner
                    .link
                    .replace(
                        &self.inner.name,
                        self.ioas().space(),
                        (to.pt_id(), ioas.space()),
                    )
                    .map_err(|(e, lost)| {
                        let e = ioas.reserved_error(&self.inner.name, e);
                        let e = pt::rid_error(e, &self.inner.pasids, to);
                        (ioas.unpinned_error(e), lost)
                    })
            });
        match moved {
            Ok(pt) => {
                ioas.pinned();
                let mut inner = self.inner;
                inner.attached = Some((ioas.clone(), pt));
                inner.hwpt = to.pt_held();
                Ok(make(inner))
            }
            Err((e, lost)) => Err((self, e, lost)),
        }
    }

    /// The page table the device is attached to (a handle).
    pub fn page_table(&self) -> P {
        P::pt_from(self.ioas(), self.inner.hwpt.as_ref(), pt::sealed::Token(()))
    }

    /// Makes the device's attachment true again after a failure that may
    /// have lost it: detach (a known state, blocked), then attach to `ioas`
    /// (twice, for a transient shortage). Returns where the device is, and
    /// `e` saying so.
    #[cold]
    #[inline(never)]
    fn reattach(self, pt: &P, e: Error) -> (Replaced<P>, Error) {
        let id = pt.pt_id();
        let e = if self.inner.pasids.is_empty() {
            e
        } else {
            e.append_detail("its PASIDs were detached with it".to_string())
        };
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
        let blocked = match blocked.attach(pt) {
            Ok(d) => {
                return (
                    Fallback::Kept(d),
                    e.append_detail(format!(
                        "the device was detached and attached to page table {id} again, where it is now"
                    )),
                )
            }
            Err(ae) => ae.into_inner(),
        };
        match blocked.attach(pt) {
            Ok(d) => (Fallback::Kept(d), e.append_detail(format!(
                "the device was detached and attached to page table {id} again (at the second try), where it is now"
            ))),
            Err(ae) => {
                let (b, ae) = ae.into_parts();
                (Fallback::Blocked(b), e.append_detail(format!(
                    "the old attachment may be lost, and attaching to page table {id} again failed ({ae}): the device is blocked (BlockDma)"
                )))
            }
        }
    }

    /// Detaches (`VFIO_DEVICE_DETACH_IOMMUFD_PT`): the device's group goes back
    /// to the blocking domain, so DMA is blocked again. Any PASIDs attached
    /// ([`attach_pasid`](Self::attach_pasid)) are detached first, so that
    /// `BlockDma` blocks PASID-tagged DMA too.
    ///
    /// # Errors
    /// The device comes back attached; PASIDs detached before the failure
    /// stay detached ([`pasids`](Self::pasids) tells which remain).
    #[doc(alias = "VFIO_DEVICE_DETACH_IOMMUFD_PT")]
    ///
    /// Example: [the `device` module docs](crate::device).
    pub fn detach(mut self) -> std::result::Result<Device<BlockDma>, TransitionError<Self>> {
        // `BlockDma` blocks all the device's DMA: its PASIDs go first.
        if !self.inner.pasids.is_empty() {
            if let Err(e) = self.inner.detach_pasids() {
                return self.fail(e);
            }
        }
        match self
            .inner
            .link
            .detach(&self.inner.name, self.ioas().space())
        {
            Ok(()) => {
                let mut inner = self.inner;
                inner.attached = None;
                inner.hwpt = None;
                Ok(make(inner))
            }
            Err(e) => self.fail(e),
        }
    }

    /// The IOAS the device is attached to (an HWPT's IOAS, when the page table is one).
    ///
    /// Example: [the `device` module docs](crate::device).
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
    ///
    /// Example: [the `device` module docs](crate::device).
    pub fn hwpt_id(&self) -> u32 {
        self.inner
            .attached
            .as_ref()
            .expect("attached state has an IOAS")
            .1
    }
}

/// What a failed [`Device::replace`] hands back (see [`Fallback`]).
///
/// Example: [the `device` module docs](crate::device).
pub type Replaced<P = Ioas> = Fallback<Device<Attached<P>>, Device<BlockDma>>;

/// Methods for every bound state.
impl<S: Bound> Device<S> {
    /// The device id the iommufd gave at bind.
    ///
    /// Example: [the `device` module docs](crate::device).
    pub fn dev_id(&self) -> u32 {
        self.inner.bound.as_ref().map_or(0, |b| b.1)
    }

    /// The iommufd the device is bound to.
    ///
    /// Example: [the `device` module docs](crate::device).
    pub fn iommufd(&self) -> &Iommufd {
        &self
            .inner
            .bound
            .as_ref()
            .expect("bound state has an iommufd")
            .0
    }

    /// Unbinds by closing the fd and reopening the cdev: the kernel detaches
    /// the device, returns its group to the default domain, and the new fd is
    /// unbound. BAR mappings are torn down first.
    ///
    /// # Errors
    /// If the cdev cannot be reopened (or the device was made with
    /// [`Device::from_fd`]), the device comes back bound, BARs still mapped.
    ///
    /// Example: [the `device` module docs](crate::device).
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
    ///
    /// Example: [the `device` module docs](crate::device).
    pub fn close(self) {}

    pub(crate) fn device_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd()
    }
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
///
/// Example: [the `device` module docs](crate::device).
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
    ///
    /// Example: [the `device` module docs](crate::device).
    pub fn state(&self) -> &'static str {
        match self {
            AnyDevice::Unbound(_) => Unbound::NAME,
            AnyDevice::BlockDma(_) => BlockDma::NAME,
            AnyDevice::Attached(_) => <Attached<Ioas>>::NAME,
        }
    }

    /// The device's name.
    ///
    /// Example: [the `device` module docs](crate::device).
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
