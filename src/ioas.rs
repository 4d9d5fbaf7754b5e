//! I/O address spaces (`IOMMU_IOAS_*`) and the mappings in them.
//!
//! # Example
//!
//! ```no_run
//! use iommufd::{Access, DmaBuffer, Iommufd, Iova, IovaRange};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fd = Iommufd::open()?;
//! let ioas = fd.alloc_ioas()?;
//! println!("{}", ioas.iova_ranges()?);
//! ioas.allow_iovas(&[IovaRange { start: 0x10_0000, last: 0xfff_ffff }])?;
//! let m = ioas.map(DmaBuffer::new(4096)?, Iova::Fixed(0x10_0000), Access::READ).map_err(iommufd::Error::from)?;
//! let other = fd.alloc_ioas()?;
//! let copy = other.copy_from(&m, Iova::Any, Access::READ)?; // the same pages, not pinned again
//! drop(copy);
//! let _buf = m.unmap().map_err(iommufd::Error::from)?;
//! # Ok(()) }
//! ```

use crate::backend::{MapFail, Space};
use crate::dma::{DmaMemory, HugeBuffer, RawMemory};
use crate::error::{range, Error, ErrorKind, Result, TransitionError};
use crate::gaps::Chooser;
use crate::iommufd::Iommufd;
use crate::owner::HeldId;
use crate::ring::{FixedRing, FixedRingMut, Plain, Ring, RingMut};
use crate::sys;
use crate::table::Table;
use nix::errno::Errno;
use std::fmt;
use std::os::fd::AsFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

pub use crate::iova::{Access, Iova, IovaRange, IovaRanges};

#[cfg(feature = "vm-memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "vm-memory")))]
pub mod guest_ram;

pub(crate) struct IoasInner {
    /// The id and its iommufd, held by this IOAS alone in this process
    /// (clones of an `Ioas` share this inner).
    obj: HeldId,
    /// Ranges mapped through this crate, `iova -> len`, to name the overlap
    /// on EEXIST; with the file ranges not known to be pinned yet.
    mapped: Mutex<Mapped>,
    /// Whether `mapped.unpinned` is non-empty, so an attach that succeeds
    /// skips its lock when it is not.
    unpinned_set: AtomicBool,
    /// The kernel side: an iommufd object, or the legacy path's mappings and containers.
    space: Space,
    /// The allow-list set with `allow_iovas` (the kernel does not report it).
    allowed: Mutex<Vec<IovaRange>>,
    /// Whether `allowed` is non-empty, so maps skip its lock when it is not.
    allow_set: AtomicBool,
    /// The ranges devices attached here log their DMA over, one entry per
    /// running log ([`LogScope`]): a map must lie inside each.
    logs: Mutex<Vec<(u64, Vec<IovaRange>)>>,
    /// Whether `logs` is non-empty, so maps skip its lock when it is not.
    log_set: AtomicBool,
    /// Ranges mapped in the kernel that no `Mapping` of this process holds
    /// (inherited from a handover), `iova -> len`: for the dirty reads,
    /// which must know every mapped run ([`Ioas::mapped_runs`]).
    inherited: Mutex<Table>,
}

/// The live mappings of an IOAS ([`Table`], which this derefs to), the
/// ranges [`Ioas::map_file`] mapped that no attach has pinned yet, and
/// where a kernel-chosen IOVA goes ([`Chooser`]).
struct Mapped {
    all: Table,
    /// `IOMMU_IOAS_MAP_FILE` checks nothing of the file while the IOAS has
    /// no page table: the kernel pins a file's pages when a device attaches
    /// or an HWPT is allocated (or at the map, when the IOAS has one), and
    /// fails there on a file it cannot pin. The crate does not `fstat` each
    /// file up front (a syscall per map), nor know whether the IOAS has a
    /// page table, so every `map_file` range since the last successful
    /// attach is here: an attach that fails names them as the possible
    /// cause ([`Ioas::unpinned_error`]), and one that succeeds clears them.
    unpinned: Vec<(u64, u64)>,
    /// IOVAs for [`Iova::Any`], chosen in user space (see [`crate::gaps`]).
    chooser: Chooser,
}

impl Mapped {
    const fn new() -> Mapped {
        Mapped {
            all: Table::new(),
            unpinned: Vec::new(),
            chooser: Chooser::new(),
        }
    }

    /// Records a live mapping.
    #[inline(always)]
    fn insert(&mut self, iova: u64, len: u64) {
        self.all.insert(iova, len);
        self.chooser.mapped(iova, len);
    }

    /// Forgets the live mapping at `iova`.
    #[inline]
    fn remove(&mut self, iova: u64) -> Option<u64> {
        let len = self.all.remove(iova)?;
        self.chooser.unmapped(iova, len);
        Some(len)
    }

    /// The IOVA for `len` bytes of memory at `hint` (an address or a file
    /// offset) where the caller let the kernel choose; `None` to let it.
    #[inline]
    fn choose(&mut self, len: u64, hint: u64) -> Option<u64> {
        self.chooser.choose(&self.all, len, hint)
    }
}

impl std::ops::Deref for Mapped {
    type Target = Table;
    #[inline]
    fn deref(&self) -> &Table {
        &self.all
    }
}

/// The ranges a device logs its DMA over, held on its IOAS while the log
/// runs ([`crate::migration::Logged`]): the kernel cannot add ranges to a
/// running log, so a map outside them is refused until this drops.
#[derive(Debug)]
pub(crate) struct LogScope {
    ioas: Ioas,
    id: u64,
}

impl Drop for LogScope {
    fn drop(&mut self) {
        let mut logs = crate::lock(&self.ioas.inner.logs);
        logs.retain(|(id, _)| *id != self.id);
        self.ioas
            .inner
            .log_set
            .store(!logs.is_empty(), Ordering::Release);
    }
}

impl Ioas {
    /// Holds this IOAS's maps to `ranges` while a device logs its DMA over
    /// them. Every live mapping made through the crate must lie inside
    /// them already: the first that does not is the error (`(iova, len)`).
    pub(crate) fn log_scope(
        &self,
        ranges: &[IovaRange],
    ) -> std::result::Result<LogScope, (u64, u64)> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let mapped = crate::lock(&self.inner.mapped);
        if let Some((iova, len)) = mapped
            .entries()
            .into_iter()
            .find(|&(iova, len)| !ranges.iter().any(|r| r.contains(iova, len)))
        {
            return Err((iova, len));
        }
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut logs = crate::lock(&self.inner.logs);
        logs.push((id, ranges.to_vec()));
        self.inner.log_set.store(true, Ordering::Release);
        Ok(LogScope {
            ioas: self.clone(),
            id,
        })
    }

    /// Records a range another process mapped (a handover's
    /// [`Inherited`](crate::handover::Inherited)), so dirty reads cover it.
    pub(crate) fn inherit(&self, iova: u64, len: u64) {
        let mut mapped = crate::lock(&self.inner.mapped);
        crate::lock(&self.inner.inherited).insert(iova, len);
        mapped.chooser.foreign(iova, len);
    }

    /// The runs of mapped IOVA space in `[lo, hi)` that a dirty read must
    /// read one by one: `None` when one mapping covers the range (one
    /// search, the common case), else the runs, clipped to the range,
    /// merged, by IOVA, from the mappings this process made and those it
    /// inherited. The kernel walks contiguous areas from the start of a
    /// range and stops silently at the first hole (measured on 7.3).
    #[inline]
    pub(crate) fn mapped_runs(&self, lo: u64, hi: u64) -> Option<Vec<(u64, u64)>> {
        if crate::lock(&self.inner.mapped).one_covers(lo, hi) {
            return None;
        }
        Some(self.runs(lo, hi))
    }

    #[cold]
    #[inline(never)]
    fn runs(&self, lo: u64, hi: u64) -> Vec<(u64, u64)> {
        let inherited = crate::lock(&self.inner.inherited);
        let mut runs = Vec::new();
        self.runs_locked(lo, hi, &inherited, &mut runs);
        runs
    }

    fn runs_locked(&self, lo: u64, hi: u64, inherited: &Table, runs: &mut Vec<(u64, u64)>) {
        let mut all = Vec::new();
        crate::lock(&self.inner.mapped).overlapping(lo, hi, |s, l| all.push((s, l)));
        inherited.overlapping(lo, hi, |s, l| all.push((s, l)));
        all.sort_unstable();
        for (s, l) in all {
            let (s, e) = (s.max(lo), s.saturating_add(l).min(hi));
            match runs.last_mut() {
                Some((rs, rl)) if *rs + *rl >= s => *rl = (*rl).max(e - *rs),
                _ => runs.push((s, e - s)),
            }
        }
    }

    /// Whether `[at, at + len)` lies inside the ranges of every running log.
    #[cold]
    fn logged(&self, at: u64, len: u64) -> bool {
        crate::lock(&self.inner.logs)
            .iter()
            .all(|(_, rs)| rs.iter().any(|r| r.contains(at, len)))
    }

    #[cold]
    fn outside_log(&self, at: u64, len: u64) -> Error {
        let logs = crate::lock(&self.inner.logs);
        let list: Vec<String> = logs
            .iter()
            .flat_map(|(_, rs)| rs.iter().map(|r| r.to_string()))
            .collect();
        Error::new(ErrorKind::OutOfRange, "IOMMU_IOAS_MAP", self.range_object(at, len))
            .detail(format!(
                "a device attached here logs its DMA over {} for a migration, and the kernel cannot add ranges to a running log: pages its DMA wrote here would be lost to the migration",
                list.join(", ")
            ))
            .hint("map inside the logged ranges, or stop the log (end the migration) and start it again over the new ranges")
    }
}

