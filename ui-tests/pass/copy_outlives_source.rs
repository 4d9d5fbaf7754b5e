// Twin of compile-fail/copy_outlives_source.rs: the copy goes first.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let ioas = fd.alloc_ioas()?;
    let other = fd.alloc_ioas()?;
    let src = ioas.map(DmaBuffer::new(4096)?, Iova::Any, Access::READ)?;
    let copy = other.copy_from(&src, Iova::Any, Access::READ)?;
    drop(copy);
    let buf = src.unmap()?;
    Ok(())
}
