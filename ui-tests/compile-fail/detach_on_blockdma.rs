// A device that is not attached cannot be detached (the kernel would answer EINVAL... or worse, nothing).
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let ioas = fd.alloc_ioas()?;
    let dev = Device::open("0000:00:02.0")?.bind(&fd)?;
    let dev = dev.detach()?;
    Ok(())
}
