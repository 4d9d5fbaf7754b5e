//! Kernel fault injection into every kernel-touching operation of the crate
//! (`/proc/thread-self/fail-nth`, see `support/fault.rs`). For each: every
//! injected failure hands the value back intact, the same operation then
//! succeeds, and where a raw-ioctl twin exists, the crate's sweep finds at
//! least as many injection points: a fault meant for the ioctl must land in
//! it, not in work the crate does around it.
//!
//! Each test prints `fault: | op | raw points | crate points | absorbed | errnos |`.

mod support;

use support::{cdev_of, open_rw};

use iommufd::{Access, Attached, Device, DmaBuffer, Group, Ioas, Iommufd, Iova};
use nix::errno::Errno;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use support::fault::{FailNth, Sweep};
use support::{buffer_with, Edu, Topology};

const MSG: &[u8] = b"fault injection: still working";

use support::raw::{self, raw_copy, RawCopy, FIXED, RW};

fn iommu_fd() -> OwnedFd {
    open_rw("/dev/iommu")
}

fn singleton_cdev() -> String {
    cdev_of(&Topology::discover().singleton)
}

fn raw_map_at(fd: &OwnedFd, ioas: u32, buf: &mut DmaBuffer, iova: u64) -> Result<(), Errno> {
    let va = buf.as_mut_slice().as_mut_ptr() as u64;
    // SAFETY: `buf` outlives the mapping: every caller unmaps it before dropping `buf`.
    unsafe { raw::map(fd, ioas, va, buf.len() as u64, Some(iova)) }.map(drop)
}

fn raw_unmap_at(fd: &OwnedFd, ioas: u32, iova: u64, len: u64) -> Result<(), Errno> {
    raw::unmap(fd, ioas, iova, len).map(drop)
}

/// A raw iommufd with one device bound and attached to `ioas`, for the raw
/// sweeps that need pinning to happen (it only does with a domain attached).
struct RawSetup {
    iommu: OwnedFd,
    _dev: OwnedFd,
    ioas: u32,
}

impl RawSetup {
    fn new() -> RawSetup {
        let iommu = iommu_fd();
        let dev = open_rw(singleton_cdev());
        raw::bind(&dev, &iommu).unwrap();
        let ioas = raw::alloc_ioas(&iommu).unwrap();
        raw::attach(&dev, ioas).unwrap();
        RawSetup {
            iommu,
            _dev: dev,
            ioas,
        }
    }
}

fn compare(raw: &Sweep, ours: &Sweep) {
    println!("{}", ours.row(Some(raw)));
    assert!(
        ours.points() >= raw.points(),
        "{}: the crate's sweep found {} injection points, the raw ioctl {}: a fault meant for the ioctl landed elsewhere",
        ours.name,
        ours.points(),
        raw.points()
    );
}

fn dma_works(dev: &Device<Attached<Ioas>>, ioas: &Ioas) {
    let out = support::round_trip(dev, ioas, MSG, Iova::Fixed(0x100000), Iova::Fixed(0x200000));
    assert_eq!(out, MSG, "DMA after the sweep");
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn alloc_ioas_under_injection() {
    let f = FailNth::new();
    let raw_fd = iommu_fd();
    let raw = f.sweep(
        "IOMMU_IOAS_ALLOC (alloc_ioas)",
        &mut Some(()),
        |()| raw::alloc_ioas(&raw_fd).map_err(|e| ((), Some(e))),
        |id| raw::destroy(&raw_fd, id).unwrap(),
        |_| {},
    );
    let fd = Iommufd::open().unwrap();
    let ours = f.sweep(
        "IOMMU_IOAS_ALLOC (alloc_ioas)",
        &mut Some(()),
        |()| fd.alloc_ioas().map_err(|e| ((), e.raw_errno())),
        drop,
        |_| {},
    );
    compare(&raw, &ours);
    assert!(fd.alloc_ioas().is_ok());
}

/// Bind and unbind are swept on an `mtty` mdev. On the edu (a PCI device) the
/// first bind enables the device, and `pci_enable_device` evaluates the ACPI
/// `_PRT` method: with an allocation failing in there, ACPICA oopses
/// (`acpi_ut_update_object_reference`, seen on 7.3.4) and the guest hangs,
/// through the raw ioctl just as through the crate. That is a kernel bug
/// outside iommufd, so the sweep uses a device whose open does no ACPI work.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn bind_and_unbind_under_injection() {
    let f = FailNth::new();
    let mdev = support::Mtty::create();
    let path = mdev.cdev();
    let iommu = iommu_fd();
    let raw = f.sweep(
        "VFIO_DEVICE_BIND_IOMMUFD (bind, mtty mdev)",
        &mut Some(open_rw(&path)),
        |dev| match raw::bind(&dev, &iommu) {
            Ok(()) => Ok(dev),
            Err(e) => Err((dev, Some(e))),
        },
        |dev| {
            drop(dev);
            open_rw(&path)
        },
        |_| {},
    );
    drop(iommu);

    let fd = Iommufd::open().unwrap();
    let dev = Device::open_cdev(&path).unwrap();
    assert_eq!(dev.name(), mdev.uuid, "an mdev is named by its UUID");
    let mut state = Some(dev);
    let ours = f.sweep(
        "VFIO_DEVICE_BIND_IOMMUFD (bind, mtty mdev)",
        &mut state,
        |d| d.bind(&fd).map_err(split),
        |d| d.unbind().unwrap(),
        |d| assert!(format!("{d:?}").starts_with("Device<Unbound>")),
    );
    compare(&raw, &ours);

    // unbind = close + reopen of the cdev: the reopen can fail, and then the
    // device comes back bound and usable.
    let mut state = Some(state.take().unwrap().bind(&fd).unwrap());
    let ours = f.sweep(
        "unbind (close + reopen, mtty mdev)",
        &mut state,
        |d| d.unbind().map_err(split),
        |d| d.bind(&fd).unwrap(),
        |d| {
            assert!(format!("{d:?}").starts_with("Device<BlockDma>"));
            d.info().unwrap();
        },
    );
    println!("{}", ours.row(None));
    let dev = state.take().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = dev.attach(&ioas).unwrap();
    assert!(dev.info().unwrap().num_regions > 0);
    drop(dev);
    drop(mdev);
}

fn split<T>(e: iommufd::TransitionError<T>) -> (T, Option<Errno>) {
    let (v, e) = e.into_parts();
    (v, e.raw_errno())
}

