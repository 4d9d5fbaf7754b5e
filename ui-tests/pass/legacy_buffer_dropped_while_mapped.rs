// Twin of compile-fail/legacy_buffer_dropped_while_mapped.rs: unmapped first.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open_legacy()?;
    let ioas = fd.alloc_ioas()?;
    let mut buf = DmaBuffer::new(4096)?;
    let m = ioas.map(&mut buf, Iova::Any, Access::READ_WRITE).map_err(Error::from)?;
    drop(m);
    drop(buf);
    Ok(())
}
