//! Memory that can be mapped for DMA with the safe [`Ioas::map`](crate::Ioas::map).
//!
//! # Example
//!
//! ```no_run
//! use iommufd::{Access, DmaBuffer, HugeBuffer, Iommufd, Iova};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ioas = Iommufd::open()?.alloc_ioas()?;
//! let mut buf = DmaBuffer::new(1 << 20)?;        // zeroed, page-aligned, THP asked for
//! buf.as_mut_slice()[..5].copy_from_slice(b"hello");
//! let mut m = ioas.map(buf, Iova::Any, Access::READ_WRITE).map_err(iommufd::Error::from)?;
//! m.write_bytes(5, b", device")?;                // the CPU side, while mapped
//! let huge = ioas.map_huge(HugeBuffer::new(2 << 20)?, Iova::Any, Access::READ).map_err(iommufd::Error::from)?;
//! let buf = m.unmap().map_err(iommufd::Error::from)?; // the memory back, unmapped
//! # let _ = (buf, huge); Ok(()) }
//! ```

use memmap2::{MmapMut, MmapOptions};
use std::fmt;
use std::ptr::NonNull;

/// Memory whose address range stays valid and in place for as long as the
/// value lives, so a [`Mapping`](crate::Mapping) that owns the value can let a
/// device reach it.
///
/// Only owners implement it, never borrows: a mapping of a borrow could be
/// leaked (`mem::forget`, an `Rc` cycle), which ends the borrow while the
/// device still reaches the memory. Leaking a mapping of an owner leaks the
/// owner too, which is safe.
///
/// # Safety
/// `dma_region` must return a non-empty range of this process's mapped memory
/// that stays mapped at the same address, and is not handed to other Rust code
/// as a reference, until `self` is dropped, even if `self` is moved. Owned
/// mmaps satisfy this (moving the `MmapMut` does not move the pages); a `Vec`
/// does not (it may reallocate), and neither does a reference (see above).
pub unsafe trait DmaMemory {
    /// The start and length of the memory.
    fn dma_region(&mut self) -> (NonNull<u8>, usize);
}

// SAFETY: an `MmapMut` owns its mapping until dropped; moving it does not move the pages.
unsafe impl DmaMemory for MmapMut {
    #[inline]
    fn dma_region(&mut self) -> (NonNull<u8>, usize) {
        (
            NonNull::new(self.as_mut_ptr()).expect("mmap is never at address 0"),
            self.len(),
        )
    }
}

/// The PMD size on x86-64 and arm64 with 4 KiB pages.
const HUGE_PAGE: usize = 2 << 20;

/// `len` rounded up to a multiple of `unit`, if that fits a mapping
/// (`isize::MAX` bytes at most, as for any Rust allocation).
fn round_up(len: usize, unit: usize) -> Option<usize> {
    len.checked_next_multiple_of(unit)
        .filter(|&l| isize::try_from(l).is_ok())
}

fn too_long(len: usize) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("a DMA buffer of {len:#x} bytes does not fit the address space"),
    )
}

/// A page-aligned, zeroed, anonymous buffer for DMA. Buffers of 2 MiB and
/// more ask for transparent huge pages (`MADV_HUGEPAGE`).
///
/// Example: [the `dma` module docs](crate::dma).
pub struct DmaBuffer {
    map: MmapMut,
}

impl DmaBuffer {
    /// Allocates `len` bytes, rounded up to whole pages.
    ///
    /// # Errors
    /// The `mmap` errno (`ENOMEM`), or `EINVAL` for a zero length.
    ///
    /// Example: [the `dma` module docs](crate::dma).
    pub fn new(len: usize) -> std::io::Result<Self> {
        if len == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "zero-length DMA buffer",
            ));
        }
        let len = round_up(len, page_size()).ok_or_else(|| too_long(len))?;
        let map = MmapOptions::new().len(len).map_anon()?;
        if len >= HUGE_PAGE {
            // Transparent huge pages even where THP is `madvise` only: the
            // kernel then pins and maps 2 MiB at a time. Best effort: without
            // THP the buffer works the same, only slower to map.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        Ok(DmaBuffer { map })
    }

    /// Length in bytes (a multiple of the page size).
    ///
    /// Example: [the `dma` module docs](crate::dma).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never true: a buffer holds at least one page.
    ///
    /// Example: [the `dma` module docs](crate::dma).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The bytes, for the CPU while no device can reach them.
    ///
    /// Example: [the `dma` module docs](crate::dma).
    pub fn as_slice(&self) -> &[u8] {
        &self.map
    }

    /// The bytes, mutable, for the CPU while no device can reach them.
    ///
    /// Example: [the `dma` module docs](crate::dma).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.map
    }
}

