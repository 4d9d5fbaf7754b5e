// Twin of compile-fail/mmio_while_stopped.rs: MMIO while the device still runs.
use iommufd::*;
#[allow(unused_imports)]
use std::io::{Read, Write};
fn main() {}
#[allow(dead_code, unused_variables, unused_mut, unused_imports)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let dev = Device::open("0000:00:02.0")?.bind(&fd)?;
    let stopped = dev.into_migration()?;
    let id = stopped.device().mmio(0)?.read32(0)?;
    Ok(())
}
