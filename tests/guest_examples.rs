//! The examples, run in the guest as a user would run them: each must do
//! what its docs say and end with a clear error and a non-zero exit on bad
//! input. `cargo xtask vmtest` builds them (with every feature) beside the tests.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use support::Topology;

/// `target/<profile>/examples/<name>`, beside this test's `deps/`.
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let path: PathBuf = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.is_file(),
        "{} was not built: cargo xtask vmtest builds the examples",
        path.display()
    );
    Command::new(path)
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    let se = String::from_utf8_lossy(&out.stderr).into_owned();
    print!("{so}");
    eprint!("{se}");
    (out, so, se)
}

fn kernel() -> String {
    std::env::var("IOMMUFD_TEST_KERNEL_VERSION").unwrap_or_default()
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn vmm_passthrough_example_hot_plugs_and_unplugs_by_bdf() {
    let bdf = Topology::discover().singleton;
    let (out, so, _) = run(example("vmm_passthrough").arg(&bdf));
    assert!(out.status.success(), "{}", out.status);
    assert!(so.contains("passthrough ok"), "{so}");
    assert!(so.contains("MSI fired 1x"), "{so}");
    assert!(so.contains("BAR0 0x100000 bytes at host address"), "{so}");
    // Shared memfd guest RAM goes in by file where the kernel can (6.13+).
    let how = if kernel() == "6.12" {
        "by address"
    } else {
        "by file"
    };
    assert_eq!(so.matches(how).count(), 2, "{so}");
    // Unplugged: the device can be opened and bound again.
    let fd = iommufd::Iommufd::open().unwrap();
    iommufd::Device::open(&bdf).unwrap().bind(&fd).unwrap();
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn vmm_passthrough_example_takes_a_cdev_fd_from_a_helper() {
    let bdf = Topology::discover().singleton;
    // The "privileged helper": opens the cdev and hands it over as fd 0.
    let cdev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(support::cdev_of(&bdf))
        .unwrap();
    let (out, so, _) = run(example("vmm_passthrough").args(["--fd", "0"]).stdin(cdev));
    assert!(out.status.success(), "{}", out.status);
    assert!(so.contains(&format!("{bdf}: passthrough ok")), "{so}");
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn vmm_passthrough_example_fails_clearly_on_a_device_it_cannot_take() {
    // A device on a driver that does its own DMA: not on vfio-pci.
    let other = Topology::discover().nonviable_other;
    let (out, _, se) = run(example("vmm_passthrough").arg(&other));
    assert!(!out.status.success());
    assert!(se.contains(&other) && se.contains("vfio-pci"), "{se}");
    // Not an fd of a VFIO device.
    let (out, _, se) = run(example("vmm_passthrough")
        .args(["--fd", "0"])
        .stdin(std::fs::File::open("/dev/null").unwrap()));
    assert!(!out.status.success());
    assert!(se.contains("not a VFIO device"), "{se}");
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn groups_example_tells_what_can_be_assigned() {
    let t = Topology::discover();
    let (out, so, _) = run(&mut example("groups"));
    assert!(out.status.success(), "{}", out.status);
    assert!(
        so.contains(&format!("group {}: assignable as a group", t.pair_group)),
        "{so}"
    );
    assert!(
        so.contains(&format!("group {}: NOT assignable", t.nonviable_group)),
        "{so}"
    );
    assert!(so.contains(&t.nonviable_other), "{so}");
}

/// The NVMe example driver, on the guest's controller: a seeded pattern
/// written and read back through the IOMMU with MSI-X completions, and
/// another polled. The `VMT-NVME-WROTE` lines ask the host to check the
/// image after power-off.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn nvme_example_writes_and_reads_back_through_the_iommu() {
    let t = Topology::discover();
    let bdf = t.nvme.expect("no NVMe controller on vfio-pci");
    let (lba, blocks, seed) = (1000, 24, 0x5eed);
    let (out, so, _) = run(example("nvme").args([
        bdf.as_str(),
        "--lba",
        &lba.to_string(),
        "--blocks",
        &blocks.to_string(),
        "--seed",
        &seed.to_string(),
    ]));
    assert!(out.status.success(), "{}", out.status);
    assert!(so.contains("written and read back, equal"), "{so}");
    // The LBA size as the device reported it.
    let lba_size: u64 = so
        .split(" blocks of ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no LBA size in {so}"));
    println!("VMT-NVME-WROTE {lba} {blocks} {seed} {lba_size}");
    // Polled (`--poll`): no interrupt, the driver spins on the completion
    // queue's phase tag through the crate's typed ring.
    let (lba2, blocks2, seed2) = (2000, 8, 0x9011);
    let (out, so, _) = run(example("nvme").args([
        bdf.as_str(),
        "--lba",
        &lba2.to_string(),
        "--blocks",
        &blocks2.to_string(),
        "--seed",
        &seed2.to_string(),
        "--poll",
    ]));
    assert!(out.status.success(), "{}", out.status);
    assert!(
        so.contains(", polled: written and read back, equal"),
        "{so}"
    );
    println!("VMT-NVME-WROTE {lba2} {blocks2} {seed2} {lba_size}");
    // Bad input: a clear error and exit 1, never a hang.
    let nsze: u64 = so
        .split("namespace 1: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let (out, _, se) = run(example("nvme").args([
        bdf.as_str(),
        "--lba",
        &(nsze - 1).to_string(),
        "--blocks",
        "2",
        "--seed",
        "1",
    ]));
    assert!(!out.status.success());
    assert!(se.contains("past the end of namespace 1"), "{se}");
    let (out, _, se) = run(example("nvme").args([
        t.singleton.as_str(),
        "--lba",
        "0",
        "--blocks",
        "1",
        "--seed",
        "1",
    ]));
    assert!(!out.status.success());
    assert!(se.contains("is not an NVMe controller"), "{se}");
    let (out, _, se) = run(example("nvme").arg(&bdf));
    assert!(!out.status.success());
    assert!(se.contains("usage: nvme"), "{se}");
}

