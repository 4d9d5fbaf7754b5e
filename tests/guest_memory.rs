//! DMA memory that is fast by default: `DmaBuffer` gets transparent huge
//! pages even when THP is `madvise`-only, and `HugeBuffer` takes hugetlbfs
//! pages (mapped with `IOMMU_IOAS_MAP_FILE` where the kernel has it), with a
//! clear error when none are reserved.

mod support;

use iommufd::{Access, DmaBuffer, ErrorKind, HugeBuffer, Iommufd, Iova};
use std::os::fd::AsRawFd;
use support::Edu;

const MSG: &[u8] = b"huge pages: bytes through the IOMMU";
const THP: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
const POOL: &str = "/proc/sys/vm/nr_hugepages";

/// `AnonHugePages` of the mapping that contains `addr`, in KiB.
fn anon_huge_kb(addr: usize) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((a, b)) = range.split_once('-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                {
                    inside = (a..b).contains(&addr);
                    continue;
                }
            }
        }
        if inside {
            if let Some(v) = line.strip_prefix("AnonHugePages:") {
                return v.trim().trim_end_matches(" kB").trim().parse().unwrap();
            }
        }
    }
    panic!("no mapping at {addr:#x}");
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn dma_buffers_get_huge_pages_under_thp_madvise() {
    let before = std::fs::read_to_string(THP).unwrap();
    std::fs::write(THP, "madvise").unwrap();
    let mut big = DmaBuffer::new(8 << 20).unwrap();
    big.as_mut_slice()
        .iter_mut()
        .step_by(4096)
        .for_each(|b| *b = 1);
    let huge = anon_huge_kb(big.as_mut_slice().as_ptr() as usize);
    // The same size without the advice: no huge pages under `madvise`.
    let mut plain = memmap2::MmapOptions::new().len(8 << 20).map_anon().unwrap();
    plain.iter_mut().step_by(4096).for_each(|b| *b = 1);
    let none = anon_huge_kb(plain.as_ptr() as usize);
    let mode = before
        .split('[')
        .nth(1)
        .and_then(|s| s.split(']').next())
        .unwrap();
    std::fs::write(THP, mode).unwrap();
    assert!(
        huge >= 4096,
        "DmaBuffer of 8 MiB has {huge} KiB of huge pages"
    );
    assert_eq!(none, 0, "plain anonymous memory under madvise");
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn huge_buffers_map_and_carry_dma_and_say_when_none_are_reserved() {
    std::fs::write(POOL, "0").unwrap();
    let e = HugeBuffer::new(4 << 20).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfMemory, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("/proc/sys/vm/nr_hugepages"), "{msg}");
    assert!(msg.contains("2 free 2 MiB huge pages are needed"), "{msg}");
    assert!(msg.contains("echo 2 >"), "{msg}");

    std::fs::write(POOL, "4").unwrap();
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = support::bound_singleton(&fd).attach(&ioas).unwrap();
    let mut src = HugeBuffer::new(1).unwrap();
    assert_eq!(src.len(), 2 << 20, "rounded up to one huge page");
    src.as_mut_slice()[..MSG.len()].copy_from_slice(MSG);
    let src = ioas
        .map_huge(src, Iova::Fixed(0x400000), Access::READ)
        .unwrap();
    let dst = ioas
        .map_huge(
            HugeBuffer::new(2 << 20).unwrap(),
            Iova::Fixed(0x800000),
            Access::WRITE,
        )
        .unwrap();
    let edu = Edu::new(&dev);
    edu.read_from_ram(0x400000, MSG.len() as u64);
    edu.write_to_ram(0x800000 + 4096, MSG.len() as u64);
    let mut out = vec![0u8; MSG.len()];
    dst.read_bytes(4096, &mut out).unwrap();
    assert_eq!(out, MSG, "DMA between two hugetlbfs buffers");
    // The pool is in use, and comes back when the buffers go.
    let free = || {
        std::fs::read_to_string("/proc/meminfo")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("HugePages_Free:"))
            .unwrap()
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    assert_eq!(free(), 2);
    drop(src.unmap().unwrap());
    drop(dst);
    assert_eq!(free(), 4);
    std::fs::write(POOL, "0").unwrap();
}

/// The kernel's choice for `len` bytes at `va` in `ioas` right now: a raw
/// kernel-chosen map, unmapped at once.
fn kernel_would_choose(fd: &Iommufd, ioas: u32, va: u64, len: u64) -> u64 {
    let raw_fd = fd.iommufd_fd().unwrap();
    // SAFETY: `va` is memory of a live buffer of the caller, unmapped
    // again before this returns.
    let at = unsafe { support::raw::map(raw_fd, ioas, va, len, None) }.unwrap();
    support::raw::unmap(raw_fd, ioas, at, len).unwrap();
    at
}

