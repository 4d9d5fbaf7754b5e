//! PASIDs: DMA a device tags with a Process Address Space ID goes through
//! a page table of its own, attached apart from the device's RID (its
//! untagged DMA). The merged form of the seed's Stage-3 "sub-group".
//!
//! PASIDs attach beside the RID of an attached device
//! (`Device<Attached<_>>`), any number of them, so they are not
//! transitions but operations, typed apart from the RID's:
//! [`Device::attach_pasid`], [`Device::replace_pasid`],
//! [`Device::detach_pasid`], each taking a checked [`Pasid`], never a bare
//! number, and a [`PasidHwpt`], never an [`Ioas`]. A
//! [`BlockDma`](crate::BlockDma) device has none: the kernel would let
//! PASIDs attach to a device whose RID is blocked, but then `BlockDma`
//! would no longer mean that the device's DMA is blocked. So
//! [`Device::detach`] detaches the PASIDs with the RID, and
//! `attach_pasid` does not exist on `BlockDma` (rule 27).
//!
//! The kernel's rules (iommufd, Linux 6.15 and later), and where they are
//! kept:
//! - The page table of a PASID must be allocated PASID-capable
//!   (`IOMMU_HWPT_ALLOC_PASID`). The page table the kernel makes for an
//!   IOAS is not, so a PASID takes a [`PasidHwpt`] only: in the type.
//! - While any PASID is attached, the RID's page table must be
//!   PASID-capable too: attach or replace the RID onto a [`PasidHwpt`]
//!   first (it is a [`PageTable`]). Checked by the kernel; its `EINVAL` is
//!   explained with what the device is attached to.
//! - The device must have the PASID capability, and the IOMMU PASID
//!   support ([`HwInfo::pasid`](crate::HwInfo::pasid)); the PASID must be
//!   below `2^max_pasid_log2`. The kernel checks the width, but it accepts
//!   a PASID attach of a device that has no PASIDs at all and does nothing
//!   with it (Linux 7.3, measured with edu on emulated VT-d: the IOMMU
//!   core skips such devices), leaving the caller believing in a page
//!   table the device never uses. So the crate checks both, with
//!   `IOMMU_GET_HW_INFO` asked once per device at its first PASID attach
//!   (it cannot change while the device is bound).
//! - Attaching a PASID that is attached is a replace in the kernel; here
//!   [`attach_pasid`](Device::attach_pasid) refuses it and
//!   [`replace_pasid`](Device::replace_pasid) refuses a PASID that is not
//!   attached, so neither silently does the other's job.
//! - Unbinding detaches every PASID (the kernel does it, and the device's
//!   table of them goes with the value).
//!
//! The memory model is unchanged: a PASID's page table is built from an
//! IOAS, whose mappings own their memory.
//!
//! ```no_run
//! use iommufd::hwpt::Paging;
//! use iommufd::pasid::{Pasid, PasidHwpt};
//! # fn f(fd: &iommufd::Iommufd, dev: iommufd::Device<iommufd::BlockDma>) -> Result<(), Box<dyn std::error::Error>> {
//! let ioas = fd.alloc_ioas()?;
//! let rid = PasidHwpt::<Paging>::alloc(&dev, &ioas)?;
//! let mut dev = dev.attach(&rid).map_err(iommufd::Error::from)?; // the RID, PASID-capable
//! let sva = fd.alloc_ioas()?;
//! let table = PasidHwpt::<Paging>::alloc(&dev, &sva)?;
//! dev.attach_pasid(Pasid::new(1)?, &table)?; // DMA tagged PASID 1 -> `sva`
//! dev.detach_pasid(Pasid::new(1)?)?;
//! # Ok(()) }
//! ```

use crate::device::{Attached, Bound, Device};
use crate::error::{Error, ErrorKind, Result};
use crate::hwpt::{
    sealed, Alloc, Hwpt, HwptDevice, Kind, Nested, PageTable, Paging, Parent, Stage1,
};
use crate::ioas::Ioas;
use crate::pt::{HeldPt, PasidTable};
use crate::sys;
use nix::errno::Errno;
use std::fmt;
use std::ops::Deref;

/// A PASID: `1..=0xf_ffff` (20 bits; 0 is the RID's, `IOMMU_NO_PASID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pasid(u32);

impl Pasid {
    /// The largest PASID PCIe can carry.
    pub const MAX: u32 = (1 << 20) - 1;

