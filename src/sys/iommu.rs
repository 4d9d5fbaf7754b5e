//! The iommufd uAPI (`include/uapi/linux/iommufd.h`, Linux 7.3): structs
//! written as `#[repr(C)]` and pinned below, and the wrappers of the ioctls
//! that carry user pointers.
#![allow(unsafe_code)] // ioctls are FFI; every caller documents its pointer argument.

use super::{argsz, raw};
use static_assertions::{assert_eq_size, const_assert_eq};
use std::mem::offset_of;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `struct iommu_destroy`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuDestroy {
    pub size: u32,
    pub id: u32,
}

/// `struct iommu_ioas_alloc`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuIoasAlloc {
    pub size: u32,
    pub flags: u32,
    pub out_ioas_id: u32,
}

/// `struct iommu_iova_range`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IommuIovaRange {
    pub start: u64,
    pub last: u64,
}

/// `struct iommu_ioas_iova_ranges`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuIoasIovaRanges {
    pub size: u32,
    pub ioas_id: u32,
    pub num_iovas: u32,
    pub reserved: u32,
    pub allowed_iovas: u64,
    pub out_iova_alignment: u64,
}

/// `struct iommu_ioas_allow_iovas`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuIoasAllowIovas {
    pub size: u32,
    pub ioas_id: u32,
    pub num_iovas: u32,
    pub reserved: u32,
    pub allowed_iovas: u64,
}

pub const IOMMU_IOAS_MAP_FIXED_IOVA: u32 = 1 << 0;
pub const IOMMU_IOAS_MAP_WRITEABLE: u32 = 1 << 1;
pub const IOMMU_IOAS_MAP_READABLE: u32 = 1 << 2;

/// `struct iommu_ioas_map`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuIoasMap {
    pub size: u32,
    pub flags: u32,
    pub ioas_id: u32,
    pub reserved: u32,
    pub user_va: u64,
    pub length: u64,
    pub iova: u64,
}

/// `struct iommu_ioas_map_file`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuIoasMapFile {
    pub size: u32,
    pub flags: u32,
    pub ioas_id: u32,
    pub fd: i32,
    pub start: u64,
    pub length: u64,
    pub iova: u64,
}

/// `struct iommu_hwpt_alloc`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuHwptAlloc {
    pub size: u32,
    pub flags: u32,
    pub dev_id: u32,
    pub pt_id: u32,
    pub out_hwpt_id: u32,
    pub reserved: u32,
    pub data_type: u32,
    pub data_len: u32,
    pub data_uptr: u64,
    pub fault_id: u32,
    pub reserved2: u32,
}

/// `struct iommu_hw_info`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuHwInfo {
    pub size: u32,
    pub flags: u32,
    pub dev_id: u32,
    pub data_len: u32,
    pub data_uptr: u64,
    /// `in_data_type` / `out_data_type`.
    pub data_type: u32,
    pub out_max_pasid_log2: u8,
    pub reserved: [u8; 3],
    pub out_capabilities: u64,
}

pub const IOMMU_HWPT_ALLOC_NEST_PARENT: u32 = 1 << 0;
pub const IOMMU_HWPT_ALLOC_DIRTY_TRACKING: u32 = 1 << 1;
pub const IOMMU_HW_CAP_DIRTY_TRACKING: u64 = 1 << 0;
pub const IOMMU_HW_CAP_PCI_PASID_EXEC: u64 = 1 << 1;
pub const IOMMU_HW_CAP_PCI_PASID_PRIV: u64 = 1 << 2;
pub const IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED: u64 = 1 << 3;
/// `IOMMU_HW_INFO_FLAG_INPUT_TYPE`: `data_type` is the type asked for.
pub const IOMMU_HW_INFO_FLAG_INPUT_TYPE: u32 = 1 << 0;
pub const IOMMU_HWPT_FAULT_ID_VALID: u32 = 1 << 2;
pub const IOMMU_HWPT_ALLOC_PASID: u32 = 1 << 3;

