// Rule 5: an MMIO view borrows the device, so the device cannot be unbound while it lives.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let ioas = fd.alloc_ioas()?;
    let mut dev = Device::open("0000:00:02.0")?.bind(&fd)?;
    dev.map_bar(0)?;
    let bar = dev.mmio(0)?;
    let dev = dev.unbind()?;
    bar.read32(0)?;
    Ok(())
}