    /// `n` as a PASID.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for 0 (the RID's) and above [`Pasid::MAX`].
    pub fn new(n: u32) -> Result<Pasid> {
        if n == 0 || n > Self::MAX {
            return Err(
                Error::new(ErrorKind::InvalidInput, "PASID", n.to_string()).detail(
                    "a PASID is 1..=0xfffff: 0 is the device's RID (its untagged DMA), which attaches with Device::attach",
                ),
            );
        }
        Ok(Pasid(n))
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Pasid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PASID {}", self.0)
    }
}

/// An [`Hwpt`] allocated PASID-capable (`IOMMU_HWPT_ALLOC_PASID`): what a
/// PASID attaches to, and what the RID must be attached to while any PASID
/// is. Everything an `Hwpt<K>` does it does (it derefs to one); it is a
/// [`PageTable`] for the RID too.
pub struct PasidHwpt<K = Paging>(Hwpt<K>);

impl<K: Alloc> PasidHwpt<K> {
    /// Allocates a PASID-capable HWPT of kind `K` on `ioas` for the IOMMU
    /// behind `dev` (`IOMMU_HWPT_ALLOC` with `IOMMU_HWPT_ALLOC_PASID`).
    ///
    /// # Errors
    /// As [`Hwpt::alloc`]; `EOPNOTSUPP` names the flag the IOMMU refuses.
    #[doc(alias = "IOMMU_HWPT_ALLOC_PASID")]
    pub fn alloc(dev: &impl HwptDevice, ioas: &Ioas) -> Result<Self> {
        Hwpt::alloc_with(dev, ioas, sys::IOMMU_HWPT_ALLOC_PASID, None, None).map(PasidHwpt)
    }
}

impl<K: crate::hwpt::Faults> PasidHwpt<K> {
    /// As [`alloc`](Self::alloc), with the page requests of what is
    /// attached to it going to `faults` (see [`Hwpt::alloc_with_faults`]).
    ///
    /// # Errors
    /// As [`Hwpt::alloc_with_faults`].
    pub fn alloc_with_faults(
        dev: &impl HwptDevice,
        ioas: &Ioas,
        faults: &crate::iopf::FaultQueue,
    ) -> Result<Self> {
        Hwpt::alloc_with(dev, ioas, sys::IOMMU_HWPT_ALLOC_PASID, None, Some(faults)).map(PasidHwpt)
    }
}

impl PasidHwpt<Nested> {
    /// A PASID-capable nested HWPT over `parent`: a guest's stage-1 for a
    /// PASID (guest SVA: a guest process's page table, at the PASID the
    /// guest gave it). The nested HWPT holds its parent.
    ///
    /// # Errors
    /// As [`Hwpt::alloc_nested`].
    pub fn alloc_nested<P: Parent>(
        dev: &impl HwptDevice,
        parent: &Hwpt<P>,
        stage1: &Stage1,
    ) -> Result<Self> {
        let parent = parent.as_parent();
        Hwpt::nested(dev, &parent, stage1, None, sys::IOMMU_HWPT_ALLOC_PASID).map(PasidHwpt)
    }

    /// As [`alloc_nested`](Self::alloc_nested), with the page requests at
    /// its PASID going to `faults` (guest SVA with page faults).
    ///
    /// # Errors
    /// As [`Hwpt::alloc_nested_with_faults`].
    pub fn alloc_nested_with_faults<P: Parent>(
        dev: &impl HwptDevice,
        parent: &Hwpt<P>,
        stage1: &Stage1,
        faults: &crate::iopf::FaultQueue,
    ) -> Result<Self> {
        let parent = parent.as_parent();
        Hwpt::nested(
            dev,
            &parent,
            stage1,
            Some(faults),
            sys::IOMMU_HWPT_ALLOC_PASID,
        )
        .map(PasidHwpt)
    }

    /// As [`alloc_nested`](Self::alloc_nested), on a vIOMMU (see
    /// [`Hwpt::alloc_nested_on`]).
    ///
    /// # Errors
    /// As [`Hwpt::alloc_nested_on`].
    pub fn alloc_nested_on(
        dev: &impl HwptDevice,
        viommu: &crate::viommu::Viommu,
        stage1: &Stage1,
    ) -> Result<Self> {
        Hwpt::nested_on(dev, viommu, stage1, None, sys::IOMMU_HWPT_ALLOC_PASID).map(PasidHwpt)
    }

