// Twin of compile-fail/load_stream_when_not_resuming.rs: the device is moved to RESUMING first.
use iommufd::*;
#[allow(unused_imports)]
use std::io::{Read, Write};
fn main() {}
#[allow(dead_code, unused_variables, unused_mut, unused_imports)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let dev = Device::open("0000:00:02.0")?.bind(&fd)?;
    let mut stopped = dev.into_migration()?.stop()?.resuming()?;
    stopped.stream().write_all(b"state")?;
    Ok(())
}
