//! Not an example to follow: the functions `tests/codegen.rs` compiles to
//! assembly to check what an MMIO access costs (the bounds and alignment
//! check, then one volatile load or store; no call, no division, no loop).

use iommufd::{Mmio, Result};

#[no_mangle]
#[inline(never)]
pub fn probe_read32(m: &Mmio<'_>, offset: u64) -> Result<u32> {
    m.read32(offset)
}

#[no_mangle]
#[inline(never)]
pub fn probe_write32(m: &Mmio<'_>, offset: u64, v: u32) -> Result<()> {
    m.write32(offset, v)
}

fn main() {
    // Keep both in the binary; nothing here runs them.
    let r: fn(&Mmio<'_>, u64) -> Result<u32> = probe_read32;
    let w: fn(&Mmio<'_>, u64, u32) -> Result<()> = probe_write32;
    std::hint::black_box((r, w));
}
