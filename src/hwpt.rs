//! Hardware page tables (`IOMMU_HWPT_ALLOC`) and what the IOMMU behind a
//! device can do (`IOMMU_GET_HW_INFO`).
//!
//! An [`Ioas`] is the address space; an [`Hwpt`] is one IOMMU page table
//! built from it, allocated for a device's IOMMU, with flags that change
//! what it can do. A device attaches to either: [`Device::attach`] takes
//! any [`PageTable`], and the state says which (`Device<Attached<Ioas>>`,
//! `Device<Attached<Hwpt>>`). Mappings still go through the IOAS, with the
//! crate's memory model unchanged: the HWPT holds its IOAS, and every
//! mapping of the IOAS is in the HWPT.
//!
//! What a page table can do is in its type: `Hwpt<Paging>` is a plain
//! page table; `Hwpt<DirtyTracking>` and `Hwpt<NestParent>` are allocated
//! with the flags that make them one, and only they will have the
//! operations those flags allow. An IOMMU without the capability refuses
//! the allocation with an error naming it ([`HwInfo`] tells beforehand).
//!
//! ```no_run
//! use iommufd::hwpt::{Hwpt, Paging, DirtyTracking};
//! use iommufd::{Access, DmaBuffer, Iova};
//! # fn f(fd: &iommufd::Iommufd, dev: iommufd::Device<iommufd::BlockDma>) -> Result<(), Box<dyn std::error::Error>> {
//! let ioas = fd.alloc_ioas()?;
//! let info = dev.hw_info()?;
//! println!("{:?}, dirty tracking: {}", info.kind, info.dirty_tracking());
//! let hwpt = Hwpt::<Paging>::alloc(&dev, &ioas)?;
//! let dev = dev.attach(&hwpt).map_err(iommufd::Error::from)?; // Device<Attached<Hwpt>>
//! let buf = ioas.map(DmaBuffer::new(4096)?, Iova::Any, Access::READ).map_err(iommufd::Error::from)?;
//! let dev = dev.replace(&ioas).map_err(iommufd::Error::from)?; // back to Device<Attached<Ioas>>
//! if let Err(e) = Hwpt::<DirtyTracking>::alloc(&dev, &ioas) {
//!     eprintln!("{e}"); // e.g. "... the IOMMU has no dirty tracking ..."
//! }
//! # drop(buf); Ok(()) }
//! ```

use crate::device::{Bound, Device};
use crate::error::{Error, ErrorKind, Result, TransitionError};
use crate::ioas::Ioas;
pub(crate) use crate::pt::sealed;
pub use crate::pt::{
    Alloc, DirtyTracking, Faults, Kind, NestParent, Nested, PageTable, Paging, Parent,
    TrackedNestParent, Tracks,
};
use crate::pt::{Held, HeldPt};
use crate::sys;
use nix::errno::Errno;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

struct HwptInner {
    ioas: Ioas,
    id: u32,
    /// A nested HWPT's stage-2, kept until this one is destroyed.
    parent: Option<Hwpt<()>>,
    /// The fault queue it reports to, kept likewise.
    _faults: Option<crate::iopf::FaultQueue>,
    /// The vIOMMU a nested HWPT was allocated on, kept likewise (erased:
    /// the vIOMMU file sits on this one).
    _viommu: Option<Arc<dyn std::any::Any + Send + Sync>>,
    /// Allocated with `IOMMU_HWPT_ALLOC_PASID`.
    pasid: bool,
    /// Allocated with `IOMMU_HWPT_ALLOC_DIRTY_TRACKING`.
    dirty: bool,
    /// A [`DirtyTracker`] of this HWPT lives: tracking is on, and that
    /// value is the one that reads and stops it.
    tracker: std::sync::atomic::AtomicBool,
}

impl HwptInner {
    /// The handle of HWPT `id` the kernel just allocated on `ioas` with
    /// `flags`; what a nested HWPT holds besides is set by its caller.
    fn new(ioas: &Ioas, id: u32, flags: u32) -> HwptInner {
        HwptInner {
            ioas: ioas.clone(),
            id,
            parent: None,
            _faults: None,
            _viommu: None,
            pasid: flags & sys::IOMMU_HWPT_ALLOC_PASID != 0,
            dirty: flags & sys::IOMMU_HWPT_ALLOC_DIRTY_TRACKING != 0,
            tracker: Default::default(),
        }
    }
}

impl Held for HwptInner {
    #[inline]
    fn id(&self) -> u32 {
        self.id
    }
    fn pasid_capable(&self) -> bool {
        self.pasid
    }
    fn dirty_tracking(&self) -> bool {
        self.dirty
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

impl Drop for HwptInner {
    fn drop(&mut self) {
        // Every device attached to it holds a handle, so none is now.
        self.ioas.iommufd().ctx().destroy(self.id);
    }
}

/// A hardware page table on an [`Ioas`], of kind `K` ([`Paging`],
/// [`DirtyTracking`], [`NestParent`]). A handle: clones share it; it is
/// destroyed (`IOMMU_DESTROY`) when the last handle goes, and every device
/// attached to it holds one.
pub struct Hwpt<K = Paging> {
    inner: Arc<HwptInner>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Hwpt<K> {
    fn clone(&self) -> Self {
        Hwpt {
            inner: self.inner.clone(),
            kind: PhantomData,
        }
    }
}

impl<K: Kind> fmt::Debug for Hwpt<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hwpt")
            .field("id", &self.inner.id)
            .field("kind", &K::NAME)
            .field("ioas", &self.inner.ioas.id())
            .finish()
    }
}

#[cfg(test)]
mod bitmap_tests {
    use super::DirtyBitmap;

