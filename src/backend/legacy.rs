//! The legacy VFIO path: group fd (`/dev/vfio/N`) + type1 container
//! (`/dev/vfio/vfio`), for kernels without iommufd or the device cdev
//! (before 6.2 / 6.6), or for callers who ask for it.
//!
//! It sits behind the same types as the cdev path. Type1 has no blocking
//! domain, so one is built from what it has: every bound group gets a
//! container of its own, which holds no mappings while the device is in
//! [`BlockDma`](crate::BlockDma) (every DMA faults). Attaching replays the
//! IOAS's mappings into that container; detaching unmaps them all again. An
//! [`Ioas`](crate::Ioas) on this path is the list of mappings plus the
//! containers attached to it; mapping applies `VFIO_IOMMU_MAP_DMA` to each.
//!
//! Differences from the cdev path, all reported as errors where they apply:
//! replace is detach + attach (DMA faults in between, never reaches the
//! wrong memory); `map_file`, `allow_iovas` and the huge-pages option have no
//! type1 equivalent; `IOMMU_IOAS_COPY` is a second `MAP_DMA` of the same memory.

use crate::error::{range, Error, ErrorKind, Result};
use crate::iova::{Access, IovaRange, IovaRanges};
use crate::sys::{self, vfio};
use crate::table::Sorted;
use nix::errno::Errno;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// An open VFIO group (`/dev/vfio/N`), shared by the members opened from it.
pub(crate) struct LegacyGroup {
    pub(crate) number: u32,
    pub(crate) fd: OwnedFd,
    /// The container the group is set to while any member is bound.
    container: Mutex<std::sync::Weak<Container>>,
}

/// A type1v2 container holding exactly one group. Dropping it (after every
/// device fd of the group is closed) takes the group out of it.
pub(crate) struct Container {
    pub(crate) fd: OwnedFd,
    group: Arc<LegacyGroup>,
    /// The IOAS (id) the group is attached to, and how many of its devices
    /// hold that attachment. One group, one address space, as on the cdev.
    att: Mutex<Option<(u32, usize)>>,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = sys::group_unset_container(self.group.fd.as_fd());
    }
}

use super::cdev::open_rw;

/// IOAS ids on this path are the crate's own (type1 has no such object).
pub(crate) fn next_ioas_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A legacy-path device: its group, and once bound, its fd and the group's container.
pub(crate) struct Link {
    pub(crate) group: Arc<LegacyGroup>,
    /// Field order is drop order: the device fd closes before the container
    /// (whose drop takes the group out of it) is let go.
    bound: Option<(OwnedFd, Arc<Container>)>,
}

impl Link {
    /// An unbound device of `group`.
    pub(crate) fn new(group: Arc<LegacyGroup>) -> Link {
        Link { group, bound: None }
    }

    /// The same device, unbound (the group stays open for the next bind).
    pub(crate) fn unbound(&self) -> Link {
        Link::new(self.group.clone())
    }

    #[inline]
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.bound.as_ref().map(|(fd, _)| fd.as_fd())
    }

    fn container(&self, name: &str) -> Result<&Arc<Container>> {
        self.bound.as_ref().map(|(_, c)| c).ok_or_else(|| {
            Error::new(ErrorKind::InvalidInput, "attach", name.to_string())
                .detail("the device is not bound")
        })
    }

    /// Binds: the group into a container of its own, the device fd from the group.
    pub(crate) fn bind(&mut self, name: &str) -> Result<()> {
        self.bound = Some(bind(&self.group, name)?);
        Ok(())
    }

    pub(crate) fn attach(&self, name: &str, id: u32, space: &Space) -> Result<u32> {
        let c = self.container(name)?;
        space
            .attach(id, c)
            .map_err(|e| e.with_object(format!("{name} -> IOAS {id}")))?;
        Ok(id)
    }

    /// As [`Link::replace`](super::Link::replace): the `bool` is true when
    /// the old mappings could not be put back.
    pub(crate) fn replace(
        &self,
        name: &str,
        old: &Space,
        id: u32,
        new: &Space,
    ) -> std::result::Result<u32, (Error, bool)> {
        let c = self.container(name).map_err(|e| (e, false))?;
        new.replace_from(old, id, c)?;
        Ok(id)
    }

    pub(crate) fn detach(&self, space: &Space) -> Result<()> {
        match &self.bound {
            Some((_, c)) => space.detach(c),
            None => Ok(()),
        }
    }
}

