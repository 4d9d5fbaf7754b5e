//! The NVMe driver of `examples/nvme`: registers, commands, bring-up, and a
//! queue pair written once over two ways of reaching the device:
//!
//! - [`Typed`], the crate's checked views: [`Register`]s for the
//!   doorbells, a [`FixedRingMut`] for the submission queue and a
//!   [`FixedRing`] for the completion queue, each checked once when made
//!   (what the example uses);
//! - [`RawPtrs`], raw pointers and volatile accesses with no check at all.
//!
//! `tests/guest_overhead.rs` counts the instructions of one I/O through
//! each, and `cargo xtask bench` times polled I/O at queue depth 1 and 32:
//! the same [`QueuePair`] code, only the [`Access`] differs.

#![allow(dead_code)] // each user of this file uses part of it

use iommufd::{
    Access as Dma, Device, DmaBuffer, FixedRing, FixedRingMut, Ioas, Iova, Mapping, Mmio, Register,
};
use std::time::{Duration, Instant};

pub type Error = Box<dyn std::error::Error>;

// Controller registers (NVMe 1.4, section 3.1).
pub const CAP: u64 = 0x00;
pub const VS: u64 = 0x08;
pub const CC: u64 = 0x14;
pub const CSTS: u64 = 0x1c;
pub const AQA: u64 = 0x24;
pub const ASQ: u64 = 0x28;
pub const ACQ: u64 = 0x30;
pub const DOORBELLS: u64 = 0x1000;

pub const CC_EN: u32 = 1;
/// I/O submission / completion queue entry sizes (2^6 = 64, 2^4 = 16 bytes).
pub const CC_IOSQES_IOCQES: u32 = (6 << 16) | (4 << 20);
pub const CC_SHN_NORMAL: u32 = 1 << 14;
pub const CSTS_RDY: u32 = 1;
pub const CSTS_CFS: u32 = 1 << 1;
pub const CSTS_SHST_MASK: u32 = 3 << 2;
pub const CSTS_SHST_DONE: u32 = 2 << 2;

// Admin and I/O opcodes.
pub const ADMIN_CREATE_SQ: u8 = 0x01;
pub const ADMIN_CREATE_CQ: u8 = 0x05;
pub const ADMIN_IDENTIFY: u8 = 0x06;
pub const ADMIN_SET_FEATURES: u8 = 0x09;
pub const IO_WRITE: u8 = 0x01;
pub const IO_READ: u8 = 0x02;

pub const PAGE: usize = 4096;
/// Entries of the admin queue.
pub const ADMIN_DEPTH: u16 = 32;

/// A 64-byte submission entry as eight little-endian words: opcode and
/// namespace, PRP1, CDW10..12; the command id is the queue's to fill.
pub fn command(opc: u8, nsid: u32, prp1: u64, cdw: [u32; 3]) -> [u64; 8] {
    let mut e = [0u64; 8];
    e[0] = u64::from(opc) | (u64::from(nsid) << 32);
    e[3] = prp1;
    e[5] = u64::from(cdw[0]) | (u64::from(cdw[1]) << 32);
    e[6] = u64::from(cdw[2]);
    e.map(u64::to_le)
}

/// The offsets of queue pair `qid`'s doorbells (submission tail,
/// completion head), with the stride the controller reports (`CAP.DSTRD`).
pub fn doorbells(qid: u16, stride: u64) -> (u64, u64) {
    let at = |cq: u64| DOORBELLS + (2 * u64::from(qid) + cq) * stride;
    (at(0), at(1))
}

/// How the queue code reaches the device: its two doorbells, the
/// submission queue's entries, the completion queue's entries.
pub trait Access {
    fn ring_sq(&mut self, tail: u16);
    fn ring_cq(&mut self, head: u16);
    fn put(&mut self, slot: u16, entry: [u64; 8]) -> Result<(), Error>;
    /// Completion entry `slot`'s status word (phase tag in bit 0), and,
    /// when its phase tag is `phase`, its command id and result word.
    fn completion(&self, slot: u16, phase: bool) -> Result<(u16, Option<(u16, u32)>), Error>;
}

