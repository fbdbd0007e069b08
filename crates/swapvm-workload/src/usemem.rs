//! The usemem generator: map, touch every page, make passes, unmap, exit.
//!
//! Like vm-scalability's `usemem`, a process maps one anonymous region
//! (region 0), writes every page of it in order (the touch pass, which is
//! what forces a fresh region into RAM and, past the RAM size, into swap),
//! then makes `passes` passes of `accesses_per_pass` accesses each, picked by
//! the [`Pattern`], each a store with probability `write_ratio`. Then it
//! unmaps the region and exits.
//!
//! The generator is a small state machine advanced by [`ProcessGen::next_op`];
//! it holds no buffer, so producing an op never allocates.

use crate::op::Op;
use crate::spec::{Pattern, ProcessSpec};
use swapvm_core::SimRng;

/// The one region a usemem process maps.
const REGION: u32 = 0;

/// Where a process is in its life; the op it emits next is decided by this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Emit the Mmap.
    Mmap,
    /// The touch pass: write page `next`, then the pages after it.
    Touch { next: u64 },
    /// Pass `pass` (from 0) has made `done` of its accesses.
    Pass { pass: u32, done: u64 },
    /// Emit the Munmap.
    Munmap,
    /// Emit the Exit.
    Exit,
    /// Exited: no more ops.
    Done,
}

/// A [`Pattern`] resolved against the region size.
#[derive(Debug, Clone, Copy)]
enum Picker {
    /// Walk with a cursor that wraps at the end of the region.
    Sequential {
        cursor: u64,
    },
    Random,
    /// Pages `0..hot_pages` are hot, `hot_pages..` cold.
    HotCold {
        hot_pages: u64,
        hot_probability: f64,
    },
}

/// A deterministic op stream for one process. The machine may fail to
/// complete an op (the access faulted and needs I/O) and retry it later: the
/// generator itself never needs to re-emit; the machine keeps the pending op.
#[derive(Debug, Clone)]
pub struct ProcessGen {
    name: String,
    rng: SimRng,
    pages: u64,
    passes: u32,
    accesses_per_pass: u64,
    write_ratio: f64,
    picker: Picker,
    stage: Stage,
    accesses_done: u64,
    accesses_total: u64,
    /// `kind = "random"`: the ops come from the random generator instead.
    random: Option<crate::random::RandomOps>,
}

impl ProcessGen {
    /// The generator for process number `index` of a workload, drawing only
    /// from `rng`.
    pub(crate) fn new(spec: &ProcessSpec, index: usize, rng: SimRng) -> Self {
        // A random process draws from the same stream (it makes no usemem
        // draws), so a process's ops still depend only on its own stream.
        let random_rng = rng.clone();
        let pages = spec.size_pages;
        let picker = match spec.pattern {
            Pattern::Sequential => Picker::Sequential { cursor: 0 },
            Pattern::Random => Picker::Random,
            Pattern::HotCold {
                hot_fraction,
                hot_probability,
            } => Picker::HotCold {
                hot_pages: hot_pages(pages, hot_fraction),
                hot_probability,
            },
        };
        ProcessGen {
            name: format!("{}.{index}", spec.kind.as_str()),
            rng,
            pages,
            passes: spec.passes,
            accesses_per_pass: spec.accesses_per_pass,
            write_ratio: spec.write_ratio,
            picker,
            stage: Stage::Mmap,
            accesses_done: 0,
            accesses_total: spec.accesses_total(),
            random: (spec.kind == crate::spec::ProcessKind::Random).then(|| {
                crate::random::RandomOps::new(
                    random_rng,
                    pages,
                    spec.accesses_total(),
                    spec.write_ratio,
                    spec.pattern,
                )
            }),
        }
    }

    /// The next op, or `None` after [`Op::Exit`] was returned.
    pub fn next_op(&mut self) -> Option<Op> {
        if let Some(r) = &mut self.random {
            let op = r.next_op();
            if matches!(op, Some(Op::Access { .. })) {
                self.accesses_done += 1;
            }
            return op;
        }
        let op = match self.stage {
            Stage::Mmap => {
                self.stage = if self.pages == 0 {
                    Stage::Munmap
                } else {
                    Stage::Touch { next: 0 }
                };
                Op::Mmap {
                    region: REGION,
                    pages: self.pages,
                }
            }
            Stage::Touch { next } => {
                self.stage = if next + 1 < self.pages {
                    Stage::Touch { next: next + 1 }
                } else {
                    self.pass_stage(0)
                };
                self.access(next, true)
            }
            Stage::Pass { pass, done } => {
                let page = self.pick_page();
                let write = self.rng.chance(self.write_ratio);
                self.stage = if done + 1 < self.accesses_per_pass {
                    Stage::Pass {
                        pass,
                        done: done + 1,
                    }
                } else {
                    self.pass_stage(pass + 1)
                };
                self.access(page, write)
            }
            Stage::Munmap => {
                self.stage = Stage::Exit;
                Op::Munmap { region: REGION }
            }
            Stage::Exit => {
                self.stage = Stage::Done;
                Op::Exit
            }
            Stage::Done => return None,
        };
        Some(op)
    }

