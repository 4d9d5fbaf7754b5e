//! VFIO live migration (migration v2) as a typed state machine.
//!
//! A device that migrates moves through the kernel's finite state machine
//! (`VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE`): RUNNING, STOP, STOP_COPY,
//! RESUMING, the optional RUNNING_P2P, PRE_COPY and PRE_COPY_P2P, and ERROR.
//! Here each state is a type, [`Migration<St, S, W>`] owns the bound device
//! (`S` is its security context: [`BlockDma`](crate::BlockDma) or
//! [`Attached`](crate::Attached)), and each arc is a method that consumes
//! it and issues the `SET`:
//!
//! | from | arcs (methods) |
//! |---|---|
//! | [`Running`] | `stop`, `running_p2p`, `pre_copy` (save stream), `resuming` (combination: through STOP), `into_device` |
//! | [`RunningP2p`] | `running`, `stop`, `pre_copy_p2p` |
//! | [`Stop`] | `running` (through RUNNING_P2P where the device has it), `running_p2p`, `stop_copy` (save stream), `resuming` (load stream) |
//! | [`PreCopy`] | `running` (ends the stream), `pre_copy_p2p`, `stop_copy` (the same stream goes on), `precopy_info` |
//! | [`PreCopyP2p`] | `pre_copy`, `running_p2p`, `stop_copy` |
//! | [`StopCopy`] | `stop` (ends the stream) |
//! | [`Resuming`] | `stop` (the device loads what was written), `running` (combination: through STOP), `abort` (device reset) |
//! | [`MigError`] | `reset` (`VFIO_DEVICE_RESET`: the only way out) |
//!
//! The data stream of the saving states ([`SaveStream`], [`std::io::Read`])
//! and of RESUMING ([`LoadStream`], [`std::io::Write`]) lives *in* the
//! state value and is reached with `stream(&mut self)`: a borrow of the
//! state, so it cannot outlive it; PRE_COPY → STOP_COPY moves it along, as
//! the kernel continues the same fd there. Both are [`AsFd`], so a VMM can
//! poll them and `splice` them to its migration socket without copying
//! through the crate.
//!
//! The device itself ([`Migration::device`]) is reachable only while it
//! runs (RUNNING, PRE_COPY): in STOP, STOP_COPY, RESUMING and the P2P
//! states the kernel asks the user not to touch it, and no DMA-changing
//! transition (detach, replace, unbind) can happen while it migrates,
//! since the migration owns it.
//!
//! A failed arc hands the device back in the state the kernel reports
//! afterwards (read back with `GET`), as an [`AnyMigration`]: usually the
//! state it was in; ERROR when the device could not go back.
//!
//! ```no_run
//! use iommufd::{Device, Iommufd};
//! use std::io::{Read, Write};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fd = Iommufd::open()?;
//! let ioas = fd.alloc_ioas()?;
//! let src = Device::open_mdev("5b6f0a7e-3c2d-4e1f-8a9b-0c1d2e3f4a5b")?.bind(&fd)?.attach(&ioas)?;
//! let dst = Device::open_mdev("6c7f1b8f-4d3e-4f20-9bac-1d2e3f4a5b6c")?.bind(&fd)?.attach(&ioas)?;
//!
//! // No save without tracking: the device logs its DMA over ranges that
//! // cover every mapping of its IOAS (or: track_pages, declare_no_dma).
//! let all = iommufd::IovaRange { start: 0, last: u64::MAX };
//! let logged = src.into_migration()?.log_dma(4096, &[all]).map_err(iommufd::Error::from)?;
//! let mut saving = logged.pre_copy()?;                   // RUNNING -> PRE_COPY: a save stream
//! let mut state = Vec::new();
//! let initial = saving.precopy_info()?.initial_bytes;
//! saving.stream().take(initial).read_to_end(&mut state)?; // while the device still runs
//! let mut saving = saving.stop_copy()?;                  // the same stream goes on
//! saving.stream().read_to_end(&mut state)?;              // to its end
//! let _stopped = saving.stop()?;                         // STOP: the stream is gone
//!
//! let mut loading = dst.into_migration()?.resuming()?;   // RUNNING -> STOP -> RESUMING
//! loading.stream().write_all(&state)?;
//! let dst = loading.running()?.into_device();           // RESUMING -> STOP -> RUNNING
//! # drop(dst);
//! # Ok(())
//! # }
//! ```
//!
//! Dirty pages of guest memory are the other half of a live migration, and
//! the types keep the two halves together (rule 33): the arcs into a state
//! that saves the device's data (PRE_COPY, STOP_COPY) exist only on a
//! `Migration<_, _, W>` whose [`Witness`] `W` shows that every page the
//! device's DMA can write is tracked:
//!
//! - [`Logged`] ([`Migration::log_dma`]): the device logs its own DMA
//!   (`VFIO_DEVICE_FEATURE_DMA_LOGGING_*`) over ranges that cover every
//!   mapping of its IOAS (checked), and while it logs a map into that IOAS
//!   outside them is refused: the kernel cannot add ranges to a running
//!   log, so a mapping made later would go unlogged;
//! - [`PagesTracked`] ([`Migration::track_pages`]): the IOMMU tracks the
//!   page table the device is attached to, or its nested table's parent
//!   (a [`DirtyTracker`]; the migration holds it, so tracking cannot stop
//!   under it); checked against what the device holds, without an ioctl;
//! - [`NoDma`] ([`Migration::declare_no_dma`]): the caller's named
//!   statement that the device writes no guest memory. Never a default.
//!
//! Every migration starts [`Untracked`], which has no save arc. What a
//! mediated device's DMA writes through iommufd is not tracked by the
//! IOMMU at all: an mdev reaches guest memory through an iommufd *access*
//! (`vfio_pin_pages`/`vfio_dma_rw` on its parent's behalf), with no page
//! table of its own to track, so for an mdev that does DMA the witness is
//! its own log or nothing.
//!
//! # References
//! - `include/uapi/linux/vfio.h`, "VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE"

use crate::device::{Bound, Device};
use crate::error::{Error, ErrorKind, Result, TransitionError};
use crate::hwpt::{DirtyTracker, Tracks};
use crate::iova::IovaRange;
use crate::sys::{self, vfio};
use nix::errno::Errno;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

const OP: &str = "VFIO_DEVICE_FEATURE(MIG_DEVICE_STATE)";

/// What a device's migration driver supports (`VFIO_DEVICE_FEATURE_MIGRATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
///
/// Example: [the `migration` module docs](crate::migration).
pub struct MigrationCaps {
    /// Raw `VFIO_MIGRATION_*` flags.
    pub flags: u64,
}

