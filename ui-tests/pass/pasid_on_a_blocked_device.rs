// Twin of compile-fail/pasid_on_a_blocked_device.rs: the RID is attached first.
use iommufd::hwpt::Paging;
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: Device<BlockDma>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let rid = PasidHwpt::<Paging>::alloc(&dev, ioas)?;
    let mut dev = dev.attach(&rid)?;
    dev.attach_pasid(Pasid::new(1)?, &rid)?;
    Ok(())
}
