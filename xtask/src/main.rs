//! `cargo xtask`: the project's guest test harness.
//!
//! - `cargo xtask kernel [--kernel VER]` finds or builds the test kernel and prints its path.
//! - `cargo xtask vmtest [--kernel VER] [--accel kvm] [FILTER]` runs the device tests
//!   (every test target named `guest_*`) inside a QEMU guest with an emulated VT-d
//!   IOMMU and QEMU `edu` devices, and prints the pass/fail counts last.
//! - `cargo xtask demo [--kernel VER]` runs `examples/demo.rs` in the same guest.
//! - `cargo xtask kselftest [--kernel VER] [FILTER]` builds the kernel's own iommu and
//!   VFIO selftests from Debian's linux-source and runs them in the same guest.
//!
//! README.md ("The guest harness") gives the topology and why each QEMU setting is there.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod bench;
mod cargo;
mod guest;
mod host;
mod kernel;
mod kselftest;
mod topology;
mod vmtest;

use bench::bench;
use kernel::find_or_build_kernel;
use vmtest::{demo, vmtest};

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("kernel") => Opts::parse(&args[1..]).and_then(|o| {
            let k = find_or_build_kernel(&o.kernel)?;
            println!("{}", k.display());
            Ok(true)
        }),
        Some("vmtest") => Opts::parse(&args[1..]).and_then(|o| vmtest(&o)),
        Some("demo") => Opts::parse(&args[1..]).and_then(|o| demo(&o)),
        Some("kselftest") => Opts::parse(&args[1..]).and_then(|mut o| {
            // The fault-injection sweep alone takes most of an hour of TCG.
            o.timeout = o.timeout.max(3600);
            kselftest::kselftest(&o)
        }),
        // Benches map 512 MiB three ways at once (THP, 4 KiB pages, hugetlbfs)
        // and bring up 16 devices at once.
        Some("bench") => Opts::parse(&args[1..]).and_then(|mut o| {
            o.mem = "6G".into();
            o.extra_edus = BENCH_EDUS;
            // The benches are single-threaded: one vCPU leaves the host's
            // second core to QEMU's I/O thread instead of a second vCPU
            // competing with it.
            o.smp = 1;
            bench(&o)
        }),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask <kernel|vmtest|demo|bench|kselftest> [--kernel 7.3|6.12|6.1|PATH] [--accel tcg|kvm] [--icount] [--timeout SECS] [FILTER]

  kernel   find or build the guest kernel and print its path
  vmtest   run every `guest_*` test target inside the guest
  demo     run examples/demo.rs inside the guest
  kselftest build the kernel's own iommu and VFIO selftests (Debian's
           linux-source) and run them inside the guest: the kernel's baseline
  bench    run benches/ inside the guest (ratios against raw ioctls)

  --icount  TCG with a guest clock that counts guest instructions (1 ns
            each) instead of host time: timings then repeat from run to
            run whatever else the host is doing (for `bench`)

environment: IOMMUFD_TEST_KERNEL (a bzImage to use), IOMMUFD_SHARED (default ../shared)";

pub(crate) struct Opts {
    pub(crate) kernel: String,
    pub(crate) accel: String,
    pub(crate) timeout: u64,
    pub(crate) filter: Option<String>,
    /// Guest memory (`-m`).
    pub(crate) mem: String,
    /// Singleton edus added to the topology (the bench's bring-up rows).
    pub(crate) extra_edus: usize,
    /// Guest CPUs (`-smp`).
    pub(crate) smp: u32,
    /// TCG with `-icount`: the guest's clock counts guest instructions.
    pub(crate) icount: bool,
}

/// Extra singleton edus in the bench guest: bring-up of 1, 4 and 16 devices.
const BENCH_EDUS: usize = 16;

impl Opts {
    fn parse(args: &[String]) -> Result<Opts> {
        let mut o = Opts {
            kernel: "7.3".into(),
            accel: "tcg".into(),
            timeout: 1200,
            filter: None,
            // 2 GiB for the tests, and 2 more for the 1 GiB huge page
            // reserved at boot (`guest::boot`).
            mem: "4G".into(),
            extra_edus: 0,
            smp: 2,
            icount: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
            match a.as_str() {
                "--kernel" => o.kernel = val("--kernel")?,
                "--accel" => o.accel = val("--accel")?,
                "--icount" => o.icount = true,
                "--timeout" => {
                    o.timeout = val("--timeout")?
                        .parse()
                        .map_err(|e| format!("--timeout: {e}"))?
                }
                f if !f.starts_with('-') && o.filter.is_none() => o.filter = Some(f.to_string()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        if o.accel != "tcg" && o.accel != "kvm" {
            return Err(format!("--accel must be tcg or kvm, not {:?}", o.accel));
        }
        if o.icount && o.accel != "tcg" {
            return Err("--icount needs --accel tcg".into());
        }
        // One vCPU under TCG: QEMU 10.0's multi-threaded TCG aborts now and
        // then in `iotlb_to_section` (a vCPU's TLB naming a memory section
        // of an address-space map another thread has just replaced); in the
        // last CI run, three boots in a row in the same test binary, at the
        // SR-IOV enable after the P2P test. With one vCPU there is one TCG
        // thread. The tests are sequential (`--test-threads=1`), so a second
        // vCPU bought little.
        if o.accel == "tcg" {
            o.smp = 1;
        }
        Ok(o)
    }
}

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub(crate) fn shared() -> PathBuf {
    std::env::var_os("IOMMUFD_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"))
}
