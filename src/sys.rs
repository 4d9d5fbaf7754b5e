//! The raw layer: ioctl numbers, the iommufd uAPI structs, and the generated
//! `unsafe fn`s. Nothing here is public; the safe layer in the other modules is
//! the only caller.
//!
//! VFIO and iommufd ioctls are `_IO(';', nr)` that take a pointer, so they are
//! declared with `ioctl_readwrite_bad!` + `request_code_none!`; `ioctl_readwrite!`
//! would encode `_IOWR` with a size and give a different number.
//!
//! The VFIO structs come from `vfio-bindings` 0.7 (Linux 7.2 layouts). That crate
//! has no iommufd structs, so they are written here as `#[repr(C)]` and pinned
//! with static_assertions against `include/uapi/linux/iommufd.h` (Linux 7.3):
//! a hand-written struct is a dozen lines, and pinning every size and offset
//! catches a transcription error at compile time, without another bindgen crate
//! whose kernel version would lag ours.
#![allow(unsafe_code)] // ioctls are FFI; every caller documents its pointer argument.

use static_assertions::{assert_eq_size, const_assert_eq};
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub(crate) use vfio_bindings::bindings::vfio;

/// `VFIO_TYPE` (`';'`) and the two command bases.
pub const VFIO_TYPE: u8 = b';';
pub const VFIO_BASE: u32 = 100;
pub const IOMMUFD_CMD_BASE: u32 = 0x80;

macro_rules! vfio_ioctls {
    ($($name:ident = $nr:expr, $ty:ty;)*) => {
        /// The generated `unsafe fn`s; only the safe wrappers below call them.
        pub mod raw {
            use super::*;
            $(
                nix::ioctl_readwrite_bad!($name, nix::request_code_none!(VFIO_TYPE, $nr), $ty);
            )*
            nix::ioctl_write_int_bad!(vfio_check_extension, nix::request_code_none!(VFIO_TYPE, VFIO_BASE + 1));
            nix::ioctl_write_int_bad!(vfio_set_iommu, nix::request_code_none!(VFIO_TYPE, VFIO_BASE + 2));
            nix::ioctl_none_bad!(vfio_get_api_version, nix::request_code_none!(VFIO_TYPE, VFIO_BASE));
            nix::ioctl_none_bad!(vfio_device_reset, nix::request_code_none!(VFIO_TYPE, VFIO_BASE + 11));
            nix::ioctl_none_bad!(vfio_group_unset_container, nix::request_code_none!(VFIO_TYPE, VFIO_BASE + 5));
            nix::ioctl_write_ptr_bad!(
                vfio_group_get_device_fd,
                nix::request_code_none!(VFIO_TYPE, VFIO_BASE + 6),
                std::ffi::c_char
            );
        }
        /// Every (name, request number) pair, for the test that pins them.
        #[cfg(test)]
        pub const ALL_REQUESTS: &[(&str, u64)] = &[
            $((stringify!($name), nix::request_code_none!(VFIO_TYPE, $nr)),)*
        ];
    };
}

vfio_ioctls! {
    // Container / group (legacy path).
    vfio_group_get_status = VFIO_BASE + 3, vfio::vfio_group_status;
    vfio_group_set_container = VFIO_BASE + 4, i32;
    // Device.
    vfio_device_get_info = VFIO_BASE + 7, vfio::vfio_device_info;
    vfio_device_get_region_info = VFIO_BASE + 8, u64;
    vfio_device_get_irq_info = VFIO_BASE + 9, vfio::vfio_irq_info;
    vfio_device_set_irqs = VFIO_BASE + 10, u32;
    // Type1 IOMMU (legacy path), on the container fd.
    vfio_iommu_get_info = VFIO_BASE + 12, u64;
    vfio_iommu_map_dma = VFIO_BASE + 13, vfio::vfio_iommu_type1_dma_map;
    vfio_iommu_unmap_dma = VFIO_BASE + 14, vfio::vfio_iommu_type1_dma_unmap;
    // Device cdev + iommufd.
    vfio_device_bind_iommufd = VFIO_BASE + 18, vfio::vfio_device_bind_iommufd;
    vfio_device_attach_iommufd_pt = VFIO_BASE + 19, vfio::vfio_device_attach_iommufd_pt;
    vfio_device_detach_iommufd_pt = VFIO_BASE + 20, vfio::vfio_device_detach_iommufd_pt;
    // iommufd.
    iommu_destroy = IOMMUFD_CMD_BASE, IommuDestroy;
    iommu_ioas_alloc = IOMMUFD_CMD_BASE + 1, IommuIoasAlloc;
    iommu_ioas_allow_iovas = IOMMUFD_CMD_BASE + 2, IommuIoasAllowIovas;
    iommu_ioas_copy = IOMMUFD_CMD_BASE + 3, IommuIoasCopy;
    iommu_ioas_iova_ranges = IOMMUFD_CMD_BASE + 4, IommuIoasIovaRanges;
    iommu_ioas_map = IOMMUFD_CMD_BASE + 5, IommuIoasMap;
    iommu_ioas_unmap = IOMMUFD_CMD_BASE + 6, IommuIoasUnmap;
    iommu_option = IOMMUFD_CMD_BASE + 7, IommuOption;
    iommu_ioas_map_file = IOMMUFD_CMD_BASE + 0xf, IommuIoasMapFile;
}