    /// The default bitmap (a buffer for `read_dirty_into`) answers every
    /// question without a page size: nothing is dirty.
    #[test]
    fn the_default_bitmap_covers_no_pages() {
        let b = DirtyBitmap::default();
        assert!(!b.is_dirty(0) && !b.is_dirty(u64::MAX));
        assert_eq!((b.count(), b.ranges().count()), (0, 0));
    }
}

/// Something bound to an iommufd with a device id, for which an HWPT can be
/// allocated: a bound [`Device`]. Sealed: no way to forge one.
pub trait HwptDevice: sealed::Sealed {
    #[doc(hidden)]
    fn hwpt_dev(&self) -> (&crate::Iommufd, u32, &str);
}

impl<S: Bound> sealed::Sealed for Device<S> {}
impl<S: Bound> HwptDevice for Device<S> {
    fn hwpt_dev(&self) -> (&crate::Iommufd, u32, &str) {
        (self.iommufd(), self.dev_id(), self.name())
    }
}

impl<K: Alloc> Hwpt<K> {
    /// Allocates an HWPT of kind `K` on `ioas` for the IOMMU behind `dev`
    /// (`IOMMU_HWPT_ALLOC`).
    ///
    /// # Errors
    /// An IOAS of another iommufd is refused first. `EOPNOTSUPP` names the
    /// capability the IOMMU lacks (dirty tracking, nesting);
    /// [`ErrorKind::Unsupported`] on the legacy path and kernels before 6.6.
    #[doc(alias = "IOMMU_HWPT_ALLOC")]
    pub fn alloc(dev: &impl HwptDevice, ioas: &Ioas) -> Result<Self> {
        Self::alloc_with(dev, ioas, 0, None, None)
    }

    /// [`alloc`](Self::alloc) with `extra` allocation flags beside the
    /// kind's (`IOMMU_HWPT_ALLOC_PASID` for a [`PasidHwpt`](crate::pasid::PasidHwpt)),
    /// driver data (type, words) for a driver that takes some for a
    /// paging HWPT (the test driver's huge page table), and a fault queue.
    pub(crate) fn alloc_with(
        dev: &impl HwptDevice,
        ioas: &Ioas,
        extra: u32,
        data: Option<(u32, &[u64])>,
        faults: Option<&crate::iopf::FaultQueue>,
    ) -> Result<Self> {
        let (fd, dev_id, name) = dev.hwpt_dev();
        crate::owner::same_iommufd(
            "IOMMU_HWPT_ALLOC",
            || format!("{name} on IOAS {}", ioas.id()),
            fd,
            &[
                (ioas.iommufd(), "the IOAS"),
                (faults.map_or(fd, |f| f.iommufd()), "the fault queue"),
            ],
        )?;
        let flags = K::FLAGS | extra;
        let r = match (data, faults) {
            (None, None) => fd.ctx().hwpt_alloc(dev_id, ioas.id(), flags),
            // IOMMU_HWPT_DATA_NONE: no driver data.
            (data, faults) => {
                let (ty, words) = data.unwrap_or((0, &[]));
                fd.ctx().hwpt_alloc_data(
                    (dev_id, ioas.id(), flags),
                    ty,
                    words,
                    faults.map(|f| f.id()),
                )
            }
        };
        match r {
            Ok(id) => {
                ioas.pinned();
                let mut inner = HwptInner::new(ioas, id, flags);
                inner._faults = faults.cloned();
                Ok(Hwpt {
                    inner: Arc::new(inner),
                    kind: PhantomData,
                })
            }
            Err(e) => {
                let e = ioas.reserved_error(name, alloc_error::<K>(name, ioas.id(), extra, e));
                Err(ioas.unpinned_error(e))
            }
        }
    }
}

impl<K: Faults> Hwpt<K> {
    /// As [`alloc`](Self::alloc), and the page requests of the devices
    /// attached to it go to `faults` (`IOMMU_HWPT_FAULT_ID_VALID`), which
    /// the HWPT holds. Only for the kinds that take one ([`Faults`]).
    ///
    /// # Errors
    /// As [`alloc`](Self::alloc); a fault queue of another iommufd is
    /// refused first.
    #[doc(alias = "IOMMU_HWPT_FAULT_ID_VALID")]
    pub fn alloc_with_faults(
        dev: &impl HwptDevice,
        ioas: &Ioas,
        faults: &crate::iopf::FaultQueue,
    ) -> Result<Self> {
        Self::alloc_with(dev, ioas, 0, None, Some(faults))
    }
}

#[cold]
fn alloc_error<K: Kind>(name: &str, ioas: u32, extra: u32, e: Errno) -> Error {
    let pasid = if extra & sys::IOMMU_HWPT_ALLOC_PASID != 0 {
        ", PASID-capable"
    } else {
        ""
    };
    let err = Error::sys(
        "IOMMU_HWPT_ALLOC",
        format!("{name} on IOAS {ioas} ({} HWPT{pasid})", K::NAME),
        e,
    );
    match e {
        Errno::EOPNOTSUPP => {
            let what = match K::FLAGS {
                sys::IOMMU_HWPT_ALLOC_DIRTY_TRACKING => {
                    "the IOMMU behind the device has no dirty tracking (IOMMU_HW_CAP_DIRTY_TRACKING is not among its hw_info capabilities; emulated VT-d has none)"
                }
                sys::IOMMU_HWPT_ALLOC_NEST_PARENT => {
                    "the IOMMU behind the device cannot nest (no stage-1 over stage-2 translation; emulated VT-d without x-flts=on has none)"
                }
                _ if !pasid.is_empty() => {
                    if crate::diagnose::kernel_version().is_some_and(|v| v < (6, 15)) {
                        "this kernel has no IOMMU_HWPT_ALLOC_PASID (PASID-capable page tables came in Linux 6.15)"
                    } else {
                        "the IOMMU behind the device cannot make page tables for PASIDs (IOMMU_HWPT_ALLOC_PASID)"
                    }
                }
                _ => "the IOMMU behind the device cannot make this page table",
            };
            err.kind_(ErrorKind::Unsupported).detail(what)
        }
        Errno::ENOTTY => err
            .kind_(ErrorKind::Unsupported)
            .detail("no HWPT objects here: the legacy container path, or a kernel before 6.6"),
        Errno::ENOENT => err
            .kind_(ErrorKind::InvalidInput)
            .detail("the device id or the IOAS id is not in this iommufd"),
        _ => err,
    }
}

impl<P: Parent> Hwpt<P> {
    /// This parent as a [`NestParent`] handle (the same HWPT: a tracked
    /// nest parent is a nest parent), for what holds any parent.
    pub(crate) fn as_parent(&self) -> Hwpt<NestParent> {
        Hwpt {
            inner: self.inner.clone(),
            kind: PhantomData,
        }
    }
}

impl<L> Hwpt<L> {
    /// Whether the HWPT `held` (a device's) is this one, or nests on it.
    /// By identity, not by id: ids are per iommufd, so another iommufd's
    /// HWPT can have the same one.
    pub(crate) fn is_or_parent_of(&self, held: &HeldPt) -> bool {
        held.downcast::<HwptInner>().is_some_and(|h| {
            Arc::ptr_eq(&h, &self.inner)
                || h.parent
                    .as_ref()
                    .is_some_and(|p| Arc::ptr_eq(&p.inner, &self.inner))
        })
    }
}

impl<K: Kind> Hwpt<K> {
    /// The HWPT's id in its iommufd.
    pub fn id(&self) -> u32 {
        self.inner.id
    }

