//! Dirty tracking against the kernel's iommufd test driver (feature
//! `iommufd-test-driver`; the test kernel has `CONFIG_IOMMUFD_TEST`): bits
//! set by the mock device, read, cleared (or kept), and a mapping made
//! after tracking started tracked too.
#![cfg(feature = "iommufd-test-driver")]

mod support;

use iommufd::hwpt::{DirtyTracking, Hwpt};
use iommufd::mock::MockDevice;
use iommufd::{Access, DmaBuffer, ErrorKind, Iommufd, Iova};

/// The mock IOMMU's aperture starts at 16 MiB.
const BASE: u64 = 1 << 24;
const LEN: u64 = 64 << 10;
const PAGE: u64 = 4096;

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn dirty_bits_are_read_cleared_and_cover_later_mappings() {
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    if std::env::var("IOMMUFD_TEST_KERNEL_VERSION").is_ok_and(|v| v == "6.12") {
        // Measured in this guest: 6.12's test driver refuses to make a mock
        // device next to the emulated VT-d (EINVAL, before any IOAS check).
        let e = MockDevice::new(&ioas).unwrap_err();
        assert_eq!(e.raw_errno(), Some(nix::errno::Errno::EINVAL), "{e}");
        assert!(e.to_string().contains("mock device"), "{e}");
        return;
    }
    let mut dev = MockDevice::new(&ioas).unwrap();
    let info = dev.hw_info().unwrap();
    assert!(info.dirty_tracking(), "{info:?}");
    let hwpt = Hwpt::<DirtyTracking>::alloc(&dev, &ioas).unwrap();
    dev.replace(&hwpt).unwrap();
    assert_eq!(dev.hwpt_id(), hwpt.id());
    let _a = map_page_by_page(&ioas, BASE);
    let tracking = hwpt.start_dirty_tracking().unwrap();
    // One tracker per HWPT: a second would stop the first one's tracking.
    let e = hwpt.start_dirty_tracking().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    assert_eq!(
        tracking.read_dirty(BASE, LEN, PAGE, false).unwrap().count(),
        0
    );

    // Pages 0, 2 and 5 written.
    assert_eq!(
        dev.mark_dirty(&hwpt, BASE, LEN, PAGE, &[0b10_0101])
            .unwrap(),
        3
    );
    let d = tracking.read_dirty(BASE, LEN, PAGE, false).unwrap();
    let runs: Vec<(u64, u64)> = d.ranges().collect();
    assert_eq!(
        runs,
        vec![
            (BASE, PAGE),
            (BASE + 2 * PAGE, PAGE),
            (BASE + 5 * PAGE, PAGE)
        ]
    );
    // Read clears.
    assert_eq!(
        tracking.read_dirty(BASE, LEN, PAGE, false).unwrap().count(),
        0
    );
    // Unless kept: twice with NO_CLEAR, then cleared.
    dev.mark_dirty(&hwpt, BASE, LEN, PAGE, &[0b1_1000_0000])
        .unwrap(); // pages 7, 8
    for _ in 0..2 {
        let d = tracking.read_dirty(BASE, LEN, PAGE, true).unwrap();
        assert_eq!(
            d.ranges().collect::<Vec<_>>(),
            vec![(BASE + 7 * PAGE, 2 * PAGE)]
        );
    }
    assert_eq!(
        tracking.read_dirty(BASE, LEN, PAGE, false).unwrap().count(),
        2
    );
    assert_eq!(
        tracking.read_dirty(BASE, LEN, PAGE, false).unwrap().count(),
        0
    );

    // A mapping made after tracking started is tracked too.
    let later = BASE + (1 << 20);
    let _b = map_page_by_page(&ioas, later);
    dev.mark_dirty(&hwpt, later, LEN, PAGE, &[0b1000]).unwrap(); // page 3
    let d = tracking.read_dirty(later, LEN, PAGE, false).unwrap();
    assert!(d.is_dirty(later + 3 * PAGE) && d.count() == 1, "{d:?}");

    // Into a reused buffer: the same bits as read_dirty, a stale buffer
    // zeroed first (a bigger read, then a smaller one), nothing on error.
    let mut buf = iommufd::hwpt::DirtyBitmap::default();
    assert_eq!(buf.count(), 0);
    dev.mark_dirty(&hwpt, BASE, LEN, PAGE, &[0b11]).unwrap(); // pages 0, 1
    tracking
        .read_dirty_into(BASE, LEN, PAGE, true, &mut buf)
        .unwrap();
    assert_eq!(buf, tracking.read_dirty(BASE, LEN, PAGE, true).unwrap());
    assert_eq!(buf.ranges().collect::<Vec<_>>(), vec![(BASE, 2 * PAGE)]);
    tracking
        .read_dirty_into(BASE + PAGE, PAGE, PAGE, false, &mut buf)
        .unwrap();
    assert_eq!(buf.ranges().collect::<Vec<_>>(), vec![(BASE + PAGE, PAGE)]);
    tracking
        .read_dirty_into(BASE, LEN, PAGE, false, &mut buf)
        .unwrap();
    assert_eq!(buf.ranges().collect::<Vec<_>>(), vec![(BASE, PAGE)]);
    tracking
        .read_dirty_into(BASE, LEN, PAGE, false, &mut buf)
        .unwrap();
    assert_eq!(buf.count(), 0, "the buffer was zeroed before the read");
    let e = tracking.read_dirty_into(BASE + 1, LEN, PAGE, false, &mut buf);
    assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(buf.count(), 0);
    assert_eq!(buf.ranges().count(), 0);

    // A range whose bitmap no memory could hold (2^51 pages, 256 TiB of
    // bits): an error, not an abort of the process.
    let e = tracking.read_dirty(0, 1 << 63, PAGE, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("cannot be allocated"), "{e}");
    let e = tracking.read_dirty_into(0, 1 << 63, PAGE, false, &mut buf);
    assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidInput);

    // Bad ranges are refused before the ioctl.
    for (iova, len, page) in [
        (BASE, LEN, 3000),
        (BASE + 1, LEN, PAGE),
        (BASE, 0, PAGE),
        (BASE, 100, PAGE),
    ] {
        let e = tracking.read_dirty(iova, len, page, false).unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::InvalidInput,
            "{iova:#x}+{len:#x}/{page}: {e}"
        );
    }
    // Stopped: the HWPT back, and tracking can start again.
    let hwpt = tracking.stop().unwrap();
    drop(hwpt.start_dirty_tracking().unwrap());
}

/// `LEN` bytes at `at`, one 4 KiB mapping per page. The mock marks dirty
/// the whole page-table entry a page is in, and one mapping of physically
/// contiguous memory may get entries larger than 4 KiB (seen once in CI: a
/// write to page 3 read back as pages 2 and 3); a 4 KiB mapping gets a
/// 4 KiB entry, so the bits read back are exactly the pages written.
fn map_page_by_page(ioas: &iommufd::Ioas, at: u64) -> Vec<iommufd::Mapping<DmaBuffer>> {
    (0..LEN / PAGE)
        .map(|i| {
            ioas.map(
                DmaBuffer::new(PAGE as usize).unwrap(),
                Iova::Fixed(at + i * PAGE),
                Access::READ_WRITE,
            )
            .unwrap()
        })
        .collect()
}

