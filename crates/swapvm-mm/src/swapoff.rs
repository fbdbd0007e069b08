//! swapoff's walk of memory (mm/swapfile.c: `try_to_unuse`, `unuse_mm`,
//! `unuse_pte_range`, `shmem_unuse`).
//!
//! One call of [`Memory::try_to_unuse`] is one pass: every swap PTE of the
//! device in every address space goes through the swap-in fault path
//! (`do_swap_page`, so a KSM folio that cannot be mapped here gets its copy
//! mapped and the swap reference put on the swap-cache folio, as a fault
//! would), every shmem page-cache swap entry of the device through
//! `shmem_swapin_folio`, and swap-cache folios whose slots no longer have
//! an owner leave the swap cache. Reads are asynchronous, so a pass starts
//! reads and returns; the caller (swapvm-reclaim's swapoff task) runs passes
//! tick after tick until nothing of the device is in use.
//!
//! Each folio brought back is taken out of the device's swap cache at once
//! (`folio_free_swap`, the folio marked dirty: its only copy is now in
//! memory), so reclaim must write it to another device and cannot hand the
//! dying device a new reference.
//!
//! Divergence: reads go through the swap-in path and so count `pgmajfault`,
//! which the kernel's `unuse_pte_range` does not (`pgfault` is not counted).

use crate::fault::{FaultStop, Wait};
use crate::folio::pg;
use crate::memory::{Memory, MmId, VmaKind};
use crate::shmem::ShmemEntry;
use swapvm_core::{Pfn, PteKind, SwapOffset, SwapType, SwpEntry, Vpn};
use swapvm_swap::{SlotBinding, SwapSubsystem};

/// What one pass of [`Memory::try_to_unuse`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unuse {
    /// Entries brought back this pass: mapped again, or returned to their
    /// page cache.
    pub unused: u64,
    /// Swap-cache folios of the device freed of their slots this pass.
    pub uncached: u64,
    /// Reads started this pass.
    pub reads: u64,
    /// Entries waiting for a read in flight (or a writeback to end).
    pub waiting: u64,
    /// Entries that needed a frame and found none (free memory at min).
    pub nomem: u64,
    /// Entries whose swap read failed: the device cannot be emptied.
    pub errors: u64,
    /// Slots of the device still in use after the pass.
    pub inuse: u64,
}

impl Unuse {
    /// Anything changed.
    pub fn progress(&self) -> bool {
        self.unused + self.uncached + self.reads > 0
    }
}

impl Memory {
    /// The test of `security_vm_enough_memory_mm` at swapoff: can what the
    /// device holds come back into memory? It must fit in free memory
    /// above the high watermark plus the free slots of the other devices,
    /// to which reclaim can move resident pages to make room (the kernel's
    /// `__vm_enough_memory` test against RAM plus the remaining swap).
    pub fn swapoff_enough_memory(&self, swap: &SwapSubsystem, ty: SwapType) -> bool {
        let Some(d) = swap.device(ty) else {
            return false;
        };
        let others: u64 = swap
            .device_types()
            .iter()
            .filter(|&&t| t != ty)
            .filter_map(|&t| swap.device(t))
            .filter(|o| !o.dying)
            .map(|o| o.pages.saturating_sub(o.inuse_pages))
            .sum();
        let room = self.nr_free().saturating_sub(self.wmark.high) + others;
        d.inuse_pages <= room
    }

    /// One pass of `try_to_unuse` for device `ty`, starting at most
    /// `max_reads` new reads.
    ///
    /// # Context
    /// `swapoff_begin(ty)` was called: the device takes no new allocations.
    pub fn try_to_unuse(
        &mut self,
        swap: &mut SwapSubsystem,
        ty: SwapType,
        now: u64,
        max_reads: u64,
    ) -> Unuse {
        let mut u = Unuse::default();
        self.unuse_mms(swap, ty, now, max_reads, &mut u);
        self.shmem_unuse(swap, ty, now, max_reads, &mut u);
        self.unuse_swap_cache(swap, ty, &mut u);
        u.inuse = swap.device(ty).map_or(0, |d| d.inuse_pages);
        u
    }

    /// Whether another read may start (the read budget and free memory).
    fn may_read(u: &Unuse, max_reads: u64) -> bool {
        u.reads < max_reads && u.nomem == 0
    }

    /// Books the outcome of one swap-in attempt.
    fn unuse_outcome(u: &mut Unuse, r: Result<(), FaultStop>, was_cached: bool) {
        match r {
            Ok(()) => u.unused += 1,
            Err(FaultStop::Retry(Wait::Folio(_))) => {
                if !was_cached {
                    u.reads += 1;
                }
                u.waiting += 1;
            }
            // A refused memcg charge waits as for memory (swapvm does not
            // run limit reclaim for swapoff; the kernel's charge would).
            Err(FaultStop::Retry(Wait::Memory | Wait::Memcg(_))) => u.nomem += 1,
            Err(FaultStop::SigBus | FaultStop::Segv) => u.errors += 1,
        }
    }

    /// `unuse_mm` for every address space: `unuse_pte_range` over each
    /// private VMA.
    fn unuse_mms(
        &mut self,
        swap: &mut SwapSubsystem,
        ty: SwapType,
        now: u64,
        max_reads: u64,
        u: &mut Unuse,
    ) {
        for i in 0..self.mms.len() {
            let Some(m) = self.mms[i].as_ref() else {
                continue;
            };
            let id = MmId(i as u32);
            let vmas: Vec<(u64, u64)> = m
                .vmas
                .values()
                .filter(|v| v.kind == VmaKind::Anon)
                .map(|v| (v.start.0, v.end.0))
                .collect();
            for (start, end) in vmas {
                for (vpn, entry) in self.swap_ptes_of(id, start, end, ty) {
                    self.unuse_pte(swap, id, start, vpn, entry, now, max_reads, u);
                }
            }
        }
    }

