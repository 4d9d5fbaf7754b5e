// Twin of compile-fail/stop_copy_from_running.rs: RUNNING goes to STOP first.
use iommufd::*;
#[allow(unused_imports)]
use std::io::{Read, Write};
fn main() {}
#[allow(dead_code, unused_variables, unused_mut, unused_imports)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let dev = Device::open("0000:00:02.0")?.bind(&fd)?;
    let saving = dev.into_migration()?.declare_no_dma().stop()?.stop_copy()?;
    Ok(())
}
