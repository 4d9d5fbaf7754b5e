//! PCI topology from sysfs: drivers, IOMMU groups, VFIO cdev names.
//!
//! # Example
//!
//! ```no_run
//! use std::path::Path;
//! # fn main() -> iommufd::Result<()> {
//! let sys = Path::new("/sys");
//! for g in iommufd::sysfs::groups(sys)? {
//!     for m in iommufd::sysfs::group_members(sys, g)? {
//!         println!("group {g}: {} on {:?}, DMA-safe: {}", m.bdf, m.driver, m.is_dma_safe());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! `examples/groups.rs` turns this into a verdict per group.
//!
//! Every function takes the sysfs root, so the logic is tested on the host
//! against a directory tree built in a temporary directory.

use crate::error::{Error, ErrorKind, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Drivers that leave DMA to the device's owner, so a group member on one of
/// them does not make the group unsafe to hand out.
///
/// Example: [the `sysfs` module docs](crate::sysfs).
pub const DMA_SAFE_DRIVERS: &[&str] = &["vfio-pci", "pci-stub", "pcieport"];

/// Checks that `bdf` looks like `dddd:bb:dd.f` (hex), so it cannot name a path
/// outside `/sys/bus/pci/devices`.
///
/// Example: [the `sysfs` module docs](crate::sysfs).
pub fn validate_bdf(bdf: &str) -> Result<()> {
    let b = bdf.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_hexdigit);
    let ok = b.len() == 12
        && hex(0..4)
        && b[4] == b':'
        && hex(5..7)
        && b[7] == b':'
        && hex(8..10)
        && b[10] == b'.'
        && (b'0'..=b'7').contains(&b[11]);
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidInput,
            "parse PCI address",
            format!("{bdf:?}"),
        )
        .detail("expected domain:bus:device.function, e.g. 0000:00:02.0"))
    }
}

/// A PCI device as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
///
/// Example: [the `sysfs` module docs](crate::sysfs).
pub struct PciDevice {
    /// `dddd:bb:dd.f`.
    pub bdf: String,
    /// The bound driver's name, if any.
    pub driver: Option<String>,
}

impl PciDevice {
    /// Whether this device, as a member of a group being handed out, is safe:
    /// no driver, or one that leaves DMA to the owner.
    ///
    /// Example: [the `sysfs` module docs](crate::sysfs).
    pub fn is_dma_safe(&self) -> bool {
        self.driver
            .as_deref()
            .is_none_or(|d| DMA_SAFE_DRIVERS.contains(&d))
    }

    /// The shell commands that move this device to vfio-pci.
    ///
    /// Example: [the `sysfs` module docs](crate::sysfs).
    pub fn rebind_hint(&self) -> String {
        rebind_commands(&self.bdf, self.driver.is_some())
    }
}

pub(crate) fn rebind_commands(bdf: &str, has_driver: bool) -> String {
    let dev = format!("/sys/bus/pci/devices/{bdf}");
    let mut s = format!("echo vfio-pci > {dev}/driver_override; ");
    if has_driver {
        s += &format!("echo {bdf} > {dev}/driver/unbind; ");
    }
    s += &format!("echo {bdf} > /sys/bus/pci/drivers_probe");
    s
}

fn dev_dir(sys: &Path, bdf: &str) -> PathBuf {
    sys.join("bus/pci/devices").join(bdf)
}

fn link_name(p: &Path) -> Option<String> {
    std::fs::read_link(p)
        .ok()?
        .file_name()?
        .to_str()
        .map(str::to_string)
}