impl Drop for IoasInner {
    fn drop(&mut self) {
        // Every device attached to this IOAS and every mapping in it holds a
        // handle, so by now nothing uses it; the kernel frees its mappings.
        self.space.destroy(self.obj.iommufd().ctx(), self.obj.id());
    }
}

/// An I/O address space: a set of IOVA → memory mappings that devices attach to.
///
/// `Ioas` is a handle: clones refer to the same IOAS. The IOAS is destroyed
/// (`IOMMU_DESTROY`) when the last handle is dropped, and handles are also held
/// by every device attached to it and every [`Mapping`] in it. So an IOAS
/// cannot be destroyed under an attached device or a live mapping: dropping
/// your handle early only gives up your own reference.
#[derive(Clone)]
///
/// Example: [the `ioas` module docs](crate::ioas).
pub struct Ioas {
    inner: Arc<IoasInner>,
}

impl Ioas {
    /// Allocates an empty IOAS on `iommufd` (`IOMMU_IOAS_ALLOC`).
    #[doc(alias = "IOMMU_IOAS_ALLOC")]
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn alloc(iommufd: &Iommufd) -> Result<Ioas> {
        let (id, space) = Space::alloc(iommufd.ctx())?;
        Ok(Ioas::with(HeldId::fresh(iommufd, id), space))
    }

    /// Takes over IOAS `id` of `iommufd`, made by another process that
    /// handed the iommufd over (see [`handover`](crate::handover)): checked
    /// with `IOMMU_IOAS_IOVA_RANGES`, which fails unless `id` is an IOAS of
    /// this iommufd. The IOAS is destroyed when the last handle in this
    /// process is dropped, as if it had been allocated here.
    ///
    /// The mappings the other process made stay in the kernel; they are not
    /// [`Mapping`] values here (their memory is the kernel's reference to a
    /// file, or pages the other process pinned, never this process's own
    /// memory), so [`Ioas::unmap`] removes them by range.
    ///
    /// One IOAS has one handle family in a process: an id that an `Ioas`
    /// of this process holds is refused (clone that handle instead), since
    /// the second family would destroy the IOAS under the first.
    ///
    /// # Errors
    /// [`ErrorKind::Busy`] when an `Ioas` of this process holds `id`;
    /// `ENOENT` when `id` is no IOAS of this iommufd;
    /// [`ErrorKind::Unsupported`] on the legacy path, which has no IOAS
    /// objects to hand over.
    pub fn adopt(iommufd: &Iommufd, id: u32) -> Result<Ioas> {
        let (held, space) = Ioas::adoptable(iommufd, id)?;
        let ioas = Ioas::with(held, space);
        // Its mappings are not known here: the kernel chooses its IOVAs.
        crate::lock(&ioas.inner.mapped).chooser.kernel = true;
        Ok(ioas)
    }

    /// IOAS `id` of `iommufd`, held for a value about to be made, and its
    /// kernel side; nothing is made that a drop would destroy (so nothing
    /// is destroyed when a later check fails).
    pub(crate) fn adoptable(iommufd: &Iommufd, id: u32) -> Result<(HeldId, Space)> {
        let held = HeldId::adopt(iommufd, id, "IOAS")?;
        let space = Space::adopt(iommufd.ctx(), id).map_err(|e| {
            if e.raw_errno() == Some(Errno::ENOENT) {
                e.detail("no IOAS with this id in this iommufd (ids are per iommufd: was the id sent with this iommufd?)")
            } else {
                e
            }
        })?;
        Ok((held, space))
    }

    /// The handle of a held IOAS and its kernel side.
    pub(crate) fn with(obj: HeldId, space: Space) -> Ioas {
        Ioas {
            inner: Arc::new(IoasInner {
                obj,
                mapped: Mutex::new(Mapped::new()),
                unpinned_set: AtomicBool::new(false),
                space,
                allowed: Mutex::new(Vec::new()),
                allow_set: AtomicBool::new(false),
                logs: Mutex::new(Vec::new()),
                log_set: AtomicBool::new(false),
                inherited: Mutex::new(Table::new()),
            }),
        }
    }

