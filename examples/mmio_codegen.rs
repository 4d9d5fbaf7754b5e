//! Not an example to follow: the functions `tests/codegen.rs` compiles to
//! assembly to check what an MMIO access and a DMA ring access cost (the
//! bounds and alignment check, then one volatile load or store; no call, no
//! division, no loop).

use iommufd::{DmaBuffer, FixedRing, Mapping, Mmio, Register, Result, Ring, RingMut};

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

/// The status word (bytes 14..16) of NVMe completion entry `i`.
#[no_mangle]
#[inline(never)]
pub fn probe_ring_field(r: &Ring<'_, [u32; 4]>, i: usize) -> Result<u16> {
    r.field::<u16, 14>(i)
}

/// PRP1 (bytes 24..32) of NVMe submission entry `i`.
#[no_mangle]
#[inline(never)]
pub fn probe_ring_set_field(r: &mut RingMut<'_, [u8; 64]>, i: usize, v: u64) -> Result<()> {
    r.set_field::<u64, 24>(i, v)
}

/// A 32-bit value at `offset` of a mapping.
#[no_mangle]
#[inline(never)]
pub fn probe_mapping_read32(m: &Mapping<DmaBuffer>, offset: usize) -> Result<u32> {
    m.read::<u32>(offset)
}

/// The status word of completion entry `i mod 32`: no check at all.
#[no_mangle]
#[inline(never)]
pub fn probe_fixed_ring_field(r: &FixedRing<'_, [u32; 4], 32>, i: usize) -> u16 {
    r.at(i).field::<u16, 14>()
}

/// A doorbell rung through a register checked once.
#[no_mangle]
#[inline(never)]
pub fn probe_register_write(r: &Register<'_, u32>, v: u32) {
    r.write(v)
}

fn main() {
    // Keep both in the binary; nothing here runs them.
    let r: fn(&Mmio<'_>, u64) -> Result<u32> = probe_read32;
    let w: fn(&Mmio<'_>, u64, u32) -> Result<()> = probe_write32;
    std::hint::black_box((r, w));
    let f: fn(&Ring<'_, [u32; 4]>, usize) -> Result<u16> = probe_ring_field;
    let s: fn(&mut RingMut<'_, [u8; 64]>, usize, u64) -> Result<()> = probe_ring_set_field;
    let m: fn(&Mapping<DmaBuffer>, usize) -> Result<u32> = probe_mapping_read32;
    std::hint::black_box((f, s, m));
    let x: fn(&FixedRing<'_, [u32; 4], 32>, usize) -> u16 = probe_fixed_ring_field;
    let y: fn(&Register<'_, u32>, u32) = probe_register_write;
    std::hint::black_box((x, y));
}
