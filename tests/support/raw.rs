//! Raw iommufd ioctls, as a user without this crate would issue them: the
//! baselines of the fault-injection sweeps and the benches.

use nix::errno::Errno;
use std::os::fd::{AsFd, AsRawFd};

/// `struct iommu_ioas_map`.
#[repr(C)]
#[derive(Default)]
pub struct RawMap {
    pub size: u32,
    pub flags: u32,
    pub ioas_id: u32,
    pub reserved: u32,
    pub user_va: u64,
    pub length: u64,
    pub iova: u64,
}

/// `struct iommu_ioas_unmap`.
#[repr(C)]
#[derive(Default)]
pub struct RawUnmap {
    pub size: u32,
    pub ioas_id: u32,
    pub iova: u64,
    pub length: u64,
}

/// `struct iommu_ioas_copy`.
#[repr(C)]
#[derive(Default)]
pub struct RawCopy {
    pub size: u32,
    pub flags: u32,
    pub dst_ioas_id: u32,
    pub src_ioas_id: u32,
    pub length: u64,
    pub dst_iova: u64,
    pub src_iova: u64,
}

nix::ioctl_readwrite_bad!(raw_map, nix::request_code_none!(b';', 0x85), RawMap);
nix::ioctl_readwrite_bad!(raw_unmap, nix::request_code_none!(b';', 0x86), RawUnmap);
nix::ioctl_readwrite_bad!(raw_copy, nix::request_code_none!(b';', 0x83), RawCopy);
nix::ioctl_readwrite_bad!(raw_destroy, nix::request_code_none!(b';', 0x80), [u32; 2]);
nix::ioctl_readwrite_bad!(raw_alloc, nix::request_code_none!(b';', 0x81), [u32; 3]);
nix::ioctl_readwrite_bad!(raw_bind, nix::request_code_none!(b';', 118), [u32; 6]);
nix::ioctl_readwrite_bad!(raw_attach, nix::request_code_none!(b';', 119), [u32; 4]);
nix::ioctl_readwrite_bad!(raw_detach, nix::request_code_none!(b';', 120), [u32; 3]);
nix::ioctl_readwrite_bad!(
    raw_hwpt_alloc,
    nix::request_code_none!(b';', 0x89),
    [u32; 10]
);
nix::ioctl_readwrite_bad!(raw_dirty, nix::request_code_none!(b';', 0x8c), [u64; 6]);
nix::ioctl_readwrite_bad!(raw_feature, nix::request_code_none!(b';', 117), [u32; 4]);
// `VFIO_DEVICE_GET_REGION_INFO` on a `struct vfio_region_info` seen as
// `[argsz, flags, index, cap_offset, size (2 words), offset (2 words)]`.
nix::ioctl_readwrite_bad!(
    raw_region_info,
    nix::request_code_none!(b';', 108),
    [u32; 8]
);

/// `IOMMU_IOAS_ALLOC`: a new, empty IOAS.
pub fn alloc_ioas(iommu: impl AsFd) -> Result<u32, Errno> {
    let mut a = [12u32, 0, 0];
    // SAFETY: a 12-byte iommu_ioas_alloc.
    unsafe { raw_alloc(iommu.as_fd().as_raw_fd(), &mut a) }?;
    Ok(a[2])
}

/// `IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE`.
pub const RW: u32 = 0b110;
/// `IOMMU_IOAS_MAP_FIXED_IOVA`.
pub const FIXED: u32 = 1;

/// `IOMMU_IOAS_MAP` of `[va, va + len)`, read-write, at `iova` or (`None`)
/// where the kernel picks; returns the IOVA.
///
/// # Safety
/// The memory at `va` must stay allocated until the range is unmapped.
#[inline]
pub unsafe fn map(
    iommu: impl AsFd,
    ioas: u32,
    va: u64,
    len: u64,
    iova: Option<u64>,
) -> Result<u64, Errno> {
    let mut m = RawMap {
        size: 40,
        flags: RW | if iova.is_some() { FIXED } else { 0 },
        ioas_id: ioas,
        user_va: va,
        length: len,
        iova: iova.unwrap_or(0),
        ..Default::default()
    };
    // SAFETY: a 40-byte iommu_ioas_map; the caller keeps `va` alive.
    unsafe { raw_map(iommu.as_fd().as_raw_fd(), &mut m) }?;
    Ok(m.iova)
}

