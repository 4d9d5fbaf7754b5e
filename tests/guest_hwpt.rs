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
