//! The crate against raw ioctls, in the same guest boot: map + unmap at
//! several sizes with fixed and kernel-chosen IOVAs, unmap with many live
//! mappings, `config_read` and `Mmio::read32`. Each row runs both sides in
//! interleaved rounds (A B, then B A, ...) after a warm-up, and prints the
//! median time per operation of each side, and the median and min–max of the
//! per-round ratio. Under TCG only the ratios mean anything. Asserts nothing
//! about time.
//!
//! Needs the guest (a device attached, so pages are really pinned and the
//! IOMMU page table really written): `cargo xtask bench`.

#[path = "../tests/support/mod.rs"]
mod support;

use iommufd::{Access, Device, DmaBuffer, Ioas, Iommufd, Iova, Mapping};
use std::hint::black_box;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use support::raw::{raw_map, raw_unmap, RawMap, RawUnmap};

const ROUNDS: usize = 9;

/// Nanoseconds per call of `f`, over `iters` calls.
fn batch(iters: u32, f: &mut impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(iters)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `raw` and `ours` in interleaved rounds and prints one table row.
fn row(name: &str, iters: u32, mut raw: impl FnMut(), mut ours: impl FnMut()) {
    batch(iters.div_ceil(10), &mut raw);
    batch(iters.div_ceil(10), &mut ours);
    let (mut r, mut o, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (a, b) = if round % 2 == 0 {
            let a = batch(iters, &mut raw);
            (a, batch(iters, &mut ours))
        } else {
            let b = batch(iters, &mut ours);
            (batch(iters, &mut raw), b)
        };
        r.push(a);
        o.push(b);
        ratio.push(b / a);
    }
    let (lo, hi) = ratio
        .iter()
        .fold((f64::MAX, 0f64), |(l, h), &x| (l.min(x), h.max(x)));
    println!(
        "bench: | {name} | {:.0} ns | {:.0} ns | {:.3} | {lo:.3}–{hi:.3} |",
        median(&mut r),
        median(&mut o),
        median(&mut ratio),
    );
}

struct Raw<'a> {
    fd: BorrowedFd<'a>,
    ioas: u32,
}

impl Raw<'_> {
    fn map(&self, va: u64, len: u64, iova: Option<u64>) -> u64 {
        let mut m = RawMap {
            size: 40,
            flags: 0b110 | u32::from(iova.is_some()),
            ioas_id: self.ioas,
            user_va: va,
            length: len,
            iova: iova.unwrap_or(0),
            ..Default::default()
        };
        // SAFETY: every caller keeps the memory at `va` alive until it unmaps.
        unsafe { raw_map(self.fd.as_raw_fd(), &mut m) }.unwrap();
        m.iova
    }

    fn unmap(&self, iova: u64, len: u64) {
        let mut u = RawUnmap {
            size: 24,
            ioas_id: self.ioas,
            iova,
            length: len,
        };
        // SAFETY: plain struct, no pointers.
        unsafe { raw_unmap(self.fd.as_raw_fd(), &mut u) }.unwrap();
    }
}