    /// How many handles of this IOAS exist in this process (clones, and
    /// those its mappings, devices and HWPTs hold).
    pub(crate) fn handles(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// The IOAS id within its iommufd.
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn id(&self) -> u32 {
        self.inner.obj.id()
    }

    /// The iommufd this IOAS lives in.
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn iommufd(&self) -> &Iommufd {
        self.inner.obj.iommufd()
    }

    fn object(&self) -> String {
        format!("IOAS {}", self.inner.obj.id())
    }

    /// "IOAS n IOVA [start, last]", the object of an error about a range.
    pub(crate) fn range_object(&self, iova: u64, len: u64) -> String {
        format!("{} {}", self.object(), range(iova, len))
    }

    /// The IOVA ranges this IOAS can map now, and the required alignment
    /// (`IOMMU_IOAS_IOVA_RANGES`; re-queried on `EMSGSIZE`).
    ///
    /// The answer depends on the devices attached: query again after every
    /// attach or detach. On VT-d, attaching the first device turns
    /// `[0, 2^64-1]` (alignment 1) into `[0, 0xfedfffff]` + `[0xfef00000, 2^48-1]`
    /// with 4 KiB alignment.
    #[doc(alias = "IOMMU_IOAS_IOVA_RANGES")]
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn iova_ranges(&self) -> Result<IovaRanges> {
        self.inner
            .space
            .iova_ranges(self.inner.obj.iommufd().ctx(), self.inner.obj.id())
    }

    /// Restricts the IOVAs the kernel may hand out or that devices may
    /// reserve to `ranges` (`IOMMU_IOAS_ALLOW_IOVAS`). An empty slice lifts the restriction.
    /// [`iova_ranges`](Self::iova_ranges) keeps reporting what the hardware
    /// can map; fixed-IOVA maps outside the allow-list are refused before the ioctl.
    ///
    /// # Errors
    /// The errno from the kernel (`EINVAL` for overlapping or unordered ranges).
    #[doc(alias = "IOMMU_IOAS_ALLOW_IOVAS")]
    pub fn allow_iovas(&self, ranges: &[IovaRange]) -> Result<()> {
        self.inner.space.allow_iovas(
            self.inner.obj.iommufd().ctx(),
            self.inner.obj.id(),
            ranges,
        )?;
        // The chooser's usable spans follow the allow-list under the same
        // locks (the table's first, as everywhere both are taken).
        let mut mapped = crate::lock(&self.inner.mapped);
        let mut allowed = crate::lock(&self.inner.allowed);
        *allowed = ranges.to_vec();
        mapped.chooser.set_allowed(&allowed);
        self.inner
            .allow_set
            .store(!ranges.is_empty(), Ordering::Relaxed);
        Ok(())
    }

    /// Whether the kernel may back this IOAS's IOMMU page tables with huge
    /// pages (`IOMMU_OPTION_HUGE_PAGES`; on by default). Turning it off trades
    /// IOTLB reach for exact unmap granularity.
    #[doc(alias = "IOMMU_OPTION_HUGE_PAGES")]
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    ///
    /// # Errors
    /// `EADDRINUSE` ([`ErrorKind::Busy`]) turning it off while a mapping
    /// is not page-aligned (a sub-page user address or length, which an
    /// IOAS with no device takes): off, the kernel keeps every mapping
    /// page-aligned. The setting is then unchanged.
    pub fn set_huge_pages(&self, on: bool) -> Result<()> {
        self.option(sys::IOMMU_OPTION_OP_SET, u64::from(on))
            .map(drop)
            .map_err(|e| match e.raw_errno() {
                Some(Errno::EADDRINUSE) => e.kind_(ErrorKind::Busy).detail(
                    "a mapping of this IOAS is not page-aligned (its user address or length), and with huge pages off the kernel keeps every mapping page-aligned; the setting is unchanged",
                ).hint("unmap the sub-page mappings first"),
                _ => e,
            })
    }

    /// The current huge-pages setting (see [`set_huge_pages`](Self::set_huge_pages)).
    pub fn huge_pages(&self) -> Result<bool> {
        self.option(sys::IOMMU_OPTION_OP_GET, 0).map(|v| v != 0)
    }

    fn option(&self, op: u16, val: u64) -> Result<u64> {
        self.inner.space.huge_pages_option(
            self.inner.obj.iommufd().ctx(),
            self.inner.obj.id(),
            op,
            val,
        )
    }

    /// Maps `memory` for DMA at `iova` (`IOMMU_IOAS_MAP`).
    ///
    /// The returned [`Mapping`] owns `memory` and unmaps on drop, so the
    /// memory cannot be freed, reused or touched through a reference while the
    /// device can reach it: the CPU reaches it only through
    /// [`Mapping::read_bytes`]/[`Mapping::write_bytes`], and
    /// [`Mapping::unmap`] hands it back. Only owned memory can be mapped: a
    /// borrow could be ended by leaking the mapping (see the crate's
    /// [soundness](crate#soundness-of-dma-memory) section).
    ///
    /// # Errors
    /// Checked before the ioctl: an empty buffer, a fixed IOVA outside
    /// [`iova_ranges`](Self::iova_ranges) ([`ErrorKind::OutOfRange`], listing
    /// the ranges) or not aligned ([`ErrorKind::Alignment`]). From the kernel:
    /// `EEXIST` ([`ErrorKind::Overlap`], naming the mapping in the way), `ENOMEM`
    /// ([`ErrorKind::MemlockLimit`], with `RLIMIT_MEMLOCK`), `EINVAL`
    /// ([`ErrorKind::Alignment`]). On error `memory` is handed back.
    #[doc(alias = "IOMMU_IOAS_MAP")]
    pub fn map<M: DmaMemory>(
        &self,
        mut memory: M,
        iova: Iova,
        access: Access,
    ) -> Result<Mapping<M>, TransitionError<M>> {
        let (ptr, len) = memory.dma_region();
        // SAFETY: `memory` moves into the returned Mapping (`owning`), which frees it
        // only after its unmap and that of every IOAS copy of it (see
        // `Keep`), and leaks it if an unmap fails; `DmaMemory` promises the
        // region stays valid and in place for as long as `memory` lives.
        let got = unsafe { self.map_region(ptr, len, iova, access) };
        self.owning(got, memory, ptr, len, false)
    }

    /// The end of a map of owned memory: the mapping that now owns it, or
    /// the memory handed back with the error. When the kernel may have left
    /// it mapped (an orphan the cleanup could not remove, only two kernel
    /// failures in a row), it is never freed or handed back: leaked, then
    /// a panic.
    fn owning<M>(
        &self,
        got: std::result::Result<u64, (Error, bool)>,
        memory: M,
        ptr: NonNull<u8>,
        len: usize,
        by_file: bool,
    ) -> Result<Mapping<M>, TransitionError<M>> {
        match got {
            Ok(iova) => Ok(
                Mapping::new(self.clone(), iova, len as u64, memory, ptr, len).file_backed(by_file),
            ),
            Err((e, false)) => Err(TransitionError::new(memory, e)),
            Err((e, true)) => {
                std::mem::forget(memory);
                panic!("{e}");
            }
        }
    }

    /// Maps a [`HugeBuffer`] for DMA: with `IOMMU_IOAS_MAP_FILE` (pinned by
    /// file offset, 2 MiB at a time) where the kernel has it, and like
    /// [`map`](Self::map) by address where it does not (before 6.13, or on
    /// the legacy path). The mapping owns the buffer, as with `map`.
    ///
    /// # Errors
    /// As [`map`](Self::map); the buffer is handed back.
    #[doc(alias = "IOMMU_IOAS_MAP_FILE")]
    pub fn map_huge(
        &self,
        mut memory: HugeBuffer,
        iova: Iova,
        access: Access,
    ) -> Result<Mapping<HugeBuffer>, TransitionError<HugeBuffer>> {
        if !self.inner.space.maps_files() {
            return self.map(memory, iova, access);
        }
        let (ptr, len) = memory.dma_region();
        let at = match self.precheck(iova, len as u64) {
            Ok(at) => at,
            Err(e) => return Err(TransitionError::new(memory, e)),
        };
        let file = memory.file();
        // The kernel aligns a kernel-chosen IOVA by the file offset: 0.
        let got = self.mapped_by(at, len as u64, access, Some(0), |at| {
            self.inner.space.map_file(
                self.inner.obj.iommufd().ctx(),
                self.inner.obj.id(),
                file,
                0,
                len as u64,
                at,
                access,
            )
        });
        match got {
            // No MAP_FILE on this kernel, or on this path: map by address.
            Err((e, false)) if e.kind() == ErrorKind::Unsupported => self.map(memory, iova, access),
            got => self.owning(got, memory, ptr, len, true),
        }
    }

    /// Maps `len` bytes at user address `va` (`IOMMU_IOAS_MAP`), for memory
    /// this crate cannot see the owner of (a VMM's guest RAM).
    ///
    /// # Safety
    /// `[va, va + len)` must be mapped memory of this process, and must stay
    /// mapped, in place, and not be used by Rust code in any way that assumes
    /// no one else writes it, until the returned [`Mapping`] *and every IOAS
    /// copy made from it* ([`copy_from`](Self::copy_from), which shares the
    /// pages) are dropped or unmapped: the device may read and write it at any
    /// time until then. ([`Mapping::copies`] tells whether copies remain; the
    /// source's [`unmap`](Mapping::unmap) refuses while they do, and its drop
    /// does not wait for them.)
    ///
    /// # Errors
    /// As [`map`](Self::map); and `EFAULT` ([`ErrorKind::InvalidInput`],
    /// said after the kernel refused) when the range is not memory of this
    /// process, runs past its mapping, or is a device's BAR, which iommufd
    /// never maps by address (export it with
    /// [`Device::export_bar`](crate::Device::export_bar) and map it with
    /// [`map_peer_bar`](Self::map_peer_bar)).
    #[doc(alias = "IOMMU_IOAS_MAP")]
    pub unsafe fn map_user_va(
        &self,
        va: NonNull<u8>,
        len: usize,
        iova: Iova,
        access: Access,
    ) -> Result<Mapping<RawMemory>> {
        // SAFETY: forwarded: the caller upholds this function's contract.
        let iova = match unsafe { self.map_region(va, len, iova, access) } {
            Ok(iova) => iova,
            Err((e, false)) => return Err(e),
            // The caller would free memory the device may reach.
            Err((e, true)) => panic!("{e}"),
        };
        Ok(Mapping::new(
            self.clone(),
            iova,
            len as u64,
            RawMemory { _private: () },
            va,
            len,
        ))
    }

    /// Maps `len` bytes of `file` from offset `start` (`IOMMU_IOAS_MAP_FILE`),
    /// for memfd-backed (or hugetlbfs, or dma-buf) memory. The kernel holds its
    /// own reference to the file, so the mapping does not borrow it.
    ///
    /// `file` must be a memfd, a shmem or hugetlbfs file, or a dma-buf, and
    /// `[start, start + len)` must lie inside it. The kernel pins the pages
    /// when a device is attached: at this call when one is, and otherwise at
    /// the next attach to this IOAS (or HWPT allocation on it). Nothing is
    /// checked before the ioctl (a 4 KiB map costs what the raw call does).
    ///
    /// # Errors
    /// As [`map`](Self::map); [`ErrorKind::Unsupported`] on kernels before
    /// 6.13 and on the legacy path. A file the kernel refuses is explained
    /// after the refusal, by what the file is ([`ErrorKind::InvalidInput`],
    /// "not a memfd", "not inside the file"). When the pin happens at a
    /// later attach, that attach fails (the device handed back) and its
    /// error names the file ranges not pinned yet; unmap the one at fault.
    #[doc(alias = "IOMMU_IOAS_MAP_FILE")]
    pub fn map_file(
        &self,
        file: &impl AsFd,
        start: u64,
        len: u64,
        iova: Iova,
        access: Access,
    ) -> Result<Mapping<()>> {
        let at = self.map_fd(file.as_fd(), start, len, iova, access)?;
        Ok(self.file_mapping(at, len, ()))
    }

    /// `IOMMU_IOAS_MAP_FILE` of `[start, start + len)` of `file`, checked
    /// first (see [`map_file`](Self::map_file)); the IOVA.
    pub(crate) fn map_fd(
        &self,
        file: std::os::fd::BorrowedFd<'_>,
        start: u64,
        len: u64,
        iova: Iova,
        access: Access,
    ) -> Result<u64> {
        let at = self.precheck(iova, len)?;
        self.mapped_by_as(at, len, access, true, Some(start), |at| {
            self.inner.space.map_file(
                self.inner.obj.iommufd().ctx(),
                self.inner.obj.id(),
                file,
                start,
                len,
                at,
                access,
            )
        })
        // A file mapping's pages are the kernel's (it holds the file), so
        // an orphan costs only an IOVA range, not soundness.
        .map_err(|(e, _)| self.file_error(e, file, start, len))
    }

    /// The mapping of a file range at `at`, owning `memory` (what keeps the
    /// mapped thing alive, or borrowed); no CPU view.
    pub(crate) fn file_mapping<M>(&self, at: u64, len: u64, memory: M) -> Mapping<M> {
        Mapping::new(self.clone(), at, len, memory, NonNull::dangling(), 0).file_backed(true)
    }

    /// Maps the pages behind `src` into this IOAS as well (`IOMMU_IOAS_COPY`),
    /// without pinning them again.
    ///
    /// The copy holds a share of the source's memory ([`Shared`]), not a
    /// borrow: the memory is freed only when the source and every copy are
    /// gone, and [`Mapping::unmap`] of the source refuses to hand it back while
    /// a copy maps it. A copy has no CPU view: read and write through the source.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    #[doc(alias = "IOMMU_IOAS_COPY")]
    pub fn copy_from<M>(
        &self,
        src: &Mapping<M>,
        iova: Iova,
        access: Access,
    ) -> Result<Mapping<Shared<M>>> {
        self.copy_range(src, 0, src.len, iova, access)
    }

    /// Maps part of `src` into this IOAS: the `len` bytes from byte `offset`
    /// of it (`IOMMU_IOAS_COPY` of a sub-range), as
    /// [`copy_from`](Self::copy_from) maps the whole. The copy holds a share
    /// of all of the source's memory, as a whole copy does.
    ///
    /// ```no_run
    /// use iommufd::{Access, DmaBuffer, Iommufd, Iova};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let fd = Iommufd::open()?;
    /// let (a, b) = (fd.alloc_ioas()?, fd.alloc_ioas()?);
    /// let ram = a.map(DmaBuffer::new(1 << 20)?, Iova::Any, Access::READ_WRITE).map_err(iommufd::Error::from)?;
    /// // The second page only, for a device on `b`.
    /// let page = b.copy_part_from(&ram, 4096, 4096, Iova::Fixed(0x10_0000), Access::READ)?;
    /// # drop(page); Ok(()) }
    /// ```
    ///
    /// # Errors
    /// An empty range or one that runs past the end of `src`
    /// ([`ErrorKind::InvalidInput`], before the ioctl); an `offset` or
    /// `len` the IOASes' alignment refuses is the kernel's `EINVAL` (an IOAS
    /// with a device attached takes page multiples); as
    /// [`map`](Self::map).
    #[doc(alias = "IOMMU_IOAS_COPY")]
    pub fn copy_part_from<M>(
        &self,
        src: &Mapping<M>,
        offset: u64,
        len: u64,
        iova: Iova,
        access: Access,
    ) -> Result<Mapping<Shared<M>>> {
        src.check_part(
            "IOMMU_IOAS_COPY",
            || src.ioas.range_object(src.iova, src.len),
            offset,
            len,
        )?;
        self.copy_range(src, offset, len, iova, access)
    }

    /// `IOMMU_IOAS_COPY` of `[offset, offset + len)` of `src` (checked by
    /// the caller to lie inside it).
    fn copy_range<M>(
        &self,
        src: &Mapping<M>,
        offset: u64,
        len: u64,
        iova: Iova,
        access: Access,
    ) -> Result<Mapping<Shared<M>>> {
        let at = self.precheck(iova, len)?;
        if !src
            .ioas
            .inner
            .obj
            .iommufd()
            .same_as(self.inner.obj.iommufd())
        {
            return Err(
                Error::new(ErrorKind::InvalidInput, "IOMMU_IOAS_COPY", self.object()).detail(
                    format!(
                        "the source mapping is in an IOAS of another iommufd ({})",
                        src.ioas.object()
                    ),
                ),
            );
        }
        // The part's own address and CPU-side length (its source's, from
        // `offset`); `offset` lies inside the source (the callers).
        let ptr = NonNull::new(src.ptr.as_ptr().wrapping_add(offset as usize)).unwrap_or(src.ptr);
        let va_len = src.va_len.saturating_sub(offset as usize).min(len as usize);
        let src_va = (va_len > 0).then_some(ptr);
        // The kernel aligns a kernel-chosen IOVA by the source's address
        // (or file offset, which the crate does not keep: it chooses then).
        let hint = (!src.by_file).then_some(ptr.as_ptr() as u64);
        let keep = src.keep.get_or_init(|| Arc::new(Keep(Mutex::new(None))));
        // SAFETY: the returned mapping holds a `Shared` share of the source's
        // `Keep`, which keeps the memory at `src_va` alive and in place until
        // the copy is unmapped (and forever if that unmap fails).
        let got = self
            .mapped_by(at, len, access, hint, |at| unsafe {
                self.inner.space.copy(
                    self.inner.obj.iommufd().ctx(),
                    self.inner.obj.id(),
                    (
                        &src.ioas.inner.space,
                        src.ioas.inner.obj.id(),
                        src.iova + offset,
                        src_va,
                    ),
                    len,
                    at,
                    access,
                )
            })
            .map_err(|(e, orphan)| {
                if orphan {
                    // The orphaned copy may reach the source's memory: keep it forever.
                    std::mem::forget(keep.clone());
                }
                e
            })?;
        Ok(
            Mapping::new(self.clone(), got, len, Shared(keep.clone()), ptr, va_len)
                .file_backed(src.by_file),
        )
    }

    /// Unmaps exactly `[iova, iova + len)` (`IOMMU_IOAS_UNMAP`) and returns the
    /// number of bytes unmapped. This is for ranges mapped outside this crate;
    /// a [`Mapping`] unmaps itself, and a range that holds a live [`Mapping`]
    /// is refused before the ioctl: otherwise that mapping's drop could later
    /// unmap whatever else took its IOVA.
    ///
    /// # Errors
    /// [`ErrorKind::Busy`] when the range covers a live [`Mapping`];
    /// `ENOENT` ([`ErrorKind::NotMapped`]) when the range would cut a mapping
    /// in two, or covers nothing: the kernel never splits a mapping, and leaves
    /// it intact.
    #[doc(alias = "IOMMU_IOAS_UNMAP")]
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn unmap(&self, iova: u64, len: u64) -> Result<u64> {
        // Held across the ioctl: no Mapping can take the range in between.
        let mut mapped = crate::lock(&self.inner.mapped);
        if let Some((s, l)) = live_overlap(&mapped, iova, len) {
            let cut = s < iova || s.saturating_add(l) > iova.saturating_add(len);
            return Err(self.live_mapping_in_the_way(iova, len, s, l, cut));
        }
        let gone = self
            .inner
            .space
            .unmap(
                self.inner.obj.iommufd().ctx(),
                self.inner.obj.id(),
                iova,
                len,
            )
            .map_err(|e| self.unmap_error(iova, len, e, false))?;
        // Inherited ranges inside it are gone too.
        let mut inherited = crate::lock(&self.inner.inherited);
        let mut inside = Vec::new();
        inherited.overlapping(iova, iova.saturating_add(len), |s, _| inside.push(s));
        for s in inside {
            inherited.remove(s);
        }
        mapped.chooser.unmapped_by_range(iova, len);
        Ok(gone)
    }

    #[cold]
    fn live_mapping_in_the_way(&self, iova: u64, len: u64, s: u64, l: u64, cut: bool) -> Error {
        let obj = self.range_object(iova, len);
        if cut {
            Error::new(ErrorKind::NotMapped, "IOMMU_IOAS_UNMAP", obj)
                .errno(Errno::ENOENT)
                .detail(format!(
                    "the range must cover whole mappings: it cuts the live mapping {}, which the kernel does not split; nothing was unmapped",
                    range(s, l)
                ))
        } else {
            Error::new(ErrorKind::Busy, "IOMMU_IOAS_UNMAP", obj)
                .errno(Errno::EBUSY)
                .detail(format!(
                    "the range holds the live mapping {}, owned by a Mapping value",
                    range(s, l)
                ))
                .hint("drop that Mapping, or call Mapping::unmap to get its memory back")
        }
    }

    #[cold]
    fn unmap_error(&self, iova: u64, len: u64, e: Errno, own: bool) -> Error {
        let err = Error::sys("IOMMU_IOAS_UNMAP", self.range_object(iova, len), e);
        match (e, own) {
            (Errno::EINVAL, false) if len == 0 => err
                .kind_(ErrorKind::InvalidInput)
                .detail("zero-length range"),
            (Errno::EOVERFLOW, false) => err
                .kind_(ErrorKind::OutOfRange)
                .detail("the range wraps past the end of the 64-bit IOVA space"),
            // `unmap` checked that no live Mapping is in the range.
            (Errno::ENOENT, false) => err.kind_(ErrorKind::NotMapped).detail(
                "nothing is mapped there: no mapping of this crate is in the range, and the kernel found none wholly inside it (a mapping made outside this crate that the range cuts is left intact too: the kernel never splits one)",
            ),
            (Errno::ENOENT, true) => err.kind_(ErrorKind::NotMapped).detail(
                "this Mapping's range is no longer in the IOAS: something outside this crate unmapped it (a raw IOMMU_IOAS_UNMAP on the iommufd fd)",
            ),
            _ => err,
        }
    }

    /// Unmaps a [`Mapping`]'s own range and forgets it.
    ///
    /// `EFAULT` means the kernel could not copy its answer back, possibly
    /// after unmapping: the range is exactly one mapping of ours and nothing
    /// can map there while the table is locked, so a second try tells which
    /// (gone already: `ENOENT`).
    #[inline(always)]
    fn unmap_own(&self, iova: u64, len: u64) -> Result<()> {
        let mut mapped = crate::lock(&self.inner.mapped);
        let unmap = || {
            self.inner.space.unmap(
                self.inner.obj.iommufd().ctx(),
                self.inner.obj.id(),
                iova,
                len,
            )
        };
        let result = match unmap() {
            Err(Errno::EFAULT) => match unmap() {
                Err(Errno::ENOENT) => Ok(len),
                again => again,
            },
            first => first,
        };
        match result {
            Ok(_) => {
                mapped.remove(iova);
                if !mapped.unpinned.is_empty() {
                    mapped.unpinned.retain(|&(s, _)| s != iova);
                    let left = !mapped.unpinned.is_empty();
                    self.inner.unpinned_set.store(left, Ordering::Relaxed);
                }
                Ok(())
            }
            Err(e) => Err(self.unmap_error(iova, len, e, true)),
        }
    }

    /// A failed `IOMMU_IOAS_MAP_FILE`, explained by what the file is, now
    /// that the kernel said no: `IOMMU_IOAS_MAP_FILE` maps a regular file
    /// (memfd, shmem, hugetlbfs) or a dma-buf (an anonymous inode, no file
    /// type), with the range inside it. One `fstat`, on the error path only.
    #[cold]
    #[inline(never)]
    fn file_error(
        &self,
        err: Error,
        file: std::os::fd::BorrowedFd<'_>,
        start: u64,
        len: u64,
    ) -> Error {
        use nix::libc::{S_IFMT, S_IFREG};
        // Refusals that say nothing about the file keep their own words.
        match err.raw_errno() {
            None
            | Some(
                Errno::EEXIST
                | Errno::EOVERFLOW
                | Errno::ENOSPC
                | Errno::ENOTTY
                | Errno::EOPNOTSUPP
                | Errno::ENOMEM,
            ) => return err,
            Some(_) => {}
        }
        let Ok(st) = nix::sys::stat::fstat(file) else {
            return err;
        };
        let kind = st.st_mode & S_IFMT;
        let size = u64::try_from(st.st_size).unwrap_or(0);
        let why = if kind != S_IFREG && kind != 0 {
            format!("the fd is not a memfd, a regular file or a dma-buf (file type {kind:#o})")
        } else if kind == S_IFREG && start.checked_add(len).is_none_or(|end| end > size) {
            format!("the range [{start:#x}, +{len:#x}) is not inside the {size:#x}-byte file")
        } else {
            return err;
        };
        err.kind_(ErrorKind::InvalidInput)
            .detail(why)
            .hint("map a memfd (memfd_create + ftruncate to its size) or a dma-buf, with start + length inside it")
    }

    /// An attach (or an HWPT allocation) of device `name` that the kernel
    /// refused with `EADDRINUSE`: it reserves a device's reserved IOVA
    /// regions in the IOAS then, and one overlaps a live mapping or a range
    /// allowed with `allow_iovas`. Named from sysfs, on the error path only.
    #[cold]
    pub(crate) fn reserved_error(&self, name: &str, err: Error) -> Error {
        if err.raw_errno() != Some(Errno::EADDRINUSE) {
            return err;
        }
        let regions = crate::sysfs::reserved_regions(std::path::Path::new("/sys"), name);
        let mapped = crate::lock(&self.inner.mapped);
        let allowed = crate::lock(&self.inner.allowed);
        for (start, last, kind) in &regions {
            let len = (last - start).saturating_add(1);
            let region = range(*start, len);
            if let Some((s, l)) = live_overlap(&mapped, *start, len) {
                return err
                    .kind_(ErrorKind::Overlap)
                    .detail(format!(
                        "the device's reserved IOVA region {region} ({kind}) overlaps the live mapping {}: the kernel reserves a device's regions in the IOAS when it attaches",
                        range(s, l)
                    ))
                    .hint("attach the device before mapping, or map clear of its reserved regions (iommu_group/reserved_regions; Iova::Any keeps clear of them once a device is attached)");
            }
            if let Some(r) = allowed
                .iter()
                .find(|r| r.start <= *last && *start <= r.last)
            {
                return err
                    .kind_(ErrorKind::Overlap)
                    .detail(format!(
                        "the device's reserved IOVA region {region} ({kind}) lies in {r}, allowed with allow_iovas: a reserved region may not be allowed"
                    ))
                    .hint("allow ranges that leave the device's reserved regions out (iommu_group/reserved_regions)");
            }
        }
        err.kind_(ErrorKind::Overlap).detail(
            "a reserved IOVA region of the device (iommu_group/reserved_regions) overlaps a mapping or a range allowed with allow_iovas; the kernel reserves them when the device attaches",
        )
    }

    /// The error of an attach to this IOAS (or an HWPT allocation on it)
    /// that failed while file ranges mapped by [`map_file`](Self::map_file)
    /// were not pinned yet: the kernel pins them now, and a file it cannot
    /// pin fails the attach (see [`Mapped::unpinned`]).
    #[cold]
    #[inline(never)]
    pub(crate) fn unpinned_error(&self, err: Error) -> Error {
        if !self.inner.unpinned_set.load(Ordering::Relaxed)
            || !matches!(
                err.raw_errno(),
                Some(Errno::EINVAL | Errno::EFAULT | Errno::EIO)
            )
        {
            return err;
        }
        let mapped = crate::lock(&self.inner.mapped);
        let list: Vec<String> = mapped.unpinned.iter().map(|&(s, l)| range(s, l)).collect();
        if list.is_empty() {
            return err;
        }
        // The likelier cause first: the generic reasons of the refusal
        // follow, for when the files are good.
        let otherwise = err
            .details()
            .map(|d| format!("; if the files are good: {d}"))
            .unwrap_or_default();
        err.kind_(ErrorKind::InvalidInput)
            .detail(format!(
                "{} of {} {} mapped with map_file since the last attach that succeeded: if the IOAS had no page table then, the kernel pins {} pages only now, and refuses the attach if a file is not a memfd, a shmem or hugetlbfs file or a dma-buf, or a range lies past the end of its file{otherwise}",
                list.join(", "),
                self.object(),
                if list.len() == 1 { "was" } else { "were" },
                if list.len() == 1 { "its" } else { "their" },
            ))
            .hint("unmap the file mapping (Mapping::unmap) and map a memfd range inside the file; then attach again")
    }

    /// An attach to this IOAS (or an HWPT allocation on it) succeeded: the
    /// kernel pinned every file range it maps, so none is suspect now.
    #[inline]
    pub(crate) fn pinned(&self) {
        if self.inner.unpinned_set.load(Ordering::Relaxed) {
            self.pinned_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn pinned_slow(&self) {
        crate::lock(&self.inner.mapped).unpinned.clear();
        self.inner.unpinned_set.store(false, Ordering::Relaxed);
    }

    /// The checks before a map ioctl that the kernel cannot make: a zero
    /// length, and the allow-list (the kernel applies `IOMMU_IOAS_ALLOW_IOVAS`
    /// to the IOVAs it chooses, not to fixed ones). Ranges and alignment are
    /// the kernel's to check; [`fixed_iova_error`](Self::fixed_iova_error)
    /// explains its `EINVAL` afterwards. Returns the fixed IOVA, if any.
    #[inline]
    fn precheck(&self, iova: Iova, len: u64) -> Result<Option<u64>> {
        if len == 0 {
            return Err(
                Error::new(ErrorKind::InvalidInput, "IOMMU_IOAS_MAP", self.object())
                    .detail("zero-length mapping"),
            );
        }
        let Iova::Fixed(at) = iova else {
            return Ok(None);
        };
        if self.inner.allow_set.load(Ordering::Relaxed) {
            self.check_allowed(at, len)?;
        }
        if self.inner.log_set.load(Ordering::Acquire) && !self.logged(at, len) {
            return Err(self.outside_log(at, len));
        }
        Ok(Some(at))
    }

    fn check_allowed(&self, at: u64, len: u64) -> Result<()> {
        let allowed = crate::lock(&self.inner.allowed);
        if allowed.is_empty() || allowed.iter().any(|r| r.contains(at, len)) {
            return Ok(());
        }
        let list: Vec<String> = allowed.iter().map(|r| r.to_string()).collect();
        Err(Error::new(
            ErrorKind::OutOfRange,
            "IOMMU_IOAS_MAP",
            self.range_object(at, len),
        )
        .errno(Errno::EINVAL)
        .detail(format!(
            "outside the ranges allowed with allow_iovas: {}",
            list.join(", ")
        )))
    }

    /// Why the kernel refused a fixed IOVA, told from the ranges it reports
    /// now: not aligned, or outside every usable range. `None` when neither.
    #[cold]
    fn fixed_iova_error(&self, op: &'static str, at: u64, len: u64, e: Errno) -> Option<Error> {
        let obj = || self.range_object(at, len);
        if at.checked_add(len.saturating_sub(1)).is_none() {
            return Some(
                Error::new(ErrorKind::OutOfRange, op, obj())
                    .errno(e)
                    .detail("the range runs past the end of the 64-bit IOVA space"),
            );
        }
        let ranges = self.iova_ranges().ok()?;
        if at % ranges.alignment.max(1) != 0 || len % ranges.alignment.max(1) != 0 {
            return Some(
                Error::new(ErrorKind::Alignment, op, obj())
                    .errno(e)
                    .detail(format!(
                        "IOVA and length must be multiples of {:#x}",
                        ranges.alignment
                    )),
            );
        }
        if !ranges.contains(at, len) {
            return Some(
                Error::new(ErrorKind::OutOfRange, op, obj())
                    .errno(e)
                    .detail(format!("outside the usable IOVA ranges {ranges}")),
            );
        }
        None
    }

    /// # Safety
    /// As [`map_user_va`](Self::map_user_va).
    #[inline(always)]
    unsafe fn map_region(
        &self,
        va: NonNull<u8>,
        len: usize,
        iova: Iova,
        access: Access,
    ) -> std::result::Result<u64, (Error, bool)> {
        let at = self.precheck(iova, len as u64).map_err(|e| (e, false))?;
        // SAFETY: forwarded from this function's contract.
        self.mapped_by(
            at,
            len as u64,
            access,
            Some(va.as_ptr() as u64),
            |at| unsafe {
                self.inner.space.map(
                    self.inner.obj.iommufd().ctx(),
                    self.inner.obj.id(),
                    va,
                    len as u64,
                    at,
                    access,
                )
            },
        )
    }

    /// Runs `op`, a map-family call, with the table of live mappings locked,
    /// and records the new mapping in it. Holding the lock across the ioctl
    /// keeps [`unmap`](Self::unmap) from removing a range between our
    /// ioctl and our record of it.
    ///
    /// `op` is called with the IOVA to map at, `None` for the kernel to
    /// choose. Where the caller let the kernel choose and `hint` is the
    /// address or file offset of the memory, the crate chooses instead
    /// ([`crate::gaps`]); a refusal of its choice is retried as the kernel
    /// would have it ([`choose_again`](Self::choose_again)).
    ///
    /// On `EFAULT` the kernel may have made the mapping and only failed to
    /// copy the result back (it does not undo `IOMMU_IOAS_MAP`, `MAP_FILE` or
    /// `COPY` then), so the range is unmapped again before the memory is
    /// handed back: the fixed range, or, for a kernel-chosen IOVA, every gap
    /// between this IOAS's live mappings. The `bool` is true when that
    /// cleanup failed and the device may still reach the memory: the caller
    /// must then never free it.
    #[inline(always)]
    fn mapped_by(
        &self,
        at: Option<u64>,
        len: u64,
        access: Access,
        hint: Option<u64>,
        op: impl FnMut(Option<u64>) -> std::result::Result<u64, MapFail>,
    ) -> std::result::Result<u64, (Error, bool)> {
        self.mapped_by_as(at, len, access, false, hint, op)
    }

    /// [`mapped_by`](Self::mapped_by), recording the range as a file range
    /// not known to be pinned when `unpinned` (see [`Mapped::unpinned`]).
    #[inline(always)]
    fn mapped_by_as(
        &self,
        at: Option<u64>,
        len: u64,
        access: Access,
        unpinned: bool,
        hint: Option<u64>,
        mut op: impl FnMut(Option<u64>) -> std::result::Result<u64, MapFail>,
    ) -> std::result::Result<u64, (Error, bool)> {
        let mut mapped = crate::lock(&self.inner.mapped);
        let chosen = match (at, hint) {
            (None, Some(hint)) => mapped.choose(len, hint),
            _ => None,
        };
        let mut tried = at.or(chosen);
        // One call site on the hot path, so that `op` is inlined here.
        let mut got = op(tried);
        if let (Some(_), Err(MapFail::Sys(_, e @ (Errno::EINVAL | Errno::EEXIST)))) = (chosen, &got)
        {
            let hint = hint.unwrap_or(0);
            (tried, got) = self.choose_again(&mut mapped, *e, len, hint, &mut op);
        }
        match got {
            // A kernel-chosen IOVA outside a running log's ranges is taken
            // back (fixed ones were refused before the ioctl).
            Ok(iova)
                if at.is_none()
                    && self.inner.log_set.load(Ordering::Acquire)
                    && !self.logged(iova, len) =>
            {
                let e = self.outside_log(iova, len);
                let undone = self
                    .inner
                    .space
                    .unmap(
                        self.inner.obj.iommufd().ctx(),
                        self.inner.obj.id(),
                        iova,
                        len,
                    )
                    .is_ok();
                Err((e, !undone))
            }
            Ok(iova) => {
                mapped.insert(iova, len);
                if unpinned {
                    mapped.unpinned.push((iova, len));
                    self.inner.unpinned_set.store(true, Ordering::Relaxed);
                }
                Ok(iova)
            }
            Err(fail) => Err(self.map_failed(fail, tried, len, access, hint, &mapped)),
        }
    }

    /// The kernel refused an IOVA the crate chose (`e`). `EINVAL`: it lies
    /// in a reserved region or breaks the IOAS's alignment, which the crate
    /// learns from `IOMMU_IOAS_IOVA_RANGES` and chooses again. `EEXIST`:
    /// something maps this IOAS that the crate did not make, so the kernel
    /// chooses from now on. When choosing again does not help, the kernel
    /// chooses (it gives the caller its own answer, success or error).
    /// Returns the IOVA tried last (`None`: the kernel's choice) and its
    /// outcome.
    #[cold]
    #[inline(never)]
    fn choose_again(
        &self,
        mapped: &mut Mapped,
        e: Errno,
        len: u64,
        hint: u64,
        op: &mut impl FnMut(Option<u64>) -> std::result::Result<u64, MapFail>,
    ) -> (Option<u64>, std::result::Result<u64, MapFail>) {
        if e == Errno::EINVAL {
            let learnt = self.iova_ranges().is_ok_and(|r| {
                let spans = r.ranges.iter().map(|r| (r.start, r.last)).collect();
                let allowed = crate::lock(&self.inner.allowed);
                mapped.chooser.learn(spans, r.alignment, &allowed)
            });
            if let Some(at) = learnt.then(|| mapped.choose(len, hint)).flatten() {
                match op(Some(at)) {
                    Err(MapFail::Sys(_, Errno::EINVAL | Errno::EEXIST)) => {}
                    got => return (Some(at), got),
                }
            }
        }
        let got = op(None);
        if got.is_ok() {
            // The kernel found room where the crate, knowing what it knows,
            // found none: leave the choice to it from now on.
            mapped.chooser.kernel = true;
        }
        (None, got)
    }

    /// The error of a failed map-family call, after the cleanup `EFAULT`
    /// needs (see [`mapped_by`](Self::mapped_by)); called with the table locked.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn map_failed(
        &self,
        fail: MapFail,
        at: Option<u64>,
        len: u64,
        access: Access,
        hint: Option<u64>,
        mapped: &Table,
    ) -> (Error, bool) {
        match fail {
            MapFail::Sys(op, Errno::EFAULT) => {
                let orphan = !self.unmap_orphans(at, len, mapped);
                let mut err = self.map_error(op, at.unwrap_or(0), len, Errno::EFAULT, mapped);
                // By address: what the process has at that address.
                if let ("IOMMU_IOAS_MAP", Some(va)) = (op, hint) {
                    err = crate::diagnose::map_efault(err, va, len);
                }
                err = if orphan {
                    err.append_detail("the kernel may have made the mapping, and unmapping it again failed: the memory is kept forever".into())
                } else {
                    err.append_detail(
                        "whatever the kernel mapped before failing was unmapped again".into(),
                    )
                };
                (err, orphan)
            }
            MapFail::Sys(op, e) => (self.map_fail_error(op, at, len, access, e, mapped), false),
            MapFail::Other(e) => (e, false),
        }
    }

    /// Unmaps what a failed map call may have left: `[at, at + len)`, or
    /// every range no live mapping holds. True when nothing can be left.
    #[cold]
    fn unmap_orphans(&self, at: Option<u64>, len: u64, mapped: &Table) -> bool {
        let unmap = |s: u64, l: u64| {
            matches!(
                self.inner
                    .space
                    .unmap(self.inner.obj.iommufd().ctx(), self.inner.obj.id(), s, l),
                Ok(_) | Err(Errno::ENOENT)
            )
        };
        if let Some(at) = at {
            return unmap(at, len);
        }
        let mut ok = true;
        let mut next = 0u64;
        for (s, l) in mapped.entries() {
            if s > next {
                ok &= unmap(next, s - next);
            }
            next = s.saturating_add(l);
        }
        match next {
            0 => ok && unmap(0, u64::MAX), // the kernel's "everything"
            u64::MAX => ok,
            n => ok && unmap(n, u64::MAX - n + 1),
        }
    }

    #[cold]
    fn map_fail_error(
        &self,
        op: &'static str,
        at: Option<u64>,
        len: u64,
        access: Access,
        e: Errno,
        mapped: &Table,
    ) -> Error {
        if e == Errno::EINVAL && !access.read && !access.write {
            return Error::sys(op, self.range_object(at.unwrap_or(0), len), e)
                .kind_(ErrorKind::InvalidInput)
                .detail("the mapping gives the device no access: use Access::READ, Access::WRITE or Access::READ_WRITE");
        }
        if let (Some(at), Errno::EINVAL | Errno::EOVERFLOW) = (at, e) {
            if let Some(err) = self.fixed_iova_error(op, at, len, e) {
                return err;
            }
        }
        self.map_error(op, at.unwrap_or(0), len, e, mapped)
    }

    pub(crate) fn space(&self) -> &Space {
        &self.inner.space
    }

    #[cold]
    fn map_error(&self, op: &'static str, iova: u64, len: u64, e: Errno, mapped: &Table) -> Error {
        let err = Error::sys(op, self.range_object(iova, len), e);
        match e {
            Errno::EEXIST => {
                let detail = match live_overlap(mapped, iova, len) {
                    Some((s, l)) => format!("overlaps the existing mapping {}", range(s, l)),
                    None => "overlaps an existing mapping or a reserved region".to_string(),
                };
                err.kind_(ErrorKind::Overlap).detail(detail)
            }
            Errno::ENOMEM => crate::diagnose::pin_enomem(err, len),
            Errno::EINVAL if op == "IOMMU_IOAS_MAP_FILE" => err
                .kind_(ErrorKind::InvalidInput)
                .detail("the kernel cannot map this file range: IOMMU_IOAS_MAP_FILE takes a memfd, a shmem or hugetlbfs file or a dma-buf, with start and length page-aligned and inside the file"),
            Errno::EINVAL => match self.iova_ranges().map(|r| r.alignment) {
                Ok(align) if align > 1 && (iova % align != 0 || len % align != 0) => {
                    err.kind_(ErrorKind::Alignment).detail(format!(
                        "the IOAS requires IOVA and length aligned to {align:#x}"
                    ))
                }
                _ => err.detail("the kernel rejected the arguments (IOVA, length, user address or flags)"),
            },
            Errno::EOVERFLOW => err
                .kind_(ErrorKind::OutOfRange)
                .detail("the range wraps past the end of the 64-bit IOVA space"),
            Errno::ENOTTY | Errno::EOPNOTSUPP if op == "IOMMU_IOAS_MAP_FILE" => err
                .kind_(ErrorKind::Unsupported)
                .detail("this kernel has no IOMMU_IOAS_MAP_FILE (added in Linux 6.13)")
                .hint(
                    "map the memory with Ioas::map instead (mmap the memfd and pass the MmapMut)",
                ),
            Errno::ENOSPC => err
                .kind_(ErrorKind::OutOfRange)
                .detail("no free IOVA range of that size"),
            _ => err,
        }
    }
}

/// The live mapping that overlaps `[iova, iova + len)`, if any. Live
/// mappings never overlap one another, so the last one starting below the
/// end of the range is the only one that can reach into it: O(log n).
fn live_overlap(mapped: &Table, iova: u64, len: u64) -> Option<(u64, u64)> {
    let end = iova.saturating_add(len);
    mapped
        .last_before(end)
        .filter(|&(s, l)| s.saturating_add(l) > iova)
}

impl Iommufd {
    /// Allocates an empty I/O address space (`IOMMU_IOAS_ALLOC`).
    #[doc(alias = "IOMMU_IOAS_ALLOC")]
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn alloc_ioas(&self) -> Result<Ioas> {
        Ioas::alloc(self)
    }
}

impl fmt::Debug for Ioas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ioas")
            .field("id", &self.inner.obj.id())
            .finish()
    }
}