    /// The IOAS whose mappings it holds.
    pub fn ioas(&self) -> &Ioas {
        &self.inner.ioas
    }

    /// The same HWPT, its kind erased: what a nested HWPT holds of its
    /// parent.
    pub(crate) fn erase(&self) -> Hwpt<()> {
        Hwpt {
            inner: self.inner.clone(),
            kind: PhantomData,
        }
    }

    /// Whether it tracks dirty pages (from its allocation's flags).
    #[inline]
    pub(crate) fn tracks_dirty(&self) -> bool {
        self.inner.dirty
    }

    /// The same HWPT as the handle an attached device holds.
    #[inline]
    pub(crate) fn held(&self) -> HeldPt {
        HeldPt::new(self.inner.clone())
    }
}

impl<K: Kind> sealed::Sealed for Hwpt<K> {}
impl<K: Kind> PageTable for Hwpt<K> {
    const STATE: &'static str = "Attached<Hwpt>";
    #[inline]
    fn pt_id(&self) -> u32 {
        self.inner.id
    }
    #[inline]
    fn pt_ioas(&self) -> &Ioas {
        &self.inner.ioas
    }
    #[inline]
    fn pt_held(&self) -> Option<HeldPt> {
        Some(self.held())
    }
    #[inline]
    fn pt_from(_: &Ioas, held: Option<&HeldPt>, _: sealed::Token) -> Self {
        // The device's state says `Attached<Hwpt<K>>`: the handle it holds
        // is of that HWPT, allocated as a `K`, and only this file makes
        // the handles (`held`).
        let inner = held
            .and_then(HeldPt::downcast::<HwptInner>)
            .expect("attached to an HWPT");
        Hwpt {
            inner,
            kind: PhantomData,
        }
    }
}

/// A guest's stage-1 page table, as its IOMMU's driver describes it
/// (`IOMMU_HWPT_DATA_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage1 {
    /// `struct iommu_hwpt_vtd_s1`.
    VtdS1 {
        /// `IOMMU_VTD_S1_*`.
        flags: u64,
        /// The guest's stage-1 page table (a guest-physical address).
        pgtbl_addr: u64,
        /// Its address width.
        addr_width: u32,
    },
    /// `struct iommu_hwpt_arm_smmuv3`: the guest's STE, little-endian words.
    ArmSmmuV3 {
        /// The STE.
        ste: [u64; 2],
    },
    /// The iommufd test driver's (`IOMMU_HWPT_DATA_SELFTEST`).
    #[cfg(feature = "iommufd-test-driver")]
    Selftest {
        /// The mock IOTLB's initial value.
        iotlb: u32,
    },
}

impl Stage1 {
    fn encode(&self) -> (u32, Vec<u64>) {
        match *self {
            Stage1::VtdS1 {
                flags,
                pgtbl_addr,
                addr_width,
            } => (1, vec![flags, pgtbl_addr, u64::from(addr_width)]),
            Stage1::ArmSmmuV3 { ste } => (2, ste.to_vec()),
            #[cfg(feature = "iommufd-test-driver")]
            Stage1::Selftest { iotlb } => (0xdead, vec![u64::from(iotlb)]),
        }
    }
}

impl Hwpt<Nested> {
    /// Allocates a nested HWPT (`IOMMU_HWPT_ALLOC` with vendor data) over
    /// `parent`, which only a [`Parent`] kind can be ([`NestParent`],
    /// [`TrackedNestParent`]): the type says so. The nested HWPT holds its
    /// parent.
    ///
    /// # Errors
    /// As [`Hwpt::alloc`]: a nest parent (or fault queue, vIOMMU) of another
    /// iommufd than `dev`'s is refused first; `EOPNOTSUPP`/`EINVAL` when
    /// the IOMMU takes no such stage-1 data.
    #[doc(alias = "IOMMU_HWPT_ALLOC")]
    pub fn alloc_nested<P: Parent>(
        dev: &impl HwptDevice,
        parent: &Hwpt<P>,
        stage1: &Stage1,
    ) -> Result<Self> {
        Self::nested(dev, &parent.as_parent(), stage1, None, 0)
    }

    /// As [`alloc_nested`](Self::alloc_nested), and its devices' page
    /// requests go to `faults` (`IOMMU_HWPT_FAULT_ID_VALID`), which the
    /// HWPT holds.
    pub fn alloc_nested_with_faults<P: Parent>(
        dev: &impl HwptDevice,
        parent: &Hwpt<P>,
        stage1: &Stage1,
        faults: &crate::iopf::FaultQueue,
    ) -> Result<Self> {
        Self::nested(dev, &parent.as_parent(), stage1, Some(faults), 0)
    }

    /// A nested HWPT over `parent` with allocation `flags`
    /// (`IOMMU_HWPT_ALLOC_PASID` for a [`PasidHwpt`](crate::pasid::PasidHwpt)).
    pub(crate) fn nested(
        dev: &impl HwptDevice,
        parent: &Hwpt<NestParent>,
        stage1: &Stage1,
        faults: Option<&crate::iopf::FaultQueue>,
        flags: u32,
    ) -> Result<Self> {
        Self::nested_at(dev, (parent.id(), parent, None), stage1, faults, flags)
    }