// ---------------------------------------------------------------- iommufd structs

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

/// The `size`/`argsz` first field every iommufd and VFIO struct carries.
pub fn argsz<T>() -> u32 {
    size_of::<T>() as u32
}

// ---------------------------------------------------------------- safe wrappers

/// Argument structs that hold no pointers: the kernel reads and writes at most
/// `size_of::<T>()` bytes of them (their `size`/`argsz` field says so), so a
/// `&mut T` is all an ioctl on them needs.
///
/// # Safety
/// Implement only for `#[repr(C)]` uAPI structs without pointer fields, whose
/// ioctl touches nothing but the struct itself.
pub unsafe trait PlainArg {}
// SAFETY: each of these is a pointer-free uAPI struct; their ioctls access only the struct.
unsafe impl PlainArg for IommuDestroy {}
// SAFETY: as above.
unsafe impl PlainArg for IommuIoasAlloc {}
// SAFETY: as above.
unsafe impl PlainArg for IommuIoasUnmap {}
// SAFETY: as above.
unsafe impl PlainArg for IommuIoasCopy {}
// SAFETY: as above.
unsafe impl PlainArg for IommuOption {}
// SAFETY: `fd` is a file descriptor number, not a pointer; the kernel takes its own reference.
unsafe impl PlainArg for IommuIoasMapFile {}
// SAFETY: pointer-free.
unsafe impl PlainArg for vfio::vfio_device_info {}
// SAFETY: pointer-free.
unsafe impl PlainArg for vfio::vfio_irq_info {}
// SAFETY: pointer-free.
unsafe impl PlainArg for vfio::vfio_group_status {}
// SAFETY: `token_uuid_ptr` must be 0 (no token); `bind_iommufd` below forces that.
unsafe impl PlainArg for vfio::vfio_device_bind_iommufd {}
// SAFETY: pointer-free.
unsafe impl PlainArg for vfio::vfio_device_attach_iommufd_pt {}
// SAFETY: pointer-free.
unsafe impl PlainArg for vfio::vfio_device_detach_iommufd_pt {}
// SAFETY: pointer-free.
unsafe impl PlainArg for vfio::vfio_iommu_type1_dma_unmap {}
// SAFETY: the container fd number is passed by value through the pointer.
unsafe impl PlainArg for i32 {}

/// A raw ioctl function as nix generates it.
pub type RawIoctl<T> = unsafe fn(std::ffi::c_int, *mut T) -> nix::Result<std::ffi::c_int>;

/// Issues `f` on `fd` with a pointer-free argument.
pub fn ioctl<T: PlainArg>(fd: BorrowedFd<'_>, f: RawIoctl<T>, arg: &mut T) -> nix::Result<i32> {
    // SAFETY: `arg` is a live, exclusive `T` for the whole call, `T: PlainArg`
    // says the kernel touches nothing else, and `fd` is borrowed open.
    unsafe { f(fd.as_raw_fd(), arg) }
}

