//! Turning a bare errno from bind into a cause and a fix.

use crate::error::{Error, ErrorKind};
use crate::sysfs::{self, PciDevice};
use nix::errno::Errno;
use std::path::Path;

/// Members of `bdf`'s group (other than `bdf` itself) on a driver that does
/// its own DMA. `None` when the group cannot be read.
pub(crate) fn unsafe_members(sys: &Path, bdf: &str) -> Option<Vec<PciDevice>> {
    let group = sysfs::group_of(sys, bdf).ok()?;
    let members = sysfs::group_members(sys, group).ok()?;
    Some(
        members
            .into_iter()
            .filter(|m| m.bdf != bdf && !m.is_dma_safe())
            .collect(),
    )
}

/// The error for a group with members on DMA-capable drivers.
pub(crate) fn not_viable(op: &'static str, object: &str, offenders: &[PciDevice]) -> Error {
    let names: Vec<String> = offenders
        .iter()
        .map(|d| {
            format!(
                "{} (driver {})",
                d.bdf,
                d.driver.as_deref().unwrap_or("none")
            )
        })
        .collect();
    let fixes: Vec<String> = offenders.iter().map(PciDevice::rebind_hint).collect();
    Error::new(ErrorKind::GroupNotViable, op, object.to_string())
        .detail(format!(
            "the IOMMU group is not viable: {} bound to a driver that does its own DMA",
            names.join(", ")
        ))
        .hint(format!(
            "unbind them or move them to vfio-pci/pci-stub: {}",
            fixes.join("; ")
        ))
}

/// Whether the platform's IOMMUs remap interrupts: `Some(false)` when every
/// Intel IOMMU's extended capability register lacks IR (bit 3), `None` when
/// this cannot be told from sysfs.
pub(crate) fn interrupt_remapping(sys: &Path) -> Option<bool> {
    let rd = std::fs::read_dir(sys.join("class/iommu")).ok()?;
    let mut seen = false;
    for e in rd.flatten() {
        let Ok(ecap) = std::fs::read_to_string(e.path().join("intel-iommu/ecap")) else {
            continue;
        };
        let Ok(v) = u64::from_str_radix(ecap.trim().trim_start_matches("0x"), 16) else {
            continue;
        };
        seen = true;
        if v & (1 << 3) != 0 {
            return Some(true);
        }
    }
    if seen {
        Some(false)
    } else {
        None
    }
}

fn unsafe_interrupts_allowed(sys: &Path) -> bool {
    std::fs::read_to_string(sys.join("module/iommufd/parameters/allow_unsafe_interrupts"))
        .is_ok_and(|s| s.trim() == "Y")
}

/// `/proc/self/status`, read once for the questions below.
fn proc_status() -> Option<String> {
    std::fs::read_to_string("/proc/self/status").ok()
}

/// Whether `status` (`/proc/self/status`) shows `CAP_IPC_LOCK` in the
/// effective set (bit 14 of `CapEff`); `None` when it does not say.
fn has_ipc_lock(status: &str) -> Option<bool> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    let caps = u64::from_str_radix(hex.trim(), 16).ok()?;
    Some(caps & (1 << 14) != 0)
}

/// Bytes this process has pinned for DMA, from `status`: `VmPin` (iommufd)
/// plus `VmLck` (type1 and `mlock`); `None` when it does not say.
fn pinned_by_this_process(status: &str) -> Option<u64> {
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(
        kb("VmPin:")?
            .saturating_add(kb("VmLck:")?)
            .saturating_mul(1024),
    )
}

/// Explains `ENOMEM` from pinning `len` bytes. The kernel charges pinned
/// pages to `RLIMIT_MEMLOCK` only for a process without `CAP_IPC_LOCK`, and
/// only a finite limit can be hit. The limit is blamed only when it must be
/// the cause (what this process has pinned plus `len` exceeds it); below
/// it, the limit is still reachable through other processes of the same
/// user (iommufd counts per user), or the kernel ran short, and the error
/// says both.
pub(crate) fn pin_enomem(err: Error, len: u64) -> Error {
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    let limit = getrlimit(Resource::RLIMIT_MEMLOCK)
        .ok()
        .map(|(soft, _)| soft);
    let status = proc_status();
    let charged = status.as_deref().and_then(has_ipc_lock) != Some(true);
    match limit {
        Some(l) if l != RLIM_INFINITY && charged => {
            let pinned = status.as_deref().and_then(pinned_by_this_process);
            if pinned.unwrap_or(0).saturating_add(len) > l {
                let already = pinned.map_or(String::new(), |p| {
                    format!(" on top of the {p} this process has pinned")
                });
                err.kind_(ErrorKind::MemlockLimit)
                    .detail(format!(
                        "pinning {len} bytes{already} would pass the limit: RLIMIT_MEMLOCK is {l} bytes"
                    ))
                    .hint("raise the memlock limit (ulimit -l, LimitMEMLOCK= in systemd, or CAP_IPC_LOCK)")
            } else {
                err.kind_(ErrorKind::OutOfMemory).detail(format!(
                    "pinning {len} bytes failed although this process stays under RLIMIT_MEMLOCK ({l} bytes): either other processes of the same user hold the rest of the limit (iommufd counts it per user), or the kernel is short of memory"
                ))
            }
        }
        _ => {
            let why = if charged {
                "RLIMIT_MEMLOCK is unlimited"
            } else {
                "the process has CAP_IPC_LOCK, so no memlock limit applies"
            };
            err.kind_(ErrorKind::OutOfMemory).detail(format!(
                "pinning {len} bytes failed: the kernel is short of memory ({why})"
            ))
        }
    }
}

