// Twin of compile-fail/vdevice_outlives_viommu.rs: the vDEVICE is done before its vIOMMU goes.
use iommufd::hwpt::{Hwpt, NestParent};
use iommufd::viommu::{Viommu, ViommuKind};
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: &Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let s2 = Hwpt::<NestParent>::alloc(dev, ioas)?;
    let viommu = Viommu::alloc(dev, &s2, ViommuKind::ArmSmmuV3)?;
    let vdev = viommu.alloc_vdevice(dev, 0x8)?;
    drop(vdev);
    drop(viommu);
    Ok(())
}
