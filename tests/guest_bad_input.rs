//! A catalogue of bad inputs, each with the exact `ErrorKind`, the errno (or
//! none, for what the crate refuses itself) and the words the message must
//! carry: the operation, the object, and the cause. Afterwards every object
//! the bad calls were made on is used again, and must still work.

mod support;

use support::{cdev_of, open_rw};

use iommufd::{Access, Device, DmaBuffer, Error, ErrorKind, Group, Iommufd, Iova, IovaRange};
use nix::errno::Errno;
use std::fmt::Debug;
use std::os::fd::{AsFd, OwnedFd};
use support::{buffer_with, Edu, Topology};

/// What the errno must be.
#[derive(Clone, Copy)]
enum Want {
    /// Refused by the crate itself: no errno.
    Crate,
    /// Exactly this errno.
    Is(Errno),
}
use Want::{Crate, Is};

#[derive(Default)]
struct Catalogue {
    cases: usize,
    wrong: Vec<String>,
}

impl Catalogue {
    /// One case: `r` must fail with `kind` and `errno`, and its message must
    /// name the operation and the object and contain each of `words`.
    fn case<T: Debug>(
        &mut self,
        name: &str,
        r: Result<T, Error>,
        kind: ErrorKind,
        errno: Want,
        words: &[&str],
    ) {
        self.cases += 1;
        let e = match r {
            Ok(v) => {
                self.wrong.push(format!("{name}: succeeded: {v:?}"));
                return;
            }
            Err(e) => e,
        };
        let msg = e.to_string();
        let mut bad = Vec::new();
        if e.kind() != kind {
            bad.push(format!("kind {:?}, want {kind:?}", e.kind()));
        }
        match (errno, e.raw_errno()) {
            (Crate, None) => {}
            (Is(want), Some(got)) if want == got => {}
            (Crate, got) => bad.push(format!("errno {got:?}, want none")),
            (Is(want), got) => bad.push(format!("errno {got:?}, want {want:?}")),
        }
        if e.operation().is_empty() || !msg.contains(e.operation()) {
            bad.push("no operation in the message".into());
        }
        if e.object().is_empty() || !msg.contains(e.object()) {
            bad.push("no object in the message".into());
        }
        for w in words {
            if !msg.contains(w) {
                bad.push(format!("no {w:?}"));
            }
        }
        if !bad.is_empty() {
            self.wrong
                .push(format!("{name}: {}: {msg}", bad.join("; ")));
        }
    }

    fn done(self, at_least: usize) {
        println!("bad input: {} cases", self.cases);
        assert!(
            self.wrong.is_empty(),
            "{} of {} cases wrong:\n{}",
            self.wrong.len(),
            self.cases,
            self.wrong.join("\n")
        );
        assert!(self.cases >= at_least, "only {} cases", self.cases);
    }
}

/// A PCI device alone in its IOMMU group and not on vfio-pci.
fn lone_non_vfio_device() -> String {
    let sys = std::path::Path::new("/sys");
    for g in iommufd::sysfs::groups(sys).unwrap() {
        let m = iommufd::sysfs::group_members(sys, g).unwrap();
        if m.len() == 1 && m[0].driver.as_deref() != Some("vfio-pci") {
            return m[0].bdf.clone();
        }
    }
    panic!("the guest has no PCI device alone in its group off vfio-pci");
}

