// Twin of compile-fail/released_member_bound_alone.rs: the released member rejoins its group.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let mut g = Group::open(3)?.bind(&fd)?;
    let released = g.release(1)?;
    let alone = g.rejoin(released)?;
    Ok(())
}
