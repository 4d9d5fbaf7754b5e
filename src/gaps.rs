//! IOVAs chosen in user space for [`Iova::Any`](crate::Iova::Any).
//!
//! The kernel's allocator (`iopt_alloc_iova` in iommufd's
//! `io_pagetable.c`) walks every used span of the IOAS from the bottom to
//! find the lowest hole that fits, so a map at a kernel-chosen IOVA costs
//! time linear in the live mappings (measured in the README's bench table:
//! 27 times more with 4096 live mappings than with one), while a map at a
//! fixed IOVA does not. The crate keeps a record of every live mapping of
//! an IOAS it owns anyway, so it chooses the IOVA itself by the kernel's
//! rules and maps it fixed:
//!
//! - lowest first, from the page above 0 to the page below the top (the
//!   kernel never hands out IOVA 0), inside the ranges allowed with
//!   `allow_iovas` and outside the reserved regions the kernel reported;
//! - aligned as the kernel aligns: to the mapping's length rounded up to a
//!   power of two, but no more than the address (or file offset) is
//!   aligned, and no more than a huge page, so huge mappings still get huge
//!   IOMMU pages.
//!
//! What the crate does not see, it learns from a refusal, never from a
//! query before the map: the reserved regions of attached devices (the
//! kernel answers `EINVAL` for a fixed IOVA inside one; the crate then
//! reads `IOMMU_IOAS_IOVA_RANGES` once and chooses again) and mappings
//! made outside the crate (`EEXIST`: from then on the kernel chooses for
//! that IOAS). Either way the caller gets a mapping, never an error the
//! kernel-chosen call would not give.
//!
//! Up to [`WALK`] live mappings the lowest hole is found by walking the
//! record. Past that, the free holes are indexed (in [`Sorted`] maps, as
//! the record is), by address and by size class:
//!
//! - the lowest hole, if it fits, holds the answer; for pages at page
//!   alignment every hole fits, so this is the common case, and taking
//!   from that hole's bottom (and giving it back at unmap) changes one
//!   value in place: no search at all, at any number of live mappings;
//! - otherwise the lowest hole that fits is the lowest first entry among
//!   the classes whose every hole fits, unless a lower hole in a smaller
//!   class fits too, which only those classes' holes below that entry are
//!   checked for. A map or unmap updates O(1) holes, each O(log K).
//!
//! Measured with callgrind on the host, the record and the chooser spent
//! about 160 instructions on a 4 KiB map + unmap with one live mapping and
//! 235 with 16 384 (1 540 with `BTreeMap`s). `tests/guest_overhead.rs`
//! counts the whole map + unmap in the guest (rows "any" and "many"), and
//! the README's bench table has the kernel's side too.

use crate::table::{Sorted, Table};
use crate::IovaRange;

/// The kernel's `PAGE_SIZE` on the architectures the crate runs on.
const PAGE: u64 = 4096;
/// The kernel's cap on the alignment it gives a kernel-chosen IOVA
/// (`HPAGE_SIZE` with transparent huge pages).
const HPAGE: u64 = 2 << 20;
/// The lowest and highest IOVA the kernel's allocator hands out.
const LOWEST: u64 = PAGE;
const HIGHEST: u64 = u64::MAX - PAGE;
/// Where IOVAs go before the crate knows any more.
const EVERYWHERE: &[(u64, u64)] = &[(LOWEST, HIGHEST)];
/// Live mappings up to which the lowest hole is found by walking the
/// record rather than through the index of holes.
const WALK: usize = 4;

/// Where a kernel-chosen IOVA may go, and the index of free holes.
#[derive(Debug)]
pub(crate) struct Chooser {
    /// The kernel chooses for this IOAS from now on: something maps it that
    /// the crate did not (`EEXIST` at an IOVA chosen here), or it was
    /// adopted with mappings the crate does not know.
    pub(crate) kernel: bool,
    /// The IOAS's alignment as reported (1 before any report).
    alignment: u64,
    /// The rest, made when first needed, so that an IOAS that never needs
    /// it carries one pointer (its allocation and drop stay as cheap).
    more: Option<Box<More>>,
}

