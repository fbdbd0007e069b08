//! The mTHP swap allocator harness, shaped like the kernel selftest
//! `tools/testing/selftests/mm/thp_swap_allocator_test.c`: does a 64 KiB
//! large folio still get 16 contiguous swap slots once the device is
//! fragmented, or does reclaim fall back to splitting it
//! (`thp_swpout_fallback`)?
//!
//! One process on a 64 MiB zram device with 64 KiB mTHP `always`: a 60 MiB
//! `MADV_HUGEPAGE` area and, with `small` (the selftest's `-s`), a 4 MiB
//! `MADV_NOHUGEPAGE` area of small folios. Both are written and paged out
//! (the warm-up that fills the device), then each iteration stores to 16
//! MiB worth of random pages of the large area (random 64 KiB blocks with
//! `aligned_swapin`, `-a`), drops and rewrites 16 MiB of random 64 KiB
//! blocks with `MADV_DONTNEED` (new 64 KiB folios), stores to 1 MiB of
//! random small pages, and pages both areas out. The fallback share of each
//! iteration is `thp_swpout_fallback / (thp_swpout + thp_swpout_fallback)`,
//! read from the counters at an `Op::Mark` after each iteration.

use crate::bench::BenchError;
use crate::{Machine, Report, RunOptions};
use std::path::Path;
use swapvm_core::config::Allocator;
use swapvm_core::{MachineConfig, SimRng};
use swapvm_workload::{Advice, Op, PageRange, ProcessSource, Script};

/// Pages per MiB.
const MIB: u64 = 256;
/// Pages of a 64 KiB folio.
const MTHP: u64 = 16;

/// One run of the harness.
#[derive(Debug, Clone, Copy)]
pub struct ThpAllocTest {
    /// The small-folio area too (`-s`).
    pub small: bool,
    /// Swap-ins by whole 64 KiB blocks (`-a`), else by random pages.
    pub aligned_swapin: bool,
    /// The slot allocator.
    pub allocator: Allocator,
    /// Iterations (the selftest runs 100).
    pub iterations: u32,
    /// Every size divided by this (1: the selftest's sizes; tests use 4).
    pub scale: u64,
    /// Seed of the random offsets.
    pub seed: u64,
}

/// The 64 KiB swap-outs of one iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThpAllocIteration {
    /// Large folios swapped out whole (`thp_swpout`).
    pub swpout: u64,
    /// Large folios split because no contiguous slots were found
    /// (`thp_swpout_fallback`).
    pub fallback: u64,
}

impl ThpAllocIteration {
    /// The fallback share in percent (0 when nothing was swapped out).
    pub fn fallback_pct(&self) -> f64 {
        let all = self.swpout + self.fallback;
        if all == 0 {
            return 0.0;
        }
        self.fallback as f64 * 100.0 / all as f64
    }
}

impl ThpAllocTest {
    fn pages(&self, mib: u64) -> u64 {
        (mib * MIB / self.scale.max(1)).max(MTHP)
    }

    /// The machine config: 256 MiB of RAM (no memory pressure: only
    /// `MADV_PAGEOUT` reclaims), one zram device of 64 MiB, 64 KiB mTHP.
    fn config(&self) -> String {
        let alloc = match self.allocator {
            Allocator::PerOrder => "per-order",
            Allocator::FreeClustersOnly => "free-clusters-only",
        };
        format!(
            "[machine]\nram_mib = 256\ncpus = 1\nseed = {seed}\n\n\
             [[swap]]\npath = \"zram0\"\nbackend = \"zram\"\nsize_mib = {swap}\n\
             allocator = \"{alloc}\"\n\n\
             [mthp.hugepages]\n64kB = \"always\"\n2048kB = \"never\"\n",
            seed = self.seed,
            swap = (64 / self.scale.max(1)).max(1),
        )
    }

