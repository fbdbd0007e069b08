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

/// The reclaim policy state of a machine.
#[derive(Debug)]
pub struct Reclaimer {
    cfg: ReclaimConfig,
    kswapd_awake: bool,
    nr_writeback: u64,
    inactive_ratio: u64,
    /// Most kswapd batches per tick (bounds the work of one tick).
    pub kswapd_batches_per_tick: u32,
}

impl Reclaimer {
    /// A reclaimer for a machine of `ram_pages`.
    pub fn new(cfg: ReclaimConfig, ram_pages: u64) -> Self {
        // inactive_is_low: ratio sqrt(10 * GiB), 1 below 1 GiB.
        let gb = ram_pages >> 18;
        let inactive_ratio = if gb == 0 {
            1
        } else {
            ((10 * gb) as f64).sqrt() as u64
        };
        Reclaimer {
            cfg,
            kswapd_awake: false,
            nr_writeback: 0,
            inactive_ratio,
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
        for _ in 0..self.kswapd_batches_per_tick {
            if mem.nr_free() + self.nr_writeback >= mem.wmark.high {
                break;
            }
            let p = self.shrink_lruvec(mem, swap, Who::Kswapd, cpu, now);
            total.add(p);
            if p.scanned == 0 {
                break;
            }
        }
        if mem.nr_free() >= mem.wmark.high {
            self.kswapd_awake = false;
        }
        total
    }

    /// Direct reclaim for a task whose allocation failed below min
    /// (`try_to_free_pages`). Counts `allocstall`.
    pub fn direct_reclaim(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        cpu: usize,
        now: u64,
    ) -> Progress {
        mem.stat.inc(VmEvent::AllocStall);
        self.maybe_wake_kswapd(mem);
        let want = u64::from(self.cfg.swap_cluster_max);
        let mut total = Progress::default();
        // do_try_to_free_pages: each priority scans 1/2^priority of the
        // LRU (at least a batch), from DEF_PRIORITY down to 0 (the whole
        // list), until a batch's worth is reclaimed or on its way.
        for priority in (0..=DEF_PRIORITY).rev() {
            let lru = u64::from(mem.lru.len(LruList::InactiveAnon))
                + u64::from(mem.lru.len(LruList::ActiveAnon));
            let mut nr_to_scan = (lru >> priority).max(want);
            while nr_to_scan > 0 {
                let p = self.shrink_lruvec(mem, swap, Who::Direct, cpu, now);
                total.add(p);
                if total.reclaimed + total.writeback >= want {
                    return total;
                }
                if p.scanned == 0 {
                    break;
                }
                nr_to_scan = nr_to_scan.saturating_sub(p.scanned);
            }
        }
        total
    }

    /// `shrink_lruvec` for the anon lists: refill the inactive list when it
    /// is low, then shrink a batch of it.
    fn shrink_lruvec(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        who: Who,
        cpu: usize,
        now: u64,
    ) -> Progress {
        // can_reclaim_anon_pages: with no free swap slot left, anon
        // folios cannot be reclaimed, and the kernel does not scan them
        // (get_scan_count picks SCAN_FILE); the OOM killer takes over.
        if swap.nr_swap_pages() <= 0 {
            return Progress::default();
        }
        let batch = self.cfg.swap_cluster_max;
        if !self.may_scan_anon(mem) {
            return Progress::default();
        }
        let inactive = u64::from(mem.lru.len(LruList::InactiveAnon));
        let active = u64::from(mem.lru.len(LruList::ActiveAnon));
        if inactive * self.inactive_ratio < active {
            self.shrink_active_list(mem, batch);
        }
        self.shrink_inactive_list(mem, swap, batch, who, cpu, now)
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

    /// `shrink_active_list`: moves folios from the active tail to the
    /// inactive list. Anonymous folios are deactivated whether referenced
    /// or not (only executable file pages get another round).
    fn shrink_active_list(&mut self, mem: &mut Memory, nr: u32) {
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
        }
    }

    /// `shrink_inactive_list`: isolates up to `nr` folios from the inactive
    /// tail and runs `shrink_folio_list` on them.
    fn shrink_inactive_list(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        nr: u32,
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
