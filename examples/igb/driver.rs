//! The igb copy engine of `examples/igb`: an 82576 (QEMU's `igb` model)
//! driven as a DMA engine. A copy of `len` bytes from IOVA `src` to IOVA
//! `dst` is sent as Ethernet frames on transmit queue 0 with the MAC in
//! loopback, so that each frame comes back on receive queue 0 into the
//! next slice of `dst`. Both the frame read and the frame write go through
//! the IOMMU.
//!
//! The driver is written once over two ways of reaching the device, as the
//! NVMe example's is: [`Typed`] (the crate's [`Register`]s and
//! [`FixedRingMut`]s, each checked once when made) and [`RawPtrs`] (raw
//! pointers, no check); `cargo xtask bench` times copies through both.
//!
//! Facts it relies on (82576 datasheet; QEMU's model where they differ):
//! - frames of 60 to 1514 bytes (Ethernet without its FCS, no VLAN tag):
//!   shorter ones are padded, longer ones are dropped at receive;
//! - the advanced descriptor formats, 16 bytes each, rings a multiple of
//!   128 bytes; the receive ring must hold a buffer before its frame
//!   arrives (the tail is written before the transmit tail);
//! - the receive path needs link up (`STATUS.LU`): QEMU raises it when
//!   auto-negotiation completes, so bring-up restarts it and waits;
//! - loopback: `RCTL.LBM` = MAC loopback, and the PHY's loopback bit; QEMU
//!   honours either;
//! - QEMU parses each frame it sends: bytes 12..14 that read as IPv4 or
//!   IPv6 with a header it cannot parse make it drop the frame. The driver
//!   reports that as a frame that was sent and never came back;
//! - QEMU maps each transmit buffer whole and drops the frame when the
//!   IOMMU's pages behind it are not contiguous in its memory, so a frame
//!   that crosses a 4 KiB page of the source is sent from two buffers
//!   ([`buffers`]).

#![allow(dead_code)] // each user of this file uses part of it

use iommufd::{Access as Dma, DmaBuffer, FixedRingMut, Ioas, Iova, Mapping, Mmio, Register};
use std::time::{Duration, Instant};

pub type Error = Box<dyn std::error::Error>;

// Registers (82576 datasheet, chapter 8).
pub const CTRL: u64 = 0x0000;
pub const STATUS: u64 = 0x0008;
pub const CTRL_EXT: u64 = 0x0018;
pub const MDIC: u64 = 0x0020;
pub const IMC: u64 = 0x00d8;
pub const RCTL: u64 = 0x0100;
pub const TCTL: u64 = 0x0400;
pub const GPIE: u64 = 0x1514;
pub const EICS: u64 = 0x1520;
pub const EIMS: u64 = 0x1524;
pub const EIMC: u64 = 0x1528;
pub const EIAC: u64 = 0x152c;
pub const EIAM: u64 = 0x1530;
pub const EICR: u64 = 0x1580;
pub const IVAR0: u64 = 0x1700;
/// Statistics (clear on read): missed frames, total frames received and
/// sent.
pub const MPC: u64 = 0x4010;
pub const TPR: u64 = 0x40d0;
pub const TPT: u64 = 0x40d4;
/// Receive queue 0: base low/high, length, split control, head, tail,
/// queue control.
pub const RDBAL: u64 = 0xc000;
pub const RDBAH: u64 = 0xc004;
pub const RDLEN: u64 = 0xc008;
pub const SRRCTL: u64 = 0xc00c;
pub const RDH: u64 = 0xc010;
pub const RDT: u64 = 0xc018;
pub const RXDCTL: u64 = 0xc028;
/// Transmit queue 0, the same layout.
pub const TDBAL: u64 = 0xe000;
pub const TDBAH: u64 = 0xe004;
pub const TDLEN: u64 = 0xe008;
pub const TDH: u64 = 0xe010;
pub const TDT: u64 = 0xe018;
pub const TXDCTL: u64 = 0xe028;