#[derive(Debug, Default)]
struct More {
    /// Usable IOVA, inclusive `(start, last)` spans by address: what the
    /// kernel reported usable, within the allow-list and `[LOWEST,
    /// HIGHEST]`; `None` for [`EVERYWHERE`].
    usable: Option<Vec<(u64, u64)>>,
    /// What the kernel reported (`IOMMU_IOAS_IOVA_RANGES`), once it refused
    /// an IOVA chosen here.
    reported: Option<Vec<(u64, u64)>>,
    /// Ranges mapped in the kernel that no mapping of the crate records
    /// (a handover's), kept out of every choice.
    foreign: Vec<(u64, u64)>,
    /// The free holes, past `WALK` live mappings; built when first needed.
    index: Option<Index>,
}

impl More {
    /// The usable spans (see `usable`).
    #[inline]
    fn usable(usable: &Option<Vec<(u64, u64)>>) -> &[(u64, u64)] {
        usable.as_deref().unwrap_or(EVERYWHERE)
    }

    /// `usable` again, from what the kernel reported and the IOAS's
    /// allow-list (empty for none).
    fn recompute(&mut self, allowed: &[IovaRange]) {
        let base = self.reported.as_deref().unwrap_or(&[(0, u64::MAX)]);
        let mut usable = intersect(base, EVERYWHERE);
        if !allowed.is_empty() {
            let allowed: Vec<(u64, u64)> = allowed.iter().map(|r| (r.start, r.last)).collect();
            usable = intersect(&usable, &allowed);
        }
        self.usable = Some(usable);
        self.index = None;
    }
}

/// Free holes, inclusive, by address and by size class. Both are keyed by
/// a hole's last IOVA: taking from a hole's bottom (as lowest-first does)
/// and freeing right below a hole change only its start, a value updated
/// in place, so the common map and unmap move no entry (and allocate
/// nothing); a hole changes class only when its length crosses a power of
/// two.
#[derive(Debug)]
struct Index {
    /// `last -> start`.
    holes: Sorted<u64>,
    /// Class `c` holds the last IOVAs of the holes whose `last - start` has
    /// its highest bit at `c` (lengths `2^c + 1 ..= 2^(c+1)`).
    classes: [Sorted<()>; 64],
    /// Bit `c` set when class `c` is not empty.
    nonempty: u64,
    /// The key of the hole whose start changed last: where lowest-first
    /// takes from next, and what an unmap of that mapping gives back to.
    /// A hint, checked before it is used; it saves the range searches of
    /// the common map and unmap.
    recent: u64,
}

#[inline(always)]
fn class(start: u64, last: u64) -> usize {
    // `| 1`: a hole of one byte is class 0, as one of two.
    ((last - start) | 1).ilog2() as usize
}

impl Index {
    fn new() -> Index {
        Index {
            holes: Sorted::new(),
            classes: std::array::from_fn(|_| Sorted::new()),
            nonempty: 0,
            recent: 0,
        }
    }

    fn add(&mut self, start: u64, last: u64) {
        self.holes.insert(last, start);
        let c = class(start, last);
        self.classes[c].insert(last, ());
        self.nonempty |= 1 << c;
    }

    fn drop_hole(&mut self, start: u64, last: u64) {
        self.holes.remove(last);
        self.unclass(class(start, last), last);
    }

    fn unclass(&mut self, c: usize, last: u64) {
        self.classes[c].remove(last);
        if self.classes[c].is_empty() {
            self.nonempty &= !(1 << c);
        }
    }

    /// The hole ending at `last` now starts at `new` (was `old`), already
    /// written in `holes`; its class follows.
    #[inline(always)]
    fn restarted(&mut self, last: u64, old: u64, new: u64) {
        self.recent = last;
        let (was, is) = (class(old, last), class(new, last));
        if was != is {
            self.reclass(last, was, is);
        }
    }

