//! Interleaved timing: every side of a row runs in each round, the order
//! rotating from round to round (and reversed every other round), after a
//! warm-up. A row prints each side's median time per operation and, for the
//! crate against each other side, the median and min–max of the per-round
//! ratio. Asserts nothing about time.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The columns, in order: the baseline, the crate, then the peers.
pub const SIDES: [&str; 4] = ["raw", "crate", "iommufd-ioctls", "vfio-ioctls"];

/// One side of a row: its column in [`SIDES`] and one operation.
pub type Side<'a> = (&'static str, &'a mut dyn FnMut());

thread_local! {
    static UNTIMED: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Runs `f` (set-up or teardown inside an operation) off the clock.
pub fn untimed<T>(f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    UNTIMED.with(|u| u.set(u.get() + t.elapsed()));
    r
}

/// Rounds per row: `IOMMUFD_BENCH_ROUNDS`, default 21.
fn rounds() -> usize {
    std::env::var("IOMMUFD_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(21)
}

/// Nanoseconds per call of `f` over `iters` calls, less what ran [`untimed`].
fn batch(iters: u32, f: &mut dyn FnMut()) -> f64 {
    UNTIMED.with(|u| u.set(Duration::ZERO));
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    let spent = t.elapsed().saturating_sub(UNTIMED.with(Cell::get));
    spent.as_nanos() as f64 / f64::from(iters)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Prints the table's header: each side's time, and after the crate's,
/// the crate against each other side.
pub fn header() {
    if std::env::var("IOMMUFD_BENCH_CLOCK").is_ok_and(|c| c == "icount") {
        println!(
            "bench: clock: QEMU -icount shift=0: 1 ns in this table is one guest instruction (kernel and user), so rows repeat exactly from run to run"
        );
    } else {
        println!("bench: clock: the guest's, under TCG on a shared host: ratios, not absolute times; look at the spread");
    }
    let mut h = String::from("bench: | operation |");
    let mut rule = String::from("bench: |---|");
    for s in SIDES {
        h += &format!(" {s} |");
        rule += "---|";
        if s == "crate" {
            h += " crate/raw (min–max) |";
            rule += "---|";
        } else if s != "raw" {
            h += &format!(" crate/{s} (min–max) |");
            rule += "---|";
        }
    }
    println!("{h}\n{rule}");
}

/// Times every side of `sides` (one of them "crate") in interleaved rounds
/// and prints one table row; sides absent from `sides` print "—".
pub fn row(name: &str, iters: u32, sides: &mut [Side<'_>]) {
    // `IOMMUFD_BENCH_ONLY=text`: only the rows whose name contains it.
    if std::env::var("IOMMUFD_BENCH_ONLY").is_ok_and(|only| !name.contains(&only)) {
        return;
    }
    let n = sides.len();
    for (_, f) in sides.iter_mut() {
        batch(iters.div_ceil(10).max(1), *f);
    }
    let mut times = vec![Vec::new(); n];
    let mut said = Instant::now();
    for round in 0..rounds() {
        // Long rows (bring-up of 16 devices) tell the harness's watchdog
        // (90 s of host time) they are alive; under -icount the guest's
        // clock runs several times slower than the host's.
        if said.elapsed() > Duration::from_secs(10) {
            eprintln!("bench: ... {name}: round {round}");
            said = Instant::now();
        }
        let mut order: Vec<usize> = (0..n).map(|i| (i + round) % n).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let t = batch(iters, sides[i].1);
            times[i].push(t);
        }
    }
    let ours = sides
        .iter()
        .position(|(s, _)| *s == "crate")
        .expect("a row has a crate side");
    let ratio = |i: usize| {
        let r: Vec<f64> = times[ours]
            .iter()
            .zip(&times[i])
            .map(|(o, t)| o / t)
            .collect();
        let (lo, hi) = r
            .iter()
            .fold((f64::MAX, 0f64), |(l, h), &x| (l.min(x), h.max(x)));
        format!(" {:.3} ({lo:.2}–{hi:.2}) |", median(&r))
    };
    let raw = sides.iter().position(|(s, _)| *s == "raw");
    let mut line = format!("bench: | {name} |");
    for col in SIDES {
        let at = sides.iter().position(|(s, _)| *s == col);
        match at {
            Some(i) => line += &format!(" {:.0} ns |", median(&times[i])),
            None => line += " — |",
        }
        match (col, at) {
            ("raw", _) => {}
            ("crate", _) => line += &raw.map_or(" — |".to_string(), ratio),
            (_, Some(i)) => line += &ratio(i),
            (_, None) => line += " — |",
        }
    }
    println!("{line}");
}
