//! `cargo xtask`: the project's guest test harness.
//!
//! - `cargo xtask kernel [--kernel VER]` finds or builds the test kernel and prints its path.
//! - `cargo xtask vmtest [--kernel VER] [--accel kvm] [FILTER]` runs the device tests
//!   (every test target named `guest_*`) inside a QEMU guest with an emulated VT-d
//!   IOMMU and QEMU `edu` devices, and prints the pass/fail counts last.
//! - `cargo xtask demo [--kernel VER]` runs `examples/demo.rs` in the same guest.
//!
//! README.md ("The guest harness") gives the topology and why each QEMU setting is there.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
        Some("bench") => Opts::parse(&args[1..]).and_then(|o| bench(&o)),
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

const USAGE: &str = "usage: cargo xtask <kernel|vmtest|demo|bench> [--kernel 7.3|6.12|6.1|PATH] [--accel tcg|kvm] [--timeout SECS] [FILTER]

  kernel   find or build the guest kernel and print its path
  vmtest   run every `guest_*` test target inside the guest
  demo     run examples/demo.rs inside the guest
  bench    run benches/ inside the guest (ratios against raw ioctls)

environment: IOMMUFD_TEST_KERNEL (a bzImage to use), IOMMUFD_SHARED (default ../shared)";

struct Opts {
    kernel: String,
    accel: String,
    timeout: u64,
    filter: Option<String>,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts> {
        let mut o = Opts {
            kernel: "7.3".into(),
            accel: "tcg".into(),
            timeout: 1200,
            filter: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
            match a.as_str() {
                "--kernel" => o.kernel = val("--kernel")?,
                "--accel" => o.accel = val("--accel")?,
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
        Ok(o)
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn shared() -> PathBuf {
    std::env::var_os("IOMMUFD_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"))
}

// ---------------------------------------------------------------- kernel

/// Where each kernel version's source comes from (Debian package, suite).
fn source_package(ver: &str) -> Result<(&'static str, &'static str)> {
    match ver {
        "7.3" => Ok(("linux-source-7.3", "trixie-backports")),
        "6.12" => Ok(("linux-source-6.12", "trixie")),
        "6.1" => Ok(("linux-source-6.1", "bookworm")),
        v => Err(format!(
            "unknown kernel version {v:?}: use 7.3, 6.12, 6.1 or a bzImage path"
        )),
    }
}

fn sha256(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .map_err(|e| format!("sha256sum: {e}"))?;
    let s = String::from_utf8_lossy(&out.stdout);
    s.split_whitespace()
        .next()
        .map(str::to_string)
        .ok_or(format!("sha256sum {} printed nothing", path.display()))
}

/// Finds the kernel for `ver`, in this order: `$IOMMUFD_TEST_KERNEL` (7.3 only), a path,
/// the shared prebuilt image (when its recorded fragment matches ours), the cache under
/// `target/`, and otherwise a fresh build from Debian's linux-source package.
fn find_or_build_kernel(ver: &str) -> Result<PathBuf> {
    if ver.contains('/') {
        let p = PathBuf::from(ver);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("kernel image {ver} does not exist"))
        };
    }
    source_package(ver)?;
    if ver == "7.3" {
        if let Some(k) = std::env::var_os("IOMMUFD_TEST_KERNEL") {
            let k = PathBuf::from(k);
            eprintln!("xtask: kernel from IOMMUFD_TEST_KERNEL: {}", k.display());
            return Ok(k);
        }
    }
    let fragment = root().join("vmtest/kernel.config");
    let frag_sha = sha256(&fragment)?;
    let sh = shared().join("vmtest");
    let (shared_img, shared_sha) = if ver == "7.3" {
        (sh.join("bzImage"), sh.join("bzImage.fragment.sha256"))
    } else {
        (
            sh.join(format!("kernels/bzImage-{ver}")),
            sh.join(format!("kernels/bzImage-{ver}.fragment.sha256")),
        )
    };
    if shared_img.is_file() {
        // The old-kernel images carry no fragment hash; they were built from the same fragment.
        let recorded = std::fs::read_to_string(&shared_sha).ok();
        match recorded.as_deref().map(str::trim) {
            Some(s) if s == frag_sha => {
                eprintln!(
                    "xtask: shared kernel {} (fragment matches)",
                    shared_img.display()
                );
                return Ok(shared_img);
            }
            None if ver != "7.3" => {
                eprintln!("xtask: shared kernel {}", shared_img.display());
                return Ok(shared_img);
            }
            _ => eprintln!(
                "xtask: shared kernel {} was built from another fragment; not using it",
                shared_img.display()
            ),
        }
    }
    let cache = root().join(format!("target/vmtest/kernel-{ver}-{}", &frag_sha[..12]));
    let img = cache.join("bzImage");
    if img.is_file() {
        eprintln!("xtask: cached kernel {}", img.display());
        return Ok(img);
    }
    build_kernel(ver, &fragment, &cache)?;
    Ok(img)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Installs Debian packages as root, or says exactly what to run.
fn apt_install(pkgs: &[&str], suite: Option<&str>) -> Result<()> {
    let mut cmd = vec!["apt-get", "install", "-y", "--no-install-recommends"];
    if let Some(s) = suite {
        cmd.extend(["-t", s]);
    }
    cmd.extend(pkgs);
    if !is_root() {
        return Err(format!(
            "missing packages; run as root: apt-get update && {}",
            cmd.join(" ")
        ));
    }
    if let Some(s) = suite {
        let list = Path::new("/etc/apt/sources.list.d").join(format!("{s}.sources"));
        if !list.exists() {
            let text = format!(
                "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {s}\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            );
            std::fs::write(&list, text).map_err(|e| format!("{}: {e}", list.display()))?;
        }
    }
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new(cmd[0])
        .args(&cmd[1..])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn run(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {st}"))
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn build_kernel(ver: &str, fragment: &Path, out: &Path) -> Result<()> {
    let (pkg, suite) = source_package(ver)?;
    let tarball = PathBuf::from(format!("/usr/src/{pkg}.tar.xz"));
    let tools = ["gcc", "make", "flex", "bison", "bc", "cpio", "xz", "perl"];
    let need_tools = tools.iter().any(|t| !have(t))
        || !Path::new("/usr/include/libelf.h").exists()
        || !Path::new("/usr/include/openssl/ssl.h").exists();
    if need_tools {
        eprintln!("xtask: installing kernel build tools");
        apt_install(
            &[
                "build-essential",
                "flex",
                "bison",
                "bc",
                "cpio",
                "xz-utils",
                "libelf-dev",
                "libssl-dev",
                "perl",
            ],
            None,
        )?;
    }
    if !tarball.exists() {
        eprintln!("xtask: installing {pkg} from {suite}");
        apt_install(&[pkg], Some(suite))?;
    }
    let work = PathBuf::from(format!("{}.build", out.display()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    eprintln!("xtask: unpacking {}", tarball.display());
    run(Command::new("tar")
        .arg("xf")
        .arg(&tarball)
        .arg("-C")
        .arg(&work)
        .arg("--strip-components=1"))?;
    let make = |args: &[&str]| run(Command::new("make").current_dir(&work).args(args));
    make(&["-s", "x86_64_defconfig"])?;
    make(&["-s", "kvm_guest.config"])?;
    run(Command::new("scripts/kconfig/merge_config.sh")
        .current_dir(&work)
        .args(["-m", ".config"])
        .arg(fragment)
        .stdout(Stdio::null()))?;
    make(&["-s", "olddefconfig"])?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
    eprintln!("xtask: building {pkg} bzImage with -j{jobs} (about 13 minutes on 2 cores)");
    let start = Instant::now();
    let mut child = Command::new("make")
        .current_dir(&work)
        .arg(format!("-j{jobs}"))
        .arg("bzImage")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("make: {e}"))?;
    let mut lines = 0u64;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap_or_default();
        lines += 1;
        if lines.is_multiple_of(250) {
            eprintln!(
                "xtask: [{:>4}s] {lines} steps, {}",
                start.elapsed().as_secs(),
                line.trim()
            );
        }
    }
    let st = child.wait().map_err(|e| format!("make: {e}"))?;
    if !st.success() {
        return Err(format!(
            "kernel build failed ({st}); the tree is in {}",
            work.display()
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    std::fs::copy(work.join("arch/x86/boot/bzImage"), out.join("bzImage"))
        .map_err(|e| format!("copy bzImage: {e}"))?;
    std::fs::copy(work.join(".config"), out.join("config")).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&work);
    eprintln!(
        "xtask: kernel built in {}s: {}",
        start.elapsed().as_secs(),
        out.join("bzImage").display()
    );
    Ok(())
}

// ---------------------------------------------------------------- build

/// Builds with cargo and returns `(target name, executable)` for each artifact kept by `keep`.
fn cargo_build(
    args: &[&str],
    keep: impl Fn(&serde_json::Value) -> bool,
) -> Result<Vec<(String, PathBuf)>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root())
        .args(args)
        .args(["--message-format=json-render-diagnostics", "-p", "iommufd"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo {} failed", args.join(" ")));
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" || !keep(&v) {
            continue;
        }
        if let Some(exe) = v["executable"].as_str() {
            found.push((
                v["target"]["name"].as_str().unwrap_or("?").to_string(),
                exe.into(),
            ));
        }
    }
    Ok(found)
}

// ---------------------------------------------------------------- guest

/// The guest's fixed topology (see README.md, "The guest"):
/// - singleton: an edu alone on the root bus;
/// - pair: two edus behind a conventional pci-bridge (one viable group of three);
/// - nonviable: an edu and a virtio-rng (on virtio-pci) behind a second pci-bridge.
const TOPOLOGY: &[&str] = &[
    "-device",
    "edu,id=singleton",
    "-device",
    "pci-bridge,id=pair,chassis_nr=1",
    "-device",
    "edu,bus=pair,addr=1",
    "-device",
    "edu,bus=pair,addr=2",
    "-device",
    "pci-bridge,id=nonviable,chassis_nr=2",
    "-device",
    "edu,bus=nonviable,addr=1",
    "-device",
    "virtio-rng-pci,bus=nonviable,addr=2",
];

/// Shell run inside the guest before the job: every edu goes to vfio-pci
/// (driver_override + drivers_probe), the way an operator would do it.
const BIND_EDUS: &str = r#"
for d in /sys/bus/pci/devices/*; do
  [ "$(cat $d/vendor)" = 0x1234 ] && [ "$(cat $d/device)" = 0x11e8 ] || continue
  b=${d##*/}
  echo vfio-pci > $d/driver_override
  [ -e $d/driver ] && echo $b > $d/driver/unbind
  echo $b > /sys/bus/pci/drivers_probe
  echo "guest: $b -> $(basename $(readlink $d/driver)) group $(basename $(readlink $d/iommu_group))"
done
"#;

struct GuestOutcome {
    exit: Option<i32>,
    passed: u64,
    failed: u64,
    /// The console went silent for `stall()` and QEMU was killed.
    stalled: bool,
}

/// No console line for this long means the guest froze. Every test prints a
/// line when it ends and the slowest takes a few seconds, so this is far
/// above any real test. Seen here a few times: under TCG the whole guest
/// (even a background `sleep` in init) stops waking, between tests; the
/// guest kernel, not a test, is stuck.
/// `IOMMUFD_VMTEST_STALL` (seconds) overrides it.
fn stall() -> Duration {
    let secs = std::env::var("IOMMUFD_VMTEST_STALL")
        .ok()
        .and_then(|v| v.parse().ok());
    Duration::from_secs(secs.unwrap_or(90))
}

/// Boots as [`boot`] does, and boots once more if the guest froze. The frozen
/// attempt's counts are dropped, and the retry is announced, so a stall is
/// never a silent pass; a second stall is a failure.
fn boot_guest(kernel: &Path, job: &Path, o: &Opts) -> Result<GuestOutcome> {
    let first = boot(kernel, job, o)?;
    if !first.stalled {
        return Ok(first);
    }
    eprintln!(
        "xtask: the guest froze (no console output for {}s); its results are discarded and it boots once more",
        stall().as_secs()
    );
    let second = boot(kernel, job, o)?;
    if second.stalled {
        eprintln!("xtask: the guest froze again; giving up");
    }
    Ok(second)
}

fn ensure_qemu() -> Result<()> {
    if !have("qemu-system-x86_64") {
        // QEMU 10 from bookworm-backports is what the harness was tried with.
        let bookworm =
            std::fs::read_to_string("/etc/os-release").is_ok_and(|s| s.contains("bookworm"));
        eprintln!("xtask: qemu-system-x86_64 not found; installing qemu-system-x86");
        apt_install(
            &["qemu-system-x86"],
            bookworm.then_some("bookworm-backports"),
        )?;
    }
    Ok(())
}

/// Boots the guest on `kernel`, runs `job` (a shell script path visible in the guest),
/// streams the console, and counts libtest results.
fn boot(kernel: &Path, job: &Path, o: &Opts) -> Result<GuestOutcome> {
    ensure_qemu()?;
    let init = root().join("vmtest/init.sh");
    let cpu = if o.accel == "kvm" {
        "host,-arch-capabilities"
    } else {
        "max"
    };
    let append = format!(
        "console=ttyS0 root=hostroot rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=262144 ro \
         init={} intel_iommu=on no_timer_check panic=-1 quiet vmt.cmd={}",
        init.display(),
        job.display()
    );
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-machine",
        &format!("q35,accel={},kernel-irqchip=split", o.accel),
    ])
    .args(["-cpu", cpu, "-smp", "2", "-m", "2G"])
    .args(["-device", "intel-iommu,intremap=on,caching-mode=on"])
    .args(["-nographic", "-no-reboot", "-nic", "none", "-vga", "none"])
    .arg("-kernel")
    .arg(kernel)
    .args(["-append", &append])
    .args([
        "-fsdev",
        "local,id=hostroot,path=/,security_model=none,readonly=on",
    ])
    .args(["-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"])
    .args(TOPOLOGY)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    eprintln!(
        "xtask: booting {} ({}, timeout {}s)",
        kernel.display(),
        o.accel,
        o.timeout
    );
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("qemu-system-x86_64: {e}"))?;
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(o.timeout);
    let mut out = GuestOutcome {
        exit: None,
        passed: 0,
        failed: 0,
        stalled: false,
    };
    let stdout = std::io::stdout();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(stall())) {
            Ok(line) => {
                // Strip the terminal control sequences SeaBIOS prints.
                let clean: String = line
                    .chars()
                    .filter(|c| !c.is_control() || *c == '\t')
                    .collect();
                let _ = writeln!(stdout.lock(), "{clean}");
                if let Some(rest) = clean.trim().strip_prefix("test result: ") {
                    let (p, f) = parse_counts(rest);
                    out.passed += p;
                    out.failed += f;
                }
                if let Some(code) = clean.trim().strip_prefix("VMT-EXIT ") {
                    out.exit = code.trim().parse().ok();
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) if left > stall() => {
                eprintln!(
                    "xtask: no guest output for {}s; killing QEMU",
                    stall().as_secs()
                );
                out.stalled = true;
                let _ = child.kill();
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                eprintln!("xtask: guest timed out after {}s; killing QEMU", o.timeout);
                let _ = child.kill();
                break;
            }
        }
    }
    let _ = child.wait();
    Ok(out)
}