    /// As [`alloc_nested_on`](Self::alloc_nested_on), with the page
    /// requests at its PASID going to `faults`.
    ///
    /// # Errors
    /// As [`Hwpt::alloc_nested_on_with_faults`].
    pub fn alloc_nested_on_with_faults(
        dev: &impl HwptDevice,
        viommu: &crate::viommu::Viommu,
        stage1: &Stage1,
        faults: &crate::iopf::FaultQueue,
    ) -> Result<Self> {
        Hwpt::nested_on(
            dev,
            viommu,
            stage1,
            Some(faults),
            sys::IOMMU_HWPT_ALLOC_PASID,
        )
        .map(PasidHwpt)
    }
}

impl<K> PasidHwpt<K> {
    /// The HWPT, as its kind.
    pub fn hwpt(&self) -> &Hwpt<K> {
        &self.0
    }
}

impl<K> Deref for PasidHwpt<K> {
    type Target = Hwpt<K>;
    fn deref(&self) -> &Hwpt<K> {
        &self.0
    }
}

impl<K> Clone for PasidHwpt<K> {
    fn clone(&self) -> Self {
        PasidHwpt(self.0.clone())
    }
}

impl<K: Kind> fmt::Debug for PasidHwpt<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PasidHwpt").field(&self.0).finish()
    }
}

impl<K: Kind> sealed::Sealed for PasidHwpt<K> {}
impl<K: Kind> PageTable for PasidHwpt<K> {
    const STATE: &'static str = "Attached<PasidHwpt>";
    #[inline]
    fn pt_id(&self) -> u32 {
        self.0.pt_id()
    }
    #[inline]
    fn pt_ioas(&self) -> &Ioas {
        self.0.pt_ioas()
    }
    #[inline]
    fn pt_held(&self) -> Option<HeldPt> {
        self.0.pt_held()
    }
    #[inline]
    fn pt_from(ioas: &Ioas, hwpt: Option<&HeldPt>, t: sealed::Token) -> Self {
        // The device's state says `Attached<PasidHwpt<K>>`: what it holds
        // was allocated as one.
        PasidHwpt(Hwpt::pt_from(ioas, hwpt, t))
    }
}

/// What to do with a PASID: for the checks and the messages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PasidOp {
    Attach,
    Replace,
    Detach,
}

impl PasidOp {
    fn name(self) -> &'static str {
        match self {
            PasidOp::Attach => "attach PASID",
            PasidOp::Replace => "replace PASID",
            PasidOp::Detach => "detach PASID",
        }
    }
}

/// The checks and kernel calls that change a device's [`PasidTable`] (the
/// record is below the states, in `pt.rs`; what changes it is here).
impl PasidTable {
    /// Refuses an attach of an attached PASID and a replace or detach of
    /// one that is not: before the ioctl, because the kernel would do the
    /// other operation instead of failing.
    pub(crate) fn check(&self, name: &str, op: PasidOp, pasid: Pasid) -> Result<()> {
        match (op, self.get(pasid.0)) {
            (PasidOp::Attach, Some(id)) => Err(Error::new(
                ErrorKind::InvalidInput,
                op.name(),
                format!("{name} {pasid}"),
            )
            .detail(format!("{pasid} is attached already (to HWPT {id})"))
            .hint("replace_pasid moves it to another page table in one step")),
            (PasidOp::Replace | PasidOp::Detach, None) => Err(Error::new(
                ErrorKind::InvalidInput,
                op.name(),
                format!("{name} {pasid}"),
            )
            .detail(format!("{pasid} is not attached"))),
            _ => Ok(()),
        }
    }