/// `struct iommu_fault_alloc`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuFaultAlloc {
    pub size: u32,
    pub flags: u32,
    pub out_fault_id: u32,
    pub out_fault_fd: u32,
}

/// `struct iommu_hwpt_pgfault`: one record read from a fault queue's fd.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuHwptPgfault {
    pub flags: u32,
    pub dev_id: u32,
    pub pasid: u32,
    pub grpid: u32,
    pub perm: u32,
    pub reserved: u32,
    pub addr: u64,
    pub length: u32,
    pub cookie: u32,
}

/// `IOMMU_FAULT_QUEUE_ALLOC`: (fault object id, its fd).
pub fn fault_queue_alloc(fd: BorrowedFd<'_>) -> nix::Result<(u32, i32)> {
    let mut arg = IommuFaultAlloc {
        size: argsz::<IommuFaultAlloc>(),
        ..Default::default()
    };
    // SAFETY: a live, exclusive, pointer-free struct.
    unsafe { raw::iommu_fault_queue_alloc(fd.as_raw_fd(), &mut arg) }
        .map(|_| (arg.out_fault_id, arg.out_fault_fd as i32))
}

/// `IOMMU_HWPT_ALLOC` of a paging HWPT on IOAS `pt_id` for device `dev_id`,
/// with `flags` and no driver data; the new HWPT's id.
pub fn hwpt_alloc(fd: BorrowedFd<'_>, dev_id: u32, pt_id: u32, flags: u32) -> nix::Result<u32> {
    let mut arg = IommuHwptAlloc {
        size: argsz::<IommuHwptAlloc>(),
        flags,
        dev_id,
        pt_id,
        ..Default::default()
    };
    // SAFETY: `arg` is a live, exclusive struct; with `data_len` 0 and
    // `data_uptr` 0 the kernel reads no user memory beyond it.
    unsafe { raw::iommu_hwpt_alloc(fd.as_raw_fd(), &mut arg) }.map(|_| arg.out_hwpt_id)
}

/// `IOMMU_HWPT_ALLOC` on `pt_id` (a nest parent, a vIOMMU, or an IOAS for
/// a driver that takes data for paging HWPTs) with `flags` and driver data
/// `data` of `data_type`; the new HWPT's id.
pub fn hwpt_alloc_data(
    fd: BorrowedFd<'_>,
    (dev_id, pt_id, flags): (u32, u32, u32),
    data_type: u32,
    data: &[u64],
    fault_id: Option<u32>,
) -> nix::Result<u32> {
    let mut arg = IommuHwptAlloc {
        size: argsz::<IommuHwptAlloc>(),
        flags: if fault_id.is_some() {
            flags | IOMMU_HWPT_FAULT_ID_VALID
        } else {
            flags
        },
        fault_id: fault_id.unwrap_or(0),
        dev_id,
        pt_id,
        data_type,
        data_len: (data.len() * 8) as u32,
        data_uptr: data.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `data_uptr` points at `data`, `data_len` bytes, borrowed for
    // the call; the kernel only reads it.
    unsafe { raw::iommu_hwpt_alloc(fd.as_raw_fd(), &mut arg) }.map(|_| arg.out_hwpt_id)
}

/// `struct iommu_hwpt_invalidate`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuHwptInvalidate {
    pub size: u32,
    pub hwpt_id: u32,
    pub data_uptr: u64,
    pub data_type: u32,
    pub entry_len: u32,
    pub entry_num: u32,
    pub reserved: u32,
}

/// `IOMMU_HWPT_INVALIDATE` of `entries` (`entry_len` bytes each) on HWPT
/// (or vIOMMU) `id`; how many the kernel handled, also on error.
pub fn hwpt_invalidate(
    fd: BorrowedFd<'_>,
    id: u32,
    data_type: u32,
    entry_len: usize,
    entries: &[u8],
) -> std::result::Result<u32, (nix::Error, u32)> {
    assert!(entry_len > 0 && entries.len() % entry_len == 0);
    let mut arg = IommuHwptInvalidate {
        size: argsz::<IommuHwptInvalidate>(),
        hwpt_id: id,
        data_uptr: entries.as_ptr() as u64,
        data_type,
        entry_len: entry_len as u32,
        entry_num: (entries.len() / entry_len) as u32,
        reserved: 0,
    };
    // SAFETY: `data_uptr` points at `entry_num` entries of `entry_len`
    // bytes in `entries`, borrowed for the call; the kernel only reads them.
    match unsafe { raw::iommu_hwpt_invalidate(fd.as_raw_fd(), &mut arg) } {
        Ok(_) => Ok(arg.entry_num),
        Err(e) => Err((e, arg.entry_num)),
    }
}

