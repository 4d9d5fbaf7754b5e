// Twin of compile-fail/pasid_on_a_plain_page_table.rs: the PASID's page table is allocated PASID-capable.
use iommufd::hwpt::{Hwpt, Paging};
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut, unused_imports)]
fn case(dev: &mut Device<Attached<Ioas>>, ioas: &Ioas) -> Result<(), Box<dyn std::error::Error>> {
    let table = PasidHwpt::<Paging>::alloc(&*dev, ioas)?;
    dev.attach_pasid(Pasid::new(1)?, &table)?;
    Ok(())
}
