//! Guest RAM held in rust-vmm's `vm-memory` (0.18), mapped for DMA at its
//! guest-physical addresses (IOVA = GPA), in safe code.
//!
//! ```no_run
//! use iommufd::{Access, Iommufd};
//! use vm_memory::{GuestAddress, GuestMemoryMmap};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Two regions with a hole between them, as a VMM lays out guest RAM.
//! let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[
//!     (GuestAddress(0), 1 << 20),
//!     (GuestAddress(4 << 20), 1 << 20),
//! ])?;
//! let ioas = Iommufd::open()?.alloc_ioas()?;
//! let mut dma = ioas.map_guest_memory(&mem, Access::READ_WRITE)?;
//! // ... attach the device; it DMAs at guest-physical addresses ...
//!
//! // Memory hot-unplug: one call per region.
//! let _gone = mem.remove_region(GuestAddress(4 << 20), 1 << 20)?;
//! dma.remove(GuestAddress(4 << 20))?;
//! # Ok(())
//! # }
//! ```
//!
//! # Why this is sound, and what a VMM must not do
//!
//! A vm-memory region is a shared handle (`Arc<MmapRegion>`): the VMM's
//! `GuestMemoryMmap`, its vCPU and device threads and this crate all hold
//! one. The [`Mapping`] holds one for as long as the IOMMU maps the pages, so
//! the mmap outlives the mapping even when the VMM drops the region (memory
//! hot-unplug, `remove_region`) before unmapping; a leaked mapping leaks
//! the mmap with it, and a failed unmap keeps it forever.
//!
//! Every holder may write the pages at any time, the device included, so no
//! holder may ever have a `&` or `&mut` to them. vm-memory 0.18 reaches guest
//! memory only through volatile accessors (`VolatileSlice`, `Bytes`), whose
//! raw-pointer copies never assume that no one else writes; that is what
//! makes sharing it with a device sound, exactly as sharing it with the
//! guest's vCPUs is. For the same reason a guest RAM mapping has no CPU view
//! of its own (no [`Mapping::read_bytes`]/[`Mapping::write_bytes`], and
//! [`GuestRam`] is not [`DmaMemory`](crate::DmaMemory)): those assume that
//! the mapping is the only CPU path to its memory, and here it is not. Read
//! and write through vm-memory.
//!
//! A VMM's own `unsafe` code must not turn guest memory into references:
//! not with vm-memory's `unsafe` `aligned_as_ref`/`aligned_as_mut`, not
//! with `slice::from_raw_parts` over `as_ptr()`, not with a second mmap of
//! the same memfd read as `&[u8]`. And it must not unmap or remap the
//! region's address range behind vm-memory's back (`munmap`, `MAP_FIXED`
//! over it, `madvise(MADV_DONTNEED)` on a private mapping): the device would
//! keep the old pages.
//!
//! What is refused, with [`ErrorKind::InvalidInput`]: a region vm-memory does
//! not own (`MmapRegion::build_raw`: its lifetime is not vm-memory's to keep;
//! map it with the `unsafe` [`Ioas::map_user_va`]), and device write access
//! to a read-only region.
//!
//! Device writes bypass vm-memory's dirty bitmap (`B`): track them with the
//! device's own DMA logging ([`migration`](crate::migration)) or the IOMMU's.
//!
//! # File-backed regions
//!
//! A region that is a *shared* mapping of a file (a memfd, hugetlbfs) is
//! mapped by file offset with `IOMMU_IOAS_MAP_FILE` where the kernel has it
//! (Linux 6.13 and later, on the cdev path): the pages are pinned from the
//! file, which is faster for hugetlbfs-backed RAM and is what lets the pinned
//! memory move to another process ([`Iommufd::change_process`](crate::Iommufd::change_process)).
//! A private (`MAP_PRIVATE`) file mapping is mapped by address: the file's
//! pages are not what the CPU sees once it writes. Elsewhere, by address.

