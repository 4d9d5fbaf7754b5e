// Twin of compile-fail/viommu_page_outlives_viommu.rs: the page goes first.
use iommufd::hwpt::{Hwpt, NestParent};
use iommufd::viommu::{Viommu, ViommuKind};
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: &Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let s2 = Hwpt::<NestParent>::alloc(dev, ioas)?;
    let viommu = Viommu::alloc(dev, &s2, ViommuKind::ArmSmmuV3)?;
    let page = viommu.map_page()?;
    let word = page.read32(0)?;
    drop(page);
    drop(viommu);
    Ok(())
}
