//! Device regions: info with its capability chain, BAR mappings, MMIO views.
//!
//! # Example
//!
//! ```no_run
//! use iommufd::{pci, RegionCap};
//! # fn f(dev: &mut iommufd::Device<iommufd::BlockDma>) -> iommufd::Result<()> {
//! let bar0 = dev.region_info(pci::BAR0)?;
//! if bar0.caps.contains(&RegionCap::MsixMappable) { /* the MSI-X table may be mapped too */ }
//! dev.map_bar(pci::BAR0)?;
//! let mmio = dev.mmio(pci::BAR0)?;
//! mmio.write32(0x04, 0x1234)?;
//! let v = mmio.read32(0x04)?;
//! let slot = mmio.host_address(0);                 // for a KVM memory slot
//! # let _ = (v, slot); Ok(()) }
//! ```

use crate::error::{Error, ErrorKind, Result};
use nix::errno::Errno;
use std::fmt;
use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

/// Region and IRQ indexes of a vfio-pci device.
pub mod pci {
    /// BAR 0 .. BAR 5 are region indexes 0 .. 5.
    ///
    /// Example: [the `region` module docs](crate::region).
    pub const BAR0: u32 = 0;
    /// The expansion ROM region.
    ///
    /// Example: [the `region` module docs](crate::region).
    pub const ROM: u32 = 6;
    /// PCI configuration space.
    ///
    /// Example: [the `region` module docs](crate::region).
    pub const CONFIG: u32 = 7;
    /// VGA region.
    ///
    /// Example: [the `region` module docs](crate::region).
    pub const VGA: u32 = 8;
    /// Legacy INTx interrupt.
    ///
    /// Example: [the `region` module docs](crate::region).
    pub const INTX_IRQ: u32 = 0;
    /// MSI.
    ///
    /// Example: [the `region` module docs](crate::region).
    pub const MSI_IRQ: u32 = 1;
    /// MSI-X.
    ///
    /// Example: [the `region` module docs](crate::region).
    pub const MSIX_IRQ: u32 = 2;
    /// AER error notification.
    ///
    /// Example: [the `region` module docs](crate::region).
    pub const ERR_IRQ: u32 = 3;
    /// Device release request (hot-unplug).
    ///
    /// Example: [the `region` module docs](crate::region).
    pub const REQ_IRQ: u32 = 4;
}

const FLAG_READ: u32 = 1 << 0;
const FLAG_WRITE: u32 = 1 << 1;
const FLAG_MMAP: u32 = 1 << 2;
const FLAG_CAPS: u32 = 1 << 3;

const CAP_SPARSE_MMAP: u16 = 1;
const CAP_TYPE: u16 = 2;
const CAP_MSIX_MAPPABLE: u16 = 3;

/// One mmap-able area of a region (`struct vfio_region_sparse_mmap_area`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
///
/// Example: [the `region` module docs](crate::region).
pub struct SparseArea {
    /// Offset within the region.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

/// A region capability (`struct vfio_info_cap_header` and what follows).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
///
/// Example: [the `region` module docs](crate::region).
pub enum RegionCap {
    /// Only these areas may be mmapped (`VFIO_REGION_INFO_CAP_SPARSE_MMAP`).
    SparseMmap(Vec<SparseArea>),
    /// A device-specific region (`VFIO_REGION_INFO_CAP_TYPE`).
    Type {
        /// Vendor or `VFIO_REGION_TYPE_*`.
        type_: u32,
        /// Subtype.
        subtype: u32,
    },
    /// The MSI-X table in this BAR may be mmapped (`VFIO_REGION_INFO_CAP_MSIX_MAPPABLE`).
    MsixMappable,
    /// A capability this crate does not decode.
    Unknown {
        /// Capability id.
        id: u16,
        /// Capability version.
        version: u16,
    },
}

/// A malformed capability chain.
#[derive(Debug, Clone, PartialEq, Eq)]
///
/// Example: [the `region` module docs](crate::region).
pub enum CapError {
    /// A header or its payload runs past the buffer the kernel filled.
    OutOfBounds {
        /// Offset of the offending capability.
        offset: u32,
    },
    /// A capability's offset is not 4-byte aligned, or lies inside the fixed struct.
    Misplaced {
        /// Offset of the offending capability.
        offset: u32,
    },
    /// The chain points back at a capability already seen.
    Loop {
        /// The offset seen twice.
        offset: u32,
    },
}

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapError::OutOfBounds { offset } => {
                write!(f, "capability at {offset:#x} runs past the buffer")
            }
            CapError::Misplaced { offset } => write!(
                f,
                "capability offset {offset:#x} is misaligned or inside the header"
            ),
            CapError::Loop { offset } => write!(f, "capability chain loops back to {offset:#x}"),
        }
    }
}

