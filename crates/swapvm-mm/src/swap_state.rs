//! Swap readahead (mm/swap_state.c: `swap_cluster_readahead`,
//! `swap_vma_readahead`, `swapin_nr_pages`).
//!
//! When a swap-in fault starts its read, the entries around it are read
//! too, into the swap cache, locked for their read and not mapped: by
//! virtual address (the swap PTEs around the faulting address inside its
//! VMA and page table) when `vma_ra_enabled` is set and no rotational
//! device is swapped on (`swap_use_vma_readahead`, which counts
//! `nr_rotate_swap`), else by swap offset (cluster readahead,
//! `2^page_cluster` slots aligned around the entry). Only entries still in
//! use (count > 0) and not already cached are read. Each page read ahead
//! counts `swap_ra` and carries `PG_readahead` ([`pg::READAHEAD`]); the
//! first swap-cache hit on it clears the flag, counts `swap_ra_hit` and
//! feeds the window heuristic (`__swapin_nr_pages`). Every swap-cache hit
//! under VMA readahead records its address in the VMA's state
//! (`SWAP_RA_VAL`), so a sequential swap-in is seen as adjacent and
//! widens the window to the maximum, and a random one shrinks it to one
//! page.
//!
//! Until a mapping claims it ([`folio_unclaimed`]: in the swap cache with
//! neither an anon_vma, an inode nor a stable node), a folio read ahead
//! belongs to nobody; the fault that first maps it claims it for its
//! anon_vma (or the page cache, for shmem); reclaim evicts an unclaimed
//! folio like any clean swap-cache folio.
//!
//! Divergence: shmem swap-in uses cluster readahead only, as the kernel's
//! `shmem_swapin_cluster` does; large folios are not read ahead.

use crate::folio::{pg, Page};
use crate::memory::{Memory, MmId};
use std::collections::BTreeMap;
use swapvm_core::{PteKind, SwapOffset, SwpEntry, VmEvent, Vpn};
use swapvm_swap::{SlotBinding, SwapSubsystem};

/// `SWAP_RA_ORDER_CEILING`: the largest VMA readahead window is 2^5.
const SWAP_RA_ORDER_CEILING: u32 = 5;

/// Readahead state: the knobs and the window heuristic's history.
#[derive(Debug, Clone, Default)]
pub struct SwapRaState {
    /// `page_cluster`: windows up to `2^page_cluster` pages; 0 turns
    /// readahead off (the default of a bare [`Memory`]; the machine sets
    /// the config's).
    pub page_cluster: u32,
    /// `vma_ra_enabled`: readahead by address instead of by swap offset.
    pub vma_ra_enabled: bool,
    /// `swapin_readahead_hits` (cluster readahead).
    hits: u32,
    /// `prev_offset`.
    prev_offset: u64,
    /// `last_readahead_pages`.
    last_pages: u32,
    /// `vma->swap_readahead_info` per VMA `(mm, start)`: last fault page,
    /// window, hits. A VMA without an entry starts as the kernel's does,
    /// all zero.
    vma: BTreeMap<(MmId, u64), (u64, u32, u32)>,
}

/// Where a swap-cache hit happened, for [`Memory::swap_update_readahead`]:
/// the faulting page of an address space and the start of its VMA.
#[derive(Debug, Clone, Copy)]
pub struct RaSite {
    /// The address space.
    pub mm: MmId,
    /// Its VMA's first page.
    pub vma_start: u64,
    /// The faulting page.
    pub vpn: Vpn,
}

/// `SWAP_RA_HITS_MAX`: the hits a VMA's readahead state can hold.
const SWAP_RA_HITS_MAX: u32 = 63;

/// A swap-cache folio that no mapping has claimed yet: read ahead, or a
/// fault's read whose process went away. The fault that maps it first
/// claims it (anon_vma or page cache); until then reclaim may free it.
pub fn folio_unclaimed(p: &Page) -> bool {
    p.test(pg::ALLOCATED) && p.swap.is_some() && !p.test(pg::ANON | pg::SHMEM | pg::KSM)
}

