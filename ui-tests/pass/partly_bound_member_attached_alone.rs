// Twin of compile-fail/partly_bound_member_attached_alone.rs: the partly bound group is attached as a whole.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let b = fd.alloc_ioas()?;
    let g = Group::open_members(3, &["0000:01:01.0"])?.bind(&fd)?;
    let alone = g.attach(&b)?;
    Ok(())
}
