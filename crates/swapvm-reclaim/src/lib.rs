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

pub mod swapoff;

pub use swapoff::{Swapoff, SwapoffError, SwapoffStep};

use swapvm_core::config::ReclaimConfig;
use swapvm_core::{Pfn, VmEvent};
use swapvm_mm::{pg, LruList, Memory};
use swapvm_swap::{SwapError, SwapSubsystem};

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
    /// `sc->priority`: each list is scanned by its size >> priority.
    priority: u32,
    /// `sc->may_deactivate & DEACTIVATE_ANON`: the active list may be
    /// scanned (deactivated) alongside the inactive one.
    may_deactivate: bool,
    /// `sc->skipped_deactivate`: an active scan target went unscanned
    /// because `may_deactivate` was off.
    skipped_deactivate: bool,
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

/// One `kswapd_shrink_node` → `shrink_node` → `shrink_lruvec` pass.
#[derive(Clone, Copy, Debug)]
struct NodePass {
    sc: ScanControl,
    nr: ScanTargets,
    /// What this pass scanned and reclaimed (or has on its way).
    done: Progress,
}

/// The reclaim policy state of a machine.
#[derive(Debug)]
pub struct Reclaimer {
    cfg: ReclaimConfig,
    kswapd_awake: bool,
    nr_writeback: u64,
    /// `lruvec->refaults[WORKINGSET_ANON]`: `workingset_activate_anon` as
    /// `snapshot_refaults` last saw it, at the end of a reclaim invocation.
    refaults_anon: u64,
    /// kswapd's `balance_pgdat` while one runs.
    kswapd_run: Option<BalancePgdat>,
    /// Most kswapd batches per tick (bounds the work of one tick).
    pub kswapd_batches_per_tick: u32,
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
            refaults_anon: 0,
            kswapd_run: None,
            kswapd_batches_per_tick: 32,
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