/// The crate's typed views: doorbell registers and rings of `N` entries,
/// each checked once when made; no access checks anything after.
pub struct Typed<'a, const N: usize> {
    pub sq_doorbell: Register<'a, u32>,
    pub cq_doorbell: Register<'a, u32>,
    pub sq: FixedRingMut<'a, [u64; 8], N>,
    pub cq: FixedRing<'a, [u32; 4], N>,
}

impl<const N: usize> Access for Typed<'_, N> {
    #[inline]
    fn ring_sq(&mut self, tail: u16) {
        self.sq_doorbell.write(u32::from(tail));
    }
    #[inline]
    fn ring_cq(&mut self, head: u16) {
        self.cq_doorbell.write(u32::from(head));
    }
    #[inline]
    fn put(&mut self, slot: u16, entry: [u64; 8]) -> Result<(), Error> {
        self.sq.set(slot.into(), entry);
        Ok(())
    }
    #[inline]
    fn completion(&self, slot: u16, phase: bool) -> Result<(u16, Option<(u16, u32)>), Error> {
        let e = self.cq.at(slot.into());
        let status = u16::from_le(e.field::<u16, 14>());
        if (status & 1 == 1) != phase {
            return Ok((status, None));
        }
        let id = u16::from_le(e.field::<u16, 12>());
        Ok((status, Some((id, u32::from_le(e.field::<u32, 0>())))))
    }
}

/// Raw pointers: what a driver without the crate writes. Whoever makes
/// one vouches that the doorbells are mapped registers and the queues'
/// memory holds every slot the queue pair uses.
pub struct RawPtrs {
    pub sq_doorbell: *mut u32,
    pub cq_doorbell: *mut u32,
    pub sq: *mut [u64; 8],
    pub cq: *const [u32; 4],
}

impl Access for RawPtrs {
    #[inline]
    fn ring_sq(&mut self, tail: u16) {
        // SAFETY: a mapped register (the maker's word).
        unsafe { self.sq_doorbell.write_volatile(u32::from(tail)) };
    }
    #[inline]
    fn ring_cq(&mut self, head: u16) {
        // SAFETY: as in `ring_sq`.
        unsafe { self.cq_doorbell.write_volatile(u32::from(head)) };
    }
    #[inline]
    fn put(&mut self, slot: u16, entry: [u64; 8]) -> Result<(), Error> {
        // SAFETY: the queue's memory holds every slot the queue uses.
        unsafe { self.sq.add(slot.into()).write_volatile(entry) };
        Ok(())
    }
    #[inline]
    fn completion(&self, slot: u16, phase: bool) -> Result<(u16, Option<(u16, u32)>), Error> {
        // SAFETY: the queue's memory holds every slot the queue pair uses:
        // bytes 14..16, 12..14 and 0..4 of a 16-byte entry.
        unsafe {
            let e = self.cq.add(slot.into());
            let status = u16::from_le(e.cast::<u16>().add(7).read_volatile());
            if (status & 1 == 1) != phase {
                return Ok((status, None));
            }
            let id = u16::from_le(e.cast::<u16>().add(6).read_volatile());
            Ok((
                status,
                Some((id, u32::from_le(e.cast::<u32>().read_volatile()))),
            ))
        }
    }
}

/// A completion: the command id, the status code (0 is success) and the
/// command-specific word.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    pub id: u16,
    pub code: u16,
    pub result: u32,
}

/// A submission queue and its completion queue, of `depth` entries each.
pub struct QueuePair<A> {
    pub access: A,
    depth: u16,
    tail: u16,
    head: u16,
    phase: bool,
    next_id: u16,
}

impl<A: Access> QueuePair<A> {
    /// A queue pair of `depth` entries, reached through `access`.
    pub fn new(access: A, depth: u16) -> Self {
        QueuePair {
            access,
            depth,
            tail: 0,
            head: 0,
            phase: true,
            next_id: 0,
        }
    }