use super::{Access, Ioas, Iova, Mapping};
use crate::error::{range, Error, ErrorKind, Result};
use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::AsFd;
use std::ptr::NonNull;
use std::sync::Arc;
use vm_memory::bitmap::Bitmap;
use vm_memory::{
    GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap,
    MmapRegion,
};

/// The memory of a guest RAM mapping: a share of the vm-memory region's
/// mmap, which keeps it mapped while the IOMMU maps it. It gives no access
/// to the bytes; read and write through vm-memory.
///
/// Example: [the `ioas::guest_ram` module docs](crate::ioas::guest_ram).
pub struct GuestRam<B = ()> {
    mmap: Arc<MmapRegion<B>>,
    gpa: GuestAddress,
    len: usize,
    by_file: bool,
}

impl<B> GuestRam<B> {
    /// The guest-physical address of the region, which is also its IOVA.
    ///
    /// Example: [the `ioas::guest_ram` module docs](crate::ioas::guest_ram).
    pub fn gpa(&self) -> GuestAddress {
        self.gpa
    }

    /// Whether it was mapped by file offset (`IOMMU_IOAS_MAP_FILE`) rather
    /// than by address: only such mappings move with
    /// [`Iommufd::change_process`](crate::Iommufd::change_process).
    pub fn by_file(&self) -> bool {
        self.by_file
    }

    /// The region's mmap (vm-memory's handle, for its volatile accessors).
    ///
    /// Example: [the `ioas::guest_ram` module docs](crate::ioas::guest_ram).
    pub fn mmap(&self) -> &Arc<MmapRegion<B>> {
        &self.mmap
    }
}

impl<B> fmt::Debug for GuestRam<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestRam")
            .field("gpa", &format_args!("{:#x}", self.gpa.0))
            .field("len", &format_args!("{:#x}", self.len))
            .field("by_file", &self.by_file)
            .finish()
    }
}

impl Ioas {
    /// Maps a vm-memory guest RAM region for DMA at its guest-physical
    /// address (IOVA = GPA): by file offset for a shared file mapping where
    /// the kernel can (see the [module docs](crate::ioas::guest_ram#file-backed-regions)),
    /// by address otherwise. The mapping holds a share of the region's mmap;
    /// see the [module docs](crate::ioas::guest_ram) for why this is sound and what
    /// a VMM's own `unsafe` code must not do.
    ///
    /// # Errors
    /// As [`Ioas::map`] at a fixed IOVA (the GPA must lie in
    /// [`iova_ranges`](Self::iova_ranges): on VT-d not in the MSI window
    /// `[0xfee00000, 0xfeefffff]`), plus [`ErrorKind::InvalidInput`] for a
    /// region vm-memory does not own or write access to a read-only one.
    #[doc(alias = "IOMMU_IOAS_MAP_FILE")]
    pub fn map_guest_region<B: Bitmap>(
        &self,
        region: &GuestRegionMmap<B>,
        access: Access,
    ) -> Result<Mapping<GuestRam<B>>> {
        let mmap = region.get_mmap();
        let gpa = region.start_addr();
        let len = mmap.size();
        if !mmap.owned() || (access.write && mmap.prot() & nix::libc::PROT_WRITE == 0) {
            return Err(self.unmappable_region(&mmap, gpa));
        }
        let shared_file = mmap
            .file_offset()
            .filter(|_| mmap.flags() & nix::libc::MAP_SHARED != 0);
        if let (Some(file), true) = (shared_file, self.inner.space.maps_files()) {
            let at = Iova::Fixed(gpa.0);
            match self.map_fd(file.file().as_fd(), file.start(), len as u64, at, access) {
                Ok(iova) => {
                    let ram = GuestRam {
                        mmap,
                        gpa,
                        len,
                        by_file: true,
                    };
                    return Ok(self.file_mapping(iova, len as u64, ram));
                }
                // No MAP_FILE on this kernel: by address, below.
                Err(e) if e.kind() == ErrorKind::Unsupported => {}
                Err(e) => return Err(e),
            }
        }
        // By address the kernel pins the pages through the mapping, which a
        // PROT_NONE region refuses (EFAULT, as if the address were bad).
        if mmap.prot() & (nix::libc::PROT_READ | nix::libc::PROT_WRITE) == 0 {
            return Err(self.unmappable_region(&mmap, gpa));
        }
        let va = NonNull::new(mmap.as_ptr()).expect("an mmap is never at address 0");
        // SAFETY: `[va, va + len)` is the region's mmap, which vm-memory owns
        // (`owned()`, checked above) and unmaps only when the last
        // `Arc<MmapRegion>` is dropped. The returned mapping holds one in
        // `GuestRam` until the kernel unmapped the range (and forever if that
        // unmap fails, or if the mapping or an IOAS copy of it is leaked), so
        // the range stays mapped and in place while the device can reach it.
        // No Rust code holds a reference into it: vm-memory's safe API reaches
        // it only through volatile accessors, the mapping gives no CPU view,
        // and a VMM's `unsafe` code is bound by the module docs.
        match unsafe { self.map_region(va, len, Iova::Fixed(gpa.0), access) } {
            Ok(iova) => {
                let ram = GuestRam {
                    mmap,
                    gpa,
                    len,
                    by_file: false,
                };
                // The address is kept for IOAS copies (the legacy path maps
                // them by address); `GuestRam` is not `DmaMemory`, so it
                // gives no CPU view.
                Ok(Mapping::new(self.clone(), iova, len as u64, ram, va, len))
            }
            Err((e, false)) => Err(e),
            Err((e, true)) => {
                // The device may reach the pages: this share of the mmap is
                // leaked, so the region is never unmapped, whatever the
                // caller drops. The caller's own share is not lent out as
                // owned memory, so an error loses nothing it could free.
                std::mem::forget(mmap);
                Err(e)
            }
        }
    }

