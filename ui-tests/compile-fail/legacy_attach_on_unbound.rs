// Rule 12 (rule 3 on the legacy path): attach needs bind (the group in its container).
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open_legacy()?;
    let ioas = fd.alloc_ioas()?;
    let dev = Device::open_legacy("0000:00:02.0")?;
    let dev = dev.attach(&ioas)?;
    Ok(())
}