impl std::error::Error for CapError {}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// Parses a VFIO capability chain.
///
/// `buf` is the whole buffer the kernel filled (starting with the fixed info
/// struct of `header_len` bytes); `first` is the struct's `cap_offset`, and
/// every `next` is an offset from the start of `buf`; 0 ends the chain.
/// Malformed chains (loops, offsets out of bounds or into the header) are
/// errors, never panics or endless loops.
///
/// Example: [the `region` module docs](crate::region).
pub fn parse_capabilities(
    buf: &[u8],
    header_len: usize,
    first: u32,
) -> Result<Vec<RegionCap>, CapError> {
    let mut caps = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut off = first;
    while off != 0 {
        let o = off as usize;
        if o < header_len || o % 4 != 0 {
            return Err(CapError::Misplaced { offset: off });
        }
        if !seen.insert(off) {
            return Err(CapError::Loop { offset: off });
        }
        let oob = CapError::OutOfBounds { offset: off };
        let id = u16_at(buf, o).ok_or(oob.clone())?;
        let version = u16_at(buf, o + 2).ok_or(oob.clone())?;
        let next = u32_at(buf, o + 4).ok_or(oob.clone())?;
        caps.push(match id {
            CAP_SPARSE_MMAP => {
                let n = u32_at(buf, o + 8).ok_or(oob.clone())? as usize;
                let end = n
                    .checked_mul(16)
                    .and_then(|b| b.checked_add(o + 16))
                    .ok_or(oob.clone())?;
                if end > buf.len() {
                    return Err(oob);
                }
                let areas = (0..n)
                    .map(|i| SparseArea {
                        offset: u64_at(buf, o + 16 + 16 * i).unwrap(),
                        size: u64_at(buf, o + 24 + 16 * i).unwrap(),
                    })
                    .collect();
                RegionCap::SparseMmap(areas)
            }
            CAP_TYPE => RegionCap::Type {
                type_: u32_at(buf, o + 8).ok_or(oob.clone())?,
                subtype: u32_at(buf, o + 12).ok_or(oob)?,
            },
            CAP_MSIX_MAPPABLE => RegionCap::MsixMappable,
            _ => RegionCap::Unknown { id, version },
        });
        off = next;
    }
    Ok(caps)
}

/// `struct vfio_region_info` with its capabilities decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
///
/// Example: [the `region` module docs](crate::region).
pub struct RegionInfo {
    /// Region index.
    pub index: u32,
    /// Raw `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
    /// Size in bytes (0: the region does not exist).
    pub size: u64,
    /// Offset of the region in the device fd (for pread/pwrite/mmap).
    pub offset: u64,
    /// The capability chain.
    pub caps: Vec<RegionCap>,
}

impl RegionInfo {
    /// Readable with pread.
    ///
    /// Example: [the `region` module docs](crate::region).
    pub fn readable(&self) -> bool {
        self.flags & FLAG_READ != 0
    }
    /// Writable with pwrite.
    ///
    /// Example: [the `region` module docs](crate::region).
    pub fn writable(&self) -> bool {
        self.flags & FLAG_WRITE != 0
    }
    /// May be mmapped (all of it, or the [`sparse_areas`](Self::sparse_areas)).
    pub fn mmappable(&self) -> bool {
        self.flags & FLAG_MMAP != 0
    }
    /// The areas that may be mmapped: the sparse list if there is one, else the whole region.
    ///
    /// Example: [the `region` module docs](crate::region).
    pub fn sparse_areas(&self) -> Vec<SparseArea> {
        self.mmap_areas().collect()
    }

    /// What [`sparse_areas`](Self::sparse_areas) lists, without a vector.
    pub(crate) fn mmap_areas(&self) -> impl Iterator<Item = SparseArea> + '_ {
        let sparse = self.caps.iter().find_map(|c| match c {
            RegionCap::SparseMmap(a) => Some(a.as_slice()),
            _ => None,
        });
        let (whole, parts) = match sparse {
            _ if !self.mmappable() || self.size == 0 => (None, &[][..]),
            Some(parts) => (None, parts),
            None => (
                Some(SparseArea {
                    offset: 0,
                    size: self.size,
                }),
                &[][..],
            ),
        };
        whole.into_iter().chain(parts.iter().copied())
    }

    /// Decodes the buffer `VFIO_DEVICE_GET_REGION_INFO` filled.
    pub(crate) fn decode(buf: &[u8]) -> Result<RegionInfo, CapError> {
        // The fixed struct, checked once; its fields at fixed offsets.
        let Some(head) = buf.first_chunk::<32>() else {
            return Err(CapError::OutOfBounds {
                offset: buf.len().min(28) as u32 & !3,
            });
        };
        // Every field lies inside the 32 bytes just checked: the defaults
        // are never taken (and the checks fold away).
        let word = |o| u32_at(head, o).unwrap_or_default();
        let dword = |o| u64_at(head, o).unwrap_or_default();
        let flags = word(4);
        let caps = if flags & FLAG_CAPS != 0 {
            parse_capabilities(buf, 32, word(12))?
        } else {
            Vec::new()
        };
        Ok(RegionInfo {
            index: word(8),
            flags,
            size: dword(16),
            offset: dword(24),
            caps,
        })
    }
}

