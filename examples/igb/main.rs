//! A user-space igb driver on nothing but the crate's public API: QEMU's
//! emulated 82576 turned into a DMA copy engine by MAC loopback (the
//! engine is `driver.rs`). Every copy goes through the IOMMU twice: the
//! device reads its source and writes its destination by IOVA.
//!
//! ```text
//! igb <BDF> --count <C> --size <N|mixed> --seed <S> [--poll] [--bring-ups <K>]
//!           [--from-unmapped | --to-unmapped]
//! ```
//!
//! It maps a 1 MiB source (a seeded pattern) and a 1 MiB destination, and
//! makes C copies of N bytes (at least 60, Ethernet's minimum frame; or
//! `mixed`: sizes from 60 to 64 KiB, around the frame boundaries), each
//! from and to seeded offsets, each checked against the pattern. Completion
//! is MSI-X vector 0 on an eventfd, or with `--poll` a spin on the receive
//! ring. `--bring-ups K` resets and sets up the device K times first.
//!
//! `--from-unmapped` and `--to-unmapped` copy, before each good copy, from
//! or to an IOVA the IOAS does not map: the first is refused by the IOMMU at the read,
//! and the device sends nothing (the engine reports it and is set up
//! again); the second is refused at the write, and nothing mapped changes.
//! The good copy after each must still be equal.
//!
//! One line on success; a clear message and exit 1 on bad input or a
//! device that does not answer (every wait has a timeout).
//!
//! In the test guest: `cargo xtask vmtest igb` (`tests/guest_examples.rs`).

mod driver;

use driver::{CopyError, Engine, Error, Msix, RingMemory, MIN_FRAME};
use iommufd::{pci, Access, DmaBuffer, EventFd, Iommufd, Iova};

/// The source and destination buffers: 1 MiB, too small for a transparent
/// huge page, so the IOMMU maps them with 4 KiB pages and frames cross
/// pages that need not be contiguous.
const BUF: usize = 1 << 20;
/// An IOVA the example never maps (64 GiB), inside the IOMMU's reach.
const UNMAPPED: u64 = 1 << 36;
/// `--size mixed`: around one and two frames, a page, a jumbo and 64 KiB.
const MIXED: [u64; 10] = [60, 61, 100, 1513, 1514, 1515, 3028, 4096, 9000, 65536];

#[derive(PartialEq)]
enum Fault {
    None,
    FromUnmapped,
    ToUnmapped,
}

struct Args {
    bdf: String,
    count: u64,
    size: Option<u64>,
    seed: u64,
    poll: bool,
    bring_ups: u32,
    fault: Fault,
}

fn parse_args() -> Result<Args, Error> {
    let usage = "usage: igb <BDF> --count <C> --size <N|mixed> --seed <S> [--poll] \
                 [--bring-ups <K>] [--from-unmapped | --to-unmapped]";
    let a: Vec<String> = std::env::args().skip(1).collect();
    let (mut count, mut size, mut seed, mut bdf) = (None, None, None, None);
    let (mut poll, mut bring_ups, mut fault) = (false, 1, Fault::None);
    let mut it = a.iter();
    while let Some(arg) = it.next() {
        let mut value = |what: &str| -> Result<&String, Error> {
            Ok(it.next().ok_or(format!("{what} needs a value; {usage}"))?)
        };
        let num = |what: &str, v: &String| -> Result<u64, Error> {
            Ok(v.parse().map_err(|e| format!("{what} {v}: {e}"))?)
        };
        match arg.as_str() {
            "--count" => count = Some(num("--count", value("--count")?)?),
            "--seed" => seed = Some(num("--seed", value("--seed")?)?),
            "--bring-ups" => bring_ups = num("--bring-ups", value("--bring-ups")?)? as u32,
            "--size" => {
                let v = value("--size")?;
                size = Some(if v == "mixed" {
                    None
                } else {
                    Some(num("--size", v)?)
                });
            }
            "--poll" => poll = true,
            "--from-unmapped" if fault == Fault::None => fault = Fault::FromUnmapped,
            "--to-unmapped" if fault == Fault::None => fault = Fault::ToUnmapped,
            b if !b.starts_with('-') && bdf.is_none() => bdf = Some(b.to_string()),
            other => return Err(format!("unexpected argument {other}; {usage}").into()),
        }
    }
    let (Some(bdf), Some(count), Some(size), Some(seed)) = (bdf, count, size, seed) else {
        return Err(usage.into());
    };
    if let Some(n) = size {
        if n < MIN_FRAME || n > BUF as u64 {
            return Err(format!(
                "--size {n}: the engine copies {MIN_FRAME} bytes (Ethernet's shortest frame) to {BUF} bytes"
            )
            .into());
        }
    }
    Ok(Args {
        bdf,
        count,
        size,
        seed,
        poll,
        bring_ups: bring_ups.max(1),
        fault,
    })
}

