//! Ordered maps keyed by IOVA that stay flat as they grow: the live
//! mappings of an IOAS (`iova -> len`, [`Table`]) and the free holes the
//! IOVA chooser indexes ([`crate::gaps`]).
//!
//! Every map and unmap through the crate inserts or removes one entry,
//! under the IOAS's lock, so this sits on the hot path of the smallest
//! mappings, at every number of live mappings. A [`Sorted`] is a sorted
//! vector of *runs*, each a sorted vector of at most [`RUN`] entries:
//!
//! - a lookup is a binary search over the runs' first keys and one within
//!   a run, with no pointer chasing between levels of a tree;
//! - an insert or remove moves at most a run (2 KiB: glibc copies that
//!   with vector moves, below its `rep movsb` threshold), and splits or
//!   merges a run once in `RUN / 2` changes at worst;
//! - an entry above every other (lowest-first IOVAs handed out in rising
//!   order, and their unmap) is a `push` or `pop` on the last run: no
//!   search at all.
//!
//! Measured with callgrind on the host, a 4 KiB map + unmap at the
//! chooser's IOVA spent 1 540 instructions in the record and the chooser
//! with 16 384 live mappings when they were `BTreeMap`s (whose nodes hold
//! 11 keys: about five levels of linear search each way), against 175 with
//! one live mapping; the README's bench table has the guest's numbers.
//!
//! The top level is itself a vector: past about a million entries (8 192
//! runs) a run split or merge moves a few hundred KiB of it, once in
//! `RUN / 2` changes in the middle of the map; appends never do.

/// Entries per run at most.
pub(crate) const RUN: usize = 128;

/// The live mappings of an IOAS, `iova -> len`, ordered by IOVA.
pub(crate) type Table = Sorted<u64>;

/// One run: its entries by key, and a copy of its first key, so that the
/// search over runs reads one array.
#[derive(Debug)]
struct Run<V> {
    first: u64,
    items: Vec<(u64, V)>,
}

/// A map from `u64` keys to `V`, ordered by key (see the module docs).
///
/// Invariants: every run holds between 1 and [`RUN`] entries, except the
/// last, which may be empty (so that a map whose highest entries come and
/// go, at any size, keeps its allocations); runs are ordered by key and do
/// not overlap; each run's `first` is its first key, or `u64::MAX` when it
/// is empty (so that no search for a key below that lands in it).
#[derive(Debug)]
pub(crate) struct Sorted<V> {
    runs: Vec<Run<V>>,
}

impl<V: Copy> Sorted<V> {
    pub(crate) const fn new() -> Sorted<V> {
        Sorted { runs: Vec::new() }
    }

    /// The index of the run where `key` is or would go: the last whose
    /// first key is at most `key`, or the first.
    #[inline]
    fn run_of(&self, key: u64) -> usize {
        if self.runs.len() <= 1 {
            return 0;
        }
        let at = self
            .runs
            .partition_point(|r| r.first <= key)
            .saturating_sub(1);
        // `key == u64::MAX` finds an empty last run: the one before it.
        if at > 0 && self.runs[at].items.is_empty() {
            return at - 1;
        }
        at
    }

    /// Where `key` is (`Ok`) or would go (`Err`) in the run it belongs to:
    /// that run's index and the position in it; `None` when there is no
    /// run.
    #[inline]
    fn locate(&self, key: u64) -> Option<(usize, Result<usize, usize>)> {
        let at = self.run_of(key);
        let run = self.runs.get(at)?;
        Some((at, run.items.binary_search_by_key(&key, |e| e.0)))
    }

    /// All the entries, when the map is one run (the walk of
    /// [`crate::gaps`] wants a short slice), or `None`.
    #[inline]
    pub(crate) fn only_run(&self) -> Option<&[(u64, V)]> {
        match self.runs.as_slice() {
            [] => Some(&[]),
            [r] => Some(&r.items),
            _ => None,
        }
    }

