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
//! let tracking = hwpt.start_dirty_tracking()?;
//! // ... map memory at 0x100_0000, then:
//! dev.mark_dirty(&hwpt, 0x100_0000, 0x4000, 4096, &[0b101])?; // pages 0 and 2
//! let dirty = tracking.read_dirty(0x100_0000, 0x4000, 4096, false)?;
//! # let _ = dirty; Ok(()) }
//! ```

use crate::error::{Error, ErrorKind, Result};
use crate::hwpt::sealed;
use crate::hwpt::{Alloc, Hwpt, HwptDevice, Kind, PageTable};
use crate::ioas::Ioas;
use crate::iommufd::Iommufd;
use crate::pasid::{Pasid, PasidHwpt, PasidOp};
use crate::pt::{HeldPt, PasidTable};
use crate::sys;

const OP_MOCK_DOMAIN: u32 = 2;
const OP_MOCK_DOMAIN_REPLACE: u32 = 10;
const OP_MOCK_DOMAIN_FLAGS: u32 = 12;
const OP_DIRTY: u32 = 13;
const OP_MD_CHECK_IOTLB: u32 = 14;
const OP_TRIGGER_IOPF: u32 = 15;
const OP_DEV_CHECK_CACHE: u32 = 16;
const OP_TRIGGER_VEVENT: u32 = 17;
const OP_PASID_ATTACH: u32 = 18;
const OP_PASID_REPLACE: u32 = 19;
const OP_PASID_DETACH: u32 = 20;
const OP_PASID_CHECK_HWPT: u32 = 21;
/// `IOMMU_HWPT_DATA_SELFTEST`, `IOMMU_TEST_IOTLB_DEFAULT`, `MOCK_IOMMUPT_HUGE`.
const HWPT_DATA_SELFTEST: u32 = 0xdead;
const IOTLB_DEFAULT: u32 = 0xbadbeef;
const MOCK_IOMMUPT_HUGE: u32 = 1;
/// `MOCK_FLAGS_DEVICE_PASID`: the mock device has 20 PASID bits.
const MOCK_FLAGS_DEVICE_PASID: u64 = 1 << 2;
/// `MOCK_FLAGS_DEVICE_NO_DIRTY`: the mock device's IOMMU has no dirty
/// tracking.
const MOCK_FLAGS_DEVICE_NO_DIRTY: u64 = 1 << 0;

/// Issues a test-driver op whose data holds no user pointer (every op here
/// but `IOMMU_TEST_OP_DIRTY`); the command as the driver filled it.
fn plain_op(
    fd: &Iommufd,
    op: u32,
    id: u32,
    data: &[u64],
) -> std::result::Result<sys::IommuTestCmd, nix::errno::Errno> {
    let mut cmd = sys::IommuTestCmd {
        op,
        id,
        ..Default::default()
    };
    // The op's struct, its first words; the rest of the union stays zero.
    cmd.data[..data.len()].copy_from_slice(data);
    // SAFETY: the callers pass only ops whose data carries no pointer
    // (MOCK_DOMAIN, MOCK_DOMAIN_FLAGS, MOCK_DOMAIN_REPLACE, MD_CHECK_IOTLB,
    // DEV_CHECK_CACHE, TRIGGER_IOPF, TRIGGER_VEVENT, PASID_*): the driver
    // touches nothing but `cmd`.
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
    _pt: Option<HeldPt>,
    /// Its PASIDs and their HWPTs, kept likewise.
    pasids: PasidTable,
    _ioas: Ioas,
    name: String,
}

/// What a mock device's IOMMU offers ([`MockDevice::with`]). The default
/// is [`MockDevice::new`]'s: no PASID, dirty tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MockCaps {
    /// PASIDs (20 bits): `MOCK_FLAGS_DEVICE_PASID`.
    pub pasid: bool,
    /// Dirty tracking; `false` is `MOCK_FLAGS_DEVICE_NO_DIRTY`.
    pub dirty_tracking: bool,
}

impl Default for MockCaps {
    fn default() -> Self {
        MockCaps {
            pasid: false,
            dirty_tracking: true,
        }
    }
}