impl fmt::Debug for DmaBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaBuffer")
            .field("len", &self.map.len())
            .finish()
    }
}

// SAFETY: the buffer owns its anonymous mapping until dropped; moving it does not move the pages.
unsafe impl DmaMemory for DmaBuffer {
    #[inline]
    fn dma_region(&mut self) -> (NonNull<u8>, usize) {
        self.map.dma_region()
    }
}

/// The size of the hugetlbfs pages behind a [`HugeBuffer`].
///
/// Example: [the `dma` module docs](crate::dma).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HugePage {
    /// 2 MiB pages, from the default pool (`/proc/sys/vm/nr_hugepages`).
    Mib2,
    /// 1 GiB pages (`MFD_HUGE_1GB`), from
    /// `/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages`: what
    /// large VMs back their RAM with. A 1 GiB map pins one page where 2 MiB
    /// pages pin 512. The CPU must have them (`pdpe1gb`), and the pool is
    /// best reserved at boot (`hugepagesz=1G hugepages=N` on the kernel
    /// command line): at run time the kernel needs 1 GiB of contiguous
    /// free memory per page.
    Gib1,
}

impl HugePage {
    /// The page size in bytes.
    pub const fn size(self) -> usize {
        match self {
            HugePage::Mib2 => 2 << 20,
            HugePage::Gib1 => 1 << 30,
        }
    }

    fn name(self) -> &'static str {
        match self {
            HugePage::Mib2 => "2 MiB",
            HugePage::Gib1 => "1 GiB",
        }
    }

    fn memfd_flag(self) -> nix::sys::memfd::MFdFlags {
        match self {
            HugePage::Mib2 => nix::sys::memfd::MFdFlags::MFD_HUGE_2MB,
            HugePage::Gib1 => nix::sys::memfd::MFdFlags::MFD_HUGE_1GB,
        }
    }

    /// Where its pool is set, and where its free count is read.
    fn pool(self) -> (&'static str, &'static str) {
        match self {
            HugePage::Mib2 => ("/proc/sys/vm/nr_hugepages", "/proc/meminfo"),
            HugePage::Gib1 => (
                "/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages",
                "/sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages",
            ),
        }
    }

    /// How many pages of this size are free, as the kernel reports it.
    fn free(self) -> String {
        let (_, free) = self.pool();
        let text = std::fs::read_to_string(free).unwrap_or_default();
        match self {
            HugePage::Mib2 => text
                .lines()
                .find_map(|l| l.strip_prefix("HugePages_Free:"))
                .map(|v| v.trim().to_string()),
            HugePage::Gib1 => Some(text.trim().to_string()).filter(|v| !v.is_empty()),
        }
        .unwrap_or_else(|| "?".into())
    }
}

/// DMA memory backed by huge pages: a `memfd` on hugetlbfs (`MFD_HUGETLB`),
/// mapped shared and populated, aligned to its page size (2 MiB, or 1 GiB
/// with [`HugePage::Gib1`]).
///
/// [`Ioas::map_huge`](crate::Ioas::map_huge) maps it with
/// `IOMMU_IOAS_MAP_FILE` where the kernel has it (6.13+), which pins by file
/// offset a huge page at a time, and by address otherwise; it is also [`DmaMemory`]
/// for [`Ioas::map`](crate::Ioas::map). The file stays private to the buffer.
pub struct HugeBuffer {
    map: MmapMut,
    file: std::fs::File,
    page: HugePage,
}

impl HugeBuffer {
    /// Allocates `len` bytes, rounded up to whole 2 MiB huge pages, from the
    /// pool reserved in `/proc/sys/vm/nr_hugepages`.
    ///
    /// # Errors
    /// [`ErrorKind::OutOfMemory`](crate::ErrorKind::OutOfMemory) when the pool
    /// has too few free huge pages, naming `/proc/sys/vm/nr_hugepages` and
    /// how many are needed; [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported)
    /// without hugetlbfs; `InvalidInput` for a zero length.
    pub fn new(len: usize) -> crate::Result<Self> {
        HugeBuffer::with_pages(len, HugePage::Mib2)
    }

