// Rule 21: while an IOAS maps a BAR exported as a dma-buf, the exporting device cannot be unbound, closed or moved: the mapping owns the export, which borrows the device.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(gpu: Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let window = gpu.export_bar(2, 0, 4096)?;
    let p2p = ioas.map_peer_bar(window, Iova::Any, Access::READ_WRITE).map_err(Error::from)?;
    let gpu = gpu.unbind().map_err(Error::from)?;
    drop(p2p);
    Ok(())
}
