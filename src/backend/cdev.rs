//! The cdev path: a VFIO device cdev (`/dev/vfio/devices/vfioN`) bound to
//! `/dev/iommu`, and IOASes that are iommufd objects.
//!
//! Each function is one ioctl. Error context (object names, ranges) is built
//! only after the kernel said no.

use super::MapFail;
use crate::error::{Error, ErrorKind, Result};
use crate::iova::{Access, IovaRange, IovaRanges};
use crate::sys::{self, vfio};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

/// Opens a cdev (or `/dev/iommu`) read-write, close-on-exec.
pub(crate) fn open_rw(path: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

/// Opens `bdf`'s cdev `/dev/vfio/devices/<name>`; the fd and its path.
pub(crate) fn open_named(dev: &Path, bdf: &str, name: &str) -> Result<(OwnedFd, PathBuf)> {
    let path = dev.join("vfio/devices").join(name);
    match open_rw(&path) {
        Ok(fd) => Ok((fd, path)),
        Err(e) => {
            let err = Error::sys("open", format!("{bdf} ({})", path.display()), e);
            Err(if e == Errno::ENOENT {
                err.kind_(ErrorKind::NoDeviceCdev)
                    .hint("the cdev node is missing: is devtmpfs mounted on /dev?")
            } else {
                err
            })
        }
    }
}

/// `VFIO_DEVICE_BIND_IOMMUFD`; returns the device id.
pub(crate) fn bind(
    dev: BorrowedFd<'_>,
    iommufd: BorrowedFd<'_>,
    name: &str,
    token: VfToken<'_>,
) -> Result<u32> {
    let mut arg = vfio::vfio_device_bind_iommufd {
        argsz: sys::argsz::<vfio::vfio_device_bind_iommufd>(),
        iommufd: iommufd.as_raw_fd(),
        ..Default::default()
    };
    let got = match token {
        VfToken::Check => {
            // A kernel that checks VF tokens itself needs nothing more: one
            // load once that is known. Otherwise one readlink (sysfs
            // `physfn`, absent on all but VFs): the check it does not make.
            if VF_TOKEN_CHECKED.load(std::sync::atomic::Ordering::Relaxed) != 1 {
                vf_token_check(dev, iommufd, name)?;
            }
            sys::bind_iommufd(dev, &mut arg)
        }
        VfToken::Unchecked => sys::bind_iommufd(dev, &mut arg),
        // SAFETY: the token is 16 readable bytes that outlive the call.
        VfToken::Given(t) => unsafe { sys::bind_iommufd_token(dev, &mut arg, t.as_ptr() as u64) },
    };
    match got {
        Ok(_) => Ok(arg.out_devid),
        Err(e) => Err(bind_failed(dev, iommufd, name, e, token)),
    }
}

/// Refuses a VF of a vfio-pci PF on a kernel whose cdev does not check VF
/// tokens. Until the kernel's answer is known, asks it once with this
/// device, VF or not (the token is read before anything else of the
/// device), so that binds on a kernel that checks skip the readlink.
#[cold]
#[inline(never)]
fn vf_token_check(dev: BorrowedFd<'_>, iommufd: BorrowedFd<'_>, name: &str) -> Result<()> {
    match crate::sysfs::vfio_pf_of(name) {
        Some(pf) if !enforces_vf_token(dev, iommufd) => {
            Err(crate::diagnose::vf_token_unchecked(name, &pf))
        }
        Some(_) => Ok(()),
        None => {
            // Not a VF, so nothing to refuse: the answer, cached whatever
            // it is, is for the binds to come.
            enforces_vf_token(dev, iommufd);
            Ok(())
        }
    }
}

#[cold]
fn bind_failed(
    dev: BorrowedFd<'_>,
    iommufd: BorrowedFd<'_>,
    name: &str,
    e: Errno,
    token: VfToken<'_>,
) -> Error {
    // A token the kernel did not take: a cdev without VF tokens, or a
    // device that takes none. Only a VF of a vfio-pci PF tells them apart.
    if let (VfToken::Given(_), Errno::EINVAL | Errno::E2BIG) = (token, e) {
        if crate::sysfs::vfio_pf_of(name).is_some() && !enforces_vf_token(dev, iommufd) {
            return crate::diagnose::vf_token_unsupported(name, e);
        }
    }
    crate::diagnose::bind_error(name, e, token)
}

/// What a bind does about an SR-IOV VF token.
#[derive(Clone, Copy, Debug)]
pub(crate) enum VfToken<'a> {
    /// None given; on a kernel whose cdev does not check VF tokens, a VF
    /// of a PF on vfio-pci is refused before the ioctl.
    Check,
    /// This token (`VFIO_DEVICE_BIND_FLAG_TOKEN`).
    Given(&'a [u8; 16]),
    /// None given, and the caller accepts that this kernel does not check.
    Unchecked,
}

/// 0: not known yet; 1: the cdev checks VF tokens; 2: it does not; 3: its
/// answer told neither (a VF's bind then goes to the kernel, which checks
/// what it can).
static VF_TOKEN_CHECKED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Whether this kernel's cdev checks SR-IOV VF tokens at bind (it has
/// `VFIO_DEVICE_BIND_FLAG_TOKEN`), asked of `dev`, a VF on vfio-pci, with a
/// bind that cannot succeed: the token flag and a token pointer the
/// kernel's `copy_from_user` refuses. A kernel that checks reads the token
/// before anything else changes and answers `EFAULT`; one that does not
/// know the flag answers `EINVAL` (or `E2BIG` for the bytes past its
/// struct). Cached for the process: the kernel does not change.
fn enforces_vf_token(dev: BorrowedFd<'_>, iommufd: BorrowedFd<'_>) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    match VF_TOKEN_CHECKED.load(Relaxed) {
        1 | 3 => return true,
        2 => return false,
        _ => {}
    }
    let mut arg = vfio::vfio_device_bind_iommufd {
        argsz: sys::argsz::<vfio::vfio_device_bind_iommufd>(),
        iommufd: iommufd.as_raw_fd(),
        ..Default::default()
    };
    // SAFETY: the last page of the address space is kernel space, which
    // `copy_from_user` refuses (`access_ok`) before reading anything, so
    // the kernel touches no memory of ours and the bind stops there.
    match unsafe { sys::bind_iommufd_token(dev, &mut arg, u64::MAX - 0xfff) } {
        Err(Errno::EFAULT) => {
            VF_TOKEN_CHECKED.store(1, Relaxed);
            true
        }
        Err(Errno::E2BIG | Errno::EINVAL) => {
            VF_TOKEN_CHECKED.store(2, Relaxed);
            false
        }
        // Unknown: the normal bind decides (the kernel checks what it can).
        _ => {
            VF_TOKEN_CHECKED.store(3, Relaxed);
            true
        }
    }
}