    /// Allocates `len` bytes, rounded up to whole huge pages of size `page`,
    /// from that size's pool.
    ///
    /// ```no_run
    /// use iommufd::{Access, HugeBuffer, HugePage, Iommufd, Iova};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ioas = Iommufd::open()?.alloc_ioas()?;
    /// // One 1 GiB page (reserved with `hugepagesz=1G hugepages=1`): a
    /// // 1 GiB-aligned IOVA lets the IOMMU map it with one entry too.
    /// let ram = HugeBuffer::with_pages(1 << 30, HugePage::Gib1)?;
    /// let ram = ioas.map_huge(ram, Iova::Fixed(1 << 30), Access::READ_WRITE).map_err(iommufd::Error::from)?;
    /// # let _ = ram; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::OutOfMemory`](crate::ErrorKind::OutOfMemory) when the
    /// pool of that size has too few free pages, naming its
    /// `nr_hugepages` file and how many are needed;
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) without
    /// hugetlbfs or without pages of that size (1 GiB pages need CPU
    /// support, `pdpe1gb`); `InvalidInput` for a zero length.
    pub fn with_pages(len: usize, page: HugePage) -> crate::Result<Self> {
        use crate::error::{Error, ErrorKind};
        use nix::errno::Errno;
        let op = "HugeBuffer::new";
        if len == 0 {
            return Err(
                Error::new(ErrorKind::InvalidInput, op, "0 bytes").detail("zero-length DMA buffer")
            );
        }
        let size = page.size();
        let Some(len) = round_up(len, size) else {
            return Err(
                Error::new(ErrorKind::InvalidInput, op, format!("{len:#x} bytes")).detail(format!(
                    "rounded up to {} huge pages, the length does not fit the address space",
                    page.name()
                )),
            );
        };
        let what = || format!("{} MiB of {} huge pages", len >> 20, page.name());
        let flags = nix::sys::memfd::MFdFlags::MFD_CLOEXEC
            | nix::sys::memfd::MFdFlags::MFD_HUGETLB
            | page.memfd_flag();
        let fd = nix::sys::memfd::memfd_create(c"iommufd-huge", flags).map_err(|e| {
            let err = Error::sys("memfd_create(MFD_HUGETLB)", what(), e);
            if e == Errno::EINVAL {
                err.kind_(ErrorKind::Unsupported).detail(format!(
                    "this kernel has no hugetlbfs (CONFIG_HUGETLBFS), or no {} huge pages (1 GiB pages need the CPU's pdpe1gb)",
                    page.name()
                ))
            } else {
                err
            }
        })?;
        let file = std::fs::File::from(fd);
        let too_few = |e: Errno| {
            let need = len / size;
            let (pool, _) = page.pool();
            let total = std::fs::read_to_string(pool)
                .unwrap_or_default()
                .trim()
                .to_string();
            Error::sys("mmap(hugetlbfs)", what(), e)
                .kind_(ErrorKind::OutOfMemory)
                .detail(format!(
                    "{need} free {} huge pages are needed; the pool has {total}, {} of them free",
                    page.name(),
                    page.free()
                ))
                .hint(format!(
                    "reserve more: echo {} > {pool} (or {} on the kernel command line)",
                    total.parse::<usize>().unwrap_or(0).saturating_add(need),
                    match page {
                        HugePage::Mib2 => "hugepages=",
                        HugePage::Gib1 => "hugepagesz=1G hugepages=",
                    }
                ))
        };
        // `round_up` kept `len` at most `isize::MAX`: it fits an `i64`.
        nix::unistd::ftruncate(&file, len as i64).map_err(|e| {
            if e == Errno::EINVAL || e == Errno::ENOMEM {
                too_few(e)
            } else {
                Error::sys("ftruncate(hugetlbfs)", what(), e)
            }
        })?;
        // SAFETY: the memfd is this buffer's alone (never handed out, so no
        // one else can map, write or truncate it), and the mapping lives
        // exactly as long as `file`.
        let map = unsafe { MmapOptions::new().len(len).populate().map_mut(&file) }
            .map_err(|e| too_few(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        Ok(HugeBuffer { map, file, page })
    }

    /// The size of its pages.
    ///
    /// Example: [`with_pages`](Self::with_pages).
    pub fn page(&self) -> HugePage {
        self.page
    }

    /// Length in bytes (a multiple of the page size).
    ///
    /// Example: [the `dma` module docs](crate::dma).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never true.
    ///
    /// Example: [the `dma` module docs](crate::dma).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The bytes, for the CPU while no device can reach them.
    ///
    /// Example: [the `dma` module docs](crate::dma).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.map
    }

    pub(crate) fn file(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.file)
    }
}

impl fmt::Debug for HugeBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HugeBuffer")
            .field("len", &self.map.len())
            .field("page", &self.page)
            .finish()
    }
}

// SAFETY: the buffer owns its shared mapping of a private memfd until
// dropped; moving it does not move the pages, and no one else can truncate
// or remap the file.
unsafe impl DmaMemory for HugeBuffer {
    #[inline]
    fn dma_region(&mut self) -> (NonNull<u8>, usize) {
        self.map.dma_region()
    }
}

