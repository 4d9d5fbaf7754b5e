//! What a device's state names of a page table: the sealed [`PageTable`]
//! trait, the kinds an HWPT is allocated as, the handle a device holds of
//! the page table it is attached to, and its record of attached PASIDs.
//!
//! The layering: this file sits below the states (`device.rs`), which name
//! nothing else of page tables; the HWPT, vIOMMU and PASID files sit on top
//! of the states (they allocate for a device, and a device attaches to
//! what they make). A device holds its HWPT as a [`HeldPt`], the handle
//! with its kind erased: the type of the device says the kind, and
//! [`PageTable::pt_from`] rebuilds the typed handle from it.
//!
//! Public items are re-exported by [`crate::hwpt`], their home in the docs.

use crate::error::Error;
use crate::ioas::Ioas;
use crate::sys;
use nix::errno::Errno;
use std::any::Any;
use std::sync::Arc;

pub(crate) mod sealed {
    /// Seals [`PageTable`](super::PageTable), [`Kind`](super::Kind) and
    /// [`HwptDevice`](super::HwptDevice): only this crate's types.
    pub trait Sealed {}

    /// Proof that the caller is this crate: a trait method that takes one
    /// cannot be called from outside, though the trait is public. What
    /// rebuilds a typed page table from a handle takes it, so no caller
    /// can turn a plain HWPT into a `Hwpt<DirtyTracking>` or a
    /// `PasidHwpt` that the kernel never allocated as one.
    pub struct Token(pub(crate) ());

    /// A kind-erased handle of an HWPT (see [`Held`](super::Held)); clones
    /// share it. Public in [`PageTable`](super::PageTable)'s hidden
    /// methods, unnameable outside the crate.
    #[derive(Clone)]
    pub struct HeldPt(pub(super) std::sync::Arc<dyn super::Held>);
}

/// What a device attaches to: an [`Ioas`] (the kernel picks or makes the
/// page table) or an [`Hwpt`](crate::hwpt::Hwpt). Sealed.
pub trait PageTable: sealed::Sealed + Clone + Send + Sync + 'static {
    /// The attached state's name, for `Debug`.
    const STATE: &'static str;
    #[doc(hidden)]
    fn pt_id(&self) -> u32;
    #[doc(hidden)]
    fn pt_ioas(&self) -> &Ioas;
    #[doc(hidden)]
    fn pt_held(&self) -> Option<HeldPt>;
    #[doc(hidden)]
    fn pt_from(ioas: &Ioas, held: Option<&HeldPt>, _: sealed::Token) -> Self;
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
    fn pt_held(&self) -> Option<HeldPt> {
        None
    }
    #[inline]
    fn pt_from(ioas: &Ioas, _: Option<&HeldPt>, _: sealed::Token) -> Self {
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

/// An HWPT allocated with `IOMMU_HWPT_ALLOC_NEST_PARENT |
/// IOMMU_HWPT_ALLOC_DIRTY_TRACKING`: the stage-2 that nested HWPTs and
/// vIOMMUs sit on, tracking the pages their devices' DMA writes. Behind a
/// vIOMMU the guest's IOVAs change all the time; what stays put is the
/// stage-2 that maps guest-physical addresses, so that is where a
/// migration reads dirty pages. It is a [`Parent`] and it [`Tracks`].
#[derive(Debug)]
pub struct TrackedNestParent(());

/// A nested HWPT: a stage-1 page table the guest owns (vendor data), over
/// a [`Parent`] stage-2, which it holds.
#[derive(Debug)]
pub struct Nested(());

/// The kinds [`Hwpt::alloc`](crate::hwpt::Hwpt::alloc) makes from an IOAS (all but [`Nested`]).
pub trait Alloc: Kind {}
impl Alloc for Paging {}
impl Alloc for DirtyTracking {}
impl Alloc for NestParent {}
impl Alloc for TrackedNestParent {}

/// The kinds allocated with dirty tracking: [`DirtyTracking`] and
/// [`TrackedNestParent`]. Dirty reads exist on these only (rule 23).
/// Sealed.
pub trait Tracks: Kind {}
impl Tracks for DirtyTracking {}
impl Tracks for TrackedNestParent {}

/// The kinds allocated from an IOAS that take a fault queue
/// ([`Hwpt::alloc_with_faults`](crate::hwpt::Hwpt::alloc_with_faults)): [`Paging`] and [`DirtyTracking`]. Not
/// the nest parents: their devices' page requests belong to the nested
/// HWPTs on them (Linux 7.3 refuses `IOMMU_HWPT_FAULT_ID_VALID` with
/// `IOMMU_HWPT_ALLOC_NEST_PARENT`, `EOPNOTSUPP`, measured on the test
/// driver), so that is a type rule (`faults_on_a_nest_parent`). Sealed.
pub trait Faults: Alloc {}
impl Faults for Paging {}
impl Faults for DirtyTracking {}

/// The kinds allocated as nest parents, which nested HWPTs and vIOMMUs sit
/// on: [`NestParent`] and [`TrackedNestParent`] (rule 24). Sealed.
pub trait Parent: Kind {}
impl Parent for NestParent {}
impl Parent for TrackedNestParent {}

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
impl sealed::Sealed for TrackedNestParent {}
impl sealed::Sealed for Nested {}
impl Kind for Nested {
    const FLAGS: u32 = 0;
    const NAME: &'static str = "nested";
}
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
impl Kind for TrackedNestParent {
    const FLAGS: u32 = sys::IOMMU_HWPT_ALLOC_NEST_PARENT | sys::IOMMU_HWPT_ALLOC_DIRTY_TRACKING;
    const NAME: &'static str = "tracked nest-parent";
}
/// The kind erased (`Hwpt<()>`): what a nested HWPT holds of its parent.
impl sealed::Sealed for () {}
impl Kind for () {
    const FLAGS: u32 = 0;
    const NAME: &'static str = "any";
}

/// What a device holds of the HWPT it (or one of its PASIDs) is attached
/// to: a handle that keeps it alive, its kind erased. Implemented by the
/// HWPT's shared state in [`crate::hwpt`]; the states file names only this.
pub(crate) trait Held: Send + Sync + 'static {
    /// The HWPT's id in its iommufd.
    fn id(&self) -> u32;
    /// Whether it was allocated PASID-capable (`IOMMU_HWPT_ALLOC_PASID`).
    fn pasid_capable(&self) -> bool;
    /// Whether it was allocated with `IOMMU_HWPT_ALLOC_DIRTY_TRACKING`.
    fn dirty_tracking(&self) -> bool;
    /// The handle as `Any`, for [`HeldPt::downcast`] (trait upcasting is
    /// newer than the crate's minimum Rust).
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

pub(crate) use sealed::HeldPt;

impl HeldPt {
    pub(crate) fn new(h: Arc<dyn Held>) -> HeldPt {
        HeldPt(h)
    }

    #[inline]
    pub(crate) fn id(&self) -> u32 {
        self.0.id()
    }

    pub(crate) fn pasid_capable(&self) -> bool {
        self.0.pasid_capable()
    }

    /// The shared state behind the handle, if it is a `T`.
    pub(crate) fn downcast<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.0.clone().into_any().downcast().ok()
    }
}