/// Whether this kernel offers the legacy container at all.
pub(crate) fn available() -> bool {
    Path::new("/dev/vfio/vfio").exists()
}

/// Opens the group `/dev/vfio/N` of `bdf`.
pub(crate) fn open_group(dev: &Path, number: u32) -> Result<Arc<LegacyGroup>> {
    let path = dev.join(format!("vfio/{number}"));
    let fd = open_rw(&path).map_err(|e| {
        let err = Error::sys("open", format!("VFIO group {number} ({})", path.display()), e);
        match e {
            Errno::EBUSY => err.kind_(ErrorKind::PathConflict).detail(
                "the group is held elsewhere: another process has it open, or a device of the group is bound through the VFIO cdev (the kernel forbids mixing the two paths in one group)",
            ),
            Errno::ENOENT => err.kind_(ErrorKind::NotVfioPci).hint("no /dev/vfio/<group>: bind the group's devices to vfio-pci (driver_override)"),
            _ => err,
        }
    })?;
    Ok(Arc::new(LegacyGroup {
        number,
        fd,
        container: Mutex::new(std::sync::Weak::new()),
    }))
}

fn group_viable(g: &LegacyGroup, sys_root: &Path, bdf: &str) -> Result<()> {
    let mut st = vfio::vfio_group_status {
        argsz: sys::argsz::<vfio::vfio_group_status>(),
        flags: 0,
    };
    sys::ioctl(g.fd.as_fd(), sys::raw::vfio_group_get_status, &mut st).map_err(|e| {
        Error::sys(
            "VFIO_GROUP_GET_STATUS",
            format!("VFIO group {}", g.number),
            e,
        )
    })?;
    if st.flags & vfio::VFIO_GROUP_FLAGS_VIABLE == 0 {
        let bad = crate::diagnose::unsafe_members(sys_root, bdf).unwrap_or_default();
        return Err(crate::diagnose::not_viable(
            "VFIO_GROUP_GET_STATUS",
            &format!("VFIO group {}", g.number),
            &bad,
        ));
    }
    Ok(())
}

