// Rule 22: a hot reset goes only through a bound value, which holds the devices it resets (and the run-time check that it holds every affected one).
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let mut group = Group::open(3)?;
    group.hot_reset()?;
    Ok(())
}