impl PartialEq for Ioas {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}
impl Eq for Ioas {}

/// Where the memory of a mapping goes when IOAS copies outlive it. Made by
/// the first [`Ioas::copy_from`] of a mapping; the mapping and each copy hold
/// a share. A mapping dropped while copies still map its pages moves its
/// memory in here, and the last share frees it. No code ever takes `&M` out.
struct Keep<M>(Mutex<Option<M>>);

/// The memory of an IOAS copy ([`Ioas::copy_from`]): a share of the source
/// mapping's memory, which keeps it alive while the copy maps it. It gives no
/// access to the memory; read and write through the source mapping.
///
/// Example: [the `ioas` module docs](crate::ioas).
pub struct Shared<M>(Arc<Keep<M>>);

impl<M> fmt::Debug for Shared<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("shares", &Arc::strong_count(&self.0))
            .finish()
    }
}

/// A live DMA mapping in an [`Ioas`]; unmapped when dropped.
///
/// It owns `M`, the memory, so the memory outlives the mapping; and it holds a
/// handle on the IOAS, so the IOAS outlives it too. Leaking it (with
/// `mem::forget` or an `Rc` cycle) leaks the memory with it: the pages stay
/// mapped and allocated, and no safe code can reach them again. If an unmap
/// fails when the mapping is dropped, the memory is leaked the same way rather
/// than freed under the device.
///
/// `Mapping<M>` is `Send` and `Sync` when `M` is `Send`: the memory is never
/// reachable as `&M`, only through [`read_bytes`](Self::read_bytes) (any
/// number of readers) and [`write_bytes`](Self::write_bytes) (`&mut self`,
/// one writer), and IOAS copies have no CPU view at all. See the crate's
/// [soundness](crate#soundness-of-dma-memory) section.
pub struct Mapping<M> {
    ioas: Ioas,
    iova: u64,
    len: u64,
    /// Where the process sees the memory.
    ptr: NonNull<u8>,
    /// Bytes of process memory at `ptr`: 0 for a file mapping, which has none.
    va_len: usize,
    /// The memory, in place (no allocation per mapping); `None` only once
    /// `unmap` or `drop` took it.
    memory: Option<M>,
    /// Made by the first IOAS copy of this mapping (see [`Keep`]).
    keep: OnceLock<Arc<Keep<M>>>,
    /// Mapped by file offset (`IOMMU_IOAS_MAP_FILE`, or a copy of such).
    by_file: bool,
}

