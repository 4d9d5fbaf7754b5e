// Rule 32: tracking that is off is not tracking: dirty bits are read through the `DirtyTracker` that `start_dirty_tracking` hands back, never through the HWPT (the kernel answers a read while tracking is off with every page clean).
use iommufd::hwpt::{DirtyTracking, Hwpt};
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: &Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let hwpt = Hwpt::<DirtyTracking>::alloc(dev, ioas)?;
    let dirty = hwpt.read_dirty(0x100_0000, 0x1_0000, 4096, false)?;
    Ok(())
}
