//! MGLRU eviction: `evict_folios` → `isolate_folios` → `scan_folios`
//! (`sort_folio`, `isolate_folio`) on the oldest generation, then the
//! shared `shrink_folio_list`; the PID controller that picks the tiers to
//! protect (`read_ctrl_pos`, `get_tier_idx`); `folio_check_references`'
//! MGLRU branch (`lru_gen_set_refs`).

use crate::{FolioRef, Progress, Reclaimer, Who};
use swapvm_core::{Pfn, VmEvent};
use swapvm_mm::lru_gen::{
    folio_lru_gen, folio_lru_refs, lru_gen_from_seq, lru_tier_from_refs, LRU_REFS_FLAGS,
    LRU_REFS_MASK, LRU_REFS_WIDTH, MAX_LRU_BATCH, MIN_LRU_BATCH,
};
use swapvm_mm::{pg, LruGen, MemcgId, Memory, MAX_NR_TIERS};
use swapvm_swap::SwapSubsystem;

/// `struct ctrl_pos`: a tier range's refaults over its evictions and
/// protections, with the PID controller's gain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtrlPos {
    /// Refaults (average plus this period's).
    pub refaulted: u64,
    /// Evicted plus protected (average plus this period's).
    pub total: u64,
    /// Gain factor.
    pub gain: u64,
}

/// `read_ctrl_pos` for tier `tier` alone.
pub fn read_ctrl_pos(lrugen: &LruGen, tier: usize, gain: u64) -> CtrlPos {
    let t = &lrugen.tiers;
    CtrlPos {
        refaulted: t.avg_refaulted[tier] + t.refaulted[tier],
        total: t.avg_total[tier] + t.protected[tier] + t.evicted[tier],
        gain,
    }
}

/// `positive_ctrl_err`: `pv` has few refaults, or a refault rate no higher
/// than `sp`'s (each scaled by its gain).
pub fn positive_ctrl_err(sp: &CtrlPos, pv: &CtrlPos) -> bool {
    pv.refaulted < MIN_LRU_BATCH
        || u128::from(pv.refaulted) * u128::from(sp.total + MIN_LRU_BATCH) * u128::from(sp.gain)
            <= u128::from(sp.refaulted + 1) * u128::from(pv.total) * u128::from(pv.gain)
}

/// `get_tier_idx`: the highest tier whose refault rate does not exceed
/// tier 0's (with a 2:3 margin); the tiers above it are protected from
/// eviction.
pub fn get_tier_idx(lrugen: &LruGen) -> usize {
    let sp = read_ctrl_pos(lrugen, 0, 2);
    let mut tier = 1;
    while tier < MAX_NR_TIERS {
        let pv = read_ctrl_pos(lrugen, tier, 3);
        if !positive_ctrl_err(&sp, &pv) {
            break;
        }
        tier += 1;
    }
    tier - 1
}

/// `sort_folio`: a folio at the tail of the oldest generation that need
/// not be evicted goes elsewhere: one already promoted to its list; one
/// in a protected tier (above `tier_idx`), or accessed the most times, one
/// generation younger (counted `protected` unless it is the workingset
/// promoted lazily). Returns true if it was sorted.
pub fn sort_folio(mem: &mut Memory, lv: MemcgId, pfn: Pfn, tier_idx: usize) -> bool {
    let p = *mem.folios.get(pfn);
    let Memory { lru, folios, .. } = mem;
    let lrugen = &mut lru.vec_mut(lv).lrugen;
    if folio_lru_gen(p.flags) != Some(lru_gen_from_seq(lrugen.min_seq)) {
        return true;
    }
    let refs = folio_lru_refs(p.flags);
    let workingset = p.test(pg::WORKINGSET);
    let tier = lru_tier_from_refs(refs, workingset);
    let most = refs + u32::from(workingset) == (1 << LRU_REFS_WIDTH) + 1;
    if tier > tier_idx || most {
        lrugen.folio_inc_gen(folios, pfn, false);
        if !most {
            lrugen.tiers.protected[tier] += 1u64 << p.order;
        }
        return true;
    }
    false
}

/// `isolate_folio`: takes the folio off its generation for eviction; a
/// folio not referenced loses its stale access count.
fn isolate_folio(mem: &mut Memory, lv: MemcgId, pfn: Pfn) {
    let Memory { lru, folios, .. } = mem;
    let f = folios.get_mut(pfn);
    if !f.test(pg::REFERENCED) {
        f.flags &= !LRU_REFS_MASK;
    }
    lru.vec_mut(lv).lrugen.del_folio(folios, pfn, true);
}

