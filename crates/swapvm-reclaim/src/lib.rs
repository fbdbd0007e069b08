//! swapvm-reclaim: what to evict and when (mm/vmscan.c).
//!
//! It owns the reclaim policy over the anon LRU lists that swapvm-mm keeps:
//! kswapd (woken below the low watermark, reclaiming to high) and direct
//! reclaim (a fault that found free memory below min), the active/inactive
//! balance, `folio_check_references`, and `shrink_folio_list`: allocate
//! swap, unmap through rmap, write out, and free the folio once its
//! writeback completes.
//!
//! It refuses to know how pages are mapped or stored: rmap, unmap and the
//! swap cache are swapvm-mm's and swapvm-swap's. The policy sits behind
//! [`Reclaimer`]'s few entry points so a second policy (MGLRU) can be added
//! beside this one reusing the same mechanics.

#![warn(missing_docs)]

pub mod mglru;
pub mod swapoff;

pub use swapoff::{Swapoff, SwapoffError, SwapoffStep};

use swapvm_core::config::ReclaimConfig;
use swapvm_core::{Pfn, VmEvent};
use swapvm_mm::{pg, LruList, MemcgEvent, MemcgId, Memory};
use swapvm_swap::{SwapError, SwapSubsystem, WriteOut};

/// `DEF_PRIORITY`: the first reclaim priority scans 1/2^12 of the LRU.
pub const DEF_PRIORITY: u32 = 12;

/// Who is reclaiming (for the `_kswapd` / `_direct` counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The kswapd task.
    Kswapd,
    /// A faulting task.
    Direct,
}

/// Outcome of one reclaim pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Folios scanned on the inactive list.
    pub scanned: u64,
    /// Folios freed at once (clean swap-cache folios).
    pub reclaimed: u64,
    /// Folios whose swap-out write was submitted (freed when it completes).
    pub writeback: u64,
}

impl Progress {
    fn add(&mut self, o: Progress) {
        self.scanned += o.scanned;
        self.reclaimed += o.reclaimed;
        self.writeback += o.writeback;
    }
    /// Anything reclaimed or on its way.
    pub fn made(&self) -> bool {
        self.reclaimed + self.writeback > 0
    }
}

/// What `pageout` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PageOut {
    /// The write was submitted.
    Writeback,
    /// Nothing to write (zero page): the folio is clean now.
    Clean,
    /// Nothing written, and the folio must stay: zswap refused it and its
    /// memcg forbids writeback to the device (`AOP_WRITEPAGE_ACTIVATE`).
    Activate,
}

/// What `folio_check_references` decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FolioRef {
    Activate,
    Keep,
    Reclaim,
}

/// The part of `struct scan_control` the anon lists use: one `shrink_node`
/// pass, decided once at its start by [`Reclaimer::prepare_scan_control`].
#[derive(Clone, Copy, Debug)]
struct ScanControl {
    /// `sc->target_mem_cgroup`: the memcg whose subtree is reclaimed (the
    /// root for global reclaim).
    target: MemcgId,
    /// `cgroup_reclaim(sc)`: limit or proactive reclaim of a memcg.
    cgroup: bool,
    /// `sc->priority`: each list is scanned by its size >> priority.
    priority: u32,
    /// `sc->may_deactivate & DEACTIVATE_ANON`: the active list may be
    /// scanned (deactivated) alongside the inactive one.
    may_deactivate: bool,
    /// `sc->skipped_deactivate`: an active scan target went unscanned
    /// because `may_deactivate` was off.
    skipped_deactivate: bool,
    /// `sc->memcg_low_reclaim`: memcgs under `memory.low` are reclaimed
    /// too (the retry after a walk that skipped them freed nothing).
    memcg_low_reclaim: bool,
    /// `sc->memcg_low_skipped`: a memcg was skipped for `memory.low`.
    memcg_low_skipped: bool,
}

/// `get_scan_count`'s targets (`nr[]`) still to scan in one `shrink_lruvec`.
#[derive(Clone, Copy, Debug, Default)]
struct ScanTargets {
    inactive: u64,
    active: u64,
}

/// A kswapd `balance_pgdat` invocation in progress. swapvm spreads it over
/// ticks (a tick's batch budget bounds the work), so its priority and the
/// `shrink_node` pass at that priority live here between ticks.
#[derive(Clone, Copy, Debug)]
struct BalancePgdat {
    /// `sc.priority`, from `DEF_PRIORITY` down to 1.
    priority: u32,
    /// The pass at `priority`, once started.
    pass: Option<NodePass>,
}

/// One `kswapd_shrink_node` → `shrink_node` pass: `shrink_node_memcgs`
/// over every memcg, one `shrink_lruvec` at a time.
#[derive(Clone, Copy, Debug)]
struct NodePass {
    sc: ScanControl,
    /// Position of the lruvec being shrunk in the pre-order walk.
    at: usize,
    /// Its memcg.
    lv: MemcgId,
    /// Its scan targets still to go.
    nr: ScanTargets,
    /// What its `shrink_lruvec` reclaimed so far.
    lv_done: Progress,
    /// What this pass scanned and reclaimed (or has on its way).
    done: Progress,
}

