// Twin of compile-fail/mapping_of_a_borrow.rs: the buffer is moved in, so leaking the mapping leaks the buffer too.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let ioas = fd.alloc_ioas()?;
    let mut buf = DmaBuffer::new(4096)?;
    let m = ioas.map(buf, Iova::Any, Access::READ_WRITE).map_err(Error::from)?;
    std::mem::forget(m);
    Ok(())
}