/// `Iova::Any` is chosen by the crate (#29), and it is the IOVA the kernel
/// would have chosen, at every step: mixed sizes and alignments, holes left
/// by unmaps, past the crate's small table (64 mappings) into its index,
/// and inside an allow-list. Each choice is compared with a raw
/// kernel-chosen map of the same memory made just before it.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn kernel_chosen_iovas_are_chosen_as_the_kernel_would() {
    use iommufd::IovaRange;
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = support::bound_singleton(&fd).attach(&ioas).unwrap();
    let sizes = [4096usize, 8192, 4096, 65536, 12288, 2 << 20, 4096, 20480];
    let mut live = Vec::new();
    let step = |live: &mut Vec<iommufd::Mapping<DmaBuffer>>, i: usize| {
        let mut buf = DmaBuffer::new(sizes[i % sizes.len()]).unwrap();
        let (va, len) = (buf.as_mut_slice().as_mut_ptr() as u64, buf.len() as u64);
        let want = kernel_would_choose(&fd, ioas.id(), va, len);
        let m = ioas.map(buf, Iova::Any, Access::READ_WRITE).unwrap();
        assert_eq!(m.iova(), want, "map {i} of {len:#x} bytes at va {va:#x}");
        live.push(m);
    };
    for i in 0..120 {
        step(&mut live, i);
        // Holes of every size: every third mapping goes again.
        if i % 3 == 2 {
            live.swap_remove(i / 3 % live.len());
        }
    }
    // Inside an allow-list (the kernel checks it for its own choices only).
    let allowed = IovaRange {
        start: 0x4000_0000,
        last: 0x7fff_ffff,
    };
    ioas.allow_iovas(&[allowed]).unwrap();
    for i in 0..20 {
        step(&mut live, i);
        let m = live.last().unwrap();
        assert!(allowed.contains(m.iova(), m.len()), "{:#x}", m.iova());
    }
    ioas.allow_iovas(&[]).unwrap();
    step(&mut live, 0);
    assert!(
        live.last().unwrap().iova() < allowed.start,
        "the hole below is used again"
    );
    // They all work for DMA: the edu copies through the last one.
    drop(live);
    let msg = b"chosen in user space";
    assert_eq!(
        support::round_trip(&dev, &ioas, msg, Iova::Any, Iova::Any),
        msg
    );
}

/// A device attached after the maps brings a reserved region (VT-d's MSI
/// window, `0xfee00000`) that a mapping already covers: the attach fails
/// as it does when the kernel chose the IOVAs (`EADDRINUSE`, the device
/// handed back), since the crate chose exactly what the kernel would.
/// Nothing is pinned: no device is attached while the 1 GiB buffers are
/// mapped.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_device_attached_later_fails_as_with_kernel_chosen_iovas() {
    const GIB: usize = 1 << 30;
    let fd = Iommufd::open().unwrap();
    let (ours, theirs) = (fd.alloc_ioas().unwrap(), fd.alloc_ioas().unwrap());
    let raw_fd = fd.iommufd_fd().unwrap();
    let mut live = Vec::new();
    for _ in 0..4 {
        let mut buf = DmaBuffer::new(GIB).unwrap();
        let va = buf.as_mut_slice().as_mut_ptr() as u64;
        // SAFETY: the buffer lives in `live` until after `theirs` is
        // unmapped below.
        let kernel =
            unsafe { support::raw::map(raw_fd, theirs.id(), va, GIB as u64, None) }.unwrap();
        let m = ours.map(buf, Iova::Any, Access::READ_WRITE).unwrap();
        assert_eq!(m.iova(), kernel);
        live.push(m);
    }
    let msi = 0xfee0_0000;
    assert!(live
        .iter()
        .any(|m| m.iova() <= msi && msi < m.iova() + m.len()));
    let dev = support::bound_singleton(&fd);
    let (dev, ours_err) = dev.attach(&ours).unwrap_err().into_parts();
    let (dev, theirs_err) = dev.attach(&theirs).unwrap_err().into_parts();
    assert_eq!(
        ours_err.raw_errno(),
        Some(nix::errno::Errno::EADDRINUSE),
        "{ours_err}"
    );
    assert_eq!(
        ours_err.raw_errno(),
        theirs_err.raw_errno(),
        "{ours_err} / {theirs_err}"
    );
    assert_eq!(
        ours_err.kind(),
        theirs_err.kind(),
        "{ours_err} / {theirs_err}"
    );
    assert_eq!(ours_err.kind(), ErrorKind::Overlap, "{ours_err}");
    // The crate names the region (from sysfs) and its mapping in the way.
    let msg = ours_err.to_string();
    assert!(
        msg.contains("reserved IOVA region") && msg.contains("fee00000"),
        "{msg}"
    );
    assert!(msg.contains("overlaps the live mapping"), "{msg}");
    support::raw::unmap(raw_fd, theirs.id(), 0, u64::MAX).unwrap();
    drop(live);
    // With the range free again the same device attaches.
    let dev = dev.attach(&ours).unwrap();
    let msg = b"after the failed attach";
    assert_eq!(
        support::round_trip(&dev, &ours, msg, Iova::Any, Iova::Any),
        msg
    );
}

