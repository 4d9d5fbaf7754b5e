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

use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};

pub(crate) mod iommu;
pub(crate) mod vfio;
pub(crate) use iommu::*;
pub(crate) use vfio::{
    bind_iommufd, bind_iommufd_token, check_extension, device_feature, device_reset,
    get_api_version, group_get_device_fd, group_unset_container, hot_reset, hot_reset_info,
    iommu_get_info, region_info, set_iommu, set_irqs, VFIO_DEVICE_ATTACH_PASID,
    VFIO_DEVICE_DETACH_PASID,
};

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
                nix::ioctl_readwrite_bad!(#[inline] $name, nix::request_code_none!(VFIO_TYPE, $nr), $ty);
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
    // Same numbers as the container's GET_INFO / MAP_DMA: on a device fd they are these.
    vfio_device_get_pci_hot_reset_info = VFIO_BASE + 12, u32;
    vfio_device_pci_hot_reset = VFIO_BASE + 13, u32;
    // Type1 IOMMU (legacy path), on the container fd.
    vfio_iommu_get_info = VFIO_BASE + 12, u64;
    vfio_iommu_map_dma = VFIO_BASE + 13, vfio::vfio_iommu_type1_dma_map;
    vfio_iommu_unmap_dma = VFIO_BASE + 14, vfio::vfio_iommu_type1_dma_unmap;
    // Device cdev + iommufd.
    vfio_device_bind_iommufd = VFIO_BASE + 18, vfio::vfio_device_bind_iommufd;
    vfio_device_attach_iommufd_pt = VFIO_BASE + 19, vfio::vfio_device_attach_iommufd_pt;
    vfio_device_detach_iommufd_pt = VFIO_BASE + 20, vfio::vfio_device_detach_iommufd_pt;
    // Device features (migration, DMA logging), and the migration data fd.
    vfio_device_feature = VFIO_BASE + 17, u64;
    vfio_mig_get_precopy_info = VFIO_BASE + 21, vfio::vfio_precopy_info;
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
    iommu_ioas_change_process = IOMMUFD_CMD_BASE + 0x12, IommuIoasChangeProcess;
    iommu_hwpt_alloc = IOMMUFD_CMD_BASE + 9, IommuHwptAlloc;
    iommu_get_hw_info = IOMMUFD_CMD_BASE + 0xa, IommuHwInfo;
    iommu_hwpt_set_dirty_tracking = IOMMUFD_CMD_BASE + 0xb, IommuHwptSetDirtyTracking;
    iommu_hwpt_get_dirty_bitmap = IOMMUFD_CMD_BASE + 0xc, IommuHwptGetDirtyBitmap;
    iommu_test_cmd = IOMMUFD_CMD_BASE + 0x20, IommuTestCmd;
    iommu_hwpt_invalidate = IOMMUFD_CMD_BASE + 0xd, IommuHwptInvalidate;
    iommu_fault_queue_alloc = IOMMUFD_CMD_BASE + 0xe, IommuFaultAlloc;
    iommu_viommu_alloc = IOMMUFD_CMD_BASE + 0x10, IommuViommuAlloc;
    iommu_vdevice_alloc = IOMMUFD_CMD_BASE + 0x11, IommuVdeviceAlloc;
    iommu_veventq_alloc = IOMMUFD_CMD_BASE + 0x13, IommuVeventqAlloc;
    iommu_hw_queue_alloc = IOMMUFD_CMD_BASE + 0x14, IommuHwQueueAlloc;
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
unsafe impl PlainArg for IommuIoasChangeProcess {}

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
// SAFETY: pointer-free.
unsafe impl PlainArg for vfio::vfio_precopy_info {}
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

/// The most an info ioctl with a capability chain may ask for.
pub const MAX_INFO_BYTES: usize = 1 << 20;

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
        if need > MAX_INFO_BYTES {
            // No real capability chain is this long: refuse rather than
            // follow a size that keeps growing.
            return Err(nix::errno::Errno::E2BIG);
        }
        buf = vec![0u64; need.div_ceil(8)];
    }
}