/// Nesting on the test driver: a nest parent, a nested HWPT with the
/// driver's stage-1 data (it holds its parent), the mock device moved onto
/// it, an invalidation that empties the mock IOTLB, a vIOMMU on the parent
/// and a vDEVICE with its virtual id.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn nesting_invalidation_viommu_and_vdevice_on_the_test_driver() {
    use iommufd::hwpt::{Invalidation, NestParent, Nested, Stage1};
    use iommufd::viommu::{Viommu, ViommuKind};
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let Some(mut dev) = mock_or_6_12(&ioas) else {
        return;
    };
    let parent = Hwpt::<NestParent>::alloc(&dev, &ioas).unwrap();
    let nested =
        Hwpt::<Nested>::alloc_nested(&dev, &parent, &Stage1::Selftest { iotlb: 0xbadbeef })
            .unwrap();
    assert_eq!(nested.parent().id(), parent.id());
    let parent_id = parent.id();
    drop(parent); // the nested HWPT holds it
    dev.replace(&nested).unwrap();
    assert_eq!(dev.hwpt_id(), nested.id());
    for i in 0..4 {
        dev.check_iotlb(&nested, i, 0xbadbeef).unwrap();
    }
    // One entry, then all.
    let n = nested
        .invalidate(&[Invalidation::Selftest {
            flags: 0,
            iotlb_id: 1,
        }])
        .unwrap();
    assert_eq!(n, 1);
    dev.check_iotlb(&nested, 1, 0).unwrap();
    dev.check_iotlb(&nested, 2, 0xbadbeef).unwrap();
    nested
        .invalidate(&[Invalidation::Selftest {
            flags: 1,
            iotlb_id: 0,
        }])
        .unwrap();
    for i in 0..4 {
        dev.check_iotlb(&nested, i, 0).unwrap();
    }
    // A request the driver refuses (an IOTLB index past its 4): how many
    // were handled before it is said.
    let e = nested
        .invalidate(&[
            Invalidation::Selftest {
                flags: 0,
                iotlb_id: 0,
            },
            Invalidation::Selftest {
                flags: 0,
                iotlb_id: 9,
            },
        ])
        .unwrap_err();
    assert!(e.to_string().contains("handled 1 of 2"), "{e}");
    let e = nested.invalidate(&[]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");

    // A vIOMMU on the parent, and the mock device in it as virtual id 0x99.
    let viommu = Viommu::alloc(&dev, &nested.parent(), ViommuKind::Selftest).unwrap();
    assert_eq!(viommu.parent().id(), parent_id);
    let vdev = viommu.alloc_vdevice(&dev, 0x99).unwrap();
    assert_eq!(vdev.virt_id(), 0x99);
    // The same device twice is refused.
    assert!(viommu.alloc_vdevice(&dev, 0x9a).is_err());

    // The vIOMMU's per-device cache, invalidated by virtual id: one entry,
    // then all; an id no vDEVICE has is refused, with the count handled.
    use iommufd::viommu::ViommuInvalidation;
    for i in 0..4 {
        dev.check_dev_cache(i, 0xbaddad).unwrap();
    }
    let one = |cache_id| ViommuInvalidation::Selftest {
        flags: 0,
        vdev_id: 0x99,
        cache_id,
    };
    assert_eq!(viommu.invalidate(&[one(2)]).unwrap(), 1);
    dev.check_dev_cache(2, 0).unwrap();
    dev.check_dev_cache(1, 0xbaddad).unwrap();
    let stranger = ViommuInvalidation::Selftest {
        flags: 0,
        vdev_id: 0x77,
        cache_id: 0,
    };
    let e = viommu.invalidate(&[one(1), stranger]).unwrap_err();
    assert_eq!(e.raw_errno(), Some(nix::errno::Errno::EINVAL), "{e}");
    assert!(e.to_string().contains("handled 1 of 2"), "{e}");
    dev.check_dev_cache(1, 0).unwrap();
    dev.check_dev_cache(0, 0xbaddad).unwrap();
    let all = ViommuInvalidation::Selftest {
        flags: 1,
        vdev_id: 0x99,
        cache_id: 0,
    };
    viommu.invalidate(&[all]).unwrap();
    for i in 0..4 {
        dev.check_dev_cache(i, 0).unwrap();
    }
    // Two types in one call are refused before the kernel.
    let smmu = ViommuInvalidation::ArmSmmuV3 { cmd: [0, 0] };
    let e = viommu.invalidate(&[all, smmu]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    drop(vdev);
    drop(viommu);
    dev.replace(&ioas).unwrap();
}

/// A mock device, or `None` after checking 6.12's refusal (see above).
fn mock_or_6_12(ioas: &iommufd::Ioas) -> Option<MockDevice> {
    if std::env::var("IOMMUFD_TEST_KERNEL_VERSION").is_ok_and(|v| v == "6.12") {
        let e = MockDevice::new(ioas).unwrap_err();
        assert_eq!(e.raw_errno(), Some(nix::errno::Errno::EINVAL), "{e}");
        return None;
    }
    Some(MockDevice::new(ioas).unwrap())
}

/// An I/O page fault: a nested HWPT reporting to a fault queue, the mock
/// device moved onto it asks for a page, the VMM reads the typed record
/// from the queue's fd and answers it.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_page_fault_is_read_from_the_fault_queue_and_answered() {
    use iommufd::hwpt::{NestParent, Nested, Stage1};
    use iommufd::iopf::{FaultQueue, Response};
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let Some(mut dev) = mock_or_6_12(&ioas) else {
        return;
    };
    let faults = FaultQueue::alloc(&fd).unwrap();
    let parent = Hwpt::<NestParent>::alloc(&dev, &ioas).unwrap();
    let s1 = Stage1::Selftest { iotlb: 0xbadbeef };
    let nested = Hwpt::<Nested>::alloc_nested_with_faults(&dev, &parent, &s1, &faults).unwrap();
    dev.replace(&nested).unwrap();
    dev.trigger_page_fault(1, 2, 0b11, 0xdead_beaf).unwrap();
    let got = faults.read().unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    let f = &got[0];
    assert_eq!(
        (f.dev_id, f.pasid, f.grpid, f.perm),
        (dev.dev_id(), Some(1), 2, 0b11),
        "{f:?}"
    );
    assert_eq!(f.addr & !0xfff, 0xdead_beaf & !0xfff, "{f:?}");
    faults.respond(f, Response::Success).unwrap();
    // The queue outlives our handle while the HWPT reports to it.
    drop(faults);
    dev.replace(&ioas).unwrap();
}