/// `IOMMU_TEST_OP_ADD_RESERVED` of the iommufd test driver: a reserved
/// region in `ioas` that the crate was never told of. False without the
/// test driver.
fn add_reserved(fd: &Iommufd, ioas: u32, start: u64, len: u64) -> bool {
    #[repr(C)]
    struct TestCmd {
        size: u32,
        op: u32,
        id: u32,
        reserved: u32,
        data: [u64; 7],
    }
    nix::ioctl_write_ptr_bad!(test_cmd, nix::request_code_none!(b';', 0xa0), TestCmd);
    let cmd = TestCmd {
        size: 72,
        op: 1,
        id: ioas,
        reserved: 0,
        data: [start, len, 0, 0, 0, 0, 0],
    };
    // SAFETY: a live struct of the size the driver reads; the op carries
    // no pointer.
    match unsafe { test_cmd(fd.iommufd_fd().unwrap().as_raw_fd(), &cmd) } {
        Ok(_) => true,
        Err(nix::errno::Errno::ENOTTY) => false,
        Err(e) => panic!("IOMMU_TEST_OP_ADD_RESERVED: {e}"),
    }
}

/// What the crate cannot see when it chooses an IOVA, it learns from the
/// kernel's refusal, and the caller gets the mapping the kernel would have
/// made: a reserved region added behind its back (the test driver's), and
/// a mapping made outside the crate with a raw ioctl (after which the
/// kernel chooses for that IOAS).
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn what_the_crate_cannot_see_it_learns_from_the_kernel() {
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let mut live = Vec::new();
    let map = |live: &mut Vec<iommufd::Mapping<DmaBuffer>>| {
        let mut buf = DmaBuffer::new(4096).unwrap();
        let va = buf.as_mut_slice().as_mut_ptr() as u64;
        let want = kernel_would_choose(&fd, ioas.id(), va, 4096);
        let m = ioas.map(buf, Iova::Any, Access::READ).unwrap();
        assert_eq!(m.iova(), want);
        live.push(m);
        want
    };
    map(&mut live);
    if add_reserved(&fd, ioas.id(), 0x4000, 0x4000) {
        for _ in 0..8 {
            let at = map(&mut live);
            assert!(!(0x4000..0x8000).contains(&at), "{at:#x} is reserved");
        }
    } else {
        eprintln!("no test driver: the reserved region part is not run");
    }
    // A mapping the crate did not make, right where it would map next.
    let mut other = DmaBuffer::new(4096).unwrap();
    let raw_fd = fd.iommufd_fd().unwrap();
    let va = other.as_mut_slice().as_mut_ptr() as u64;
    let next = kernel_would_choose(&fd, ioas.id(), va, 4096);
    // SAFETY: `other` outlives the mapping, unmapped below.
    unsafe { support::raw::map(raw_fd, ioas.id(), va, 4096, Some(next)) }.unwrap();
    for _ in 0..4 {
        let at = map(&mut live);
        assert_ne!(at, next);
    }
    support::raw::unmap(raw_fd, ioas.id(), next, 4096).unwrap();
    map(&mut live);
}

