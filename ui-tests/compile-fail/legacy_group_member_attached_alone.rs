// Rule 12 (rule 7 on the legacy path): no member of a legacy group attached alone.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open_legacy()?;
    let ioas = fd.alloc_ioas()?;
    let g = Group::open_legacy(3)?.bind(&fd)?;
    let alone = g.member(0).unwrap().attach(&ioas)?;
    Ok(())
}