/// xorshift64*: the offsets and sizes of the copies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The source pattern: bytes of 0x90..=0xff only, so that no frame's bytes
/// 12..14 read as an IPv4, IPv6 or VLAN type, which QEMU's model parses
/// and may drop (`driver.rs`).
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    (0..len).map(|_| 0x90 | (r.next() >> 57) as u8).collect()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn main() {
    if let Err(e) = parse_args().and_then(|a| run(&a)) {
        eprintln!("igb: {e}");
        std::process::exit(1);
    }
}

fn run(a: &Args) -> Result<(), Error> {
    let fds_before = open_fds();
    let outcome = {
        let iommufd = Iommufd::open()?;
        let ioas = iommufd.alloc_ioas()?;
        let dev = driver::open(&a.bdf, &iommufd, &ioas)?;
        let irq = EventFd::new()?;
        if !a.poll {
            dev.set_irq_eventfds(pci::MSIX_IRQ, driver::VECTOR, &[&irq])?;
        }
        let bar = dev.mmio(pci::BAR0)?;
        let mut rings = RingMemory::new(&ioas)?;
        let (tx, rx) = (rings.tx.iova(), rings.rx.iova());
        for _ in 0..a.bring_ups {
            driver::bring_up(&bar, tx, rx, !a.poll)?;
        }
        let want = pattern(a.seed, BUF);
        let mut src_buf = DmaBuffer::new(BUF)?;
        src_buf.as_mut_slice().copy_from_slice(&want);
        let src = ioas
            .map(src_buf, Iova::Any, Access::READ)
            .map_err(|e| e.into_parts().1)?;
        let mut dst = ioas
            .map(DmaBuffer::new(BUF)?, Iova::Any, Access::WRITE)
            .map_err(|e| e.into_parts().1)?;
        let mut msix = Msix {
            bar: &bar,
            eventfd: &irq,
            count: 0,
        };
        if !a.poll {
            // The route first: one software-raised interrupt.
            driver::send_msi(&bar)?;
            if irq.wait(std::time::Duration::from_secs(2))? == 0 {
                return Err(format!("{}: no MSI-X interrupt from EICS within 2 s", a.bdf).into());
            }
        }
        let mut engine = Engine::new(rings.typed(&bar)?);
        let mut rng = Rng(a.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut got = vec![0u8; BUF];
        let mut bytes = 0u64;
        let copy = |engine: &mut Engine<_>, msix: &mut Msix, s: u64, d: u64, n: u64| {
            let irq: Option<&mut dyn driver::Interrupt> = if a.poll { None } else { Some(msix) };
            engine.copy(s, d, n, irq)
        };
        let mut fault_line = String::new();
        let mut faults = 0u64;
        for i in 0..a.count {
            // A fault before each copy (the kernel selftest's mix_and_match):
            // the engine must copy right after every one.
            match a.fault {
                Fault::None => {}
                Fault::FromUnmapped => {
                    // The IOMMU refuses the read. What the device does then is
                    // the device's: a real 82576 sees a completion abort and
                    // may send nothing; QEMU's sends what the refused read gave
                    // it, zeros. Either way no byte of anything else arrives.
                    let n = a.size.unwrap_or(4096);
                    let poison = pattern(!a.seed, BUF);
                    dst.write_bytes(0, &poison)?;
                    let r = copy(&mut engine, &mut msix, UNMAPPED, dst.iova(), n);
                    dst.read_bytes(0, &mut got)?;
                    let n = n as usize;
                    let what = match r {
                        Err(e @ (CopyError::NotSent { .. } | CopyError::NotReceived { .. })) => {
                            e.to_string()
                        }
                        Ok(()) if got[..n].iter().all(|&b| b == 0) => {
                            "the device read zeros in its place".to_string()
                        }
                        Ok(()) if got[..n] == poison[..n] => "nothing arrived".to_string(),
                        other => {
                            return Err(format!(
                                "a copy from unmapped IOVA {UNMAPPED:#x} brought data: {other:?}"
                            )
                            .into())
                        }
                    };
                    if got[n..] != poison[n..] {
                        return Err(format!(
                            "a copy from unmapped IOVA {UNMAPPED:#x} wrote past its {n} bytes"
                        )
                        .into());
                    }
                    // Descriptors the device may still own: set up again.
                    driver::bring_up(&bar, tx, rx, !a.poll)?;
                    engine.restart();
                    fault_line =
                        format!("copy from unmapped IOVA {UNMAPPED:#x}: {what}; set up again; ");
                    faults += 1;
                }
                Fault::ToUnmapped => {
                    let n = a.size.unwrap_or(4096);
                    let poison = pattern(!a.seed, BUF);
                    dst.write_bytes(0, &poison)?;
                    let r = copy(&mut engine, &mut msix, src.iova(), UNMAPPED, n);
                    dst.read_bytes(0, &mut got)?;
                    let mut src_now = vec![0u8; BUF];
                    src.read_bytes(0, &mut src_now)?;
                    if got != poison || src_now != want {
                        return Err(format!(
                            "a copy to unmapped IOVA {UNMAPPED:#x} changed mapped memory"
                        )
                        .into());
                    }
                    fault_line = format!(
                        "copy to unmapped IOVA {UNMAPPED:#x}: {}; nothing mapped changed; ",
                        match r {
                            Ok(()) => "the device reported it done".to_string(),
                            Err(e) => e.to_string(),
                        }
                    );
                    faults += 1;
                }
            }
            let n = a.size.unwrap_or(MIXED[(i % MIXED.len() as u64) as usize]);
            let s = rng.next() % (BUF as u64 - n + 1);
            let d = rng.next() % (BUF as u64 - n + 1);
            copy(&mut engine, &mut msix, src.iova() + s, dst.iova() + d, n)
                .map_err(|e| format!("copy {i} ({n} bytes): {e}; {}", driver::state(&bar)))?;
            let (s, d, n) = (s as usize, d as usize, n as usize);
            dst.read_bytes(d, &mut got[..n])?;
            if got[..n] != want[s..s + n] {
                let at = got[..n]
                    .iter()
                    .zip(&want[s..s + n])
                    .position(|(g, w)| g != w)
                    .unwrap_or(0);
                return Err(format!(
                    "copy {i} ({n} bytes, source +{s:#x}, destination +{d:#x}) differs at byte {at}"
                )
                .into());
            }
            bytes += n as u64;
        }
        let frames = engine.frames;
        driver::shut_down(&bar)?;
        let interrupts = msix.count;
        if !a.poll {
            dev.disable_irqs(pci::MSIX_IRQ)?;
        }
        let dev = dev.detach().map_err(|e| e.into_parts().1)?;
        dev.close();
        if faults > 0 {
            fault_line = format!("{faults} times: {fault_line}");
        }
        (frames, interrupts, bytes, fault_line)
    };
    let (frames, interrupts, bytes, fault_line) = outcome;
    println!(
        "igb {}: {fault_line}{} copies ({} bytes, {frames} frames) through the IOMMU, {}: equal; open fds {fds_before} before, {} after",
        a.bdf,
        a.count,
        bytes,
        if a.poll {
            "polled".to_string()
        } else {
            format!("{interrupts} MSI-X interrupts")
        },
        open_fds()
    );
    Ok(())
}