/// `__swapin_nr_pages`: the window for a fault at `offset` after one at
/// `prev`, with `hits` readahead hits since and the previous window.
pub fn swapin_nr_pages(prev: u64, offset: u64, hits: u32, max_pages: u32, prev_win: u32) -> u32 {
    // The kernel's comment: "please don't ask what the "+ 2" means, it
    // just happens to work well".
    let mut pages = hits + 2;
    if pages == 2 {
        // No hits to judge by: read ahead only next to the last fault.
        if offset != prev.wrapping_add(1) && offset != prev.wrapping_sub(1) {
            pages = 1;
        }
    } else {
        let mut roundup = 4;
        while roundup < pages {
            roundup <<= 1;
        }
        pages = roundup;
    }
    pages = pages.min(max_pages);
    // Do not shrink readahead too fast.
    pages.max(prev_win / 2)
}

impl Memory {
    /// `swap_use_vma_readahead`: by address only when `vma_ra_enabled`
    /// and no rotational device is swapped on.
    pub fn swap_use_vma_readahead(&self, swap: &SwapSubsystem) -> bool {
        self.swap_ra.vma_ra_enabled && swap.nr_rotate_swap() == 0
    }

    /// `swap_update_readahead` for a fault that found `pfn` in the swap
    /// cache: a folio readahead brought in loses its `PG_readahead` and
    /// counts `swap_ra_hit`; with VMA readahead, the VMA's state records
    /// the faulting address (and the hit), so that the next fault can see
    /// it is adjacent.
    pub(crate) fn swap_update_readahead(
        &mut self,
        swap: &SwapSubsystem,
        pfn: swapvm_core::Pfn,
        at: Option<RaSite>,
    ) {
        let p = self.folios.get_mut(pfn);
        let readahead = p.test(pg::READAHEAD);
        p.clear(pg::READAHEAD);
        let vma_ra = self.swap_use_vma_readahead(swap);
        let ra = &mut self.swap_ra;
        if let (Some(at), true) = (at, vma_ra) {
            let v = ra.vma.entry((at.mm, at.vma_start)).or_default();
            v.0 = at.vpn.0;
            if readahead {
                v.2 = (v.2 + 1).min(SWAP_RA_HITS_MAX);
            }
        }
        if readahead {
            self.stat.inc(VmEvent::SwapRaHit);
            if at.is_none() || !vma_ra {
                ra.hits = ra.hits.saturating_add(1);
            }
        }
    }

    /// `swap_cluster_readahead` around `entry` (whose own read the caller
    /// started).
    pub(crate) fn swap_cluster_readahead(
        &mut self,
        swap: &mut SwapSubsystem,
        entry: SwpEntry,
        now: u64,
    ) {
        let ra = &mut self.swap_ra;
        let max_pages = 1u32 << ra.page_cluster.min(10);
        if max_pages <= 1 {
            return;
        }
        let offset = entry.offset().0;
        let hits = std::mem::take(&mut ra.hits);
        let win = swapin_nr_pages(ra.prev_offset, offset, hits, max_pages, ra.last_pages);
        if hits == 0 {
            ra.prev_offset = offset;
        }
        ra.last_pages = win;
        if win <= 1 {
            return;
        }
        let mask = u64::from(win) - 1;
        let start = (offset & !mask).max(1);
        let end = (offset | mask) + 1;
        for off in start..end {
            if off == offset {
                continue;
            }
            let e = SwpEntry::new(entry.ty(), SwapOffset(off));
            if let Some(e) = e {
                if !self.read_swap_cache_async(swap, e, now) {
                    break;
                }
            }
        }
    }

    /// `swap_vma_readahead` around the fault at `vpn` of the VMA
    /// `[vma_start, vma_end)` of `id`.
    pub(crate) fn swap_vma_readahead(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        (vma_start, vma_end): (u64, u64),
        vpn: Vpn,
        now: u64,
    ) {
        let max_win = 1u32 << self.swap_ra.page_cluster.min(SWAP_RA_ORDER_CEILING);
        if max_win <= 1 {
            return;
        }
        let f = vpn.0;
        let key = (id, vma_start);
        let (prev, prev_win, hits) = self.swap_ra.vma.get(&key).copied().unwrap_or((0, 0, 0));
        let win = u64::from(swapin_nr_pages(prev, f, hits, max_win, prev_win));
        self.swap_ra.vma.insert(key, (f, win as u32, 0));
        if win <= 1 {
            return;
        }
        let (lo, hi) = if f == prev.wrapping_add(1) {
            (f, f + win)
        } else if prev == f + 1 {
            ((f + 1).saturating_sub(win), f + 1)
        } else {
            let left = (win - 1) / 2;
            (f.saturating_sub(left), f + win - left)
        };
        // Inside the VMA and the faulting address's page table (PMD).
        let pmd = f & !511;
        let start = lo.max(vma_start).max(pmd);
        let end = hi.min(vma_end).min(pmd + 512);
        let pgd = self.mm(id).pgd;
        for v in start..end {
            if v == f {
                continue;
            }
            let Some(leaf) = self.pt.walk(pgd, Vpn(v)) else {
                continue;
            };
            if let PteKind::Swap(e) = self.pt.pte(leaf).kind() {
                if !self.read_swap_cache_async(swap, e, now) {
                    break;
                }
            }
        }
    }

