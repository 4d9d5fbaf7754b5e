//! The crate against raw ioctls and against rust-vmm's `iommufd-ioctls` and
//! `vfio-ioctls`, in the same guest boot: bring-up of 1, 4 and 16 devices,
//! IOAS allocation, map + unmap at several sizes with fixed and kernel-chosen
//! IOVAs, kinds of DMA memory, unmap with many live mappings, device open,
//! open + bind + attach, `config_read` and `Mmio::read32`. Every row runs its
//! sides interleaved (see `harness.rs`). Under TCG only the ratios mean
//! anything. Asserts nothing about time.
//!
//! Needs the bench guest (devices attached, so pages are really pinned and
//! the IOMMU page table really written; 16 extra singleton edus; 4 GiB):
//! `cargo xtask bench`.

#[path = "../tests/support/mod.rs"]
mod support;

mod harness;

#[path = "../examples/nvme/driver.rs"]
mod driver;

#[path = "../examples/igb/driver.rs"]
mod igb;

use harness::{header, row, untimed, Side};
use iommufd::{Access, Device, DmaBuffer, DmaMemory, Ioas, Iommufd, Iova, Mapping};
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use iommufd_ioctls::IommuFd;
use support::raw::{self, FIXED, RW};
use vfio_ioctls::{VfioDevice, VfioIommufd, VfioOps};

/// Raw iommufd calls on one fd, as a user without any crate writes them.
struct Raw<'a> {
    fd: BorrowedFd<'a>,
}

impl Raw<'_> {
    fn map(&self, ioas: u32, va: u64, len: u64, iova: Option<u64>) -> u64 {
        // SAFETY: every caller keeps the memory at `va` alive until it unmaps.
        unsafe { raw::map(self.fd, ioas, va, len, iova) }.unwrap()
    }

    fn unmap(&self, ioas: u32, iova: u64, len: u64) {
        raw::unmap(self.fd, ioas, iova, len).unwrap();
    }

    fn alloc(&self) -> u32 {
        raw::alloc_ioas(self.fd).unwrap()
    }

    fn destroy(&self, id: u32) {
        raw::destroy(self.fd, id).unwrap();
    }

    /// Opens the cdev of `bdf` (found in sysfs, as any user starting from a
    /// BDF must), binds it to this iommufd and attaches it to `ioas`.
    fn device(&self, bdf: &str, ioas: u32) -> OwnedFd {
        let dev = raw::open_device(bdf);
        raw::bind(&dev, self.fd).unwrap();
        raw::attach(&dev, ioas).unwrap();
        dev
    }
}

/// BAR0 of a bound device fd, mapped (`VFIO_DEVICE_GET_REGION_INFO`, mmap).
fn raw_bar0(dev: BorrowedFd<'_>) -> (*mut u32, usize) {
    let (size, offset) = raw::region(dev, 0).unwrap();
    bar_mmap(dev, offset, size as usize)
}

fn bar_mmap(dev: BorrowedFd<'_>, offset: u64, size: usize) -> (*mut u32, usize) {
    use nix::sys::mman::{mmap, MapFlags, ProtFlags};
    // SAFETY: a fresh shared mapping of the device's BAR; nothing else is at
    // the address the kernel picks.
    let p = unsafe {
        mmap(
            None,
            NonZeroUsize::new(size).unwrap(),
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            dev,
            offset as i64,
        )
    }
    .unwrap();
    (p.as_ptr().cast(), size)
}

fn munmap((p, size): (*mut u32, usize)) {
    // SAFETY: `p` came from `bar_mmap` with this size and is not used again.
    unsafe { nix::sys::mman::munmap(std::ptr::NonNull::new(p).unwrap().cast(), size) }.unwrap();
}

fn read_bar((p, _): (*mut u32, usize)) -> u32 {
    // SAFETY: `p` is offset 0 of a live BAR mapping.
    unsafe { p.read_volatile() }
}

fn sysfs_path(bdf: &str) -> PathBuf {
    Path::new("/sys/bus/pci/devices").join(bdf)
}

/// The peers' handles: `iommufd-ioctls` on a duplicate of the crate's
/// iommufd (so it maps into the crate's IOAS), and `vfio-ioctls` with its
/// own iommufd, IOAS and device (it cannot share an IOAS it did not create).
struct Peers {
    ioctls: IommuFd,
    vfio: Arc<VfioIommufd>,
    _vfio_dev: VfioDevice,
}

fn main() {
    if !Path::new("/dev/iommu").exists() {
        println!(
            "bench map: skipped, no /dev/iommu here; run it in the guest with `cargo xtask bench`"
        );
        return;
    }
    let topo = support::Topology::discover();
    let singles = &topo.singletons;
    println!("bench: {} singleton edus", singles.len());
    header();

    // Bring-up first, while no device is bound.
    let mut big = DmaBuffer::new(256 << 20).unwrap();
    big.as_mut_slice()
        .iter_mut()
        .step_by(4096)
        .for_each(|b| *b = 1);
    let mut big = Some(big);
    for n in [1usize, 4, 16] {
        if singles.len() < n {
            println!("bench: | bring-up of {n} devices | skipped: {} singleton edus (the bench guest has 17) |", singles.len());
            continue;
        }
        bring_up(&singles[..n], &mut big);
    }
    drop(big);

    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let mut dev = Device::open(&singles[0]).unwrap().bind(&fd).unwrap();
    dev.map_bar(0).unwrap();
    let dev = dev.attach(&ioas).unwrap();
    // One device, one IOAS: raw, crate and iommufd-ioctls all map into it
    // (through the crate's iommufd), so all pin and write the same IOMMU
    // page table.
    let raw = Raw {
        fd: fd.iommufd_fd().unwrap(),
    };
    let peers = singles.get(1).map(|bdf| {
        let vfio =
            Arc::new(VfioIommufd::new(Arc::new(IommuFd::new().unwrap()), None, None).unwrap());
        let ops: Arc<dyn VfioOps> = vfio.clone();
        let vfio_dev = VfioDevice::new(&sysfs_path(bdf), ops, true).unwrap();
        Peers {
            ioctls: IommuFd::new_from_fd(raw.fd.try_clone_to_owned().unwrap().into()),
            vfio,
            _vfio_dev: vfio_dev,
        }
    });

    alloc_row(&raw, &fd, peers.as_ref());
    map_rows(&raw, &ioas, peers.as_ref(), 4 << 10, "4 KiB", 1000);
    map_rows(&raw, &ioas, peers.as_ref(), 64 << 10, "64 KiB", 500);
    map_rows(
        &raw,
        &ioas,
        peers.as_ref(),
        2 << 20,
        "2 MiB (DmaBuffer, THP)",
        100,
    );
    map_rows(
        &raw,
        &ioas,
        peers.as_ref(),
        64 << 20,
        "64 MiB (DmaBuffer, THP)",
        5,
    );
    map_rows(
        &raw,
        &ioas,
        peers.as_ref(),
        512 << 20,
        "512 MiB (DmaBuffer, THP)",
        1,
    );
    map_file_rows(&ioas);
    memory_kinds(&ioas);
    gib_pages(&ioas);
    live_rows(&fd, singles);
    device_rows(&fd, &dev, singles, peers.as_ref());
    migration_row(&fd);
    if let Some(bdf) = singles.get(2) {
        map_bar_row(&fd, bdf);
        first_map_bar_row(&fd, bdf);
        bind_row(&fd, bdf);
    }
    if let Some(bdf) = topo.nvme.as_deref() {
        msix_row(&fd, bdf);
        nvme_rows(&fd, bdf);
    }
    if let Some(bdf) = topo.sriov_pf.as_deref() {
        igb_rows(&fd, bdf);
    }
    use iommufd::hwpt::{DirtyTracking, TrackedNestParent};
    dirty_row::<DirtyTracking>(&fd, 4, "dirty tracking");
    for gib in [1, 4, 64] {
        dirty_row::<TrackedNestParent>(&fd, gib, "tracked nest parent");
    }
}

