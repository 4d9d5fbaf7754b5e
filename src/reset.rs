//! Device reset (`VFIO_DEVICE_RESET`) and group-aware PCI hot reset (`VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`,
//! `VFIO_DEVICE_PCI_HOT_RESET`).
//!
//! A hot reset is a secondary bus reset (or a slot reset): it resets every
//! device on the bus or slot, whoever holds them. The kernel demands that
//! the caller own them all; the crate goes further and resets only through
//! a value that *holds* every affected device: a bound [`Device`] whose
//! reset affects only itself, or a bound [`Group`] whose reset affects only
//! its members. A device or group in [`Unbound`](crate::Unbound) state, a
//! [`Released`](crate::Released) member, or a group opened with some
//! members missing cannot reset the others behind the caller's back: the
//! first have no such method, the last is refused at run time, naming the
//! device it does not hold.
//!
//! ```no_run
//! # fn f(mut group: iommufd::Group<iommufd::BlockDma>) -> iommufd::Result<()> {
//! for d in group.hot_reset_info()?.devices {
//!     println!("a hot reset resets {}", d.bdf);
//! }
//! group.hot_reset()?; // every member, at once
//! # Ok(()) }
//! ```

use crate::device::{Bound, Device};
use crate::error::{Error, ErrorKind, Result};
use crate::group::Group;
use std::fmt;

/// A device a hot reset affects.
#[derive(Debug, Clone, PartialEq, Eq)]
///
/// Example: [the `reset` module docs](crate::reset).
pub struct Affected {
    /// Its PCI address, `ssss:bb:dd.f`.
    pub bdf: String,
    /// Whether the value the info was asked through holds it.
    pub held: bool,
}

/// What a hot reset would reset.
#[derive(Debug, Clone, PartialEq, Eq)]
///
/// Example: [the `reset` module docs](crate::reset).
pub struct HotResetInfo {
    /// Every device the reset affects, the caller's included.
    pub devices: Vec<Affected>,
}

impl HotResetInfo {
    /// Whether every affected device is held.
    ///
    /// Example: [the `reset` module docs](crate::reset).
    pub fn all_held(&self) -> bool {
        self.devices.iter().all(|d| d.held)
    }
}

impl fmt::Display for HotResetInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self
            .devices
            .iter()
            .map(|d| format!("{}{}", d.bdf, if d.held { "" } else { " (not held)" }))
            .collect();
        f.write_str(&list.join(", "))
    }
}

/// The affected set seen from `via`, marked against the members `held`.
fn info<S: Bound>(via: &Device<S>, held: &[&Device<S>]) -> Result<HotResetInfo> {
    let link = &via.inner.link;
    let (_, devices) = link.hot_reset_info(via.name()).map_err(no_reset)?;
    // A device is held when the kernel lists it under the id this value
    // holds it by *and* at its name: the id of an adopted device comes from
    // a handover message, and a wrong one must not make another device
    // count as held (nor this one: then the reset is refused).
    let ids: Vec<(u32, &str)> = held
        .iter()
        .map(|d| (d.inner.link.reset_id(d.dev_id()), d.name()))
        .collect();
    Ok(HotResetInfo {
        devices: devices
            .into_iter()
            .map(|(id, seg, bus, devfn)| {
                let bdf = format!("{seg:04x}:{bus:02x}:{:02x}.{}", devfn >> 3, devfn & 7);
                // 0 and -1 (cdev: "owned through the group but not opened",
                // "not owned") are never a held device's id.
                let held = id != 0 && id != u32::MAX && ids.contains(&(id, bdf.as_str()));
                Affected { bdf, held }
            })
            .collect(),
    })
}

#[cold]
fn no_reset(e: Error) -> Error {
    if e.raw_errno() == Some(nix::errno::Errno::ENODEV) {
        e.kind_(ErrorKind::Unsupported)
            .detail("the device has no bus or slot reset (alone on the root bus, or its bridge cannot reset)")
            .hint("Device::reset for a function-level reset, if DeviceInfo::can_reset says it has one")
    } else {
        e
    }
}

