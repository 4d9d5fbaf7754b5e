// Rule 24: a vIOMMU, like a nested HWPT, sits only on a NEST_PARENT HWPT
// (the kernel selftest's viommu_negative_tests: EINVAL on a plain one).
#![allow(unused_imports)]
use iommufd::hwpt::{Hwpt, NestParent, Paging};
use iommufd::viommu::{Viommu, ViommuKind};
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: &Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let s2 = Hwpt::<Paging>::alloc(dev, ioas)?;
    let viommu = Viommu::alloc(dev, &s2, ViommuKind::ArmSmmuV3)?;
    Ok(())
}
