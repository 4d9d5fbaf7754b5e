// Rule 26: a PASID attaches only to a PASID-capable HWPT (IOMMU_HWPT_ALLOC_PASID): a plain Hwpt (or an IOAS, whose kernel-made page table is not one) does not compile.
use iommufd::hwpt::{Hwpt, Paging};
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: &mut Device<Attached<Ioas>>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let table = Hwpt::<Paging>::alloc(&*dev, ioas)?;
    dev.attach_pasid(Pasid::new(1)?, &table)?;
    Ok(())
}
