//! The multi-generational LRU's lists (`struct lru_gen_folio`, the
//! `lru_gen_*` helpers of include/linux/mm_inline.h, the page-table walk
//! of mm/vmscan.c's aging).
//!
//! Under `reclaim.policy = "mglru"` each lruvec keeps its folios on up to
//! [`MAX_NR_GENS`] generation lists instead of the active/inactive pair.
//! A generation is named by a sequence number between `min_seq` (the
//! oldest, evicted first) and `max_seq` (the youngest); its list is
//! `seq % MAX_NR_GENS`. A folio carries its generation (plus one, so zero
//! means "on no generation list") in `LRU_GEN` bits of its flags, and the
//! accesses seen through file descriptors in `LRU_REFS` bits, as the
//! kernel's `folio->flags` do.
//!
//! This module owns the data and the moves between lists that keep it
//! consistent; when to age and what to evict is swapvm-reclaim's (its
//! `mglru` module).
//!
//! Simplifications: one node, one zone, only the anon type (swapvm has no
//! file LRU: shmem is swap-backed and on the anon lists, as in the kernel);
//! promotion by the page-table walk moves the folio to its new list at once
//! (the kernel only rewrites the flags and lets `sort_folio` move it
//! later), so list membership and per-generation counts agree at every
//! instant; `NR_HIST_GENS` is 1, as in the kernel.

use crate::folio::{pg, Folios, Page};
use crate::memcg::MemcgId;
use crate::memory::Memory;
use swapvm_core::list::ListHead;
use swapvm_core::{Pfn, Pte};

/// `MAX_NR_GENS`: generations a lruvec may hold at once.
pub const MAX_NR_GENS: u64 = 4;
/// `MIN_NR_GENS`: generations a lruvec always holds (the two youngest
/// count as "active" for the compatibility sizes).
pub const MIN_NR_GENS: u64 = 2;
/// `MAX_NR_TIERS`: tiers by access count within a generation.
pub const MAX_NR_TIERS: usize = 4;
/// `LRU_REFS_WIDTH`: bits of access count beyond `PG_referenced`.
pub const LRU_REFS_WIDTH: u32 = 2;
/// `MIN_LRU_BATCH` (`BITS_PER_LONG`).
pub const MIN_LRU_BATCH: u64 = 64;
/// `MAX_LRU_BATCH`.
pub const MAX_LRU_BATCH: u64 = MIN_LRU_BATCH * 64;

const LRU_GEN_PGOFF: u32 = 24;
const LRU_GEN_WIDTH: u32 = 3;
const LRU_REFS_PGOFF: u32 = LRU_GEN_PGOFF + LRU_GEN_WIDTH;
/// `LRU_GEN_MASK`: the folio's generation plus one.
pub const LRU_GEN_MASK: u32 = ((1 << LRU_GEN_WIDTH) - 1) << LRU_GEN_PGOFF;
/// `LRU_REFS_MASK`: accesses through file descriptors beyond the first.
pub const LRU_REFS_MASK: u32 = ((1 << LRU_REFS_WIDTH) - 1) << LRU_REFS_PGOFF;
/// `LRU_REFS_FLAGS`: the access count including `PG_referenced`.
pub const LRU_REFS_FLAGS: u32 = LRU_REFS_MASK | pg::REFERENCED;

// The generation fits its bits, and both fields sit above every PG_ bit.
const _: () = assert!(MAX_NR_GENS < 1 << LRU_GEN_WIDTH);
const _: () = assert!(LRU_REFS_PGOFF + LRU_REFS_WIDTH <= 32);
const _: () = assert!(pg::READAHEAD < 1 << LRU_GEN_PGOFF);

/// Bits of `/sys/kernel/mm/lru_gen/enabled`.
pub mod caps {
    /// `LRU_GEN_CORE`: the multi-generational LRU itself.
    pub const CORE: u32 = 0x1;
    /// `LRU_GEN_MM_WALK`: aging walks page tables to clear accessed bits
    /// in batches (without it, only eviction's rmap walk finds them).
    pub const MM_WALK: u32 = 0x2;
    /// `LRU_GEN_NONLEAF_YOUNG`: accepted, no effect (swapvm's upper page
    /// tables have no accessed bits).
    pub const NONLEAF_YOUNG: u32 = 0x4;
    /// All bits.
    pub const ALL: u32 = CORE | MM_WALK | NONLEAF_YOUNG;
}