// SAFETY: `ptr` points into memory that `memory` owns (or, for `RawMemory`,
// that the caller of the unsafe `map_user_va` answers for, or into a source
// mapping's memory that `memory: Shared` keeps alive); sending the mapping
// sends that ownership, which is sound when `M` may be sent.
unsafe impl<M: Send> Send for Mapping<M> {}
// SAFETY: through `&Mapping` the crate only ever uses `ptr`, for volatile
// copies whose exclusion rules are in the crate's soundness section (reads
// through `&self`, writes through `&mut self`, copies have no CPU view), and
// `keep`, whose `Mutex` needs only `M: Send`; it never hands out `&M`.
unsafe impl<M: Send> Sync for Mapping<M> {}

impl<M> Mapping<M> {
    fn new(ioas: Ioas, iova: u64, len: u64, memory: M, ptr: NonNull<u8>, va_len: usize) -> Self {
        Mapping {
            ioas,
            iova,
            len,
            ptr,
            va_len,
            memory: Some(memory),
            keep: OnceLock::new(),
            by_file: false,
        }
    }

    /// Marks a mapping made by file offset.
    fn file_backed(mut self, yes: bool) -> Self {
        self.by_file = yes;
        self
    }

    /// Whether the pages were mapped by file offset (`IOMMU_IOAS_MAP_FILE`:
    /// [`Ioas::map_file`], [`Ioas::map_huge`] on kernels that have it, a shared
    /// memfd guest RAM region, or an IOAS copy of one of those) rather than by
    /// address. Only such mappings move to another process with
    /// [`Iommufd::change_process`](crate::Iommufd::change_process).
    pub fn by_file(&self) -> bool {
        self.by_file
    }