/// `VFIO_DEVICE_ATTACH_IOMMUFD_PT` to page table `pt` (also the atomic replace).
pub(crate) fn attach(dev: BorrowedFd<'_>, pt: u32, name: &str) -> Result<u32> {
    let mut arg = vfio::vfio_device_attach_iommufd_pt {
        argsz: sys::argsz::<vfio::vfio_device_attach_iommufd_pt>(),
        pt_id: pt,
        ..Default::default()
    };
    match sys::ioctl(dev, sys::raw::vfio_device_attach_iommufd_pt, &mut arg) {
        Ok(_) => Ok(arg.pt_id),
        Err(e) => {
            let err = Error::sys(
                "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
                format!("{name} -> IOAS {pt}"),
                e,
            );
            Err(attach_error(err, e))
        }
    }
}

/// Whether a failed replace (`VFIO_DEVICE_ATTACH_IOMMUFD_PT` on an attached
/// device) may have left the device without its old attachment.
///
/// The argument checks come first in the kernel and change nothing: an id
/// that is not a page table (`ENOENT`, `EINVAL`), a group bound elsewhere
/// (`EBUSY`, `EPERM`), a reserved region in the way (`EADDRINUSE`), a page
/// table the IOMMU cannot take (`EOPNOTSUPP`). Any other failure comes from
/// the middle of the switch, and the kernel does not always roll it back:
/// under fault injection on 7.3, three `ENOMEM` points leave the device
/// with no context entry while iommufd still counts it on the old page
/// table, and at the `EFAULT` point (the answer could not be copied back)
/// the kernel has detached the device altogether.
pub(crate) fn replace_may_lose(e: Errno) -> bool {
    !matches!(
        e,
        Errno::EINVAL
            | Errno::ENOENT
            | Errno::EBUSY
            | Errno::EPERM
            | Errno::EADDRINUSE
            | Errno::EOPNOTSUPP
    )
}

