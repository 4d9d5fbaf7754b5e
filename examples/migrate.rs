//! A VMM's live-migration loop behind a vIOMMU, without losing a page the
//! device wrote: guest RAM whose DMA goes through the guest's stage-1 (a
//! nested HWPT on a vIOMMU) over a stage-2 that tracks dirty pages
//! (`Hwpt<TrackedNestParent>`), and an `mtty` mediated device migrated with
//! it, round after round, to a destination in the same process (a second
//! iommufd, its own RAM, a second mtty).
//!
//! It runs on the kernel's iommufd test driver (`CONFIG_IOMMUFD_TEST`,
//! feature `iommufd-test-driver`), whose mock device stands for the
//! assigned device: the test driver walks no stage-1 table, so this program
//! plays the device, writing guest RAM pages with the CPU and marking the
//! same guest-physical pages dirty on the stage-2 with the test op. Midway it
//! hot-plugs RAM and changes the guest's stage-1 (the nested HWPT replaced
//! and invalidated); the dirty pages keep coming from the stage-2, which
//! maps guest-physical addresses and does not change.
//!
//! Usage: `migrate [ROUNDS]` (default 6), as root in the test guest
//! (`cargo xtask vmtest example`). Exits 0 when every page of the
//! destination's RAM equals the source's and the mtty's state crossed over;
//! 1 on any error, with the crate's message; 2 where the test driver makes
//! no mock device (Linux 6.12 next to VT-d).

use iommufd::hwpt::{DirtyBitmap, Hwpt, Invalidation, Nested, Stage1, TrackedNestParent};
use iommufd::mock::MockDevice;
use iommufd::viommu::{Viommu, ViommuKind};
use iommufd::{Access, Device, DmaBuffer, Iommufd, Iova, IovaRange, Mapping};
use std::collections::BTreeMap;
use std::io::{Read, Write};

const PAGE: u64 = 4096;
/// Guest RAM at guest-physical 16 MiB (the mock IOMMU's aperture starts
/// there), 64 pages; hot-plugged RAM 1 MiB above it, 16 pages.
const RAM: u64 = 1 << 24;
const RAM_PAGES: u64 = 64;
const HOT: u64 = RAM + (1 << 20);
const HOT_PAGES: u64 = 16;
/// What the dirty reads cover: all guest RAM, hot-plugged included.
const WINDOW: u64 = HOT + HOT_PAGES * PAGE - RAM;

/// mtty's UART registers (port 0 of BAR0).
const UART_DATA: u64 = 0;
const UART_FCR: u64 = 2;
const UART_LSR: u64 = 5;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() {
    let rounds = match std::env::args().nth(1).map(|r| r.parse::<u64>()) {
        None => 6,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("usage: migrate [ROUNDS] (ROUNDS: a number of rounds, default 6)");
            std::process::exit(1);
        }
    };
    match run(rounds) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("migrate: {e}");
            let no_mock = e
                .downcast_ref::<iommufd::Error>()
                .is_some_and(|e| e.operation().contains("MOCK_DOMAIN"));
            std::process::exit(if no_mock { 2 } else { 1 });
        }
    }
}

/// One page of the source's guest RAM: mapped for DMA, reached by the CPU
/// through volatile copies only.
struct Ram {
    pages: BTreeMap<u64, Mapping<DmaBuffer>>,
}

impl Ram {
    fn plug(&mut self, ioas: &iommufd::Ioas, at: u64, n: u64) -> Res<()> {
        for i in 0..n {
            let gpa = at + i * PAGE;
            let m = ioas
                .map(
                    DmaBuffer::new(PAGE as usize)?,
                    Iova::Fixed(gpa),
                    Access::READ_WRITE,
                )
                .map_err(iommufd::Error::from)?;
            self.pages.insert(gpa, m);
        }
        Ok(())
    }
}

/// A page's contents after write number `n`.
fn pattern(gpa: u64, n: u64) -> Vec<u8> {
    (0..PAGE).map(|i| ((gpa / PAGE) ^ n ^ i) as u8).collect()
}

/// The mtty instance type, from sysfs.
fn mtty_type() -> Res<iommufd::mdev::MdevType> {
    for p in iommufd::mdev::parents()? {
        if p.name() == "mtty" {
            if let Some(t) = p.types()?.into_iter().find(|t| t.id() == "mtty-1") {
                return Ok(t);
            }
        }
    }
    Err("no mtty mdev parent (CONFIG_SAMPLE_VFIO_MDEV_MTTY)".into())
}