/// One mmapped area of a BAR.
pub(crate) struct MappedArea {
    offset: u64,
    map: DeviceMap,
}

/// One shared read-write `mmap` of part of a device fd, which this value
/// alone owns and unmaps when it drops. (Not `memmap2::MmapRaw`: its
/// builder and page-offset bookkeeping cost a BAR's first map about 60
/// instructions over the `mmap` itself (#29), for offsets that VFIO
/// always page-aligns.)
pub(crate) struct DeviceMap {
    ptr: NonNull<u8>,
    len: usize,
}

impl DeviceMap {
    /// mmaps `[offset, offset + len)` of `fd`, shared and read-write, where
    /// the kernel chooses.
    pub(crate) fn new(fd: BorrowedFd<'_>, offset: u64, len: u64) -> nix::Result<DeviceMap> {
        use nix::sys::mman::{mmap, MapFlags, ProtFlags};
        let n = usize::try_from(len)
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or(Errno::EINVAL)?;
        let offset = i64::try_from(offset).map_err(|_| Errno::EOVERFLOW)?;
        // SAFETY: a new shared mapping at an address the kernel chooses:
        // nothing of this process is replaced, and nothing refers to it
        // until the value returned owns it.
        let p = unsafe {
            mmap(
                None,
                n,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                offset,
            )
        }?;
        Ok(DeviceMap {
            ptr: p.cast(),
            len: n.get(),
        })
    }

    fn len(&self) -> usize {
        self.len
    }

    fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for DeviceMap {
    fn drop(&mut self) {
        // SAFETY: the mapping `new` made, owned by this value alone; every
        // pointer into it is derived from a borrow of the `Bar` that owns
        // this value, so none outlives it.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr.cast(), self.len) };
    }
}

// SAFETY: the value owns its mapping, as `memmap2::MmapRaw` (Send + Sync)
// does; the mapping is device memory (or, in tests, a file's pages), which
// no Rust allocation aliases, reached only by volatile accesses.
unsafe impl Send for DeviceMap {}
// SAFETY: as above; `&DeviceMap` gives only the address and the length.
unsafe impl Sync for DeviceMap {}

/// A BAR's mappings, owned by the device (see [`Device::map_bar`](crate::Device::map_bar)).
pub(crate) struct Bar {
    pub(crate) info: RegionInfo,
    /// The base of the one mapping that covers the whole BAR, or null when
    /// the BAR has holes (sparse areas): the MMIO hot path needs nothing else.
    whole: Whole,
    areas: Areas,
}

/// A BAR's mapped areas: the first inline (a BAR without holes has one, and
/// mapping it allocates nothing), the rest in a vector.
#[derive(Default)]
struct Areas {
    first: Option<MappedArea>,
    rest: Vec<MappedArea>,
}

impl Areas {
    fn push(&mut self, a: MappedArea) {
        match self.first {
            None => self.first = Some(a),
            Some(_) => self.rest.push(a),
        }
    }

