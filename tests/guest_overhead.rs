//! What the crate adds to the raw ioctls on the success path, counted
//! rather than timed.
//!
//! This test re-runs itself under valgrind (callgrind, `--trace-syscalls=yes`)
//! once with raw ioctls and once through the crate. Each operation runs `N`
//! times inside a function of its own (`measure_*`), whose inclusive
//! instruction count callgrind reports, between two marker syscalls
//! (`getppid`) that fence its syscalls in the trace; set-up stays outside
//! both. Two rules:
//!
//! - **the same syscalls**: nothing before or after the ioctl that the raw
//!   call does not need (a query, a sysfs lookup, an allocation that asks
//!   the kernel for memory); `Device::open` may add the two of its group
//!   check;
//! - **a bounded number of user-space instructions** above raw: the crate's
//!   bookkeeping (the IOAS's lock and table of live mappings, the handle a
//!   mapping holds). The budgets are about 1.3× what the crate spends
//!   today; an error string formatted on the success path, or a second
//!   table lookup, breaks them.
//!
//! Callgrind counts are exact and repeat from run to run, where times under
//! TCG on a shared host do not. The instruction budgets hold for release
//! builds, which is how `cargo xtask vmtest` builds this test.

mod support;

#[path = "../examples/nvme/driver.rs"]
mod driver;

use iommufd::hwpt::Paging;
use iommufd::{Access, Device, DmaBuffer, Hwpt, Ioas, Iommufd, Iova};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::Command;
use support::{raw, Topology};

/// Set in the runs under valgrind: which side they measure.
const RUN: &str = "IOMMUFD_OVERHEAD_RUN";
const TEST: &str = "the_crate_adds_no_syscall_and_few_instructions_to_the_raw_ioctls";
/// Operations per measurement.
const N: u64 = 100;

