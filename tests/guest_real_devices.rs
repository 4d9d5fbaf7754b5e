//! Devices beyond the root-bus edu: an unplug request (REQ) from a real QMP
//! `device_del`, group-aware hot reset, MSI-X. The harness's topology
//! gives each a role (tests/support: `Topology`).

mod support;

use iommufd::{
    pci, BlockDma, Device, ErrorKind, EventFd, Group, Iommufd, TransitionError, Unbound,
};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{Edu, Topology};

/// Asks the host side of the harness for a QMP command: xtask watches the
/// console for this line. Written to the fd, past libtest's capture.
fn qmp(cmd: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nVMT-QMP {cmd}").unwrap();
    out.flush().unwrap();
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn unplug_request_reaches_the_req_eventfd_and_the_unplug_completes() {
    let bdf = Topology::discover()
        .hotplug
        .expect("no edu on a hotplug root port (already unplugged in this boot?)");
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let mut dev = Device::open(&bdf).unwrap().bind(&fd).unwrap();
    Edu::setup(&mut dev).unwrap();
    let dev = dev.attach(&ioas).unwrap();
    let req = EventFd::new().unwrap();
    assert_eq!(dev.irq_info(pci::REQ_IRQ).unwrap().count, 1);
    dev.set_release_request_eventfd(&req).unwrap();
    qmp(r#"{"execute":"device_del","arguments":{"id":"hotplug"}}"#);
    // pciehp waits 5 s after the attention button, then asks vfio-pci,
    // which relays the request to us.
    let start = Instant::now();
    let n = req.wait(Duration::from_secs(60)).unwrap();
    assert!(n > 0, "no release request within 60 s of device_del");
    eprintln!("REQ after {:?}", start.elapsed());
    // The device still works until we let it go...
    assert_eq!(Edu::new(&dev).liveness(0x1234), !0x1234);
    // ...and the unplug completes once we do.
    dev.close();
    let sysfs = Path::new("/sys/bus/pci/devices").join(&bdf);
    let start = Instant::now();
    while sysfs.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{bdf} still present 60 s after its fds were closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn hot_reset_resets_only_what_the_caller_holds() {
    let t = Topology::discover();
    let fd = Iommufd::open().unwrap();
    // The pair group: one bus, two edus, both held by the group.
    let mut group = Group::open(t.pair_group).unwrap().bind(&fd).unwrap();
    let info = group.hot_reset_info().unwrap();
    let mut listed: Vec<&str> = info.devices.iter().map(|d| d.bdf.as_str()).collect();
    listed.sort();
    let mut pair: Vec<&str> = t.pair.iter().map(String::as_str).collect();
    pair.sort();
    assert_eq!(listed, pair, "{info}");
    assert!(info.all_held(), "{info}");
    group.hot_reset().unwrap();
    // Still usable afterwards: DMA through both members.
    let ioas = fd.alloc_ioas().unwrap();
    let mut group = group.attach(&ioas).unwrap();
    for i in 0..2 {
        support::edu_member(&mut group, i);
        let out = support::round_trip(
            group.member(i).unwrap(),
            &ioas,
            b"after a hot reset",
            iommufd::Iova::Any,
            iommufd::Iova::Any,
        );
        assert_eq!(out, b"after a hot reset");
    }
    drop(group);

    // The same group opened with one member: the reset would reset the
    // other edu too, which nothing here holds.
    let mut part = Group::open_members(t.pair_group, &[t.pair[0].as_str()])
        .unwrap()
        .bind(&fd)
        .unwrap();
    let info = part.hot_reset_info().unwrap();
    assert!(!info.all_held(), "{info}");
    let e = part.hot_reset().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    assert!(e.to_string().contains(&t.pair[1]), "{e}");
    drop(part);

    // A device alone on its root port: its bus reset resets only itself.
    let bus_reset = t.bus_reset.expect("no edu on a root port");
    let mut dev = Device::open(&bus_reset).unwrap().bind(&fd).unwrap();
    let info = dev.hot_reset_info().unwrap();
    assert_eq!(info.devices.len(), 1, "{info}");
    assert!(info.all_held(), "{info}");
    dev.hot_reset().unwrap();
    assert!(dev.info().unwrap().can_reset(), "a bus reset is a reset");
    dev.reset().unwrap();
    // The root-bus edu has no bus reset at all: said so.
    let mut single = Device::open(&t.singleton).unwrap().bind(&fd).unwrap();
    let e = single.hot_reset().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
}

/// A device's BAR mapped into an IOAS by its address (the kernel's VFIO
/// selftest `vfio_dma_mapping_mmio_test` on native iommufd, which never
/// takes it): refused by the kernel whole, in part and at an offset, with
/// the way that works named (a dma-buf export and `map_peer_bar`, the next
/// test); nothing is mapped.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_bar_is_not_mapped_by_address_on_iommufd() {
    use iommufd::{Access, Iova};
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let _a = support::bound_singleton(&fd).attach(&ioas).unwrap();
    let b = support::bound_second_singleton(&fd);
    let mmio = b.mmio(0).unwrap();
    let base = mmio.host_address(0).unwrap();
    for (off, len) in [(0, mmio.size() as usize), (0, 0x8000), (0x1000, 0x1000)] {
        // SAFETY: inside B's mapped BAR, which stays mapped while `b` lives;
        // the kernel refuses the map (asserted), and were it taken, the
        // mapping would be dropped here, before `b`.
        let r = unsafe {
            ioas.map_user_va(
                std::ptr::NonNull::new(base.wrapping_add(off)).unwrap(),
                len,
                Iova::Any,
                Access::READ_WRITE,
            )
        };
        let e = r.map(drop).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("device's BAR") && msg.contains("map_peer_bar"),
            "{msg}"
        );
    }
    b.close();
}

/// edu A DMAs into edu B's BAR through the IOMMU: B's BAR0 page exported
/// as a dma-buf and mapped into A's IOAS. The bytes land in B's liveness
/// register (edu stores the complement of what is written there).
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn p2p_dma_into_another_devices_bar() {
    use iommufd::{Access, Iova};
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let a = support::bound_singleton(&fd).attach(&ioas).unwrap();
    // Memory decoding on (`Edu::setup`): an export needs it.
    let mut b = support::bound_second_singleton(&fd);
    let export = match b.export_bar(0, 0, 4096) {
        Ok(x) => x,
        Err(e) if std::env::var("IOMMUFD_TEST_KERNEL_VERSION").is_ok_and(|v| v == "6.12") => {
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    // Bad ranges are refused before the ioctl.
    for (off, len) in [(0, 0), (0, 100), (0x800, 4096), (0, 2 << 20)] {
        let e = b.export_bar(0, off, len).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{off:#x}+{len:#x}: {e}");
    }
    const WINDOW: u64 = 0x800_0000;
    let peer = ioas
        .map_peer_bar(export, Iova::Fixed(WINDOW), Access::READ_WRITE)
        .unwrap();
    assert!(peer.by_file());
    let value: u32 = 0x1357_9bdf;
    let src = ioas
        .map(
            support::buffer_with(&value.to_le_bytes()),
            Iova::Fixed(0x10_0000),
            Access::READ,
        )
        .unwrap();
    let edu_a = Edu::new(&a);
    edu_a.read_from_ram(src.iova(), 4);
    edu_a.write_to_ram(WINDOW + 4, 4); // B's BAR0 + 4: its liveness register
    assert_eq!(
        b.mmio(0).unwrap().read32(4).unwrap(),
        !value,
        "A's DMA did not reach B's BAR"
    );
    // Unmapped: the window is gone, B's register keeps what it had.
    drop(peer);
    edu_a.read_from_ram(src.iova(), 4);
    b.mmio(0).unwrap().write32(4, 0).unwrap();
    edu_a.write_to_ram(WINDOW + 4, 4);
    assert_eq!(
        b.mmio(0).unwrap().read32(4).unwrap(),
        !0,
        "DMA reached an unmapped BAR"
    );
    // Decoding off under an export: vfio-pci would revoke it, and A's
    // mapping of it would reach nothing behind a `Mapping` that says it
    // does. With no BAR of B mmapped (the old guard's case), the write is
    // still refused while the export lives, and goes through after.
    assert!(b.unmap_bar(0), "BAR0 was mapped");
    let mut cmd = [0u8; 2];
    b.config_read(4, &mut cmd).unwrap();
    let on = u16::from_le_bytes(cmd);
    let off = (on & !0x2).to_le_bytes();
    let peer = ioas
        .map_peer_bar(
            b.export_bar(0, 0, 4096).unwrap(),
            Iova::Fixed(WINDOW),
            Access::READ_WRITE,
        )
        .unwrap();
    let e = b.config_write(4, &off).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    assert!(e.to_string().contains("exported as dma-bufs"), "{e}");
    b.config_read(4, &mut cmd).unwrap();
    assert_eq!(u16::from_le_bytes(cmd), on, "nothing was written");
    drop(peer);
    b.config_write(4, &off).unwrap();
    b.config_write(4, &on.to_le_bytes()).unwrap();
    // Only now can B go.
    b.unbind().unwrap();
}

/// MSI-X on the NVMe controller: 65 vectors, all routed, then a sparse
/// re-route of a few without touching the others; the BAR holding the
/// MSI-X table is mapped whole. (The NVMe example takes real completions
/// on a vector: `tests/guest_examples.rs`.)
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn msix_vectors_route_all_sparse_and_again() {
    use iommufd::RegionCap;
    let bdf = Topology::discover().nvme.expect("no NVMe controller");
    let fd = Iommufd::open().unwrap();
    let mut dev = Device::open(&bdf).unwrap().bind(&fd).unwrap();
    let msix = dev.irq_info(pci::MSIX_IRQ).unwrap();
    assert_eq!(msix.count, 65);
    assert!(msix.eventfd() && !msix.maskable());
    assert_eq!(dev.irq_info(pci::MSI_IRQ).unwrap().count, 0);
    // The MSI-X table lives in BAR0, which may be mapped whole.
    let bar0 = dev.region_info(0).unwrap();
    assert!(bar0.caps.contains(&RegionCap::MsixMappable), "{bar0:?}");
    dev.map_bar(0).unwrap();
    let mmio = dev.mmio(0).unwrap();
    assert!(
        mmio.host_address(bar0.size - 4).is_some(),
        "BAR0 mapped whole"
    );

    let evs: Vec<EventFd> = (0..65).map(|_| EventFd::new().unwrap()).collect();
    dev.set_irq_eventfds(pci::MSIX_IRQ, 0, &evs).unwrap();
    dev.trigger_irqs(pci::MSIX_IRQ, 0, 65).unwrap();
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(e.take().unwrap(), 1, "vector {i}");
    }
    // Vector 3 to a new eventfd, 4..=6 unrouted, 7 to another; the rest as before.
    let (x, y) = (EventFd::new().unwrap(), EventFd::new().unwrap());
    dev.set_irq_routes(pci::MSIX_IRQ, 3, &[Some(&x), None, None, None, Some(&y)])
        .unwrap();
    dev.trigger_irqs(pci::MSIX_IRQ, 0, 65).unwrap();
    assert_eq!((x.take().unwrap(), y.take().unwrap()), (1, 1));
    for (i, e) in evs.iter().enumerate() {
        let want = u64::from(!(3..=7).contains(&i));
        assert_eq!(e.take().unwrap(), want, "vector {i}");
    }
    // What MSI-X does not offer, said clearly.
    let e = dev.mask_irqs(pci::MSIX_IRQ, 0, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("cannot be masked"), "{e}");
    let e = dev
        .set_irq_eventfds(pci::MSIX_IRQ, 64, &[&x, &y])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("65 vector(s)"), "{e}");
    dev.disable_irqs(pci::MSIX_IRQ).unwrap();
    dev.trigger_irqs(pci::MSIX_IRQ, 0, 1).unwrap_err();
}

/// Writes `n` to the PF's `sriov_numvfs` and returns its VFs once vfio-pci
/// has them (their `vfio-dev/` exists).
fn make_vfs(pf: &str, n: usize) -> Vec<String> {
    let d = Path::new("/sys/bus/pci/devices").join(pf);
    std::fs::write(d.join("sriov_numvfs"), n.to_string()).unwrap();
    let start = Instant::now();
    loop {
        let vfs: Vec<String> = (0..n)
            .filter_map(|i| std::fs::read_link(d.join(format!("virtfn{i}"))).ok())
            .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
            .collect();
        let ready = vfs.len() == n
            && vfs.iter().all(|v| {
                Path::new("/sys/bus/pci/devices")
                    .join(v)
                    .join("vfio-dev")
                    .exists()
            });
        if ready {
            return vfs;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "VFs of {pf} not on vfio-pci"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn vf_tokens_guard_the_vfs_of_a_vfio_pf() {
    let t = Topology::discover();
    let pf_bdf = t.sriov_pf.expect("no SR-IOV PF (igb) on vfio-pci");
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let pf = Device::open(&pf_bdf).unwrap().bind(&fd).unwrap();
    let token = *b"iommufd vf token";
    pf.set_vf_token(&token).unwrap();
    let vfs = make_vfs(&pf_bdf, 2);
    let old = std::env::var("IOMMUFD_TEST_KERNEL_VERSION").is_ok_and(|v| v == "6.12");
    let vf = Device::open(&vfs[0]).unwrap();
    let vf = if old {
        // The 6.12 cdev checks no token: the crate refuses, naming the kernel.
        let e = vf.bind(&fd).unwrap_err();
        assert_eq!(e.error().kind(), ErrorKind::VfToken, "{}", e.error());
        let msg = e.error().to_string();
        assert!(msg.contains("6.12") && msg.contains(&pf_bdf), "{msg}");
        let e = e.into_inner().bind_with_vf_token(&fd, &token).unwrap_err();
        assert_eq!(e.error().kind(), ErrorKind::Unsupported, "{}", e.error());
        assert!(e.error().to_string().contains("6.12"), "{}", e.error());
        e.into_inner().bind_ignoring_vf_token(&fd).unwrap()
    } else {
        let e = vf.bind(&fd).unwrap_err();
        assert_eq!(e.error().kind(), ErrorKind::VfToken, "{}", e.error());
        assert!(
            e.error().to_string().contains("VF token required"),
            "{}",
            e.error()
        );
        let e = e
            .into_inner()
            .bind_with_vf_token(&fd, b"not the vf token")
            .unwrap_err();
        assert_eq!(e.error().kind(), ErrorKind::VfToken, "{}", e.error());
        assert!(
            e.error().to_string().contains("wrong VF token"),
            "{}",
            e.error()
        );
        e.into_inner().bind_with_vf_token(&fd, &token).unwrap()
    };
    let vf = vf.attach(&ioas).unwrap();
    // A token for a device that takes none is refused too.
    if !old {
        let e = Device::open(&t.singleton)
            .unwrap()
            .bind_with_vf_token(&fd, &token)
            .unwrap_err();
        assert_eq!(e.error().kind(), ErrorKind::VfToken, "{}", e.error());
    }
    vf.close();
    let numvfs = Path::new("/sys/bus/pci/devices")
        .join(&pf_bdf)
        .join("sriov_numvfs");
    if old {
        std::fs::write(&numvfs, "0").unwrap();
        pf.close();
        return;
    }
    let refused = |r: Result<Device<BlockDma>, TransitionError<Device<Unbound>>>, why: &str| {
        let e = r.map(drop).unwrap_err();
        assert_eq!(e.error().kind(), ErrorKind::VfToken, "{}", e.error());
        assert!(e.error().to_string().contains(why), "{}", e.error());
        e.into_inner()
    };
    // The PF sets a second token: it replaces the first, which opens no VF
    // any more (the kernel selftest's `override_token`).
    let second = *b"second vf token!";
    pf.set_vf_token(&second).unwrap();
    let vf = Device::open(&vfs[1]).unwrap();
    let vf = refused(vf.bind_with_vf_token(&fd, &token), "wrong VF token");
    vf.bind_with_vf_token(&fd, &second).unwrap().close();
    // The PF's fd closed first: the token it set still guards its VFs
    // (`pf_early_close`).
    pf.close();
    let vf = Device::open(&vfs[1]).unwrap();
    let vf = refused(vf.bind(&fd), "VF token required");
    let vf = refused(vf.bind_with_vf_token(&fd, &token), "wrong VF token");
    vf.bind_with_vf_token(&fd, &second).unwrap().close();
    std::fs::write(&numvfs, "0").unwrap();
}
