//! The checker's MGLRU half of invariant 5 (DESIGN.md): under
//! `reclaim.policy = "mglru"` every folio with `PG_lru` is on exactly one
//! generation list of its own memcg's lruvec, the list its `LRU_GEN` bits
//! name; `min_seq <= its seq <= max_seq`, with at most `MAX_NR_GENS` and
//! at least `MIN_NR_GENS` generations; each generation's page count equals
//! the pages of the folios on its list; no folio on a generation list has
//! `PG_active` (the kernel sets it only while a folio is isolated).

use swapvm_core::Pfn;
use swapvm_mm::lru_gen::{folio_lru_gen, lru_gen_from_seq};
use swapvm_mm::{pg, MemcgId, Memory, MAX_NR_GENS, MIN_NR_GENS};

/// Counts, in `on`, the generation lists each frame is on, and reports
/// what disagrees with the flags and counts into `bad`.
pub(crate) fn check_lru_gen(mem: &mut Memory, on: &mut [u8], bad: &mut Vec<String>) {
    for m in 0..mem.lru.nr() {
        let id = MemcgId(m as u16);
        let (min_seq, max_seq) = {
            let g = &mem.lru.vec(id).lrugen;
            (g.min_seq, g.max_seq)
        };
        let nr_gens = max_seq.wrapping_sub(min_seq).wrapping_add(1);
        if !(MIN_NR_GENS..=MAX_NR_GENS).contains(&nr_gens) {
            bad.push(format!(
                "invariant 5 (lru_gen): memcg {m}: min_seq {min_seq} max_seq {max_seq}, \
                 {nr_gens} generations (expected {MIN_NR_GENS}..={MAX_NR_GENS})"
            ));
        }
        for gen in 0..MAX_NR_GENS as usize {
            let live = (min_seq..=max_seq).any(|s| lru_gen_from_seq(s) == gen);
            let members = mem.lru.vec(id).lrugen.members(&mut mem.folios, gen);
            let mut pages = 0u64;
            for &i in &members {
                on[i as usize] += 1;
                let p = mem.folios.get(Pfn(i));
                pages += 1u64 << p.order;
                let ok = p.test(pg::LRU)
                    && p.test(pg::ALLOCATED)
                    && !p.test(pg::ACTIVE)
                    && folio_lru_gen(p.flags) == Some(gen)
                    && p.memcg == id.0
                    && live;
                if !ok {
                    bad.push(format!(
                        "invariant 5 (lru_gen): {:?} on memcg {m}'s generation list {gen} \
                         (seqs {min_seq}..={max_seq}) with memcg {} and flags {:#x}",
                        Pfn(i),
                        p.memcg,
                        p.flags
                    ));
                }
            }
            let counted = mem.lru.vec(id).lrugen.nr_pages(gen);
            if counted != pages {
                bad.push(format!(
                    "invariant 5 (lru_gen): memcg {m} generation list {gen} counts {counted} \
                     pages, its folios hold {pages}"
                ));
            }
        }
    }
}
