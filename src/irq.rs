//! Interrupts: `VFIO_DEVICE_GET_IRQ_INFO` and `VFIO_DEVICE_SET_IRQS`.
//!
//! # Example
//!
//! ```no_run
//! use iommufd::{pci, EventFd};
//! # fn f(dev: &iommufd::Device<iommufd::Attached>) -> iommufd::Result<()> {
//! let msix = dev.irq_info(pci::MSIX_IRQ)?;
//! let evs: Vec<EventFd> = (0..msix.count).map(|_| EventFd::new()).collect::<Result<_, _>>()?;
//! dev.set_irq_eventfds(pci::MSIX_IRQ, 0, &evs)?;      // every vector
//! dev.set_irq_routes(pci::MSIX_IRQ, 2, &[None::<&EventFd>])?; // vector 2 unrouted
//! if evs[0].wait(std::time::Duration::from_secs(1))? > 0 { /* vector 0 fired */ }
//! let unplug = EventFd::new()?;
//! dev.set_release_request_eventfd(&unplug)?;
//! dev.disable_irqs(pci::MSIX_IRQ)?;
//! # Ok(()) }
//! ```

use crate::device::{Bound, Device};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, vfio};
use nix::errno::Errno;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::Ordering;

/// One IRQ index (`struct vfio_irq_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
///
/// Example: [the `irq` module docs](crate::irq).
pub struct IrqInfo {
    /// The index (see [`crate::pci`]: INTx 0, MSI 1, MSI-X 2, ERR 3, REQ 4).
    pub index: u32,
    /// How many vectors it has (0: not supported).
    pub count: u32,
    /// Raw `VFIO_IRQ_INFO_*` flags.
    pub flags: u32,
}

impl IrqInfo {
    /// Signalled through an eventfd.
    ///
    /// Example: [the `irq` module docs](crate::irq).
    pub fn eventfd(&self) -> bool {
        self.flags & vfio::VFIO_IRQ_INFO_EVENTFD != 0
    }
    /// Can be masked.
    ///
    /// Example: [the `irq` module docs](crate::irq).
    pub fn maskable(&self) -> bool {
        self.flags & vfio::VFIO_IRQ_INFO_MASKABLE != 0
    }
    /// Masked by the kernel when it fires (level-triggered INTx): unmask after handling.
    ///
    /// Example: [the `irq` module docs](crate::irq).
    pub fn automasked(&self) -> bool {
        self.flags & vfio::VFIO_IRQ_INFO_AUTOMASKED != 0
    }
}

impl<S: Bound> Device<S> {
    /// `VFIO_DEVICE_GET_IRQ_INFO` for `index`.
    #[doc(alias = "VFIO_DEVICE_GET_IRQ_INFO")]
    ///
    /// Example: [the `irq` module docs](crate::irq).
    pub fn irq_info(&self, index: u32) -> Result<IrqInfo> {
        let mut arg = vfio::vfio_irq_info {
            argsz: sys::argsz::<vfio::vfio_irq_info>(),
            index,
            ..Default::default()
        };
        sys::ioctl(
            self.device_fd(),
            sys::raw::vfio_device_get_irq_info,
            &mut arg,
        )
        .map_err(|e| {
            let err = Error::sys(
                "VFIO_DEVICE_GET_IRQ_INFO",
                format!("{} irq index {index}", self.name()),
                e,
            );
            match (e, self.info()) {
                (Errno::EINVAL, Ok(i)) if index >= i.num_irqs => {
                    err.kind_(ErrorKind::InvalidInput).detail(format!(
                        "the device has irq indexes 0 to {}",
                        i.num_irqs.saturating_sub(1)
                    ))
                }
                _ => err,
            }
        })?;
        Ok(IrqInfo {
            index,
            count: arg.count,
            flags: arg.flags,
        })
    }

