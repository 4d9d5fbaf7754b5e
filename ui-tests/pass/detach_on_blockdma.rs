// Twin of compile-fail/detach_on_blockdma.rs: attached first.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let ioas = fd.alloc_ioas()?;
    let dev = Device::open("0000:00:02.0")?.bind(&fd)?.attach(&ioas)?;
    let dev = dev.detach()?;
    Ok(())
}
