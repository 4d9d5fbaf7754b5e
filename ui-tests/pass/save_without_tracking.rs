// Twin of compile-fail/save_without_tracking.rs: the device's DMA is tracked first (here by its own log, over the IOAS's whole range).
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: Device<Attached>) -> Result<(), Box<dyn std::error::Error>> {
    let all = IovaRange { start: 0, last: u64::MAX };
    let saving = dev.into_migration()?.log_dma(4096, &[all])?.pre_copy()?;
    Ok(())
}
