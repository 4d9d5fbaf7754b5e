//! `cargo xtask vmtest` and `cargo xtask demo`: device tests and the demo in the guest.

use crate::cargo::cargo_build;
use crate::guest::{boot, boot_guest, shell_quote, write_job, Step};
use crate::host::{apt_install, have};
use crate::kernel::find_or_build_kernel;
use crate::{Opts, Result};

/// The test that counts instructions and syscalls (`tests/guest_overhead.rs`).
const OVERHEAD: &str = "guest_overhead";

/// The hot-unplug test (binary, test) runs last in the boot: it removes a
/// device from the machine, so nothing after it runs on a changed machine.
/// (QEMU's TCG abort in `guest::boot_guest` was first seen right after it;
/// the second time it came without any unplug, so this ordering is not
/// what keeps it away: the resume by step is.)
const UNPLUG: (&str, &str) = (
    "guest_real_devices",
    "unplug_request_reaches_the_req_eventfd_and_the_unplug_completes",
);

/// Boots per kernel at most: the first, and one more for each freeze or
/// QEMU crash, each resuming from the step that did not finish.
const BOOTS: usize = 3;

pub(crate) fn vmtest(o: &Opts) -> Result<bool> {
    let kernel = find_or_build_kernel(&o.kernel)?;
    // `guest_overhead` counts instructions and syscalls under valgrind, which
    // the guest runs from the host's root.
    if !have("valgrind") {
        eprintln!("xtask: valgrind not found; installing it");
        apt_install(&["valgrind"], None)?;
    }
    // Every feature the guest tests exercise (`tests/guest_vm_memory.rs`).
    let mut bins = cargo_build(&["test", "--no-run", "--tests", "--all-features"], |v| {
        v["target"]["kind"][0] == "test"
            && v["target"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("guest_") && n != OVERHEAD)
    })?;
    // The examples, which `tests/guest_examples.rs` runs as a user would.
    cargo_build(&["build", "--examples", "--all-features"], |_| false)?;
    // Instruction budgets are for optimized code: this one test is built in
    // release.
    bins.extend(cargo_build(
        &[
            "test",
            "--release",
            "--no-run",
            "--features",
            "iommufd-test-driver",
            "--test",
            OVERHEAD,
        ],
        |v| v["target"]["name"] == OVERHEAD,
    )?);
    if bins.is_empty() {
        return Err("no guest_* test targets were built".into());
    }
    let filter = o.filter.as_deref().map(shell_quote).unwrap_or_default();
    // One step per test binary (the hot-unplug test a step of its own, last),
    // each ending with `VMT-DONE key rc`, so that a boot that freezes or
    // crashes is resumed from the step it was in.
    let mut steps: Vec<(String, String)> = Vec::new();
    let mut last = None;
    for (name, exe) in &bins {
        let step = |key: &str, args: &str| {
            (
                key.to_string(),
                format!(
                    "echo \"guest: running {key}\"\nIOMMUFD_TEST_KERNEL_VERSION={ver} {exe} --include-ignored --test-threads=1 --show-output --color never {args}\nr=$?\necho \"VMT-DONE {key} $r\"\n[ $r -eq 0 ] || rc=1\n",
                    ver = shell_quote(&o.kernel),
                    exe = shell_quote(&exe.display().to_string()),
                ),
            )
        };
        if name == UNPLUG.0 {
            steps.push(step(name, &format!("{filter} --skip {}", UNPLUG.1)));
            if o.filter.as_deref().is_none_or(|f| UNPLUG.1.contains(f)) {
                last = Some(step(
                    &format!("{name}-unplug"),
                    &format!("--exact {}", UNPLUG.1),
                ));
            }
        } else {
            steps.push(step(name, &filter));
        }
    }
    steps.extend(last);
    let total = steps.len();
    let mut finished: Vec<Step> = Vec::new();
    let mut nvme_ok = true;
    let mut exit = None;
    for attempt in 1..=BOOTS {
        let body = format!(
            "rc=0\n{}exit $rc\n",
            steps.iter().map(|(_, s)| s.as_str()).collect::<String>()
        );
        let job = write_job("vmtest", &body)?;
        let mut out = boot(&kernel, &job, o)?;
        // Each boot starts from a fresh NVMe image: check what this one wrote.
        nvme_ok &= check_nvme_image(&out.nvme_writes);
        steps.retain(|(key, _)| !out.done.iter().any(|d| &d.key == key));
        finished.append(&mut out.done);
        if out.exit.is_some() {
            exit = out.exit;
            break;
        }
        // Timed out, or QEMU died otherwise: no retry.
        let Some(why) = out.retry_reason() else { break };
        if attempt == BOOTS {
            eprintln!("xtask: {why}, in boot {attempt} of {BOOTS}; giving up");
            break;
        }
        // The step it was in runs again from its start; its partial counts
        // are dropped (only finished steps count).
        eprintln!(
            "xtask: {why}; {} of {total} steps had finished and are kept; booting once more for the other {}",
            total - steps.len(),
            steps.len()
        );
    }
    let passed: u64 = finished.iter().map(|s| s.passed).sum();
    let failed: u64 = finished.iter().map(|s| s.failed).sum();
    let bad: Vec<&str> = finished
        .iter()
        .filter(|s| s.rc != 0)
        .map(|s| s.key.as_str())
        .collect();
    let ok = exit == Some(0)
        && steps.is_empty()
        && bad.is_empty()
        && failed == 0
        && passed > 0
        && nvme_ok;
    match exit {
        None => eprintln!("xtask: the guest never reported an exit status"),
        Some(c) if c != 0 => eprintln!("xtask: guest job exited with {c}"),
        _ => {}
    }
    if !bad.is_empty() {
        eprintln!(
            "xtask: test binaries that exited non-zero: {}",
            bad.join(", ")
        );
    }
    if passed == 0 {
        eprintln!("xtask: zero device tests passed in the guest; that is a failure, not a skip");
    }
    println!("vmtest: kernel {}", o.kernel);
    println!("vmtest: {passed} passed, {failed} failed");
    Ok(ok)
}

