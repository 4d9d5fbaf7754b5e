//! The soundness rules that only the running kernel can show: a group member
//! never becomes a `Device` on its own, whatever opened it; a live mapping's
//! range cannot be taken from it; leaked mappings and IOAS copies keep their
//! memory. The compile-time half is in `ui-tests/`.

mod support;

use support::{cdev_of, open_rw};

use iommufd::{Access, Device, DmaBuffer, ErrorKind, Iommufd, Iova};
use nix::errno::Errno;
use std::os::fd::AsFd;
use support::{buffer_with, Edu, Topology};

const MSG: &[u8] = b"soundness: bytes through the IOMMU";

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn group_members_cannot_become_devices_alone_through_any_constructor() {
    // The hole: member 0 bound and attached, member 1 bound alone and typed
    // BlockDma while its group sat in member 0's page table. Every door is shut.
    let t = Topology::discover();
    for bdf in &t.pair {
        let e = Device::open(bdf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MultiDeviceGroup, "open: {e}");

        let e = Device::open_cdev(cdev_of(bdf)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MultiDeviceGroup, "open_cdev: {e}");
        assert!(e.to_string().contains(bdf), "{e}");
        assert!(
            e.to_string()
                .contains(&format!("Group::open({})", t.pair_group)),
            "{e}"
        );

        let e = Device::from_fd(open_rw(cdev_of(bdf))).unwrap_err();
        assert_eq!(
            e.error().kind(),
            ErrorKind::MultiDeviceGroup,
            "{}",
            e.error()
        );
        // The fd comes back, open.
        let fd = e.into_inner();
        assert!(nix::sys::stat::fstat(fd.as_fd()).is_ok());
    }
    // Not a VFIO cdev at all: refused, fd handed back.
    let e = Device::from_fd(open_rw(std::path::Path::new("/dev/null"))).unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::InvalidInput, "{}", e.error());
    assert!(
        e.error().to_string().contains("not a VFIO device cdev"),
        "{}",
        e.error()
    );
    // The whole group, through Group, still works.
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let group = iommufd::Group::open(t.pair_group)
        .unwrap()
        .bind(&fd)
        .unwrap()
        .attach(&ioas)
        .unwrap();
    assert_eq!(group.len(), 2);
}