    /// Records `key -> v`, replacing an entry at the same key.
    #[inline]
    pub(crate) fn insert(&mut self, key: u64, v: V) {
        // Above every entry, with room in the last run: no search, no move,
        // no call.
        let n = self.runs.len();
        if let Some(r) = self.runs.last() {
            let above = match r.items.last() {
                Some(l) => l.0 < key,
                // An empty last run: above the run before it.
                None => n == 1 || self.runs[n - 2].items.last().is_some_and(|l| l.0 < key),
            };
            if above && r.items.len() < RUN.min(r.items.capacity()) {
                let r = &mut self.runs[n - 1];
                if r.items.is_empty() {
                    r.first = key;
                }
                r.items.push((key, v));
                return;
            }
        }
        self.insert_slow(key, v);
    }

    #[inline(never)]
    fn insert_slow(&mut self, key: u64, v: V) {
        let Some((at, found)) = self.locate(key) else {
            let mut items = Vec::with_capacity(4);
            items.push((key, v));
            self.runs.push(Run { first: key, items });
            return;
        };
        let (last, next_empty) = match self.runs.get(at + 1) {
            None => (true, false),
            Some(next) => (false, next.items.is_empty()),
        };
        let run = &mut self.runs[at];
        let i = match found {
            Ok(i) => {
                run.items[i].1 = v;
                return;
            }
            Err(i) => i,
        };
        if run.items.len() < RUN {
            run.items.insert(i, (key, v));
            run.first = run.items[0].0;
            return;
        }
        if i == RUN && next_empty {
            // Above a full run, and the empty last run is next: into it.
            let next = &mut self.runs[at + 1];
            next.items.push((key, v));
            next.first = key;
            return;
        }
        // A full run. Appended above everything: a new run of its own, so
        // that rising keys leave full runs behind. Otherwise the upper half
        // moves into a new run after this one.
        let tail = if last && i == RUN {
            let mut items = Vec::with_capacity(RUN);
            items.push((key, v));
            items
        } else {
            let mut items = Vec::with_capacity(RUN);
            items.extend(run.items.drain(RUN / 2..));
            if i <= RUN / 2 {
                run.items.insert(i, (key, v));
                run.first = run.items[0].0;
            } else {
                items.insert(i - RUN / 2, (key, v));
            }
            items
        };
        let first = tail[0].0;
        self.runs.insert(at + 1, Run { first, items: tail });
    }

    /// Forgets the entry at `key`; returns its value.
    #[inline]
    pub(crate) fn remove(&mut self, key: u64) -> Option<V> {
        // The highest entry: a `pop` (the newest mapping is often the
        // first unmapped). The last run stays, even empty.
        if let Some(r) = self.runs.last_mut() {
            if r.items.last().is_some_and(|l| l.0 == key) {
                let v = r.items.pop().map(|e| e.1);
                if r.items.is_empty() {
                    r.first = u64::MAX;
                }
                return v;
            }
        }
        self.remove_slow(key)
    }

    #[inline(never)]
    fn remove_slow(&mut self, key: u64) -> Option<V> {
        let (at, Ok(i)) = self.locate(key)? else {
            return None;
        };
        let last = at + 1 == self.runs.len();
        let run = &mut self.runs[at];
        let v = run.items.remove(i).1;
        if let Some(f) = run.items.first() {
            run.first = f.0;
        }
        let len = run.items.len();
        if len == 0 {
            if last {
                run.first = u64::MAX;
            } else {
                self.runs.remove(at);
            }
        } else if len < RUN / 8 && self.runs.len() > 1 {
            self.merge_around(at);
        }
        Some(v)
    }

    /// Merges the short run `at` into a neighbour when both fit in one.
    #[cold]
    fn merge_around(&mut self, at: usize) {
        let len = self.runs[at].items.len();
        let (into, from) = if at + 1 < self.runs.len() && self.runs[at + 1].items.len() + len <= RUN
        {
            (at, at + 1)
        } else if at > 0 && self.runs[at - 1].items.len() + len <= RUN {
            (at - 1, at)
        } else {
            return;
        };
        let moved = self.runs.remove(from);
        self.runs[into].items.extend_from_slice(&moved.items);
    }

    /// The value at `key`.
    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<&V> {
        let (at, Ok(i)) = self.locate(key)? else {
            return None;
        };
        Some(&self.runs[at].items[i].1)
    }