/// vEVENTQ: events the (mock) IOMMU reports for a vIOMMU's device, read
/// from the queue's fd with their sequence numbers and the device's
/// virtual id.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn vevents_reach_the_viommus_event_queue() {
    use iommufd::hwpt::NestParent;
    use iommufd::viommu::{VeventqKind, Viommu, ViommuKind};
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let Some(mut dev) = mock_or_6_12(&ioas) else {
        return;
    };
    let parent = Hwpt::<NestParent>::alloc(&dev, &ioas).unwrap();
    let viommu = Viommu::alloc(&dev, &parent, ViommuKind::Selftest).unwrap();
    let vdev = viommu.alloc_vdevice(&dev, 0x99).unwrap();
    let q = viommu.alloc_veventq(VeventqKind::Selftest, 4).unwrap();
    // The device reports through its vIOMMU once attached to a nested HWPT
    // allocated on it (which holds the vIOMMU).
    let s1 = iommufd::hwpt::Stage1::Selftest { iotlb: 0 };
    let nested = Hwpt::<iommufd::hwpt::Nested>::alloc_nested_on(&dev, &viommu, &s1).unwrap();
    dev.replace(&nested).unwrap();
    dev.trigger_vevent().unwrap();
    dev.trigger_vevent().unwrap();
    let got = q.read().unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    for e in &got {
        assert!(!e.lost_before, "{e:?}");
        assert_eq!(e.data, 0x99u32.to_ne_bytes(), "{e:?}");
    }
    assert_eq!(got[1].sequence, got[0].sequence.wrapping_add(1), "{got:?}");
    // One queue per type (#27): a second is EEXIST.
    let e = viommu.alloc_veventq(VeventqKind::Selftest, 4).unwrap_err();
    assert_eq!(e.raw_errno(), Some(nix::errno::Errno::EEXIST), "{e}");
    // More events than the queue holds: the overflow is said, by a
    // lost-events mark, and no more than its depth are kept.
    for _ in 0..7 {
        dev.trigger_vevent().unwrap();
    }
    let got = q.read().unwrap();
    assert!(got.iter().any(|e| e.lost_before), "{got:?}");
    assert!(
        got.iter().filter(|e| !e.lost_before).count() <= 4,
        "{got:?}"
    );
    dev.replace(&ioas).unwrap();
    drop((q, vdev));
    // Dropped, the queue is gone from the kernel too: a new one of its
    // type is allocated (the fd closed before the object is destroyed; the
    // kernel refuses to destroy it while its fd is open).
    drop(viommu.alloc_veventq(VeventqKind::Selftest, 4).unwrap());
    // And a fault queue: its id destroyed with it.
    let faults = iommufd::iopf::FaultQueue::alloc(&fd).unwrap();
    let id = faults.id();
    drop(faults);
    let raw = fd.iommufd_fd().unwrap();
    assert_eq!(
        support::raw::destroy(raw, id),
        Err(nix::errno::Errno::ENOENT),
        "the fault queue's object outlived its value"
    );
}

/// PASIDs on the test driver's PASID-capable mock device: attach, replace
/// and detach, each checked from the IOMMU core's side; the kernel's rules
/// (the RID on a PASID-capable page table while PASIDs are attached) and
/// the crate's (attach is not replace) refused by name; a mock device
/// without the capability refused as such.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn pasids_attach_replace_and_detach_on_the_test_driver() {
    use iommufd::hwpt::Paging;
    use iommufd::{Pasid, PasidHwpt};
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    if mock_or_6_12(&ioas).is_none() {
        return;
    }
    let mut dev = MockDevice::new_with_pasid(&ioas).unwrap();
    let info = dev.hw_info().unwrap();
    assert!(info.pasid(), "{info:?}");
    assert_eq!(info.max_pasid_log2, 20, "{info:?}");
    let p = Pasid::new(100).unwrap();
    let rid = PasidHwpt::<Paging>::alloc(&dev, &ioas).unwrap();
    let other = fd.alloc_ioas().unwrap();
    let table = PasidHwpt::<Paging>::alloc(&dev, &other).unwrap();

    // The RID is on the IOAS's own page table, which is not PASID-capable.
    let e = dev.attach_pasid(p, &table).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("RID"), "{e}");
    assert!(
        dev.pasid_is_on(p, None).unwrap(),
        "a refused attach left it detached"
    );

    // RID onto a PASID-capable page table; then the PASID attaches.
    dev.replace(&rid).unwrap();
    dev.attach_pasid(p, &table).unwrap();
    assert!(dev.pasid_is_on(p, Some(table.id())).unwrap());
    assert_eq!(dev.pasid_hwpt(p), Some(table.id()));
    // Attach is not replace: refused before the kernel, which still has it.
    let e = dev.attach_pasid(p, &rid).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("attached already"), "{e}");
    assert!(dev.pasid_is_on(p, Some(table.id())).unwrap());
    // While a PASID is attached the RID may not go to a plain page table.
    let plain = Hwpt::<Paging>::alloc(&dev, &ioas).unwrap();
    let e = dev.replace(&plain).unwrap_err();
    assert!(e.to_string().contains("PASIDs 100"), "{e}");
    assert_eq!(dev.hwpt_id(), rid.id());

    // Replace; the value keeps the page table alive, not the caller.
    dev.replace_pasid(p, &rid).unwrap();
    assert!(dev.pasid_is_on(p, Some(rid.id())).unwrap());
    let id = table.id();
    dev.replace_pasid(p, &table).unwrap();
    drop(table);
    assert!(dev.pasid_is_on(p, Some(id)).unwrap());

    // A second PASID on a dirty-tracking PASID table: everything an
    // Hwpt<DirtyTracking> does, it does.
    let p7 = Pasid::new(7).unwrap();
    let dirty = PasidHwpt::<DirtyTracking>::alloc(&dev, &ioas).unwrap();
    dev.attach_pasid(p7, &dirty).unwrap();
    let tracking = dirty.start_dirty_tracking().unwrap();
    assert_eq!(
        tracking.read_dirty(BASE, LEN, PAGE, false).unwrap().count(),
        0
    );
    drop(tracking);

    // Guest SVA: a PASID on a PASID-capable nested HWPT (the guest's
    // stage-1), over a nest parent, and one on a vIOMMU.
    {
        use iommufd::hwpt::{NestParent, Nested, Stage1};
        use iommufd::viommu::{Viommu, ViommuKind};
        let s1 = Stage1::Selftest { iotlb: 0xbadbeef };
        let parent = Hwpt::<NestParent>::alloc(&dev, &ioas).unwrap();
        let guest = PasidHwpt::<Nested>::alloc_nested(&dev, &parent, &s1).unwrap();
        let p3 = Pasid::new(3).unwrap();
        dev.attach_pasid(p3, &guest).unwrap();
        assert!(dev.pasid_is_on(p3, Some(guest.id())).unwrap());
        // The nest parent itself is no PASID table, but the nested one is:
        // the parent comes back through it.
        assert_eq!(guest.parent().id(), parent.id());
        let viommu = Viommu::alloc(&dev, &parent, ViommuKind::Selftest).unwrap();
        let on_viommu = PasidHwpt::<Nested>::alloc_nested_on(&dev, &viommu, &s1).unwrap();
        dev.replace_pasid(p3, &on_viommu).unwrap();
        assert!(dev.pasid_is_on(p3, Some(on_viommu.id())).unwrap());
        dev.detach_pasid(p3).unwrap();
    }

    // A page table of another iommufd: refused before the kernel, which
    // would look its id up in this one.
    let fd2 = Iommufd::open_iommufd().unwrap();
    let ioas2 = fd2.alloc_ioas().unwrap();
    let dev2 = MockDevice::new_with_pasid(&ioas2).unwrap();
    let foreign = PasidHwpt::<Paging>::alloc(&dev2, &ioas2).unwrap();
    let e = dev
        .attach_pasid(Pasid::new(9).unwrap(), &foreign)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(e.raw_errno(), None, "{e}");
    let e = dev.replace(&foreign).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(dev.hwpt_id(), rid.id());

    // Detach both; detaching again is refused.
    dev.detach_pasid(p).unwrap();
    dev.detach_pasid(p7).unwrap();
    assert!(dev.pasid_is_on(p, None).unwrap());
    assert!(dev.pasid_is_on(p7, None).unwrap());
    assert_eq!(
        dev.detach_pasid(p).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    // With no PASID attached the RID may go anywhere again.
    dev.replace(&plain).unwrap();

    // A mock device without the PASID capability: refused as such.
    let mut no_pasid = MockDevice::new(&ioas).unwrap();
    assert!(!no_pasid.hw_info().unwrap().pasid());
    no_pasid.replace(&rid).unwrap();
    let e = no_pasid.attach_pasid(p, &rid).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("cannot use PASIDs"), "{e}");
    no_pasid.replace(&ioas).unwrap();
}

