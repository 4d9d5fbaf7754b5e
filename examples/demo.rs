//! Moves bytes through the IOMMU with the safe API only: open the singleton
//! edu, bind it, attach it to an IOAS, map two buffers, let the device copy
//! one into the other by DMA, and show that an unmapped IOVA is blocked.
//!
//! Run it in the test guest with `cargo xtask demo`.

#[path = "../tests/support/mod.rs"]
mod support;

use iommufd::{Access, Device, DmaBuffer, Iommufd, Iova};
use support::{Edu, Topology};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bdf = Topology::discover().singleton;
    let iommufd = Iommufd::open()?;
    let ioas = iommufd.alloc_ioas()?;
    println!(
        "ioas {} ranges before attach: {}",
        ioas.id(),
        ioas.iova_ranges()?
    );

    let dev = Device::open(&bdf)?;
    println!("opened {dev:?}");
    let mut dev = dev.bind(&iommufd)?;
    println!("bound  {dev:?} (DMA blocked)");
    Edu::setup(&mut dev)?;
    let dev = dev.attach(&ioas)?;
    println!("attached {dev:?}; ranges now {}", ioas.iova_ranges()?);

    let message = b"hello from the other side of the IOMMU";
    let mut src = DmaBuffer::new(4096)?;
    src.as_mut_slice()[..message.len()].copy_from_slice(message);
    let src = ioas.map(src, Iova::Any, Access::READ)?;
    let dst = ioas.map(DmaBuffer::new(4096)?, Iova::Any, Access::WRITE)?;
    println!("mapped src at {:#x}, dst at {:#x}", src.iova(), dst.iova());

    let edu = Edu::new(&dev);
    edu.read_from_ram(src.iova(), message.len() as u64);
    edu.write_to_ram(dst.iova(), message.len() as u64);
    let mut got = vec![0u8; message.len()];
    dst.read_bytes(0, &mut got).unwrap();
    println!("dst after DMA: {:?}", String::from_utf8_lossy(&got));
    if got != message {
        return Err("DMA round trip did not deliver the bytes".into());
    }

    let dst_iova = dst.iova();
    let mut dst = dst.unmap()?;
    dst.as_mut_slice().fill(0);
    edu.write_to_ram(dst_iova, message.len() as u64);
    if dst.as_slice().iter().any(|&b| b != 0) {
        return Err("DMA reached memory after it was unmapped".into());
    }
    println!("DMA to unmapped IOVA {dst_iova:#x} was blocked");

    let dev = dev.detach()?.unbind()?;
    println!("back to {dev:?}");
    println!("demo: OK");
    Ok(())
}