/// Reading (and clearing) the dirty bitmap of a `gib` GiB IOVA range at
/// 4 KiB granularity, on an HWPT of kind `K` of the kernel's iommufd test
/// driver: `DirtyTracker::read_dirty` against the raw
/// `IOMMU_HWPT_GET_DIRTY_BITMAP` into a zeroed bitmap of its own. The
/// default mock page table covers only [16 MiB, 2 GiB), so the HWPT is the
/// mock's huge one (whole IOVA space); the range is one 1 GiB memfd mapped
/// `gib` times (`IOMMU_IOAS_MAP_FILE`), which a 4 GiB guest can hold.
fn dirty_row<K: iommufd::hwpt::Tracks + iommufd::hwpt::Alloc>(fd: &Iommufd, gib: u64, what: &str) {
    const BASE: u64 = 1 << 32;
    const PART: u64 = 1 << 30;
    let name = format!(
        "dirty bitmap of {gib} GiB at 4 KiB, read and cleared (iommufd test driver, huge mock page table, {what})"
    );
    // The set-up maps `gib` GiB: skipped with the row.
    if std::env::var("IOMMUFD_BENCH_ONLY").is_ok_and(|only| !name.contains(&only)) {
        return;
    }
    let len = gib * PART;
    let scratch = fd.alloc_ioas().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let Ok(mut dev) = iommufd::mock::MockDevice::new(&scratch) else {
        println!("bench: | dirty bitmap of {gib} GiB | skipped: no iommufd test driver |");
        return;
    };
    let hwpt = match dev.alloc_huge::<K>(&ioas) {
        Ok(h) => h,
        Err(e) => {
            println!("bench: | dirty bitmap of {gib} GiB ({what}) | skipped: {e} |");
            return;
        }
    };
    dev.replace(&hwpt).unwrap();
    let memfd =
        nix::sys::memfd::memfd_create(c"dirty", nix::sys::memfd::MFdFlags::empty()).unwrap();
    nix::unistd::ftruncate(&memfd, PART as i64).unwrap();
    let _m: Vec<_> = (0..gib)
        .map(|i| {
            // Each GiB is 262144 mock page-table entries: say so, for the
            // harness's watchdog (90 s of silence is a frozen guest).
            println!("bench: ... {name}: mapping GiB {} of {gib}", i + 1);
            ioas.map_file(
                &memfd,
                0,
                PART,
                Iova::Fixed(BASE + i * PART),
                Access::READ_WRITE,
            )
            .unwrap()
        })
        .collect();
    let tracking = hwpt.start_dirty_tracking().unwrap();
    let raw_fd = fd.iommufd_fd().unwrap();
    let id = hwpt.id();
    let mut r = || {
        let mut bits = vec![0u64; (len / 4096 / 64) as usize];
        support::raw::get_dirty_bitmap(raw_fd, id, BASE, len, &mut bits);
        black_box(&bits);
    };
    let mut c = || {
        black_box(tracking.read_dirty(BASE, len, 4096, false).unwrap());
    };
    row(&name, 20, &mut [("raw", &mut r), ("crate", &mut c)]);
    tracking.stop().unwrap();
}

/// `Device::map_bar` + `unmap_bar` of an edu's BAR0 against the raw region
/// query + `mmap` + `munmap`, on one bound device.
fn map_bar_row(fd: &Iommufd, bdf: &str) {
    let mut dev = Device::open(bdf).unwrap().bind(fd).unwrap();
    let dev_fd = dev_fd_of(bdf);
    let mut r = || munmap(raw_bar0(dev_fd.as_fd()));
    let mut c = || {
        dev.map_bar(0).unwrap();
        black_box(dev.unmap_bar(0));
    };
    row(
        "map_bar + unmap_bar (edu BAR0, 1 MiB): region info, mmap, munmap",
        500,
        &mut [("raw", &mut r), ("crate", &mut c)],
    );
}

/// `Device::map_bar` of a device just opened and bound, whose region info
/// is not cached yet (what a VMM's bring-up pays), against the raw region
/// query + `mmap`. Open, bind, unmap and close run off the clock.
fn first_map_bar_row(fd: &Iommufd, bdf: &str) {
    let iommu = fd.iommufd_fd().unwrap();
    let mut r = || {
        let dev = untimed(|| {
            let dev = raw::open_device(bdf);
            raw::bind(&dev, iommu).unwrap();
            dev
        });
        let bar = raw_bar0(dev.as_fd());
        untimed(|| {
            munmap(bar);
            drop(dev);
        });
    };
    let mut c = || {
        let mut dev = untimed(|| Device::open(bdf).unwrap().bind(fd).unwrap());
        dev.map_bar(0).unwrap();
        untimed(|| drop(dev));
    };
    row(
        "map_bar, first call on a freshly bound edu (region info not cached)",
        50,
        &mut [("raw", &mut r), ("crate", &mut c)],
    );
}