/// The IOMMU group number behind the `iommu_group` link `p`. A `readlink`
/// that fails with anything but `ENOENT` (a transient failure: memory, a
/// signal) is tried once more, and if it fails again it is reported as
/// that failure, never as a setup without an IOMMU (`Ok(None)` means no
/// link).
fn group_link(p: &Path, object: &str) -> Result<Option<u32>> {
    if let Some(g) = link_name(p).and_then(|g| g.parse().ok()) {
        return Ok(Some(g));
    }
    match std::fs::read_link(p) {
        Ok(t) => Ok(t.file_name().and_then(|n| n.to_str()?.parse().ok())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(transient("readlink", p, object, &e)),
    }
}

/// A sysfs read that failed for a reason of the moment.
#[cold]
fn transient(op: &'static str, p: &Path, object: &str, e: &std::io::Error) -> Error {
    let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
    Error::sys(op, object.to_string(), errno)
        .detail(format!(
            "reading {} failed twice: a failure of the moment (memory, a signal), not of the setup",
            p.display()
        ))
        .hint("try again")
}

/// The device at `bdf`, or an error if sysfs has none.
///
/// Example: [the `sysfs` module docs](crate::sysfs).
pub fn device(sys: &Path, bdf: &str) -> Result<PciDevice> {
    validate_bdf(bdf)?;
    let dir = dev_dir(sys, bdf);
    if !dir.exists() {
        return Err(
            Error::new(ErrorKind::InvalidInput, "look up PCI device", bdf)
                .detail(format!("{} does not exist", dir.display())),
        );
    }
    Ok(PciDevice {
        bdf: bdf.to_string(),
        driver: link_name(&dir.join("driver")),
    })
}

/// The IOMMU group number of `bdf`.
///
/// Example: [the `sysfs` module docs](crate::sysfs).
pub fn group_of(sys: &Path, bdf: &str) -> Result<u32> {
    validate_bdf(bdf)?;
    match group_link(&dev_dir(sys, bdf).join("iommu_group"), bdf)? {
        Some(g) => Ok(g),
        // No such device at all is the likelier mistake: say that first.
        None => Err(device(sys, bdf).err().unwrap_or_else(|| {
            Error::new(ErrorKind::InvalidInput, "look up IOMMU group", bdf)
                .detail("the device has no iommu_group link")
                .hint("boot with the IOMMU enabled (intel_iommu=on / amd_iommu=on) and check dmesg for DMAR/IOMMU errors")
        })),
    }
}

/// The members of IOMMU group `group`, sorted by BDF, with their drivers.
///
/// Example: [the `sysfs` module docs](crate::sysfs).
pub fn group_members(sys: &Path, group: u32) -> Result<Vec<PciDevice>> {
    let dir = sys.join(format!("kernel/iommu_groups/{group}/devices"));
    let rd = std::fs::read_dir(&dir).map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            "list IOMMU group",
            format!("group {group}"),
        )
        .detail(format!("{}: {e}", dir.display()))
    })?;
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let driver = link_name(&entry.path().join("driver"));
        out.push(PciDevice { bdf: name, driver });
    }
    out.sort_by(|a, b| a.bdf.cmp(&b.bdf));
    Ok(out)
}

/// A PCI device's `vfio-dev` directory in sysfs, open, for the two
/// lookups `Device::open` makes on every call: the cdev name, listed from
/// it, and the IOMMU group, reached relative to it (`../iommu_group`). The
/// kernel then walks `/sys/bus/pci/devices/<bdf>` and resolves its symlink
/// once, not once per lookup: each walk through a sysfs symlink costs the
/// kernel thousands of instructions.
pub(crate) struct CdevDir(OwnedFd);

impl CdevDir {
    /// `None` when `bdf` is not a BDF, or has no `vfio-dev` (not bound to
    /// vfio-pci, or a kernel without the cdev).
    pub(crate) fn open(sys: &Path, bdf: &str) -> Option<CdevDir> {
        validate_bdf(bdf).ok()?;
        open_dir(None, &dev_dir(sys, bdf).join("vfio-dev")).map(CdevDir)
    }

    /// The device's VFIO cdev name (`vfioN`): the directory holds that one
    /// entry, so the listing stops at it (one `getdents64`).
    pub(crate) fn cdev_name(&self) -> Option<String> {
        let mut name = None;
        list(self.0.as_fd(), |n| vfio_entry(n, &mut name));
        name
    }

    /// Whether the device is the only member of its IOMMU group, counted
    /// through its own `iommu_group/devices` link (read to its end). False
    /// when it has more, or cannot be read: the caller then asks
    /// [`group_of`] and [`group_size`], which say why.
    pub(crate) fn alone_in_group(&self) -> bool {
        entries(Some(self.0.as_fd()), Path::new("../iommu_group/devices")) == Some(1)
    }
}

