// Rule 18: only a device in RESUMING has a load stream to write.
use iommufd::*;
#[allow(unused_imports)]
use std::io::{Read, Write};
fn main() {}
#[allow(dead_code, unused_variables, unused_mut, unused_imports)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let dev = Device::open("0000:00:02.0")?.bind(&fd)?;
    let mut stopped = dev.into_migration()?.stop()?;
    stopped.stream().write_all(b"state")?;
    Ok(())
}
