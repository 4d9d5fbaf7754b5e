//! For tests against the kernel's iommufd test driver only
//! (`CONFIG_IOMMUFD_TEST`; feature `iommufd-test-driver`, off by default).
//!
//! The driver makes mock devices that bind to an iommufd like real ones
//! and have what emulated hardware lacks: dirty tracking, nesting, PASID,
//! I/O page faults. A [`MockDevice`] can have an [`Hwpt`] allocated for it
//! and be moved between page tables; [`MockDevice::mark_dirty`] plays the
//! device writing memory. It is no [`Device`](crate::Device): nothing
//! here can make one, so the crate's public API gains no way to forge a
//! device; it implements the sealed [`HwptDevice`] only.
//!
//! ```no_run
//! use iommufd::hwpt::{DirtyTracking, Hwpt};
//! use iommufd::mock::MockDevice;
//! # fn main() -> iommufd::Result<()> {
//! let fd = iommufd::Iommufd::open_iommufd()?;
//! let ioas = fd.alloc_ioas()?;
//! let mut dev = MockDevice::new(&ioas)?;
//! let hwpt = Hwpt::<DirtyTracking>::alloc(&dev, &ioas)?;
//! dev.replace(&hwpt)?;
//! hwpt.set_dirty_tracking(true)?;
//! // ... map memory at 0x100_0000, then:
//! dev.mark_dirty(&hwpt, 0x100_0000, 0x4000, 4096, &[0b101])?; // pages 0 and 2
//! let dirty = hwpt.read_dirty(0x100_0000, 0x4000, 4096, false)?;
//! # let _ = dirty; Ok(()) }
//! ```

use crate::error::{Error, ErrorKind, Result};
use crate::hwpt::sealed;
use crate::hwpt::{DirtyTracking, Hwpt, HwptDevice, PageTable};
use crate::ioas::Ioas;
use crate::iommufd::Iommufd;
use crate::sys;

const OP_MOCK_DOMAIN: u32 = 2;
const OP_MOCK_DOMAIN_REPLACE: u32 = 10;
const OP_DIRTY: u32 = 13;
const OP_MD_CHECK_IOTLB: u32 = 14;
const OP_TRIGGER_IOPF: u32 = 15;
const OP_TRIGGER_VEVENT: u32 = 17;

/// Issues a test-driver op whose data holds no user pointer (every op here
/// but `IOMMU_TEST_OP_DIRTY`); the command as the driver filled it.
fn plain_op(
    fd: &Iommufd,
    op: u32,
    id: u32,
    data: [u64; 7],
) -> std::result::Result<sys::IommuTestCmd, nix::errno::Errno> {
    let mut cmd = sys::IommuTestCmd {
        op,
        id,
        data,
        ..Default::default()
    };
    // SAFETY: the callers pass only ops whose data carries no pointer
    // (MOCK_DOMAIN, MOCK_DOMAIN_REPLACE, MD_CHECK_IOTLB, TRIGGER_IOPF,
    // TRIGGER_VEVENT): the driver touches nothing but `cmd`.
    unsafe { fd.ctx().test_cmd(&mut cmd) }.map(|()| cmd)
}

/// A mock device of the iommufd test driver, bound to an iommufd and
/// attached to a page table. Destroyed (`IOMMU_DESTROY` of its selftest
/// object) when dropped.
#[derive(Debug)]
pub struct MockDevice {
    iommufd: Iommufd,
    stdev_id: u32,
    idev_id: u32,
    hwpt_id: u32,
    /// What it is attached to, kept alive while it is.
    _pt: Option<Hwpt<()>>,
    _ioas: Ioas,
    name: String,
}

