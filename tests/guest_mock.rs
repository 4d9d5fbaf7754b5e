//! Dirty tracking against the kernel's iommufd test driver (feature
//! `iommufd-test-driver`; the test kernel has `CONFIG_IOMMUFD_TEST`): bits
//! set by the mock device, read, cleared (or kept), and a mapping made
//! after tracking started tracked too.
#![cfg(feature = "iommufd-test-driver")]

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
    // (64 KiB buffers of 4 KiB pages map as 4 KiB entries; the mock's huge
    // entries are 1 MiB.)
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
    let _a = ioas
        .map(
            DmaBuffer::new(LEN as usize).unwrap(),
            Iova::Fixed(BASE),
            Access::READ_WRITE,
        )
        .unwrap();
    hwpt.set_dirty_tracking(true).unwrap();
    assert_eq!(hwpt.read_dirty(BASE, LEN, PAGE, false).unwrap().count(), 0);

    // Pages 0, 2 and 5 written.
    assert_eq!(
        dev.mark_dirty(&hwpt, BASE, LEN, PAGE, &[0b10_0101])
            .unwrap(),
        3
    );
    let d = hwpt.read_dirty(BASE, LEN, PAGE, false).unwrap();
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
    assert_eq!(hwpt.read_dirty(BASE, LEN, PAGE, false).unwrap().count(), 0);
    // Unless kept: twice with NO_CLEAR, then cleared.
    dev.mark_dirty(&hwpt, BASE, LEN, PAGE, &[0b1_1000_0000])
        .unwrap(); // pages 7, 8
    for _ in 0..2 {
        let d = hwpt.read_dirty(BASE, LEN, PAGE, true).unwrap();
        assert_eq!(
            d.ranges().collect::<Vec<_>>(),
            vec![(BASE + 7 * PAGE, 2 * PAGE)]
        );
    }
    assert_eq!(hwpt.read_dirty(BASE, LEN, PAGE, false).unwrap().count(), 2);
    assert_eq!(hwpt.read_dirty(BASE, LEN, PAGE, false).unwrap().count(), 0);

    // A mapping made after tracking started is tracked too.
    let later = BASE + (1 << 20);
    let _b = ioas
        .map(
            DmaBuffer::new(LEN as usize).unwrap(),
            Iova::Fixed(later),
            Access::READ_WRITE,
        )
        .unwrap();
    dev.mark_dirty(&hwpt, later, LEN, PAGE, &[0b1000]).unwrap(); // page 3
    let d = hwpt.read_dirty(later, LEN, PAGE, false).unwrap();
    assert!(d.is_dirty(later + 3 * PAGE) && d.count() == 1, "{d:?}");

    // Bad ranges are refused before the ioctl.
    for (iova, len, page) in [
        (BASE, LEN, 3000),
        (BASE + 1, LEN, PAGE),
        (BASE, 0, PAGE),
        (BASE, 100, PAGE),
    ] {
        let e = hwpt.read_dirty(iova, len, page, false).unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::InvalidInput,
            "{iova:#x}+{len:#x}/{page}: {e}"
        );
    }
    hwpt.set_dirty_tracking(false).unwrap();
}
