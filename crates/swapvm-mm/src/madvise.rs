//! madvise (mm/madvise.c): `MADV_DONTNEED`, `MADV_FREE`, `MADV_COLD`, and
//! the page collection of `MADV_PAGEOUT` (the reclaim itself is
//! swapvm-reclaim's `reclaim_pages`), each on the whole VMA or on a range
//! of it (`pages`: page offsets inside the VMA, as `madvise(2)` takes an
//! address range). A large folio the range covers only partly is split
//! first by DONTNEED and FREE and left alone by COLD and PAGEOUT.
//! `MADV_HUGEPAGE` and `MADV_NOHUGEPAGE` set the VMA's THP flags;
//! `MADV_MERGEABLE` and `MADV_UNMERGEABLE` are [`Memory::ksm_madvise`].
//! Both flag advices act on whole VMAs: swapvm does not split VMAs.

use crate::folio::pg;
use crate::memory::{vm, Memory, MmId, VmaKind};
use swapvm_core::{Pfn, Pte, PteKind, VmEvent, Vpn};
use swapvm_swap::SwapSubsystem;

/// Page offsets inside a VMA (`None`: all of it).
pub type MadvPages = Option<std::ops::Range<u64>>;

impl Memory {
    /// The `[start, end)` of `pages` inside the VMA at `vma_start`, clipped
    /// to it; `None` when there is no such VMA or the range is empty.
    fn madvise_range(
        &self,
        id: MmId,
        vma_start: Vpn,
        pages: &MadvPages,
    ) -> Option<(Vpn, Vpn, VmaKind)> {
        let v = self.mm(id).vmas.get(&vma_start.0)?;
        let (s, e) = match pages {
            None => (v.start, v.end),
            Some(r) => (
                Vpn(v.start.0.saturating_add(r.start).min(v.end.0)),
                Vpn(v.start.0.saturating_add(r.end).min(v.end.0)),
            ),
        };
        (s < e).then_some((s, e, v.kind))
    }

    /// Splits each exclusive, anonymous large folio mapped at the edges of
    /// `[s, e)` that the range covers only partly (`split_folio` as
    /// `madvise_free_pte_range` does, and as the deferred split of a
    /// partly zapped folio would; swapvm splits at once). A folio that
    /// cannot be split here (in the swap cache, locked, under writeback,
    /// KSM or shmem, off the LRU, or mapped elsewhere) is left as it is.
    fn madvise_split_edges(&mut self, id: MmId, s: Vpn, e: Vpn) {
        let pgd = self.mm(id).pgd;
        for vpn in [s, Vpn(e.0 - 1)] {
            let Some(leaf) = self.pt.walk(pgd, vpn) else {
                continue;
            };
            let PteKind::Present { pfn, .. } = self.pt.pte(leaf).kind() else {
                continue;
            };
            let head = self.folio_of(pfn);
            let p = *self.folios.get(head);
            let nr = 1u64 << p.order;
            if nr == 1 || (p.index >= s.0 && p.index + nr <= e.0) {
                continue;
            }
            let busy = pg::LOCKED | pg::WRITEBACK | pg::KSM | pg::SHMEM;
            let exclusive = i64::from(p.mapcount) == nr as i64;
            if p.swap.is_some() || p.test(busy) || !p.test(pg::LRU) || !exclusive {
                continue;
            }
            // Context for split_folio: locked, isolated, not in the swap
            // cache.
            self.lru.del(&mut self.folios, head);
            self.folios.get_mut(head).set(pg::LOCKED);
            self.split_folio(head);
            self.folios.get_mut(head).clear(pg::LOCKED);
            self.lru.add(&mut self.folios, head);
        }
    }

