//! Live update: a new VMM process takes over running devices, with no
//! unbind, no re-map and no device reset.
//!
//! The old process (A) puts what it runs into a [`Handover`]: the
//! [`Iommufd`], the devices (attached), the IOASes, the mappings and any
//! other fds (the guest RAM memfd), and [`send`](Handover::send)s it over a
//! unix socket (`SCM_RIGHTS`). The new process (B), typically exec'd by A,
//! [`receive`]s it and [`adopt`](Received::adopt)s it:
//!
//! ```no_run
//! use iommufd::handover::{self, Handover};
//! # fn a(iommufd: iommufd::Iommufd, dev: iommufd::Device<iommufd::Attached>,
//! #      ram: iommufd::Mapping<()>, memfd: std::os::fd::OwnedFd,
//! #      sock: std::os::unix::net::UnixStream) -> Result<(), Box<dyn std::error::Error>> {
//! // Process A: the guest RAM was mapped by file offset (Ioas::map_file).
//! let mut h = Handover::new(iommufd)?;
//! h.device(dev)?;          // its IOAS goes with it
//! h.mapping(ram)?;         // refused if it was mapped by address
//! h.file(memfd);
//! h.send(&sock)?;          // then exit: the kernel state lives on in B's fds
//! # Ok(()) }
//! # fn b(sock: std::os::unix::net::UnixStream) -> Result<(), Box<dyn std::error::Error>> {
//! // Process B:
//! let adopted = handover::receive(&sock)?.adopt()?;
//! let dev = &adopted.devices[0];  // Device<Attached<Ioas>>, checked with the kernel
//! let memfd = &adopted.files[0];  // mmap it, or build a vm-memory region on it
//! # Ok(()) }
//! ```
//!
//! # What is checked, and what is not
//!
//! [`Received::adopt`] takes nothing on trust that the kernel can answer:
//! the iommufd fd must be an open `/dev/iommu` ([`Iommufd::adopt`]); each
//! IOAS id must be an IOAS of that iommufd ([`Ioas::adopt`]); each device
//! fd must be a bound VFIO cdev alone in its IOMMU group (the group rules
//! hold as for [`Device::from_fd`]), and its attachment is established by
//! the kernel, not read from the message ([`Device::adopt`]). Then
//! [`Iommufd::change_process`] moves the pinned-memory accounting to B.
//! None of it needs `unsafe`: everything the device can reach after the
//! handover is either memory the kernel holds through a file (the guest RAM
//! memfd) or pages A pinned, never memory B's Rust code owns as ordinary
//! memory. B reaches the guest RAM through its own mapping of the memfd,
//! which is shared with the device like any guest RAM: through volatile
//! accessors only (vm-memory's `MmapRegion::from_file`, or
//! [`Mapping`]-free code that never makes a reference into it).
//!
//! What the kernel cannot report is which iommufd a device fd is bound to,
//! and each device's `dev_id`: those come from the message (see
//! [`Device::adopt`] for why that cannot break the memory model).
//!
//! A's side of the handover is what makes it sound there: [`Handover`]
//! takes every value *by value*, and a successful [`send`](Handover::send)
//! forgets them instead of dropping them (no unmap, no `IOMMU_DESTROY`, no
//! detach, no BAR munmap in A), so the memory they own stays allocated in A
//! for as long as A lives, as a leak is. A should exit.
//!
//! # Why every mapping must be by file
//!
//! The kernel moves the accounting only of mappings made with
//! `IOMMU_IOAS_MAP_FILE`, and refuses [`Iommufd::change_process`] if any
//! mapping in any IOAS of the iommufd was made by address. A mapping by
//! address is also useless to B: it maps A's anonymous memory, which B
//! cannot reach. So [`Handover::mapping`] refuses one, naming it, before
//! anything leaves A; map guest RAM from a memfd ([`Ioas::map_file`], or a
//! shared memfd-backed vm-memory region).

