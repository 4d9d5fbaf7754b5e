//! `cargo xtask vmtest` and `cargo xtask demo`: device tests and the demo in the guest.

use crate::cargo::cargo_build;
use crate::guest::{boot_guest, shell_quote, write_job};
use crate::host::{apt_install, have};
use crate::kernel::find_or_build_kernel;
use crate::{Opts, Result};

/// The test that counts instructions and syscalls (`tests/guest_overhead.rs`).
const OVERHEAD: &str = "guest_overhead";

/// The hot-unplug test (binary, test) runs last in the boot: it removes a
/// device from the machine, and QEMU's TCG has been seen to abort on a
/// later MMIO access after such a change (see `guest::boot_guest`).
const UNPLUG: (&str, &str) = (
    "guest_real_devices",
    "unplug_request_reaches_the_req_eventfd_and_the_unplug_completes",
);

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
    let mut body = String::from("rc=0\n");
    let mut last = String::new();
    for (name, exe) in &bins {
        let run = |args: &str| {
            format!(
                "echo \"guest: running {name}\"\nIOMMUFD_TEST_KERNEL_VERSION={ver} {exe} --include-ignored --test-threads=1 --show-output --color never {args} || rc=1\n",
                ver = shell_quote(&o.kernel),
                exe = shell_quote(&exe.display().to_string()),
            )
        };
        if name == UNPLUG.0 {
            body += &run(&format!("{filter} --skip {}", UNPLUG.1));
            if o.filter.as_deref().is_none_or(|f| UNPLUG.1.contains(f)) {
                last = run(&format!("--exact {}", UNPLUG.1));
            }
        } else {
            body += &run(&filter);
        }
    }
    body += &last;
    body += "exit $rc\n";
    let job = write_job("vmtest", &body)?;
    let out = boot_guest(&kernel, &job, o)?;
    let nvme_ok = check_nvme_image(&out.nvme_writes);
    let ok = out.exit == Some(0) && out.failed == 0 && out.passed > 0 && nvme_ok;
    match out.exit {
        None => eprintln!("xtask: the guest never reported an exit status"),
        Some(c) if c != 0 => eprintln!("xtask: guest job exited with {c}"),
        _ => {}
    }
    if out.passed == 0 {
        eprintln!("xtask: zero device tests passed in the guest; that is a failure, not a skip");
    }
    println!("vmtest: kernel {}", o.kernel);
    println!("vmtest: {} passed, {} failed", out.passed, out.failed);
    Ok(ok)
}

/// The host side of the NVMe test: after the guest powered off, the image
/// must hold, at each reported LBA range (`lba blocks seed lba_size`), the
/// pattern `examples/nvme.rs` writes (the same splitmix64 of seed + byte
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

/// `pattern_word` of `examples/nvme.rs`.
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