/// IOVAs of the DMA checks: `SRC` and `DST` mapped in the IOAS the device
/// is typed on, `ELSEWHERE` mapped only in the other one.
const SRC: u64 = 0x100000;
const DST: u64 = 0x200000;
const ELSEWHERE: u64 = 0x300000;

/// What one DMA check found: did the device reach its IOAS, and did it
/// reach the other one.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reach {
    own: bool,
    other: bool,
}

/// Typed `BlockDma`: DMA reaches neither IOAS.
const BLOCKED: Reach = Reach {
    own: false,
    other: false,
};
/// Typed attached: DMA reaches its own IOAS, never the other.
const KEPT: Reach = Reach {
    own: true,
    other: false,
};

/// An edu through the crate or through raw syscalls.
trait Dma {
    fn ram_to_device(&self, iova: u64, len: u64);
    fn device_to_ram(&self, iova: u64, len: u64);

    /// Copies `SRC` into the device, then out to `DST` and `ELSEWHERE`.
    fn copies(&self) {
        let n = MSG.len() as u64;
        self.ram_to_device(SRC, n);
        self.device_to_ram(DST, n);
        self.device_to_ram(ELSEWHERE, n);
    }
}

impl Dma for Edu<'_> {
    fn ram_to_device(&self, iova: u64, len: u64) {
        self.read_from_ram(iova, len)
    }
    fn device_to_ram(&self, iova: u64, len: u64) {
        self.write_to_ram(iova, len)
    }
}

impl Dma for support::RawEdu {
    fn ram_to_device(&self, iova: u64, len: u64) {
        self.read_from_ram(iova, len)
    }
    fn device_to_ram(&self, iova: u64, len: u64) {
        self.write_to_ram(iova, len)
    }
}

/// The device's copies (see [`Dma::copies`]); `dst` and `probe` are where
/// those land if they can (cleared afterwards).
fn reach(
    edu: &impl Dma,
    dst: &mut iommufd::Mapping<DmaBuffer>,
    probe: &mut iommufd::Mapping<DmaBuffer>,
) -> Reach {
    edu.copies();
    let mut got = vec![0u8; MSG.len()];
    dst.read_bytes(0, &mut got).unwrap();
    let own = got == MSG;
    probe.read_bytes(0, &mut got).unwrap();
    let other = got.iter().any(|&b| b != 0);
    let zero = vec![0u8; MSG.len()];
    dst.write_bytes(0, &zero).unwrap();
    probe.write_bytes(0, &zero).unwrap();
    Reach { own, other }
}

/// Per-sweep count of the DMA checks after injected failures, for the
/// table: how many found the device exactly where its type says.
#[derive(Default)]
struct Checks {
    done: usize,
    true_: usize,
}

impl Checks {
    fn record(&mut self, ok: bool) {
        self.done += 1;
        self.true_ += usize::from(ok);
    }
    fn cell(&self) -> String {
        format!("{}/{}", self.true_, self.done)
    }
}

/// IOAS `ours` with `SRC` (holding `MSG`) and `DST`, and `other` with a
/// probe page at `ELSEWHERE`: a device on `ours` reaches `DST` and never
/// the probe.
fn dma_targets(
    ours: &Ioas,
    other: &Ioas,
) -> (
    iommufd::Mapping<DmaBuffer>,
    iommufd::Mapping<DmaBuffer>,
    iommufd::Mapping<DmaBuffer>,
) {
    let src = ours
        .map(buffer_with(MSG), Iova::Fixed(SRC), Access::READ)
        .unwrap();
    let dst = ours
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(DST),
            Access::WRITE,
        )
        .unwrap();
    let probe = other
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(ELSEWHERE),
            Access::WRITE,
        )
        .unwrap();
    (src, dst, probe)
}

/// Raw buffers mapped by raw ioctls, for the raw twin's DMA check.
struct RawTargets {
    src: DmaBuffer,
    dst: DmaBuffer,
    probe: DmaBuffer,
}

impl RawTargets {
    /// `SRC` and `DST` in raw IOAS `ours`, the probe in `other`.
    fn map(iommu: &OwnedFd, ours: u32, other: u32) -> RawTargets {
        let mut t = RawTargets {
            src: buffer_with(MSG),
            dst: DmaBuffer::new(4096).unwrap(),
            probe: DmaBuffer::new(4096).unwrap(),
        };
        raw_map_at(iommu, ours, &mut t.src, SRC).unwrap();
        raw_map_at(iommu, ours, &mut t.dst, DST).unwrap();
        raw_map_at(iommu, other, &mut t.probe, ELSEWHERE).unwrap();
        t
    }

