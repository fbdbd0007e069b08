//! LRU lists of swap-backed folios (`struct lruvec`, include/linux/mm_inline.h).
//!
//! The list heads and the add/delete helpers live here because every path
//! that creates or frees a folio must keep them right; the scanning policy
//! (what to isolate, activate, reclaim) is swapvm-reclaim's. Under the
//! multi-generational LRU the same entry points put folios on the
//! lruvec's generation lists instead (see lru_gen.rs), so the paths that
//! create and free folios need not know which policy runs.

use crate::folio::{pg, Folios};
use crate::lru_gen::LruGen;
use crate::memcg::MemcgId;
use swapvm_core::list::ListHead;
use swapvm_core::Pfn;

/// Which list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LruList {
    /// `LRU_INACTIVE_ANON`.
    InactiveAnon = 0,
    /// `LRU_ACTIVE_ANON`.
    ActiveAnon = 1,
}

/// The anon LRU lists of the (single-node) machine.
#[derive(Debug, Default)]
pub struct Lruvec {
    lists: [ListHead; 2],
    /// `lruvec->nonresident_age`: pages evicted or activated so far, the
    /// clock of workingset shadows (see workingset.rs).
    pub nonresident_age: u64,
    /// The generations (`lruvec->lrugen`), used instead of `lists` while
    /// `lrugen.enabled`.
    pub lrugen: LruGen,
}

impl Lruvec {
    /// Folios on `l`; under MGLRU, in the generations that count as `l`
    /// (the two youngest are "active").
    pub fn len(&self, l: LruList) -> u32 {
        if self.lrugen.enabled {
            return self.lrugen.compat_len(l == LruList::ActiveAnon);
        }
        self.lists[l as usize].len()
    }
    /// The list head (for scanners).
    pub fn list(&self, l: LruList) -> &ListHead {
        &self.lists[l as usize]
    }

    /// Adds a folio at the head of the list its `PG_active` says
    /// (`lruvec_add_folio`).
    pub fn add(&mut self, folios: &mut Folios, pfn: Pfn) {
        if self.lrugen.enabled {
            return self.lrugen.add_folio(folios, pfn, false);
        }
        let p = folios.get_mut(pfn);
        debug_assert!(!p.test(pg::LRU));
        p.set(pg::LRU);
        let l = if p.test(pg::ACTIVE) {
            LruList::ActiveAnon
        } else {
            LruList::InactiveAnon
        };
        self.lists[l as usize].push_front(folios, pfn.0);
    }

    /// Adds at the tail (rotation for quick reclaim).
    pub fn add_tail(&mut self, folios: &mut Folios, pfn: Pfn) {
        if self.lrugen.enabled {
            return self.lrugen.add_folio(folios, pfn, true);
        }
        let p = folios.get_mut(pfn);
        p.set(pg::LRU);
        let l = if p.test(pg::ACTIVE) {
            LruList::ActiveAnon
        } else {
            LruList::InactiveAnon
        };
        self.lists[l as usize].push_back(folios, pfn.0);
    }

    /// Removes a folio from its list (`lruvec_del_folio`) if it is on one.
    pub fn del(&mut self, folios: &mut Folios, pfn: Pfn) -> bool {
        if self.lrugen.enabled {
            return self.lrugen.del_folio(folios, pfn, false);
        }
        let p = folios.get_mut(pfn);
        if !p.test(pg::LRU) {
            return false;
        }
        p.clear(pg::LRU);
        let l = if p.test(pg::ACTIVE) {
            LruList::ActiveAnon
        } else {
            LruList::InactiveAnon
        };
        self.lists[l as usize].remove(folios, pfn.0);
        true
    }

    /// Members of a list, head to tail (checker use).
    pub fn members(&self, folios: &mut Folios, l: LruList) -> Vec<u32> {
        self.lists[l as usize].collect(folios)
    }
}

/// The lruvecs of the (single) node, one per memory cgroup
/// (`mem_cgroup_lruvec`), indexed by memcg id. A folio lives on the lruvec
/// of the memcg it is charged to (`folio_lruvec`), so adds and removals
/// dispatch on the folio's memcg; scanners take one lruvec at a time.
#[derive(Debug)]
pub struct Lruvecs {
    vecs: Vec<Lruvec>,
    lru_gen: bool,
    /// `current->in_lru_fault`: a page fault is being handled, so folios it
    /// adds are set active first (`folio_add_lru` under MGLRU).
    pub in_fault: bool,
    /// MGLRU's `evict_folios` is putting back folios it rejected: none may
    /// land in the oldest generation ("don't add rejected folios to the
    /// oldest generation").
    pub evicting: bool,
}

impl Default for Lruvecs {
    fn default() -> Self {
        Lruvecs {
            vecs: vec![Lruvec::default()],
            lru_gen: false,
            in_fault: false,
            evicting: false,
        }
    }
}