/// `VFIO_DEVICE_BIND_IOMMUFD` without a VF token.
pub fn bind_iommufd(
    dev: BorrowedFd<'_>,
    arg: &mut vfio::vfio_device_bind_iommufd,
) -> nix::Result<i32> {
    arg.token_uuid_ptr = 0;
    arg.flags = 0;
    ioctl(dev, raw::vfio_device_bind_iommufd, arg)
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

/// `VFIO_DEVICE_GET_REGION_INFO` into `buf`, whose first 32 bytes are the
/// `struct vfio_region_info`; the rest receives the capability chain.
pub fn region_info(dev: BorrowedFd<'_>, index: u32, buf: &mut [u64]) -> nix::Result<i32> {
    assert!(
        buf.len() >= 4,
        "region info buffer smaller than struct vfio_region_info"
    );
    let bytes = (buf.len() * 8) as u32;
    buf.fill(0);
    // argsz (u32 @0) and index (u32 @8), little or big endian alike through to_ne_bytes.
    buf[0] = u64::from_ne_bytes(pack_u32s(bytes, 0));
    buf[1] = u64::from_ne_bytes(pack_u32s(index, 0));
    // SAFETY: `buf` is an exclusive, 8-aligned buffer of `argsz` bytes; the kernel
    // writes at most `argsz` bytes into it.
    unsafe { raw::vfio_device_get_region_info(dev.as_raw_fd(), buf.as_mut_ptr()) }
}

/// Issues an info ioctl whose struct starts with `argsz` and may be followed
/// by a capability chain: first with a buffer of `min_bytes`, then again with
/// the size the kernel wrote back into `argsz`, until everything fits.
/// Returns the filled buffer as bytes.
pub fn query_with_caps(
    min_bytes: usize,
    mut issue: impl FnMut(&mut [u64]) -> nix::Result<i32>,
) -> nix::Result<Vec<u8>> {
    let mut buf = vec![0u64; min_bytes.div_ceil(8)];
    loop {
        issue(&mut buf)?;
        let argsz = buf[0].to_ne_bytes();
        let need = u32::from_ne_bytes([argsz[0], argsz[1], argsz[2], argsz[3]]) as usize;
        if need <= buf.len() * 8 {
            return Ok(buf.iter().flat_map(|w| w.to_ne_bytes()).collect());
        }
        buf = vec![0u64; need.div_ceil(8)];
    }
}

fn pack_u32s(a: u32, b: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&a.to_ne_bytes());
    out[4..].copy_from_slice(&b.to_ne_bytes());
    out
}

/// `VFIO_IOMMU_GET_INFO` on a type1 container into `buf` (24-byte
/// `struct vfio_iommu_type1_info`, then the capability chain).
pub fn iommu_get_info(container: BorrowedFd<'_>, buf: &mut [u64]) -> nix::Result<i32> {
    assert!(
        buf.len() >= 3,
        "buffer smaller than struct vfio_iommu_type1_info"
    );
    buf.fill(0);
    buf[0] = u64::from_ne_bytes(pack_u32s((buf.len() * 8) as u32, 0));
    // SAFETY: `buf` is an exclusive, 8-aligned buffer of `argsz` bytes; the
    // kernel writes at most `argsz` bytes.
    unsafe { raw::vfio_iommu_get_info(container.as_raw_fd(), buf.as_mut_ptr()) }
}

/// `VFIO_DEVICE_SET_IRQS` with a `struct vfio_irq_set` header (5 words) and its data in `buf`.
pub fn set_irqs(dev: BorrowedFd<'_>, buf: &mut [u32]) -> nix::Result<i32> {
    assert!(
        buf.len() >= 5,
        "irq set buffer smaller than struct vfio_irq_set"
    );
    buf[0] = (buf.len() * 4) as u32;
    // SAFETY: `buf` is a 4-aligned buffer of `argsz` bytes; the kernel reads the
    // header and at most `argsz - 20` bytes of data, and checks `count` against it.
    unsafe { raw::vfio_device_set_irqs(dev.as_raw_fd(), buf.as_mut_ptr()) }
}

/// `VFIO_DEVICE_RESET`.
pub fn device_reset(dev: BorrowedFd<'_>) -> nix::Result<i32> {
    // SAFETY: no argument; `dev` is open.
    unsafe { raw::vfio_device_reset(dev.as_raw_fd()) }
}

/// `VFIO_GET_API_VERSION` on a container.
pub fn get_api_version(container: BorrowedFd<'_>) -> nix::Result<i32> {
    // SAFETY: no argument.
    unsafe { raw::vfio_get_api_version(container.as_raw_fd()) }
}

/// `VFIO_CHECK_EXTENSION` on a container.
pub fn check_extension(container: BorrowedFd<'_>, ext: i32) -> nix::Result<i32> {
    // SAFETY: the argument is an integer passed by value.
    unsafe { raw::vfio_check_extension(container.as_raw_fd(), ext) }
}

/// `VFIO_SET_IOMMU` on a container.
pub fn set_iommu(container: BorrowedFd<'_>, kind: i32) -> nix::Result<i32> {
    // SAFETY: the argument is an integer passed by value.
    unsafe { raw::vfio_set_iommu(container.as_raw_fd(), kind) }
}