/// `"ok. 12 passed; 0 failed; 3 ignored; ..."` → (12, 0).
fn parse_counts(s: &str) -> (u64, u64) {
    let mut passed = 0;
    let mut failed = 0;
    for part in s.split(';') {
        let words: Vec<&str> = part.split_whitespace().collect();
        for w in words.windows(2) {
            match w[1] {
                "passed" => passed = w[0].parse().unwrap_or(0),
                "failed" => failed = w[0].parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    (passed, failed)
}

fn write_job(name: &str, body: &str) -> Result<PathBuf> {
    let dir = root().join("target/vmtest");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join(format!("{name}.sh"));
    let text = format!(
        "#!/bin/sh\n# generated by cargo xtask; runs inside the guest\nexport IOMMUFD_VMTEST=1 RUST_BACKTRACE=1\ncd {}\n{BIND_EDUS}\n{body}\n",
        root().display()
    );
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn vmtest(o: &Opts) -> Result<bool> {
    let kernel = find_or_build_kernel(&o.kernel)?;
    let bins = cargo_build(&["test", "--no-run", "--tests"], |v| {
        v["target"]["kind"][0] == "test"
            && v["target"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("guest_"))
    })?;
    if bins.is_empty() {
        return Err("no guest_* test targets were built".into());
    }
    let filter = o.filter.as_deref().map(shell_quote).unwrap_or_default();
    let mut body = String::from("rc=0\n");
    for (name, exe) in &bins {
        body += &format!(
            "echo \"guest: running {name}\"\nIOMMUFD_TEST_KERNEL_VERSION={ver} {exe} --include-ignored --test-threads=1 --color never {filter} || rc=1\n",
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

fn demo(o: &Opts) -> Result<bool> {
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

fn bench(o: &Opts) -> Result<bool> {
    let kernel = find_or_build_kernel(&o.kernel)?;
    let bins = cargo_build(&["bench", "--no-run", "--benches"], |v| {
        v["target"]["kind"][0] == "bench"
    })?;
    if bins.is_empty() {
        return Err("no benches were built".into());
    }
    let mut body = String::from("rc=0\n");
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

#[cfg(test)]
mod tests {
    use super::parse_counts;

    #[test]
    fn counts_from_libtest_summary() {
        assert_eq!(
            parse_counts(
                "ok. 12 passed; 0 failed; 3 ignored; 0 measured; 0 filtered out; finished in 1.00s"
            ),
            (12, 0)
        );
        assert_eq!(
            parse_counts("FAILED. 1 passed; 2 failed; 0 ignored"),
            (1, 2)
        );
    }
}