pub const CTRL_FD: u32 = 1 << 0;
pub const CTRL_SLU: u32 = 1 << 6;
pub const CTRL_SPEED_1000: u32 = 2 << 8;
pub const CTRL_FRCSPD: u32 = 1 << 11;
pub const CTRL_FRCDPX: u32 = 1 << 12;
pub const CTRL_RST: u32 = 1 << 26;
pub const STATUS_LU: u32 = 1 << 1;
pub const CTRL_EXT_DRV_LOAD: u32 = 1 << 28;
pub const MDIC_PHY1: u32 = 1 << 21;
pub const MDIC_WRITE: u32 = 1 << 26;
pub const MDIC_READY: u32 = 1 << 28;
pub const MDIC_ERROR: u32 = 1 << 30;
/// PHY control (MII register 0): loopback, 1000 Mb/s, full duplex; or
/// auto-negotiation enabled and restarted.
pub const BMCR_LOOPBACK: u16 = 0x4000;
pub const BMCR_FORCED_1000_FULL: u16 = 0x0140;
pub const BMCR_AUTONEG_RESTART: u16 = 0x1200;
pub const RCTL_EN: u32 = 1 << 1;
pub const RCTL_UPE: u32 = 1 << 3;
pub const RCTL_MPE: u32 = 1 << 4;
pub const RCTL_LBM_MAC: u32 = 1 << 6;
pub const RCTL_BAM: u32 = 1 << 15;
pub const RCTL_SECRC: u32 = 1 << 26;
pub const TCTL_EN: u32 = 1 << 1;
pub const TCTL_PSP: u32 = 1 << 3;
pub const QUEUE_ENABLE: u32 = 1 << 25;
/// `SRRCTL.DESCTYPE` = advanced, one buffer.
pub const SRRCTL_ADV_ONE_BUFFER: u32 = 1 << 25;
pub const GPIE_MSIX: u32 = 1 << 4;
pub const GPIE_EIAME: u32 = 1 << 30;
pub const GPIE_PBA: u32 = 1 << 31;
pub const IVAR_VALID: u32 = 0x80;

// Transmit data descriptor, advanced (datasheet 7.2.2.3): buffer address;
// length | type | command; status | payload length.
pub const TXD_DATA: u32 = 3 << 20;
pub const TXD_EOP: u32 = 1 << 24;
pub const TXD_IFCS: u32 = 1 << 25;
pub const TXD_RS: u32 = 1 << 27;
pub const TXD_DEXT: u32 = 1 << 29;
pub const TXD_PAYLEN_SHIFT: u32 = 14;
/// Descriptor done, in the status of both formats' write-back.
pub const DD: u32 = 1;

/// Descriptors per ring: one page of 16-byte descriptors.
pub const RING: usize = 256;
/// Frame sizes the copy engine uses.
pub const MIN_FRAME: u64 = 60;
pub const MAX_FRAME: u64 = 1514;
/// The MSI-X vector the receive queue raises.
pub const VECTOR: u32 = 0;

/// How the engine reaches the device: its two tails and its two rings.
pub trait Access {
    fn put_tx(&mut self, slot: usize, desc: [u64; 2]);
    fn put_rx(&mut self, slot: usize, desc: [u64; 2]);
    /// Receive slot `slot`'s write-back: status and length.
    fn rx_done(&self, slot: usize) -> (u32, u16);
    /// Transmit slot `slot`'s write-back status.
    fn tx_done(&self, slot: usize) -> u32;
    fn tails(&mut self, rx: u32, tx: u32);
}

/// The crate's views: the tail registers and rings of [`RING`] entries,
/// each checked once when made.
pub struct Typed<'a> {
    pub rdt: Register<'a, u32>,
    pub tdt: Register<'a, u32>,
    pub tx: FixedRingMut<'a, [u64; 2], RING>,
    pub rx: FixedRingMut<'a, [u64; 2], RING>,
}

impl Access for Typed<'_> {
    #[inline]
    fn put_tx(&mut self, slot: usize, desc: [u64; 2]) {
        self.tx.set(slot, desc);
    }
    #[inline]
    fn put_rx(&mut self, slot: usize, desc: [u64; 2]) {
        self.rx.set(slot, desc);
    }
    #[inline]
    fn rx_done(&self, slot: usize) -> (u32, u16) {
        let e = self.rx.as_ring().at(slot);
        (
            u32::from_le(e.field::<u32, 8>()),
            u16::from_le(e.field::<u16, 12>()),
        )
    }
    #[inline]
    fn tx_done(&self, slot: usize) -> u32 {
        u32::from_le(self.tx.as_ring().at(slot).field::<u32, 12>())
    }
    #[inline]
    fn tails(&mut self, rx: u32, tx: u32) {
        self.rdt.write(rx);
        self.tdt.write(tx);
    }
}

