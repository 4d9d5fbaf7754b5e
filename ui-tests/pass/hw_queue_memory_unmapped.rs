// Twin of compile-fail/hw_queue_memory_unmapped.rs: the queue goes first.
use iommufd::hwpt::{Hwpt, NestParent};
use iommufd::viommu::{HwQueueKind, Viommu, ViommuKind};
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: &Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let s2 = Hwpt::<NestParent>::alloc(dev, ioas)?;
    let viommu = Viommu::alloc(dev, &s2, ViommuKind::ArmSmmuV3)?;
    let ram = ioas.map(DmaBuffer::new(4096)?, Iova::Any, Access::READ_WRITE).map_err(Error::from)?;
    let queue = viommu.alloc_hw_queue(HwQueueKind::Tegra241Cmdqv, &ram, 0, 4096)?;
    drop(queue);
    let buffer = ram.unmap().map_err(Error::from)?;
    Ok(())
}