    /// Maps every region of `mem` at its guest-physical address, as
    /// [`map_guest_region`](Self::map_guest_region) does one; all or
    /// nothing. The result keeps each region's mapping, for memory hot-plug
    /// ([`GuestMappings::insert`]) and hot-unplug ([`GuestMappings::remove`]).
    ///
    /// # Errors
    /// The first region's error, naming its GPA range; the regions mapped
    /// before it are unmapped again.
    pub fn map_guest_memory<B: Bitmap>(
        &self,
        mem: &GuestMemoryMmap<B>,
        access: Access,
    ) -> Result<GuestMappings<B>> {
        let mut maps = GuestMappings {
            ioas: self.clone(),
            access,
            maps: BTreeMap::new(),
        };
        for region in mem.iter() {
            maps.insert(region)?;
        }
        Ok(maps)
    }

    #[cold]
    fn unmappable_region<B: Bitmap>(&self, mmap: &MmapRegion<B>, gpa: GuestAddress) -> Error {
        let obj = self.range_object(gpa.0, mmap.size() as u64);
        let e = Error::new(ErrorKind::InvalidInput, "IOMMU_IOAS_MAP", obj);
        if !mmap.owned() {
            e.detail("the guest RAM region is a mapping vm-memory does not own (MmapRegion::build_raw), so nothing keeps it mapped while the device can reach it")
                .hint("map it with the unsafe Ioas::map_user_va, whose contract says what must keep it mapped")
        } else if mmap.prot() & (nix::libc::PROT_READ | nix::libc::PROT_WRITE) == 0 {
            e.detail("the guest RAM region is mapped PROT_NONE and not by a shared file, so its pages can be pinned only through an accessible mapping, and this one is not")
                .hint("map the region readable (and writable for device writes), or back it with a shared memfd mapping, which is mapped by file offset (Linux 6.13 and later)")
        } else {
            e.detail(
                "the device would write a read-only guest RAM region (mapped without PROT_WRITE)",
            )
            .hint("map it with Access::READ, or map the region writable")
        }
    }
}