    /// `IOMMU_HWPT_ALLOC` of a nested HWPT at object `pt_id` (the nest
    /// parent itself, or a vIOMMU on it), holding the parent, the vIOMMU
    /// and the fault queue.
    pub(crate) fn nested_at(
        dev: &impl HwptDevice,
        (pt_id, parent, viommu): (
            u32,
            &Hwpt<NestParent>,
            Option<Arc<dyn std::any::Any + Send + Sync>>,
        ),
        stage1: &Stage1,
        faults: Option<&crate::iopf::FaultQueue>,
        flags: u32,
    ) -> Result<Self> {
        let (fd, dev_id, name) = dev.hwpt_dev();
        crate::owner::same_iommufd(
            "IOMMU_HWPT_ALLOC",
            || format!("{name} on HWPT {pt_id}"),
            fd,
            &[
                (parent.ioas().iommufd(), "the nest parent"),
                (faults.map_or(fd, |f| f.iommufd()), "the fault queue"),
            ],
        )?;
        let (data_type, data) = stage1.encode();
        let fault_id = faults.map(|f| f.id());
        match fd
            .ctx()
            .hwpt_alloc_data((dev_id, pt_id, flags), data_type, &data, fault_id)
        {
            Ok(id) => {
                let mut inner = HwptInner::new(parent.ioas(), id, flags);
                inner.parent = Some(parent.erase());
                inner._faults = faults.cloned();
                inner._viommu = viommu;
                Ok(Hwpt {
                    inner: Arc::new(inner),
                    kind: PhantomData,
                })
            }
            Err(e) => Err(alloc_error::<Nested>(name, parent.ioas().id(), flags, e)),
        }
    }

    /// The stage-2 it nests on.
    pub fn parent(&self) -> Hwpt<NestParent> {
        let p = self
            .inner
            .parent
            .as_ref()
            .expect("a nested HWPT has a parent");
        Hwpt {
            inner: p.inner.clone(),
            kind: PhantomData,
        }
    }

    /// Flushes the IOMMU's caches of the guest's stage-1 (`IOMMU_HWPT_INVALIDATE`)
    /// after the guest changed it; how many requests the kernel handled.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an empty list or requests of mixed
    /// types (checked first); the kernel's error says how many it handled
    /// before the one it refused.
    #[doc(alias = "IOMMU_HWPT_INVALIDATE")]
    pub fn invalidate(&self, requests: &[Invalidation]) -> Result<u32> {
        let id = self.inner.id;
        invalidate_on(
            self.inner.ioas.iommufd(),
            id,
            &|| format!("HWPT {id}"),
            requests,
        )
    }
}

/// A cache invalidation request of some data type (`IOMMU_HWPT_INVALIDATE`):
/// for an HWPT ([`Invalidation`]) or a vIOMMU
/// ([`ViommuInvalidation`](crate::viommu::ViommuInvalidation)).
pub(crate) trait Request {
    /// (data type, bytes per entry).
    fn layout(&self) -> (u32, usize);
    /// Appends the entry, `layout().1` bytes.
    fn encode(&self, out: &mut Vec<u8>);
}

/// `IOMMU_HWPT_INVALIDATE` of `requests`, all of one type, on object `id`
/// (an HWPT or a vIOMMU) of `fd`; how many the kernel handled.
pub(crate) fn invalidate_on<R: Request>(
    fd: &crate::Iommufd,
    id: u32,
    obj: &dyn Fn() -> String,
    requests: &[R],
) -> Result<u32> {
    let Some(first) = requests.first() else {
        return Err(
            Error::new(ErrorKind::InvalidInput, "IOMMU_HWPT_INVALIDATE", obj())
                .detail("no invalidation request"),
        );
    };
    let (data_type, len) = first.layout();
    let mut entries = Vec::with_capacity(requests.len() * len);
    for r in requests {
        if r.layout().0 != data_type {
            return Err(
                Error::new(ErrorKind::InvalidInput, "IOMMU_HWPT_INVALIDATE", obj())
                    .detail("the requests of one call must all be of one type"),
            );
        }
        r.encode(&mut entries);
    }
    fd.ctx()
        .invalidate(id, data_type, len, &entries)
        .map_err(|(e, done)| {
            Error::sys("IOMMU_HWPT_INVALIDATE", obj(), e).detail(format!(
                "the kernel handled {done} of {} requests before refusing one",
                requests.len()
            ))
        })
}

/// One cache invalidation request for a nested HWPT (`IOMMU_HWPT_INVALIDATE_DATA_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidation {
    /// `struct iommu_hwpt_vtd_s1_invalidate`.
    VtdS1 {
        /// The first address.
        addr: u64,
        /// How many 4 KiB pages (`u64::MAX`: all).
        npages: u64,
        /// `IOMMU_VTD_INV_FLAGS_*`.
        flags: u32,
    },
    /// The iommufd test driver's (`struct iommu_hwpt_invalidate_selftest`).
    #[cfg(feature = "iommufd-test-driver")]
    Selftest {
        /// `IOMMU_TEST_INVALIDATE_FLAG_ALL` (1) or 0.
        flags: u32,
        /// The mock IOTLB entry.
        iotlb_id: u32,
    },
}

impl Request for Invalidation {
    fn layout(&self) -> (u32, usize) {
        match self {
            Invalidation::VtdS1 { .. } => (0, 24),
            #[cfg(feature = "iommufd-test-driver")]
            Invalidation::Selftest { .. } => (0xdead_beef, 8),
        }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            // struct iommu_hwpt_vtd_s1_invalidate { u64 addr, npages; u32 flags, reserved; }
            Invalidation::VtdS1 {
                addr,
                npages,
                flags,
            } => {
                for w in [addr, npages, u64::from(flags)] {
                    out.extend_from_slice(&w.to_ne_bytes());
                }
            }
            // struct iommu_hwpt_invalidate_selftest { u32 flags, iotlb_id; }
            #[cfg(feature = "iommufd-test-driver")]
            Invalidation::Selftest { flags, iotlb_id } => {
                out.extend_from_slice(&flags.to_ne_bytes());
                out.extend_from_slice(&iotlb_id.to_ne_bytes());
            }
        }
    }
}