/// The test driver's huge page table (`MockDevice::alloc_huge`): dirty
/// tracking above the default mock aperture ([16 MiB, 2 GiB)), at 8 GiB.
/// The mock may report at its entry size (1 MiB when the memory is
/// contiguous), so the check is that what was written is reported, and
/// nothing beyond the mapping.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_huge_mock_page_table_tracks_above_the_default_aperture() {
    const AT: u64 = 8 << 30;
    const MAPPED: u64 = 2 << 20;
    let fd = Iommufd::open_iommufd().unwrap();
    let scratch = fd.alloc_ioas().unwrap();
    let Some(mut dev) = mock_or_6_12(&scratch) else {
        return;
    };
    let ioas = fd.alloc_ioas().unwrap();
    let hwpt = dev.alloc_huge::<DirtyTracking>(&ioas).unwrap();
    dev.replace(&hwpt).unwrap();
    let _m = ioas
        .map(
            DmaBuffer::new(MAPPED as usize).unwrap(),
            Iova::Fixed(AT),
            Access::READ_WRITE,
        )
        .unwrap();
    // (The map at 8 GiB is what the default mock page table refuses.)
    let tracking = hwpt.start_dirty_tracking().unwrap();
    // Pages 0 and 300 of the mapping written.
    let mut pages = vec![0u64; (MAPPED / PAGE / 64) as usize];
    pages[0] |= 1;
    pages[300 / 64] |= 1 << (300 % 64);
    assert!(dev.mark_dirty(&hwpt, AT, MAPPED, PAGE, &pages).unwrap() >= 2);
    let d = tracking.read_dirty(AT, 2 * MAPPED, PAGE, false).unwrap();
    assert!(
        d.is_dirty(AT) && d.is_dirty(AT + 300 * PAGE),
        "{:?}",
        d.ranges().collect::<Vec<_>>()
    );
    assert!(d.ranges().all(|(a, l)| a >= AT && a + l <= AT + MAPPED));
    // Cleared by the read.
    assert_eq!(
        tracking
            .read_dirty(AT, MAPPED, PAGE, false)
            .unwrap()
            .count(),
        0
    );
}

/// Every constructor that takes two objects refuses a mix of iommufds
/// before the kernel sees the ids: the kernel would look the second
/// object's id up in the first iommufd and find whatever has it there, and
/// the handle made from the answer would later destroy that. (Before, a
/// nested HWPT over another iommufd's parent was allocated on an object of
/// the same id, and its drop destroyed another iommufd's IOAS.)
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn objects_of_two_iommufds_never_meet_in_one_call() {
    use iommufd::hwpt::{NestParent, Nested, Stage1};
    use iommufd::iopf::FaultQueue;
    use iommufd::viommu::{Viommu, ViommuKind};
    let (fd1, fd2) = (
        Iommufd::open_iommufd().unwrap(),
        Iommufd::open_iommufd().unwrap(),
    );
    let (ioas1, ioas2) = (fd1.alloc_ioas().unwrap(), fd2.alloc_ioas().unwrap());
    let Some(dev1) = mock_or_6_12(&ioas1) else {
        return;
    };
    let dev2 = MockDevice::new(&ioas2).unwrap();
    let parent1 = Hwpt::<NestParent>::alloc(&dev1, &ioas1).unwrap();
    let parent2 = Hwpt::<NestParent>::alloc(&dev2, &ioas2).unwrap();
    let s1 = Stage1::Selftest { iotlb: 0 };
    let foreign = |e: iommufd::Error, what: &str| {
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("another iommufd") && msg.contains(what),
            "{what}: {msg}"
        );
    };
    foreign(
        Hwpt::<Nested>::alloc_nested(&dev1, &parent2, &s1).unwrap_err(),
        "the nest parent",
    );
    foreign(
        Viommu::alloc(&dev1, &parent2, ViommuKind::Selftest).unwrap_err(),
        "the nest parent",
    );
    let viommu2 = Viommu::alloc(&dev2, &parent2, ViommuKind::Selftest).unwrap();
    foreign(
        viommu2.alloc_vdevice(&dev1, 0x99).unwrap_err(),
        "the vIOMMU",
    );
    let faults2 = FaultQueue::alloc(&fd2).unwrap();
    foreign(
        Hwpt::<Nested>::alloc_nested_with_faults(&dev1, &parent1, &s1, &faults2).unwrap_err(),
        "the fault queue",
    );
    foreign(
        Hwpt::<Nested>::alloc_nested_on(&dev1, &viommu2, &s1).unwrap_err(),
        "the nest parent",
    );
    // Nothing of either iommufd was touched: both IOASes are there, and
    // the same calls within one iommufd work.
    assert!(ioas1.iova_ranges().is_ok() && ioas2.iova_ranges().is_ok());
    let faults1 = FaultQueue::alloc(&fd1).unwrap();
    Hwpt::<Nested>::alloc_nested_with_faults(&dev1, &parent1, &s1, &faults1).unwrap();
    viommu2.alloc_vdevice(&dev2, 0x99).unwrap();
}