impl Lruvecs {
    /// One lruvec for each of `nr` memcgs.
    pub fn resize(&mut self, nr: usize) {
        let on = self.lru_gen;
        self.vecs.resize_with(nr.max(1), || {
            let mut v = Lruvec::default();
            v.lrugen.enabled = on;
            v
        });
    }
    /// Turns the multi-generational LRU on or off for every lruvec
    /// (`lru_gen_change_state`); only while every list is empty.
    ///
    /// # Panics
    /// If a folio is on an LRU list.
    pub fn set_lru_gen(&mut self, on: bool) {
        assert!(
            self.vecs
                .iter()
                .all(|v| v.lists.iter().all(|l| l.is_empty()) && v.lrugen.nr_folios() == 0),
            "the LRU policy changes only while the lists are empty"
        );
        self.lru_gen = on;
        for v in &mut self.vecs {
            v.lrugen.enabled = on;
        }
    }
    /// `lru_gen_enabled()`.
    pub fn lru_gen_enabled(&self) -> bool {
        self.lru_gen
    }
    /// Memcgs (lruvecs).
    pub fn nr(&self) -> usize {
        self.vecs.len()
    }
    /// The lruvec of memcg `m`.
    pub fn vec(&self, m: MemcgId) -> &Lruvec {
        &self.vecs[usize::from(m.0)]
    }
    /// The lruvec of memcg `m`, mutably.
    pub fn vec_mut(&mut self, m: MemcgId) -> &mut Lruvec {
        &mut self.vecs[usize::from(m.0)]
    }
    fn of(folios: &Folios, pfn: Pfn) -> usize {
        usize::from(folios.get(pfn).memcg)
    }
    /// [`Lruvec::add`] on the folio's lruvec. Under MGLRU a folio a fault
    /// adds is set active first (`folio_add_lru`), and one that eviction
    /// rejected is kept out of the oldest generation.
    pub fn add(&mut self, folios: &mut Folios, pfn: Pfn) {
        let v = &mut self.vecs[Self::of(folios, pfn)];
        if self.lru_gen {
            let min_seq = v.lrugen.min_seq;
            let rejected = self.evicting && v.lrugen.folio_seq(folios.get(pfn), false) == min_seq;
            if self.in_fault || rejected {
                let p = folios.get_mut(pfn);
                if rejected {
                    p.flags &= !crate::lru_gen::LRU_REFS_FLAGS;
                }
                p.set(pg::ACTIVE);
            }
        }
        v.add(folios, pfn);
    }
    /// [`Lruvec::add_tail`] on the folio's lruvec.
    pub fn add_tail(&mut self, folios: &mut Folios, pfn: Pfn) {
        self.vecs[Self::of(folios, pfn)].add_tail(folios, pfn);
    }
    /// [`Lruvec::del`] on the folio's lruvec.
    pub fn del(&mut self, folios: &mut Folios, pfn: Pfn) -> bool {
        self.vecs[Self::of(folios, pfn)].del(folios, pfn)
    }
    /// Folios on list `l` of every lruvec (the node's count).
    pub fn len(&self, l: LruList) -> u32 {
        self.vecs.iter().map(|v| v.len(l)).sum()
    }
    /// Members of list `l` of every lruvec, lruvec by lruvec (checker use).
    pub fn members(&self, folios: &mut Folios, l: LruList) -> Vec<u32> {
        self.vecs
            .iter()
            .flat_map(|v| v.members(folios, l))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use swapvm_core::SimRng;

    /// Under a seeded random mix of adds at the head and the tail, removals
    /// and activations, the lists (threaded through the frames' link array)
    /// hold what two `VecDeque`s do, in order; the seed is in the failure
    /// message.
    #[test]
    fn matches_vecdeque() {
        const NR: u32 = 64;
        for seed in 0..16u64 {
            let mut rng = SimRng::new(seed);
            let mut folios = Folios::new(NR);
            let mut lru = Lruvec::default();
            let mut model = [VecDeque::new(), VecDeque::new()];
            for step in 0..4000 {
                let pfn = Pfn(rng.below(u64::from(NR)) as u32);
                let why = format!("seed {seed} step {step} pfn {}", pfn.0);
                let on = folios.get(pfn).test(pg::LRU);
                let l = usize::from(folios.get(pfn).test(pg::ACTIVE));
                match rng.below(4) {
                    0 if !on => {
                        lru.add(&mut folios, pfn);
                        model[l].push_front(pfn.0);
                    }
                    1 if !on => {
                        lru.add_tail(&mut folios, pfn);
                        model[l].push_back(pfn.0);
                    }
                    2 => {
                        assert_eq!(lru.del(&mut folios, pfn), on, "{why}");
                        model[l].retain(|&i| i != pfn.0);
                    }
                    3 if !on => {
                        let p = folios.get_mut(pfn);
                        if p.test(pg::ACTIVE) {
                            p.clear(pg::ACTIVE);
                        } else {
                            p.set(pg::ACTIVE);
                        }
                    }
                    _ => {}
                }
                for (l, list) in [LruList::InactiveAnon, LruList::ActiveAnon]
                    .into_iter()
                    .enumerate()
                {
                    assert_eq!(lru.len(list) as usize, model[l].len(), "{why}");
                    let got = lru.members(&mut folios, list);
                    assert!(got.iter().eq(model[l].iter()), "{why}: {got:?}");
                    assert_eq!(lru.list(list).last(), model[l].back().copied(), "{why}");
                }
            }
        }
    }
}