use crate::device::{self, Attached, Device};
use crate::error::{range, Error, ErrorKind, Result, TransitionError};
use crate::ioas::{Ioas, Mapping};
use crate::iommufd::Iommufd;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::fmt;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// The wire format's first bytes (and version).
const MAGIC: &[u8; 8] = b"IOMMUFD\x01";
/// The most a message may carry: fds (the kernel's `SCM_MAX_FD`) and bytes.
const MAX_FDS: usize = 253;
const MAX_BYTES: usize = 64 << 10;

/// What the old process hands over: built up value by value, then
/// [`send`](Self::send). See the [module docs](self).
pub struct Handover {
    iommufd: Iommufd,
    ioases: Vec<Ioas>,
    devices: Vec<Device<Attached<Ioas>>>,
    /// (IOAS id, IOVA, length) and the mapping itself, type-erased: it is
    /// only ever forgotten (sent) or dropped (not sent).
    mappings: Vec<(u32, u64, u64, Box<dyn Send>)>,
    files: Vec<OwnedFd>,
}

impl fmt::Debug for Handover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handover")
            .field(
                "ioases",
                &self.ioases.iter().map(Ioas::id).collect::<Vec<_>>(),
            )
            .field(
                "devices",
                &self.devices.iter().map(|d| d.name()).collect::<Vec<_>>(),
            )
            .field("mappings", &self.mappings.len())
            .field("files", &self.files.len())
            .finish()
    }
}

