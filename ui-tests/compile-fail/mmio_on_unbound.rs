// Rule 1: BARs cannot be mapped (or read) before bind; the kernel refuses mmap with EINVAL.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let ioas = fd.alloc_ioas()?;
    let mut dev = Device::open("0000:00:02.0")?;
    dev.map_bar(0)?;
    Ok(())
}
