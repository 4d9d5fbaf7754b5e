//! Memory decoding and BAR mappings: the config writes after which an MMIO
//! access would fault.
//!
//! vfio-pci lets the CPU reach a BAR mapping only while the device decodes
//! memory: the memory-space bit of the command register, as last written
//! through the device fd, is set, and the device is not in D3hot. Otherwise
//! it revokes the mappings, and a load or store through one raises `SIGBUS`
//! (a `pread`/`pwrite` of the BAR fails with `EIO` instead). Both are set by
//! config writes, and every config write of a [`Device`] goes through this
//! crate, so the crate keeps the two consistent:
//!
//! - a write that would turn decoding off (clear `PCI_COMMAND_MEMORY`, or
//!   write D3hot into the power management capability's control register)
//!   is refused while any BAR is mapped;
//! - [`Device::map_bar`] is refused while a write of ours left decoding off.
//!
//! Decoding is on when a device is bound: vfio-pci enables the device at
//! open (`pci_enable_device` sets the memory-space bit of a device with
//! memory BARs) and builds its virtual config space from that, and it
//! restores the saved state after a reset. The guest test
//! `memory_decoding_off_never_raises_sigbus` checks it on every kernel.

use super::{Bound, Device};
use crate::error::{Error, ErrorKind, Result};
use crate::region::pci;
use std::sync::{Mutex, OnceLock};

/// The command register; its low byte holds the memory-space bit.
const COMMAND: u64 = 0x04;
const COMMAND_MEMORY: u8 = 0x02;
/// The status register's low byte: bit 4 says there is a capability list.
const STATUS: u64 = 0x06;
const STATUS_CAP_LIST: u8 = 0x10;
const CAP_PTR: u64 = 0x34;
/// The standard header ends here; capabilities follow.
const HEADER_END: u64 = 0x40;
const CAP_ID_PM: u8 = 0x01;
/// The PM control/status register, from the capability's start; its bits
/// 1:0 are the power state (3: D3hot).
const PMCSR: u64 = 4;
const D3HOT: u8 = 3;

/// What config writes through one device did to its memory decoding.
#[derive(Default)]
pub(crate) struct Decoding {
    /// Held across a write that changes decoding, so the state recorded is
    /// the one the kernel ends with when two threads write at once.
    state: Mutex<State>,
    /// The PM capability's offset, found once: the capability list of a
    /// bound device does not change.
    pm: OnceLock<Option<u64>>,
}

impl Decoding {
    /// Runs `export` (a BAR export's ioctl) with the decoding state locked,
    /// so no decoding-off write passes its check meanwhile, and counts the
    /// export when it succeeds; the export's drop calls [`unexported`](Self::unexported).
    pub(crate) fn exporting<T>(&self, export: impl FnOnce() -> Result<T>) -> Result<T> {
        let mut st = crate::lock(&self.state);
        let got = export()?;
        st.exports += 1;
        Ok(got)
    }

    /// An export made by [`exporting`](Self::exporting) is gone.
    pub(crate) fn unexported(&self) {
        let mut st = crate::lock(&self.state);
        st.exports = st.exports.saturating_sub(1);
    }
}

#[derive(Default)]
struct State {
    memory_off: bool,
    d3hot: bool,
    /// BAR ranges exported as dma-bufs and alive ([`crate::p2p`]): vfio-pci
    /// revokes them when decoding goes off, and a peer's mapping of one
    /// would reach nothing behind a value that says it does.
    exports: usize,
}

impl Decoding {
    /// Why decoding is off, when a config write of ours turned it off.
    /// `&mut`: the caller holds the device exclusively, so no lock is taken.
    #[inline]
    pub(crate) fn off(&mut self) -> Option<&'static str> {
        let st = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if st.memory_off {
            Some("a config write cleared PCI_COMMAND_MEMORY")
        } else if st.d3hot {
            Some("a config write put the device into D3hot")
        } else {
            None
        }
    }
}

/// Whether a config write of `len` bytes at `offset` may change memory
/// decoding: it covers the command register's low byte, or reaches past the
/// standard header, where the PM capability lives. Two compares, inlined
/// into every config write.
#[inline(always)]
pub(crate) fn may_touch(offset: u64, len: usize) -> bool {
    let end = offset.saturating_add(len as u64);
    (offset <= COMMAND && end > COMMAND) || end > HEADER_END
}

/// The byte `data` writes at config offset `reg`, if the write covers it.
fn byte_at(offset: u64, data: &[u8], reg: u64) -> Option<u8> {
    let i = usize::try_from(reg.checked_sub(offset)?).ok()?;
    data.get(i).copied()
}

