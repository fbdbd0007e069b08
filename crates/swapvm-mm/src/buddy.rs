//! The buddy allocator of the one zone (mm/page_alloc.c): free blocks of
//! `2^order` frames, naturally aligned, on one free area per order; an
//! allocation splits the smallest block that fits, a free merges with its
//! buddy while the buddy is free. The smallest block that fits is split
//! first (sparing large blocks, as `__rmqueue_smallest` does), the lowest
//! address among equals, so allocation is deterministic.
//!
//! Each free area is a [`BlockSet`], a bitmap with summary levels, not a
//! tree: reclaim frees and faults allocate a frame per page under memory
//! pressure, and a `BTreeSet` insert and remove per free cost more than the
//! rest of `free_frame` (the replay-vs-libcachesim pressure profile).

use swapvm_core::Pfn;

/// An ordered set of block indices below a fixed bound: a bitmap with
/// summary levels above it (bit `i` of level `l + 1` is set iff word `i` of
/// level `l` is non-zero), so insert, remove and membership are a few word
/// operations per level and the smallest member is found by one descent.
/// Iteration order and `pop_first` match `BTreeSet<u32>`'s.
#[derive(Debug, Clone)]
pub struct BlockSet {
    /// `levels[0]` is the bitmap of members; each further level summarises
    /// the one below, up to a level of one word.
    levels: Vec<Vec<u64>>,
    len: u32,
}

impl BlockSet {
    /// Host bytes of the bitmap and its summary levels, by capacity.
    pub fn host_bytes(&self) -> u64 {
        let words: usize = self.levels.iter().map(Vec::capacity).sum();
        (words * std::mem::size_of::<u64>()) as u64
    }

    /// An empty set for members `0..bound`.
    pub fn new(bound: u32) -> Self {
        let mut levels = Vec::new();
        let mut bits = u64::from(bound).max(1);
        loop {
            let words = bits.div_ceil(64);
            levels.push(vec![0u64; words as usize]);
            if words == 1 {
                break;
            }
            bits = words;
        }
        BlockSet { levels, len: 0 }
    }

    /// Members.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True if `i` is a member.
    pub fn contains(&self, i: u32) -> bool {
        self.levels[0]
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Adds `i`; false if it was a member already.
    ///
    /// # Panics
    /// If `i` is not below the bound (a corrupt frame number).
    pub fn insert(&mut self, i: u32) -> bool {
        let mut i = i as usize;
        for (l, level) in self.levels.iter_mut().enumerate() {
            let w = &mut level[i / 64];
            let was = *w;
            *w |= 1 << (i % 64);
            if l == 0 && was == *w {
                return false;
            }
            if was != 0 {
                break;
            }
            i /= 64;
        }
        self.len += 1;
        true
    }

    /// Removes `i`; false if it was not a member.
    pub fn remove(&mut self, i: u32) -> bool {
        if !self.contains(i) {
            return false;
        }
        let mut i = i as usize;
        for level in &mut self.levels {
            let w = &mut level[i / 64];
            *w &= !(1 << (i % 64));
            if *w != 0 {
                break;
            }
            i /= 64;
        }
        self.len -= 1;
        true
    }

    /// The smallest member.
    pub fn first(&self) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let mut i = 0usize;
        for level in self.levels.iter().rev() {
            let w = level[i];
            debug_assert!(w != 0, "summary bit without a member below");
            i = i * 64 + w.trailing_zeros() as usize;
        }
        Some(i as u32)
    }

    /// Removes and returns the smallest member.
    pub fn pop_first(&mut self) -> Option<u32> {
        let i = self.first()?;
        self.remove(i);
        Some(i)
    }
}

/// Largest order of a free block: 2 MiB, a PMD, enough for every mTHP
/// size swapvm offers.
pub const MAX_ORDER: u8 = 9;

/// Free blocks by order (`zone->free_area`).
#[derive(Debug, Clone)]
pub struct Buddy {
    /// Free blocks of order `o` by their first frame's index `pfn >> o`.
    free_area: [BlockSet; MAX_ORDER as usize + 1],
    nr_free: u64,
    frames: u32,
}

impl Buddy {
    /// Host bytes of the free-area bitmaps, every order.
    pub fn host_bytes(&self) -> u64 {
        self.free_area.iter().map(BlockSet::host_bytes).sum()
    }

    /// Every frame of `frames` free, in the largest aligned blocks.
    pub fn new(frames: u32) -> Self {
        let mut b = Buddy {
            free_area: std::array::from_fn(|o| BlockSet::new(frames.div_ceil(1 << o))),
            nr_free: u64::from(frames),
            frames,
        };
        let mut pfn = 0u32;
        while pfn < frames {
            let mut o = MAX_ORDER;
            while o > 0 && (pfn % (1 << o) != 0 || pfn + (1 << o) > frames) {
                o -= 1;
            }
            b.free_area[o as usize].insert(pfn >> o);
            pfn += 1 << o;
        }
        b
    }

