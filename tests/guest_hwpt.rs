//! Hardware page tables and IOMMU info on the emulated VT-d: what it
//! reports, a plain HWPT a device attaches to (edu DMA through it), replace
//! between an HWPT and an IOAS, and the capabilities it lacks refused by
//! name. (Dirty tracking and nesting need the kernel's iommufd test driver.)

mod support;

use iommufd::hwpt::{DirtyTracking, Hwpt, NestParent, Paging};
use iommufd::{Attached, Device, ErrorKind, IommuKind, Iommufd, Iova};
use support::{Edu, Topology};

const MSG: &[u8] = b"DMA through a hardware page table";

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn hwpt_on_vtd_attach_replace_and_refusals() {
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = support::bound_singleton(&fd);
    let info = dev.hw_info().unwrap();
    assert!(
        matches!(info.kind, IommuKind::IntelVtd { cap_reg, .. } if cap_reg != 0),
        "{info:?}"
    );
    assert!(!info.dirty_tracking() && !info.pasid(), "{info:?}");

    let hwpt = Hwpt::<Paging>::alloc(&dev, &ioas).unwrap();
    let dev: Device<Attached<Hwpt>> = dev.attach(&hwpt).unwrap();
    assert_eq!(dev.hwpt_id(), hwpt.id());
    assert_eq!(dev.page_table().id(), hwpt.id());
    assert_eq!(dev.ioas(), &ioas);
    let out = support::round_trip(&dev, &ioas, MSG, Iova::Any, Iova::Any);
    assert_eq!(out, MSG, "through the HWPT");
    // The device keeps its HWPT alive: our handle may go.
    let id = hwpt.id();
    drop(hwpt);
    assert_eq!(dev.hwpt_id(), id);
    let out = support::round_trip(&dev, &ioas, MSG, Iova::Any, Iova::Any);
    assert_eq!(out, MSG);
    // HWPT -> IOAS -> a new HWPT, DMA each time.
    let dev = dev.replace(&ioas).unwrap();
    assert_eq!(
        support::round_trip(&dev, &ioas, MSG, Iova::Any, Iova::Any),
        MSG
    );
    let hwpt2 = Hwpt::<Paging>::alloc(&dev, &ioas).unwrap();
    let dev = dev.replace(&hwpt2).unwrap();
    assert_eq!(dev.hwpt_id(), hwpt2.id());
    assert_eq!(
        support::round_trip(&dev, &ioas, MSG, Iova::Any, Iova::Any),
        MSG
    );
    // Blocked again, DMA stops.
    let dev = dev.detach().unwrap();
    assert_eq!(Edu::new(&dev).liveness(1), !1);

    // What VT-d here cannot do, by name.
    let e = Hwpt::<DirtyTracking>::alloc(&dev, &ioas).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("dirty tracking"), "{e}");
    let e = Hwpt::<NestParent>::alloc(&dev, &ioas).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("nest"), "{e}");
    // An IOAS of another iommufd.
    let other = Iommufd::open().unwrap().alloc_ioas().unwrap();
    let e = Hwpt::<Paging>::alloc(&dev, &other).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    // Attached again from BlockDma, straight to the HWPT.
    let dev = dev.attach(&hwpt2).unwrap();
    assert_eq!(
        support::round_trip(&dev, &ioas, MSG, Iova::Any, Iova::Any),
        MSG
    );
    dev.detach().unwrap();
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn legacy_has_no_hwpt_and_says_so() {
    let fd = Iommufd::open_legacy().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = Device::open_legacy(&Topology::discover().singleton)
        .unwrap()
        .bind(&fd)
        .unwrap();
    let e = dev.hw_info().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let e = Hwpt::<Paging>::alloc(&dev, &ioas).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
}