    #[inline]
    fn iter(&self) -> impl Iterator<Item = &MappedArea> {
        self.first.iter().chain(&self.rest)
    }
}

/// The start of `areas[0].map` when that mapping covers `[0, info.size)`.
struct Whole(*mut u8);

// SAFETY: the pointer is the base of a mapping the same `Bar` owns (a
// `DeviceMap`, itself Send + Sync); it is only read, and only used for
// volatile accesses to device memory, which no Rust allocation aliases.
unsafe impl Send for Whole {}
// SAFETY: as above; `&Whole` gives nothing but the address.
unsafe impl Sync for Whole {}

/// The error of an area's `mmap`.
#[cold]
fn area_error(name: &str, info: &RegionInfo, a: SparseArea, e: Errno) -> Error {
    Error::new(
        ErrorKind::Kernel,
        "mmap BAR",
        format!("{name} region {}", info.index),
    )
    .detail(format!("area [{:#x}, +{:#x}): {e}", a.offset, a.size))
    .errno(e)
}

impl Bar {
    /// mmaps every mmap-able area of `info` from the device fd; `info` is
    /// of an mmap-able region of a nonzero size.
    pub(crate) fn map(fd: BorrowedFd<'_>, info: RegionInfo, name: &str) -> Result<Box<Bar>> {
        if info.caps.is_empty() {
            // No capability, so no sparse list: the whole region is one
            // area (the common BAR), mapped straight into its `Bar`.
            let whole = SparseArea {
                offset: 0,
                size: info.size,
            };
            let map = DeviceMap::new(fd, info.offset, info.size)
                .map_err(|e| area_error(name, &info, whole, e))?;
            let areas = Areas {
                first: Some(MappedArea { offset: 0, map }),
                rest: Vec::new(),
            };
            return Ok(Box::new(Bar::new(info, areas)));
        }
        let mut areas = Areas::default();
        // An empty area has nothing to map, and nothing can be reached in it.
        for a in info.mmap_areas().filter(|a| a.size != 0) {
            let map = DeviceMap::new(fd, info.offset.saturating_add(a.offset), a.size)
                .map_err(|e| area_error(name, &info, a, e))?;
            areas.push(MappedArea {
                offset: a.offset,
                map,
            });
        }
        Ok(Box::new(Bar::new(info, areas)))
    }

    fn new(info: RegionInfo, areas: Areas) -> Bar {
        let whole = match (&areas.first, areas.rest.is_empty()) {
            (Some(a), true) if a.offset == 0 && a.map.len() as u64 >= info.size => {
                a.map.as_mut_ptr()
            }
            _ => std::ptr::null_mut(),
        };
        Bar {
            info,
            whole: Whole(whole),
            areas,
        }
    }
}

/// A bounds-checked view of one BAR, borrowed from a bound device.
///
/// Reads and writes are single, naturally aligned volatile accesses to the
/// mmapped BAR; an offset in a part of the BAR the kernel does not let us
/// mmap (a sparse hole, such as the MSI-X table) goes through `pread`/`pwrite`
/// on the device fd instead. Because the view borrows the device, it cannot
/// outlive the binding: `unbind`/`close` need the device by value.
///
/// `Mmio` is `Send` and `Sync`: it is a shared borrow of the device, and each
/// access is one volatile load or store of device memory, which lies outside
/// any Rust allocation; the device, not Rust, defines what concurrent register
/// accesses mean, exactly as for a VMM's vCPU threads.
#[derive(Clone, Copy)]
///
/// Example: [the `region` module docs](crate::region).
pub struct Mmio<'d> {
    fd: BorrowedFd<'d>,
    bar: &'d Bar,
    name: &'d str,
}

impl<'d> Mmio<'d> {
    pub(crate) fn new(fd: BorrowedFd<'d>, bar: &'d Bar, name: &'d str) -> Self {
        Mmio { fd, bar, name }
    }

    /// The BAR's size in bytes.
    ///
    /// Example: [the `region` module docs](crate::region).
    pub fn size(&self) -> u64 {
        self.bar.info.size
    }

    /// The region info this view was made from.
    ///
    /// Example: [the `region` module docs](crate::region).
    pub fn info(&self) -> &RegionInfo {
        &self.bar.info
    }

    /// The host virtual address of the mmapped area containing `offset`, for a
    /// VMM that hands the BAR to a guest (a KVM memory slot). It stays valid
    /// until the device is unbound or closed, across attach, detach and replace.
    ///
    /// Example: [the `region` module docs](crate::region).
    pub fn host_address(&self, offset: u64) -> Option<*mut u8> {
        self.area(offset, 1)
            .map(|(a, rel)| a.map.as_mut_ptr().wrapping_add(rel))
    }

    #[inline]
    fn area(&self, offset: u64, n: u64) -> Option<(&MappedArea, usize)> {
        // `offset` comes from the caller: no arithmetic on it may overflow.
        let end = offset.checked_add(n)?;
        self.bar
            .areas
            .iter()
            .find(|a| offset >= a.offset && end <= a.offset + a.map.len() as u64)
            .map(|a| (a, (offset - a.offset) as usize))
    }