    /// Accesses emitted so far (the touch pass included).
    pub fn accesses_done(&self) -> u64 {
        self.accesses_done
    }

    /// Accesses this process emits in its whole life.
    pub fn accesses_total(&self) -> u64 {
        self.accesses_total
    }

    /// The process's name, e.g. `usemem.0`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The start of pass `pass`, or the Munmap once every pass is done.
    fn pass_stage(&self, pass: u32) -> Stage {
        if pass < self.passes && self.accesses_per_pass > 0 {
            Stage::Pass { pass, done: 0 }
        } else {
            Stage::Munmap
        }
    }

    fn access(&mut self, page: u64, write: bool) -> Op {
        debug_assert!(
            page < self.pages,
            "page {page} outside a region of {}",
            self.pages
        );
        self.accesses_done += 1;
        Op::Access {
            region: REGION,
            page,
            write,
        }
    }

    /// The page of the next pass access.
    fn pick_page(&mut self) -> u64 {
        match &mut self.picker {
            Picker::Sequential { cursor } => {
                let page = *cursor;
                *cursor = if page + 1 < self.pages { page + 1 } else { 0 };
                page
            }
            Picker::Random => self.rng.below(self.pages),
            &mut Picker::HotCold {
                hot_pages,
                hot_probability,
            } => {
                let cold_pages = self.pages - hot_pages;
                if cold_pages == 0 || self.rng.chance(hot_probability) {
                    self.rng.below(hot_pages)
                } else {
                    hot_pages + self.rng.below(cold_pages)
                }
            }
        }
    }
}

