// Rule 8: an IOMMU_IOAS_COPY borrows its source mapping: the source cannot be unmapped under it.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let ioas = fd.alloc_ioas()?;
    let other = fd.alloc_ioas()?;
    let src = ioas.map(DmaBuffer::new(4096)?, Iova::Any, Access::READ)?;
    let copy = other.copy_from(&src, Iova::Any, Access::READ)?;
    let buf = src.unmap()?;
    drop(copy);
    Ok(())
}
