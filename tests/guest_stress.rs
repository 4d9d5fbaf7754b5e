//! Leaks and threads, measured in the guest.
//!
//! - Many whole cycles (open → bind → IOAS → attach → map → unmap → detach →
//!   unbind → close) and many failed transitions must leave the fd count,
//!   the pinned pages (`VmPin`), RSS and the kernel's objects where they were.
//!   `IOMMUFD_LEAK_CYCLES` sets the count (CI: 300; the full run:
//!   `IOMMUFD_LEAK_CYCLES=10000 cargo xtask vmtest leak`).
//! - A shared IOAS under 4 threads mapping and unmapping, and MMIO reads on
//!   several threads while another maps: no deadlock, a consistent end state.
//!   `IOMMUFD_STRESS_ITERS` sets the iterations (CI: 2000; full: 10000).

mod support;

use iommufd::{Access, Device, DmaBuffer, ErrorKind, Group, Iommufd, Iova};
use nix::errno::Errno;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use support::{Topology, EDU_ID};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the process holds, from `/proc/self`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Held {
    fds: usize,
    pin_kb: u64,
    rss_kb: u64,
}

fn held() -> Held {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Held {
        fds: std::fs::read_dir("/proc/self/fd").unwrap().count(),
        pin_kb: kb("VmPin:"),
        rss_kb: kb("VmRSS:"),
    }
}

nix::ioctl_readwrite_bad!(raw_destroy, nix::request_code_none!(b';', 0x80), [u32; 2]);

/// Whether object `id` still exists in `fd`'s iommufd: `IOMMU_DESTROY` of a
/// freed id is `ENOENT`. (A live one would be destroyed, and reported.)
fn object_exists(fd: &Iommufd, id: u32) -> bool {
    let mut d = [8u32, id];
    // SAFETY: an 8-byte iommu_destroy.
    let r = unsafe { raw_destroy(fd.iommufd_fd().unwrap().as_raw_fd(), &mut d) };
    r != Err(Errno::ENOENT)
}

fn progress(what: &str, i: usize, of: usize) {
    if (i + 1) % 1000 == 0 {
        eprintln!("leak: {what}: {} of {of}", i + 1);
    }
}

/// RSS may move by allocator noise; anything past this is growth.
const RSS_SLACK_KB: u64 = 1024;

