// Rule 8: an IOMMU_IOAS_COPY shares its source's pages and has no CPU view, so two copies cannot be written from two threads at once.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let ioas = fd.alloc_ioas()?;
    let other = fd.alloc_ioas()?;
    let mut src = ioas.map(DmaBuffer::new(4096)?, Iova::Any, Access::READ).map_err(Error::from)?;
    let mut copy = other.copy_from(&src, Iova::Any, Access::READ)?;
    copy.write_bytes(0, b"x")?;
    Ok(())
}