    /// `MADV_HUGEPAGE` (`huge`) or `MADV_NOHUGEPAGE` on the VMA at
    /// `vma_start` (`hugepage_madvise`): sets one of `VM_HUGEPAGE` and
    /// `VM_NOHUGEPAGE` and clears the other. Folios already mapped stay as
    /// they are (swapvm has no khugepaged to collapse them). False if there
    /// is no such VMA.
    pub fn madvise_hugepage(&mut self, id: MmId, vma_start: Vpn, huge: bool) -> bool {
        let Some(v) = self.mm_mut(id).vmas.get_mut(&vma_start.0) else {
            return false;
        };
        let (set, clear) = if huge {
            (vm::HUGEPAGE, vm::NOHUGEPAGE)
        } else {
            (vm::NOHUGEPAGE, vm::HUGEPAGE)
        };
        v.flags = (v.flags | set) & !clear;
        true
    }

    /// Calls `f(self, vpn, leaf, pte)` for each non-empty PTE of the range.
    fn walk_range(
        &mut self,
        id: MmId,
        start: Vpn,
        end: Vpn,
        mut f: impl FnMut(&mut Self, Vpn, (u32, usize), Pte),
    ) {
        let pgd = self.mm(id).pgd;
        let mut vpn = start;
        while vpn < end {
            let Some(leaf) = self.pt.walk(pgd, vpn) else {
                vpn = Vpn((vpn.0 | 511) + 1);
                continue;
            };
            let pte = self.pt.pte(leaf);
            if !pte.is_none() {
                f(self, vpn, leaf, pte);
            }
            vpn = vpn.add(1);
        }
    }

    /// `MADV_DONTNEED` on `pages` of the VMA at `vma_start`: zaps them; the
    /// next access reads zeros (anonymous) or the page cache (shmem). A
    /// partly covered large folio is split first where it can be, else its
    /// pages in the range are unmapped and it stays partly mapped.
    pub fn madvise_dontneed(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        vma_start: Vpn,
        pages: MadvPages,
    ) -> bool {
        let Some((s, e, _)) = self.madvise_range(id, vma_start, &pages) else {
            return false;
        };
        self.madvise_split_edges(id, s, e);
        self.zap_range(swap, id, s, e);
        true
    }

    /// `MADV_FREE` on `pages` of the VMA at `vma_start` (`madvise_free_pte_range`):
    /// swap entries are freed at once; exclusive anonymous folios lose
    /// their dirty state and swap copy and become lazily freeable (no
    /// longer swap-backed, to the inactive tail), so reclaim drops them
    /// without writing unless they are written again first. Shared, KSM and
    /// shmem pages are left alone. Returns the pages whose swap entry was
    /// dropped (they read zeros now) and the pages made lazyfree (they read
    /// their old bytes or, once reclaim dropped them, zeros).
    pub fn madvise_free(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        vma_start: Vpn,
        pages: MadvPages,
    ) -> (Vec<Vpn>, Vec<Vpn>) {
        let (mut zeroed, mut lazy) = (Vec::new(), Vec::new());
        let Some((s, e, kind)) = self.madvise_range(id, vma_start, &pages) else {
            return (zeroed, lazy);
        };
        if kind != VmaKind::Anon {
            return (zeroed, lazy);
        }
        self.madvise_split_edges(id, s, e);
        self.walk_range(id, s, e, |m, vpn, leaf, pte| match pte.kind() {
            PteKind::Swap(entry) => {
                zeroed.push(vpn);
                m.zap_swap_pte(swap, id, leaf, entry);
            }
            PteKind::Present { pfn, .. } => {
                let p = *m.folios.get(pfn);
                if p.mapcount != 1
                    || p.test(pg::KSM | pg::LOCKED | pg::WRITEBACK)
                    || !p.test(pg::ANON)
                {
                    return;
                }
                if p.swap.is_some() {
                    m.folios.get_mut(pfn).set(pg::LOCKED);
                    let freed = swap.folio_free_swap(&mut m.folios.folio(pfn));
                    m.folios.get_mut(pfn).clear(pg::LOCKED);
                    if !freed {
                        return;
                    }
                }
                m.pt.set_pte(leaf, pte.without(Pte::DIRTY | Pte::ACCESSED));
                // folio_mark_lazyfree.
                m.lru.del(&mut m.folios, pfn);
                let f = m.folios.get_mut(pfn);
                f.clear(pg::DIRTY | pg::SWAPBACKED | pg::ACTIVE | pg::REFERENCED);
                m.lru.add_tail(&mut m.folios, pfn);
                m.stat.inc(VmEvent::PgLazyFree);
                lazy.push(vpn);
            }
            PteKind::None => {}
        });
        (zeroed, lazy)
    }