/// `struct iommu_ioas_map_file`.
#[repr(C)]
#[derive(Default)]
pub struct RawMapFile {
    pub size: u32,
    pub flags: u32,
    pub ioas_id: u32,
    pub fd: i32,
    pub start: u64,
    pub length: u64,
    pub iova: u64,
}

nix::ioctl_readwrite_bad!(
    raw_map_file,
    nix::request_code_none!(b';', 0x8f),
    RawMapFile
);

/// `IOMMU_IOAS_MAP_FILE` of `[0, len)` of `file` (a memfd), read-write,
/// where the kernel picks; returns the IOVA. The kernel holds the file.
pub fn map_file(iommu: impl AsFd, ioas: u32, file: impl AsFd, len: u64) -> Result<u64, Errno> {
    let mut m = RawMapFile {
        size: 40,
        flags: RW,
        ioas_id: ioas,
        fd: file.as_fd().as_raw_fd(),
        length: len,
        ..Default::default()
    };
    // SAFETY: a 40-byte iommu_ioas_map_file; the kernel pins the file's
    // pages itself, no user address is involved.
    unsafe { raw_map_file(iommu.as_fd().as_raw_fd(), &mut m) }?;
    Ok(m.iova)
}

/// `IOMMU_IOAS_UNMAP` of `[iova, iova + len)`; returns the bytes unmapped.
#[inline]
pub fn unmap(iommu: impl AsFd, ioas: u32, iova: u64, len: u64) -> Result<u64, Errno> {
    let mut u = RawUnmap {
        size: 24,
        ioas_id: ioas,
        iova,
        length: len,
    };
    // SAFETY: a 24-byte iommu_ioas_unmap, no pointers.
    unsafe { raw_unmap(iommu.as_fd().as_raw_fd(), &mut u) }?;
    Ok(u.length)
}

/// `VFIO_DEVICE_GET_REGION_INFO` of region `index` of a bound device:
/// (size, offset in the device fd).
pub fn region(dev: impl AsFd, index: u32) -> Result<(u64, u64), Errno> {
    let mut info = [32u32, 0, index, 0, 0, 0, 0, 0];
    // SAFETY: a 32-byte vfio_region_info; argsz leaves no room for capabilities.
    unsafe { raw_region_info(dev.as_fd().as_raw_fd(), &mut info) }?;
    let size = u64::from(info[4]) | u64::from(info[5]) << 32;
    let offset = u64::from(info[6]) | u64::from(info[7]) << 32;
    Ok((size, offset))
}

