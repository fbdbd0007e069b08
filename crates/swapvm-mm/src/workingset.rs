//! Workingset detection (mm/workingset.c): shadow entries and refault
//! distances for the swap-backed LRU lists.
//!
//! Reclaim asks [`Memory::workingset_eviction`] for a shadow when it drops
//! a swap-cache folio; the swap table keeps it in the slot
//! (`SlotBinding::Shadow`) while the slot is still referenced. When swap-in
//! binds a new folio to that slot, `swap_cache_add_folio` hands the shadow
//! back and [`Memory::workingset_refault`] decides whether the folio was
//! part of the workingset: if the pages evicted and activated since its
//! eviction (its refault distance) are no more than the workingset (the
//! active anon list, as the kernel counts it when only anon pages and swap
//! are present), the folio starts on the active list.
//!
//! The code lives in swapvm-mm rather than swapvm-reclaim because swap-in
//! (mm/swap_state.c in the kernel, fault.rs and shmem.rs here) consumes the
//! shadow, and swapvm-mm cannot depend on swapvm-reclaim. The age counter
//! is the lruvec's (`lruvec->nonresident_age`).
//!
//! Shadow layout, as `pack_shadow` builds it (before `xa_mk_value`, whose
//! tag bit the swap table's own tag replaces):
//!
//! ```text
//! bit  0              PG_workingset of the evicted folio (WORKINGSET_SHIFT = 1)
//! bits 1..=1          node id (NODES_SHIFT = 1; one node, always 0)
//! bits 2..=17         memcg id (MEM_CGROUP_ID_SHIFT = 16; the root, 0)
//! bits 18..           eviction age >> bucket_order (EVICTION_BITS bits)
//! ```
//!
//! Each memcg has its own clock (its lruvec's): a shadow names the memcg
//! that evicted the folio, and the refault distance is read on that
//! memcg's clock against its own workingset, as the kernel does.
//!
//! Simplifications: one node; no file LRU, so `workingset_size` is the
//! active anon list alone.

use crate::folio::pg;
use crate::memcg::MemcgId;
use crate::memory::Memory;
use crate::LruList;
use swapvm_core::{Pfn, VmEvent};

/// `WORKINGSET_SHIFT`.
const WORKINGSET_SHIFT: u32 = 1;
/// `NODES_SHIFT` (one node fits; the kernel's is config-dependent).
const NODES_SHIFT: u32 = 1;
/// `MEM_CGROUP_ID_SHIFT`.
const MEM_CGROUP_ID_SHIFT: u32 = 16;
/// `EVICTION_SHIFT`: bits below the eviction age.
const EVICTION_SHIFT: u32 = WORKINGSET_SHIFT + NODES_SHIFT + MEM_CGROUP_ID_SHIFT;
/// Bits of shadow payload the swap table can hold (see swapvm-swap's
/// table.rs: 46).
const SHADOW_BITS: u32 = 64 - SHADOW_PAYLOAD_SHIFT;
const SHADOW_PAYLOAD_SHIFT: u32 = 18;
/// `EVICTION_BITS`: bits of the eviction age kept in a shadow.
pub const EVICTION_BITS: u32 = SHADOW_BITS - EVICTION_SHIFT;
/// `EVICTION_MASK`.
pub(crate) const EVICTION_MASK: u64 = (1 << EVICTION_BITS) - 1;

const _: () = assert!(EVICTION_BITS >= 20);
const _: () = assert!(swapvm_swap::SHADOW_MAX == (1u64 << SHADOW_BITS) - 1);

/// An unpacked shadow (`unpack_shadow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shadow {
    /// The eviction age, already shifted back by `bucket_order`.
    pub eviction: u64,
    /// The folio was `PG_workingset` when evicted.
    pub workingset: bool,
    /// Node id (always 0).
    pub node: u32,
    /// memcg id of the evicting memcg.
    pub memcg: u32,
}

/// `bucket_order`: how many low bits of the age a shadow drops so that
/// `EVICTION_BITS` cover every page of RAM (`workingset_init`).
pub fn bucket_order(ram_pages: u64) -> u32 {
    let max_order = 64 - ram_pages.saturating_sub(1).leading_zeros();
    max_order.saturating_sub(EVICTION_BITS)
}

/// `pack_shadow`.
pub fn pack_shadow(memcg: u32, node: u32, eviction: u64, workingset: bool, order: u32) -> u64 {
    let mut v = (eviction >> order) & EVICTION_MASK;
    v = (v << MEM_CGROUP_ID_SHIFT) | u64::from(memcg & ((1 << MEM_CGROUP_ID_SHIFT) - 1));
    v = (v << NODES_SHIFT) | u64::from(node & ((1 << NODES_SHIFT) - 1));
    (v << WORKINGSET_SHIFT) | u64::from(workingset)
}

/// `unpack_shadow`.
pub fn unpack_shadow(shadow: u64, order: u32) -> Shadow {
    let workingset = shadow & 1 != 0;
    let mut v = shadow >> WORKINGSET_SHIFT;
    let node = (v & ((1 << NODES_SHIFT) - 1)) as u32;
    v >>= NODES_SHIFT;
    let memcg = (v & ((1 << MEM_CGROUP_ID_SHIFT) - 1)) as u32;
    v >>= MEM_CGROUP_ID_SHIFT;
    Shadow {
        eviction: (v & EVICTION_MASK) << order,
        workingset,
        node,
        memcg,
    }
}

