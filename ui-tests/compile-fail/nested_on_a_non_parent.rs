// Rule 24: a nested HWPT is allocated only over a NEST_PARENT HWPT.
use iommufd::hwpt::{Hwpt, NestParent, Nested, Paging, Stage1};
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: &Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let s2 = Hwpt::<Paging>::alloc(dev, ioas)?;
    let s1 = Stage1::VtdS1 { flags: 0, pgtbl_addr: 0x1000, addr_width: 48 };
    let nested = Hwpt::<Nested>::alloc_nested(dev, &s2, &s1)?;
    Ok(())
}