/// Explains a refused attach, asked only now that the kernel said no.
#[cold]
fn attach_error(err: Error, e: Errno) -> Error {
    match e {
        // Not blamed on a split group: a group is held by one value in a
        // process (see `crate::owner`), which moves its members together,
        // so that is a cause only past the unsafe constructor.
        Errno::EINVAL => err.detail(
            "the kernel refused this page table for the device: no page table of this iommufd has the id, or the device's IOMMU cannot take it (or, for a device made with the unsafe Device::from_fd_unchecked, another device of its IOMMU group is attached to a different page table: devices of one group share one)",
        ),
        Errno::EADDRINUSE => err.kind_(ErrorKind::Overlap).detail(
            "a mapping of the IOAS overlaps a region the device's IOMMU reserves (such as the MSI window 0xfee00000-0xfeefffff on x86)",
        ).hint("unmap it, or keep mappings inside the IOVA ranges the IOAS reports with the device attached"),
        _ => err,
    }
}

/// `VFIO_DEVICE_ATTACH_IOMMUFD_PT` with `VFIO_DEVICE_ATTACH_PASID`: attaches
/// `pasid` of the device to page table `pt` (the kernel replaces when the
/// PASID is attached already). Returns the page table id.
pub(crate) fn attach_pasid(
    dev: BorrowedFd<'_>,
    pasid: u32,
    pt: u32,
) -> std::result::Result<u32, Errno> {
    let mut arg = vfio::vfio_device_attach_iommufd_pt {
        argsz: sys::argsz::<vfio::vfio_device_attach_iommufd_pt>(),
        flags: sys::VFIO_DEVICE_ATTACH_PASID,
        pt_id: pt,
        pasid,
    };
    sys::ioctl(dev, sys::raw::vfio_device_attach_iommufd_pt, &mut arg).map(|_| arg.pt_id)
}

/// `VFIO_DEVICE_DETACH_IOMMUFD_PT` with `VFIO_DEVICE_DETACH_PASID`.
pub(crate) fn detach_pasid(dev: BorrowedFd<'_>, pasid: u32) -> std::result::Result<(), Errno> {
    let mut arg = vfio::vfio_device_detach_iommufd_pt {
        argsz: sys::argsz::<vfio::vfio_device_detach_iommufd_pt>(),
        flags: sys::VFIO_DEVICE_DETACH_PASID,
        pasid,
    };
    sys::ioctl(dev, sys::raw::vfio_device_detach_iommufd_pt, &mut arg).map(drop)
}

/// `VFIO_DEVICE_DETACH_IOMMUFD_PT`: back to the blocking domain.
pub(crate) fn detach(dev: BorrowedFd<'_>, name: &str) -> Result<()> {
    let mut arg = vfio::vfio_device_detach_iommufd_pt {
        argsz: sys::argsz::<vfio::vfio_device_detach_iommufd_pt>(),
        ..Default::default()
    };
    sys::ioctl(dev, sys::raw::vfio_device_detach_iommufd_pt, &mut arg)
        .map(drop)
        .map_err(|e| Error::sys("VFIO_DEVICE_DETACH_IOMMUFD_PT", name.to_string(), e))
}