/// Binds `bdf` of group `g`: the group goes into a container of its own
/// (created, with type1v2, by the first member), and the device fd is taken
/// from the group. The container holds no mappings: DMA is blocked.
pub(crate) fn bind(g: &Arc<LegacyGroup>, bdf: &str) -> Result<(OwnedFd, Arc<Container>)> {
    group_viable(g, Path::new("/sys"), bdf)?;
    let mut slot = crate::lock(&g.container);
    let container = match slot.upgrade() {
        Some(c) => c,
        None => {
            let fd = open_rw(Path::new("/dev/vfio/vfio")).map_err(|e| {
                Error::sys("open", "/dev/vfio/vfio", e).hint(
                    "the kernel lacks CONFIG_VFIO_CONTAINER, or /dev/vfio/vfio is not accessible",
                )
            })?;
            let api = sys::get_api_version(fd.as_fd())
                .map_err(|e| Error::sys("VFIO_GET_API_VERSION", "/dev/vfio/vfio", e))?;
            if api != vfio::VFIO_API_VERSION as i32 {
                return Err(Error::new(
                    ErrorKind::Kernel,
                    "VFIO_GET_API_VERSION",
                    "/dev/vfio/vfio",
                )
                .detail(format!("unknown VFIO API version {api}")));
            }
            let ext =
                sys::check_extension(fd.as_fd(), vfio::VFIO_TYPE1v2_IOMMU as i32).unwrap_or(0);
            if ext != 1 {
                return Err(Error::new(
                    ErrorKind::Kernel,
                    "VFIO_CHECK_EXTENSION(TYPE1v2)",
                    "/dev/vfio/vfio",
                )
                .detail("the kernel has no type1v2 IOMMU backend"));
            }
            let mut cfd = fd.as_raw_fd();
            sys::ioctl(g.fd.as_fd(), sys::raw::vfio_group_set_container, &mut cfd).map_err(|e| {
                let err = Error::sys("VFIO_GROUP_SET_CONTAINER", format!("VFIO group {}", g.number), e);
                if e == Errno::EPERM {
                    err.kind_(ErrorKind::NoInterruptRemapping).detail("type1 refuses groups whose MSI is not isolated").hint(
                        "enable interrupt remapping, or, accepting the risk, load vfio_iommu_type1 with allow_unsafe_interrupts=1",
                    )
                } else {
                    err
                }
            })?;
            let c = Arc::new(Container {
                fd,
                group: g.clone(),
                att: Mutex::new(None),
            });
            // From here a failure drops `c`, which unsets the container again.
            sys::set_iommu(c.fd.as_fd(), vfio::VFIO_TYPE1v2_IOMMU as i32).map_err(|e| {
                Error::sys(
                    "VFIO_SET_IOMMU(TYPE1v2)",
                    format!("VFIO group {}", g.number),
                    e,
                )
            })?;
            *slot = Arc::downgrade(&c);
            c
        }
    };
    drop(slot);
    let name = CString::new(bdf).expect("a validated BDF has no NUL");
    let dev = sys::group_get_device_fd(g.fd.as_fd(), &name)
        .map_err(|e| Error::sys("VFIO_GROUP_GET_DEVICE_FD", bdf, e))?;
    Ok((dev, container))
}

/// One mapping of a legacy IOAS.
#[derive(Clone, Copy)]
struct Map {
    va: u64,
    /// Never 0, and `iova + len - 1` never wraps (checked at map).
    len: u64,
    flags: u32,
}

impl Map {
    /// The last IOVA of this mapping, made at `iova`. A mapping may end at
    /// 2^64 exactly, so ends are compared inclusive: `iova + len` may not fit.
    fn last(&self, iova: u64) -> u64 {
        iova + (self.len - 1)
    }
}

/// The lowest `align`-aligned IOVA from page 1 up with `len` bytes free
/// between `maps` (devices with small DMA masks want low IOVAs); `None`
/// when the space above the last mapping runs out before 2^64.
fn first_fit(maps: &Sorted<Map>, len: u64, align: u64) -> Option<u64> {
    let align = align.max(1);
    let mut at = align.max(4096);
    for (s, m) in maps.iter() {
        if at.checked_add(len).is_some_and(|end| end <= s) {
            break;
        }
        let after = m.last(s).checked_add(1)?.checked_next_multiple_of(align)?;
        at = at.max(after);
    }
    at.checked_add(len - 1).map(|_| at)
}

#[derive(Default)]
struct SpaceState {
    maps: Sorted<Map>,
    /// Containers (groups) attached.
    containers: Vec<Arc<Container>>,
    /// The usable ranges while `containers` stays as it is (type1 reports
    /// them per container; they change only when one attaches or goes).
    ranges: Option<IovaRanges>,
}

impl SpaceState {
    /// The usable ranges (see [`Space::iova_ranges`]), asked of type1 once
    /// per set of attached containers.
    fn ranges(&mut self) -> Result<&IovaRanges> {
        cached_ranges(&mut self.ranges, &self.containers)
    }

    /// The mapping that overlaps `[iova, last]` and starts highest, if any:
    /// mappings never overlap, so one lookup.
    fn overlap(&self, iova: u64, last: u64) -> Option<(u64, Map)> {
        self.maps
            .last_at_most(last)
            .filter(|(s, m)| iova <= m.last(*s))
    }
}