impl<S: Bound> Device<S> {
    /// A config write that [`may_touch`] decoding (already bounds-checked,
    /// `at` the config region's offset in the fd).
    #[cold]
    #[inline(never)]
    pub(crate) fn guarded_config_write(&self, at: u64, offset: u64, data: &[u8]) -> Result<()> {
        let memory = byte_at(offset, data, COMMAND).map(|b| b & COMMAND_MEMORY != 0);
        let pm = match offset.saturating_add(data.len() as u64) > HEADER_END {
            true => self.pm_cap()?,
            false => None,
        };
        let d3hot = pm
            .and_then(|p| byte_at(offset, data, p + PMCSR))
            .map(|b| b & 3 == D3HOT);
        if memory.is_none() && d3hot.is_none() {
            return self.pwrite_at(pci::CONFIG, at, offset, data);
        }
        let what = if memory == Some(false) {
            Some("clears the memory-space bit (PCI_COMMAND_MEMORY) of the command register")
        } else if d3hot == Some(true) {
            Some("puts the device into D3hot (power management control/status register)")
        } else {
            None
        };
        // `bars` changes only through `&mut self`: no map can race this check.
        if let Some(what) = what.filter(|_| self.inner.bars.iter().any(Option::is_some)) {
            return Err(self.decoding_busy(offset, what));
        }
        let mut st = crate::lock(&self.inner.decoding.state);
        if let Some(what) = what.filter(|_| st.exports > 0) {
            return Err(self.decoding_exported(offset, what, st.exports));
        }
        self.pwrite_at(pci::CONFIG, at, offset, data)?;
        if let Some(on) = memory {
            st.memory_off = !on;
        }
        if let Some(d3) = d3hot {
            st.d3hot = d3;
        }
        Ok(())
    }

    /// The PM capability's offset, from the cache or the capability list.
    fn pm_cap(&self) -> Result<Option<u64>> {
        if let Some(p) = self.inner.decoding.pm.get() {
            return Ok(*p);
        }
        let found = self.find_cap(CAP_ID_PM)?;
        Ok(*self.inner.decoding.pm.get_or_init(|| found))
    }

    /// Walks the capability list for `id` (at most 48 hops: a list that
    /// loops ends there).
    fn find_cap(&self, id: u8) -> Result<Option<u64>> {
        let mut b = [0u8; 2];
        self.config_read(STATUS, &mut b[..1])?;
        if b[0] & STATUS_CAP_LIST == 0 {
            return Ok(None);
        }
        self.config_read(CAP_PTR, &mut b[..1])?;
        let mut at = u64::from(b[0] & !3);
        for _ in 0..48 {
            if at < HEADER_END {
                return Ok(None);
            }
            self.config_read(at, &mut b)?;
            if b[0] == id {
                return Ok(Some(at));
            }
            at = u64::from(b[1] & !3);
        }
        Ok(None)
    }

    #[cold]
    fn decoding_busy(&self, offset: u64, what: &str) -> Error {
        let bars: Vec<String> = (self.inner.bars.iter().enumerate())
            .filter(|(_, b)| b.is_some())
            .map(|(i, _)| format!("BAR{i}"))
            .collect();
        Error::new(
            ErrorKind::Busy,
            "config_write",
            format!("{} config offset {offset:#x}", self.name()),
        )
        .detail(format!(
            "the write {what} while {} {} mapped: vfio-pci revokes BAR mappings while memory decoding is off, and the next MMIO access would kill the process with SIGBUS; nothing was written",
            bars.join(", "),
            if bars.len() == 1 { "is" } else { "are" }
        ))
        .hint("unmap the BARs first (Device::unmap_bar, once no Mmio view is alive), or keep memory decoding on")
    }
}

impl<S: Bound> Device<S> {
    #[cold]
    fn decoding_exported(&self, offset: u64, what: &str, n: usize) -> Error {
        Error::new(
            ErrorKind::Busy,
            "config_write",
            format!("{} config offset {offset:#x}", self.name()),
        )
        .detail(format!(
            "the write {what} while {n} BAR range(s) of the device are exported as dma-bufs: vfio-pci would revoke them, and the IOMMU entries of a peer's mapping with them, while the Mapping says the peer reaches the BAR; nothing was written"
        ))
        .hint("unmap and drop the exports first (Mapping::unmap of the peer mapping), or keep memory decoding on")
    }
}

/// The error of a [`Device::map_bar`] while a config write left decoding off.
#[cold]
pub(crate) fn decoding_off(name: &str, index: u32, why: &str) -> Error {
    Error::new(ErrorKind::InvalidInput, "map BAR", format!("{name} BAR{index}"))
        .detail(format!(
            "memory decoding is off ({why}): vfio-pci would revoke the mapping, and an MMIO access would kill the process with SIGBUS"
        ))
        .hint("turn decoding on first: set PCI_COMMAND_MEMORY (bit 1 of the command register, config offset 0x4) with config_write, and bring the device back to D0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_writes_may_touch_decoding() {
        assert!(may_touch(4, 1) && may_touch(4, 2) && may_touch(0, 8) && may_touch(2, 4));
        assert!(
            !may_touch(5, 1),
            "the command register's high byte has no decoding bit"
        );
        assert!(!may_touch(0, 4) && !may_touch(0x10, 4) && !may_touch(0x3c, 4));
        assert!(may_touch(0x3e, 4) && may_touch(0x44, 2) && may_touch(0xffc, 4));
        assert!(may_touch(u64::MAX, 1), "no overflow at the top");
        assert_eq!(byte_at(2, &[1, 2, 3, 4], 4), Some(3));
        assert_eq!(byte_at(5, &[1, 2], 4), None);
        assert_eq!(byte_at(0, &[1, 2], 4), None);
    }
}