    /// The hole ending at `last` moves from class `was` to `is`: out of
    /// line, so that the common map and unmap stay short.
    #[inline(never)]
    fn reclass(&mut self, last: u64, was: usize, is: usize) {
        self.unclass(was, last);
        self.classes[is].insert(last, ());
        self.nonempty |= 1 << is;
    }

    /// Frees `[start, last]` (inside a usable span, free of mappings),
    /// merged with the holes beside it.
    // Out of line (as `take`): inlined, it lengthened every map and unmap
    // through the IOAS (the record's hooks), index or not, by about ten
    // instructions, more than the call costs where there is an index.
    #[inline(never)]
    fn free(&mut self, start: u64, last: u64) {
        // Right below the lowest hole (lowest first gives back what it took
        // last): no hole lies below to merge with, and that hole starts
        // lower now.
        if let Some((l, s)) = self.holes.first_mut() {
            if last.checked_add(1) == Some(*s) {
                let old = std::mem::replace(s, start);
                self.restarted(l, old, start);
                return;
            }
        }
        self.free_slow(start, last);
    }

    #[inline(never)]
    fn free_slow(&mut self, mut start: u64, last: u64) {
        if let Some(below) = start.checked_sub(1) {
            if let Some(&s) = self.holes.get(below) {
                self.drop_hole(s, below);
                start = s;
            }
        }
        if let Some(next) = last.checked_add(1) {
            let recent = self.recent;
            if let Some(s) = self.holes.get_mut(recent).filter(|s| **s == next) {
                *s = start;
                self.restarted(recent, next, start);
                return;
            }
            if let Some((l, s)) = self.holes.first_from(next) {
                if *s == next {
                    *s = start;
                    self.restarted(l, next, start);
                    return;
                }
            }
        }
        self.add(start, last);
    }

    /// Takes `[start, last]` out of the holes, wherever it overlaps them.
    #[inline(never)]
    fn take(&mut self, start: u64, last: u64) {
        // The bottom of the lowest hole, which lowest first takes whenever
        // it fits: that hole starts above now.
        if let Some((l, s)) = self.holes.first_mut() {
            if *s == start && l > last {
                *s = last + 1;
                self.restarted(l, start, last + 1);
                return;
            }
        }
        self.take_slow(start, last);
    }

    #[inline(never)]
    fn take_slow(&mut self, start: u64, last: u64) {
        let recent = self.recent;
        if recent > last {
            if let Some(s) = self.holes.get_mut(recent).filter(|s| **s == start) {
                *s = last + 1;
                self.restarted(recent, start, last + 1);
                return;
            }
        }
        while let Some((hl, hs)) = self.holes.first_from(start) {
            let s = *hs;
            if s > last {
                return;
            }
            if hl > last {
                // The hole reaches above: it keeps its key and starts above
                // the range (the common case: lowest first takes a hole's
                // bottom), and what lay below the range is a hole of its own.
                *hs = last + 1;
                self.restarted(hl, s, last + 1);
                if s < start {
                    self.add(s, start - 1);
                }
                return;
            }
            // The hole ends inside the range: what lay below it stays a
            // hole (keyed below `start`, so not met again); look above.
            self.drop_hole(s, hl);
            if s < start {
                self.add(s, start - 1);
            }
        }
    }

    /// The lowest IOVA of a hole that fits `len` at `align`.
    #[inline(always)]
    fn find(&self, len: u64, align: u64) -> Option<u64> {
        // The lowest hole, if it fits, holds the lowest fit: every hole
        // above it starts above it. For pages at page alignment every hole
        // fits, so this is the common answer.
        let (l, s) = self.holes.first()?;
        match fit(s, l, len, align) {
            Some(at) => Some(at),
            None => self.find_above(len, align),
        }
    }