/// Opens the VFIO cdev of `bdf` as any caller starting from a BDF must:
/// the `vfioN` name from `vfio-dev/` in sysfs, then `/dev/vfio/devices/vfioN`.
pub fn open_device(bdf: &str) -> std::os::fd::OwnedFd {
    let dir = std::path::Path::new("/sys/bus/pci/devices")
        .join(bdf)
        .join("vfio-dev");
    let name = std::fs::read_dir(dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    super::open_rw(std::path::Path::new("/dev/vfio/devices").join(name))
}

/// `IOMMU_DESTROY` of object `id`.
pub fn destroy(iommu: impl AsFd, id: u32) -> Result<(), Errno> {
    let mut d = [8u32, id];
    // SAFETY: an 8-byte iommu_destroy.
    unsafe { raw_destroy(iommu.as_fd().as_raw_fd(), &mut d) }.map(drop)
}

/// `VFIO_DEVICE_BIND_IOMMUFD` of device cdev `dev` to `iommu`.
pub fn bind(dev: impl AsFd, iommu: impl AsFd) -> Result<(), Errno> {
    let mut b = [24u32, 0, iommu.as_fd().as_raw_fd() as u32, 0, 0, 0];
    // SAFETY: a 24-byte vfio_device_bind_iommufd with no token pointer.
    unsafe { raw_bind(dev.as_fd().as_raw_fd(), &mut b) }.map(drop)
}

/// `VFIO_DEVICE_BIND_IOMMUFD` of device cdev `dev` to `iommu`; its device id.
pub fn bind_dev_id(dev: impl AsFd, iommu: impl AsFd) -> Result<u32, Errno> {
    let mut b = [24u32, 0, iommu.as_fd().as_raw_fd() as u32, 0, 0, 0];
    // SAFETY: a 24-byte vfio_device_bind_iommufd with no token pointer.
    unsafe { raw_bind(dev.as_fd().as_raw_fd(), &mut b) }.map(|_| b[3])
}

/// `IOMMU_HWPT_ALLOC` of a plain HWPT on IOAS `ioas` for device `dev_id`.
pub fn hwpt_alloc(iommu: impl AsFd, dev_id: u32, ioas: u32) -> Result<u32, Errno> {
    // size, flags, dev_id, pt_id, out_hwpt_id, reserved, data_type,
    // data_len, data_uptr (2 words): the 40 bytes up to data_uptr.
    let mut a = [40u32, 0, dev_id, ioas, 0, 0, 0, 0, 0, 0];
    // SAFETY: a 40-byte iommu_hwpt_alloc with no data pointer.
    unsafe { raw_hwpt_alloc(iommu.as_fd().as_raw_fd(), &mut a) }.map(|_| a[4])
}

/// `IOMMU_HWPT_GET_DIRTY_BITMAP` of `[iova, iova + len)` of `hwpt` at 4 KiB
/// pages into `bits` (cleared in the kernel as read).
pub fn get_dirty_bitmap(iommu: impl AsFd, hwpt: u32, iova: u64, len: u64, bits: &mut [u64]) {
    assert!(bits.len() as u64 * 64 >= len / 4096, "a bit per page");
    // struct iommu_hwpt_get_dirty_bitmap: size, hwpt_id, flags, reserved,
    // iova, length, page_size, data.
    let mut arg: [u64; 6] = [
        48 | (u64::from(hwpt) << 32),
        0,
        iova,
        len,
        4096,
        bits.as_mut_ptr() as u64,
    ];
    // SAFETY: the kernel writes a bit per 4 KiB page of the range into
    // `bits`, which holds them all (asserted), and reads only `arg`.
    unsafe { raw_dirty(iommu.as_fd().as_raw_fd(), &mut arg) }.unwrap();
}

/// `VFIO_DEVICE_ATTACH_IOMMUFD_PT` of `dev` to page table `pt`.
pub fn attach(dev: impl AsFd, pt: u32) -> Result<(), Errno> {
    let mut a = [16u32, 0, pt, 0];
    // SAFETY: a 16-byte vfio_device_attach_iommufd_pt.
    unsafe { raw_attach(dev.as_fd().as_raw_fd(), &mut a) }.map(drop)
}

/// `VFIO_DEVICE_DETACH_IOMMUFD_PT` of `dev`.
pub fn detach(dev: impl AsFd) -> Result<(), Errno> {
    let mut d = [12u32, 0, 0];
    // SAFETY: a 12-byte vfio_device_detach_iommufd_pt.
    unsafe { raw_detach(dev.as_fd().as_raw_fd(), &mut d) }.map(drop)
}

/// `VFIO_DEVICE_FEATURE` SET of `MIG_DEVICE_STATE` to `state`; the data fd
/// the arc returned (-1 for none).
pub fn set_mig_state(dev: impl AsFd, state: u32) -> Result<i32, Errno> {
    // argsz 16, flags SET (1 << 17) | MIG_DEVICE_STATE (2); device_state, data_fd.
    let mut f = [16u32, (1 << 17) | 2, state, u32::MAX];
    // SAFETY: a 16-byte vfio_device_feature with a pointer-free payload.
    unsafe { raw_feature(dev.as_fd().as_raw_fd(), &mut f) }?;
    Ok(f[3] as i32)
}

/// `VFIO_DEVICE_FEATURE` GET of `MIG_DEVICE_STATE`: the state as the kernel
/// has it.
pub fn get_mig_state(dev: impl AsFd) -> Result<u32, Errno> {
    // argsz 16, flags GET (1 << 16) | MIG_DEVICE_STATE (2); device_state, data_fd.
    let mut f = [16u32, (1 << 16) | 2, 0, 0];
    // SAFETY: a 16-byte vfio_device_feature with a pointer-free payload.
    unsafe { raw_feature(dev.as_fd().as_raw_fd(), &mut f) }?;
    Ok(f[2])
}
