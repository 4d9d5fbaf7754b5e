//! A userspace NVMe driver on nothing but the crate's public API: the admin
//! queue, Identify Controller and Identify Namespace, one I/O queue pair
//! whose completion interrupt is an MSI-X vector on an eventfd (or, with
//! `--poll`, no interrupt: the driver spins on the completion queue), and a
//! write + read-back of a seeded pattern through the IOMMU.
//!
//! ```text
//! nvme <BDF> --lba <L> --blocks <N> --seed <S> [--poll]
//! ```
//!
//! It writes N blocks starting at LBA L with a pattern derived from S, reads
//! them back, compares, and prints one line with the namespace's LBA size
//! and the result. The LBA size and capacity come from the device (Identify
//! Namespace), never assumed. A BDF that is not an NVMe controller, an LBA
//! range past the namespace's end, a device that does not answer: a clear
//! message and exit 1, never a hang (every wait on the device has a timeout).
//!
//! The queues are reached through the crate's typed rings (`driver.rs`,
//! which the instruction counts of `tests/guest_overhead.rs` and the bench
//! also run on raw pointers).
//!
//! In the test guest: `cargo xtask vmtest nvme` (`tests/guest_examples.rs`
//! runs it on the guest's NVMe controller; after the guest powers off, the
//! host checks the pattern in the controller's backing image).

mod driver;

use driver::{command, Error, QueueMemory, ADMIN_DEPTH, PAGE};
use iommufd::{pci, Access, DmaBuffer, EventFd, Iommufd, Iova};
use std::time::Duration;

/// Entries of the I/O queue pair.
const DEPTH: u16 = 32;
/// The MSI-X vector of the I/O completion queue (vector 0 is the admin
/// queue's, which this driver polls).
const IO_VECTOR: u32 = 1;

/// The pattern at byte offset `at` of the namespace for `seed`, 8 bytes at a
/// time (splitmix64 of seed + offset): the host-side check computes the same.
fn pattern_word(seed: u64, at: u64) -> [u8; 8] {
    let mut z = seed.wrapping_add(at).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).to_le_bytes()
}

struct Args {
    bdf: String,
    lba: u64,
    blocks: u64,
    seed: u64,
    poll: bool,
}

fn parse_args() -> Result<Args, Error> {
    let usage = "usage: nvme <BDF> --lba <L> --blocks <N> --seed <S> [--poll]";
    let a: Vec<String> = std::env::args().skip(1).collect();
    let (mut lba, mut blocks, mut seed) = (None, None, None);
    let mut bdf = None;
    let mut poll = false;
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
            "--poll" => poll = true,
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
            poll,
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
    let dev = driver::open(&a.bdf, &iommufd, &ioas)?;
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
    // Only vector IO_VECTOR is routed (a sparse route: vector 0 stays unrouted).
    let irq = EventFd::new()?;
    if !a.poll {
        dev.set_irq_eventfds(pci::MSIX_IRQ, IO_VECTOR, &[&irq])?;
    }
    let bar = dev.mmio(pci::BAR0)?;
    let mut admin_mem = QueueMemory::new(&ioas, ADMIN_DEPTH)?;
    let mut io_mem = QueueMemory::new(&ioas, DEPTH)?;
    let mut nvme = driver::bring_up(&bar, &mut admin_mem)?;
    let vs = nvme.version;

    // Identify Controller and Namespace 1 into one page.
    let ident = ioas
        .map(DmaBuffer::new(PAGE)?, Iova::Any, Access::WRITE)
        .map_err(|e| e.into_parts().1)?;
    nvme.admin(
        command(driver::ADMIN_IDENTIFY, 0, ident.iova(), [1, 0, 0]),
        "Identify Controller",
    )?;
    let mut ctrl = [0u8; PAGE];
    ident.read_bytes(0, &mut ctrl)?;
    let model = String::from_utf8_lossy(&ctrl[24..64]).trim().to_string();
    let nn = ident.read::<u32>(516)?;
    if nn == 0 {
        return Err(format!("{}: the controller reports no namespaces", a.bdf).into());
    }
    nvme.admin(
        command(driver::ADMIN_IDENTIFY, 1, ident.iova(), [0, 0, 0]),
        "Identify Namespace 1",
    )?;
    let nsze = u64::from_le(ident.read::<u64>(0)?);
    let flbas = usize::from(ident.read::<u8>(26)? & 0xf);
    let lbaf = u32::from_le(ident.read::<u32>(128 + 4 * flbas)?);
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

    // One I/O queue pair; its completions raise MSI-X vector IO_VECTOR
    // unless polled.
    nvme.admin(
        command(driver::ADMIN_SET_FEATURES, 0, 0, [0x07, 0, 0]),
        "Set Features (queues)",
    )?;
    let vector = (!a.poll).then_some(IO_VECTOR);
    nvme.create_io_queues(1, DEPTH, io_mem.sq.iova(), io_mem.cq.iova(), vector)?;
    let typed = io_mem.typed::<{ DEPTH as usize }>(&bar, 1, nvme.stride)?;
    let mut io = driver::QueuePair::new(typed, DEPTH);
    let mut on_irq =
        |left: Duration| -> Result<(), Error> { irq.wait(left).map(drop).map_err(Into::into) };
    let mut io_run = |entry, what: &str| {
        let wait: Option<&mut dyn FnMut(Duration) -> Result<(), Error>> =
            if a.poll { None } else { Some(&mut on_irq) };
        io.run(entry, what, wait)
    };

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
        io_run(command(driver::IO_WRITE, 1, src.iova() + off, cdw), "Write")?;
        io_run(command(driver::IO_READ, 1, dst.iova() + off, cdw), "Read")?;
        done += n;
    }
    let mut got = vec![0u8; bytes as usize];
    dst.read_bytes(0, &mut got)?;
    let ok = got == expect;

    // Shut the controller down cleanly, then give the device back.
    nvme.shut_down()?;
    if !a.poll {
        dev.disable_irqs(pci::MSIX_IRQ)?;
    }
    let dev = dev.detach().map_err(|e| e.into_parts().1)?;
    dev.close();

    println!(
        "nvme {}: {model} (NVMe {}.{}), namespace 1: {nsze} blocks of {lba_size} bytes; {} blocks at LBA {} seed {}{}: {}",
        a.bdf,
        vs >> 16,
        (vs >> 8) & 0xff,
        a.blocks,
        a.lba,
        a.seed,
        if a.poll { ", polled" } else { "" },
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