/// Keeps the first `vfioN` entry; false (stop) once it has one.
fn vfio_entry(n: &[u8], name: &mut Option<String>) -> bool {
    if n.starts_with(b"vfio") {
        *name = std::str::from_utf8(n).ok().map(str::to_string);
    }
    name.is_none()
}

/// How many entries the directory `dir` (relative to `at`, or the working
/// directory) has, read to its end; `None` when it cannot be read.
fn entries(at: Option<BorrowedFd<'_>>, dir: &Path) -> Option<usize> {
    let mut n = 0;
    small_dir_calls(at, dir, |_| {
        n += 1;
        true
    })?;
    Some(n)
}

/// Calls `each` with the name of every entry of `dir` but `.` and `..`,
/// until it returns false; `None` when `dir` cannot be opened or read.
///
/// For the few-entry sysfs directories `Device::open` reads on every call:
/// `openat`, `getdents64`, `close` (`std::fs::read_dir` also asks `fstat`).
///
/// A short buffer does not mean the end: the kernel also stops filling it
/// when a signal is pending, and a group member missed that way would let a
/// shared device pass for a lone one. So the listing ends only where the
/// kernel says so: `getdents64` returns 0, or, on sysfs, the last entry's
/// `d_off` is [`KERNFS_END`], which kernfs sets only once it has emitted the
/// last child (that saves the second call). A caller looking for one entry
/// stops at it (`each` returns false), which no early stop can get wrong.
fn small_dir(dir: &Path, each: impl FnMut(&[u8]) -> bool) -> Option<()> {
    small_dir_calls(None, dir, each).map(drop)
}

/// The directory position kernfs (sysfs) reports after its last entry:
/// `kernfs_fop_readdir` sets `ctx->pos = INT_MAX` when it has emitted every
/// child, and `kernfs_name_hash` keeps every child's position below it, so
/// a stop part-way (buffer full, signal pending) reports a smaller one.
/// Elsewhere it is either the same end marker (ext4's 32-bit htree) or
/// never reached (tmpfs counts entries), and the listing reads on to 0.
const KERNFS_END: i64 = i32::MAX as i64;

/// [`small_dir`] of `dir` relative to `at` (or the working directory),
/// returning how many `getdents64` calls it made.
fn small_dir_calls(
    at: Option<BorrowedFd<'_>>,
    dir: &Path,
    each: impl FnMut(&[u8]) -> bool,
) -> Option<usize> {
    let fd = open_dir(at, dir)?;
    list(fd.as_fd(), each)
}

fn open_dir(at: Option<BorrowedFd<'_>>, dir: &Path) -> Option<OwnedFd> {
    nix::fcntl::openat(
        at.unwrap_or(nix::fcntl::AT_FDCWD),
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()
}

/// The listing of [`small_dir_calls`], on a directory already open.
fn list(fd: BorrowedFd<'_>, mut each: impl FnMut(&[u8]) -> bool) -> Option<usize> {
    let mut buf = [0u8; 2048];
    let mut calls = 0;
    loop {
        calls += 1;
        // SAFETY: `buf` is valid for `buf.len()` bytes of writes for the whole
        // call, and `fd` is an open directory that outlives it.
        let n = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_getdents64,
                fd.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        let n = usize::try_from(n).ok()?;
        if n == 0 {
            return Some(calls);
        }
        // struct linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name.
        let mut at = 0;
        let mut last_off = 0;
        while at + 19 <= n {
            let reclen = usize::from(u16::from_ne_bytes([buf[at + 16], buf[at + 17]]));
            if reclen < 19 || at + reclen > n {
                return None;
            }
            let name = &buf[at + 19..at + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if name != b"." && name != b".." && !each(name) {
                return Some(calls);
            }
            let off: [u8; 8] = buf[at + 8..at + 16].try_into().expect("8 bytes");
            last_off = i64::from_ne_bytes(off);
            at += reclen;
        }
        if last_off == KERNFS_END {
            return Some(calls);
        }
    }
}

/// How many devices IOMMU group `group` has (one directory read, no driver
/// look-ups: for the check before opening a device alone).
pub(crate) fn group_size(sys: &Path, group: u32) -> Result<usize> {
    match entries(
        None,
        &sys.join(format!("kernel/iommu_groups/{group}/devices")),
    ) {
        Some(n) => Ok(n),
        // Why it cannot be read, from the listing that says so.
        None => group_members(sys, group).map(|m| m.len()),
    }
}

/// Every IOMMU group on the host, ascending.
///
/// Example: [the `sysfs` module docs](crate::sysfs).
pub fn groups(sys: &Path) -> Result<Vec<u32>> {
    let dir = sys.join("kernel/iommu_groups");
    let rd = std::fs::read_dir(&dir).map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            "list IOMMU groups",
            dir.display().to_string(),
        )
        .detail(e.to_string())
        .hint("no IOMMU groups: boot with the IOMMU enabled (intel_iommu=on / amd_iommu=on)")
    })?;
    let mut out: Vec<u32> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// The device at `bdf`, if it is bound to vfio-pci; otherwise an error that