/// As [`query_with_caps`], with the first try in a buffer of `W` words on
/// the stack (no allocation when the answer fits, which is the common
/// case), and `decode` reading the bytes the kernel filled where they lie.
pub fn query_with_caps_in<const W: usize, T>(
    mut issue: impl FnMut(&mut [u64]) -> nix::Result<i32>,
    decode: impl FnOnce(&[u8]) -> T,
) -> nix::Result<T> {
    let mut buf = [0u64; W];
    issue(&mut buf)?;
    let argsz = buf[0].to_ne_bytes();
    let need = u32::from_ne_bytes([argsz[0], argsz[1], argsz[2], argsz[3]]) as usize;
    if need <= W * 8 {
        return Ok(decode(as_bytes(&buf)));
    }
    let bytes = query_with_caps(need, issue)?;
    Ok(decode(&bytes))
}

/// The bytes of `words`, in memory order.
fn as_bytes(words: &[u64]) -> &[u8] {
    // SAFETY: `u64` has no padding, so all `8 * len` bytes are initialized;
    // `u8` needs no alignment; the slice borrows `words` for its lifetime
    // and is read-only, like the borrow it comes from.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stack try decodes in place when the answer fits, and goes to the
    /// heap loop, at the size the kernel asks, when it does not.
    #[test]
    fn query_with_caps_in_uses_the_stack_first() {
        let mut calls = Vec::new();
        let fits = query_with_caps_in::<4, _>(
            |buf| {
                calls.push(buf.len() * 8);
                buf[0] = u64::from_ne_bytes([32, 0, 0, 0, 0, 0, 0, 0]);
                buf[3] = 7;
                Ok(0)
            },
            |b| (b.len(), u64::from_ne_bytes(b[24..32].try_into().unwrap())),
        )
        .unwrap();
        assert_eq!((calls.as_slice(), fits), (&[32][..], (32, 7)));
        calls.clear();
        let grown = query_with_caps_in::<4, _>(
            |buf| {
                calls.push(buf.len() * 8);
                buf[0] = u64::from_ne_bytes([48, 0, 0, 0, 0, 0, 0, 0]);
                if let Some(w) = buf.get_mut(5) {
                    *w = 9;
                }
                Ok(0)
            },
            |b| (b.len(), u64::from_ne_bytes(b[40..48].try_into().unwrap())),
        )
        .unwrap();
        assert_eq!((calls.as_slice(), grown), (&[32, 48][..], (48, 9)));
    }

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
            ("vfio_device_feature", 0x3b75),
            ("vfio_mig_get_precopy_info", 0x3b79),
            ("iommu_destroy", 0x3b80),
            ("iommu_ioas_alloc", 0x3b81),
            ("iommu_ioas_allow_iovas", 0x3b82),
            ("iommu_ioas_copy", 0x3b83),
            ("iommu_ioas_iova_ranges", 0x3b84),
            ("iommu_ioas_map", 0x3b85),
            ("iommu_ioas_unmap", 0x3b86),
            ("iommu_option", 0x3b87),
            ("iommu_ioas_map_file", 0x3b8f),
            ("iommu_ioas_change_process", 0x3b92),
            ("iommu_hwpt_alloc", 0x3b89),
            ("iommu_get_hw_info", 0x3b8a),
            ("iommu_hwpt_set_dirty_tracking", 0x3b8b),
            ("iommu_hwpt_get_dirty_bitmap", 0x3b8c),
            ("iommu_test_cmd", 0x3ba0),
            ("iommu_hwpt_invalidate", 0x3b8d),
            ("iommu_fault_queue_alloc", 0x3b8e),
            ("iommu_viommu_alloc", 0x3b90),
            ("iommu_vdevice_alloc", 0x3b91),
            ("iommu_veventq_alloc", 0x3b93),
            ("vfio_device_get_pci_hot_reset_info", 0x3b70),
            ("vfio_device_pci_hot_reset", 0x3b71),
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
