// Rule 35: a device attaches to a page table this process holds, never to
// a number (the kernel's VFIO selftest attach_invalid_pt_fails: ENOENT).
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let id: u32 = ioas.id();
    let attached = dev.attach(&id)?;
    Ok(())
}
