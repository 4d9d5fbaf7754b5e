//! DMA memory that is fast by default: `DmaBuffer` gets transparent huge
//! pages even when THP is `madvise`-only, and `HugeBuffer` takes hugetlbfs
//! pages (mapped with `IOMMU_IOAS_MAP_FILE` where the kernel has it), with a
//! clear error when none are reserved.

mod support;

use iommufd::{Access, DmaBuffer, ErrorKind, HugeBuffer, Iommufd, Iova};
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
