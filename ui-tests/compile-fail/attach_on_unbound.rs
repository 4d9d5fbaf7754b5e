// Rule 3: attach needs a bound device (the kernel answers EINVAL).
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let ioas = fd.alloc_ioas()?;
    let dev = Device::open("0000:00:02.0")?;
    let dev = dev.attach(&ioas)?;
    Ok(())
}