    fn reach(&mut self, edu: &support::RawEdu) -> Reach {
        edu.copies();
        let peek = |b: &DmaBuffer| -> Vec<u8> {
            // SAFETY: in bounds of the buffer; a volatile read of memory the
            // device may write (the DMA above has completed).
            (0..MSG.len())
                .map(|i| unsafe { b.as_slice().as_ptr().add(i).read_volatile() })
                .collect()
        };
        let r = Reach {
            own: peek(&self.dst) == MSG,
            other: peek(&self.probe).iter().any(|&b| b != 0),
        };
        self.dst.as_mut_slice()[..MSG.len()].fill(0);
        self.probe.as_mut_slice()[..MSG.len()].fill(0);
        r
    }
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn attach_replace_detach_under_injection() {
    let f = FailNth::new();
    // Raw attach and replace, on a raw bound device, with the same DMA
    // check after every failure: what the kernel itself leaves behind.
    let iommu = iommu_fd();
    let dev = open_rw(singleton_cdev());
    raw::bind(&dev, &iommu).unwrap();
    let a = raw::alloc_ioas(&iommu).unwrap();
    let b = raw::alloc_ioas(&iommu).unwrap();
    let edu = support::RawEdu::new(&dev);
    let mut targets = RawTargets::map(&iommu, a, b);
    let mut raw_attach = Checks::default();
    let raw_attach_sweep = f.sweep(
        "VFIO_DEVICE_ATTACH_IOMMUFD_PT (attach)",
        &mut Some(()),
        |()| raw::attach(&dev, a).map_err(|e| ((), Some(e))),
        |()| raw::detach(&dev).unwrap(),
        |_| raw_attach.record(targets.reach(&edu) == BLOCKED),
    );
    raw::attach(&dev, a).unwrap();
    assert_eq!(targets.reach(&edu), KEPT);
    // After each failure: what the kernel left (the DMA check), then what
    // a careful raw caller does, the crate's re-establishment (detach,
    // attach to `a` again), so that both sweeps start every step from the
    // same kernel state. The state carries the last failure's errno.
    let mut raw_replace = Checks::default();
    let raw_replace_sweep = f.sweep(
        "VFIO_DEVICE_ATTACH_IOMMUFD_PT (replace)",
        &mut Some(None),
        |_| raw::attach(&dev, b).map_err(|e| (Some(e), Some(e))),
        |()| {
            raw::attach(&dev, a).unwrap();
            None
        },
        |e: &Option<Errno>| {
            raw_replace.record(targets.reach(&edu) == KEPT);
            if !matches!(e, Some(Errno::EINVAL | Errno::ENOENT)) {
                raw::detach(&dev).unwrap();
                raw::attach(&dev, a).unwrap();
            }
        },
    );
    println!("{}", check_row(&raw_replace_sweep, &raw_replace, None));
    // Leave the raw device working for what follows: detach, attach.
    raw::detach(&dev).unwrap();
    raw::attach(&dev, a).unwrap();
    drop((edu, dev, iommu));
    drop(targets);

    let fd = Iommufd::open().unwrap();
    let ia = fd.alloc_ioas().unwrap();
    let ib = fd.alloc_ioas().unwrap();
    let mut state = Some(support::bound_singleton(&fd));
    let (src, mut dst, mut probe) = dma_targets(&ia, &ib);
    // Typed BlockDma after a failed attach: DMA reaches neither IOAS.
    let mut attach = Checks::default();
    let ours = f.sweep(
        "VFIO_DEVICE_ATTACH_IOMMUFD_PT (attach)",
        &mut state,
        |d| d.attach(&ia).map_err(split),
        |d| d.detach().unwrap(),
        |d| {
            assert!(format!("{d:?}").starts_with("Device<BlockDma>"));
            let r = reach(&Edu::new(d), &mut dst, &mut probe);
            attach.record(r == BLOCKED);
            assert_eq!(r, BLOCKED, "a failed attach left DMA reaching an IOAS");
        },
    );
    compare(&raw_attach_sweep, &ours);
    println!("{}", check_row(&ours, &attach, Some(&raw_attach)));

    // Typed on `ia` after a failed replace or detach: DMA reaches `ia`, and
    // never `ib`. The crate re-establishes what the kernel may have lost.
    let mut state = Some(state.take().unwrap().attach(&ia).unwrap());
    let mut replace = Checks::default();
    let mut on_ia = |d: &Device<Attached<Ioas>>, checks: &mut Checks| {
        assert_eq!(d.ioas(), &ia, "typed on the old IOAS");
        let r = reach(&Edu::new(d), &mut dst, &mut probe);
        checks.record(r == KEPT);
        assert_eq!(r, KEPT, "the device is not where its type says");
    };
    let ours = f.sweep(
        "VFIO_DEVICE_ATTACH_IOMMUFD_PT (replace)",
        &mut state,
        |d| {
            d.replace(&ib).map_err(|e| {
                let (back, e) = e.into_parts();
                let d = back
                    .kept()
                    .unwrap_or_else(|| panic!("one injected fault: the device must be kept: {e}"));
                (d, e.raw_errno())
            })
        },
        |d| d.replace(&ia).unwrap(),
        |d| on_ia(d, &mut replace),
    );
    compare(&raw_replace_sweep, &ours);
    println!("{}", check_row(&ours, &replace, Some(&raw_replace)));
    assert_eq!(
        replace.done,
        ours.failed.len(),
        "a DMA check after every failed replace"
    );

    let mut detach = Checks::default();
    let ours = f.sweep(
        "VFIO_DEVICE_DETACH_IOMMUFD_PT (detach)",
        &mut state,
        |d| d.detach().map_err(split),
        |d| d.attach(&ia).unwrap(),
        |d| on_ia(d, &mut detach),
    );
    println!("{}", ours.row(None));
    println!("{}", check_row(&ours, &detach, None));
    drop((src, dst, probe));
    dma_works(state.as_ref().unwrap(), &ia);
}

/// The table row of the DMA checks after a sweep's failures.
fn check_row(sweep: &Sweep, ours: &Checks, raw: Option<&Checks>) -> String {
    format!(
        "dma-check: | {} | {} | {} |",
        sweep.name,
        raw.map_or("-".to_string(), Checks::cell),
        ours.cell()
    )
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn map_unmap_copy_under_injection() {
    const AT: u64 = 0x400000;
    let f = FailNth::new();
    let len = 2 << 20;

    let raw = RawSetup::new();
    let raw_map_sweep = f.sweep(
        "IOMMU_IOAS_MAP (map)",
        &mut Some(DmaBuffer::new(len).unwrap()),
        |mut b| match raw_map_at(&raw.iommu, raw.ioas, &mut b, AT) {
            Ok(()) => Ok(b),
            Err(e) => {
                // The kernel does not undo a map whose result it could not
                // copy back (EFAULT): a careful raw caller unmaps it.
                if e == Errno::EFAULT {
                    let _ = raw_unmap_at(&raw.iommu, raw.ioas, AT, len as u64);
                }
                Err((b, Some(e)))
            }
        },
        |b| {
            raw_unmap_at(&raw.iommu, raw.ioas, AT, len as u64).unwrap();
            b
        },
        |_| {},
    );
    let mut held = DmaBuffer::new(len).unwrap();
    raw_map_at(&raw.iommu, raw.ioas, &mut held, AT).unwrap();
    let raw_unmap_sweep = f.sweep(
        "IOMMU_IOAS_UNMAP (Mapping::unmap)",
        &mut Some(()),
        |()| match raw_unmap_at(&raw.iommu, raw.ioas, AT, len as u64) {
            // The kernel may have unmapped before failing to copy the answer
            // back: a careful raw caller asks again.
            Err(Errno::EFAULT) => match raw_unmap_at(&raw.iommu, raw.ioas, AT, len as u64) {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(((), Some(e))),
            },
            r => r.map_err(|e| ((), Some(e))),
        },
        |()| raw_map_at(&raw.iommu, raw.ioas, &mut held, AT).unwrap(),
        |_| {},
    );
    let other = raw::alloc_ioas(&raw.iommu).unwrap();
    let raw_copy_sweep = f.sweep(
        "IOMMU_IOAS_COPY (copy_from)",
        &mut Some(()),
        |()| {
            let mut c = RawCopy {
                size: 40,
                flags: RW | FIXED,
                dst_ioas_id: other,
                src_ioas_id: raw.ioas,
                length: len as u64,
                dst_iova: AT,
                src_iova: AT,
            };
            // SAFETY: a pointer-free iommu_ioas_copy.
            unsafe { raw_copy(raw.iommu.as_raw_fd(), &mut c) }
                .map(drop)
                .map_err(|e| {
                    if e == Errno::EFAULT {
                        let _ = raw_unmap_at(&raw.iommu, other, AT, len as u64);
                    }
                    ((), Some(e))
                })
        },
        |()| raw_unmap_at(&raw.iommu, other, AT, len as u64).unwrap(),
        |_| {},
    );
    raw_unmap_at(&raw.iommu, raw.ioas, AT, len as u64).unwrap();
    drop(held);
    drop(raw);

    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = support::bound_singleton(&fd).attach(&ioas).unwrap();
    let mut state = Some(DmaBuffer::new(len).unwrap());
    let ours = f.sweep(
        "IOMMU_IOAS_MAP (map)",
        &mut state,
        |b| {
            ioas.map(b, Iova::Fixed(AT), Access::READ_WRITE)
                .map_err(|e| {
                    // Root has CAP_IPC_LOCK: an injected ENOMEM is the
                    // kernel's, never the memlock limit's.
                    assert_ne!(
                        e.error().kind(),
                        iommufd::ErrorKind::MemlockLimit,
                        "{}",
                        e.error()
                    );
                    split(e)
                })
        },
        |m| m.unmap().unwrap(),
        |b| {
            assert_eq!(b.len(), len, "the buffer comes back");
            // ... and nothing of it stays mapped (an EFAULT after the kernel
            // mapped it is undone by the crate).
            let e = ioas.unmap(AT, len as u64).unwrap_err();
            assert_eq!(e.kind(), iommufd::ErrorKind::NotMapped, "{e}");
        },
    );
    compare(&raw_map_sweep, &ours);
    // Nothing stays mapped after the failures: the range is free.
    assert!(ioas.unmap(AT, len as u64).is_err());

    let mut state = Some(
        ioas.map(state.take().unwrap(), Iova::Fixed(AT), Access::READ_WRITE)
            .unwrap(),
    );
    let ours = f.sweep(
        "IOMMU_IOAS_UNMAP (Mapping::unmap)",
        &mut state,
        |m| m.unmap().map_err(split),
        |b| ioas.map(b, Iova::Fixed(AT), Access::READ_WRITE).unwrap(),
        |m| assert_eq!(m.iova(), AT, "still mapped"),
    );
    compare(&raw_unmap_sweep, &ours);

    let other = fd.alloc_ioas().unwrap();
    let src = state.take().unwrap();
    let ours = f.sweep(
        "IOMMU_IOAS_COPY (copy_from)",
        &mut Some(()),
        |()| {
            other
                .copy_from(&src, Iova::Fixed(AT), Access::READ_WRITE)
                .map_err(|e| ((), e.raw_errno()))
        },
        drop,
        |_| {
            let e = other.unmap(AT, len as u64).unwrap_err();
            assert_eq!(
                e.kind(),
                iommufd::ErrorKind::NotMapped,
                "no orphan copy: {e}"
            );
        },
    );
    compare(&raw_copy_sweep, &ours);
    assert_eq!(
        src.copies(),
        0,
        "no copy leaked from a failed IOMMU_IOAS_COPY"
    );
    drop(src);
    dma_works(&dev, &ioas);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn map_file_allow_iovas_bar_and_irqs_under_injection() {
    let f = FailNth::new();
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = support::bound_singleton(&fd).attach(&ioas).unwrap();

    if std::env::var("IOMMUFD_TEST_KERNEL_VERSION").is_ok_and(|v| v != "6.12") {
        let memfd =
            nix::sys::memfd::memfd_create(c"dma", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&memfd, 1 << 20).unwrap();
        let file = std::fs::File::from(memfd);
        let ours = f.sweep(
            "IOMMU_IOAS_MAP_FILE (map_file)",
            &mut Some(()),
            |()| {
                ioas.map_file(&file, 0, 1 << 20, Iova::Fixed(0x800000), Access::READ_WRITE)
                    .map_err(|e| ((), e.raw_errno()))
            },
            drop,
            |_| {},
        );
        println!("{}", ours.row(None));
        assert!(
            ours.points() > 0,
            "map_file pins pages: it must have injection points"
        );
    }

    let ours = f.sweep(
        "IOMMU_IOAS_ALLOW_IOVAS (allow_iovas)",
        &mut Some(()),
        |()| {
            ioas.allow_iovas(&[iommufd::IovaRange {
                start: 0,
                last: 0x0fff_ffff,
            }])
            .map_err(|e| ((), e.raw_errno()))
        },
        |()| ioas.allow_iovas(&[]).unwrap(),
        |_| {},
    );
    println!("{}", ours.row(None));

    let efd = iommufd::EventFd::new().unwrap();
    let ours = f.sweep(
        "VFIO_DEVICE_SET_IRQS (set_irq_eventfds, MSI)",
        &mut Some(()),
        |()| {
            dev.set_irq_eventfds(iommufd::pci::MSI_IRQ, 0, &[efd.as_fd()])
                .map_err(|e| ((), e.raw_errno()))
        },
        |()| dev.disable_irqs(iommufd::pci::MSI_IRQ).unwrap(),
        |_| {},
    );
    println!("{}", ours.row(None));
    dma_works(&dev, &ioas);
    drop(dev);

    // map_bar: each attempt on a device whose BAR is not mapped yet.
    let mut state = Some(
        Device::open(&Topology::discover().singleton)
            .unwrap()
            .bind(&fd)
            .unwrap(),
    );
    let ours = f.sweep(
        "mmap BAR (map_bar)",
        &mut state,
        |mut d| match d.map_bar(0) {
            Ok(()) => Ok(d),
            Err(e) => {
                let errno = e.raw_errno();
                Err((d, errno))
            }
        },
        |d| d.unbind().unwrap().bind(&fd).unwrap(),
        |d| assert!(d.mmio(0).is_err(), "no half-mapped BAR"),
    );
    println!("{}", ours.row(None));
}

/// Every member of `g` copies `SRC` to `DST` and to `ELSEWHERE`, as [`reach`].
fn group_reach<S: iommufd::Bound>(
    g: &Group<S>,
    dst: &mut iommufd::Mapping<DmaBuffer>,
    probe: &mut iommufd::Mapping<DmaBuffer>,
) -> Vec<Reach> {
    g.members()
        .iter()
        .map(|d| reach(&Edu::new(d), dst, probe))
        .collect()
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn group_transitions_under_injection() {
    let f = FailNth::new();
    let t = Topology::discover();
    let fd = Iommufd::open().unwrap();
    let a = fd.alloc_ioas().unwrap();
    let b = fd.alloc_ioas().unwrap();
    let (src, mut dst, mut probe) = dma_targets(&a, &b);
    // Group bind is not swept: each member's first bind enables the PCI
    // device, where ACPI oopses under injection (see the bind test above).
    let mut g = Group::open(t.pair_group).unwrap().bind(&fd).unwrap();
    support::edu_members(&mut g);
    let mut state = Some(g);
    let mut checks = Checks::default();
    let ours = f.sweep(
        "group attach",
        &mut state,
        |g| g.attach(&a).map_err(split),
        |g| g.detach().unwrap(),
        |g| {
            assert_eq!(g.len(), 2);
            let r = group_reach(g, &mut dst, &mut probe);
            checks.record(r.iter().all(|&r| r == BLOCKED));
            assert!(r.iter().all(|&r| r == BLOCKED), "typed BlockDma, but {r:?}");
        },
    );
    println!("{}", ours.row(None));
    println!("{}", check_row(&ours, &checks, None));

    let mut state = Some(state.take().unwrap().attach(&a).unwrap());
    let mut on_old = |g: &Group<Attached<Ioas>>, checks: &mut Checks| {
        assert_eq!(g.len(), 2, "no member lost");
        assert_eq!(g.ioas(), &a, "the whole group stays on the old IOAS");
        let r = group_reach(g, &mut dst, &mut probe);
        checks.record(r.iter().all(|&r| r == KEPT));
        assert!(
            r.iter().all(|&r| r == KEPT),
            "typed on the old IOAS, but {r:?}"
        );
    };
    let mut checks = Checks::default();
    let ours = f.sweep(
        "group replace",
        &mut state,
        |g| {
            g.replace(&b).map_err(|e| {
                let (back, e) = e.into_parts();
                let g = back
                    .kept()
                    .unwrap_or_else(|| panic!("one injected fault: the group must be kept: {e}"));
                (g, e.raw_errno())
            })
        },
        |g| g.replace(&a).unwrap(),
        |g| on_old(g, &mut checks),
    );
    println!("{}", ours.row(None));
    println!("{}", check_row(&ours, &checks, None));
    let mut checks = Checks::default();
    let ours = f.sweep(
        "group detach",
        &mut state,
        |g| g.detach().map_err(split),
        |g| g.attach(&a).unwrap(),
        |g| on_old(g, &mut checks),
    );
    println!("{}", ours.row(None));
    println!("{}", check_row(&ours, &checks, None));
    let g = state.take().unwrap();
    assert!(group_reach(&g, &mut dst, &mut probe)
        .iter()
        .all(|&r| r == KEPT));
    drop(src);
    let buf = a.map(buffer_with(MSG), Iova::Any, Access::READ).unwrap();
    assert!(buf.iova() > 0);
}

/// Every slab allocation of this thread fails while it lives (failslab
/// with probability 100 and the task filter, `make-it-fail` set): enough to
/// fail a replace *and* the re-attach after it, which one fail-nth shot
/// cannot.
///
/// Every page this process uses is made resident first (`mlockall`): the
/// test binary is read over 9p, and a page fault that needs a slab while
/// this is armed would fail the 9p read (and wedge the mount), not the
/// ioctl. The heap is grown beforehand for the error messages, and at most
/// 64 allocations fail, so a crash cannot leave the thread failing forever.
struct SlabsFail(std::fs::File);

impl SlabsFail {
    fn new() -> SlabsFail {
        use nix::sys::mman::{mlockall, MlockAllFlags};
        mlockall(MlockAllFlags::MCL_CURRENT).unwrap();
        let warm: Vec<String> = (0..512).map(|i| format!("{i:>200}")).collect();
        drop(warm);
        for (knob, val) in [
            ("failslab/interval", "1"),
            ("failslab/times", "64"),
            ("failslab/task-filter", "Y"),
            ("failslab/probability", "100"),
        ] {
            std::fs::write(format!("/sys/kernel/debug/{knob}"), val).unwrap();
        }
        // Opened before arming: the write that disarms must not need a slab.
        let flag = std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/thread-self/make-it-fail")
            .unwrap();
        nix::sys::uio::pwrite(&flag, b"1", 0).unwrap();
        SlabsFail(flag)
    }
}

impl Drop for SlabsFail {
    fn drop(&mut self) {
        nix::sys::uio::pwrite(&self.0, b"0", 0).unwrap();
        std::fs::write("/sys/kernel/debug/failslab/probability", "0").unwrap();
        std::fs::write("/sys/kernel/debug/failslab/task-filter", "N").unwrap();
        let _ = nix::sys::mman::munlockall();
    }
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn replace_hands_back_a_blocked_device_when_the_way_back_fails_too() {
    let _knobs = FailNth::new();
    let fd = Iommufd::open().unwrap();
    let ia = fd.alloc_ioas().unwrap();
    let ib = fd.alloc_ioas().unwrap();
    let (_src, mut dst, mut probe) = dma_targets(&ia, &ib);
    let dev = support::bound_singleton(&fd).attach(&ia).unwrap();
    assert_eq!(reach(&Edu::new(&dev), &mut dst, &mut probe), KEPT);
    let r = {
        let _fail = SlabsFail::new();
        dev.replace(&ib)
    };
    let (back, e) = r.expect_err("no slab allocation can succeed").into_parts();
    let msg = e.to_string();
    assert_eq!(e.raw_errno(), Some(Errno::ENOMEM), "{msg}");
    let blocked = match back {
        iommufd::Fallback::Blocked(b) => b,
        other => panic!("not handed back as blocked: {other:?}: {msg}"),
    };
    assert!(msg.contains("blocked (BlockDma)"), "{msg}");
    // True: DMA reaches neither IOAS; and the device attaches again.
    assert_eq!(reach(&Edu::new(&blocked), &mut dst, &mut probe), BLOCKED);
    let dev = blocked.attach(&ia).unwrap();
    assert_eq!(reach(&Edu::new(&dev), &mut dst, &mut probe), KEPT);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn group_replace_hands_back_a_blocked_group_when_the_way_back_fails_too() {
    let _knobs = FailNth::new();
    let fd = Iommufd::open().unwrap();
    let a = fd.alloc_ioas().unwrap();
    let b = fd.alloc_ioas().unwrap();
    let (_src, mut dst, mut probe) = dma_targets(&a, &b);
    let mut g = Group::open(Topology::discover().pair_group)
        .unwrap()
        .bind(&fd)
        .unwrap();
    support::edu_members(&mut g);
    let g = g.attach(&a).unwrap();
    assert!(group_reach(&g, &mut dst, &mut probe)
        .iter()
        .all(|&r| r == KEPT));
    let r = {
        let _fail = SlabsFail::new();
        g.replace(&b)
    };
    let (back, e) = r.expect_err("no slab allocation can succeed").into_parts();
    let msg = e.to_string();
    let blocked = match back {
        iommufd::Fallback::Blocked(g) => g,
        other => panic!("not handed back as blocked: {other:?}: {msg}"),
    };
    assert_eq!(blocked.len(), 2, "no member lost: {msg}");
    assert!(msg.contains("the group is blocked (BlockDma)"), "{msg}");
    let r = group_reach(&blocked, &mut dst, &mut probe);
    assert!(r.iter().all(|&r| r == BLOCKED), "typed BlockDma, but {r:?}");
    let g = blocked.attach(&a).unwrap();
    assert!(group_reach(&g, &mut dst, &mut probe)
        .iter()
        .all(|&r| r == KEPT));
}

/// MSI-X on the NVMe controller (4 of its 65 vectors: every vector adds
/// about 38 injection points, and 65 take 100 s of TCG) under injection. Where
/// vfio-pci is short of vectors it returns a positive count from
/// `VFIO_DEVICE_SET_IRQS` (1 or 2 here), having routed nothing: that is an
/// error, never a success. After every failure the index is off (a trigger
/// is refused and no eventfd counts); after every success, absorbed
/// injections included, all the vectors fire.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn msix_routing_under_injection() {
    use iommufd::{pci, EventFd};
    let f = FailNth::new();
    let bdf = Topology::discover().nvme.expect("no NVMe controller");
    let fd = Iommufd::open().unwrap();
    let dev = Device::open(&bdf).unwrap().bind(&fd).unwrap();
    const N: u32 = 4;
    let evs: Vec<EventFd> = (0..N).map(|_| EventFd::new().unwrap()).collect();
    let counts = || evs.iter().map(|e| e.take().unwrap()).collect::<Vec<u64>>();
    let short = std::cell::Cell::new(0);
    let ours = f.sweep(
        "VFIO_DEVICE_SET_IRQS (set_irq_eventfds, 4 MSI-X vectors)",
        &mut Some(()),
        |()| {
            dev.set_irq_eventfds(pci::MSIX_IRQ, 0, &evs).map_err(|e| {
                if e.to_string().contains("instead of 0") {
                    short.set(short.get() + 1);
                }
                ((), e.raw_errno())
            })
        },
        |()| {
            dev.trigger_irqs(pci::MSIX_IRQ, 0, N).unwrap();
            assert_eq!(
                counts(),
                vec![1; N as usize],
                "a routing reported as done routed every vector"
            );
            dev.disable_irqs(pci::MSIX_IRQ).unwrap();
        },
        |()| {
            assert!(
                dev.trigger_irqs(pci::MSIX_IRQ, 0, N).is_err(),
                "a failed routing left MSI-X enabled"
            );
            assert_eq!(counts(), vec![0; N as usize]);
        },
    );
    println!("{}", ours.row(None));
    println!(
        "fault: MSI-X: {} positive returns reported as errors",
        short.get()
    );
    assert!(
        short.get() > 0,
        "a short vector allocation (a positive return) is reported: {ours:?}"
    );
    dev.set_irq_eventfds(pci::MSIX_IRQ, 0, &evs).unwrap();
    dev.trigger_irqs(pci::MSIX_IRQ, 0, N).unwrap();
    assert_eq!(counts(), vec![1; N as usize]);

    // A re-route of the enabled index to other eventfds: after a failure
    // MSI-X stays enabled, and the error says which routes may be gone.
    let others: Vec<EventFd> = (0..N).map(|_| EventFd::new().unwrap()).collect();
    let said = std::cell::Cell::new(0);
    let again = f.sweep(
        "VFIO_DEVICE_SET_IRQS (re-route 4 enabled MSI-X vectors)",
        &mut Some(()),
        |()| {
            dev.set_irq_eventfds(pci::MSIX_IRQ, 0, &others)
                .map_err(|e| {
                    if e.to_string().contains("the index stays enabled") {
                        said.set(said.get() + 1);
                    }
                    ((), e.raw_errno())
                })
        },
        |()| dev.set_irq_eventfds(pci::MSIX_IRQ, 0, &evs).unwrap(),
        |()| {
            dev.trigger_irqs(pci::MSIX_IRQ, 0, N)
                .expect("a failed re-route leaves MSI-X enabled, as the error says");
            let _ = counts();
            dev.set_irq_eventfds(pci::MSIX_IRQ, 0, &evs).unwrap();
        },
    );
    println!("{}", again.row(None));
    assert_eq!(
        said.get(),
        again.failed.len(),
        "every failed re-route says what it left"
    );
    dev.trigger_irqs(pci::MSIX_IRQ, 0, N).unwrap();
    assert_eq!(counts(), vec![1; N as usize]);
}

/// Migration arcs of an `mtty` under injection. Some failures come after
/// the kernel moved (RUNNING -> RESUMING, STOP -> STOP_COPY, failing at
/// the copy of the result, which also loses the new stream's fd): the
/// migration handed back must be in the state the kernel reports, read
/// back raw, and a streaming state is never handed back without its
/// stream (the crate moves such a device on to the state next to it).
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn migration_arcs_under_injection() {
    use iommufd::migration::NoDma;
    use iommufd::{AnyMigration, Migration};
    type M = Migration<iommufd::migration::Running, Attached<Ioas>, NoDma>;
    type Any = AnyMigration<Attached<Ioas>, NoDma>;
    /// Back to RUNNING, outside injection.
    fn running(any: Any) -> M {
        let e = "back to RUNNING";
        match any {
            AnyMigration::Running(m) => m,
            AnyMigration::RunningP2p(m) => m.running().expect(e),
            AnyMigration::Stop(m) => m.running().expect(e),
            AnyMigration::PreCopy(m) => m.running().expect(e),
            AnyMigration::PreCopyP2p(m) => m.running_p2p().expect(e).running().expect(e),
            AnyMigration::StopCopy(m) => m.stop().expect(e).running().expect(e),
            AnyMigration::Resuming(m) => m.abort().expect(e),
            AnyMigration::Error(m) => m.reset().expect(e),
        }
    }
    let names = [
        "ERROR",
        "STOP",
        "RUNNING",
        "STOP_COPY",
        "RESUMING",
        "RUNNING_P2P",
        "PRE_COPY",
        "PRE_COPY_P2P",
    ];
    let f = FailNth::new();
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let mtty = support::Mtty::create();
    let dev = Device::open_cdev(mtty.cdev())
        .unwrap()
        .bind(&fd)
        .unwrap()
        .attach(&ioas)
        .unwrap();
    // The device's own fd, found in /proc: the kernel's state is read back
    // through it, raw.
    let n = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == Path::new(&mtty.cdev())))
        .and_then(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .expect("the device's fd");
    // SAFETY: fd `n` is the device's, open until `m` is dropped at the end.
    let raw = unsafe { std::os::fd::BorrowedFd::borrow_raw(n) };
    // mtty writes no guest memory: said so, by name (rule 33).
    let mut m = Some(dev.into_migration().unwrap().declare_no_dma());
    type Arc = fn(M) -> Result<Any, iommufd::migration::ArcError<Attached<Ioas>, NoDma>>;
    let arcs: [(&str, Arc); 3] = [
        ("RUNNING -> RESUMING", |m| {
            m.resuming().map(AnyMigration::Resuming)
        }),
        ("RUNNING -> STOP -> STOP_COPY", |m| {
            m.stop()
                .and_then(|m| m.stop_copy())
                .map(AnyMigration::StopCopy)
        }),
        ("RUNNING -> PRE_COPY", |m| {
            m.pre_copy().map(AnyMigration::PreCopy)
        }),
    ];
    for (name, arc) in arcs {
        let (mut failed, mut moved) = (0, 0);
        for n in 1..10_000 {
            let start = m.take().unwrap();
            f.arm(n);
            let r = arc(start);
            let fired = f.fired();
            match r {
                Ok(any) => {
                    m = Some(running(any));
                    if !fired {
                        break;
                    }
                }
                Err(e) => {
                    assert!(fired, "{name}: failed with nothing injected: {}", e.error());
                    failed += 1;
                    let (any, err) = e.into_parts();
                    let now = raw::get_mig_state(raw).unwrap();
                    assert_eq!(any.state(), names[now as usize], "{name} at n = {n}: {err}");
                    if any.state() != "RUNNING" && any.state() != "STOP" {
                        moved += 1;
                    }
                    if err.to_string().contains("was lost") {
                        moved += 1;
                    }
                    m = Some(running(any));
                }
            }
        }
        println!("fault: | migration {name} (mtty) | - | {failed} failed | moved on {moved} |");
    }
    // Still migrates.
    let m = m
        .take()
        .unwrap()
        .pre_copy()
        .unwrap()
        .stop_copy()
        .unwrap()
        .stop()
        .unwrap();
    drop(m.running().unwrap().into_device());
    drop(mtty);
}

/// PASID attach and replace on the test driver's mock device under
/// injection (7.3; 6.12's driver makes no mock device next to VT-d). The
/// test op can fail after the IOMMU core moved the PASID (`EFAULT` at the
/// copy of its result): after every failure the value's record must say
/// what the IOMMU core says (`IOMMU_TEST_OP_PASID_CHECK_HWPT`).
#[cfg(feature = "iommufd-test-driver")]
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn pasid_attach_and_replace_under_injection() {
    use iommufd::hwpt::Paging;
    use iommufd::mock::MockDevice;
    use iommufd::{Pasid, PasidHwpt};
    if std::env::var("IOMMUFD_TEST_KERNEL_VERSION").is_ok_and(|v| v == "6.12") {
        return;
    }
    let f = FailNth::new();
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let mut dev = MockDevice::new_with_pasid(&ioas).unwrap();
    let rid = PasidHwpt::<Paging>::alloc(&dev, &ioas).unwrap();
    dev.replace(&rid).unwrap();
    let (a, b) = (
        PasidHwpt::<Paging>::alloc(&dev, &ioas).unwrap(),
        PasidHwpt::<Paging>::alloc(&dev, &ioas).unwrap(),
    );
    let p = Pasid::new(7).unwrap();
    let true_record = |dev: &MockDevice| {
        let on = dev.pasid_hwpt(p);
        assert!(
            dev.pasid_is_on(p, on).unwrap(),
            "the value says {on:?}; the IOMMU core does not"
        );
    };
    let moved_attach = std::cell::Cell::new(0);
    let mut state = Some(dev);
    let attach = f.sweep(
        "IOMMU_TEST_OP_PASID_ATTACH (mock attach_pasid)",
        &mut state,
        |mut d| match d.attach_pasid(p, &a) {
            Ok(()) => Ok(d),
            Err(e) => {
                // Checked here, before the next step's start is restored
                // (fail-nth fires once: nothing is injected after it).
                true_record(&d);
                if d.pasid_hwpt(p).is_some() {
                    moved_attach.set(moved_attach.get() + 1);
                    d.detach_pasid(p).unwrap();
                }
                Err((d, e.raw_errno()))
            }
        },
        |mut d| {
            d.detach_pasid(p).unwrap();
            d
        },
        true_record,
    );
    println!("{}", attach.row(None));
    println!(
        "fault: PASID attach: {} failures after the move, recorded as attached",
        moved_attach.get()
    );
    let mut dev = state.take().unwrap();
    dev.attach_pasid(p, &a).unwrap();
    let mut moved = 0;
    let mut state = Some(dev);
    let replace = f.sweep(
        "IOMMU_TEST_OP_PASID_REPLACE (mock replace_pasid)",
        &mut state,
        |mut d| match d.replace_pasid(p, &b) {
            Ok(()) => Ok(d),
            Err(e) => {
                true_record(&d);
                if d.pasid_hwpt(p) == Some(b.id()) {
                    assert!(e.to_string().contains("before failing"), "{e}");
                    moved += 1;
                    d.replace_pasid(p, &a).unwrap();
                }
                Err((d, e.raw_errno()))
            }
        },
        |mut d| {
            d.replace_pasid(p, &a).unwrap();
            d
        },
        |d| {
            true_record(d);
        },
    );
    println!("{}", replace.row(None));
    println!("fault: PASID replace: {moved} failures after the move, recorded as moved");
    let mut dev = state.take().unwrap();
    dev.detach_pasid(p).unwrap();
    assert!(dev.pasid_is_on(p, None).unwrap());
}

/// A map into an IOAS with two page tables under fault injection (#27, the
/// selftest's `map_two_domains`): one edu attached to the IOAS, another to
/// a paging HWPT of the same IOAS, so the kernel writes the mapping into
/// two domains and must undo the first when the second fails. Every
/// failure hands the buffer back with nothing of it mapped in either; after
/// the sweep both devices DMA through the IOAS.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn map_into_two_page_tables_under_injection() {
    use iommufd::hwpt::{Hwpt, Paging};
    const AT: u64 = 0x400000;
    let len = 2 << 20;
    let f = FailNth::new();
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let a = support::bound_singleton(&fd).attach(&ioas).unwrap();
    let b = support::bound_second_singleton(&fd);
    let hwpt = Hwpt::<Paging>::alloc(&b, &ioas).unwrap();
    let b = b.attach(&hwpt).unwrap();
    assert_ne!(hwpt.id(), a.hwpt_id(), "two page tables");
    let ours = f.sweep(
        "IOMMU_IOAS_MAP (map, two page tables)",
        &mut Some(DmaBuffer::new(len).unwrap()),
        |b| {
            ioas.map(b, Iova::Fixed(AT), Access::READ_WRITE)
                .map_err(split)
        },
        |m| m.unmap().unwrap(),
        |b| {
            assert_eq!(b.len(), len, "the buffer comes back");
            let e = ioas.unmap(AT, len as u64).unwrap_err();
            assert_eq!(e.kind(), iommufd::ErrorKind::NotMapped, "{e}");
        },
    );
    println!("{}", ours.row(None));
    assert!(ours.points() > 0, "the sweep reached the ioctl");
    dma_works(&a, &ioas);
    let out = support::round_trip(&b, &ioas, MSG, Iova::Fixed(0x300000), Iova::Fixed(0x500000));
    assert_eq!(out, MSG, "DMA through the HWPT after the sweep");
}

/// Fault injection over the allocations of the objects a vIOMMU VMM makes
/// (#27; the selftest's `fail_nth` `device`): paging, PASID-capable, nest
/// parent and nested HWPTs, a vIOMMU, a vDEVICE and a vEVENTQ, on the test
/// driver. Each failure leaves nothing behind: the vDEVICE and vEVENTQ
/// sweeps would see a leaked object as `EEXIST` at their next step (one
/// vDEVICE per device, one vEVENTQ per type), and after each sweep the
/// same allocation works.
#[cfg(feature = "iommufd-test-driver")]
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn object_allocations_under_injection() {
    use iommufd::hwpt::{Hwpt, NestParent, Nested, Paging, Stage1};
    use iommufd::mock::MockDevice;
    use iommufd::viommu::{VeventqKind, Viommu, ViommuKind};
    use iommufd::PasidHwpt;
    if std::env::var("IOMMUFD_TEST_KERNEL_VERSION").is_ok_and(|v| v == "6.12") {
        return; // no mock device next to VT-d on 6.12
    }
    let f = FailNth::new();
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = MockDevice::new_with_pasid(&ioas).unwrap();
    let e = |e: iommufd::Error| ((), e.raw_errno());
    let rows = [
        f.sweep(
            "IOMMU_HWPT_ALLOC (paging)",
            &mut Some(()),
            |()| Hwpt::<Paging>::alloc(&dev, &ioas).map_err(e),
            drop,
            |_| {},
        ),
        f.sweep(
            "IOMMU_HWPT_ALLOC (PASID-capable)",
            &mut Some(()),
            |()| PasidHwpt::<Paging>::alloc(&dev, &ioas).map_err(e),
            drop,
            |_| {},
        ),
        f.sweep(
            "IOMMU_HWPT_ALLOC (nest parent)",
            &mut Some(()),
            |()| Hwpt::<NestParent>::alloc(&dev, &ioas).map_err(e),
            drop,
            |_| {},
        ),
    ];
    let parent = Hwpt::<NestParent>::alloc(&dev, &ioas).unwrap();
    let stage1 = Stage1::Selftest { iotlb: 0xbadbeef };
    let nested = f.sweep(
        "IOMMU_HWPT_ALLOC (nested)",
        &mut Some(()),
        |()| Hwpt::<Nested>::alloc_nested(&dev, &parent, &stage1).map_err(e),
        drop,
        |_| {},
    );
    let viommu = f.sweep(
        "IOMMU_VIOMMU_ALLOC",
        &mut Some(()),
        |()| Viommu::alloc(&dev, &parent, ViommuKind::Selftest).map_err(e),
        drop,
        |_| {},
    );
    let v = Viommu::alloc(&dev, &parent, ViommuKind::Selftest).unwrap();
    let vdevice = f.sweep(
        "IOMMU_VDEVICE_ALLOC",
        &mut Some(()),
        |()| v.alloc_vdevice(&dev, 0x99).map_err(e),
        drop,
        |_| {},
    );
    let veventq = f.sweep(
        "IOMMU_VEVENTQ_ALLOC",
        &mut Some(()),
        |()| v.alloc_veventq(VeventqKind::Selftest, 8).map_err(e),
        drop,
        |_| {},
    );
    for s in rows.iter().chain([&nested, &viommu, &vdevice, &veventq]) {
        println!("{}", s.row(None));
        assert!(s.points() > 0, "{}: the sweep reached the ioctl", s.name);
    }
    // Nothing leaked: each works again, the vDEVICE and vEVENTQ included
    // (one per device, one per type).
    drop(Hwpt::<Nested>::alloc_nested(&dev, &parent, &stage1).unwrap());
    let vd = v.alloc_vdevice(&dev, 0x99).unwrap();
    let q = v.alloc_veventq(VeventqKind::Selftest, 8).unwrap();
    drop((q, vd));
}