/// (kind, what, syscalls and user-space instructions the crate may add per
/// operation). Each kind is measured by the function `measure_<kind>`.
const BUDGETS: &[(&str, &str, u64, u64)] = &[
    // +285 before the IOVA chooser (`crate::gaps`), +350 since: its hooks
    // on the record (a pointer test at each insert and remove) and the
    // map path's new shape (the IOVA to map at passed to the ioctl's
    // closure, a cold retry beside it). Measured on the instruction
    // clock, the fixed 4 KiB row went from 1.020 to 1.029 of raw.
    ("fixed", "4 KiB map + unmap at a fixed IOVA", 0, 420),
    // The crate chooses a kernel-chosen IOVA itself (`crate::gaps`): about
    // 70 instructions here, with one live mapping, and the kernel's walk of
    // the IOAS's used spans saved in exchange; counted on the instruction
    // clock (kernel and user), the bench's "map+unmap 4 KiB at a
    // kernel-chosen IOVA, 1 live mappings" row costs 1.00 of raw, 0.02 of
    // it with 16 384 live mappings. About +410 measured.
    ("any", "4 KiB map + unmap at a kernel-chosen IOVA", 0, 500),
    // No `fstat` of the file before the ioctl: a bad file is explained
    // after the kernel refuses it; the IOVA chosen as for "any". Both sides
    // run nothing on 6.12. About +460 measured.
    (
        "mapfile",
        "4 KiB map_file + unmap of a memfd at a kernel-chosen IOVA",
        0,
        560,
    ),
    ("config", "config_read of 4 bytes", 0, 45),
    ("attach", "attach + detach", 0, 240),
    ("hwpt", "attach + detach onto an HWPT", 0, 265),
    // The group check (see the crate's soundness section) lists the
    // device's `iommu_group/devices`: `openat` (relative to `vfio-dev`,
    // which both sides list), `getdents64`, `close`; and the crate needs
    // no `fstat` where std's `read_dir` asks one: two more in all.
    // Measured +1944 to +1974 across runs (the raw side moves too): 2 000
    // left no room for the noise of a run.
    ("open", "Device::open from a BDF + close", 2, 2_400),
    (
        "migration",
        "migration arcs RUNNING -> STOP -> RUNNING (mtty)",
        0,
        180,
    ),
    // The witness the save arcs need (rule 33) is a type: entering and
    // leaving a save state costs what two arcs and the stream's close do.
    (
        "save",
        "save arcs RUNNING -> PRE_COPY -> RUNNING (mtty, declared NoDma)",
        0,
        220,
    ),
    // The header and one fd on the stack; about +100 measured.
    ("msix", "MSI-X: route vector 1 to an eventfd (NVMe)", 0, 140),
    // The test driver's mock device; on 6.12, which makes none next to
    // VT-d, and without the feature, both sides measure an empty loop. The
    // crate first checks that the range is one run of mappings (the IOAS's
    // lock and a search of its table): the kernel stops silently at the
    // first hole, so a range with holes is read run by run.
    (
        "dirty",
        "dirty bits of 64 KiB into a reused buffer (test driver)",
        0,
        210,
    ),
    // One polled 4 KiB read through the NVMe example's queue pair
    // (`examples/nvme/driver.rs`): the submission entry, its doorbell, the
    // completion's status, id and result, its doorbell. The raw side runs
    // the same code on raw pointers. The crate's rings and registers are
    // checked once, when made (`FixedRing`: indices wrap with one AND;
    // `Register`); +2 measured, 76 against 78 (1.03). With `Ring`, whose
    // every access checks its index and returns a `Result`, it was +11.
    (
        "nvme",
        "NVMe 4 KiB read: submit + reap, polled (example's queue pair)",
        0,
        6,
    ),
    // "any" with 16 384 live mappings in the IOAS (#29), measured last (its
    // set-up makes and drops 16 384 mappings). The crate's record and its
    // index of free holes stay flat (the lowest hole takes and gives back
    // in place), so this costs about what "any" does: +517 measured,
    // against +419; with `BTreeMap`s it was about +1 400 more. The 0.01
    // more syscalls per operation is the record's new last run, allocated
    // once, at the first map.
    (
        "many",
        "4 KiB map + unmap at a kernel-chosen IOVA, 16 384 live mappings",
        0,
        620,
    ),
];

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn the_crate_adds_no_syscall_and_few_instructions_to_the_raw_ioctls() {
    if let Ok(side) = std::env::var(RUN) {
        return body(side == "raw");
    }
    let have = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        have,
        "valgrind is missing: `cargo xtask vmtest` installs it on the host, whose root the guest mounts"
    );
    let raw = count("raw");
    let ours = count("crate");
    let mut failures = Vec::new();
    for &(kind, what, sys_budget, budget) in BUDGETS {
        let ((raw_sys, raw_ins), (our_sys, our_ins)) = (&raw[kind], &ours[kind]);
        let total = |c: &Calls| c.values().sum::<u64>() as f64 / N as f64;
        let (rs, os) = (total(raw_sys), total(our_sys));
        let (ri, oi) = (raw_ins / N, our_ins / N);
        println!(
            "{what}: syscalls raw {rs:.2}, crate {os:.2}; user-space instructions raw {ri}, crate {oi} (+{}, budget +{budget})",
            oi.saturating_sub(ri)
        );
        if os > rs + sys_budget as f64 + 0.05 {
            failures.push(format!(
                "{what}: {os:.2} syscalls per operation against raw's {rs:.2} (+{sys_budget} allowed); in {N} operations, raw {raw_sys:?}, crate {our_sys:?}"
            ));
        }
        // Budgets are for optimized code (`cargo xtask vmtest` builds this
        // test in release); a debug build checks the syscalls only.
        if oi > ri + budget && !cfg!(debug_assertions) {
            failures.push(format!(
                "{what}: {oi} user-space instructions per operation, raw {ri}: +{} over a budget of +{budget}",
                oi - ri
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// How many times each syscall was made.
type Calls = BTreeMap<String, u64>;

/// Runs this test's body under callgrind for `side`; returns, per kind, the
/// syscalls and the user-space instructions of its `N` operations.
fn count(side: &str) -> BTreeMap<&'static str, (Calls, u64)> {
    let out = std::env::temp_dir().join(format!("iommufd-overhead.{side}"));
    let run = Command::new("valgrind")
        .args(["--tool=callgrind", "--trace-syscalls=yes"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--include-ignored", "--test-threads=1"])
        .env(RUN, side)
        .output()
        .unwrap();
    // Straight to the console, past libtest's capture: the harness takes
    // 90 s of silence for a hang.
    let _ = writeln!(std::io::stderr(), "overhead: {side} side counted");
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "the {side} side under valgrind failed:\n{}\n{}",
        log.lines()
            .filter(|l| !l.starts_with("SYSCALL[")
                && !l.starts_with(" --> ")
                && !l.contains("README_MISSING")
                && !l.contains("spurious value"))
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&run.stdout)
    );
    // `SYSCALL[pid,tid](nr) sys_name ( args ...`, and for some a second
    // line, `SYSCALL[pid,tid](nr) ... [async] --> Success(..)`; the kinds
    // run in `BUDGETS` order, each fenced by two `getppid`s.
    let mut fenced: Vec<Calls> = Vec::new();
    let mut inside = false;
    for l in log.lines().filter(|l| l.starts_with("SYSCALL[")) {
        let name = l.split_whitespace().nth(1).unwrap_or("?");
        if !name.starts_with("sys_") {
            continue;
        }
        if name.starts_with("sys_getppid") {
            inside = !inside;
            if inside {
                fenced.push(Calls::new());
            }
        } else if inside {
            *fenced.last_mut().unwrap().entry(name.into()).or_default() += 1;
        }
    }
    assert_eq!(fenced.len(), BUDGETS.len(), "one fenced stretch per kind");
    let annotate = Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(&out)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&out);
    let text = String::from_utf8_lossy(&annotate.stdout);
    BUDGETS
        .iter()
        .zip(fenced)
        .map(|(&(kind, ..), calls)| {
            // `  1,234 (5.6%)  tests/guest_overhead.rs:guest_overhead::measure_fixed [...]`
            let f = format!("guest_overhead::measure_{kind}");
            let ins = text
                .lines()
                .find(|l| l.contains(&f))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.replace(',', "").parse().ok())
                .unwrap_or_else(|| panic!("no {f} in callgrind's annotation:\n{text}"));
            (kind, (calls, ins))
        })
        .collect()
}

/// The run under valgrind: every kind, in `BUDGETS` order, set up, then
/// measured between two marker syscalls.
fn body(raw: bool) {
    let topo = Topology::discover();
    let bdf = topo.singleton;
    let nvme_bdf = topo.nvme.expect("no NVMe controller");
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let fence = || {
        let _ = std::os::unix::process::parent_id();
    };
    let mut buf = Some(DmaBuffer::new(4096).unwrap());
    for at in [Some(0x4000_0000u64), None] {
        fence();
        if at.is_some() {
            measure_fixed(raw, &fd, &ioas, &mut buf, at);
        } else {
            measure_any(raw, &fd, &ioas, &mut buf, at);
        }
        fence();
    }
    map_file(raw, &fd, &ioas, fence);
    if raw {
        let dev = raw::open_device(&bdf);
        let dev_id = raw::bind_dev_id(&dev, fd.iommufd_fd().unwrap()).unwrap();
        let (_, config) = raw::region(&dev, iommufd::pci::CONFIG).unwrap();
        fence();
        measure_config(|b| {
            nix::sys::uio::pread(&dev, b, config as i64).unwrap();
        });
        fence();
        fence();
        measure_attach(|| {
            raw::attach(&dev, ioas.id()).unwrap();
            raw::detach(&dev).unwrap();
        });
        fence();
        let hwpt = raw::hwpt_alloc(fd.iommufd_fd().unwrap(), dev_id, ioas.id()).unwrap();
        fence();
        measure_hwpt(|| {
            raw::attach(&dev, hwpt).unwrap();
            raw::detach(&dev).unwrap();
        });
        fence();
        raw::destroy(fd.iommufd_fd().unwrap(), hwpt).unwrap();
        drop(dev);
        fence();
        measure_open(|| drop(raw::open_device(&bdf)));
        fence();
        let mtty = support::Mtty::create();
        let dev = support::open_rw(mtty.cdev());
        raw::bind(&dev, fd.iommufd_fd().unwrap()).unwrap();
        fence();
        measure_migration(|| {
            raw::set_mig_state(&dev, STOP).unwrap();
            raw::set_mig_state(&dev, RUNNING).unwrap();
        });
        fence();
        fence();
        measure_save(|| {
            let data = raw::set_mig_state(&dev, PRE_COPY).unwrap();
            // SAFETY: the kernel just returned this new fd for us.
            drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(data) });
            raw::set_mig_state(&dev, RUNNING).unwrap();
        });
        fence();
        drop((dev, mtty));
        let nvme = raw::open_device(&nvme_bdf);
        raw::bind(&nvme, fd.iommufd_fd().unwrap()).unwrap();
        let ev = iommufd::EventFd::new().unwrap();
        let route = || {
            // struct vfio_irq_set: DATA_EVENTFD | ACTION_TRIGGER, MSI-X, vector 1.
            let buf = [24u32, (1 << 2) | (1 << 5), 2, 1, 1, ev.as_raw_fd() as u32];
            // SAFETY: VFIO_DEVICE_SET_IRQS (0x3b6e) reads `argsz` bytes of `buf`.
            let rc = unsafe { nix::libc::ioctl(nvme.as_raw_fd(), 0x3b6e, buf.as_ptr()) };
            assert_eq!(rc, 0);
        };
        route(); // enables MSI-X, as any first call would
        fence();
        measure_msix(route);
        fence();
        drop(nvme);
        dirty(raw, &fd, fence);
        nvme_io(raw, &fd, &nvme_bdf, fence);
    } else {
        let mut dev = Some(Device::open(&bdf).unwrap().bind(&fd).unwrap());
        let mut b = [0u8; 4];
        // The first read fills the region cache, as any first call would.
        dev.as_ref().unwrap().config_read(0, &mut b).unwrap();
        fence();
        measure_config(|b| dev.as_ref().unwrap().config_read(0, b).unwrap());
        fence();
        fence();
        measure_attach(|| {
            let d = dev.take().unwrap();
            dev = Some(d.attach(&ioas).unwrap().detach().unwrap());
        });
        fence();
        let hwpt = Hwpt::<Paging>::alloc(dev.as_ref().unwrap(), &ioas).unwrap();
        fence();
        measure_hwpt(|| {
            let d = dev.take().unwrap();
            dev = Some(d.attach(&hwpt).unwrap().detach().unwrap());
        });
        fence();
        drop((dev, hwpt));
        fence();
        measure_open(|| drop(Device::open(&bdf).unwrap()));
        fence();
        let mtty = support::Mtty::create();
        let dev = Device::open_cdev(mtty.cdev()).unwrap().bind(&fd).unwrap();
        // The capability probe (once per device) happens here, as any first call.
        let mut m = Some(dev.into_migration().unwrap());
        fence();
        measure_migration(|| {
            let stopped = m.take().unwrap().stop().unwrap();
            m = Some(stopped.running().unwrap());
        });
        fence();
        // mtty writes no guest memory: said so, by name.
        let mut s = Some(m.take().unwrap().declare_no_dma());
        fence();
        measure_save(|| {
            let saving = s.take().unwrap().pre_copy().unwrap();
            s = Some(saving.running().unwrap());
        });
        fence();
        drop((s, mtty));
        let nvme = Device::open(&nvme_bdf).unwrap().bind(&fd).unwrap();
        let ev = iommufd::EventFd::new().unwrap();
        let route = || nvme.set_irq_eventfds(2, 1, &[&ev]).unwrap();
        route(); // enables MSI-X, as any first call would
        fence();
        measure_msix(route);
        fence();
        drop(nvme);
        dirty(raw, &fd, fence);
        nvme_io(raw, &fd, &nvme_bdf, fence);
    }
    many(raw, &fd, fence);
}

