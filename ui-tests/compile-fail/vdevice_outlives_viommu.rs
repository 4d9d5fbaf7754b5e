// Rule 25: a vDEVICE belongs to one vIOMMU and one device: it borrows both, so it cannot outlive its vIOMMU.
use iommufd::hwpt::{Hwpt, NestParent};
use iommufd::viommu::{Viommu, ViommuKind};
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: &Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let s2 = Hwpt::<NestParent>::alloc(dev, ioas)?;
    let viommu = Viommu::alloc(dev, &s2, ViommuKind::ArmSmmuV3)?;
    let vdev = viommu.alloc_vdevice(dev, 0x8)?;
    drop(viommu);
    drop(vdev);
    Ok(())
}