/// The DMA mappings of a guest's RAM, one per vm-memory region, by GPA
/// ([`Ioas::map_guest_memory`]). Dropping it unmaps them all.
///
/// Example: [the `ioas::guest_ram` module docs](crate::ioas::guest_ram).
pub struct GuestMappings<B = ()> {
    ioas: Ioas,
    access: Access,
    maps: BTreeMap<u64, Mapping<GuestRam<B>>>,
}

impl<B: Bitmap> GuestMappings<B> {
    /// Maps a region added to guest RAM (memory hot-plug) at its GPA.
    ///
    /// # Errors
    /// As [`Ioas::map_guest_region`]; nothing changes.
    ///
    /// Example: [the `ioas::guest_ram` module docs](crate::ioas::guest_ram).
    pub fn insert(&mut self, region: &GuestRegionMmap<B>) -> Result<()> {
        let m = self.ioas.map_guest_region(region, self.access)?;
        self.maps.insert(m.iova(), m);
        Ok(())
    }
}

impl<B> GuestMappings<B> {
    /// The mappings themselves, by GPA (for a [`Handover`](crate::handover::Handover)).
    pub(crate) fn into_mappings(self) -> Vec<Mapping<GuestRam<B>>> {
        self.maps.into_values().collect()
    }

    /// Unmaps the region that starts at `gpa` (memory hot-unplug) and hands
    /// back its share of the mmap, once the device can no longer reach it.
    ///
    /// # Errors
    /// [`ErrorKind::NotMapped`] when no region starts at `gpa`; the kernel's
    /// error when it refuses the unmap, with the mapping kept here.
    ///
    /// Example: [the `ioas::guest_ram` module docs](crate::ioas::guest_ram).
    pub fn remove(&mut self, gpa: GuestAddress) -> Result<GuestRam<B>> {
        let Some(m) = self.maps.remove(&gpa.0) else {
            return Err(self.no_region(gpa));
        };
        m.unmap().map_err(|e| {
            let (m, e) = e.into_parts();
            self.maps.insert(gpa.0, m);
            e
        })
    }

    /// The mapping of the region that starts at `gpa`.
    ///
    /// Example: [the `ioas::guest_ram` module docs](crate::ioas::guest_ram).
    pub fn get(&self, gpa: GuestAddress) -> Option<&Mapping<GuestRam<B>>> {
        self.maps.get(&gpa.0)
    }

    /// The mappings, by GPA.
    ///
    /// Example: [the `ioas::guest_ram` module docs](crate::ioas::guest_ram).
    pub fn iter(&self) -> impl Iterator<Item = &Mapping<GuestRam<B>>> {
        self.maps.values()
    }

    /// How many regions are mapped.
    ///
    /// Example: [the `ioas::guest_ram` module docs](crate::ioas::guest_ram).
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    /// Whether no region is mapped.
    ///
    /// Example: [the `ioas::guest_ram` module docs](crate::ioas::guest_ram).
    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    /// The IOAS the regions are mapped in.
    ///
    /// Example: [the `ioas::guest_ram` module docs](crate::ioas::guest_ram).
    pub fn ioas(&self) -> &Ioas {
        &self.ioas
    }

    #[cold]
    fn no_region(&self, gpa: GuestAddress) -> Error {
        let list: Vec<String> = self
            .maps
            .values()
            .map(|m| range(m.iova(), m.len()))
            .collect();
        Error::new(
            ErrorKind::NotMapped,
            "IOMMU_IOAS_UNMAP",
            format!("IOAS {} GPA {:#x}", self.ioas.id(), gpa.0),
        )
        .detail(format!(
            "no guest RAM region mapped here starts at that GPA; mapped: {}",
            if list.is_empty() {
                "none".to_string()
            } else {
                list.join(", ")
            }
        ))
    }
}

impl<B> fmt::Debug for GuestMappings<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestMappings")
            .field("ioas", &self.ioas.id())
            .field("regions", &self.maps.values().collect::<Vec<_>>())
            .finish()
    }
}
