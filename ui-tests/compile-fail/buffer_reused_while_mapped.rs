// Rule 8: the CPU cannot reach mapped memory by reference: the buffer moved into the mapping.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let ioas = fd.alloc_ioas()?;
    let mut buf = DmaBuffer::new(4096)?;
    let m = ioas.map(buf, Iova::Any, Access::READ_WRITE).map_err(Error::from)?;
    buf.as_mut_slice()[0] = 1;
    Ok(())
}