/// The reclaim policy state of a machine.
#[derive(Debug)]
pub struct Reclaimer {
    cfg: ReclaimConfig,
    kswapd_awake: bool,
    nr_writeback: u64,
    /// `lruvec->refaults[WORKINGSET_ANON]` of each memcg's lruvec:
    /// `workingset_activate_anon` (of the subtree) as `snapshot_refaults`
    /// last saw it, at the end of a reclaim invocation targeting it.
    refaults_anon: Vec<u64>,
    /// Where each target's partial walk resumes (the kernel's
    /// `mem_cgroup_reclaim_cookie` position), by target memcg.
    walk_pos: Vec<usize>,
    /// kswapd's `balance_pgdat` while one runs.
    kswapd_run: Option<BalancePgdat>,
    /// Most kswapd batches per tick (bounds the work of one tick).
    pub kswapd_batches_per_tick: u32,
    /// The multi-generational LRU's state (used while the lruvecs run it).
    lru_gen: mglru::LruGenState,
}

impl Reclaimer {
    /// A reclaimer for a machine of `ram_pages`. (The machine's size no
    /// longer sets anything here: `inactive_is_low` sizes its ratio from
    /// the lists, as the kernel does.)
    pub fn new(cfg: ReclaimConfig, _ram_pages: u64) -> Self {
        Reclaimer {
            cfg,
            kswapd_awake: false,
            nr_writeback: 0,
            refaults_anon: Vec::new(),
            walk_pos: Vec::new(),
            kswapd_run: None,
            kswapd_batches_per_tick: 32,
            lru_gen: mglru::LruGenState::default(),
        }
    }

    /// Swap-out writes in flight.
    pub fn nr_writeback(&self) -> u64 {
        self.nr_writeback
    }
    /// kswapd is running.
    pub fn kswapd_awake(&self) -> bool {
        self.kswapd_awake
    }

    /// `wakeup_kswapd` if free memory is below the low watermark.
    pub fn maybe_wake_kswapd(&mut self, mem: &Memory) {
        if !self.kswapd_awake && mem.nr_free() < mem.wmark.low {
            self.kswapd_awake = true;
            mem.stat.inc(VmEvent::KswapdWake);
        }
    }

    /// One tick of kswapd (`balance_pgdat`): reclaims until free memory
    /// plus writes in flight reach the high watermark, then sleeps once free
    /// memory itself is there.
    ///
    /// swapvm simplifies: the kernel's `pgdat_balanced` counts free pages
    /// only; swapvm counts writes in flight as free already, since it frees
    /// a written folio when its write completes.
    pub fn kswapd_tick(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        cpu: usize,
        now: u64,
    ) -> Progress {
        let mut total = Progress::default();
        if !self.kswapd_awake {
            return total;
        }
        if mem.lru.lru_gen_enabled() {
            return self.lru_gen_kswapd_tick(mem, swap, cpu, now);
        }
        // A batch that frees nothing is no reason to stop: a freshly
        // referenced list needs a first pass (which only clears accessed
        // bits) before a second can reclaim; the tick's batch budget
        // bounds the work instead.
        let mut batches = 0;
        while batches < self.kswapd_batches_per_tick {
            if mem.nr_free() + self.nr_writeback >= mem.wmark.high {
                self.balance_pgdat_end(mem, swap);
                break;
            }
            match self.kswapd_step(mem, swap, cpu, now) {
                Some(p) => {
                    total.add(p);
                    batches += 1;
                }
                // The invocation ran out of priorities (or lists) without
                // balancing the node: kswapd tries again on a later tick.
                None if self.kswapd_run.is_none() => break,
                None => {}
            }
        }
        if mem.nr_free() >= mem.wmark.high {
            self.balance_pgdat_end(mem, swap);
            self.kswapd_awake = false;
        }
        total
    }

    /// One step of kswapd's `balance_pgdat`: a round of the current
    /// lruvec's `shrink_lruvec` loop (`Some`), or, where none is left to
    /// run, the end of that lruvec (and of the pass after the last memcg;
    /// `None`, see [`Self::kswapd_pass_end`]).
    fn kswapd_step(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        cpu: usize,
        now: u64,
    ) -> Option<Progress> {
        let run = *self.kswapd_run.get_or_insert(BalancePgdat {
            priority: DEF_PRIORITY,
            pass: None,
        });
        let mut pass = match run.pass {
            Some(p) => p,
            None => self.kswapd_pass_begin(mem, swap, run.priority),
        };
        // kswapd stops a lruvec once it has reclaimed its nr_to_reclaim,
        // the high watermark (kswapd_shrink_node).
        let nr_to_reclaim = mem.wmark.high.max(u64::from(self.cfg.swap_cluster_max));
        if pass.nr.inactive == 0 || pass.lv_done.reclaimed + pass.lv_done.writeback >= nr_to_reclaim
        {
            self.shrink_lruvec_end(mem, swap, pass.lv);
            match self.next_lruvec(mem, swap, &mut pass.sc, pass.at + 1, true) {
                Some((at, lv, nr)) => {
                    (pass.at, pass.lv, pass.nr) = (at, lv, nr);
                    pass.lv_done = Progress::default();
                    self.kswapd_save(pass);
                    return Some(Progress::default());
                }
                None => {
                    self.kswapd_pass_end(mem, pass);
                    return None;
                }
            }
        }
        let (p, refilled) = self.shrink_lruvec_round(
            mem,
            swap,
            &mut pass.sc,
            pass.lv,
            &mut pass.nr,
            Who::Kswapd,
            cpu,
            now,
        );
        if p.scanned == 0 && refilled == 0 {
            pass.nr = ScanTargets::default();
        }
        pass.lv_done.add(p);
        pass.done.add(p);
        self.kswapd_save(pass);
        Some(p)
    }