/// `struct iommu_viommu_alloc`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuViommuAlloc {
    pub size: u32,
    pub flags: u32,
    pub type_: u32,
    pub dev_id: u32,
    pub hwpt_id: u32,
    pub out_viommu_id: u32,
    pub data_len: u32,
    pub reserved: u32,
    pub data_uptr: u64,
}

/// `IOMMU_VIOMMU_ALLOC` of `type_` on nest parent `hwpt` for `dev_id`, with
/// driver data `data` (none when empty: `data_uptr` 0), which comes back
/// with what the driver filled in; its id.
pub fn viommu_alloc(
    fd: BorrowedFd<'_>,
    type_: u32,
    dev_id: u32,
    hwpt: u32,
    data: &mut [u8],
) -> nix::Result<u32> {
    let mut arg = IommuViommuAlloc {
        size: argsz::<IommuViommuAlloc>(),
        type_,
        dev_id,
        hwpt_id: hwpt,
        data_len: u32::try_from(data.len()).map_err(|_| nix::errno::Errno::EOVERFLOW)?,
        data_uptr: if data.is_empty() {
            0
        } else {
            data.as_mut_ptr() as u64
        },
        ..Default::default()
    };
    // SAFETY: `data_uptr`/`data_len` describe `data` (or nothing), a live
    // exclusive buffer the kernel reads and writes only during this call.
    unsafe { raw::iommu_viommu_alloc(fd.as_raw_fd(), &mut arg) }.map(|_| arg.out_viommu_id)
}

/// `struct iommu_hw_queue_alloc`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuHwQueueAlloc {
    pub size: u32,
    pub flags: u32,
    pub viommu_id: u32,
    pub type_: u32,
    pub index: u32,
    pub out_hw_queue_id: u32,
    pub nesting_parent_iova: u64,
    pub length: u64,
}

/// `IOMMU_HW_QUEUE_ALLOC` of `type_` queue `index` on `viommu`, its memory
/// at `[iova, iova + len)` of the nest parent's IOAS; its id.
pub fn hw_queue_alloc(
    fd: BorrowedFd<'_>,
    viommu: u32,
    type_: u32,
    index: u32,
    iova: u64,
    len: u64,
) -> nix::Result<u32> {
    let mut arg = IommuHwQueueAlloc {
        size: argsz::<IommuHwQueueAlloc>(),
        viommu_id: viommu,
        type_,
        index,
        nesting_parent_iova: iova,
        length: len,
        ..Default::default()
    };
    // SAFETY: a pointer-free struct of the kernel's layout (pinned below).
    unsafe { raw::iommu_hw_queue_alloc(fd.as_raw_fd(), &mut arg) }.map(|_| arg.out_hw_queue_id)
}

/// `struct iommu_viommu_selftest` (`drivers/iommu/iommufd/iommufd_test.h`):
/// the test driver's vIOMMU data.
#[cfg(feature = "iommufd-test-driver")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuViommuSelftest {
    pub in_data: u32,
    pub out_data: u32,
    pub out_mmap_offset: u64,
    pub out_mmap_length: u64,
}

/// `struct iommu_veventq_alloc`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuVeventqAlloc {
    pub size: u32,
    pub flags: u32,
    pub viommu_id: u32,
    pub type_: u32,
    pub veventq_depth: u32,
    pub out_veventq_id: u32,
    pub out_veventq_fd: u32,
    pub reserved: u32,
}

