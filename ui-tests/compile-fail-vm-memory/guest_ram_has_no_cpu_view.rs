// Rule 19: a guest RAM mapping (vm-memory) has no CPU view of its own: the VMM's vCPU and device threads reach the same memory through vm-memory, so the mapping's `&mut self` write would not be exclusive.
use iommufd::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)])?;
    let ioas = Iommufd::open()?.alloc_ioas()?;
    let mut m = ioas.map_guest_region(mem.iter().next().unwrap(), Access::READ_WRITE)?;
    m.write_bytes(0, b"x")?;
    Ok(())
}