/// `bind` of a device just opened (`VfToken::Check`: on a kernel that
/// checks VF tokens itself, nothing but the ioctl) against the raw
/// `VFIO_DEVICE_BIND_IOMMUFD`. Open and close run off the clock.
fn bind_row(fd: &Iommufd, bdf: &str) {
    let iommu = fd.iommufd_fd().unwrap();
    let mut r = || {
        let dev = untimed(|| raw::open_device(bdf));
        raw::bind(&dev, iommu).unwrap();
        untimed(|| drop(dev));
    };
    let mut c = || {
        let dev = untimed(|| Device::open(bdf).unwrap());
        let dev = dev.bind(fd).unwrap();
        untimed(|| drop(dev));
    };
    row(
        "bind of a freshly opened edu",
        50,
        &mut [("raw", &mut r), ("crate", &mut c)],
    );
}

/// Routing all 65 MSI-X vectors of the NVMe controller to eventfds: the
/// crate's `set_irq_eventfds` against one raw `VFIO_DEVICE_SET_IRQS`.
fn msix_row(fd: &Iommufd, bdf: &str) {
    const MSIX: u32 = 2;
    let dev = Device::open(bdf).unwrap().bind(fd).unwrap();
    let n = dev.irq_info(MSIX).unwrap().count;
    let evs: Vec<iommufd::EventFd> = (0..n).map(|_| iommufd::EventFd::new().unwrap()).collect();
    let raw_evs: Vec<iommufd::EventFd> = (0..n).map(|_| iommufd::EventFd::new().unwrap()).collect();
    let dev_fd = dev_fd_of(bdf);
    let mut r = || {
        // struct vfio_irq_set: argsz, flags (DATA_EVENTFD | ACTION_TRIGGER),
        // index, start, count, then the fds.
        let mut buf: Vec<u32> = Vec::with_capacity(5 + n as usize);
        buf.extend_from_slice(&[(4 * (5 + n)), (1 << 2) | (1 << 5), MSIX, 0, n]);
        buf.extend(raw_evs.iter().map(|e| e.as_raw_fd() as u32));
        // SAFETY: VFIO_DEVICE_SET_IRQS (0x3b6e) reads `argsz` bytes of `buf`.
        let rc = unsafe { nix::libc::ioctl(dev_fd.as_raw_fd(), 0x3b6e, buf.as_ptr()) };
        assert_eq!(rc, 0);
    };
    let mut c = || dev.set_irq_eventfds(MSIX, 0, &evs).unwrap();
    row(
        &format!("route all {n} MSI-X vectors to eventfds (NVMe): VFIO_DEVICE_SET_IRQS"),
        200,
        &mut [("raw", &mut r), ("crate", &mut c)],
    );
    // Enabled only if the row ran (IOMMUFD_BENCH_ONLY may skip it).
    let _ = dev.disable_irqs(MSIX);
}

/// Polled NVMe reads of 4 KiB through the NVMe example's queue pair
/// (`examples/nvme/driver.rs`), at queue depth 1 and 32: queue pair 1
/// through the crate's rings and registers, queue pair 2 through raw
/// pointers into memory of its own (mapped with `map_user_va`) and into the
/// mapped BAR. One call is one I/O: at depth 32 the queue is kept full, a
/// completion reaped and a read submitted per call. On the -icount clock
/// the spin while the emulated controller works counts too.
fn nvme_rows(fd: &Iommufd, bdf: &str) {
    use driver::{command, QueueMemory, QueuePair};
    const DEPTH: u16 = 64;
    let ioas = fd.alloc_ioas().unwrap();
    let dev = driver::open(bdf, fd, &ioas).unwrap();
    let bar = dev.mmio(0).unwrap();
    let mut admin = QueueMemory::new(&ioas, driver::ADMIN_DEPTH).unwrap();
    let mut ctl = driver::bring_up(&bar, &mut admin).unwrap();
    // Two I/O queue pairs (0-based counts in CDW11).
    let queues = command(driver::ADMIN_SET_FEATURES, 0, 0, [0x07, 1 | (1 << 16), 0]);
    ctl.admin(queues, "Set Features (queues)").unwrap();
    let dst = ioas
        .map(DmaBuffer::new(4096).unwrap(), Iova::Any, Access::WRITE)
        .unwrap();
    let read = command(driver::IO_READ, 1, dst.iova(), [0, 0, 7]);
    let mut mem = QueueMemory::new(&ioas, DEPTH).unwrap();
    ctl.create_io_queues(1, DEPTH, mem.sq.iova(), mem.cq.iova(), None)
        .unwrap();
    let mut raw_mem = driver::RawQueueMemory::new(&ioas, DEPTH).unwrap();
    ctl.create_io_queues(2, DEPTH, raw_mem.sq.iova(), raw_mem.cq.iova(), None)
        .unwrap();
    let raw_access = raw_mem.access(&bar, 2, ctl.stride).unwrap();
    let typed = mem
        .typed::<{ DEPTH as usize }>(&bar, 1, ctl.stride)
        .unwrap();
    let mut ours = QueuePair::new(typed, DEPTH);
    let mut theirs = QueuePair::new(raw_access, DEPTH);
    fn one<A: driver::Access>(q: &mut QueuePair<A>, read: [u64; 8]) {
        loop {
            if let Some(c) = q.reap().unwrap() {
                assert_eq!(c.code, 0);
                q.submit(read).unwrap();
                return;
            }
            std::hint::spin_loop();
        }
    }
    for depth in [1usize, 32] {
        // Fill: `depth` reads in flight on each queue pair.
        for _ in 0..depth {
            ours.submit(read).unwrap();
            theirs.submit(read).unwrap();
        }
        let mut r = || one(&mut theirs, read);
        let mut c = || one(&mut ours, read);
        row(
            &format!(
                "NVMe 4 KiB reads, polled, queue depth {depth}: one I/O (the example's queue pair)"
            ),
            if depth == 1 { 200 } else { 500 },
            &mut [("raw", &mut r), ("crate", &mut c)],
        );
        // Drain.
        for _ in 0..depth {
            while ours.reap().unwrap().is_none() {}
            while theirs.reap().unwrap().is_none() {}
        }
    }
    ctl.shut_down().unwrap();
}

