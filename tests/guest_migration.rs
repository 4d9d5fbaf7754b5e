//! Mediated devices and VFIO live migration, on the kernel's `mtty` sample
//! (an emulated serial port whose driver implements migration with
//! PRE_COPY). Run in the vmtest guest: `cargo xtask vmtest`.

mod support;

use iommufd::migration::{AnyMigration, MigrationCaps};
use iommufd::{mdev, Device, ErrorKind, Iommufd};
use nix::errno::Errno;
use std::io::{Read, Write};

const MSG: &[u8] = b"migrate!";
/// The serial port's registers in BAR0 (region 0): data, FIFO control, line status.
const UART_DATA: u64 = 0;
const UART_FCR: u64 = 2;
const UART_LSR: u64 = 5;

fn old_kernel() -> bool {
    std::env::var("IOMMUFD_TEST_KERNEL_VERSION").is_ok_and(|v| v == "6.1")
}

/// The `mtty-1` type of the `mtty` parent.
fn mtty() -> mdev::MdevType {
    let parent = mdev::parents()
        .unwrap()
        .into_iter()
        .find(|p| p.name() == "mtty")
        .expect("the mtty parent (CONFIG_SAMPLE_VFIO_MDEV_MTTY)");
    parent
        .types()
        .unwrap()
        .into_iter()
        .find(|t| t.id() == "mtty-1")
        .expect("type mtty-1")
}

/// Writes `bytes` into port 0's FIFO (the sample loops TX back to RX).
fn send<S: iommufd::Bound>(dev: &Device<S>, bytes: &[u8]) {
    dev.region_write(0, UART_FCR, &[1]).unwrap(); // FIFO on
    for b in bytes {
        dev.region_write(0, UART_DATA, &[*b]).unwrap();
    }
}

