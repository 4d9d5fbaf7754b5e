//! `cargo xtask kselftest`: the kernel's own iommufd and VFIO selftests
//! (`tools/testing/selftests/{iommu,vfio}` of Debian's linux-source),
//! built on the host and run in the same guest as the crate's tests, each
//! printing the harness's own pass/fail/skip counts. A scenario that fails
//! here fails in the kernel's test too: the kernel's (or the emulation's),
//! not the crate's.

use crate::guest::{boot_guest, shell_quote, write_job};
use crate::host::{apt_install, run};
use crate::kernel::{fetch_source, find_or_build_kernel, source_package};
use crate::{root, Opts, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The selftest binaries, with the device each takes: `-` none, `edu` a
/// singleton edu, `nvme` the NVMe controller, `pf` the igb PF (the one
/// device the VFIO driver tests have a driver for).
const TESTS: &[(&str, &str)] = &[
    ("iommu/iommufd", "-"),
    ("iommu/iommufd_fail_nth", "-"),
    ("vfio/vfio_iommufd_setup_test", "edu"),
    ("vfio/vfio_pci_device_test", "nvme"),
    ("vfio/vfio_dma_mapping_test", "edu"),
    ("vfio/vfio_dma_mapping_mmio_test", "edu"),
    ("vfio/vfio_pci_device_init_perf_test", "edu"),
    ("vfio/vfio_pci_driver_test", "pf"),
    ("vfio/vfio_pci_sriov_uapi_test", "pf"),
];

/// Each binary's wall-clock limit in the guest (`timeout`), seconds: the
/// fault-injection sweep is the long one under TCG.
const LIMIT: u64 = 900;

pub(crate) fn kselftest(o: &Opts) -> Result<bool> {
    let ver = o.kernel.as_str();
    let (pkg, suite, archive) = source_package(ver)?;
    let dir = root().join(format!("target/vmtest/kselftest-{ver}"));
    let bin = dir.join("bin");
    if !bin.join("built").exists() {
        build(pkg, suite, archive, &dir, &bin)?;
    } else {
        eprintln!("xtask: cached selftests in {}", bin.display());
    }
    let kernel = find_or_build_kernel(ver)?;
    let mut body = String::from(DEVICES);
    for (test, dev) in TESTS {
        if o.filter.as_deref().is_some_and(|f| !test.contains(f)) {
            continue;
        }
        let exe = shell_quote(&bin.join(test).display().to_string());
        let arg = match *dev {
            "edu" => " \"$EDU\"",
            "pf" => " \"$PF\"",
            "nvme" => " \"$NVME\"",
            _ => "",
        };
        // The harness's own lines go to the console as they come (the
        // stall watchdog sees them); its totals and exit status are
        // repeated with a prefix the host collects.
        body += &format!(
            "echo \"guest: kselftest {test}\"\n\
             ( cd \"$(dirname {exe})\" && timeout {LIMIT} {exe}{arg}; echo \"KST-RC $?\" ) 2>&1 | \
             while IFS= read -r l; do echo \"$l\"; case \"$l\" in \
             '# Totals:'*|KST-RC*) echo \"VMT-KST {test} $l\";; esac; done\n"
        );
    }
    body += "exit 0\n";
    let job = write_job("kselftest", &body)?;
    let out = boot_guest(&kernel, &job, o)?;
    println!("kselftest: Linux {ver}, the kernel's own selftests in the guest:");
    let mut ok = out.exit.is_some();
    for (test, _) in TESTS {
        let mine: Vec<&String> = out
            .kselftest
            .iter()
            .filter(|l| l.split_whitespace().next() == Some(test))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let totals = mine
            .iter()
            .find_map(|l| l.split_once("# Totals: ").map(|(_, t)| t.to_string()));
        let rc = mine
            .iter()
            .find_map(|l| l.split_once("KST-RC ").map(|(_, r)| r.trim().to_string()))
            .unwrap_or_else(|| "?".into());
        let failed = totals
            .as_deref()
            .and_then(|t| count(t, "fail"))
            .is_none_or(|n| n > 0);
        ok &= !failed;
        println!(
            "kselftest: {test}: {} (exit {rc}{})",
            totals.as_deref().unwrap_or("no totals: it did not finish"),
            if rc == "124" {
                ", killed at the time limit"
            } else {
                ""
            }
        );
    }
    Ok(ok)
}

/// `key:N` in a `# Totals:` line.
fn count(totals: &str, key: &str) -> Option<u64> {
    totals
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix(':')?.parse().ok())
}

