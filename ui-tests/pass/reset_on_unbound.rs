// Twin of compile-fail/reset_on_unbound.rs: bound first.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let ioas = fd.alloc_ioas()?;
    let mut dev = Device::open("0000:00:02.0")?.bind(&fd)?;
    dev.reset()?;
    Ok(())
}