/// A nest parent that tracks dirty pages: one HWPT whose type says both,
/// so nested HWPTs and vIOMMUs sit on it and its dirty bits are read.
/// Behind a vIOMMU the guest's IOVAs change; the stage-2 that maps guest
/// physical addresses is where a migration reads what the device wrote.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_tracked_nest_parent_carries_nesting_and_dirty_bits() {
    use iommufd::hwpt::{Nested, Stage1, TrackedNestParent};
    use iommufd::viommu::{Viommu, ViommuKind};
    use iommufd::PasidHwpt;
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let Some(mut dev) = mock_or_6_12(&ioas) else {
        return;
    };
    let parent = Hwpt::<TrackedNestParent>::alloc(&dev, &ioas).unwrap();
    let _ram = map_page_by_page(&ioas, BASE);
    let tracking = parent.start_dirty_tracking().unwrap();
    let s1 = Stage1::Selftest { iotlb: 0 };
    let nested = Hwpt::<Nested>::alloc_nested(&dev, &parent, &s1).unwrap();
    assert_eq!(nested.parent().id(), parent.id());
    dev.replace(&nested).unwrap();
    // The device (played by the test op) writes pages 1 and 4 through its
    // stage-1; the parent's bits say so.
    assert_eq!(
        dev.mark_dirty(&parent, BASE, LEN, PAGE, &[0b1_0010])
            .unwrap(),
        2
    );
    let d = tracking.read_dirty(BASE, LEN, PAGE, false).unwrap();
    assert_eq!(
        d.ranges().collect::<Vec<_>>(),
        vec![(BASE + PAGE, PAGE), (BASE + 4 * PAGE, PAGE)]
    );
    // A vIOMMU and its nested HWPT on the same tracked parent.
    let viommu = Viommu::alloc(&dev, &parent, ViommuKind::Selftest).unwrap();
    let _vdev = viommu.alloc_vdevice(&dev, 0x42).unwrap();
    let on_viommu = Hwpt::<Nested>::alloc_nested_on(&dev, &viommu, &s1).unwrap();
    dev.replace(&on_viommu).unwrap();
    dev.mark_dirty(&parent, BASE, LEN, PAGE, &[0b100]).unwrap();
    let d = tracking.read_dirty(BASE, LEN, PAGE, false).unwrap();
    assert!(d.is_dirty(BASE + 2 * PAGE) && d.count() == 1, "{d:?}");
    // PASID-capable too, where the kernel allows all three flags.
    match PasidHwpt::<TrackedNestParent>::alloc(&dev, &ioas) {
        Ok(p) => {
            let _tracking = p.start_dirty_tracking().unwrap();
            let n = PasidHwpt::<Nested>::alloc_nested(&dev, &*p, &s1).unwrap();
            println!(
                "tracked nest parent: PASID-capable too (HWPT {}, nested {})",
                p.id(),
                n.id()
            );
        }
        Err(e) => println!("tracked nest parent: not PASID-capable here: {e}"),
    }
    dev.replace(&ioas).unwrap();
}

/// Fault queues on every kind of page table the kernel takes one for: a
/// page request from the mock device, attached (or its PASID attached) to
/// each, is read from the queue and answered. Prints what 7.3 accepts.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn fault_queues_on_every_kind_the_kernel_takes() {
    use iommufd::hwpt::{DirtyTracking, Nested, Paging, Stage1, TrackedNestParent};
    use iommufd::iopf::{FaultQueue, Response};
    use iommufd::viommu::{Viommu, ViommuKind};
    use iommufd::{Pasid, PasidHwpt};
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    if mock_or_6_12(&ioas).is_none() {
        return;
    }
    let mut dev = MockDevice::new_with_pasid(&ioas).unwrap();
    let faults = FaultQueue::alloc(&fd).unwrap();
    let s1 = Stage1::Selftest { iotlb: 0 };
    let parent = Hwpt::<TrackedNestParent>::alloc(&dev, &ioas).unwrap();
    let viommu = Viommu::alloc(&dev, &parent, ViommuKind::Selftest).unwrap();
    // A device reaches a vIOMMU's nested HWPT only with a vDEVICE there.
    let _vdev = viommu.alloc_vdevice(&dev, 0x7).unwrap();
    let mut accepted = Vec::new();
    // One page request (PASID 0: the RID's), read and answered.
    let answered = |dev: &MockDevice, pasid: u32| {
        dev.trigger_page_fault(pasid, 3, 0b01, 0x1000_0000).unwrap();
        let got = faults.read().unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].pasid, (pasid != 0).then_some(pasid), "{:?}", got[0]);
        faults.respond(&got[0], Response::Success).unwrap();
    };
    macro_rules! at_rid {
        ($what:expr, $alloc:expr) => {
            match $alloc {
                Ok(h) => {
                    dev.replace(&h).unwrap();
                    answered(&dev, 0);
                    dev.replace(&ioas).unwrap();
                    accepted.push($what);
                }
                Err(e) => println!("fault queue on {}: refused: {e}", $what),
            }
        };
    }
    at_rid!(
        "paging",
        Hwpt::<Paging>::alloc_with_faults(&dev, &ioas, &faults)
    );
    at_rid!(
        "nested",
        Hwpt::<Nested>::alloc_nested_with_faults(&dev, &parent, &s1, &faults)
    );
    at_rid!(
        "nested on a vIOMMU",
        Hwpt::<Nested>::alloc_nested_on_with_faults(&dev, &viommu, &s1, &faults)
    );
    // At a PASID, beside a PASID-capable RID.
    let rid = PasidHwpt::<Paging>::alloc(&dev, &ioas).unwrap();
    dev.replace(&rid).unwrap();
    let p = Pasid::new(9).unwrap();
    macro_rules! at_pasid {
        ($what:expr, $alloc:expr) => {
            match $alloc {
                Ok(h) => {
                    dev.attach_pasid(p, &h).unwrap();
                    answered(&dev, p.get());
                    dev.detach_pasid(p).unwrap();
                    accepted.push($what);
                }
                Err(e) => println!("fault queue on {}: refused: {e}", $what),
            }
        };
    }
    at_pasid!(
        "PASID paging",
        PasidHwpt::<Paging>::alloc_with_faults(&dev, &ioas, &faults)
    );
    at_pasid!(
        "PASID nested",
        PasidHwpt::<Nested>::alloc_nested_with_faults(&dev, &parent, &s1, &faults)
    );
    at_pasid!(
        "PASID nested on a vIOMMU",
        PasidHwpt::<Nested>::alloc_nested_on_with_faults(&dev, &viommu, &s1, &faults)
    );
    at_rid!(
        "dirty-tracking",
        Hwpt::<DirtyTracking>::alloc_with_faults(&dev, &ioas, &faults)
    );
    // Nest parents take none (7.3: EOPNOTSUPP): a type rule,
    // `faults_on_a_nest_parent`.
    println!("fault queues accepted on: {}", accepted.join(", "));
    dev.replace(&ioas).unwrap();
    assert_eq!(
        accepted.len(),
        7,
        "7.3 takes a fault queue on each: {accepted:?}"
    );
}