/// The NVMe row: the controller brought up through the crate (not
/// measured), one I/O queue pair, polled; `N` reads of 4 KiB, each its
/// submission and its completion measured, the wait between them not. The
/// raw side's queues are its own memory (mapped with `map_user_va`) and its
/// doorbells raw pointers into the mapped BAR.
fn nvme_io(raw: bool, fd: &Iommufd, bdf: &str, fence: impl Fn()) {
    use driver::{command, QueueMemory, QueuePair};
    const DEPTH: u16 = 32;
    let ioas = fd.alloc_ioas().unwrap();
    let dev = driver::open(bdf, fd, &ioas).unwrap();
    let bar = dev.mmio(0).unwrap();
    let mut admin = QueueMemory::new(&ioas, driver::ADMIN_DEPTH).unwrap();
    let mut ctl = driver::bring_up(&bar, &mut admin).unwrap();
    let queues = command(driver::ADMIN_SET_FEATURES, 0, 0, [0x07, 0, 0]);
    ctl.admin(queues, "Set Features (queues)").unwrap();
    let dst = ioas
        .map(DmaBuffer::new(4096).unwrap(), Iova::Any, Access::WRITE)
        .unwrap();
    // 8 blocks of 512 bytes (the guest's namespace) from LBA 0.
    let read = command(driver::IO_READ, 1, dst.iova(), [0, 0, 7]);
    if raw {
        let mut mem = driver::RawQueueMemory::new(&ioas, DEPTH).unwrap();
        ctl.create_io_queues(1, DEPTH, mem.sq.iova(), mem.cq.iova(), None)
            .unwrap();
        let access = mem.access(&bar, 1, ctl.stride).unwrap();
        io_loop(QueuePair::new(access, DEPTH), read, &fence);
        ctl.shut_down().unwrap();
    } else {
        let mut mem = QueueMemory::new(&ioas, DEPTH).unwrap();
        ctl.create_io_queues(1, DEPTH, mem.sq.iova(), mem.cq.iova(), None)
            .unwrap();
        let typed = mem
            .typed::<{ DEPTH as usize }>(&bar, 1, ctl.stride)
            .unwrap();
        let q = QueuePair::new(typed, DEPTH);
        io_loop(q, read, &fence);
        ctl.shut_down().unwrap();
    }
}

