//! A bound device's regions: their info (cached), BAR mappings and MMIO
//! views, config space and region reads and writes.

use super::{Bound, Device};
use crate::error::{Error, ErrorKind, Result};
use crate::region::{pci, Bar, Mmio, RegionInfo};
use crate::sys::{self, vfio};
use nix::errno::Errno;
use std::os::fd::BorrowedFd;
use std::sync::OnceLock;

impl<S: Bound> Device<S> {
    /// `VFIO_DEVICE_GET_REGION_INFO`, with the capability chain decoded.
    #[doc(alias = "VFIO_DEVICE_GET_REGION_INFO")]
    ///
    /// Example: [the `device` module docs](crate::device).
    pub fn region_info(&self, index: u32) -> Result<RegionInfo> {
        self.cached_region(index).map(std::borrow::Cow::into_owned)
    }

    /// The region info of `index`, from the cache once it has been asked.
    fn cached_region(&self, index: u32) -> Result<std::borrow::Cow<'_, RegionInfo>> {
        use std::borrow::Cow;
        let Some(slot) = self.inner.regions.get(index as usize) else {
            return region_info(self.inner.fd(), &self.inner.name, index).map(Cow::Owned);
        };
        if let Some(info) = slot.get() {
            return Ok(Cow::Borrowed(info));
        }
        // A BAR mapped before its info was cached keeps the info itself
        // (see `map_bar`).
        if let Some(bar) = self.inner.bars.get(index as usize).and_then(Option::as_ref) {
            return Ok(Cow::Borrowed(&bar.info));
        }
        let info = region_info(self.inner.fd(), &self.inner.name, index)?;
        Ok(Cow::Borrowed(slot.get_or_init(|| info)))
    }

    /// Where region `index` lies in the device fd, and its size: a cache
    /// lookup once asked, so a region read or write is one `pread`/`pwrite`.
    #[inline]
    fn region_span(&self, index: u32) -> Result<(u64, u64)> {
        match self
            .inner
            .regions
            .get(index as usize)
            .and_then(OnceLock::get)
        {
            Some(info) => Ok((info.offset, info.size)),
            None => self.region_span_slow(index),
        }
    }

    #[cold]
    #[inline(never)]
    fn region_span_slow(&self, index: u32) -> Result<(u64, u64)> {
        let info = self.cached_region(index)?;
        Ok((info.offset, info.size))
    }

    /// mmaps BAR `index` (every mmap-able area of it) and keeps the mapping in
    /// the device. The mapping moves with the device through attach, detach
    /// and replace, and is unmapped on unbind or close, before the fd closes.
    /// Mapping an already-mapped BAR does nothing.
    ///
    /// # Errors
    /// An index that is not a BAR, or a BAR the kernel does not let us mmap.
    ///
    /// Example: [the `device` module docs](crate::device).
    pub fn map_bar(&mut self, index: u32) -> Result<()> {
        if index > 5 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "map BAR",
                format!("{} region {index}", self.inner.name),
            )
            .detail("BARs are regions 0 to 5"));
        }
        if self.inner.bars[index as usize].is_some() {
            return Ok(());
        }
        if let Some(why) = self.inner.decoding.off() {
            return Err(super::decoding::decoding_off(&self.inner.name, index, why));
        }
        // The cached info, or the kernel's answer, which the `Bar` keeps
        // without filling the cache: the cache's first fill (a `OnceLock`)
        // cost a BAR's first map about 120 instructions more than the ioctl
        // and the mmap (#29), and region lookups find the info in the `Bar`.
        let info = match self
            .inner
            .regions
            .get(index as usize)
            .and_then(OnceLock::get)
        {
            Some(info) => info.clone(),
            None => region_info(self.inner.fd(), &self.inner.name, index)?,
        };
        if info.size == 0 || !info.mmappable() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "map BAR",
                format!("{} BAR{index}", self.inner.name),
            )
            .detail(if info.size == 0 {
                "the BAR is not implemented"
            } else {
                "the kernel does not allow mmap of this BAR"
            }));
        }
        let bar = Bar::map(self.inner.fd(), info, &self.inner.name)?;
        // Empty (checked above, and `&mut self` since): the new `Bar` goes
        // in, and no old one is dropped.
        self.inner.bars[index as usize].get_or_insert(bar);
        Ok(())
    }

    /// Unmaps BAR `index`, mapped with [`map_bar`](Self::map_bar); false when
    /// it was not mapped. No [`Mmio`] view can be alive (they borrow the
    /// device). Needed before a config write that turns memory decoding off
    /// (see [`config_write`](Self::config_write)).
    pub fn unmap_bar(&mut self, index: u32) -> bool {
        let Some(bar) = self
            .inner
            .bars
            .get_mut(index as usize)
            .and_then(Option::take)
        else {
            return false;
        };
        // The mapping goes; its region info stays, in the cache, so that
        // mapping the BAR again asks the kernel nothing but the mmap.
        if let Some(slot) = self.inner.regions.get(index as usize) {
            let _ = slot.set(bar.info);
        }
        true
    }

    /// A view of BAR `index`, mapped earlier with [`map_bar`](Self::map_bar).
    /// The view borrows the device, so it cannot outlive the binding.
    pub fn mmio(&self, index: u32) -> Result<Mmio<'_>> {
        match self.inner.bars.get(index as usize).and_then(Option::as_ref) {
            Some(bar) => Ok(Mmio::new(self.inner.fd(), bar, &self.inner.name)),
            None => Err(Error::new(
                ErrorKind::InvalidInput,
                "MMIO",
                format!("{} BAR{index}", self.inner.name),
            )
            .detail("BAR not mapped: call map_bar first")),
        }
    }

    /// Reads PCI config space at `offset` (pread on the config region).
    #[inline]
    ///
    /// Example: [the `device` module docs](crate::device).
    pub fn config_read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.region_read(pci::CONFIG, offset, buf)
    }

    /// Writes PCI config space at `offset` (pwrite on the config region).
    ///
    /// A write that would turn memory decoding off while a BAR is mapped is
    /// refused ([`ErrorKind::Busy`]): clearing the memory-space bit of the
    /// command register, or putting the device into D3hot through its power
    /// management capability. vfio-pci revokes BAR mappings while decoding
    /// is off, so the next [`Mmio`] access would kill the process with
    /// `SIGBUS`. [`unmap_bar`](Self::unmap_bar) first; while decoding is off,
    /// [`map_bar`](Self::map_bar) refuses, and [`region_read`](Self::region_read)
    /// of a BAR fails with `EIO` instead of faulting. See the [crate
    /// docs](crate#mmio-and-memory-decoding).
    #[inline]
    pub fn config_write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.region_write(pci::CONFIG, offset, data)
    }

    /// Reads region `index` at `offset` with pread.
    #[inline]
    ///
    /// Example: [the `device` module docs](crate::device).
    pub fn region_read(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<()> {
        let (at, size) = self.region_span(index)?;
        self.check_region(index, size, offset, buf.len(), "pread")?;
        match nix::sys::uio::pread(self.inner.fd(), buf, (at + offset) as i64) {
            Ok(n) if n == buf.len() => Ok(()),
            r => Err(self.region_io_error("pread", index, offset, buf.len(), r)),
        }
    }

    /// Writes region `index` at `offset` with pwrite. Config space writes
    /// are checked as in [`config_write`](Self::config_write).
    #[inline]
    pub fn region_write(&self, index: u32, offset: u64, data: &[u8]) -> Result<()> {
        let (at, size) = self.region_span(index)?;
        self.check_region(index, size, offset, data.len(), "pwrite")?;
        if index == pci::CONFIG && super::decoding::may_touch(offset, data.len()) {
            return self.guarded_config_write(at, offset, data);
        }
        self.pwrite_at(index, at, offset, data)
    }

    /// The `pwrite` of a region write whose checks are done.
    #[inline]
    pub(crate) fn pwrite_at(&self, index: u32, at: u64, offset: u64, data: &[u8]) -> Result<()> {
        match nix::sys::uio::pwrite(self.inner.fd(), data, (at + offset) as i64) {
            Ok(n) if n == data.len() => Ok(()),
            r => Err(self.region_io_error("pwrite", index, offset, data.len(), r)),
        }
    }

    /// The error of a region `pread`/`pwrite` that failed (`Err`) or moved
    /// fewer than `want` bytes (`Ok(n)`).
    #[cold]
    #[inline(never)]
    fn region_io_error(
        &self,
        op: &'static str,
        index: u32,
        offset: u64,
        want: usize,
        r: nix::Result<usize>,
    ) -> Error {
        match r {
            Err(e) => Error::sys(
                op,
                format!("{} region {index} offset {offset:#x}", self.inner.name),
                e,
            ),
            Ok(n) => Error::new(ErrorKind::Kernel, op, self.inner.name.clone())
                .detail(format!("short {op}: {n} of {want} bytes")),
        }
    }

    #[inline]
    fn check_region(
        &self,
        index: u32,
        size: u64,
        offset: u64,
        n: usize,
        op: &'static str,
    ) -> Result<()> {
        if offset.checked_add(n as u64).is_some_and(|e| e <= size) {
            Ok(())
        } else {
            Err(self.region_range_error(index, size, offset, n, op))
        }
    }

    #[cold]
    #[inline(never)]
    fn region_range_error(
        &self,
        index: u32,
        size: u64,
        offset: u64,
        n: usize,
        op: &'static str,
    ) -> Error {
        Error::new(
            ErrorKind::InvalidInput,
            op,
            format!("{} region {index} offset {offset:#x}", self.inner.name),
        )
        .detail(format!("{n} bytes do not fit in the {size:#x}-byte region"))
    }
}