/// A dirty read over guest RAM with a hole in it. The kernel walks the
/// areas from the start of the range and stops, without an error, at the
/// first hole (the raw ioctl shows it: the second run's page is not
/// reported). The crate reads each run of mappings on its own, so the
/// pages after a hole are never lost to a migration.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_dirty_read_across_a_hole_reports_every_run() {
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let Some(mut dev) = mock_or_6_12(&ioas) else {
        return;
    };
    let hwpt = Hwpt::<DirtyTracking>::alloc(&dev, &ioas).unwrap();
    dev.replace(&hwpt).unwrap();
    // Two runs of RAM, a 1 MiB hole between them.
    let second = BASE + (1 << 20);
    let (_a, _b) = (
        map_page_by_page(&ioas, BASE),
        map_page_by_page(&ioas, second),
    );
    let span = second + LEN - BASE;
    let tracking = hwpt.start_dirty_tracking().unwrap();
    // Page 1 of the first run, page 2 of the second.
    let mark = |pages: &[u64]| {
        let mut bits = vec![0u64; (span / PAGE).div_ceil(64) as usize];
        for p in pages {
            let i = (p - BASE) / PAGE;
            bits[(i / 64) as usize] |= 1 << (i % 64);
        }
        assert_eq!(
            dev.mark_dirty(&hwpt, BASE, span, PAGE, &bits).unwrap(),
            pages.len() as u64
        );
    };
    let (p1, p2) = (BASE + PAGE, second + 2 * PAGE);
    mark(&[p1, p2]);
    // The kernel, raw: the page after the hole is not reported.
    let mut raw_bits = vec![0u64; (span / PAGE).div_ceil(64) as usize];
    support::raw::get_dirty_bitmap(
        fd.iommufd_fd().unwrap(),
        hwpt.id(),
        BASE,
        span,
        &mut raw_bits,
    );
    let raw_pages: u32 = raw_bits.iter().map(|w| w.count_ones()).sum();
    assert_eq!(
        raw_pages, 1,
        "the kernel reads only the first run: {raw_bits:x?}"
    );
    // The raw read cleared page 1; page 2 is still dirty. Mark both again.
    mark(&[p1]);
    let d = tracking.read_dirty(BASE, span, PAGE, false).unwrap();
    assert_eq!(d.ranges().collect::<Vec<_>>(), vec![(p1, PAGE), (p2, PAGE)]);
    // Into a reused buffer, the same.
    mark(&[p1, p2]);
    let mut buf = iommufd::hwpt::DirtyBitmap::default();
    tracking
        .read_dirty_into(BASE, span, PAGE, false, &mut buf)
        .unwrap();
    assert_eq!(
        buf.ranges().collect::<Vec<_>>(),
        vec![(p1, PAGE), (p2, PAGE)]
    );
    // A range that starts in the hole.
    mark(&[p2]);
    let d = tracking
        .read_dirty(BASE + LEN, span - LEN, PAGE, false)
        .unwrap();
    assert_eq!(d.ranges().collect::<Vec<_>>(), vec![(p2, PAGE)]);
}

/// Dirty bitmaps that span several pages of the caller's bitmap (#27, the
/// selftest's `domain_dirty64M`/`128M`: the kernel pins the user bitmap a
/// page at a time, 32 768 bits each) and the 8 KiB one that is part of a
/// byte: no page the device wrote is ever read back clean. The pages
/// written: every third, those on each side of every bitmap page boundary
/// (page 32 767 | 32 768), the first and the last. The mock marks the whole
/// page-table entry a page is in, and one mapping may get entries larger
/// than 4 KiB where its memory is contiguous: a page read back dirty that
/// was not written must share its 2 MiB block with one that was.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn multi_page_dirty_bitmaps_lose_no_page() {
    const BITS_PER_BITMAP_PAGE: u64 = 4096 * 8;
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let Some(mut dev) = mock_or_6_12(&ioas) else {
        return;
    };
    let hwpt = Hwpt::<DirtyTracking>::alloc(&dev, &ioas).unwrap();
    dev.replace(&hwpt).unwrap();
    let tracking = hwpt.start_dirty_tracking().unwrap();
    for size in [8u64 << 10, 64 << 20, 128 << 20] {
        let mut mem = memmap2::MmapOptions::new()
            .len(size as usize)
            .map_anon()
            .unwrap();
        let _ = mem.advise(memmap2::Advice::NoHugePage);
        mem.iter_mut().step_by(PAGE as usize).for_each(|b| *b = 1);
        let m = ioas
            .map(mem, Iova::Fixed(BASE), Access::READ_WRITE)
            .unwrap();
        let pages = size / PAGE;
        let mut written: Vec<u64> = (0..pages).step_by(3).collect();
        let mut b = BITS_PER_BITMAP_PAGE;
        while b < pages {
            written.extend([b - 1, b]);
            b += BITS_PER_BITMAP_PAGE;
        }
        written.extend([0, pages - 1]);
        written.sort_unstable();
        written.dedup();
        let mut bits = vec![0u64; pages.div_ceil(64) as usize];
        for &p in &written {
            bits[(p / 64) as usize] |= 1 << (p % 64);
        }
        // Start clean, then the device writes.
        drop(tracking.read_dirty(BASE, size, PAGE, false).unwrap());
        dev.mark_dirty(&hwpt, BASE, size, PAGE, &bits).unwrap();
        let d = tracking.read_dirty(BASE, size, PAGE, false).unwrap();
        for &p in &written {
            assert!(
                d.is_dirty(BASE + p * PAGE),
                "{size:#x}: page {p} was written and reads clean"
            );
        }
        let blocks: std::collections::BTreeSet<u64> =
            written.iter().map(|p| (p * PAGE) >> 21).collect();
        for (iova, len) in d.ranges() {
            for a in (iova..iova + len).step_by(PAGE as usize) {
                assert!(
                    blocks.contains(&((a - BASE) >> 21)),
                    "{size:#x}: page {} reads dirty, far from any written",
                    (a - BASE) / PAGE
                );
            }
        }
        assert!(d.count() as usize >= written.len());
        // Read, so cleared.
        assert_eq!(
            tracking
                .read_dirty(BASE, size, PAGE, false)
                .unwrap()
                .count(),
            0
        );
        m.unmap().unwrap();
    }
}

/// A device whose IOMMU has no dirty tracking cannot join a page table
/// that tracks dirty pages (#27, the selftest's `enforce_dirty`): its own
/// allocation of one is `Unsupported` (`EOPNOTSUPP`), and moving it onto
/// one allocated by a device that tracks is refused (`EINVAL`), named, and
/// the device stays where it was and works; onto a plain one it moves.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_device_without_dirty_tracking_cannot_join_a_tracking_page_table() {
    use iommufd::hwpt::Paging;
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let Some(tracker) = mock_or_6_12(&ioas) else {
        return;
    };
    let mut plain = MockDevice::new_without_dirty_tracking(&ioas).unwrap();
    assert!(!plain.hw_info().unwrap().dirty_tracking());
    let e = Hwpt::<DirtyTracking>::alloc(&plain, &ioas).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let tracked = Hwpt::<DirtyTracking>::alloc(&tracker, &ioas).unwrap();
    let before = plain.hwpt_id();
    let e = plain.replace(&tracked).unwrap_err();
    assert_eq!(e.raw_errno(), Some(nix::errno::Errno::EINVAL), "{e}");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("has none"), "{e}");
    assert_eq!(plain.hwpt_id(), before, "it stays where it was");
    let paging = Hwpt::<Paging>::alloc(&plain, &ioas).unwrap();
    plain.replace(&paging).unwrap();
    assert_eq!(plain.hwpt_id(), paging.id());
    let _m = ioas
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(BASE),
            Access::READ,
        )
        .unwrap();
}

