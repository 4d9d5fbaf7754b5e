//! `cargo xtask vmtest` and `cargo xtask demo`: device tests and the demo in the guest.

use crate::cargo::cargo_build;
use crate::guest::{boot_guest, shell_quote, write_job};
use crate::host::{apt_install, have};
use crate::kernel::find_or_build_kernel;
use crate::{Opts, Result};

/// The test that counts instructions and syscalls (`tests/guest_overhead.rs`).
const OVERHEAD: &str = "guest_overhead";

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
        &["test", "--release", "--no-run", "--test", OVERHEAD],
        |v| v["target"]["name"] == OVERHEAD,
    )?);
    if bins.is_empty() {
        return Err("no guest_* test targets were built".into());
    }
    let filter = o.filter.as_deref().map(shell_quote).unwrap_or_default();
    let mut body = String::from("rc=0\n");
    for (name, exe) in &bins {
        body += &format!(
            "echo \"guest: running {name}\"\nIOMMUFD_TEST_KERNEL_VERSION={ver} {exe} --include-ignored --test-threads=1 --show-output --color never {filter} || rc=1\n",
            ver = shell_quote(&o.kernel),
            exe = shell_quote(&exe.display().to_string()),
        );
    }
    body += "exit $rc\n";
    let job = write_job("vmtest", &body)?;
    let out = boot_guest(&kernel, &job, o)?;
    let ok = out.exit == Some(0) && out.failed == 0 && out.passed > 0;
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