/// Explains `EFAULT` from `IOMMU_IOAS_MAP` of `len` bytes at user address
/// `va`, from what this process has mapped there (`/proc/self/maps`, read
/// after the kernel said no): nothing, a device's BAR (which iommufd never
/// maps by address: the kernel pins memory pages, and a BAR has none), or a
/// mapping that ends inside the range.
pub(crate) fn map_efault(err: Error, va: u64, len: u64) -> Error {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return err;
    };
    let area = maps.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let (start, end) = f.next()?.split_once('-')?;
        let (start, end) = (
            u64::from_str_radix(start, 16).ok()?,
            u64::from_str_radix(end, 16).ok()?,
        );
        let path = f.nth(4).unwrap_or("");
        (start <= va && va < end).then(|| (end, path.to_string()))
    });
    match area {
        None => err
            .kind_(ErrorKind::InvalidInput)
            .detail(format!("user address {va:#x} is not mapped memory of this process")),
        Some((_, path)) if path.starts_with("/dev/vfio/") || path.contains("vfio-device") => err
            .kind_(ErrorKind::InvalidInput)
            .detail(format!(
                "user address {va:#x} is a device's BAR (mapped from {path}): iommufd maps memory by address, never device memory"
            ))
            .hint("export the BAR as a dma-buf (Device::export_bar) and map that with Ioas::map_peer_bar"),
        Some((end, path)) if end < va.saturating_add(len) => err
            .kind_(ErrorKind::InvalidInput)
            .detail(format!(
                "the process's mapping at {va:#x} ({}) ends at {end:#x}, inside the {len:#x} bytes asked for",
                if path.is_empty() { "anonymous" } else { path.as_str() }
            )),
        Some(_) => err,
    }
}

/// The error for a failed `VFIO_DEVICE_BIND_IOMMUFD` on device `name`.
pub(crate) fn bind_error(name: &str, e: Errno, token: crate::backend::cdev::VfToken<'_>) -> Error {
    use crate::backend::cdev::VfToken;
    const OP: &str = "VFIO_DEVICE_BIND_IOMMUFD";
    let given = matches!(token, VfToken::Given(_));
    match (e, given) {
        (Errno::EACCES, false) => Error::sys(OP, name, e).kind_(ErrorKind::VfToken).detail(format!(
            "VF token required: {name} is an SR-IOV VF whose PF{} is owned by a VFIO user that set a VF token",
            crate::sysfs::vfio_pf_of(name).map(|p| format!(" {p}")).unwrap_or_default()
        )).hint("bind with Device::bind_with_vf_token and the token the PF's owner set (Device::set_vf_token)"),
        (Errno::EACCES, true) => Error::sys(OP, name, e)
            .kind_(ErrorKind::VfToken)
            .detail("wrong VF token: it is not the one the PF's owner set"),
        (Errno::EINVAL, true) => Error::sys(OP, name, e)
            .kind_(ErrorKind::VfToken)
            .detail("the kernel refused the VF token: the device takes none (not a VF, or its PF is not on vfio-pci), or it is already bound through another open file"),
        _ => bind_error_in(Path::new("/sys"), name, e),
    }
}

/// The refusal of a bind the kernel would not check: a VF of a PF on
/// vfio-pci, on a kernel whose cdev ignores VF tokens.
#[cold]
pub(crate) fn vf_token_unchecked(name: &str, pf: &str) -> Error {
    Error::new(ErrorKind::VfToken, "VFIO_DEVICE_BIND_IOMMUFD", name.to_string())
        .errno(Errno::EACCES)
        .detail(format!(
            "{name} is an SR-IOV VF of {pf}, which is on vfio-pci, and this kernel's VFIO cdev (Linux {}) does not check VF tokens: it would bind without the PF owner's consent, so the crate refuses",
            kernel_release()
        ))
        .hint("agree on the VF token with the PF's owner and use a kernel whose cdev checks it (7.3 does), or call Device::bind_ignoring_vf_token to accept the risk")
}

