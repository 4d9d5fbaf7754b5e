// Rule 12 (rule 8 on the legacy path): type1 replays MAP_DMA by address at attach, so a leaked borrow would pin whatever lives there by then.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open_legacy()?;
    let ioas = fd.alloc_ioas()?;
    let mut buf = DmaBuffer::new(4096)?;
    let m = ioas.map(&mut buf, Iova::Any, Access::READ_WRITE).map_err(Error::from)?;
    std::mem::forget(m);
    Ok(())
}