impl MigrationCaps {
    /// STOP_COPY and RESUMING: the device's state can be saved and loaded.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn stop_copy(&self) -> bool {
        self.flags & u64::from(vfio::VFIO_MIGRATION_STOP_COPY) != 0
    }
    /// RUNNING_P2P (and PRE_COPY_P2P): a state that stops peer-to-peer DMA only.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn p2p(&self) -> bool {
        self.flags & u64::from(vfio::VFIO_MIGRATION_P2P) != 0
    }
    /// PRE_COPY: the state can be read while the device still runs.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn pre_copy(&self) -> bool {
        self.flags & u64::from(vfio::VFIO_MIGRATION_PRE_COPY) != 0
    }
}

mod sealed {
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub trait Sealed {}
}

/// A migration state (type state). Sealed: only the kernel's states exist.
///
/// Example: [the `migration` module docs](crate::migration).
pub trait MigState: sealed::Sealed + Sized {
    /// The `enum vfio_device_mig_state` value.
    const STATE: u32;
    /// The state's name, for messages and `Debug`.
    const NAME: &'static str;
    #[doc(hidden)]
    fn any<S: Bound, W: Witness>(m: Migration<Self, S, W>) -> AnyMigration<S, W>;
    #[doc(hidden)]
    fn save_stream(self) -> Option<SaveFd> {
        None
    }
    #[doc(hidden)]
    fn load_stream(self) -> Option<LoadFd> {
        None
    }
}

macro_rules! states {
    ($($(#[$doc:meta])* $name:ident($field:tt) = $state:ident, $text:literal, $variant:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name($field);
        impl sealed::Sealed for $name {}
        impl MigState for $name {
            const STATE: u32 = vfio::$state;
            const NAME: &'static str = $text;
            fn any<S: Bound, W: Witness>(m: Migration<Self, S, W>) -> AnyMigration<S, W> {
                AnyMigration::$variant(m)
            }
            states!(@streams $field);
        }
    )*};
    (@streams SaveFd) => {
        fn save_stream(self) -> Option<SaveFd> {
            Some(self.0)
        }
    };
    (@streams LoadFd) => {
        fn load_stream(self) -> Option<LoadFd> {
            Some(self.0)
        }
    };
    (@streams ()) => {};
}

states! {
    /// RUNNING: fully operational (type state).
    Running(()) = vfio_device_mig_state_VFIO_DEVICE_STATE_RUNNING, "RUNNING", Running;
    /// RUNNING_P2P: running, but initiating no peer-to-peer DMA (type state).
    RunningP2p(()) = vfio_device_mig_state_VFIO_DEVICE_STATE_RUNNING_P2P, "RUNNING_P2P", RunningP2p;
    /// STOP: no DMA, no interrupts, no change of internal state (type state).
    Stop(()) = vfio_device_mig_state_VFIO_DEVICE_STATE_STOP, "STOP", Stop;
    /// PRE_COPY: running, its state streaming out as it changes (type state).
    PreCopy(SaveFd) = vfio_device_mig_state_VFIO_DEVICE_STATE_PRE_COPY, "PRE_COPY", PreCopy;
    /// PRE_COPY_P2P: PRE_COPY without peer-to-peer DMA (type state).
    PreCopyP2p(SaveFd) = vfio_device_mig_state_VFIO_DEVICE_STATE_PRE_COPY_P2P, "PRE_COPY_P2P", PreCopyP2p;
    /// STOP_COPY: stopped, its whole state streaming out (type state).
    StopCopy(SaveFd) = vfio_device_mig_state_VFIO_DEVICE_STATE_STOP_COPY, "STOP_COPY", StopCopy;
    /// RESUMING: stopped, loading a state written into its stream (type state).
    Resuming(LoadFd) = vfio_device_mig_state_VFIO_DEVICE_STATE_RESUMING, "RESUMING", Resuming;
    /// ERROR: an arc failed and the device could not go back; only a reset
    /// leaves it (type state).
    MigError(()) = vfio_device_mig_state_VFIO_DEVICE_STATE_ERROR, "ERROR", Error;
}

/// How the pages a migrating device's DMA writes are tracked, as a type:
/// the third parameter of [`Migration`]. The arcs into a state that saves
/// the device's data (PRE_COPY, STOP_COPY) exist only for a [`Tracked`]
/// witness, so no device's state is saved while its DMA writes go
/// unrecorded (rule 33). Sealed.
pub trait Witness: sealed::Sealed + Send + 'static {
    /// What ends with the migration (a device's DMA log).
    #[doc(hidden)]
    fn end<S: Bound>(&self, _dev: &Device<S>) {}
}

/// What a save arc needs: [`Logged`], [`PagesTracked`] or [`NoDma`]. Sealed.
pub trait Tracked: Witness {}

/// Nothing says the device's DMA writes are tracked (the start of every
/// migration): no save arc. Make it [`Logged`], [`PagesTracked`] or
/// [`NoDma`] first.
#[derive(Debug)]
pub struct Untracked(());

/// The device logs its own DMA writes (`VFIO_DEVICE_FEATURE_DMA_LOGGING`)
/// over ranges that cover every mapping of its IOAS
/// ([`Migration::log_dma`]); read the log with
/// [`Migration::dma_report`]. While it logs, a map into that IOAS outside
/// the logged ranges is refused: the kernel cannot add ranges to a running
/// log.
#[derive(Debug)]
pub struct Logged {
    page_size: u64,
    /// The IOAS whose maps are held to the logged ranges, and the ranges.
    _scope: Option<crate::ioas::LogScope>,
}

/// Every page the device's DMA can write is tracked by the IOMMU: the
/// device's page table, or its nested table's parent, is the HWPT this
/// tracker tracks ([`Migration::track_pages`]). The migration holds the
/// tracker: tracking cannot be stopped under it.
pub struct PagesTracked<K: Tracks> {
    tracker: DirtyTracker<K>,
}

impl<K: Tracks> fmt::Debug for PagesTracked<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PagesTracked")
            .field("tracker", &self.tracker)
            .finish()
    }
}

/// The caller's explicit statement that the device does no DMA
/// ([`Migration::declare_no_dma`]): a device whose DMA is blocked
/// (`BlockDma`), or one that writes no guest memory. Named, never a
/// default.
#[derive(Debug)]
pub struct NoDma(());

impl sealed::Sealed for Untracked {}
impl sealed::Sealed for Logged {}
impl<K: Tracks> sealed::Sealed for PagesTracked<K> {}
impl sealed::Sealed for NoDma {}
impl Witness for Untracked {}
impl Witness for Logged {
    fn end<S: Bound>(&self, dev: &Device<S>) {
        let _ = stop_logging(dev);
    }
}
impl<K: Tracks> Witness for PagesTracked<K> {}
impl Witness for NoDma {}
impl Tracked for Logged {}
impl<K: Tracks> Tracked for PagesTracked<K> {}
impl Tracked for NoDma {}

