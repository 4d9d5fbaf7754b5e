//! The guest kernel: the shared prebuilt image, the cache, or a build from Debian's source.

use crate::host::{apt_install, have, run};
use crate::{root, shared, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const DEBIAN: &str = "http://deb.debian.org/debian";
const SECURITY: &str = "http://security.debian.org/debian-security";

/// Where each kernel version's source comes from (Debian package, suite,
/// archive). Only the package itself is fetched (see [`fetch_source`]): no
/// suite is added to the host's apt sources and nothing is installed from
/// one, so the host's libc and perl stay what they are.
pub(crate) fn source_package(ver: &str) -> Result<(&'static str, &'static str, &'static str)> {
    match ver {
        "7.3" => Ok(("linux-source-7.3", "trixie-backports", DEBIAN)),
        // 6.12.117-1~deb12u1 and later: built for bookworm.
        "6.12" => Ok(("linux-source-6.12", "bookworm-security", SECURITY)),
        "6.1" => Ok(("linux-source-6.1", "bookworm", DEBIAN)),
        v => Err(format!(
            "unknown kernel version {v:?}: use 7.3, 6.12, 6.1 or a bzImage path"
        )),
    }
}

pub(crate) fn sha256(path: &Path) -> Result<String> {
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
pub(crate) fn find_or_build_kernel(ver: &str) -> Result<PathBuf> {
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

/// Downloads `pkg` from `suite` with `apt-get download` against a private
/// apt state (its own sources list, package lists and cache under `out`'s
/// parent), unpacks it with `dpkg -x`, and returns the source tarball in it.
/// Nothing is installed and no dependency is resolved against the foreign
/// suite: `apt-get install -t trixie` on bookworm would replace libc6.
pub(crate) fn fetch_source(pkg: &str, suite: &str, archive: &str, out: &Path) -> Result<PathBuf> {
    let dir = PathBuf::from(format!("{}.apt", out.display()));
    let lists = dir.join("lists");
    std::fs::create_dir_all(lists.join("partial"))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::create_dir_all(dir.join("cache/archives/partial")).map_err(|e| e.to_string())?;
    let list = dir.join("sources.list");
    std::fs::write(
        &list,
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {archive} {suite} main\n"
        ),
    )
    .map_err(|e| format!("{}: {e}", list.display()))?;
    let private = |sub: &str| -> Command {
        let mut c = Command::new("apt-get");
        c.arg("-q")
            .arg(format!("-oDir::Etc::SourceList={}", list.display()))
            .arg("-oDir::Etc::SourceParts=/dev/null")
            .arg(format!("-oDir::State::Lists={}", lists.display()))
            .arg(format!("-oDir::Cache={}", dir.join("cache").display()))
            .arg("-oAPT::Sandbox::User=root")
            .arg(sub)
            .current_dir(&dir);
        c
    };
    eprintln!("xtask: fetching {pkg} from {suite} (download only, no install)");
    run(&mut private("update"))?;
    run(private("download").arg(pkg))?;
    let deb = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb"))
        })
        .ok_or(format!(
            "apt-get download {pkg} left no .deb in {}",
            dir.display()
        ))?;
    let root = dir.join("root");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))?;
    let tarball = root.join(format!("usr/src/{pkg}.tar.xz"));
    if tarball.is_file() {
        Ok(tarball)
    } else {
        Err(format!("{} holds no {}", deb.display(), tarball.display()))
    }
}

pub(crate) fn build_kernel(ver: &str, fragment: &Path, out: &Path) -> Result<()> {
    let (pkg, suite, archive) = source_package(ver)?;
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
    let installed = PathBuf::from(format!("/usr/src/{pkg}.tar.xz"));
    let tarball = if installed.exists() {
        installed
    } else {
        fetch_source(pkg, suite, archive, out)?
    };
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
    let _ = std::fs::remove_dir_all(format!("{}.apt", out.display()));
    eprintln!(
        "xtask: kernel built in {}s: {}",
        start.elapsed().as_secs(),
        out.join("bzImage").display()
    );
    Ok(())
}
