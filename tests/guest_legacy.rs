//! The legacy VFIO path (group fd + type1v2 container) behind the same types.
//! Every test here is named `legacy_*`, so `cargo xtask vmtest --kernel 6.1 legacy`
//! runs exactly these on a kernel without iommufd or the cdev.

mod support;

use iommufd::{
    Access, Attached, Backend, Device, DmaBuffer, ErrorKind, Group, Ioas, Iommufd, Iova,
};
use nix::errno::Errno;
use support::{map_src_dst, Edu, Topology};

const MSG: &[u8] = b"legacy type1 container, same types";
const SRC: u64 = 0x100000;
const DST: u64 = 0x200000;

fn old_kernel() -> bool {
    std::env::var("IOMMUFD_TEST_KERNEL_VERSION").is_ok_and(|v| v == "6.1")
}

fn round_trip<S: iommufd::Bound>(dev: &Device<S>, ioas: &Ioas) -> Vec<u8> {
    support::round_trip(dev, ioas, MSG, Iova::Fixed(SRC), Iova::Fixed(DST))
}

fn legacy_singleton(fd: &Iommufd) -> Device<iommufd::BlockDma> {
    let mut dev = Device::open_legacy(&Topology::discover().singleton)
        .unwrap()
        .bind(fd)
        .unwrap();
    Edu::setup(&mut dev).unwrap();
    dev
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn legacy_automatic_selection_round_trip() {
    // The same calls as on the cdev: the kernel decides the path.
    let fd = Iommufd::open().unwrap();
    let expect = if old_kernel() {
        Backend::LegacyContainer
    } else {
        Backend::Iommufd
    };
    assert_eq!(fd.backend(), expect);
    assert_eq!(iommufd::detect_backend(), expect);
    let ioas = fd.alloc_ioas().unwrap();
    let dev = support::bound_singleton(&fd).attach(&ioas).unwrap();
    assert_eq!(round_trip(&dev, &ioas), MSG);
    let dev = dev.detach().unwrap().unbind().unwrap();
    // And again after unbind: nothing was left behind.
    let mut dev = dev.bind(&fd).unwrap();
    Edu::setup(&mut dev).unwrap();
    let dev = dev.attach(&ioas).unwrap();
    assert_eq!(round_trip(&dev, &ioas), MSG);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn legacy_forced_dma_detach_blocks_and_unmapped_is_blocked() {
    let fd = Iommufd::open_legacy().unwrap();
    assert_eq!(fd.backend(), Backend::LegacyContainer);
    let ioas = fd.alloc_ioas().unwrap();
    let dev = legacy_singleton(&fd);
    // Mapped before attach: replayed into the container at attach.
    let (src, dst) = map_src_dst(&ioas, MSG, Iova::Fixed(SRC), Iova::Fixed(DST), 4096);
    // BlockDma: the container holds no mappings yet, so this DMA faults.
    Edu::new(&dev).read_from_ram(SRC, MSG.len() as u64);
    Edu::new(&dev).write_to_ram(DST, MSG.len() as u64);
    let mut out = vec![0u8; MSG.len()];
    dst.read_bytes(0, &mut out).unwrap();
    assert!(out.iter().all(|&b| b == 0), "DMA got through before attach");

    let dev = dev.attach(&ioas).unwrap();
    let edu = Edu::new(&dev);
    edu.read_from_ram(SRC, MSG.len() as u64);
    edu.write_to_ram(DST, MSG.len() as u64);
    dst.read_bytes(0, &mut out).unwrap();
    assert_eq!(out, MSG, "DMA after attach");

    let dev = dev.detach().unwrap();
    let dst_buf = dst.unmap().unwrap();
    let dst = ioas
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(DST),
            Access::WRITE,
        )
        .unwrap();
    Edu::new(&dev).write_to_ram(DST, MSG.len() as u64);
    dst.read_bytes(0, &mut out).unwrap();
    assert!(out.iter().all(|&b| b == 0), "DMA got through after detach");
    assert_eq!(&dst_buf.as_slice()[..MSG.len()], MSG);

    // Unmapped IOVA while attached: blocked, memory untouched.
    let dev = dev.attach(&ioas).unwrap();
    let dst = dst.unmap().unwrap();
    Edu::new(&dev).write_to_ram(DST, MSG.len() as u64);
    assert!(
        dst.as_slice().iter().all(|&b| b == 0),
        "DMA reached unmapped memory"
    );
    drop(src);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn legacy_errors_overlap_partial_unmap_and_unsupported() {
    let fd = Iommufd::open_legacy().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = legacy_singleton(&fd).attach(&ioas).unwrap();
    let r = ioas.iova_ranges().unwrap();
    assert_eq!(r.alignment, 4096, "type1 page sizes: {r}");
    let big = ioas
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
    assert_eq!(e.error().kind(), ErrorKind::Overlap, "{}", e.error());
    assert!(
        e.error().to_string().contains("IOVA [0x100000, 0x101fff]"),
        "{}",
        e.error()
    );
    let e = ioas.unmap(SRC, 4096).unwrap_err();
    assert_eq!(e.raw_errno(), Some(Errno::ENOENT));
    let memfd = std::fs::File::open("/dev/zero").unwrap();
    let e = ioas
        .map_file(&memfd, 0, 4096, Iova::Any, Access::READ)
        .unwrap_err();
    assert_eq!(e.raw_errno(), Some(Errno::EOPNOTSUPP));
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.to_string().contains("legacy"), "{e}");
    drop(big);
    assert_eq!(round_trip(&dev, &ioas), MSG, "still works");
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn legacy_pair_group_dmas_through_one_ioas_and_replace_moves_both() {
    let t = Topology::discover();
    let fd = Iommufd::open_legacy().unwrap();
    let a = fd.alloc_ioas().unwrap();
    let b = fd.alloc_ioas().unwrap();
    let mut g = Group::open_legacy(t.pair_group).unwrap().bind(&fd).unwrap();
    for i in 0..2 {
        g.map_bar(i, 0).unwrap();
        g.member(i)
            .unwrap()
            .config_write(4, &6u16.to_le_bytes())
            .unwrap();
    }
    let g = g.attach(&a).unwrap();
    check_group(&g, &a);
    let g = g.replace(&b).unwrap();
    check_group(&g, &b);
    let g = g.detach().unwrap().unbind().unwrap();
    assert_eq!(g.len(), 2);
}

fn check_group(g: &Group<Attached<Ioas>>, ioas: &Ioas) {
    for (i, dev) in g.members().iter().enumerate() {
        let out = support::round_trip(dev, ioas, MSG, Iova::Any, Iova::Any);
        assert_eq!(out, MSG, "member {i} through IOAS {}", ioas.id());
    }
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn legacy_mixing_paths_is_a_clear_error() {
    if old_kernel() {
        return; // no cdev on 6.1: nothing to mix
    }
    let t = Topology::discover();
    // A cdev of the singleton's group is bound: the legacy group open is
    // refused by the kernel. (A second open of a multi-device group in one
    // process is the crate's to refuse first: `guest_hardening`.)
    let fd = Iommufd::open_iommufd().unwrap();
    let d = Device::open(&t.singleton).unwrap().bind(&fd).unwrap();
    let e = Device::open_legacy(&t.singleton).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PathConflict, "{e}");
    assert_eq!(e.raw_errno(), Some(Errno::EBUSY));
    assert!(
        e.to_string().contains("cdev"),
        "says which path holds it: {e}"
    );
    drop(d);
    // A legacy device cannot bind to an iommufd context, nor a cdev device to a legacy one.
    let dev = Device::open_legacy(&t.singleton).unwrap();
    let e = dev.bind(&fd).unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::PathConflict);
    drop(e);
    let e = Device::open(&t.singleton)
        .unwrap()
        .bind(&Iommufd::open_legacy().unwrap())
        .unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::PathConflict);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn legacy_ranges_near_the_top_of_the_iova_space_are_errors_not_panics() {
    const TOP: u64 = 0xffff_ffff_ffff_f000;
    let fd = Iommufd::open_legacy().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let page = || DmaBuffer::new(4096).unwrap();
    // Before any attach the whole 64-bit space is usable, up to 2^64 exactly.
    let top = ioas.map(page(), Iova::Fixed(TOP), Access::READ).unwrap();
    assert_eq!(top.iova(), TOP);
    // Kernel-chosen IOVAs still find room below it.
    let any = ioas.map(page(), Iova::Any, Access::READ).unwrap();
    assert!(any.iova() < TOP);
    let e = ioas
        .map(
            DmaBuffer::new(8192).unwrap(),
            Iova::Fixed(TOP),
            Access::READ,
        )
        .unwrap_err();
    let msg = e.error().to_string();
    assert_eq!(e.error().kind(), ErrorKind::OutOfRange, "{msg}");
    assert!(
        msg.contains("IOVA 0xfffffffffffff000 + 0x2000 bytes") && msg.contains("past the end"),
        "{msg}"
    );
    let e = ioas.unmap(u64::MAX, 2).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfRange, "{e}");
    assert_eq!(e.raw_errno(), Some(Errno::EOVERFLOW));
    let e = ioas.unmap(TOP - 0x1000, 0x1000).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotMapped, "{e}");
    // No access at all: refused at the map, not at the next attach's replay.
    let none = Access {
        read: false,
        write: false,
    };
    let e = ioas.map(page(), Iova::Any, none).unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::InvalidInput, "{}", e.error());
    assert!(e.error().to_string().contains("no access"), "{}", e.error());

    // Type1 maps only below 2^48 once a container is attached: attaching
    // with the top mapping in the IOAS fails, and the device comes back
    // blocked and working.
    let dev = legacy_singleton(&fd);
    let (dev, e) = dev.attach(&ioas).unwrap_err().into_parts();
    assert!(e.to_string().contains("0xfffffffffffff000"), "{e}");
    drop(top);
    let dev = dev.attach(&ioas).unwrap();
    drop(any);
    assert_eq!(round_trip(&dev, &ioas), MSG);
}