/// 1 GiB hugetlbfs pages (#29): the harness reserves one at boot
/// (`hugepagesz=1G hugepages=1`); it maps with `map_huge` and carries the
/// edu's DMA, and with the only page held, the next buffer's error names
/// the 1 GiB pool and how many pages to reserve.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn one_gib_pages_map_and_carry_dma_and_say_when_none_are_free() {
    use iommufd::HugePage;
    const GIB: usize = 1 << 30;
    const POOL_1G: &str = "/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages";
    let free = || {
        std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages")
            .unwrap()
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    assert_eq!(free(), 1, "the harness reserves one 1 GiB page at boot");
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = support::bound_singleton(&fd).attach(&ioas).unwrap();
    let mut buf = HugeBuffer::with_pages(1, HugePage::Gib1).unwrap();
    assert_eq!(
        (buf.len(), buf.page()),
        (GIB, HugePage::Gib1),
        "rounded up to one page"
    );
    assert_eq!(
        buf.as_mut_slice().as_ptr() as usize % GIB,
        0,
        "1 GiB-aligned"
    );
    assert_eq!(free(), 0, "the page is the buffer's");
    const SRC: usize = 0x0100_0000;
    buf.as_mut_slice()[SRC..SRC + MSG.len()].copy_from_slice(MSG);
    // At IOVA 0, 1 GiB-aligned; the edu (28-bit DMA) reaches its first 256 MiB.
    let m = ioas
        .map_huge(buf, Iova::Fixed(0), Access::READ_WRITE)
        .unwrap();
    let edu = Edu::new(&dev);
    edu.read_from_ram(SRC as u64, MSG.len() as u64);
    edu.write_to_ram(0x0200_0008, MSG.len() as u64);
    let mut out = vec![0u8; MSG.len()];
    m.read_bytes(0x0200_0008, &mut out).unwrap();
    assert_eq!(out, MSG, "DMA within one 1 GiB page");
    // The only page held: the next buffer says what to reserve.
    let e = HugeBuffer::with_pages(GIB, HugePage::Gib1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfMemory, "{e}");
    let msg = e.to_string();
    assert!(msg.contains(POOL_1G), "{msg}");
    assert!(msg.contains("1 free 1 GiB huge pages are needed"), "{msg}");
    assert!(msg.contains("echo 2 >"), "{msg}");
    drop(m);
    assert_eq!(free(), 1, "the page is back in the pool");
}

/// `allow_iovas` over a reserved region (#27 item 5; VT-d's MSI window,
/// `0xfee00000-0xfeefffff`): allowed first, the attach is refused
/// (`EADDRINUSE`, the device handed back, the region and the allowed range
/// named); allowed after the attach, the allow is refused. Either way the
/// device comes back working.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn allowing_a_reserved_region_is_refused_and_the_device_still_works() {
    use iommufd::IovaRange;
    let over = IovaRange {
        start: 0xfe00_0000,
        last: 0xfeff_ffff,
    };
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    ioas.allow_iovas(&[over]).unwrap();
    let (dev, e) = support::bound_singleton(&fd)
        .attach(&ioas)
        .unwrap_err()
        .into_parts();
    assert_eq!(e.raw_errno(), Some(nix::errno::Errno::EADDRINUSE), "{e}");
    assert_eq!(e.kind(), ErrorKind::Overlap, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("fee00000") && msg.contains("allow_iovas"),
        "{msg}"
    );
    ioas.allow_iovas(&[]).unwrap();
    let dev = dev.attach(&ioas).unwrap();
    let e = ioas.allow_iovas(&[over]).unwrap_err();
    assert_eq!(e.raw_errno(), Some(nix::errno::Errno::EADDRINUSE), "{e}");
    assert_eq!(e.kind(), ErrorKind::Overlap, "{e}");
    // Allowed clear of it: maps land inside, and the device works.
    let low = IovaRange {
        start: 0x10_0000,
        last: 0x0fff_ffff,
    };
    ioas.allow_iovas(&[low]).unwrap();
    let msg = b"allowed clear of the MSI window";
    assert_eq!(
        support::round_trip(&dev, &ioas, msg, Iova::Any, Iova::Any),
        msg
    );
}

/// Reserved space the crate cannot see that leaves no room at all (the
/// kernel selftest's `reserved_overflow`: a reserved region from 6 to near
/// 2^64): a kernel-chosen map of 0x5000 bytes at file offset 0 (aligned to
/// 0x8000, as the kernel aligns it) is refused as the kernel refuses it,
/// with `ENOSPC`.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn no_room_left_is_the_kernels_enospc() {
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    if !add_reserved(&fd, ioas.id(), 6, 0xffff_ffff_ffff_8001) {
        eprintln!("no test driver: not run");
        return;
    }
    let file = support::memfd(0x5000);
    match ioas.map_file(&file, 0, 0x5000, Iova::Any, Access::READ) {
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            eprintln!("no MAP_FILE before 6.13: {e}");
        }
        Err(e) => assert_eq!(e.raw_errno(), Some(nix::errno::Errno::ENOSPC), "{e}"),
        Ok(m) => panic!("mapped where the kernel has no room: {m:?}"),
    }
}