/// Resets through `via` after checking that `held` holds every affected device.
fn reset<S: Bound>(via: &Device<S>, held: &[&Device<S>]) -> Result<()> {
    let i = info(via, held)?;
    if !i.all_held() {
        let not: Vec<&str> = i
            .devices
            .iter()
            .filter(|d| !d.held)
            .map(|d| d.bdf.as_str())
            .collect();
        return Err(
            Error::new(ErrorKind::Busy, "VFIO_DEVICE_PCI_HOT_RESET", via.name().to_string())
                .detail(format!(
                    "the reset would also reset {}, which this value does not hold (it resets {i})",
                    not.join(", ")
                ))
                .hint("open and bind every affected device in one Group (or one iommufd), and reset through it"),
        );
    }
    via.inner.link.hot_reset(via.name())
}

impl<S: Bound> Device<S> {
    /// Resets the device (`VFIO_DEVICE_RESET`).
    ///
    /// A reset changes what the kernel holds for the device behind any
    /// value that borrows it, so it takes `&mut self`: it cannot be reached
    /// through a shared borrow. A migration lends its device only as `&`
    /// (a reset would take a device in PRE_COPY back to RUNNING behind its
    /// `Migration<PreCopy>`), and a BAR exported as a dma-buf
    /// ([`export_bar`](Self::export_bar)) borrows the device (the kernel
    /// revokes the export at a reset, and a peer's mapping of it would
    /// reach nothing): `ui-tests` `reset_in_pre_copy`, `reset_while_bar_exported`.
    ///
    /// # Errors
    /// `EINVAL` when the device has no reset method ([`DeviceInfo::can_reset`](crate::DeviceInfo::can_reset) is false).
    #[doc(alias = "VFIO_DEVICE_RESET")]
    pub fn reset(&mut self) -> Result<()> {
        crate::sys::device_reset(self.inner.fd()).map(drop).map_err(|e| {
            let err = Error::sys("VFIO_DEVICE_RESET", self.inner.name.clone(), e);
            if e == nix::errno::Errno::EINVAL {
                err.detail("the device offers no reset (no FLR, PM or bus reset); check DeviceInfo::can_reset")
            } else {
                err
            }
        })
    }

    /// What a hot reset of this device would reset
    /// (`VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`).
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] (`ENODEV`) when the device has no bus or
    /// slot reset.
    #[doc(alias = "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO")]
    ///
    /// Example: [the `reset` module docs](crate::reset).
    pub fn hot_reset_info(&self) -> Result<HotResetInfo> {
        info(self, &[self])
    }

    /// Hot-resets the device's bus or slot (`VFIO_DEVICE_PCI_HOT_RESET`),
    /// when that resets this device alone. `&mut self`, as [`reset`](Self::reset).
    ///
    /// # Errors
    /// [`ErrorKind::Busy`], naming them, when the reset would also reset
    /// other devices (open them together as a [`Group`], or reset through the
    /// value that holds them all); [`ErrorKind::Unsupported`] with no bus or
    /// slot reset.
    #[doc(alias = "VFIO_DEVICE_PCI_HOT_RESET")]
    ///
    /// Example: [the `reset` module docs](crate::reset).
    pub fn hot_reset(&mut self) -> Result<()> {
        reset(self, &[self])
    }
}

impl<S: Bound> Group<S> {
    /// What a hot reset through the group's first member would reset.
    ///
    /// # Errors
    /// As [`Device::hot_reset_info`].
    ///
    /// Example: [the `reset` module docs](crate::reset).
    pub fn hot_reset_info(&self) -> Result<HotResetInfo> {
        let members: Vec<&Device<S>> = self.members().iter().collect();
        info(first(&members, self.number())?, &members)
    }

    /// Hot-resets the bus or slot of the group's members, when every device
    /// it affects is a member this group holds. `&mut self`, as
    /// [`Device::reset`]: no member is borrowed meanwhile.
    ///
    /// # Errors
    /// As [`Device::hot_reset`]; a member not opened with the group
    /// ([`Group::open_members`]) counts as not held.
    ///
    /// Example: [the `reset` module docs](crate::reset).
    pub fn hot_reset(&mut self) -> Result<()> {
        let members: Vec<&Device<S>> = self.members().iter().collect();
        reset(first(&members, self.number())?, &members)
    }
}

fn first<'a, S: Bound>(members: &[&'a Device<S>], group: u32) -> Result<&'a Device<S>> {
    members.first().copied().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            "VFIO_DEVICE_PCI_HOT_RESET",
            format!("IOMMU group {group}"),
        )
        .detail("the group holds no member to reset through")
    })
}