    /// [`find`](Self::find) when the lowest hole does not fit.
    #[inline(never)]
    fn find_above(&self, len: u64, align: u64) -> Option<u64> {
        let mut best: Option<u64> = None;
        // By class, smallest first; in each, by address, up to the first
        // hole that fits (the first one, in a class whose holes are all at
        // least `len + align - 1` long) or past the best so far.
        // Classes whose longest hole, `2^(c+1)` bytes, is shorter than
        // `len` are skipped: `c + 1 >= ceil(log2(len))`.
        let least = (u64::BITS - (len - 1).leading_zeros()).saturating_sub(1);
        let mut bits = self.nonempty & (u64::MAX << least);
        while bits != 0 {
            let c = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            for (l, ()) in self.classes[c].iter() {
                if best.is_some_and(|b| l >= b) {
                    break;
                }
                let Some(&s) = self.holes.get(l) else { break };
                if let Some(at) = fit(s, l, len, align) {
                    best = Some(at);
                    break;
                }
            }
        }
        best
    }
}

/// Where `len` bytes aligned to `align` start in the hole `[start, last]`,
/// if they fit (the kernel's `__alloc_iova_check_range`).
#[inline]
fn fit(start: u64, last: u64, len: u64, align: u64) -> Option<u64> {
    // `align` is a power of two.
    let at = start.checked_add(align - 1)? & !(align - 1);
    (at < last && last - at >= len - 1).then_some(at)
}

/// The alignment the kernel gives a kernel-chosen IOVA for `len` bytes of
/// memory at address (or file offset) `hint`; `None` where the crate leaves
/// the choice to the kernel (a sub-page address, an absurd length).
#[inline]
pub(crate) fn alignment(len: u64, hint: u64) -> Option<u64> {
    if len == 0 || len >= u64::MAX / 2 || hint % PAGE != 0 {
        return None;
    }
    let mut align = len.next_power_of_two();
    if hint != 0 {
        align = align.min(1 << hint.trailing_zeros());
    }
    Some(align.min(HPAGE))
}

/// The intersection of two sets of inclusive spans, each by address.
fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(s, l) in a {
        for &(bs, bl) in b {
            let (lo, hi) = (s.max(bs), l.min(bl));
            if lo <= hi {
                out.push((lo, hi));
            }
        }
    }
    out.sort_unstable();
    out
}

impl Chooser {
    pub(crate) const fn new() -> Chooser {
        Chooser {
            kernel: false,
            alignment: 1,
            more: None,
        }
    }

    fn more(&mut self) -> &mut More {
        self.more.get_or_insert_with(Default::default)
    }

    #[inline]
    fn usable(&self) -> &[(u64, u64)] {
        self.more
            .as_ref()
            .map_or(EVERYWHERE, |m| More::usable(&m.usable))
    }

    /// The IOAS's allow-list changed to `allowed` (empty for none).
    pub(crate) fn set_allowed(&mut self, allowed: &[IovaRange]) {
        self.more().recompute(allowed);
    }

    /// What the kernel reports usable, and its alignment, after it refused
    /// an IOVA chosen here, within the IOAS's allow-list `allowed`. False
    /// when that changed nothing (choosing again would choose the same).
    pub(crate) fn learn(
        &mut self,
        ranges: Vec<(u64, u64)>,
        alignment: u64,
        allowed: &[IovaRange],
    ) -> bool {
        let alignment = alignment.max(1);
        let same = self.alignment == alignment
            && self
                .more
                .as_ref()
                .is_some_and(|m| m.reported.as_ref() == Some(&ranges));
        self.alignment = alignment;
        let more = self.more();
        more.reported = Some(ranges);
        more.recompute(allowed);
        !same
    }

    /// Ranges mapped that no mapping of the crate records (a handover's):
    /// never chosen.
    pub(crate) fn foreign(&mut self, iova: u64, len: u64) {
        let more = self.more();
        // Unordered: the index that keeps them out sorts them with the
        // live mappings when it is built.
        more.foreign.push((iova, len));
        more.index = None;
    }

    /// Forgets what was known of the foreign ranges in `[iova, iova + len)`
    /// (unmapped by range) and of the index.
    pub(crate) fn unmapped_by_range(&mut self, iova: u64, len: u64) {
        let Some(more) = &mut self.more else { return };
        let end = iova.saturating_add(len);
        more.foreign
            .retain(|&(s, l)| s.saturating_add(l) <= iova || s >= end);
        more.index = None;
    }

