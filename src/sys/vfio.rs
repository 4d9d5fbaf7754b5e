//! The VFIO uAPI: the structs of `vfio-bindings` 0.7 (re-exported), the
//! sizes this crate relies on pinned, and the wrappers of the ioctls that
//! carry buffers or return fds.
#![allow(unsafe_code)] // ioctls are FFI; every caller documents its pointer argument.

pub(crate) use vfio_bindings::bindings::vfio::*;

use super::{ioctl, raw};
use static_assertions::assert_eq_size;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `VFIO_DEVICE_BIND_IOMMUFD` without a VF token.
pub fn bind_iommufd(dev: BorrowedFd<'_>, arg: &mut vfio_device_bind_iommufd) -> nix::Result<i32> {
    arg.token_uuid_ptr = 0;
    arg.flags = 0;
    ioctl(dev, raw::vfio_device_bind_iommufd, arg)
}

/// `VFIO_DEVICE_BIND_IOMMUFD` with `VFIO_DEVICE_BIND_FLAG_TOKEN` and the
/// token at `token_uuid_ptr`.
///
/// # Safety
/// `token_uuid_ptr` must be the address of 16 readable bytes, or an
/// address the kernel's `copy_from_user` fails on (it never reaches user
/// memory there); the kernel only reads it.
pub unsafe fn bind_iommufd_token(
    dev: BorrowedFd<'_>,
    arg: &mut vfio_device_bind_iommufd,
    token_uuid_ptr: u64,
) -> nix::Result<i32> {
    arg.token_uuid_ptr = token_uuid_ptr;
    arg.flags = VFIO_DEVICE_BIND_FLAG_TOKEN;
    // SAFETY: `arg` is a live, exclusive struct; the pointer inside is the
    // caller's to vouch for (this function's contract).
    unsafe { raw::vfio_device_bind_iommufd(dev.as_raw_fd(), arg) }
}

/// `VFIO_DEVICE_GET_REGION_INFO` into `buf`, whose first 32 bytes are the
/// `struct vfio_region_info`; the rest receives the capability chain.
pub fn region_info(dev: BorrowedFd<'_>, index: u32, buf: &mut [u64]) -> nix::Result<i32> {
    assert!(
        buf.len() >= 4,
        "region info buffer smaller than struct vfio_region_info"
    );
    let bytes = (buf.len() * 8) as u32;
    // The header is what the kernel reads (`argsz`, `flags`, `index`); it
    // writes the rest.
    buf[..4].fill(0);
    // argsz (u32 @0) and index (u32 @8), little or big endian alike through to_ne_bytes.
    buf[0] = u64::from_ne_bytes(pack_u32s(bytes, 0));
    buf[1] = u64::from_ne_bytes(pack_u32s(index, 0));
    // SAFETY: `buf` is an exclusive, 8-aligned buffer of `argsz` bytes; the kernel
    // writes at most `argsz` bytes into it.
    unsafe { raw::vfio_device_get_region_info(dev.as_raw_fd(), buf.as_mut_ptr()) }
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

/// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` into `buf`: a `struct
/// vfio_pci_hot_reset_info` header (argsz, flags, count) and room for
/// `(buf.len() - 3) / 2` `struct vfio_pci_dependent_device` entries of two
/// words each. `ENOSPC` leaves the count needed in `buf[2]`.
pub fn hot_reset_info(dev: BorrowedFd<'_>, buf: &mut [u32]) -> nix::Result<i32> {
    assert!(
        buf.len() >= 3,
        "hot reset info buffer smaller than its header"
    );
    buf[0] = (buf.len() * 4) as u32;
    // SAFETY: `buf` is a 4-aligned, exclusive buffer of `argsz` bytes; the
    // kernel writes the header and at most `(argsz - 12) / 8` entries.
    unsafe { raw::vfio_device_get_pci_hot_reset_info(dev.as_raw_fd(), buf.as_mut_ptr()) }
}

/// `VFIO_DEVICE_PCI_HOT_RESET` with the group fds in `group_fds` (none on
/// the cdev, where iommufd proves ownership).
pub fn hot_reset(dev: BorrowedFd<'_>, group_fds: &[BorrowedFd<'_>]) -> nix::Result<i32> {
    let mut buf = vec![0u32, 0, group_fds.len() as u32];
    buf.extend(group_fds.iter().map(|f| f.as_raw_fd() as u32));
    buf[0] = (buf.len() * 4) as u32;
    // SAFETY: `buf` holds a `struct vfio_pci_hot_reset` header and `count`
    // fds, `argsz` bytes in all, which the kernel only reads.
    unsafe { raw::vfio_device_pci_hot_reset(dev.as_raw_fd(), buf.as_mut_ptr()) }
}

