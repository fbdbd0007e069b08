//! The multi-generational LRU as a reclaim policy (mm/vmscan.c's
//! `lru_gen_*` code, `reclaim.policy = "mglru"`).
//!
//! The same entry points as the classic policy (kswapd, direct reclaim,
//! memcg limit reclaim) choose their victims from the oldest generation of
//! each lruvec instead of the inactive list, and hand them to the shared
//! `shrink_folio` (unmap, swap allocation, pageout). Aging
//! (`try_to_inc_max_seq`) makes a new generation when too few are left to
//! evict from, after a page-table walk that promotes the folios found
//! accessed. The generation lists themselves are swapvm-mm's (lru_gen.rs).
//!
//! Files: this one holds the reclaim drivers (kswapd's `balance_pgdat`
//! steps, `do_try_to_free_pages`, `try_to_shrink_lruvec`); `age.rs` the
//! aging and `min_ttl_ms`; `evict.rs` `evict_folios` and the PID
//! controller; `debugfs.rs` the `lru_gen` file's commands.
//!
//! swapvm simplifies: memcgs are walked in pre-order each pass (the
//! kernel's memcg LRU, which orders memcgs by their own generations, is not
//! modelled); kswapd's `balance_pgdat` lowers the priority after a pass
//! over every memcg that freed nothing, from `set_initial_priority`'s.

mod age;
mod debugfs;
mod evict;

use crate::{Progress, Reclaimer, Who, DEF_PRIORITY};
use swapvm_core::VmEvent;
use swapvm_mm::{MemcgEvent, MemcgId, Memory};
use swapvm_swap::SwapSubsystem;

pub use age::lru_gen_seq_show;
pub use debugfs::LruGenCmdError;

/// MGLRU's reclaim state between ticks.
#[derive(Clone, Debug, Default)]
pub struct LruGenState {
    /// kswapd's run while one is under way.
    kswapd: Option<KswapdRun>,
    /// `lru_gen_age_node` found every lruvec younger than `min_ttl_ms`:
    /// the machine should OOM-kill (taken by [`Reclaimer::take_oom_request`]).
    oom_request: bool,
    /// Aging passes run (`try_to_inc_max_seq` that made a generation).
    pub nr_aging: u64,
    /// Folios promoted by look-around during eviction.
    pub nr_look_around: u64,
}

/// One kswapd `balance_pgdat` run, spread over ticks.
#[derive(Clone, Copy, Debug)]
struct KswapdRun {
    priority: u32,
    /// Position in the memcg walk.
    at: usize,
    /// What is left of the current lruvec's `nr_to_scan` (None: not
    /// computed yet).
    left: Option<u64>,
    /// Progress of the current pass over the memcgs.
    pass: Progress,
}

impl Reclaimer {
    /// The machine should OOM-kill now (`min_ttl_ms` protection); the
    /// request is cleared.
    pub fn take_oom_request(&mut self) -> bool {
        std::mem::take(&mut self.lru_gen.oom_request)
    }

    /// MGLRU's counters (aging passes, look-around promotions).
    pub fn lru_gen_state(&self) -> &LruGenState {
        &self.lru_gen
    }

    /// kswapd's tick under MGLRU: `lru_gen_age_node` at the start of a
    /// run, then steps of `try_to_shrink_lruvec` over the memcgs until free
    /// memory (plus writes in flight) reaches the high watermark.
    pub(crate) fn lru_gen_kswapd_tick(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        cpu: usize,
        now: u64,
    ) -> Progress {
        let mut total = Progress::default();
        let mut batches = 0;
        while batches < self.kswapd_batches_per_tick {
            if mem.nr_free() + self.nr_writeback >= mem.wmark.high {
                self.lru_gen.kswapd = None;
                break;
            }
            if self.lru_gen.kswapd.is_none() {
                let nr_to_reclaim = mem.wmark.high.max(u64::from(self.cfg.swap_cluster_max));
                let priority = self.set_initial_priority(mem, swap, nr_to_reclaim);
                self.lru_gen_age_node(mem, swap, priority, now);
                self.lru_gen.kswapd = Some(KswapdRun {
                    priority,
                    at: 0,
                    left: None,
                    pass: Progress::default(),
                });
            }
            match self.lru_gen_kswapd_step(mem, swap, cpu, now) {
                Some(p) => {
                    total.add(p);
                    batches += 1;
                }
                None => break,
            }
        }
        if mem.nr_free() >= mem.wmark.high {
            self.lru_gen.kswapd = None;
            self.kswapd_awake = false;
        }
        total
    }

    /// One step of kswapd's run: one `evict_folios` (or aging) on the
    /// current lruvec, or the move to the next. `None` when the run ended
    /// (past priority 1 without balancing the node; kswapd tries again on
    /// a later tick).
    fn lru_gen_kswapd_step(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        cpu: usize,
        now: u64,
    ) -> Option<Progress> {
        let mut run = self.lru_gen.kswapd?;
        let walk = mem.memcg.subtree(MemcgId::ROOT);
        if run.at >= walk.len() {
            // balance_pgdat's priority step after a pass that freed nothing.
            if !run.pass.made() {
                run.priority -= 1;
            }
            if run.priority < 1 {
                self.lru_gen.kswapd = None;
                return None;
            }
            (run.at, run.left, run.pass) = (0, None, Progress::default());
            self.lru_gen.kswapd = Some(run);
            return Some(Progress::default());
        }
        let lv = walk[run.at];
        let p = match self.lru_gen_lruvec_left(mem, swap, lv, run.priority, run.left, now) {
            Some(left) => {
                let p = self.evict_folios(mem, swap, lv, left, Who::Kswapd, cpu, now);
                run.left = (p.scanned > 0 && p.scanned < left).then(|| left - p.scanned);
                p
            }
            None => {
                run.left = None;
                Progress::default()
            }
        };
        if run.left.is_none() {
            run.at += 1;
        }
        run.pass.add(p);
        self.lru_gen.kswapd = Some(run);
        Some(p)
    }