    fn set_irqs(
        &self,
        what: &'static str,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        data: impl IntoIterator<Item = u32, IntoIter: ExactSizeIterator>,
    ) -> Result<()> {
        let data = data.into_iter();
        // The header and the data as the ioctl takes them: on the stack for
        // up to `STACK - 5` vectors (a VMM re-routing one vector pays no
        // allocation), in one allocation past that.
        const STACK: usize = 37;
        let header = [0u32, flags, index, start, count];
        let n = 5 + data.len();
        let mut small = [0u32; STACK];
        let mut big = Vec::new();
        let buf: &mut [u32] = if n <= STACK {
            small[..5].copy_from_slice(&header);
            for (slot, v) in small[5..n].iter_mut().zip(data) {
                *slot = v;
            }
            &mut small[..n]
        } else {
            big.reserve_exact(n);
            big.extend_from_slice(&header);
            big.extend(data);
            &mut big
        };
        match sys::set_irqs(self.device_fd(), buf) {
            Ok(0) => Ok(()),
            // The kernel's contract is 0 or -1; vfio-pci passes up the count
            // `pci_alloc_irq_vectors` managed when it is short of the vectors
            // asked for, after giving them back. Not a success.
            Ok(got) => Err(self.set_irqs_short(what, index, start, count, got)),
            Err(e) => Err(self.set_irqs_error(what, index, flags, start, count, e)),
        }
    }

    /// A `VFIO_DEVICE_SET_IRQS` that returned a positive count.
    #[cold]
    fn set_irqs_short(
        &self,
        what: &'static str,
        index: u32,
        start: u32,
        count: u32,
        got: i32,
    ) -> Error {
        let end = u64::from(start) + u64::from(count);
        Error::new(
            ErrorKind::Kernel,
            what,
            format!("{} irq index {index} vectors {start}..{end}", self.name()),
        )
        .errno(Errno::ENOSPC)
        .detail(format!(
            "the kernel returned {got} instead of 0: it could allocate only {got} interrupt vector(s) for the index, gave them back, and routed nothing; the index is not enabled now"
        ))
        .hint("interrupt vectors (or interrupt-remapping entries) ran short on the host: retry, or route fewer vectors")
    }

    /// Explains a refused `VFIO_DEVICE_SET_IRQS` from the index's info.
    /// (An fd that is no eventfd is named by [`not_an_eventfd`].)
    #[cold]
    fn set_irqs_error(
        &self,
        what: &'static str,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        e: Errno,
    ) -> Error {
        let end = u64::from(start) + u64::from(count);
        let err = Error::sys(
            what,
            format!("{} irq index {index} vectors {start}..{end}", self.name()),
            e,
        );
        if e != Errno::EINVAL && e != Errno::ENOTTY {
            return err;
        }
        let bad = |d: String| err.clone().kind_(ErrorKind::InvalidInput).detail(d);
        if count == 0 && flags & vfio::VFIO_IRQ_SET_DATA_NONE != 0 && e == Errno::EINVAL {
            return bad(format!(
                "irq index {index} is not enabled: there is nothing to disable"
            ));
        }
        match self.irq_info(index) {
            Err(ie) if ie.kind() == ErrorKind::InvalidInput => {
                bad(ie.details().unwrap_or_default().to_string())
            }
            Ok(i) if end > u64::from(i.count) => bad(format!(
                "irq index {index} has {} vector(s): 0..{}",
                i.count, i.count
            )),
            Ok(i) if flags & (vfio::VFIO_IRQ_SET_ACTION_MASK | vfio::VFIO_IRQ_SET_ACTION_UNMASK) != 0
                && !i.maskable() =>
            {
                bad(format!("irq index {index} cannot be masked through VFIO (MSI and MSI-X vectors are masked in the device's own tables, or left unrouted with set_irq_routes)"))
            }
            _ => err,
        }
    }

    /// Routes vectors `start..start + fds.len()` of `index` to eventfds
    /// (`ACTION_TRIGGER | DATA_EVENTFD`), enabling them (MSI/MSI-X: the kernel
    /// programs the device; INTx: the line is enabled).
    ///
    /// `fds` are any file descriptors the caller holds: this crate's
    /// [`EventFd`], a `BorrowedFd`, or a VMM's own eventfd type
    /// (`vmm_sys_util::eventfd::EventFd`, which is `AsRawFd`), passed as they
    /// are. The kernel takes its own reference to each eventfd, and checks
    /// that it is one (`EBADF`/`EINVAL` otherwise).
    #[doc(alias = "VFIO_DEVICE_SET_IRQS")]
    ///
    /// Example: [the `irq` module docs](crate::irq).
    pub fn set_irq_eventfds<F: AsRawFd>(&self, index: u32, start: u32, fds: &[F]) -> Result<()> {
        self.route(index, start, fds.len(), fds.iter().map(|f| f.as_raw_fd()))
    }