/// Raw pointers: what a driver without the crate writes. Whoever makes one
/// vouches that the tails are mapped registers and the rings hold [`RING`]
/// descriptors each.
pub struct RawPtrs {
    pub rdt: *mut u32,
    pub tdt: *mut u32,
    pub tx: *mut [u64; 2],
    pub rx: *mut [u64; 2],
}

impl Access for RawPtrs {
    #[inline]
    fn put_tx(&mut self, slot: usize, desc: [u64; 2]) {
        // SAFETY: the ring holds RING descriptors (the maker's word).
        unsafe { self.tx.add(slot % RING).write_volatile(desc) }
    }
    #[inline]
    fn put_rx(&mut self, slot: usize, desc: [u64; 2]) {
        // SAFETY: as in `put_tx`.
        unsafe { self.rx.add(slot % RING).write_volatile(desc) }
    }
    #[inline]
    fn rx_done(&self, slot: usize) -> (u32, u16) {
        // SAFETY: as in `put_tx`; bytes 8..12 and 12..14 of a descriptor.
        unsafe {
            let d = self.rx.add(slot % RING).cast::<u8>();
            (
                u32::from_le(d.add(8).cast::<u32>().read_volatile()),
                u16::from_le(d.add(12).cast::<u16>().read_volatile()),
            )
        }
    }
    #[inline]
    fn tx_done(&self, slot: usize) -> u32 {
        // SAFETY: as in `put_tx`; bytes 12..16 of a descriptor.
        unsafe {
            u32::from_le(
                self.tx
                    .add(slot % RING)
                    .cast::<u8>()
                    .add(12)
                    .cast::<u32>()
                    .read_volatile(),
            )
        }
    }
    #[inline]
    fn tails(&mut self, rx: u32, tx: u32) {
        // SAFETY: mapped registers (the maker's word).
        unsafe {
            self.rdt.write_volatile(rx);
            self.tdt.write_volatile(tx);
        }
    }
}

/// The sizes of the frames a copy of `len` bytes is sent as: as few as
/// [`MAX_FRAME`] allows, of nearly equal size, so that none is shorter than
/// [`MIN_FRAME`] when `len` is not.
pub fn frames(len: u64) -> impl Iterator<Item = u64> {
    let n = len.div_ceil(MAX_FRAME).max(1);
    let (base, extra) = (len / n, len % n);
    (0..n).map(move |i| base + u64::from(i < extra))
}

/// How a copy failed. The engine must be brought up again after any of
/// them ([`bring_up`]): descriptors it posted may still be owned by the
/// device.
#[derive(Debug)]
pub enum CopyError {
    /// Frame `frame` (at byte `at` of the copy) was not sent: the device
    /// could not read it (an IOVA the IOMMU does not map for reading).
    NotSent { frame: u64, at: u64 },
    /// Frame `frame` was sent but never came back.
    NotReceived { frame: u64, at: u64 },
    /// Frame `frame` came back with another length.
    Length { frame: u64, sent: u64, got: u16 },
    /// The interrupt wait failed.
    Wait(Error),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::NotSent { frame, at } => write!(
                f,
                "frame {frame} (byte {at} of the copy) was never sent: the device could not read \
                 its source (is the source IOVA mapped for device reads?)"
            ),
            CopyError::NotReceived { frame, at } => write!(
                f,
                "frame {frame} (byte {at} of the copy) was sent but never came back: a frame \
                 the MAC dropped (see examples/igb/driver.rs for which)"
            ),
            CopyError::Length { frame, sent, got } => write!(
                f,
                "frame {frame} came back with {got} bytes, {sent} were sent"
            ),
            CopyError::Wait(e) => write!(f, "waiting for the completion interrupt: {e}"),
        }
    }
}

impl std::error::Error for CopyError {}

/// The completion interrupt, for [`Engine::copy`].
pub trait Interrupt {
    /// Unmasks it (after clearing what is pending): called before the
    /// tails are written, and again when a wake-up came early.
    fn arm(&mut self) -> Result<(), Error>;
    /// Sleeps until it fires or `left` has passed.
    fn wait(&mut self, left: Duration) -> Result<(), Error>;
}

/// MSI-X vector [`VECTOR`] on an eventfd, masked by the device each time
/// it fires (`bring_up` with `msix`); counts what it saw.
pub struct Msix<'a> {
    pub bar: &'a Mmio<'a>,
    pub eventfd: &'a iommufd::EventFd,
    /// Interrupts received.
    pub count: u64,
}