/// `cache`, or the usable ranges of the first of `containers` (everything
/// before any), kept in `cache`.
fn cached_ranges<'a>(
    cache: &'a mut Option<IovaRanges>,
    containers: &[Arc<Container>],
) -> Result<&'a IovaRanges> {
    let r = match cache.take() {
        Some(r) => r,
        None => {
            let page = crate::dma::page_size() as u64;
            let (ranges, alignment) = match containers.first() {
                None => (vec![(0, u64::MAX)], page),
                Some(c) => parse_type1_info(&type1_info(c)?, page),
            };
            let ranges = ranges
                .into_iter()
                .map(|(start, last)| IovaRange { start, last })
                .collect();
            IovaRanges { ranges, alignment }
        }
    };
    Ok(cache.insert(r))
}

/// The legacy backing of an [`Ioas`](crate::Ioas).
#[derive(Default)]
pub(crate) struct Space {
    state: Mutex<SpaceState>,
}

fn dma_map(c: &Container, iova: u64, m: &Map) -> nix::Result<()> {
    let mut arg = vfio::vfio_iommu_type1_dma_map {
        argsz: sys::argsz::<vfio::vfio_iommu_type1_dma_map>(),
        flags: m.flags,
        vaddr: m.va,
        iova,
        size: m.len,
    };
    // SAFETY: `vaddr` names memory that the owning `Mapping` keeps mapped
    // until it unmaps (the contract of `Ioas::map_region`, which is the only
    // way a `Map` gets into a `Space`).
    unsafe { sys::raw::vfio_iommu_map_dma(c.fd.as_raw_fd(), &mut arg) }.map(drop)
}

fn dma_unmap(c: &Container, iova: u64, len: u64) -> nix::Result<()> {
    let mut arg = vfio::vfio_iommu_type1_dma_unmap {
        argsz: sys::argsz::<vfio::vfio_iommu_type1_dma_unmap>(),
        iova,
        size: len,
        ..Default::default()
    };
    sys::ioctl(c.fd.as_fd(), sys::raw::vfio_iommu_unmap_dma, &mut arg).map(drop)
}

