//! Guest RAM held in rust-vmm's vm-memory, mapped at its guest-physical
//! addresses (feature `vm-memory`; `cargo xtask vmtest` builds with it):
//! edu DMAs at a GPA, and the bytes appear at that GPA through vm-memory's
//! own accessors. On the cdev path and on the legacy path (`legacy_*`, run
//! on 6.1).
#![cfg(feature = "vm-memory")]

mod support;

use iommufd::{Access, Device, ErrorKind, Iommufd};
use support::{Edu, Topology};
use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestRegionMmap,
    MmapRegion,
};

const MSG: &[u8] = b"guest RAM from vm-memory, IOVA = GPA";
const MIB: usize = 1 << 20;
/// Region 0 (anonymous) and region 1 (a shared memfd mapping), with a hole
/// between them; all below edu's 28-bit DMA limit.
const LOW: GuestAddress = GuestAddress(0x10_0000);
const HIGH: GuestAddress = GuestAddress(0x40_0000);
const SRC: u64 = LOW.0 + 0x100;
const DST: u64 = HIGH.0 + 0x2200;

fn kernel() -> String {
    std::env::var("IOMMUFD_TEST_KERNEL_VERSION").unwrap_or_default()
}

/// Two regions with a hole: anonymous low RAM, memfd-backed high RAM.
fn guest_memory() -> GuestMemoryMmap {
    let low = GuestRegionMmap::from_range(LOW, MIB, None).unwrap();
    let high =
        GuestRegionMmap::from_range(HIGH, MIB, Some(FileOffset::new(support::memfd(MIB), 0)))
            .unwrap();
    GuestMemoryMmap::from_regions(vec![low, high]).unwrap()
}

/// `MSG` written at GPA `SRC` through vm-memory, copied by the edu to GPA
/// `DST`, and read back there through vm-memory.
fn copy_src_to_dst(edu: &Edu<'_>, mem: &GuestMemoryMmap, how: &str) {
    mem.write_slice(MSG, GuestAddress(SRC)).unwrap();
    edu.read_from_ram(SRC, MSG.len() as u64);
    edu.write_to_ram(DST, MSG.len() as u64);
    let mut out = vec![0u8; MSG.len()];
    mem.read_slice(&mut out, GuestAddress(DST)).unwrap();
    assert_eq!(
        out, MSG,
        "the device's bytes at GPA {DST:#x} ({how}), read through vm-memory"
    );
}