    /// Routes vectors `start..start + routes.len()` of `index` one by one:
    /// `Some(fd)` routes the vector to that eventfd, `None` takes its
    /// eventfd away while the index stays enabled (a sparse route: MSI-X
    /// vectors a guest masked, or never programmed). Vectors outside the
    /// range keep their routes, so a VMM re-routes one vector without
    /// touching the others.
    ///
    /// ```no_run
    /// # fn f(dev: &iommufd::Device<iommufd::Attached>, ev: [iommufd::EventFd; 2]) -> iommufd::Result<()> {
    /// use iommufd::pci::MSIX_IRQ;
    /// // Vectors 0 and 3 routed, 1 and 2 enabled but unrouted.
    /// dev.set_irq_routes(MSIX_IRQ, 0, &[Some(&ev[0]), None, None, Some(&ev[1])])?;
    /// // Later: vector 1 gets an eventfd; 0, 2 and 3 keep theirs.
    /// dev.set_irq_routes(MSIX_IRQ, 1, &[Some(&ev[0])])?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`set_irq_eventfds`](Self::set_irq_eventfds).
    #[doc(alias = "VFIO_DEVICE_SET_IRQS")]
    pub fn set_irq_routes<F: AsRawFd>(
        &self,
        index: u32,
        start: u32,
        routes: &[Option<F>],
    ) -> Result<()> {
        let fds = routes
            .iter()
            .map(|r| r.as_ref().map_or(-1, |f| f.as_raw_fd()));
        self.route(index, start, routes.len(), fds)
    }