/// Invalidations as the selftests count them (#27 item 7): a batch of three
/// handled whole; unknown flags `EOPNOTSUPP` with nothing handled; a cache
/// id past the driver's maximum after a good one, `EINVAL` with one
/// handled; two nested page tables on one parent, each with its own cache,
/// the device replaced from one to the other.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn invalidations_count_what_was_handled_across_two_nested_page_tables() {
    use iommufd::hwpt::{Invalidation, NestParent, Nested, Stage1};
    const FULL: u32 = 0xbadbeef;
    let sel = |flags, iotlb_id| Invalidation::Selftest { flags, iotlb_id };
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let Some(mut dev) = mock_or_6_12(&ioas) else {
        return;
    };
    let parent = Hwpt::<NestParent>::alloc(&dev, &ioas).unwrap();
    let s1 = Stage1::Selftest { iotlb: FULL };
    let a = Hwpt::<Nested>::alloc_nested(&dev, &parent, &s1).unwrap();
    let b = Hwpt::<Nested>::alloc_nested(&dev, &parent, &s1).unwrap();
    dev.replace(&a).unwrap();
    assert_eq!(a.invalidate(&[sel(0, 0), sel(0, 1), sel(0, 2)]).unwrap(), 3);
    for i in 0..3 {
        dev.check_iotlb(&a, i, 0).unwrap();
    }
    dev.check_iotlb(&a, 3, FULL).unwrap();
    let e = a.invalidate(&[sel(0x80, 3)]).unwrap_err();
    assert_eq!(e.raw_errno(), Some(nix::errno::Errno::EOPNOTSUPP), "{e}");
    assert!(e.to_string().contains("handled 0 of 1"), "{e}");
    dev.check_iotlb(&a, 3, FULL).unwrap();
    let e = a.invalidate(&[sel(0, 3), sel(0, 4)]).unwrap_err();
    assert_eq!(e.raw_errno(), Some(nix::errno::Errno::EINVAL), "{e}");
    assert!(e.to_string().contains("handled 1 of 2"), "{e}");
    dev.check_iotlb(&a, 3, 0).unwrap();
    // The other nested page table's cache is its own.
    dev.replace(&b).unwrap();
    for i in 0..4 {
        dev.check_iotlb(&b, i, FULL).unwrap();
    }
    assert_eq!(b.invalidate(&[sel(1, 0)]).unwrap(), 1);
    for i in 0..4 {
        dev.check_iotlb(&b, i, 0).unwrap();
    }
    dev.replace(&a).unwrap();
    dev.replace(&ioas).unwrap();
}

/// A device that goes while its vDEVICE lives (the kernel selftest's
/// `vdevice_tombstone`): the kernel destroys the vDEVICE and keeps its id
/// as a tombstone until the `Vdevice` is dropped; the virtual id is free at
/// once for another device, and dropping the tombstone's `Vdevice` later
/// touches nothing of the new one.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_vdevice_outlives_its_device_as_a_tombstone() {
    use iommufd::hwpt::NestParent;
    use iommufd::viommu::{Viommu, ViommuInvalidation, ViommuKind};
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let Some(first) = mock_or_6_12(&ioas) else {
        return;
    };
    let parent = Hwpt::<NestParent>::alloc(&first, &ioas).unwrap();
    let viommu = Viommu::alloc(&first, &parent, ViommuKind::Selftest).unwrap();
    let gone = viommu.alloc_vdevice(&first, 0x99).unwrap();
    drop(first);
    // The virtual id is free again: a second device takes it.
    let second = MockDevice::new(&ioas).unwrap();
    let vdev = viommu.alloc_vdevice(&second, 0x99).unwrap();
    assert_ne!(vdev.id(), gone.id(), "the tombstone keeps its id");
    drop(gone);
    // The second vDEVICE is untouched: an invalidation by its virtual id
    // reaches the second device's cache.
    second.check_dev_cache(3, 0xbaddad).unwrap();
    let n = viommu
        .invalidate(&[ViommuInvalidation::Selftest {
            flags: 0,
            vdev_id: 0x99,
            cache_id: 3,
        }])
        .unwrap();
    assert_eq!(n, 1);
    second.check_dev_cache(3, 0).unwrap();
    drop(vdev);
    // And with both gone, the id is free for the second device again.
    viommu.alloc_vdevice(&second, 0x99).unwrap();
}

/// Dirty tracking on a PASID-capable page table that a PASID is attached
/// to (the kernel selftest's `pasid_set_dirty_tracking`): the RID and
/// PASID 100 on one tracking, PASID-capable HWPT; tracking starts and
/// stops; the PASID detaches; a device without dirty tracking cannot put a
/// PASID there.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_pasids_page_table_tracks_dirty_pages() {
    use iommufd::{Pasid, PasidHwpt};
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    if mock_or_6_12(&ioas).is_none() {
        return;
    }
    let mut dev = MockDevice::new_with_pasid(&ioas).unwrap();
    let table = PasidHwpt::<DirtyTracking>::alloc(&dev, &ioas).unwrap();
    dev.replace(&table).unwrap();
    let p = Pasid::new(100).unwrap();
    dev.attach_pasid(p, &table).unwrap();
    assert!(dev.pasid_is_on(p, Some(table.id())).unwrap());
    let tracking = table.hwpt().start_dirty_tracking().unwrap();
    let _m = ioas
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(BASE),
            Access::READ_WRITE,
        )
        .unwrap();
    assert_eq!(
        tracking
            .read_dirty(BASE, 4096, PAGE, false)
            .unwrap()
            .count(),
        0
    );
    tracking.stop().unwrap();
    dev.detach_pasid(p).unwrap();
    assert!(dev.pasid_is_on(p, None).unwrap());
    // A PASID-capable device whose IOMMU has no dirty tracking: its PASID
    // does not go onto the tracking page table, and stays detached. (The
    // test driver would take it, measured on 7.3, and record nothing of
    // what the PASID writes: the crate refuses, by name.)
    use iommufd::hwpt::Paging;
    use iommufd::mock::MockCaps;
    let other = fd.alloc_ioas().unwrap();
    let mut plain = MockDevice::with(
        &other,
        MockCaps {
            pasid: true,
            dirty_tracking: false,
        },
    )
    .unwrap();
    assert!(!plain.hw_info().unwrap().dirty_tracking());
    let rid = PasidHwpt::<Paging>::alloc(&plain, &other).unwrap();
    plain.replace(&rid).unwrap();
    let e = plain.attach_pasid(p, &table).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("no dirty tracking"), "{e}");
    assert!(plain.pasid_is_on(p, None).unwrap());
}