    fn kswapd_save(&mut self, pass: NodePass) {
        if let Some(run) = self.kswapd_run.as_mut() {
            run.pass = Some(pass);
        }
    }

    /// The start of one `balance_pgdat` priority iteration:
    /// `kswapd_age_node` (background aging of every memcg's anon lists
    /// while the node's inactive one is low), then `kswapd_shrink_node`'s
    /// `shrink_node`: `prepare_scan_control` and the first lruvec of
    /// `shrink_node_memcgs`.
    fn kswapd_pass_begin(
        &mut self,
        mem: &mut Memory,
        swap: &SwapSubsystem,
        priority: u32,
    ) -> NodePass {
        if Self::can_age_anon_pages(mem, swap, MemcgId::ROOT)
            && Self::inactive_is_low(mem, MemcgId::ROOT)
        {
            for lv in mem.memcg.subtree(MemcgId::ROOT) {
                self.shrink_active_list(mem, lv, u64::from(self.cfg.swap_cluster_max));
            }
        }
        let mut sc = self.prepare_scan_control(mem, MemcgId::ROOT, priority, false);
        let (at, lv, nr) = self.next_lruvec(mem, swap, &mut sc, 0, true).unwrap_or((
            usize::MAX - 1,
            MemcgId::ROOT,
            ScanTargets::default(),
        ));
        NodePass {
            sc,
            at,
            lv,
            nr,
            lv_done: Progress::default(),
            done: Progress::default(),
        }
    }

    /// The end of a kswapd pass: `balance_pgdat`'s priority step: the
    /// priority rises (the number falls) unless the pass scanned its
    /// nr_to_reclaim and reclaimed something. Past priority 1 the
    /// invocation ends unbalanced.
    fn kswapd_pass_end(&mut self, mem: &mut Memory, pass: NodePass) {
        let Some(run) = self.kswapd_run.as_mut() else {
            return;
        };
        run.pass = None;
        let nr_to_reclaim = mem.wmark.high.max(u64::from(self.cfg.swap_cluster_max));
        let raise_priority = pass.done.scanned < nr_to_reclaim;
        if raise_priority || !pass.done.made() {
            run.priority -= 1;
        }
        if run.priority < 1 {
            self.kswapd_run = None;
            self.snapshot_refaults(mem, MemcgId::ROOT);
        }
    }

    /// The end of a `balance_pgdat` invocation (the node is balanced): the
    /// lruvec under way closes as `shrink_lruvec` does, and the refault
    /// snapshot is taken (`snapshot_refaults`).
    fn balance_pgdat_end(&mut self, mem: &mut Memory, swap: &SwapSubsystem) {
        let Some(run) = self.kswapd_run.take() else {
            return;
        };
        if let Some(pass) = run.pass {
            self.shrink_lruvec_end(mem, swap, pass.lv);
        }
        self.snapshot_refaults(mem, MemcgId::ROOT);
    }

    /// `shrink_node_memcgs`' choice of the next lruvec from position
    /// `from` of the pre-order walk under `sc.target`: memcgs within their
    /// effective `memory.min` are passed over, and within `memory.low`
    /// too unless `sc.memcg_low_reclaim` (then `memory.events` `low`
    /// counts). Returns the position, the memcg and its scan targets.
    fn next_lruvec(
        &mut self,
        mem: &mut Memory,
        swap: &SwapSubsystem,
        sc: &mut ScanControl,
        from: usize,
        protect: bool,
    ) -> Option<(usize, MemcgId, ScanTargets)> {
        let walk = mem.memcg.subtree(sc.target);
        for (at, &m) in walk.iter().enumerate().skip(from) {
            mem.memcg.calculate_protection(sc.target, m);
            if protect && mem.memcg.below_min(sc.target, m) {
                continue;
            }
            if protect && mem.memcg.below_low(sc.target, m) {
                if !sc.memcg_low_reclaim {
                    sc.memcg_low_skipped = true;
                    continue;
                }
                mem.memcg.event(m, MemcgEvent::Low);
            }
            return Some((at, m, self.get_scan_count(mem, swap, sc, m)));
        }
        None
    }

    /// Direct reclaim for a task whose allocation failed below min
    /// (`try_to_free_pages` → `do_try_to_free_pages`). Counts `allocstall`.
    pub fn direct_reclaim(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        cpu: usize,
        now: u64,
    ) -> Progress {
        self.maybe_wake_kswapd(mem);
        let want = u64::from(self.cfg.swap_cluster_max);
        self.do_try_to_free_pages(mem, swap, MemcgId::ROOT, want, cpu, now)
    }

    /// `try_to_free_mem_cgroup_pages`: limit reclaim of `memcg`'s subtree
    /// for a charge of `nr_pages` that hit its `memory.max` (or proactive
    /// reclaim through `memory.reclaim`). Reclaims at least a batch.
    pub fn try_to_free_mem_cgroup_pages(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        memcg: MemcgId,
        nr_pages: u64,
        cpu: usize,
        now: u64,
    ) -> Progress {
        let want = nr_pages.max(u64::from(self.cfg.swap_cluster_max));
        self.do_try_to_free_pages(mem, swap, memcg, want, cpu, now)
    }

