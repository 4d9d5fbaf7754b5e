//! Device assignment over Linux iommufd and the VFIO device cdev, with the
//! kernel's security contexts as types.
//!
//! # Security contexts
//!
//! A PCI device handed to an untrusted guest must never be able to DMA
//! anywhere but where its owner says. The kernel enforces this as a chain of
//! contexts, and this crate makes each one a type state of [`Device`]:
//!
//! | state | kernel context | what the fd can do |
//! |---|---|---|
//! | [`Device<Unbound>`] | cdev opened, not bound | nothing: the kernel refuses ioctl and mmap (`EINVAL`) |
//! | [`Device<BlockDma>`] | bound to an [`Iommufd`] (`VFIO_DEVICE_BIND_IOMMUFD`) | regions, MMIO, config, IRQs; the group sits in a blocking domain, so DMA goes nowhere |
//! | [`Device<Attached<Ioas>>`] | attached to an [`Ioas`] (`VFIO_DEVICE_ATTACH_IOMMUFD_PT`) | the same, and DMA reaches exactly the IOAS's mappings |
//! | `Device<Attached<Hwpt<K>>>`, `Device<Attached<PasidHwpt<K>>>` | attached to a hardware page table ([`Hwpt`], [`PasidHwpt`]) built from an IOAS | the same, through a page table whose kind is in its type (dirty tracking, nest parent, nested, PASID-capable); PASIDs attach beside the RID ([`pasid`]) |
//!
//! Every transition takes any [`PageTable`] (an IOAS or an HWPT), so one
//! `attach`/`replace`/`detach` serves all of them (see [`hwpt`] for an
//! example that moves a device between an HWPT and an IOAS).
//! Transitions consume the device and issue the real ioctl. On failure they
//! hand the device back, unchanged, in a [`TransitionError`]:
//!
//! ```no_run
//! use iommufd::{Access, Device, DmaBuffer, Iommufd, Iova};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let iommufd = Iommufd::open()?;
//! let ioas = iommufd.alloc_ioas()?;
//!
//! let dev = Device::open("0000:00:02.0")?; // Device<Unbound>: the fd is inert
//! let mut dev = match dev.bind(&iommufd) {  // Device<BlockDma>: DMA blocked
//!     Ok(dev) => dev,
//!     Err(e) => {
//!         eprintln!("{}", e.error()); // says why (group not viable? no IR?) and how to fix it
//!         let _unbound_again = e.into_inner();
//!         return Ok(());
//!     }
//! };
//! dev.map_bar(0)?;                              // BAR mappings live in the device
//! let dev = dev.attach(&ioas)?;                 // Device<Attached<Ioas>>
//! let ranges = ioas.iova_ranges()?;             // re-query: attach narrows them
//!
//! // The mapping owns the buffer: it cannot be freed while the device can reach it.
//! let buf = ioas.map(DmaBuffer::new(4096)?, Iova::Any, Access::READ_WRITE)?;
//! let id = dev.mmio(0)?.read32(0)?;
//! println!("{ranges}; device id {id:#x}; buffer at IOVA {:#x}", buf.iova());
//!
//! let dev = dev.detach()?;   // back to blocking
//! let _dev = dev.unbind()?;  // BARs unmapped, fd closed: the group returns to the kernel
//! # Ok(())
//! # }
//! ```
//!
//! What the types rule out is proven by the compile-fail suite in `ui-tests/`:
//! MMIO, config space, IRQs and reset exist only on bound states; `attach`
//! only on `Device<BlockDma>`; an [`Mmio`] view borrows its device, so the
//! device cannot be unbound or closed while the view lives; a [`Mapping`]
//! owns the memory it maps.
//!
//! # Soundness of DMA memory
//!
//! While the IOMMU maps a page, the device may write it at any moment, so no
//! safe code may hold a `&` or `&mut` to it, and it must not be freed. The
//! crate makes that a matter of ownership, never of a destructor running:
//!
//! - [`Ioas::map`] takes the memory *by value* ([`DmaMemory`] is implemented
//!   for owners only, never for `&mut T`). The [`Mapping`] owns it and never
//!   lends it out (no `&M`, no `&mut M`); the CPU reaches the bytes only by
//!   volatile copies ([`Mapping::read_bytes`] with `&self`,
//!   [`Mapping::write_bytes`] with `&mut self`), and [`Mapping::unmap`] hands
//!   the memory back only after the kernel unmapped it.
//! - Leaking a mapping (`mem::forget`, an `Rc` cycle) leaks its memory with
//!   it: the pages stay allocated and mapped, and unreachable. A failed unmap
//!   in `drop` leaks the same way instead of freeing. Panics unwind through the
//!   same drops. So there is no safe sequence after which the device maps
//!   freed or reused memory, on either path (the legacy path replays
//!   `MAP_DMA` by address at attach, which is why a leaked *borrow* would have
//!   been fatal).
//! - An IOAS copy ([`Ioas::copy_from`]) holds a share of the source's memory
//!   ([`Shared`]): a source dropped while copies live moves its memory into
//!   the shared slot, and the last share frees it, so the memory lives until
//!   the source and every copy are gone; the source's `unmap` refuses to hand
//!   it back while copies map it,
//!   and copies have no CPU view, so two threads can never write the same
//!   bytes through two mappings.
//! - A mapping unmaps only its own range: [`Ioas::unmap`] refuses any range
//!   that holds a live `Mapping`, and the table of live mappings is locked
//!   across every map and unmap ioctl of the IOAS.
//! - `Mapping<M>` is `Send` and `Sync` exactly when `M: Send`: the memory is
//!   never lent out as `&M`, and the last share may drop `M` on any thread.
//!
//! A VMM's guest RAM held in rust-vmm's `vm-memory` is mapped in safe code
//! at its guest-physical addresses (feature `vm-memory`: `Ioas::map_guest_memory`,
//! module `ioas::guest_ram`, whose docs say why sharing it with a device is
//! sound). Other memory the crate cannot own goes through the `unsafe`
//! [`Ioas::map_user_va`], whose contract is written there.
//!
//! The same goes for groups: a device that shares its IOMMU group with others
//! is never a [`Device`] of its own, whichever constructor opened it
//! ([`Device::open`], [`Device::open_cdev`], [`Device::from_fd`] all ask
//! sysfs); only the `unsafe` [`Device::from_fd_unchecked`] skips the check.
//!
//! # Architecture
//!
//! - `sys/`: the raw layer, private: ioctl numbers and the generated `unsafe
//!   fn`s (`sys/mod.rs`), the iommufd uAPI structs pinned against the kernel
//!   header (`sys/iommu.rs`), the VFIO wrappers (`sys/vfio.rs`).
//! - `backend/`: the seam between the typed API and the kernel's two paths.
//!   `backend/mod.rs` names what a path must do (bind, attach, replace, detach,
//!   map, unmap, copy, ...) as one `match` per operation over three values made
//!   once by the constructors: the context of an [`Iommufd`], the kernel side
//!   of an [`Ioas`], and the link of a [`Device`]. `backend/cdev.rs` is the VFIO
//!   cdev + iommufd path, `backend/legacy.rs` the group + type1 container path.
//!   An operation only one path has is answered `Unsupported` there, once.
//! - The typed API on top: [`device`], [`group`], [`ioas`], [`region`],
//!   [`irq`], [`dma`], which never ask which path they are on.
//!
//! # BAR mappings across IOAS changes
//!
//! A VMM switches IOASes under a live BAR (for example when the guest toggles
//! its vIOMMU). [`Device::map_bar`] therefore stores the mapping *in the
//! device*: it moves with the device through `attach`, `replace` and `detach`
//! at the same address ([`Mmio::host_address`], for a KVM memory slot), and
//! it is unmapped by `unbind`/`close` before the fd is closed. Views
//! ([`Device::mmio`]) are short borrows taken again after each transition.
//!
//! # MMIO and memory decoding
//!
//! vfio-pci lets the CPU reach a mapped BAR only while the device decodes
//! memory: the memory-space bit of its command register is set and it is
//! not in D3hot. Otherwise it revokes the mapping, and the next access
//! raises `SIGBUS`, which no `Result` can catch. Both are config-space
//! writes, and every config write goes through the device, so
//! [`Device::config_write`] refuses one that would turn decoding off while a
//! BAR is mapped ([`ErrorKind::Busy`], naming the BARs), and
//! [`Device::map_bar`] refuses while a write left it off. To turn decoding
//! off, [`Device::unmap_bar`] first (it needs `&mut`, so no [`Mmio`] view
//! is alive); [`Device::region_read`] of a BAR then fails with `EIO`, an
//! error, not a signal.
//!
//! The other command bits cannot fault the process: I/O space is never
//! mmapped (I/O BARs go through `pread`/`pwrite`, which fail with an
//! error), and bus mastering only lets the device issue DMA, which the
//! IOMMU confines to the IOAS the device's type names. A reset
//! ([`Device::reset`]) restores the command register, so decoding stays as
//! it was. What the crate cannot see: a write to the device's config space
//! through sysfs (`/sys/bus/pci/devices/*/config`, root only), and, for an
//! SR-IOV VF, its PF's VF memory-enable bit, which the PF's owner controls.
//!
//! # Mediated devices and live migration
//!
//! [`mdev`] creates and lists mediated devices, which [`Device::open_mdev`]
//! opens through the same chain of states. [`migration`] types VFIO live
//! migration: [`Device::into_migration`] gives a [`Migration`] whose state
//! is a type, whose arcs are methods that consume it, and whose data
//! streams live in the states that own them (an example is in the
//! [`migration`] module docs).
//!
//! # Live update
//!
//! [`handover`] hands running devices, their IOASes and file-backed guest
//! RAM to a new VMM process over a unix socket; the new process adopts them,
//! checked with the kernel, and takes over the pinned-memory accounting
//! ([`Iommufd::change_process`]), with no unbind, no re-map and no reset.
//!
//! # Examples
//!
//! - `examples/vmm_passthrough.rs`, for VMM authors: a device's hot-plug and
//!   hot-unplug, with guest RAM from vm-memory at its GPAs, BARs for KVM
//!   memory slots and MSI on an eventfd (feature `vm-memory`).
//! - `examples/groups.rs`, for operators: which IOMMU groups can be assigned,
//!   and what to do about the others.
//! - `examples/demo.rs`: one DMA round trip through the IOMMU.
//!
//! Each runs in the test guest as a guest test (`tests/guest_examples.rs`).
//!
//! # Groups, and kernels without iommufd
//!
//! The kernel isolates DMA per IOMMU group. A device alone in its group is a
//! [`Device`]; a group with several devices is a [`Group`], which owns its
//! members and moves them together, so they can never be split across
//! IOASes. [`Iommufd::open`] and [`Device::open`] pick the path the kernel
//! offers: iommufd with the VFIO cdev, or the legacy group fd + type1
//! container (Linux before 6.6), behind the same types (see
//! [`Iommufd::open_legacy`]).
//!
//! # What is checked at run time
//!
//! Group topology is only known at run time. [`Device::open`] refuses a device
//! whose IOMMU group has other members, and points to a group-level API; a
//! failed bind explains `EPERM` by naming the group members on DMA-capable
//! drivers, or the missing interrupt remapping. Attaching to an IOAS of
//! another iommufd is refused before the ioctl, since IOAS ids are only
//! meaningful within one iommufd. [`Device::unbind`] reopens the cdev by
//! path and checks that it reached the same character device as the bound
//! fd (a path can be retargeted, a `vfioN` reused), or fails with
//! [`ErrorKind::DeviceChanged`].
//!
//! A failed transition hands back what is true. When the kernel may have
//! lost a device's attachment on the way (a replace that failed part-way),
//! [`Device::replace`] and [`Group::replace`] attach it to the old IOAS again
//! and say where it is with a [`Fallback`]: kept there, or blocked.
//!
//! # Cost
//!
//! A call makes the syscalls of the raw call and nothing else: error
//! context (names, ranges, group members) is built, and the kernel asked
//! why, only after the kernel said no. What cannot change while an fd lives
//! (region offsets and sizes) is cached. The one addition is
//! [`Device::open`]'s group check, one sysfs directory listing. On top of
//! the syscalls the crate runs a few hundred user-space instructions of
//! bookkeeping at most (a 4 KiB map + unmap: the IOAS's lock and its table
//! of live mappings); `tests/guest_overhead.rs` counts both under valgrind
//! in the test guest and fails past a budget, and `cargo xtask bench
//! --icount` measures every call against raw ioctls in guest instructions
//! (README, "Benchmarks"). [`Mmio`] accesses compile to a bounds check and
//! one volatile access (`tests/codegen.rs` checks the assembly).
//!
//! # References
//! - <https://docs.kernel.org/userspace-api/iommufd.html>
//! - <https://docs.kernel.org/driver-api/vfio.html> ("VFIO device cdev")
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]