/// The device's state streaming out of a saving state (PRE_COPY,
/// PRE_COPY_P2P, STOP_COPY): read it, poll it, or splice it by its fd.
///
/// In PRE_COPY a `read` at the temporary end of what is ready fails with
/// `ENOMSG` (more may come: poll); in STOP_COPY the end is final (`read`
/// returns 0).
///
/// Example: [the `migration` module docs](crate::migration).
pub struct SaveStream<'m>(&'m OwnedFd);

/// The stream a device in RESUMING loads its state from: write what a
/// [`SaveStream`] of a compatible device produced.
///
/// Example: [the `migration` module docs](crate::migration).
pub struct LoadStream<'m>(&'m OwnedFd);

/// The fds of the streams, owned by the states they live in. A state's
/// `stream()` lends them out only as a [`SaveStream`]/[`LoadStream`]
/// borrowing the state, never as `&mut` to the owner: swapping two
/// states' streams (`mem::swap`) would make one device's arc end the
/// other's stream (rule 18). Public in a private module: unnameable.
mod fds {
    use std::os::fd::OwnedFd;
    #[derive(Debug)]
    pub struct SaveFd(pub(crate) OwnedFd);
    #[derive(Debug)]
    pub struct LoadFd(pub(crate) OwnedFd);
}
use fds::{LoadFd, SaveFd};

impl std::io::Read for SaveStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Ok(nix::unistd::read(self.0, buf)?)
    }
}

impl std::io::Write for LoadStream<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(nix::unistd::write(self.0, buf)?)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AsFd for SaveStream<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsFd for LoadStream<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl fmt::Debug for SaveStream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SaveStream").field(&self.0).finish()
    }
}

impl fmt::Debug for LoadStream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LoadStream").field(&self.0).finish()
    }
}

/// How much PRE_COPY data is ready (`VFIO_MIG_GET_PRECOPY_INFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
///
/// Example: [the `migration` module docs](crate::migration).
pub struct PrecopyInfo {
    /// Initial state not read yet; leave PRE_COPY once it is 0.
    pub initial_bytes: u64,
    /// State that changed since it was read.
    pub dirty_bytes: u64,
}

/// A bound device in migration state `St` (see the [module docs](self)).
pub struct Migration<St: MigState, S: Bound, W: Witness = Untracked> {
    dev: Device<S>,
    caps: MigrationCaps,
    st: St,
    /// How the pages its DMA writes are tracked ([`Witness`]).
    w: W,
}

impl<St: MigState, S: Bound, W: Witness> fmt::Debug for Migration<St, S, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(&format!("Migration<{}>", St::NAME))
            .field("device", &self.dev)
            .field("caps", &self.caps)
            .finish()
    }
}

/// A migration in whichever state the kernel reports, after a failed arc.
#[derive(Debug)]
#[allow(missing_docs)] // each variant is its state type
///
/// Example: [the `migration` module docs](crate::migration).
pub enum AnyMigration<S: Bound, W: Witness = Untracked> {
    Running(Migration<Running, S, W>),
    RunningP2p(Migration<RunningP2p, S, W>),
    Stop(Migration<Stop, S, W>),
    PreCopy(Migration<PreCopy, S, W>),
    PreCopyP2p(Migration<PreCopyP2p, S, W>),
    StopCopy(Migration<StopCopy, S, W>),
    Resuming(Migration<Resuming, S, W>),
    Error(Migration<MigError, S, W>),
}

impl<S: Bound, W: Witness> AnyMigration<S, W> {
    /// The state's name.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn state(&self) -> &'static str {
        match self {
            AnyMigration::Running(_) => Running::NAME,
            AnyMigration::RunningP2p(_) => RunningP2p::NAME,
            AnyMigration::Stop(_) => Stop::NAME,
            AnyMigration::PreCopy(_) => PreCopy::NAME,
            AnyMigration::PreCopyP2p(_) => PreCopyP2p::NAME,
            AnyMigration::StopCopy(_) => StopCopy::NAME,
            AnyMigration::Resuming(_) => Resuming::NAME,
            AnyMigration::Error(_) => MigError::NAME,
        }
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        match self {
            AnyMigration::Running(m) => m.name(),
            AnyMigration::RunningP2p(m) => m.name(),
            AnyMigration::Stop(m) => m.name(),
            AnyMigration::PreCopy(m) => m.name(),
            AnyMigration::PreCopyP2p(m) => m.name(),
            AnyMigration::StopCopy(m) => m.name(),
            AnyMigration::Resuming(m) => m.name(),
            AnyMigration::Error(m) => m.name(),
        }
    }
}

/// A refused [`Migration::track_pages`]: the migration and the tracker, both back.
pub type NotTracked<S, K> = TransitionError<(Migration<Running, S>, DirtyTracker<K>)>;

/// A failed arc: the error, and the migration in the state the kernel reports.
///
/// Example: [the `migration` module docs](crate::migration).
pub type ArcError<S, W = Untracked> = TransitionError<AnyMigration<S, W>>;

/// The name of a raw state, for messages.
fn state_name(state: u32) -> String {
    [
        (MigError::STATE, MigError::NAME),
        (Stop::STATE, Stop::NAME),
        (Running::STATE, Running::NAME),
        (StopCopy::STATE, StopCopy::NAME),
        (Resuming::STATE, Resuming::NAME),
        (RunningP2p::STATE, RunningP2p::NAME),
        (PreCopy::STATE, PreCopy::NAME),
        (PreCopyP2p::STATE, PreCopyP2p::NAME),
    ]
    .iter()
    .find(|(s, _)| *s == state)
    .map_or_else(|| format!("state {state}"), |(_, n)| n.to_string())
}

/// `GET` of `feature` with a one-word payload.
fn get_word(dev: BorrowedFd<'_>, feature: u32) -> nix::Result<u64> {
    let mut w = [0u64];
    sys::device_feature(dev, vfio::VFIO_DEVICE_FEATURE_GET | feature, &mut w)?;
    Ok(w[0])
}

/// The device's migration state (`GET` of `MIG_DEVICE_STATE`).
fn get_state(dev: BorrowedFd<'_>) -> nix::Result<u32> {
    get_word(dev, vfio::VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE).map(|w| w as u32)
}

/// `SET` of `MIG_DEVICE_STATE` to `state`; the data fd, when the arc made one.
fn set_state(dev: BorrowedFd<'_>, state: u32) -> nix::Result<Option<OwnedFd>> {
    // struct vfio_device_feature_mig_state { u32 device_state; s32 data_fd; }
    let mut w = [u64::from(state) | (u64::from(u32::MAX) << 32)];
    sys::device_feature(
        dev,
        vfio::VFIO_DEVICE_FEATURE_SET | vfio::VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
        &mut w,
    )?;
    let fd = (w[0] >> 32) as u32 as i32;
    // SAFETY: on success the kernel returns either -1 or a new fd that
    // nothing else owns.
    Ok((fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) }))
}

