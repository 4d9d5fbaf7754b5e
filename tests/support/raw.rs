//! Raw iommufd ioctls, as a user without this crate would issue them: the
//! baselines of the fault-injection sweeps and the benches.

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
// `VFIO_DEVICE_GET_REGION_INFO` on a `struct vfio_region_info` seen as
// `[argsz, flags, index, cap_offset, size (2 words), offset (2 words)]`.
nix::ioctl_readwrite_bad!(
    raw_region_info,
    nix::request_code_none!(b';', 108),
    [u32; 8]
);