impl Interrupt for Msix<'_> {
    fn arm(&mut self) -> Result<(), Error> {
        self.bar.write32(EICR, 1 << VECTOR)?;
        Ok(self.bar.write32(EIMS, 1 << VECTOR)?)
    }
    fn wait(&mut self, left: Duration) -> Result<(), Error> {
        self.count += self.eventfd.wait(left)?;
        Ok(())
    }
}

/// How long a copy may take before its missing frames are reported.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The engine: rings and tails through `A`, and where the next
/// descriptor of each ring goes.
pub struct Engine<A> {
    pub access: A,
    tx: usize,
    rx: usize,
    /// Frames sent since bring-up.
    pub frames: u64,
}

/// The transmit buffers of a frame of `size` bytes at IOVA `src`: split at
/// the 4 KiB page it crosses, if any. QEMU's model maps each buffer whole
/// and drops the frame when the IOMMU's pages behind it are not contiguous
/// in its memory; a buffer inside one page always is. (`size` is at most
/// [`MAX_FRAME`], so a frame crosses one page boundary at most.)
#[inline]
pub fn buffers(src: u64, size: u64) -> (u64, u64) {
    let first = size.min(4096 - (src & 4095));
    (first, size - first)
}

impl<A: Access> Engine<A> {
    pub fn new(access: A) -> Self {
        Engine {
            access,
            tx: 0,
            rx: 0,
            frames: 0,
        }
    }

    /// After [`bring_up`] or [`point_rings`] again (which zero the device's
    /// heads and tails): start from slot 0.
    pub fn restart(&mut self) {
        self.tx = 0;
        self.rx = 0;
    }

    /// Puts one transmit descriptor: `len` bytes at `at` of a frame of
    /// `frame_len`, its last buffer or not.
    #[inline]
    fn put_buffer(&mut self, at: u64, len: u64, frame_len: u64, last: bool) {
        let mut cmd = len as u32 | TXD_DATA | TXD_DEXT | TXD_IFCS;
        if last {
            cmd |= TXD_EOP | TXD_RS;
        }
        let status = (frame_len as u32) << TXD_PAYLEN_SHIFT;
        self.access.put_tx(
            self.tx % RING,
            [
                at.to_le(),
                (u64::from(cmd) | (u64::from(status) << 32)).to_le(),
            ],
        );
        self.tx += 1;
    }

    /// Copies `len` bytes (at least [`MIN_FRAME`]) from IOVA `src` to IOVA
    /// `dst`, as many frames at a time as the rings hold; each batch is
    /// waited for by spinning (`irq` None) or on `irq`, up to [`TIMEOUT`].
    pub fn copy(
        &mut self,
        src: u64,
        dst: u64,
        len: u64,
        mut irq: Option<&mut dyn Interrupt>,
    ) -> Result<(), CopyError> {
        let mut sizes = frames(len).peekable();
        let (mut at, mut frame) = (0u64, 0u64);
        while sizes.peek().is_some() {
            let (first_rx, first_tx) = (self.rx, self.tx);
            let (batch_at, batch_frame) = (at, frame);
            let mut n = 0;
            // At most two transmit descriptors a frame; one slot of each
            // ring stays empty (head == tail means empty).
            while self.tx - first_tx + 2 < RING {
                let Some(size) = sizes.next() else { break };
                self.access.put_rx(self.rx % RING, [(dst + at).to_le(), 0]);
                self.rx += 1;
                let (a, b) = buffers(src + at, size);
                self.put_buffer(src + at, a, size, b == 0);
                if b != 0 {
                    self.put_buffer(src + at + a, b, size, true);
                }
                at += size;
                frame += 1;
                n += 1;
            }
            if let Some(irq) = irq.as_mut() {
                irq.arm().map_err(CopyError::Wait)?;
            }
            self.access
                .tails((self.rx % RING) as u32, (self.tx % RING) as u32);
            self.frames += n as u64;
            let last = (self.rx - 1) % RING;
            let start = Instant::now();
            // Spinning: until the last frame is back. On an interrupt:
            // sleep first, as an interrupt-driven driver does, then look;
            // re-armed if the frames are not all back yet.
            loop {
                let left = TIMEOUT.saturating_sub(start.elapsed());
                if let Some(irq) = irq.as_mut() {
                    irq.wait(left).map_err(CopyError::Wait)?;
                }
                if self.access.rx_done(last).0 & DD != 0 {
                    break;
                }
                if left.is_zero() {
                    return Err(self.missing(
                        first_rx,
                        first_tx,
                        n,
                        src,
                        batch_at,
                        batch_frame,
                        len,
                    ));
                }
                match irq.as_mut() {
                    Some(irq) => irq.arm().map_err(CopyError::Wait)?,
                    None => std::hint::spin_loop(),
                }
            }
            // Every frame of the batch back, at its length.
            let mut sent = frames(len).skip(batch_frame as usize);
            for i in 0..n {
                let sent = sent.next().unwrap_or(0);
                let (status, got) = self.access.rx_done((first_rx + i) % RING);
                if status & DD == 0 || u64::from(got) != sent {
                    return Err(CopyError::Length {
                        frame: batch_frame + i as u64,
                        sent,
                        got,
                    });
                }
            }
        }
        Ok(())
    }