impl<S: Bound> Device<S> {
    /// What the device's migration driver supports, or `None` when it has
    /// none (`VFIO_DEVICE_FEATURE_MIGRATION`, probed once: it cannot
    /// change while the device is bound).
    ///
    /// # Errors
    /// The errno of the feature ioctl, other than the "no migration"
    /// answers (`ENOTTY`, `EOPNOTSUPP`, `EINVAL`), which are `None`.
    #[doc(alias = "VFIO_DEVICE_FEATURE_MIGRATION")]
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn migration_caps(&self) -> Result<Option<MigrationCaps>> {
        if let Some(&flags) = self.inner.migration.get() {
            return Ok((flags != 0).then_some(MigrationCaps { flags }));
        }
        let flags = match get_word(self.device_fd(), vfio::VFIO_DEVICE_FEATURE_MIGRATION) {
            Ok(f) => f,
            Err(Errno::ENOTTY | Errno::EOPNOTSUPP | Errno::EINVAL) => 0,
            Err(e) => {
                return Err(Error::sys(
                    "VFIO_DEVICE_FEATURE(MIGRATION)",
                    self.name().to_string(),
                    e,
                ))
            }
        };
        let flags = *self.inner.migration.get_or_init(|| flags);
        Ok((flags != 0).then_some(MigrationCaps { flags }))
    }

    /// Starts migrating: the device, RUNNING, as a [`Migration<Running>`].
    ///
    /// # Errors
    /// The device comes back: [`ErrorKind::Unsupported`] when it has no
    /// migration driver (or no STOP_COPY); [`ErrorKind::InvalidInput`] when
    /// it is not RUNNING (a previous migration left it elsewhere: reset it).
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn into_migration(
        self,
    ) -> std::result::Result<Migration<Running, S>, TransitionError<Self>> {
        let caps = match self.migration_caps() {
            Ok(Some(c)) if c.stop_copy() => c,
            Ok(_) => {
                let e = Error::new(ErrorKind::Unsupported, "migration", self.name().to_string())
                    .detail("the device's driver offers no VFIO migration (VFIO_DEVICE_FEATURE_MIGRATION with STOP_COPY)");
                return Err(TransitionError::new(self, e));
            }
            Err(e) => return Err(TransitionError::new(self, e)),
        };
        match get_state(self.device_fd()) {
            Ok(vfio::vfio_device_mig_state_VFIO_DEVICE_STATE_RUNNING) => Ok(Migration {
                dev: self,
                caps,
                st: Running(()),
                w: Untracked(()),
            }),
            Ok(other) => {
                let e = Error::new(
                    ErrorKind::InvalidInput,
                    "migration",
                    self.name().to_string(),
                )
                .detail(format!(
                    "the device is in {}, not RUNNING",
                    state_name(other)
                ))
                .hint("reset the device (Device::reset) to bring it back to RUNNING");
                Err(TransitionError::new(self, e))
            }
            Err(e) => {
                let e = Error::sys(OP, self.name().to_string(), e);
                Err(TransitionError::new(self, e))
            }
        }
    }
}

impl<St: MigState, S: Bound, W: Witness> Migration<St, S, W> {
    /// The migration driver's capabilities.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn caps(&self) -> MigrationCaps {
        self.caps
    }

    /// The device's name.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn name(&self) -> &str {
        self.dev.name()
    }

    /// How many bytes STOP_COPY is expected to stream
    /// (`VFIO_DEVICE_FEATURE_MIG_DATA_SIZE`; any state).
    #[doc(alias = "VFIO_DEVICE_FEATURE_MIG_DATA_SIZE")]
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn data_size(&self) -> Result<u64> {
        get_word(
            self.dev.device_fd(),
            vfio::VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
        )
        .map_err(|e| {
            let err = Error::sys(
                "VFIO_DEVICE_FEATURE(MIG_DATA_SIZE)",
                self.name().to_string(),
                e,
            );
            if matches!(e, Errno::ENOTTY | Errno::EOPNOTSUPP) {
                err.kind_(ErrorKind::Unsupported)
                    .detail("the device's migration driver does not estimate its data size")
            } else {
                err
            }
        })
    }

    /// One arc to `To`: `SET` the state and build the new one from the old
    /// state value and the data fd the kernel returned.
    fn arc<To: MigState>(
        self,
        need: Option<(&'static str, bool)>,
        make: impl FnOnce(St, Option<OwnedFd>) -> Option<To>,
    ) -> std::result::Result<Migration<To, S, W>, ArcError<S, W>> {
        if let Some((what, false)) = need {
            let e = self.arc_error(To::STATE, None).kind_(ErrorKind::Unsupported).detail(format!(
                "the device's migration driver has no {what} (VFIO_DEVICE_FEATURE_MIGRATION flags {:#x})",
                self.caps.flags
            ));
            return Err(TransitionError::new(St::any(self), e));
        }
        match set_state(self.dev.device_fd(), To::STATE) {
            Ok(fd) => {
                let Migration { dev, caps, st, w } = self;
                match make(st, fd) {
                    Some(st) => Ok(Migration { dev, caps, st, w }),
                    // The kernel moved but gave no stream where one was due.
                    None => {
                        let back = streamless(dev, caps, w, To::STATE);
                        let e = Error::new(ErrorKind::Kernel, OP, back.name().to_string()).detail(
                            format!(
                                "{} -> {}: the kernel returned no data fd for the new state; the crate moved the device on to {} (read back)",
                                St::NAME,
                                To::NAME,
                                back.state()
                            ),
                        );
                        Err(TransitionError::new(back, e))
                    }
                }
            }
            Err(errno) => Err(self.failed(To::STATE, errno)),
        }
    }

    /// The error of a refused arc to `to`, with the state read back.
    #[cold]
    #[inline(never)]
    fn failed(self, to: u32, errno: Errno) -> ArcError<S, W> {
        let now = get_state(self.dev.device_fd()).ok();
        let mut e = self.arc_error(to, Some(errno));
        e = e.append_detail(match now {
            Some(n) => format!("the device is in {} now (read back)", state_name(n)),
            None => "its state could not be read back: reset it".to_string(),
        });
        if errno == Errno::EINVAL && St::STATE == Resuming::STATE {
            e = e.kind_(ErrorKind::InvalidInput).append_detail(
                "the data written was incomplete or not a state this device accepts".into(),
            );
        }
        let back = self.settle(now);
        if let Some(n) = now.filter(|&n| state_name(n) != back.state() && n != MigError::STATE) {
            // A streaming state whose stream the failed ioctl did not hand
            // over (it failed after the move, copying out the result).
            let how = if n == Resuming::STATE {
                "reset the device to"
            } else {
                "moved the device on to"
            };
            e = e.append_detail(format!(
                "the kernel had moved to {} but its data fd was lost with the failure, so the crate {how} {} (read back)",
                state_name(n),
                back.state()
            ));
        }
        if let AnyMigration::Error(_) = back {
            e = e.hint("only a device reset leaves ERROR: Migration::<MigError>::reset");
        }
        TransitionError::new(back, e)
    }

    fn arc_error(&self, to: u32, errno: Option<Errno>) -> Error {
        let err = Error::new(ErrorKind::Kernel, OP, self.name().to_string()).detail(format!(
            "{} -> {}",
            St::NAME,
            state_name(to)
        ));
        match errno {
            Some(e) => err.errno(e),
            None => err,
        }
    }

    /// The migration in the state the kernel reports (`None`: unreadable).
    fn settle(self, now: Option<u32>) -> AnyMigration<S, W> {
        if now == Some(St::STATE) {
            return St::any(self);
        }
        let Migration { dev, caps, st, w } = self;
        macro_rules! m {
            ($st:expr) => {
                Migration {
                    dev,
                    caps,
                    st: $st,
                    w,
                }
            };
        }
        match now {
            // A saving or loading state the arc did not start from: its
            // stream is the old state's, if that carried the same kind.
            Some(n) if n == StopCopy::STATE || n == PreCopy::STATE || n == PreCopyP2p::STATE => {
                match st.save_stream() {
                    Some(s) if n == StopCopy::STATE => StopCopy::any(m!(StopCopy(s))),
                    Some(s) if n == PreCopy::STATE => PreCopy::any(m!(PreCopy(s))),
                    Some(s) => PreCopyP2p::any(m!(PreCopyP2p(s))),
                    None => streamless(dev, caps, w, n),
                }
            }
            Some(n) if n == Resuming::STATE => match st.load_stream() {
                Some(s) => AnyMigration::Resuming(m!(Resuming(s))),
                None => streamless(dev, caps, w, n),
            },
            _ => at_rest(dev, caps, w, now),
        }
    }
}

