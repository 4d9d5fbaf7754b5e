//! Taking over a device another process bound (live update: see
//! [`handover`](crate::handover)).

use super::{lone_device_name, make, unbound, Attached, Device};
use crate::backend::{cdev, Link};
use crate::error::{Error, ErrorKind, Result, TransitionError};
use crate::ioas::Ioas;
use crate::sys::{self, vfio};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

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
}