impl Handover {
    /// Starts a handover of `iommufd`.
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] on the legacy path (no iommufd fd to hand over).
    ///
    /// Example: [the `handover` module docs](crate::handover).
    pub fn new(iommufd: Iommufd) -> std::result::Result<Self, TransitionError<Iommufd>> {
        if iommufd.iommufd_fd().is_none() {
            let e = Error::new(ErrorKind::Unsupported, "handover", "legacy container")
                .detail("the legacy VFIO container path has no iommufd to hand over");
            return Err(TransitionError::new(iommufd, e));
        }
        Ok(Handover {
            iommufd,
            ioases: Vec::new(),
            devices: Vec::new(),
            mappings: Vec::new(),
            files: Vec::new(),
        })
    }

    #[cold]
    fn foreign(&self, op: &'static str, object: String) -> Error {
        Error::new(ErrorKind::InvalidInput, op, object)
            .detail("it belongs to another iommufd than the one handed over")
    }

    fn add_ioas(&mut self, ioas: &Ioas) {
        if !self.ioases.iter().any(|i| i == ioas) {
            self.ioases.push(ioas.clone());
        }
    }

    /// Hands over IOAS `ioas` (devices and mappings add theirs themselves).
    ///
    /// # Errors
    /// An IOAS of another iommufd is handed back.
    ///
    /// Example: [the `handover` module docs](crate::handover).
    pub fn ioas(&mut self, ioas: Ioas) -> std::result::Result<(), TransitionError<Ioas>> {
        if ioas.iommufd() != &self.iommufd {
            let e = self.foreign("handover", format!("IOAS {}", ioas.id()));
            return Err(TransitionError::new(ioas, e));
        }
        self.add_ioas(&ioas);
        Ok(())
    }

    /// Hands over an attached device, and its IOAS.
    ///
    /// # Errors
    /// A device bound to another iommufd is handed back; so is one with
    /// PASIDs attached ([`ErrorKind::InvalidInput`]): the kernel has no
    /// query for a device's PASIDs, so the new process could not read them
    /// back, and its `Device` would not know they reach memory.
    ///
    /// Example: [the `handover` module docs](crate::handover).
    pub fn device(
        &mut self,
        dev: Device<Attached<Ioas>>,
    ) -> std::result::Result<(), TransitionError<Device<Attached<Ioas>>>> {
        if dev.ioas().iommufd() != &self.iommufd {
            let e = self.foreign("handover", dev.name().to_string());
            return Err(TransitionError::new(dev, e));
        }
        let first_pasid = dev.pasids().next().map(|(p, _)| p);
        if let Some(p) = first_pasid {
            let e = Error::new(ErrorKind::InvalidInput, "handover", dev.name().to_string())
                .detail(format!("{p} of the device is attached: the kernel has no query for a device's PASIDs, so the new process could not adopt them checked"))
                .hint("detach its PASIDs (Device::detach_pasid) before the handover, and attach them again in the new process");
            return Err(TransitionError::new(dev, e));
        }
        self.add_ioas(&dev.ioas().clone());
        self.devices.push(dev);
        Ok(())
    }

    /// Hands over a mapping made by file offset (its IOAS goes with it).
    ///
    /// # Errors
    /// The mapping is handed back when it was made by address
    /// ([`ErrorKind::InvalidInput`], naming it: the new process could not
    /// reach its memory, and [`Iommufd::change_process`] would refuse the
    /// whole iommufd), or is in another iommufd's IOAS.
    ///
    /// Example: [the `handover` module docs](crate::handover).
    pub fn mapping<M: Send + 'static>(
        &mut self,
        m: Mapping<M>,
    ) -> std::result::Result<(), TransitionError<Mapping<M>>> {
        match self.check_mapping(&m) {
            Ok(()) => {
                self.push_mapping(m);
                Ok(())
            }
            Err(e) => Err(TransitionError::new(m, e)),
        }
    }

    /// Whether `m` can be handed over: made by file, in this iommufd.
    fn check_mapping<M>(&self, m: &Mapping<M>) -> Result<()> {
        if m.ioas().iommufd() != &self.iommufd {
            return Err(self.foreign("handover", m.ioas().range_object(m.iova(), m.len())));
        }
        if !m.by_file() {
            return Err(by_address(m));
        }
        Ok(())
    }

    /// Takes a checked mapping, and its IOAS.
    fn push_mapping<M: Send + 'static>(&mut self, m: Mapping<M>) {
        self.add_ioas(&m.ioas().clone());
        self.mappings
            .push((m.ioas().id(), m.iova(), m.len(), Box::new(m)));
    }

    /// Hands over every guest RAM mapping (they must all be by file: shared
    /// memfd-backed regions on Linux 6.13 and later).
    ///
    /// # Errors
    /// Handed back whole when one region was mapped by address, or is in
    /// another iommufd's IOAS (named).
    #[cfg(feature = "vm-memory")]
    #[cfg_attr(docsrs, doc(cfg(feature = "vm-memory")))]
    ///
    /// Example: [the `handover` module docs](crate::handover).
    pub fn guest_memory<B: Send + Sync + 'static>(
        &mut self,
        maps: crate::GuestMappings<B>,
    ) -> std::result::Result<(), TransitionError<crate::GuestMappings<B>>> {
        let checked = maps.iter().try_for_each(|m| self.check_mapping(m));
        if let Err(e) = checked {
            return Err(TransitionError::new(maps, e));
        }
        for m in maps.into_mappings() {
            self.push_mapping(m);
        }
        Ok(())
    }

    /// Hands over any other fd (the guest RAM memfd, an eventfd).
    ///
    /// Example: [the `handover` module docs](crate::handover).
    pub fn file(&mut self, fd: impl Into<OwnedFd>) {
        self.files.push(fd.into());
    }

    /// Sends everything over `sock` in one message (`SCM_RIGHTS`), then
    /// forgets the values without dropping them: nothing is unmapped,
    /// destroyed or detached in this process, and the memory the mappings
    /// own stays allocated for as long as it lives. Exit afterwards.
    ///
    /// # Errors
    /// The handover is handed back, whole, when the message cannot be sent
    /// (too many fds or bytes, a closed socket).
    ///
    /// Example: [the `handover` module docs](crate::handover).
    pub fn send(self, sock: &UnixStream) -> std::result::Result<(), TransitionError<Handover>> {
        if let Err(e) = self.holds_every_handle() {
            return Err(TransitionError::new(self, e));
        }
        let (bytes, fds) = self.encode();
        if fds.len() > MAX_FDS || bytes.len() > MAX_BYTES {
            let e = Error::new(ErrorKind::InvalidInput, "handover", "unix socket").detail(format!(
                "{} fds and {} bytes is more than one message carries ({MAX_FDS} fds, {MAX_BYTES} bytes)",
                fds.len(),
                bytes.len()
            ));
            return Err(TransitionError::new(self, e));
        }
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let iov = [IoSlice::new(&bytes)];
        match sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) if n == bytes.len() => {}
            Ok(n) => {
                // A stream socket took part of the message: the peer holds
                // the fds but not the whole description. Nothing was
                // adopted yet; keep everything here.
                let e = Error::new(ErrorKind::Kernel, "sendmsg", "unix socket")
                    .detail(format!("only {n} of {} bytes were sent", bytes.len()));
                return Err(TransitionError::new(self, e));
            }
            Err(e) => {
                return Err(TransitionError::new(
                    self,
                    Error::sys("sendmsg", "unix socket", e),
                ))
            }
        }
        let Handover {
            iommufd,
            ioases,
            devices,
            mappings,
            files,
        } = self;
        // The kernel objects now live on through the peer's fds: dropping
        // these would unmap, destroy and detach them. Forgetting leaks their
        // memory in this process, which is safe (see the module docs).
        for (_, _, _, m) in mappings {
            std::mem::forget(m);
        }
        for d in devices {
            std::mem::forget(d);
        }
        for i in ioases {
            std::mem::forget(i);
        }
        std::mem::forget(iommufd);
        drop(files);
        Ok(())
    }

    /// Refuses a send that would leave a handle behind: after it, this
    /// process must not be able to map into, unmap from, detach or destroy
    /// anything it handed over. Clones are fine while the handover is
    /// built; at the send, every handle of the iommufd (its clones, its
    /// IOASes, bound devices) and of each IOAS (its clones, mappings,
    /// devices, HWPTs, copies) must be inside the handover. Counted from
    /// the handles' shares, so nothing is asked of the kernel.
    fn holds_every_handle(&self) -> Result<()> {
        // The handover's own handle, one per IOAS, one per bound device.
        let expected = 1 + self.ioases.len() + self.devices.len();
        let got = self.iommufd.handles();
        if got != expected {
            return Err(left_behind(
                "the iommufd",
                got - expected.min(got),
                "a clone of the Iommufd, an IOAS of it not handed over, or a device bound to it",
            ));
        }
        for ioas in &self.ioases {
            let id = ioas.id();
            let devices = self.devices.iter().filter(|d| d.ioas().id() == id).count();
            let mappings = self.mappings.iter().filter(|m| m.0 == id).count();
            let expected = 1 + devices + mappings;
            let got = ioas.handles();
            if got != expected {
                return Err(left_behind(
                    &format!("IOAS {id}"),
                    got - expected.min(got),
                    "a clone of the Ioas, a mapping in it not handed over, an HWPT on it, or a device attached to it",
                ));
            }
        }
        Ok(())
    }

    fn encode(&self) -> (Vec<u8>, Vec<RawFd>) {
        let mut b = MAGIC.to_vec();
        for n in [
            self.ioases.len(),
            self.devices.len(),
            self.mappings.len(),
            self.files.len(),
        ] {
            b.extend((n as u32).to_le_bytes());
        }
        for i in &self.ioases {
            b.extend(i.id().to_le_bytes());
        }
        for d in &self.devices {
            b.extend(
                d.inner
                    .bound
                    .as_ref()
                    .map_or(0, |(_, id)| *id)
                    .to_le_bytes(),
            );
            b.extend(d.ioas().id().to_le_bytes());
            let name = d.name().as_bytes();
            b.extend((name.len().min(u16::MAX as usize) as u16).to_le_bytes());
            b.extend(&name[..name.len().min(u16::MAX as usize)]);
        }
        for (ioas, iova, len, _) in &self.mappings {
            b.extend(ioas.to_le_bytes());
            b.extend(iova.to_le_bytes());
            b.extend(len.to_le_bytes());
        }
        let mut fds = vec![self
            .iommufd
            .iommufd_fd()
            .expect("checked in new")
            .as_raw_fd()];
        fds.extend(self.devices.iter().map(|d| d.device_fd().as_raw_fd()));
        fds.extend(self.files.iter().map(|f| f.as_raw_fd()));
        (b, fds)
    }
}