    /// `do_try_to_free_pages` for `target`'s subtree.
    ///
    /// Each priority from `DEF_PRIORITY` down to 0 runs one `shrink_node`
    /// pass, until `want` is reclaimed or on its way. If nothing was, and a
    /// pass left an active list unscanned for want of `may_deactivate`, the
    /// whole walk is retried with `force_deactivate`; if a memcg was
    /// skipped for `memory.low`, it is retried reclaiming those too, as the
    /// kernel does. The refault snapshot is taken at the end of each walk.
    /// Global reclaim counts `allocstall` for each walk.
    fn do_try_to_free_pages(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        target: MemcgId,
        want: u64,
        cpu: usize,
        now: u64,
    ) -> Progress {
        if mem.lru.lru_gen_enabled() {
            return self.lru_gen_try_to_free_pages(mem, swap, target, want, cpu, now);
        }
        let mut total = Progress::default();
        let mut force_deactivate = false;
        let mut memcg_low_reclaim = false;
        loop {
            if target == MemcgId::ROOT {
                mem.stat.inc(VmEvent::AllocStall);
            }
            let (mut skipped_deactivate, mut low_skipped) = (false, false);
            for priority in (0..=DEF_PRIORITY).rev() {
                let mut sc = self.prepare_scan_control(mem, target, priority, force_deactivate);
                sc.memcg_low_reclaim = memcg_low_reclaim;
                self.shrink_node_direct(mem, swap, &mut sc, want, &mut total, cpu, now);
                skipped_deactivate |= sc.skipped_deactivate;
                low_skipped |= sc.memcg_low_skipped;
                if total.reclaimed + total.writeback >= want {
                    break;
                }
            }
            self.snapshot_refaults(mem, target);
            if total.made() {
                return total;
            }
            if skipped_deactivate && !force_deactivate {
                force_deactivate = true;
            } else if low_skipped && !memcg_low_reclaim {
                (force_deactivate, memcg_low_reclaim) = (false, true);
            } else {
                return total;
            }
        }
    }

    /// `shrink_node` → `shrink_node_memcgs` for direct and memcg reclaim:
    /// a partial walk (resuming where the last one for this target broke
    /// off) that stops once `want` is reclaimed in all, each lruvec
    /// shrunk by [`Self::shrink_lruvec_direct`].
    #[allow(clippy::too_many_arguments)]
    fn shrink_node_direct(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        sc: &mut ScanControl,
        want: u64,
        total: &mut Progress,
        cpu: usize,
        now: u64,
    ) {
        let t = usize::from(sc.target.0);
        if self.walk_pos.len() <= t {
            self.walk_pos.resize(t + 1, 0);
        }
        let mut from = self.walk_pos[t];
        while let Some((at, lv, mut nr)) = self.next_lruvec(mem, swap, sc, from, true) {
            total.add(self.shrink_lruvec_direct(mem, swap, sc, lv, &mut nr, want, cpu, now));
            from = at + 1;
            if total.reclaimed + total.writeback >= want {
                break;
            }
        }
        let walk_len = mem.memcg.subtree(sc.target).len();
        self.walk_pos[t] = if from >= walk_len { 0 } else { from };
    }

    /// `shrink_lruvec` for direct and memcg reclaim: rounds of the scan
    /// targets until they are spent or `want` is reclaimed (or on its
    /// way). At `DEF_PRIORITY` global direct reclaim scans its whole
    /// target regardless (the kernel's `proportional_reclaim`).
    #[allow(clippy::too_many_arguments)]
    fn shrink_lruvec_direct(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        sc: &mut ScanControl,
        lv: MemcgId,
        nr: &mut ScanTargets,
        want: u64,
        cpu: usize,
        now: u64,
    ) -> Progress {
        let proportional_reclaim = !sc.cgroup && sc.priority == DEF_PRIORITY;
        let mut prog = Progress::default();
        while nr.inactive > 0 {
            let (p, refilled) =
                self.shrink_lruvec_round(mem, swap, sc, lv, nr, Who::Direct, cpu, now);
            prog.add(p);
            if p.scanned == 0 && refilled == 0 {
                break;
            }
            if prog.reclaimed + prog.writeback >= want && !proportional_reclaim {
                break;
            }
        }
        self.shrink_lruvec_end(mem, swap, lv);
        prog
    }

    /// `workingset_activate_anon` of `target`'s subtree (the whole
    /// machine's for the root).
    fn refaults_of(mem: &Memory, target: MemcgId) -> u64 {
        if target == MemcgId::ROOT {
            mem.stat.get(VmEvent::WorkingsetActivateAnon)
        } else {
            mem.memcg
                .stat_recursive(target, VmEvent::WorkingsetActivateAnon)
        }
    }

    /// `prepare_scan_control`, the anon half: the active list may be
    /// deactivated when refaults activated folios in the target since the
    /// last reclaim invocation's snapshot (a new workingset is forming:
    /// age the stale active folios out quickly), when the target's
    /// inactive list is low, or when forced.
    ///
    /// swapvm simplifies: the kernel reads these counters from memcg stats
    /// that are flushed at most every two seconds; swapvm reads them exact.
    fn prepare_scan_control(
        &self,
        mem: &Memory,
        target: MemcgId,
        priority: u32,
        force: bool,
    ) -> ScanControl {
        let refaults = Self::refaults_of(mem, target);
        let snap = self
            .refaults_anon
            .get(usize::from(target.0))
            .copied()
            .unwrap_or(0);
        ScanControl {
            target,
            cgroup: target != MemcgId::ROOT,
            priority,
            may_deactivate: force || refaults != snap || Self::inactive_is_low(mem, target),
            skipped_deactivate: false,
            memcg_low_reclaim: false,
            memcg_low_skipped: false,
        }
    }