    /// `MADV_COLD` on `pages` of the VMA at `vma_start` (`madvise_cold_or_pageout_pte_range`
    /// with deactivation): the accessed bits of its exclusive pages are
    /// cleared and their folios moved to the inactive list. Returns pages
    /// deactivated.
    pub fn madvise_cold(&mut self, id: MmId, vma_start: Vpn, pages: MadvPages) -> u64 {
        let Some((s, e, _)) = self.madvise_range(id, vma_start, &pages) else {
            return 0;
        };
        let mut n = 0;
        self.walk_range(id, s, e, |m, _, leaf, pte| {
            let PteKind::Present { pfn, .. } = pte.kind() else {
                return;
            };
            let Some(pfn) = m.madvise_exclusive_folio(pfn, s, e) else {
                return;
            };
            m.pt.set_pte(leaf, pte.without(Pte::ACCESSED));
            if !m.folios.get(pfn).test(pg::LRU) {
                return;
            }
            m.lru.del(&mut m.folios, pfn);
            m.folios.get_mut(pfn).clear(pg::ACTIVE | pg::REFERENCED);
            m.lru.add_tail(&mut m.folios, pfn);
            m.stat.inc(VmEvent::PgDeactivate);
            n += 1;
        });
        n
    }

    /// The collection half of `MADV_PAGEOUT` on `pages` of the VMA at
    /// `vma_start`:
    /// isolates its exclusive, idle, resident pages from the LRU for
    /// `reclaim_pages`, clearing their accessed bits so reclaim takes them
    /// whatever their history.
    pub fn madvise_pageout_isolate(
        &mut self,
        id: MmId,
        vma_start: Vpn,
        pages: MadvPages,
    ) -> Vec<Pfn> {
        let mut out = Vec::new();
        let Some((s, e, _)) = self.madvise_range(id, vma_start, &pages) else {
            return out;
        };
        self.walk_range(id, s, e, |m, _, leaf, pte| {
            let PteKind::Present { pfn, .. } = pte.kind() else {
                return;
            };
            let Some(pfn) = m.madvise_exclusive_folio(pfn, s, e) else {
                return;
            };
            m.pt.set_pte(leaf, pte.without(Pte::ACCESSED));
            let p = *m.folios.get(pfn);
            if !p.test(pg::LRU) || p.test(pg::LOCKED | pg::WRITEBACK) {
                return;
            }
            m.lru.del(&mut m.folios, pfn);
            m.folios.get_mut(pfn).clear(pg::ACTIVE | pg::REFERENCED);
            out.push(pfn);
        });
        out
    }

    /// The folio of page `pfn` if MADV_COLD/PAGEOUT may act on it from the
    /// range `s..e`: mapped only here, each page once (a shared folio is
    /// skipped, as `madvise_cold_or_pageout_pte_range` does), and, when
    /// large, wholly inside the range. A large folio only partly inside is
    /// left alone, as `madvise_cold_or_pageout_pte_range` skips one it
    /// cannot split cheaply (divergence: the kernel tries a split for an
    /// exclusive one first).
    fn madvise_exclusive_folio(&self, pfn: Pfn, s: Vpn, e: Vpn) -> Option<Pfn> {
        let head = self.folio_of(pfn);
        let p = self.folios.get(head);
        let nr = 1u64 << p.order;
        if i64::from(p.mapcount) != nr as i64 {
            return None;
        }
        if nr > 1 && (p.index < s.0 || p.index + nr > e.0 || p.test(pg::SHMEM)) {
            return None;
        }
        Some(head)
    }
}