/// Map + unmap of `len` bytes, fixed and kernel-chosen, raw and crate, on
/// the same IOAS with the device attached.
fn map_rows(raw_ioas: &Raw<'_>, ioas: &Ioas, len: usize, label: &str, iters: u32) {
    // Both sides map the same pages: the raw side maps the buffer's address
    // while the crate does not hold it mapped (where the pages come from,
    // THP or not, matters more than anything the crate does).
    let mut buf = DmaBuffer::new(len).unwrap();
    let va = buf.as_mut_slice().as_mut_ptr() as u64;
    let mut slot = Some(buf);
    for (kind, at) in [("fixed", Some(0x4000_0000u64)), ("kernel-chosen", None)] {
        let mut ours = || {
            let iova = at.map_or(Iova::Any, Iova::Fixed);
            let m = ioas
                .map(slot.take().unwrap(), iova, Access::READ_WRITE)
                .unwrap();
            black_box(m.iova());
            slot = Some(m.unmap().unwrap());
        };
        row(
            &format!("map+unmap {label}, {kind} IOVA"),
            iters,
            || {
                let iova = raw_ioas.map(va, len as u64, at);
                raw_ioas.unmap(iova, len as u64);
            },
            &mut ours,
        );
    }
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
    let mut dev = Device::open(&support::Topology::discover().singleton)
        .unwrap()
        .bind(&fd)
        .unwrap();
    dev.map_bar(0).unwrap();
    let dev = dev.attach(&ioas).unwrap();
    // One device, one IOAS: both sides map into it (the raw side through the
    // crate's iommufd fd), so both pin and write the same IOMMU page table.
    let raw = Raw {
        fd: fd.iommufd_fd().unwrap(),
        ioas: ioas.id(),
    };
    println!("bench: | operation | raw | crate | crate/raw (median) | min–max |");
    println!("bench: |---|---|---|---|---|");
    map_rows(&raw, &ioas, 4 << 10, "4 KiB", 1000);
    map_rows(&raw, &ioas, 64 << 10, "64 KiB", 500);
    map_rows(&raw, &ioas, 2 << 20, "2 MiB (DmaBuffer, THP)", 100);
    map_rows(&raw, &ioas, 64 << 20, "64 MiB (DmaBuffer, THP)", 5);

    memory_kinds(&ioas);

    // Unmap cost with K live mappings beside the one being mapped and unmapped.
    for k in [1usize, 1024, 4096] {
        let bufs: Vec<DmaBuffer> = (0..k).map(|_| DmaBuffer::new(4096).unwrap()).collect();
        let mut raw_bufs: Vec<DmaBuffer> = (0..k).map(|_| DmaBuffer::new(4096).unwrap()).collect();
        let live: Vec<Mapping<DmaBuffer>> = bufs
            .into_iter()
            .map(|b| ioas.map(b, Iova::Any, Access::READ).unwrap())
            .collect();
        let raw_live: Vec<u64> = raw_bufs
            .iter_mut()
            .map(|b| raw.map(b.as_mut_slice().as_mut_ptr() as u64, 4096, None))
            .collect();
        let mut buf = DmaBuffer::new(4096).unwrap();
        let va = buf.as_mut_slice().as_mut_ptr() as u64;
        let mut slot = Some(buf);
        row(
            &format!("map+unmap 4 KiB with {k} live mappings"),
            500,
            || {
                let iova = raw.map(va, 4096, None);
                raw.unmap(iova, 4096);
            },
            || {
                let m = ioas
                    .map(slot.take().unwrap(), Iova::Any, Access::READ_WRITE)
                    .unwrap();
                slot = Some(m.unmap().unwrap());
            },
        );
        for iova in raw_live {
            raw.unmap(iova, 4096);
        }
        drop(live);
    }

    // config_read: pread on the config region, raw (offset asked once) and crate.
    let info = dev.region_info(iommufd::pci::CONFIG).unwrap();
    let dev_fd = dev_fd_of(&support::Topology::discover().singleton);
    let mut b = [0u8; 4];
    let mut c = [0u8; 4];
    row(
        "config_read 4 bytes",
        5000,
        || {
            nix::sys::uio::pread(&dev_fd, &mut b, info.offset as i64).unwrap();
            black_box(&b);
        },
        || {
            dev.config_read(0, &mut c).unwrap();
            black_box(&c);
        },
    );

    // Device::open (sysfs group check, then the cdev) against opening the cdev.
    let bdf = support::Topology::discover().singleton;
    let cdev = support::cdev_of(&bdf);
    row(
        "Device::open + close (a second open of a bound device)",
        200,
        || drop(support::open_rw(&cdev)),
        || drop(Device::open(&bdf).unwrap()),
    );

    // Mmio::read32 against a volatile load from the same mapping.
    let mmio = dev.mmio(0).unwrap();
    let p = mmio.host_address(0).unwrap() as *const u32;
    row(
        "Mmio::read32",
        20000,
        || {
            // SAFETY: `p` is BAR0 offset 0 of the live mapping `mmio` borrows.
            black_box(unsafe { p.read_volatile() });
        },
        || {
            black_box(mmio.read32(0).unwrap());
        },
    );
}

