// Twin of compile-fail/faults_on_a_nest_parent.rs: the fault queue goes to a paging HWPT.
use iommufd::hwpt::{Hwpt, NestParent, Paging};
use iommufd::iopf::FaultQueue;
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut, unused_imports)]
fn case(dev: &Device<BlockDma>, ioas: &Ioas, faults: &FaultQueue) -> Result<(), Box<dyn std::error::Error>> {
    let s2 = Hwpt::<Paging>::alloc_with_faults(dev, ioas, faults)?;
    Ok(())
}