/// A VF token given to a kernel whose cdev takes none.
#[cold]
pub(crate) fn vf_token_unsupported(name: &str, e: Errno) -> Error {
    Error::sys("VFIO_DEVICE_BIND_IOMMUFD", name, e)
        .kind_(ErrorKind::Unsupported)
        .detail(format!("this kernel's VFIO cdev takes no VF token (Linux {}): it has no VFIO_DEVICE_BIND_FLAG_TOKEN and does not check VF tokens at all", kernel_release()))
        .hint("Device::bind_ignoring_vf_token binds anyway, accepting that the kernel does not check")
}

/// The running kernel's (major, minor), from `uname`.
pub(crate) fn kernel_version() -> Option<(u32, u32)> {
    let r = kernel_release();
    let mut it = r.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

pub(crate) fn bind_error_in(sys: &Path, name: &str, e: Errno) -> Error {
    const OP: &str = "VFIO_DEVICE_BIND_IOMMUFD";
    match e {
        Errno::EPERM => {
            if let Some(bad) = unsafe_members(sys, name).filter(|b| !b.is_empty()) {
                return not_viable(OP, name, &bad).errno(e);
            }
            match interrupt_remapping(sys) {
                Some(false) if !unsafe_interrupts_allowed(sys) => Error::sys(OP, name, e)
                    .kind_(ErrorKind::NoInterruptRemapping)
                    .detail("the IOMMU does not remap interrupts, so MSI from the device is not isolated")
                    .hint("enable interrupt remapping (intremap=on in firmware / QEMU intel-iommu,intremap=on), or, accepting the risk, load iommufd with allow_unsafe_interrupts=1"),
                _ => Error::sys(OP, name, e).detail(
                    "the kernel refused DMA ownership: either a device of the IOMMU group is on a driver that does its own DMA, or MSI is not isolated (no interrupt remapping)",
                ),
            }
        }
        // `iommufd_ctx_from_fd` answers EBADF for a closed fd and EBADFD for
        // a file that is not /dev/iommu; a valid iommufd gets EINVAL only
        // when the device is already open through another file (the cdev
        // path allows one bound file per device).
        Errno::EBADF | Errno::EBADFD | Errno::ENOTTY => {
            Error::sys(OP, name, e).kind_(ErrorKind::InvalidInput).detail("the fd given as iommufd is not an open /dev/iommu")
        }
        Errno::EINVAL => Error::sys(OP, name, e).kind_(ErrorKind::Busy).detail(
            "the device is already bound through another open file of its cdev: a duplicate of an fd given to Device::from_fd that is still open, or another process",
        ).hint("close every other fd of that open file (the kernel keeps the binding until the last one closes), then bind again"),
        Errno::EBUSY => Error::sys(OP, name, e).kind_(ErrorKind::PathConflict).detail(
            "the device or its group is already in use: bound to another iommufd, or its group is open through the legacy /dev/vfio/<group> path",
        ),
        _ => Error::sys(OP, name, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysfs::tests::fake_sysfs;

    #[test]
    fn eperm_names_the_offending_sibling() {
        let sys = fake_sysfs(
            "diag",
            &[
                ("0000:00:04.0", 4, None, None),
                ("0000:02:01.0", 4, Some("vfio-pci"), Some("vfio3")),
                ("0000:02:02.0", 4, Some("virtio-pci"), None),
            ],
        );
        let e = bind_error_in(&sys, "0000:02:01.0", Errno::EPERM);
        assert_eq!(e.kind(), ErrorKind::GroupNotViable);
        assert_eq!(e.raw_errno(), Some(Errno::EPERM));
        let s = e.to_string();
        assert!(
            s.contains("0000:02:02.0 (driver virtio-pci)") && !s.contains("0000:00:04.0 (driver"),
            "{s}"
        );
        assert!(
            s.contains("echo 0000:02:02.0 > /sys/bus/pci/devices/0000:02:02.0/driver/unbind"),
            "{s}"
        );
        let _ = std::fs::remove_dir_all(&sys);
    }

    #[test]
    fn eperm_without_ir_says_interrupt_remapping() {
        let sys = fake_sysfs(
            "noir",
            &[("0000:00:02.0", 1, Some("vfio-pci"), Some("vfio0"))],
        );
        let d = sys.join("class/iommu/dmar0/intel-iommu");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("ecap"), "f02056\n").unwrap(); // bit 3 clear
        let e = bind_error_in(&sys, "0000:00:02.0", Errno::EPERM);
        assert_eq!(e.kind(), ErrorKind::NoInterruptRemapping, "{e}");
        std::fs::write(d.join("ecap"), "f0205e\n").unwrap(); // bit 3 set
        let e = bind_error_in(&sys, "0000:00:02.0", Errno::EPERM);
        assert_eq!(e.kind(), ErrorKind::Kernel);
        assert!(e.to_string().contains("interrupt remapping"), "{e}");
        let _ = std::fs::remove_dir_all(&sys);
    }
}