    /// `read_swap_cache_async` for readahead: reads `entry` into a new,
    /// unclaimed swap-cache folio if it is in use and not cached. Returns
    /// false when no frame is free (readahead stops: it never reclaims).
    fn read_swap_cache_async(
        &mut self,
        swap: &mut SwapSubsystem,
        entry: SwpEntry,
        now: u64,
    ) -> bool {
        let Some(slot) = swap.slot(entry) else {
            return true;
        };
        if slot.count == 0 || slot.is_bad() || matches!(slot.binding, SlotBinding::Folio(_)) {
            return true;
        }
        if matches!(slot.binding, SlotBinding::Hibernation) {
            return true;
        }
        let Some(pfn) = self.alloc_frame(false) else {
            return false;
        };
        // Charged to the memcg that swapped the page out, reclaim making
        // room after the fault returns (see mem_cgroup_charge_deferred).
        let owner = crate::memcg::MemcgId(swap.lookup_swap_cgroup_id(entry));
        self.mem_cgroup_charge_deferred(pfn, owner);
        self.folios.get_mut(pfn).set(pg::SWAPBACKED | pg::LOCKED);
        let shadow = match swap.swap_cache_add_folio(&mut self.folios.folio(pfn), entry) {
            Ok(shadow) => shadow,
            Err(_) => {
                self.folios.get_mut(pfn).clear(pg::LOCKED);
                self.free_frame(pfn);
                return true;
            }
        };
        if let Some(shadow) = shadow {
            self.workingset_refault(pfn, shadow);
        }
        self.lru.add(&mut self.folios, pfn);
        self.folios.get_mut(pfn).set(pg::READAHEAD);
        self.stat.inc(VmEvent::SwapRa);
        if swap.swap_zeromap_test(entry, 1) {
            self.ram.page_mut(pfn).fill(0);
            let p = self.folios.get_mut(pfn);
            p.set(pg::UPTODATE);
            p.clear(pg::LOCKED);
            self.count_event(owner, VmEvent::SwpinZero, 1);
            return true;
        }
        let read = swap.swap_read_folio(entry, 1, u64::from(pfn.0), now);
        // Pages zswap served are its memcg's `zswpin`, kept by zswap.
        let from_device = read.as_ref().map_or(1, |&n| n);
        self.memcg
            .count(owner, VmEvent::PswpIn, u64::from(from_device));
        match read {
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("readahead of {entry:?} failed to start: {e}");
                self.lru.del(&mut self.folios, pfn);
                let mut f = self.folios.folio(pfn);
                swap.swap_cache_del_folio(&mut f, None);
                f.page.clear(pg::LOCKED);
                self.free_frame(pfn);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_grows_with_hits_and_collapses_on_random_faults() {
        // First fault, nothing adjacent: one page.
        assert_eq!(swapin_nr_pages(0, 100, 0, 8, 0), 1);
        // Adjacent to the last fault: two pages.
        assert_eq!(swapin_nr_pages(100, 101, 0, 8, 0), 2);
        // Hits round up to a power of two from 4, capped by max.
        assert_eq!(swapin_nr_pages(0, 500, 1, 8, 0), 4);
        assert_eq!(swapin_nr_pages(0, 500, 3, 8, 0), 8);
        assert_eq!(swapin_nr_pages(0, 500, 30, 8, 0), 8);
        // Shrinks by at most half a step.
        assert_eq!(swapin_nr_pages(0, 500, 0, 8, 8), 4);
    }
}