/// Dirty tracking, for live migration: the IOMMU marks every page a device
/// writes, and the VMM reads and clears the marks in rounds. The bitmap
/// covers every mapping of the HWPT's IOAS in the range, including mappings
/// made after tracking started.
impl<K: Tracks> Hwpt<K> {
    /// Turns dirty tracking on (`IOMMU_HWPT_SET_DIRTY_TRACKING`) and hands
    /// back the [`DirtyTracker`] that proves it: dirty bits are read
    /// through it only, so a read while tracking is off, which the kernel
    /// answers with every page clean, cannot be written. One tracker per
    /// HWPT: stopping one must not leave another reading nothing.
    ///
    /// # Errors
    /// [`ErrorKind::Busy`] while a tracker of this HWPT lives; the
    /// kernel's error otherwise (`EOPNOTSUPP` when the IOMMU cannot).
    #[doc(alias = "IOMMU_HWPT_SET_DIRTY_TRACKING")]
    pub fn start_dirty_tracking(&self) -> Result<DirtyTracker<K>> {
        use std::sync::atomic::Ordering;
        if self.inner.tracker.swap(true, Ordering::AcqRel) {
            return Err(Error::new(
                ErrorKind::Busy,
                "IOMMU_HWPT_SET_DIRTY_TRACKING",
                format!("HWPT {}", self.inner.id),
            )
            .detail("a DirtyTracker of this HWPT lives: it is the one that reads and stops the tracking")
            .hint("read through that tracker, or stop it first"));
        }
        match self.set_tracking(true) {
            Ok(()) => Ok(DirtyTracker {
                hwpt: self.clone(),
                on: true,
            }),
            Err(e) => {
                self.inner.tracker.store(false, Ordering::Release);
                Err(e)
            }
        }
    }

    fn set_tracking(&self, on: bool) -> Result<()> {
        let ctx = self.inner.ioas.iommufd().ctx();
        ctx.set_dirty_tracking(self.inner.id, on).map_err(|e| {
            Error::sys(
                "IOMMU_HWPT_SET_DIRTY_TRACKING",
                format!("HWPT {}", self.inner.id),
                e,
            )
        })
    }

    /// The checks of a dirty read: the number of pages.
    #[inline]
    fn check_range(&self, iova: u64, len: u64, page_size: u64) -> Result<u64> {
        if !page_size.is_power_of_two()
            || iova % page_size != 0
            || len % page_size != 0
            || len == 0
            || iova.checked_add(len - 1).is_none()
        {
            return Err(self.bad_range(iova, len, page_size));
        }
        Ok(len / page_size)
    }

    /// `bits` (empty) made a zeroed bit per page. A range no memory could
    /// hold the bitmap of is an error, not an abort of the process.
    #[inline]
    fn zeroed_bits(&self, bits: &mut Vec<u64>, iova: u64, len: u64, pages: u64) -> Result<()> {
        let words = usize::try_from(pages.div_ceil(64)).unwrap_or(usize::MAX);
        if bits.try_reserve_exact(words).is_err() {
            return Err(self.too_big(iova, len, pages));
        }
        bits.resize(words, 0);
        Ok(())
    }

    #[cold]
    fn too_big(&self, iova: u64, len: u64, pages: u64) -> Error {
        Error::new(
            ErrorKind::InvalidInput,
            "IOMMU_HWPT_GET_DIRTY_BITMAP",
            format!("HWPT {} {}", self.inner.id, crate::error::range(iova, len)),
        )
        .detail(format!(
            "a bitmap of {pages} pages ({} bytes) cannot be allocated: read the range in parts, or at a larger page size",
            pages.div_ceil(8)
        ))
    }

    /// The dirty bits of `[iova, iova + len)` into `bits` (zeroed, a bit a
    /// page): one `IOMMU_HWPT_GET_DIRTY_BITMAP` when the range is one run
    /// of mappings, else one per run. The kernel walks the areas of the
    /// range from its start and stops, without an error, at the first hole
    /// (measured on 7.3: a read over guest RAM with a hole between two
    /// regions reported nothing past the hole), so a range with holes read
    /// in one call would lose the dirty pages of every run after the first.
    #[inline]
    fn fill(
        &self,
        iova: u64,
        len: u64,
        page_size: u64,
        keep: bool,
        bits: &mut [u64],
    ) -> Result<()> {
        match self.inner.ioas.mapped_runs(iova, iova.saturating_add(len)) {
            None => self.get_bitmap(iova, len, page_size, keep, bits),
            Some(runs) if runs == [(iova, len)] => {
                self.get_bitmap(iova, len, page_size, keep, bits)
            }
            Some(runs) => self.fill_runs(iova, len, page_size, keep, bits, runs),
        }
    }

    /// [`fill`](Self::fill) of a range with holes: each run of mappings
    /// read on its own, its bits shifted into place. Nothing is mapped in
    /// a hole, so nothing there is dirty.
    #[cold]
    #[inline(never)]
    fn fill_runs(
        &self,
        iova: u64,
        len: u64,
        page_size: u64,
        keep: bool,
        bits: &mut [u64],
        runs: Vec<(u64, u64)>,
    ) -> Result<()> {
        for (start, run) in runs {
            if start % page_size != 0 || run % page_size != 0 {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "IOMMU_HWPT_GET_DIRTY_BITMAP",
                    format!("HWPT {} {}", self.inner.id, crate::error::range(iova, len)),
                )
                .detail(format!(
                    "the mappings in the range form a run {} that is not aligned to the page size {page_size:#x}: the kernel reads a run only from an aligned start, which would be in a hole",
                    crate::error::range(start, run)
                ))
                .hint("read at a page size the mappings are aligned to (4 KiB always is)"));
            }
            let (first, n) = ((start - iova) / page_size, run / page_size);
            let mut part = Vec::new();
            self.zeroed_bits(&mut part, start, run, n)?;
            self.get_bitmap(start, run, page_size, keep, &mut part)?;
            for (w, word) in part.iter().enumerate() {
                let mut word = *word;
                while word != 0 {
                    let b = word.trailing_zeros() as u64;
                    word &= word - 1;
                    let page = first + w as u64 * 64 + b;
                    bits[(page / 64) as usize] |= 1 << (page % 64);
                }
            }
        }
        Ok(())
    }

    /// `IOMMU_HWPT_GET_DIRTY_BITMAP` into `bits`, which holds a zeroed bit
    /// for each page of the range.
    #[inline]
    fn get_bitmap(
        &self,
        iova: u64,
        len: u64,
        page_size: u64,
        keep: bool,
        bits: &mut [u64],
    ) -> Result<()> {
        let flags = if keep {
            sys::IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR
        } else {
            0
        };
        let ctx = self.inner.ioas.iommufd().ctx();
        ctx.get_dirty_bitmap(self.inner.id, iova, len, page_size, flags, bits)
            .map_err(|e| self.read_error(iova, len, e))
    }

    #[cold]
    fn bad_range(&self, iova: u64, len: u64, page_size: u64) -> Error {
        Error::new(
            ErrorKind::InvalidInput,
            "IOMMU_HWPT_GET_DIRTY_BITMAP",
            format!("HWPT {} {}", self.inner.id, crate::error::range(iova, len)),
        )
        .detail(format!(
            "page size {page_size:#x} must be a power of two, and the range a non-empty multiple of it, aligned to it, inside the 64-bit IOVA space"
        ))
    }

    #[cold]
    fn read_error(&self, iova: u64, len: u64, e: Errno) -> Error {
        let err = Error::sys(
            "IOMMU_HWPT_GET_DIRTY_BITMAP",
            format!("HWPT {} {}", self.inner.id, crate::error::range(iova, len)),
            e,
        );
        if e == Errno::EINVAL {
            err.detail(
                "the kernel refused the range: it must lie within mappings of the HWPT's IOAS",
            )
        } else {
            err
        }
    }
}