/// `VFIO_GROUP_UNSET_CONTAINER`.
pub fn group_unset_container(group: BorrowedFd<'_>) -> nix::Result<i32> {
    // SAFETY: no argument.
    unsafe { raw::vfio_group_unset_container(group.as_raw_fd()) }
}

/// `VFIO_GROUP_GET_DEVICE_FD`: a new device fd the caller owns.
pub fn group_get_device_fd(group: BorrowedFd<'_>, name: &std::ffi::CStr) -> nix::Result<OwnedFd> {
    // SAFETY: `name` is a NUL-terminated string the kernel only reads.
    let fd = unsafe { raw::vfio_group_get_device_fd(group.as_raw_fd(), name.as_ptr()) }?;
    // SAFETY: on success the ioctl returns a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

// Layouts pinned against include/uapi/linux/iommufd.h (Linux 7.3).
assert_eq_size!(IommuDestroy, [u8; 8]);
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
// The cdev structs come from vfio-bindings; pin the sizes this crate relies on
// (Linux >= 6.15: bind carries token_uuid_ptr, attach carries pasid).
assert_eq_size!(vfio::vfio_device_bind_iommufd, [u8; 24]);
assert_eq_size!(vfio::vfio_device_attach_iommufd_pt, [u8; 16]);
assert_eq_size!(vfio::vfio_device_detach_iommufd_pt, [u8; 12]);
assert_eq_size!(vfio::vfio_region_info, [u8; 32]);
assert_eq_size!(vfio::vfio_irq_set, [u8; 20]);

#[cfg(test)]
mod tests {
    use super::*;

    /// The re-query loop grows the buffer to what the kernel asks for, and stops.
    #[test]
    fn query_with_caps_grows_to_the_requested_size() {
        let mut calls = Vec::new();
        let bytes = query_with_caps(32, |buf| {
            calls.push(buf.len() * 8);
            let mut w = buf[0].to_ne_bytes();
            w[..4].copy_from_slice(&80u32.to_ne_bytes()); // the kernel wants 80 bytes
            buf[0] = u64::from_ne_bytes(w);
            if let Some(last) = buf.get_mut(9) {
                *last = 0xabcd;
            }
            Ok(0)
        })
        .unwrap();
        assert_eq!(calls, [32, 80]);
        assert_eq!(bytes.len(), 80);
        assert_eq!(
            u64::from_ne_bytes(bytes[72..80].try_into().unwrap()),
            0xabcd
        );
        assert_eq!(
            query_with_caps(8, |_| Err(nix::errno::Errno::ENOTTY)),
            Err(nix::errno::Errno::ENOTTY)
        );
    }

    /// Request numbers from the kernel headers: `_IO(';', nr)` = 0x3b00 | nr.
    #[test]
    fn ioctl_numbers_match_the_kernel() {
        let expect = [
            ("vfio_group_get_status", 0x3b67),
            ("vfio_group_set_container", 0x3b68),
            ("vfio_device_get_info", 0x3b6b),
            ("vfio_device_get_region_info", 0x3b6c),
            ("vfio_device_get_irq_info", 0x3b6d),
            ("vfio_device_set_irqs", 0x3b6e),
            ("vfio_iommu_get_info", 0x3b70),
            ("vfio_iommu_map_dma", 0x3b71),
            ("vfio_iommu_unmap_dma", 0x3b72),
            ("vfio_device_bind_iommufd", 0x3b76),
            ("vfio_device_attach_iommufd_pt", 0x3b77),
            ("vfio_device_detach_iommufd_pt", 0x3b78),
            ("iommu_destroy", 0x3b80),
            ("iommu_ioas_alloc", 0x3b81),
            ("iommu_ioas_allow_iovas", 0x3b82),
            ("iommu_ioas_copy", 0x3b83),
            ("iommu_ioas_iova_ranges", 0x3b84),
            ("iommu_ioas_map", 0x3b85),
            ("iommu_ioas_unmap", 0x3b86),
            ("iommu_option", 0x3b87),
            ("iommu_ioas_map_file", 0x3b8f),
        ];
        for (name, nr) in expect {
            let got = ALL_REQUESTS
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("{name} not declared"))
                .1;
            assert_eq!(got, nr, "{name}");
        }
        // The integer / no-argument ones, declared outside the table.
        assert_eq!(nix::request_code_none!(VFIO_TYPE, VFIO_BASE), 0x3b64);
        assert_eq!(nix::request_code_none!(VFIO_TYPE, VFIO_BASE + 6), 0x3b6a);
        assert_eq!(nix::request_code_none!(VFIO_TYPE, VFIO_BASE + 11), 0x3b6f);
    }
}
