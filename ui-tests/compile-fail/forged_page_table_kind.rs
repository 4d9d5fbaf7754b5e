// Rule 28: a page table's kind comes from its allocation: no caller can rebuild a plain HWPT's handle as a PasidHwpt (or a Hwpt<DirtyTracking>) the kernel never allocated as one.
use iommufd::hwpt::{Hwpt, Paging};
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: &Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let plain = Hwpt::<Paging>::alloc(dev, ioas)?;
    let table = <PasidHwpt as PageTable>::pt_from(ioas, plain.pt_held().as_ref());
    Ok(())
}
