// Rule 33: no save without tracking: the arcs into a state that saves the device's data (PRE_COPY, STOP_COPY) exist only when the migration shows that every page its DMA can write is tracked (`log_dma`, `track_pages`, or the named `declare_no_dma`).
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: Device<Attached>) -> Result<(), Box<dyn std::error::Error>> {
    let saving = dev.into_migration()?.pre_copy()?;
    Ok(())
}
