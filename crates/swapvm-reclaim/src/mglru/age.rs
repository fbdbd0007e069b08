//! MGLRU aging (`try_to_inc_max_seq`, `should_run_aging`,
//! `get_nr_to_scan`), `min_ttl_ms` (`lru_gen_age_node`), and the debugfs
//! `lru_gen` view (`lru_gen_seq_show`).

use crate::{Reclaimer, DEF_PRIORITY};
use std::fmt::Write;
use swapvm_mm::lru_gen::{caps, lru_gen_from_seq, MIN_NR_GENS};
use swapvm_mm::{LruGen, MemcgId, Memory, MAX_NR_TIERS};
use swapvm_swap::SwapSubsystem;

/// `should_run_aging`: whether `lrugen` must age (fewer than
/// `MIN_NR_GENS + 1` generations leave nothing evictable) or had better
/// (exactly that many), and the pages on all its generations.
pub(super) fn should_run_aging(lrugen: &LruGen) -> (bool, u64) {
    if lrugen.min_seq + MIN_NR_GENS > lrugen.max_seq {
        return (true, 0);
    }
    let size = (lrugen.min_seq..=lrugen.max_seq)
        .map(|seq| lrugen.nr_pages(lru_gen_from_seq(seq)))
        .sum();
    (lrugen.min_seq + MIN_NR_GENS == lrugen.max_seq, size)
}

impl Reclaimer {
    /// `get_nr_to_scan`: pages of `lv` to scan at `priority` (its size
    /// shifted by the priority), or, when it should age and the priority
    /// is not the first, an aging pass instead and `-1` (stop scanning
    /// this lruvec: it is low on cold folios).
    pub(super) fn get_nr_to_scan(
        &mut self,
        mem: &mut Memory,
        lv: MemcgId,
        priority: u32,
        now: u64,
    ) -> i64 {
        let (age, size) = should_run_aging(&mem.lru.vec(lv).lrugen);
        if !age || priority == DEF_PRIORITY {
            return (size >> priority) as i64;
        }
        let max_seq = mem.lru.vec(lv).lrugen.max_seq;
        self.try_to_inc_max_seq(mem, lv, max_seq, now);
        -1
    }

    /// `try_to_inc_max_seq`: if `lv`'s youngest generation is still
    /// `max_seq`, walks its address spaces (with `LRU_GEN_MM_WALK`),
    /// promoting the folios found accessed, then makes a new youngest
    /// generation born at `now`. Returns false if another aging got there
    /// first.
    pub fn try_to_inc_max_seq(
        &mut self,
        mem: &mut Memory,
        lv: MemcgId,
        max_seq: u64,
        now: u64,
    ) -> bool {
        if mem.lru.vec(lv).lrugen.max_seq != max_seq {
            return false;
        }
        if self.cfg.lru_gen_enabled & caps::MM_WALK != 0 {
            mem.lru_gen_walk_mm(lv);
        }
        let Memory { lru, folios, .. } = mem;
        lru.vec_mut(lv).lrugen.inc_max_seq(folios, now);
        self.lru_gen.nr_aging += 1;
        true
    }

    /// `lru_gen_age_node` (kswapd, at the start of a run): with
    /// `min_ttl_ms` set, if no memcg has a sizable lruvec whose oldest
    /// generation is older than that, every working set would be thrashed
    /// by eviction: request an OOM kill instead
    /// ([`Reclaimer::take_oom_request`]).
    pub(super) fn lru_gen_age_node(
        &mut self,
        mem: &mut Memory,
        swap: &SwapSubsystem,
        priority: u32,
        now: u64,
    ) {
        let min_ttl = self.cfg.min_ttl_ms;
        if min_ttl == 0 {
            return;
        }
        let mut reclaimable = false;
        for lv in mem.memcg.subtree(MemcgId::ROOT) {
            mem.memcg.calculate_protection(MemcgId::ROOT, lv);
            if reclaimable || mem.memcg.below_min(MemcgId::ROOT, lv) {
                continue;
            }
            reclaimable = self.lruvec_is_reclaimable(mem, swap, lv, priority, now);
        }
        if !reclaimable {
            self.lru_gen.oom_request = true;
        }
    }

    /// `lruvec_is_reclaimable`: big enough at `priority` to be worth
    /// evicting from (`lruvec_is_sizable`), and its oldest evictable
    /// generation was born more than `min_ttl_ms` ago.
    fn lruvec_is_reclaimable(
        &self,
        mem: &Memory,
        swap: &SwapSubsystem,
        lv: MemcgId,
        priority: u32,
        now: u64,
    ) -> bool {
        if self.get_swappiness(mem, swap, lv) == 0 {
            return false;
        }
        let g = &mem.lru.vec(lv).lrugen;
        let total: u64 = (g.min_seq..=g.max_seq)
            .map(|s| g.nr_pages(lru_gen_from_seq(s)))
            .sum();
        if total >> priority == 0 {
            return false;
        }
        let birth = g.timestamps[lru_gen_from_seq(g.min_seq)];
        now > birth + self.cfg.min_ttl_ms
    }
}

/// `/sys/kernel/debug/lru_gen` as `lru_gen_seq_show` prints it (the
/// anon column only; swapvm has no file LRU; one node): per memcg
/// `memcg ID PATH`, `node 0`, then per generation `SEQ AGE_MS NR_ANON 0`,
/// and for the oldest generation the per-tier lines `TIER REFAULTED
/// EVICTED PROTECTED` (the kernel's verbose form: the period's counters,
/// averages folded in). `now` is in ticks (1 tick = 1 ms).
pub fn lru_gen_seq_show(mem: &Memory, now: u64) -> String {
    let mut out = String::new();
    for m in mem.memcg.subtree(MemcgId::ROOT) {
        let g = &mem.lru.vec(m).lrugen;
        let path = &mem.memcg.get(m).limits.path;
        let _ = writeln!(out, "memcg {:5} {path}", m.0);
        let _ = writeln!(out, " node {:5}", 0);
        for seq in g.min_seq..=g.max_seq {
            let gen = lru_gen_from_seq(seq);
            let age = now.saturating_sub(g.timestamps[gen]);
            let _ = writeln!(out, " {seq:10} {age:10} {:10} {:10}", g.nr_pages(gen), 0);
            if seq == g.min_seq {
                let t = &g.tiers;
                for tier in 0..MAX_NR_TIERS {
                    let _ = writeln!(
                        out,
                        " {tier:10} {:10}r {:10}e {:10}p",
                        t.avg_refaulted[tier] + t.refaulted[tier],
                        t.avg_total[tier] + t.evicted[tier],
                        t.protected[tier]
                    );
                }
            }
        }
    }
    out
}
