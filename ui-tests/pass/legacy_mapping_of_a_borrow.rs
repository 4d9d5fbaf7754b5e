// Twin of compile-fail/legacy_mapping_of_a_borrow.rs: the buffer is moved in.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open_legacy()?;
    let ioas = fd.alloc_ioas()?;
    let mut buf = DmaBuffer::new(4096)?;
    let m = ioas.map(buf, Iova::Any, Access::READ_WRITE).map_err(Error::from)?;
    std::mem::forget(m);
    Ok(())
}