/// Size of the hot set: `hot_fraction` of the region rounded, keeping at
/// least one page hot and, when the region has two pages or more, at least
/// one cold.
fn hot_pages(pages: u64, hot_fraction: f64) -> u64 {
    if pages < 2 {
        return pages;
    }
    ((hot_fraction * pages as f64).round() as u64).clamp(1, pages - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ProcessKind, WorkloadSpec};
    use std::path::PathBuf;

    fn spec(
        pattern: Pattern,
        pages: u64,
        passes: u32,
        write_ratio: f64,
        accesses_per_pass: u64,
    ) -> ProcessSpec {
        ProcessSpec {
            kind: ProcessKind::Usemem,
            count: 1,
            size_pages: pages,
            passes,
            pattern,
            write_ratio,
            accesses_per_pass,
            program: None,
            cgroup: None,
            think_us: 0,
        }
    }

    fn workload(processes: Vec<ProcessSpec>) -> WorkloadSpec {
        WorkloadSpec {
            name: "test".into(),
            description: String::new(),
            processes,
            source: PathBuf::from("/w/test.toml"),
        }
    }

    fn all_ops(g: &mut ProcessGen) -> Vec<Op> {
        std::iter::from_fn(|| g.next_op()).collect()
    }

    fn gen(p: ProcessSpec, seed: u64) -> ProcessGen {
        ProcessGen::new(&p, 0, SimRng::derive(seed, 1))
    }

    /// The pass accesses (after the touch pass) as (page, write).
    fn pass_accesses(ops: &[Op], pages: u64) -> Vec<(u64, bool)> {
        ops[1 + pages as usize..ops.len() - 2]
            .iter()
            .map(|op| match *op {
                Op::Access {
                    region: 0,
                    page,
                    write,
                } => (page, write),
                other => panic!("expected an access, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn op_stream_shape() {
        let (pages, passes, per_pass) = (100, 3, 70);
        let mut g = gen(spec(Pattern::Random, pages, passes, 0.5, per_pass), 1);
        assert_eq!(g.name(), "usemem.0");
        assert_eq!(g.accesses_total(), pages + u64::from(passes) * per_pass);
        let ops = all_ops(&mut g);
        assert_eq!(ops[0], Op::Mmap { region: 0, pages });
        for (i, op) in ops[1..=pages as usize].iter().enumerate() {
            let want = Op::Access {
                region: 0,
                page: i as u64,
                write: true,
            };
            assert_eq!(*op, want, "touch pass, access {i}");
        }
        let accesses = pass_accesses(&ops, pages);
        assert_eq!(accesses.len() as u64, u64::from(passes) * per_pass);
        assert!(accesses.iter().all(|&(page, _)| page < pages));
        assert_eq!(ops[ops.len() - 2..], [Op::Munmap { region: 0 }, Op::Exit]);
        assert_eq!(g.accesses_done(), g.accesses_total());
        assert_eq!(g.next_op(), None);
        assert_eq!(g.next_op(), None);
    }

    #[test]
    fn no_passes_is_touch_then_exit() {
        let mut g = gen(spec(Pattern::Random, 3, 0, 0.5, 3), 1);
        let ops = all_ops(&mut g);
        assert_eq!(ops.len(), 1 + 3 + 2);
        assert_eq!(g.accesses_done(), 3);
        assert_eq!(g.accesses_total(), 3);
    }

    #[test]
    fn empty_region_maps_and_exits() {
        // Not reachable from a file (size_mib > 0), but the fields are public.
        let mut g = gen(spec(Pattern::Random, 0, 2, 0.5, 5), 1);
        let ops = all_ops(&mut g);
        assert_eq!(
            ops,
            [
                Op::Mmap {
                    region: 0,
                    pages: 0
                },
                Op::Munmap { region: 0 },
                Op::Exit
            ]
        );
        assert_eq!(g.accesses_total(), 0);
    }

    #[test]
    fn same_seed_same_ops() {
        let w = workload(vec![spec(Pattern::Random, 500, 2, 0.3, 500)]);
        let a: Vec<Vec<Op>> = w.usemem_gens(42).iter_mut().map(all_ops).collect();
        let b: Vec<Vec<Op>> = w.usemem_gens(42).iter_mut().map(all_ops).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn different_seed_different_ops() {
        let w = workload(vec![spec(Pattern::Random, 500, 2, 0.3, 500)]);
        let a: Vec<Vec<Op>> = w.usemem_gens(42).iter_mut().map(all_ops).collect();
        let b: Vec<Vec<Op>> = w.usemem_gens(43).iter_mut().map(all_ops).collect();
        assert_ne!(a, b);
        // The difference is in the passes: map and touch pass are fixed.
        assert_eq!(a[0][..501], b[0][..501]);
    }

    #[test]
    fn sequential_wraps_and_carries_on_across_passes() {
        let mut g = gen(spec(Pattern::Sequential, 10, 2, 0.0, 15), 1);
        let ops = all_ops(&mut g);
        let pages: Vec<u64> = pass_accesses(&ops, 10).iter().map(|a| a.0).collect();
        let want: Vec<u64> = (0..30).map(|i| i % 10).collect();
        assert_eq!(pages, want);
    }

    #[test]
    fn write_ratio_is_honoured() {
        for (ratio, lo, hi) in [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.25, 0.23, 0.27)] {
            let mut g = gen(spec(Pattern::Sequential, 1000, 20, ratio, 1000), 7);
            let ops = all_ops(&mut g);
            let acc = pass_accesses(&ops, 1000);
            let share = acc.iter().filter(|a| a.1).count() as f64 / acc.len() as f64;
            assert!(
                (lo..=hi).contains(&share),
                "write_ratio {ratio}: share {share}"
            );
        }
    }

    #[test]
    fn random_covers_the_region() {
        let mut g = gen(spec(Pattern::Random, 64, 1, 0.0, 10_000), 3);
        let ops = all_ops(&mut g);
        let mut seen = [false; 64];
        for (page, _) in pass_accesses(&ops, 64) {
            seen[page as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn hotcold_bias() {
        let pattern = Pattern::HotCold {
            hot_fraction: 0.1,
            hot_probability: 0.9,
        };
        let pages = 10_000;
        let mut g = gen(spec(pattern, pages, 1, 0.0, 100_000), 11);
        let ops = all_ops(&mut g);
        let acc = pass_accesses(&ops, pages);
        assert_eq!(acc.len(), 100_000);
        let hot = acc.iter().filter(|a| a.0 < pages / 10).count();
        let share = hot as f64 / acc.len() as f64;
        assert!((share - 0.9).abs() <= 0.02, "hot share {share}");
        // The cold set is used too, all of it within the region.
        assert!(acc.iter().any(|a| a.0 >= pages / 10));
        assert!(acc.iter().all(|a| a.0 < pages));
    }

    #[test]
    fn hotcold_tiny_regions_stay_in_range() {
        let pattern = Pattern::HotCold {
            hot_fraction: 0.999,
            hot_probability: 0.0,
        };
        for pages in 1..5 {
            let mut g = gen(spec(pattern, pages, 1, 0.0, 200), 5);
            let ops = all_ops(&mut g);
            assert!(pass_accesses(&ops, pages).iter().all(|a| a.0 < pages));
        }
        assert_eq!(hot_pages(1, 0.5), 1);
        assert_eq!(hot_pages(2, 0.999), 1);
        assert_eq!(hot_pages(1000, 0.0001), 1);
        assert_eq!(hot_pages(1000, 0.1), 100);
    }
}