    /// The process's ops, with a mark after the warm-up and after each
    /// iteration.
    fn script(&self) -> Vec<Op> {
        let big = self.pages(60);
        let small = self.pages(4);
        let mut rng = SimRng::new(self.seed);
        let mut ops = vec![
            Op::Mmap {
                region: 0,
                pages: big,
            },
            madvise(0, Advice::HugePage, None),
        ];
        if self.small {
            ops.push(Op::Mmap {
                region: 1,
                pages: small,
            });
            ops.push(madvise(1, Advice::NoHugePage, None));
        }
        store(&mut ops, 0, 0..big);
        ops.push(madvise(0, Advice::PageOut, None));
        if self.small {
            store(&mut ops, 1, 0..small);
            ops.push(madvise(1, Advice::PageOut, None));
        }
        ops.push(Op::Mark { id: 0 });
        let dontneed = self.pages(16);
        let swapin_unit = if self.aligned_swapin { MTHP } else { 1 };
        for i in 0..self.iterations {
            random_blocks(&mut rng, big, swapin_unit, dontneed, |r| {
                store(&mut ops, 0, r);
            });
            random_blocks(&mut rng, big, MTHP, dontneed, |r| {
                ops.push(madvise(0, Advice::DontNeed, Some(r.clone())));
                store(&mut ops, 0, r);
            });
            if self.small {
                random_blocks(&mut rng, small, 1, self.pages(1), |r| {
                    store(&mut ops, 1, r);
                });
            }
            ops.push(madvise(0, Advice::PageOut, None));
            if self.small {
                ops.push(madvise(1, Advice::PageOut, None));
            }
            ops.push(Op::Mark { id: i + 1 });
        }
        ops
    }

    /// Runs the harness with its files in `dir`; one figure per iteration.
    ///
    /// # Errors
    /// If the config cannot be written or the machine fails.
    pub fn run(&self, dir: &Path) -> Result<Vec<ThpAllocIteration>, BenchError> {
        let path = dir.join("thp-swap-allocator.toml");
        std::fs::write(&path, self.config()).map_err(|source| BenchError::Io {
            dir: dir.to_owned(),
            source,
        })?;
        let cfg = MachineConfig::load(&path)?;
        let source = ProcessSource::Script(Script::new("thp_swap_allocator", self.script()));
        let m = Machine::with_sources(
            cfg,
            RunOptions::default(),
            "thp-swap-allocator",
            vec![source],
        )?;
        Ok(iterations(&m.run(|_, _| {})?))
    }
}

/// The per-iteration differences of the marks' 64 KiB swap-out counters.
fn iterations(report: &Report) -> Vec<ThpAllocIteration> {
    let at = |i: usize| {
        let m = &report.marks[i];
        (m.get("thp_swpout"), m.get("thp_swpout_fallback"))
    };
    (1..report.marks.len())
        .map(|i| {
            let (s0, f0) = at(i - 1);
            let (s1, f1) = at(i);
            ThpAllocIteration {
                swpout: s1 - s0,
                fallback: f1 - f0,
            }
        })
        .collect()
}

fn madvise(region: u32, advice: Advice, r: Option<std::ops::Range<u64>>) -> Op {
    Op::Madvise {
        region,
        advice,
        pages: r.map(|r| PageRange {
            start: r.start,
            end: r.end,
        }),
    }
}

/// A store to every page of `pages` of `region` (the selftest's memset).
fn store(ops: &mut Vec<Op>, region: u32, pages: std::ops::Range<u64>) {
    ops.extend(pages.map(|page| Op::Access {
        region,
        page,
        write: true,
    }));
}

/// `total / unit` blocks of `unit` pages at random `unit`-aligned offsets
/// of an area of `size` pages, as the selftest's `rand() % (size / unit)`.
fn random_blocks(
    rng: &mut SimRng,
    size: u64,
    unit: u64,
    total: u64,
    mut f: impl FnMut(std::ops::Range<u64>),
) {
    for _ in 0..total / unit {
        let off = rng.below(size / unit) * unit;
        f(off..off + unit);
    }
}
