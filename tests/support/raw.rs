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