/// `IOMMU_VEVENTQ_ALLOC`: (id, fd).
pub fn veventq_alloc(
    fd: BorrowedFd<'_>,
    viommu: u32,
    type_: u32,
    depth: u32,
) -> nix::Result<(u32, i32)> {
    let mut arg = IommuVeventqAlloc {
        size: argsz::<IommuVeventqAlloc>(),
        viommu_id: viommu,
        type_,
        veventq_depth: depth,
        ..Default::default()
    };
    // SAFETY: a live, exclusive, pointer-free struct.
    unsafe { raw::iommu_veventq_alloc(fd.as_raw_fd(), &mut arg) }
        .map(|_| (arg.out_veventq_id, arg.out_veventq_fd as i32))
}

/// `struct iommu_vdevice_alloc`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuVdeviceAlloc {
    pub size: u32,
    pub viommu_id: u32,
    pub dev_id: u32,
    pub out_vdevice_id: u32,
    pub virt_id: u64,
}

/// `IOMMU_VDEVICE_ALLOC`; its id.
pub fn vdevice_alloc(
    fd: BorrowedFd<'_>,
    viommu: u32,
    dev_id: u32,
    virt_id: u64,
) -> nix::Result<u32> {
    let mut arg = IommuVdeviceAlloc {
        size: argsz::<IommuVdeviceAlloc>(),
        viommu_id: viommu,
        dev_id,
        out_vdevice_id: 0,
        virt_id,
    };
    // SAFETY: a pointer-free struct.
    unsafe { raw::iommu_vdevice_alloc(fd.as_raw_fd(), &mut arg) }.map(|_| arg.out_vdevice_id)
}

/// `IOMMU_GET_HW_INFO` of device `dev_id` into `data` (the driver's struct);
/// the header as the kernel filled it (`data_len` is what it wrote or had).
pub fn get_hw_info(
    fd: BorrowedFd<'_>,
    dev_id: u32,
    data: &mut [u64],
    in_type: Option<u32>,
) -> nix::Result<IommuHwInfo> {
    let mut arg = IommuHwInfo {
        size: argsz::<IommuHwInfo>(),
        flags: if in_type.is_some() {
            IOMMU_HW_INFO_FLAG_INPUT_TYPE
        } else {
            0
        },
        dev_id,
        data_len: (data.len() * 8) as u32,
        data_uptr: data.as_mut_ptr() as u64,
        data_type: in_type.unwrap_or(0),
        ..Default::default()
    };
    // SAFETY: `data_uptr` points at `data`, exclusively borrowed for the
    // call, `data_len` bytes long; the kernel writes at most that many.
    unsafe { raw::iommu_get_hw_info(fd.as_raw_fd(), &mut arg) }.map(|_| arg)
}

/// `struct iommu_hwpt_set_dirty_tracking`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuHwptSetDirtyTracking {
    pub size: u32,
    pub flags: u32,
    pub hwpt_id: u32,
    pub reserved: u32,
}

/// `struct iommu_hwpt_get_dirty_bitmap`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuHwptGetDirtyBitmap {
    pub size: u32,
    pub hwpt_id: u32,
    pub flags: u32,
    pub reserved: u32,
    pub iova: u64,
    pub length: u64,
    pub page_size: u64,
    pub data: u64,
}

pub const IOMMU_HWPT_DIRTY_TRACKING_ENABLE: u32 = 1;
pub const IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR: u32 = 1;

/// `struct iommu_test_cmd` (drivers/iommu/iommufd/iommufd_test.h, 7.3): the
/// header, then the op's union member as words.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuTestCmd {
    pub size: u32,
    pub op: u32,
    pub id: u32,
    pub reserved: u32,
    pub data: [u64; 7],
}

/// `IOMMU_TEST_CMD` (the iommufd test driver, `CONFIG_IOMMUFD_TEST`).
///
/// # Safety
/// Any user pointer in `cmd`'s op data must be valid for what that op
/// reads or writes through it (`IOMMU_TEST_OP_DIRTY` reads a bitmap).
#[cfg(feature = "iommufd-test-driver")]
pub unsafe fn test_cmd(fd: BorrowedFd<'_>, cmd: &mut IommuTestCmd) -> nix::Result<()> {
    cmd.size = argsz::<IommuTestCmd>();
    // SAFETY: `cmd` is a live, exclusive struct; its pointers are the
    // caller's to vouch for (this function's contract).
    unsafe { raw::iommu_test_cmd(fd.as_raw_fd(), cmd) }.map(drop)
}

