// Twin of compile-fail/forged_page_table_kind.rs: the PasidHwpt is allocated as one.
use iommufd::hwpt::{Hwpt, Paging};
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: &Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let plain = Hwpt::<Paging>::alloc(dev, ioas)?;
    let table = PasidHwpt::<Paging>::alloc(dev, ioas)?;
    Ok(())
}
