//! A userspace NVMe driver on nothing but the crate's public API: the admin
//! queue, Identify Controller and Identify Namespace, one I/O queue pair
//! whose completion interrupt is an MSI-X vector on an eventfd, and a
//! write + read-back of a seeded pattern through the IOMMU.
//!
//! ```text
//! nvme <BDF> --lba <L> --blocks <N> --seed <S>
//! ```
//!
//! It writes N blocks starting at LBA L with a pattern derived from S, reads
//! them back, compares, and prints one line with the namespace's LBA size
//! and the result. The LBA size and capacity come from the device (Identify
//! Namespace), never assumed. A BDF that is not an NVMe controller, an LBA
//! range past the namespace's end, a device that does not answer: a clear
//! message and exit 1, never a hang (every wait on the device has a timeout).
//!
//! In the test guest: `cargo xtask vmtest nvme` (`tests/guest_examples.rs`
//! runs it on the guest's NVMe controller; after the guest powers off, the
//! host checks the pattern in the controller's backing image).

use iommufd::{pci, Access, Device, DmaBuffer, EventFd, Iommufd, Iova, Mapping, Mmio};
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error>;

// Controller registers (NVMe 1.4, section 3.1).
const CAP: u64 = 0x00;
const VS: u64 = 0x08;
const CC: u64 = 0x14;
const CSTS: u64 = 0x1c;
const AQA: u64 = 0x24;
const ASQ: u64 = 0x28;
const ACQ: u64 = 0x30;
const DOORBELLS: u64 = 0x1000;

const CC_EN: u32 = 1;
/// I/O submission / completion queue entry sizes (2^6 = 64, 2^4 = 16 bytes).
const CC_IOSQES_IOCQES: u32 = (6 << 16) | (4 << 20);
const CC_SHN_NORMAL: u32 = 1 << 14;
const CSTS_RDY: u32 = 1;
const CSTS_CFS: u32 = 1 << 1;
const CSTS_SHST_MASK: u32 = 3 << 2;
const CSTS_SHST_DONE: u32 = 2 << 2;

// Admin and I/O opcodes.
const ADMIN_CREATE_SQ: u8 = 0x01;
const ADMIN_CREATE_CQ: u8 = 0x05;
const ADMIN_IDENTIFY: u8 = 0x06;
const ADMIN_SET_FEATURES: u8 = 0x09;
const IO_WRITE: u8 = 0x01;
const IO_READ: u8 = 0x02;

const PAGE: usize = 4096;
/// Entries per queue (the admin queue's and the I/O queue pair's).
const DEPTH: u16 = 32;
/// The MSI-X vector of the I/O completion queue (vector 0 is the admin
/// queue's, which this driver polls).
const IO_VECTOR: u32 = 1;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The pattern at byte offset `at` of the namespace for `seed`, 8 bytes at a
/// time (splitmix64 of seed + offset): the host-side check computes the same.
fn pattern_word(seed: u64, at: u64) -> [u8; 8] {
    let mut z = seed.wrapping_add(at).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).to_le_bytes()
}

/// A submission or completion queue in DMA memory, and where its doorbell is.
struct Queue {
    mem: Mapping<DmaBuffer>,
    /// Next slot to fill (SQ) or to look at (CQ).
    slot: u16,
    /// The phase tag a new completion carries (CQ).
    phase: bool,
    doorbell: u64,
}

impl Queue {
    fn new(ioas: &iommufd::Ioas, entry: usize, doorbell: u64) -> Result<Queue, Error> {
        let buf = DmaBuffer::new(DEPTH as usize * entry)?;
        let mem = ioas
            .map(buf, Iova::Any, Access::READ_WRITE)
            .map_err(|e| e.into_parts().1)?;
        Ok(Queue {
            mem,
            slot: 0,
            phase: true,
            doorbell,
        })
    }
}

/// One NVMe controller, driven through a bound, attached device.
struct Nvme<'d> {
    bar: Mmio<'d>,
    timeout: Duration,
    asq: Queue,
    acq: Queue,
    iosq: Queue,
    iocq: Queue,
    cid: u16,
    irq: &'d EventFd,
}

/// A 64-byte submission entry: opcode, namespace, PRP1, CDW10..12.
fn command(opc: u8, cid: u16, nsid: u32, prp1: u64, cdw: [u32; 3]) -> [u8; 64] {
    let mut e = [0u8; 64];
    e[0] = opc;
    e[2..4].copy_from_slice(&cid.to_le_bytes());
    e[4..8].copy_from_slice(&nsid.to_le_bytes());
    e[24..32].copy_from_slice(&prp1.to_le_bytes());
    for (i, v) in cdw.iter().enumerate() {
        e[40 + 4 * i..44 + 4 * i].copy_from_slice(&v.to_le_bytes());
    }
    e
}

