//! Kernel fault injection for the guest tests: `/proc/thread-self/fail-nth`
//! makes the n-th fault-injectable call of this thread fail (a slab or page
//! allocation, a user copy). A sweep tries n = 1, 2, ... until the operation
//! succeeds with nothing injected, so every failure path of the kernel behind
//! it is taken once.

use nix::errno::Errno;
use std::os::fd::OwnedFd;

/// The fail-nth file of this thread, opened once so arming and reading it
/// cost one `pwrite`/`pread` and nothing else.
pub struct FailNth {
    fd: OwnedFd,
}

impl FailNth {
    /// Lets fail-nth reach the allocations a transition makes: by default
    /// failslab and fail_page_alloc skip allocations that may sleep, and
    /// fail_page_alloc skips order-0 pages.
    pub fn new() -> FailNth {
        for (knob, val) in [
            ("failslab/ignore-gfp-wait", "N"),
            ("fail_page_alloc/ignore-gfp-wait", "N"),
            ("fail_page_alloc/ignore-gfp-highmem", "N"),
            ("fail_page_alloc/min-order", "0"),
            ("failslab/verbose", "0"),
            ("fail_page_alloc/verbose", "0"),
            ("fail_usercopy/verbose", "0"),
        ] {
            let p = format!("/sys/kernel/debug/{knob}");
            std::fs::write(&p, val).unwrap_or_else(|e| panic!("{p}: {e}"));
        }
        let fd = nix::fcntl::open(
            "/proc/thread-self/fail-nth",
            nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .expect("fail-nth (CONFIG_FAULT_INJECTION)");
        FailNth { fd }
    }

    pub fn arm(&self, n: u32) {
        nix::sys::uio::pwrite(&self.fd, n.to_string().as_bytes(), 0).expect("arm fail-nth");
    }

    /// Whether the armed fault was injected into the operation; disarms.
    pub fn fired(&self) -> bool {
        let mut b = [0u8; 16];
        // This read copies to user space, itself a fault-injection point: if
        // the fault was still pending it fires here (EFAULT), which means the
        // operation did not take it.
        let left: u32 = match nix::sys::uio::pread(&self.fd, &mut b, 0) {
            Ok(k) => std::str::from_utf8(&b[..k])
                .unwrap()
                .trim()
                .parse()
                .unwrap(),
            Err(Errno::EFAULT) => 1,
            Err(e) => panic!("read fail-nth: {e}"),
        };
        let _ = nix::sys::uio::pwrite(&self.fd, b"0", 0);
        left == 0
    }

    /// Sweeps `step` over every injection point. `state` holds the value the
    /// step consumes; a failed step must hand it back (it is checked with
    /// `intact`), a successful one is undone with `undo` (outside injection).
    /// Returns what was seen.
    pub fn sweep<S, T>(
        &self,
        name: &str,
        state: &mut Option<S>,
        mut step: impl FnMut(S) -> Result<T, (S, Option<Errno>)>,
        mut undo: impl FnMut(T) -> S,
        mut intact: impl FnMut(&S),
    ) -> Sweep {
        let mut out = Sweep {
            name: name.to_string(),
            ..Sweep::default()
        };
        for n in 1..10_000 {
            let s = state.take().expect("state present between steps");
            self.arm(n);
            let r = step(s);
            let fired = self.fired();
            match r {
                Ok(t) => {
                    *state = Some(undo(t));
                    if !fired {
                        return out;
                    }
                    out.absorbed += 1;
                }
                Err((s, errno)) => {
                    assert!(
                        fired,
                        "{name}: failed with nothing injected (n = {n}): {errno:?}"
                    );
                    intact(&s);
                    *state = Some(s);
                    out.failed.push(errno);
                }
            }
        }
        panic!("{name}: no end to the injection points");
    }
}

/// What a sweep saw: the errno of each injected failure, and the injections
/// the kernel absorbed (the call still succeeded).
#[derive(Debug, Default)]
pub struct Sweep {
    pub name: String,
    pub failed: Vec<Option<Errno>>,
    pub absorbed: usize,
}

impl Sweep {
    /// Every injection point, failed or absorbed.
    pub fn points(&self) -> usize {
        self.failed.len() + self.absorbed
    }

    /// One row of the table the tests print: points and errnos.
    pub fn row(&self, raw: Option<&Sweep>) -> String {
        let mut errnos: Vec<String> = Vec::new();
        for e in &self.failed {
            let s = e.map_or("none".to_string(), |e| format!("{e:?}"));
            match errnos.iter_mut().find(|x| x.starts_with(&s)) {
                Some(x) => {
                    let n: usize = x
                        .rsplit('×')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(1);
                    *x = format!("{s} ×{}", n + 1);
                }
                None => errnos.push(format!("{s} ×1")),
            }
        }
        format!(
            "fault: | {} | {} | {} | {} | {} |",
            self.name,
            raw.map_or("-".to_string(), |r| r.points().to_string()),
            self.points(),
            self.absorbed,
            errnos.join(", ")
        )
    }
}
