//! I/O address spaces (`IOMMU_IOAS_*`) and the mappings in them.

use crate::backend::{MapFail, Space};
use crate::dma::{DmaMemory, RawMemory};
use crate::error::{range, Error, ErrorKind, Result, TransitionError};
use crate::iommufd::Iommufd;
use crate::sys;
use nix::errno::Errno;
use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::AsFd;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

pub use crate::iova::{Access, Iova, IovaRange, IovaRanges};

pub(crate) struct IoasInner {
    iommufd: Iommufd,
    id: u32,
    /// Ranges mapped through this crate, `iova -> len`, to name the overlap on EEXIST.
    mapped: Mutex<BTreeMap<u64, u64>>,
    /// The kernel side: an iommufd object, or the legacy path's mappings and containers.
    space: Space,
    /// The allow-list set with `allow_iovas` (the kernel does not report it).
    allowed: Mutex<Vec<IovaRange>>,
}

impl Drop for IoasInner {
    fn drop(&mut self) {
        // Every device attached to this IOAS and every mapping in it holds a
        // handle, so by now nothing uses it; the kernel frees its mappings.
        self.space.destroy(self.iommufd.ctx(), self.id);
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
pub struct Ioas {
    inner: Arc<IoasInner>,
}

impl Ioas {
    /// Allocates an empty IOAS on `iommufd` (`IOMMU_IOAS_ALLOC`).
    #[doc(alias = "IOMMU_IOAS_ALLOC")]
    pub fn alloc(iommufd: &Iommufd) -> Result<Ioas> {
        let (id, space) = Space::alloc(iommufd.ctx())?;
        Ok(Ioas {
            inner: Arc::new(IoasInner {
                iommufd: iommufd.clone(),
                id,
                mapped: Mutex::new(BTreeMap::new()),
                space,
                allowed: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The IOAS id within its iommufd.
    pub fn id(&self) -> u32 {
        self.inner.id
    }

    /// The iommufd this IOAS lives in.
    pub fn iommufd(&self) -> &Iommufd {
        &self.inner.iommufd
    }

    fn object(&self) -> String {
        format!("IOAS {}", self.inner.id)
    }

    /// The IOVA ranges this IOAS can map now, and the required alignment
    /// (`IOMMU_IOAS_IOVA_RANGES`; re-queried on `EMSGSIZE`).
    ///
    /// The answer depends on the devices attached: query again after every
    /// attach or detach. On VT-d, attaching the first device turns
    /// `[0, 2^64-1]` (alignment 1) into `[0, 0xfedfffff]` + `[0xfef00000, 2^48-1]`
    /// with 4 KiB alignment.
    #[doc(alias = "IOMMU_IOAS_IOVA_RANGES")]
    pub fn iova_ranges(&self) -> Result<IovaRanges> {
        self.inner
            .space
            .iova_ranges(self.inner.iommufd.ctx(), self.inner.id)
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
        self.inner
            .space
            .allow_iovas(self.inner.iommufd.ctx(), self.inner.id, ranges)?;
        *crate::lock(&self.inner.allowed) = ranges.to_vec();
        Ok(())
    }

    /// Whether the kernel may back this IOAS's IOMMU page tables with huge
    /// pages (`IOMMU_OPTION_HUGE_PAGES`; on by default). Turning it off trades
    /// IOTLB reach for exact unmap granularity.
    #[doc(alias = "IOMMU_OPTION_HUGE_PAGES")]
    pub fn set_huge_pages(&self, on: bool) -> Result<()> {
        self.option(sys::IOMMU_OPTION_OP_SET, u64::from(on))
            .map(drop)
    }

    /// The current huge-pages setting (see [`set_huge_pages`](Self::set_huge_pages)).
    pub fn huge_pages(&self) -> Result<bool> {
        self.option(sys::IOMMU_OPTION_OP_GET, 0).map(|v| v != 0)
    }

    fn option(&self, op: u16, val: u64) -> Result<u64> {
        self.inner
            .space
            .huge_pages_option(self.inner.iommufd.ctx(), self.inner.id, op, val)
    }

    /// Maps `memory` for DMA at `iova` (`IOMMU_IOAS_MAP`).
    ///
    /// The returned [`Mapping`] owns `memory` (or the borrow of it) and
    /// unmaps on drop, so the memory cannot be freed or reused while the device
    /// can reach it. [`Mapping::unmap`] hands it back.
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
        // SAFETY: `memory` moves into the returned Mapping, which unmaps before
        // it drops or returns `memory`; `DmaMemory` promises the region stays
        // valid and in place for as long as `memory` lives.
        match unsafe { self.map_region(ptr, len, iova, access) } {
            Ok(iova) => Ok(Mapping::new(self.clone(), iova, ptr, len as u64, memory)),
            Err(e) => Err(TransitionError::new(memory, e)),
        }
    }

    /// Maps `len` bytes at user address `va` (`IOMMU_IOAS_MAP`), for memory
    /// this crate cannot see the owner of (a VMM's guest RAM).
    ///
    /// # Safety
    /// `[va, va + len)` must be mapped memory of this process, and must stay
    /// mapped, in place, and not be used by Rust code in any way that assumes
    /// no one else writes it, until the returned [`Mapping`] is dropped or
    /// unmapped: the device may read and write it at any time until then.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    #[doc(alias = "IOMMU_IOAS_MAP")]
    pub unsafe fn map_user_va(
        &self,
        va: NonNull<u8>,
        len: usize,
        iova: Iova,
        access: Access,
    ) -> Result<Mapping<RawMemory>> {
        // SAFETY: forwarded: the caller upholds this function's contract.
        let iova = unsafe { self.map_region(va, len, iova, access) }?;
        Ok(Mapping::new(
            self.clone(),
            iova,
            va,
            len as u64,
            RawMemory { _private: () },
        ))
    }

    /// Maps `len` bytes of `file` from offset `start` (`IOMMU_IOAS_MAP_FILE`),
    /// for memfd-backed (or hugetlbfs, or dma-buf) memory. The kernel holds its
    /// own reference to the file, so the mapping does not borrow it.
    ///
    /// # Errors
    /// As [`map`](Self::map); `EOPNOTSUPP`/`ENOTTY` on kernels before 6.13.
    #[doc(alias = "IOMMU_IOAS_MAP_FILE")]
    pub fn map_file(
        &self,
        file: &impl AsFd,
        start: u64,
        len: u64,
        iova: Iova,
        access: Access,
    ) -> Result<Mapping<()>> {
        let at = self.precheck(iova, len)?;
        let got = self
            .inner
            .space
            .map_file(
                self.inner.iommufd.ctx(),
                self.inner.id,
                file.as_fd(),
                start,
                len,
                at,
                access,
            )
            .map_err(|f| self.map_fail(f, at, len))?;
        self.track(got, len);
        Ok(Mapping::new(
            self.clone(),
            got,
            NonNull::dangling(),
            len,
            (),
        ))
    }

    /// Maps the pages behind `src` into this IOAS as well (`IOMMU_IOAS_COPY`),
    /// without pinning them again. The copy borrows `src`, so the source
    /// memory cannot be unmapped and handed back while the copy can reach it.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    #[doc(alias = "IOMMU_IOAS_COPY")]
    pub fn copy_from<'s, M>(
        &self,
        src: &'s Mapping<M>,
        iova: Iova,
        access: Access,
    ) -> Result<Mapping<&'s Mapping<M>>> {
        let len = src.len;
        let at = self.precheck(iova, len)?;
        if !src.ioas.inner.iommufd.same_as(&self.inner.iommufd) {
            return Err(
                Error::new(ErrorKind::InvalidInput, "IOMMU_IOAS_COPY", self.object()).detail(
                    format!(
                        "the source mapping is in an IOAS of another iommufd ({})",
                        src.ioas.object()
                    ),
                ),
            );
        }
        let src_va = (src.ptr != NonNull::dangling()).then_some(src.ptr);
        // SAFETY: the returned mapping borrows `src`, which owns (or borrows)
        // the memory at `src.ptr` for as long as that borrow lives.
        let got = unsafe {
            self.inner.space.copy(
                self.inner.iommufd.ctx(),
                self.inner.id,
                (&src.ioas.inner.space, src.ioas.inner.id, src.iova, src_va),
                len,
                at,
                access,
            )
        }
        .map_err(|f| self.map_fail(f, at, len))?;
        self.track(got, len);
        Ok(Mapping::new(self.clone(), got, src.ptr, src.len, src))
    }

    /// Unmaps exactly `[iova, iova + len)` (`IOMMU_IOAS_UNMAP`) and returns the
    /// number of bytes unmapped. This is for ranges mapped outside this crate;
    /// a [`Mapping`] unmaps itself.
    ///
    /// # Errors
    /// `ENOENT` ([`ErrorKind::NotMapped`]) when the range would cut a mapping
    /// in two, or covers nothing: the kernel never splits a mapping, and leaves
    /// it intact.
    #[doc(alias = "IOMMU_IOAS_UNMAP")]
    pub fn unmap(&self, iova: u64, len: u64) -> Result<u64> {
        let result = self
            .inner
            .space
            .unmap(self.inner.iommufd.ctx(), self.inner.id, iova, len);
        match result {
            Ok(n) => {
                let mut m = crate::lock(&self.inner.mapped);
                let end = iova.saturating_add(len);
                m.retain(|&s, l| s < iova || s.saturating_add(*l) > end);
                Ok(n)
            }
            Err(e) => {
                let mut err = Error::sys(
                    "IOMMU_IOAS_UNMAP",
                    format!("{} {}", self.object(), range(iova, len)),
                    e,
                );
                if e == Errno::ENOENT {
                    err = err.kind_(ErrorKind::NotMapped).detail(
                        "the range must cover whole mappings: the kernel does not split a mapping, and left it intact",
                    );
                }
                Err(err)
            }
        }
    }

    /// Checks a request against the usable ranges and alignment before the
    /// ioctl; returns the fixed IOVA, if any.
    fn precheck(&self, iova: Iova, len: u64) -> Result<Option<u64>> {
        let op = "IOMMU_IOAS_MAP";
        if len == 0 {
            return Err(Error::new(ErrorKind::InvalidInput, op, self.object())
                .detail("zero-length mapping"));
        }
        let Iova::Fixed(at) = iova else {
            return Ok(None);
        };
        let ranges = self.iova_ranges()?;
        let obj = format!("{} {}", self.object(), range(at, len));
        if at % ranges.alignment != 0 || len % ranges.alignment != 0 {
            return Err(Error::new(ErrorKind::Alignment, op, obj)
                .errno(Errno::EINVAL)
                .detail(format!(
                    "IOVA and length must be multiples of {:#x}",
                    ranges.alignment
                )));
        }
        if !ranges.contains(at, len) {
            return Err(Error::new(ErrorKind::OutOfRange, op, obj)
                .errno(Errno::EINVAL)
                .detail(format!("outside the usable IOVA ranges {ranges}")));
        }
        let allowed = crate::lock(&self.inner.allowed);
        if !allowed.is_empty() && !allowed.iter().any(|r| r.contains(at, len)) {
            let list: Vec<String> = allowed.iter().map(|r| r.to_string()).collect();
            return Err(Error::new(ErrorKind::OutOfRange, op, obj)
                .errno(Errno::EINVAL)
                .detail(format!(
                    "outside the ranges allowed with allow_iovas: {}",
                    list.join(", ")
                )));
        }
        Ok(Some(at))
    }

    /// # Safety
    /// As [`map_user_va`](Self::map_user_va).
    unsafe fn map_region(
        &self,
        va: NonNull<u8>,
        len: usize,
        iova: Iova,
        access: Access,
    ) -> Result<u64> {
        let at = self.precheck(iova, len as u64)?;
        // SAFETY: forwarded from this function's contract.
        let got = unsafe {
            self.inner.space.map(
                self.inner.iommufd.ctx(),
                self.inner.id,
                va,
                len as u64,
                at,
                access,
            )
        }
        .map_err(|f| self.map_fail(f, at, len as u64))?;
        self.track(got, len as u64);
        Ok(got)
    }

    fn map_fail(&self, f: MapFail, at: Option<u64>, len: u64) -> Error {
        match f {
            MapFail::Sys(op, e) => self.map_error(op, at.unwrap_or(0), len, e),
            MapFail::Other(e) => e,
        }
    }

    pub(crate) fn space(&self) -> &Space {
        &self.inner.space
    }

    fn track(&self, iova: u64, len: u64) {
        crate::lock(&self.inner.mapped).insert(iova, len);
    }

    fn untrack(&self, iova: u64) {
        crate::lock(&self.inner.mapped).remove(&iova);
    }

    fn map_error(&self, op: &'static str, iova: u64, len: u64, e: Errno) -> Error {
        let err = Error::sys(op, format!("{} {}", self.object(), range(iova, len)), e);
        match e {
            Errno::EEXIST => {
                let m = crate::lock(&self.inner.mapped);
                let end = iova.saturating_add(len);
                let hit = m
                    .iter()
                    .find(|(&s, &l)| s < end && s.saturating_add(l) > iova);
                let detail = match hit {
                    Some((&s, &l)) => format!("overlaps the existing mapping {}", range(s, l)),
                    None => "overlaps an existing mapping or a reserved region".to_string(),
                };
                err.kind_(ErrorKind::Overlap).detail(detail)
            }
            Errno::ENOMEM => {
                let limit =
                    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK)
                        .map(|(soft, _)| {
                            if soft == nix::sys::resource::RLIM_INFINITY {
                                "unlimited".to_string()
                            } else {
                                format!("{soft} bytes")
                            }
                        })
                        .unwrap_or_else(|_| "unknown".into());
                err.kind_(ErrorKind::MemlockLimit)
                    .detail(format!("pinning {len} bytes failed; RLIMIT_MEMLOCK is {limit}"))
                    .hint("raise the memlock limit (ulimit -l, LimitMEMLOCK= in systemd, or CAP_IPC_LOCK)")
            }
            Errno::EINVAL => {
                let align = self.iova_ranges().map(|r| r.alignment).unwrap_or(0);
                err.kind_(ErrorKind::Alignment).detail(format!(
                    "the kernel rejected the arguments; the IOAS requires IOVA, length and user address aligned to {align:#x}"
                ))
            }
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

impl Iommufd {
    /// Allocates an empty I/O address space (`IOMMU_IOAS_ALLOC`).
    #[doc(alias = "IOMMU_IOAS_ALLOC")]
    pub fn alloc_ioas(&self) -> Result<Ioas> {
        Ioas::alloc(self)
    }
}

impl fmt::Debug for Ioas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ioas").field("id", &self.inner.id).finish()
    }
}

impl PartialEq for Ioas {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}
impl Eq for Ioas {}

/// A live DMA mapping in an [`Ioas`]; unmapped when dropped.
///
/// It owns `M`, the memory (or a borrow of it), so the memory outlives the
/// mapping; and it holds a handle on the IOAS, so the IOAS outlives it too.
pub struct Mapping<M> {
    ioas: Ioas,
    iova: u64,
    len: u64,
    ptr: NonNull<u8>,
    /// `None` only after `unmap` took it out.
    memory: Option<M>,
}

// SAFETY: `ptr` points into `memory` (owned or borrowed by the mapping); sending
// the mapping sends that ownership, which is fine when `M` itself may be sent.
unsafe impl<M: Send> Send for Mapping<M> {}
// SAFETY: through `&Mapping` only volatile reads of the memory are possible
// (`read_bytes`); writes need `&mut`. Sharing is fine when `M` may be shared.
unsafe impl<M: Sync> Sync for Mapping<M> {}

impl<M> Mapping<M> {
    fn new(ioas: Ioas, iova: u64, ptr: NonNull<u8>, len: u64, memory: M) -> Self {
        Mapping {
            ioas,
            iova,
            len,
            ptr,
            memory: Some(memory),
        }
    }

    /// The IOVA the device uses.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// The mapped length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the mapping is empty (never, for a live mapping).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The IOAS it lives in.
    pub fn ioas(&self) -> &Ioas {
        &self.ioas
    }

    /// Unmaps and hands the memory back.
    ///
    /// # Errors
    /// If the kernel refuses (only if the range was unmapped behind the
    /// crate's back with [`Ioas::unmap`]), the mapping is handed back.
    pub fn unmap(mut self) -> Result<M, TransitionError<Self>> {
        match self.ioas.unmap(self.iova, self.len) {
            Ok(_) => Ok(self.memory.take().expect("memory present until unmap")),
            Err(e) => Err(TransitionError::new(self, e)),
        }
    }

    /// Copies bytes out of the mapped memory at `offset` with volatile reads
    /// (the device may write it at any time).
    ///
    /// # Panics
    /// If `offset + buf.len()` exceeds the mapping, or for a file mapping.
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        self.check(offset, buf.len());
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: in bounds (checked), and the memory is kept alive by `self.memory`.
            *b = unsafe { self.ptr.as_ptr().add(offset + i).read_volatile() };
        }
    }

    /// Copies `data` into the mapped memory at `offset` with volatile writes.
    ///
    /// # Panics
    /// If `offset + data.len()` exceeds the mapping, or for a file mapping.
    pub fn write_bytes(&mut self, offset: usize, data: &[u8]) {
        self.check(offset, data.len());
        for (i, b) in data.iter().enumerate() {
            // SAFETY: in bounds (checked); `&mut self` excludes other CPU access through this mapping.
            unsafe { self.ptr.as_ptr().add(offset + i).write_volatile(*b) };
        }
    }

    fn check(&self, offset: usize, n: usize) {
        let cpu_len = if self.ptr == NonNull::dangling() {
            0
        } else {
            self.len as usize
        };
        assert!(
            offset.checked_add(n).is_some_and(|end| end <= cpu_len),
            "access [{offset:#x}, +{n:#x}) outside the {cpu_len:#x}-byte CPU view of {}",
            range(self.iova, self.len)
        );
    }
}

impl<M> Drop for Mapping<M> {
    fn drop(&mut self) {
        if self.memory.is_some() {
            // Nothing to hand back on failure: the range was already unmapped
            // behind our back, which is what we wanted anyway.
            let _ = self.ioas.unmap(self.iova, self.len);
            self.ioas.untrack(self.iova);
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