    /// `snapshot_refaults`: remembers the target's
    /// `workingset_activate_anon` at the end of a reclaim invocation, for
    /// the next `prepare_scan_control`.
    fn snapshot_refaults(&mut self, mem: &Memory, target: MemcgId) {
        let t = usize::from(target.0);
        if self.refaults_anon.len() <= t {
            self.refaults_anon.resize(t + 1, 0);
        }
        self.refaults_anon[t] = Self::refaults_of(mem, target);
    }

    /// `inactive_is_low` for the anon lists of memcg `lv`'s lruvec (whose
    /// counts, as the kernel's memcg lruvec state, include its
    /// descendants'): the inactive list is smaller than the active one
    /// divided by sqrt(10 * GiB of both), or than the active one itself
    /// below 1 GiB.
    fn inactive_is_low(mem: &Memory, lv: MemcgId) -> bool {
        let (inactive, active) = if lv == MemcgId::ROOT {
            (
                u64::from(mem.lru.len(LruList::InactiveAnon)),
                u64::from(mem.lru.len(LruList::ActiveAnon)),
            )
        } else {
            mem.memcg.subtree(lv).into_iter().fold((0, 0), |(i, a), m| {
                let v = mem.lru.vec(m);
                (
                    i + u64::from(v.len(LruList::InactiveAnon)),
                    a + u64::from(v.len(LruList::ActiveAnon)),
                )
            })
        };
        let gb = (inactive + active) >> 18;
        let inactive_ratio = if gb > 0 { (10 * gb).isqrt() } else { 1 };
        inactive * inactive_ratio < active
    }

    /// `can_age_anon_pages` (`can_reclaim_anon_pages`), and
    /// `get_scan_count`'s "no swap space, do not bother scanning anon"
    /// (swapvm has no demotion target): with no swap slot `lv` may take
    /// (free on the devices, and room under `memory.swap.max` up its
    /// ancestry), anon folios can be neither reclaimed nor usefully aged.
    fn can_age_anon_pages(mem: &Memory, swap: &SwapSubsystem, lv: MemcgId) -> bool {
        let free = swap.nr_swap_pages();
        if lv == MemcgId::ROOT || mem.memcg.is_empty() {
            return free > 0;
        }
        mem.memcg
            .nr_swap_pages(lv, free, |m| swap.swap_cgroup_usage(m.0))
            > 0
    }

    /// `get_scan_count` with only the anon lists, for memcg `lv`'s
    /// lruvec: each list is scanned by its size (less the memcg's
    /// proportional `memory.min`/`memory.low` protection) >> priority.
    /// swapvm simplifies: with no file pages the kernel's global reclaim
    /// mostly finds `file_is_tiny` (`SCAN_ANON`, the whole shifted size);
    /// the fractions of `SCAN_FRACT` (anon against file cost) are not
    /// modelled.
    fn get_scan_count(
        &self,
        mem: &Memory,
        swap: &SwapSubsystem,
        sc: &mut ScanControl,
        lv: MemcgId,
    ) -> ScanTargets {
        if !Self::can_age_anon_pages(mem, swap, lv) || !self.may_scan_anon(mem, sc, lv) {
            return ScanTargets::default();
        }
        let v = mem.lru.vec(lv);
        let size = |l| self.apply_proportional_protection(mem, sc, lv, u64::from(v.len(l)));
        ScanTargets {
            inactive: size(LruList::InactiveAnon) >> sc.priority,
            active: size(LruList::ActiveAnon) >> sc.priority,
        }
    }

    /// `apply_proportional_protection`: a memcg with effective protection
    /// is scanned in proportion to how far its usage exceeds it (`low` on
    /// the first walks, `min` once `memcg_low_reclaim`), at least a batch.
    fn apply_proportional_protection(
        &self,
        mem: &Memory,
        sc: &ScanControl,
        lv: MemcgId,
        size: u64,
    ) -> u64 {
        let (min, low) = mem.memcg.protection(sc.target, lv);
        if min == 0 && low == 0 {
            return size;
        }
        let protection = if !sc.memcg_low_reclaim && low > min {
            low
        } else {
            min
        };
        let cgroup_size = mem.memcg.get(lv).usage.max(protection);
        let scan =
            size - (u128::from(size) * u128::from(protection) / u128::from(cgroup_size + 1)) as u64;
        scan.max(u64::from(self.cfg.swap_cluster_max))
    }

    /// What remains of `get_scan_count` with only swap-backed lists: anon
    /// is scanned with any swappiness above 0 (the memcg's own for memcg
    /// reclaim); with swappiness 0 global reclaim still scans it while free
    /// memory is at or below the high watermark (the kernel's
    /// `file_is_tiny` → `SCAN_ANON`: with no file pages, file + free is
    /// just free), memcg reclaim does not (`SCAN_FILE`).
    fn may_scan_anon(&self, mem: &Memory, sc: &ScanControl, lv: MemcgId) -> bool {
        if mem.memcg.swappiness(lv, self.cfg.swappiness) > 0 {
            return true;
        }
        !sc.cgroup && mem.nr_free() <= mem.wmark.high
    }