/// `lru_gen_from_seq`: the list of sequence number `seq`.
#[inline]
pub fn lru_gen_from_seq(seq: u64) -> usize {
    (seq % MAX_NR_GENS) as usize
}

/// `folio_lru_gen`: the generation list a folio's flags name, if any.
#[inline]
pub fn folio_lru_gen(flags: u32) -> Option<usize> {
    let g = (flags & LRU_GEN_MASK) >> LRU_GEN_PGOFF;
    (g > 0).then(|| g as usize - 1)
}

/// `folio_lru_refs`: accesses counted, `PG_referenced` included (0 if it
/// is clear).
#[inline]
pub fn folio_lru_refs(flags: u32) -> u32 {
    if flags & pg::REFERENCED == 0 {
        return 0;
    }
    ((flags & LRU_REFS_MASK) >> LRU_REFS_PGOFF) + 1
}

/// Sets the `LRU_REFS` bits to `refs` beyond the first (`set_mask_bits`
/// on `LRU_REFS_MASK`).
#[inline]
pub fn set_lru_refs_bits(p: &mut Page, extra: u32) {
    let v = extra.min((1 << LRU_REFS_WIDTH) - 1) << LRU_REFS_PGOFF;
    p.flags = (p.flags & !LRU_REFS_MASK) | v;
}

/// `lru_tier_from_refs`: a workingset folio is in the top tier, others by
/// `order_base_2(refs)`.
#[inline]
pub fn lru_tier_from_refs(refs: u32, workingset: bool) -> usize {
    if workingset {
        return MAX_NR_TIERS - 1;
    }
    let order = if refs <= 1 {
        0
    } else {
        32 - (refs - 1).leading_zeros()
    };
    (order as usize).min(MAX_NR_TIERS - 1)
}

/// The PID controller's inputs of one lruvec (`refaulted`, `evicted`,
/// `protected` and their running averages in `struct lru_gen_folio`), by
/// tier. The current-period counters cover the oldest generation since
/// `min_seq` last advanced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TierStats {
    /// Refaults of folios evicted from each tier (`refaulted[hist]`).
    pub refaulted: [u64; MAX_NR_TIERS],
    /// Pages evicted from each tier (`evicted[hist]`).
    pub evicted: [u64; MAX_NR_TIERS],
    /// Pages protected (moved to the next generation) by `sort_folio`.
    pub protected: [u64; MAX_NR_TIERS],
    /// `avg_refaulted`.
    pub avg_refaulted: [u64; MAX_NR_TIERS],
    /// `avg_total`.
    pub avg_total: [u64; MAX_NR_TIERS],
}

impl TierStats {
    /// `reset_ctrl_pos(.., carryover = true)` with one history slot: folds
    /// the period into the averages and starts a new one.
    pub fn carry_over(&mut self) {
        for t in 0..MAX_NR_TIERS {
            self.avg_refaulted[t] = (self.avg_refaulted[t] + self.refaulted[t]) / 2;
            self.avg_total[t] = (self.avg_total[t] + self.protected[t] + self.evicted[t]) / 2;
        }
        self.refaulted = [0; MAX_NR_TIERS];
        self.evicted = [0; MAX_NR_TIERS];
        self.protected = [0; MAX_NR_TIERS];
    }
}

/// One lruvec's generations (`struct lru_gen_folio`).
#[derive(Debug)]
pub struct LruGen {
    /// The policy is on for this lruvec (`lrugen->enabled`).
    pub enabled: bool,
    /// `max_seq`: the youngest generation.
    pub max_seq: u64,
    /// `min_seq[LRU_GEN_ANON]`: the oldest generation.
    pub min_seq: u64,
    /// The lists by `seq % MAX_NR_GENS` (`folios[gen]`).
    lists: [ListHead; MAX_NR_GENS as usize],
    /// Pages on each list (`nr_pages[gen]`).
    nr_pages: [u64; MAX_NR_GENS as usize],
    /// When each generation was made, in ticks (`timestamps[gen]`).
    pub timestamps: [u64; MAX_NR_GENS as usize],
    /// The PID controller's counters.
    pub tiers: TierStats,
}

