// Twin of compile-fail/attach_to_an_object_id.rs: the IOAS itself.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let id: u32 = ioas.id();
    let attached = dev.attach(ioas)?;
    Ok(())
}
