//! Mediated devices (mdev): devices a parent driver carves out of itself
//! (a vGPU, an emulated serial port), with no IOMMU group of their own.
//!
//! The seed's Stage-1 gives them device nodes like PCI devices in singleton
//! groups, and its step 5 puts the DMA-ownership check on the parent device:
//! an mdev's DMA goes through its parent (an iommufd access, no IOMMU page
//! table of its own), so there is no group whose viability could fail, and
//! errors about an mdev name its parent. An mdev is opened, bound and
//! attached through the same [`Device`] chain as a PCI device.
//!
//! ```no_run
//! use iommufd::{mdev, Iommufd};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! for parent in mdev::parents()? {
//!     for t in parent.types()? {
//!         println!("{} {}: {} left", parent.name(), t.id(), t.available_instances()?);
//!     }
//! }
//! let t = &mdev::parents()?[0].types()?[0];
//! let instance = t.create()?;                // stays until removed
//! let fd = Iommufd::open()?;
//! let dev = instance.open()?.bind(&fd)?;     // Device<BlockDma>
//! # drop(dev);
//! instance.remove()?;                        // explicit: it outlives this process otherwise
//! # Ok(())
//! # }
//! ```

use crate::device::{Device, Unbound};
use crate::error::{Error, ErrorKind, Result, TransitionError};
use std::fmt;
use std::path::{Path, PathBuf};

const MDEV_BUS: &str = "/sys/class/mdev_bus";
const MDEV_DEVICES: &str = "/sys/bus/mdev/devices";

/// A device whose driver offers mediated devices (`/sys/class/mdev_bus/<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
///
/// Example: [the `mdev` module docs](crate::mdev).
pub struct MdevParent {
    name: String,
    dir: PathBuf,
}

/// One kind of mdev a parent offers (`mdev_supported_types/<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
///
/// Example: [the `mdev` module docs](crate::mdev).
pub struct MdevType {
    parent: String,
    id: String,
    dir: PathBuf,
}

/// A mediated device instance, by UUID.
///
/// Made by [`MdevType::create`], it stays after this value is dropped, as
/// a VMM's devices must outlive a restart: [`remove`](Self::remove) it
/// explicitly. [`remove_on_drop`](Self::remove_on_drop) makes it go with
/// the value, which is what tests want.
pub struct Mdev {
    uuid: String,
    parent: String,
    remove_on_drop: bool,
}

fn read_attr(p: &Path) -> Result<String> {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                "read mdev attribute",
                p.display().to_string(),
            )
            .detail(e.to_string())
        })
}

fn no_parent() -> Error {
    Error::new(ErrorKind::Unsupported, "list mdev parents", MDEV_BUS)
        .detail("no device offers mediated devices on this host")
        .hint("load a parent driver (the mtty sample, i915 GVT-g, a vendor vGPU driver) on a kernel with CONFIG_VFIO_MDEV")
}

/// Every mdev parent on the host; empty when there is none (or no mdev
/// support in the kernel).
///
/// Example: [the `mdev` module docs](crate::mdev).
pub fn parents() -> Result<Vec<MdevParent>> {
    let rd = match std::fs::read_dir(MDEV_BUS) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(
                Error::new(ErrorKind::InvalidInput, "list mdev parents", MDEV_BUS)
                    .detail(e.to_string()),
            )
        }
    };
    Ok(named_entries(rd)
        .map(|(name, dir)| MdevParent { name, dir })
        .collect())
}

/// The entries of a sysfs listing with their names, sorted by name.
fn named_entries(rd: std::fs::ReadDir) -> impl Iterator<Item = (String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = rd
        .flatten()
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect();
    v.sort();
    v.into_iter()
}

impl MdevParent {
    /// The parent's name (a PCI address, or a virtual device's name).
    ///
    /// Example: [the `mdev` module docs](crate::mdev).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kinds of mdev it offers.
    ///
    /// Example: [the `mdev` module docs](crate::mdev).
    pub fn types(&self) -> Result<Vec<MdevType>> {
        let dir = self.dir.join("mdev_supported_types");
        let rd = std::fs::read_dir(&dir).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                "list mdev types",
                self.name.clone(),
            )
            .detail(format!("{}: {e}", dir.display()))
        })?;
        Ok(named_entries(rd)
            .map(|(id, dir)| MdevType {
                parent: self.name.clone(),
                id,
                dir,
            })
            .collect())
    }
}

impl MdevType {
    /// The type's id (`mtty-1`, `i915-GVTg_V5_4`).
    ///
    /// Example: [the `mdev` module docs](crate::mdev).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The parent offering it.
    ///
    /// Example: [the `mdev` module docs](crate::mdev).
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// Its human-readable name, when the driver gives one.
    ///
    /// Example: [the `mdev` module docs](crate::mdev).
    pub fn name(&self) -> Option<String> {
        read_attr(&self.dir.join("name")).ok()
    }