fn assert_no_growth(what: &str, before: Held, after: Held) {
    println!("leak: {what}: before {before:?}, after {after:?}");
    assert_eq!(after.fds, before.fds, "{what}: fds leaked");
    assert_eq!(after.pin_kb, before.pin_kb, "{what}: pinned pages leaked");
    assert!(
        after.rss_kb <= before.rss_kb + RSS_SLACK_KB,
        "{what}: RSS grew from {} to {} KiB",
        before.rss_kb,
        after.rss_kb
    );
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn leak_free_over_many_cycles() {
    // Pinned pages are only charged (VmPin) to a process without
    // CAP_IPC_LOCK, so the cycles run in a child (this test again) that drops
    // to `nobody` after root opened the device nodes to it.
    let t = Topology::discover();
    let cdev = iommufd::sysfs::cdev_name(std::path::Path::new("/sys"), &t.singleton).unwrap();
    let cdev = format!("/dev/vfio/devices/{cdev}");
    if std::env::var_os("IOMMUFD_LEAK_CHILD").is_none() {
        use std::os::unix::fs::PermissionsExt;
        for p in ["/dev/iommu", cdev.as_str()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666)).unwrap();
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "leak_free_over_many_cycles",
                "--include-ignored",
                "--test-threads=1",
                "--nocapture",
            ])
            .env("IOMMUFD_LEAK_CHILD", "1")
            // Progress on stderr reaches the console as it happens, so a
            // long run is not taken for a frozen guest.
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap();
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(i) = l.find("leak:") {
                println!("{}", &l[i..]);
            }
        }
        assert!(
            out.status.success(),
            "child failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    use nix::sys::resource::{setrlimit, Resource};
    setrlimit(Resource::RLIMIT_MEMLOCK, 64 << 20, 64 << 20).unwrap();
    let nobody = nix::unistd::Uid::from_raw(65534);
    nix::unistd::setresgid(
        nix::unistd::Gid::from_raw(65534),
        nix::unistd::Gid::from_raw(65534),
        nix::unistd::Gid::from_raw(65534),
    )
    .unwrap();
    nix::unistd::setresuid(nobody, nobody, nobody).unwrap();

    let cycles = knob("IOMMUFD_LEAK_CYCLES", 300);
    let fd = Iommufd::open().unwrap();
    let mut buf = Some(DmaBuffer::new(64 << 10).unwrap());
    let mut last: Option<[u32; 2]> = None;
    let mut cycle = |check_pin: bool| {
        // The previous cycle's objects are gone (checked before this cycle
        // allocates, since the kernel reuses free ids).
        for id in last.take().into_iter().flatten() {
            assert!(!object_exists(&fd, id), "object {id} outlived its cycle");
        }
        let dev = Device::open(&t.singleton).unwrap().bind(&fd).unwrap();
        let ioas = fd.alloc_ioas().unwrap();
        last = Some([dev.dev_id(), ioas.id()]);
        let dev = dev.attach(&ioas).unwrap();
        let m = ioas
            .map(buf.take().unwrap(), Iova::Any, Access::READ_WRITE)
            .unwrap();
        if check_pin {
            assert!(
                held().pin_kb >= 64,
                "pinning is charged, so VmPin can show a leak"
            );
        }
        buf = Some(m.unmap().unwrap());
        let dev = dev.detach().unwrap();
        dev.unbind().unwrap().close();
    };
    for i in 0..10 {
        cycle(i == 0);
    }
    let before = held();
    for i in 0..cycles {
        cycle(false);
        progress("full cycles", i, cycles);
    }
    assert_no_growth(&format!("{cycles} full cycles"), before, held());

    // Failed transitions: a foreign IOAS, the non-viable group, an overlap.
    let foreign = Iommufd::open().unwrap().alloc_ioas().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = Device::open(&t.singleton).unwrap().bind(&fd).unwrap();
    let dev = dev.attach(&ioas).unwrap();
    let first = ioas
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(0x100000),
            Access::READ,
        )
        .unwrap();
    let mut dev = Some(dev.detach().unwrap());
    let mut spare = Some(DmaBuffer::new(4096).unwrap());
    let mut fail = || {
        let e = dev.take().unwrap().attach(&foreign).unwrap_err();
        dev = Some(e.into_inner());
        let e = Group::open(t.nonviable_group).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::GroupNotViable);
        let e = ioas
            .map(spare.take().unwrap(), Iova::Fixed(0x100000), Access::READ)
            .unwrap_err();
        assert_eq!(e.error().kind(), ErrorKind::Overlap);
        spare = Some(e.into_inner());
    };
    for _ in 0..10 {
        fail();
    }
    let before = held();
    for i in 0..cycles {
        fail();
        progress("failed transitions", i, cycles);
    }
    assert_no_growth(&format!("{cycles} × 3 failed transitions"), before, held());
    drop(first);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn shared_ioas_under_four_threads() {
    let iters = knob("IOMMUFD_STRESS_ITERS", 2000);
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let _dev = Device::open(&Topology::discover().singleton)
        .unwrap()
        .bind(&fd)
        .unwrap()
        .attach(&ioas)
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let ioas = ioas.clone();
            s.spawn(move || {
                let mut buf = Some(DmaBuffer::new(4096).unwrap());
                for i in 0..iters as u64 {
                    // Disjoint per thread: thread t owns [t * 1 GiB, +1 GiB).
                    let at = (t << 30) + ((i % 256) << 12);
                    let m = ioas
                        .map(buf.take().unwrap(), Iova::Fixed(at), Access::READ_WRITE)
                        .unwrap();
                    assert_eq!(m.iova(), at);
                    buf = Some(m.unmap().unwrap());
                }
            });
        }
    });
    // Nothing left mapped: the kernel has nothing to unmap anywhere.
    let e = ioas.unmap(0, 4 << 30).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotMapped, "{e}");
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn mmio_reads_on_threads_while_another_maps() {
    let iters = knob("IOMMUFD_STRESS_ITERS", 2000);
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = support::bound_singleton(&fd).attach(&ioas).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Every reader has read once before the maps start, so the reads really
    // overlap them (on a busy host a reader may otherwise first run after
    // the last map).
    let started = std::sync::Barrier::new(4);
    std::thread::scope(|s| {
        let mut readers = Vec::new();
        for _ in 0..3 {
            let (dev, stop, started) = (&dev, stop.clone(), &started);
            readers.push(s.spawn(move || {
                let mmio = dev.mmio(0).unwrap();
                assert_eq!(mmio.read32(0).unwrap(), EDU_ID);
                started.wait();
                let mut n = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(mmio.read32(0).unwrap(), EDU_ID);
                    n += 1;
                }
                n
            }));
        }
        started.wait();
        let mut buf = Some(DmaBuffer::new(4096).unwrap());
        for _ in 0..iters {
            let m = ioas
                .map(buf.take().unwrap(), Iova::Any, Access::READ)
                .unwrap();
            buf = Some(m.unmap().unwrap());
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0, "every reader ran");
        }
    });
    // The device still works afterwards.
    let out = support::round_trip(
        &dev,
        &ioas,
        b"threads",
        Iova::Fixed(0x100000),
        Iova::Fixed(0x200000),
    );
    assert_eq!(out, b"threads");
}

/// Several devices brought up at once, each on a thread of its own, into
/// one IOAS (the kernel's VFIO selftest `vfio_pci_device_init_perf_test`):
/// every one comes up attached and goes back, and no fd stays open.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn devices_come_up_at_once_on_threads_of_their_own() {
    let t = support::Topology::discover();
    let bdfs: Vec<String> = [
        Some(t.singleton.clone()),
        t.bus_reset.clone(),
        t.nvme.clone(),
        t.sriov_pf.clone(),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(bdfs.len() >= 3, "{bdfs:?}");
    let open_fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let before = open_fds();
    {
        let fd = iommufd::Iommufd::open().unwrap();
        let ioas = fd.alloc_ioas().unwrap();
        let devs: Vec<_> = std::thread::scope(|s| {
            let up: Vec<_> = bdfs
                .iter()
                .map(|bdf| {
                    let (fd, ioas) = (&fd, &ioas);
                    s.spawn(move || {
                        iommufd::Device::open(bdf)
                            .unwrap()
                            .bind(fd)
                            .unwrap()
                            .attach(ioas)
                            .unwrap()
                    })
                })
                .collect();
            up.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(devs.len(), bdfs.len());
        for d in devs {
            assert_eq!(d.ioas(), &ioas);
            d.detach().unwrap().close();
        }
    }
    assert_eq!(open_fds(), before, "an fd stayed open");
}