impl std::fmt::Debug for HeldPt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HWPT {}", self.id())
    }
}

/// The PASIDs of one device and what each is attached to (the handles are
/// kept here while attached), and how many PASIDs the device has. The
/// checks and the kernel calls that change it are in [`crate::pasid`].
#[derive(Debug, Default)]
pub(crate) struct PasidTable {
    attached: Vec<(u32, HeldPt)>,
    /// `max_pasid_log2` from `IOMMU_GET_HW_INFO`, and whether the IOMMU
    /// tracks dirty pages, asked at the first attach: neither can change
    /// while the device is bound.
    pub(crate) caps: Option<(u8, bool)>,
}

impl PasidTable {
    fn find(&self, pasid: u32) -> Option<usize> {
        self.attached.iter().position(|(p, _)| *p == pasid)
    }

    /// The HWPT id `pasid` is attached to.
    pub(crate) fn get(&self, pasid: u32) -> Option<u32> {
        self.find(pasid).map(|i| self.attached[i].1.id())
    }

    /// Each attached PASID and its HWPT's id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.attached.iter().map(|(p, h)| (*p, h.id()))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.attached.is_empty()
    }

    /// Records that `pasid` is now attached to `hwpt`.
    pub(crate) fn set(&mut self, pasid: u32, hwpt: HeldPt) {
        match self.find(pasid) {
            Some(i) => self.attached[i].1 = hwpt,
            None => self.attached.push((pasid, hwpt)),
        }
    }

    pub(crate) fn remove(&mut self, pasid: u32) {
        if let Some(i) = self.find(pasid) {
            self.attached.swap_remove(i);
        }
    }
}

/// An attach or replace refused with `EINVAL` onto a page table that
/// tracks dirty pages, by a device whose IOMMU has no dirty tracking
/// (`device_tracks`, asked only now, says so): named, since the kernel does
/// not let such a device join. Otherwise `err` as it is.
#[cold]
pub(crate) fn dirty_error<P: PageTable>(
    err: Error,
    pt: &P,
    device_tracks: impl FnOnce() -> Option<bool>,
) -> Error {
    if err.raw_errno() != Some(Errno::EINVAL)
        || !pt.pt_held().is_some_and(|h| h.0.dirty_tracking())
        || device_tracks() != Some(false)
    {
        return err;
    }
    err.kind_(crate::error::ErrorKind::Unsupported)
        .detail("the page table tracks dirty pages (IOMMU_HWPT_ALLOC_DIRTY_TRACKING), and the IOMMU behind this device has none (IOMMU_HW_CAP_DIRTY_TRACKING is not among its hw_info capabilities): the kernel does not let it join")
        .hint("attach it to a page table without dirty tracking, and track its DMA another way (Migration::log_dma)")
}

/// A RID attach or replace refused (`EINVAL`) because PASIDs are attached
/// and the target `pt` is not PASID-capable gets that said; any other error
/// comes back as it is.
#[cold]
pub(crate) fn rid_error<P: PageTable>(err: Error, pasids: &PasidTable, pt: &P) -> Error {
    let pasid_capable = pt.pt_held().is_some_and(|h| h.pasid_capable());
    if pasids.is_empty() || pasid_capable || err.raw_errno() != Some(Errno::EINVAL) {
        return err;
    }
    let list: Vec<String> = pasids.iter().map(|(p, _)| p.to_string()).collect();
    err.detail(format!(
        "PASIDs {} of the device are attached, so its RID may only go to a PASID-capable page table (a PasidHwpt)",
        list.join(", ")
    ))
}