/// The host side of the NVMe test: after the guest powered off, the image
/// must hold, at each reported LBA range (`lba blocks seed lba_size`), the
/// pattern `examples/nvme` writes (the same splitmix64 of seed + byte
/// offset). False, loudly, on a mismatch or an unreadable report.
fn check_nvme_image(writes: &[String]) -> bool {
    let Ok(img) =
        crate::guest::nvme_image_path().and_then(|p| std::fs::read(&p).map_err(|e| e.to_string()))
    else {
        eprintln!("xtask: cannot read the NVMe image");
        return writes.is_empty();
    };
    let mut ok = true;
    for w in writes {
        let n: Vec<u64> = w
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let [lba, blocks, seed, size] = n[..] else {
            eprintln!("xtask: NVMe report {w:?} is not `lba blocks seed lba_size`");
            ok = false;
            continue;
        };
        let (start, len) = ((lba * size) as usize, (blocks * size) as usize);
        let Some(got) = img.get(start..start + len) else {
            eprintln!("xtask: NVMe report {w:?} is past the image's end");
            ok = false;
            continue;
        };
        let bad = got
            .chunks(8)
            .enumerate()
            .position(|(i, c)| c != &nvme_pattern_word(seed, (start + 8 * i) as u64)[..c.len()]);
        match bad {
            None => println!("vmtest: NVMe image holds the pattern at LBA {lba} + {blocks} blocks of {size} bytes (checked on the host)"),
            Some(i) => {
                eprintln!("xtask: the NVMe image differs from the pattern at byte {:#x} (LBA {lba} + {blocks}, seed {seed})", start + 8 * i);
                ok = false;
            }
        }
    }
    ok
}

/// `pattern_word` of `examples/nvme/main.rs`.
fn nvme_pattern_word(seed: u64, at: u64) -> [u8; 8] {
    let mut z = seed.wrapping_add(at).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).to_le_bytes()
}

pub(crate) fn demo(o: &Opts) -> Result<bool> {
    let kernel = find_or_build_kernel(&o.kernel)?;
    let bins = cargo_build(&["build", "--example", "demo"], |v| {
        v["target"]["name"] == "demo"
    })?;
    let (_, exe) = bins.first().ok_or("examples/demo.rs was not built")?;
    let job = write_job(
        "demo",
        &format!("exec {}\n", shell_quote(&exe.display().to_string())),
    )?;
    let out = boot_guest(&kernel, &job, o)?;
    match out.exit {
        Some(0) => {
            println!("demo: passed in the guest");
            Ok(true)
        }
        Some(c) => {
            eprintln!("demo: failed in the guest (exit {c})");
            Ok(false)
        }
        None => {
            eprintln!("demo: the guest never reported an exit status");
            Ok(false)
        }
    }
}