/// Copies through the igb copy engine (`examples/igb/driver.rs`), polled:
/// the crate's rings and tail registers against raw pointers into rings of
/// their own (mapped with `map_user_va`) and into the mapped BAR. One call
/// is one copy, checked by its descriptors only. The device has one receive
/// queue in loopback, so the two sides take turns on it: the first call of
/// each batch points queue 0 at that side's rings (six register writes,
/// paid by both sides alike). Copies per second are 1e9 / the time.
fn igb_rows(fd: &Iommufd, bdf: &str) {
    use igb::{Engine, RawRingMemory, RingMemory};
    use std::cell::Cell;
    const BUF: usize = 1 << 20;
    let ioas = fd.alloc_ioas().unwrap();
    let dev = igb::open(bdf, fd, &ioas).unwrap();
    let bar = dev.mmio(0).unwrap();
    let mut rings = RingMemory::new(&ioas).unwrap();
    let mut raw_rings = RawRingMemory::new(&ioas).unwrap();
    let (tx, rx) = (rings.tx.iova(), rings.rx.iova());
    let (raw_tx, raw_rx) = (raw_rings.tx.iova(), raw_rings.rx.iova());
    igb::bring_up(&bar, tx, rx, false).unwrap();
    let mut pattern = DmaBuffer::new(BUF).unwrap();
    pattern.as_mut_slice().fill(0xa5);
    let src = ioas.map(pattern, Iova::Any, Access::READ).unwrap();
    let dst = ioas
        .map(DmaBuffer::new(BUF).unwrap(), Iova::Any, Access::WRITE)
        .unwrap();
    let (s, d) = (src.iova(), dst.iova());
    let mut ours = Engine::new(rings.typed(&bar).unwrap());
    let mut theirs = Engine::new(raw_rings.access(&bar).unwrap());
    // 0: the crate's rings are the device's; 1: the raw ones.
    let active = Cell::new(0);
    let take = |side: u32, tx: u64, rx: u64| -> bool {
        if active.get() == side {
            return false;
        }
        igb::point_rings(&bar, tx, rx).unwrap();
        active.set(side);
        true
    };
    for (len, iters) in [(60u64, 200), (1514, 200), (65536, 20)] {
        let mut r = || {
            if take(1, raw_tx, raw_rx) {
                theirs.restart();
            }
            if let Err(e) = theirs.copy(s, d, len, None) {
                panic!("raw side: {e}; {}", igb::state(&bar));
            }
        };
        let mut c = || {
            if take(0, tx, rx) {
                ours.restart();
            }
            if let Err(e) = ours.copy(s, d, len, None) {
                panic!("crate side: {e}; {}", igb::state(&bar));
            }
        };
        row(
            &format!(
                "igb copy engine, polled: one copy of {len} bytes ({} frames; the example's engine)",
                igb::frames(len).count()
            ),
            iters,
            &mut [("raw", &mut r), ("crate", &mut c)],
        );
    }
    igb::shut_down(&bar).unwrap();
}

/// Saving an mtty's state through the typed migration against raw
/// `VFIO_DEVICE_FEATURE` + `read` on the data fd: RUNNING -> PRE_COPY, read
/// what is ready, -> STOP_COPY (the same fd), read to its end, -> STOP ->
/// RUNNING. Each side has an mtty of its own.
fn migration_row(fd: &Iommufd) {
    use std::io::Read;
    const PRE_COPY: u32 = 6;
    const STOP_COPY: u32 = 3;
    const STOP: u32 = 1;
    const RUNNING: u32 = 2;
    let (ma, mb) = (support::Mtty::create(), support::Mtty::create());
    let raw_dev = support::open_rw(ma.cdev());
    raw::bind(&raw_dev, fd.iommufd_fd().unwrap()).unwrap();
    let dev = Device::open_cdev(mb.cdev()).unwrap().bind(fd).unwrap();
    // Bound, not attached: its DMA is blocked, and said so by name.
    let mut m = Some(dev.into_migration().unwrap().declare_no_dma());
    let mut buf = vec![0u8; 4096];
    let mut r = || {
        let data = raw::set_mig_state(&raw_dev, PRE_COPY).unwrap();
        // SAFETY: the kernel just returned this new fd.
        let data = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(data) };
        let mut n = nix::unistd::read(&data, &mut buf).unwrap();
        raw::set_mig_state(&raw_dev, STOP_COPY).unwrap();
        loop {
            match nix::unistd::read(&data, &mut buf).unwrap() {
                0 => break,
                k => n += k,
            }
        }
        raw::set_mig_state(&raw_dev, STOP).unwrap();
        raw::set_mig_state(&raw_dev, RUNNING).unwrap();
        black_box(n);
    };
    let mut buf = vec![0u8; 4096];
    let mut c = || {
        let mut saving = m.take().unwrap().pre_copy().unwrap();
        let mut n = saving.stream().read(&mut buf).unwrap();
        let mut saving = saving.stop_copy().unwrap();
        loop {
            match saving.stream().read(&mut buf).unwrap() {
                0 => break,
                k => n += k,
            }
        }
        m = Some(saving.stop().unwrap().running().unwrap());
        black_box(n);
    };
    row(
        "migration save (mtty): PRE_COPY, read, STOP_COPY, read to end, STOP, RUNNING",
        200,
        &mut [("raw", &mut r), ("crate", &mut c)],
    );
}

/// IOAS allocation + destruction.
fn alloc_row(raw: &Raw<'_>, fd: &Iommufd, peers: Option<&Peers>) {
    let mut r = || raw.destroy(raw.alloc());
    let mut c = || drop(black_box(fd.alloc_ioas().unwrap()));
    let mut sides: Vec<Side<'_>> = vec![("raw", &mut r), ("crate", &mut c)];
    let mut io;
    let mut vf;
    if let Some(p) = peers {
        // The peers own their `IommuFd` by `Arc`; one made here and kept.
        let shared = Arc::new(IommuFd::new_from_fd(
            raw.fd.try_clone_to_owned().unwrap().into(),
        ));
        let vfio_fd = p.vfio.iommufd().clone();
        io = move || {
            drop(black_box(
                iommufd_ioctls::IommufdIoas::new(shared.clone()).unwrap(),
            ))
        };
        vf = move || {
            drop(black_box(
                VfioIommufd::new(vfio_fd.clone(), None, None).unwrap(),
            ))
        };
        sides.push(("iommufd-ioctls", &mut io));
        sides.push(("vfio-ioctls", &mut vf));
    }
    row("IOAS alloc + destroy", 500, &mut sides);
}