impl Memory {
    /// `workingset_age_nonresident`: `nr` pages of memcg `memcg` were
    /// evicted or activated; the clock of its lruvec and of every
    /// ancestor's advances (`parent_lruvec`).
    pub fn workingset_age_nonresident(&mut self, memcg: MemcgId, nr: u64) {
        let chain: Vec<MemcgId> = self.memcg.ancestors(memcg).collect();
        for m in chain {
            let v = self.lru.vec_mut(m);
            v.nonresident_age = v.nonresident_age.wrapping_add(nr);
        }
    }

    /// `workingset_eviction`: ages the folio's lruvec and returns the
    /// shadow to leave in the evicted folio's slots, naming its memcg.
    ///
    /// swapvm reads the clock after aging it by the folio; the kernel
    /// reads it before, a refault distance smaller by the folio's pages.
    ///
    /// # Context
    /// Folio locked, isolated, about to leave the swap cache for reclaim.
    pub fn workingset_eviction(&mut self, pfn: Pfn) -> u64 {
        if self.lru.lru_gen_enabled() {
            return self.lru_gen_eviction(pfn);
        }
        let nr = u64::from(1u32 << self.folios.get(pfn).order);
        let memcg = self.folio_memcg(pfn);
        self.workingset_age_nonresident(memcg, nr);
        let workingset = self.folios.get(pfn).test(pg::WORKINGSET);
        let order = bucket_order(self.nr_frames());
        let age = self.lru.vec(memcg).nonresident_age;
        pack_shadow(u32::from(memcg.0), 0, age, workingset, order)
    }

    /// `workingset_test_recent`: the refault distance of `shadow` (pages
    /// evicted or activated since in the evicting memcg's lruvec) and
    /// whether it is within that memcg's workingset (its subtree's active
    /// anon pages: the kernel's memcg lruvec counts are hierarchical).
    pub fn workingset_test_recent(&self, shadow: u64) -> (u64, bool) {
        let order = bucket_order(self.nr_frames());
        let s = unpack_shadow(shadow, order);
        let memcg = MemcgId(s.memcg as u16);
        if usize::from(memcg.0) >= self.lru.nr() {
            return (u64::MAX, false);
        }
        let refault = self.lru.vec(memcg).nonresident_age;
        // Modular arithmetic: the age wraps in EVICTION_BITS (plus the
        // bucket), as the kernel's does.
        let mask = (EVICTION_MASK << order) | ((1 << order) - 1);
        let distance = refault.wrapping_sub(s.eviction) & mask;
        let workingset_size: u64 = self
            .memcg
            .subtree(memcg)
            .into_iter()
            .map(|m| u64::from(self.lru.vec(m).len(LruList::ActiveAnon)))
            .sum();
        (distance, distance <= workingset_size)
    }

    /// `workingset_refault`: a folio being read back into slots that held
    /// `shadow`. Counts `workingset_refault_anon`; a recent refault is set
    /// active (`workingset_activate_anon`) and, if it was in the
    /// workingset when evicted, `PG_workingset` again
    /// (`workingset_restore_anon`). The folio's own memcg counts them.
    ///
    /// # Context
    /// Folio locked, in the swap cache, charged, not yet on the LRU.
    pub fn workingset_refault(&mut self, pfn: Pfn, shadow: u64) {
        if self.lru.lru_gen_enabled() {
            return self.lru_gen_refault(pfn, shadow);
        }
        let nr = u64::from(1u32 << self.folios.get(pfn).order);
        let memcg = self.folio_memcg(pfn);
        self.count_event(memcg, VmEvent::WorkingsetRefaultAnon, nr);
        let (_, recent) = self.workingset_test_recent(shadow);
        if !recent {
            return;
        }
        self.folios.get_mut(pfn).set(pg::ACTIVE);
        self.workingset_age_nonresident(memcg, nr);
        self.count_event(memcg, VmEvent::WorkingsetActivateAnon, nr);
        if unpack_shadow(shadow, 0).workingset {
            self.folios.get_mut(pfn).set(pg::WORKINGSET);
            self.count_event(memcg, VmEvent::WorkingsetRestoreAnon, nr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_unpack_round_trips_within_the_eviction_bits() {
        for &(age, ws) in &[
            (0u64, false),
            (1, true),
            (EVICTION_MASK, true),
            (12345, false),
        ] {
            let s = pack_shadow(0, 0, age, ws, 0);
            assert!(s <= swapvm_swap::SHADOW_MAX);
            let u = unpack_shadow(s, 0);
            assert_eq!((u.eviction, u.workingset, u.node, u.memcg), (age, ws, 0, 0));
        }
        // A bucket drops the low bits of the age.
        let u = unpack_shadow(pack_shadow(0, 0, 0b1011, false, 2), 2);
        assert_eq!(u.eviction, 0b1000);
    }

    #[test]
    fn bucket_order_is_zero_until_ram_outgrows_the_eviction_bits() {
        assert_eq!(bucket_order(1 << 20), 0);
        assert_eq!(bucket_order(1 << EVICTION_BITS), 0);
        assert_eq!(bucket_order((1 << EVICTION_BITS) + 1), 1);
    }
}