/// Dirty tracking of an HWPT, on ([`Hwpt::start_dirty_tracking`]): the
/// value dirty bits are read through. Whether tracking is on is part of
/// the value: there is no tracker while it is off, so no read that the
/// kernel would answer with every page clean. It holds its HWPT.
///
/// [`stop`](Self::stop) turns tracking off; dropping the tracker does too
/// (and leaking it leaves tracking on, which is only a cost).
///
/// ```no_run
/// # fn f(hwpt: &iommufd::Hwpt<iommufd::hwpt::DirtyTracking>) -> iommufd::Result<()> {
/// let tracking = hwpt.start_dirty_tracking()?;
/// let mut dirty = iommufd::hwpt::DirtyBitmap::default();
/// loop {
///     tracking.read_dirty_into(1 << 32, 4 << 30, 4096, false, &mut dirty)?;
///     for (iova, len) in dirty.ranges() {
///         // copy [iova, iova + len) of guest RAM to the destination
///         # let _ = (iova, len);
///     }
///     # break;
/// }
/// tracking.stop().map_err(iommufd::Error::from)?;
/// # Ok(()) }
/// ```
pub struct DirtyTracker<K: Tracks = DirtyTracking> {
    hwpt: Hwpt<K>,
    /// Tracking is on (false once [`stop`](Self::stop) turned it off).
    on: bool,
}

impl<K: Tracks> fmt::Debug for DirtyTracker<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirtyTracker")
            .field("hwpt", &self.hwpt)
            .finish()
    }
}

impl<K: Tracks> DirtyTracker<K> {
    /// The HWPT it tracks.
    pub fn hwpt(&self) -> &Hwpt<K> {
        &self.hwpt
    }

    /// Reads the dirty bits of `[iova, iova + len)` at `page_size`
    /// granularity (`IOMMU_HWPT_GET_DIRTY_BITMAP`), and clears them unless
    /// `keep` (`IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR`). The IOMMU may track
    /// at a coarser granularity than `page_size` and then reports every
    /// page of a dirty block.
    ///
    /// # Errors
    /// Checked first ([`ErrorKind::InvalidInput`]): `page_size` must be a
    /// power of two, `iova` and `len` multiples of it,
    /// `len` non-zero and the range inside the 64-bit IOVA space.
    /// From the kernel: `EINVAL` when the range is not mapped in the IOAS.
    #[doc(alias = "IOMMU_HWPT_GET_DIRTY_BITMAP")]
    pub fn read_dirty(
        &self,
        iova: u64,
        len: u64,
        page_size: u64,
        keep: bool,
    ) -> Result<DirtyBitmap> {
        let mut out = DirtyBitmap::default();
        self.read_dirty_into(iova, len, page_size, keep, &mut out)?;
        Ok(out)
    }

    /// As [`read_dirty`](Self::read_dirty), into `out`, whose buffer is
    /// reused: what a migration loop calls every round. Once the buffer is
    /// big enough nothing is allocated (for a large range, an allocation
    /// per read is an `mmap` and a `munmap` in the C library). On error
    /// `out` covers no pages.
    ///
    /// # Errors
    /// As [`read_dirty`](Self::read_dirty).
    pub fn read_dirty_into(
        &self,
        iova: u64,
        len: u64,
        page_size: u64,
        keep: bool,
        out: &mut DirtyBitmap,
    ) -> Result<()> {
        let h = &self.hwpt;
        out.pages = 0;
        out.bits.clear();
        let pages = h.check_range(iova, len, page_size)?;
        h.zeroed_bits(&mut out.bits, iova, len, pages)?;
        if let Err(e) = h.fill(iova, len, page_size, keep, &mut out.bits) {
            out.bits.clear();
            return Err(e);
        }
        out.iova = iova;
        out.page_size = page_size;
        out.pages = pages;
        Ok(())
    }

    /// Turns tracking off (`IOMMU_HWPT_SET_DIRTY_TRACKING`); the HWPT back.
    ///
    /// # Errors
    /// The kernel's; the tracker is handed back, tracking still on.
    pub fn stop(mut self) -> std::result::Result<Hwpt<K>, TransitionError<Self>> {
        match self.hwpt.set_tracking(false) {
            Ok(()) => {
                self.on = false;
                Ok(self.hwpt.clone())
            }
            Err(e) => Err(TransitionError::new(self, e)),
        }
    }
}

impl<K: Tracks> Drop for DirtyTracker<K> {
    fn drop(&mut self) {
        if self.on {
            let _ = self.hwpt.set_tracking(false);
        }
        self.hwpt
            .inner
            .tracker
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

/// The dirty pages of a range ([`DirtyTracker::read_dirty`]): one bit per
/// page. The default one covers no pages: a buffer for
/// [`DirtyTracker::read_dirty_into`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirtyBitmap {
    iova: u64,
    page_size: u64,
    pages: u64,
    bits: Vec<u64>,
}

impl DirtyBitmap {
    /// The first IOVA the bitmap covers.
    pub fn iova(&self) -> u64 {
        self.iova
    }
    /// Bytes per bit.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }
    /// Whether the page at `iova` is dirty (false outside the range).
    pub fn is_dirty(&self, iova: u64) -> bool {
        // `checked_div`: the default bitmap has no page size (and no pages).
        let Some(i) = iova
            .checked_sub(self.iova)
            .and_then(|o| o.checked_div(self.page_size))
        else {
            return false;
        };
        i < self.pages && self.bits[(i / 64) as usize] >> (i % 64) & 1 == 1
    }
    /// How many pages are dirty.
    pub fn count(&self) -> u64 {
        self.bits.iter().map(|w| u64::from(w.count_ones())).sum()
    }
    /// The dirty pages as runs `(iova, len)`, in order: what a migration
    /// loop copies.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut i = 0u64;
        std::iter::from_fn(move || {
            while i < self.pages {
                let w = self.bits[(i / 64) as usize] >> (i % 64);
                if w == 0 {
                    i = (i / 64 + 1) * 64;
                    continue;
                }
                i += u64::from(w.trailing_zeros());
                let start = i;
                while i < self.pages && self.bits[(i / 64) as usize] >> (i % 64) & 1 == 1 {
                    i += 1;
                }
                return Some((
                    self.iova + start * self.page_size,
                    (i - start) * self.page_size,
                ));
            }
            None
        })
    }
    /// The raw bitmap (bit `i` of word `i / 64`: the page at `iova() + i * page_size()`).
    pub fn as_words(&self) -> &[u64] {
        &self.bits
    }
}