/// A device the kernel moved into streaming state `n` without handing over
/// the stream (an arc that failed after the move, at the copy of its
/// result, or returned no fd): no value can stand for a streaming state
/// without its stream, so the device is moved on to the state without one
/// next to it (STOP_COPY to STOP, PRE_COPY to RUNNING, PRE_COPY_P2P to
/// RUNNING_P2P: arcs the kernel takes from each; RESUMING, which nothing
/// leaves with no state loaded, by a device reset to RUNNING, as
/// [`Migration::<Resuming>::abort`](Migration::abort) does) and handed back
/// in the state read back then. Should even that fail, the device is
/// handed back as ERROR, whose only way out is the reset it needs.
#[cold]
#[inline(never)]
fn streamless<S: Bound, W: Witness>(
    mut dev: Device<S>,
    caps: MigrationCaps,
    w: W,
    n: u32,
) -> AnyMigration<S, W> {
    if n == Resuming::STATE {
        let _ = dev.reset();
    } else {
        let to = if n == PreCopy::STATE {
            Running::STATE
        } else if n == PreCopyP2p::STATE {
            RunningP2p::STATE
        } else {
            Stop::STATE
        };
        let _ = set_state(dev.device_fd(), to);
    }
    let now = get_state(dev.device_fd()).ok();
    at_rest(dev, caps, w, now)
}

/// The migration in state `now` when that is one without a stream
/// (RUNNING, RUNNING_P2P, STOP); ERROR for anything else (ERROR itself, a
/// state that could not be read, a streaming state without its stream).
fn at_rest<S: Bound, W: Witness>(
    dev: Device<S>,
    caps: MigrationCaps,
    w: W,
    now: Option<u32>,
) -> AnyMigration<S, W> {
    macro_rules! m {
        ($st:expr) => {
            Migration {
                dev,
                caps,
                st: $st,
                w,
            }
        };
    }
    match now {
        Some(n) if n == Running::STATE => AnyMigration::Running(m!(Running(()))),
        Some(n) if n == RunningP2p::STATE => AnyMigration::RunningP2p(m!(RunningP2p(()))),
        Some(n) if n == Stop::STATE => AnyMigration::Stop(m!(Stop(()))),
        _ => AnyMigration::Error(m!(MigError(()))),
    }
}

/// A new stream from the fd an arc returned.
fn save(fd: Option<OwnedFd>) -> Option<SaveFd> {
    fd.map(SaveFd)
}

impl<S: Bound, W: Witness> Migration<Running, S, W> {
    /// The device, running: MMIO, config space, IRQs.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn device(&self) -> &Device<S> {
        &self.dev
    }

    /// Ends the migration: the device, RUNNING, as it was. A device that
    /// logs its DMA for it ([`Logged`]) stops logging; a tracker it holds
    /// ([`PagesTracked`]) is dropped, which stops tracking
    /// ([`into_tracked_device`](Migration::into_tracked_device) keeps it).
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn into_device(self) -> Device<S> {
        self.w.end(&self.dev);
        self.dev
    }

    /// RUNNING → STOP (through RUNNING_P2P where the device has it).
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn stop(self) -> std::result::Result<Migration<Stop, S, W>, ArcError<S, W>> {
        self.arc(None, |_, _| Some(Stop(())))
    }

    /// RUNNING → RUNNING_P2P.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn running_p2p(self) -> std::result::Result<Migration<RunningP2p, S, W>, ArcError<S, W>> {
        let p2p = self.caps.p2p();
        self.arc(Some(("RUNNING_P2P", p2p)), |_, _| Some(RunningP2p(())))
    }

    /// RUNNING → RESUMING in one call (the kernel goes through STOP): a
    /// load stream for the state saved on another device.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn resuming(self) -> std::result::Result<Migration<Resuming, S, W>, ArcError<S, W>> {
        self.arc(None, |_, fd| fd.map(|fd| Resuming(LoadFd(fd))))
    }
}

impl<S: Bound, W: Witness> Migration<RunningP2p, S, W> {
    /// RUNNING_P2P → RUNNING.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn running(self) -> std::result::Result<Migration<Running, S, W>, ArcError<S, W>> {
        self.arc(None, |_, _| Some(Running(())))
    }

    /// RUNNING_P2P → STOP.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn stop(self) -> std::result::Result<Migration<Stop, S, W>, ArcError<S, W>> {
        self.arc(None, |_, _| Some(Stop(())))
    }
}

impl<S: Bound, W: Witness> Migration<Stop, S, W> {
    /// STOP → RUNNING (through RUNNING_P2P where the device has it).
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn running(self) -> std::result::Result<Migration<Running, S, W>, ArcError<S, W>> {
        self.arc(None, |_, _| Some(Running(())))
    }

