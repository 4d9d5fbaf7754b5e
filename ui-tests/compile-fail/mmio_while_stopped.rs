// Rule 18: a stopped device must not be touched: no MMIO, config space or DMA change in STOP.
use iommufd::*;
#[allow(unused_imports)]
use std::io::{Read, Write};
fn main() {}
#[allow(dead_code, unused_variables, unused_mut, unused_imports)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let dev = Device::open("0000:00:02.0")?.bind(&fd)?;
    let stopped = dev.into_migration()?.stop()?;
    let id = stopped.device().mmio(0)?.read32(0)?;
    Ok(())
}