fn io_loop<A: driver::Access>(mut q: driver::QueuePair<A>, read: [u64; 8], fence: &impl Fn()) {
    // One I/O first, as any driver's first.
    q.run(read, "Read", None).unwrap();
    fence();
    for _ in 0..N {
        measure_nvme(&mut || {
            q.submit(read).unwrap();
        });
        while !q.ready().unwrap() {
            std::hint::spin_loop();
        }
        measure_nvme(&mut || {
            let c = q.reap().unwrap().unwrap();
            assert_eq!(c.code, 0);
        });
    }
    fence();
}

/// Half an I/O (its submission or its completion); called twice per I/O.
#[inline(never)]
fn measure_nvme(step: &mut dyn FnMut()) {
    step()
}

/// The dirty-bitmap row: a mock device on a dirty-tracking HWPT over a
/// 64 KiB mapping, tracking on; the raw side zeroes its one-word bitmap
/// and issues `IOMMU_HWPT_GET_DIRTY_BITMAP`, the crate calls
/// `read_dirty_into` with a reused `DirtyBitmap`.
#[cfg(feature = "iommufd-test-driver")]
fn dirty(raw: bool, fd: &Iommufd, fence: impl Fn()) {
    use iommufd::hwpt::{DirtyBitmap, DirtyTracking};
    const BASE: u64 = 1 << 24;
    const LEN: u64 = 64 << 10;
    let ioas = fd.alloc_ioas().unwrap();
    let Ok(mut mock) = iommufd::mock::MockDevice::new(&ioas) else {
        fence();
        measure_dirty(nothing);
        fence();
        return;
    };
    let hwpt = Hwpt::<DirtyTracking>::alloc(&mock, &ioas).unwrap();
    mock.replace(&hwpt).unwrap();
    let _m = ioas
        .map(
            DmaBuffer::new(LEN as usize).unwrap(),
            Iova::Fixed(BASE),
            Access::READ_WRITE,
        )
        .unwrap();
    let tracking = hwpt.start_dirty_tracking().unwrap();
    if raw {
        let (iommu, id) = (fd.iommufd_fd().unwrap(), hwpt.id());
        let mut bits = [0u64; 1];
        fence();
        measure_dirty(|| {
            bits.fill(0);
            raw::get_dirty_bitmap(iommu, id, BASE, LEN, &mut bits);
        });
        fence();
    } else {
        let mut buf = DirtyBitmap::default();
        // The first read sizes the buffer, as any first call would.
        tracking
            .read_dirty_into(BASE, LEN, 4096, false, &mut buf)
            .unwrap();
        fence();
        measure_dirty(|| {
            tracking
                .read_dirty_into(BASE, LEN, 4096, false, &mut buf)
                .unwrap()
        });
        fence();
    }
}

