//! Errors: what failed (the operation), on what (BDF, IOAS id, IOVA range), the
//! errno, and, when the cause is a setup problem, what to do about it.
//!
//! # Example
//!
//! ```no_run
//! use iommufd::{Device, ErrorKind, Iommufd};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fd = Iommufd::open()?;
//! match Device::open("0000:00:02.0")?.bind(&fd) {
//!     Ok(dev) => drop(dev),
//!     Err(e) if e.error().kind() == ErrorKind::GroupNotViable => {
//!         eprintln!("{}", e.error()); // names the sibling and how to rebind it
//!         let _dev = e.into_inner(); // still Device<Unbound>, same fd
//!     }
//!     Err(e) => return Err(e.into()), // or `?`: io::Error and Box<dyn Error> both work
//! }
//! # Ok(()) }
//! ```

use nix::errno::Errno;
use std::fmt;

/// What kind of problem an [`Error`] is, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
///
/// Example: [the `error` module docs](crate::error).
pub enum ErrorKind {
    /// The device is not bound to `vfio-pci` (no `vfio-dev/` in sysfs).
    NotVfioPci,
    /// `/dev/iommu` is missing: the kernel lacks `CONFIG_IOMMUFD`.
    NoIommufd,
    /// `/dev/vfio/devices/` is missing: the kernel lacks `CONFIG_VFIO_DEVICE_CDEV`.
    NoDeviceCdev,
    /// The device shares its IOMMU group with other devices: use [`crate::Group`].
    MultiDeviceGroup,
    /// Some member of the IOMMU group is on a driver that does its own DMA.
    GroupNotViable,
    /// The platform has no interrupt remapping, so MSI is not isolated.
    NoInterruptRemapping,
    /// Pinning the memory would exceed `RLIMIT_MEMLOCK`: the limit is finite
    /// and the process lacks `CAP_IPC_LOCK`.
    MemlockLimit,
    /// The kernel could not allocate what the operation needed (memory
    /// pressure, or an injected fault), with no memlock limit to blame.
    OutOfMemory,
    /// The IOVA range overlaps an existing mapping.
    Overlap,
    /// The address or length is not aligned as the IOAS requires.
    Alignment,
    /// The IOVA range is outside the ranges the IOAS can map.
    OutOfRange,
    /// Nothing is mapped exactly at that range (partial unmaps are refused).
    NotMapped,
    /// The object is in use (an IOAS with devices attached, a group held elsewhere).
    Busy,
    /// The group is held by the other VFIO path (cdev vs legacy container).
    PathConflict,
    /// This kernel, or this path (legacy container), lacks the operation.
    Unsupported,
    /// A name (a cdev path) that once reached this device now reaches
    /// another: a symlink retargeted, a node renamed, a `vfioN` reused.
    DeviceChanged,
    /// An SR-IOV VF whose PF is owned by a VFIO user: a VF token is needed
    /// (`EACCES`), was wrong, or this kernel cannot check one on the cdev.
    VfToken,
    /// The argument is invalid for another reason.
    InvalidInput,
    /// The kernel refused the operation for a reason this crate does not classify.
    Kernel,
}

/// An error from this crate.
///
/// Its `Display` reads as one sentence: the operation, the object, the errno,
/// the detail, and a hint when the cause is a setup problem.
#[derive(Debug, Clone)]
///
/// Example: [the `error` module docs](crate::error).
pub struct Error(Box<Inner>);