    /// STOP → RUNNING_P2P.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn running_p2p(self) -> std::result::Result<Migration<RunningP2p, S, W>, ArcError<S, W>> {
        let p2p = self.caps.p2p();
        self.arc(Some(("RUNNING_P2P", p2p)), |_, _| Some(RunningP2p(())))
    }

    /// STOP → RESUMING: a load stream.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn resuming(self) -> std::result::Result<Migration<Resuming, S, W>, ArcError<S, W>> {
        self.arc(None, |_, fd| fd.map(|fd| Resuming(LoadFd(fd))))
    }
}

/// The arcs into a state that saves the device's data exist only when the
/// migration shows that every page the device's DMA can write is tracked
/// (rule 33: `save_without_tracking`).
impl<S: Bound, W: Tracked> Migration<Running, S, W> {
    /// RUNNING → PRE_COPY: the device keeps running while its state streams out.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn pre_copy(self) -> std::result::Result<Migration<PreCopy, S, W>, ArcError<S, W>> {
        let pre = self.caps.pre_copy();
        self.arc(Some(("PRE_COPY", pre)), |_, fd| save(fd).map(PreCopy))
    }
}

impl<S: Bound, W: Tracked> Migration<RunningP2p, S, W> {
    /// RUNNING_P2P → PRE_COPY_P2P.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn pre_copy_p2p(self) -> std::result::Result<Migration<PreCopyP2p, S, W>, ArcError<S, W>> {
        let pre = self.caps.pre_copy();
        self.arc(Some(("PRE_COPY", pre)), |_, fd| save(fd).map(PreCopyP2p))
    }
}

impl<S: Bound, W: Tracked> Migration<Stop, S, W> {
    /// STOP → STOP_COPY: the whole state streams out.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn stop_copy(self) -> std::result::Result<Migration<StopCopy, S, W>, ArcError<S, W>> {
        self.arc(None, |_, fd| save(fd).map(StopCopy))
    }
}

impl<S: Bound> Migration<Running, S> {
    /// Lets the device log its own DMA writes over `ranges`
    /// (`VFIO_DEVICE_FEATURE_DMA_LOGGING_START`, at `page_size` or what the
    /// device picks): a witness that every page its DMA can write is
    /// tracked, when the ranges cover every mapping of the IOAS it is
    /// attached to. While it logs, a map into that IOAS outside the ranges
    /// is refused ([`ErrorKind::OutOfRange`]): the kernel cannot add ranges
    /// to a running log. The log is read with
    /// [`dma_report`](Migration::dma_report); it stops with
    /// [`into_device`](Migration::into_device), or when the device closes.
    ///
    /// # Errors
    /// The migration is handed back: [`ErrorKind::InvalidInput`] naming a
    /// mapping of the IOAS the ranges leave out (checked first, no ioctl);
    /// as [`Device::start_dma_logging`].
    #[doc(alias = "VFIO_DEVICE_FEATURE_DMA_LOGGING_START")]
    pub fn log_dma(
        self,
        page_size: u64,
        ranges: &[IovaRange],
    ) -> std::result::Result<Migration<Running, S, Logged>, TransitionError<Self>> {
        let scope = match self.dev.inner.attached.as_ref() {
            Some((ioas, _)) => match ioas.log_scope(ranges) {
                Ok(scope) => Some(scope),
                Err((iova, len)) => {
                    let e = Error::new(
                        ErrorKind::InvalidInput,
                        "VFIO_DEVICE_FEATURE(DMA_LOGGING_START)",
                        self.name().to_string(),
                    )
                    .detail(format!(
                        "the ranges leave out {}, mapped in the IOAS the device is attached to: pages its DMA wrote there would be lost to the migration",
                        ioas.range_object(iova, len)
                    ))
                    .hint("log ranges that cover every mapping of the IOAS");
                    return Err(TransitionError::new(self, e));
                }
            },
            // Blocked: its DMA reaches nothing.
            None => None,
        };
        match start_logging(&self.dev, page_size, ranges) {
            Ok(page_size) => {
                let Migration { dev, caps, st, .. } = self;
                Ok(Migration {
                    dev,
                    caps,
                    st,
                    w: Logged {
                        page_size,
                        _scope: scope,
                    },
                })
            }
            Err(e) => Err(TransitionError::new(self, e)),
        }
    }

    /// Takes `tracker` as the witness that every page the device's DMA can
    /// write is tracked: the device must be attached to the HWPT it
    /// tracks, or to a nested HWPT whose parent it is (checked from what
    /// the device holds: no ioctl). The migration holds the tracker, so
    /// tracking cannot stop under it; read through
    /// [`tracker`](Migration::tracker), and take it back with
    /// [`into_tracked_device`](Migration::into_tracked_device).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when the device is on another page
    /// table (an IOAS's own, another HWPT, or blocked); both are handed
    /// back.
    pub fn track_pages<K: Tracks>(
        self,
        tracker: DirtyTracker<K>,
    ) -> std::result::Result<Migration<Running, S, PagesTracked<K>>, NotTracked<S, K>> {
        let tracked = tracker.hwpt().id();
        let on = self.dev.inner.hwpt.as_ref();
        let covered = on.is_some_and(|h| tracker.hwpt().is_or_parent_of(h));
        if !covered {
            let where_ = match on {
                Some(h) if h.id() == tracked => format!("HWPT {tracked} of another iommufd"),
                Some(h) => format!("HWPT {}", h.id()),
                None if self.dev.inner.attached.is_some() => {
                    "its IOAS's own page table, which tracks nothing".to_string()
                }
                None => "no page table (blocked)".to_string(),
            };
            let e = Error::new(ErrorKind::InvalidInput, "migration", self.name().to_string())
                .detail(format!(
                    "the tracker tracks HWPT {tracked}, but the device is on {where_}: its DMA writes would not be tracked"
                ))
                .hint("attach the device to the tracked HWPT (or a nested HWPT on it) before the migration, or let the device log its DMA (Migration::log_dma)");
            return Err(TransitionError::new((self, tracker), e));
        }
        let Migration { dev, caps, st, .. } = self;
        Ok(Migration {
            dev,
            caps,
            st,
            w: PagesTracked { tracker },
        })
    }

    /// States, by name, that the device does no DMA to guest memory (a
    /// device whose DMA is blocked, or one that writes none), so its state
    /// may be saved with nothing tracked. The caller's statement, never a
    /// default: a device that does write memory would lose those pages.
    pub fn declare_no_dma(self) -> Migration<Running, S, NoDma> {
        let Migration { dev, caps, st, .. } = self;
        Migration {
            dev,
            caps,
            st,
            w: NoDma(()),
        }
    }
}