/// A vIOMMU with driver data and its page (the kernel selftest's
/// `viommu_alloc_with_data`): the test driver echoes the data, and the page
/// it hands out, mapped into this process, holds it; a vIOMMU allocated
/// without data has no page, said by name. (Mapping the page at another
/// offset or length, `ENXIO` in the selftest, cannot be asked: the crate
/// maps exactly what the driver gave; destroying the vIOMMU while its page
/// is mapped, `EBUSY`, cannot be written either: the page borrows it, the
/// ui case `viommu_page_outlives_viommu`.)
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_viommus_page_holds_what_its_driver_put_there() {
    use iommufd::hwpt::NestParent;
    use iommufd::viommu::{Viommu, ViommuData, ViommuKind, ViommuReply};
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let Some(dev) = mock_or_6_12(&ioas) else {
        return;
    };
    let parent = Hwpt::<NestParent>::alloc(&dev, &ioas).unwrap();
    let (viommu, reply) =
        Viommu::alloc_with_data(&dev, &parent, ViommuData::Selftest { in_data: 0xbeef }).unwrap();
    assert_eq!(reply, ViommuReply::Selftest { out_data: 0xbeef });
    let page = viommu.map_page().unwrap();
    assert!(page.len() >= 4096, "{page:?}");
    assert_eq!(page.read32(0).unwrap(), 0xbeef);
    page.write32(4, 0x1234_5678).unwrap();
    assert_eq!(page.read32(4).unwrap(), 0x1234_5678);
    for bad in [2, page.len()] {
        let e = page.read32(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }
    drop(page);
    // Mapped again after an unmap: the same page.
    assert_eq!(viommu.map_page().unwrap().read32(4).unwrap(), 0x1234_5678);
    let plain = Viommu::alloc(&dev, &parent, ViommuKind::Selftest).unwrap();
    let e = plain.map_page().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
}

/// Hardware queues of a vIOMMU (the kernel selftest's `hw_queue`, Linux
/// 6.17): a kind the vIOMMU has not is refused (`EOPNOTSUPP`), a range
/// outside its mapping or of another IOAS before the ioctl; queue 0, then
/// 1 at an unaligned half page, from the one before; index 0 twice is
/// `EEXIST`, a third past the driver's two is `EINVAL`; a mapping no queue
/// uses unmaps, and the queues' mapping unmaps once they are gone. (Index 1
/// first, destroying 0 before 1 and unmapping a queue's memory under it
/// cannot be written: `alloc_next` borrows the queue before, and a queue
/// its mapping, the ui case `hw_queue_memory_unmapped`.)
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn hardware_queues_own_their_memory_and_come_in_order() {
    use iommufd::hwpt::NestParent;
    use iommufd::viommu::{HwQueueKind, Viommu, ViommuKind};
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let Some(dev) = mock_or_6_12(&ioas) else {
        return;
    };
    let parent = Hwpt::<NestParent>::alloc(&dev, &ioas).unwrap();
    let viommu = Viommu::alloc(&dev, &parent, ViommuKind::Selftest).unwrap();
    let map = |at: u64, len: usize| {
        ioas.map(
            DmaBuffer::new(len).unwrap(),
            Iova::Fixed(at),
            Access::READ_WRITE,
        )
        .unwrap()
    };
    let ram = map(BASE, 8192);
    let spare = map(BASE + 0x10000, 4096);
    let e = viommu
        .alloc_hw_queue(HwQueueKind::Tegra241Cmdqv, &ram, 0, 4096)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    for (off, len) in [(0, 0), (4096, 8192), (u64::MAX, 2)] {
        let e = viommu
            .alloc_hw_queue(HwQueueKind::Selftest, &ram, off, len)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{off:#x}+{len:#x}: {e}");
    }
    let other = fd.alloc_ioas().unwrap();
    let elsewhere = other
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(BASE),
            Access::READ,
        )
        .unwrap();
    let e = viommu
        .alloc_hw_queue(HwQueueKind::Selftest, &elsewhere, 0, 4096)
        .unwrap_err();
    assert!(e.to_string().contains("nest parent"), "{e}");
    let q0 = viommu
        .alloc_hw_queue(HwQueueKind::Selftest, &ram, 0, 4096)
        .unwrap();
    assert_eq!(q0.index(), 0);
    let e = viommu
        .alloc_hw_queue(HwQueueKind::Selftest, &ram, 4096, 4096)
        .unwrap_err();
    assert_eq!(e.raw_errno(), Some(nix::errno::Errno::EEXIST), "{e}");
    // Memory no queue uses is the caller's to unmap.
    spare.unmap().unwrap();
    let q1 = q0.alloc_next(&ram, 2048, 2048).unwrap();
    assert_eq!(q1.index(), 1);
    let e = q1.alloc_next(&ram, 4096, 4096).unwrap_err();
    assert_eq!(e.raw_errno(), Some(nix::errno::Errno::EINVAL), "{e}");
    drop(q1);
    drop(q0);
    // The kernel gave the memory back: it unmaps.
    assert_eq!(ram.unmap().unwrap().len(), 8192);
}

/// The IOMMU's data of one type, and the capability bits by name (the
/// kernel selftest's `get_hw_info`; the buffer sizes it tries are the
/// crate's to choose, a mis-sized buffer being a malformed struct by
/// design): the test driver's own type gives what the default gives, a
/// type it has not is `EOPNOTSUPP`, named; its capabilities are dirty
/// tracking and no ATS; PASIDs only on the device made with them.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn iommu_data_of_one_type_and_capabilities_by_name() {
    use iommufd::hwpt::{HwInfoType, IommuKind};
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let Some(dev) = mock_or_6_12(&ioas) else {
        return;
    };
    let default = dev.hw_info().unwrap();
    let typed = dev.hw_info_as(HwInfoType::Selftest).unwrap();
    assert_eq!(typed, default);
    assert!(
        matches!(
            &typed.kind,
            IommuKind::Unknown {
                type_: 0xfeed_beef,
                ..
            }
        ),
        "{typed:?}"
    );
    let e = dev.hw_info_as(HwInfoType::IntelVtd).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert_eq!(e.raw_errno(), Some(nix::errno::Errno::EOPNOTSUPP), "{e}");
    assert!(
        default.dirty_tracking() && default.ats_not_supported(),
        "{default:?}"
    );
    assert!(
        !default.pasid_exec() && !default.pasid_priv(),
        "{default:?}"
    );
    assert_eq!(default.max_pasid_log2, 0);
    let with = MockDevice::new_with_pasid(&ioas).unwrap();
    assert_eq!(
        with.hw_info_as(HwInfoType::Selftest)
            .unwrap()
            .max_pasid_log2,
        20
    );
}