/// says which driver has it and how to move it.
///
/// Example: [the `sysfs` module docs](crate::sysfs).
pub fn require_vfio_pci(sys: &Path, bdf: &str) -> Result<PciDevice> {
    let dev = device(sys, bdf)?;
    if dev.driver.as_deref() == Some("vfio-pci") {
        return Ok(dev);
    }
    Err(Error::new(ErrorKind::NotVfioPci, "open VFIO device", bdf)
        .detail(format!(
            "the device is bound to {}, not vfio-pci",
            dev.driver.as_deref().unwrap_or("no driver")
        ))
        .hint(format!("bind it to vfio-pci: {}", dev.rebind_hint())))
}

/// The device behind an open VFIO device cdev, as sysfs tells it: its name
/// (a BDF, or an mdev's UUID) and its IOMMU group. `what` names the fd in
/// errors, and is only called for one.
pub(crate) fn cdev_device(
    sys: &Path,
    fd: std::os::fd::BorrowedFd<'_>,
    what: &dyn Fn() -> String,
) -> Result<(String, u32)> {
    let not_cdev = |why: String| {
        Error::new(ErrorKind::InvalidInput, "identify VFIO device", what())
            .detail(why)
            .hint("pass an fd of /dev/vfio/devices/vfioN (the VFIO device cdev)")
    };
    let st = nix::sys::stat::fstat(fd)
        .map_err(|e| Error::sys("fstat", what(), e).kind_(ErrorKind::InvalidInput))?;
    if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFCHR {
        return Err(not_cdev("not a character device".into()));
    }
    let (major, minor) = (
        nix::sys::stat::major(st.st_rdev),
        nix::sys::stat::minor(st.st_rdev),
    );
    let node = sys.join(format!("dev/char/{major}:{minor}"));
    let real =
        std::fs::canonicalize(&node).map_err(|e| not_cdev(format!("{}: {e}", node.display())))?;
    // .../<device>/vfio-dev/vfioN
    let parent = real.parent();
    if parent
        .and_then(Path::file_name)
        .is_none_or(|n| n != "vfio-dev")
    {
        return Err(not_cdev(format!(
            "character device {major}:{minor} is {}, not a VFIO device cdev",
            real.display()
        )));
    }
    let dev = parent
        .and_then(Path::parent)
        .expect("vfio-dev has a parent");
    let name = dev
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let group = group_link(&dev.join("iommu_group"), &name)?.ok_or_else(|| {
        Error::new(ErrorKind::InvalidInput, "look up IOMMU group", name.clone())
            .detail("the device has no iommu_group link")
    })?;
    Ok((name, group))
}