    /// The IOVA the device uses.
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// The mapped length in bytes.
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the mapping is empty (never, for a live mapping).
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Refuses `[offset, offset + len)` unless it is a non-empty part of
    /// this mapping: before an ioctl that takes part of it (`op` on
    /// `object`).
    pub(crate) fn check_part(
        &self,
        op: &'static str,
        object: impl FnOnce() -> String,
        offset: u64,
        len: u64,
    ) -> Result<()> {
        if len != 0 && offset.checked_add(len).is_some_and(|end| end <= self.len) {
            return Ok(());
        }
        Err(
            Error::new(ErrorKind::InvalidInput, op, object()).detail(format!(
                "[{offset:#x}, +{len:#x}) is not a non-empty part of the {:#x}-byte mapping",
                self.len
            )),
        )
    }

    /// The IOAS it lives in.
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn ioas(&self) -> &Ioas {
        &self.ioas
    }

    /// How many IOAS copies ([`Ioas::copy_from`]) share this memory now.
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn copies(&self) -> usize {
        self.keep.get().map_or(0, |k| Arc::strong_count(k) - 1)
    }

    /// Unmaps and hands the memory back.
    ///
    /// # Errors
    /// The mapping is handed back, still mapped, when IOAS copies of it still
    /// map the same pages ([`ErrorKind::Busy`]: unmap them first), or when the
    /// kernel refuses (only if the range was removed outside this crate).
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn unmap(mut self) -> Result<M, TransitionError<Self>> {
        // `Arc::get_mut` (not a count) so that the copies' unmaps, done
        // before they dropped their shares, happen before we hand memory out.
        // We own `self`: no new copy can be made of it meanwhile.
        let shared = self
            .keep
            .get_mut()
            .is_some_and(|k| Arc::get_mut(k).is_none());
        if shared {
            let e = self.copies_in_the_way();
            return Err(TransitionError::new(self, e));
        }
        if let Err(e) = self.ioas.unmap_own(self.iova, self.len) {
            return Err(TransitionError::new(self, e));
        }
        // Unmapped: take the fields apart without running `Drop`, which
        // would only find the memory gone (about 40 instructions of glue on
        // a 4 KiB map + unmap, measured with callgrind).
        let mut this = std::mem::ManuallyDrop::new(self);
        let memory = this.memory.take();
        // SAFETY: `this` is never dropped and not used after these reads, so
        // `ioas` and `keep` are each moved out exactly once and dropped here;
        // the remaining fields own nothing (`memory` is `None` now).
        drop(unsafe { (std::ptr::read(&this.ioas), std::ptr::read(&this.keep)) });
        Ok(memory.expect("a live mapping holds its memory"))
    }