    /// The swap PTEs of device `ty` in `[start, end)` of `id`.
    fn swap_ptes_of(&self, id: MmId, start: u64, end: u64, ty: SwapType) -> Vec<(Vpn, SwpEntry)> {
        let pgd = self.mm(id).pgd;
        let mut out = Vec::new();
        let mut vpn = Vpn(start);
        while vpn.0 < end {
            let Some(leaf) = self.pt.walk(pgd, vpn) else {
                vpn = Vpn((vpn.0 | 511) + 1);
                continue;
            };
            if let PteKind::Swap(e) = self.pt.pte(leaf).kind() {
                if e.ty() == ty {
                    out.push((vpn, e));
                }
            }
            vpn = vpn.add(1);
        }
        out
    }

    /// `unuse_pte`: brings one swap PTE back through `do_swap_page` and
    /// takes the folio out of the dying device's swap cache.
    #[allow(clippy::too_many_arguments)]
    fn unuse_pte(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        vma_start: u64,
        vpn: Vpn,
        entry: SwpEntry,
        now: u64,
        max_reads: u64,
        u: &mut Unuse,
    ) {
        let cached = swap.swap_cache_get_folio(entry).is_some();
        if !cached && !Self::may_read(u, max_reads) {
            u.waiting += 1;
            return;
        }
        let pgd = self.mm(id).pgd;
        let Some(leaf) = self.pt.walk(pgd, vpn) else {
            return;
        };
        // `pte_same_as_swp`: the PTE was collected before this pass mapped
        // anything; a large folio brought back for an earlier entry maps
        // its neighbours too, whose slots may already be freed.
        if self.pt.pte(leaf).swap_entry() != Some(entry) {
            return;
        }
        self.unusing = true;
        let r = self.do_swap_page(swap, id, vma_start, vpn, leaf, entry, false, now);
        self.unusing = false;
        Self::unuse_outcome(u, r, cached);
        if r.is_ok() {
            if let PteKind::Present { pfn, .. } = self.pt.pte(leaf).kind() {
                if self.unuse_free_swap(swap, pfn, entry.ty()) {
                    u.uncached += 1;
                }
            }
        }
    }

    /// `shmem_unuse`: every page-cache swap entry of the device returns to
    /// its page cache.
    fn shmem_unuse(
        &mut self,
        swap: &mut SwapSubsystem,
        ty: SwapType,
        now: u64,
        max_reads: u64,
        u: &mut Unuse,
    ) {
        let entries: Vec<(u32, u64, SwpEntry)> = self
            .shmem
            .inodes()
            .flat_map(|(ino, n)| {
                n.pages
                    .iter()
                    .enumerate()
                    .filter_map(move |(i, e)| match e {
                        ShmemEntry::Swap(s) if s.ty() == ty => Some((ino, i as u64, *s)),
                        _ => None,
                    })
            })
            .collect();
        for (ino, index, entry) in entries {
            let cached = swap.swap_cache_get_folio(entry).is_some();
            if !cached && !Self::may_read(u, max_reads) {
                u.waiting += 1;
                continue;
            }
            let r = self
                .shmem_swapin_folio(swap, ino, index, entry, now)
                .map(|_| ());
            Self::unuse_outcome(u, r, cached);
        }
    }

    /// The last loop of `try_to_unuse`: swap-cache folios of the device
    /// whose slots have no owner left give their slots up
    /// (`folio_free_swap`); one nothing maps any more is freed.
    fn unuse_swap_cache(&mut self, swap: &mut SwapSubsystem, ty: SwapType, u: &mut Unuse) {
        let Some(max) = swap.device(ty).map(|d| d.max()) else {
            return;
        };
        let mut folios: Vec<Pfn> = Vec::new();
        if let Some(d) = swap.device(ty) {
            for off in 1..max {
                let s = d.slot(SwapOffset(off));
                if let SlotBinding::Folio(pfn) = s.binding {
                    if s.count == 0 && folios.last() != Some(&pfn) {
                        folios.push(pfn);
                    }
                }
            }
        }
        for pfn in folios {
            let p = *self.folios.get(pfn);
            if p.test(pg::LOCKED | pg::WRITEBACK) {
                u.waiting += 1;
                continue;
            }
            if p.mapcount == 0 && !p.test(pg::SHMEM) {
                if self.try_free_folio(swap, pfn) {
                    u.uncached += 1;
                }
            } else if self.unuse_free_swap(swap, pfn, ty) {
                u.uncached += 1;
            }
        }
    }

    /// Takes a resident folio out of device `ty`'s swap cache if no swap
    /// owner is left; it becomes dirty (its swap copy is gone). Returns
    /// whether it did.
    fn unuse_free_swap(&mut self, swap: &mut SwapSubsystem, pfn: Pfn, ty: SwapType) -> bool {
        let p = *self.folios.get(pfn);
        let Some(e) = p.swap else {
            return false;
        };
        if e.ty() != ty || p.test(pg::LOCKED | pg::WRITEBACK) || swap.swap_count(e) > 0 {
            return false;
        }
        // Context: folio locked, not under writeback.
        self.folios.get_mut(pfn).set(pg::LOCKED);
        let freed = swap.folio_free_swap(&mut self.folios.folio(pfn));
        let f = self.folios.get_mut(pfn);
        if freed {
            f.set(pg::DIRTY);
        }
        f.clear(pg::LOCKED);
        freed
    }
}
