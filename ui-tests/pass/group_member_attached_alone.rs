// Twin of compile-fail/group_member_attached_alone.rs: the group is attached as a whole.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let a = fd.alloc_ioas()?;
    let b = fd.alloc_ioas()?;
    let g = Group::open(3)?.bind(&fd)?;
    let alone = g.attach(&a)?;
    Ok(())
}
