// Rule 29: a reset takes `&mut`, and a migration lends its device only as `&`: a reset in PRE_COPY would take the device back to RUNNING behind its `Migration<PreCopy>`.
use iommufd::migration::PreCopy;
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(mut saving: Migration<PreCopy, Attached>) -> Result<(), Box<dyn std::error::Error>> {
    saving.device().reset()?;
    Ok(())
}