/// Opens the cdev at `path` again for the device behind `bound`: a new,
/// unbound fd of the same device, or an error.
///
/// A path is a name, and a name can change what it points at between the
/// open and the reopen: a symlink retargeted, a `/dev` node renamed, a
/// `vfioN` freed by a hot-unplug and reused by another device. So the new
/// fd must be a character device with the same device number (`st_rdev`)
/// as `bound`. That number identifies the device for as long as `bound` is
/// open: the kernel frees a VFIO device's minor (and its `vfioN` name) only
/// once the device's last open file is gone, and `bound` is one of them
/// until the caller drops it, after this check.
pub(crate) fn reopen(path: &Path, bound: BorrowedFd<'_>, name: &str) -> Result<OwnedFd> {
    const OP: &str = "unbind (reopen)";
    let obj = || format!("{name} ({})", path.display());
    let fd = open_rw(path).map_err(|e| Error::sys(OP, obj(), e))?;
    // A failed fstat is that error, not a verdict on the device.
    let stat = |fd: BorrowedFd<'_>| {
        nix::sys::stat::fstat(fd).map_err(|e| {
            Error::sys(OP, obj(), e).detail("fstat, to check which device the path reaches, failed")
        })
    };
    let (want, got) = (stat(bound)?, stat(std::os::fd::AsFd::as_fd(&fd))?);
    let chr = |st: &nix::sys::stat::FileStat| {
        (st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFCHR).then_some(st.st_rdev)
    };
    let (want, got) = (chr(&want), chr(&got));
    if want.is_some() && want == got {
        return Ok(fd);
    }
    Err(another_device(path, name, want, got, fd))
}

/// The error of a reopen that reached another device than the one bound.
#[cold]
fn another_device(
    path: &Path,
    name: &str,
    want: Option<u64>,
    got: Option<u64>,
    fd: OwnedFd,
) -> Error {
    use nix::sys::stat::{major, minor};
    let num = |d: Option<u64>| {
        d.map_or("not a character device".to_string(), |d| {
            format!("{}:{}", major(d), minor(d))
        })
    };
    let what = crate::sysfs::cdev_device(Path::new("/sys"), std::os::fd::AsFd::as_fd(&fd), &|| {
        path.display().to_string()
    })
    .map_or_else(|_| "something else".to_string(), |(n, _)| n);
    drop(fd);
    Error::new(
        ErrorKind::DeviceChanged,
        "unbind (reopen)",
        format!("{name} ({})", path.display()),
    )
    .detail(format!(
        "the path now reaches another device ({what}, character device {}) than the one bound ({}): it was retargeted or renumbered since the open; the device stays bound",
        num(got),
        num(want)
    ))
    .hint("close() the device and open it again by its PCI address (Device::open), which finds its current cdev through sysfs")
}

/// `IOMMU_IOAS_ALLOC`.
pub(crate) fn ioas_alloc(fd: BorrowedFd<'_>) -> Result<u32> {
    let mut arg = sys::IommuIoasAlloc {
        size: sys::argsz::<sys::IommuIoasAlloc>(),
        ..Default::default()
    };
    sys::ioctl(fd, sys::raw::iommu_ioas_alloc, &mut arg)
        .map_err(|e| Error::sys("IOMMU_IOAS_ALLOC", format!("iommufd {}", fd.as_raw_fd()), e))?;
    Ok(arg.out_ioas_id)
}

/// `IOMMU_IOAS_CHANGE_PROCESS`: the pinned-page accounting of every mapping
/// in the context moves to the calling process.
pub(crate) fn change_process(fd: BorrowedFd<'_>) -> nix::Result<()> {
    let mut arg = sys::IommuIoasChangeProcess {
        size: sys::argsz::<sys::IommuIoasChangeProcess>(),
        reserved: 0,
    };
    sys::ioctl(fd, sys::raw::iommu_ioas_change_process, &mut arg).map(drop)
}

/// `IOMMU_DESTROY` of an object id.
pub(crate) fn destroy(fd: BorrowedFd<'_>, id: u32) -> nix::Result<()> {
    let mut arg = sys::IommuDestroy {
        size: sys::argsz::<sys::IommuDestroy>(),
        id,
    };
    sys::ioctl(fd, sys::raw::iommu_destroy, &mut arg).map(drop)
}