/// Maps the guest's RAM, has edu copy GPA `SRC` → device → GPA `DST`, and
/// checks the bytes through vm-memory; then unplugs the high region and
/// checks the device no longer reaches it.
fn round_trip_at_gpas(fd: &Iommufd, dev: Device<iommufd::BlockDma>) {
    let mem = guest_memory();
    let ioas = fd.alloc_ioas().unwrap();
    let mut dma = ioas.map_guest_memory(&mem, Access::READ_WRITE).unwrap();
    assert_eq!(dma.len(), 2);
    let low = dma.get(LOW).unwrap();
    assert_eq!((low.iova(), low.len()), (LOW.0, MIB as u64));
    assert!(!low.by_file(), "anonymous RAM is mapped by address");
    // MAP_FILE for the shared memfd region where the kernel has it (6.13+, cdev).
    let by_file = dma.get(HIGH).unwrap().by_file();
    let expect = fd.backend() == iommufd::Backend::Iommufd && kernel() != "6.12";
    assert_eq!(by_file, expect, "kernel {}", kernel());

    let dev = dev.attach(&ioas).unwrap();
    let edu = Edu::new(&dev);
    copy_src_to_dst(&edu, &mem, "a GPA mapped by map_guest_memory");
    let mut out = vec![0u8; MSG.len()];

    // Hot-unplug: vm-memory drops the region, one call unmaps it. The
    // region's mmap outlives the IOMMU mapping (the mapping held a share).
    let (mem, gone) = mem.remove_region(HIGH, MIB as u64).unwrap();
    assert_eq!(mem.num_regions(), 1);
    let ram = dma.remove(HIGH).unwrap();
    assert_eq!(ram.gpa(), HIGH);
    assert_eq!(dma.len(), 1);
    let zeros = vec![0u8; MSG.len()];
    gone.write_slice(&zeros, vm_memory::MemoryRegionAddress(DST - HIGH.0))
        .unwrap();
    edu.write_to_ram(DST, MSG.len() as u64); // faults in the IOMMU: unmapped
    gone.read_slice(&mut out, vm_memory::MemoryRegionAddress(DST - HIGH.0))
        .unwrap();
    assert_eq!(out, zeros, "the device reached an unplugged region");
    // Nothing starts there any more: a clear error, and nothing lost.
    let e = dma.remove(HIGH).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotMapped, "{e}");
    assert!(e.to_string().contains("0x400000"), "{e}");
    assert_eq!(dma.len(), 1);
    // Plugged back in: mapped again, and the device reaches it.
    dma.insert(&gone).unwrap();
    edu.write_to_ram(DST, MSG.len() as u64);
    gone.read_slice(&mut out, vm_memory::MemoryRegionAddress(DST - HIGH.0))
        .unwrap();
    assert_eq!(out, MSG);
    drop(dma);
    dev.detach().unwrap();
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn guest_ram_from_vm_memory_is_mapped_at_its_gpas() {
    if kernel() == "6.1" {
        return; // no iommufd: the legacy test below
    }
    let fd = Iommufd::open_iommufd().unwrap();
    round_trip_at_gpas(&fd, support::bound_singleton(&fd));
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn legacy_guest_ram_from_vm_memory_is_mapped_at_its_gpas() {
    let fd = Iommufd::open_legacy().unwrap();
    let mut dev = Device::open_legacy(&Topology::discover().singleton)
        .unwrap()
        .bind(&fd)
        .unwrap();
    Edu::setup(&mut dev).unwrap();
    round_trip_at_gpas(&fd, dev);
}

/// Regions the crate cannot share safely are refused before the ioctl,
/// with what to do instead; a GPA the IOMMU cannot map is the kernel's
/// range error, naming the range.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn unmappable_guest_regions_are_refused_with_the_reason() {
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let _dev = support::bound_singleton(&fd).attach(&ioas).unwrap();
    // Read-only RAM (a ROM image) with device write access.
    let rom: MmapRegion = MmapRegion::build(
        None,
        MIB,
        nix::libc::PROT_READ,
        nix::libc::MAP_ANONYMOUS | nix::libc::MAP_PRIVATE,
    )
    .unwrap();
    let rom = GuestRegionMmap::new(rom, LOW).unwrap();
    let e = ioas.map_guest_region(&rom, Access::READ_WRITE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("read-only"), "{e}");
    let m = ioas.map_guest_region(&rom, Access::READ).unwrap();
    assert_eq!(m.iova(), LOW.0);
    drop(m);
    // Memory vm-memory does not own.
    let mut backing = memmap2::MmapOptions::new().len(MIB).map_anon().unwrap();
    // SAFETY: `backing` is a live mapping of MIB bytes and outlives `raw`.
    let raw: MmapRegion = unsafe {
        MmapRegion::build_raw(
            backing.as_mut_ptr(),
            MIB,
            nix::libc::PROT_READ | nix::libc::PROT_WRITE,
            nix::libc::MAP_ANONYMOUS | nix::libc::MAP_PRIVATE,
        )
    }
    .unwrap();
    let raw = GuestRegionMmap::new(raw, LOW).unwrap();
    let e = ioas.map_guest_region(&raw, Access::READ_WRITE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("map_user_va"), "{e}");
    drop(raw);
    // A GPA in the VT-d MSI window: outside the usable IOVA ranges.
    let msi: GuestRegionMmap =
        GuestRegionMmap::from_range(GuestAddress(0xfee0_0000), MIB, None).unwrap();
    let e = ioas.map_guest_region(&msi, Access::READ_WRITE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfRange, "{e}");
    assert!(e.to_string().contains("0xfee00000"), "{e}");
    // All or nothing: a guest memory whose second region cannot be mapped
    // leaves nothing mapped.
    let mem = GuestMemoryMmap::from_regions(vec![
        GuestRegionMmap::from_range(LOW, MIB, None).unwrap(),
        msi,
    ])
    .unwrap();
    let e = ioas.map_guest_memory(&mem, Access::READ_WRITE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfRange, "{e}");
    let again = ioas.map_guest_region(mem.iter().next().unwrap(), Access::READ_WRITE);
    assert!(again.is_ok(), "the first region was left mapped: {again:?}");
}

