// Twin of compile-fail/reset_while_bar_exported.rs: the peer mapping is dropped before the reset.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(mut gpu: Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let window = gpu.export_bar(2, 0, 4096)?;
    let p2p = ioas.map_peer_bar(window, Iova::Any, Access::READ_WRITE).map_err(Error::from)?;
    drop(p2p);
    gpu.reset()?;
    Ok(())
}