    /// The bounds and alignment check of an `n`-byte access: `n` is a
    /// constant power of two at every call site, so this inlines to a mask
    /// and a compare; the error is built out of line, only on failure.
    #[inline(always)]
    fn check(&self, offset: u64, n: u64, op: &'static str) -> Result<()> {
        let in_bounds = offset
            .checked_add(n)
            .is_some_and(|e| e <= self.bar.info.size);
        if !in_bounds || offset & (n - 1) != 0 {
            return Err(self.bad_access(offset, n, op));
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn bad_access(&self, offset: u64, n: u64, op: &'static str) -> Error {
        Error::new(
            ErrorKind::InvalidInput,
            op,
            format!(
                "{} BAR{} offset {offset:#x}",
                self.name, self.bar.info.index
            ),
        )
        .detail(format!(
            "a {n}-byte access must be {n}-byte aligned and inside the {:#x}-byte BAR",
            self.bar.info.size
        ))
    }

    /// The 32-bit register at `offset`, checked once (inside the BAR,
    /// aligned, in an mmapped part of it): each [`Register::write`] after
    /// is one store, with no check, as a doorbell rung per I/O wants.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let fd = iommufd::Iommufd::open()?;
    /// # let mut dev = iommufd::Device::open("0000:06:00.0")?.bind(&fd).map_err(iommufd::Error::from)?;
    /// dev.map_bar(0)?;
    /// let bar = dev.mmio(0)?;
    /// let doorbell = bar.register32(0x1000)?; // NVMe: SQ 0's tail doorbell
    /// doorbell.write(1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] outside the BAR or misaligned, as
    /// [`write32`](Self::write32); [`ErrorKind::Unsupported`] for a register
    /// in a part of the BAR the kernel does not let user space mmap (use
    /// `read32`/`write32`, which reach it with `pread`/`pwrite`).
    pub fn register32(&self, offset: u64) -> Result<Register<'d, u32>> {
        self.register(offset)
    }

    /// The 64-bit register at `offset`, checked once ([`register32`](Self::register32)).
    ///
    /// # Errors
    /// As [`register32`](Self::register32).
    pub fn register64(&self, offset: u64) -> Result<Register<'d, u64>> {
        self.register(offset)
    }