/// The memory of a mapping made with the unsafe
/// [`Ioas::map_user_va`](crate::Ioas::map_user_va): the caller answers for it.
#[derive(Debug)]
pub struct RawMemory {
    pub(crate) _private: (),
}

pub(crate) fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as usize)
}

const WORD: usize = std::mem::size_of::<u64>();

/// Copies `out.len()` bytes from DMA memory at `src` into `out`: volatile
/// byte loads up to the first 8-byte boundary, then volatile `u64` loads, then
/// the tail. Each load is a real load of memory the device may be writing.
///
/// # Safety
/// `[src, src + out.len())` must be readable memory that no CPU thread writes
/// during the call.
pub(crate) unsafe fn copy_from_dma(src: *const u8, out: &mut [u8]) {
    let n = out.len();
    let head = src.align_offset(WORD).min(n);
    let words = (n - head) / WORD;
    for (i, b) in out[..head].iter_mut().enumerate() {
        // SAFETY: `i < n`: in bounds by the caller's contract.
        *b = unsafe { src.add(i).read_volatile() };
    }
    for w in 0..words {
        let at = head + w * WORD;
        // SAFETY: `src + at` is 8-byte aligned (past the head) and
        // `at + 8 <= n`, so the word is in bounds.
        let v = unsafe { (src.add(at) as *const u64).read_volatile() };
        out[at..at + WORD].copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in out.iter_mut().enumerate().skip(head + words * WORD) {
        // SAFETY: `i < n`.
        *b = unsafe { src.add(i).read_volatile() };
    }
}

/// Copies `data` into DMA memory at `dst` with volatile stores, as
/// [`copy_from_dma`] reads.
///
/// # Safety
/// `[dst, dst + data.len())` must be writable memory that no other CPU thread
/// reads or writes during the call.
pub(crate) unsafe fn copy_to_dma(data: &[u8], dst: *mut u8) {
    let n = data.len();
    let head = dst.align_offset(WORD).min(n);
    let words = (n - head) / WORD;
    for (i, b) in data[..head].iter().enumerate() {
        // SAFETY: `i < n`: in bounds by the caller's contract.
        unsafe { dst.add(i).write_volatile(*b) };
    }
    for w in 0..words {
        let at = head + w * WORD;
        let v = u64::from_ne_bytes(data[at..at + WORD].try_into().expect("one word"));
        // SAFETY: `dst + at` is 8-byte aligned and `at + 8 <= n`.
        unsafe { (dst.add(at) as *mut u64).write_volatile(v) };
    }
    for (i, b) in data.iter().enumerate().skip(head + words * WORD) {
        // SAFETY: `i < n`.
        unsafe { dst.add(i).write_volatile(*b) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lengths a caller controls never overflow the rounding: too large is
    /// an error, never a panic or a smaller buffer.
    #[test]
    fn buffer_lengths_near_the_top_are_refused() {
        for len in [
            usize::MAX,
            usize::MAX - 4095,
            isize::MAX as usize,
            isize::MAX as usize + 1,
        ] {
            let e = DmaBuffer::new(len).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{len:#x}: {e}");
            let e = HugeBuffer::new(len).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{len:#x}: {e}");
            assert!(e.to_string().contains("does not fit"), "{e}");
        }
        assert_eq!(round_up(1, 4096), Some(4096));
        assert_eq!(round_up(4096, 4096), Some(4096));
        assert_eq!(round_up(isize::MAX as usize - 4094, 4096), None);
        // Large but representable: the kernel says no (ENOMEM), not a panic.
        assert!(DmaBuffer::new(1 << 62).is_err());
    }

    /// Every offset and length around the word boundaries copies exactly.
    #[test]
    fn word_copies_match_byte_copies() {
        let mut mem = [0u8; 64];
        for (i, b) in mem.iter_mut().enumerate() {
            *b = i as u8 ^ 0x5a;
        }
        for off in 0..17 {
            for len in 0..(64 - off) {
                let mut out = vec![0u8; len];
                // SAFETY: in bounds of `mem`, which no one else touches.
                unsafe { copy_from_dma(mem.as_ptr().add(off), &mut out) };
                assert_eq!(out, mem[off..off + len], "read at {off}+{len}");
                let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let mut dst = [0xffu8; 64];
                // SAFETY: in bounds of `dst`.
                unsafe { copy_to_dma(&data, dst.as_mut_ptr().add(off)) };
                assert_eq!(dst[off..off + len], data[..], "write at {off}+{len}");
                assert!(dst[..off].iter().all(|&b| b == 0xff), "write before {off}");
                assert!(
                    dst[off + len..].iter().all(|&b| b == 0xff),
                    "write after {off}+{len}"
                );
            }
        }
    }
}
