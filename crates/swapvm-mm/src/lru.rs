//! LRU lists of swap-backed folios (`struct lruvec`, include/linux/mm_inline.h).
//!
//! The list heads and the add/delete helpers live here because every path
//! that creates or frees a folio must keep them right; the scanning policy
//! (what to isolate, activate, reclaim) is swapvm-reclaim's.

use crate::folio::{pg, Folios};
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
}

impl Lruvec {
    /// Folios on `l`.
    pub fn len(&self, l: LruList) -> u32 {
        self.lists[l as usize].len()
    }
    /// The list head (for scanners).
    pub fn list(&self, l: LruList) -> &ListHead {
        &self.lists[l as usize]
    }

    /// Adds a folio at the head of the list its `PG_active` says
    /// (`lruvec_add_folio`).
    pub fn add(&mut self, folios: &mut Folios, pfn: Pfn) {
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
