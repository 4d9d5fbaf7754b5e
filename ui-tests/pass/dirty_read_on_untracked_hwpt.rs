// Twin of compile-fail/dirty_read_on_untracked_hwpt.rs: the HWPT is allocated with dirty tracking.
use iommufd::hwpt::{DirtyTracking, Hwpt};
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: &Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let hwpt = Hwpt::<DirtyTracking>::alloc(dev, ioas)?;
    let dirty = hwpt.start_dirty_tracking()?.read_dirty(0x100_0000, 0x1_0000, 4096, false)?;
    Ok(())
}