    /// Puts `entry` in the next slot with a fresh command id, and rings the
    /// doorbell; returns the id.
    #[inline]
    pub fn submit(&mut self, mut entry: [u64; 8]) -> Result<u16, Error> {
        let id = self.next_id;
        self.next_id = id.wrapping_add(1);
        entry[0] = (entry[0] & !(0xffff_u64 << 16).to_le()) | (u64::from(id) << 16).to_le();
        self.access.put(self.tail, entry)?;
        self.tail = if self.tail + 1 == self.depth {
            0
        } else {
            self.tail + 1
        };
        self.access.ring_sq(self.tail);
        Ok(id)
    }

    /// Whether the next completion is there.
    #[inline]
    pub fn ready(&self) -> Result<bool, Error> {
        Ok(self.access.completion(self.head, self.phase)?.1.is_some())
    }

    /// The next completion, if it is there; its slot is given back to the
    /// controller (the completion doorbell).
    #[inline]
    pub fn reap(&mut self) -> Result<Option<Completion>, Error> {
        let (status, Some((id, result))) = self.access.completion(self.head, self.phase)? else {
            return Ok(None);
        };
        self.head += 1;
        if self.head == self.depth {
            self.head = 0;
            self.phase = !self.phase;
        }
        self.access.ring_cq(self.head);
        Ok(Some(Completion {
            id,
            code: status >> 1,
            result,
        }))
    }

    /// Submits `entry` and waits for its completion, spinning (`wait`
    /// None) or on an interrupt; an error for a failed command.
    pub fn run(
        &mut self,
        entry: [u64; 8],
        what: &str,
        mut wait: Option<&mut dyn FnMut(Duration) -> Result<(), Error>>,
    ) -> Result<u32, Error> {
        const TIMEOUT: Duration = Duration::from_secs(10);
        let id = self.submit(entry)?;
        let start = Instant::now();
        loop {
            if let Some(c) = self.reap()? {
                if c.id != id {
                    return Err(
                        format!("{what}: completion for command {}, expected {id}", c.id).into(),
                    );
                }
                if c.code != 0 {
                    return Err(format!(
                        "{what} failed: status code type {:#x}, code {:#x}",
                        (c.code >> 8) & 7,
                        c.code & 0xff
                    )
                    .into());
                }
                return Ok(c.result);
            }
            let left = TIMEOUT.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(format!("{what}: no completion within {TIMEOUT:?}").into());
            }
            match wait.as_mut() {
                Some(w) => w(left)?,
                None => std::hint::spin_loop(),
            }
        }
    }
}

/// A queue pair's memory: `depth` entries each, mapped for the device.
pub struct QueueMemory {
    pub sq: Mapping<DmaBuffer>,
    pub cq: Mapping<DmaBuffer>,
    pub depth: u16,
}

impl QueueMemory {
    pub fn new(ioas: &Ioas, depth: u16) -> Result<QueueMemory, Error> {
        let map = |n: usize| -> Result<Mapping<DmaBuffer>, Error> {
            Ok(ioas
                .map(DmaBuffer::new(n)?, Iova::Any, Dma::READ_WRITE)
                .map_err(|e| e.into_parts().1)?)
        };
        Ok(QueueMemory {
            sq: map(usize::from(depth) * 64)?,
            cq: map(usize::from(depth) * 16)?,
            depth,
        })
    }

    /// The crate's views of it (`N` its depth), for queue pair `qid` of
    /// the controller behind `bar` (doorbell `stride`).
    pub fn typed<'a, const N: usize>(
        &'a mut self,
        bar: &Mmio<'a>,
        qid: u16,
        stride: u64,
    ) -> Result<Typed<'a, N>, Error> {
        if usize::from(self.depth) != N {
            return Err(format!("queues of {} entries seen as {N}", self.depth).into());
        }
        let (sq_db, cq_db) = doorbells(qid, stride);
        Ok(Typed {
            sq_doorbell: bar.register32(sq_db)?,
            cq_doorbell: bar.register32(cq_db)?,
            sq: self.sq.fixed_ring_mut(0)?,
            cq: self.cq.fixed_ring(0)?,
        })
    }
}