/// PASIDs on the emulated VT-d and edu: neither has PASID support, so the
/// attach is refused, by name, and loses nothing (the RID's DMA still
/// works). On 6.12 the kernel has no PASID attach at all, and the crate
/// says so.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn pasid_on_edu_is_refused_by_name_and_loses_nothing() {
    use iommufd::{Pasid, PasidHwpt};
    assert_eq!(Pasid::new(0).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert!(Pasid::new(Pasid::MAX + 1).is_err());
    let p1 = Pasid::new(1).unwrap();
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = support::bound_singleton(&fd);
    if std::env::var("IOMMUFD_TEST_KERNEL_VERSION").is_ok_and(|v| v == "6.12") {
        let e = PasidHwpt::<Paging>::alloc(&dev, &ioas).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        assert!(e.to_string().contains("6.15"), "{e}");
        return;
    }
    // VT-d makes PASID-capable page tables; the RID attaches to one.
    let rid = PasidHwpt::<Paging>::alloc(&dev, &ioas).unwrap();
    let mut dev: Device<Attached<PasidHwpt>> = dev.attach(&rid).unwrap();
    assert_eq!(dev.hwpt_id(), rid.id());
    assert_eq!(
        support::round_trip(&dev, &ioas, MSG, Iova::Any, Iova::Any),
        MSG
    );
    let sva = fd.alloc_ioas().unwrap();
    let table = PasidHwpt::<Paging>::alloc(&dev, &sva).unwrap();
    // Replace and detach of a PASID that is not attached: refused before
    // the kernel, which would have attached it instead.
    let e = dev.replace_pasid(p1, &table).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("not attached"), "{e}");
    assert_eq!(e.raw_errno(), None, "{e}");
    let e = dev.detach_pasid(p1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    // The attach. Linux 7.3 would accept it and do nothing (the IOMMU core
    // skips a device without PASIDs), so the crate refuses it, asking
    // IOMMU_GET_HW_INFO once.
    let e = dev.attach_pasid(p1, &table).unwrap_err();
    eprintln!("{e}");
    assert_eq!(e.raw_errno(), None, "{e}");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("cannot use PASIDs"), "{e}");
    assert!(e.to_string().contains("PASID 1"), "{e}");
    assert_eq!(dev.pasids().count(), 0);
    assert_eq!(dev.pasid_hwpt(p1), None);
    // Nothing lost: the RID's attachment and DMA are as they were.
    assert_eq!(dev.hwpt_id(), rid.id());
    assert_eq!(
        support::round_trip(&dev, &ioas, MSG, Iova::Any, Iova::Any),
        MSG
    );
    // Back to a plain IOAS: allowed, no PASID is attached.
    let dev = dev.replace(&ioas).unwrap();
    dev.detach().unwrap();
}

/// A multi-device group on an HWPT: attached, DMA through each member,
/// moved to the IOAS and back (each member's replace atomic), the HWPT
/// kept alive by the group, then detached.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_group_attaches_and_replaces_between_hwpt_and_ioas() {
    use iommufd::Group;
    let t = Topology::discover();
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let mut group = Group::open(t.pair_group).unwrap().bind(&fd).unwrap();
    support::edu_members(&mut group);
    let hwpt = Hwpt::<Paging>::alloc(group.member(0).unwrap(), &ioas).unwrap();
    let group: Group<Attached<Hwpt>> = group.attach(&hwpt).unwrap();
    assert_eq!(group.page_table().id(), hwpt.id());
    // The group holds the HWPT: the caller's handle may go.
    drop(hwpt);
    group_dma(&group, &ioas);
    let group = group.replace(&ioas).unwrap();
    group_dma(&group, &ioas);
    let hwpt2 = Hwpt::<Paging>::alloc(group.member(0).unwrap(), &ioas).unwrap();
    let group = group.replace(&hwpt2).unwrap();
    assert_eq!(group.page_table().id(), hwpt2.id());
    group_dma(&group, &ioas);
    let group = group.detach().unwrap();
    for d in group.members() {
        assert_eq!(Edu::new(d).liveness(3), !3);
    }
    drop(group);
    // A member added to a group on an HWPT joins that HWPT.
    let part = Group::open_members(t.pair_group, &[t.pair[0].as_str()])
        .unwrap()
        .bind(&fd)
        .unwrap();
    let hwpt = Hwpt::<Paging>::alloc(part.member(0).unwrap(), &ioas).unwrap();
    let mut part = part.attach(&hwpt).unwrap();
    part.add(&t.pair[1]).unwrap();
    assert_eq!(part.len(), 2);
    support::edu_members(&mut part);
    assert_eq!(part.members()[1].hwpt_id(), hwpt.id());
    group_dma(&part, &ioas);
}

/// A round trip through each member of `g`, all on one page table.
fn group_dma<P: iommufd::PageTable>(g: &iommufd::Group<Attached<P>>, ioas: &iommufd::Ioas) {
    for d in g.members() {
        assert_eq!(d.hwpt_id(), g.members()[0].hwpt_id());
        let out = support::round_trip(d, ioas, MSG, Iova::Any, Iova::Any);
        assert_eq!(out, MSG, "{}", d.name());
    }
}

/// VT-d's own data asked for by type (`IOMMU_HW_INFO_FLAG_INPUT_TYPE`,
/// 7.3): the same as the default; a type VT-d has not is refused by name.
/// Before 6.17 (6.12 here) the flag itself is refused, and the error says
/// which kernel added it.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn vtd_data_is_asked_for_by_type() {
    use iommufd::hwpt::HwInfoType;
    let fd = Iommufd::open().unwrap();
    let dev = support::bound_singleton(&fd);
    let default = dev.hw_info().unwrap();
    assert!(
        matches!(default.kind, IommuKind::IntelVtd { .. }),
        "{default:?}"
    );
    let e = dev.hw_info_as(HwInfoType::ArmSmmuV3).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    if std::env::var("IOMMUFD_TEST_KERNEL_VERSION").is_ok_and(|v| v == "6.12") {
        assert!(e.to_string().contains("6.17"), "{e}");
        return;
    }
    assert_eq!(dev.hw_info_as(HwInfoType::IntelVtd).unwrap(), default);
}