    /// How many more instances can be created.
    ///
    /// Example: [the `mdev` module docs](crate::mdev).
    pub fn available_instances(&self) -> Result<u32> {
        let p = self.dir.join("available_instances");
        let s = read_attr(&p)?;
        s.parse().map_err(|_| {
            Error::new(
                ErrorKind::Kernel,
                "read mdev attribute",
                p.display().to_string(),
            )
            .detail(format!("not a number: {s:?}"))
        })
    }

    /// The VFIO API its instances implement (`vfio-pci`, ...).
    ///
    /// Example: [the `mdev` module docs](crate::mdev).
    pub fn device_api(&self) -> Result<String> {
        read_attr(&self.dir.join("device_api"))
    }

    /// Creates an instance with a fresh UUID (it stays until removed: see
    /// [`Mdev`]).
    ///
    /// # Errors
    /// [`ErrorKind::Busy`] when the type has no instances left; the errno of
    /// the `create` write otherwise.
    ///
    /// Example: [the `mdev` module docs](crate::mdev).
    pub fn create(&self) -> Result<Mdev> {
        let uuid = new_uuid()?;
        let p = self.dir.join("create");
        if let Err(e) = std::fs::write(&p, &uuid) {
            let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0));
            let err = Error::sys(
                "create mdev",
                format!("{} type {}", self.parent, self.id),
                errno,
            );
            let left = self.available_instances().ok();
            return Err(match left {
                Some(0) => err.kind_(ErrorKind::Busy).detail(format!(
                    "parent {} has no {} instances left",
                    self.parent, self.id
                )).hint("remove an instance (Mdev::remove, or echo 1 > /sys/bus/mdev/devices/<uuid>/remove)"),
                _ => err,
            });
        }
        Ok(Mdev {
            uuid,
            parent: self.parent.clone(),
            remove_on_drop: false,
        })
    }
}

/// A random (version 4) UUID, from the kernel's random pool.
fn new_uuid() -> Result<String> {
    let mut b = [0u8; 16];
    let f = std::fs::File::open("/dev/urandom").and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut b)
    });
    f.map_err(|e| {
        Error::new(ErrorKind::Kernel, "create mdev", "/dev/urandom").detail(e.to_string())
    })?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

impl Mdev {
    /// An instance that exists already (made by an operator, or by another
    /// process), by UUID; not removed on drop.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a malformed UUID or one no mdev has.
    ///
    /// Example: [the `mdev` module docs](crate::mdev).
    pub fn existing(uuid: &str) -> Result<Mdev> {
        let dir = device_dir(uuid)?;
        let parent = std::fs::canonicalize(&dir)
            .ok()
            .and_then(|p| Some(p.parent()?.file_name()?.to_str()?.to_string()))
            .unwrap_or_default();
        Ok(Mdev {
            uuid: uuid.to_string(),
            parent,
            remove_on_drop: false,
        })
    }

    /// The instance's UUID.
    ///
    /// Example: [the `mdev` module docs](crate::mdev).
    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// Its parent device's name.
    ///
    /// Example: [the `mdev` module docs](crate::mdev).
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// Removes the instance when this value is dropped (for tests; a VMM
    /// calls [`remove`](Self::remove) when it means to).
    pub fn remove_on_drop(mut self) -> Self {
        self.remove_on_drop = true;
        self
    }

    /// Opens the instance's VFIO cdev (see [`Device::open_mdev`]).
    ///
    /// Example: [the `mdev` module docs](crate::mdev).
    pub fn open(&self) -> Result<Device<Unbound>> {
        Device::open_mdev(&self.uuid)
    }

    /// Removes the instance.
    ///
    /// While its device is open, the kernel does not fail the removal: it
    /// asks the device's user to let go (the REQ interrupt) and waits until
    /// every fd of the device is closed. A [`Device`] of this process that
    /// has it open would make this thread wait for itself, so that is
    /// refused before the write. (A device open in another process still
    /// makes the call wait for that process to close it.)
    ///
    /// # Errors
    /// The instance is handed back: [`ErrorKind::Busy`] while a `Device`
    /// of this process has it open (close it first); the errno of the
    /// `remove` write.
    ///
    /// Example: [the `mdev` module docs](crate::mdev).
    pub fn remove(mut self) -> std::result::Result<(), TransitionError<Mdev>> {
        if let Err(e) = self.removable() {
            return Err(TransitionError::new(self, e));
        }
        match self.remove_now() {
            Ok(()) => {
                self.remove_on_drop = false;
                Ok(())
            }
            Err(e) => Err(TransitionError::new(self, e)),
        }
    }