impl Default for LruGen {
    /// `lru_gen_init_lruvec`: `max_seq = MIN_NR_GENS + 1`, `min_seq = 0`,
    /// so a new lruvec starts with all [`MAX_NR_GENS`] generations.
    fn default() -> Self {
        LruGen {
            enabled: false,
            max_seq: MIN_NR_GENS + 1,
            min_seq: 0,
            lists: Default::default(),
            nr_pages: [0; MAX_NR_GENS as usize],
            timestamps: [0; MAX_NR_GENS as usize],
            tiers: TierStats::default(),
        }
    }
}

impl LruGen {
    /// `get_nr_gens`.
    pub fn nr_gens(&self) -> u64 {
        self.max_seq - self.min_seq + 1
    }
    /// The list of generation `gen`.
    pub fn list(&self, gen: usize) -> &ListHead {
        &self.lists[gen]
    }
    /// Pages on generation `gen`'s list.
    pub fn nr_pages(&self, gen: usize) -> u64 {
        self.nr_pages[gen]
    }
    /// Folios on the generation lists.
    pub fn nr_folios(&self) -> u32 {
        self.lists.iter().map(ListHead::len).sum()
    }
    /// `lru_gen_is_active`: the two youngest generations count as active.
    pub fn is_active(&self, gen: usize) -> bool {
        gen == lru_gen_from_seq(self.max_seq) || gen == lru_gen_from_seq(self.max_seq - 1)
    }
    /// Folios in the "active" (two youngest) or "inactive" generations:
    /// the kernel's compatibility `NR_ACTIVE_ANON` / `NR_INACTIVE_ANON`.
    pub fn compat_len(&self, active: bool) -> u32 {
        (0..MAX_NR_GENS as usize)
            .filter(|&g| self.is_active(g) == active)
            .map(|g| self.lists[g].len())
            .sum()
    }

    /// `lru_gen_folio_seq`: where a folio being added goes. Set active
    /// while isolated (or faulted in): the second youngest generation, the
    /// youngest if also in the workingset; a rotation for reclaim: the
    /// oldest; a new anon folio not in the swap cache: the second
    /// youngest; others: the oldest (or the one after it if workingset).
    pub fn folio_seq(&self, p: &Page, reclaiming: bool) -> u64 {
        let workingset = u64::from(p.test(pg::WORKINGSET));
        let gen = if p.test(pg::ACTIVE) {
            MIN_NR_GENS - workingset
        } else if reclaiming {
            MAX_NR_GENS
        } else if p.swap.is_none() {
            MIN_NR_GENS
        } else {
            MAX_NR_GENS - workingset
        };
        (self.max_seq + 1 - gen).max(self.min_seq)
    }

    /// `lru_gen_add_folio`: puts a folio on the list [`Self::folio_seq`]
    /// picks (at the tail for a rotation, else the head), clearing
    /// `PG_active`.
    pub fn add_folio(&mut self, folios: &mut Folios, pfn: Pfn, reclaiming: bool) {
        let seq = self.folio_seq(folios.get(pfn), reclaiming);
        let gen = lru_gen_from_seq(seq);
        let p = folios.get_mut(pfn);
        debug_assert!(!p.test(pg::LRU));
        p.flags &= !(LRU_GEN_MASK | pg::ACTIVE);
        p.flags |= ((gen as u32 + 1) << LRU_GEN_PGOFF) | pg::LRU;
        self.nr_pages[gen] += 1u64 << p.order;
        if reclaiming {
            self.lists[gen].push_back(folios, pfn.0);
        } else {
            self.lists[gen].push_front(folios, pfn.0);
        }
    }

    /// `lru_gen_del_folio`: takes a folio off its list. Unless reclaim is
    /// isolating it, a folio of an active generation leaves with
    /// `PG_active`, so it returns to one. False if it was on no list.
    pub fn del_folio(&mut self, folios: &mut Folios, pfn: Pfn, reclaiming: bool) -> bool {
        let p = *folios.get(pfn);
        if !p.test(pg::LRU) {
            return false;
        }
        let gen = folio_lru_gen(p.flags).expect("folio on the LRU has a generation");
        self.lists[gen].remove(folios, pfn.0);
        self.nr_pages[gen] -= 1u64 << p.order;
        let f = folios.get_mut(pfn);
        f.flags &= !(LRU_GEN_MASK | pg::LRU);
        if !reclaiming && self.is_active(gen) {
            f.set(pg::ACTIVE);
        }
        true
    }

