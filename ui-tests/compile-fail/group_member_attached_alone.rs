// Rule 7: a member cannot be taken out of its group and attached alone.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let a = fd.alloc_ioas()?;
    let b = fd.alloc_ioas()?;
    let g = Group::open(3)?.bind(&fd)?;
    let alone = g.member(0).unwrap().attach(&a)?;
    Ok(())
}
