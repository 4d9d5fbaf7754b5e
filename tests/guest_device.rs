//! Device tests on the `singleton` edu. They run only in the vmtest guest
//! (`cargo xtask vmtest`), which has a real kernel, a VT-d IOMMU and edu devices;
//! on the host they show as ignored.

mod support;

use iommufd::{
    Access, Attached, BlockDma, Device, DmaBuffer, ErrorKind, Ioas, Iommufd, Iova, Unbound,
};
use nix::errno::Errno;
use std::os::fd::AsFd;
use support::{buffer_with, map_src_dst, Edu, Topology};

const MSG: &[u8] = b"iommufd: bytes through the IOMMU";
const SRC: u64 = 0x100000;
const DST: u64 = 0x200000;

fn singleton() -> Device<Unbound> {
    Device::open(&Topology::discover().singleton).expect("open singleton edu")
}

/// Bound, BAR0 mapped, bus master on.
fn bound(fd: &Iommufd) -> Device<BlockDma> {
    support::bound_singleton(fd)
}

/// Round trip RAM(src) -> edu -> RAM(dst) and return what landed in dst.
fn round_trip(dev: &Device<Attached<Ioas>>, ioas: &Ioas) -> Vec<u8> {
    support::round_trip(dev, ioas, MSG, Iova::Fixed(SRC), Iova::Fixed(DST))
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn kernel_refuses_ioctl_and_mmap_before_bind() {
    // The type rule "no region/MMIO on Device<Unbound>" mirrors this kernel rule.
    nix::ioctl_readwrite_bad!(get_info, nix::request_code_none!(b';', 107), [u32; 6]);
    let t = Topology::discover();
    let name = iommufd::sysfs::cdev_name(std::path::Path::new("/sys"), &t.singleton).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/vfio/devices/{name}"))
        .unwrap();
    let mut info = [24u32, 0, 0, 0, 0, 0];
    // SAFETY: `info` is a 24-byte vfio_device_info; the kernel refuses before touching it anyway.
    let r = unsafe { get_info(std::os::fd::AsRawFd::as_raw_fd(&f), &mut info) };
    assert_eq!(r, Err(Errno::EINVAL), "GET_INFO before bind");
    let m = memmap2::MmapOptions::new().len(4096).map_raw(&f);
    assert_eq!(
        m.err().and_then(|e| e.raw_os_error()),
        Some(libc_einval()),
        "mmap before bind"
    );
}

fn libc_einval() -> i32 {
    Errno::EINVAL as i32
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn every_transition_for_real() {
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let ioas2 = fd.alloc_ioas().unwrap();
    let dev = singleton();
    assert!(format!("{dev:?}").starts_with("Device<Unbound>"));
    let dev = dev.bind(&fd).unwrap();
    assert!(dev.dev_id() > 0);
    assert!(format!("{dev:?}").starts_with("Device<BlockDma>"));
    assert!(dev.info().unwrap().is_pci());
    let dev = dev.attach(&ioas).unwrap();
    assert_eq!(dev.ioas(), &ioas);
    assert!(format!("{dev:?}").contains("Attached<Ioas>"));
    let dev = dev.replace(&ioas2).unwrap();
    assert_eq!(dev.ioas(), &ioas2);
    let dev = dev.detach().unwrap();
    let dev = dev.attach(&ioas).unwrap();
    let dev = dev.unbind().unwrap();
    assert!(format!("{dev:?}").starts_with("Device<Unbound>"));
    // Unbound again: bind works a second time on the reopened fd.
    let dev = dev.bind(&fd).unwrap();
    let any: iommufd::AnyDevice = dev.into();
    assert_eq!(any.state(), "BlockDma");
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn dma_round_trip_and_unmapped_iova_is_blocked() {
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = bound(&fd).attach(&ioas).unwrap();
    assert_eq!(round_trip(&dev, &ioas), MSG, "DMA round trip");

    // DMA to an IOVA with nothing mapped: the IOMMU drops it; memory stays untouched.
    let (src, dst) = map_src_dst(&ioas, MSG, Iova::Fixed(SRC), Iova::Fixed(DST), 4096);
    let edu = Edu::new(&dev);
    edu.read_from_ram(SRC, MSG.len() as u64);
    let dst_buf = dst.unmap().unwrap();
    edu.write_to_ram(DST, MSG.len() as u64);
    assert!(
        dst_buf.as_slice().iter().all(|&b| b == 0),
        "DMA reached unmapped memory"
    );
    drop(src);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn detach_blocks_dma_and_reattach_restores_it() {
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = bound(&fd).attach(&ioas).unwrap();
    let (src, dst) = map_src_dst(&ioas, MSG, Iova::Fixed(SRC), Iova::Fixed(DST), 4096);
    Edu::new(&dev).read_from_ram(SRC, MSG.len() as u64);

    let dev = dev.detach().unwrap();
    // Blocking domain: the mapping still exists in the IOAS, but the device is not attached to it.
    Edu::new(&dev).write_to_ram(DST, MSG.len() as u64);
    let mut out = vec![0u8; MSG.len()];
    dst.read_bytes(0, &mut out).unwrap();
    assert!(
        out.iter().all(|&b| b == 0),
        "DMA got through the blocking domain"
    );

    let dev = dev.attach(&ioas).unwrap();
    Edu::new(&dev).write_to_ram(DST, MSG.len() as u64);
    dst.read_bytes(0, &mut out).unwrap();
    assert_eq!(out, MSG, "DMA after re-attach");
    drop(src);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn replace_moves_dma_to_the_second_ioas() {
    let fd = Iommufd::open().unwrap();
    let a = fd.alloc_ioas().unwrap();
    let b = fd.alloc_ioas().unwrap();
    let dev = bound(&fd).attach(&a).unwrap();
    let (src_a, dst_a) = map_src_dst(&a, MSG, Iova::Fixed(SRC), Iova::Fixed(DST), 4096);
    let dst_b = b
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(DST),
            Access::WRITE,
        )
        .unwrap();
    Edu::new(&dev).read_from_ram(SRC, MSG.len() as u64);

    let bar_before = dev.mmio(0).unwrap().host_address(0);
    let dev = dev.replace(&b).unwrap();
    assert_eq!(
        dev.mmio(0).unwrap().host_address(0),
        bar_before,
        "BAR mapping survives replace"
    );
    Edu::new(&dev).write_to_ram(DST, MSG.len() as u64);
    let (mut in_a, mut in_b) = (vec![0u8; MSG.len()], vec![0u8; MSG.len()]);
    dst_a.read_bytes(0, &mut in_a).unwrap();
    dst_b.read_bytes(0, &mut in_b).unwrap();
    assert_eq!(in_b, MSG, "DMA follows the device to IOAS b");
    assert!(in_a.iter().all(|&x| x == 0), "IOAS a no longer reachable");
    drop(src_a);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn iova_ranges_change_at_attach() {
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let before = ioas.iova_ranges().unwrap();
    assert_eq!(
        before.ranges,
        [iommufd::IovaRange {
            start: 0,
            last: u64::MAX
        }]
    );
    assert_eq!(before.alignment, 1);
    let dev = bound(&fd).attach(&ioas).unwrap();
    let after = ioas.iova_ranges().unwrap();
    assert_ne!(after, before);
    assert_eq!(after.alignment, 4096);
    assert!(
        after.ranges.len() >= 2,
        "VT-d reserves the MSI window: {after}"
    );
    assert!(
        !after.contains(0xfee00000, 4096),
        "MSI window is not mappable: {after}"
    );
    // Rejected before the ioctl, with the ranges in the message.
    let e = ioas
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(0xfee00000),
            Access::READ,
        )
        .unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::OutOfRange);
    assert!(
        e.error().to_string().contains("0xfedfffff"),
        "{}",
        e.error()
    );
    // Misaligned IOVA.
    let e = ioas
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(SRC + 1),
            Access::READ,
        )
        .unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::Alignment);
    assert!(e.error().to_string().contains("0x1000"), "{}", e.error());
    drop(dev);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn partial_unmap_is_enoent_and_leaves_the_mapping() {
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = bound(&fd).attach(&ioas).unwrap();
    let (src, dst) = map_src_dst(&ioas, MSG, Iova::Fixed(SRC), Iova::Fixed(DST), 8192);
    let e = ioas.unmap(DST, 4096).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotMapped);
    assert_eq!(e.raw_errno(), Some(Errno::ENOENT));
    // Still mapped: DMA into both pages works.
    let edu = Edu::new(&dev);
    edu.read_from_ram(SRC, MSG.len() as u64);
    edu.write_to_ram(DST + 4096, MSG.len() as u64);
    let mut out = vec![0u8; MSG.len()];
    dst.read_bytes(4096, &mut out).unwrap();
    assert_eq!(out, MSG);
    drop(src);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn overlap_is_eexist_naming_the_mapping() {
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let first = ioas
        .map(
            DmaBuffer::new(8192).unwrap(),
            Iova::Fixed(SRC),
            Access::READ,
        )
        .unwrap();
    let e = ioas
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(SRC + 4096),
            Access::READ,
        )
        .unwrap_err();
    let (buf, err) = e.into_parts();
    assert_eq!(buf.len(), 4096, "the buffer comes back");
    assert_eq!(err.kind(), ErrorKind::Overlap);
    assert_eq!(err.raw_errno(), Some(Errno::EEXIST));
    assert!(
        err.to_string().contains("IOVA [0x100000, 0x101fff]"),
        "{err}"
    );
    // Kernel-chosen IOVA avoids it.
    let any = ioas.map(buf, Iova::Any, Access::READ).unwrap();
    assert!(any.iova() + 4096 <= SRC || any.iova() >= SRC + 8192);
    drop(first);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn failed_transitions_hand_the_device_back_working() {
    // bind to an fd that is not an iommufd.
    let null = std::fs::File::open("/dev/null").unwrap();
    let not_iommufd = Iommufd::from_fd(null.into());
    let e = singleton().bind(&not_iommufd).unwrap_err();
    assert_eq!(e.error().operation(), "VFIO_DEVICE_BIND_IOMMUFD");
    assert!(e.error().raw_errno().is_some());
    let dev = e.into_inner();

    let fd = Iommufd::open().unwrap();
    let mut dev = dev.bind(&fd).expect("the handed-back device binds");
    Edu::setup(&mut dev).unwrap();

    // attach to an IOAS of another iommufd: refused before the ioctl.
    let other = Iommufd::open().unwrap();
    let foreign = other.alloc_ioas().unwrap();
    let e = dev.attach(&foreign).unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::InvalidInput);
    assert!(
        e.error().to_string().contains("another iommufd"),
        "{}",
        e.error()
    );
    let dev = e.into_inner();
    assert_eq!(
        Edu::new(&dev).liveness(0x1234_5678),
        !0x1234_5678,
        "MMIO still works"
    );

    let ioas = fd.alloc_ioas().unwrap();
    let dev = dev.attach(&ioas).unwrap();
    // replace to the foreign IOAS fails and leaves the device attached where it was.
    let e = dev.replace(&foreign).unwrap_err();
    let dev = e
        .into_inner()
        .kept()
        .expect("refused before the ioctl: kept");
    assert_eq!(dev.ioas(), &ioas);
    assert_eq!(round_trip(&dev, &ioas), MSG, "DMA after failed replace");
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn msi_and_intx_reach_eventfds() {
    let fd = Iommufd::open().unwrap();
    let dev = bound(&fd);
    let msi = dev.irq_info(iommufd::pci::MSI_IRQ).unwrap();
    assert_eq!(msi.count, 1);
    assert!(msi.eventfd());
    let intx = dev.irq_info(iommufd::pci::INTX_IRQ).unwrap();
    assert!(intx.maskable() && intx.automasked());

    let ev = iommufd::EventFd::new().unwrap();
    dev.set_irq_eventfds(iommufd::pci::MSI_IRQ, 0, &[ev.as_fd()])
        .unwrap();
    let edu = Edu::new(&dev);
    edu.raise_irq(0x42);
    let start = std::time::Instant::now();
    while ev.take().unwrap() == 0 {
        assert!(
            start.elapsed().as_secs() < 10,
            "MSI never reached the eventfd"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(edu.irq_status(), 0x42);
    edu.ack_irq(0x42);
    // Software trigger also reaches it.
    dev.trigger_irqs(iommufd::pci::MSI_IRQ, 0, 1).unwrap();
    assert_eq!(ev.take().unwrap(), 1);
    dev.disable_irqs(iommufd::pci::MSI_IRQ).unwrap();
    // A VMM's own eventfd type (rust-vmm's), passed as it is.
    let vmm = vmm_sys_util::eventfd::EventFd::new(nix::libc::EFD_NONBLOCK).unwrap();
    dev.set_irq_eventfds(iommufd::pci::MSI_IRQ, 0, std::slice::from_ref(&vmm))
        .unwrap();
    dev.trigger_irqs(iommufd::pci::MSI_IRQ, 0, 1).unwrap();
    assert_eq!(
        vmm.read().unwrap(),
        1,
        "the MSI reached the VMM's own eventfd"
    );
    edu.raise_irq(0x43);
    let start = std::time::Instant::now();
    while vmm.read().is_err() {
        assert!(start.elapsed().as_secs() < 10, "MSI never reached it");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    edu.ack_irq(0x43);
    dev.set_irq_eventfds(iommufd::pci::MSI_IRQ, 0, &[ev])
        .expect("the crate's EventFd, by value in a slice");
    dev.disable_irqs(iommufd::pci::MSI_IRQ).unwrap();
    let ev = iommufd::EventFd::new().unwrap();
    // An out-of-range vector is refused with the errno.
    let e = dev
        .set_irq_eventfds(iommufd::pci::MSI_IRQ, 5, &[ev.as_fd()])
        .unwrap_err();
    assert_eq!(e.raw_errno(), Some(Errno::EINVAL));
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn reset_without_a_method_is_a_clear_error() {
    let fd = Iommufd::open().unwrap();
    let mut dev = bound(&fd);
    // The singleton edu sits alone on the root bus: no FLR, no PM or bus reset.
    assert!(!dev.info().unwrap().can_reset());
    let e = dev.reset().unwrap_err();
    assert_eq!(e.raw_errno(), Some(Errno::EINVAL));
    assert!(e.to_string().contains("can_reset"), "{e}");
    assert_eq!(Edu::new(&dev).liveness(1), !1);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn regions_and_config_space() {
    let fd = Iommufd::open().unwrap();
    let dev = bound(&fd);
    let bar0 = dev.region_info(0).unwrap();
    assert_eq!(bar0.size, 0x100000);
    assert!(bar0.mmappable() && bar0.readable() && bar0.writable());
    let mut id = [0u8; 4];
    dev.config_read(0, &mut id).unwrap();
    assert_eq!(
        u32::from_le_bytes(id),
        0x11e8_1234,
        "vendor/device through config space"
    );
    let mmio = dev.mmio(0).unwrap();
    assert_eq!(mmio.read32(0).unwrap(), support::EDU_ID);
    assert_eq!(
        mmio.read32(2).unwrap_err().kind(),
        ErrorKind::InvalidInput,
        "misaligned"
    );
    assert_eq!(
        mmio.read64(0x100000).unwrap_err().kind(),
        ErrorKind::InvalidInput,
        "past the end"
    );
    assert!(dev.config_read(4096, &mut id).is_err());
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn map_file_and_copy_carry_dma() {
    let fd = Iommufd::open().unwrap();
    let a = fd.alloc_ioas().unwrap();
    let b = fd.alloc_ioas().unwrap();
    let dev = bound(&fd).attach(&a).unwrap();

    // A memfd mapped with IOMMU_IOAS_MAP_FILE as the DMA destination.
    let memfd =
        nix::sys::memfd::memfd_create(c"dma", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
    nix::unistd::ftruncate(&memfd, 4096).unwrap();
    let file = std::fs::File::from(memfd);
    let src = a
        .map(buffer_with(MSG), Iova::Fixed(SRC), Access::READ)
        .unwrap();
    let mut out = vec![0u8; MSG.len()];
    let dst = a.map_file(&file, 0, 4096, Iova::Fixed(DST), Access::WRITE);
    if std::env::var("IOMMUFD_TEST_KERNEL_VERSION").is_ok_and(|v| v == "6.12") {
        // IOMMU_IOAS_MAP_FILE arrived in 6.13: a clear error, not a mystery ENOTTY.
        let e = dst.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        assert!(e.to_string().contains("6.13"), "{e}");
    } else {
        let dst = dst.unwrap();
        let edu = Edu::new(&dev);
        edu.read_from_ram(SRC, MSG.len() as u64);
        edu.write_to_ram(DST, MSG.len() as u64);
        nix::sys::uio::pread(&file, &mut out, 0).unwrap();
        assert_eq!(out, MSG, "DMA into the memfd");
        drop(dst);
    }

    // IOMMU_IOAS_COPY: the source buffer, copied into IOAS b at another IOVA.
    let copy = b
        .copy_from(&src, Iova::Fixed(0x300000), Access::READ)
        .unwrap();
    let dst_b = b
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(DST),
            Access::WRITE,
        )
        .unwrap();
    let dev = dev.replace(&b).unwrap();
    let edu = Edu::new(&dev);
    edu.read_from_ram(0x300000, MSG.len() as u64);
    edu.write_to_ram(DST, MSG.len() as u64);
    dst_b.read_bytes(0, &mut out).unwrap();
    assert_eq!(out, MSG, "DMA through the copied mapping");
    drop(copy);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn huge_pages_option_round_trips() {
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    assert!(ioas.huge_pages().unwrap(), "on by default");
    ioas.set_huge_pages(false).unwrap();
    assert!(!ioas.huge_pages().unwrap());
    let dev = bound(&fd).attach(&ioas).unwrap();
    assert_eq!(round_trip(&dev, &ioas), MSG);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn multi_device_group_is_refused_with_a_pointer_to_group() {
    let t = Topology::discover();
    let e = Device::open(&t.pair[0]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MultiDeviceGroup);
    assert!(e.to_string().contains("Group::open"), "{e}");
    assert!(e.to_string().contains(&t.pair[1]), "names the sibling: {e}");
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn memlock_limit_error_names_the_limit() {
    // Root has CAP_IPC_LOCK, which exempts it from the limit; so the check runs
    // in a child process (this test again) that drops to `nobody` after setup.
    if std::env::var_os("IOMMUFD_MEMLOCK_CHILD").is_some() {
        let fd = Iommufd::open().unwrap();
        let ioas = fd.alloc_ioas().unwrap();
        let _dev = bound(&fd).attach(&ioas).unwrap();
        // Opened as root: fail-nth of a non-dumpable process is root's.
        let fail = support::fault::FailNth::new();
        use nix::sys::resource::{setrlimit, Resource};
        setrlimit(Resource::RLIMIT_MEMLOCK, 65536, 64 << 20).unwrap();
        let nobody = nix::unistd::Uid::from_raw(65534);
        nix::unistd::setresuid(nobody, nobody, nobody).unwrap();
        let e = ioas
            .map(
                DmaBuffer::new(1 << 20).unwrap(),
                Iova::Fixed(SRC),
                Access::READ,
            )
            .unwrap_err();
        assert_eq!(e.error().kind(), ErrorKind::MemlockLimit, "{}", e.error());
        assert_eq!(e.error().raw_errno(), Some(Errno::ENOMEM));
        assert!(
            e.error()
                .to_string()
                .contains("RLIMIT_MEMLOCK is 65536 bytes"),
            "{}",
            e.error()
        );
        assert!(e.into_inner().len() == 1 << 20, "buffer handed back");

        // Well under the limit, an ENOMEM is the kernel's (injected here),
        // and the limit is not blamed.
        setrlimit(Resource::RLIMIT_MEMLOCK, 64 << 20, 64 << 20).unwrap();
        let mut blamed = Vec::new();
        let sweep = fail.sweep(
            "IOMMU_IOAS_MAP as nobody, under the limit",
            &mut Some(DmaBuffer::new(4096).unwrap()),
            |b| {
                ioas.map(b, Iova::Fixed(SRC), Access::READ).map_err(|e| {
                    let (b, e) = e.into_parts();
                    if e.raw_errno() == Some(Errno::ENOMEM) {
                        if e.kind() != ErrorKind::OutOfMemory {
                            blamed.push(e.to_string());
                        }
                        assert!(
                            e.to_string().contains("other processes of the same user"),
                            "{e}"
                        );
                    }
                    (b, e.raw_errno())
                })
            },
            |m| m.unmap().unwrap(),
            |_| {},
        );
        assert!(
            blamed.is_empty(),
            "an injected ENOMEM blamed on the limit: {blamed:?}"
        );
        assert!(
            sweep.failed.contains(&Some(Errno::ENOMEM)),
            "the sweep reached an ENOMEM: {}",
            sweep.row(None)
        );
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "memlock_limit_error_names_the_limit",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env("IOMMUFD_MEMLOCK_CHILD", "1")
        .output()
        .unwrap();
    // The child's output is captured so its libtest summary is not counted twice.
    assert!(
        out.status.success(),
        "child failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn ioas_handle_dropped_while_attached() {
    // Rule 9: the attached device holds the IOAS; dropping our handle does not destroy it.
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = bound(&fd).attach(&ioas).unwrap();
    drop(ioas);
    let ioas = dev.ioas().clone();
    assert_eq!(
        round_trip(&dev, &ioas),
        MSG,
        "the IOAS is alive and carries DMA"
    );
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn allow_iovas_restricts_where_mappings_go() {
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let window = iommufd::IovaRange {
        start: 0x800000,
        last: 0x8fffff,
    };
    ioas.allow_iovas(&[window]).unwrap();
    let dev = bound(&fd).attach(&ioas).unwrap();
    let any = ioas
        .map(DmaBuffer::new(4096).unwrap(), Iova::Any, Access::READ)
        .unwrap();
    assert!(window.contains(any.iova(), 4096), "{:#x}", any.iova());
    let e = ioas
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(SRC),
            Access::READ,
        )
        .unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::OutOfRange);
    assert!(
        e.error().to_string().contains("[0x800000, 0x8fffff]"),
        "{}",
        e.error()
    );
    // Lifting the restriction lets the same fixed map through, and DMA uses it.
    ioas.allow_iovas(&[]).unwrap();
    drop(any);
    assert_eq!(round_trip(&dev, &ioas), MSG);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn device_from_an_fd_received_elsewhere() {
    // As from a privileged helper: the cdev and /dev/iommu opened by someone else.
    let t = Topology::discover();
    let name = iommufd::sysfs::cdev_name(std::path::Path::new("/sys"), &t.singleton).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/vfio/devices/{name}"))
        .unwrap();
    let iommu = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/iommu")
        .unwrap();
    let fd = Iommufd::from_fd(iommu.into());
    let ioas = fd.alloc_ioas().unwrap();
    let dev = Device::from_fd(f.into()).unwrap();
    assert_eq!(
        dev.name(),
        t.singleton,
        "named by what sysfs says of the fd"
    );
    let mut dev = dev.bind(&fd).unwrap();
    Edu::setup(&mut dev).unwrap();
    let dev = dev.attach(&ioas).unwrap();
    assert_eq!(round_trip(&dev, &ioas), MSG);
    // No path to reopen: unbind says so and hands the device back; close works.
    let e = dev.unbind().unwrap_err();
    assert!(e.error().to_string().contains("close()"), "{}", e.error());
    e.into_inner().close();
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn intx_with_mask_and_unmask() {
    let fd = Iommufd::open().unwrap();
    let dev = bound(&fd);
    let ev = iommufd::EventFd::new().unwrap();
    dev.set_irq_eventfds(iommufd::pci::INTX_IRQ, 0, &[ev.as_fd()])
        .unwrap();
    let edu = Edu::new(&dev);
    let wait = |what: &str| {
        let start = std::time::Instant::now();
        loop {
            let n = ev.take().unwrap();
            if n > 0 {
                return n;
            }
            assert!(
                start.elapsed().as_secs() < 10,
                "{what}: INTx never reached the eventfd"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    };
    edu.raise_irq(1);
    wait("first");
    edu.ack_irq(1);
    // Automasked: masked by the kernel until we unmask. While masked, a raise is held back.
    dev.mask_irqs(iommufd::pci::INTX_IRQ, 0, 1).unwrap();
    dev.unmask_irqs(iommufd::pci::INTX_IRQ, 0, 1).unwrap();
    dev.mask_irqs(iommufd::pci::INTX_IRQ, 0, 1).unwrap();
    edu.raise_irq(2);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(ev.take().unwrap(), 0, "masked INTx must not signal");
    dev.unmask_irqs(iommufd::pci::INTX_IRQ, 0, 1).unwrap();
    wait("after unmask");
    edu.ack_irq(2);
    dev.disable_irqs(iommufd::pci::INTX_IRQ).unwrap();
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn map_user_va_for_memory_the_caller_owns() {
    // A VMM's guest RAM: memory the crate cannot see the owner of.
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = bound(&fd).attach(&ioas).unwrap();
    let mut ram = memmap2::MmapOptions::new().len(2 << 20).map_anon().unwrap();
    ram[..MSG.len()].copy_from_slice(MSG);
    let base = std::ptr::NonNull::new(ram.as_mut_ptr()).unwrap();
    // SAFETY: `ram` stays mapped and untouched by Rust until `guest` is dropped below.
    let guest =
        unsafe { ioas.map_user_va(base, ram.len(), Iova::Fixed(0x1000000), Access::READ_WRITE) }
            .unwrap();
    let edu = Edu::new(&dev);
    edu.read_from_ram(0x1000000, MSG.len() as u64);
    edu.write_to_ram(0x1000000 + 0x10000, MSG.len() as u64);
    drop(guest);
    assert_eq!(
        &ram[0x10000..0x10000 + MSG.len()],
        MSG,
        "DMA into caller-owned memory"
    );
}

/// How pinned pages are charged (#27, the selftest's `global_options`;
/// `IOMMU_OPTION_RLIMIT_MODE`): to the user by default; set to the process
/// before any object, the pages a device's mapping pins show in the
/// process's `VmPin`; once an object exists, a change is refused by name.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn pin_accounting_is_chosen_before_any_object_and_charges_the_process() {
    use iommufd::PinAccounting;
    let fd = Iommufd::open().unwrap();
    assert_eq!(fd.pin_accounting().unwrap(), PinAccounting::User);
    fd.set_pin_accounting(PinAccounting::Process).unwrap();
    assert_eq!(fd.pin_accounting().unwrap(), PinAccounting::Process);
    let ioas = fd.alloc_ioas().unwrap();
    let e = fd.set_pin_accounting(PinAccounting::User).unwrap_err();
    assert_eq!(e.raw_errno(), Some(nix::errno::Errno::EBUSY), "{e}");
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    assert!(e.to_string().contains("right after Iommufd::open"), "{e}");
    assert_eq!(fd.pin_accounting().unwrap(), PinAccounting::Process);
    let dev = support::bound_singleton(&fd).attach(&ioas).unwrap();
    let before = support::vm_pin_kb();
    let m = ioas
        .map(
            DmaBuffer::new(2 << 20).unwrap(),
            Iova::Any,
            Access::READ_WRITE,
        )
        .unwrap();
    assert!(
        support::vm_pin_kb() >= before + 2048,
        "{} -> {}",
        before,
        support::vm_pin_kb()
    );
    drop(m);
    assert_eq!(support::vm_pin_kb(), before, "unpinned, uncharged");
    drop(dev);
}

/// The top of the usable IOVA space with a device attached (the kernel's
/// VFIO selftest `vfio_dma_map_limit_test` on iommufd): the last page of the
/// last range maps and unmaps; a mapping or an unmap that would run past
/// 2^64 is refused by name (`EOVERFLOW` from the kernel for the unmap),
/// and the buffer comes back.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn the_last_page_of_the_iova_space_maps_and_overflow_is_refused() {
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = support::bound_singleton(&fd).attach(&ioas).unwrap();
    let ranges = ioas.iova_ranges().unwrap();
    let last = ranges.ranges.iter().map(|r| r.last).max().unwrap();
    let top = last & !0xfff;
    let m = ioas
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(top),
            Access::READ,
        )
        .unwrap();
    assert_eq!(m.iova(), top);
    assert_eq!(m.len(), 4096);
    // Unmapped by its value: the memory comes back whole.
    let buf = m.unmap().unwrap();
    assert_eq!(buf.len(), 4096);
    let past = !0xfff_u64;
    let e = ioas
        .map(
            DmaBuffer::new(8192).unwrap(),
            Iova::Fixed(past),
            Access::READ,
        )
        .unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::OutOfRange, "{}", e.error());
    assert_eq!(e.into_inner().len(), 8192);
    let e = ioas.unmap(past, 8192).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfRange, "{e}");
    assert_eq!(e.raw_errno(), Some(nix::errno::Errno::EOVERFLOW), "{e}");
    // Nothing was lost: the page maps again.
    let m = ioas.map(buf, Iova::Fixed(top), Access::READ).unwrap();
    drop(m);
    // A mapping the crate did not make (another user of the iommufd), at
    // the top: the kernel's unmap-all (IOVA 0, length 2^64 - 1) takes it
    // and says how much; over a live `Mapping` it is refused instead.
    let mut other = DmaBuffer::new(4096).unwrap();
    let va = other.as_mut_slice().as_mut_ptr() as u64;
    // SAFETY: `other` outlives the mapping, which the unmap-all removes.
    unsafe { support::raw::map(fd.iommufd_fd().unwrap(), ioas.id(), va, 4096, Some(top)) }.unwrap();
    assert_eq!(ioas.unmap(0, u64::MAX).unwrap(), 4096);
    drop(other);
    dev.detach().unwrap().close();
}

/// Binding to something that is not an iommufd (the kernel's VFIO selftest
/// `vfio_cdev.bind_bad_iommufd_fails`): a `Device` binds only to an
/// `Iommufd`, and an fd becomes one only if it is `/dev/iommu`: a memfd is
/// refused by name and handed back.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn an_fd_that_is_not_an_iommufd_is_refused() {
    let not = support::memfd(4096);
    let e = Iommufd::adopt(not.into()).unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::InvalidInput, "{}", e.error());
    let back: std::os::fd::OwnedFd = e.into_inner();
    assert!(nix::fcntl::fcntl(&back, nix::fcntl::FcntlArg::F_GETFD).is_ok());
}

/// Copies of parts of a mapping (the kernel selftest's `copy_sweep`):
/// 2 KiB at every 511th byte of a 16 KiB source into an IOAS with no
/// device (alignment 1): inside the source each is taken, past its end
/// each is refused by name before the ioctl. With a device on the
/// destination, a sub-page part is the kernel's `EINVAL`, and a page of
/// the source copied alone carries the device's DMA.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn parts_of_a_mapping_are_copied_where_the_kernel_takes_them() {
    const SRC: u64 = 1 << 24;
    const PART: u64 = 2048;
    let fd = Iommufd::open().unwrap();
    let (a, b) = (fd.alloc_ioas().unwrap(), fd.alloc_ioas().unwrap());
    let mut pattern = DmaBuffer::new(4 * 4096).unwrap();
    for (i, x) in pattern.as_mut_slice().iter_mut().enumerate() {
        *x = (i * 7 + i / 4096) as u8;
    }
    let want = pattern.as_slice().to_vec();
    let src = a.map(pattern, Iova::Fixed(SRC), Access::READ).unwrap();
    let (mut taken, mut refused) = (0, 0);
    for off in (0..src.len() + 4096).step_by(511) {
        match b.copy_part_from(&src, off, PART, Iova::Fixed(SRC), Access::READ) {
            Ok(part) => {
                assert!(off + PART <= src.len(), "{off:#x}");
                assert_eq!((part.iova(), part.len()), (SRC, PART));
                taken += 1;
            }
            Err(e) => {
                assert!(off + PART > src.len(), "{off:#x}: {e}");
                assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
                refused += 1;
            }
        }
    }
    assert!(
        taken > 20 && refused > 5,
        "{taken} taken, {refused} refused"
    );
    // A device on the destination: page granularity, and real DMA.
    let dev = support::bound_singleton(&fd).attach(&b).unwrap();
    let e = b
        .copy_part_from(&src, 0x800, 4096, Iova::Fixed(0x10_0000), Access::READ)
        .unwrap_err();
    assert_eq!(e.raw_errno(), Some(Errno::EINVAL), "{e}");
    let page = b
        .copy_part_from(&src, 2 * 4096, 4096, Iova::Fixed(0x10_0000), Access::READ)
        .unwrap();
    let out = b
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(0x20_0000),
            Access::WRITE,
        )
        .unwrap();
    {
        let edu = Edu::new(&dev);
        edu.read_from_ram(page.iova() + 64, 64);
        edu.write_to_ram(out.iova(), 64);
    }
    let mut got = [0u8; 64];
    out.read_bytes(0, &mut got).unwrap();
    assert_eq!(&got[..], &want[2 * 4096 + 64..2 * 4096 + 128]);
    drop((page, out));
    dev.detach().unwrap().close();
}