impl Nvme<'_> {
    fn wait_status(&self, what: &str, done: impl Fn(u32) -> bool) -> Result<u32, Error> {
        let start = Instant::now();
        loop {
            let csts = self.bar.read32(CSTS)?;
            if csts & CSTS_CFS != 0 {
                return Err(format!("controller fatal status while waiting for {what}").into());
            }
            if done(csts) {
                return Ok(csts);
            }
            if start.elapsed() > self.timeout {
                return Err(format!(
                    "timed out after {:?} waiting for {what} (CSTS {csts:#x})",
                    self.timeout
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Submits `cmd` on the admin queue (io = false) or the I/O queue, and
    /// waits for its completion: polled for admin, by MSI-X for I/O.
    fn submit(&mut self, io: bool, mut cmd: [u8; 64], what: &str) -> Result<u32, Error> {
        self.cid = self.cid.wrapping_add(1);
        cmd[2..4].copy_from_slice(&self.cid.to_le_bytes());
        let (sq, cq) = if io {
            (&mut self.iosq, &mut self.iocq)
        } else {
            (&mut self.asq, &mut self.acq)
        };
        sq.mem.write_bytes(sq.slot as usize * 64, &cmd)?;
        sq.slot = (sq.slot + 1) % DEPTH;
        self.bar.write32(sq.doorbell, sq.slot as u32)?;
        let start = Instant::now();
        let mut entry = [0u8; 16];
        loop {
            cq.mem.read_bytes(cq.slot as usize * 16, &mut entry)?;
            let status = u16::from_le_bytes([entry[14], entry[15]]);
            if (status & 1 == 1) == cq.phase {
                let cid = u16::from_le_bytes([entry[12], entry[13]]);
                cq.slot = (cq.slot + 1) % DEPTH;
                if cq.slot == 0 {
                    cq.phase = !cq.phase;
                }
                self.bar.write32(cq.doorbell, cq.slot as u32)?;
                let sc = status >> 1;
                if cid != self.cid {
                    return Err(format!(
                        "{what}: completion for command {cid}, expected {}",
                        self.cid
                    )
                    .into());
                }
                if sc != 0 {
                    return Err(format!(
                        "{what} failed: status code type {:#x}, code {:#x}",
                        (sc >> 8) & 7,
                        sc & 0xff
                    )
                    .into());
                }
                return Ok(u32::from_le_bytes(entry[..4].try_into().unwrap()));
            }
            let left = IO_TIMEOUT.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(format!("{what}: no completion within {IO_TIMEOUT:?}").into());
            }
            if io {
                // The completion raises MSI-X vector IO_VECTOR on the eventfd.
                self.irq.wait(left)?;
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

struct Args {
    bdf: String,
    lba: u64,
    blocks: u64,
    seed: u64,
}

fn parse_args() -> Result<Args, Error> {
    let usage = "usage: nvme <BDF> --lba <L> --blocks <N> --seed <S>";
    let a: Vec<String> = std::env::args().skip(1).collect();
    let (mut lba, mut blocks, mut seed) = (None, None, None);
    let mut bdf = None;
    let mut it = a.iter();
    while let Some(arg) = it.next() {
        let mut num = |what: &str| -> Result<u64, Error> {
            let v = it.next().ok_or(format!("{what} needs a value; {usage}"))?;
            Ok(v.parse().map_err(|e| format!("{what} {v}: {e}"))?)
        };
        match arg.as_str() {
            "--lba" => lba = Some(num("--lba")?),
            "--blocks" => blocks = Some(num("--blocks")?),
            "--seed" => seed = Some(num("--seed")?),
            b if !b.starts_with('-') && bdf.is_none() => bdf = Some(b.to_string()),
            other => return Err(format!("unexpected argument {other}; {usage}").into()),
        }
    }
    match (bdf, lba, blocks, seed) {
        (Some(bdf), Some(lba), Some(blocks), Some(seed)) if blocks > 0 => Ok(Args {
            bdf,
            lba,
            blocks,
            seed,
        }),
        _ => Err(usage.into()),
    }
}

fn main() {
    if let Err(e) = parse_args().and_then(|a| run(&a)) {
        eprintln!("nvme: {e}");
        std::process::exit(1);
    }
}

fn run(a: &Args) -> Result<(), Error> {
    let iommufd = Iommufd::open()?;
    let ioas = iommufd.alloc_ioas()?;
    let mut dev = Device::open(&a.bdf)?
        .bind(&iommufd)
        .map_err(|e| e.into_parts().1)?;
    // An NVMe controller: class code 01:08:02 (mass storage, NVM, NVMe).
    let mut class = [0u8; 3];
    dev.config_read(0x09, &mut class)?;
    if class != [0x02, 0x08, 0x01] {
        return Err(format!(
            "{} is not an NVMe controller (class code {:02x}{:02x}{:02x}, want 010802)",
            a.bdf, class[2], class[1], class[0]
        )
        .into());
    }
    // Memory space and bus master on, as any PCI driver does.
    let mut cmd = [0u8; 2];
    dev.config_read(4, &mut cmd)?;
    dev.config_write(4, &(u16::from_le_bytes(cmd) | 0x6).to_le_bytes())?;
    dev.map_bar(pci::BAR0)?;
    let msix = dev.irq_info(pci::MSIX_IRQ)?;
    if msix.count <= IO_VECTOR {
        return Err(format!(
            "{}: {} MSI-X vectors, need {}",
            a.bdf,
            msix.count,
            IO_VECTOR + 1
        )
        .into());
    }
    let dev = dev.attach(&ioas).map_err(|e| e.into_parts().1)?;
    // Only vector IO_VECTOR is routed (a sparse route: vector 0 stays unrouted).
    let irq = EventFd::new()?;
    dev.set_irq_eventfds(pci::MSIX_IRQ, IO_VECTOR, &[&irq])?;

    let bar = dev.mmio(pci::BAR0)?;
    let cap = bar.read64(CAP)?;
    let stride = 4u64 << ((cap >> 32) & 0xf);
    let mqes = (cap & 0xffff) as u16 + 1;
    if mqes < DEPTH {
        return Err(format!("queues of at most {mqes} entries; this driver uses {DEPTH}").into());
    }
    let timeout = Duration::from_millis(500 * ((cap >> 24) & 0xff).max(1));
    let db = |qid: u64, cq: bool| DOORBELLS + (2 * qid + cq as u64) * stride;
    let mut nvme = Nvme {
        bar,
        timeout,
        asq: Queue::new(&ioas, 64, db(0, false))?,
        acq: Queue::new(&ioas, 16, db(0, true))?,
        iosq: Queue::new(&ioas, 64, db(1, false))?,
        iocq: Queue::new(&ioas, 16, db(1, true))?,
        cid: 0,
        irq: &irq,
    };

    // Reset the controller, give it the admin queue, enable it.
    let cc = nvme.bar.read32(CC)?;
    if cc & CC_EN != 0 {
        nvme.bar.write32(CC, cc & !CC_EN)?;
    }
    nvme.wait_status("the controller to disable", |s| s & CSTS_RDY == 0)?;
    let depth = u32::from(DEPTH - 1);
    nvme.bar.write32(AQA, (depth << 16) | depth)?;
    nvme.bar.write64(ASQ, nvme.asq.mem.iova())?;
    nvme.bar.write64(ACQ, nvme.acq.mem.iova())?;
    nvme.bar.write32(CC, CC_IOSQES_IOCQES | CC_EN)?;
    nvme.wait_status("the controller to become ready", |s| s & CSTS_RDY != 0)?;
    let vs = nvme.bar.read32(VS)?;

    // Identify Controller and Namespace 1 into one page.
    let ident = ioas
        .map(DmaBuffer::new(PAGE)?, Iova::Any, Access::WRITE)
        .map_err(|e| e.into_parts().1)?;
    nvme.submit(
        false,
        command(ADMIN_IDENTIFY, 0, 0, ident.iova(), [1, 0, 0]),
        "Identify Controller",
    )?;
    let mut ctrl = [0u8; PAGE];
    ident.read_bytes(0, &mut ctrl)?;
    let model = String::from_utf8_lossy(&ctrl[24..64]).trim().to_string();
    let nn = u32::from_le_bytes(ctrl[516..520].try_into().unwrap());
    if nn == 0 {
        return Err(format!("{}: the controller reports no namespaces", a.bdf).into());
    }
    nvme.submit(
        false,
        command(ADMIN_IDENTIFY, 0, 1, ident.iova(), [0, 0, 0]),
        "Identify Namespace 1",
    )?;
    let mut ns = [0u8; PAGE];
    ident.read_bytes(0, &mut ns)?;
    let nsze = u64::from_le_bytes(ns[0..8].try_into().unwrap());
    let flbas = (ns[26] & 0xf) as usize;
    let lbaf = u32::from_le_bytes(ns[128 + 4 * flbas..132 + 4 * flbas].try_into().unwrap());
    let lba_size = 1u64 << ((lbaf >> 16) & 0xff);
    if lba_size as usize > PAGE || lba_size < 512 {
        return Err(format!(
            "LBA size {lba_size} is outside what this driver handles (512..=4096)"
        )
        .into());
    }
    let end = a.lba.checked_add(a.blocks).filter(|&e| e <= nsze);
    if end.is_none() {
        return Err(format!(
            "LBAs [{}, +{}) are past the end of namespace 1 ({nsze} blocks of {lba_size} bytes)",
            a.lba, a.blocks
        )
        .into());
    }

    // One I/O queue pair; its completions raise MSI-X vector IO_VECTOR.
    nvme.submit(
        false,
        command(ADMIN_SET_FEATURES, 0, 0, 0, [0x07, 0, 0]),
        "Set Features (queues)",
    )?;
    let (cq_iova, sq_iova) = (nvme.iocq.mem.iova(), nvme.iosq.mem.iova());
    let qsize = u32::from(DEPTH - 1) << 16;
    nvme.submit(
        false,
        command(
            ADMIN_CREATE_CQ,
            0,
            0,
            cq_iova,
            [qsize | 1, (IO_VECTOR << 16) | 0b11, 0],
        ),
        "Create I/O Completion Queue",
    )?;
    nvme.submit(
        false,
        command(
            ADMIN_CREATE_SQ,
            0,
            0,
            sq_iova,
            [qsize | 1, (1 << 16) | 1, 0],
        ),
        "Create I/O Submission Queue",
    )?;

    // The pattern, written a page at a time (one PRP per command).
    let bytes = a.blocks * lba_size;
    let len = (bytes as usize).next_multiple_of(PAGE);
    let mut data = DmaBuffer::new(len)?;
    let base = a.lba * lba_size;
    for (i, w) in data.as_mut_slice()[..bytes as usize]
        .chunks_mut(8)
        .enumerate()
    {
        w.copy_from_slice(&pattern_word(a.seed, base + 8 * i as u64)[..w.len()]);
    }
    let expect = data.as_slice()[..bytes as usize].to_vec();
    let src = ioas
        .map(data, Iova::Any, Access::READ)
        .map_err(|e| e.into_parts().1)?;
    let dst = ioas
        .map(DmaBuffer::new(len)?, Iova::Any, Access::WRITE)
        .map_err(|e| e.into_parts().1)?;
    let per_cmd = PAGE as u64 / lba_size;
    let mut done = 0;
    while done < a.blocks {
        let n = per_cmd.min(a.blocks - done);
        let slba = a.lba + done;
        let off = done * lba_size;
        let cdw = [slba as u32, (slba >> 32) as u32, (n - 1) as u32];
        nvme.submit(
            true,
            command(IO_WRITE, 0, 1, src.iova() + off, cdw),
            "Write",
        )?;
        nvme.submit(true, command(IO_READ, 0, 1, dst.iova() + off, cdw), "Read")?;
        done += n;
    }
    let mut got = vec![0u8; bytes as usize];
    dst.read_bytes(0, &mut got)?;
    let ok = got == expect;

    // Shut the controller down cleanly, then give the device back.
    let cc = nvme.bar.read32(CC)?;
    nvme.bar.write32(CC, cc | CC_SHN_NORMAL)?;
    nvme.wait_status("shutdown", |s| s & CSTS_SHST_MASK == CSTS_SHST_DONE)?;
    dev.disable_irqs(pci::MSIX_IRQ)?;
    drop(nvme);
    let dev = dev.detach().map_err(|e| e.into_parts().1)?;
    dev.close();

    println!(
        "nvme {}: {model} (NVMe {}.{}), namespace 1: {nsze} blocks of {lba_size} bytes; {} blocks at LBA {} seed {}: {}",
        a.bdf,
        vs >> 16,
        (vs >> 8) & 0xff,
        a.blocks,
        a.lba,
        a.seed,
        if ok { "written and read back, equal" } else { "MISMATCH" }
    );
    if !ok {
        let at = got
            .iter()
            .zip(&expect)
            .position(|(g, e)| g != e)
            .unwrap_or(0);
        return Err(format!("read-back differs from what was written at byte {at}").into());
    }
    Ok(())
}
