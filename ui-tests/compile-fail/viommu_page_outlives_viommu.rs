// Rule 25: what a vIOMMU hands out cannot outlive it: its mapped page
// borrows it (the kernel refuses to destroy a vIOMMU whose page is mapped:
// EBUSY).
use iommufd::hwpt::{Hwpt, NestParent};
use iommufd::viommu::{Viommu, ViommuKind};
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: &Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let s2 = Hwpt::<NestParent>::alloc(dev, ioas)?;
    let viommu = Viommu::alloc(dev, &s2, ViommuKind::ArmSmmuV3)?;
    let page = viommu.map_page()?;
    drop(viommu);
    let word = page.read32(0)?;
    Ok(())
}
