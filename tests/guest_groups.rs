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
    for i in 0..2 {
        g.map_bar(i, 0).unwrap();
        let dev = g.member(i).unwrap();
        let mut cmd = [0u8; 2];
        dev.config_read(4, &mut cmd).unwrap();
        dev.config_write(4, &(u16::from_le_bytes(cmd) | 6).to_le_bytes())
            .unwrap();
    }
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
