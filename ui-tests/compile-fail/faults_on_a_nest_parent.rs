// Rule 31: a fault queue goes to the page tables the kernel takes one for; a nest parent's page requests belong to the nested HWPTs on it (7.3: `IOMMU_HWPT_FAULT_ID_VALID` with `IOMMU_HWPT_ALLOC_NEST_PARENT` is EOPNOTSUPP).
use iommufd::hwpt::{Hwpt, NestParent, Paging};
use iommufd::iopf::FaultQueue;
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut, unused_imports)]
fn case(dev: &Device<BlockDma>, ioas: &Ioas, faults: &FaultQueue) -> Result<(), Box<dyn std::error::Error>> {
    let s2 = Hwpt::<NestParent>::alloc_with_faults(dev, ioas, faults)?;
    Ok(())
}
