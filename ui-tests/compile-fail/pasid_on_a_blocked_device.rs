// Rule 27: a BlockDma device reaches nothing, tagged or not: PASIDs attach only beside an attached RID (and detach() detaches them with it).
use iommufd::hwpt::Paging;
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let rid = PasidHwpt::<Paging>::alloc(&dev, ioas)?;
    let mut dev = dev;
    dev.attach_pasid(Pasid::new(1)?, &rid)?;
    Ok(())
}