    /// Moves a folio on a generation list to the head (or tail) of `gen`'s.
    fn move_folio(&mut self, folios: &mut Folios, pfn: Pfn, gen: usize, tail: bool) {
        let p = *folios.get(pfn);
        let old = folio_lru_gen(p.flags).expect("folio on a generation list");
        self.lists[old].remove(folios, pfn.0);
        self.nr_pages[old] -= 1u64 << p.order;
        let f = folios.get_mut(pfn);
        f.flags = (f.flags & !LRU_GEN_MASK) | ((gen as u32 + 1) << LRU_GEN_PGOFF);
        self.nr_pages[gen] += 1u64 << p.order;
        if tail {
            self.lists[gen].push_back(folios, pfn.0);
        } else {
            self.lists[gen].push_front(folios, pfn.0);
        }
    }

    /// `folio_inc_gen` and the list move that follows it: the folio goes
    /// one generation younger than its own, its access count cleared.
    /// Returns the new generation.
    pub fn folio_inc_gen(&mut self, folios: &mut Folios, pfn: Pfn, tail: bool) -> usize {
        let old = folio_lru_gen(folios.get(pfn).flags).expect("folio on a generation list");
        let gen = (old + 1) % MAX_NR_GENS as usize;
        folios.get_mut(pfn).flags &= !LRU_REFS_FLAGS;
        self.move_folio(folios, pfn, gen, tail);
        gen
    }

    /// `folio_update_gen` for a folio whose PTE was found young: the first
    /// time only `PG_referenced` is set; a folio already referenced (or in
    /// the workingset) moves to the youngest generation, access count
    /// cleared, `PG_workingset` set. Returns true if it moved.
    pub fn folio_update_gen(&mut self, folios: &mut Folios, pfn: Pfn) -> bool {
        let p = folios.get_mut(pfn);
        if !p.test(pg::REFERENCED) && !p.test(pg::WORKINGSET) {
            p.flags = (p.flags & !LRU_REFS_MASK) | pg::REFERENCED;
            return false;
        }
        if !p.test(pg::LRU) {
            return false;
        }
        p.flags &= !LRU_REFS_FLAGS;
        p.set(pg::WORKINGSET);
        let gen = lru_gen_from_seq(self.max_seq);
        if folio_lru_gen(folios.get(pfn).flags) == Some(gen) {
            return false;
        }
        self.move_folio(folios, pfn, gen, false);
        true
    }

    /// `inc_min_seq`: with every generation in use, the oldest one's
    /// folios move to the next (at its tail, oldest first) so that aging
    /// can make a new one. The PID controller's period ends.
    pub fn inc_min_seq(&mut self, folios: &mut Folios) {
        let old = lru_gen_from_seq(self.min_seq);
        while let Some(i) = self.lists[old].last() {
            self.folio_inc_gen(folios, Pfn(i), true);
        }
        self.tiers.carry_over();
        self.min_seq += 1;
    }

    /// `try_to_inc_min_seq`: drops empty oldest generations, keeping
    /// [`MIN_NR_GENS`]. Returns true if `min_seq` advanced.
    pub fn try_to_inc_min_seq(&mut self) -> bool {
        let mut seq = self.min_seq;
        while seq + MIN_NR_GENS <= self.max_seq && self.lists[lru_gen_from_seq(seq)].is_empty() {
            seq += 1;
        }
        if seq == self.min_seq {
            return false;
        }
        self.tiers.carry_over();
        self.min_seq = seq;
        true
    }

    /// `inc_max_seq`: a new, empty youngest generation born at `now`
    /// (making room first if all [`MAX_NR_GENS`] are in use).
    pub fn inc_max_seq(&mut self, folios: &mut Folios, now: u64) {
        if self.nr_gens() == MAX_NR_GENS {
            self.inc_min_seq(folios);
        }
        self.timestamps[lru_gen_from_seq(self.max_seq + 1)] = now;
        self.max_seq += 1;
    }