    /// The IOVA to map `len` bytes at, for memory at `hint` (an address or
    /// file offset), among the live mappings `live` (by IOVA); `None` when
    /// the kernel should choose.
    #[inline]
    pub(crate) fn choose(&mut self, live: &Table, len: u64, hint: u64) -> Option<u64> {
        if self.kernel {
            return None;
        }
        let align = alignment(len, hint)?;
        if align < self.alignment {
            return None; // the kernel refuses it, and says why
        }
        // A short record, no index yet and nothing foreign: the walk.
        if let Some(v) = live.only_run().filter(|v| v.len() <= WALK) {
            if self
                .more
                .as_ref()
                .is_none_or(|m| m.foreign.is_empty() && m.index.is_none())
            {
                return walk(self.usable(), v, len, align);
            }
        }
        match self.more.as_ref().and_then(|m| m.index.as_ref()) {
            Some(index) => index.find(len, align),
            None => self.indexed(live).find(len, align),
        }
    }

    /// The index of holes, built from `live` when there is none.
    #[cold]
    #[inline(never)]
    fn indexed(&mut self, live: &Table) -> &mut Index {
        let more = self.more();
        let (usable, foreign) = (More::usable(&more.usable), &more.foreign);
        more.index.get_or_insert_with(|| {
            let mut used = live.entries();
            used.extend_from_slice(foreign);
            used.sort_unstable();
            let mut index = Index::new();
            holes(usable, &used, |s, l| {
                index.add(s, l);
                None::<()>
            });
            index
        })
    }

    /// A mapping was made at `[iova, iova + len)`.
    #[inline]
    pub(crate) fn mapped(&mut self, iova: u64, len: u64) {
        if let Some(index) = self.more.as_mut().and_then(|m| m.index.as_mut()) {
            index.take(iova, iova.saturating_add(len - 1));
        }
    }

    /// The mapping at `[iova, iova + len)` was unmapped.
    #[inline]
    pub(crate) fn unmapped(&mut self, iova: u64, len: u64) {
        let Some(more) = self.more.as_mut() else {
            return;
        };
        let Some(index) = more.index.as_mut() else {
            return;
        };
        let last = iova.saturating_add(len - 1);
        for &(s, l) in More::usable(&more.usable) {
            let (lo, hi) = (s.max(iova), l.min(last));
            if lo <= hi {
                index.free(lo, hi);
            }
        }
    }
}

/// Calls `f(start, last)` for each free hole of `usable` between the
/// `used` ranges (`(iova, len)`, by IOVA), lowest first, until it returns
/// `Some`, which is returned.
#[inline]
fn holes<T>(
    usable: &[(u64, u64)],
    used: &[(u64, u64)],
    mut f: impl FnMut(u64, u64) -> Option<T>,
) -> Option<T> {
    // Everything below `floor` is taken by a used range.
    let (mut i, mut floor) = (0, 0u64);
    for &(us, ul) in usable {
        let mut at = us.max(floor);
        while let Some(&(s, l)) = used.get(i) {
            if s > ul || at > ul {
                break;
            }
            if s > at {
                if let Some(t) = f(at, s - 1) {
                    return Some(t);
                }
            }
            // A range that runs to the top of the IOVA space leaves nothing.
            floor = floor.max(s.checked_add(l)?);
            at = at.max(floor);
            i += 1;
        }
        if at <= ul {
            if let Some(t) = f(at, ul) {
                return Some(t);
            }
        }
    }
    None
}