/// A queue pair's memory of its own, for [`RawPtrs`]: anonymous mmaps of
/// `depth` entries (a page each at least, as [`QueueMemory`] maps), mapped
/// for the device with the unsafe `Ioas::map_user_va`, as a driver without
/// the crate's views would.
pub struct RawQueueMemory {
    // Dropped in this order: the mappings (unmapped) before the mmaps.
    pub sq: Mapping<iommufd::RawMemory>,
    pub cq: Mapping<iommufd::RawMemory>,
    sq_mem: memmap2::MmapMut,
    cq_mem: memmap2::MmapMut,
}

impl RawQueueMemory {
    pub fn new(ioas: &Ioas, depth: u16) -> Result<RawQueueMemory, Error> {
        let len = |entry: usize| (usize::from(depth) * entry).next_multiple_of(PAGE);
        let (mut sq_mem, mut cq_mem) = (
            memmap2::MmapMut::map_anon(len(64))?,
            memmap2::MmapMut::map_anon(len(16))?,
        );
        let map = |m: &mut memmap2::MmapMut| -> Result<Mapping<iommufd::RawMemory>, Error> {
            let p = std::ptr::NonNull::new(m.as_mut_ptr()).ok_or("a null mmap")?;
            // SAFETY: the mmap lives in the value made here and is dropped
            // after the mapping (field order); while mapped, it is reached
            // only through the raw pointers `access` hands out.
            Ok(unsafe { ioas.map_user_va(p, m.len(), Iova::Any, Dma::READ_WRITE) }?)
        };
        let (sq, cq) = (map(&mut sq_mem)?, map(&mut cq_mem)?);
        Ok(RawQueueMemory {
            sq,
            cq,
            sq_mem,
            cq_mem,
        })
    }

    /// Raw pointers to it and to queue pair `qid`'s doorbells in `bar`
    /// (BAR0, mapped whole), doorbell `stride`.
    pub fn access(&mut self, bar: &Mmio<'_>, qid: u16, stride: u64) -> Result<RawPtrs, Error> {
        let (sq_db, cq_db) = doorbells(qid, stride);
        let reg = |at: u64| {
            bar.host_address(at)
                .ok_or("a doorbell outside the mapped BAR")
        };
        Ok(RawPtrs {
            sq_doorbell: reg(sq_db)?.cast(),
            cq_doorbell: reg(cq_db)?.cast(),
            sq: self.sq_mem.as_mut_ptr().cast(),
            cq: self.cq_mem.as_ptr().cast(),
        })
    }
}

/// A controller brought up: enabled, its admin queue polled.
pub struct Controller<'a> {
    pub bar: &'a Mmio<'a>,
    pub admin: QueuePair<Typed<'a, { ADMIN_DEPTH as usize }>>,
    pub stride: u64,
    pub max_depth: u32,
    pub version: u32,
}