    /// Members of generation `gen`'s list, head to tail (checker use).
    pub fn members(&self, folios: &mut Folios, gen: usize) -> Vec<u32> {
        self.lists[gen].collect(folios)
    }
}

impl Memory {
    /// `walk_mm` over every address space of `memcg` (its `mm_list`), for
    /// aging: each young PTE of a folio of `memcg` on the LRU has its
    /// accessed bit cleared and the folio [`LruGen::folio_update_gen`]'d.
    /// Returns the PTEs found young.
    ///
    /// swapvm simplifies: every page-table page is walked (the kernel's
    /// Bloom filter of page tables worth walking is not modelled), and
    /// address spaces are those whose `mm->owner` is in `memcg` exactly.
    pub fn lru_gen_walk_mm(&mut self, memcg: MemcgId) -> u64 {
        let pgds: Vec<u32> = self
            .mms
            .iter()
            .flatten()
            .filter(|m| m.memcg == memcg)
            .map(|m| m.pgd)
            .collect();
        let Memory {
            pt, folios, lru, ..
        } = self;
        let lrugen = &mut lru.vec_mut(memcg).lrugen;
        let mut young = 0;
        for pgd in pgds {
            pt.for_each_pte_mut(pgd, |_, pte| {
                if !pte.is_present() || !pte.has(Pte::ACCESSED) {
                    return None;
                }
                let head = folio_head(folios, pte.pfn());
                let p = folios.get(head);
                if p.memcg != memcg.0 || !p.test(pg::LRU) {
                    return None;
                }
                young += 1;
                lrugen.folio_update_gen(folios, head);
                Some(pte.without(Pte::ACCESSED))
            });
        }
        young
    }
}

/// The workingset shadow under MGLRU (`lru_gen_eviction`,
/// `lru_gen_refault` of mm/workingset.c): the eviction "age" is a token of
/// the lruvec's `min_seq` at eviction and the folio's access count
/// (`min_seq << LRU_REFS_WIDTH | refs - 1`), beside the usual memcg, node
/// and `PG_workingset` fields.
impl Memory {
    /// `lru_gen_eviction`: counts the folio as evicted from its tier and
    /// returns its shadow.
    ///
    /// # Context
    /// Folio locked, isolated, about to leave the swap cache for reclaim.
    pub fn lru_gen_eviction(&mut self, pfn: Pfn) -> u64 {
        let p = *self.folios.get(pfn);
        let memcg = MemcgId(p.memcg);
        let refs = folio_lru_refs(p.flags);
        let workingset = p.test(pg::WORKINGSET);
        let tier = lru_tier_from_refs(refs, workingset);
        let lrugen = &mut self.lru.vec_mut(memcg).lrugen;
        lrugen.tiers.evicted[tier] += 1u64 << p.order;
        let token = (lrugen.min_seq << LRU_REFS_WIDTH) | u64::from(refs.saturating_sub(1));
        crate::workingset::pack_shadow(u32::from(memcg.0), 0, token, workingset, 0)
    }

    /// `lru_gen_test_recent`: the shadow's lruvec, its token and
    /// workingset bit, and whether it was evicted within the last
    /// [`MAX_NR_GENS`] generations of that lruvec.
    pub fn lru_gen_test_recent(&self, shadow: u64) -> Option<(MemcgId, u64, bool, bool)> {
        let s = crate::workingset::unpack_shadow(shadow, 0);
        let memcg = MemcgId(u16::try_from(s.memcg).ok()?);
        if usize::from(memcg.0) >= self.lru.nr() {
            return None;
        }
        let token_max = crate::workingset::EVICTION_MASK >> LRU_REFS_WIDTH;
        let max_seq = self.lru.vec(memcg).lrugen.max_seq & token_max;
        let recent = max_seq.abs_diff(s.eviction >> LRU_REFS_WIDTH) < MAX_NR_GENS;
        Some((memcg, s.eviction, s.workingset, recent))
    }