    /// One round of `shrink_lruvec`'s loop over `nr[]`: up to a batch
    /// (`SWAP_CLUSTER_MAX`) of each list's target, the inactive list first
    /// (`for_each_evictable_lru`); the active batch is deactivated only if
    /// `sc.may_deactivate` (`shrink_list`). Returns the inactive scan's
    /// progress and the number of folios deactivated.
    #[allow(clippy::too_many_arguments)]
    fn shrink_lruvec_round(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        sc: &mut ScanControl,
        lv: MemcgId,
        nr: &mut ScanTargets,
        who: Who,
        cpu: usize,
        now: u64,
    ) -> (Progress, u64) {
        let batch = u64::from(self.cfg.swap_cluster_max);
        let mut prog = Progress::default();
        if nr.inactive > 0 {
            let n = nr.inactive.min(batch);
            nr.inactive -= n;
            prog = self.shrink_inactive_list(mem, swap, lv, n, who, cpu, now);
        }
        let mut refilled = 0;
        if nr.active > 0 {
            let n = nr.active.min(batch);
            nr.active -= n;
            if sc.may_deactivate {
                refilled = self.shrink_active_list(mem, lv, n);
            } else {
                sc.skipped_deactivate = true;
            }
        }
        (prog, refilled)
    }

    /// The end of `shrink_lruvec`: whether or not anon was scanned,
    /// rebalance the lruvec's anon lists, a batch, if the inactive one is
    /// low.
    fn shrink_lruvec_end(&mut self, mem: &mut Memory, swap: &SwapSubsystem, lv: MemcgId) {
        if Self::can_age_anon_pages(mem, swap, lv) && Self::inactive_is_low(mem, lv) {
            self.shrink_active_list(mem, lv, u64::from(self.cfg.swap_cluster_max));
        }
    }

    /// `shrink_active_list`: moves up to `nr` folios from the active tail
    /// to the inactive list and returns how many. Anonymous folios are
    /// deactivated whether referenced or not (only executable file pages
    /// get another round).
    fn shrink_active_list(&mut self, mem: &mut Memory, lv: MemcgId, nr: u64) -> u64 {
        let mut moved = 0;
        for _ in 0..nr {
            let Some(i) = mem.lru.vec(lv).list(LruList::ActiveAnon).last() else {
                break;
            };
            let pfn = Pfn(i);
            mem.lru.del(&mut mem.folios, pfn);
            mem.count_event(lv, VmEvent::PgRefill, 1);
            mem.folio_referenced(pfn);
            let p = mem.folios.get_mut(pfn);
            p.clear(pg::ACTIVE | pg::REFERENCED);
            // It was in the workingset: a refault after its eviction counts
            // as a restore.
            p.set(pg::WORKINGSET);
            mem.lru.add(&mut mem.folios, pfn);
            mem.count_event(lv, VmEvent::PgDeactivate, 1);
            moved += 1;
        }
        moved
    }
    /// `shrink_inactive_list`: isolates up to `nr` folios from the inactive
    /// tail and runs `shrink_folio_list` on them.
    #[allow(clippy::too_many_arguments)]
    fn shrink_inactive_list(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        lv: MemcgId,
        nr: u64,
        who: Who,
        cpu: usize,
        now: u64,
    ) -> Progress {
        let mut isolated = Vec::with_capacity(nr as usize);
        for _ in 0..nr {
            let Some(i) = mem.lru.vec(lv).list(LruList::InactiveAnon).last() else {
                break;
            };
            mem.lru.del(&mut mem.folios, Pfn(i));
            mem.rmap_prefetch_one(Pfn(i));
            isolated.push(Pfn(i));
        }
        let scanned = isolated.len() as u64;
        let ev = if who == Who::Kswapd {
            VmEvent::PgScanKswapd
        } else {
            VmEvent::PgScanDirect
        };
        mem.count_event(lv, ev, scanned);
        mem.count_event(lv, VmEvent::PgScanAnon, scanned);
        let mut prog = Progress {
            scanned,
            ..Progress::default()
        };
        // shrink_folio_list's references check walks each folio's rmap: let
        // the batch's cache misses overlap first (reads only).
        mem.rmap_prefetch(swap, &isolated);
        for pfn in isolated {
            self.shrink_folio(mem, swap, pfn, who, cpu, now, &mut prog);
        }
        if prog.reclaimed > 0 {
            self.count_steal(mem, lv, who, prog.reclaimed);
        }
        prog
    }

    fn count_steal(&self, mem: &Memory, lv: MemcgId, who: Who, n: u64) {
        let ev = if who == Who::Kswapd {
            VmEvent::PgStealKswapd
        } else {
            VmEvent::PgStealDirect
        };
        mem.count_event(lv, ev, n);
        mem.count_event(lv, VmEvent::PgStealAnon, n);
    }

