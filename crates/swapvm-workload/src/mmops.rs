//! Random sequences of memory-management operations, for deterministic
//! simulation testing of the memory layer: mmap (private, shared, tmpfs),
//! loads and stores, pool fills (KSM-mergeable content), madvise of every
//! kind, fork, munmap, tmpfs truncate and unlink, exit. One seed gives one
//! sequence; a forked child draws a stream derived from its parent's.

use crate::op::{Advice, Op, PageRange};
use swapvm_core::SimRng;

/// Shape of the random sequences.
#[derive(Debug, Clone, Copy)]
pub struct MmOpsConfig {
    /// Ops a process makes before it exits.
    pub ops: u64,
    /// Largest region, in pages.
    pub region_pages_max: u64,
    /// Regions a process keeps at most.
    pub regions_max: u32,
    /// tmpfs files the workload shares (file numbers `0..files`).
    pub files: u32,
    /// Distinct pool contents for [`Op::Fill`].
    pub pool: u32,
    /// How deep forks may nest (0: no fork).
    pub fork_depth: u32,
    /// Children one process may fork.
    pub forks_max: u32,
}

impl Default for MmOpsConfig {
    fn default() -> Self {
        MmOpsConfig {
            ops: 2000,
            region_pages_max: 96,
            regions_max: 6,
            files: 3,
            pool: 4,
            fork_depth: 2,
            forks_max: 2,
        }
    }
}

/// One process's random op stream.
#[derive(Debug, Clone)]
pub struct MmOps {
    rng: SimRng,
    cfg: MmOpsConfig,
    /// Pages of each region slot (None: free slot).
    regions: Vec<Option<u64>>,
    left: u64,
    depth: u32,
    forks: u32,
    children: u64,
    accesses: u64,
}

impl MmOps {
    /// A stream drawing only from `rng`.
    pub fn new(cfg: MmOpsConfig, rng: SimRng) -> Self {
        MmOps {
            rng,
            cfg,
            regions: Vec::new(),
            left: cfg.ops,
            depth: 0,
            forks: 0,
            children: 0,
            accesses: 0,
        }
    }

    /// Accesses emitted so far.
    pub fn accesses_done(&self) -> u64 {
        self.accesses
    }

    /// The child's stream after an [`Op::Fork`] this generator emitted: the
    /// same regions (the child inherits the address space), a stream of
    /// its own, and half the ops left.
    pub fn fork_child(&mut self) -> MmOps {
        self.children += 1;
        let seed = self.rng.next_u64();
        MmOps {
            rng: SimRng::new(seed),
            cfg: self.cfg,
            regions: self.regions.clone(),
            left: self.left / 2,
            depth: self.depth + 1,
            forks: 0,
            children: 0,
            accesses: 0,
        }
    }