impl Space {
    fn lock(&self) -> std::sync::MutexGuard<'_, SpaceState> {
        crate::lock(&self.state)
    }

    /// Maps into every attached container (all or none); returns the IOVA.
    ///
    /// # Safety
    /// `[va, va + len)` must stay mapped until [`unmap`](Self::unmap) of the returned IOVA.
    pub(crate) unsafe fn map(
        &self,
        va: NonNull<u8>,
        len: u64,
        iova: Option<u64>,
        access: Access,
    ) -> std::result::Result<u64, super::MapFail> {
        // Type1 checks a fixed IOVA only in containers attached by then; the
        // mapping must already fit the ranges now, as on iommufd, where the
        // kernel answers EINVAL (explained by the caller).
        if (!access.read && !access.write) || len == 0 {
            // Type1 answers EINVAL too, but only once a container is attached.
            return Err(super::MapFail::Sys("VFIO_IOMMU_MAP_DMA", Errno::EINVAL));
        }
        let va = va.as_ptr() as u64;
        let (read, write) = (access.read, access.write);
        let mut guard = self.lock();
        let st = &mut *guard;
        let ranges =
            cached_ranges(&mut st.ranges, &st.containers).map_err(super::MapFail::Other)?;
        let align = ranges.alignment.max(1);
        let iova = match iova {
            Some(at) if at % align != 0 || len % align != 0 || !ranges.contains(at, len) => {
                return Err(super::MapFail::Sys("VFIO_IOMMU_MAP_DMA", Errno::EINVAL));
            }
            Some(at) => at,
            // Only where the crate left the choice to the kernel (see
            // `crate::gaps`, which chooses for type1 too).
            None => match first_fit(&st.maps, len, align) {
                Some(at) if ranges.contains(at, len) => at,
                _ => return Err(super::MapFail::Sys("VFIO_IOMMU_MAP_DMA", Errno::ENOSPC)),
            },
        };
        // In range (checked above, or by `first_fit`): `iova + len - 1` fits.
        if st.overlap(iova, iova + (len - 1)).is_some() {
            return Err(super::MapFail::Sys("VFIO_IOMMU_MAP_DMA", Errno::EEXIST));
        }
        let flags = (if read {
            vfio::VFIO_DMA_MAP_FLAG_READ
        } else {
            0
        }) | (if write {
            vfio::VFIO_DMA_MAP_FLAG_WRITE
        } else {
            0
        });
        let m = Map { va, len, flags };
        for (k, c) in st.containers.iter().enumerate() {
            if let Err(e) = dma_map(c, iova, &m) {
                for c in &st.containers[..k] {
                    let _ = dma_unmap(c, iova, len);
                }
                return Err(super::MapFail::Sys("VFIO_IOMMU_MAP_DMA", e));
            }
        }
        st.maps.insert(iova, m);
        Ok(iova)
    }

    /// Unmaps exactly whole mappings covering `[iova, iova + len)`; `ENOENT`
    /// when the range would split one or covers none (as iommufd does).
    pub(crate) fn unmap(&self, iova: u64, len: u64) -> std::result::Result<u64, Errno> {
        // As iommufd: `(0, u64::MAX)` is everything; an empty range is
        // invalid; one that runs past 2^64 overflows.
        let last = match (iova, len) {
            (0, u64::MAX) => u64::MAX,
            (_, 0) => return Err(Errno::EINVAL),
            _ => iova.checked_add(len - 1).ok_or(Errno::EOVERFLOW)?,
        };
        let mut st = self.lock();
        // One that starts below the range and reaches into it is cut.
        if iova > 0 && st.overlap(iova, iova - 1).is_some() {
            return Err(Errno::ENOENT);
        }
        let hit: Vec<(u64, Map)> = st
            .maps
            .iter_from(iova)
            .take_while(|&(s, _)| s <= last)
            .collect();
        if hit.is_empty() || hit.iter().any(|(s, m)| m.last(*s) > last) {
            return Err(Errno::ENOENT);
        }
        // A mapping leaves the list only once no container maps it, so its
        // memory is never handed back (or freed) while a device can reach it.
        // Unmapping an absent range from type1 succeeds, so a retry after a
        // failure is harmless for the containers already done.
        let mut total = 0;
        for (s, m) in hit {
            for c in &st.containers {
                dma_unmap(c, s, m.len)?;
            }
            st.maps.remove(s);
            total = u64::saturating_add(total, m.len);
        }
        Ok(total)
    }

    /// Maps every mapping into `c`, all or none.
    fn replay(&self, c: &Arc<Container>) -> Result<()> {
        let mut st = self.lock();
        let maps: Vec<(u64, Map)> = st.maps.entries();
        for (k, (iova, m)) in maps.iter().enumerate() {
            if let Err(e) = dma_map(c, *iova, m) {
                for (iova, m) in &maps[..k] {
                    let _ = dma_unmap(c, *iova, m.len);
                }
                let obj = format!("VFIO group {} {}", c.group.number, range(*iova, m.len));
                return Err(Error::sys("VFIO_IOMMU_MAP_DMA", obj, e).detail(format!(
                    "the mapping {} could not be made in the group's container{}",
                    range(*iova, m.len),
                    if e == Errno::EINVAL {
                        " (type1 maps only inside the IOVA ranges of the attached IOMMU)"
                    } else {
                        ""
                    }
                )));
            }
        }
        st.containers.push(c.clone());
        st.ranges = None;
        Ok(())
    }

    /// Unmaps everything from `c`: its DMA is blocked again.
    ///
    /// If type1 refuses an unmap, the container stays attached (the group may
    /// still reach the IOAS's memory) and the error says so.
    fn clear(&self, c: &Arc<Container>) -> Result<()> {
        let mut st = self.lock();
        for (iova, m) in st.maps.iter() {
            dma_unmap(c, iova, m.len).map_err(|e| {
                Error::sys(
                    "VFIO_IOMMU_UNMAP_DMA",
                    format!("VFIO group {} {}", c.group.number, range(iova, m.len)),
                    e,
                )
                .detail("the group stays attached: its DMA is not blocked yet")
            })?;
        }
        st.containers.retain(|x| !Arc::ptr_eq(x, c));
        st.ranges = None;
        Ok(())
    }

    /// A device of `c`'s group attaches to this space (IOAS `id`). The first
    /// one replays every mapping into the container; a device whose group is
    /// attached to another IOAS is refused, as the kernel does on the cdev.
    pub(crate) fn attach(&self, id: u32, c: &Arc<Container>) -> Result<()> {
        let mut att = crate::lock(&c.att);
        match *att {
            None => {
                self.replay(c)?;
                *att = Some((id, 1));
                Ok(())
            }
            Some((cur, n)) if cur == id => {
                *att = Some((cur, n + 1));
                Ok(())
            }
            Some((cur, _)) => Err(Error::sys(
                "VFIO_IOMMU_MAP_DMA",
                format!("VFIO group {} -> IOAS {id}", c.group.number),
                Errno::EINVAL,
            )
            .detail(format!(
                "the group is attached to IOAS {cur}; devices of one group must share one IOAS"
            ))),
        }
    }

    /// A device of `c`'s group detaches; the last one blocks the group's DMA.
    pub(crate) fn detach(&self, c: &Arc<Container>) -> Result<()> {
        let mut att = crate::lock(&c.att);
        if let Some((cur, n)) = *att {
            if n <= 1 {
                self.clear(c)?;
                *att = None;
            } else {
                *att = Some((cur, n - 1));
            }
        }
        Ok(())
    }

    /// Moves `c`'s group from `old` to this space (IOAS `id`), as the kernel
    /// does for a whole group when one device is re-attached. Type1 cannot
    /// swap atomically: the old mappings go first (DMA faults meanwhile),
    /// then the new ones; if they fail the old ones come back.
    ///
    /// On error the `bool` is true when the old mappings could not be
    /// replayed either: the container then holds none (DMA blocked), or,
    /// when `clear` stopped part-way, only some of the old ones.
    pub(crate) fn replace_from(
        &self,
        old: &Space,
        id: u32,
        c: &Arc<Container>,
    ) -> std::result::Result<(), (Error, bool)> {
        let mut att = crate::lock(&c.att);
        let Some((cur, n)) = *att else { return Ok(()) };
        if cur == id {
            return Ok(()); // a sibling already moved the group
        }
        // `clear` removes the mappings one by one: failing part-way leaves
        // some of them, which only the re-establishment can make whole.
        old.clear(c).map_err(|e| (e, true))?;
        if let Err(e) = self.replay(c) {
            let lost = old.replay(c).is_err();
            return Err((e, lost));
        }
        *att = Some((id, n));
        Ok(())
    }

    /// The usable ranges, from type1's `VFIO_IOMMU_GET_INFO` on an attached
    /// container; before any attach, everything, at page alignment.
    pub(crate) fn iova_ranges(&self) -> Result<IovaRanges> {
        self.lock().ranges().cloned()
    }
}