    /// `lru_gen_refault`: a folio read back into slots that held `shadow`.
    /// If the shadow is its own lruvec's, counts `workingset_refault_anon`;
    /// a recent one counts a refault of its tier for the PID controller
    /// (and `workingset_activate_anon` in a fault, which sets it active),
    /// then restores `PG_workingset` or the access count.
    ///
    /// # Context
    /// Folio locked, in the swap cache, charged, not yet on the LRU.
    pub fn lru_gen_refault(&mut self, pfn: Pfn, shadow: u64) {
        let nr = u64::from(1u32 << self.folios.get(pfn).order);
        let memcg = self.folio_memcg(pfn);
        let Some((lv, token, workingset, recent)) = self.lru_gen_test_recent(shadow) else {
            return;
        };
        if lv != memcg {
            return;
        }
        self.count_event(memcg, swapvm_core::VmEvent::WorkingsetRefaultAnon, nr);
        if !recent {
            return;
        }
        let refs = (token & ((1 << LRU_REFS_WIDTH) - 1)) as u32 + 1;
        let tier = lru_tier_from_refs(refs, workingset);
        self.lru.vec_mut(memcg).lrugen.tiers.refaulted[tier] += nr;
        if self.lru.in_fault {
            self.count_event(memcg, swapvm_core::VmEvent::WorkingsetActivateAnon, nr);
        }
        if workingset {
            self.folios.get_mut(pfn).set(pg::WORKINGSET);
            self.count_event(memcg, swapvm_core::VmEvent::WorkingsetRestoreAnon, nr);
        } else {
            set_lru_refs_bits(self.folios.get_mut(pfn), refs - 1);
        }
    }
}

/// The rmap side of MGLRU: `folio_referenced` as eviction runs it, with
/// `lru_gen_look_around` on each young PTE found.
impl Memory {
    /// `folio_referenced` under MGLRU: clears and counts the young PTEs
    /// mapping the folio; around each one, [`Self::lru_gen_look_around`]
    /// ages the neighbours (folios of the same memcg) in the same
    /// page-table page. Returns the young PTEs of the folio itself and the
    /// neighbours found young.
    pub fn lru_gen_folio_referenced(&mut self, pfn: Pfn) -> (u32, u64) {
        let mut young = Vec::new();
        self.rmap_walk(pfn, |m, mm, vpn, leaf| {
            let pte = m.pt.pte(leaf);
            if pte.has(Pte::ACCESSED) {
                m.pt.set_pte(leaf, pte.without(Pte::ACCESSED));
                young.push((mm, vpn, leaf));
            }
            true
        });
        let memcg = self.folio_memcg(pfn);
        let mut around = 0;
        for &(mm, vpn, leaf) in &young {
            around += self.lru_gen_look_around(mm, vpn, leaf, pfn, memcg);
        }
        (young.len() as u32, around)
    }

    /// `lru_gen_look_around`: up to [`MIN_LRU_BATCH`] PTEs around `vpn`,
    /// within its VMA and its page-table page (`leaf`), are checked; each
    /// young one of another folio of `memcg` on the LRU is cleared and the
    /// folio [`LruGen::folio_update_gen`]'d, as a page-table walk would.
    /// Returns the neighbours found young.
    pub fn lru_gen_look_around(
        &mut self,
        mm: crate::MmId,
        vpn: swapvm_core::Vpn,
        leaf: (crate::pgtable::TableId, usize),
        pfn: Pfn,
        memcg: MemcgId,
    ) -> u64 {
        let Some(vma) = self.find_vma(mm, vpn) else {
            return 0;
        };
        let table_base = vpn.0 - leaf.1 as u64;
        let mut start = vma.start.0.max(table_base);
        let mut end = vma.end.0.min(table_base + 512);
        let half = MIN_LRU_BATCH / 2;
        if end - start > MIN_LRU_BATCH {
            (start, end) = if vpn.0 - start < half {
                (start, start + MIN_LRU_BATCH)
            } else if end - vpn.0 < half {
                (end - MIN_LRU_BATCH, end)
            } else {
                (vpn.0 - half, vpn.0 + half)
            };
        }
        let mut young = 0;
        for v in start..end {
            let slot = (leaf.0, (v - table_base) as usize);
            let pte = self.pt.pte(slot);
            if !pte.is_present() || !pte.has(Pte::ACCESSED) {
                continue;
            }
            let head = self.folio_of(pte.pfn());
            let p = self.folios.get(head);
            if head == pfn || p.memcg != memcg.0 || !p.test(pg::LRU) {
                continue;
            }
            self.pt.set_pte(slot, pte.without(Pte::ACCESSED));
            let Memory { lru, folios, .. } = self;
            lru.vec_mut(memcg).lrugen.folio_update_gen(folios, head);
            young += 1;
        }
        young
    }
}

