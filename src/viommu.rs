//! Virtual IOMMUs (`IOMMU_VIOMMU_ALLOC`) and their virtual devices
//! (`IOMMU_VDEVICE_ALLOC`): what an accelerated vIOMMU gives its guest.
//!
//! A [`Viommu`] lives on a [`NestParent`] HWPT and holds it. A [`Vdevice`]
//! is one device as the guest's vIOMMU knows it (its virtual id, such as a
//! vSID or a vRID): it borrows its vIOMMU and its device, so it cannot
//! outlive either (`ui-tests/compile-fail/vdevice_outlives_viommu`).
//!
//! ```no_run
//! use iommufd::hwpt::{Hwpt, NestParent};
//! use iommufd::viommu::{Viommu, ViommuKind};
//! # fn f(dev: &iommufd::Device<iommufd::BlockDma>, ioas: &iommufd::Ioas) -> iommufd::Result<()> {
//! let s2 = Hwpt::<NestParent>::alloc(dev, ioas)?;
//! let viommu = Viommu::alloc(dev, &s2, ViommuKind::ArmSmmuV3)?;
//! let vdev = viommu.alloc_vdevice(dev, 0x8)?; // the guest's stream id for it
//! # drop(vdev); Ok(()) }
//! ```

use crate::error::{Error, ErrorKind, Result};
use crate::hwpt::{Hwpt, HwptDevice, NestParent};
use nix::errno::Errno;
use std::fmt;
use std::marker::PhantomData;

/// A vIOMMU type (`IOMMU_VIOMMU_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ViommuKind {
    /// ARM SMMUv3.
    ArmSmmuV3,
    /// The iommufd test driver's.
    #[cfg(feature = "iommufd-test-driver")]
    Selftest,
}

impl ViommuKind {
    fn number(self) -> u32 {
        match self {
            ViommuKind::ArmSmmuV3 => 1,
            #[cfg(feature = "iommufd-test-driver")]
            ViommuKind::Selftest => 0xdead_beef,
        }
    }
}

/// A virtual IOMMU on a nest parent HWPT, which it holds. Destroyed when
/// dropped; its [`Vdevice`]s borrow it.
pub struct Viommu {
    parent: Hwpt<NestParent>,
    id: u32,
}

impl fmt::Debug for Viommu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Viommu")
            .field("id", &self.id)
            .field("parent", &self.parent.id())
            .finish()
    }
}

#[cold]
fn alloc_error(op: &'static str, object: String, e: Errno) -> Error {
    let err = Error::sys(op, object, e);
    match e {
        Errno::EOPNOTSUPP => err
            .kind_(ErrorKind::Unsupported)
            .detail("the IOMMU behind the device has no vIOMMU of this type"),
        Errno::ENOTTY => err
            .kind_(ErrorKind::Unsupported)
            .detail("no vIOMMU objects here: the legacy container path, or a kernel before 6.13"),
        _ => err,
    }
}

impl Viommu {
    /// Allocates a vIOMMU of `kind` on `parent` for the IOMMU behind `dev`.
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] when the IOMMU has no such vIOMMU, on the
    /// legacy path, and before 6.13.
    #[doc(alias = "IOMMU_VIOMMU_ALLOC")]
    pub fn alloc(
        dev: &impl HwptDevice,
        parent: &Hwpt<NestParent>,
        kind: ViommuKind,
    ) -> Result<Viommu> {
        let (fd, dev_id, name) = dev.hwpt_dev();
        match fd.ctx().viommu_alloc(kind.number(), dev_id, parent.id()) {
            Ok(id) => Ok(Viommu {
                parent: parent.clone(),
                id,
            }),
            Err(e) => Err(alloc_error(
                "IOMMU_VIOMMU_ALLOC",
                format!("{name} on HWPT {}", parent.id()),
                e,
            )),
        }
    }

    /// Its id in the iommufd.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The nest parent it lives on.
    pub fn parent(&self) -> &Hwpt<NestParent> {
        &self.parent
    }

    /// Tells the vIOMMU that `dev` is, to the guest, device `virt_id`
    /// (`IOMMU_VDEVICE_ALLOC`). The vDEVICE borrows both.
    ///
    /// # Errors
    /// From the kernel: `EEXIST` when the virtual id or the device is taken.
    #[doc(alias = "IOMMU_VDEVICE_ALLOC")]
    pub fn alloc_vdevice<'v, D: HwptDevice>(
        &'v self,
        dev: &'v D,
        virt_id: u64,
    ) -> Result<Vdevice<'v>> {
        let (fd, dev_id, name) = dev.hwpt_dev();
        match fd.ctx().vdevice_alloc(self.id, dev_id, virt_id) {
            Ok(id) => Ok(Vdevice {
                viommu: self,
                id,
                virt_id,
                _dev: PhantomData,
            }),
            Err(e) => Err(alloc_error(
                "IOMMU_VDEVICE_ALLOC",
                format!("{name} as {virt_id:#x} on vIOMMU {}", self.id),
                e,
            )),
        }
    }
}

impl Drop for Viommu {
    fn drop(&mut self) {
        // Its vDEVICEs borrow it, so none is left.
        self.parent.ioas().iommufd().ctx().destroy(self.id);
    }
}

/// A device as a vIOMMU's guest knows it; borrows the vIOMMU and the device.
pub struct Vdevice<'v> {
    viommu: &'v Viommu,
    id: u32,
    virt_id: u64,
    _dev: PhantomData<&'v ()>,
}

impl fmt::Debug for Vdevice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vdevice")
            .field("id", &self.id)
            .field("virt_id", &format_args!("{:#x}", self.virt_id))
            .field("viommu", &self.viommu.id)
            .finish()
    }
}

impl Vdevice<'_> {
    /// Its id in the iommufd.
    pub fn id(&self) -> u32 {
        self.id
    }
    /// The id the guest knows the device by.
    pub fn virt_id(&self) -> u64 {
        self.virt_id
    }
}

impl Drop for Vdevice<'_> {
    fn drop(&mut self) {
        self.viommu.parent.ioas().iommufd().ctx().destroy(self.id);
    }
}