mod backend;
mod diagnose;
#[cfg(test)]
mod fuzz;
mod gaps;
mod iova;
mod owner;
mod pt;
mod sys;
mod table;

pub mod device;
pub mod dma;
pub mod error;
pub mod group;
pub mod handover;
pub mod hwpt;
pub mod ioas;
mod iommufd;
pub mod iopf;
pub mod irq;
pub mod mdev;
pub mod migration;
#[cfg(feature = "iommufd-test-driver")]
#[cfg_attr(docsrs, doc(cfg(feature = "iommufd-test-driver")))]
pub mod mock;
pub mod p2p;
pub mod pasid;
pub mod region;
pub mod reset;
pub mod ring;
pub mod sriov;
pub mod sysfs;
#[cfg(feature = "vfio-ioctls")]
#[cfg_attr(docsrs, doc(cfg(feature = "vfio-ioctls")))]
pub mod vfio_ops;
pub mod viommu;

/// Locks `m`. A panic while it was held cannot leave the data half-updated
/// in a way that matters here (each critical section is one insert/remove or
/// one ioctl sequence whose failure is reported), so poisoning is ignored.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub use backend::{detect as detect_backend, Backend};
pub use device::{
    AnyDevice, Attached, BlockDma, Bound, Device, DeviceInfo, Replaced, State, Unbound,
};
pub use dma::{DmaBuffer, DmaMemory, HugeBuffer, HugePage, RawMemory};
pub use error::{Error, ErrorKind, Fallback, Result, TransitionError};
pub use group::{Group, GroupReplaced, Released};
pub use hwpt::{HwInfo, Hwpt, IommuKind, PageTable};
#[cfg(feature = "vm-memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "vm-memory")))]
pub use ioas::guest_ram::{GuestMappings, GuestRam};
pub use ioas::{Access, Ioas, Iova, IovaRange, IovaRanges, Mapping, Shared};
pub use iommufd::{Iommufd, PinAccounting};
pub use irq::{EventFd, IrqInfo};
pub use mdev::{Mdev, MdevParent, MdevType};
pub use migration::{AnyMigration, LoadStream, Migration, MigrationCaps, SaveStream};
pub use p2p::BarDmaBuf;
pub use pasid::{Pasid, PasidHwpt};
pub use region::{pci, Mmio, RegionCap, RegionInfo, Register};
pub use reset::{Affected, HotResetInfo};
pub use ring::{Entry, FixedRing, FixedRingMut, Plain, Ring, RingMut};

