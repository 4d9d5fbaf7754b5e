// Twin of compile-fail/legacy_unbind_while_mmio_alive.rs: the view is used before unbind.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open_legacy()?;
    let ioas = fd.alloc_ioas()?;
    let mut dev = Device::open_legacy("0000:00:02.0")?.bind(&fd)?.attach(&ioas)?;
    dev.map_bar(0)?;
    let bar = dev.mmio(0)?;
    bar.read32(0)?;
    let dev = dev.unbind()?;
    Ok(())
}
