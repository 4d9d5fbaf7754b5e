// Twin of compile-fail-vm-memory/guest_ram_has_no_cpu_view.rs: written through vm-memory's volatile accessors.
use iommufd::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)])?;
    let ioas = Iommufd::open()?.alloc_ioas()?;
    let mut m = ioas.map_guest_region(mem.iter().next().unwrap(), Access::READ_WRITE)?;
    mem.write_slice(b"x", GuestAddress(0))?;
    Ok(())
}