#[derive(Debug, Clone)]
struct Inner {
    kind: ErrorKind,
    op: &'static str,
    object: String,
    errno: Option<Errno>,
    detail: Option<String>,
    hint: Option<String>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, op: &'static str, object: impl Into<String>) -> Self {
        Error(Box::new(Inner {
            kind,
            op,
            object: object.into(),
            errno: None,
            detail: None,
            hint: None,
        }))
    }

    /// A failed system call, classified by errno as `Kernel` unless refined later.
    pub(crate) fn sys(op: &'static str, object: impl Into<String>, errno: Errno) -> Self {
        let kind = match errno {
            Errno::EBUSY => ErrorKind::Busy,
            _ => ErrorKind::Kernel,
        };
        Error::new(kind, op, object).errno(errno)
    }

    pub(crate) fn errno(mut self, errno: Errno) -> Self {
        self.0.errno = Some(errno);
        self
    }

    pub(crate) fn kind_(mut self, kind: ErrorKind) -> Self {
        self.0.kind = kind;
        self
    }

    pub(crate) fn detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.0.hint = Some(hint.into());
        self
    }

    pub(crate) fn with_object(mut self, object: String) -> Self {
        self.0.object = object;
        self
    }

    pub(crate) fn append_detail(mut self, more: String) -> Self {
        self.0.detail = Some(match self.0.detail.take() {
            Some(d) => format!("{d}; {more}"),
            None => more,
        });
        self
    }

    /// The kind of problem.
    ///
    /// Example: [the `error` module docs](crate::error).
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The operation that failed, e.g. `"VFIO_DEVICE_BIND_IOMMUFD"` or `"open"`.
    ///
    /// Example: [the `error` module docs](crate::error).
    pub fn operation(&self) -> &'static str {
        self.0.op
    }

    /// The object it failed on: a BDF, a path, an IOAS id, an IOVA range.
    ///
    /// Example: [the `error` module docs](crate::error).
    pub fn object(&self) -> &str {
        &self.0.object
    }

    /// The errno the kernel returned, when a system call failed.
    ///
    /// Example: [the `error` module docs](crate::error).
    pub fn raw_errno(&self) -> Option<Errno> {
        self.0.errno
    }

    /// What to do about it, when the cause is a setup problem.
    ///
    /// Example: [the `error` module docs](crate::error).
    pub fn help(&self) -> Option<&str> {
        self.0.hint.as_deref()
    }

    /// More about the cause (the overlapping range, the usable IOVA ranges, ...).
    ///
    /// Example: [the `error` module docs](crate::error).
    pub fn details(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.0;
        write!(f, "{} on {} failed", s.op, s.object)?;
        if let Some(e) = s.errno {
            write!(f, ": {e}")?;
        }
        if let Some(d) = &s.detail {
            write!(f, ": {d}")?;
        }
        if let Some(h) = &s.hint {
            write!(f, "; help: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .errno
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        let kind = match e.0.errno {
            Some(errno) => std::io::Error::from(errno).kind(),
            None => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

/// A failed transition: the error, and the value handed back in the state it was in.
///
/// Like [`std::io::IntoInnerError`], it implements [`std::error::Error`] and
/// converts into [`Error`] (dropping the value) so `?` works in functions that
/// return `Result<_, iommufd::Error>`. To keep the value, match on it and call
/// [`into_inner`](Self::into_inner).
///
/// Unless a method's `# Errors` section says otherwise, the value is exactly
/// as it was before the call: same fd, same kernel state. Where the kernel
/// may leave the value elsewhere (a failed replace), the value is a
/// [`Fallback`] that says where.
pub struct TransitionError<T> {
    value: T,
    error: Error,
}

impl<T> TransitionError<T> {
    pub(crate) fn new(value: T, error: Error) -> Self {
        TransitionError { value, error }
    }

    /// The error.
    ///
    /// Example: [the `error` module docs](crate::error).
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The value handed back, in its previous state.
    ///
    /// Example: [the `error` module docs](crate::error).
    pub fn into_inner(self) -> T {
        self.value
    }

    /// Both halves.
    ///
    /// Example: [the `error` module docs](crate::error).
    pub fn into_parts(self) -> (T, Error) {
        (self.value, self.error)
    }
}

impl<T: fmt::Debug> fmt::Debug for TransitionError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransitionError")
            .field("value", &self.value)
            .field("error", &self.error)
            .finish()
    }
}

impl<T> fmt::Display for TransitionError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (the value was handed back)", self.error)
    }
}

impl<T: fmt::Debug> std::error::Error for TransitionError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<T> From<TransitionError<T>> for Error {
    fn from(e: TransitionError<T>) -> Self {
        e.error
    }
}

impl<T> From<TransitionError<T>> for std::io::Error {
    fn from(e: TransitionError<T>) -> Self {
        e.error.into()
    }
}

/// Where a failed transition left a value whose old state the kernel may
/// have lost on the way (a failed [`replace`](crate::Device::replace)).
///
/// The crate re-establishes the old state (detach, then attach to the old
/// IOAS again) before it hands the value back, and hands back what is true:
/// the old state when that worked (`Kept`, the usual case), the blocking
/// state when the kernel could not attach it again (`Blocked`), and nothing
/// when it could not even detach (`Closed`: the fds were closed, which
/// returns the devices to the kernel).
#[derive(Debug)]
pub enum Fallback<A, B> {
    /// In its old state: still, or again, attached to the old IOAS.
    Kept(A),
    /// Blocked: the old attachment was lost and could not be made again.
    Blocked(B),
    /// Closed: the kernel refused the way back, so nothing is handed back.
    Closed,
}

impl<A, B> Fallback<A, B> {
    /// The value in its old state, if it is there.
    ///
    /// Example: [the `error` module docs](crate::error).
    pub fn kept(self) -> Option<A> {
        match self {
            Fallback::Kept(a) => Some(a),
            _ => None,
        }
    }

    /// The value in the blocking state, if it fell back there.
    ///
    /// Example: [the `error` module docs](crate::error).
    pub fn blocked(self) -> Option<B> {
        match self {
            Fallback::Blocked(b) => Some(b),
            _ => None,
        }
    }
}

/// `Result` with this crate's [`Error`].
///
/// Example: [the `error` module docs](crate::error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats an IOVA range `[iova, iova + len)` as the kernel's inclusive
/// `[start, last]`; one that is empty or wraps past 2^64 as what was asked.
pub(crate) fn range(iova: u64, len: u64) -> String {
    match len.checked_sub(1).map(|l| iova.checked_add(l)) {
        Some(Some(last)) => format!("IOVA [{iova:#x}, {last:#x}]"),
        Some(None) => format!("IOVA {iova:#x} + {len:#x} bytes (past 2^64)"),
        None => format!("IOVA {iova:#x} + 0 bytes"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges_print_what_was_asked() {
        assert_eq!(super::range(0x1000, 0x1000), "IOVA [0x1000, 0x1fff]");
        assert_eq!(
            super::range(0xffff_ffff_ffff_f000, 0x1000),
            "IOVA [0xfffffffffffff000, 0xffffffffffffffff]"
        );
        assert_eq!(
            super::range(0xffff_ffff_ffff_f000, 0x2000),
            "IOVA 0xfffffffffffff000 + 0x2000 bytes (past 2^64)"
        );
        assert_eq!(super::range(0x1000, 0), "IOVA 0x1000 + 0 bytes");
    }
}
