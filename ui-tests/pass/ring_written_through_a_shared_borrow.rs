// Rule 34: DMA memory is written only through an exclusive borrow of its mapping: a ring made from `&Mapping` reads, one from `&mut Mapping` writes.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let ioas = Iommufd::open()?.alloc_ioas()?;
    let mut sq = ioas.map(DmaBuffer::new(4096)?, Iova::Any, Access::READ).map_err(Error::from)?;
    let mut sqes = sq.ring_mut::<[u8; 64]>(0, 64)?;
    sqes.set_field::<u16, 2>(0, 7)?;
    Ok(())
}