/// `IOMMU_IOAS_IOVA_RANGES`, re-queried on `EMSGSIZE`.
pub(crate) fn iova_ranges(fd: BorrowedFd<'_>, id: u32) -> Result<IovaRanges> {
    let mut buf = vec![sys::IommuIovaRange::default(); 8];
    loop {
        match sys::iova_ranges(fd, id, &mut buf) {
            Ok((n, alignment)) => {
                buf.truncate(n as usize);
                let ranges = buf
                    .iter()
                    .map(|r| IovaRange {
                        start: r.start,
                        last: r.last,
                    })
                    .collect();
                return Ok(IovaRanges { ranges, alignment });
            }
            Err((Errno::EMSGSIZE, need)) if need as usize > buf.len() => {
                buf.resize(need as usize, sys::IommuIovaRange::default());
            }
            Err((e, _)) => {
                return Err(Error::sys(
                    "IOMMU_IOAS_IOVA_RANGES",
                    format!("IOAS {id}"),
                    e,
                ))
            }
        }
    }
}

/// `IOMMU_IOAS_ALLOW_IOVAS`.
pub(crate) fn allow_iovas(fd: BorrowedFd<'_>, id: u32, ranges: &[IovaRange]) -> Result<()> {
    // `num_iovas` is 32 bits; the kernel takes far fewer than that.
    if u32::try_from(ranges.len()).is_err() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "IOMMU_IOAS_ALLOW_IOVAS",
            format!("IOAS {id}"),
        )
        .detail(format!(
            "{} ranges do not fit the ioctl's 32-bit count",
            ranges.len()
        )));
    }
    let raw: Vec<sys::IommuIovaRange> = ranges
        .iter()
        .map(|r| sys::IommuIovaRange {
            start: r.start,
            last: r.last,
        })
        .collect();
    sys::allow_iovas(fd, id, &raw).map(drop).map_err(|e| {
        let err = Error::sys("IOMMU_IOAS_ALLOW_IOVAS", format!("IOAS {id}"), e);
        match e {
            Errno::EINVAL => err
                .kind_(ErrorKind::InvalidInput)
                .detail("the ranges must each have start <= last, be sorted and not overlap"),
            Errno::EBUSY => err.detail(
                "an existing mapping or a device's reserved region lies outside the new ranges",
            ),
            Errno::EADDRINUSE => err.kind_(ErrorKind::Overlap).detail(
                "a reserved IOVA region of an attached device (iommu_group/reserved_regions; on VT-d the MSI window 0xfee00000-0xfeefffff) lies in the ranges: a reserved region may not be allowed",
            ),
            _ => err,
        }
    })
}

/// `IOMMU_OPTION(HUGE_PAGES)` on IOAS `id`.
pub(crate) fn huge_pages_option(fd: BorrowedFd<'_>, id: u32, op: u16, val: u64) -> Result<u64> {
    option(fd, sys::IOMMU_OPTION_HUGE_PAGES, id, op, val)
        .map_err(|e| Error::sys("IOMMU_OPTION(HUGE_PAGES)", format!("IOAS {id}"), e))
}

/// `IOMMU_OPTION(RLIMIT_MODE)` of the iommufd (object 0).
pub(crate) fn rlimit_mode_option(fd: BorrowedFd<'_>, op: u16, val: u64) -> nix::Result<u64> {
    option(fd, sys::IOMMU_OPTION_RLIMIT_MODE, 0, op, val)
}

/// `IOMMU_OPTION` `option_id` of `object` (0: the iommufd); the value.
fn option(fd: BorrowedFd<'_>, option_id: u32, object: u32, op: u16, val: u64) -> nix::Result<u64> {
    let mut arg = sys::IommuOption {
        size: sys::argsz::<sys::IommuOption>(),
        option_id,
        op,
        object_id: object,
        val64: val,
        ..Default::default()
    };
    sys::ioctl(fd, sys::raw::iommu_option, &mut arg)?;
    Ok(arg.val64)
}

fn where_flags(fixed: Option<u64>) -> (u64, u32) {
    match fixed {
        Some(at) => (at, sys::IOMMU_IOAS_MAP_FIXED_IOVA),
        None => (0, 0),
    }
}