#[cold]
fn left_behind(what: &str, n: usize, which: &str) -> Error {
    Error::new(ErrorKind::Busy, "handover", what.to_string())
        .detail(format!("{n} handle(s) of {what} would stay in this process after the send ({which}), and could still act on what the new process owns"))
        .hint("hand them over too (Handover::ioas, device, mapping), or drop them before sending")
}

/// Each device fd adoptable, and no device named twice: two fds of one
/// device would become two values that each believe they alone detach it.
fn distinct_devices(devices: &[(OwnedFd, u32, u32, String)]) -> Result<()> {
    let mut names: Vec<String> = Vec::with_capacity(devices.len());
    for (dev, ..) in devices {
        let name = device::adoptable(dev)?;
        if names.contains(&name) {
            return Err(Error::new(ErrorKind::InvalidInput, "handover", name).detail(
                "the message hands this device over twice (two fds of one device): adopting both would make two owners of one kernel device",
            ));
        }
        names.push(name);
    }
    Ok(())
}

#[cold]
fn by_address<M>(m: &Mapping<M>) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        "handover",
        m.ioas().range_object(m.iova(), m.len()),
    )
    .detail("the mapping was made by address (IOMMU_IOAS_MAP), so it maps this process's memory, which the new process cannot reach, and IOMMU_IOAS_CHANGE_PROCESS would refuse the whole iommufd")
    .hint("map the memory from a memfd (Ioas::map_file, or a shared memfd-backed vm-memory region on Linux 6.13 and later) and hand the memfd over with Handover::file")
}