    /// The first frame of the batch (`n` frames from receive slot
    /// `first_rx` and transmit slot `first_tx`) that did not make it, and
    /// why.
    #[allow(clippy::too_many_arguments)]
    fn missing(
        &self,
        first_rx: usize,
        first_tx: usize,
        n: usize,
        src: u64,
        at: u64,
        frame: u64,
        len: u64,
    ) -> CopyError {
        let (mut off, mut tx) = (at, first_tx);
        for (i, size) in frames(len).skip(frame as usize).take(n).enumerate() {
            let f = frame + i as u64;
            // The status is written back to the frame's last descriptor.
            tx += if buffers(src + off, size).1 == 0 {
                1
            } else {
                2
            };
            if self.access.tx_done((tx - 1) % RING) & DD == 0 {
                return CopyError::NotSent { frame: f, at: off };
            }
            if self.access.rx_done((first_rx + i) % RING).0 & DD == 0 {
                return CopyError::NotReceived { frame: f, at: off };
            }
            off += size;
        }
        CopyError::NotReceived { frame, at }
    }
}

/// The rings' memory: a page each, mapped for the device.
pub struct RingMemory {
    pub tx: Mapping<DmaBuffer>,
    pub rx: Mapping<DmaBuffer>,
}

impl RingMemory {
    pub fn new(ioas: &Ioas) -> Result<RingMemory, Error> {
        let map = || -> Result<Mapping<DmaBuffer>, Error> {
            Ok(ioas
                .map(DmaBuffer::new(RING * 16)?, Iova::Any, Dma::READ_WRITE)
                .map_err(|e| e.into_parts().1)?)
        };
        Ok(RingMemory {
            tx: map()?,
            rx: map()?,
        })
    }

    /// The crate's views of them and of the tails in `bar`.
    pub fn typed<'a>(&'a mut self, bar: &Mmio<'a>) -> Result<Typed<'a>, Error> {
        Ok(Typed {
            rdt: bar.register32(RDT)?,
            tdt: bar.register32(TDT)?,
            tx: self.tx.fixed_ring_mut(0)?,
            rx: self.rx.fixed_ring_mut(0)?,
        })
    }
}

/// The rings in memory of their own, for [`RawPtrs`]: anonymous mmaps
/// mapped with the unsafe `Ioas::map_user_va`, as a driver without the
/// crate's views would.
pub struct RawRingMemory {
    // Dropped in this order: the mappings (unmapped) before the mmaps.
    pub tx: Mapping<iommufd::RawMemory>,
    pub rx: Mapping<iommufd::RawMemory>,
    tx_mem: memmap2::MmapMut,
    rx_mem: memmap2::MmapMut,
}

impl RawRingMemory {
    pub fn new(ioas: &Ioas) -> Result<RawRingMemory, Error> {
        let (mut tx_mem, mut rx_mem) = (
            memmap2::MmapMut::map_anon(RING * 16)?,
            memmap2::MmapMut::map_anon(RING * 16)?,
        );
        let map = |m: &mut memmap2::MmapMut| -> Result<Mapping<iommufd::RawMemory>, Error> {
            let p = std::ptr::NonNull::new(m.as_mut_ptr()).ok_or("a null mmap")?;
            // SAFETY: the mmap lives in the value made here and is dropped
            // after the mapping (field order); while mapped, it is reached
            // only through the raw pointers `access` hands out.
            Ok(unsafe { ioas.map_user_va(p, m.len(), Iova::Any, Dma::READ_WRITE) }?)
        };
        let (tx, rx) = (map(&mut tx_mem)?, map(&mut rx_mem)?);
        Ok(RawRingMemory {
            tx,
            rx,
            tx_mem,
            rx_mem,
        })
    }