/// What the IOMMU behind a device is and can do (`IOMMU_GET_HW_INFO`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwInfo {
    /// The IOMMU and its driver's registers.
    pub kind: IommuKind,
    /// `IOMMU_HW_CAP_*`.
    pub capabilities: u64,
    /// log2 of the PASIDs the device may use; 0: no PASID.
    pub max_pasid_log2: u8,
}

impl HwInfo {
    /// `IOMMU_HW_CAP_DIRTY_TRACKING`: [`Hwpt<DirtyTracking>`] can be allocated.
    pub fn dirty_tracking(&self) -> bool {
        self.capabilities & sys::IOMMU_HW_CAP_DIRTY_TRACKING != 0
    }
    /// `IOMMU_HW_CAP_PCI_PASID_EXEC`: the device's PASID capability allows
    /// execute requests (to report to a guest; the host ignores it).
    pub fn pasid_exec(&self) -> bool {
        self.capabilities & sys::IOMMU_HW_CAP_PCI_PASID_EXEC != 0
    }
    /// `IOMMU_HW_CAP_PCI_PASID_PRIV`: privileged-mode requests, likewise.
    pub fn pasid_priv(&self) -> bool {
        self.capabilities & sys::IOMMU_HW_CAP_PCI_PASID_PRIV != 0
    }
    /// `IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED`: the device's ATS cannot be
    /// used (so a guest must not be told it has ATS).
    pub fn ats_not_supported(&self) -> bool {
        self.capabilities & sys::IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED != 0
    }
    /// The device can be attached at a PASID.
    pub fn pasid(&self) -> bool {
        self.max_pasid_log2 > 0
    }
}

/// A type of IOMMU data to ask for ([`Device::hw_info_as`]): an IOMMU
/// driver may report several (ARM SMMUv3 with the Tegra241 CMDQV
/// extension reports both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HwInfoType {
    /// `IOMMU_HW_INFO_TYPE_INTEL_VTD`.
    IntelVtd,
    /// `IOMMU_HW_INFO_TYPE_ARM_SMMUV3`.
    ArmSmmuV3,
    /// `IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV`.
    Tegra241Cmdqv,
    /// `IOMMU_HW_INFO_TYPE_AMD`.
    Amd,
    /// The iommufd test driver's (`IOMMU_HW_INFO_TYPE_SELFTEST`).
    #[cfg(feature = "iommufd-test-driver")]
    Selftest,
}

impl HwInfoType {
    fn number(self) -> u32 {
        match self {
            HwInfoType::IntelVtd => 1,
            HwInfoType::ArmSmmuV3 => 2,
            HwInfoType::Tegra241Cmdqv => 3,
            HwInfoType::Amd => 4,
            #[cfg(feature = "iommufd-test-driver")]
            HwInfoType::Selftest => 0xfeed_beef,
        }
    }
}

/// The IOMMU type, with its driver's data decoded (`IOMMU_HW_INFO_TYPE_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IommuKind {
    /// The driver reports nothing (`IOMMU_HW_INFO_TYPE_NONE`), as the
    /// iommufd test driver does for some devices.
    None,
    /// Intel VT-d (`struct iommu_hw_info_vtd`).
    IntelVtd {
        /// `IOMMU_HW_INFO_VTD_*` flags.
        flags: u32,
        /// The capability register.
        cap_reg: u64,
        /// The extended capability register.
        ecap_reg: u64,
    },
    /// ARM SMMUv3 (`struct iommu_hw_info_arm_smmuv3`).
    ArmSmmuV3 {
        /// Flags.
        flags: u32,
        /// `IDR0`..`IDR5`.
        idr: [u32; 6],
        /// `IIDR`.
        iidr: u32,
        /// `AIDR`.
        aidr: u32,
    },
    /// AMD-Vi (`struct iommu_hw_info_amd`).
    Amd {
        /// The extended feature register.
        efr: u64,
        /// The second extended feature register.
        efr2: u64,
    },
    /// A type this crate does not decode: its number and raw bytes.
    Unknown {
        /// `IOMMU_HW_INFO_TYPE_*`.
        type_: u32,
        /// The driver's struct as the kernel wrote it.
        data: Vec<u8>,
    },
}

impl IommuKind {
    fn decode(type_: u32, bytes: &[u8]) -> IommuKind {
        let u32_at = |o: usize| {
            bytes
                .get(o..o + 4)
                .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
        };
        let u64_at = |o: usize| {
            bytes
                .get(o..o + 8)
                .map(|b| u64::from_ne_bytes(b.try_into().unwrap()))
        };
        let decoded = match type_ {
            0 => Some(IommuKind::None),
            1 => (|| {
                Some(IommuKind::IntelVtd {
                    flags: u32_at(0)?,
                    cap_reg: u64_at(8)?,
                    ecap_reg: u64_at(16)?,
                })
            })(),
            2 => (|| {
                let mut idr = [0u32; 6];
                for (i, r) in idr.iter_mut().enumerate() {
                    *r = u32_at(8 + 4 * i)?;
                }
                Some(IommuKind::ArmSmmuV3 {
                    flags: u32_at(0)?,
                    idr,
                    iidr: u32_at(32)?,
                    aidr: u32_at(36)?,
                })
            })(),
            4 => (|| {
                Some(IommuKind::Amd {
                    efr: u64_at(0)?,
                    efr2: u64_at(8)?,
                })
            })(),
            _ => None,
        };
        decoded.unwrap_or_else(|| IommuKind::Unknown {
            type_,
            data: bytes.to_vec(),
        })
    }
}