    /// `ACTION_TRIGGER | DATA_EVENTFD` for `n` vectors from `start`; fd -1
    /// leaves a vector unrouted.
    #[inline]
    fn route(
        &self,
        index: u32,
        start: u32,
        n: usize,
        fds: impl ExactSizeIterator<Item = std::os::fd::RawFd> + Clone,
    ) -> Result<()> {
        // No IRQ index has more than 2048 vectors (MSI-X); a longer slice
        // would not even fit the ioctl's 32-bit size field.
        let Some(count) = u32::try_from(n).ok().filter(|&n| n > 0 && n <= 1 << 16) else {
            return Err(self.no_route_count(index, n));
        };
        let bit = 1u8.checked_shl(index).unwrap_or(0);
        match self.set_irqs(
            "VFIO_DEVICE_SET_IRQS(eventfd)",
            index,
            vfio::VFIO_IRQ_SET_DATA_EVENTFD | vfio::VFIO_IRQ_SET_ACTION_TRIGGER,
            start,
            count,
            fds.clone().map(|f| f as u32),
        ) {
            Ok(()) => {
                self.inner.irqs_on.fetch_or(bit, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(self.route_error(e, index, start, count, bit, fds)),
        }
    }

    /// A failed routing, with what the kernel left of the routes: for MSI
    /// and MSI-X, vfio-pci (`vfio_msi_set_block`) unroutes the vectors it
    /// had reached when one fails, and turns the index off again when the
    /// call was enabling it.
    #[cold]
    fn route_error(
        &self,
        e: Error,
        index: u32,
        start: u32,
        count: u32,
        bit: u8,
        fds: impl Iterator<Item = std::os::fd::RawFd>,
    ) -> Error {
        if matches!(e.raw_errno(), Some(Errno::EINVAL | Errno::EBADF)) {
            if let Some(why) = not_an_eventfd(fds) {
                return e
                    .kind_(ErrorKind::InvalidInput)
                    .detail(why)
                    .hint("route vectors to eventfds (iommufd::EventFd, or a VMM's own)");
            }
        }
        if index != crate::pci::MSI_IRQ && index != crate::pci::MSIX_IRQ {
            return e;
        }
        let end = u64::from(start) + u64::from(count);
        if self.inner.irqs_on.load(Ordering::Relaxed) & bit == 0 {
            e.append_detail(
                "the index was not enabled through this device value, so the kernel turned it off again: no vector is routed".into(),
            )
        } else {
            e.append_detail(format!(
                "the index stays enabled; the kernel may have unrouted the vectors from {start} up to the one that failed (it does not say which, nor whether it got that far), the rest of {start}..{end} keep their old routes, and so does every other vector: route the range again"
            ))
        }
    }

    #[cold]
    fn no_route_count(&self, index: u32, n: usize) -> Error {
        Error::new(
            ErrorKind::InvalidInput,
            "VFIO_DEVICE_SET_IRQS(eventfd)",
            format!("{} irq index {index}", self.name()),
        )
        .detail(if n == 0 {
            "no eventfd given: nothing to route".to_string()
        } else {
            format!("{n} eventfds: no IRQ index has that many vectors")
        })
        .hint(if n == 0 {
            "to turn the index off, use disable_irqs; to unroute a vector, pass None for it in set_irq_routes"
        } else {
            "route at most as many vectors as irq_info reports"
        })
    }
    /// Routes the device's *release request* (REQ, irq index 4) to `fd`.
    ///
    /// vfio-pci signals it when the kernel wants the device back while this
    /// process holds it: a hot-unplug of the device (a `device_del` in the
    /// host's VMM, the attention button, `echo 0 > .../slots/N/power`), its
    /// unbind from vfio-pci through sysfs, or the removal of its SR-IOV VF.
    /// The kernel's removal then *waits* until every fd of the device is
    /// closed, signalling again every 10 s or so. A VMM answers by
    /// hot-unplugging the device from its guest, then closing it (drop the
    /// [`Device`], or [`Device::close`]); the removal completes then.
    ///
    /// # Errors
    /// As [`set_irq_eventfds`](Self::set_irq_eventfds); `InvalidInput` when
    /// the device has no REQ index (not vfio-pci).
    #[doc(alias = "VFIO_PCI_REQ_IRQ_INDEX")]
    pub fn set_release_request_eventfd<F: AsRawFd>(&self, fd: &F) -> Result<()> {
        self.set_irq_eventfds(crate::pci::REQ_IRQ, 0, std::slice::from_ref(fd))
    }

    /// Routes the device's *error* interrupt (ERR, irq index 3) to `fd`: vfio-pci signals it from its PCIe AER handler when the
    /// device reports an uncorrectable error. Until the VMM resets the
    /// device ([`Device::reset`], [`Device::hot_reset`]) its MMIO may
    /// return all-ones and its DMA may be lost; a VMM usually forwards the
    /// error to its guest, whose driver recovers.
    ///
    /// # Errors
    /// As [`set_irq_eventfds`](Self::set_irq_eventfds).
    #[doc(alias = "VFIO_PCI_ERR_IRQ_INDEX")]
    pub fn set_error_eventfd<F: AsRawFd>(&self, fd: &F) -> Result<()> {
        self.set_irq_eventfds(crate::pci::ERR_IRQ, 0, std::slice::from_ref(fd))
    }

    /// Disables every vector of `index` (`DATA_NONE | ACTION_TRIGGER`, count 0).
    ///
    /// Example: [the `irq` module docs](crate::irq).
    pub fn disable_irqs(&self, index: u32) -> Result<()> {
        self.set_irqs(
            "VFIO_DEVICE_SET_IRQS(disable)",
            index,
            vfio::VFIO_IRQ_SET_DATA_NONE | vfio::VFIO_IRQ_SET_ACTION_TRIGGER,
            0,
            0,
            [],
        )?;
        let bit = 1u8.checked_shl(index).unwrap_or(0);
        self.inner.irqs_on.fetch_and(!bit, Ordering::Relaxed);
        Ok(())
    }

    /// Masks vectors `start..start + count` of `index`.
    ///
    /// Example: [the `irq` module docs](crate::irq).
    pub fn mask_irqs(&self, index: u32, start: u32, count: u32) -> Result<()> {
        self.set_irqs(
            "VFIO_DEVICE_SET_IRQS(mask)",
            index,
            vfio::VFIO_IRQ_SET_DATA_NONE | vfio::VFIO_IRQ_SET_ACTION_MASK,
            start,
            count,
            [],
        )
    }

    /// Unmasks vectors `start..start + count` of `index`.
    ///
    /// Example: [the `irq` module docs](crate::irq).
    pub fn unmask_irqs(&self, index: u32, start: u32, count: u32) -> Result<()> {
        self.set_irqs(
            "VFIO_DEVICE_SET_IRQS(unmask)",
            index,
            vfio::VFIO_IRQ_SET_DATA_NONE | vfio::VFIO_IRQ_SET_ACTION_UNMASK,
            start,
            count,
            [],
        )
    }

    /// Fires vectors `start..start + count` of `index` from software (loopback
    /// test of the eventfd wiring).
    ///
    /// Example: [the `irq` module docs](crate::irq).
    pub fn trigger_irqs(&self, index: u32, start: u32, count: u32) -> Result<()> {
        self.set_irqs(
            "VFIO_DEVICE_SET_IRQS(trigger)",
            index,
            vfio::VFIO_IRQ_SET_DATA_NONE | vfio::VFIO_IRQ_SET_ACTION_TRIGGER,
            start,
            count,
            [],
        )
    }
}

/// A non-blocking eventfd, for [`Device::set_irq_eventfds`].
#[derive(Debug)]
///
/// Example: [the `irq` module docs](crate::irq).
pub struct EventFd(nix::sys::eventfd::EventFd);

impl EventFd {
    /// Creates one (non-blocking, close-on-exec).
    ///
    /// Example: [the `irq` module docs](crate::irq).
    pub fn new() -> Result<Self> {
        nix::sys::eventfd::EventFd::from_value_and_flags(
            0,
            nix::sys::eventfd::EfdFlags::EFD_CLOEXEC | nix::sys::eventfd::EfdFlags::EFD_NONBLOCK,
        )
        .map(EventFd)
        .map_err(|e| Error::sys("eventfd", "new eventfd", e))
    }

    /// Waits up to `timeout` for the eventfd to fire (`poll`), then takes
    /// the count; 0 when it did not fire in time. For a driver's completion
    /// interrupt: every wait on a device should end.
    ///
    /// ```no_run
    /// # fn f(dev: &iommufd::Device<iommufd::BlockDma>) -> iommufd::Result<()> {
    /// let ev = iommufd::EventFd::new()?;
    /// dev.set_irq_eventfds(iommufd::pci::MSIX_IRQ, 1, &[&ev])?; // vector 1 only
    /// if ev.wait(std::time::Duration::from_secs(5))? == 0 {
    ///     eprintln!("no interrupt in 5 s");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn wait(&self, timeout: std::time::Duration) -> Result<u64> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => Ok(0),
            Ok(_) => self.take(),
            Err(nix::errno::Errno::EINTR) => self.take(),
            Err(e) => Err(Error::sys("poll", "eventfd", e)),
        }
    }

    /// Takes the count (how many times it fired since the last call); 0 if none.
    ///
    /// Example: [the `irq` module docs](crate::irq).
    pub fn take(&self) -> Result<u64> {
        match self.0.read() {
            Ok(n) => Ok(n),
            Err(nix::errno::Errno::EAGAIN) => Ok(0),
            Err(e) => Err(Error::sys("read", "eventfd", e)),
        }
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// So that `&[&ev]` routes one vector to an eventfd the caller keeps.
impl AsRawFd for &EventFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        (**self).as_raw_fd()
    }
}

/// Names the first of `fds` that is no eventfd (by its `/proc/self/fd`
/// link, asked only now that the kernel said no), the usual cause of an
/// `EINVAL` or `EBADF` routing.
#[cold]
fn not_an_eventfd(fds: impl Iterator<Item = std::os::fd::RawFd>) -> Option<String> {
    fds.filter(|&fd| fd >= 0).find_map(|fd| {
        match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
            Ok(t) if t.as_os_str() == "anon_inode:[eventfd]" => None,
            Ok(t) => Some(format!("fd {fd} is {}, not an eventfd", t.display())),
            Err(_) => Some(format!("fd {fd} is not an open file")),
        }
    })
}