    /// Free frames (`NR_FREE_PAGES`).
    pub fn nr_free(&self) -> u64 {
        self.nr_free
    }

    /// Takes a block of `2^order` frames (`__rmqueue_smallest`).
    pub fn alloc(&mut self, order: u8) -> Option<Pfn> {
        let o = (order..=MAX_ORDER).find(|&o| !self.free_area[o as usize].is_empty())?;
        let pfn = self.free_area[o as usize].pop_first()? << o;
        // expand(): hand the upper halves back.
        for lower in (order..o).rev() {
            self.free_area[lower as usize].insert((pfn + (1 << lower)) >> lower);
        }
        self.nr_free -= 1 << order;
        Some(Pfn(pfn))
    }

    /// Returns the block at `pfn` of `2^order` frames, merging buddies
    /// (`__free_one_page`).
    ///
    /// # Panics
    /// On a misaligned block or one already free: the emulation's frame
    /// accounting would be corrupt.
    pub fn free(&mut self, pfn: Pfn, order: u8) {
        let mut p = pfn.0;
        assert!(
            p % (1 << order) == 0 && p + (1 << order) <= self.frames,
            "bad block {pfn:?} order {order}"
        );
        self.nr_free += 1 << order;
        let mut o = order;
        while o < MAX_ORDER {
            let buddy = p ^ (1 << o);
            if buddy + (1 << o) > self.frames || !self.free_area[o as usize].remove(buddy >> o) {
                break;
            }
            p = p.min(buddy);
            o += 1;
        }
        assert!(
            self.free_area[o as usize].insert(p >> o),
            "double free of {pfn:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_merge_back_to_the_start() {
        let mut b = Buddy::new(1000);
        let start = b.clone().free_area.map(|s| s.len());
        assert_eq!(start, [0, 0, 0, 1, 0, 1, 1, 1, 1, 1]);
        let a = b.alloc(0).unwrap();
        let c = b.alloc(4).unwrap();
        let d = b.alloc(0).unwrap();
        // 1000 = 512 + 256 + 128 + 64 + 32 + 8: order-0 requests split the
        // smallest free block (the 8 frames at 992), sparing large ones.
        assert_eq!(a, Pfn(992), "smallest block first");
        assert_eq!(d, Pfn(993), "then its lowest free frame");
        assert_eq!(c.0 % 16, 0, "aligned");
        assert_eq!(b.nr_free(), 1000 - 18);
        for (p, o) in [(d, 0), (a, 0), (c, 4)] {
            b.free(p, o);
        }
        assert_eq!(b.nr_free(), 1000);
        assert_eq!(b.free_area.map(|s| s.len()), start, "fully merged");
    }

    /// The bitmap set keeps the members, length, order and `pop_first` of
    /// a `BTreeSet` under a seeded random mix of operations (the seed is in
    /// the failure message).
    #[test]
    fn block_set_matches_btreeset() {
        use std::collections::BTreeSet;
        use swapvm_core::SimRng;
        for seed in 0..8u64 {
            for bound in [1u32, 63, 64, 65, 4096, 4097, 300_000] {
                let mut rng = SimRng::new(seed);
                let mut set = BlockSet::new(bound);
                let mut model = BTreeSet::new();
                for step in 0..5000 {
                    let i = (rng.next_u64() % u64::from(bound)) as u32;
                    let why = format!("seed {seed} bound {bound} step {step} i {i}");
                    match rng.next_u64() % 4 {
                        0 | 1 => assert_eq!(set.insert(i), model.insert(i), "{why}"),
                        2 => assert_eq!(set.remove(i), model.remove(&i), "{why}"),
                        _ => assert_eq!(set.pop_first(), model.pop_first(), "{why}"),
                    }
                    assert_eq!(set.len() as usize, model.len(), "{why}");
                    assert_eq!(set.first(), model.first().copied(), "{why}");
                    assert_eq!(set.contains(i), model.contains(&i), "{why}");
                }
                while let Some(m) = model.pop_first() {
                    assert_eq!(set.pop_first(), Some(m), "seed {seed} bound {bound} drain");
                }
                assert!(set.is_empty() && set.first().is_none());
            }
        }
    }

    #[test]
    fn exhausts_exactly() {
        let mut b = Buddy::new(37);
        let mut got = Vec::new();
        while let Some(p) = b.alloc(0) {
            got.push(p.0);
        }
        got.sort_unstable();
        assert_eq!(got, (0..37).collect::<Vec<_>>());
        assert!(b.alloc(0).is_none());
    }
}