fn run(rounds: u64) -> Res<()> {
    // The source: guest RAM behind a vIOMMU, over a tracked stage-2.
    let fd = Iommufd::open_iommufd()?;
    let ioas = fd.alloc_ioas()?;
    let mut ram = Ram {
        pages: BTreeMap::new(),
    };
    ram.plug(&ioas, RAM, RAM_PAGES)?;
    let mut dev = MockDevice::new(&ioas)?;
    let s2 = Hwpt::<TrackedNestParent>::alloc(&dev, &ioas)?;
    let viommu = Viommu::alloc(&dev, &s2, ViommuKind::Selftest)?;
    let _vdev = viommu.alloc_vdevice(&dev, 1)?;
    let s1 = Hwpt::<Nested>::alloc_nested_on(&dev, &viommu, &Stage1::Selftest { iotlb: 0 })?;
    dev.replace(&s1)?;
    let tracking = s2.start_dirty_tracking()?;

    // The source's mtty, with bytes in its FIFO; its migration logs its DMA
    // over all guest RAM (it does none, but says so through its own log).
    let ty = mtty_type()?;
    let (src_mdev, dst_mdev) = (ty.create()?.remove_on_drop(), ty.create()?.remove_on_drop());
    let src_tty = src_mdev.open()?.bind(&fd)?.attach(&ioas)?;
    src_tty.region_write(0, UART_FCR, &[1])?;
    for b in b"migrated" {
        src_tty.region_write(0, UART_DATA, &[*b])?;
    }
    let window = IovaRange {
        start: RAM,
        last: RAM + WINDOW - 1,
    };
    let tty = src_tty
        .into_migration()
        .map_err(iommufd::Error::from)?
        .log_dma(PAGE, &[window])
        .map_err(iommufd::Error::from)?;
    let mut saving = tty.pre_copy().map_err(iommufd::Error::from)?;

    // The destination: another iommufd, its own RAM, a second mtty.
    let fd2 = Iommufd::open_iommufd()?;
    let ioas2 = fd2.alloc_ioas()?;
    let dst_tty = dst_mdev.open()?.bind(&fd2)?.attach(&ioas2)?;
    let mut dst_ram: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut tty_state = Vec::new();

    // What the source wrote last to each page, to check the destination.
    let mut written: BTreeMap<u64, u64> = BTreeMap::new();
    let mut bitmap = DirtyBitmap::default();
    let (mut copied, mut seed) = (0u64, 0x9e37_79b9_7f4a_7c15u64);
    let copy_round = |ram: &Ram,
                      bitmap: &mut DirtyBitmap,
                      dst: &mut BTreeMap<u64, Vec<u8>>|
     -> Res<u64> {
        tracking.read_dirty_into(RAM, WINDOW, PAGE, false, bitmap)?;
        let mut n = 0;
        for (iova, len) in bitmap.ranges() {
            for gpa in (iova..iova + len).step_by(PAGE as usize) {
                let Some(m) = ram.pages.get(&gpa) else {
                    return Err(format!("page {gpa:#x} reported dirty but not guest RAM").into());
                };
                let mut page = vec![0u8; PAGE as usize];
                m.read_bytes(0, &mut page)?;
                dst.insert(gpa, page);
                n += 1;
            }
        }
        Ok(n)
    };
    // Round 0 copies all of RAM: the device wrote it all once.
    let all: Vec<u64> = ram.pages.keys().copied().collect();
    for &gpa in &all {
        let m = ram.pages.get_mut(&gpa).expect("plugged");
        m.write_bytes(0, &pattern(gpa, 0))?;
        written.insert(gpa, 0);
    }
    dev.mark_dirty(&s2, RAM, RAM_PAGES * PAGE, PAGE, &[u64::MAX])?;
    copied += copy_round(&ram, &mut bitmap, &mut dst_ram)?;

    for round in 1..=rounds {
        let mut dirty = vec![0u64; (WINDOW / PAGE).div_ceil(64) as usize];
        if round == 2 {
            // Memory hot-plug: more RAM mapped, inside the mtty's log
            // window (a map outside it would be refused while it logs).
            // The guest fills it, by DMA: the stage-2, tracking since
            // before this mapping existed, must report every page.
            ram.plug(&ioas, HOT, HOT_PAGES)?;
            for i in 0..HOT_PAGES {
                let gpa = HOT + i * PAGE;
                let m = ram.pages.get_mut(&gpa).expect("plugged");
                m.write_bytes(0, &pattern(gpa, round))?;
                written.insert(gpa, round);
                let bit = (gpa - RAM) / PAGE;
                dirty[(bit / 64) as usize] |= 1 << (bit % 64);
            }
        }
        if round == 3 {
            // The guest changes its stage-1: a new nested HWPT, the old
            // one's cached translations invalidated. The stage-2 still
            // tracks the same guest-physical pages.
            let s1b =
                Hwpt::<Nested>::alloc_nested_on(&dev, &viommu, &Stage1::Selftest { iotlb: 1 })?;
            dev.replace(&s1b)?;
            s1.invalidate(&[Invalidation::Selftest {
                flags: 1,
                iotlb_id: 0,
            }])?;
        }
        // The device writes some pages (the last page of each region in
        // every round, so a read that stops short of the end is caught).
        let pages: Vec<u64> = ram.pages.keys().copied().collect();
        let mut chosen: Vec<u64> = (0..8)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                pages[(seed % pages.len() as u64) as usize]
            })
            .collect();
        chosen.push(RAM + (RAM_PAGES - 1) * PAGE);
        if round >= 2 {
            chosen.push(HOT + (HOT_PAGES - 1) * PAGE);
        }
        for gpa in chosen {
            let m = ram.pages.get_mut(&gpa).expect("plugged");
            m.write_bytes(0, &pattern(gpa, round))?;
            written.insert(gpa, round);
            let i = (gpa - RAM) / PAGE;
            dirty[(i / 64) as usize] |= 1 << (i % 64);
        }
        let marked = dev.mark_dirty(&s2, RAM, WINDOW, PAGE, &dirty)?;
        let n = copy_round(&ram, &mut bitmap, &mut dst_ram)?;
        println!("round {round}: the device wrote {marked} pages, {n} read dirty and copied");
        copied += n;
        // The mtty's state streams out while it runs.
        let ready = saving.precopy_info()?.initial_bytes;
        saving.stream().take(ready).read_to_end(&mut tty_state)?;
    }

    // Stop: the device's last state, and a last dirty read.
    let mut stopping = saving.stop_copy().map_err(iommufd::Error::from)?;
    stopping.stream().read_to_end(&mut tty_state)?;
    let _stopped = stopping.stop().map_err(iommufd::Error::from)?;
    copied += copy_round(&ram, &mut bitmap, &mut dst_ram)?;

    // Every page of the destination equals the source's.
    for (gpa, m) in &ram.pages {
        let mut src = vec![0u8; PAGE as usize];
        m.read_bytes(0, &mut src)?;
        let Some(dst) = dst_ram.get(gpa) else {
            return Err(format!("page {gpa:#x} never reached the destination").into());
        };
        if *dst != src || src != pattern(*gpa, written[gpa]) {
            return Err(
                format!("page {gpa:#x} differs at the destination (a dirty page lost)").into(),
            );
        }
    }
    // The mtty's state crossed over.
    let mut loading = dst_tty
        .into_migration()
        .map_err(iommufd::Error::from)?
        .resuming()
        .map_err(iommufd::Error::from)?;
    loading.stream().write_all(&tty_state)?;
    let dst_tty: Device<iommufd::Attached> = loading
        .running()
        .map_err(iommufd::Error::from)?
        .into_device();
    let mut fifo = Vec::new();
    let mut b = [0u8];
    for _ in 0..64 {
        dst_tty.region_read(0, UART_LSR, &mut b)?;
        if b[0] & 1 == 0 {
            break;
        }
        dst_tty.region_read(0, UART_DATA, &mut b)?;
        fifo.push(b[0]);
    }
    if fifo != b"migrated" {
        return Err(format!("the mtty's FIFO did not cross over: {fifo:?}").into());
    }
    println!(
        "migrate ok: {rounds} rounds, {copied} pages copied, all {} pages of guest RAM (16 hot-plugged) equal at the destination, stage-1 changed midway; mtty state {} bytes, FIFO {:?}",
        ram.pages.len(),
        tty_state.len(),
        String::from_utf8_lossy(&fifo)
    );
    Ok(())
}