impl<St: MigState, S: Bound> Migration<St, S, Logged> {
    /// Reads and clears the device's DMA log of `[iova, iova + len)` into
    /// `bitmap` (`VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT`), one bit per
    /// `page_size` bytes; the kernel only sets bits.
    ///
    /// # Errors
    /// As [`DmaLogging::report`].
    #[doc(alias = "VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT")]
    pub fn dma_report(
        &self,
        iova: u64,
        len: u64,
        page_size: u64,
        bitmap: &mut [u64],
    ) -> Result<()> {
        report_logging(&self.dev, iova, len, page_size, bitmap)
    }

    /// The logging granularity the device chose.
    pub fn log_page_size(&self) -> u64 {
        self.w.page_size
    }
}

impl<St: MigState, S: Bound, K: Tracks> Migration<St, S, PagesTracked<K>> {
    /// The dirty tracker the migration holds: read the device's dirty
    /// pages through it.
    pub fn tracker(&self) -> &DirtyTracker<K> {
        &self.w.tracker
    }
}

impl<S: Bound, K: Tracks> Migration<Running, S, PagesTracked<K>> {
    /// Ends the migration: the device, RUNNING, and the tracker, still on.
    pub fn into_tracked_device(self) -> (Device<S>, DirtyTracker<K>) {
        (self.dev, self.w.tracker)
    }
}

impl<S: Bound, W: Witness> Migration<PreCopy, S, W> {
    /// The device, still running.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn device(&self) -> &Device<S> {
        &self.dev
    }

    /// The save stream.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn stream(&mut self) -> SaveStream<'_> {
        SaveStream(&self.st.0 .0)
    }

    /// How much initial and dirty state is ready (`VFIO_MIG_GET_PRECOPY_INFO`).
    #[doc(alias = "VFIO_MIG_GET_PRECOPY_INFO")]
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn precopy_info(&self) -> Result<PrecopyInfo> {
        precopy_info(&self.st.0, self.name())
    }

    /// PRE_COPY → RUNNING: the stream ends, the device keeps running.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn running(self) -> std::result::Result<Migration<Running, S, W>, ArcError<S, W>> {
        self.arc(None, |_, _| Some(Running(())))
    }

    /// PRE_COPY → PRE_COPY_P2P (the stream goes on).
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn pre_copy_p2p(self) -> std::result::Result<Migration<PreCopyP2p, S, W>, ArcError<S, W>> {
        let p2p = self.caps.p2p();
        self.arc(Some(("PRE_COPY_P2P", p2p)), |st, _| Some(PreCopyP2p(st.0)))
    }

    /// PRE_COPY → STOP_COPY: the device stops and the same stream goes on
    /// with the rest of its state (the kernel returns no new fd).
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn stop_copy(self) -> std::result::Result<Migration<StopCopy, S, W>, ArcError<S, W>> {
        self.arc(None, |st, fd| Some(StopCopy(save(fd).unwrap_or(st.0))))
    }
}

impl<S: Bound, W: Witness> Migration<PreCopyP2p, S, W> {
    /// The save stream.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn stream(&mut self) -> SaveStream<'_> {
        SaveStream(&self.st.0 .0)
    }

    /// As [`Migration::<PreCopy>::precopy_info`](Migration::precopy_info).
    pub fn precopy_info(&self) -> Result<PrecopyInfo> {
        precopy_info(&self.st.0, self.name())
    }

    /// PRE_COPY_P2P → PRE_COPY (the stream goes on).
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn pre_copy(self) -> std::result::Result<Migration<PreCopy, S, W>, ArcError<S, W>> {
        self.arc(None, |st, _| Some(PreCopy(st.0)))
    }

    /// PRE_COPY_P2P → RUNNING_P2P: the stream ends.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn running_p2p(self) -> std::result::Result<Migration<RunningP2p, S, W>, ArcError<S, W>> {
        self.arc(None, |_, _| Some(RunningP2p(())))
    }

    /// PRE_COPY_P2P → STOP_COPY (the same stream goes on).
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn stop_copy(self) -> std::result::Result<Migration<StopCopy, S, W>, ArcError<S, W>> {
        self.arc(None, |st, fd| Some(StopCopy(save(fd).unwrap_or(st.0))))
    }
}

impl<S: Bound, W: Witness> Migration<StopCopy, S, W> {
    /// The save stream: the rest of the state, to its end (`read` returns 0).
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn stream(&mut self) -> SaveStream<'_> {
        SaveStream(&self.st.0 .0)
    }

    /// STOP_COPY → STOP: the stream ends.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn stop(self) -> std::result::Result<Migration<Stop, S, W>, ArcError<S, W>> {
        self.arc(None, |_, _| Some(Stop(())))
    }
}

impl<S: Bound, W: Witness> Migration<Resuming, S, W> {
    /// The load stream.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn stream(&mut self) -> LoadStream<'_> {
        LoadStream(&self.st.0 .0)
    }

    /// RESUMING → STOP: the device takes in what was written.
    ///
    /// # Errors
    /// `EINVAL` ([`ErrorKind::InvalidInput`]) when the data was incomplete
    /// or not a state the device accepts; the device comes back in the state
    /// the kernel reports (RESUMING, or ERROR).
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn stop(self) -> std::result::Result<Migration<Stop, S, W>, ArcError<S, W>> {
        self.arc(None, |_, _| Some(Stop(())))
    }

    /// RESUMING → RUNNING in one call (through STOP).
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn running(self) -> std::result::Result<Migration<Running, S, W>, ArcError<S, W>> {
        self.arc(None, |_, _| Some(Running(())))
    }

    /// Abandons the load: the kernel ends a RESUMING session only by a
    /// device reset (`VFIO_DEVICE_RESET`), which brings the device back to
    /// RUNNING with its own state reset.
    ///
    /// # Errors
    /// The reset's error; the migration comes back in RESUMING.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn abort(self) -> std::result::Result<Migration<Running, S, W>, TransitionError<Self>> {
        self.reset_to_running()
    }
}

impl<St: MigState, S: Bound, W: Witness> Migration<St, S, W> {
    /// `VFIO_DEVICE_RESET`: the kernel puts a migrating device back in RUNNING.
    fn reset_to_running(
        mut self,
    ) -> std::result::Result<Migration<Running, S, W>, TransitionError<Self>> {
        if let Err(e) = self.dev.reset() {
            return Err(TransitionError::new(self, e));
        }
        let Migration { dev, caps, w, .. } = self;
        Ok(Migration {
            dev,
            caps,
            st: Running(()),
            w,
        })
    }
}

impl<S: Bound, W: Witness> Migration<MigError, S, W> {
    /// Resets the device (`VFIO_DEVICE_RESET`), which brings it back to
    /// RUNNING: the only way out of ERROR.
    ///
    /// # Errors
    /// The reset's error; the migration comes back in ERROR.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn reset(self) -> std::result::Result<Migration<Running, S, W>, TransitionError<Self>> {
        self.reset_to_running()
    }
}