    /// The value at `key`, to change in place.
    #[inline]
    pub(crate) fn get_mut(&mut self, key: u64) -> Option<&mut V> {
        let (at, Ok(i)) = self.locate(key)? else {
            return None;
        };
        Some(&mut self.runs[at].items[i].1)
    }

    /// The first entry whose key is at least `key`, its value to change in
    /// place.
    #[inline]
    pub(crate) fn first_from(&mut self, key: u64) -> Option<(u64, &mut V)> {
        let mut at = self.run_of(key);
        let mut i = self.runs.get(at)?.items.partition_point(|e| e.0 < key);
        if i == self.runs[at].items.len() {
            // Past this run: the next run's first entry.
            at += 1;
            i = 0;
        }
        let e = self.runs.get_mut(at)?.items.get_mut(i)?;
        Some((e.0, &mut e.1))
    }

    /// The entry with the highest key below `end`.
    #[inline]
    pub(crate) fn last_before(&self, end: u64) -> Option<(u64, V)> {
        self.last_where(|k| k < end)
    }

    /// The entry with the highest key at most `key`.
    #[inline]
    pub(crate) fn last_at_most(&self, key: u64) -> Option<(u64, V)> {
        self.last_where(|k| k <= key)
    }

    /// The last entry whose key `below` holds for, `below` true for every
    /// key under some bound and false above.
    #[inline(always)]
    fn last_where(&self, below: impl Fn(u64) -> bool) -> Option<(u64, V)> {
        // An empty last run's `first` is `u64::MAX`: only `below(u64::MAX)`
        // takes it, and then the entry sought is in the run before.
        let mut at = self
            .runs
            .partition_point(|r| below(r.first))
            .checked_sub(1)?;
        if at > 0 && self.runs[at].items.is_empty() {
            at -= 1;
        }
        let items = &self.runs[at].items;
        let i = items.partition_point(|e| below(e.0)).checked_sub(1)?;
        Some(items[i])
    }

    /// The entries from the first whose key is at least `from`, by key.
    #[inline]
    pub(crate) fn iter_from(&self, from: u64) -> impl Iterator<Item = (u64, V)> + '_ {
        let at = self.run_of(from);
        let skip = self
            .runs
            .get(at)
            .map_or(0, |r| r.items.partition_point(|e| e.0 < from));
        self.runs
            .get(at..)
            .unwrap_or_default()
            .iter()
            .flat_map(|r| r.items.iter().copied())
            .skip(skip)
    }

    /// Every entry, by key.
    #[inline]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, V)> + '_ {
        self.runs.iter().flat_map(|r| r.items.iter().copied())
    }

    /// The first entry.
    #[inline]
    pub(crate) fn first(&self) -> Option<(u64, V)> {
        self.runs.first()?.items.first().copied()
    }

    /// The first entry, its value to change in place.
    #[inline]
    pub(crate) fn first_mut(&mut self) -> Option<(u64, &mut V)> {
        let e = self.runs.first_mut()?.items.first_mut()?;
        Some((e.0, &mut e.1))
    }

    /// Whether the map holds nothing.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.runs.first().is_none_or(|r| r.items.is_empty())
    }

    /// Every entry, by key.
    pub(crate) fn entries(&self) -> Vec<(u64, V)> {
        self.iter().collect()
    }
}

impl<V: Copy> Default for Sorted<V> {
    fn default() -> Sorted<V> {
        Sorted::new()
    }
}

impl Table {
    /// Whether one entry covers all of `[lo, hi)`: the common case of a
    /// dirty read inside one mapping, answered with one search.
    #[inline]
    pub(crate) fn one_covers(&self, lo: u64, hi: u64) -> bool {
        self.last_at_most(lo)
            .is_some_and(|(s, l)| s.saturating_add(l) >= hi)
    }

