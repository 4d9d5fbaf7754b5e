// Twin of compile-fail/viommu_on_a_non_parent.rs: the stage-2 is a nest parent.
#![allow(unused_imports)]
use iommufd::hwpt::{Hwpt, NestParent, Paging};
use iommufd::viommu::{Viommu, ViommuKind};
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: &Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let s2 = Hwpt::<NestParent>::alloc(dev, ioas)?;
    let viommu = Viommu::alloc(dev, &s2, ViommuKind::ArmSmmuV3)?;
    Ok(())
}
