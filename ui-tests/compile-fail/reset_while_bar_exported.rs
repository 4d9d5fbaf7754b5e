// Rule 29: a reset changes the kernel's device behind every borrow of it (vfio-pci revokes a BAR's dma-buf export at a reset), so it takes `&mut`: not while an IOAS maps an export of the device's BAR.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(mut gpu: Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let window = gpu.export_bar(2, 0, 4096)?;
    let p2p = ioas.map_peer_bar(window, Iova::Any, Access::READ_WRITE).map_err(Error::from)?;
    gpu.reset()?;
    drop(p2p);
    Ok(())
}
