//! madvise (mm/madvise.c): `MADV_DONTNEED`, `MADV_FREE`, `MADV_COLD`, and
//! the page collection of `MADV_PAGEOUT` (the reclaim itself is
//! swapvm-reclaim's `reclaim_pages`). `MADV_MERGEABLE` and
//! `MADV_UNMERGEABLE` are [`Memory::ksm_madvise`].

use crate::folio::pg;
use crate::memory::{Memory, MmId, VmaKind};
use swapvm_core::{Pfn, Pte, PteKind, VmEvent, Vpn};
use swapvm_swap::SwapSubsystem;

impl Memory {
    /// The `[start, end)` range clipped to the VMA at `vma_start`.
    fn madvise_range(&self, id: MmId, vma_start: Vpn) -> Option<(Vpn, Vpn, VmaKind)> {
        let v = self.mm(id).vmas.get(&vma_start.0)?;
        Some((v.start, v.end, v.kind))
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

    /// `MADV_DONTNEED` on the VMA at `vma_start`: zaps it; the next access
    /// reads zeros (anonymous) or the page cache (shmem).
    pub fn madvise_dontneed(&mut self, swap: &mut SwapSubsystem, id: MmId, vma_start: Vpn) -> bool {
        let Some((s, e, _)) = self.madvise_range(id, vma_start) else {
            return false;
        };
        self.zap_range(swap, id, s, e);
        true
    }

    /// `MADV_FREE` on the VMA at `vma_start` (`madvise_free_pte_range`):
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
    ) -> (Vec<Vpn>, Vec<Vpn>) {
        let (mut zeroed, mut lazy) = (Vec::new(), Vec::new());
        let Some((s, e, kind)) = self.madvise_range(id, vma_start) else {
            return (zeroed, lazy);
        };
        if kind != VmaKind::Anon {
            return (zeroed, lazy);
        }
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

    /// `MADV_COLD` on the VMA at `vma_start` (`madvise_cold_or_pageout_pte_range`
    /// with deactivation): the accessed bits of its exclusive pages are
    /// cleared and their folios moved to the inactive list. Returns pages
    /// deactivated.
    pub fn madvise_cold(&mut self, id: MmId, vma_start: Vpn) -> u64 {
        let Some((s, e, _)) = self.madvise_range(id, vma_start) else {
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

    /// The collection half of `MADV_PAGEOUT` on the VMA at `vma_start`:
    /// isolates its exclusive, idle, resident pages from the LRU for
    /// `reclaim_pages`, clearing their accessed bits so reclaim takes them
    /// whatever their history.
    pub fn madvise_pageout_isolate(&mut self, id: MmId, vma_start: Vpn) -> Vec<Pfn> {
        let mut out = Vec::new();
        let Some((s, e, _)) = self.madvise_range(id, vma_start) else {
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
    /// large, wholly inside the range. Divergence: a large folio only
    /// partly inside is left alone; the kernel tries to split it first.
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
