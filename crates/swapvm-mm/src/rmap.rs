//! Reverse mapping (mm/rmap.c) and teardown (munmap, exit).
//!
//! An anonymous folio records its anon_vma and linear index (its vpn); the
//! rmap walk visits each VMA linked to that anon_vma and looks the index up
//! in that address space's page tables.

use crate::folio::pg;
use crate::memory::{Memory, MmId};
use crate::pgtable::TableId;
use swapvm_core::{Pfn, Pte, PteKind, Vpn};
use swapvm_swap::SwapSubsystem;

impl Memory {
    /// Visits every PTE slot mapping `pfn` (`rmap_walk_anon`); `f` returns
    /// false to stop early.
    pub fn rmap_walk(
        &mut self,
        pfn: Pfn,
        mut f: impl FnMut(&mut Self, MmId, Vpn, (TableId, usize)) -> bool,
    ) {
        let p = *self.folios.get(pfn);
        if !p.test(pg::ANON) || p.anon_vma == u32::MAX {
            return;
        }
        let av = p.anon_vma as usize;
        let vpn = Vpn(p.index);
        let mut i = 0;
        while i < self.anon_vmas[av].vmas.len() {
            let (mm, start) = self.anon_vmas[av].vmas[i];
            i += 1;
            let Some(Some(m)) = self.mms.get(mm.0 as usize) else {
                continue;
            };
            let Some(v) = m.vmas.get(&start) else {
                continue;
            };
            if vpn < v.start || vpn >= v.end {
                continue;
            }
            let Some(leaf) = self.pt.walk(m.pgd, vpn) else {
                continue;
            };
            let pte = self.pt.pte(leaf);
            if pte.is_present() && pte.pfn() == pfn && !f(self, mm, vpn, leaf) {
                return;
            }
        }
    }

    /// `folio_referenced`: tests and clears the accessed bit of every PTE
    /// mapping the folio; returns how many were set.
    pub fn folio_referenced(&mut self, pfn: Pfn) -> u32 {
        let mut referenced = 0;
        self.rmap_walk(pfn, |m, _, _, leaf| {
            let pte = m.pt.pte(leaf);
            if pte.has(Pte::ACCESSED) {
                m.pt.set_pte(leaf, pte.without(Pte::ACCESSED));
                referenced += 1;
            }
            true
        });
        referenced
    }

    /// `try_to_unmap` for a swap-cache anon folio: replaces each mapping PTE
    /// by a swap PTE, taking a swap reference with `folio_dup_swap` for it,
    /// and moves the PTE dirty bit to the folio. Returns true when the folio
    /// is no longer mapped.
    ///
    /// # Context
    /// Folio locked and in the swap cache.
    pub fn try_to_unmap(&mut self, swap: &mut SwapSubsystem, pfn: Pfn) -> bool {
        let Some(entry) = self.folios.get(pfn).swap else {
            return false;
        };
        let mut ok = true;
        self.rmap_walk(pfn, |m, mm, _, leaf| {
            let pte = m.pt.pte(leaf);
            if swap.folio_dup_swap(&m.folios.folio(pfn), Some(0)).is_err() {
                ok = false;
                return false;
            }
            if pte.has(Pte::DIRTY) {
                m.folios.get_mut(pfn).set(pg::DIRTY);
            }
            m.pt.set_pte(leaf, Pte::swap(entry));
            m.folios.get_mut(pfn).mapcount -= 1;
            let s = m.mm_mut(mm);
            s.rss_anon -= 1;
            s.rss_swap += 1;
            true
        });
        ok && self.folios.get(pfn).mapcount == 0
    }

    /// `__remove_mapping` for a clean, unmapped swap-cache folio: deletes it
    /// from the swap cache (leaving `shadow` in still-referenced slots) and
    /// frees its frame.
    ///
    /// # Context
    /// Folio locked, isolated from the LRU, unmapped, clean, no writeback.
    pub fn remove_mapping(&mut self, swap: &mut SwapSubsystem, pfn: Pfn, shadow: Option<u64>) {
        let mut f = self.folios.folio(pfn);
        swap.swap_cache_del_folio(&mut f, shadow);
        f.page.clear(pg::LOCKED);
        self.free_frame(pfn);
    }

    /// Zaps `[start, end)` of `id` (`zap_pte_range`): present pages drop
    /// their mapping, swap PTEs release their slots with
    /// `swap_put_entries_direct`.
    pub fn zap_range(&mut self, swap: &mut SwapSubsystem, id: MmId, start: Vpn, end: Vpn) {
        let pgd = self.mm(id).pgd;
        let mut vpn = start;
        while vpn < end {
            let Some(leaf) = self.pt.walk(pgd, vpn) else {
                // Skip to the next leaf table.
                vpn = Vpn((vpn.0 | 511) + 1);
                continue;
            };
            match self.pt.pte(leaf).kind() {
                PteKind::None => {}
                PteKind::Present { pfn, .. } => {
                    self.pt.set_pte(leaf, Pte::NONE);
                    self.folios.get_mut(pfn).mapcount -= 1;
                    self.mm_mut(id).rss_anon -= 1;
                    self.try_free_folio(swap, pfn);
                }
                PteKind::Swap(entry) => {
                    self.pt.set_pte(leaf, Pte::NONE);
                    self.mm_mut(id).rss_swap -= 1;
                    // Context: the page-table lock of this mm.
                    let ptl = swap
                        .lockdep()
                        .lock(swapvm_core::LockClass::PageTable { mm: id.0 });
                    let put = swap.swap_put_entries_direct(entry, 1);
                    drop(ptl);
                    for pfn in put.cached {
                        self.try_free_folio(swap, pfn);
                    }
                }
            }
            vpn = vpn.add(1);
        }
    }

    /// `munmap` of the whole VMA starting at `start`.
    pub fn munmap(&mut self, swap: &mut SwapSubsystem, id: MmId, start: Vpn) -> bool {
        let Some(v) = self.mm(id).vmas.get(&start.0).cloned() else {
            return false;
        };
        self.zap_range(swap, id, v.start, v.end);
        self.mm_mut(id).vmas.remove(&start.0);
        if let Some(a) = v.anon_vma {
            self.anon_vmas[a as usize]
                .vmas
                .retain(|&(m, s)| !(m == id && s == start.0));
        }
        true
    }

    /// `exit_mmap`: unmaps everything and frees the page tables.
    pub fn exit_mmap(&mut self, swap: &mut SwapSubsystem, id: MmId) {
        let starts: Vec<u64> = self.mm(id).vmas.keys().copied().collect();
        for s in starts {
            self.munmap(swap, id, Vpn(s));
        }
        let pgd = self.mm(id).pgd;
        self.pt.free_tree(pgd);
        self.mms[id.0 as usize] = None;
    }
}