/// A handover checks every guest RAM mapping it is given, its iommufd
/// included: mappings in another iommufd's IOAS are handed back with the
/// error (this used to reach an `unreachable!` and panic), and so is RAM
/// mapped by address; the guest RAM is still mapped afterwards.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_handover_refuses_guest_ram_of_another_iommufd() {
    use iommufd::handover::Handover;
    let (fd1, fd2) = (
        Iommufd::open_iommufd().unwrap(),
        Iommufd::open_iommufd().unwrap(),
    );
    let high =
        GuestRegionMmap::<()>::from_range(HIGH, MIB, Some(FileOffset::new(support::memfd(MIB), 0)))
            .unwrap();
    let mem = GuestMemoryMmap::from_regions(vec![high]).unwrap();
    let ioas2 = fd2.alloc_ioas().unwrap();
    let dma = ioas2.map_guest_memory(&mem, Access::READ_WRITE).unwrap();
    let mut h = Handover::new(fd1).unwrap();
    let e = h.guest_memory(dma).unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::InvalidInput, "{}", e.error());
    let msg = e.error().to_string();
    // 6.12 maps the memfd by address, which is refused first.
    assert!(
        msg.contains("another iommufd") || (kernel() == "6.12" && msg.contains("by address")),
        "{msg}"
    );
    let dma = e.into_inner();
    assert_eq!(dma.len(), 1);
    assert_eq!(dma.get(HIGH).unwrap().iova(), HIGH.0);
    drop(h);
}

/// A VMM that maps guest RAM through `vfio-ioctls`' `VfioOps` keeps that
/// code on the crate's IOAS (feature `vfio-ioctls`, `iommufd::vfio_ops`):
/// each region mapped by GPA, length and host address as cloud-hypervisor
/// maps it; a device plugged (bind, attach, MSI) DMAs at GPAs and
/// interrupts; unmaps that cut a mapping or cover none are refused, and
/// nothing is lost; the device unplugged, then the RAM unmapped through the
/// adapter.
#[cfg(feature = "vfio-ioctls")]
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_vmm_maps_guest_ram_through_vfio_ops_onto_the_crate() {
    use iommufd::vfio_ops::IoasOps;
    use std::sync::Arc;
    use vfio_ioctls::VfioOps;
    use vm_memory::GuestMemoryRegion;
    if kernel() == "6.1" {
        return; // the legacy path: no cdev device to plug
    }
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let ops: Arc<dyn VfioOps> = Arc::new(IoasOps::new(ioas.clone()));
    let mem = guest_memory();
    for r in mem.iter() {
        // SAFETY: `mem` outlives the mappings (unmapped below, before it
        // drops); vm-memory reaches the bytes by volatile copies only.
        unsafe { ops.vfio_dma_map(r.start_addr().0, r.len() as usize, r.as_ptr()) }.unwrap();
    }
    let adapter = ops.as_any().downcast_ref::<IoasOps>().unwrap();
    assert_eq!(adapter.len(), 2);
    // Plugged: bound, attached to the adapter's IOAS, MSI on an eventfd.
    let dev = support::bound_singleton(&fd)
        .attach(adapter.ioas())
        .unwrap();
    let ev = iommufd::EventFd::new().unwrap();
    dev.set_irq_eventfds(iommufd::pci::MSI_IRQ, 0, &[&ev])
        .unwrap();
    let edu = Edu::new(&dev);
    copy_src_to_dst(&edu, &mem, "a GPA mapped through VfioOps");
    edu.raise_irq(0x7);
    assert_eq!(ev.wait(std::time::Duration::from_secs(10)).unwrap(), 1);
    edu.ack_irq(0x7);
    // Refused, nothing unmapped: half a region, and a range with nothing.
    assert!(ops.vfio_dma_unmap(LOW.0, MIB / 2).is_err());
    assert!(ops.vfio_dma_unmap(0x800_0000, 4096).is_err());
    assert_eq!(adapter.len(), 2);
    edu.write_to_ram(DST, MSG.len() as u64);
    // Unplugged: the device goes, then the RAM through the adapter.
    dev.disable_irqs(iommufd::pci::MSI_IRQ).unwrap();
    dev.detach().unwrap().unbind().unwrap().close();
    for r in mem.iter() {
        ops.vfio_dma_unmap(r.start_addr().0, r.len() as usize)
            .unwrap();
    }
    assert!(adapter.is_empty());
    assert!(ioas.iova_ranges().is_ok());
}