/// `VFIO_IOMMU_GET_INFO` on `c`, with its capability chain.
fn type1_info(c: &Container) -> Result<Vec<u8>> {
    sys::query_with_caps(24, |buf| sys::iommu_get_info(c.fd.as_fd(), buf)).map_err(|e| {
        Error::sys(
            "VFIO_IOMMU_GET_INFO",
            format!("VFIO group {}", c.group.number),
            e,
        )
    })
}

/// Decodes `struct vfio_iommu_type1_info` and its IOVA-range capability.
pub(crate) fn parse_type1_info(b: &[u8], page: u64) -> (Vec<(u64, u64)>, u64) {
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|s| u32::from_ne_bytes(s.try_into().unwrap()))
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .map(|s| u64::from_ne_bytes(s.try_into().unwrap()))
    };
    let pgsizes = u64_at(8).unwrap_or(page);
    let align = if pgsizes == 0 {
        page
    } else {
        1u64 << pgsizes.trailing_zeros()
    };
    let mut ranges = Vec::new();
    let mut off = if u32_at(4).unwrap_or(0) & 2 != 0 {
        u32_at(16).unwrap_or(0)
    } else {
        0
    } as usize;
    let mut hops = 0;
    while off >= 24 && hops < 64 {
        hops += 1;
        let (Some(id), Some(next)) = (
            b.get(off..off + 2)
                .map(|s| u16::from_ne_bytes(s.try_into().unwrap())),
            u32_at(off + 4),
        ) else {
            break;
        };
        if u32::from(id) == vfio::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE {
            let n = u32_at(off + 8).unwrap_or(0) as usize;
            for i in 0..n.min(1024) {
                if let (Some(s), Some(e)) = (u64_at(off + 16 + 16 * i), u64_at(off + 24 + 16 * i)) {
                    if s <= e {
                        ranges.push((s, e));
                    }
                }
            }
        }
        // The kernel builds chains forward; anything else (a loop, a jump
        // back) would repeat capabilities, so it ends the chain.
        if (next as usize) <= off {
            break;
        }
        off = next as usize;
    }
    if ranges.is_empty() {
        ranges.push((0, u64::MAX));
    }
    (ranges, align)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::parse_type1_info;

    /// A type1 info with page sizes and an IOVA-range capability of two ranges.
    pub(crate) fn crafted_type1_info() -> Vec<u8> {
        let mut b = vec![0u8; 24 + 16 + 32];
        let n = b.len() as u32;
        b[0..4].copy_from_slice(&n.to_ne_bytes());
        b[4..8].copy_from_slice(&3u32.to_ne_bytes()); // PGSIZES | CAPS
        b[8..16].copy_from_slice(&0x4020_1000u64.to_ne_bytes());
        b[16..20].copy_from_slice(&24u32.to_ne_bytes());
        b[24..26].copy_from_slice(&1u16.to_ne_bytes());
        b[32..36].copy_from_slice(&2u32.to_ne_bytes());
        b[40..48].copy_from_slice(&0u64.to_ne_bytes());
        b[48..56].copy_from_slice(&0xfedf_ffffu64.to_ne_bytes());
        b[56..64].copy_from_slice(&0xfef0_0000u64.to_ne_bytes());
        b[64..72].copy_from_slice(&0xffff_ffff_ffffu64.to_ne_bytes());
        b
    }

    /// First fit never overflows, and finds room between and after mappings.
    #[test]
    fn first_fit_near_the_top() {
        use super::{first_fit, Map};
        let m = |len| Map {
            va: 0,
            len,
            flags: 0,
        };
        let mut maps = crate::table::Sorted::new();
        assert_eq!(first_fit(&maps, 0x1000, 0x1000), Some(0x1000));
        maps.insert(0x1000, m(0x1000));
        assert_eq!(first_fit(&maps, 0x1000, 0x1000), Some(0x2000));
        maps.insert(0x3000, m(0x1000));
        assert_eq!(first_fit(&maps, 0x1000, 0x1000), Some(0x2000));
        assert_eq!(first_fit(&maps, 0x2000, 0x1000), Some(0x4000));
        // A mapping that ends at 2^64 leaves no room after it.
        maps.insert(0xffff_ffff_ffff_f000, m(0x1000));
        assert_eq!(first_fit(&maps, u64::MAX - 0x5000, 0x1000), Some(0x4000));
        assert_eq!(first_fit(&maps, u64::MAX - 0x3000, 0x1000), None);
        assert_eq!(first_fit(&maps, 0x1000, 0x1000), Some(0x2000));
    }

    #[test]
    fn type1_info_with_iova_ranges() {
        let mut b = crafted_type1_info();
        let (r, a) = parse_type1_info(&b, 4096);
        assert_eq!(a, 0x1000);
        assert_eq!(r, vec![(0, 0xfedf_ffff), (0xfef0_0000, 0xffff_ffff_ffff)]);
        // A cap pointing at itself does not loop, nor repeat its ranges.
        b[28..32].copy_from_slice(&24u32.to_ne_bytes());
        let (r, _) = parse_type1_info(&b, 4096);
        assert_eq!(r.len(), 2);
        // Truncated: no ranges, full space.
        assert_eq!(parse_type1_info(&b[..20], 4096).0, vec![(0, u64::MAX)]);
    }
}