/// Map + unmap of 64 MiB and 512 MiB through the crate, by kind of memory,
/// with THP set to `madvise` (as many distributions ship it): `DmaBuffer`
/// (asks for THP), plain 4 KiB pages, and hugetlbfs (`HugeBuffer`, mapped
/// with `IOMMU_IOAS_MAP_FILE`). The ratio column is each kind against
/// 4 KiB pages: below 1 is faster.
fn memory_kinds(ioas: &Ioas) {
    const THP: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
    let thp_before = std::fs::read_to_string(THP).unwrap_or_default();
    let _ = std::fs::write(THP, "madvise");
    for (len, iters) in [(64usize << 20, 3u32), (512 << 20, 1)] {
        let mib = len >> 20;
        let _ = std::fs::write("/proc/sys/vm/nr_hugepages", (len / (2 << 20)).to_string());
        let mut small = memmap2::MmapOptions::new().len(len).map_anon().unwrap();
        let _ = small.advise(memmap2::Advice::NoHugePage);
        small.iter_mut().step_by(4096).for_each(|b| *b = 1);
        let mut small = Some(small);
        let mut thp = DmaBuffer::new(len).unwrap();
        thp.as_mut_slice()
            .iter_mut()
            .step_by(4096)
            .for_each(|b| *b = 1);
        let mut thp = Some(thp);
        let mut map_small = || {
            let m = ioas
                .map(small.take().unwrap(), Iova::Any, Access::READ_WRITE)
                .unwrap();
            small = Some(m.unmap().unwrap());
        };
        row(
            &format!("{mib} MiB: DmaBuffer (THP) vs 4 KiB pages"),
            iters,
            &mut map_small,
            || {
                let m = ioas
                    .map(thp.take().unwrap(), Iova::Any, Access::READ_WRITE)
                    .unwrap();
                thp = Some(m.unmap().unwrap());
            },
        );
        match iommufd::HugeBuffer::new(len) {
            Ok(h) => {
                let mut huge = Some(h);
                row(
                    &format!("{mib} MiB: HugeBuffer (hugetlbfs, map_huge) vs 4 KiB pages"),
                    iters,
                    &mut map_small,
                    || {
                        let m = ioas
                            .map_huge(huge.take().unwrap(), Iova::Any, Access::READ_WRITE)
                            .unwrap();
                        huge = Some(m.unmap().unwrap());
                    },
                );
            }
            Err(e) => println!("bench: | {mib} MiB: HugeBuffer | skipped: {e} |"),
        }
    }
    let _ = std::fs::write("/proc/sys/vm/nr_hugepages", "0");
    if let Some(mode) = thp_before
        .split('[')
        .nth(1)
        .and_then(|s| s.split(']').next())
    {
        let _ = std::fs::write(THP, mode);
    }
}

/// A duplicate of the bound device fd the crate holds for `bdf` (found in
/// `/proc/self/fd`), for the raw side's `pread`.
fn dev_fd_of(bdf: &str) -> OwnedFd {
    let n = iommufd::sysfs::cdev_name(std::path::Path::new("/sys"), bdf).unwrap();
    let cdev = std::path::Path::new("/dev/vfio/devices").join(n);
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if std::fs::read_link(e.path()).is_ok_and(|t| t == cdev) {
            let raw: i32 = e.file_name().to_str().unwrap().parse().unwrap();
            // SAFETY: `raw` is open (the crate's device holds it for the whole
            // bench); it is only borrowed long enough to duplicate it.
            let fd = unsafe { BorrowedFd::borrow_raw(raw) };
            return fd.try_clone_to_owned().unwrap();
        }
    }
    panic!("no open fd of {}", cdev.display());
}