/// A mapping the old process made, as its message described it. It is no
/// [`Mapping`] here: the kernel holds its memory through a file; unmap it
/// with [`Ioas::unmap`] when it is no longer needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
///
/// Example: [the `handover` module docs](crate::handover).
pub struct Inherited {
    /// The IOAS id.
    pub ioas: u32,
    /// The IOVA.
    pub iova: u64,
    /// The length in bytes.
    pub len: u64,
}

impl fmt::Display for Inherited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IOAS {} {}", self.ioas, range(self.iova, self.len))
    }
}

/// A received handover, not yet checked: fds and what the message says
/// about them. [`adopt`](Self::adopt) checks it with the kernel.
#[derive(Debug)]
pub struct Received {
    iommufd: OwnedFd,
    ioases: Vec<u32>,
    /// fd, dev_id, IOAS id, name (from the message, for errors).
    devices: Vec<(OwnedFd, u32, u32, String)>,
    mappings: Vec<Inherited>,
    files: Vec<OwnedFd>,
}

/// What [`Received::adopt`] made of a handover.
#[derive(Debug)]
#[non_exhaustive]
///
/// Example: [the `handover` module docs](crate::handover).
pub struct Adopted {
    /// The iommufd, whose pinned memory this process now accounts for.
    pub iommufd: Iommufd,
    /// The IOASes, as in the message.
    pub ioases: Vec<Ioas>,
    /// The devices, attached where the message said (established with the kernel).
    pub devices: Vec<Device<Attached<Ioas>>>,
    /// Devices whose attach failed: each fd handed back (bound, DMA blocked)
    /// with the error.
    pub refused: Vec<TransitionError<OwnedFd>>,
    /// The mappings the old process made.
    pub inherited: Vec<Inherited>,
    /// The other fds, in the order they were handed over.
    pub files: Vec<OwnedFd>,
}