    /// `folio_check_references`.
    fn check_references(mem: &mut Memory, pfn: Pfn) -> FolioRef {
        let referenced_ptes = mem.folio_referenced(pfn);
        let p = mem.folios.get_mut(pfn);
        let referenced_folio = p.test(pg::REFERENCED);
        p.clear(pg::REFERENCED);
        if referenced_ptes > 0 {
            // Every mapped folio starts referenced by the fault that made
            // it; look twice before activating.
            p.set(pg::REFERENCED);
            if referenced_folio || referenced_ptes > 1 {
                return FolioRef::Activate;
            }
            return FolioRef::Keep;
        }
        FolioRef::Reclaim
    }

    /// Puts an isolated folio back (`move_folios_to_lru`); an activated
    /// one ages the lruvec's nonresident clock, as the kernel's does.
    fn putback(mem: &mut Memory, pfn: Pfn, activate: bool) {
        if activate {
            let lv = mem.folio_memcg(pfn);
            mem.folios.get_mut(pfn).set(pg::ACTIVE);
            mem.count_event(lv, VmEvent::PgActivate, 1);
            mem.workingset_age_nonresident(lv, 1);
        }
        mem.lru.add(&mut mem.folios, pfn);
    }

    /// One folio of `shrink_folio_list`.
    #[allow(clippy::too_many_arguments)]
    fn shrink_folio(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        pfn: Pfn,
        who: Who,
        cpu: usize,
        now: u64,
        prog: &mut Progress,
    ) {
        let p = *mem.folios.get(pfn);
        if p.test(pg::LOCKED | pg::WRITEBACK) || !p.test(pg::UPTODATE) {
            return Self::putback(mem, pfn, false);
        }
        let references = if mem.lru.lru_gen_enabled() {
            self.lru_gen_check_references(mem, pfn)
        } else {
            Self::check_references(mem, pfn)
        };
        match references {
            FolioRef::Activate => return Self::putback(mem, pfn, true),
            FolioRef::Keep => return Self::putback(mem, pfn, false),
            FolioRef::Reclaim => {}
        }
        mem.folios.get_mut(pfn).set(pg::LOCKED);
        self.reclaim_locked(mem, swap, pfn, who, cpu, now, prog);
    }

    /// The second half of `shrink_folio_list` for one folio that reclaim
    /// decided to evict: unmap, then free it (lazyfree), or write it out
    /// (anon and KSM: allocate swap first; shmem: `shmem_writeout` once
    /// unmapped).
    ///
    /// # Context
    /// Folio locked and isolated from the LRU.
    #[allow(clippy::too_many_arguments)]
    fn reclaim_locked(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        pfn: Pfn,
        who: Who,
        cpu: usize,
        now: u64,
        prog: &mut Progress,
    ) {
        let p = *mem.folios.get(pfn);
        let lazyfree = p.test(pg::ANON) && !p.test(pg::SWAPBACKED);
        if lazyfree || p.test(pg::SHMEM) {
            if p.mapcount > 0 && !mem.try_to_unmap(swap, pfn) {
                // A lazyfree folio written again is swap-backed once more.
                mem.folios.get_mut(pfn).clear(pg::LOCKED);
                return Self::putback(mem, pfn, true);
            }
            if lazyfree {
                mem.folios.get_mut(pfn).clear(pg::LOCKED);
                mem.lru_free_isolated(pfn);
                mem.stat.inc(VmEvent::PgLazyFreed);
                prog.reclaimed += 1;
                return;
            }
            if let Err(e) = mem.shmem_writeout(swap, pfn, cpu) {
                tracing::debug!("shmem_writeout of {pfn:?}: {e}");
                mem.folios.get_mut(pfn).clear(pg::LOCKED);
                return Self::putback(mem, pfn, true);
            }
        } else if mem.folios.get(pfn).swap.is_none() {
            if !mem.mem_cgroup_may_swap(swap, pfn) {
                // Over memory.swap.max: no slot, the folio stays resident.
                mem.folios.get_mut(pfn).clear(pg::LOCKED);
                return Self::putback(mem, pfn, true);
            }
            let mut r = swap.folio_alloc_swap(&mut mem.folios.folio(pfn), cpu);
            if r.is_err() && mem.folios.get(pfn).order > 0 {
                // No contiguous slots for the whole folio: split it and
                // swap this page alone; the others return to the LRU.
                mem.stat.inc(VmEvent::ThpSwpoutFallback);
                mem.split_folio(pfn);
                r = swap.folio_alloc_swap(&mut mem.folios.folio(pfn), cpu);
            }
            match r {
                // A folio just added to swap must be written.
                Ok(_) => mem.folios.get_mut(pfn).set(pg::DIRTY),
                Err(_) => {
                    mem.folios.get_mut(pfn).clear(pg::LOCKED);
                    return Self::putback(mem, pfn, true);
                }
            }
        }
        if mem.folios.get(pfn).mapcount > 0 && !mem.try_to_unmap(swap, pfn) {
            mem.folios.get_mut(pfn).clear(pg::LOCKED);
            return Self::putback(mem, pfn, false);
        }
        if mem.folios.get(pfn).test(pg::DIRTY) {
            match self.pageout(mem, swap, pfn, who, now) {
                Ok(PageOut::Writeback) => {
                    prog.writeback += 1u64 << mem.folios.get(pfn).order;
                    return;
                }
                Ok(PageOut::Clean) => {}
                Ok(PageOut::Activate) => {
                    mem.folios.get_mut(pfn).clear(pg::LOCKED);
                    return Self::putback(mem, pfn, true);
                }
                Err(e) => {
                    tracing::warn!("pageout of {pfn:?} failed to start: {e}");
                    mem.folios.get_mut(pfn).clear(pg::LOCKED);
                    return Self::putback(mem, pfn, true);
                }
            }
        }
        // Clean and unmapped: its swap copy is current; drop it now,
        // leaving a workingset shadow in its slots.
        let nr = 1u64 << mem.folios.get(pfn).order;
        let shadow = mem.workingset_eviction(pfn);
        mem.remove_mapping(swap, pfn, Some(shadow));
        prog.reclaimed += nr;
    }

