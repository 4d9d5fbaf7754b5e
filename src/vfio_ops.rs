//! `vfio-ioctls`' [`VfioOps`] on an [`Ioas`] (feature `vfio-ioctls`, built
//! against `vfio-ioctls` 0.10 without its default features), so that a VMM
//! whose DMA mapping goes through `Arc<dyn VfioOps>` keeps that code while
//! its devices move to [`Device`](crate::Device) (see `docs/PORTING.md`).
//!
//! ```no_run
//! use iommufd::vfio_ops::IoasOps;
//! use std::sync::Arc;
//! use vfio_ioctls::VfioOps;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ioas = iommufd::Iommufd::open()?.alloc_ioas()?;
//! let ops: Arc<dyn VfioOps> = Arc::new(IoasOps::new(ioas.clone()));
//! let ram = memmap2::MmapMut::map_anon(2 << 20)?;
//! // SAFETY: `ram` stays mapped, and no Rust reference to it is made,
//! // until the matching `vfio_dma_unmap` below.
//! unsafe { ops.vfio_dma_map(0x10_0000, ram.len(), ram.as_ptr() as *mut u8) }?;
//! ops.vfio_dma_unmap(0x10_0000, ram.len())?;
//! # drop(ram); Ok(()) }
//! ```
//!
//! Each `vfio_dma_map` is the unsafe [`Ioas::map_user_va`] at a fixed IOVA,
//! readable and writable, under `VfioOps::vfio_dma_map`'s own contract (the
//! same as `map_user_va`'s); the adapter keeps the [`Mapping`]s, and
//! `vfio_dma_unmap` unmaps exactly the ones its range covers (a range that
//! cuts a mapping, or covers none, is refused, as the kernel refuses it).
//!
//! What it does not guarantee: the crate's memory model. The addresses are
//! raw, so keeping the memory alive and unreferenced until the unmap is the
//! caller's part, as it is with `vfio-ioctls`. Dropping the adapter unmaps
//! what it still holds. `vfio_ioctls::VfioDevice::new` does not take it (it
//! accepts only its own container and iommufd types): devices are
//! [`Device`](crate::Device)s attached to the same IOAS.

use crate::{Access, Ioas, Iova, Mapping, RawMemory};
use nix::errno::Errno;
use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Mutex;
use vfio_ioctls::{VfioError, VfioOps};
use vmm_sys_util::errno::Error as SysError;

/// [`VfioOps`] on an [`Ioas`]: see [the module docs](self).
pub struct IoasOps {
    ioas: Ioas,
    /// The mappings made through `vfio_dma_map`, by IOVA.
    maps: Mutex<BTreeMap<u64, Mapping<RawMemory>>>,
}

impl IoasOps {
    /// An adapter mapping into `ioas`.
    ///
    /// Example: [the module docs](self).
    pub fn new(ioas: Ioas) -> IoasOps {
        IoasOps {
            ioas,
            maps: Mutex::new(BTreeMap::new()),
        }
    }

    /// The IOAS it maps into (attach devices to it).
    pub fn ioas(&self) -> &Ioas {
        &self.ioas
    }

    /// How many mappings it holds.
    pub fn len(&self) -> usize {
        crate::lock(&self.maps).len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for IoasOps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoasOps")
            .field("ioas", &self.ioas.id())
            .field("mappings", &self.len())
            .finish()
    }
}

/// The errno of a crate error, as `vfio-ioctls` carries it.
fn sys(e: &crate::Error, otherwise: Errno) -> SysError {
    SysError::new(e.raw_errno().unwrap_or(otherwise) as i32)
}

impl VfioOps for IoasOps {
    /// Maps `[user_addr, user_addr + size)` at `iova`, readable and
    /// writable ([`Ioas::map_user_va`]).
    ///
    /// # Safety
    /// `VfioOps::vfio_dma_map`'s contract, which is `Ioas::map_user_va`'s:
    /// until the matching `vfio_dma_unmap` (or the adapter's drop), the
    /// memory stays mapped in this process and is reached by Rust only
    /// through raw pointers and volatile or atomic accesses.
    unsafe fn vfio_dma_map(
        &self,
        iova: u64,
        size: usize,
        user_addr: *mut u8,
    ) -> vfio_ioctls::Result<()> {
        let Some(va) = NonNull::new(user_addr) else {
            return Err(VfioError::IommuDmaMap(SysError::new(Errno::EINVAL as i32)));
        };
        let mut maps = crate::lock(&self.maps);
        // SAFETY: forwarded: the caller upholds this function's contract,
        // which is `map_user_va`'s; the mapping is kept in `maps` until
        // `vfio_dma_unmap` or the adapter's drop unmaps it.
        let m = unsafe {
            self.ioas
                .map_user_va(va, size, Iova::Fixed(iova), Access::READ_WRITE)
        }
        .map_err(|e| VfioError::IommuDmaMap(sys(&e, Errno::EINVAL)))?;
        maps.insert(iova, m);
        Ok(())
    }

    /// Unmaps the mappings `[iova, iova + size)` covers, all of each: none
    /// when the range cuts one (`EINVAL`) or covers none (`ENOENT`).
    fn vfio_dma_unmap(&self, iova: u64, size: usize) -> vfio_ioctls::Result<()> {
        let refuse = |e: Errno| Err(VfioError::IommuDmaUnmap(SysError::new(e as i32)));
        let Some(end) = iova.checked_add(size as u64).filter(|_| size > 0) else {
            return refuse(Errno::EINVAL);
        };
        let mut maps = crate::lock(&self.maps);
        // One starting below the range that reaches into it is cut.
        if maps
            .range(..iova)
            .next_back()
            .is_some_and(|(&s, m)| s.saturating_add(m.len()) > iova)
        {
            return refuse(Errno::EINVAL);
        }
        let inside: Vec<u64> = maps.range(iova..end).map(|(&s, _)| s).collect();
        if inside.is_empty() {
            return refuse(Errno::ENOENT);
        }
        if inside
            .iter()
            .any(|s| maps[s].iova().saturating_add(maps[s].len()) > end)
        {
            return refuse(Errno::EINVAL);
        }
        for s in inside {
            let Some(m) = maps.remove(&s) else { continue };
            if let Err(t) = m.unmap() {
                let (m, e) = t.into_parts();
                maps.insert(s, m); // still mapped: kept, as the kernel keeps it
                return Err(VfioError::IommuDmaUnmap(sys(&e, Errno::EIO)));
            }
        }
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