    fn live_region(&mut self) -> Option<(u32, u64)> {
        let live: Vec<(u32, u64)> = self
            .regions
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|p| (i as u32, p)))
            .collect();
        if live.is_empty() {
            return None;
        }
        Some(live[self.rng.below(live.len() as u64) as usize])
    }

    fn free_slot(&self) -> Option<u32> {
        if let Some(i) = self.regions.iter().position(Option::is_none) {
            return Some(i as u32);
        }
        ((self.regions.len() as u32) < self.cfg.regions_max).then_some(self.regions.len() as u32)
    }

    fn set_region(&mut self, r: u32, pages: Option<u64>) {
        if self.regions.len() <= r as usize {
            self.regions.resize(r as usize + 1, None);
        }
        self.regions[r as usize] = pages;
    }

    /// The next op; `None` after [`Op::Exit`].
    pub fn next_op(&mut self) -> Option<Op> {
        if self.left == 0 {
            self.left = u64::MAX;
            return Some(Op::Exit);
        }
        if self.left == u64::MAX {
            return None;
        }
        self.left -= 1;
        loop {
            if let Some(op) = self.pick() {
                if matches!(op, Op::Access { .. } | Op::Fill { .. }) {
                    self.accesses += 1;
                }
                return Some(op);
            }
        }
    }

    fn pick(&mut self) -> Option<Op> {
        let roll = self.rng.below(1000);
        let c = self.cfg;
        match roll {
            // Map a region.
            0..=39 => {
                let r = self.free_slot()?;
                let pages = 1 + self.rng.below(c.region_pages_max);
                let op = match self.rng.below(4) {
                    0 => Op::MmapShared { region: r, pages },
                    1 if c.files > 0 => Op::ShmemMap {
                        region: r,
                        file: self.rng.below(u64::from(c.files)) as u32,
                        pages,
                    },
                    _ => Op::Mmap { region: r, pages },
                };
                self.set_region(r, Some(pages));
                Some(op)
            }
            // Unmap one.
            40..=49 => {
                let (r, _) = self.live_region()?;
                self.set_region(r, None);
                Some(Op::Munmap { region: r })
            }
            // madvise.
            50..=69 => {
                let (r, n) = self.live_region()?;
                let advice = match self.rng.below(8) {
                    0 => Advice::DontNeed,
                    1 => Advice::Free,
                    2 => Advice::Cold,
                    3 => Advice::PageOut,
                    4 => Advice::Mergeable,
                    5 => Advice::HugePage,
                    6 => Advice::NoHugePage,
                    _ => Advice::Unmergeable,
                };
                // Half of them on a range, so that ranges cut large folios.
                let pages = (!advice.is_vma_flag() && self.rng.chance(0.5)).then(|| {
                    let start = self.rng.below(n);
                    let end = start + 1 + self.rng.below(n - start);
                    PageRange { start, end }
                });
                Some(Op::Madvise {
                    region: r,
                    advice,
                    pages,
                })
            }
            // fork.
            70..=74 => {
                if self.depth >= c.fork_depth || self.forks >= c.forks_max {
                    return None;
                }
                self.forks += 1;
                Some(Op::Fork)
            }
            // tmpfs truncate / unlink (rare: they kill mappers' later
            // accesses beyond the end with SIGBUS).
            75..=77 if c.files > 0 => {
                let file = self.rng.below(u64::from(c.files)) as u32;
                if self.rng.chance(0.5) {
                    Some(Op::ShmemUnlink { file })
                } else {
                    let pages = c.region_pages_max / 2 + self.rng.below(c.region_pages_max);
                    Some(Op::ShmemTruncate { file, pages })
                }
            }
            // Pool fills.
            78..=199 if c.pool > 0 => {
                let (r, pages) = self.live_region()?;
                let page = self.rng.below(pages);
                let pool = self.rng.below(u64::from(c.pool)) as u32;
                Some(Op::Fill {
                    region: r,
                    page,
                    pool,
                })
            }
            // Loads and stores.
            _ => {
                let (r, pages) = self.live_region()?;
                let page = self.rng.below(pages);
                let write = self.rng.chance(0.5);
                Some(Op::Access {
                    region: r,
                    page,
                    write,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(seed: u64) -> Vec<Op> {
        let mut g = MmOps::new(MmOpsConfig::default(), SimRng::new(seed));
        std::iter::from_fn(|| g.next_op()).collect()
    }

    #[test]
    fn same_seed_same_ops_and_every_kind_appears() {
        let a = ops(7);
        assert_eq!(a, ops(7));
        assert_ne!(a, ops(8));
        assert_eq!(a.last(), Some(&Op::Exit));
        let has = |f: fn(&Op) -> bool| a.iter().any(f);
        assert!(has(|o| matches!(o, Op::Mmap { .. })));
        assert!(has(|o| matches!(o, Op::MmapShared { .. })));
        assert!(has(|o| matches!(o, Op::ShmemMap { .. })));
        assert!(has(|o| matches!(o, Op::Fill { .. })));
        assert!(has(|o| matches!(o, Op::Madvise { .. })));
        assert!(has(|o| matches!(o, Op::Fork)));
        assert!(has(|o| matches!(o, Op::Munmap { .. })));
    }

    #[test]
    fn accesses_only_touch_live_regions_in_range() {
        let mut live: Vec<Option<u64>> = Vec::new();
        for op in ops(3) {
            match op {
                Op::Mmap { region, pages }
                | Op::MmapShared { region, pages }
                | Op::ShmemMap { region, pages, .. } => {
                    if live.len() <= region as usize {
                        live.resize(region as usize + 1, None);
                    }
                    assert!(live[region as usize].is_none(), "slot reused while live");
                    live[region as usize] = Some(pages);
                }
                Op::Munmap { region } => {
                    assert!(live[region as usize].take().is_some());
                }
                Op::Access { region, page, .. } | Op::Fill { region, page, .. } => {
                    let p = live[region as usize].expect("live region");
                    assert!(page < p);
                }
                _ => {}
            }
        }
    }
}