    /// Raw pointers to them and to the tails in `bar` (BAR0, mapped whole).
    pub fn access(&mut self, bar: &Mmio<'_>) -> Result<RawPtrs, Error> {
        let reg = |at: u64| bar.host_address(at).ok_or("a tail outside the mapped BAR");
        Ok(RawPtrs {
            rdt: reg(RDT)?.cast(),
            tdt: reg(TDT)?.cast(),
            tx: self.tx_mem.as_mut_ptr().cast(),
            rx: self.rx_mem.as_mut_ptr().cast(),
        })
    }
}

/// Waits up to `timeout` for `done` of register `reg`.
fn wait_reg(
    bar: &Mmio<'_>,
    reg: u64,
    what: &str,
    timeout: Duration,
    done: impl Fn(u32) -> bool,
) -> Result<u32, Error> {
    let start = Instant::now();
    loop {
        let v = bar.read32(reg)?;
        if done(v) {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what} ({v:#x})").into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Writes PHY register `reg` over MDIO.
fn phy_write(bar: &Mmio<'_>, reg: u32, value: u16) -> Result<(), Error> {
    bar.write32(
        MDIC,
        u32::from(value) | (reg << 16) | MDIC_PHY1 | MDIC_WRITE,
    )?;
    let mdic = wait_reg(
        bar,
        MDIC,
        "the PHY write",
        Duration::from_millis(100),
        |v| v & MDIC_READY != 0,
    )?;
    if mdic & MDIC_ERROR != 0 {
        return Err(format!("PHY register {reg} write refused (MDIC {mdic:#x})").into());
    }
    Ok(())
}

/// Resets the 82576 behind `bar` (BAR0 mapped) and sets it up as a copy
/// engine: loopback, rings at `tx_iova` and `rx_iova` ([`RING`]
/// descriptors each, zeroed by the caller or not: every slot is written
/// before it is posted), and, with `msix`, receive queue 0 on MSI-X vector
/// [`VECTOR`], masked after each interrupt until [`Msix`] unmasks it.
pub fn bring_up(bar: &Mmio<'_>, tx_iova: u64, rx_iova: u64, msix: bool) -> Result<(), Error> {
    shut_down(bar)?;
    bar.write32(IMC, u32::MAX)?;
    bar.write32(EIMC, u32::MAX)?;
    let ext = bar.read32(CTRL_EXT)?;
    bar.write32(CTRL_EXT, ext | CTRL_EXT_DRV_LOAD)?;

    // Link up: QEMU raises STATUS.LU when auto-negotiation completes; then
    // loopback at a forced 1000 Mb/s full duplex, in the PHY and the MAC.
    phy_write(bar, 0, BMCR_AUTONEG_RESTART)?;
    wait_reg(
        bar,
        STATUS,
        "link up (STATUS.LU)",
        Duration::from_secs(5),
        |v| v & STATUS_LU != 0,
    )?;
    phy_write(bar, 0, BMCR_LOOPBACK | BMCR_FORCED_1000_FULL)?;
    let ctrl = bar.read32(CTRL)? & !(3 << 8);
    bar.write32(
        CTRL,
        ctrl | CTRL_SLU | CTRL_FRCSPD | CTRL_FRCDPX | CTRL_SPEED_1000 | CTRL_FD,
    )?;

    point_rings(bar, tx_iova, rx_iova)?;
    bar.write32(SRRCTL, SRRCTL_ADV_ONE_BUFFER)?;
    bar.write32(TXDCTL, QUEUE_ENABLE)?;
    bar.write32(RXDCTL, QUEUE_ENABLE)?;
    bar.write32(
        RCTL,
        RCTL_EN | RCTL_UPE | RCTL_MPE | RCTL_BAM | RCTL_LBM_MAC | RCTL_SECRC,
    )?;
    bar.write32(TCTL, TCTL_EN | TCTL_PSP)?;
    for (reg, what) in [(TXDCTL, "transmit queue 0"), (RXDCTL, "receive queue 0")] {
        wait_reg(bar, reg, what, Duration::from_secs(1), |v| {
            v & QUEUE_ENABLE != 0
        })?;
    }
    if msix {
        // Receive queue 0 raises VECTOR; the cause clears and the vector
        // masks itself when the interrupt is sent.
        bar.write32(GPIE, GPIE_MSIX | GPIE_EIAME | GPIE_PBA)?;
        bar.write32(EIAC, 1 << VECTOR)?;
        bar.write32(EIAM, 1 << VECTOR)?;
        bar.write32(IVAR0, IVAR_VALID | VECTOR)?;
    }
    Ok(())
}

/// Points queue 0's rings at `tx_iova` and `rx_iova`, heads and tails at
/// 0. Between copies (every frame back) QEMU's model takes this without
/// stopping the queues, which the bench uses to give each side rings of
/// its own; a real 82576 wants its queues disabled first.
pub fn point_rings(bar: &Mmio<'_>, tx_iova: u64, rx_iova: u64) -> Result<(), Error> {
    let len = (RING * 16) as u32;
    for (base, iova) in [(TDBAL, tx_iova), (RDBAL, rx_iova)] {
        bar.write32(base, iova as u32)?;
        bar.write32(base + 4, (iova >> 32) as u32)?;
        bar.write32(base + 8, len)?;
        bar.write32(base + 0x10, 0)?;
        bar.write32(base + 0x18, 0)?;
    }
    Ok(())
}

/// Raises the vector from software (`EICS`, unmasked first), as a test
/// of the route.
pub fn send_msi(bar: &Mmio<'_>) -> Result<(), Error> {
    bar.write32(EIMS, 1 << VECTOR)?;
    Ok(bar.write32(EICS, 1 << VECTOR)?)
}

/// What the device says of its queues, for a failed copy's message: heads
/// and tails, and the frames sent and received since the last call (the
/// statistics registers clear when read).
pub fn state(bar: &Mmio<'_>) -> String {
    let r = |reg| {
        bar.read32(reg)
            .map_or_else(|e| e.to_string(), |v| v.to_string())
    };
    format!(
        "receive head {} tail {}, transmit head {} tail {}; frames sent {}, received {}, \
         missed {}",
        r(RDH),
        r(RDT),
        r(TDH),
        r(TDT),
        r(TPT),
        r(TPR),
        r(MPC)
    )
}

/// Masks every interrupt, stops both queues and resets the device
/// (`CTRL.RST`, which clears itself when the reset is done).
pub fn shut_down(bar: &Mmio<'_>) -> Result<(), Error> {
    bar.write32(IMC, u32::MAX)?;
    bar.write32(EIMC, u32::MAX)?;
    bar.write32(RCTL, 0)?;
    bar.write32(TCTL, 0)?;
    let ctrl = bar.read32(CTRL)?;
    bar.write32(CTRL, ctrl | CTRL_RST)?;
    std::thread::sleep(Duration::from_millis(1));
    wait_reg(
        bar,
        CTRL,
        "the reset to complete",
        Duration::from_secs(1),
        |v| v & CTRL_RST == 0,
    )?;
    Ok(())
}

/// Binds, enables and attaches the 82576 at `bdf` (8086:10c9), BAR0 mapped.
pub fn open(
    bdf: &str,
    iommufd: &iommufd::Iommufd,
    ioas: &Ioas,
) -> Result<iommufd::Device<iommufd::Attached<Ioas>>, Error> {
    let mut dev = iommufd::Device::open(bdf)?
        .bind(iommufd)
        .map_err(|e| e.into_parts().1)?;
    let mut id = [0u8; 4];
    dev.config_read(0, &mut id)?;
    let (vendor, device) = (
        u16::from_le_bytes([id[0], id[1]]),
        u16::from_le_bytes([id[2], id[3]]),
    );
    if (vendor, device) != (0x8086, 0x10c9) {
        return Err(format!(
            "{bdf} is not an 82576 (igb) physical function ({vendor:04x}:{device:04x}, want 8086:10c9)"
        )
        .into());
    }
    let mut cmd = [0u8; 2];
    dev.config_read(4, &mut cmd)?;
    dev.config_write(4, &(u16::from_le_bytes(cmd) | 0x6).to_le_bytes())?;
    dev.map_bar(iommufd::pci::BAR0)?;
    Ok(dev.attach(ioas).map_err(|e| e.into_parts().1)?)
}
