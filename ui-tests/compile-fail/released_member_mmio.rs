// Rule 16: a released member has no fd to reach the device through: no MMIO.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let mut g = Group::open(3)?.bind(&fd)?;
    g.map_bar(1, 0)?;
    let released = g.release(1)?;
    let id = released.mmio(0)?.read32(0)?;
    Ok(())
}
