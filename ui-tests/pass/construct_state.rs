// Twin of compile-fail/construct_state.rs: the state is only named, never made.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let ioas = fd.alloc_ioas()?;
    let state: Option<iommufd::BlockDma> = None;
    Ok(())
}