    /// The `Busy` error of an unmap while IOAS copies still map the pages.
    #[cold]
    fn copies_in_the_way(&self) -> Error {
        let n = self.copies();
        Error::new(
            ErrorKind::Busy,
            "IOMMU_IOAS_UNMAP",
            self.ioas.range_object(self.iova, self.len),
        )
        .errno(Errno::EBUSY)
        .detail(format!(
            "{n} IOAS cop{} (IOMMU_IOAS_COPY) still map these pages, so the memory cannot be handed back",
            if n == 1 { "y" } else { "ies" }
        ))
        .hint("drop or unmap the copies first")
    }
}

/// CPU access to mapped memory that a [`DmaMemory`] owner provides.
impl<M: DmaMemory> Mapping<M> {
    /// Copies bytes out of the mapped memory at `offset` with volatile reads
    /// (the device may write it at any time), a machine word at a time.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when `offset + buf.len()` is past the
    /// mapping's memory; nothing is read.
    #[inline]
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        let p = self.cpu(offset, buf.len(), "read_bytes")?;
        // SAFETY: `[p, p + len)` is inside memory the mapping owns (checked by
        // `cpu`); the CPU reaches it only through this mapping (copies have no
        // CPU view, `M` is never lent out), and writes need `&mut self`, so no
        // CPU write races this read; the device's writes are outside Rust's model.
        unsafe { crate::dma::copy_from_dma(p, buf) };
        Ok(())
    }

    /// Copies `data` into the mapped memory at `offset` with volatile writes,
    /// a machine word at a time.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when `offset + data.len()` is past the
    /// mapping's memory; nothing is written.
    #[inline]
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn write_bytes(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        let p = self.cpu(offset, data.len(), "write_bytes")?;
        // SAFETY: in bounds (checked by `cpu`); `&mut self` excludes every
        // other CPU access, since copies have no CPU view and `M` is never lent out.
        unsafe { crate::dma::copy_to_dma(data, p) };
        Ok(())
    }

    /// Reads a [`Plain`] value at `offset` with one volatile load: a
    /// status word or a counter the device writes.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when the value is not inside the
    /// mapping's memory, or `offset` is not aligned for `T`.
    ///
    /// Example: [the `ring` module docs](crate::ring).
    #[inline]
    pub fn read<T: Plain>(&self, offset: usize) -> Result<T> {
        let p = self.typed::<T>(offset, "Mapping::read")?;
        // SAFETY: inside the memory the mapping owns and aligned for `T`
        // (checked by `typed`); no CPU write races it (writes need `&mut
        // self`); `T: Plain` takes any bytes the device left there.
        Ok(unsafe { p.cast::<T>().as_ptr().read_volatile() })
    }

    /// Writes a [`Plain`] value at `offset` with one volatile store.
    ///
    /// # Errors
    /// As [`read`](Self::read); nothing is written.
    ///
    /// Example: [the `ring` module docs](crate::ring).
    #[inline]
    pub fn write<T: Plain>(&mut self, offset: usize, v: T) -> Result<()> {
        let p = self.typed::<T>(offset, "Mapping::write")?;
        // SAFETY: in bounds and aligned (checked by `typed`); `&mut self`
        // excludes every other CPU access.
        unsafe { p.cast::<T>().as_ptr().write_volatile(v) };
        Ok(())
    }

    /// `len` entries `E` from `offset`, for volatile reads ([`Ring`]):
    /// checked here once, so that each access checks only its index.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when the entries are not inside the
    /// mapping's memory, or `offset` is not aligned to `E`'s alignment and
    /// to 8 bytes.
    ///
    /// Example: [the `ring` module docs](crate::ring).
    pub fn ring<E: Plain>(&self, offset: usize, len: usize) -> Result<Ring<'_, E>> {
        let p = self.ring_base::<E>(offset, len, "Mapping::ring")?;
        // SAFETY: `ring_base` checked the entries inside the mapping's
        // memory, aligned; the ring borrows `self`, and CPU writes need
        // `&mut self`.
        Ok(unsafe { Ring::new(p, len, (&self.ioas, self.iova, self.len)) })
    }

    /// `len` entries `E` from `offset`, for volatile reads and writes
    /// ([`RingMut`]); checked as [`ring`](Self::ring).
    ///
    /// # Errors
    /// As [`ring`](Self::ring).
    ///
    /// Example: [the `ring` module docs](crate::ring).
    pub fn ring_mut<E: Plain>(&mut self, offset: usize, len: usize) -> Result<RingMut<'_, E>> {
        let p = self.ring_base::<E>(offset, len, "Mapping::ring_mut")?;
        // SAFETY: as in `ring`; the ring borrows `self` exclusively.
        Ok(unsafe { RingMut::new(p, len, (&self.ioas, self.iova, self.len)) })
    }

    /// `N` entries `E` from `offset`, `N` a power of two, for volatile
    /// reads with wrapping indices ([`FixedRing`]): checked here once, so
    /// that no access checks anything.
    ///
    /// # Errors
    /// As [`ring`](Self::ring).
    ///
    /// Example: [`FixedRing`].
    pub fn fixed_ring<E: Plain, const N: usize>(
        &self,
        offset: usize,
    ) -> Result<FixedRing<'_, E, N>> {
        let p = self.ring_base::<E>(offset, N, "Mapping::fixed_ring")?;
        // SAFETY: as in `ring`, with `N` entries.
        Ok(unsafe { FixedRing::new(p) })
    }

    /// [`fixed_ring`](Self::fixed_ring) for reads and writes ([`FixedRingMut`]).
    ///
    /// # Errors
    /// As [`ring`](Self::ring).
    pub fn fixed_ring_mut<E: Plain, const N: usize>(
        &mut self,
        offset: usize,
    ) -> Result<FixedRingMut<'_, E, N>> {
        let p = self.ring_base::<E>(offset, N, "Mapping::fixed_ring_mut")?;
        // SAFETY: as in `ring_mut`, with `N` entries.
        Ok(unsafe { FixedRingMut::new(p) })
    }

    fn ring_base<E>(&self, offset: usize, len: usize, op: &'static str) -> Result<NonNull<u8>> {
        let bytes = len.saturating_mul(std::mem::size_of::<E>());
        self.view(offset, bytes, crate::ring::ring_align::<E>(), op)
    }

    #[inline]
    fn typed<T>(&self, offset: usize, op: &'static str) -> Result<NonNull<u8>> {
        let (n, align) = (std::mem::size_of::<T>(), std::mem::align_of::<T>());
        self.view(offset, n, align, op)
    }

    #[inline]
    fn cpu(&self, offset: usize, n: usize, op: &'static str) -> Result<*mut u8> {
        self.view(offset, n, 1, op).map(NonNull::as_ptr)
    }

    /// `n` bytes at `offset` of the CPU view, checked inside it and aligned
    /// to `align` (a power of two).
    #[inline]
    fn view(&self, offset: usize, n: usize, align: usize, op: &'static str) -> Result<NonNull<u8>> {
        match crate::ring::checked(self.ptr, self.va_len, offset, n, align) {
            Some(p) => Ok(p),
            None => Err(self.refused(op, offset, n, align)),
        }
    }

    #[cold]
    #[inline(never)]
    fn refused(&self, op: &'static str, offset: usize, n: usize, align: usize) -> Error {
        let obj = self.ioas.range_object(self.iova, self.len);
        crate::ring::refused(op, obj, self.ptr, offset, n, self.va_len, align)
    }
}

impl<M> Drop for Mapping<M> {
    fn drop(&mut self) {
        let Some(memory) = self.memory.take() else {
            return;
        };
        if self.ioas.unmap_own(self.iova, self.len).is_err() {
            // The device may still reach the pages: never free them.
            std::mem::forget(memory);
            return;
        }
        if let Some(keep) = self.keep.take() {
            // Copies may still map these pages: the last share frees them.
            *crate::lock(&keep.0) = Some(memory);
        }
    }
}

impl<M> fmt::Debug for Mapping<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("ioas", &self.ioas.id())
            .field("iova", &format_args!("{:#x}", self.iova))
            .field("len", &self.len)
            .finish()
    }
}
