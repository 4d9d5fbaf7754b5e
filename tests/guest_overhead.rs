//! What the crate adds to the raw ioctls on the success path, counted
//! rather than timed.
//!
//! Each operation runs `n` and then `2n` times, through raw ioctls and
//! through the crate, in a copy of this test re-run under valgrind
//! (callgrind, `--trace-syscalls=yes`); the difference divided by `n` is the
//! cost of one operation, with start-up and set-up cancelled out. Two rules:
//!
//! - **the same syscalls**: nothing before or after the ioctl the raw call
//!   does not need (a query, a lookup in sysfs, an allocation that asks the
//!   kernel for memory);
//! - **a bounded number of user-space instructions** above raw: the crate's
//!   bookkeeping (the IOAS's lock and table of live mappings, the handle a
//!   mapping holds). The budgets are about 1.3× what the crate spends
//!   today; an error string formatted on the success path, or a second
//!   table lookup, breaks them.
//!
//! Callgrind counts are exact and repeat from run to run, where times under
//! TCG on a shared host do not.

mod support;

use iommufd::{Access, Device, DmaBuffer, Iommufd, Iova};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use support::{raw, Topology};

/// Set in the run under valgrind: `side kind n`.
const RUN: &str = "IOMMUFD_OVERHEAD_RUN";
const TEST: &str = "the_crate_adds_no_syscall_and_few_instructions_to_the_raw_ioctls";