#[cfg(not(feature = "iommufd-test-driver"))]
fn dirty(_: bool, _: &Iommufd, fence: impl Fn()) {
    fence();
    measure_dirty(nothing);
    fence();
}

/// The `MAP_FILE` row: a 4 KiB memfd mapped by file and unmapped, `N`
/// times; on a kernel without `IOMMU_IOAS_MAP_FILE`, nothing on both sides.
fn map_file(raw: bool, fd: &Iommufd, ioas: &Ioas, fence: impl Fn()) {
    let memfd =
        nix::sys::memfd::memfd_create(c"overhead", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
    nix::unistd::ftruncate(&memfd, 4096).unwrap();
    let iommu = fd.iommufd_fd().unwrap();
    let Ok(iova) = raw::map_file(iommu, ioas.id(), &memfd, 4096) else {
        fence();
        // Not `nothing`: a body of its own. With `nothing`, 6.12's run had
        // no `measure_mapfile` in callgrind's annotation (the same code as
        // `measure_dirty`'s, which the optimizer may fold into one).
        measure_mapfile(|| {
            std::hint::black_box(1u64);
        });
        fence();
        return;
    };
    raw::unmap(iommu, ioas.id(), iova, 4096).unwrap();
    fence();
    if raw {
        measure_mapfile(|| {
            let iova = raw::map_file(iommu, ioas.id(), &memfd, 4096).unwrap();
            raw::unmap(iommu, ioas.id(), iova, 4096).unwrap();
        });
    } else {
        measure_mapfile(|| {
            let m = ioas
                .map_file(&memfd, 0, 4096, Iova::Any, Access::READ_WRITE)
                .unwrap();
            m.unmap().unwrap();
        });
    }
    fence();
}

#[inline(never)]
fn measure_mapfile(mut cycle: impl FnMut()) {
    (0..N).for_each(|_| cycle());
}

/// What both sides measure where there is no mock device: a loop that
/// does something, so that the function stays in callgrind's annotation.
fn nothing() {
    std::hint::black_box(0u64);
}

#[inline(never)]
fn measure_dirty(mut read: impl FnMut()) {
    (0..N).for_each(|_| read());
}

#[inline(never)]
fn measure_msix(mut route: impl FnMut()) {
    (0..N).for_each(|_| route());
}

/// `enum vfio_device_mig_state`.
const STOP: u32 = 1;
const RUNNING: u32 = 2;
const PRE_COPY: u32 = 6;

#[inline(never)]
fn measure_migration(mut cycle: impl FnMut()) {
    (0..N).for_each(|_| cycle());
}

#[inline(never)]
fn measure_save(mut cycle: impl FnMut()) {
    (0..N).for_each(|_| cycle());
}

/// A 4 KiB map + unmap, `N` times, of the buffer in `buf` at `at`.
#[inline(never)]
fn measure_fixed(
    raw: bool,
    fd: &Iommufd,
    ioas: &Ioas,
    buf: &mut Option<DmaBuffer>,
    at: Option<u64>,
) {
    map_unmap(raw, fd, ioas, buf, at)
}

/// "any" in an IOAS of its own holding `MANY` live 4 KiB mappings, packed
/// from the bottom where a kernel-chosen IOVA puts them: the raw side maps
/// one page at fixed IOVAs (no device is attached, so nothing is pinned),
/// the crate its own buffers at IOVAs it chooses.
fn many(raw: bool, fd: &Iommufd, fence: impl Fn()) {
    const MANY: u64 = 16_384;
    let ioas = fd.alloc_ioas().unwrap();
    let iommu = fd.iommufd_fd().unwrap();
    let mut page = DmaBuffer::new(4096).unwrap();
    let va = page.as_mut_slice().as_mut_ptr() as u64;
    let mut live = Vec::new();
    for k in 1..=MANY {
        if raw {
            // SAFETY: `page` outlives these mappings, unmapped below.
            unsafe { raw::map(iommu, ioas.id(), va, 4096, Some(k * 4096)) }.unwrap();
        } else {
            let m = ioas.map(DmaBuffer::new(4096).unwrap(), Iova::Any, Access::READ_WRITE);
            live.push(m.unwrap());
        }
    }
    let mut buf = Some(DmaBuffer::new(4096).unwrap());
    fence();
    measure_many(raw, fd, &ioas, &mut buf);
    fence();
    if raw {
        raw::unmap(iommu, ioas.id(), 0, u64::MAX).unwrap();
    }
    drop(live);
    drop(page);
}

#[inline(never)]
fn measure_many(raw: bool, fd: &Iommufd, ioas: &Ioas, buf: &mut Option<DmaBuffer>) {
    // `black_box`: otherwise this body is `measure_any`'s with its `at`
    // propagated, and LLVM merges the two into one symbol.
    map_unmap(raw, fd, ioas, buf, std::hint::black_box(None))
}

#[inline(never)]
fn measure_any(raw: bool, fd: &Iommufd, ioas: &Ioas, buf: &mut Option<DmaBuffer>, at: Option<u64>) {
    map_unmap(raw, fd, ioas, buf, at)
}

#[inline(always)]
fn map_unmap(raw: bool, fd: &Iommufd, ioas: &Ioas, buf: &mut Option<DmaBuffer>, at: Option<u64>) {
    let va = buf.as_mut().unwrap().as_mut_slice().as_mut_ptr() as u64;
    let iommu = fd.iommufd_fd().unwrap();
    for _ in 0..N {
        if raw {
            // SAFETY: `buf` holds the buffer past this unmap.
            let iova = unsafe { raw::map(iommu, ioas.id(), va, 4096, at) }.unwrap();
            raw::unmap(iommu, ioas.id(), iova, 4096).unwrap();
        } else {
            let iova = at.map_or(Iova::Any, Iova::Fixed);
            let m = ioas
                .map(buf.take().unwrap(), iova, Access::READ_WRITE)
                .unwrap();
            *buf = Some(m.unmap().unwrap());
        }
    }
}

#[inline(never)]
fn measure_config(mut read: impl FnMut(&mut [u8])) {
    let mut b = [0u8; 4];
    for _ in 0..N {
        read(&mut b);
    }
    std::hint::black_box(b);
}

#[inline(never)]
fn measure_attach(mut cycle: impl FnMut()) {
    (0..N).for_each(|_| cycle());
}

#[inline(never)]
fn measure_hwpt(mut cycle: impl FnMut()) {
    (0..N).for_each(|_| cycle());
}

#[inline(never)]
fn measure_open(mut open: impl FnMut()) {
    (0..N).for_each(|_| open());
}