fn region_info(fd: BorrowedFd<'_>, name: &str, index: u32) -> Result<RegionInfo> {
    // 256 bytes on the stack: the header and a sparse-mmap capability of a
    // dozen areas, so a region with capabilities takes one ioctl too (the
    // kernel's cost does not grow with the buffer: measured on 7.3, the
    // first map_bar of an edu costs the same with 32 bytes as with 256).
    // The errors are made out of line.
    match sys::query_with_caps_in::<32, _>(
        |buf| sys::region_info(fd, index, buf),
        RegionInfo::decode,
    ) {
        Ok(Ok(info)) => Ok(info),
        Ok(Err(e)) => Err(malformed_region_info(name, index, e)),
        Err(e) => Err(region_info_refused(fd, name, index, e)),
    }
}

/// The kernel refused `VFIO_DEVICE_GET_REGION_INFO` with `e`.
#[cold]
#[inline(never)]
fn region_info_refused(fd: BorrowedFd<'_>, name: &str, index: u32, e: Errno) -> Error {
    let err = Error::sys(
        "VFIO_DEVICE_GET_REGION_INFO",
        format!("{name} region {index}"),
        e,
    );
    if e != Errno::EINVAL {
        return err;
    }
    // Diagnosed only now that the kernel said no: how many regions are there?
    let mut arg = vfio::vfio_device_info {
        argsz: sys::argsz::<vfio::vfio_device_info>(),
        ..Default::default()
    };
    match sys::ioctl(fd, sys::raw::vfio_device_get_info, &mut arg) {
        Ok(_) if index >= arg.num_regions => err.kind_(ErrorKind::InvalidInput).detail(format!(
            "the device has regions 0 to {}",
            arg.num_regions.saturating_sub(1)
        )),
        _ => err,
    }
}

/// The kernel's answer had a capability chain that does not parse.
#[cold]
#[inline(never)]
fn malformed_region_info(name: &str, index: u32, e: crate::region::CapError) -> Error {
    Error::new(
        ErrorKind::Kernel,
        "VFIO_DEVICE_GET_REGION_INFO",
        format!("{name} region {index}"),
    )
    .detail(format!("malformed capability chain: {e}"))
}
