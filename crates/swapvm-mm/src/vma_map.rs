//! The VMAs of one address space by start page (the kernel's `mm->mm_mt`
//! maple tree, `find_vma`, `vma_lookup`).
//!
//! A sorted array of starts beside an array of VMAs, plus a one-entry hint
//! of the last VMA found (the old per-task `vmacache`): a fault looks its
//! VMA up several times (`find_vma`, `anon_vma_prepare`, the swap-cache
//! mapping test), and after the first the hint answers; other lookups are
//! a binary search over the packed starts, which stay in cache where a
//! `BTreeMap`'s nodes of 80-byte VMAs did not (reclaim's rmap walk looked
//! up a random VMA per folio). Address spaces have few VMAs and map them in
//! address order, so insertion at the end is the common case.
//!
//! The interface is the subset of `BTreeMap<u64, Vma>` swapvm uses, in the
//! same key order, so iteration order (and so every decision that depends
//! on it) is what it was with the tree.

use crate::memory::Vma;
use std::cell::Cell;

/// The VMAs of an address space, keyed by start page.
#[derive(Debug, Default)]
pub struct VmaMap {
    /// Start pages, ascending; `vmas[i]` starts at `starts[i]`.
    starts: Vec<u64>,
    vmas: Vec<Vma>,
    /// Index of the last VMA found (may be stale: checked before use).
    hint: Cell<usize>,
}

impl VmaMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// VMAs.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The index of the VMA starting at `start`.
    #[inline]
    fn index_of(&self, start: u64) -> Option<usize> {
        let h = self.hint.get();
        if self.starts.get(h) == Some(&start) {
            return Some(h);
        }
        let i = self.starts.binary_search(&start).ok()?;
        self.hint.set(i);
        Some(i)
    }

    /// The VMA starting at `start` (`vma_lookup` by start).
    #[inline]
    pub fn get(&self, start: &u64) -> Option<&Vma> {
        self.index_of(*start).map(|i| &self.vmas[i])
    }

    /// The VMA starting at `start`, found first at index `pos` (a caller's
    /// own hint, updated when it misses). Leaves the map's hint alone, so
    /// a walk over many VMAs (rmap) does not evict a fault's VMA from it.
    #[inline]
    pub fn get_hinted(&self, start: u64, pos: &Cell<u32>) -> Option<&Vma> {
        let h = pos.get() as usize;
        if self.starts.get(h) == Some(&start) {
            return self.vmas.get(h);
        }
        let i = self.starts.binary_search(&start).ok()?;
        if let Ok(p) = u32::try_from(i) {
            pos.set(p);
        }
        self.vmas.get(i)
    }

    /// The VMA starting at `start`, mutably. Its `start` must not change
    /// (it is the key, as in a map).
    pub fn get_mut(&mut self, start: &u64) -> Option<&mut Vma> {
        self.index_of(*start).map(|i| &mut self.vmas[i])
    }

    /// The VMA with the greatest start at or below `vpn` (the last of
    /// `BTreeMap::range(..=vpn)`), whether or not it covers `vpn`.
    #[inline]
    pub fn floor(&self, vpn: u64) -> Option<&Vma> {
        let h = self.hint.get();
        if let (Some(&s), Some(v)) = (self.starts.get(h), self.vmas.get(h)) {
            // The hint's VMA covers vpn: no later VMA can start at or
            // below vpn (VMAs do not overlap).
            if s <= vpn && vpn < v.end.0 {
                return Some(v);
            }
        }
        let i = self.starts.partition_point(|&s| s <= vpn).checked_sub(1)?;
        self.hint.set(i);
        Some(&self.vmas[i])
    }

    /// Inserts `vma` at `start`, returning the VMA it replaces.
    pub fn insert(&mut self, start: u64, vma: Vma) -> Option<Vma> {
        match self.starts.binary_search(&start) {
            Ok(i) => Some(std::mem::replace(&mut self.vmas[i], vma)),
            Err(i) => {
                self.starts.insert(i, start);
                self.vmas.insert(i, vma);
                None
            }
        }
    }

    /// Removes and returns the VMA starting at `start`.
    pub fn remove(&mut self, start: &u64) -> Option<Vma> {
        let i = self.starts.binary_search(start).ok()?;
        self.starts.remove(i);
        Some(self.vmas.remove(i))
    }

    /// Start pages, ascending.
    pub fn keys(&self) -> impl Iterator<Item = &u64> + '_ {
        self.starts.iter()
    }

    /// VMAs by ascending start.
    pub fn values(&self) -> impl Iterator<Item = &Vma> + '_ {
        self.vmas.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::VmaKind;
    use std::collections::BTreeMap;
    use swapvm_core::{SimRng, Vpn};

    fn vma(start: u64, pages: u64) -> Vma {
        Vma {
            start: Vpn(start),
            end: Vpn(start + pages),
            kind: VmaKind::Anon,
            flags: 0,
            anon_vma: None,
            chain: Vec::new(),
        }
    }

    /// Under a seeded random mix of inserts, removals, exact and floor
    /// lookups (non-overlapping VMAs of 1..4 pages at multiples of 4), the
    /// map answers as a `BTreeMap` does, with or without a caller's stale
    /// hint; the seed is in the failure message.
    #[test]
    fn matches_btreemap() {
        for seed in 0..16u64 {
            let mut rng = SimRng::new(seed);
            let mut map = VmaMap::new();
            let mut model: BTreeMap<u64, Vma> = BTreeMap::new();
            let hints: Vec<Cell<u32>> = (0..64).map(|_| Cell::new(0)).collect();
            for step in 0..3000 {
                let start = rng.below(64) * 4;
                let why = format!("seed {seed} step {step} start {start}");
                match rng.below(5) {
                    0 | 1 => {
                        let v = vma(start, 1 + rng.below(4));
                        let got = map.insert(start, v.clone()).map(|v| v.end);
                        assert_eq!(got, model.insert(start, v).map(|v| v.end), "{why}");
                    }
                    2 => {
                        let got = map.remove(&start).map(|v| v.end);
                        assert_eq!(got, model.remove(&start).map(|v| v.end), "{why}");
                    }
                    3 => {
                        let got = map.get(&start).map(|v| (v.start, v.end));
                        let want = model.get(&start).map(|v| (v.start, v.end));
                        assert_eq!(got, want, "{why}");
                        // A caller's hint, left stale by the inserts and
                        // removals since it was last set.
                        let hint = &hints[(start / 4) as usize];
                        let got = map.get_hinted(start, hint).map(|v| (v.start, v.end));
                        assert_eq!(got, want, "{why} hinted at {}", hint.get());
                        if let Some(v) = map.get_mut(&start) {
                            v.flags += 1;
                            if let Some(m) = model.get_mut(&start) {
                                m.flags += 1;
                            }
                        }
                    }
                    _ => {
                        let vpn = start + rng.below(6);
                        let got = map.floor(vpn).map(|v| (v.start, v.end, v.flags));
                        let want = model
                            .range(..=vpn)
                            .next_back()
                            .map(|(_, v)| (v.start, v.end, v.flags));
                        assert_eq!(got, want, "{why} vpn {vpn}");
                    }
                }
                assert_eq!(map.len(), model.len(), "{why}");
                assert!(map.keys().eq(model.keys()), "{why}");
                assert!(
                    map.values()
                        .map(|v| (v.start, v.end, v.flags))
                        .eq(model.values().map(|v| (v.start, v.end, v.flags))),
                    "{why}"
                );
            }
        }
    }
}
