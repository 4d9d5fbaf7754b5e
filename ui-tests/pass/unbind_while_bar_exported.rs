// Twin of compile-fail/unbind_while_bar_exported.rs: the mapping is dropped before the device is unbound.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(gpu: Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let window = gpu.export_bar(2, 0, 4096)?;
    let p2p = ioas.map_peer_bar(window, Iova::Any, Access::READ_WRITE).map_err(Error::from)?;
    drop(p2p);
    let gpu = gpu.unbind().map_err(Error::from)?;
    Ok(())
}