/// The VFIO device cdev name (`vfioN`) of `bdf`, or why there is none.
///
/// Example: [the `sysfs` module docs](crate::sysfs).
pub fn cdev_name(sys: &Path, bdf: &str) -> Result<String> {
    validate_bdf(bdf)?;
    let dir = dev_dir(sys, bdf).join("vfio-dev");
    let mut name = None;
    small_dir(&dir, |n| vfio_entry(n, &mut name));
    if let Some(n) = name {
        return Ok(n);
    }
    // Why not, asked only now: a failure of the moment, no such device,
    // another driver, or no cdev.
    match std::fs::read_dir(&dir) {
        Ok(mut rd) => {
            let again = rd.find_map(|e| {
                let n = e.ok()?.file_name().into_string().ok()?;
                n.starts_with("vfio").then_some(n)
            });
            if let Some(n) = again {
                return Ok(n);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(transient("open", &dir, bdf, &e)),
    }
    require_vfio_pci(sys, bdf)?;
    Err(Error::new(ErrorKind::NoDeviceCdev, "open VFIO device", bdf)
        .detail(format!("{} is missing", dir.display()))
        .hint("this kernel has no VFIO device cdev: enable CONFIG_VFIO_DEVICE_CDEV (Linux >= 6.6), or use the legacy group path"))
}

/// The PF of SR-IOV VF `bdf` when that PF is bound to vfio-pci (so its
/// user may hold a VF token); `None` for a PF, a VF of a host driver's PF,
/// or an mdev. One `readlink` for a device that is not a VF.
pub(crate) fn vfio_pf_of(bdf: &str) -> Option<String> {
    let dev = Path::new("/sys/bus/pci/devices").join(bdf);
    let pf = std::fs::read_link(dev.join("physfn")).ok()?;
    let pf = pf.file_name()?.to_str()?.to_string();
    let driver =
        std::fs::read_link(Path::new("/sys/bus/pci/devices").join(&pf).join("driver")).ok()?;
    driver.ends_with("vfio-pci").then_some(pf)
}

/// Whether `s` is a UUID as sysfs spells one (8-4-4-4-12 hex digits).
/// The reserved IOVA regions of `bdf`'s IOMMU group
/// (`iommu_group/reserved_regions`: `start last type` per line), for an
/// error's detail; empty when sysfs has none (an mdev, no IOMMU).
#[cold]
pub(crate) fn reserved_regions(sys: &Path, bdf: &str) -> Vec<(u64, u64, String)> {
    let p = sys
        .join("bus/pci/devices")
        .join(bdf)
        .join("iommu_group/reserved_regions");
    let hex = |w: &str| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok();
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (start, last) = (hex(w.next()?)?, hex(w.next()?)?);
            Some((start, last, w.next().unwrap_or("?").to_string()))
        })
        .filter(|&(start, last, _)| start <= last)
        .collect()
}

