// Twin of compile-fail/reset_in_pre_copy.rs: the migration ends first (back to RUNNING), and the device it hands back is reset.
use iommufd::migration::PreCopy;
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(mut saving: Migration<PreCopy, Attached>) -> Result<(), Box<dyn std::error::Error>> {
    saving.running().map_err(Error::from)?.into_device().reset()?;
    Ok(())
}
