#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
mod diagnose;
mod sys;
pub mod device;
pub mod dma;
pub mod error;
pub mod ioas;
pub mod iommufd;
pub mod irq;
pub mod region;
pub mod sysfs;

pub use device::{AnyDevice, Attached, BlockDma, Bound, Device, DeviceInfo, State, Unbound};
pub use dma::{DmaBuffer, DmaMemory, RawMemory};
pub use error::{Error, ErrorKind, Result, TransitionError};
pub use ioas::{Access, Ioas, Iova, IovaRange, IovaRanges, Mapping};
pub use iommufd::Iommufd;
pub use irq::{EventFd, IrqInfo};
pub use region::{pci, Mmio, RegionCap, RegionInfo};