/// Fetches the source package (download only, as for the kernel), builds
/// the two selftest directories against the tree's own uAPI headers, and
/// keeps the binaries in `bin`.
fn build(pkg: &str, suite: &str, archive: &str, dir: &Path, bin: &Path) -> Result<()> {
    let need = [
        ("/usr/include/sys/capability.h", "libcap-dev"),
        ("/usr/include/uuid/uuid.h", "uuid-dev"),
        ("/usr/bin/make", "make"),
        ("/usr/bin/gcc", "gcc"),
    ];
    let missing: Vec<&str> = need
        .iter()
        .filter(|(f, _)| !Path::new(f).exists())
        .map(|(_, p)| *p)
        .collect();
    if !missing.is_empty() {
        eprintln!("xtask: installing {}", missing.join(" "));
        apt_install(&missing, None)?;
    }
    let installed = PathBuf::from(format!("/usr/src/{pkg}.tar.xz"));
    let tarball = if installed.exists() {
        installed
    } else {
        fetch_source(pkg, suite, archive, dir)?
    };
    let src = dir.join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    eprintln!("xtask: unpacking {}", tarball.display());
    run(Command::new("tar")
        .arg("xf")
        .arg(&tarball)
        .arg("-C")
        .arg(&src)
        .arg("--strip-components=1"))?;
    eprintln!("xtask: building the iommu and vfio selftests");
    run(Command::new("make")
        .current_dir(&src)
        .args(["-s", "headers"]))?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    run(Command::new("make")
        .current_dir(src.join("tools/testing/selftests"))
        .arg(format!("-j{jobs}"))
        .args(["-s", "TARGETS=iommu vfio"]))?;
    for (test, _) in TESTS {
        let to = bin.join(test);
        std::fs::create_dir_all(to.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::copy(src.join("tools/testing/selftests").join(test), &to)
            .map_err(|e| format!("{test} was not built: {e}"))?;
    }
    std::fs::write(bin.join("built"), pkg).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(format!("{}.apt", dir.display()));
    Ok(())
}

/// Shell run in the guest before the selftests: a singleton edu (alone in
/// its IOMMU group), the NVMe controller (MSI-X and a function reset, which
/// the edu lacks) and the igb PF, all already on vfio-pci; and 2 MiB huge
/// pages for the tests that map hugetlb memory (512 MiB: the 128 MiB
/// dirty-tracking variant and the VFIO mapping test's are the largest).
const DEVICES: &str = r#"
EDU= PF= NVME=
for d in /sys/bus/pci/devices/*; do
  id="$(cat $d/vendor):$(cat $d/device)"
  n=$(ls $d/iommu_group/devices | wc -l)
  [ "$id" = 0x1234:0x11e8 ] && [ "$n" = 1 ] && [ -z "$EDU" ] && EDU=${d##*/}
  [ "$id" = 0x8086:0x10c9 ] && PF=${d##*/}
  [ "$(cat $d/class)" = 0x010802 ] && NVME=${d##*/}
done
echo 256 > /proc/sys/vm/nr_hugepages
echo "guest: kselftest devices: edu $EDU, NVMe $NVME, igb PF $PF; 2 MiB huge pages: $(cat /proc/sys/vm/nr_hugepages)"
"#;
