//! What a bound device says about itself: `VFIO_DEVICE_GET_INFO`.

use super::{Bound, Device};
use crate::error::{Error, Result};
use crate::sys::{self, vfio};

/// Device information (`struct vfio_device_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
///
/// Example: [the `device` module docs](crate::device).
pub struct DeviceInfo {
    /// Raw `VFIO_DEVICE_FLAGS_*`.
    pub flags: u32,
    /// Number of regions.
    pub num_regions: u32,
    /// Number of IRQ indexes.
    pub num_irqs: u32,
}

impl DeviceInfo {
    /// The device supports `VFIO_DEVICE_RESET`.
    ///
    /// Example: [the `device` module docs](crate::device).
    pub fn can_reset(&self) -> bool {
        self.flags & vfio::VFIO_DEVICE_FLAGS_RESET != 0
    }
    /// A PCI device.
    ///
    /// Example: [the `device` module docs](crate::device).
    pub fn is_pci(&self) -> bool {
        self.flags & vfio::VFIO_DEVICE_FLAGS_PCI != 0
    }
}

impl<S: Bound> Device<S> {
    /// `VFIO_DEVICE_GET_INFO`.
    #[doc(alias = "VFIO_DEVICE_GET_INFO")]
    ///
    /// Example: [the `device` module docs](crate::device).
    pub fn info(&self) -> Result<DeviceInfo> {
        let mut arg = vfio::vfio_device_info {
            argsz: sys::argsz::<vfio::vfio_device_info>(),
            ..Default::default()
        };
        sys::ioctl(self.inner.fd(), sys::raw::vfio_device_get_info, &mut arg)
            .map_err(|e| Error::sys("VFIO_DEVICE_GET_INFO", self.inner.name.clone(), e))?;
        Ok(DeviceInfo {
            flags: arg.flags,
            num_regions: arg.num_regions,
            num_irqs: arg.num_irqs,
        })
    }
}