/// `page_folio` on the folio array alone.
fn folio_head(folios: &Folios, pfn: Pfn) -> Pfn {
    let p = folios.get(pfn);
    if p.test(pg::TAIL) {
        Pfn(p.mapping)
    } else {
        pfn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folio(folios: &mut Folios, i: u32, flags: u32) -> Pfn {
        let pfn = Pfn(i);
        folios.get_mut(pfn).flags = pg::ALLOCATED | flags;
        pfn
    }

    /// New anon folios go to the second youngest generation, active
    /// workingset ones to the youngest, rotations to the oldest's tail.
    #[test]
    fn add_folio_picks_the_generation_as_the_kernel_does() {
        let mut folios = Folios::new(8);
        let mut g = LruGen::default();
        let (max, min) = (g.max_seq, g.min_seq);
        let a = folio(&mut folios, 0, 0);
        g.add_folio(&mut folios, a, false);
        assert_eq!(
            folio_lru_gen(folios.get(a).flags),
            Some(lru_gen_from_seq(max - 1))
        );
        let b = folio(&mut folios, 1, pg::ACTIVE | pg::WORKINGSET);
        g.add_folio(&mut folios, b, false);
        assert_eq!(
            folio_lru_gen(folios.get(b).flags),
            Some(lru_gen_from_seq(max))
        );
        assert!(
            !folios.get(b).test(pg::ACTIVE),
            "PG_active is cleared on add"
        );
        let c = folio(&mut folios, 2, 0);
        g.add_folio(&mut folios, c, true);
        assert_eq!(
            folio_lru_gen(folios.get(c).flags),
            Some(lru_gen_from_seq(min))
        );
        assert_eq!(g.nr_folios(), 3);
        // Taken off an active generation outside reclaim, a folio is
        // active again.
        assert!(g.del_folio(&mut folios, a, false));
        assert!(folios.get(a).test(pg::ACTIVE));
        assert!(g.del_folio(&mut folios, c, true));
        assert!(!folios.get(c).test(pg::ACTIVE | pg::LRU));
        assert!(!g.del_folio(&mut folios, c, true));
    }

    /// Aging with every generation in use folds the oldest into the next;
    /// min_seq never passes max_seq - MIN_NR_GENS + 1.
    #[test]
    fn inc_max_seq_keeps_at_most_max_nr_gens() {
        let mut folios = Folios::new(8);
        let mut g = LruGen::default();
        let a = folio(&mut folios, 0, 0);
        g.add_folio(&mut folios, a, true);
        let oldest = g.min_seq;
        g.inc_max_seq(&mut folios, 7);
        assert_eq!(g.nr_gens(), MAX_NR_GENS);
        assert_eq!(g.min_seq, oldest + 1);
        assert_eq!(
            folio_lru_gen(folios.get(a).flags),
            Some(lru_gen_from_seq(g.min_seq))
        );
        assert_eq!(g.timestamps[lru_gen_from_seq(g.max_seq)], 7);
        assert_eq!(g.nr_pages(lru_gen_from_seq(g.min_seq)), 1);
        // Only the folio's generation is populated: empty ones between go.
        g.del_folio(&mut folios, a, true);
        assert!(g.try_to_inc_min_seq());
        assert_eq!(g.nr_gens(), MIN_NR_GENS);
        assert!(!g.try_to_inc_min_seq());
    }

    #[test]
    fn tiers_follow_refs_and_workingset() {
        assert_eq!(lru_tier_from_refs(0, false), 0);
        assert_eq!(lru_tier_from_refs(1, false), 0);
        assert_eq!(lru_tier_from_refs(2, false), 1);
        assert_eq!(lru_tier_from_refs(4, false), 2);
        assert_eq!(lru_tier_from_refs(1, true), MAX_NR_TIERS - 1);
        let mut p = Page::default();
        assert_eq!(folio_lru_refs(p.flags), 0);
        p.set(pg::REFERENCED);
        set_lru_refs_bits(&mut p, 2);
        assert_eq!(folio_lru_refs(p.flags), 3);
    }
}
