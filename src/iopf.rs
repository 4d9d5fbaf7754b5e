//! I/O page faults (`IOMMU_FAULT_QUEUE_ALLOC`): a queue a nested HWPT
//! reports its devices' page requests to, read as typed records from an fd
//! a VMM can poll, and answered.
//!
//! ```no_run
//! use iommufd::hwpt::{Hwpt, NestParent, Nested, Stage1};
//! use iommufd::iopf::{FaultQueue, Response};
//! # fn f(dev: &iommufd::Device<iommufd::BlockDma>, s2: &Hwpt<NestParent>, s1: &Stage1) -> iommufd::Result<()> {
//! let faults = FaultQueue::alloc(dev.iommufd())?;
//! let s1 = Hwpt::<Nested>::alloc_nested_with_faults(dev, s2, s1, &faults)?;
//! // poll(faults.as_fd()) in the VMM's event loop, then:
//! for f in faults.read()? {
//!     // ... forward to the guest's vIOMMU, get its answer ...
//!     faults.respond(&f, Response::Success)?;
//! }
//! # drop(s1); Ok(()) }
//! ```

use crate::error::{Error, ErrorKind, Result};
use crate::iommufd::Iommufd;
use nix::errno::Errno;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

struct Inner {
    iommufd: Iommufd,
    id: u32,
    /// Closed in `drop` before the object is destroyed: the kernel refuses
    /// `IOMMU_DESTROY` (`EBUSY`) while the fd holds its reference.
    fd: std::mem::ManuallyDrop<OwnedFd>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once, and nothing uses `fd` after it.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.fd) };
        // Every HWPT reporting to it holds a handle, so none is left; the
        // fd (closed just above) held the kernel's last other reference.
        self.iommufd.ctx().destroy(self.id);
    }
}

/// A fault queue: an iommufd object and the fd its faults are read from. A
/// handle; the HWPTs that report to it hold one.
#[derive(Clone)]
pub struct FaultQueue(Arc<Inner>);

impl fmt::Debug for FaultQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultQueue")
            .field("id", &self.0.id)
            .finish()
    }
}

/// One page request a device made (`struct iommu_hwpt_pgfault`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageFault {
    /// The device's id in the iommufd.
    pub dev_id: u32,
    /// The PASID, when the request carried one.
    pub pasid: Option<u32>,
    /// The page request group.
    pub grpid: u32,
    /// `IOMMU_PGFAULT_PERM_*` asked for (1 read, 2 write, 4 exec, 8 priv).
    pub perm: u32,
    /// The faulting address.
    pub addr: u64,
    /// Its length.
    pub length: u32,
    /// Whether it is the last fault of its group (the one to answer).
    pub last: bool,
    cookie: u32,
}

/// How a page request was handled (`enum iommufd_page_response_code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// The page is there now: the device retries.
    Success,
    /// It will not be: the device gets an error.
    Invalid,
}

/// `sizeof(struct iommu_hwpt_pgfault)`: the kernel reads and writes whole records.
const RECORD: usize = std::mem::size_of::<crate::sys::IommuHwptPgfault>();

impl FaultQueue {
    /// Allocates a fault queue in `iommufd`.
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] on the legacy path and before 6.11.
    #[doc(alias = "IOMMU_FAULT_QUEUE_ALLOC")]
    pub fn alloc(iommufd: &Iommufd) -> Result<FaultQueue> {
        match iommufd.ctx().fault_queue_alloc() {
            Ok((id, fd)) => Ok(FaultQueue(Arc::new(Inner {
                iommufd: iommufd.clone(),
                id,
                fd: std::mem::ManuallyDrop::new(fd),
            }))),
            Err(e) => {
                let err = Error::sys("IOMMU_FAULT_QUEUE_ALLOC", "iommufd", e);
                Err(if e == Errno::ENOTTY {
                    err.kind_(ErrorKind::Unsupported).detail(
                        "no fault queues here: the legacy container path, or a kernel before 6.11",
                    )
                } else {
                    err
                })
            }
        }
    }

    /// The iommufd it lives in.
    pub(crate) fn iommufd(&self) -> &Iommufd {
        &self.0.iommufd
    }

    /// Its id in the iommufd.
    pub fn id(&self) -> u32 {
        self.0.id
    }

    /// Reads the faults queued now, up to 64 (blocks while there are none:
    /// poll [`as_fd`](AsFd::as_fd) first in an event loop).
    pub fn read(&self) -> Result<Vec<PageFault>> {
        let mut buf = [0u8; RECORD * 64];
        let n = nix::unistd::read(&*self.0.fd, &mut buf)
            .map_err(|e| Error::sys("read", format!("fault queue {}", self.0.id), e))?;
        let word =
            |r: &[u8], o: usize| u32::from_ne_bytes(r[o..o + 4].try_into().expect("4 bytes"));
        Ok(buf[..n - n % RECORD]
            .chunks(RECORD)
            .map(|r| {
                let flags = word(r, 0);
                PageFault {
                    dev_id: word(r, 4),
                    pasid: (flags & 1 != 0).then(|| word(r, 8)),
                    grpid: word(r, 12),
                    perm: word(r, 16),
                    addr: u64::from_ne_bytes(r[24..32].try_into().expect("8 bytes")),
                    length: word(r, 32),
                    last: flags & 2 != 0,
                    cookie: word(r, 36),
                }
            })
            .collect())
    }

    /// Answers `fault`'s group (`struct iommu_hwpt_page_response`).
    pub fn respond(&self, fault: &PageFault, code: Response) -> Result<()> {
        let code: u32 = match code {
            Response::Success => 0,
            Response::Invalid => 1,
        };
        let mut rec = [0u8; 8];
        rec[..4].copy_from_slice(&fault.cookie.to_ne_bytes());
        rec[4..].copy_from_slice(&code.to_ne_bytes());
        nix::unistd::write(&*self.0.fd, &rec)
            .map(drop)
            .map_err(|e| Error::sys("write", format!("fault queue {}", self.0.id), e))
    }
}

impl AsFd for FaultQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.fd.as_fd()
    }
}
