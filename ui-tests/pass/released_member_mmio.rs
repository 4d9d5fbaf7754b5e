// Twin of compile-fail/released_member_mmio.rs: MMIO through a member still in the group.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let mut g = Group::open(3)?.bind(&fd)?;
    g.map_bar(1, 0)?;
    let released = g.release(1)?;
    let id = g.member(0).unwrap().mmio(0)?.read32(0)?;
    Ok(())
}