    /// Refuses a PASID the device cannot use: none at all
    /// (`max_pasid_log2` 0), or one beyond its width. The kernel checks
    /// the width, but accepts a PASID attach of a device without PASIDs
    /// and does nothing with it (Linux 7.3, measured with edu on VT-d:
    /// the IOMMU core skips devices whose `max_pasids` is 0), so a caller
    /// would believe in a page table the device never uses. Likewise a
    /// PASID onto a page table that tracks dirty pages (`tracks`) when the
    /// device's IOMMU has no dirty tracking: the test driver takes it
    /// (Linux 7.3, measured), and the PASID's writes would never be
    /// recorded. Asks `IOMMU_GET_HW_INFO` once per device.
    pub(crate) fn check_capable(
        &mut self,
        (fd, dev_id, name): (&crate::Iommufd, u32, &str),
        op: PasidOp,
        pasid: Pasid,
        (hwpt, tracks): (u32, bool),
    ) -> Result<()> {
        let (bits, dirty) = match self.caps {
            Some(caps) => caps,
            None => {
                let info = crate::hwpt::hw_info_of(fd, dev_id, name)?;
                *self
                    .caps
                    .insert((info.max_pasid_log2, info.dirty_tracking()))
            }
        };
        if tracks && !dirty {
            return Err(Error::new(ErrorKind::Unsupported, op.name(), format!("{name} {pasid}"))
                .detail(format!("HWPT {hwpt} tracks dirty pages and {name}'s IOMMU has no dirty tracking (IOMMU_GET_HW_INFO): what {pasid} writes would never show in the dirty bitmap"))
                .hint("attach it to a page table that does not track (a migration must then copy what it maps whole)"));
        }
        if bits == 0 {
            return Err(Error::new(ErrorKind::Unsupported, op.name(), format!("{name} {pasid}"))
                .detail(format!("{name} cannot use PASIDs: IOMMU_GET_HW_INFO reports max_pasid_log2 0 (the device has no PASID capability, or its IOMMU no PASID support; emulated VT-d has none). The kernel would accept the attach and do nothing with it")));
        }
        if bits < 32 && u64::from(pasid.0) >= 1u64 << bits {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                op.name(),
                format!("{name} {pasid}"),
            )
            .detail(format!(
                "{pasid} is beyond the device's {} PASIDs (max_pasid_log2 {bits})",
                1u64 << bits
            )));
        }
        Ok(())
    }

    /// What an attach and a replace share on every kind of device: the
    /// checks (an `hwpt` of this iommufd, attach is not replace, a device
    /// with PASIDs), the kernel's `call(pasid, hwpt id)`, the record. On
    /// the kernel's error, `op_name` and `rid_pasid_capable` (whether the
    /// RID's page table is; the RID is attached, rule 27) make the
    /// explanation.
    pub(crate) fn change<K: Kind>(
        &mut self,
        dev: (&crate::Iommufd, u32, &str),
        (op, op_name): (PasidOp, &'static str),
        (pasid, hwpt): (Pasid, &PasidHwpt<K>),
        rid_pasid_capable: bool,
        call: impl FnOnce(u32, u32) -> std::result::Result<(), Errno>,
        readback: impl FnOnce(u32, Option<u32>, u32) -> Option<Option<u32>>,
    ) -> Result<()> {
        let (fd, _, name) = dev;
        fd.check_own(
            hwpt.ioas().iommufd(),
            op_name,
            || format!("{name} {pasid}"),
            "the page table",
        )?;
        self.check(name, op, pasid)?;
        self.check_capable(dev, op, pasid, (hwpt.id(), hwpt.tracks_dirty()))?;
        match call(pasid.0, hwpt.id()) {
            Ok(()) => {
                self.set(pasid.0, hwpt.held());
                Ok(())
            }
            Err(e) => {
                let err = Error::sys(
                    op_name,
                    format!("{name} {pasid} -> HWPT {} ({})", hwpt.id(), op.name()),
                    e,
                );
                let err = attach_error(err, rid_pasid_capable, e);
                Err(self.follow(pasid, hwpt.held(), err, readback))
            }
        }
    }

    /// After a failed attach or replace: the record follows where the
    /// kernel left the PASID, where the device can say (`readback(pasid,
    /// old hwpt, new hwpt)`: `Some(Some(id))` on `id`, `Some(None)` on
    /// nothing, `None` unknown). An ioctl can fail after the kernel moved,
    /// at the copy of its result (`EFAULT`), and the kernel does not undo
    /// the move then.
    #[cold]
    fn follow(
        &mut self,
        pasid: Pasid,
        new: HeldPt,
        err: Error,
        readback: impl FnOnce(u32, Option<u32>, u32) -> Option<Option<u32>>,
    ) -> Error {
        let old = self.get(pasid.0);
        match readback(pasid.0, old, new.id()) {
            Some(Some(id)) if id == new.id() => {
                self.set(pasid.0, new);
                err.append_detail(format!(
                    "the kernel had attached {pasid} to HWPT {id} before failing (read back): it is there now"
                ))
            }
            Some(None) if old.is_some() => {
                self.remove(pasid.0);
                err.append_detail(format!(
                    "the kernel left {pasid} attached to nothing (read back): its DMA is blocked"
                ))
            }
            _ => err,
        }
    }
}