/// Map + unmap of `len` bytes, fixed and kernel-chosen: raw and crate on the
/// same IOAS, iommufd-ioctls on it too, vfio-ioctls on its own (fixed only:
/// neither peer reports a kernel-chosen IOVA).
fn map_rows(
    raw: &Raw<'_>,
    ioas: &Ioas,
    peers: Option<&Peers>,
    len: usize,
    label: &str,
    iters: u32,
) {
    // Every side maps the same pages: the others map the buffer's address
    // while the crate does not hold it mapped (where the pages come from,
    // THP or not, matters more than anything a wrapper does).
    let mut buf = DmaBuffer::new(len).unwrap();
    buf.as_mut_slice()
        .iter_mut()
        .step_by(4096)
        .for_each(|b| *b = 1);
    let va = buf.as_mut_slice().as_mut_ptr() as u64;
    let mut slot = Some(buf);
    const AT: u64 = 0x4000_0000;
    let id = ioas.id();
    for (kind, at) in [("fixed", Some(AT)), ("kernel-chosen", None)] {
        let mut ours = || {
            let iova = at.map_or(Iova::Any, Iova::Fixed);
            let m = ioas
                .map(slot.take().unwrap(), iova, Access::READ_WRITE)
                .unwrap();
            black_box(m.iova());
            slot = Some(m.unmap().unwrap());
        };
        let mut r = || {
            let iova = raw.map(id, va, len as u64, at);
            raw.unmap(id, iova, len as u64);
        };
        let mut sides: Vec<Side<'_>> = vec![("raw", &mut r), ("crate", &mut ours)];
        let mut io;
        let mut vf;
        if let (Some(p), Some(at)) = (peers, at) {
            io = move || {
                let m = iommufd_bindings::iommufd::iommu_ioas_map {
                    size: 40,
                    flags: RW | FIXED,
                    ioas_id: id,
                    user_va: va,
                    length: len as u64,
                    iova: at,
                    ..Default::default()
                };
                p.ioctls.map_iommu_ioas(&m).unwrap();
                let mut u = iommufd_bindings::iommufd::iommu_ioas_unmap {
                    size: 24,
                    ioas_id: id,
                    iova: at,
                    length: len as u64,
                };
                p.ioctls.unmap_iommu_ioas(&mut u).unwrap();
            };
            vf = move || {
                // SAFETY: the buffer outlives the mapping, unmapped right away;
                // no reference to it is live while it is mapped.
                unsafe { p.vfio.vfio_dma_map(at, len, va as *mut u8) }.unwrap();
                p.vfio.vfio_dma_unmap(at, len).unwrap();
            };
            sides.push(("iommufd-ioctls", &mut io));
            sides.push(("vfio-ioctls", &mut vf));
        }
        row(
            &format!("map+unmap {label}, {kind} IOVA"),
            iters,
            &mut sides,
        );
    }
}

/// Map and unmap of 4 KiB with K live mappings beside it (#29): the
/// kernel's allocator walks the used spans from the bottom, so its
/// kernel-chosen IOVAs cost more with every live mapping, while the crate
/// chooses from its own record ([`Iova::Any`]). Each side has an IOAS of its
/// own with a device attached (pages pinned, the IOMMU page table written):
/// the raw side's mappings must not sit in the crate's IOAS, where the
/// crate would find them only by the kernel's `EEXIST` and then leave the
/// choice to the kernel. The raw side's K mappings are packed from the
/// bottom at fixed IOVAs, where the kernel's own choice puts them (so that
/// making 16 384 of them costs no quadratic walk); the crate's are its own
/// choice, the same packing.
fn live_rows(fd: &Iommufd, singles: &[String]) {
    let (Some(a), Some(b)) = (singles.get(3), singles.get(4)) else {
        println!("bench: | live mappings | skipped: needs 5 singleton edus |");
        return;
    };
    let ours = fd.alloc_ioas().unwrap();
    let _a = Device::open(a)
        .unwrap()
        .bind(fd)
        .unwrap()
        .attach(&ours)
        .unwrap();
    let theirs = fd.alloc_ioas().unwrap();
    let _b = Device::open(b)
        .unwrap()
        .bind(fd)
        .unwrap()
        .attach(&theirs)
        .unwrap();
    let raw = Raw {
        fd: fd.iommufd_fd().unwrap(),
    };
    let id = theirs.id();
    let mut live: Vec<Mapping<DmaBuffer>> = Vec::new();
    let mut raw_live: Vec<DmaBuffer> = Vec::new();
    // Far above every live mapping: the fixed rows' IOVA.
    const FAR: u64 = 1 << 32;
    for (k, iters) in [(1usize, 500u32), (1024, 200), (4096, 100), (16384, 30)] {
        eprintln!("bench: ... {k} live mappings: filling");
        while live.len() < k {
            let m = ours.map(DmaBuffer::new(4096).unwrap(), Iova::Any, Access::READ);
            live.push(m.unwrap());
        }
        while raw_live.len() < k {
            let mut buf = DmaBuffer::new(4096).unwrap();
            let va = buf.as_mut_slice().as_mut_ptr() as u64;
            let at = 4096 * (raw_live.len() as u64 + 1);
            raw.map(id, va, 4096, Some(at));
            raw_live.push(buf);
        }
        let (mut ours_slot, mut raw_slot) = (
            Some(DmaBuffer::new(4096).unwrap()),
            DmaBuffer::new(4096).unwrap(),
        );
        let va = raw_slot.as_mut_slice().as_mut_ptr() as u64;
        for (where_, at) in [("kernel-chosen", None), ("fixed", Some(FAR))] {
            let iova = at.map_or(Iova::Any, Iova::Fixed);
            let mut r = || {
                let got = raw.map(id, va, 4096, at);
                raw.unmap(id, got, 4096);
            };
            let mut c = || {
                let m = ours
                    .map(ours_slot.take().unwrap(), iova, Access::READ)
                    .unwrap();
                ours_slot = Some(m.unmap().unwrap());
            };
            row(
                &format!("map+unmap 4 KiB at a {where_} IOVA, {k} live mappings"),
                iters,
                &mut [("raw", &mut r), ("crate", &mut c)],
            );
        }
        // The same split: the map alone (the unmap off the clock), then
        // the unmap alone, at kernel-chosen IOVAs.
        for timed_map in [true, false] {
            let clock = |f: &mut dyn FnMut(), timed: bool| if timed { f() } else { untimed(f) };
            let mut r = || {
                let mut got = 0;
                clock(&mut || got = raw.map(id, va, 4096, None), timed_map);
                clock(&mut || raw.unmap(id, got, 4096), !timed_map);
            };
            let mut c = || {
                let mut m = None;
                clock(
                    &mut || {
                        m = Some(
                            ours.map(ours_slot.take().unwrap(), Iova::Any, Access::READ)
                                .unwrap(),
                        )
                    },
                    timed_map,
                );
                clock(
                    &mut || ours_slot = Some(m.take().unwrap().unmap().unwrap()),
                    !timed_map,
                );
            };
            let what = if timed_map { "map" } else { "unmap" };
            row(
                &format!("{what} alone of 4 KiB at a kernel-chosen IOVA, {k} live mappings"),
                iters,
                &mut [("raw", &mut r), ("crate", &mut c)],
            );
        }
    }
    for i in 0..raw_live.len() as u64 {
        raw.unmap(id, 4096 * (i + 1), 4096);
    }
    drop(raw_live);
    drop(live);
}