/// Reads port 0's FIFO until the line status says it is empty.
fn receive<S: iommufd::Bound>(dev: &Device<S>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = [0u8];
    for _ in 0..64 {
        dev.region_read(0, UART_LSR, &mut b).unwrap();
        if b[0] & 1 == 0 {
            break;
        }
        dev.region_read(0, UART_DATA, &mut b).unwrap();
        out.push(b[0]);
    }
    out
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn legacy_kernels_and_new_ones_list_mdevs_and_open_them_or_say_why_not() {
    if old_kernel() {
        // 6.1's image has no mdev parent: an empty listing, and a clear error.
        assert!(mdev::parents().unwrap().is_empty());
        let e = Device::open_mdev("83b8f4f2-509f-482f-8c1e-e6bfe0fa1001").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        assert!(
            e.to_string().contains("no device offers mediated devices"),
            "{e}"
        );
        return;
    }
    let t = mtty();
    assert_eq!(t.parent(), "mtty");
    assert_eq!(t.device_api().unwrap(), "vfio-pci");
    let before = t.available_instances().unwrap();
    assert!(before > 0);
    let m = t.create().unwrap().remove_on_drop();
    assert_eq!(t.available_instances().unwrap(), before - 1);
    assert_eq!(m.parent(), "mtty");
    // By UUID and by sysfs path, through the same chain as a PCI device.
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = m.open().unwrap();
    assert_eq!(dev.name(), m.uuid());
    let dev = dev.bind(&fd).unwrap().attach(&ioas).unwrap();
    send(&dev, b"hi");
    assert_eq!(receive(&dev), b"hi");
    let e = Device::open_mdev(&format!("/sys/bus/mdev/devices/{}", m.uuid()))
        .unwrap()
        .bind(&fd)
        .unwrap_err();
    assert_eq!(
        e.error().kind(),
        ErrorKind::Busy,
        "bound once: {}",
        e.error()
    );
    // Every fd of the mdev closed, or removing it would wait for them.
    drop((e, dev));
    let same = mdev::Mdev::existing(m.uuid()).unwrap();
    assert_eq!(same.parent(), "mtty");
    drop(same); // not removed: only `m` removes on drop
                // Bad names: a clear error, never a path outside sysfs.
    for bad in ["not-a-uuid", "../../../../etc"] {
        let e = Device::open_mdev(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}: {e}");
    }
    let e = Device::open_mdev("83b8f4f2-509f-482f-8c1e-e6bfe0fa1001").unwrap_err();
    assert!(e.to_string().contains("MdevType::create"), "{e}");
    drop(m);
    assert_eq!(t.available_instances().unwrap(), before, "removed on drop");
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn mtty_migrates_to_a_second_instance_through_typed_streams() {
    let t = mtty();
    let (a, b) = (
        t.create().unwrap().remove_on_drop(),
        t.create().unwrap().remove_on_drop(),
    );
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let src = a.open().unwrap().bind(&fd).unwrap().attach(&ioas).unwrap();
    let dst = b.open().unwrap().bind(&fd).unwrap().attach(&ioas).unwrap();
    send(&src, MSG);

    let caps = src.migration_caps().unwrap().expect("mtty migrates");
    assert_eq!(
        caps,
        MigrationCaps { flags: 7 },
        "STOP_COPY | P2P | PRE_COPY"
    );
    assert!(caps.stop_copy() && caps.p2p() && caps.pre_copy());

    // No save without tracking (rule 33): the device logs its DMA over
    // ranges that must cover every mapping of its IOAS.
    let running = src.into_migration().unwrap();
    let size = running.data_size().unwrap();
    let buf = || iommufd::DmaBuffer::new(4096).unwrap();
    let rw = iommufd::Access::READ_WRITE;
    let _below = ioas
        .map(buf(), iommufd::Iova::Fixed(0x2000_0000), rw)
        .unwrap();
    let narrow = iommufd::IovaRange {
        start: 0,
        last: 0xfff_ffff,
    };
    let e = running.log_dma(4096, &[narrow]).unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::InvalidInput, "{}", e.error());
    assert!(
        e.error().to_string().contains("0x20000000"),
        "{}",
        e.error()
    );
    let wide = iommufd::IovaRange {
        start: 0,
        last: 0x3fff_ffff,
    };
    let running = e.into_inner().log_dma(4096, &[wide]).unwrap();
    // While it logs, a map outside the logged ranges is refused (the
    // kernel cannot add ranges to a running log); inside is fine.
    let e = ioas
        .map(buf(), iommufd::Iova::Fixed(0x4000_0000), rw)
        .unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::OutOfRange, "{}", e.error());
    assert!(
        e.error().to_string().contains("logs its DMA"),
        "{}",
        e.error()
    );
    let _inside = ioas
        .map(buf(), iommufd::Iova::Fixed(0x1000_0000), rw)
        .unwrap();
    let mut bits = vec![0u64; 0x4000_0000 / 4096 / 64];
    running.dma_report(0, 0x4000_0000, 4096, &mut bits).unwrap();
    assert!(bits.iter().all(|&w| w == 0), "mtty does no DMA");
    // Saving: PRE_COPY while the device runs, then STOP_COPY, one stream.
    let mut saving = running.pre_copy().unwrap();
    let info = saving.precopy_info().unwrap();
    assert!(info.initial_bytes > 0, "{info:?}");
    let mut state = Vec::new();
    saving
        .stream()
        .take(info.initial_bytes)
        .read_to_end(&mut state)
        .unwrap();
    assert_eq!(state.len() as u64, info.initial_bytes);
    assert_eq!(saving.precopy_info().unwrap().initial_bytes, 0);
    saving
        .device()
        .region_read(0, UART_LSR, &mut [0u8])
        .expect("PRE_COPY: the device still runs");
    let mut saving = saving.stop_copy().unwrap();
    saving.stream().read_to_end(&mut state).unwrap();
    assert_eq!(state.len() as u64, size, "MIG_DATA_SIZE said how much");
    let stopped = saving.stop().unwrap();

    // Loading on the second instance: RUNNING -> RESUMING in one call.
    let mut loading = dst.into_migration().unwrap().resuming().unwrap();
    loading.stream().write_all(&state).unwrap();
    let dst = loading.running().unwrap().into_device();
    assert_eq!(receive(&dst), MSG, "the serial state crossed over");

    // The source runs again, with its own FIFO still holding the bytes;
    // its log stopped with the migration, and the IOAS maps anywhere again.
    let src = stopped.running().unwrap().into_device();
    assert_eq!(receive(&src), MSG);
    assert!(ioas
        .map(buf(), iommufd::Iova::Fixed(0x4000_0000), rw)
        .is_ok());
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn resuming_with_no_or_garbage_data_comes_back_in_the_reported_state() {
    let t = mtty();
    let m = t.create().unwrap().remove_on_drop();
    let fd = Iommufd::open().unwrap();
    let dev = m.open().unwrap().bind(&fd).unwrap();

    // Device DMA logging: mtty's driver logs (it does no DMA, so nothing
    // is ever dirty); stopped on drop, or explicitly.
    let range = iommufd::IovaRange {
        start: 0,
        last: 0xfff_ffff,
    };
    let log = dev.start_dma_logging(4096, &[range]).unwrap();
    assert_eq!(log.page_size(), 4096);
    let mut bitmap = vec![0u64; (0x1000_0000 / 4096) / 64];
    log.report(0, 0x1000_0000, 4096, &mut bitmap).unwrap();
    assert!(bitmap.iter().all(|&w| w == 0), "mtty does no DMA");
    let e = log
        .report(0, 0x1000_0000, 4096, &mut bitmap[..1])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    drop(log);
    dev.start_dma_logging(4096, &[range])
        .unwrap()
        .stop()
        .unwrap();

    // Nothing written: RESUMING -> RUNNING is refused and the device stays RESUMING.
    let loading = dev.into_migration().unwrap().resuming().unwrap();
    let e = loading.running().unwrap_err();
    let msg = e.error().to_string();
    assert_eq!(e.error().raw_errno(), Some(Errno::EINVAL), "{msg}");
    assert_eq!(e.error().kind(), ErrorKind::InvalidInput, "{msg}");
    assert!(
        msg.contains("RESUMING -> RUNNING") && msg.contains("RESUMING now (read back)"),
        "{msg}"
    );
    let AnyMigration::Resuming(mut loading) = e.into_inner() else {
        panic!("not handed back in RESUMING: {msg}");
    };

    // Garbage: mtty refuses it as it is written (its header asks for an
    // absurd size), and leaving RESUMING is refused after it.
    let wrote = loading.stream().write_all(&[0x5a; 96]);
    assert!(wrote.is_err(), "garbage accepted by the stream");
    let e = loading.stop().expect_err("garbage is never loaded");
    let msg = e.error().to_string();
    assert!(
        msg.contains("RESUMING -> STOP") && msg.contains("read back"),
        "{msg}"
    );
    let back = e.into_inner();
    println!("garbage: handed back in {}: {msg}", back.state());
    // Whatever the kernel reports, the way back to RUNNING exists.
    let running = match back {
        AnyMigration::Resuming(l) => l.abort().map_err(|e| e.to_string()),
        AnyMigration::Error(err) => err.reset().map_err(|e| e.to_string()),
        AnyMigration::Stop(s) => s.running().map_err(|e| e.to_string()),
        other => panic!("unexpected state {}", other.state()),
    };
    let dev = match running {
        Ok(r) => r.into_device(),
        Err(e) => panic!("{e}"),
    };
    send(&dev, b"ok");
    assert_eq!(receive(&dev), b"ok");
}

/// A dirty tracker is a witness only for the page table the device is on:
/// an mtty (attached to its IOAS, through an iommufd access) offered the
/// tracker of a mock device's HWPT is refused, and both come back usable.
#[cfg(feature = "iommufd-test-driver")]
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_tracker_of_another_page_table_is_no_witness() {
    use iommufd::hwpt::{DirtyTracking, Hwpt};
    use iommufd::mock::MockDevice;
    if std::env::var("IOMMUFD_TEST_KERNEL_VERSION").is_ok_and(|v| v == "6.12") {
        return; // 6.12's test driver makes no mock device next to VT-d
    }
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let mock = MockDevice::new(&ioas).unwrap();
    let hwpt = Hwpt::<DirtyTracking>::alloc(&mock, &ioas).unwrap();
    let tracker = hwpt.start_dirty_tracking().unwrap();
    let m = mtty().create().unwrap().remove_on_drop();
    let dev = m.open().unwrap().bind(&fd).unwrap().attach(&ioas).unwrap();
    let e = dev
        .into_migration()
        .unwrap()
        .track_pages(tracker)
        .unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::InvalidInput, "{}", e.error());
    assert!(
        e.error().to_string().contains("own page table"),
        "{}",
        e.error()
    );
    let (running, tracker) = e.into_inner();
    // Both usable: the tracker reads, the migration gets a witness by name.
    let _ram = ioas
        .map(
            iommufd::DmaBuffer::new(4096).unwrap(),
            iommufd::Iova::Fixed(1 << 24),
            iommufd::Access::READ_WRITE,
        )
        .unwrap();
    assert_eq!(
        tracker
            .read_dirty(1 << 24, 4096, 4096, false)
            .unwrap()
            .count(),
        0
    );
    let saving = running.declare_no_dma().pre_copy().unwrap();
    drop(saving.running().unwrap().into_device());
}
