// Twin of compile-fail/dirty_read_on_untracked_parent.rs: the parent is allocated with dirty tracking too.
use iommufd::hwpt::{Hwpt, NestParent, Nested, Stage1, TrackedNestParent};
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut, unused_imports)]
fn case(dev: &Device<BlockDma>, ioas: &Ioas, s1: &Stage1) -> Result<(), Box<dyn std::error::Error>> {
    let s2 = Hwpt::<TrackedNestParent>::alloc(dev, ioas)?;
    let nested = Hwpt::<Nested>::alloc_nested(dev, &s2, s1)?;
    let dirty = s2.start_dirty_tracking()?.read_dirty(0x100_0000, 0x1_0000, 4096, false)?;
    Ok(())
}
