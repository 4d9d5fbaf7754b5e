// Twin of compile-fail/nested_on_a_non_parent.rs: the stage-2 is a nest parent.
use iommufd::hwpt::{Hwpt, NestParent, Nested, Paging, Stage1};
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: &Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let s2 = Hwpt::<NestParent>::alloc(dev, ioas)?;
    let s1 = Stage1::VtdS1 { flags: 0, pgtbl_addr: 0x1000, addr_width: 48 };
    let nested = Hwpt::<Nested>::alloc_nested(dev, &s2, &s1)?;
    Ok(())
}
