// Rule 8: only owned memory is mapped. A mapping of a borrow could be leaked (mem::forget, an Rc cycle), ending the borrow while the device still reaches the buffer.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let ioas = fd.alloc_ioas()?;
    let mut buf = DmaBuffer::new(4096)?;
    let m = ioas.map(&mut buf, Iova::Any, Access::READ_WRITE).map_err(Error::from)?;
    std::mem::forget(m);
    Ok(())
}