/// (kind, what, syscalls and user-space instructions the crate may add per
/// operation).
const BUDGETS: &[(&str, &str, u64, u64)] = &[
    ("fixed", "4 KiB map + unmap at a fixed IOVA", 0, 400),
    ("any", "4 KiB map + unmap at a kernel-chosen IOVA", 0, 400),
    ("config", "config_read of 4 bytes", 0, 80),
    ("attach", "attach + detach", 0, 300),
    // The group check (see the crate's soundness section) lists the
    // device's `iommu_group/devices`: `openat`, `getdents64`, `close`.
    ("open", "Device::open from a BDF + close", 3, 20_000),
];

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn the_crate_adds_no_syscall_and_few_instructions_to_the_raw_ioctls() {
    if let Ok(run) = std::env::var(RUN) {
        let v: Vec<&str> = run.split(' ').collect();
        return body(v[0], v[1], v[2].parse().unwrap());
    }
    let have = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        have,
        "valgrind is missing: `cargo xtask vmtest` installs it on the host, whose root the guest mounts"
    );
    const N: u64 = 50;
    let mut failures = Vec::new();
    for &(kind, what, sys_budget, budget) in BUDGETS {
        let per = |side: &str| {
            let (s1, i1) = count(side, kind, N);
            let (s2, i2) = count(side, kind, 2 * N);
            let mut calls = s2.clone();
            for (name, k) in &s1 {
                *calls.entry(name.clone()).or_default() -= k;
            }
            calls.retain(|_, k| *k != 0);
            (calls, i2.saturating_sub(i1) / N)
        };
        let (raw_sys, raw_ins) = per("raw");
        let (our_sys, our_ins) = per("crate");
        let total = |c: &Calls| c.values().sum::<i64>() as f64 / N as f64;
        let (rs, os) = (total(&raw_sys), total(&our_sys));
        println!(
            "{what}: syscalls raw {rs:.2}, crate {os:.2}; user-space instructions raw {raw_ins}, crate {our_ins} (+{}, budget +{budget})",
            our_ins.saturating_sub(raw_ins)
        );
        if os > rs + sys_budget as f64 + 0.05 {
            failures.push(format!(
                "{what}: {os:.2} syscalls per operation against raw's {rs:.2} (+{sys_budget} allowed); per {N} operations, raw {raw_sys:?}, crate {our_sys:?}"
            ));
        }
        if our_ins > raw_ins + budget {
            failures.push(format!(
                "{what}: {our_ins} user-space instructions per operation, raw {raw_ins}: +{} over a budget of +{budget}",
                our_ins - raw_ins
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// How many times each syscall was made.
type Calls = std::collections::BTreeMap<String, i64>;

/// Runs this test's body under callgrind; returns the syscalls and the
/// user-space instructions of the whole run.
fn count(side: &str, kind: &str, n: u64) -> (Calls, u64) {
    let out = std::env::temp_dir().join(format!("iommufd-overhead.{side}.{kind}.{n}"));
    let run = Command::new("valgrind")
        .args(["--tool=callgrind", "--trace-syscalls=yes"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--include-ignored", "--test-threads=1"])
        .env(RUN, format!("{side} {kind} {n}"))
        .output()
        .unwrap();
    // Straight to the console, past libtest's capture: each run takes a
    // while under TCG, and the harness takes 90 s of silence for a hang.
    let _ = writeln!(std::io::stderr(), "overhead: {side} {kind} x{n} counted");
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "{side} {kind} {n} under valgrind failed:\n{}",
        log.lines()
            .filter(|l| !l.starts_with("SYSCALL["))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // `SYSCALL[pid,tid](nr) sys_name ( args ...`
    let mut syscalls = Calls::new();
    for l in log.lines().filter(|l| l.starts_with("SYSCALL[")) {
        let name = l.split_whitespace().nth(1).unwrap_or("?");
        *syscalls.entry(name.to_string()).or_default() += 1;
    }
    let text = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let instructions = text
        .lines()
        .find_map(|l| l.strip_prefix("summary: "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("callgrind summary");
    (syscalls, instructions)
}

/// One run: the same set-up on both sides, then `n` operations.
fn body(side: &str, kind: &str, n: u64) {
    let bdf = Topology::discover().singleton;
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let iommu = fd.iommufd_fd().unwrap();
    let raw = side == "raw";
    match kind {
        "fixed" | "any" => {
            let at = (kind == "fixed").then_some(0x4000_0000u64);
            let mut slot = Some(DmaBuffer::new(4096).unwrap());
            let va = slot.as_mut().unwrap().as_mut_slice().as_mut_ptr() as u64;
            for _ in 0..n {
                if raw {
                    // SAFETY: `slot` holds the buffer until the end of the test.
                    let iova = unsafe { raw::map(iommu, ioas.id(), va, 4096, at) }.unwrap();
                    raw::unmap(iommu, ioas.id(), iova, 4096).unwrap();
                } else {
                    let iova = at.map_or(Iova::Any, Iova::Fixed);
                    let m = ioas
                        .map(slot.take().unwrap(), iova, Access::READ_WRITE)
                        .unwrap();
                    slot = Some(m.unmap().unwrap());
                }
            }
        }
        "config" | "attach" if raw => {
            let dev = support::open_rw(Path::new("/dev/vfio/devices").join(support::cdev_of(&bdf)));
            raw::bind(&dev, iommu).unwrap();
            let mut b = [0u8; 4];
            let (_, config) = raw::region(&dev, iommufd::pci::CONFIG).unwrap();
            for _ in 0..n {
                if kind == "config" {
                    nix::sys::uio::pread(&dev, &mut b, config as i64).unwrap();
                } else {
                    raw::attach(&dev, ioas.id()).unwrap();
                    raw::detach(&dev).unwrap();
                }
            }
        }
        "config" => {
            let dev = Device::open(&bdf).unwrap().bind(&fd).unwrap();
            let mut b = [0u8; 4];
            dev.config_read(0, &mut b).unwrap();
            for _ in 0..n {
                dev.config_read(0, &mut b).unwrap();
            }
        }
        "attach" => {
            let mut dev = Device::open(&bdf).unwrap().bind(&fd).unwrap();
            for _ in 0..n {
                dev = dev.attach(&ioas).unwrap().detach().unwrap();
            }
        }
        "open" if raw => (0..n).for_each(|_| drop(raw::open_device(&bdf))),
        "open" => (0..n).for_each(|_| drop(Device::open(&bdf).unwrap())),
        _ => panic!("unknown kind {kind}"),
    }
}
