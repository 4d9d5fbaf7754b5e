//! Mutation fuzzing of every decoder of kernel-provided bytes, on the stable
//! toolchain (no nightly here, so no cargo-fuzz): each target starts from
//! the checked-in corpus in `fuzz/corpus/<target>/` and the crate's own
//! crafted buffers, and feeds mutants (bit flips, interesting 32-bit values at
//! every field offset, truncation, extension, splices) to the decoder. A case
//! passes when the decoder returns, without a panic, and what it decoded
//! stays inside the buffer. Every decoder has a hop limit, so a loop in a
//! crafted chain is an error, not a hang.
//!
//! `IOMMUFD_FUZZ_CASES` sets the cases per target (default 100 000, as CI
//! runs; the full run is 1 000 000). `IOMMUFD_FUZZ_WRITE_CORPUS=1` rewrites
//! the seed files from the crafted buffers.

use std::path::PathBuf;

/// xorshift64*: deterministic, so a failing case can be replayed by count.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u32] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    16,
    23,
    24,
    31,
    32,
    33,
    40,
    64,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x1000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if b.len() >= 4 => {
                let i = rng.below(b.len() / 4) * 4;
                let v = INTERESTING[rng.below(INTERESTING.len())];
                // Sometimes an offset relative to the buffer's own length.
                let v = if rng.below(4) == 0 {
                    (b.len() as u32).wrapping_sub(v)
                } else {
                    v
                };
                b[i..i + 4].copy_from_slice(&v.to_ne_bytes());
            }
            2 => b.truncate(rng.below(b.len() + 1)),
            3 => {
                let n = rng.below(64);
                b.extend((0..n).map(|_| rng.next() as u8));
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() && !b.is_empty() {
                    let at = rng.below(b.len());
                    let from = rng.below(other.len());
                    let n = rng.below(other.len() - from).min(b.len() - at);
                    b[at..at + n].copy_from_slice(&other[from..from + n]);
                }
            }
            _ => {
                let i = rng.below(b.len() + 1);
                b.insert(i, rng.next() as u8);
            }
        }
    }
    b
}

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// The seeds of `target`: the checked-in corpus files and `crafted`.
fn seeds(target: &str, crafted: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    if std::env::var_os("IOMMUFD_FUZZ_WRITE_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (i, c) in crafted.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}.bin")), c).unwrap();
        }
    }
    // The published crate leaves the corpus out: there, the crafted seeds alone.
    if !PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .exists()
    {
        eprintln!("fuzz {target}: no fuzz/ directory (a packaged crate): crafted seeds only");
        return crafted;
    }
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    assert!(!out.is_empty(), "no corpus in {}", dir.display());
    out.extend(crafted);
    out
}

fn cases() -> u64 {
    std::env::var("IOMMUFD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Runs `check` on every mutant, and reports the first that panics with its
/// case number and bytes.
fn fuzz(target: &str, seeds: &[Vec<u8>], mut check: impl FnMut(&[u8])) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
    let n = cases();
    for case in 0..n {
        let input = mutate(&mut rng, seeds);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input)));
        assert!(r.is_ok(), "{target}: case {case} panicked on {input:02x?}");
    }
    println!("fuzz: {target}: {n} cases, no panic");
}

#[test]
fn region_info_decoder() {
    use crate::region::{RegionCap, RegionInfo};
    let s = seeds(
        "region_info",
        vec![crate::region::tests::crafted(), vec![0; 32]],
    );
    fuzz("region_info", &s, |b| {
        if let Ok(info) = RegionInfo::decode(b) {
            for cap in &info.caps {
                if let RegionCap::SparseMmap(areas) = cap {
                    // Each area came out of the buffer: 16 bytes apiece.
                    assert!(areas.len() * 16 <= b.len(), "{} areas", areas.len());
                }
            }
            let _ = info.sparse_areas();
        }
    });
}

#[test]
fn type1_info_decoder() {
    use crate::backend::legacy::{parse_type1_info, tests::crafted_type1_info};
    let s = seeds("type1_info", vec![crafted_type1_info(), vec![0; 24]]);
    fuzz("type1_info", &s, |b| {
        let (ranges, align) = parse_type1_info(b, 4096);
        assert!(align.is_power_of_two(), "alignment {align:#x}");
        // Each range came out of the buffer (16 bytes apiece), or is the
        // whole space when there were none.
        assert!(ranges.len() == 1 || ranges.len() * 16 <= b.len());
    });
}

#[test]
fn bdf_parser() {
    let s = seeds(
        "bdf",
        vec![b"0000:00:02.0".to_vec(), b"ffff:ff:1f.7".to_vec()],
    );
    fuzz("bdf", &s, |b| {
        let text = String::from_utf8_lossy(b);
        if crate::sysfs::validate_bdf(&text).is_ok() {
            // Nothing that passes can name a path outside the device directory.
            assert!(!text.contains('/') && !text.contains(".."), "{text:?}");
            assert_eq!(text.len(), 12);
        }
    });
}

#[test]
fn info_requery_loop() {
    // A kernel answer whose argsz keeps asking for more: bounded, never a hang.
    let s = seeds(
        "requery",
        vec![vec![32, 0, 0, 0], vec![0xff, 0xff, 0xff, 0xff]],
    );
    fuzz("requery", &s, |b| {
        let mut answers = b.chunks(4).map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_ne_bytes(w)
        });
        let mut calls = 0;
        let r = crate::sys::query_with_caps(32, |buf| {
            calls += 1;
            let want = answers.next().unwrap_or(0);
            let mut w = buf[0].to_ne_bytes();
            w[..4].copy_from_slice(&want.to_ne_bytes());
            buf[0] = u64::from_ne_bytes(w);
            Ok(0)
        });
        assert!(calls <= b.len() / 4 + 2, "{calls} calls");
        if let Ok(bytes) = r {
            assert!(bytes.len() <= crate::sys::MAX_INFO_BYTES + 8);
        }
    });
}