pub(crate) fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// `small_dir` sees every entry, whether they fit in one `getdents64`
    /// or need several, and nothing but them.
    #[test]
    fn small_dir_lists_every_entry() {
        let root = std::env::temp_dir().join(format!("iommufd-smalldir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for n in [0usize, 1, 2, 300] {
            let dir = root.join(n.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            let mut want: Vec<String> = (0..n).map(|i| format!("{i:0>40}")).collect();
            for w in &want {
                std::fs::write(dir.join(w), b"").unwrap();
            }
            let mut got = Vec::new();
            small_dir(&dir, |name| {
                got.push(String::from_utf8(name.to_vec()).unwrap());
                true
            })
            .unwrap();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{n} entries");
        }
        // Stopping at an entry stops the listing there.
        let mut seen = 0;
        small_dir(&root.join("300"), |_| {
            seen += 1;
            seen < 5
        })
        .unwrap();
        assert_eq!(seen, 5);
        assert!(small_dir(&root.join("missing"), |_| true).is_none());
        let _ = std::fs::remove_dir_all(&root);
    }

    /// On sysfs one `getdents64` is enough when it holds the whole
    /// directory (kernfs marks the end), and the entries are the same as
    /// `read_dir`'s. (`small_dir_lists_every_entry` covers listings that
    /// need several calls.) Skipped where /sys is not mounted.
    #[test]
    fn small_dir_stops_at_the_kernfs_end_marker() {
        let sys = Path::new("/sys/kernel");
        if std::fs::read_dir(sys).is_err() {
            eprintln!("skipped: no /sys/kernel here");
            return;
        }
        let mut got = Vec::new();
        let calls = small_dir_calls(None, sys, |n| {
            got.push(String::from_utf8(n.to_vec()).unwrap());
            true
        })
        .unwrap();
        let mut want: Vec<String> = std::fs::read_dir(sys)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        // A dirent takes 19 bytes + the name + its NUL, rounded up to 8;
        // `.` and `..` take 24 each.
        let bytes = 48
            + got
                .iter()
                .map(|n| (n.len() + 20).next_multiple_of(8))
                .sum::<usize>();
        if bytes > 2048 {
            eprintln!("skipped: /sys/kernel needs {bytes} bytes here, more than one call's buffer");
            return;
        }
        assert_eq!(calls, 1, "kernfs's end marker was not seen");
    }

    /// A fake sysfs: `devs` are (bdf, group, driver, vfio cdev).
    pub(crate) fn fake_sysfs(
        name: &str,
        devs: &[(&str, u32, Option<&str>, Option<&str>)],
    ) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("iommufd-sysfs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (bdf, group, driver, cdev) in devs {
            let real = root.join("devices/pci0000:00").join(bdf);
            std::fs::create_dir_all(&real).unwrap();
            let gdir = root.join(format!("kernel/iommu_groups/{group}/devices"));
            std::fs::create_dir_all(&gdir).unwrap();
            let _ = symlink(&real, gdir.join(bdf));
            symlink(
                root.join(format!("kernel/iommu_groups/{group}")),
                real.join("iommu_group"),
            )
            .unwrap();
            if let Some(d) = driver {
                let ddir = root.join("bus/pci/drivers").join(d);
                std::fs::create_dir_all(&ddir).unwrap();
                symlink(&ddir, real.join("driver")).unwrap();
            }
            if let Some(c) = cdev {
                std::fs::create_dir_all(real.join("vfio-dev").join(c)).unwrap();
            }
            std::fs::create_dir_all(root.join("bus/pci/devices")).unwrap();
            symlink(&real, root.join("bus/pci/devices").join(bdf)).unwrap();
        }
        root
    }

    #[test]
    fn bdf_validation() {
        validate_bdf("0000:00:02.0").unwrap();
        validate_bdf("abcd:ef:1f.7").unwrap();
        for bad in [
            "",
            "0000:00:02",
            "../../../etc",
            "0000:00:02.8",
            "0000-00:02.0",
            "00000:00:02.0",
            "0000:00:0g.0",
        ] {
            assert_eq!(
                validate_bdf(bad).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad}"
            );
        }
    }

    #[test]
    fn resolves_cdev_group_and_drivers() {
        let sys = fake_sysfs(
            "resolve",
            &[
                ("0000:00:02.0", 2, Some("vfio-pci"), Some("vfio0")),
                ("0000:00:03.0", 3, None, None),
                ("0000:01:01.0", 3, Some("vfio-pci"), Some("vfio1")),
                ("0000:02:02.0", 4, Some("virtio-pci"), None),
            ],
        );
        assert_eq!(cdev_name(&sys, "0000:00:02.0").unwrap(), "vfio0");
        assert_eq!(group_of(&sys, "0000:01:01.0").unwrap(), 3);
        let members = group_members(&sys, 3).unwrap();
        assert_eq!(
            members.iter().map(|d| d.bdf.as_str()).collect::<Vec<_>>(),
            ["0000:00:03.0", "0000:01:01.0"]
        );
        assert!(members.iter().all(PciDevice::is_dma_safe));
        assert_eq!(groups(&sys).unwrap(), [2, 3, 4]);

        let e = cdev_name(&sys, "0000:02:02.0").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotVfioPci);
        let msg = e.to_string();
        assert!(
            msg.contains("virtio-pci")
                && msg.contains("driver_override")
                && msg.contains("0000:02:02.0/driver/unbind"),
            "{msg}"
        );
        assert!(!group_members(&sys, 4).unwrap()[0].is_dma_safe());

        let e = cdev_name(&sys, "0000:00:03.0").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotVfioPci);
        assert!(
            !e.to_string().contains("/driver/unbind"),
            "no driver to unbind: {e}"
        );
        assert_eq!(
            device(&sys, "0000:09:00.0").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let _ = std::fs::remove_dir_all(&sys);
    }

    #[test]
    fn vfio_pci_without_cdev_means_no_cdev_support() {
        let sys = fake_sysfs("nocdev", &[("0000:00:02.0", 1, Some("vfio-pci"), None)]);
        let e = cdev_name(&sys, "0000:00:02.0").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoDeviceCdev);
        assert!(e.to_string().contains("CONFIG_VFIO_DEVICE_CDEV"));
        let _ = std::fs::remove_dir_all(&sys);
    }
}