/// Receives one handover message from `sock` (blocking).
///
/// # Errors
/// [`ErrorKind::InvalidInput`] for a message that is not a handover, or
/// was cut short; every fd it carried is closed.
///
/// Example: [the `handover` module docs](crate::handover).
pub fn receive(sock: &UnixStream) -> Result<Received> {
    let mut buf = vec![0u8; MAX_BYTES];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| Error::sys("recvmsg", "unix socket", e))?;
    let mut fds = Vec::new();
    for c in msg
        .cmsgs()
        .map_err(|e| Error::sys("recvmsg", "unix socket", e))?
    {
        if let ControlMessageOwned::ScmRights(got) = c {
            // SAFETY: SCM_RIGHTS installed these fds in this process for
            // this message; nothing else owns them.
            fds.extend(
                got.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let n = msg.bytes;
    let truncated = msg
        .flags
        .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
    if truncated {
        return Err(bad_message("the message or its fds were cut short"));
    }
    decode(&buf[..n], fds)
}

#[cold]
fn bad_message(why: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidInput, "handover", "unix socket")
        .detail(format!("not a handover message: {}", why.into()))
}

fn decode(b: &[u8], fds: Vec<OwnedFd>) -> Result<Received> {
    let mut r = Reader(b);
    if r.take(8)? != MAGIC {
        return Err(bad_message("wrong magic or version"));
    }
    let (ni, nd, nm, nf) = (
        r.u32()? as usize,
        r.u32()? as usize,
        r.u32()? as usize,
        r.u32()? as usize,
    );
    if fds.len() != 1 + nd + nf {
        return Err(bad_message(format!(
            "{} fds for {nd} devices and {nf} files",
            fds.len()
        )));
    }
    let ioases = (0..ni).map(|_| r.u32()).collect::<Result<Vec<_>>>()?;
    let mut meta = Vec::new();
    for _ in 0..nd {
        let (dev_id, ioas) = (r.u32()?, r.u32()?);
        let len = r.u16()? as usize;
        let name = String::from_utf8_lossy(r.take(len)?).into_owned();
        if !ioases.contains(&ioas) {
            return Err(bad_message(format!(
                "device {name} names IOAS {ioas}, which was not handed over"
            )));
        }
        meta.push((dev_id, ioas, name));
    }
    let mut mappings = Vec::new();
    for _ in 0..nm {
        let m = Inherited {
            ioas: r.u32()?,
            iova: r.u64()?,
            len: r.u64()?,
        };
        mappings.push(m);
    }
    if !r.0.is_empty() {
        return Err(bad_message("trailing bytes"));
    }
    let mut fds = fds.into_iter();
    let iommufd = fds.next().expect("counted");
    let devices = meta
        .into_iter()
        .map(|(dev_id, ioas, name)| (fds.next().expect("counted"), dev_id, ioas, name))
        .collect();
    Ok(Received {
        iommufd,
        ioases,
        devices,
        mappings,
        files: fds.collect(),
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(bad_message("too short"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

impl Received {
    /// The IOAS ids the message names.
    ///
    /// Example: [the `handover` module docs](crate::handover).
    pub fn ioas_ids(&self) -> &[u32] {
        &self.ioases
    }

    /// Checks everything with the kernel and takes it over (see the
    /// [module docs](self)): the iommufd, each IOAS id, each device (bound,
    /// alone in its group); then moves the pinned-memory accounting here
    /// ([`Iommufd::change_process`]); then establishes each device's
    /// attachment ([`Device::adopt`]).
    ///
    /// # Errors
    /// Until the accounting moved, nothing has changed and the handover is
    /// handed back whole, with the first check that failed. After it, a
    /// device whose attach fails is in [`Adopted::refused`].
    pub fn adopt(self) -> std::result::Result<Adopted, TransitionError<Received>> {
        let Received {
            iommufd,
            ioases,
            devices,
            mappings,
            files,
        } = self;
        let fd = match Iommufd::adopt(iommufd) {
            Ok(fd) => fd,
            Err(e) => {
                let (iommufd, e) = e.into_parts();
                let back = Received {
                    iommufd,
                    ioases,
                    devices,
                    mappings,
                    files,
                };
                return Err(TransitionError::new(back, e));
            }
        };
        // Each IOAS id is held for its value as it is checked (a message
        // that names one twice is refused here), and the values are made
        // from what was checked, without asking the kernel again.
        let checked = ioases
            .iter()
            .map(|&id| Ioas::adoptable(&fd, id))
            .collect::<Result<Vec<_>>>()
            .and_then(|spaces| {
                distinct_devices(&devices)?;
                fd.change_process()?;
                Ok(spaces)
            });
        let spaces = match checked {
            Ok(spaces) => spaces,
            Err(e) => {
                let back = |iommufd| Received {
                    iommufd,
                    ioases,
                    devices,
                    mappings,
                    files,
                };
                // Nothing was made on it: the ids held so far dropped with
                // the error, so this handle is the only one.
                let iommufd = fd
                    .into_fd()
                    .unwrap_or_else(|_| unreachable!("no handle was made"));
                return Err(TransitionError::new(back(iommufd), e));
            }
        };
        let ioases: Vec<Ioas> = spaces
            .into_iter()
            .map(|(held, space)| Ioas::with(held, space))
            .collect();
        // What the old process mapped is mapped here too: dirty reads must
        // cover it.
        for m in &mappings {
            if let Some(i) = ioases.iter().find(|i| i.id() == m.ioas) {
                i.inherit(m.iova, m.len);
            }
        }
        let mut adopted = Vec::new();
        let mut refused = Vec::new();
        for (dev, dev_id, ioas, _) in devices {
            let ioas = ioases
                .iter()
                .find(|i| i.id() == ioas)
                .expect("decoded: named IOASes only");
            match Device::adopt(dev, ioas, dev_id) {
                Ok(d) => adopted.push(d),
                Err(e) => refused.push(e),
            }
        }
        Ok(Adopted {
            iommufd: fd,
            ioases,
            devices: adopted,
            refused,
            inherited: mappings,
            files,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages that are not handovers are refused, and their fds closed.
    #[test]
    fn malformed_messages_are_refused() {
        let null = || OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let mut ok = MAGIC.to_vec();
        for n in [1u32, 0, 1, 0] {
            ok.extend(n.to_le_bytes());
        }
        ok.extend(7u32.to_le_bytes());
        ok.extend(7u32.to_le_bytes());
        ok.extend(0x1000u64.to_le_bytes());
        ok.extend(0x2000u64.to_le_bytes());
        let r = decode(&ok, vec![null()]).unwrap();
        assert_eq!(r.ioas_ids(), &[7]);
        assert_eq!(
            r.mappings,
            vec![Inherited {
                ioas: 7,
                iova: 0x1000,
                len: 0x2000
            }]
        );
        for (bytes, fds, why) in [
            (b"IOMMUFD\x02".to_vec(), 1, "magic"),
            (ok[..ok.len() - 1].to_vec(), 1, "too short"),
            ([ok.clone(), vec![0]].concat(), 1, "trailing"),
            (ok.clone(), 2, "fds for"),
            (ok.clone(), 0, "fds for"),
        ] {
            let e = decode(&bytes, (0..fds).map(|_| null()).collect()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{why}: {e}");
            assert!(e.to_string().contains(why), "{why}: {e}");
        }
        // A device naming an IOAS that was not handed over.
        let mut dev = MAGIC.to_vec();
        for n in [0u32, 1, 0, 0] {
            dev.extend(n.to_le_bytes());
        }
        dev.extend(1u32.to_le_bytes());
        dev.extend(9u32.to_le_bytes());
        dev.extend(2u16.to_le_bytes());
        dev.extend(b"d0");
        let e = decode(&dev, vec![null(), null()]).unwrap_err();
        assert!(e.to_string().contains("IOAS 9"), "{e}");
    }

    /// A handover survives a real socket round trip (no devices: those
    /// are the guest test's).
    #[test]
    fn an_empty_handover_round_trips_with_its_files() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let (bytes, _) = {
            let mut m = MAGIC.to_vec();
            for n in [0u32, 0, 0, 1] {
                m.extend(n.to_le_bytes());
            }
            (m, ())
        };
        let fds = [file.as_raw_fd(), file.as_raw_fd()];
        sendmsg::<()>(
            a.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let r = receive(&b).unwrap();
        assert_eq!(r.files.len(), 1);
        assert!(r.devices.is_empty());
        // Not an iommufd: adopt hands it back, whole.
        let e = r.adopt().unwrap_err();
        // InvalidInput here; NoIommufd on a host without /dev/iommu.
        assert!(
            matches!(
                e.error().kind(),
                ErrorKind::InvalidInput | ErrorKind::NoIommufd
            ),
            "{}",
            e.error()
        );
        assert_eq!(e.into_inner().files.len(), 1);
    }
}