/// `IOMMU_HWPT_SET_DIRTY_TRACKING`.
pub fn hwpt_set_dirty_tracking(fd: BorrowedFd<'_>, hwpt: u32, on: bool) -> nix::Result<()> {
    let mut arg = IommuHwptSetDirtyTracking {
        size: argsz::<IommuHwptSetDirtyTracking>(),
        flags: if on {
            IOMMU_HWPT_DIRTY_TRACKING_ENABLE
        } else {
            0
        },
        hwpt_id: hwpt,
        reserved: 0,
    };
    // SAFETY: a live, exclusive, pointer-free struct.
    unsafe { raw::iommu_hwpt_set_dirty_tracking(fd.as_raw_fd(), &mut arg) }.map(drop)
}

/// `IOMMU_HWPT_GET_DIRTY_BITMAP` of `[iova, iova + length)` at `page_size`
/// into `bitmap` (one bit per page, set by the kernel; zero it first).
pub fn hwpt_get_dirty_bitmap(
    fd: BorrowedFd<'_>,
    hwpt: u32,
    iova: u64,
    length: u64,
    page_size: u64,
    flags: u32,
    bitmap: &mut [u64],
) -> nix::Result<()> {
    assert!(
        (bitmap.len() as u64) * 64 >= length / page_size,
        "the bitmap holds a bit per page"
    );
    let mut arg = IommuHwptGetDirtyBitmap {
        size: argsz::<IommuHwptGetDirtyBitmap>(),
        hwpt_id: hwpt,
        flags,
        reserved: 0,
        iova,
        length,
        page_size,
        data: bitmap.as_mut_ptr() as u64,
    };
    // SAFETY: `data` points at `bitmap`, exclusively borrowed for the call,
    // with a bit for each of the `length / page_size` pages (asserted); the
    // kernel writes no more.
    unsafe { raw::iommu_hwpt_get_dirty_bitmap(fd.as_raw_fd(), &mut arg) }.map(drop)
}

/// `struct iommu_ioas_change_process`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuIoasChangeProcess {
    pub size: u32,
    pub reserved: u32,
}

/// `struct iommu_ioas_copy`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuIoasCopy {
    pub size: u32,
    pub flags: u32,
    pub dst_ioas_id: u32,
    pub src_ioas_id: u32,
    pub length: u64,
    pub dst_iova: u64,
    pub src_iova: u64,
}

/// `struct iommu_ioas_unmap`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuIoasUnmap {
    pub size: u32,
    pub ioas_id: u32,
    pub iova: u64,
    pub length: u64,
}

pub const IOMMU_OPTION_RLIMIT_MODE: u32 = 0;
pub const IOMMU_OPTION_HUGE_PAGES: u32 = 1;
pub const IOMMU_OPTION_OP_SET: u16 = 0;
pub const IOMMU_OPTION_OP_GET: u16 = 1;

/// `struct iommu_option`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuOption {
    pub size: u32,
    pub option_id: u32,
    pub op: u16,
    pub reserved: u16,
    pub object_id: u32,
    pub val64: u64,
}

