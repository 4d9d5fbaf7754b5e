//! `cargo xtask bench`: the benches in the guest, each printing its ratios to raw ioctls.

use crate::cargo::cargo_build;
use crate::guest::{boot_guest, shell_quote, write_job};
use crate::kernel::find_or_build_kernel;
use crate::{Opts, Result};

pub(crate) fn bench(o: &Opts) -> Result<bool> {
    let kernel = find_or_build_kernel(&o.kernel)?;
    let bins = cargo_build(&["bench", "--no-run", "-p", "iommufd-bench"], |v| {
        v["target"]["kind"][0] == "bench"
    })?;
    if bins.is_empty() {
        return Err("no benches were built".into());
    }
    let mut body = String::from("rc=0\n");
    if o.icount {
        // The bench prints which clock its table is in.
        body += "export IOMMUFD_BENCH_CLOCK=icount\n";
    }
    for (name, exe) in &bins {
        body += &format!(
            "echo \"bench: {name}\"\n{} || rc=1\n",
            shell_quote(&exe.display().to_string())
        );
    }
    body += "exit $rc\n";
    let job = write_job("bench", &body)?;
    let out = boot_guest(&kernel, &job, o)?;
    Ok(out.exit == Some(0))
}