/// Device rows: open, open + bind + attach, config_read, Mmio::read32.
fn device_rows(
    fd: &Iommufd,
    dev: &Device<iommufd::Attached<Ioas>>,
    singles: &[String],
    peers: Option<&Peers>,
) {
    let bdf = &singles[0];
    let path = sysfs_path(bdf);
    let mut r = || drop(black_box(raw::open_device(bdf)));
    let mut c = || drop(black_box(Device::open(bdf).unwrap()));
    let mut v = || drop(black_box(VfioDevice::open_cdev(&path).unwrap()));
    row(
        "Device::open + close (from a BDF; the device is bound elsewhere)",
        200,
        &mut [("raw", &mut r), ("crate", &mut c), ("vfio-ioctls", &mut v)],
    );

    // Open + bind + attach of a device nobody holds, each side into an empty
    // IOAS of its own, then close (the close is off the clock).
    if let Some(free) = singles.get(2) {
        let raw = Raw {
            fd: fd.iommufd_fd().unwrap(),
        };
        let raw_ioas = raw.alloc();
        let ioas = fd.alloc_ioas().unwrap();
        let vfio: Arc<dyn VfioOps> =
            Arc::new(VfioIommufd::new(Arc::new(IommuFd::new().unwrap()), None, None).unwrap());
        let path = sysfs_path(free);
        let mut r = || {
            let d = raw.device(free, raw_ioas);
            untimed(|| drop(d));
        };
        let mut c = || {
            let d = Device::open(free)
                .unwrap()
                .bind(fd)
                .unwrap()
                .attach(&ioas)
                .unwrap();
            untimed(|| drop(d));
        };
        let mut v = || {
            let d = VfioDevice::new(&path, vfio.clone(), true).unwrap();
            untimed(|| drop(d));
        };
        row(
            "open + bind + attach (empty IOAS)",
            20,
            &mut [("raw", &mut r), ("crate", &mut c), ("vfio-ioctls", &mut v)],
        );
        raw.destroy(raw_ioas);
    }

    // config_read: pread on the config region, raw (offset asked once) and crate.
    let info = dev.region_info(iommufd::pci::CONFIG).unwrap();
    let dev_fd = dev_fd_of(bdf);
    let mut b = [0u8; 4];
    let mut c = [0u8; 4];
    let mut vb = [0u8; 4];
    let mut r = || {
        nix::sys::uio::pread(&dev_fd, &mut b, info.offset as i64).unwrap();
        black_box(&b);
    };
    let mut ours = || {
        dev.config_read(0, &mut c).unwrap();
        black_box(&c);
    };
    let mut v;
    let mut sides: Vec<Side<'_>> = vec![("raw", &mut r), ("crate", &mut ours)];
    if let Some(p) = peers {
        v = || {
            p._vfio_dev.region_read(iommufd::pci::CONFIG, &mut vb, 0);
            black_box(&vb);
        };
        sides.push(("vfio-ioctls", &mut v));
    }
    row("config_read 4 bytes", 5000, &mut sides);

    // Mmio::read32 against a volatile load from the same mapping.
    let mmio = dev.mmio(0).unwrap();
    let p = mmio.host_address(0).unwrap() as *const u32;
    let mut r = || {
        // SAFETY: `p` is BAR0 offset 0 of the live mapping `mmio` borrows.
        black_box(unsafe { p.read_volatile() });
    };
    let mut c = || {
        black_box(mmio.read32(0).unwrap());
    };
    row(
        "Mmio::read32",
        20000,
        &mut [("raw", &mut r), ("crate", &mut c)],
    );
}

/// Bring-up of `bdfs`: open /dev/iommu, allocate an IOAS, open, bind and
/// attach every device, map 256 MiB, map each BAR0 and read it once.
/// Teardown runs off the clock. `big` is the 256 MiB every side maps.
fn bring_up(bdfs: &[String], big: &mut Option<DmaBuffer>) {
    const LEN: usize = 256 << 20;
    let va = big.as_mut().unwrap().as_mut_slice().as_mut_ptr();
    let mut r = || {
        let iommu = support::open_rw("/dev/iommu");
        let raw = Raw { fd: iommu.as_fd() };
        let ioas = raw.alloc();
        let devs: Vec<OwnedFd> = bdfs.iter().map(|b| raw.device(b, ioas)).collect();
        raw.map(ioas, va as u64, LEN as u64, Some(0));
        let bars: Vec<_> = devs.iter().map(|d| raw_bar0(d.as_fd())).collect();
        for b in &bars {
            black_box(read_bar(*b));
        }
        untimed(|| {
            bars.into_iter().for_each(munmap);
            drop(devs);
            raw.unmap(ioas, 0, LEN as u64);
            raw.destroy(ioas);
        });
    };
    let mut c = || {
        let fd = Iommufd::open().unwrap();
        let ioas = fd.alloc_ioas().unwrap();
        let mut devs: Vec<_> = bdfs
            .iter()
            .map(|b| {
                Device::open(b)
                    .unwrap()
                    .bind(&fd)
                    .unwrap()
                    .attach(&ioas)
                    .unwrap()
            })
            .collect();
        let m = ioas
            .map(big.take().unwrap(), Iova::Fixed(0), Access::READ_WRITE)
            .unwrap();
        for d in &mut devs {
            d.map_bar(0).unwrap();
            black_box(d.mmio(0).unwrap().read32(0).unwrap());
        }
        untimed(|| {
            drop(devs);
            *big = Some(m.unmap().unwrap());
        });
    };
    let mut v = || {
        let vfio =
            Arc::new(VfioIommufd::new(Arc::new(IommuFd::new().unwrap()), None, None).unwrap());
        let ops: Arc<dyn VfioOps> = vfio.clone();
        let devs: Vec<VfioDevice> = bdfs
            .iter()
            .map(|b| VfioDevice::new(&sysfs_path(b), ops.clone(), true).unwrap())
            .collect();
        // SAFETY: the buffer outlives the mapping (unmapped below); no
        // reference to it is live while it is mapped.
        unsafe { vfio.vfio_dma_map(0, LEN, va) }.unwrap();
        let bars: Vec<_> = devs
            .iter()
            .map(|d| {
                // SAFETY: the fd is the live VfioDevice's, borrowed for the mmap.
                let fd = unsafe { BorrowedFd::borrow_raw(d.as_raw_fd()) };
                bar_mmap(fd, d.get_region_offset(0), d.get_region_size(0) as usize)
            })
            .collect();
        for b in &bars {
            black_box(read_bar(*b));
        }
        untimed(|| {
            bars.into_iter().for_each(munmap);
            vfio.vfio_dma_unmap(0, LEN).unwrap();
            drop(devs);
        });
    };
    let n = bdfs.len();
    row(
        &format!(
            "bring-up of {n} device{}: open, bind, attach, map 256 MiB, map BAR0, read",
            if n == 1 { "" } else { "s" }
        ),
        1,
        &mut [("raw", &mut r), ("crate", &mut c), ("vfio-ioctls", &mut v)],
    );
}