impl MockDevice {
    /// A mock device attached to `ioas` (`IOMMU_TEST_OP_MOCK_DOMAIN`).
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] (`ENOTTY`) on a kernel without
    /// `CONFIG_IOMMUFD_TEST`, or on the legacy path.
    pub fn new(ioas: &Ioas) -> Result<MockDevice> {
        let cmd = plain_op(ioas.iommufd(), OP_MOCK_DOMAIN, ioas.id(), [0; 7]).map_err(|e| {
            let err = Error::sys("IOMMU_TEST_OP_MOCK_DOMAIN", format!("IOAS {}", ioas.id()), e);
            match e {
                nix::errno::Errno::ENOTTY => err.kind_(ErrorKind::Unsupported).detail(
                    "no iommufd test driver: the kernel lacks CONFIG_IOMMUFD_TEST (or this is the legacy path)",
                ),
                nix::errno::Errno::EINVAL => err.detail(
                    "the test driver refused to make a mock device (seen on Linux 6.12 next to an Intel IOMMU, where the mock device does not pass iommufd's cache-coherency check)",
                ),
                _ => err,
            }
        })?;
        let w = cmd.data[0];
        let (stdev_id, hwpt_id) = (w as u32, (w >> 32) as u32);
        let idev_id = cmd.data[1] as u32;
        Ok(MockDevice {
            iommufd: ioas.iommufd().clone(),
            stdev_id,
            idev_id,
            hwpt_id,
            _pt: None,
            _ioas: ioas.clone(),
            name: format!("mock device {stdev_id}"),
        })
    }

    /// Its device id (the iommufd's `dev_id`).
    pub fn dev_id(&self) -> u32 {
        self.idev_id
    }

    /// What the mock IOMMU reports (`IOMMU_GET_HW_INFO`).
    pub fn hw_info(&self) -> Result<crate::HwInfo> {
        crate::hwpt::hw_info_of(&self.iommufd, self.idev_id, &self.name)
    }

    /// The page table it is attached to now.
    pub fn hwpt_id(&self) -> u32 {
        self.hwpt_id
    }

    /// Moves it to `pt` (`IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE`).
    pub fn replace<P: PageTable>(&mut self, pt: &P) -> Result<()> {
        let data = [u64::from(pt.pt_id()), 0, 0, 0, 0, 0, 0];
        let cmd = plain_op(&self.iommufd, OP_MOCK_DOMAIN_REPLACE, self.stdev_id, data)
            .map_err(|e| Error::sys("IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", self.name.clone(), e))?;
        self.hwpt_id = cmd.data[0] as u32;
        self._pt = pt.pt_hwpt();
        self._ioas = pt.pt_ioas().clone();
        Ok(())
    }

    /// Plays the device writing memory: marks the pages of
    /// `[iova, iova + len)` whose bits are set in `pages` (one bit per
    /// `page_size` bytes) dirty in `hwpt` (`IOMMU_TEST_OP_DIRTY`); returns
    /// how many the driver marked. Tracking must be on.
    pub fn mark_dirty(
        &self,
        hwpt: &Hwpt<DirtyTracking>,
        iova: u64,
        len: u64,
        page_size: u64,
        pages: &[u64],
    ) -> Result<u64> {
        if page_size == 0 || (pages.len() as u64) * 64 < len / page_size {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "IOMMU_TEST_OP_DIRTY",
                self.name.clone(),
            )
            .detail("the page bitmap needs a bit for each page of the range"));
        }
        let mut cmd = sys::IommuTestCmd {
            op: OP_DIRTY,
            id: hwpt.id(),
            ..Default::default()
        };
        // struct { u32 flags; u64 iova, length, page_size, uptr, out_nr_dirty; }
        cmd.data = [0, iova, len, page_size, pages.as_ptr() as u64, 0, 0];
        // SAFETY: `uptr` points at `pages`, which holds a bit for each page
        // of the range (checked), and the driver only reads it.
        unsafe { self.iommufd.ctx().test_cmd(&mut cmd) }
            .map_err(|e| Error::sys("IOMMU_TEST_OP_DIRTY", self.name.clone(), e))?;
        Ok(cmd.data[5])
    }

    /// Checks that entry `index` of `hwpt`'s mock IOTLB holds `value`
    /// (`IOMMU_TEST_OP_MD_CHECK_IOTLB`): what an invalidation changed.
    ///
    /// # Errors
    /// `EINVAL` when it holds something else.
    pub fn check_iotlb<K: crate::hwpt::Kind>(
        &self,
        hwpt: &Hwpt<K>,
        index: u32,
        value: u32,
    ) -> Result<()> {
        let data = [
            u64::from(index) | (u64::from(value) << 32),
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        plain_op(&self.iommufd, OP_MD_CHECK_IOTLB, hwpt.id(), data)
            .map(drop)
            .map_err(|e| {
                Error::sys(
                    "IOMMU_TEST_OP_MD_CHECK_IOTLB",
                    format!("HWPT {} entry {index}", hwpt.id()),
                    e,
                )
            })
    }

    /// Plays the device asking for a page (`IOMMU_TEST_OP_TRIGGER_IOPF`):
    /// a page request for `addr` with PASID `pasid`, group `grpid` and
    /// `perm`, delivered to the fault queue of the HWPT it is attached to.
    pub fn trigger_page_fault(&self, pasid: u32, grpid: u32, perm: u32, addr: u64) -> Result<()> {
        // struct { u32 dev_id, pasid, grpid, perm; u64 addr; }
        let data = [
            u64::from(self.idev_id) | (u64::from(pasid) << 32),
            u64::from(grpid) | (u64::from(perm) << 32),
            addr,
            0,
            0,
            0,
            0,
        ];
        plain_op(&self.iommufd, OP_TRIGGER_IOPF, 0, data)
            .map(drop)
            .map_err(|e| Error::sys("IOMMU_TEST_OP_TRIGGER_IOPF", self.name.clone(), e))
    }

    /// Plays the IOMMU reporting an event for this device to its vIOMMU
    /// (`IOMMU_TEST_OP_TRIGGER_VEVENT`): the vEVENTQ gets an event carrying
    /// the device's virtual id.
    pub fn trigger_vevent(&self) -> Result<()> {
        let data = [u64::from(self.idev_id), 0, 0, 0, 0, 0, 0];
        plain_op(&self.iommufd, OP_TRIGGER_VEVENT, 0, data)
            .map(drop)
            .map_err(|e| Error::sys("IOMMU_TEST_OP_TRIGGER_VEVENT", self.name.clone(), e))
    }
}

impl Drop for MockDevice {
    fn drop(&mut self) {
        self.iommufd.ctx().destroy(self.stdev_id);
    }
}

impl sealed::Sealed for MockDevice {}
impl HwptDevice for MockDevice {
    fn hwpt_dev(&self) -> (&Iommufd, u32, &str) {
        (&self.iommufd, self.idev_id, &self.name)
    }
}