/// A progress line straight to the console, past libtest's capture: the
/// guest froze twice inside the next test (once on 6.12, once on 7.3, in
/// about 17 runs), and these say where the next freeze happens.
fn step(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "legacy partly bound group: {what}");
}

/// Seed Stage-2 steps 6 and 8 on the legacy path: the group fd holds the
/// container for every member, so a member added later gets its device fd
/// from that group fd and joins the container's IOAS; a released member
/// closes its device fd while the group stays in the container; the last
/// unbind takes the group out of it.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn legacy_partly_bound_group_adds_and_releases_members() {
    let t = Topology::discover();
    let fd = Iommufd::open_legacy().unwrap();
    let a = fd.alloc_ioas().unwrap();
    step("open one member, bind");
    let mut g = Group::open_members_legacy(t.pair_group, &[&t.pair[1]])
        .unwrap()
        .bind(&fd)
        .unwrap();
    assert_eq!(g.len(), 1);
    support::edu_member(&mut g, 0);
    step("attach");
    let mut g = g.attach(&a).unwrap();
    check_group(&g, &a);

    step("add");
    g.add(&t.pair[0]).unwrap();
    assert!(g.members().iter().all(|d| d.ioas() == &a));
    support::edu_member(&mut g, 0);
    check_group(&g, &a);

    step("release member 0");
    let released = g.release(0).unwrap();
    check_group(&g, &a);
    step("rejoin");
    g.rejoin(released).unwrap();
    support::edu_member(&mut g, 0);
    check_group(&g, &a);

    step("release member 1, detach, unbind");
    let released = g.release(1).unwrap();
    let mut g = g.detach().unwrap().unbind().unwrap();
    g.rejoin(released).unwrap();
    assert_eq!(g.len(), 2);
    // The group is out of its container: a fresh context takes it.
    step("bind to a fresh context");
    let g = g.bind(&Iommufd::open_legacy().unwrap()).unwrap();
    assert_eq!(g.len(), 2);
}