/// The lowest fit among the holes of `usable` between `used`.
#[inline]
fn walk(usable: &[(u64, u64)], used: &[(u64, u64)], len: u64, align: u64) -> Option<u64> {
    holes(usable, used, |s, l| fit(s, l, len, align))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The kernel's choice, found another way: the lowest fit starts at a
    /// usable span's start or a used range's end, aligned up.
    fn kernel(
        usable: &[(u64, u64)],
        used: &BTreeMap<u64, u64>,
        len: u64,
        align: u64,
    ) -> Option<u64> {
        let mut starts: Vec<u64> = usable.iter().map(|u| u.0).collect();
        starts.extend(used.iter().filter_map(|(&s, &l)| s.checked_add(l)));
        starts.sort_unstable();
        starts.into_iter().find_map(|s| {
            let at = s.checked_next_multiple_of(align)?;
            let last = at.checked_add(len - 1)?;
            let inside = usable
                .iter()
                .any(|&(us, ul)| us <= at && at < ul && last <= ul);
            let free = used
                .range(..=last)
                .next_back()
                .is_none_or(|(&s, &l)| s + l <= at);
            (inside && free).then_some(at)
        })
    }

    /// The chooser agrees with the kernel's choice through growth past the
    /// small table, random maps and unmaps of mixed sizes, reserved spans
    /// and an allow-list.
    #[test]
    fn chooses_what_the_kernel_would() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..4 {
            let mut c = Chooser::new();
            if round >= 2 {
                c.learn(vec![(0, 0xfedf_ffff), (0xfef0_0000, u64::MAX)], 1, &[]);
            }
            if round == 3 {
                c.set_allowed(&[IovaRange {
                    start: 0x10_0000,
                    last: 0x7fff_ffff,
                }]);
            }
            let mut table = Table::new();
            let mut model = BTreeMap::new();
            for step in 0..6000 {
                if rand(3) != 0 || model.len() < 80 {
                    let len = PAGE << rand(if step % 7 == 0 { 10 } else { 3 });
                    let hint = PAGE << rand(12);
                    let align = alignment(len, hint).unwrap();
                    let want = kernel(c.usable(), &model, len, align);
                    let got = c.choose(&table, len, hint);
                    assert_eq!(got, want, "step {step}: {len:#x} at {align:#x}");
                    let Some(at) = got else { continue };
                    table.insert(at, len);
                    model.insert(at, len);
                    c.mapped(at, len);
                } else {
                    let k = *model.keys().nth(rand(model.len() as u64) as usize).unwrap();
                    let len = model.remove(&k).unwrap();
                    table.remove(k);
                    c.unmapped(k, len);
                }
            }
        }
    }

    #[test]
    fn alignment_follows_the_kernel() {
        assert_eq!(alignment(4096, 0x7f00_0000_1000), Some(4096));
        assert_eq!(alignment(3 * 4096, 0x7f00_0001_0000), Some(0x4000));
        assert_eq!(alignment(64 << 20, 0x7f00_0000_0000), Some(HPAGE));
        assert_eq!(alignment(64 << 20, 0x7f00_0000_1000), Some(4096));
        assert_eq!(alignment(8192, 0), Some(8192));
        assert_eq!(alignment(4096, 0x7f00_0000_0010), None);
        assert_eq!(alignment(0, 0), None);
    }

    #[test]
    fn holes_respect_usable_spans_and_the_ends() {
        let mut c = Chooser::new();
        let t = Table::new();
        assert_eq!(c.choose(&t, 4096, 0), Some(PAGE), "never IOVA 0");
        c.learn(
            vec![(0, 0xfff), (0x3000, 0x3fff), (0x10000, u64::MAX)],
            1,
            &[],
        );
        assert_eq!(c.choose(&t, 4096, 0), Some(0x3000));
        assert_eq!(c.choose(&t, 8192, 0), Some(0x10000));
        c.set_allowed(&[IovaRange {
            start: 0x20000,
            last: 0x20fff,
        }]);
        assert_eq!(c.choose(&t, 4096, 0), Some(0x20000));
        assert_eq!(c.choose(&t, 8192, 0), None);
        // A handover's ranges are never chosen, until unmapped by range.
        let mut c = Chooser::new();
        c.foreign(PAGE, 2 * PAGE);
        assert_eq!(c.choose(&t, 4096, 0), Some(3 * PAGE));
        c.unmapped_by_range(0, 8 * PAGE);
        assert_eq!(c.choose(&t, 4096, 0), Some(PAGE));
        // Once the kernel chooses, the crate does not.
        c.kernel = true;
        assert_eq!(c.choose(&t, 4096, 0), None);
    }
}