// Type-state facts, pinned: markers are zero-sized, and the state costs nothing.
static_assertions::assert_eq_size!(Unbound, ());
static_assertions::assert_eq_size!(BlockDma, ());
static_assertions::assert_eq_size!(Attached<Ioas>, ());
static_assertions::assert_eq_size!(Device<Unbound>, Device<BlockDma>);
static_assertions::assert_eq_size!(Device<Unbound>, Device<Attached<Ioas>>);
// Devices, IOASes and iommufds can be moved to and shared with other threads
// (a VMM's device thread, its vCPU threads).
static_assertions::assert_impl_all!(Device<Unbound>: Send, Sync);
static_assertions::assert_impl_all!(Device<BlockDma>: Send, Sync);
static_assertions::assert_impl_all!(Device<Attached<Ioas>>: Send, Sync);
static_assertions::assert_impl_all!(Ioas: Send, Sync, Clone);
static_assertions::assert_impl_all!(Group<Attached<Ioas>>: Send, Sync);
static_assertions::assert_not_impl_any!(Group<BlockDma>: Clone);
static_assertions::assert_impl_all!(Iommufd: Send, Sync, Clone);
// An MMIO view is a shared borrow of the device; vCPU threads use it concurrently.
static_assertions::assert_impl_all!(Mmio<'static>: Send, Sync, Copy);
static_assertions::assert_impl_all!(Mapping<DmaBuffer>: Send, Sync);
// A mapping of memory that must stay on its thread stays there too.
static_assertions::assert_not_impl_any!(Mapping<std::rc::Rc<u8>>: Send, Sync);
// Devices are not Clone: one owner per fd, one state at a time.
static_assertions::assert_not_impl_any!(Device<BlockDma>: Clone);
static_assertions::assert_not_impl_any!(Mapping<DmaBuffer>: Clone);

/// The README's code compiles (its quick start is a `no_run` doctest).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The porting guide's code compiles.
#[cfg(doctest)]
#[doc = include_str!("../docs/PORTING.md")]
struct PortingDoctests;