impl<S: Bound> Device<S> {
    /// What the IOMMU behind this device is and can do (`IOMMU_GET_HW_INFO`).
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] on the legacy path and kernels before 6.6.
    #[doc(alias = "IOMMU_GET_HW_INFO")]
    pub fn hw_info(&self) -> Result<HwInfo> {
        hw_info_of(self.iommufd(), self.dev_id(), self.name())
    }

    /// As [`hw_info`](Self::hw_info), with the IOMMU's data of type `t`
    /// (`IOMMU_HW_INFO_FLAG_INPUT_TYPE`, Linux 6.17) instead of its
    /// default one.
    ///
    /// ```no_run
    /// # fn f(dev: &iommufd::Device<iommufd::BlockDma>) -> iommufd::Result<()> {
    /// use iommufd::hwpt::{HwInfoType, IommuKind};
    /// if let IommuKind::IntelVtd { cap_reg, .. } = dev.hw_info_as(HwInfoType::IntelVtd)?.kind {
    ///     println!("VT-d CAP_REG {cap_reg:#x}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] when the IOMMU has no data of that type
    /// (`EOPNOTSUPP`, also before 6.17); as [`hw_info`](Self::hw_info).
    #[doc(alias = "IOMMU_HW_INFO_FLAG_INPUT_TYPE")]
    pub fn hw_info_as(&self, t: HwInfoType) -> Result<HwInfo> {
        hw_info_typed(self.iommufd(), self.dev_id(), self.name(), Some(t))
    }
}

/// `IOMMU_GET_HW_INFO` of device `dev_id` of `fd`, decoded.
pub(crate) fn hw_info_of(fd: &crate::Iommufd, dev_id: u32, name: &str) -> Result<HwInfo> {
    hw_info_typed(fd, dev_id, name, None)
}

/// As [`hw_info_of`], asking for data of type `in_type` when given
/// (`IOMMU_HW_INFO_FLAG_INPUT_TYPE`).
pub(crate) fn hw_info_typed(
    fd: &crate::Iommufd,
    dev_id: u32,
    name: &str,
    in_type: Option<HwInfoType>,
) -> Result<HwInfo> {
    let mut data = [0u64; 32];
    let h = fd
        .ctx()
        .hw_info(dev_id, &mut data, in_type.map(HwInfoType::number))
        .map_err(|e| {
            let err = Error::sys("IOMMU_GET_HW_INFO", name.to_string(), e);
            match (e, in_type) {
                (Errno::ENOTTY, _) => err.kind_(ErrorKind::Unsupported).detail(
                    "no IOMMU_GET_HW_INFO here: the legacy container path, or a kernel before 6.6",
                ),
                (Errno::EOPNOTSUPP, Some(t)) => err.kind_(ErrorKind::Unsupported).detail(format!(
                    "the IOMMU behind {name} reports no {t:?} data (or the kernel predates IOMMU_HW_INFO_FLAG_INPUT_TYPE, Linux 6.17)"
                )),
                _ => err,
            }
        })?;
    let len = (h.data_len as usize).min(data.len() * 8);
    let bytes: Vec<u8> = data
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .take(len)
        .collect();
    Ok(HwInfo {
        kind: IommuKind::decode(h.data_type, &bytes),
        capabilities: h.out_capabilities,
        max_pasid_log2: h.out_max_pasid_log2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidation_entries_have_the_kernels_sizes() {
        // struct iommu_hwpt_vtd_s1_invalidate: 24 bytes, addr first.
        let mut out = Vec::new();
        let r = Invalidation::VtdS1 {
            addr: 0x1000,
            npages: 2,
            flags: 1,
        };
        r.encode(&mut out);
        assert_eq!((r.layout(), out.len()), ((0, 24), 24));
        assert_eq!(out[..8], 0x1000u64.to_ne_bytes());
        assert_eq!(out[16..20], 1u32.to_ne_bytes());
        // struct iommu_viommu_arm_smmuv3_invalidate: two little-endian words.
        let mut out = Vec::new();
        let r = crate::viommu::ViommuInvalidation::ArmSmmuV3 { cmd: [1, 2] };
        r.encode(&mut out);
        assert_eq!((r.layout(), out.len()), ((1, 16), 16));
        assert_eq!(out[8..], 2u64.to_le_bytes());
    }

    #[test]
    fn dirty_ranges_are_the_runs_of_set_bits() {
        let mut bits = vec![0u64; 3];
        for i in [0u64, 1, 2, 63, 64, 65, 130, 140] {
            bits[(i / 64) as usize] |= 1 << (i % 64);
        }
        let b = DirtyBitmap {
            iova: 0x1000_0000,
            page_size: 4096,
            pages: 150,
            bits,
        };
        let r: Vec<(u64, u64)> = b.ranges().collect();
        let p = |i: u64| 0x1000_0000 + i * 4096;
        assert_eq!(
            r,
            vec![
                (p(0), 3 * 4096),
                (p(63), 3 * 4096),
                (p(130), 4096),
                (p(140), 4096)
            ]
        );
        assert_eq!(b.count(), 8);
        assert!(b.is_dirty(p(64)) && !b.is_dirty(p(3)) && !b.is_dirty(0) && !b.is_dirty(p(150)));
    }

    #[test]
    fn hw_info_decodes_known_types_and_keeps_unknown_ones() {
        let mut vtd = vec![0u8; 24];
        vtd[0..4].copy_from_slice(&1u32.to_ne_bytes());
        vtd[8..16].copy_from_slice(&0xd2008c22260206u64.to_ne_bytes());
        vtd[16..24].copy_from_slice(&0xf00f5eu64.to_ne_bytes());
        assert_eq!(
            IommuKind::decode(1, &vtd),
            IommuKind::IntelVtd {
                flags: 1,
                cap_reg: 0xd2008c22260206,
                ecap_reg: 0xf00f5e
            }
        );
        // Short data is not decoded as what it is not: kept raw.
        assert!(matches!(
            IommuKind::decode(1, &vtd[..12]),
            IommuKind::Unknown { type_: 1, .. }
        ));
        assert_eq!(
            IommuKind::decode(99, &[1, 2, 3]),
            IommuKind::Unknown {
                type_: 99,
                data: vec![1, 2, 3]
            }
        );
        assert_eq!(IommuKind::decode(0, &[]), IommuKind::None);
    }
}