    fn register<T: Reg>(&self, offset: u64) -> Result<Register<'d, T>> {
        self.check(offset, T::N, "Mmio::register")?;
        // The area holding it: the one mapping of a BAR without holes, or
        // one of a sparse BAR's.
        let Some((a, rel)) = self.area(offset, T::N) else {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "Mmio::register",
                format!("{} BAR{} offset {offset:#x}", self.name, self.bar.info.index),
            )
            .detail("the register lies in a part of the BAR that cannot be mmapped: read32/write32 reach it with pread/pwrite"));
        };
        Ok(Register {
            p: a.map.as_mut_ptr().wrapping_add(rel).cast(),
            _bar: std::marker::PhantomData,
        })
    }

    /// A read of one register: the check, then, when one mapping covers the
    /// whole BAR (the common case), one volatile load; `tests/codegen.rs`
    /// checks that `read32` compiles to that and nothing more.
    #[inline(always)]
    fn read<T: Reg>(&self, offset: u64) -> Result<T> {
        self.check(offset, T::N, "MMIO read")?;
        let base = self.bar.whole.0;
        if base.is_null() {
            return self.read_areas(offset);
        }
        // SAFETY: `check` put `[offset, offset + N)` inside the BAR, which the
        // mapping at `base` covers whole; that is naturally aligned for T
        // (offset % N == 0, the mapping is page aligned); the mapping lives
        // as long as the device this view borrows.
        Ok(unsafe { base.add(offset as usize).cast::<T>().read_volatile() })
    }

    /// A read in a BAR with holes: the mapped area holding it, else `pread`.
    /// `#[cold]` only to keep it off the whole-BAR path's layout.
    #[cold]
    #[inline(never)]
    fn read_areas<T: Reg>(&self, offset: u64) -> Result<T> {
        match self.area(offset, T::N) {
            // SAFETY: `p` is inside the live mapping (`area` checked the
            // range), naturally aligned for T, and lives as long as the borrow.
            Some((a, rel)) => Ok(unsafe { a.map.as_ptr().add(rel).cast::<T>().read_volatile() }),
            None => self.read_slow(offset),
        }
    }

    /// A read in a part of the BAR the kernel does not let us mmap.
    fn read_slow<T: Reg>(&self, offset: u64) -> Result<T> {
        let mut out = [0u8; 8];
        let out = &mut out[..T::N as usize];
        let n = nix::sys::uio::pread(self.fd, out, (self.bar.info.offset + offset) as i64)
            .map_err(|e| {
                Error::sys(
                    "MMIO read (pread)",
                    format!(
                        "{} BAR{} offset {offset:#x}",
                        self.name, self.bar.info.index
                    ),
                    e,
                )
            })?;
        if n != out.len() {
            return Err(Error::new(
                ErrorKind::Kernel,
                "MMIO read (pread)",
                self.name.to_string(),
            )
            .detail(format!("short read: {n} of {}", T::N)));
        }
        Ok(T::from_ne(out))
    }

    #[inline(always)]
    fn write<T: Reg>(&self, offset: u64, val: T) -> Result<()> {
        self.check(offset, T::N, "MMIO write")?;
        let base = self.bar.whole.0;
        if base.is_null() {
            return self.write_areas(offset, val);
        }
        // SAFETY: as in `read`: in bounds, aligned, and the mapping is live.
        unsafe { base.add(offset as usize).cast::<T>().write_volatile(val) };
        Ok(())
    }

    /// A write in a BAR with holes: the mapped area holding it, else `pwrite`.
    #[cold]
    #[inline(never)]
    fn write_areas<T: Reg>(&self, offset: u64, val: T) -> Result<()> {
        match self.area(offset, T::N) {
            Some((a, rel)) => {
                // SAFETY: as in `read_areas`.
                unsafe { a.map.as_mut_ptr().add(rel).cast::<T>().write_volatile(val) };
                Ok(())
            }
            None => self.write_slow(offset, val),
        }
    }

    /// A write in a part of the BAR the kernel does not let us mmap.
    fn write_slow<T: Reg>(&self, offset: u64, val: T) -> Result<()> {
        let mut bytes = [0u8; 8];
        let bytes = &mut bytes[..T::N as usize];
        val.to_ne(bytes);
        nix::sys::uio::pwrite(self.fd, bytes, (self.bar.info.offset + offset) as i64).map_err(
            |e| {
                Error::sys(
                    "MMIO write (pwrite)",
                    format!(
                        "{} BAR{} offset {offset:#x}",
                        self.name, self.bar.info.index
                    ),
                    e,
                )
            },
        )?;
        Ok(())
    }

    /// Reads a byte.
    #[inline]
    ///
    /// Example: [the `region` module docs](crate::region).
    pub fn read8(&self, offset: u64) -> Result<u8> {
        self.read(offset)
    }
    /// Reads a 16-bit register (native endian, as the CPU sees it).
    #[inline]
    ///
    /// Example: [the `region` module docs](crate::region).
    pub fn read16(&self, offset: u64) -> Result<u16> {
        self.read(offset)
    }
    /// Reads a 32-bit register.
    #[inline]
    ///
    /// Example: [the `region` module docs](crate::region).
    pub fn read32(&self, offset: u64) -> Result<u32> {
        self.read(offset)
    }
    /// Reads a 64-bit register.
    #[inline]
    ///
    /// Example: [the `region` module docs](crate::region).
    pub fn read64(&self, offset: u64) -> Result<u64> {
        self.read(offset)
    }
    /// Writes a byte.
    #[inline]
    ///
    /// Example: [the `region` module docs](crate::region).
    pub fn write8(&self, offset: u64, v: u8) -> Result<()> {
        self.write(offset, v)
    }
    /// Writes a 16-bit register.
    #[inline]
    ///
    /// Example: [the `region` module docs](crate::region).
    pub fn write16(&self, offset: u64, v: u16) -> Result<()> {
        self.write(offset, v)
    }
    /// Writes a 32-bit register.
    #[inline]
    ///
    /// Example: [the `region` module docs](crate::region).
    pub fn write32(&self, offset: u64, v: u32) -> Result<()> {
        self.write(offset, v)
    }
    /// Writes a 64-bit register.
    #[inline]
    ///
    /// Example: [the `region` module docs](crate::region).
    pub fn write64(&self, offset: u64, v: u64) -> Result<()> {
        self.write(offset, v)
    }
}

/// A register of a mapped BAR, checked once by [`Mmio::register32`] or
/// [`Mmio::register64`]: each access is one volatile load or store. It
/// borrows the device as the [`Mmio`] view does, so the BAR stays mapped.
///
/// Example: [`Mmio::register32`].
#[derive(Clone, Copy)]
pub struct Register<'d, T> {
    p: *mut T,
    _bar: std::marker::PhantomData<&'d Bar>,
}

impl<T: Copy> Register<'_, T> {
    /// Reads the register.
    #[inline]
    pub fn read(&self) -> T {
        // SAFETY: `register` checked `p` inside a live mapping of the BAR,
        // naturally aligned; the mapping lives as long as the device borrow
        // `'d`. MMIO is outside Rust's memory model (see `Mmio`).
        unsafe { self.p.read_volatile() }
    }

    /// Writes the register.
    #[inline]
    pub fn write(&self, v: T) {
        // SAFETY: as in `read`.
        unsafe { self.p.write_volatile(v) }
    }
}

impl<T> fmt::Debug for Register<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Register").field("at", &self.p).finish()
    }
}

/// A register width: u8, u16, u32 or u64 (plain integers, any bit pattern
/// valid), accessed with one volatile load or store.
trait Reg: Copy {
    const N: u64;
    fn from_ne(b: &[u8]) -> Self;
    fn to_ne(self, b: &mut [u8]);
}

