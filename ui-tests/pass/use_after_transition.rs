// Twin of compile-fail/use_after_transition.rs: uses the new value.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let ioas = fd.alloc_ioas()?;
    let dev = Device::open("0000:00:02.0")?;
    let bound = dev.bind(&fd)?;
    let name = bound.name();
    Ok(())
}
