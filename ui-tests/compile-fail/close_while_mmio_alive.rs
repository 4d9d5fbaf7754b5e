// Rule 5: nor closed.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let ioas = fd.alloc_ioas()?;
    let mut dev = Device::open("0000:00:02.0")?.bind(&fd)?.attach(&ioas)?;
    dev.map_bar(0)?;
    let bar = dev.mmio(0)?;
    dev.close();
    bar.read32(0)?;
    Ok(())
}
