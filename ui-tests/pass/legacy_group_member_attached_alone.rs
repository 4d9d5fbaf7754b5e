// Twin of compile-fail/legacy_group_member_attached_alone.rs: the group as a whole.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open_legacy()?;
    let ioas = fd.alloc_ioas()?;
    let g = Group::open_legacy(3)?.bind(&fd)?;
    let alone = g.attach(&ioas)?;
    Ok(())
}