    /// Refuses a removal that would wait for a device of this process.
    fn removable(&self) -> Result<()> {
        if !crate::owner::OpenMdev::is_open(&self.uuid) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Busy,
            "remove mdev",
            format!("{} (parent {})", self.uuid, self.parent),
        )
        .detail("a Device of this process has the instance open; the kernel's remove waits until every fd of the device is closed, so this thread would wait for itself")
        .hint("close the device (Device::close, or drop it) before removing its instance"))
    }

    fn remove_now(&self) -> Result<()> {
        let p = Path::new(MDEV_DEVICES).join(&self.uuid).join("remove");
        std::fs::write(&p, "1").map_err(|e| {
            let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0));
            Error::sys(
                "remove mdev",
                format!("{} (parent {})", self.uuid, self.parent),
                errno,
            )
        })
    }
}

impl Drop for Mdev {
    /// With [`remove_on_drop`](Mdev::remove_on_drop), removes the instance,
    /// unless a device of this process has it open (the removal would wait
    /// for it forever): then the instance stays, as if never marked.
    fn drop(&mut self) {
        if self.remove_on_drop && self.removable().is_ok() {
            let _ = self.remove_now();
        }
    }
}

impl fmt::Debug for Mdev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mdev")
            .field("uuid", &self.uuid)
            .field("parent", &self.parent)
            .finish()
    }
}

/// `/sys/bus/mdev/devices/<uuid>`, or why there is none.
fn device_dir(uuid: &str) -> Result<PathBuf> {
    if !crate::sysfs::is_uuid(uuid) {
        return Err(
            Error::new(ErrorKind::InvalidInput, "open mdev", format!("{uuid:?}"))
                .detail("expected a UUID such as 83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"),
        );
    }
    let dir = Path::new(MDEV_DEVICES).join(uuid);
    if dir.exists() {
        return Ok(dir);
    }
    if parents()?.is_empty() {
        return Err(no_parent().with_object(uuid.to_string()));
    }
    Err(
        Error::new(ErrorKind::InvalidInput, "open mdev", uuid.to_string())
            .detail(format!("{} does not exist", dir.display()))
            .hint("create one with MdevType::create (iommufd::mdev::parents lists the types)"),
    )
}

impl Device<Unbound> {
    /// Opens the VFIO cdev of the mediated device `uuid` (or its sysfs
    /// path, `/sys/bus/mdev/devices/<uuid>`).
    ///
    /// An mdev has no IOMMU group of its own to check: its DMA goes through
    /// its parent, and errors name the parent.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a malformed UUID or no such mdev;
    /// [`ErrorKind::Unsupported`] when the host has no mdev parent at all;
    /// [`ErrorKind::NoDeviceCdev`] when the kernel has no VFIO cdev.
    ///
    /// Example: [the `mdev` module docs](crate::mdev).
    pub fn open_mdev(uuid_or_path: &str) -> Result<Self> {
        let uuid = Path::new(uuid_or_path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(uuid_or_path);
        let dir = device_dir(uuid)?;
        let vfio = dir.join("vfio-dev");
        let name = std::fs::read_dir(&vfio)
            .ok()
            .and_then(|mut rd| rd.find_map(|e| e.ok()?.file_name().into_string().ok()));
        let Some(name) = name else {
            let parent = Mdev::existing(uuid)
                .map(|m| m.parent.clone())
                .unwrap_or_default();
            return Err(Error::new(
                ErrorKind::NoDeviceCdev,
                "open mdev",
                format!("{uuid} (parent {parent})"),
            )
            .detail(format!("{} is missing", vfio.display()))
            .hint("the kernel needs CONFIG_VFIO_DEVICE_CDEV (Linux >= 6.6), and the mdev's driver must be vfio_mdev"));
        };
        Device::open_cdev(Path::new("/dev/vfio/devices").join(name))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuids_are_checked_and_made_v4() {
        assert!(crate::sysfs::is_uuid(
            "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
        ));
        for bad in [
            "",
            "83b8f4f2509f382f3c1ee6bfe0fa1001",
            "../../../../etc/passwd",
            "83b8f4f2-509f-382f-3c1e-e6bfe0fa100g",
        ] {
            assert!(!crate::sysfs::is_uuid(bad), "{bad}");
        }
        let u = super::new_uuid().unwrap();
        assert!(crate::sysfs::is_uuid(&u), "{u}");
        assert_eq!(&u[14..15], "4", "version 4: {u}");
        assert_ne!(super::new_uuid().unwrap(), u);
    }
}