/// `IOMMU_IOAS_MAP`.
///
/// # Safety
/// `[va, va + len)` must stay mapped memory of this process until unmapped.
#[inline]
pub(crate) unsafe fn map(
    fd: BorrowedFd<'_>,
    id: u32,
    va: NonNull<u8>,
    len: u64,
    fixed: Option<u64>,
    access: Access,
) -> std::result::Result<u64, MapFail> {
    let (iova, flag) = where_flags(fixed);
    let mut arg = sys::IommuIoasMap {
        size: sys::argsz::<sys::IommuIoasMap>(),
        flags: access.flags() | flag,
        ioas_id: id,
        user_va: va.as_ptr() as u64,
        length: len,
        iova,
        ..Default::default()
    };
    // SAFETY: the struct is a valid `iommu_ioas_map`; `user_va` names memory
    // the caller keeps mapped until the range is unmapped (this fn's contract).
    match unsafe { sys::raw::iommu_ioas_map(fd.as_raw_fd(), &mut arg) } {
        Ok(_) => Ok(arg.iova),
        Err(e) => Err(MapFail::Sys("IOMMU_IOAS_MAP", e)),
    }
}

/// Set once `IOMMU_IOAS_MAP_FILE` answered that this kernel lacks it
/// (`ENOTTY`, before 6.13): it will not grow one while we run.
static NO_MAP_FILE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this kernel may have `IOMMU_IOAS_MAP_FILE` (it has not said no).
#[inline]
pub(crate) fn maps_files() -> bool {
    !NO_MAP_FILE.load(std::sync::atomic::Ordering::Relaxed)
}

/// `IOMMU_IOAS_MAP_FILE`.
pub(crate) fn map_file(
    fd: BorrowedFd<'_>,
    id: u32,
    file: BorrowedFd<'_>,
    start: u64,
    len: u64,
    fixed: Option<u64>,
    access: Access,
) -> std::result::Result<u64, MapFail> {
    use std::sync::atomic::Ordering::Relaxed;
    if NO_MAP_FILE.load(Relaxed) {
        return Err(MapFail::Sys("IOMMU_IOAS_MAP_FILE", Errno::ENOTTY));
    }
    let (iova, flag) = where_flags(fixed);
    let mut arg = sys::IommuIoasMapFile {
        size: sys::argsz::<sys::IommuIoasMapFile>(),
        flags: access.flags() | flag,
        ioas_id: id,
        fd: file.as_raw_fd(),
        start,
        length: len,
        iova,
    };
    match sys::ioctl(fd, sys::raw::iommu_ioas_map_file, &mut arg) {
        Ok(_) => Ok(arg.iova),
        Err(e) => {
            if e == Errno::ENOTTY {
                NO_MAP_FILE.store(true, Relaxed);
            }
            Err(MapFail::Sys("IOMMU_IOAS_MAP_FILE", e))
        }
    }
}

/// `IOMMU_IOAS_COPY` of `[src_iova, +len)` of IOAS `src` into IOAS `dst`.
pub(crate) fn copy(
    fd: BorrowedFd<'_>,
    dst: u32,
    src: u32,
    src_iova: u64,
    len: u64,
    fixed: Option<u64>,
    access: Access,
) -> std::result::Result<u64, MapFail> {
    let (iova, flag) = where_flags(fixed);
    let mut arg = sys::IommuIoasCopy {
        size: sys::argsz::<sys::IommuIoasCopy>(),
        flags: access.flags() | flag,
        dst_ioas_id: dst,
        src_ioas_id: src,
        length: len,
        dst_iova: iova,
        src_iova,
    };
    match sys::ioctl(fd, sys::raw::iommu_ioas_copy, &mut arg) {
        Ok(_) => Ok(arg.dst_iova),
        Err(e) => Err(MapFail::Sys("IOMMU_IOAS_COPY", e)),
    }
}

/// `IOMMU_IOAS_UNMAP`; returns the bytes unmapped.
#[inline]
pub(crate) fn unmap(
    fd: BorrowedFd<'_>,
    id: u32,
    iova: u64,
    len: u64,
) -> std::result::Result<u64, Errno> {
    let mut arg = sys::IommuIoasUnmap {
        size: sys::argsz::<sys::IommuIoasUnmap>(),
        ioas_id: id,
        iova,
        length: len,
    };
    sys::ioctl(fd, sys::raw::iommu_ioas_unmap, &mut arg).map(|_| arg.length)
}