/// Kernel-chosen maps of lengths that are not page multiples, into an IOAS
/// with no device (alignment 1) (the kernel selftest's `ioas_iova_alloc`,
/// which maps every length from 1 byte to two pages): each is accepted,
/// at the IOVA the kernel would have chosen, and unmapped whole.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn sub_page_lengths_are_chosen_as_the_kernel_would() {
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let mut buf = DmaBuffer::new(3 * 4096).unwrap();
    let base = std::ptr::NonNull::new(buf.as_mut_slice().as_mut_ptr()).unwrap();
    let mut live = Vec::new();
    for len in (1..=2 * 4096usize)
        .step_by(97)
        .chain([4095, 4096, 4097, 8191, 8192])
    {
        for off in [0usize, 1, 0x800] {
            let va = base.as_ptr() as u64 + off as u64;
            let want = kernel_would_choose(&fd, ioas.id(), va, len as u64);
            // SAFETY: inside `buf`, which outlives every mapping here (they
            // are dropped at the end of each step or with `live`, first).
            let m = unsafe { ioas.map_user_va(base.byte_add(off), len, Iova::Any, Access::READ) }
                .unwrap_or_else(|e| panic!("{len} bytes at +{off:#x}: {e}"));
            assert_eq!(m.iova(), want, "{len} bytes at +{off:#x}");
            assert_eq!(m.len(), len as u64);
            // Every third one stays, so the next choices see holes.
            if len % 3 == 0 {
                live.push(m);
            }
        }
    }
    drop(live);
    drop(buf);
}

/// The huge-pages option sets the IOAS's alignment (the kernel selftest's
/// `ioas_align_change`, on an IOAS with no device, where the alignment is
/// otherwise 1): off, every mapping must be page-aligned, and a map at a
/// sub-page user address is refused; on again, it maps; off again while
/// that mapping is there is refused (`EADDRINUSE`, the setting unchanged);
/// with it gone, off is taken.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn the_huge_pages_option_aligns_only_what_is_aligned() {
    const AT: u64 = 1 << 24;
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let mut buf = DmaBuffer::new(3 * 4096).unwrap();
    let base = std::ptr::NonNull::new(buf.as_mut_slice().as_mut_ptr()).unwrap();
    // SAFETY (each map below): inside `buf`, which outlives the mappings
    // (all dropped before it).
    let map = |off: usize, iova: u64| unsafe {
        ioas.map_user_va(base.byte_add(off), 4096, Iova::Fixed(iova), Access::READ)
    };
    let aligned = map(0, AT).unwrap();
    ioas.set_huge_pages(false).unwrap();
    let e = map(0x800, AT + 4096).unwrap_err();
    assert_eq!(e.raw_errno(), Some(nix::errno::Errno::EINVAL), "{e}");
    ioas.set_huge_pages(false).unwrap();
    ioas.set_huge_pages(true).unwrap();
    let sub_page = map(0x800, AT + 4096).unwrap();
    let e = ioas.set_huge_pages(false).unwrap_err();
    assert_eq!(e.raw_errno(), Some(nix::errno::Errno::EADDRINUSE), "{e}");
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    assert!(e.to_string().contains("not page-aligned"), "{e}");
    assert!(ioas.huge_pages().unwrap(), "unchanged");
    drop(sub_page);
    ioas.set_huge_pages(false).unwrap();
    drop(aligned);
    drop(buf);
}

/// More usable ranges than the crate's first buffer holds (the kernel
/// selftest's `iova_ranges`, whose short buffers the kernel answers with
/// `EMSGSIZE` and the count): nine reserved pages split the space into ten
/// ranges, and the crate, asking again, gives each as the kernel has it.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn iova_ranges_past_the_first_buffer_are_all_given() {
    const STEP: u64 = 0x10_0000;
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    for i in 1..=9 {
        if !add_reserved(&fd, ioas.id(), i * STEP, 0x1000) {
            eprintln!("no test driver: not run");
            return;
        }
    }
    let got = ioas.iova_ranges().unwrap();
    let want: Vec<(u64, u64)> = (0..=9)
        .map(|i| {
            let start = if i == 0 { 0 } else { i * STEP + 0x1000 };
            let last = if i == 9 { u64::MAX } else { (i + 1) * STEP - 1 };
            (start, last)
        })
        .collect();
    let have: Vec<(u64, u64)> = got.ranges.iter().map(|r| (r.start, r.last)).collect();
    assert_eq!(have, want, "{got}");
}
