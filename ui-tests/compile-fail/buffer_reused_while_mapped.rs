// Rule 8: nor written by the CPU behind the device's back while mapped.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let ioas = fd.alloc_ioas()?;
    let mut buf = DmaBuffer::new(4096)?;
    let m = ioas.map(&mut buf, Iova::Any, Access::READ_WRITE).map_err(Error::from)?;
    buf.as_mut_slice()[0] = 1;
    drop(m);
    Ok(())
}