/// Resets and enables the controller behind `bar` (BAR0 mapped), with its
/// admin queue in `admin` (of [`ADMIN_DEPTH`] entries).
pub fn bring_up<'a>(
    bar: &'a Mmio<'a>,
    admin: &'a mut QueueMemory,
) -> Result<Controller<'a>, Error> {
    let cap = bar.read64(CAP)?;
    let stride = 4u64 << ((cap >> 32) & 0xf);
    let timeout = Duration::from_millis(500 * ((cap >> 24) & 0xff).max(1));
    let wait_status = |what: &str, done: &dyn Fn(u32) -> bool| -> Result<(), Error> {
        let start = Instant::now();
        loop {
            let csts = bar.read32(CSTS)?;
            if csts & CSTS_CFS != 0 {
                return Err(format!("controller fatal status while waiting for {what}").into());
            }
            if done(csts) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what} (CSTS {csts:#x})"
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let cc = bar.read32(CC)?;
    if cc & CC_EN != 0 {
        bar.write32(CC, cc & !CC_EN)?;
    }
    wait_status("the controller to disable", &|s| s & CSTS_RDY == 0)?;
    let depth = u32::from(admin.depth - 1);
    bar.write32(AQA, (depth << 16) | depth)?;
    bar.write64(ASQ, admin.sq.iova())?;
    bar.write64(ACQ, admin.cq.iova())?;
    bar.write32(CC, CC_IOSQES_IOCQES | CC_EN)?;
    wait_status("the controller to become ready", &|s| s & CSTS_RDY != 0)?;
    Ok(Controller {
        bar,
        admin: QueuePair::new(admin.typed(bar, 0, stride)?, ADMIN_DEPTH),
        stride,
        max_depth: (cap & 0xffff) as u32 + 1,
        version: bar.read32(VS)?,
    })
}

impl Controller<'_> {
    /// An admin command, polled.
    pub fn admin(&mut self, entry: [u64; 8], what: &str) -> Result<u32, Error> {
        self.admin.run(entry, what, None)
    }

    /// Creates I/O queue pair `qid` of `depth` entries at `sq_iova` and
    /// `cq_iova`; its completions raise MSI-X `vector`, or nothing (polled).
    pub fn create_io_queues(
        &mut self,
        qid: u16,
        depth: u16,
        sq_iova: u64,
        cq_iova: u64,
        vector: Option<u32>,
    ) -> Result<(), Error> {
        if u32::from(depth) > self.max_depth {
            return Err(format!(
                "queues of at most {} entries; asked for {depth}",
                self.max_depth
            )
            .into());
        }
        let size = u32::from(depth - 1) << 16;
        let q = u32::from(qid);
        // CDW11: physically contiguous, and interrupts enabled on `vector`.
        let irq = vector.map_or(0, |v| (v << 16) | 0b10);
        self.admin(
            command(ADMIN_CREATE_CQ, 0, cq_iova, [size | q, irq | 1, 0]),
            "Create I/O Completion Queue",
        )?;
        self.admin(
            command(ADMIN_CREATE_SQ, 0, sq_iova, [size | q, (q << 16) | 1, 0]),
            "Create I/O Submission Queue",
        )?;
        Ok(())
    }

    /// Shuts the controller down cleanly.
    pub fn shut_down(&mut self) -> Result<(), Error> {
        let cc = self.bar.read32(CC)?;
        self.bar.write32(CC, cc | CC_SHN_NORMAL)?;
        let start = Instant::now();
        while self.bar.read32(CSTS)? & CSTS_SHST_MASK != CSTS_SHST_DONE {
            if start.elapsed() > Duration::from_secs(10) {
                return Err("timed out waiting for shutdown".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

/// Binds, enables and attaches the NVMe controller at `bdf` (class code
/// 01:08:02), BAR0 mapped.
pub fn open(
    bdf: &str,
    iommufd: &iommufd::Iommufd,
    ioas: &Ioas,
) -> Result<Device<iommufd::Attached<Ioas>>, Error> {
    let mut dev = Device::open(bdf)?
        .bind(iommufd)
        .map_err(|e| e.into_parts().1)?;
    let mut class = [0u8; 3];
    dev.config_read(0x09, &mut class)?;
    if class != [0x02, 0x08, 0x01] {
        return Err(format!(
            "{bdf} is not an NVMe controller (class code {:02x}{:02x}{:02x}, want 010802)",
            class[2], class[1], class[0]
        )
        .into());
    }
    // Memory space and bus master on, as any PCI driver does.
    let mut cmd = [0u8; 2];
    dev.config_read(4, &mut cmd)?;
    dev.config_write(4, &(u16::from_le_bytes(cmd) | 0x6).to_le_bytes())?;
    dev.map_bar(iommufd::pci::BAR0)?;
    Ok(dev.attach(ioas).map_err(|e| e.into_parts().1)?)
}
