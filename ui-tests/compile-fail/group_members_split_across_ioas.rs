// Rule 6: members of one group cannot be attached to different IOASes (the kernel answers EINVAL).
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let a = fd.alloc_ioas()?;
    let b = fd.alloc_ioas()?;
    let g = Group::open(3)?.bind(&fd)?.attach(&a)?;
    let moved = g.member(1).unwrap().replace(&b)?;
    Ok(())
}
