// Rule 23: dirty bits exist only on an HWPT allocated with dirty tracking: a plain paging HWPT has no dirty tracking to start.
use iommufd::hwpt::{Hwpt, Paging};
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: &Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let hwpt = Hwpt::<Paging>::alloc(dev, ioas)?;
    let dirty = hwpt.start_dirty_tracking()?.read_dirty(0x100_0000, 0x1_0000, 4096, false)?;
    Ok(())
}
