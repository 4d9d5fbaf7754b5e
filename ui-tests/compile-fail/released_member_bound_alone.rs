// Rule 16: a member released from a bound group (seed step 8) is not a Device: it cannot be bound on its own.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let mut g = Group::open(3)?.bind(&fd)?;
    let released = g.release(1)?;
    let alone = released.bind(&fd)?;
    Ok(())
}