/// The migration loop behind a vIOMMU (`examples/migrate.rs`): rounds of
/// device writes read from the tracked stage-2, RAM hot-plugged and the
/// guest's stage-1 changed midway, an mtty migrated alongside; every page
/// of the destination equals the source's. 6.12's test driver makes no
/// mock device next to VT-d: the example says so and exits 2.
#[cfg(feature = "iommufd-test-driver")]
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn migrate_example_loses_no_dirty_page() {
    let (out, so, se) = run(example("migrate").arg("6"));
    if kernel() == "6.12" {
        assert_eq!(out.status.code(), Some(2), "{se}");
        assert!(se.contains("MOCK_DOMAIN"), "{se}");
        return;
    }
    assert!(out.status.success(), "{}: {se}", out.status);
    assert!(so.contains("migrate ok: 6 rounds"), "{so}");
    assert!(so.contains("all 80 pages"), "{so}");
    assert!(so.contains("FIFO \"migrated\""), "{so}");
    // Bad input ends with a message.
    let (out, _, se) = run(example("migrate").arg("lots"));
    assert!(!out.status.success() && se.contains("ROUNDS"), "{se}");
}

/// The igb copy engine (`examples/igb`): QEMU's 82576 in MAC loopback,
/// driven through the crate's rings and registers, copies through the
/// IOMMU: single frames, frames at the size limits, 64 KiB split into
/// frames, with MSI-X completion and polled; copies from and to an IOVA
/// that is not mapped, each followed by a good one, fault cleanly (the VT-d
/// fault logged, nothing mapped changes, the engine works after); a storm of
/// copies of mixed sizes with one interrupt each and no fd left open. The
/// kernel's VFIO selftest `vfio_pci_driver_test` on the same device, through
/// the crate.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn igb_example_copies_through_the_iommu() {
    let t = Topology::discover();
    let bdf = t.sriov_pf.expect("no igb PF on vfio-pci");
    let igb = |args: &[&str]| {
        let mut c = example("igb");
        c.arg(&bdf).args(args);
        run(&mut c)
    };
    let fds = |so: &str| -> (u32, u32) {
        let f = so
            .split("open fds ")
            .nth(1)
            .unwrap_or_else(|| panic!("{so}"));
        let mut n = f
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap());
        (n.next().unwrap(), n.next().unwrap())
    };
    let started = std::time::Instant::now();
    // The engine set up five times over (the kernel selftest's init/remove).
    for (size, extra) in [
        ("60", &["--bring-ups", "5"][..]),
        ("1514", &[]),
        ("65536", &[]),
        ("1515", &["--poll"]),
    ] {
        let mut args = vec!["--count", "4", "--size", size, "--seed", "7"];
        args.extend(extra);
        let (out, so, _) = igb(&args);
        assert!(out.status.success(), "{}", out.status);
        assert!(so.contains(": equal;"), "{so}");
        let (before, after) = fds(&so);
        assert_eq!(before, after, "{so}");
    }
    println!("single copies: {:?}", started.elapsed());
    let started = std::time::Instant::now();
    let (out, so, _) = igb(&["--count", "10000", "--size", "mixed", "--seed", "11"]);
    assert!(out.status.success(), "{}", out.status);
    assert!(so.contains("10000 copies"), "{so}");
    // One interrupt per copy: the vector masks itself when it fires.
    assert!(so.contains("10000 MSI-X interrupts"), "{so}");
    println!("storm: {:?}", started.elapsed());
    // The IOMMU refused both: the guest kernel's VT-d driver logs the
    // fault, naming the igb and the address.
    kernel_log();
    // The VT-d driver rate-limits its fault lines (ten in five seconds,
    // two lines a fault): the write fault once, then the read fault before
    // each of three copies (the selftest's mix_and_match).
    for (fault, access, count) in [
        ("--to-unmapped", "Write", "1"),
        ("--from-unmapped", "Read", "3"),
    ] {
        let (out, so, _) = igb(&["--count", count, "--size", "4096", "--seed", "5", fault]);
        assert!(out.status.success(), "{}", out.status);
        assert!(so.contains(&format!("{count} times: copy ")), "{so}");
        assert!(so.contains(": equal;"), "{so}");
        // The VT-d driver prints the fault from its interrupt: it may come
        // a little after the example exits.
        let mut log = Vec::new();
        let seen = |log: &[String]| {
            log.iter().any(|l| {
                l.contains(&format!("DMA {access}"))
                    // 7.3 names the device with its PCI domain, 6.12 without.
                    && l.contains(&format!("{}]", bdf.trim_start_matches("0000:")))
                    && l.contains("fault addr 0x1000000000")
            })
        };
        for _ in 0..50 {
            log.extend(kernel_log());
            if seen(&log) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(seen(&log), "no DMAR {access} fault logged: {log:#?}");
    }
    // Bad input: a clear message and exit 1, the device untouched.
    let (out, _, se) = igb(&["--count", "1", "--size", "59", "--seed", "1"]);
    assert!(!out.status.success());
    assert!(se.contains("60 bytes"), "{se}");
    let (out, _, se) = igb(&["--count", "1"]);
    assert!(!out.status.success());
    assert!(se.contains("usage: igb"), "{se}");
    let (out, _, se) = run(example("igb").args([
        t.singleton.as_str(),
        "--count",
        "1",
        "--size",
        "60",
        "--seed",
        "1",
    ]));
    assert!(!out.status.success());
    assert!(se.contains("is not an 82576"), "{se}");
}

/// The kernel log records not read before (`/dev/kmsg`, read to its end
/// without blocking; the first call skips what was there before).
fn kernel_log() -> Vec<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    static KMSG: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);
    let mut kmsg = KMSG.lock().unwrap();
    let f = kmsg.get_or_insert_with(|| {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .unwrap();
        // Start at the end: SEEK_END on /dev/kmsg.
        std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).unwrap();
        f
    });
    let mut lines = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => lines.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    lines
}