/// `VFIO_DEVICE_FEATURE` with `flags` (`GET`/`SET`/`PROBE` | feature) and a
/// pointer-free payload of whole words after the 8-byte header; the payload
/// is read back into `payload` (the kernel writes it on `GET`).
pub fn device_feature(dev: BorrowedFd<'_>, flags: u32, payload: &mut [u64]) -> nix::Result<i32> {
    // SAFETY: the payloads passed here are plain integers, no pointers
    // (the callers that carry one use `device_feature_ptr` themselves).
    unsafe { device_feature_ptr(dev, flags, payload) }
}

/// `VFIO_DEVICE_FEATURE` whose payload carries a user pointer (the DMA
/// logging structs), as raw words.
///
/// # Safety
/// Every pointer in `payload` must name memory valid for what the feature
/// reads or writes through it, for the duration of the call.
pub unsafe fn device_feature_ptr(
    dev: BorrowedFd<'_>,
    flags: u32,
    payload: &mut [u64],
) -> nix::Result<i32> {
    let mut buf = [0u64; 5];
    let n = payload.len();
    assert!(n < buf.len(), "feature payloads here are at most 4 words");
    buf[0] = u64::from_ne_bytes(pack_u32s(8 * (n as u32 + 1), flags));
    buf[1..=n].copy_from_slice(payload);
    // SAFETY: `buf` is an exclusive, 8-aligned buffer of at least `argsz`
    // bytes: a `struct vfio_device_feature` header and the payload; the
    // kernel reads and writes at most `argsz` bytes of it. The pointers
    // inside the payload are the caller's to vouch for (this function's
    // contract).
    let r = unsafe { raw::vfio_device_feature(dev.as_raw_fd(), buf.as_mut_ptr()) }?;
    payload.copy_from_slice(&buf[1..=n]);
    Ok(r)
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

// The cdev structs come from vfio-bindings; pin the sizes this crate relies on
// (Linux >= 6.15: bind carries token_uuid_ptr, attach carries pasid).
assert_eq_size!(vfio_device_bind_iommufd, [u8; 24]);
assert_eq_size!(vfio_device_attach_iommufd_pt, [u8; 16]);
assert_eq_size!(vfio_device_detach_iommufd_pt, [u8; 12]);
assert_eq_size!(vfio_region_info, [u8; 32]);
assert_eq_size!(vfio_irq_set, [u8; 20]);
// The migration structs the feature payloads are built from.
assert_eq_size!(vfio_device_feature, [u8; 8]);
assert_eq_size!(vfio_device_feature_migration, [u8; 8]);
assert_eq_size!(vfio_device_feature_mig_state, [u8; 8]);
assert_eq_size!(vfio_device_feature_mig_data_size, [u8; 8]);
assert_eq_size!(vfio_precopy_info, [u8; 24]);
assert_eq_size!(vfio_device_feature_dma_logging_control, [u8; 24]);
assert_eq_size!(vfio_device_feature_dma_logging_range, [u8; 16]);
assert_eq_size!(vfio_device_feature_dma_logging_report, [u8; 32]);
