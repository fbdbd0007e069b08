//! The random op generator of the fuzz harness (`kind = "random"`).
//!
//! A random process maps up to [`REGIONS_MAX`] anonymous regions of half
//! to all of `size_pages` pages each, and makes `accesses_total` accesses to random
//! pages of its live regions (a store with probability `write_ratio`),
//! unmapping a region now and then and mapping a new one in its place; then
//! it exits, with whatever is still mapped (so exit, not munmap, releases
//! it). The page picks follow the process's [`Pattern`] inside a region.
//!
//! It is the one place that draws random op sequences: new ops (fork,
//! madvise, shmem, KSM merges) join as new arms of [`RandomOps::next_op`]
//! with their own weight, leaving the existing draws in order.

use crate::op::Op;
use crate::spec::Pattern;
use swapvm_core::SimRng;

/// Most regions a random process has mapped at once.
pub const REGIONS_MAX: u32 = 4;

/// A random op stream.
#[derive(Debug, Clone)]
pub(crate) struct RandomOps {
    rng: SimRng,
    /// Pages of each region slot; `None` when unmapped.
    regions: Vec<Option<u64>>,
    size_pages: u64,
    write_ratio: f64,
    pattern: Pattern,
    /// Per region: the sequential cursor.
    cursors: Vec<u64>,
    accesses_left: u64,
    exited: bool,
}

impl RandomOps {
    pub(crate) fn new(
        rng: SimRng,
        size_pages: u64,
        accesses_total: u64,
        write_ratio: f64,
        pattern: Pattern,
    ) -> Self {
        RandomOps {
            rng,
            regions: vec![None; REGIONS_MAX as usize],
            size_pages: size_pages.max(1),
            write_ratio,
            pattern,
            cursors: vec![0; REGIONS_MAX as usize],
            accesses_left: accesses_total,
            exited: false,
        }
    }

    /// True if the op is an access (for the caller's count).
    pub(crate) fn next_op(&mut self) -> Option<Op> {
        if self.exited {
            return None;
        }
        if self.accesses_left == 0 {
            self.exited = true;
            return Some(Op::Exit);
        }
        let live: Vec<u32> = (0..REGIONS_MAX)
            .filter(|&r| self.regions[r as usize].is_some())
            .collect();
        let roll = self.rng.below(1000);
        // Map when nothing is mapped, or now and then while room is left.
        if live.is_empty() || (roll < 8 && live.len() < REGIONS_MAX as usize) {
            return Some(self.mmap());
        }
        if roll < 12 && live.len() > 1 {
            let r = live[self.rng.below(live.len() as u64) as usize];
            self.regions[r as usize] = None;
            return Some(Op::Munmap { region: r });
        }
        let r = live[self.rng.below(live.len() as u64) as usize];
        let pages = self.regions[r as usize].unwrap_or(1);
        let page = self.pick(r, pages);
        let write = self.rng.chance(self.write_ratio);
        self.accesses_left -= 1;
        Some(Op::Access {
            region: r,
            page,
            write,
        })
    }

    fn mmap(&mut self) -> Op {
        let free = (0..REGIONS_MAX)
            .find(|&r| self.regions[r as usize].is_none())
            .unwrap_or(0);
        // Between half and all of `size_pages`, so the process's memory
        // is about what its size says.
        let half = self.size_pages / 2;
        let pages = (half + self.rng.below(self.size_pages - half + 1)).max(1);
        self.regions[free as usize] = Some(pages);
        self.cursors[free as usize] = 0;
        Op::Mmap {
            region: free,
            pages,
        }
    }

    fn pick(&mut self, r: u32, pages: u64) -> u64 {
        match self.pattern {
            Pattern::Sequential => {
                let c = &mut self.cursors[r as usize];
                let page = *c % pages;
                *c = page + 1;
                page
            }
            Pattern::Random => self.rng.below(pages),
            Pattern::HotCold {
                hot_fraction,
                hot_probability,
            } => {
                let hot = ((hot_fraction * pages as f64) as u64).clamp(1, pages);
                if hot == pages || self.rng.chance(hot_probability) {
                    self.rng.below(hot)
                } else {
                    hot + self.rng.below(pages - hot)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_stay_inside_live_regions_and_end_in_exit() {
        let mut g = RandomOps::new(SimRng::new(5), 50, 5000, 0.5, Pattern::Random);
        let mut live: Vec<Option<u64>> = vec![None; REGIONS_MAX as usize];
        let (mut accesses, mut munmaps, mut mmaps) = (0, 0, 0);
        while let Some(op) = g.next_op() {
            match op {
                Op::Mmap { region, pages } => {
                    assert!(live[region as usize].is_none(), "mapped over a live region");
                    assert!((25..=50).contains(&pages));
                    live[region as usize] = Some(pages);
                    mmaps += 1;
                }
                Op::Access { region, page, .. } => {
                    let pages = live[region as usize].expect("access to an unmapped region");
                    assert!(page < pages);
                    accesses += 1;
                }
                Op::Munmap { region } => {
                    assert!(live[region as usize].take().is_some());
                    munmaps += 1;
                }
                Op::Exit => {}
                other => panic!("random ops emitted {other:?}"),
            }
        }
        assert_eq!(accesses, 5000);
        assert!(
            munmaps > 0 && mmaps > munmaps,
            "{mmaps} mmaps, {munmaps} munmaps"
        );
    }
}