    /// One step of kswapd's `balance_pgdat`: a round of the current pass's
    /// `shrink_lruvec` loop (`Some`), or, where none is left to run, the
    /// end of that pass (`None`; see [`Self::kswapd_pass_end`]).
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
        // kswapd stops a pass once it has reclaimed its nr_to_reclaim, the
        // high watermark (kswapd_shrink_node).
        let nr_to_reclaim = mem.wmark.high.max(u64::from(self.cfg.swap_cluster_max));
        if pass.nr.inactive == 0 || pass.done.reclaimed + pass.done.writeback >= nr_to_reclaim {
            self.kswapd_pass_end(mem, swap, pass);
            return None;
        }
        let (p, refilled) =
            self.shrink_lruvec_round(mem, swap, &mut pass.sc, &mut pass.nr, Who::Kswapd, cpu, now);
        if p.scanned == 0 && refilled == 0 {
            pass.nr = ScanTargets::default();
        }
        pass.done.add(p);
        if let Some(run) = self.kswapd_run.as_mut() {
            run.pass = Some(pass);
        }
        Some(p)
    }

    /// The start of one `balance_pgdat` priority iteration:
    /// `kswapd_age_node` (background aging of the anon lists while the
    /// inactive one is low), then `kswapd_shrink_node`'s `shrink_node`:
    /// `prepare_scan_control` and `get_scan_count`.
    fn kswapd_pass_begin(
        &mut self,
        mem: &mut Memory,
        swap: &SwapSubsystem,
        priority: u32,
    ) -> NodePass {
        if Self::can_age_anon_pages(swap) && Self::inactive_is_low(mem) {
            self.shrink_active_list(mem, u64::from(self.cfg.swap_cluster_max));
        }
        let sc = self.prepare_scan_control(mem, priority, false);
        NodePass {
            sc,
            nr: self.get_scan_count(mem, swap, &sc),
            done: Progress::default(),
        }
    }

    /// The end of a kswapd pass: `shrink_lruvec`'s closing rebalance, then
    /// `balance_pgdat`'s priority step: the priority rises (the number
    /// falls) unless the pass scanned its nr_to_reclaim and reclaimed
    /// something. Past priority 1 the invocation ends unbalanced.
    fn kswapd_pass_end(&mut self, mem: &mut Memory, swap: &SwapSubsystem, pass: NodePass) {
        self.shrink_lruvec_end(mem, swap);
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
            self.snapshot_refaults(mem);
        }
    }

    /// The end of a `balance_pgdat` invocation (the node is balanced): the
    /// pass under way closes as `shrink_lruvec` does, and the refault
    /// snapshot is taken (`snapshot_refaults`).
    fn balance_pgdat_end(&mut self, mem: &mut Memory, swap: &SwapSubsystem) {
        let Some(run) = self.kswapd_run.take() else {
            return;
        };
        if run.pass.is_some() {
            self.shrink_lruvec_end(mem, swap);
        }
        self.snapshot_refaults(mem);
    }

    /// Direct reclaim for a task whose allocation failed below min
    /// (`try_to_free_pages` → `do_try_to_free_pages`). Counts `allocstall`.
    ///
    /// Each priority from `DEF_PRIORITY` down to 0 runs one `shrink_node`
    /// pass, until a batch (`SWAP_CLUSTER_MAX`) is reclaimed or on its way.
    /// If nothing was, and a pass left an active list unscanned for want of
    /// `may_deactivate`, the whole walk is retried with `force_deactivate`,
    /// as the kernel does. The refault snapshot is taken at the end of
    /// each walk.
    pub fn direct_reclaim(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        cpu: usize,
        now: u64,
    ) -> Progress {
        self.maybe_wake_kswapd(mem);
        let want = u64::from(self.cfg.swap_cluster_max);
        let mut total = Progress::default();
        let mut force_deactivate = false;
        loop {
            mem.stat.inc(VmEvent::AllocStall);
            let mut skipped_deactivate = false;
            for priority in (0..=DEF_PRIORITY).rev() {
                let mut sc = self.prepare_scan_control(mem, priority, force_deactivate);
                total.add(self.shrink_node_direct(mem, swap, &mut sc, want, cpu, now));
                skipped_deactivate |= sc.skipped_deactivate;
                if total.reclaimed + total.writeback >= want {
                    break;
                }
            }
            self.snapshot_refaults(mem);
            if total.made() || !skipped_deactivate || force_deactivate {
                return total;
            }
            force_deactivate = true;
        }
    }

    /// `shrink_node` → `shrink_lruvec` for direct reclaim: rounds of the
    /// scan targets until they are spent or `want` is reclaimed (or on its
    /// way). At `DEF_PRIORITY` global direct reclaim scans its whole
    /// target regardless (the kernel's `proportional_reclaim`).
    fn shrink_node_direct(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        sc: &mut ScanControl,
        want: u64,
        cpu: usize,
        now: u64,
    ) -> Progress {
        let mut nr = self.get_scan_count(mem, swap, sc);
        let proportional_reclaim = sc.priority == DEF_PRIORITY;
        let mut prog = Progress::default();
        while nr.inactive > 0 {
            let (p, refilled) =
                self.shrink_lruvec_round(mem, swap, sc, &mut nr, Who::Direct, cpu, now);
            prog.add(p);
            if p.scanned == 0 && refilled == 0 {
                break;
            }
            if prog.reclaimed + prog.writeback >= want && !proportional_reclaim {
                break;
            }
        }
        self.shrink_lruvec_end(mem, swap);
        prog
    }

    /// `prepare_scan_control`, the anon half: the active list may be
    /// deactivated when refaults activated folios since the last reclaim
    /// invocation's snapshot (a new workingset is forming: age the stale
    /// active folios out quickly), when the inactive list is low, or when
    /// forced.
    ///
    /// swapvm simplifies: the kernel reads these counters from memcg stats
    /// that are flushed at most every two seconds; swapvm reads them exact.
    fn prepare_scan_control(&self, mem: &Memory, priority: u32, force: bool) -> ScanControl {
        let refaults = mem.stat.get(VmEvent::WorkingsetActivateAnon);
        ScanControl {
            priority,
            may_deactivate: force || refaults != self.refaults_anon || Self::inactive_is_low(mem),
            skipped_deactivate: false,
        }
    }

    /// `snapshot_refaults`: remembers `workingset_activate_anon` at the end
    /// of a reclaim invocation, for the next `prepare_scan_control`.
    fn snapshot_refaults(&mut self, mem: &Memory) {
        self.refaults_anon = mem.stat.get(VmEvent::WorkingsetActivateAnon);
    }

    /// `inactive_is_low` for the anon lists: the inactive list is smaller
    /// than the active one divided by sqrt(10 * GiB of both), or than the
    /// active one itself below 1 GiB.
    fn inactive_is_low(mem: &Memory) -> bool {
        let inactive = u64::from(mem.lru.len(LruList::InactiveAnon));
        let active = u64::from(mem.lru.len(LruList::ActiveAnon));
        let gb = (inactive + active) >> 18;
        let inactive_ratio = if gb > 0 { (10 * gb).isqrt() } else { 1 };
        inactive * inactive_ratio < active
    }

    /// `can_age_anon_pages`, and `get_scan_count`'s "no swap space, do not
    /// bother scanning anon" (swapvm has no demotion target): with no free
    /// swap slot left, anon folios can be neither reclaimed nor usefully
    /// aged, and the OOM killer takes over.
    fn can_age_anon_pages(swap: &SwapSubsystem) -> bool {
        swap.nr_swap_pages() > 0
    }

    /// `get_scan_count` with only the anon lists: each is scanned by its
    /// size >> priority. swapvm simplifies: with no file pages the kernel's
    /// global reclaim mostly finds `file_is_tiny` (`SCAN_ANON`, the whole
    /// shifted size); the fractions of `SCAN_FRACT` (anon against file
    /// cost) are not modelled.
    fn get_scan_count(&self, mem: &Memory, swap: &SwapSubsystem, sc: &ScanControl) -> ScanTargets {
        if !Self::can_age_anon_pages(swap) || !self.may_scan_anon(mem) {
            return ScanTargets::default();
        }
        ScanTargets {
            inactive: u64::from(mem.lru.len(LruList::InactiveAnon)) >> sc.priority,
            active: u64::from(mem.lru.len(LruList::ActiveAnon)) >> sc.priority,
        }
    }

    /// What remains of `get_scan_count` with only swap-backed lists: anon
    /// is scanned with any swappiness above 0; with swappiness 0 only while
    /// free memory is at or below the high watermark (the kernel's
    /// `file_is_tiny` → `SCAN_ANON`: with no file pages, file + free is
    /// just free). Both reclaimers run only below high, so swappiness
    /// changes no decision here; it would weigh anon against file pages.
    fn may_scan_anon(&self, mem: &Memory) -> bool {
        self.cfg.swappiness > 0 || mem.nr_free() <= mem.wmark.high
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
            prog = self.shrink_inactive_list(mem, swap, n, who, cpu, now);
        }
        let mut refilled = 0;
        if nr.active > 0 {
            let n = nr.active.min(batch);
            nr.active -= n;
            if sc.may_deactivate {
                refilled = self.shrink_active_list(mem, n);
            } else {
                sc.skipped_deactivate = true;
            }
        }
        (prog, refilled)
    }

    /// The end of `shrink_lruvec`: whether or not anon was scanned,
    /// rebalance the anon lists, a batch, if the inactive one is low.
    fn shrink_lruvec_end(&mut self, mem: &mut Memory, swap: &SwapSubsystem) {
        if Self::can_age_anon_pages(swap) && Self::inactive_is_low(mem) {
            self.shrink_active_list(mem, u64::from(self.cfg.swap_cluster_max));
        }
    }

    /// `shrink_active_list`: moves up to `nr` folios from the active tail
    /// to the inactive list and returns how many. Anonymous folios are
    /// deactivated whether referenced or not (only executable file pages
    /// get another round).
    fn shrink_active_list(&mut self, mem: &mut Memory, nr: u64) -> u64 {
        let mut moved = 0;
        for _ in 0..nr {
            let Some(i) = mem.lru.list(LruList::ActiveAnon).last() else {
                break;
            };
            let pfn = Pfn(i);
            mem.lru.del(&mut mem.folios, pfn);
            mem.stat.inc(VmEvent::PgRefill);
            mem.folio_referenced(pfn);
            let p = mem.folios.get_mut(pfn);
            p.clear(pg::ACTIVE | pg::REFERENCED);
            // It was in the workingset: a refault after its eviction counts
            // as a restore.
            p.set(pg::WORKINGSET);
            mem.lru.add(&mut mem.folios, pfn);
            mem.stat.inc(VmEvent::PgDeactivate);
            moved += 1;
        }
        moved
    }
    /// `shrink_inactive_list`: isolates up to `nr` folios from the inactive
    /// tail and runs `shrink_folio_list` on them.
    fn shrink_inactive_list(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        nr: u64,
        who: Who,
        cpu: usize,
        now: u64,
    ) -> Progress {
        let mut isolated = Vec::with_capacity(nr as usize);
        for _ in 0..nr {
            let Some(i) = mem.lru.list(LruList::InactiveAnon).last() else {
                break;
            };
            mem.lru.del(&mut mem.folios, Pfn(i));
            mem.rmap_prefetch_one(Pfn(i));
            isolated.push(Pfn(i));
        }
        let scanned = isolated.len() as u64;
        mem.stat.add(
            if who == Who::Kswapd {
                VmEvent::PgScanKswapd
            } else {
                VmEvent::PgScanDirect
            },
            scanned,
        );
        mem.stat.add(VmEvent::PgScanAnon, scanned);
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
            self.count_steal(mem, who, prog.reclaimed);
        }
        prog
    }

    fn count_steal(&self, mem: &Memory, who: Who, n: u64) {
        mem.stat.add(
            if who == Who::Kswapd {
                VmEvent::PgStealKswapd
            } else {
                VmEvent::PgStealDirect
            },
            n,
        );
        mem.stat.add(VmEvent::PgStealAnon, n);
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
            mem.folios.get_mut(pfn).set(pg::ACTIVE);
            mem.stat.inc(VmEvent::PgActivate);
            mem.workingset_age_nonresident(1);
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
        match Self::check_references(mem, pfn) {
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
            mem.stat.inc(VmEvent::SwpoutZero);
            mem.folios.get_mut(pfn).clear(pg::DIRTY);
            return Ok(PageOut::Clean);
        }
        swap.swap_writepage(entry, mem.ram.pages(pfn, nr), u64::from(pfn.0), now)?;
        if order > 0 {
            mem.stat.inc(VmEvent::ThpSwpout);
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
            self.count_steal(mem, if direct { Who::Direct } else { Who::Kswapd }, nr);
        } else {
            Self::putback(mem, pfn, false);
        }
    }
}