    /// What is left to scan of lruvec `lv` in this `try_to_shrink_lruvec`:
    /// `left` if under way, else a fresh `get_nr_to_scan` (which may age
    /// instead). `None`: nothing to scan here now.
    fn lru_gen_lruvec_left(
        &mut self,
        mem: &mut Memory,
        swap: &SwapSubsystem,
        lv: MemcgId,
        priority: u32,
        left: Option<u64>,
        now: u64,
    ) -> Option<u64> {
        if let Some(l) = left {
            return Some(l);
        }
        mem.memcg.calculate_protection(MemcgId::ROOT, lv);
        if mem.memcg.below_min(MemcgId::ROOT, lv) || self.get_swappiness(mem, swap, lv) == 0 {
            return None;
        }
        let nr = self.get_nr_to_scan(mem, lv, priority, now);
        (nr > 0).then_some(nr as u64)
    }

    /// `get_swappiness`: 0 (no anon eviction) without swap for `lv`
    /// (fewer than `MIN_LRU_BATCH` slots it may take), else the memcg's
    /// swappiness. swapvm has no file LRU, so swappiness 0 leaves MGLRU
    /// nothing to evict, as the kernel's would with no file pages.
    fn get_swappiness(&self, mem: &Memory, swap: &SwapSubsystem, lv: MemcgId) -> u32 {
        if !Self::can_age_anon_pages(mem, swap, lv) {
            return 0;
        }
        mem.memcg.swappiness(lv, self.cfg.swappiness)
    }

    /// `set_initial_priority`: the priority at which `(size >> priority)`
    /// of the inactive (older than the two youngest) generations would
    /// reclaim `nr_to_reclaim`, within `DEF_PRIORITY / 2..=DEF_PRIORITY`.
    fn set_initial_priority(&self, mem: &Memory, swap: &SwapSubsystem, nr_to_reclaim: u64) -> u32 {
        if nr_to_reclaim < swapvm_mm::lru_gen::MIN_LRU_BATCH {
            return DEF_PRIORITY;
        }
        let reclaimable = if Self::can_age_anon_pages(mem, swap, MemcgId::ROOT) {
            u64::from(mem.lru.len(swapvm_mm::LruList::InactiveAnon))
        } else {
            0
        };
        let fls = |x: u64| 64 - x.leading_zeros() as i64;
        let priority = fls(reclaimable) - 1 - fls(nr_to_reclaim - 1);
        priority.clamp(i64::from(DEF_PRIORITY / 2), i64::from(DEF_PRIORITY)) as u32
    }

    /// `do_try_to_free_pages` under MGLRU (`lru_gen_shrink_node` for global
    /// direct reclaim, `lru_gen_shrink_lruvec` for memcg reclaim): each
    /// priority from the initial one down to 0 runs `try_to_shrink_lruvec`
    /// on each memcg of `target`'s subtree until `want` is reclaimed or on
    /// its way. Memcgs under `memory.min` are passed over, under
    /// `memory.low` too unless a first walk freed nothing.
    pub(crate) fn lru_gen_try_to_free_pages(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        target: MemcgId,
        want: u64,
        cpu: usize,
        now: u64,
    ) -> Progress {
        let mut total = Progress::default();
        let mut low_reclaim = false;
        loop {
            if target == MemcgId::ROOT {
                mem.stat.inc(VmEvent::AllocStall);
            }
            let mut low_skipped = false;
            let first = self.set_initial_priority(mem, swap, want);
            'prio: for priority in (0..=first).rev() {
                for lv in mem.memcg.subtree(target) {
                    mem.memcg.calculate_protection(target, lv);
                    if mem.memcg.below_min(target, lv) {
                        continue;
                    }
                    if mem.memcg.below_low(target, lv) {
                        if !low_reclaim {
                            low_skipped = true;
                            continue;
                        }
                        mem.memcg.event(lv, MemcgEvent::Low);
                    }
                    let left = want - (total.reclaimed + total.writeback).min(want);
                    total.add(self.try_to_shrink_lruvec(mem, swap, lv, priority, left, cpu, now));
                    if total.reclaimed + total.writeback >= want {
                        break 'prio;
                    }
                }
            }
            if total.made() || !low_skipped || low_reclaim {
                return total;
            }
            low_reclaim = true;
        }
    }

    /// `try_to_shrink_lruvec` for direct and memcg reclaim: `evict_folios`
    /// until `get_nr_to_scan`'s count is scanned or `want` reclaimed
    /// (`should_abort_scan`).
    #[allow(clippy::too_many_arguments)]
    fn try_to_shrink_lruvec(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        lv: MemcgId,
        priority: u32,
        want: u64,
        cpu: usize,
        now: u64,
    ) -> Progress {
        let mut prog = Progress::default();
        if self.get_swappiness(mem, swap, lv) == 0 {
            return prog;
        }
        let nr = self.get_nr_to_scan(mem, lv, priority, now);
        if nr <= 0 {
            return prog;
        }
        let nr = nr as u64;
        while prog.scanned < nr {
            let p = self.evict_folios(mem, swap, lv, nr - prog.scanned, Who::Direct, cpu, now);
            prog.add(p);
            if p.scanned == 0 || prog.reclaimed + prog.writeback >= want {
                break;
            }
        }
        prog
    }
}