    /// `reclaim_pages` (`MADV_PAGEOUT`): evicts folios isolated by
    /// `madvise_pageout_isolate` whatever their references, as kernel
    /// `reclaim_folio_list` does (`ignore_references`).
    pub fn reclaim_pages(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        pfns: &[Pfn],
        cpu: usize,
        now: u64,
    ) -> Progress {
        let mut prog = Progress {
            scanned: pfns.len() as u64,
            ..Progress::default()
        };
        for &pfn in pfns {
            let p = *mem.folios.get(pfn);
            if p.test(pg::LOCKED | pg::WRITEBACK) || !p.test(pg::UPTODATE) {
                Self::putback(mem, pfn, false);
                continue;
            }
            mem.folios.get_mut(pfn).set(pg::LOCKED);
            self.reclaim_locked(mem, swap, pfn, Who::Direct, cpu, now, &mut prog);
        }
        prog
    }

    /// `pageout` → `swap_writeout`: an all-zero page is only marked in the
    /// zeromap (no I/O; the folio is clean at once and freed by the caller);
    /// otherwise the write is submitted and the folio left isolated,
    /// unlocked, under writeback until [`Self::writeback_done`] frees it.
    fn pageout(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        pfn: Pfn,
        who: Who,
        now: u64,
    ) -> Result<PageOut, SwapError> {
        let Some(entry) = mem.folios.get(pfn).swap else {
            return Err(SwapError::Refused {
                func: "pageout",
                rule: "folio not in swap cache",
            });
        };
        let order = mem.folios.get(pfn).order;
        let nr = 1usize << order;
        // The folio's content: its bytes, or on a metadata-only machine
        // its content words, which are zero exactly when the bytes would be.
        let zero = mem.ram.pages(pfn, nr).iter().all(|&b| b == 0);
        swap.swap_zeromap_folio_set(&mem.folios.folio(pfn), zero);
        if zero {
            mem.count_event(mem.folio_memcg(pfn), VmEvent::SwpoutZero, 1);
            mem.folios.get_mut(pfn).clear(pg::DIRTY);
            return Ok(PageOut::Clean);
        }
        let to = swap.swap_writeout(entry, mem.ram.pages(pfn, nr), u64::from(pfn.0), now)?;
        let memcg = mem.folio_memcg(pfn);
        match to {
            WriteOut::Device => mem.memcg.count(memcg, VmEvent::PswpOut, nr as u64),
            // The pool grew: its frames are taken now, from the reserves.
            WriteOut::Zswap => mem.zswap_sync(swap),
            WriteOut::Activate => return Ok(PageOut::Activate),
        }
        mem.memcg.get_mut(memcg).nr_writeback += nr as u64;
        if !mem.memcg.is_empty() {
            mem.memcg_swap_peak(swap, memcg);
        }
        if order > 0 && to == WriteOut::Device {
            mem.count_event(memcg, VmEvent::ThpSwpout, 1);
        }
        let f = mem.folios.get_mut(pfn);
        f.clear(pg::DIRTY | pg::LOCKED);
        f.set(pg::WRITEBACK | pg::RECLAIM);
        if who == Who::Direct {
            f.set(pg::RECLAIM_DIRECT);
        }
        self.nr_writeback += nr as u64;
        Ok(PageOut::Writeback)
    }

    /// End of a swap-out write (`folio_end_writeback`). On success a folio
    /// written for reclaim that is still unmapped and clean is freed (its
    /// data now lives only in swap); otherwise it returns to the LRU. On
    /// error the folio stays in memory, dirty.
    pub fn writeback_done(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        pfn: Pfn,
        ok: bool,
    ) {
        let nr = 1u64 << mem.folios.get(pfn).order;
        self.nr_writeback = self.nr_writeback.saturating_sub(nr);
        let lv = mem.folio_memcg(pfn);
        let g = mem.memcg.get_mut(lv);
        g.nr_writeback = g.nr_writeback.saturating_sub(nr);
        let f = mem.folios.get_mut(pfn);
        let direct = f.test(pg::RECLAIM_DIRECT);
        f.clear(pg::WRITEBACK | pg::RECLAIM | pg::RECLAIM_DIRECT);
        if !ok {
            f.set(pg::DIRTY);
            return Self::putback(mem, pfn, true);
        }
        let p = *mem.folios.get(pfn);
        if p.mapcount == 0 && !p.test(pg::DIRTY | pg::LOCKED) && p.swap.is_some() {
            mem.folios.get_mut(pfn).set(pg::LOCKED);
            let shadow = mem.workingset_eviction(pfn);
            mem.remove_mapping(swap, pfn, Some(shadow));
            self.count_steal(mem, lv, if direct { Who::Direct } else { Who::Kswapd }, nr);
        } else {
            Self::putback(mem, pfn, false);
        }
    }
}