fn memfd(len: i64) -> std::fs::File {
    let fd = nix::sys::memfd::memfd_create(c"bad", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
    nix::unistd::ftruncate(&fd, len).unwrap();
    std::fs::File::from(fd)
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn bad_inputs_get_the_right_diagnosis_and_lose_nothing() {
    const SRC: u64 = 0x100000;
    const DST: u64 = 0x200000;
    let t = Topology::discover();
    let mut c = Catalogue::default();
    let map_file_ok = std::env::var("IOMMUFD_TEST_KERNEL_VERSION").is_ok_and(|v| v != "6.12");

    // --- Opening devices and groups.
    c.case(
        "BDF not an address",
        Device::open("not-a-bdf"),
        ErrorKind::InvalidInput,
        Crate,
        &["\"not-a-bdf\"", "domain:bus:device.function"],
    );
    c.case(
        "BDF without function",
        Device::open("0000:00:02"),
        ErrorKind::InvalidInput,
        Crate,
        &["0000:00:02"],
    );
    c.case(
        "BDF with a path in it",
        Device::open("0000:00:02.0/.."),
        ErrorKind::InvalidInput,
        Crate,
        &["domain:bus:device.function"],
    );
    c.case(
        "BDF of no device",
        Device::open("0000:7f:1f.7"),
        ErrorKind::InvalidInput,
        Crate,
        &["0000:7f:1f.7", "does not exist"],
    );
    c.case(
        "member of a pair group",
        Device::open(&t.pair[0]),
        ErrorKind::MultiDeviceGroup,
        Crate,
        &[&t.pair[1], &format!("Group::open({})", t.pair_group)],
    );
    c.case(
        "member of the non-viable group",
        Device::open(&t.nonviable_edu),
        ErrorKind::MultiDeviceGroup,
        Crate,
        &[&t.nonviable_other],
    );
    let lone = lone_non_vfio_device();
    c.case(
        "device not on vfio-pci",
        Device::open(&lone),
        ErrorKind::NotVfioPci,
        Crate,
        &[&lone, "driver_override"],
    );
    c.case(
        "cdev path that does not exist",
        Device::open_cdev("/dev/vfio/devices/vfio999"),
        ErrorKind::InvalidInput,
        Is(Errno::ENOENT),
        &["vfio999"],
    );
    c.case(
        "cdev path that is /dev/null",
        Device::open_cdev("/dev/null"),
        ErrorKind::InvalidInput,
        Crate,
        &["not a VFIO device cdev"],
    );
    c.case(
        "from_fd of /dev/null",
        Device::from_fd(open_rw("/dev/null")).map_err(Error::from),
        ErrorKind::InvalidInput,
        Crate,
        &["not a VFIO device cdev"],
    );
    let file: OwnedFd = std::fs::File::create("/run/tmp/bad-input").unwrap().into();
    c.case(
        "from_fd of a regular file",
        Device::from_fd(file).map_err(Error::from),
        ErrorKind::InvalidInput,
        Crate,
        &["not a character device"],
    );
    c.case(
        "from_fd of a group member",
        Device::from_fd(open_rw(cdev_of(&t.pair[1]))).map_err(Error::from),
        ErrorKind::MultiDeviceGroup,
        Crate,
        &[&t.pair[1]],
    );
    c.case(
        "group with a member on a DMA driver",
        Group::open(t.nonviable_group),
        ErrorKind::GroupNotViable,
        Crate,
        &[&t.nonviable_other, "virtio-pci", "driver_override"],
    );
    c.case(
        "group that does not exist",
        Group::open(999_999),
        ErrorKind::InvalidInput,
        Crate,
        &["group 999999"],
    );
    c.case(
        "group of a malformed BDF",
        Group::open_containing("zz"),
        ErrorKind::InvalidInput,
        Crate,
        &["\"zz\""],
    );

    // --- Binding and attaching.
    let not_iommufd = Iommufd::from_fd(open_rw("/dev/null"));
    let dev = Device::open(&t.singleton).unwrap();
    let e = dev.bind(&not_iommufd).unwrap_err();
    let (dev, err) = e.into_parts();
    c.case::<()>(
        "bind to an fd that is not /dev/iommu",
        Err(err),
        ErrorKind::InvalidInput,
        Is(Errno::EBADFD),
        &["not an open /dev/iommu"],
    );
    let fd = Iommufd::open().unwrap();
    let mut dev = dev.bind(&fd).expect("the device survived the bad bind");
    Edu::setup(&mut dev).unwrap();
    // A second open file of the same device cannot bind while the first is
    // bound: the kernel's EINVAL names the device, not the iommufd.
    let again = Device::open(&t.singleton).unwrap();
    let (again, err) = again.bind(&fd).unwrap_err().into_parts();
    c.case::<()>(
        "bind while bound through another open file",
        Err(err),
        ErrorKind::Busy,
        Is(Errno::EINVAL),
        &["already bound through another open file", "from_fd"],
    );
    drop(again);
    let legacy = Device::open_legacy(&t.singleton);
    c.case(
        "legacy group of a device bound through the cdev",
        legacy,
        ErrorKind::PathConflict,
        Is(Errno::EBUSY),
        &["cdev"],
    );
    let foreign = Iommufd::open().unwrap().alloc_ioas().unwrap();
    let (dev, err) = dev.attach(&foreign).unwrap_err().into_parts();
    c.case::<()>(
        "attach to an IOAS of another iommufd",
        Err(err),
        ErrorKind::InvalidInput,
        Crate,
        &["another iommufd"],
    );
    let ioas = fd.alloc_ioas().unwrap();
    let dev = dev
        .attach(&ioas)
        .expect("the device survived the bad attach");

    // --- IOVAs and lengths.
    let src = ioas
        .map(buffer_with(b"bad input"), Iova::Fixed(SRC), Access::READ)
        .unwrap();
    let dst = ioas
        .map(
            DmaBuffer::new(8192).unwrap(),
            Iova::Fixed(DST),
            Access::WRITE,
        )
        .unwrap();
    let page = || DmaBuffer::new(4096).unwrap();
    let map = |iova: u64| {
        ioas.map(page(), Iova::Fixed(iova), Access::READ)
            .map_err(Error::from)
    };
    c.case(
        "unaligned IOVA",
        map(0x1001),
        ErrorKind::Alignment,
        Is(Errno::EINVAL),
        &["IOVA [0x1001", "multiples of 0x1000"],
    );
    c.case(
        "IOVA in the MSI window",
        map(0xfee0_0000),
        ErrorKind::OutOfRange,
        Is(Errno::EINVAL),
        &["0xfee00000", "usable IOVA ranges"],
    );
    c.case(
        "IOVA above the aperture",
        map(1 << 50),
        ErrorKind::OutOfRange,
        Is(Errno::EINVAL),
        &["usable IOVA ranges"],
    );
    c.case(
        "IOVA at the top of 2^64",
        map(u64::MAX - 0xfff),
        ErrorKind::OutOfRange,
        Is(Errno::EINVAL),
        &["0xfffffffffffff000"],
    );
    c.case(
        "overlapping a live mapping",
        map(DST + 4096),
        ErrorKind::Overlap,
        Is(Errno::EEXIST),
        &["overlaps the existing mapping IOVA [0x200000, 0x201fff]"],
    );
    let mem = memfd(1 << 20);
    let mf = |start: u64, len: u64, iova: Iova| ioas.map_file(&mem, start, len, iova, Access::READ);
    c.case(
        "zero-length file mapping",
        mf(0, 0, Iova::Any),
        ErrorKind::InvalidInput,
        Crate,
        &["zero-length"],
    );
    if map_file_ok {
        c.case(
            "file length not page-aligned",
            mf(0, 0x1001, Iova::Fixed(0x400000)),
            ErrorKind::Alignment,
            Is(Errno::EINVAL),
            &["multiples of 0x1000"],
        );
        c.case(
            "file range wrapping past 2^64",
            mf(0, 0x2000, Iova::Fixed(u64::MAX - 0xfff)),
            ErrorKind::OutOfRange,
            Is(Errno::EOVERFLOW),
            &[
                "0xfffffffffffff000 + 0x2000 bytes",
                "past the end of the 64-bit IOVA space",
            ],
        );
        c.case(
            "file mapping over a live mapping",
            mf(0, 4096, Iova::Fixed(SRC)),
            ErrorKind::Overlap,
            Is(Errno::EEXIST),
            &["IOVA [0x100000, 0x100fff]"],
        );
    }
    // A bad file is refused by the kernel (the IOAS has a device attached,
    // so the map pins), and explained after, by what the file is: no
    // `fstat` before the ioctl. On 6.12 there is no MAP_FILE at all.
    if map_file_ok {
        c.case(
            "file offset past its end",
            mf(1 << 30, 4096, Iova::Any),
            ErrorKind::InvalidInput,
            Is(Errno::EINVAL),
            &["not inside the 0x100000-byte file"],
        );
        c.case(
            "file range ending past its end",
            mf(0xff000, 0x2000, Iova::Any),
            ErrorKind::InvalidInput,
            Is(Errno::EINVAL),
            &["not inside the 0x100000-byte file"],
        );
        let null = std::fs::File::open("/dev/null").unwrap();
        c.case(
            "map_file of a device node",
            ioas.map_file(&null, 0, 4096, Iova::Any, Access::READ),
            ErrorKind::InvalidInput,
            Is(Errno::EINVAL),
            &["not a memfd", "file type 0o20000"],
        );
        let dir = std::fs::File::open("/run").unwrap();
        c.case(
            "map_file of a directory",
            ioas.map_file(&dir, 0, 4096, Iova::Any, Access::READ),
            ErrorKind::InvalidInput,
            Is(Errno::EINVAL),
            &["not a memfd"],
        );
    } else {
        c.case(
            "map_file without IOMMU_IOAS_MAP_FILE",
            mf(0, 4096, Iova::Any),
            ErrorKind::Unsupported,
            Is(Errno::ENOTTY),
            &["added in Linux 6.13"],
        );
    }
    let none = Access {
        read: false,
        write: false,
    };
    c.case(
        "map with no access",
        ioas.map(page(), Iova::Any, none).map_err(Error::from),
        ErrorKind::InvalidInput,
        Is(Errno::EINVAL),
        &["no access", "Access::READ"],
    );
    c.case(
        "fixed map with no access",
        ioas.map(page(), Iova::Fixed(0x600_0000), none)
            .map_err(Error::from),
        ErrorKind::InvalidInput,
        Is(Errno::EINVAL),
        &["no access"],
    );
    c.case(
        "unmap cutting a live mapping",
        ioas.unmap(DST + 4096, 4096),
        ErrorKind::NotMapped,
        Is(Errno::ENOENT),
        &["cuts the live mapping IOVA [0x200000, 0x201fff]"],
    );
    c.case(
        "unmap of a live mapping's range",
        ioas.unmap(DST, 8192),
        ErrorKind::Busy,
        Is(Errno::EBUSY),
        &["Mapping::unmap"],
    );
    c.case(
        "unmap of what was never mapped",
        ioas.unmap(0x700_0000, 4096),
        ErrorKind::NotMapped,
        Is(Errno::ENOENT),
        &["IOVA [0x7000000, 0x7000fff]", "nothing is mapped there"],
    );
    c.case(
        "unmap of zero bytes",
        ioas.unmap(0x700_0000, 0),
        ErrorKind::InvalidInput,
        Is(Errno::EINVAL),
        &["zero-length"],
    );
    c.case(
        "unmap wrapping past 2^64",
        ioas.unmap(u64::MAX, 2),
        ErrorKind::OutOfRange,
        Is(Errno::EOVERFLOW),
        &["wraps", "IOVA 0xffffffffffffffff + 0x2 bytes"],
    );
    let r = |start, last| IovaRange { start, last };
    c.case(
        "allow_iovas with start > last",
        ioas.allow_iovas(&[r(0x2000, 0x1000)]),
        ErrorKind::InvalidInput,
        Is(Errno::EINVAL),
        &["start <= last"],
    );
    c.case(
        "allow_iovas with overlapping ranges",
        ioas.allow_iovas(&[r(0, 0xffff), r(0x8000, 0x1_ffff)]),
        ErrorKind::InvalidInput,
        Is(Errno::EINVAL),
        &["not overlap"],
    );
    let other_fd = Iommufd::open().unwrap();
    let other_ioas = other_fd.alloc_ioas().unwrap();
    c.case(
        "copy into an IOAS of another iommufd",
        other_ioas.copy_from(&src, Iova::Any, Access::READ),
        ErrorKind::InvalidInput,
        Crate,
        &["another iommufd"],
    );

    // --- A file range mapped while no device is attached: the kernel takes
    // it unchecked and pins it at the next attach, which fails and names it.
    let dev = if map_file_ok {
        let lone = fd.alloc_ioas().unwrap();
        let bad = lone
            .map_file(&mem, 0xff000, 0x2000, Iova::Fixed(0x400000), Access::READ)
            .expect("no device attached: the kernel does not pin, so takes the range");
        let (back, err) = match dev.replace(&lone) {
            Ok(_) => {
                panic!("a replace onto an IOAS with a file range past the file's end succeeded")
            }
            Err(e) => e.into_parts(),
        };
        let dev = match back {
            iommufd::Fallback::Kept(d) => d,
            other => panic!("the device did not stay where it was: {other:?}"),
        };
        c.case(
            "attach pinning a file range past the file's end",
            Err::<(), _>(err),
            ErrorKind::InvalidInput,
            Is(Errno::EINVAL),
            &[
                "IOVA [0x400000, 0x401fff]",
                "mapped with map_file since the last attach that succeeded",
            ],
        );
        bad.unmap().expect("the unpinned file mapping unmaps");
        let dev = dev
            .replace(&lone)
            .expect("with the bad range gone, the replace works");
        dev.replace(&ioas).expect("and back")
    } else {
        dev
    };

    // --- BARs, MMIO, regions, config space.
    let mut dev = dev;
    c.case(
        "BAR index past 5",
        dev.map_bar(7),
        ErrorKind::InvalidInput,
        Crate,
        &["regions 0 to 5"],
    );
    c.case(
        "BAR the device lacks",
        dev.map_bar(2),
        ErrorKind::InvalidInput,
        Crate,
        &["BAR2", "not implemented"],
    );
    c.case(
        "MMIO on an unmapped BAR",
        dev.mmio(1),
        ErrorKind::InvalidInput,
        Crate,
        &["BAR1", "map_bar first"],
    );
    let mmio = dev.mmio(0).unwrap();
    c.case(
        "MMIO past the BAR",
        mmio.read32(1 << 20),
        ErrorKind::InvalidInput,
        Crate,
        &["offset 0x100000", "inside the"],
    );
    c.case(
        "MMIO misaligned",
        mmio.read32(2),
        ErrorKind::InvalidInput,
        Crate,
        &["offset 0x2", "aligned"],
    );
    c.case(
        "MMIO at the top of 2^64",
        mmio.write64(u64::MAX - 7, 0),
        ErrorKind::InvalidInput,
        Crate,
        &["offset 0xfffffffffffffff8"],
    );
    let mut cmd = [0u8; 2];
    dev.config_read(4, &mut cmd).unwrap();
    c.case(
        "config write turning memory decoding off under a mapped BAR",
        dev.config_write(4, &[cmd[0] & !2]),
        ErrorKind::Busy,
        Crate,
        &["BAR0", "PCI_COMMAND_MEMORY", "SIGBUS", "unmap_bar"],
    );
    let mut four = [0u8; 4];
    c.case(
        "config read past config space",
        dev.config_read(4096, &mut four),
        ErrorKind::InvalidInput,
        Crate,
        &["do not fit"],
    );
    c.case(
        "config read with a wrapping offset",
        dev.config_read(u64::MAX - 1, &mut four),
        ErrorKind::InvalidInput,
        Crate,
        &["do not fit"],
    );
    c.case(
        "region index the device lacks",
        dev.region_read(99, 0, &mut four),
        ErrorKind::InvalidInput,
        Is(Errno::EINVAL),
        &["region 99", "regions 0 to"],
    );

    // --- Interrupts.
    let efd = iommufd::EventFd::new().unwrap();
    let msi = iommufd::pci::MSI_IRQ;
    c.case(
        "IRQ index the device lacks",
        dev.irq_info(99),
        ErrorKind::InvalidInput,
        Is(Errno::EINVAL),
        &["irq index 99", "irq indexes 0 to"],
    );
    c.case(
        "more eventfds than MSI vectors",
        dev.set_irq_eventfds(msi, 0, &[efd.as_fd(), efd.as_fd()]),
        ErrorKind::InvalidInput,
        Is(Errno::EINVAL),
        &["vectors 0..2", "1 vector(s)"],
    );
    c.case(
        "MSI vector past the count",
        dev.set_irq_eventfds(msi, 5, &[efd.as_fd()]),
        ErrorKind::InvalidInput,
        Is(Errno::EINVAL),
        &["vectors 5..6"],
    );
    c.case(
        "MSI vector range wrapping u32",
        dev.trigger_irqs(msi, u32::MAX, 2),
        ErrorKind::InvalidInput,
        Is(Errno::EINVAL),
        &["vectors 4294967295..4294967297"],
    );
    c.case(
        "trigger on an IRQ index the device lacks",
        dev.trigger_irqs(99, 0, 1),
        ErrorKind::InvalidInput,
        Is(Errno::EINVAL),
        &["irq indexes 0 to"],
    );

    // --- Migration on a device without a migration driver.
    c.case(
        "DMA logging on a device that cannot log",
        dev.start_dma_logging(
            4096,
            &[IovaRange {
                start: 0,
                last: 0xfff,
            }],
        )
        .map(drop),
        ErrorKind::Unsupported,
        Is(Errno::ENOTTY),
        &["cannot log its own DMA", "dirty tracking"],
    );
    assert_eq!(dev.migration_caps().unwrap(), None, "edu does not migrate");
    let (mut dev, err) = dev.into_migration().unwrap_err().into_parts();
    c.case::<()>(
        "migrating a device without a migration driver",
        Err(err),
        ErrorKind::Unsupported,
        Crate,
        &["offers no VFIO migration"],
    );

    // --- CPU views of mapped memory.
    let mut dst = dst;
    let mut out = [0u8; 16];
    c.case(
        "read_bytes past the mapping",
        dst.read_bytes(8192 - 8, &mut out),
        ErrorKind::InvalidInput,
        Crate,
        &["[0x1ff8, +0x10)", "0x2000-byte CPU view"],
    );
    c.case(
        "write_bytes at an offset near 2^64",
        dst.write_bytes(usize::MAX, b"x"),
        ErrorKind::InvalidInput,
        Crate,
        &["outside the 0x2000-byte CPU view"],
    );

    // --- Interrupts, VF tokens, BAR exports (the hardening audit's list).
    let none: &[Option<&iommufd::EventFd>] = &[];
    c.case(
        "MSI-X routing of no vector",
        dev.set_irq_routes(iommufd::pci::MSIX_IRQ, 0, none),
        ErrorKind::InvalidInput,
        Crate,
        &["no eventfd given", "disable_irqs"],
    );
    let null = std::fs::File::open("/dev/null").unwrap();
    c.case(
        "/dev/null as an eventfd",
        dev.set_irq_eventfds(iommufd::pci::MSI_IRQ, 0, &[null.as_fd()]),
        ErrorKind::InvalidInput,
        Is(Errno::EINVAL),
        &["/dev/null, not an eventfd"],
    );
    c.case(
        "VF token on a device that is no PF",
        dev.set_vf_token(&[7; 16]),
        ErrorKind::InvalidInput,
        Is(Errno::ENOTTY),
        &["not an SR-IOV PF"],
    );
    c.case(
        "config space exported as a BAR",
        dev.export_bar(iommufd::pci::CONFIG, 0, 4096).map(drop),
        ErrorKind::InvalidInput,
        Crate,
        &["region 7 is not a BAR"],
    );

    // --- Lifecycle.
    c.case(
        "reset without a reset method",
        dev.reset(),
        ErrorKind::Kernel,
        Is(Errno::EINVAL),
        &["no reset"],
    );

    // Everything the bad calls touched still works.
    drop((src, dst));
    let out = support::round_trip(
        &dev,
        &ioas,
        b"still fine",
        Iova::Fixed(SRC),
        Iova::Fixed(DST),
    );
    assert_eq!(out, b"still fine");
    assert!(other_ioas
        .map(DmaBuffer::new(4096).unwrap(), Iova::Any, Access::READ)
        .is_ok());
    c.done(40);
}
