// Rule 17: a group opened with some of its members still moves as one: no member attached alone.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let b = fd.alloc_ioas()?;
    let g = Group::open_members(3, &["0000:01:01.0"])?.bind(&fd)?;
    let alone = g.member(0).unwrap().attach(&b)?;
    Ok(())
}
