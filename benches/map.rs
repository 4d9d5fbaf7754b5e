//! Map + unmap of one 4 KiB page through the crate, against raw ioctls on the
//! same IOAS in the same run. Prints the ratios; asserts nothing about time.
//!
//! Needs the guest (a device attached, so pages are really pinned and the
//! IOMMU page table really written): `cargo xtask bench`.

#[path = "../tests/support/mod.rs"]
mod support;

use iommufd::{Access, Device, DmaBuffer, Iommufd, Iova};
use std::hint::black_box;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

#[repr(C)]
#[derive(Default)]
struct RawMap {
    size: u32,
    flags: u32,
    ioas_id: u32,
    reserved: u32,
    user_va: u64,
    length: u64,
    iova: u64,
}

#[repr(C)]
#[derive(Default)]
struct RawUnmap {
    size: u32,
    ioas_id: u32,
    iova: u64,
    length: u64,
}

nix::ioctl_readwrite_bad!(raw_map, nix::request_code_none!(b';', 0x85), RawMap);
nix::ioctl_readwrite_bad!(raw_unmap, nix::request_code_none!(b';', 0x86), RawUnmap);

const ITERS: u32 = 2000;

fn time(mut f: impl FnMut()) -> Duration {
    for _ in 0..50 {
        f();
    }
    let t = Instant::now();
    for _ in 0..ITERS {
        f();
    }
    t.elapsed() / ITERS
}

fn main() {
    if !std::path::Path::new("/dev/iommu").exists() {
        println!(
            "bench map: skipped, no /dev/iommu here; run it in the guest with `cargo xtask bench`"
        );
        return;
    }
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = Device::open(&support::Topology::discover().singleton).unwrap();
    let dev = dev.bind(&fd).unwrap().attach(&ioas).unwrap();
    let raw_fd: BorrowedFd<'_> = fd.iommufd_fd().unwrap();
    let mut buf = DmaBuffer::new(4096).unwrap();
    let va = buf.as_mut_slice().as_mut_ptr() as u64;

    let raw = |iova: Option<u64>| {
        let mut m = RawMap {
            size: 40,
            flags: 0b110 | u32::from(iova.is_some()),
            ioas_id: ioas.id(),
            user_va: va,
            length: 4096,
            iova: iova.unwrap_or(0),
            ..Default::default()
        };
        // SAFETY: `buf` outlives the mapping, which is removed right below.
        unsafe { raw_map(raw_fd.as_raw_fd(), &mut m) }.unwrap();
        let mut u = RawUnmap {
            size: 24,
            ioas_id: ioas.id(),
            iova: m.iova,
            length: 4096,
        };
        // SAFETY: plain struct, no pointers.
        unsafe { raw_unmap(raw_fd.as_raw_fd(), &mut u) }.unwrap();
    };
    let raw_any = time(|| raw(None));
    let raw_fixed = time(|| raw(Some(0x100000)));
    // The buffer moves into each mapping and comes back from unmap.
    let mut slot = Some(DmaBuffer::new(4096).unwrap());
    let mut crate_map = |at: Iova| {
        let m = ioas
            .map(slot.take().unwrap(), at, Access::READ_WRITE)
            .unwrap();
        black_box(m.iova());
        slot = Some(m.unmap().unwrap());
    };
    let crate_any = time(|| crate_map(Iova::Any));
    let crate_fixed = time(|| crate_map(Iova::Fixed(0x100000)));
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("bench map+unmap 4 KiB, kernel-chosen IOVA: raw {raw_any:?}, crate {crate_any:?}, ratio {:.2}", ratio(crate_any, raw_any));
    println!(
        "bench map+unmap 4 KiB, fixed IOVA (crate pre-checks the IOVA ranges: one more ioctl): raw {raw_fixed:?}, crate {crate_fixed:?}, ratio {:.2}",
        ratio(crate_fixed, raw_fixed)
    );
    drop(dev);
}
