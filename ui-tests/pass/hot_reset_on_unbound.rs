// Twin of compile-fail/hot_reset_on_unbound.rs: the group is bound first.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let mut group = Group::open(3)?.bind(&Iommufd::open()?).map_err(Error::from)?;
    group.hot_reset()?;
    Ok(())
}