macro_rules! reg {
    ($($t:ty),*) => {$(
        impl Reg for $t {
            const N: u64 = std::mem::size_of::<$t>() as u64;
            fn from_ne(b: &[u8]) -> Self {
                <$t>::from_ne_bytes(b.try_into().expect("N bytes"))
            }
            fn to_ne(self, b: &mut [u8]) {
                b.copy_from_slice(&self.to_ne_bytes())
            }
        }
    )*};
}
reg!(u8, u16, u32, u64);

impl fmt::Debug for Mmio<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mmio")
            .field("device", &self.name)
            .field("bar", &self.bar.info.index)
            .field("size", &self.bar.info.size)
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A read-write BAR 0 of `size` bytes at fd offset 0, with `map` its one
    /// mmapped area, at `area` within the BAR.
    fn test_bar(size: u64, area: u64, map: DeviceMap) -> Bar {
        let info = RegionInfo {
            index: 0,
            flags: FLAG_READ | FLAG_WRITE | FLAG_MMAP,
            size,
            offset: 0,
            caps: Vec::new(),
        };
        Bar::new(
            info,
            Areas {
                first: Some(MappedArea { offset: area, map }),
                rest: Vec::new(),
            },
        )
    }

    fn header(buf: &mut Vec<u8>, at: usize, id: u16, next: u32) {
        if buf.len() < at + 8 {
            buf.resize(at + 8, 0);
        }
        buf[at..at + 2].copy_from_slice(&id.to_ne_bytes());
        buf[at + 2..at + 4].copy_from_slice(&1u16.to_ne_bytes());
        buf[at + 4..at + 8].copy_from_slice(&next.to_ne_bytes());
    }

    fn put32(buf: &mut Vec<u8>, at: usize, v: u32) {
        if buf.len() < at + 4 {
            buf.resize(at + 4, 0);
        }
        buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }

    fn put64(buf: &mut Vec<u8>, at: usize, v: u64) {
        if buf.len() < at + 8 {
            buf.resize(at + 8, 0);
        }
        buf[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    }

    /// A region info buffer with a sparse-mmap cap (2 areas), a type cap and MSI-X mappable.
    /// A region info with every capability this crate decodes, and one it does not.
    pub(crate) fn crafted() -> Vec<u8> {
        let mut b = vec![0u8; 32];
        put32(&mut b, 0, 128);
        put32(&mut b, 4, FLAG_READ | FLAG_WRITE | FLAG_MMAP | FLAG_CAPS);
        put32(&mut b, 8, 2);
        put32(&mut b, 12, 32);
        put64(&mut b, 16, 0x4000);
        put64(&mut b, 24, 0x20000000000);
        header(&mut b, 32, CAP_SPARSE_MMAP, 80);
        put32(&mut b, 40, 2);
        put64(&mut b, 48, 0);
        put64(&mut b, 56, 0x1000);
        put64(&mut b, 64, 0x3000);
        put64(&mut b, 72, 0x1000);
        header(&mut b, 80, CAP_TYPE, 96);
        put32(&mut b, 88, 0x8086);
        put32(&mut b, 92, 7);
        header(&mut b, 96, CAP_MSIX_MAPPABLE, 104);
        header(&mut b, 104, 0x99, 0);
        b
    }

    #[test]
    fn decodes_a_full_chain() {
        let info = RegionInfo::decode(&crafted()).unwrap();
        assert_eq!(info.index, 2);
        assert_eq!(info.size, 0x4000);
        assert!(info.readable() && info.writable() && info.mmappable());
        assert_eq!(
            info.caps,
            vec![
                RegionCap::SparseMmap(vec![
                    SparseArea {
                        offset: 0,
                        size: 0x1000
                    },
                    SparseArea {
                        offset: 0x3000,
                        size: 0x1000
                    }
                ]),
                RegionCap::Type {
                    type_: 0x8086,
                    subtype: 7
                },
                RegionCap::MsixMappable,
                RegionCap::Unknown {
                    id: 0x99,
                    version: 1
                },
            ]
        );
        assert_eq!(info.sparse_areas().len(), 2);
    }

    #[test]
    fn no_caps_flag_means_whole_region_mmappable() {
        let mut b = crafted();
        put32(&mut b, 4, FLAG_READ | FLAG_MMAP);
        let info = RegionInfo::decode(&b).unwrap();
        assert!(info.caps.is_empty());
        assert_eq!(
            info.sparse_areas(),
            vec![SparseArea {
                offset: 0,
                size: 0x4000
            }]
        );
    }

    #[test]
    fn loops_are_errors() {
        let mut b = crafted();
        header(&mut b, 104, 0x99, 80); // back to the type cap
        assert_eq!(RegionInfo::decode(&b), Err(CapError::Loop { offset: 80 }));
        let mut b = crafted();
        header(&mut b, 32, CAP_MSIX_MAPPABLE, 32); // points at itself
        assert_eq!(
            parse_capabilities(&b, 32, 32),
            Err(CapError::Loop { offset: 32 })
        );
    }

    #[test]
    fn out_of_bounds_and_misplaced_offsets_are_errors() {
        let b = crafted();
        assert_eq!(
            parse_capabilities(&b, 32, 4096),
            Err(CapError::OutOfBounds { offset: 4096 })
        );
        assert_eq!(
            parse_capabilities(&b, 32, 8),
            Err(CapError::Misplaced { offset: 8 })
        );
        assert_eq!(
            parse_capabilities(&b, 32, 34),
            Err(CapError::Misplaced { offset: 34 })
        );
        assert_eq!(
            parse_capabilities(&b, 32, !3u32),
            Err(CapError::OutOfBounds { offset: !3u32 })
        );
        // A sparse cap that claims more areas than the buffer holds.
        let mut b = crafted();
        put32(&mut b, 40, 1000);
        assert_eq!(
            parse_capabilities(&b, 32, 32),
            Err(CapError::OutOfBounds { offset: 32 })
        );
        put32(&mut b, 40, u32::MAX);
        assert_eq!(
            parse_capabilities(&b, 32, 32),
            Err(CapError::OutOfBounds { offset: 32 })
        );
        // Truncated in the middle of a header.
        assert_eq!(
            parse_capabilities(&b[..84], 32, 80),
            Err(CapError::OutOfBounds { offset: 80 })
        );
        // Empty buffer.
        assert!(RegionInfo::decode(&[]).is_err());
    }

    /// Offsets near 2^64 give `None`, never a wrapped pointer or a panic, and
    /// out-of-range MMIO accesses are errors.
    #[test]
    fn offsets_near_the_top_of_u64_do_not_overflow() {
        let f = nix::sys::memfd::memfd_create(c"bar", nix::sys::memfd::MFdFlags::empty()).unwrap();
        nix::unistd::ftruncate(&f, 4096).unwrap();
        let map = DeviceMap::new(std::os::fd::AsFd::as_fd(&f), 0, 4096).unwrap();
        let bar = test_bar(4096, 0, map);
        let stdin = std::io::stdin();
        let mmio = Mmio::new(std::os::fd::AsFd::as_fd(&stdin), &bar, "test");
        assert!(mmio.host_address(0).is_some());
        assert!(mmio.host_address(4095).is_some());
        for off in [4096, u64::MAX, u64::MAX - 1, u64::MAX - 4095] {
            assert_eq!(mmio.host_address(off), None, "offset {off:#x}");
            assert!(mmio.read32(off & !3).is_err(), "read at {off:#x}");
        }
        mmio.write32(8, 0x1234_5678).unwrap();
        assert_eq!(mmio.read32(8).unwrap(), 0x1234_5678);
        assert!(mmio.read32(2).is_err(), "misaligned");
    }

    /// A BAR with a hole (only its second page mmapped): accesses in the
    /// mapped page go to the mapping, accesses in the hole to pread/pwrite on
    /// the fd, and both see the same bytes.
    #[test]
    fn a_bar_with_a_hole_reads_through_the_fd() {
        use std::io::Write;
        let path = std::env::temp_dir().join(format!("iommufd-bar-{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let _ = std::fs::remove_file(&path);
        let bytes: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&bytes).unwrap();
        let map = DeviceMap::new(std::os::fd::AsFd::as_fd(&f), 4096, 4096).unwrap();
        let bar = test_bar(8192, 4096, map);
        assert!(
            bar.whole.0.is_null(),
            "a BAR with a hole has no whole mapping"
        );
        let mmio = Mmio::new(std::os::fd::AsFd::as_fd(&f), &bar, "test");
        let word = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
        assert_eq!(mmio.read32(8).unwrap(), word(8), "hole: pread");
        assert_eq!(
            mmio.read32(4096 + 8).unwrap(),
            word(4096 + 8),
            "mapped area"
        );
        assert_eq!(mmio.host_address(8), None);
        mmio.write32(16, 0xdead_beef).unwrap();
        assert_eq!(mmio.read32(16).unwrap(), 0xdead_beef);
        mmio.write64(4096 + 16, 0x0123_4567_89ab_cdef).unwrap();
        assert_eq!(mmio.read64(4096 + 16).unwrap(), 0x0123_4567_89ab_cdef);
        assert!(mmio.read32(8192).is_err());
    }
}