fn precopy_info(stream: &SaveFd, name: &str) -> Result<PrecopyInfo> {
    let mut arg = vfio::vfio_precopy_info {
        argsz: sys::argsz::<vfio::vfio_precopy_info>(),
        ..Default::default()
    };
    sys::ioctl(
        stream.0.as_fd(),
        sys::raw::vfio_mig_get_precopy_info,
        &mut arg,
    )
    .map_err(|e| Error::sys("VFIO_MIG_GET_PRECOPY_INFO", name.to_string(), e))?;
    Ok(PrecopyInfo {
        initial_bytes: arg.initial_bytes,
        dirty_bytes: arg.dirty_bytes,
    })
}

/// Device-side DMA dirty logging, started by [`Device::start_dma_logging`]
/// and stopped when dropped (or with [`stop`](Self::stop)). It borrows the
/// device, so the device cannot be unbound or moved while it logs.
#[derive(Debug)]
pub struct DmaLogging<'d, S: Bound> {
    dev: &'d Device<S>,
    /// The page size the device chose.
    page_size: u64,
}

impl<S: Bound> Device<S> {
    /// Starts the device logging its DMA writes into `ranges`
    /// (`VFIO_DEVICE_FEATURE_DMA_LOGGING_START`), at `page_size`
    /// granularity or what the device picks instead. For a migration, use
    /// [`Migration::log_dma`], which makes the log the witness its save
    /// arcs need.
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] when the device cannot log its own DMA
    /// (most devices: use IOMMU dirty tracking instead); `EBUSY` when
    /// logging is already on.
    #[doc(alias = "VFIO_DEVICE_FEATURE_DMA_LOGGING_START")]
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn start_dma_logging(
        &self,
        page_size: u64,
        ranges: &[IovaRange],
    ) -> Result<DmaLogging<'_, S>> {
        let page_size = start_logging(self, page_size, ranges)?;
        Ok(DmaLogging {
            dev: self,
            page_size,
        })
    }
}

/// `VFIO_DEVICE_FEATURE_DMA_LOGGING_START` over `ranges`; the page size
/// the device chose.
fn start_logging<S: Bound>(dev: &Device<S>, page_size: u64, ranges: &[IovaRange]) -> Result<u64> {
    const OP: &str = "VFIO_DEVICE_FEATURE(DMA_LOGGING_START)";
    let raw: Vec<vfio::vfio_device_feature_dma_logging_range> = ranges
        .iter()
        .map(|r| vfio::vfio_device_feature_dma_logging_range {
            iova: r.start,
            length: r.last.wrapping_sub(r.start).wrapping_add(1),
        })
        .collect();
    let Ok(n) = u32::try_from(raw.len()) else {
        return Err(
            Error::new(ErrorKind::InvalidInput, OP, dev.name().to_string())
                .detail("too many ranges"),
        );
    };
    // struct vfio_device_feature_dma_logging_control: page_size, num_ranges, reserved, ranges ptr.
    let mut w = [page_size, u64::from(n), raw.as_ptr() as u64];
    // SAFETY: `ranges` points at `n` valid range structs that live
    // across the call; the kernel only reads them.
    let r = unsafe {
        sys::vfio::device_feature_ptr(
            dev.device_fd(),
            vfio::VFIO_DEVICE_FEATURE_SET | vfio::VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
            &mut w,
        )
    };
    match r {
        Ok(_) => Ok(w[0]),
        Err(e) => {
            let err = Error::sys(OP, dev.name().to_string(), e);
            Err(match e {
                Errno::ENOTTY | Errno::EOPNOTSUPP => err.kind_(ErrorKind::Unsupported).detail(
                    "the device cannot log its own DMA; track dirty pages with the IOMMU (dirty tracking on a hardware page table) instead",
                ),
                Errno::EBUSY => err.detail("DMA logging is already on for this device"),
                _ => err,
            })
        }
    }
}

/// `VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT` of `[iova, iova + len)` into `bitmap`.
fn report_logging<S: Bound>(
    dev: &Device<S>,
    iova: u64,
    len: u64,
    page_size: u64,
    bitmap: &mut [u64],
) -> Result<()> {
    const OP: &str = "VFIO_DEVICE_FEATURE(DMA_LOGGING_REPORT)";
    let pages = len.div_ceil(page_size.max(1));
    if page_size == 0 || pages.div_ceil(64) > bitmap.len() as u64 {
        return Err(
            Error::new(ErrorKind::InvalidInput, OP, dev.name().to_string()).detail(format!(
                "{len:#x} bytes at a page size of {page_size:#x} need {} bitmap words; {} given",
                pages.div_ceil(64),
                bitmap.len()
            )),
        );
    }
    let mut w = [iova, len, page_size, bitmap.as_mut_ptr() as u64];
    // SAFETY: `bitmap` is exclusively borrowed for the call and holds at
    // least one bit per page of the range (checked above); the kernel
    // writes only inside it.
    unsafe {
        sys::vfio::device_feature_ptr(
            dev.device_fd(),
            vfio::VFIO_DEVICE_FEATURE_GET | vfio::VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
            &mut w,
        )
    }
    .map(drop)
    .map_err(|e| Error::sys(OP, dev.name().to_string(), e))
}

/// `VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP`.
fn stop_logging<S: Bound>(dev: &Device<S>) -> Result<()> {
    sys::device_feature(
        dev.device_fd(),
        vfio::VFIO_DEVICE_FEATURE_SET | vfio::VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
        &mut [],
    )
    .map(drop)
    .map_err(|e| {
        Error::sys(
            "VFIO_DEVICE_FEATURE(DMA_LOGGING_STOP)",
            dev.name().to_string(),
            e,
        )
    })
}

impl<S: Bound> DmaLogging<'_, S> {
    /// The logging granularity the device chose.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Reads and clears the log of `[iova, iova + len)` into `bitmap`, one
    /// bit per `page_size` bytes (`VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT`);
    /// the kernel only sets bits.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when `bitmap` is too small for the range.
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn report(&self, iova: u64, len: u64, page_size: u64, bitmap: &mut [u64]) -> Result<()> {
        report_logging(self.dev, iova, len, page_size, bitmap)
    }

    /// Stops logging (`VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP`).
    ///
    /// Example: [the `migration` module docs](crate::migration).
    pub fn stop(self) -> Result<()> {
        let r = self.stop_now();
        std::mem::forget(self);
        r
    }

    fn stop_now(&self) -> Result<()> {
        stop_logging(self.dev)
    }
}

impl<S: Bound> Drop for DmaLogging<'_, S> {
    fn drop(&mut self) {
        let _ = self.stop_now();
    }
}