/// `scan_folios` on the oldest generation of `lv`: up to `nr_to_scan`
/// (at most `MAX_LRU_BATCH`) folios from its tail are sorted or isolated,
/// until `MIN_LRU_BATCH` pages are isolated. Returns the pages scanned,
/// sorted, and the folios isolated.
fn scan_folios(
    mem: &mut Memory,
    lv: MemcgId,
    nr_to_scan: u64,
    tier_idx: usize,
) -> (u64, u64, Vec<Pfn>) {
    let gen = lru_gen_from_seq(mem.lru.vec(lv).lrugen.min_seq);
    let mut remaining = nr_to_scan.clamp(1, MAX_LRU_BATCH);
    let (mut scanned, mut sorted, mut nr_isolated) = (0, 0, 0);
    let mut isolated = Vec::new();
    while let Some(i) = mem.lru.vec(lv).lrugen.list(gen).last() {
        let pfn = Pfn(i);
        let delta = 1u64 << mem.folios.get(pfn).order;
        scanned += delta;
        if sort_folio(mem, lv, pfn, tier_idx) {
            sorted += delta;
        } else {
            isolate_folio(mem, lv, pfn);
            mem.rmap_prefetch_one(pfn);
            isolated.push(pfn);
            nr_isolated += delta;
        }
        remaining -= 1;
        if remaining == 0 || nr_isolated >= MIN_LRU_BATCH {
            break;
        }
    }
    (scanned, sorted, isolated)
}

/// `lru_gen_set_refs`: the first reference found sets `PG_referenced`
/// (keep the folio); a later one makes it workingset (activate it).
fn lru_gen_set_refs(mem: &mut Memory, pfn: Pfn) -> bool {
    let f = mem.folios.get_mut(pfn);
    if !f.test(pg::REFERENCED) && !f.test(pg::WORKINGSET) {
        f.flags = (f.flags & !LRU_REFS_MASK) | pg::REFERENCED;
        return false;
    }
    f.flags &= !LRU_REFS_FLAGS;
    f.set(pg::WORKINGSET);
    true
}

impl Reclaimer {
    /// `folio_check_references` under MGLRU: unreferenced folios are
    /// reclaimed; referenced ones kept or activated by `lru_gen_set_refs`.
    /// The rmap walk looks around each young PTE it finds.
    pub(crate) fn lru_gen_check_references(&mut self, mem: &mut Memory, pfn: Pfn) -> FolioRef {
        let (referenced, around) = mem.lru_gen_folio_referenced(pfn);
        self.lru_gen.nr_look_around += around;
        if referenced == 0 {
            return FolioRef::Reclaim;
        }
        if lru_gen_set_refs(mem, pfn) {
            FolioRef::Activate
        } else {
            FolioRef::Keep
        }
    }

    /// `evict_folios`: isolates from `lv`'s oldest generation (tiers above
    /// the PID controller's index protected), drops emptied generations
    /// (`try_to_inc_min_seq`), and runs the shared `shrink_folio` on each
    /// isolated folio; rejected ones stay out of the oldest generation.
    /// Returns the pages scanned (sorted or isolated) and what was freed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn evict_folios(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        lv: MemcgId,
        nr_to_scan: u64,
        who: Who,
        cpu: usize,
        now: u64,
    ) -> Progress {
        let tier_idx = get_tier_idx(&mem.lru.vec(lv).lrugen);
        let (scanned, sorted, isolated) = scan_folios(mem, lv, nr_to_scan, tier_idx);
        mem.lru.vec_mut(lv).lrugen.try_to_inc_min_seq();
        let nr_isolated: u64 = isolated
            .iter()
            .map(|&p| 1u64 << mem.folios.get(p).order)
            .sum();
        let ev = if who == Who::Kswapd {
            VmEvent::PgScanKswapd
        } else {
            VmEvent::PgScanDirect
        };
        mem.count_event(lv, ev, nr_isolated);
        mem.count_event(lv, VmEvent::PgScanAnon, nr_isolated);
        mem.count_event(lv, VmEvent::PgRefill, sorted);
        let mut prog = Progress::default();
        mem.rmap_prefetch(swap, &isolated);
        mem.lru.evicting = true;
        for pfn in isolated {
            self.shrink_folio(mem, swap, pfn, who, cpu, now, &mut prog);
        }
        mem.lru.evicting = false;
        if prog.reclaimed > 0 {
            self.count_steal(mem, lv, who, prog.reclaimed);
        }
        prog.scanned = scanned;
        prog
    }
}
