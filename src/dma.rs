//! Memory that can be mapped for DMA with the safe [`Ioas::map`](crate::Ioas::map).

use memmap2::{MmapMut, MmapOptions};
use std::fmt;
use std::ptr::NonNull;

/// Memory whose address range stays valid and in place for as long as the
/// value lives, so a [`Mapping`](crate::Mapping) that owns the value can let a
/// device reach it.
///
/// # Safety
/// `dma_region` must return a non-empty range of this process's mapped memory
/// that stays mapped at the same address, and is not handed to other Rust code
/// as a reference, until `self` is dropped, even if `self` is moved. Owned
/// mmaps satisfy this (moving the `MmapMut` does not move the pages); a `Vec`
/// does not (it may reallocate).
pub unsafe trait DmaMemory {
    /// The start and length of the memory.
    fn dma_region(&mut self) -> (NonNull<u8>, usize);
}

// SAFETY: an `MmapMut` owns its mapping until dropped; moving it does not move the pages.
unsafe impl DmaMemory for MmapMut {
    fn dma_region(&mut self) -> (NonNull<u8>, usize) {
        (
            NonNull::new(self.as_mut_ptr()).expect("mmap is never at address 0"),
            self.len(),
        )
    }
}

// SAFETY: a `&mut T` borrow keeps `T` alive and unmoved, and exclusive, for as long as the borrow.
unsafe impl<T: DmaMemory + ?Sized> DmaMemory for &mut T {
    fn dma_region(&mut self) -> (NonNull<u8>, usize) {
        (**self).dma_region()
    }
}

/// A page-aligned, zeroed, anonymous buffer for DMA.
pub struct DmaBuffer {
    map: MmapMut,
}

impl DmaBuffer {
    /// Allocates `len` bytes, rounded up to whole pages.
    ///
    /// # Errors
    /// The `mmap` errno (`ENOMEM`), or `EINVAL` for a zero length.
    pub fn new(len: usize) -> std::io::Result<Self> {
        if len == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "zero-length DMA buffer",
            ));
        }
        let page = page_size();
        let len = len.div_ceil(page) * page;
        Ok(DmaBuffer {
            map: MmapOptions::new().len(len).map_anon()?,
        })
    }

    /// Length in bytes (a multiple of the page size).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never true: a buffer holds at least one page.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The bytes, for the CPU while no device can reach them.
    pub fn as_slice(&self) -> &[u8] {
        &self.map
    }

    /// The bytes, mutable, for the CPU while no device can reach them.
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