impl MockDevice {
    /// A mock device attached to `ioas` (`IOMMU_TEST_OP_MOCK_DOMAIN`).
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] (`ENOTTY`) on a kernel without
    /// `CONFIG_IOMMUFD_TEST`, or on the legacy path.
    pub fn new(ioas: &Ioas) -> Result<MockDevice> {
        Self::with_op(ioas, OP_MOCK_DOMAIN, "IOMMU_TEST_OP_MOCK_DOMAIN", 0)
    }

    /// A mock device with the PASID capability (20 bits), attached to
    /// `ioas` (`IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS` with
    /// `MOCK_FLAGS_DEVICE_PASID`).
    ///
    /// # Errors
    /// As [`MockDevice::new`].
    pub fn new_with_pasid(ioas: &Ioas) -> Result<MockDevice> {
        Self::with_op(
            ioas,
            OP_MOCK_DOMAIN_FLAGS,
            "IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS",
            MOCK_FLAGS_DEVICE_PASID << 32,
        )
    }

    /// A mock device whose IOMMU has no dirty tracking, attached to `ioas`
    /// (`IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS` with `MOCK_FLAGS_DEVICE_NO_DIRTY`):
    /// what a page table that tracks dirty pages must keep out.
    ///
    /// # Errors
    /// As [`MockDevice::new`].
    pub fn new_without_dirty_tracking(ioas: &Ioas) -> Result<MockDevice> {
        Self::with_op(
            ioas,
            OP_MOCK_DOMAIN_FLAGS,
            "IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS",
            MOCK_FLAGS_DEVICE_NO_DIRTY << 32,
        )
    }

    /// A mock device whose IOMMU offers what `caps` says, attached to
    /// `ioas` (`IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS`): the constructors above
    /// are its common cases, this one their combinations (a PASID-capable
    /// device without dirty tracking, say).
    ///
    /// ```no_run
    /// use iommufd::mock::{MockCaps, MockDevice};
    /// # fn main() -> iommufd::Result<()> {
    /// let ioas = iommufd::Iommufd::open_iommufd()?.alloc_ioas()?;
    /// let dev = MockDevice::with(&ioas, MockCaps { pasid: true, dirty_tracking: false })?;
    /// assert!(!dev.hw_info()?.dirty_tracking());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`MockDevice::new`].
    pub fn with(ioas: &Ioas, caps: MockCaps) -> Result<MockDevice> {
        let mut flags = 0;
        if caps.pasid {
            flags |= MOCK_FLAGS_DEVICE_PASID;
        }
        if !caps.dirty_tracking {
            flags |= MOCK_FLAGS_DEVICE_NO_DIRTY;
        }
        Self::with_op(
            ioas,
            OP_MOCK_DOMAIN_FLAGS,
            "IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS",
            flags << 32,
        )
    }

    fn with_op(ioas: &Ioas, op: u32, op_name: &'static str, flags: u64) -> Result<MockDevice> {
        // struct { u32 out_stdev_id, out_hwpt_id, out_idev_id, dev_flags; }
        let data = [0, flags];
        let cmd = plain_op(ioas.iommufd(), op, ioas.id(), &data).map_err(|e| {
            let err = Error::sys(op_name, format!("IOAS {}", ioas.id()), e);
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
            pasids: PasidTable::default(),
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

    /// As [`Device::hw_info_as`](crate::Device::hw_info_as).
    ///
    /// # Errors
    /// As [`Device::hw_info_as`](crate::Device::hw_info_as).
    pub fn hw_info_as(&self, t: crate::hwpt::HwInfoType) -> Result<crate::HwInfo> {
        crate::hwpt::hw_info_typed(&self.iommufd, self.idev_id, &self.name, Some(t))
    }

    /// The page table it is attached to now.
    pub fn hwpt_id(&self) -> u32 {
        self.hwpt_id
    }

    /// Moves it to `pt` (`IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE`).
    ///
    /// # Errors
    /// A page table of another iommufd is refused before the kernel (ids
    /// are per iommufd).
    pub fn replace<P: PageTable>(&mut self, pt: &P) -> Result<()> {
        self.iommufd.check_own(
            pt.pt_ioas().iommufd(),
            "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE",
            || self.name.clone(),
            "the page table",
        )?;
        let data = [u64::from(pt.pt_id())];
        let cmd =
            plain_op(&self.iommufd, OP_MOCK_DOMAIN_REPLACE, self.stdev_id, &data).map_err(|e| {
                let err = Error::sys("IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", self.name.clone(), e);
                let err = crate::pt::dirty_error(err, pt, || {
                    self.hw_info().ok().map(|i| i.dirty_tracking())
                });
                crate::pt::rid_error(err, &self.pasids, pt)
            })?;
        self.hwpt_id = cmd.data[0] as u32;
        self._pt = pt.pt_held();
        self._ioas = pt.pt_ioas().clone();
        Ok(())
    }

    /// An HWPT of kind `K` on `ioas` with the test driver's huge page table
    /// (`IOMMU_HWPT_DATA_SELFTEST` with `MOCK_IOMMUPT_HUGE`): 1 MiB entries
    /// and the whole 56-bit IOVA space, where the default mock page table
    /// has only [16 MiB, 2 GiB). For ranges larger than that.
    ///
    /// # Errors
    /// As [`Hwpt::alloc`].
    pub fn alloc_huge<K: Alloc>(&self, ioas: &Ioas) -> Result<Hwpt<K>> {
        // struct iommu_hwpt_selftest { u32 iotlb; u32 pagetable_type; }
        let cfg = u64::from(IOTLB_DEFAULT) | (u64::from(MOCK_IOMMUPT_HUGE) << 32);
        Hwpt::alloc_with(self, ioas, 0, Some((HWPT_DATA_SELFTEST, &[cfg])), None)
    }

    /// Plays the device writing memory: marks the pages of
    /// `[iova, iova + len)` whose bits are set in `pages` (one bit per
    /// `page_size` bytes) dirty in `hwpt` (`IOMMU_TEST_OP_DIRTY`); returns
    /// how many the driver marked. Tracking must be on.
    pub fn mark_dirty(
        &self,
        hwpt: &Hwpt<impl crate::hwpt::Tracks>,
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
        let data = [u64::from(index) | (u64::from(value) << 32)];
        plain_op(&self.iommufd, OP_MD_CHECK_IOTLB, hwpt.id(), &data)
            .map(drop)
            .map_err(|e| {
                Error::sys(
                    "IOMMU_TEST_OP_MD_CHECK_IOTLB",
                    format!("HWPT {} entry {index}", hwpt.id()),
                    e,
                )
            })
    }

    /// Checks that entry `index` of this device's mock cache (the one a
    /// vIOMMU invalidation clears) holds `value`
    /// (`IOMMU_TEST_OP_DEV_CHECK_CACHE`; the driver fills it with
    /// `0xbaddad`).
    ///
    /// # Errors
    /// `EINVAL` when it holds something else.
    pub fn check_dev_cache(&self, index: u32, value: u32) -> Result<()> {
        // struct { u32 id, cache; }
        let data = [u64::from(index) | (u64::from(value) << 32)];
        plain_op(&self.iommufd, OP_DEV_CHECK_CACHE, self.idev_id, &data)
            .map(drop)
            .map_err(|e| {
                Error::sys(
                    "IOMMU_TEST_OP_DEV_CHECK_CACHE",
                    format!("{} cache entry {index}", self.name),
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
        ];
        plain_op(&self.iommufd, OP_TRIGGER_IOPF, 0, &data)
            .map(drop)
            .map_err(|e| Error::sys("IOMMU_TEST_OP_TRIGGER_IOPF", self.name.clone(), e))
    }

    /// Plays the IOMMU reporting an event for this device to its vIOMMU
    /// (`IOMMU_TEST_OP_TRIGGER_VEVENT`): the vEVENTQ gets an event carrying
    /// the device's virtual id.
    pub fn trigger_vevent(&self) -> Result<()> {
        let data = [u64::from(self.idev_id)];
        plain_op(&self.iommufd, OP_TRIGGER_VEVENT, 0, &data)
            .map(drop)
            .map_err(|e| Error::sys("IOMMU_TEST_OP_TRIGGER_VEVENT", self.name.clone(), e))
    }
}

/// PASIDs, as [`Device`](crate::Device) has them (see [`crate::pasid`]),
/// through the test driver's ops: the mock has the PASID capability that
/// emulated hardware lacks.
impl MockDevice {
    /// Attaches `pasid` to `hwpt` (`IOMMU_TEST_OP_PASID_ATTACH`).
    ///
    /// # Errors
    /// As [`Device::attach_pasid`](crate::Device::attach_pasid).
    pub fn attach_pasid<K: Kind>(&mut self, pasid: Pasid, hwpt: &PasidHwpt<K>) -> Result<()> {
        self.change_pasid(PasidOp::Attach, pasid, hwpt)
    }

    /// Moves the attached `pasid` to `hwpt` (`IOMMU_TEST_OP_PASID_REPLACE`).
    ///
    /// # Errors
    /// As [`Device::replace_pasid`](crate::Device::replace_pasid).
    pub fn replace_pasid<K: Kind>(&mut self, pasid: Pasid, hwpt: &PasidHwpt<K>) -> Result<()> {
        self.change_pasid(PasidOp::Replace, pasid, hwpt)
    }

    fn change_pasid<K: Kind>(
        &mut self,
        op: PasidOp,
        pasid: Pasid,
        hwpt: &PasidHwpt<K>,
    ) -> Result<()> {
        let code = match op {
            PasidOp::Replace => OP_PASID_REPLACE,
            _ => OP_PASID_ATTACH,
        };
        let rid = self._pt.as_ref().is_some_and(HeldPt::pasid_capable);
        let (fd, stdev) = (&self.iommufd, self.stdev_id);
        self.pasids.change(
            (fd, self.idev_id, &self.name),
            (op, op_name_of(op)),
            (pasid, hwpt),
            rid,
            // struct { u32 pasid, pt_id; }
            |p, h| {
                let data = [u64::from(p) | (u64::from(h) << 32)];
                plain_op(fd, code, stdev, &data).map(drop)
            },
            // The IOMMU core's answer (`IOMMU_TEST_OP_PASID_CHECK_HWPT`).
            |p, old, new| {
                let on = |h: u32| {
                    let data = [u64::from(p) | (u64::from(h) << 32)];
                    match plain_op(fd, OP_PASID_CHECK_HWPT, stdev, &data) {
                        Ok(_) => Some(true),
                        Err(nix::errno::Errno::EINVAL) => Some(false),
                        Err(_) => None,
                    }
                };
                if on(new)? {
                    Some(Some(new))
                } else if old.is_some_and(|o| on(o) == Some(true)) {
                    Some(old)
                } else if on(0)? {
                    Some(None)
                } else {
                    None
                }
            },
        )
    }

    /// Detaches `pasid` (`IOMMU_TEST_OP_PASID_DETACH`).
    ///
    /// # Errors
    /// A PASID that is not attached.
    pub fn detach_pasid(&mut self, pasid: Pasid) -> Result<()> {
        self.pasids.check(&self.name, PasidOp::Detach, pasid)?;
        let data = [u64::from(pasid.get())];
        plain_op(&self.iommufd, OP_PASID_DETACH, self.stdev_id, &data)
            .map_err(|e| Error::sys("IOMMU_TEST_OP_PASID_DETACH", self.name.clone(), e))?;
        self.pasids.remove(pasid.get());
        Ok(())
    }

    /// Asks the driver what `pasid` is attached to, from the IOMMU core's
    /// side (`IOMMU_TEST_OP_PASID_CHECK_HWPT`): true if it is `hwpt`
    /// (`None`: attached to nothing).
    pub fn pasid_is_on(&self, pasid: Pasid, hwpt: Option<u32>) -> Result<bool> {
        let data = [u64::from(pasid.get()) | (u64::from(hwpt.unwrap_or(0)) << 32)];
        match plain_op(&self.iommufd, OP_PASID_CHECK_HWPT, self.stdev_id, &data) {
            Ok(_) => Ok(true),
            Err(nix::errno::Errno::EINVAL) => Ok(false),
            Err(e) => Err(Error::sys(
                "IOMMU_TEST_OP_PASID_CHECK_HWPT",
                format!("{} {pasid}", self.name),
                e,
            )),
        }
    }

    /// The HWPT id `pasid` is attached to, as this value recorded it.
    pub fn pasid_hwpt(&self, pasid: Pasid) -> Option<u32> {
        self.pasids.get(pasid.get())
    }
}

fn op_name_of(op: PasidOp) -> &'static str {
    match op {
        PasidOp::Replace => "IOMMU_TEST_OP_PASID_REPLACE",
        PasidOp::Detach => "IOMMU_TEST_OP_PASID_DETACH",
        PasidOp::Attach => "IOMMU_TEST_OP_PASID_ATTACH",
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