fn attached_singleton(
    fd: &Iommufd,
    ioas: &iommufd::Ioas,
) -> Device<iommufd::Attached<iommufd::Ioas>> {
    support::bound_singleton(fd).attach(ioas).unwrap()
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn ioas_unmap_cannot_take_a_live_mappings_range() {
    const DST: u64 = 0x200000;
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = attached_singleton(&fd, &ioas);
    let src = ioas
        .map(buffer_with(MSG), Iova::Fixed(0x100000), Access::READ)
        .unwrap();
    let dst = ioas
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(DST),
            Access::WRITE,
        )
        .unwrap();

    // Whole range: refused before the ioctl, naming the mapping and the fix.
    let e = ioas.unmap(DST, 4096).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    assert_eq!(e.raw_errno(), Some(Errno::EBUSY));
    assert!(e.to_string().contains("IOVA [0x200000, 0x200fff]"), "{e}");
    assert!(e.to_string().contains("Mapping::unmap"), "{e}");
    // A range that covers it and more: refused too.
    assert_eq!(ioas.unmap(0, 1 << 30).unwrap_err().kind(), ErrorKind::Busy);
    // So nothing else can take its IOVA, and its own DMA still lands.
    let e = ioas
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(DST),
            Access::WRITE,
        )
        .unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::Overlap, "{}", e.error());
    let edu = Edu::new(&dev);
    edu.read_from_ram(0x100000, MSG.len() as u64);
    edu.write_to_ram(DST, MSG.len() as u64);
    let mut out = vec![0u8; MSG.len()];
    dst.read_bytes(0, &mut out).unwrap();
    assert_eq!(out, MSG);

    // The owner unmaps it; then the range is free, and the kernel says so.
    let buf = dst.unmap().unwrap();
    assert_eq!(&buf.as_slice()[..MSG.len()], MSG);
    let e = ioas.unmap(DST, 4096).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotMapped, "{e}");
    assert_eq!(e.raw_errno(), Some(Errno::ENOENT));
    drop(src);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn leaked_mappings_keep_their_memory_and_their_range() {
    use std::cell::RefCell;
    use std::rc::Rc;
    const LEAKED: u64 = 0x300000;
    const LOOP: u64 = 0x400000;
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = attached_singleton(&fd, &ioas);
    let src = ioas
        .map(buffer_with(MSG), Iova::Fixed(0x100000), Access::READ)
        .unwrap();

    // mem::forget, and an Rc cycle with nothing named "leak" in it.
    let forgotten = ioas
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(LEAKED),
            Access::WRITE,
        )
        .unwrap();
    std::mem::forget(forgotten);
    struct Node {
        _mapping: iommufd::Mapping<DmaBuffer>,
        next: RefCell<Option<Rc<Node>>>,
    }
    let a = Rc::new(Node {
        _mapping: ioas
            .map(
                DmaBuffer::new(4096).unwrap(),
                Iova::Fixed(LOOP),
                Access::WRITE,
            )
            .unwrap(),
        next: RefCell::new(None),
    });
    *a.next.borrow_mut() = Some(a.clone());
    drop(a);

    // The ranges stay owned: nobody can unmap them and map something else there.
    for iova in [LEAKED, LOOP] {
        assert_eq!(ioas.unmap(iova, 4096).unwrap_err().kind(), ErrorKind::Busy);
    }
    // Fresh heap memory never becomes what the device writes: the leaked pages
    // are still allocated, so nothing else is put there.
    let churn: Vec<Vec<u8>> = (0..256).map(|_| vec![0u8; 4096]).collect();
    let edu = Edu::new(&dev);
    edu.read_from_ram(0x100000, MSG.len() as u64);
    edu.write_to_ram(LEAKED, MSG.len() as u64);
    edu.write_to_ram(LOOP, MSG.len() as u64);
    assert!(churn.iter().all(|v| v.iter().all(|&b| b == 0)));
    drop(src);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn ioas_copies_keep_the_source_memory_alive() {
    const SRC: u64 = 0x100000;
    const COPY: u64 = 0x300000;
    const DST: u64 = 0x200000;
    let fd = Iommufd::open().unwrap();
    let a = fd.alloc_ioas().unwrap();
    let b = fd.alloc_ioas().unwrap();
    let dev = attached_singleton(&fd, &a);
    let src = a
        .map(buffer_with(MSG), Iova::Fixed(SRC), Access::READ)
        .unwrap();
    let copy = b.copy_from(&src, Iova::Fixed(COPY), Access::READ).unwrap();
    assert_eq!(src.copies(), 1);

    // The source cannot hand its memory back while the copy maps it.
    let e = src.unmap().unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::Busy, "{}", e.error());
    assert!(
        e.error().to_string().contains("1 IOAS copy"),
        "{}",
        e.error()
    );
    let src = e.into_inner();
    // Dropping the source mapping leaves the memory to the copy.
    drop(src);
    let churn: Vec<Vec<u8>> = (0..256).map(|_| vec![0xeeu8; 4096]).collect();

    let dst = b
        .map(
            DmaBuffer::new(4096).unwrap(),
            Iova::Fixed(DST),
            Access::WRITE,
        )
        .unwrap();
    let dev = dev.replace(&b).unwrap();
    let edu = Edu::new(&dev);
    edu.read_from_ram(COPY, MSG.len() as u64);
    edu.write_to_ram(DST, MSG.len() as u64);
    let mut out = vec![0u8; MSG.len()];
    dst.read_bytes(0, &mut out).unwrap();
    assert_eq!(out, MSG, "the copy still reaches the source's bytes");
    drop(churn);
    // The copy unmaps on its own; what comes back is only a share.
    let shared = copy.unmap().unwrap();
    assert!(format!("{shared:?}").contains("Shared"));
}