/// Map + unmap of 64 MiB and 512 MiB through the crate, by kind of memory,
/// with THP set to `madvise` (as many distributions ship it): `DmaBuffer`
/// (asks for THP), plain 4 KiB pages, and hugetlbfs (`HugeBuffer`, mapped
/// with `IOMMU_IOAS_MAP_FILE`). The "raw" column is 4 KiB pages, the
/// "crate" column the kind: a ratio below 1 is faster.
/// Each kind of memory mapped (and unmapped) through the crate against the
/// raw ioctl on the same kind: the crate's cost per kind, where
/// `memory_kinds` compares the kinds.
fn kinds_against_raw(
    ioas: &Ioas,
    mib: usize,
    iters: u32,
    small: &mut Option<memmap2::MmapMut>,
    thp: &mut Option<DmaBuffer>,
) {
    let len = mib << 20;
    let fd = ioas.iommufd().iommufd_fd().unwrap();
    let id = ioas.id();
    let label = format!("map+unmap {mib} MiB, 4 KiB pages (MmapMut)");
    kind_against_raw(ioas, &label, iters, small);
    let label = format!("map+unmap {mib} MiB, DmaBuffer (THP)");
    kind_against_raw(ioas, &label, iters, thp);
    // hugetlbfs: the crate's `map_huge` against a raw IOMMU_IOAS_MAP_FILE of a
    // hugetlb memfd of its own (kernels with MAP_FILE only).
    let (Ok(huge), Ok(memfd)) = (iommufd::HugeBuffer::new(len), hugetlb_memfd(len)) else {
        println!("bench: | map+unmap {mib} MiB, HugeBuffer | skipped: no hugetlbfs pages |");
        return;
    };
    if raw::map_file(fd, id, &memfd, len as u64)
        .and_then(|iova| raw::unmap(fd, id, iova, len as u64))
        .is_err()
    {
        println!("bench: | map+unmap {mib} MiB, HugeBuffer | skipped: no IOMMU_IOAS_MAP_FILE |");
        return;
    }
    let mut r = || {
        let iova = raw::map_file(fd, id, &memfd, len as u64).unwrap();
        raw::unmap(fd, id, iova, len as u64).unwrap();
    };
    let mut h = Some(huge);
    let mut c = || {
        let m = ioas
            .map_huge(h.take().unwrap(), Iova::Any, Access::READ_WRITE)
            .unwrap();
        h = Some(m.unmap().unwrap());
    };
    row(
        &format!("map+unmap {mib} MiB, HugeBuffer (map_huge, MAP_FILE)"),
        iters,
        &mut [("raw", &mut r), ("crate", &mut c)],
    );
}

/// One row: the memory in `slot` mapped and unmapped through the crate,
/// against raw ioctls on the same memory.
fn kind_against_raw<M: DmaMemory>(ioas: &Ioas, label: &str, iters: u32, slot: &mut Option<M>) {
    let (fd, id) = (ioas.iommufd().iommufd_fd().unwrap(), ioas.id());
    let (va, len) = slot.as_mut().unwrap().dma_region();
    let (va, len) = (va.as_ptr() as u64, len as u64);
    let mut r = || {
        // SAFETY: `slot` holds the memory past the row; the crate's side
        // does not hold it mapped while this side runs.
        let iova = unsafe { raw::map(fd, id, va, len, None) }.unwrap();
        raw::unmap(fd, id, iova, len).unwrap();
    };
    let mut c = || crate_cycle(ioas, slot, true);
    row(label, iters, &mut [("raw", &mut r), ("crate", &mut c)]);
}

/// One map of the memory in `slot` through the crate, and its unmap, timed
/// or off the clock; the memory goes back into `slot`.
fn crate_cycle<M: DmaMemory>(ioas: &Ioas, slot: &mut Option<M>, timed_unmap: bool) {
    let m = ioas
        .map(slot.take().unwrap(), Iova::Any, Access::READ_WRITE)
        .unwrap_or_else(|e| panic!("{e}"));
    *slot = Some(unmap_maybe_untimed(m, timed_unmap));
}

/// A hugetlbfs memfd of `len` bytes, every page faulted in.
fn hugetlb_memfd(len: usize) -> nix::Result<OwnedFd> {
    filled_memfd(len, true)
}

/// A memfd of `len` bytes (hugetlbfs when `huge`, else shmem), every page
/// faulted in.
fn filled_memfd(len: usize, huge: bool) -> nix::Result<OwnedFd> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let flags = MFdFlags::MFD_CLOEXEC
        | if huge {
            MFdFlags::MFD_HUGETLB
        } else {
            MFdFlags::empty()
        };
    let fd = memfd_create(c"bench", flags)?;
    nix::unistd::ftruncate(&fd, len as i64)?;
    // SAFETY: a fresh shared mapping of our own memfd, unmapped before
    // returning; nothing else maps it.
    let mut map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(&fd) }
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    map.iter_mut().step_by(4096).for_each(|b| *b = 1);
    Ok(fd)
}

/// `Ioas::map_file` of the start of a memfd (shmem, and hugetlbfs) at a
/// kernel-chosen IOVA against the raw `IOMMU_IOAS_MAP_FILE`: nothing runs
/// before the ioctl (a bad file is explained after the kernel refuses it),
/// and the crate chooses the IOVA as for `map` (#29).
fn map_file_rows(ioas: &Ioas) {
    let (fd, id) = (ioas.iommufd().iommufd_fd().unwrap(), ioas.id());
    // One 2 MiB page for the hugetlbfs memfd, given back at the end.
    let _ = std::fs::write("/proc/sys/vm/nr_hugepages", "1");
    for (kind, huge) in [("shmem", false), ("hugetlbfs", true)] {
        let Ok(memfd) = filled_memfd(2 << 20, huge) else {
            println!("bench: | map_file of a {kind} memfd | skipped: no memfd of 2 MiB |");
            continue;
        };
        if raw::map_file(fd, id, &memfd, 4096)
            .and_then(|iova| raw::unmap(fd, id, iova, 4096))
            .is_err()
        {
            println!("bench: | map_file of a {kind} memfd | skipped: no IOMMU_IOAS_MAP_FILE |");
            break;
        }
        for (len, label, iters) in [(4u64 << 10, "4 KiB", 1000), (64 << 10, "64 KiB", 500)] {
            let mut r = || {
                let iova = raw::map_file(fd, id, &memfd, len).unwrap();
                raw::unmap(fd, id, iova, len).unwrap();
            };
            let mut c = || {
                let m = ioas
                    .map_file(&memfd, 0, len, Iova::Any, Access::READ_WRITE)
                    .unwrap();
                m.unmap().map_err(|e| e.to_string()).unwrap();
            };
            row(
                &format!("map_file+unmap {label} of a {kind} memfd, kernel-chosen IOVA"),
                iters,
                &mut [("raw", &mut r), ("crate", &mut c)],
            );
        }
    }
    let _ = std::fs::write("/proc/sys/vm/nr_hugepages", "0");
}

