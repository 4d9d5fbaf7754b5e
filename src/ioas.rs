//! I/O address spaces (`IOMMU_IOAS_*`) and the mappings in them.

use crate::dma::{DmaMemory, RawMemory};
use crate::error::{range, Error, ErrorKind, Result, TransitionError};
use crate::iommufd::Iommufd;
use crate::sys;
use nix::errno::Errno;
use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

/// An inclusive IOVA range `[start, last]`, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IovaRange {
    /// First usable IOVA.
    pub start: u64,
    /// Last usable IOVA (inclusive).
    pub last: u64,
}

impl IovaRange {
    /// Whether `[iova, iova + len)` lies inside this range.
    pub fn contains(&self, iova: u64, len: u64) -> bool {
        len > 0 && iova >= self.start && iova.checked_add(len - 1).is_some_and(|l| l <= self.last)
    }
}

impl fmt::Display for IovaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x}]", self.start, self.last)
    }
}

/// The IOVA ranges an IOAS can map, and the alignment the kernel requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IovaRanges {
    /// Usable ranges, ascending.
    pub ranges: Vec<IovaRange>,
    /// Required alignment of IOVA and length (1 before any device is attached).
    pub alignment: u64,
}

impl IovaRanges {
    /// Whether `[iova, iova + len)` lies in one usable range.
    pub fn contains(&self, iova: u64, len: u64) -> bool {
        self.ranges.iter().any(|r| r.contains(iova, len))
    }
}

impl fmt::Display for IovaRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.ranges.iter().map(|r| r.to_string()).collect();
        write!(f, "{} (alignment {:#x})", list.join(", "), self.alignment)
    }
}

/// Where a mapping goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Iova {
    /// Exactly at this IOVA (`IOMMU_IOAS_MAP_FIXED_IOVA`).
    Fixed(u64),
    /// Wherever the kernel finds room; [`Mapping::iova`] tells where.
    Any,
}

/// What the device may do through a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The device may read (DMA from memory).
    pub read: bool,
    /// The device may write (DMA to memory).
    pub write: bool,
}

impl Access {
    /// Device reads only.
    pub const READ: Access = Access {
        read: true,
        write: false,
    };
    /// Device writes only.
    pub const WRITE: Access = Access {
        read: false,
        write: true,
    };
    /// Both.
    pub const READ_WRITE: Access = Access {
        read: true,
        write: true,
    };

    fn flags(self) -> u32 {
        (if self.read {
            sys::IOMMU_IOAS_MAP_READABLE
        } else {
            0
        }) | (if self.write {
            sys::IOMMU_IOAS_MAP_WRITEABLE
        } else {
            0
        })
    }
}

pub(crate) struct IoasInner {
    iommufd: Iommufd,
    id: u32,
    /// Ranges mapped through this crate, `iova -> len`, to name the overlap on EEXIST.
    mapped: Mutex<BTreeMap<u64, u64>>,
    /// The legacy path's mappings and containers; `None` on iommufd.
    pub(crate) legacy: Option<crate::legacy::Space>,
    /// The allow-list set with `allow_iovas` (the kernel does not report it).
    allowed: Mutex<Vec<IovaRange>>,
}

