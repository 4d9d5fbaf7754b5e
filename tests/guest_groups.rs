//! Multi-device IOMMU groups on the cdev (the `pair` and `nonviable` groups of
//! the harness topology). Run in the vmtest guest: `cargo xtask vmtest`.

mod support;

use iommufd::{Attached, ErrorKind, Group, Ioas, Iommufd, Iova};
use nix::errno::Errno;
use support::Topology;

const MSG: &[u8] = b"two devices, one address space";

fn dma_through(group: &Group<Attached<Ioas>>, ioas: &Ioas, base: u64) {
    for (i, dev) in group.members().iter().enumerate() {
        let dst = Iova::Fixed(base + 0x10000 * (i as u64 + 1));
        let out = support::round_trip(dev, ioas, MSG, Iova::Fixed(base), dst);
        assert_eq!(out, MSG, "DMA through member {} ({})", i, dev.name());
    }
}

fn bound_pair(fd: &Iommufd) -> Group<iommufd::BlockDma> {
    let t = Topology::discover();
    let g = Group::open(t.pair_group).expect("open pair group");
    assert_eq!(
        g.len(),
        2,
        "both edus on vfio-pci, the bridge has no driver: {g:?}"
    );
    let mut g = g.bind(fd).expect("bind pair");
    support::edu_members(&mut g);
    g
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn pair_dmas_through_one_ioas_and_replace_moves_both() {
    let fd = Iommufd::open().unwrap();
    let a = fd.alloc_ioas().unwrap();
    let b = fd.alloc_ioas().unwrap();
    let g = bound_pair(&fd).attach(&a).unwrap();
    let hw: Vec<u32> = g.members().iter().map(|d| d.hwpt_id()).collect();
    assert_eq!(hw[0], hw[1], "one group, one hardware page table");
    dma_through(&g, &a, 0x100000);

    let g = g.replace(&b).unwrap();
    assert!(g.members().iter().all(|d| d.ioas() == &b));
    dma_through(&g, &b, 0x400000);

    let g = g.detach().unwrap();
    let g = g.unbind().unwrap();
    assert!(format!("{g:?}").starts_with("Group<Unbound>"));
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn kernel_enforces_one_ioas_and_one_iommufd_per_group() {
    // Raw devices (past the group check) to show what the kernel itself
    // answers, which Group makes unrepresentable.
    let t = Topology::discover();
    let cdev = |bdf: &str| support::raw_member(bdf);
    let fd = Iommufd::open().unwrap();
    let other = Iommufd::open().unwrap();
    let d0 = cdev(&t.pair[0]).bind(&fd).unwrap();
    let e = cdev(&t.pair[1]).bind(&other).unwrap_err();
    assert_eq!(
        e.error().raw_errno(),
        Some(Errno::EPERM),
        "second iommufd: {}",
        e.error()
    );
    let d1 = e.into_inner().bind(&fd).unwrap();
    let a = fd.alloc_ioas().unwrap();
    let b = fd.alloc_ioas().unwrap();
    let d0 = d0.attach(&a).unwrap();
    let e = d1.attach(&b).unwrap_err();
    assert_eq!(
        e.error().raw_errno(),
        Some(Errno::EINVAL),
        "different IOAS: {}",
        e.error()
    );
    assert!(
        e.error().to_string().contains("same") || e.error().to_string().contains("share one"),
        "{}",
        e.error()
    );
    let d1 = e.into_inner().attach(&a).unwrap();
    assert_eq!(d0.hwpt_id(), d1.hwpt_id());
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn nonviable_group_names_the_device_and_driver() {
    let t = Topology::discover();
    let e = Group::open(t.nonviable_group).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::GroupNotViable);
    let s = e.to_string();
    assert!(
        s.contains(&t.nonviable_other) && s.contains("virtio-pci"),
        "{s}"
    );
    assert!(s.contains("driver_override"), "says how to fix it: {s}");

    // The kernel agrees: binding the edu alone gives EPERM, explained the same way.
    let dev = support::raw_member(&t.nonviable_edu);
    let e = dev.bind(&Iommufd::open().unwrap()).unwrap_err();
    assert_eq!(e.error().raw_errno(), Some(Errno::EPERM));
    assert_eq!(e.error().kind(), ErrorKind::GroupNotViable, "{}", e.error());
    assert!(
        e.error().to_string().contains(&t.nonviable_other),
        "{}",
        e.error()
    );
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn failure_on_the_second_member_rolls_the_group_back() {
    let t = Topology::discover();
    let fd = Iommufd::open().unwrap();
    let g = Group::open(t.pair_group).unwrap();
    assert_eq!(g.member_names()[1], t.pair[1].as_str());
    // Inject: the second member is already bound elsewhere (another open of its cdev).
    let intruder = support::raw_member(&t.pair[1]).bind(&fd).unwrap();
    let e = g.bind(&fd).unwrap_err();
    let msg = e.error().to_string();
    assert!(
        msg.contains("member 2 of 2") && msg.contains("rolled back"),
        "{msg}"
    );
    let g = e.into_inner();
    assert_eq!(g.len(), 2, "the group comes back whole");
    assert!(format!("{g:?}").starts_with("Group<Unbound>"));

    // Without the intruder the same group value binds, attaches and DMAs.
    drop(intruder);
    let mut g = g.bind(&fd).expect("bind after rollback");
    for i in 0..2 {
        g.map_bar(i, 0).unwrap();
        let dev = g.member(i).unwrap();
        dev.config_write(4, &6u16.to_le_bytes()).unwrap();
    }
    let ioas = fd.alloc_ioas().unwrap();
    let g = g.attach(&ioas).unwrap();
    dma_through(&g, &ioas, 0x100000);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn failure_on_attach_rolls_back_to_blocking() {
    let fd = Iommufd::open().unwrap();
    let g = bound_pair(&fd);
    let foreign = Iommufd::open().unwrap().alloc_ioas().unwrap();
    let e = g.attach(&foreign).unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::InvalidInput);
    assert!(
        e.error().to_string().contains("member 1 of 2"),
        "{}",
        e.error()
    );
    let g = e.into_inner();
    let ioas = fd.alloc_ioas().unwrap();
    let g = g.attach(&ioas).unwrap();
    dma_through(&g, &ioas, 0x100000);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn some_members_bound_others_added_and_released_without_leaving_the_group() {
    let t = Topology::discover();
    let fd = Iommufd::open().unwrap();
    let a = fd.alloc_ioas().unwrap();

    // Step 6, first half: one member bound, the other left on vfio-pci, unopened.
    let g = Group::open_members(t.pair_group, &[&t.pair[1]]).unwrap();
    assert_eq!(g.member_names(), [t.pair[1].as_str()]);
    let mut g = g.bind(&fd).unwrap();
    support::edu_members(&mut g);
    let mut g = g.attach(&a).unwrap();
    dma_through(&g, &a, 0x100000);
    let other = iommufd::sysfs::device(std::path::Path::new("/sys"), &t.pair[0]).unwrap();
    assert_eq!(
        other.driver.as_deref(),
        Some("vfio-pci"),
        "the other member stays put"
    );

    // Step 6, second half: the other member joins the attached group, and is
    // typed attached to the group's IOAS, because it is.
    g.add(&t.pair[0]).unwrap();
    assert_eq!(
        g.member_names(),
        [t.pair[0].as_str(), t.pair[1].as_str()],
        "BDF order"
    );
    assert!(g.members().iter().all(|d| d.ioas() == &a));
    support::edu_member(&mut g, 0);
    dma_through(&g, &a, 0x200000);
    let e = g.add(&t.pair[0]).unwrap_err();
    assert!(e.to_string().contains("already a member"), "{e}");
    let e = g.add(&t.singleton).unwrap_err();
    assert!(e.to_string().contains("not"), "{e}");

    // Step 8: one member released; the group keeps its context, and the
    // remaining member's DMA still reaches the IOAS.
    let released = g.release(0).unwrap();
    assert_eq!(released.name(), t.pair[0]);
    assert_eq!(g.len(), 1);
    dma_through(&g, &a, 0x300000);
    // The kernel agrees it is unbound: another open of its cdev binds to
    // this iommufd (a second iommufd is refused: the group is owned).
    let e = support::raw_member(&t.pair[0])
        .bind(&Iommufd::open().unwrap())
        .unwrap_err();
    assert_eq!(e.error().raw_errno(), Some(Errno::EPERM), "{}", e.error());
    drop(e);
    // It rejoins, attached again.
    g.rejoin(released).unwrap();
    assert_eq!(g.len(), 2);
    support::edu_member(&mut g, 0);
    dma_through(&g, &a, 0x400000);

    // The last member cannot be released; unbinding the group returns it to
    // the kernel, with ordinary unbound members.
    let released = g.release(1).unwrap();
    let e = g.release(0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("Group::unbind"), "{e}");
    let mut g = g.detach().unwrap().unbind().unwrap();
    g.rejoin(released).unwrap();
    assert_eq!(g.len(), 2);
    let other_fd = Iommufd::open().unwrap();
    let g = g
        .bind(&other_fd)
        .expect("back with the kernel: any iommufd may own it");
    assert_eq!(g.len(), 2);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_released_member_rejoins_only_its_own_group_and_iommufd() {
    let t = Topology::discover();
    let fd = Iommufd::open().unwrap();
    let mut g = Group::open(t.pair_group).unwrap().bind(&fd).unwrap();
    let released = g.release(1).unwrap();
    // The same group on another iommufd would be EPERM in the kernel: refused first.
    drop(g);
    let fd2 = Iommufd::open().unwrap();
    let mut g2 = Group::open_members(t.pair_group, &[&t.pair[0]])
        .unwrap()
        .bind(&fd2)
        .unwrap();
    let e = g2.rejoin(released).unwrap_err();
    assert!(
        e.error().to_string().contains("another iommufd"),
        "{}",
        e.error()
    );
    let released = e.into_inner();
    drop(g2);
    // An unbound group of the same number takes it back, unless the
    // member is in it already.
    let mut other = Group::open(t.pair_group).unwrap();
    let e = other.rejoin(released).unwrap_err();
    assert!(e.error().to_string().contains("already"), "{}", e.error());
    drop(other);
}

/// The kernel fact behind the types: a member detached from an attached
/// group is not blocked; it DMAs through the group's IOAS (raw ioctls).
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_detached_member_of_an_attached_group_still_reaches_its_ioas() {
    use support::raw;
    let t = Topology::discover();
    let iommu = support::open_rw("/dev/iommu");
    let d0 = raw::open_device(&t.pair[0]);
    let d1 = raw::open_device(&t.pair[1]);
    raw::bind(&d0, &iommu).unwrap();
    raw::bind(&d1, &iommu).unwrap();
    let a = raw::alloc_ioas(&iommu).unwrap();
    let src = support::buffer_with(MSG);
    let dst = iommufd::DmaBuffer::new(4096).unwrap();
    // SAFETY: both buffers outlive the IOAS's mappings (the iommufd closes first).
    unsafe {
        let va = |b: &iommufd::DmaBuffer| b.as_slice().as_ptr() as u64;
        raw::map(&iommu, a, va(&src), 4096, Some(0x100000)).unwrap();
        raw::map(&iommu, a, va(&dst), 4096, Some(0x200000)).unwrap();
    }
    raw::attach(&d0, a).unwrap();
    raw::attach(&d1, a).unwrap();
    raw::detach(&d1).unwrap();
    let edu = support::RawEdu::new(&d1);
    edu.read_from_ram(0x100000, MSG.len() as u64);
    edu.write_to_ram(0x200000, MSG.len() as u64);
    // SAFETY: a volatile read of memory the device wrote; the DMA completed.
    let got: Vec<u8> = (0..MSG.len())
        .map(|i| unsafe { dst.as_slice().as_ptr().add(i).read_volatile() })
        .collect();
    assert_eq!(
        got, MSG,
        "the detached member's DMA still lands in the group's IOAS"
    );
    drop((edu, d0, d1, iommu, src));
}
