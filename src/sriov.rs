//! SR-IOV VF tokens: the PF's owner sets a token, and a VF of that PF binds
//! only with it.
//!
//! When a PF is on vfio-pci, its user controls its VFs (it can reset them,
//! and often see their traffic), so the kernel lets a VF be used only by
//! someone who knows the VF token the PF's user chose: a shared secret that
//! stands for the trust between the two.
//!
//! ```no_run
//! # fn f(pf: &iommufd::Device<iommufd::BlockDma>, fd: &iommufd::Iommufd) -> Result<(), Box<dyn std::error::Error>> {
//! let token = *b"\x6a\x1c\x52\x07\x83\x4e\x4b\x1d\x9f\x30\x0b\x55\x6e\x28\xd1\x44";
//! pf.set_vf_token(&token)?; // as the PF's owner
//! // (echo 2 > /sys/bus/pci/devices/<PF>/sriov_numvfs makes two VFs)
//! let vf = iommufd::Device::open("0000:06:00.1")?
//!     .bind_with_vf_token(fd, &token)
//!     .map_err(iommufd::Error::from)?;
//! # Ok(()) }
//! ```
//!
//! Linux 7.3 checks the token at `VFIO_DEVICE_BIND_IOMMUFD`. Linux 6.12's
//! cdev does not check it at all (a VF binds without one); there the crate
//! refuses to bind a VF of a PF on vfio-pci without a token, naming the
//! kernel, unless the caller says it accepts the risk
//! ([`Device::bind_ignoring_vf_token`]).

use crate::device::{Bound, Device};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, vfio};

impl<S: Bound> Device<S> {
    /// Sets the VF token of this PF (`VFIO_DEVICE_FEATURE_PCI_VF_TOKEN`):
    /// binding one of its VFs then needs it
    /// ([`Device::bind_with_vf_token`]). See [`sriov`](crate::sriov).
    ///
    /// # Errors
    /// From the kernel: `EINVAL` when the device is not an SR-IOV PF, or
    /// SR-IOV is not enabled for vfio-pci (`vfio_pci.enable_sriov=1`).
    #[doc(alias = "VFIO_DEVICE_FEATURE_PCI_VF_TOKEN")]
    pub fn set_vf_token(&self, token: &[u8; 16]) -> Result<()> {
        let mut words = [
            u64::from_ne_bytes(token[..8].try_into().expect("8 bytes")),
            u64::from_ne_bytes(token[8..].try_into().expect("8 bytes")),
        ];
        sys::device_feature(
            self.device_fd(),
            vfio::VFIO_DEVICE_FEATURE_SET | vfio::VFIO_DEVICE_FEATURE_PCI_VF_TOKEN,
            &mut words,
        )
        .map(drop)
        .map_err(|e| {
            let err = Error::sys(
                "VFIO_DEVICE_FEATURE_PCI_VF_TOKEN",
                self.name().to_string(),
                e,
            );
            let dev = std::path::Path::new("/sys/bus/pci/devices").join(self.name());
            match e {
                // vfio-pci keeps a VF token only for a PF.
                nix::errno::Errno::ENOTTY if !dev.join("sriov_totalvfs").exists() => {
                    let what = if dev.join("physfn").exists() {
                        "the device is an SR-IOV VF: a VF binds with its PF's token (Device::bind_with_vf_token); only the PF's user sets one"
                    } else {
                        "the device is not an SR-IOV PF: only a PF's user sets a VF token"
                    };
                    err.kind_(ErrorKind::InvalidInput).detail(what)
                }
                nix::errno::Errno::EINVAL => err.detail(
                    "the device is not an SR-IOV PF, or vfio-pci runs without enable_sriov=1",
                ),
                _ => err,
            }
        })
    }
}