/// Explains a refused PASID attach; `rid_pasid_capable`: whether the
/// RID's page table is PASID-capable.
#[cold]
fn attach_error(err: Error, rid_pasid_capable: bool, e: Errno) -> Error {
    if e == Errno::ENOTTY {
        return err.kind_(ErrorKind::Unsupported).detail(
            "no PASID attach on the legacy group path: it needs the VFIO device cdev bound to /dev/iommu",
        );
    }
    if !matches!(e, Errno::EINVAL | Errno::EOPNOTSUPP) {
        return err;
    }
    match crate::diagnose::kernel_version() {
        Some((major, minor)) if (major, minor) < (6, 15) => {
            err.kind_(ErrorKind::Unsupported).detail(format!(
                "Linux {major}.{minor} has no PASID attach (VFIO_DEVICE_ATTACH_PASID and PASID-capable page tables came in 6.15)"
            ))
        }
        _ if !rid_pasid_capable => err.kind_(ErrorKind::InvalidInput).detail(
            "the device's RID is attached to a page table that is not PASID-capable; while PASIDs are attached the RID's must be one",
        ).hint("move the RID onto a PasidHwpt first (Device::replace), then attach the PASID"),
        _ if e == Errno::EOPNOTSUPP => err.kind_(ErrorKind::Unsupported).detail(
            "the IOMMU's driver does not attach PASIDs of this device",
        ),
        _ => err,
    }
}

impl<P: PageTable> Device<Attached<P>> {
    /// Attaches `pasid` of the device to `hwpt`
    /// (`VFIO_DEVICE_ATTACH_IOMMUFD_PT` with `VFIO_DEVICE_ATTACH_PASID`):
    /// the device's DMA tagged with it goes through `hwpt`. The RID's
    /// attachment is unchanged, and must be PASID-capable (see the
    /// [module docs](crate::pasid)).
    ///
    /// # Errors
    /// A PASID that is attached already (use
    /// [`replace_pasid`](Self::replace_pasid)), an HWPT of another iommufd;
    /// [`ErrorKind::Unsupported`] when the device or its IOMMU has no
    /// PASID, before Linux 6.15 and on the legacy path, each named.
    #[doc(alias = "VFIO_DEVICE_ATTACH_PASID")]
    pub fn attach_pasid<K: Kind>(&mut self, pasid: Pasid, hwpt: &PasidHwpt<K>) -> Result<()> {
        self.change_pasid(PasidOp::Attach, pasid, hwpt)
    }

    /// Moves the attached `pasid` to `hwpt` in one ioctl (the kernel's
    /// atomic replace).
    ///
    /// # Errors
    /// A PASID that is not attached; as [`attach_pasid`](Self::attach_pasid).
    pub fn replace_pasid<K: Kind>(&mut self, pasid: Pasid, hwpt: &PasidHwpt<K>) -> Result<()> {
        self.change_pasid(PasidOp::Replace, pasid, hwpt)
    }

    fn change_pasid<K: Kind>(
        &mut self,
        op: PasidOp,
        pasid: Pasid,
        hwpt: &PasidHwpt<K>,
    ) -> Result<()> {
        let inner = &mut *self.inner;
        let (fd, dev_id) = inner.bound.as_ref().expect("bound state");
        // Attached (this impl's state): is the RID's page table PASID-capable?
        let rid = inner.hwpt.as_ref().is_some_and(HeldPt::pasid_capable);
        let link = &inner.link;
        inner.pasids.change(
            (fd, *dev_id, &inner.name),
            (op, "VFIO_DEVICE_ATTACH_IOMMUFD_PT"),
            (pasid, hwpt),
            rid,
            |p, h| link.attach_pasid(p, h).map(drop),
            // VFIO has no query of a device's PASIDs.
            |_, _, _| None,
        )
    }

    /// Detaches `pasid` (`VFIO_DEVICE_DETACH_IOMMUFD_PT` with
    /// `VFIO_DEVICE_DETACH_PASID`): its DMA is blocked again.
    ///
    /// # Errors
    /// A PASID that is not attached.
    pub fn detach_pasid(&mut self, pasid: Pasid) -> Result<()> {
        self.inner
            .pasids
            .check(&self.inner.name, PasidOp::Detach, pasid)?;
        match self.inner.link.detach_pasid(pasid.0) {
            Ok(()) => {
                self.inner.pasids.remove(pasid.0);
                Ok(())
            }
            Err(e) => Err(Error::sys(
                "VFIO_DEVICE_DETACH_IOMMUFD_PT",
                format!("{} {pasid}", self.inner.name),
                e,
            )),
        }
    }
}

impl<S: Bound> Device<S> {
    /// The HWPT id `pasid` is attached to, if it is.
    pub fn pasid_hwpt(&self, pasid: Pasid) -> Option<u32> {
        self.inner.pasids.get(pasid.0)
    }

    /// The attached PASIDs and their HWPT ids.
    pub fn pasids(&self) -> impl Iterator<Item = (Pasid, u32)> + '_ {
        self.inner.pasids.iter().map(|(p, h)| (Pasid(p), h))
    }
}
