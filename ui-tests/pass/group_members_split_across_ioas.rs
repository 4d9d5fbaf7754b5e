// Twin of compile-fail/group_members_split_across_ioas.rs: the group moves as a whole.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let a = fd.alloc_ioas()?;
    let b = fd.alloc_ioas()?;
    let g = Group::open(3)?.bind(&fd)?.attach(&a)?;
    let moved = g.replace(&b)?;
    Ok(())
}
