//! The buddy allocator of the one zone (mm/page_alloc.c): free blocks of
//! `2^order` frames, naturally aligned, on one free area per order; an
//! allocation splits the smallest block that fits, a free merges with its
//! buddy while the buddy is free. The smallest block that fits is split
//! first (sparing large blocks, as `__rmqueue_smallest` does), the lowest
//! address among equals, so allocation is deterministic.

use std::collections::BTreeSet;
use swapvm_core::Pfn;

/// Largest order of a free block: 2 MiB, a PMD, enough for every mTHP
/// size swapvm offers.
pub const MAX_ORDER: u8 = 9;

/// Free blocks by order (`zone->free_area`).
#[derive(Debug, Clone)]
pub struct Buddy {
    free_area: [BTreeSet<u32>; MAX_ORDER as usize + 1],
    nr_free: u64,
    frames: u32,
}

impl Buddy {
    /// Every frame of `frames` free, in the largest aligned blocks.
    pub fn new(frames: u32) -> Self {
        let mut b = Buddy {
            free_area: Default::default(),
            nr_free: u64::from(frames),
            frames,
        };
        let mut pfn = 0u32;
        while pfn < frames {
            let mut o = MAX_ORDER;
            while o > 0 && (pfn % (1 << o) != 0 || pfn + (1 << o) > frames) {
                o -= 1;
            }
            b.free_area[o as usize].insert(pfn);
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
        let pfn = self.free_area[o as usize].pop_first()?;
        // expand(): hand the upper halves back.
        for lower in (order..o).rev() {
            self.free_area[lower as usize].insert(pfn + (1 << lower));
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
            if buddy + (1 << o) > self.frames || !self.free_area[o as usize].remove(&buddy) {
                break;
            }
            p = p.min(buddy);
            o += 1;
        }
        assert!(
            self.free_area[o as usize].insert(p),
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