impl Drop for IoasInner {
    fn drop(&mut self) {
        // Every device attached to this IOAS and every mapping in it holds a
        // handle, so by now nothing uses it; the kernel frees its mappings.
        if self.legacy.is_none() {
            let _ = self.iommufd.destroy(self.id);
        }
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
        if iommufd.backend() == crate::Backend::LegacyContainer {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
            let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(Ioas {
                inner: Arc::new(IoasInner {
                    iommufd: iommufd.clone(),
                    id,
                    mapped: Mutex::new(BTreeMap::new()),
                    legacy: Some(Default::default()),
                    allowed: Mutex::new(Vec::new()),
                }),
            });
        }
        let mut arg = sys::IommuIoasAlloc {
            size: sys::argsz::<sys::IommuIoasAlloc>(),
            ..Default::default()
        };
        sys::ioctl(iommufd.as_fd(), sys::raw::iommu_ioas_alloc, &mut arg).map_err(|e| {
            Error::sys(
                "IOMMU_IOAS_ALLOC",
                format!("iommufd {}", iommufd.as_fd().as_raw_fd()),
                e,
            )
        })?;
        Ok(Ioas {
            inner: Arc::new(IoasInner {
                iommufd: iommufd.clone(),
                id: arg.out_ioas_id,
                mapped: Mutex::new(BTreeMap::new()),
                legacy: None,
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
        if let Some(space) = &self.inner.legacy {
            let (ranges, alignment) = space.iova_ranges()?;
            let ranges = ranges
                .into_iter()
                .map(|(start, last)| IovaRange { start, last })
                .collect();
            return Ok(IovaRanges { ranges, alignment });
        }
        let fd = self.inner.iommufd.as_fd();
        let mut buf = vec![sys::IommuIovaRange::default(); 8];
        loop {
            match sys::iova_ranges(fd, self.inner.id, &mut buf) {
                Ok((n, alignment)) => {
                    buf.truncate(n as usize);
                    let ranges = buf
                        .iter()
                        .map(|r| IovaRange {
                            start: r.start,
                            last: r.last,
                        })
                        .collect();
                    return Ok(IovaRanges { ranges, alignment });
                }
                Err((Errno::EMSGSIZE, need)) if need as usize > buf.len() => {
                    buf.resize(need as usize, sys::IommuIovaRange::default());
                }
                Err((e, _)) => return Err(Error::sys("IOMMU_IOAS_IOVA_RANGES", self.object(), e)),
            }
        }
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
        self.iommufd_only("IOMMU_IOAS_ALLOW_IOVAS")?;
        let raw: Vec<sys::IommuIovaRange> = ranges
            .iter()
            .map(|r| sys::IommuIovaRange {
                start: r.start,
                last: r.last,
            })
            .collect();
        sys::allow_iovas(self.inner.iommufd.as_fd(), self.inner.id, &raw)
            .map_err(|e| Error::sys("IOMMU_IOAS_ALLOW_IOVAS", self.object(), e))?;
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
        self.iommufd_only("IOMMU_OPTION(HUGE_PAGES)")?;
        let mut arg = sys::IommuOption {
            size: sys::argsz::<sys::IommuOption>(),
            option_id: sys::IOMMU_OPTION_HUGE_PAGES,
            op,
            object_id: self.inner.id,
            val64: val,
            ..Default::default()
        };
        sys::ioctl(self.inner.iommufd.as_fd(), sys::raw::iommu_option, &mut arg)
            .map_err(|e| Error::sys("IOMMU_OPTION(HUGE_PAGES)", self.object(), e))?;
        Ok(arg.val64)
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
        self.iommufd_only("IOMMU_IOAS_MAP_FILE")?;
        let at = self.precheck(iova, len)?;
        let mut arg = sys::IommuIoasMapFile {
            size: sys::argsz::<sys::IommuIoasMapFile>(),
            flags: access.flags() | at.1,
            ioas_id: self.inner.id,
            fd: file.as_fd().as_raw_fd(),
            start,
            length: len,
            iova: at.0,
        };
        sys::ioctl(
            self.inner.iommufd.as_fd(),
            sys::raw::iommu_ioas_map_file,
            &mut arg,
        )
        .map_err(|e| self.map_error("IOMMU_IOAS_MAP_FILE", at.0, len, e))?;
        self.track(arg.iova, len);
        Ok(Mapping::new(
            self.clone(),
            arg.iova,
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
        if self.inner.legacy.is_some() || src.ioas.inner.legacy.is_some() {
            let both = self.inner.legacy.is_some() && src.ioas.inner.legacy.is_some();
            if src.ptr == NonNull::dangling() || !both {
                return Err(Error::new(ErrorKind::InvalidInput, "IOMMU_IOAS_COPY", self.object())
                    .detail("on the legacy container path only memory mappings of legacy IOASes can be copied"));
            }
            // SAFETY: the returned mapping borrows `src`, which owns (or borrows)
            // the memory at `src.ptr` for as long as that borrow lives.
            let at = unsafe { self.map_region(src.ptr, len as usize, iova, access) }?;
            return Ok(Mapping::new(self.clone(), at, src.ptr, len, src));
        }
        let at = self.precheck(iova, len)?;
        let mut arg = sys::IommuIoasCopy {
            size: sys::argsz::<sys::IommuIoasCopy>(),
            flags: access.flags() | at.1,
            dst_ioas_id: self.inner.id,
            src_ioas_id: src.ioas.inner.id,
            length: len,
            dst_iova: at.0,
            src_iova: src.iova,
        };
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
        sys::ioctl(
            self.inner.iommufd.as_fd(),
            sys::raw::iommu_ioas_copy,
            &mut arg,
        )
        .map_err(|e| self.map_error("IOMMU_IOAS_COPY", at.0, len, e))?;
        self.track(arg.dst_iova, len);
        Ok(Mapping::new(
            self.clone(),
            arg.dst_iova,
            src.ptr,
            src.len,
            src,
        ))
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
        let mut arg = sys::IommuIoasUnmap {
            size: sys::argsz::<sys::IommuIoasUnmap>(),
            ioas_id: self.inner.id,
            iova,
            length: len,
        };
        let result = match &self.inner.legacy {
            Some(space) => space.unmap(iova, len).map(|n| {
                arg.length = n;
                0
            }),
            None => sys::ioctl(
                self.inner.iommufd.as_fd(),
                sys::raw::iommu_ioas_unmap,
                &mut arg,
            ),
        };
        match result {
            Ok(_) => {
                let mut m = crate::lock(&self.inner.mapped);
                let end = iova.saturating_add(len);
                m.retain(|&s, l| s < iova || s.saturating_add(*l) > end);
                Ok(arg.length)
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
    /// ioctl; returns (iova, extra flags).
    fn precheck(&self, iova: Iova, len: u64) -> Result<(u64, u32)> {
        let op = "IOMMU_IOAS_MAP";
        if len == 0 {
            return Err(Error::new(ErrorKind::InvalidInput, op, self.object())
                .detail("zero-length mapping"));
        }
        let Iova::Fixed(at) = iova else {
            return Ok((0, 0));
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
        Ok((at, sys::IOMMU_IOAS_MAP_FIXED_IOVA))
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
        if let Some(space) = &self.inner.legacy {
            let align = self.iova_ranges()?.alignment;
            let fixed = (at.1 != 0).then_some(at.0);
            let (read, write) = (access.read, access.write);
            // SAFETY: forwarded from this function's contract.
            let got =
                unsafe { space.map(va.as_ptr() as u64, len as u64, fixed, read, write, align) }
                    .map_err(|e| self.map_error("VFIO_IOMMU_MAP_DMA", at.0, len as u64, e))?;
            self.track(got, len as u64);
            return Ok(got);
        }
        let mut arg = sys::IommuIoasMap {
            size: sys::argsz::<sys::IommuIoasMap>(),
            flags: access.flags() | at.1,
            ioas_id: self.inner.id,
            user_va: va.as_ptr() as u64,
            length: len as u64,
            iova: at.0,
            ..Default::default()
        };
        // SAFETY: the struct is a valid `iommu_ioas_map`; `user_va` names memory
        // the caller keeps mapped for the mapping's lifetime (this fn's contract).
        unsafe { sys::raw::iommu_ioas_map(self.inner.iommufd.as_fd().as_raw_fd(), &mut arg) }
            .map_err(|e| self.map_error("IOMMU_IOAS_MAP", at.0, len as u64, e))?;
        self.track(arg.iova, len as u64);
        Ok(arg.iova)
    }

    fn iommufd_only(&self, op: &'static str) -> Result<()> {
        if self.inner.legacy.is_some() {
            return Err(Error::new(ErrorKind::Unsupported, op, self.object())
                .errno(Errno::EOPNOTSUPP)
                .detail(
                    "not available on the legacy VFIO container path (type1 has no equivalent)",
                ));
        }
        Ok(())
    }

    pub(crate) fn legacy(&self) -> Option<&crate::legacy::Space> {
        self.inner.legacy.as_ref()
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