/// 1 GiB of DMA memory mapped and unmapped three ways: one 1 GiB hugetlbfs
/// page (reserved at boot by the harness), 512 pages of 2 MiB, and 4 KiB
/// pages; each side a `HugeBuffer` through `map_huge`, or plain memory
/// through `map`.
fn gib_pages(ioas: &Ioas) {
    use iommufd::{HugeBuffer, HugePage};
    const GIB: usize = 1 << 30;
    let mut gib = match HugeBuffer::with_pages(GIB, HugePage::Gib1) {
        Ok(h) => Some(h),
        Err(e) => {
            println!("bench: | 1 GiB pages | skipped: {e} |");
            return;
        }
    };
    // Each pair twice: the map alone (the unmap off the clock), and
    // map+unmap.
    let huge_cycle = |slot: &mut Option<HugeBuffer>, whole: bool| {
        let m = ioas
            .map_huge(slot.take().unwrap(), Iova::Any, Access::READ_WRITE)
            .unwrap();
        *slot = Some(unmap_maybe_untimed(m, whole));
    };
    let _ = std::fs::write("/proc/sys/vm/nr_hugepages", (GIB >> 21).to_string());
    eprintln!("bench: ... 1 GiB of 2 MiB pages");
    match HugeBuffer::with_pages(GIB, HugePage::Mib2) {
        Ok(h) => {
            let mut mib = Some(h);
            for whole in [false, true] {
                let what = if whole { "map+unmap" } else { "map" };
                let mut r = || huge_cycle(&mut mib, whole);
                let mut c = || huge_cycle(&mut gib, whole);
                row(
                    &format!("1 GiB {what}: HugeBuffer of 1 GiB pages against 2 MiB pages"),
                    1,
                    &mut [("raw", &mut r), ("crate", &mut c)],
                );
            }
        }
        Err(e) => println!("bench: | 1 GiB of 2 MiB pages | skipped: {e} |"),
    }
    let _ = std::fs::write("/proc/sys/vm/nr_hugepages", "0");
    eprintln!("bench: ... 1 GiB of 4 KiB pages");
    let mut small = memmap2::MmapOptions::new().len(GIB).map_anon().unwrap();
    let _ = small.advise(memmap2::Advice::NoHugePage);
    small.iter_mut().step_by(4096).for_each(|b| *b = 1);
    let mut small = Some(small);
    for whole in [false, true] {
        let what = if whole { "map+unmap" } else { "map" };
        let mut r = || crate_cycle(ioas, &mut small, whole);
        let mut c = || huge_cycle(&mut gib, whole);
        row(
            &format!("1 GiB {what}: HugeBuffer of 1 GiB pages against 4 KiB pages"),
            1,
            &mut [("raw", &mut r), ("crate", &mut c)],
        );
    }
}

fn memory_kinds(ioas: &Ioas) {
    const THP: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
    let thp_before = std::fs::read_to_string(THP).unwrap_or_default();
    let _ = std::fs::write(THP, "madvise");
    for (len, iters) in [(64usize << 20, 3u32), (512 << 20, 1)] {
        let mib = len >> 20;
        // Twice the buffer: the crate's HugeBuffer, and the raw side's memfd.
        let _ = std::fs::write("/proc/sys/vm/nr_hugepages", (len / (1 << 20)).to_string());
        eprintln!("bench: ... memory kinds: {mib} MiB");
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
        // Setting up hundreds of MiB prints nothing for a while, longer
        // than the harness's 90 s watchdog when every row here is filtered
        // out (`IOMMUFD_BENCH_ONLY`) on the -icount clock.
        eprintln!("bench: ... memory kinds: {mib} MiB buffers touched");
        kinds_against_raw(ioas, mib, iters, &mut small, &mut thp);
        eprintln!("bench: ... memory kinds: {mib} MiB, crate against raw done");
        let mut huge = match iommufd::HugeBuffer::new(len) {
            Ok(h) => Some(Some(h)),
            Err(e) => {
                println!("bench: | {mib} MiB: HugeBuffer | skipped: {e} |");
                None
            }
        };
        // Each kind twice: map only (the unmap off the clock), and map+unmap.
        for whole in [false, true] {
            let what = if whole { "map+unmap" } else { "map" };
            let mut map_small = || crate_cycle(ioas, &mut small, whole);
            let mut map_thp = || crate_cycle(ioas, &mut thp, whole);
            row(
                &format!("{mib} MiB {what}: DmaBuffer (THP) against 4 KiB pages"),
                iters,
                &mut [("raw", &mut map_small), ("crate", &mut map_thp)],
            );
            if let Some(h) = huge.as_mut() {
                let mut map_huge = || {
                    let m = ioas
                        .map_huge(h.take().unwrap(), Iova::Any, Access::READ_WRITE)
                        .unwrap();
                    *h = Some(unmap_maybe_untimed(m, whole));
                };
                row(
                    &format!(
                        "{mib} MiB {what}: HugeBuffer (hugetlbfs, map_huge) against 4 KiB pages"
                    ),
                    iters,
                    &mut [("raw", &mut map_small), ("crate", &mut map_huge)],
                );
            }
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

/// Unmaps `m`, on the clock when `timed`, and hands the memory back.
fn unmap_maybe_untimed<M>(m: Mapping<M>, timed: bool) -> M {
    if timed {
        m.unmap().unwrap()
    } else {
        untimed(|| m.unmap().unwrap())
    }
}

/// A duplicate of the bound device fd the crate holds for `bdf` (found in
/// `/proc/self/fd`), for the raw side's `pread`.
fn dev_fd_of(bdf: &str) -> OwnedFd {
    let n = iommufd::sysfs::cdev_name(Path::new("/sys"), bdf).unwrap();
    let cdev = Path::new("/dev/vfio/devices").join(n);
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