/// `IOMMU_IOAS_IOVA_RANGES` into `out`; returns (number of ranges, alignment).
/// When `out` is too small the kernel answers `EMSGSIZE` and the count it needs.
pub fn iova_ranges(
    fd: BorrowedFd<'_>,
    ioas: u32,
    out: &mut [IommuIovaRange],
) -> std::result::Result<(u32, u64), (nix::Error, u32)> {
    let mut arg = IommuIoasIovaRanges {
        size: argsz::<IommuIoasIovaRanges>(),
        ioas_id: ioas,
        num_iovas: out.len() as u32,
        allowed_iovas: out.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `allowed_iovas` points at `out`, which holds `num_iovas` ranges and
    // is exclusively borrowed for the call; the kernel writes at most that many.
    match unsafe { raw::iommu_ioas_iova_ranges(fd.as_raw_fd(), &mut arg) } {
        Ok(_) => Ok((arg.num_iovas, arg.out_iova_alignment)),
        Err(e) => Err((e, arg.num_iovas)),
    }
}

/// `IOMMU_IOAS_ALLOW_IOVAS` with `ranges`.
pub fn allow_iovas(fd: BorrowedFd<'_>, ioas: u32, ranges: &[IommuIovaRange]) -> nix::Result<i32> {
    let mut arg = IommuIoasAllowIovas {
        size: argsz::<IommuIoasAllowIovas>(),
        ioas_id: ioas,
        num_iovas: ranges.len() as u32,
        allowed_iovas: ranges.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `allowed_iovas` points at `ranges` (`num_iovas` entries), which the
    // kernel only reads, and which outlives the call.
    unsafe { raw::iommu_ioas_allow_iovas(fd.as_raw_fd(), &mut arg) }
}

// Layouts pinned against include/uapi/linux/iommufd.h (Linux 7.3).
assert_eq_size!(IommuDestroy, [u8; 8]);
assert_eq_size!(IommuHwQueueAlloc, [u8; 40]);
const_assert_eq!(offset_of!(IommuHwQueueAlloc, out_hw_queue_id), 20);
const_assert_eq!(offset_of!(IommuHwQueueAlloc, nesting_parent_iova), 24);
const_assert_eq!(offset_of!(IommuHwQueueAlloc, length), 32);
#[cfg(feature = "iommufd-test-driver")]
assert_eq_size!(IommuViommuSelftest, [u8; 24]);
#[cfg(feature = "iommufd-test-driver")]
const_assert_eq!(offset_of!(IommuViommuSelftest, out_mmap_offset), 8);
#[cfg(feature = "iommufd-test-driver")]
const_assert_eq!(offset_of!(IommuViommuSelftest, out_mmap_length), 16);
assert_eq_size!(IommuIoasAlloc, [u8; 12]);
const_assert_eq!(offset_of!(IommuIoasAlloc, out_ioas_id), 8);
assert_eq_size!(IommuIovaRange, [u8; 16]);
const_assert_eq!(offset_of!(IommuIovaRange, last), 8);
assert_eq_size!(IommuIoasIovaRanges, [u8; 32]);
const_assert_eq!(offset_of!(IommuIoasIovaRanges, num_iovas), 8);
const_assert_eq!(offset_of!(IommuIoasIovaRanges, allowed_iovas), 16);
const_assert_eq!(offset_of!(IommuIoasIovaRanges, out_iova_alignment), 24);
assert_eq_size!(IommuIoasAllowIovas, [u8; 24]);
const_assert_eq!(offset_of!(IommuIoasAllowIovas, allowed_iovas), 16);
assert_eq_size!(IommuIoasMap, [u8; 40]);
const_assert_eq!(offset_of!(IommuIoasMap, ioas_id), 8);
const_assert_eq!(offset_of!(IommuIoasMap, user_va), 16);
const_assert_eq!(offset_of!(IommuIoasMap, length), 24);
const_assert_eq!(offset_of!(IommuIoasMap, iova), 32);
assert_eq_size!(IommuIoasMapFile, [u8; 40]);
const_assert_eq!(offset_of!(IommuIoasMapFile, fd), 12);
const_assert_eq!(offset_of!(IommuIoasMapFile, start), 16);
const_assert_eq!(offset_of!(IommuIoasMapFile, length), 24);
const_assert_eq!(offset_of!(IommuIoasMapFile, iova), 32);
assert_eq_size!(IommuHwptAlloc, [u8; 48]);
const_assert_eq!(offset_of!(IommuHwptAlloc, pt_id), 12);
const_assert_eq!(offset_of!(IommuHwptAlloc, out_hwpt_id), 16);
const_assert_eq!(offset_of!(IommuHwptAlloc, data_type), 24);
const_assert_eq!(offset_of!(IommuHwptAlloc, data_uptr), 32);
const_assert_eq!(offset_of!(IommuHwptAlloc, fault_id), 40);
assert_eq_size!(IommuHwInfo, [u8; 40]);
const_assert_eq!(offset_of!(IommuHwInfo, data_uptr), 16);
const_assert_eq!(offset_of!(IommuHwInfo, data_type), 24);
const_assert_eq!(offset_of!(IommuHwInfo, out_max_pasid_log2), 28);
const_assert_eq!(offset_of!(IommuHwInfo, out_capabilities), 32);
assert_eq_size!(IommuFaultAlloc, [u8; 16]);
assert_eq_size!(IommuHwptPgfault, [u8; 40]);
const_assert_eq!(offset_of!(IommuHwptPgfault, addr), 24);
const_assert_eq!(offset_of!(IommuHwptPgfault, length), 32);
const_assert_eq!(offset_of!(IommuHwptPgfault, cookie), 36);
const_assert_eq!(offset_of!(IommuFaultAlloc, out_fault_fd), 12);
assert_eq_size!(IommuHwptInvalidate, [u8; 32]);
const_assert_eq!(offset_of!(IommuHwptInvalidate, data_uptr), 8);
const_assert_eq!(offset_of!(IommuHwptInvalidate, data_type), 16);
const_assert_eq!(offset_of!(IommuHwptInvalidate, entry_num), 24);
assert_eq_size!(IommuViommuAlloc, [u8; 40]);
const_assert_eq!(offset_of!(IommuViommuAlloc, hwpt_id), 16);
const_assert_eq!(offset_of!(IommuViommuAlloc, out_viommu_id), 20);
const_assert_eq!(offset_of!(IommuViommuAlloc, data_uptr), 32);
assert_eq_size!(IommuVdeviceAlloc, [u8; 24]);
assert_eq_size!(IommuVeventqAlloc, [u8; 32]);
const_assert_eq!(offset_of!(IommuVeventqAlloc, out_veventq_fd), 24);
const_assert_eq!(offset_of!(IommuVdeviceAlloc, virt_id), 16);
assert_eq_size!(IommuHwptSetDirtyTracking, [u8; 16]);
const_assert_eq!(offset_of!(IommuHwptSetDirtyTracking, hwpt_id), 8);
assert_eq_size!(IommuHwptGetDirtyBitmap, [u8; 48]);
const_assert_eq!(offset_of!(IommuHwptGetDirtyBitmap, flags), 8);
const_assert_eq!(offset_of!(IommuHwptGetDirtyBitmap, iova), 16);
const_assert_eq!(offset_of!(IommuHwptGetDirtyBitmap, page_size), 32);
const_assert_eq!(offset_of!(IommuHwptGetDirtyBitmap, data), 40);
assert_eq_size!(IommuTestCmd, [u8; 72]);
const_assert_eq!(offset_of!(IommuTestCmd, data), 16);
assert_eq_size!(IommuIoasChangeProcess, [u8; 8]);
const_assert_eq!(offset_of!(IommuIoasChangeProcess, reserved), 4);
assert_eq_size!(IommuIoasCopy, [u8; 40]);
const_assert_eq!(offset_of!(IommuIoasCopy, src_ioas_id), 12);
const_assert_eq!(offset_of!(IommuIoasCopy, length), 16);
const_assert_eq!(offset_of!(IommuIoasCopy, dst_iova), 24);
const_assert_eq!(offset_of!(IommuIoasCopy, src_iova), 32);
assert_eq_size!(IommuIoasUnmap, [u8; 24]);
const_assert_eq!(offset_of!(IommuIoasUnmap, iova), 8);
const_assert_eq!(offset_of!(IommuIoasUnmap, length), 16);
assert_eq_size!(IommuOption, [u8; 24]);
const_assert_eq!(offset_of!(IommuOption, op), 8);
const_assert_eq!(offset_of!(IommuOption, object_id), 12);
const_assert_eq!(offset_of!(IommuOption, val64), 16);