    /// Calls `f(iova, len)` for each entry that overlaps `[lo, hi)`, by
    /// IOVA; no allocation.
    #[inline]
    pub(crate) fn overlapping(&self, lo: u64, hi: u64, mut f: impl FnMut(u64, u64)) {
        if let Some((s, l)) = self.last_before(lo) {
            if s.saturating_add(l) > lo {
                f(s, l);
            }
        }
        for (s, l) in self.iter_from(lo) {
            if s >= hi {
                break;
            }
            f(s, l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The table answers like a `BTreeMap` through growth to many runs,
    /// shrinking, replacing and lookups at every boundary.
    #[test]
    fn agrees_with_a_btreemap() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for keys in [8u64, 100, 1000, 5000] {
            let mut t = Table::new();
            let mut m = BTreeMap::new();
            for step in 0..40_000 {
                // Phases: grow, churn, shrink almost to nothing, grow again
                // in rising order.
                let phase = step / 10_000;
                let k = if phase == 3 {
                    (step as u64 % keys) * 0x1000
                } else {
                    rand(keys) * 0x1000
                };
                let grow = match phase {
                    0 | 3 => rand(4) != 0,
                    1 => rand(2) == 0,
                    _ => rand(8) == 0,
                };
                if grow {
                    let l = rand(16) + 1;
                    t.insert(k, l);
                    m.insert(k, l);
                } else {
                    assert_eq!(t.remove(k), m.remove(&k), "remove {k:#x}");
                }
                let end = rand(keys + 2) * 0x1000 + rand(2) * 0x800;
                assert_eq!(
                    t.last_before(end),
                    m.range(..end).next_back().map(|(&s, &l)| (s, l)),
                    "last_before {end:#x}"
                );
                assert_eq!(t.get(end), m.get(&end));
                assert_eq!(
                    t.last_at_most(end),
                    m.range(..=end).next_back().map(|(&s, &l)| (s, l)),
                    "last_at_most {end:#x}"
                );
                let mut t_next = t.first_from(end).map(|(k, v)| (k, *v));
                let m_next = m.range(end..).next().map(|(&k, &v)| (k, v));
                assert_eq!(t_next.take(), m_next, "first_from {end:#x}");
                assert_eq!(
                    t.iter_from(end).take(3).collect::<Vec<_>>(),
                    m.range(end..)
                        .take(3)
                        .map(|(&k, &v)| (k, v))
                        .collect::<Vec<_>>()
                );
                assert_eq!(t.is_empty(), m.is_empty());
                assert_eq!(t.first(), m.first_key_value().map(|(&k, &v)| (k, v)));
            }
            let want: Vec<(u64, u64)> = m.iter().map(|(&s, &l)| (s, l)).collect();
            assert_eq!(t.entries(), want);
            for r in &t.runs {
                assert!(r.items.len() <= RUN);
                match r.items.first() {
                    Some(f) => assert_eq!(r.first, f.0),
                    None => assert_eq!(r.first, u64::MAX),
                }
            }
            for r in &t.runs[..t.runs.len().saturating_sub(1)] {
                assert!(!r.items.is_empty(), "only the last run may be empty");
            }
            if keys > RUN as u64 * 2 {
                assert!(t.runs.len() > 1, "grew into several runs");
            }
        }
    }

    /// Rising keys fill runs to the brim, and the top-level vector stays
    /// short.
    #[test]
    fn rising_keys_fill_runs() {
        let mut t = Table::new();
        for k in 1..=16 * RUN as u64 {
            t.insert(k * 0x1000, 0x1000);
        }
        assert_eq!(t.runs.len(), 16);
        assert!(t.runs.iter().all(|r| r.items.len() == RUN));
        assert!(t.only_run().is_none());
    }

    #[test]
    fn overlaps_and_covers() {
        let mut t = Table::new();
        for k in 0..1000u64 {
            t.insert(k * 0x3000, 0x2000);
        }
        let mut seen = Vec::new();
        t.overlapping(0x4000, 0xa000, |s, l| seen.push((s, l)));
        assert_eq!(seen, [(0x3000, 0x2000), (0x6000, 0x2000), (0x9000, 0x2000)]);
        assert!(t.one_covers(0x6000, 0x8000));
        assert!(!t.one_covers(0x6000, 0x8001));
        assert!(!t.one_covers(0x8000, 0x8001));
    }
}
