// Rule 18: a save stream belongs to its state: it cannot be read after the device left STOP_COPY.
use iommufd::*;
#[allow(unused_imports)]
use std::io::{Read, Write};
fn main() {}
#[allow(dead_code, unused_variables, unused_mut, unused_imports)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let dev = Device::open("0000:00:02.0")?.bind(&fd)?;
    let mut saving = dev.into_migration()?.declare_no_dma().stop()?.stop_copy()?;
    let mut stream = saving.stream();
    let stopped = saving.stop()?;
    let mut buf = [0u8; 8];
    let n = stream.read(&mut buf)?;
    Ok(())
}
