//! Reverse mapping (mm/rmap.c) and teardown (munmap, exit).
//!
//! An anonymous folio records its anon_vma and linear index (its vpn); the
//! rmap walk visits each VMA linked to that anon_vma and looks the index up
//! in that address space's page tables. A shmem folio records its inode and
//! file index and is found through the inode's mappings; a KSM folio
//! through its stable node's rmap items.

use crate::folio::{pg, Page, NO_MAPPING};
use crate::memory::{AnonVmaChain, Memory, MmId, VmaKind};
use crate::pgtable::TableId;
use swapvm_core::{Pfn, Pte, PteKind, Vpn};
use swapvm_swap::SwapSubsystem;

impl Memory {
    /// The `i`-th place an rmap walk of folio `p` looks: `Some(None)` when
    /// that candidate is gone, `None` past the last. Anonymous folios walk
    /// their anon_vma, shmem folios their inode's i_mmap, KSM folios their
    /// stable node's rmap items. Allocation-free, so reclaim can walk any
    /// number of folios.
    fn rmap_candidate(&self, p: &Page, i: usize) -> Option<Option<(MmId, Vpn)>> {
        if p.test(pg::KSM) {
            let (mm, vpn) = self.ksm.rmap_item_nth(p.mapping, i)?;
            let ok = self
                .mms
                .get(mm.0 as usize)
                .and_then(Option::as_ref)
                .is_some_and(|m| {
                    let Some(v) = m.vmas.floor(vpn.0) else {
                        return false;
                    };
                    vpn < v.end
                });
            return Some(ok.then_some((mm, vpn)));
        }
        let mm_of = |mm: MmId| self.mms.get(mm.0 as usize).and_then(Option::as_ref);
        let (mm, v) = if p.test(pg::SHMEM) {
            let (mm, start) = self.shmem.i_mmap_nth(p.mapping, i)?;
            (mm, mm_of(mm).and_then(|m| m.vmas.get(&start)))
        } else if p.test(pg::ANON) && p.mapping != NO_MAPPING {
            let c = self.anon_vmas.get(p.mapping as usize)?.get(i)?;
            (c.mm, mm_of(c.mm).and_then(|m| c.vma(m)))
        } else {
            return None;
        };
        let Some(v) = v else {
            return Some(None);
        };
        let vpn = match v.kind {
            VmaKind::Shmem { pgoff, .. } => {
                if p.index < pgoff || p.index - pgoff >= v.pages() {
                    return Some(None);
                }
                v.start.add(p.index - pgoff)
            }
            VmaKind::Anon => Vpn(p.index),
        };
        Some((vpn >= v.start && vpn < v.end).then_some((mm, vpn)))
    }

    /// Visits every PTE slot mapping a page of folio `pfn` (`rmap_walk`:
    /// anon, file or KSM; a large folio's pages each have their PTE, at
    /// consecutive vpns from its index); `f` returns false to stop early.
    /// The page a PTE maps is its PTE's pfn.
    pub fn rmap_walk(
        &mut self,
        pfn: Pfn,
        mut f: impl FnMut(&mut Self, MmId, Vpn, (TableId, usize)) -> bool,
    ) {
        let p = *self.folios.get(pfn);
        let nr = 1u64 << p.order;
        let mut i = 0;
        while let Some(c) = self.rmap_candidate(&p, i) {
            i += 1;
            let Some((mm, vpn)) = c else { continue };
            for j in 0..nr {
                let Some(m) = self.mms.get(mm.0 as usize).and_then(Option::as_ref) else {
                    break;
                };
                let v = vpn.add(j);
                let Some(leaf) = self.pt.walk(m.pgd, v) else {
                    continue;
                };
                let pte = self.pt.pte(leaf);
                if pte.is_present() && pte.pfn().0 == pfn.0 + j as u32 && !f(self, mm, v, leaf) {
                    return;
                }
            }
        }
    }

    /// The first rmap candidate of an anonymous folio: its address space,
    /// its anon_vma's first chain entry and the page it maps the folio at.
    #[inline]
    fn rmap_first_anon(&self, pfn: Pfn) -> Option<(&crate::memory::MmStruct, &AnonVmaChain, Vpn)> {
        let p = self.folios.get(pfn);
        if !p.test(pg::ANON) || p.test(pg::KSM) || p.mapping == NO_MAPPING {
            return None;
        }
        let c = self.anon_vmas.get(p.mapping as usize)?.first()?;
        let m = self.mms.get(c.mm.0 as usize)?.as_ref()?;
        Some((m, c, Vpn(p.index)))
    }

    /// The first stage of [`Self::rmap_prefetch`] for one folio: touches
    /// its anon_vma chain entry. Cheap enough to run inside an isolation
    /// loop, whose own cache misses (each LRU link depends on the last)
    /// then overlap with these, which depend on nothing but the folio.
    #[inline]
    pub fn rmap_prefetch_one(&self, pfn: Pfn) {
        std::hint::black_box(self.rmap_first_anon(pfn).map(|(_, c, _)| c.start));
    }

    /// Touches, for a batch of isolated folios, what reclaim will load for
    /// each (the anon_vma chain entry, the VMA, the page-table levels and
    /// the PTE of its first rmap candidate, and the swap slot of a folio
    /// already in the swap cache), stage by stage across the batch, so the
    /// cache misses of different folios overlap instead of each
    /// `folio_referenced` and `try_to_unmap` waiting on its own chain of
    /// them (what the kernel's `prefetchw_prev_lru_folio` does for the LRU
    /// links). Reads only: no PTE, folio, slot or list changes, so what
    /// reclaim then decides is the same with or without it.
    pub fn rmap_prefetch(&self, swap: &SwapSubsystem, pfns: &[Pfn]) {
        const STAGE: usize = 32;
        let mut sum = 0u64;
        for chunk in pfns.chunks(STAGE) {
            // Stage 1: the anon_vma chain entries; the swap slots.
            let mut cand = [None; STAGE];
            for (c, &pfn) in cand.iter_mut().zip(chunk) {
                *c = self.rmap_first_anon(pfn);
                if let Some(e) = self.folios.get(pfn).swap {
                    sum = sum.wrapping_add(u64::from(swap.slot(e).is_some_and(|s| s.count > 0)));
                }
            }
            // Stage 2: the VMAs.
            for &(m, c, _) in cand.iter().flatten() {
                sum = sum.wrapping_add(c.vma(m).map_or(0, |v| v.end.0));
            }
            // Stage 3: the page-table walk to each leaf slot.
            let mut leaves = [None; STAGE];
            for (l, c) in leaves.iter_mut().zip(&cand) {
                if let Some((m, _, vpn)) = *c {
                    *l = self.pt.walk(m.pgd, vpn);
                }
            }
            // Stage 4: the PTEs, independent loads.
            for leaf in leaves.iter().flatten() {
                sum = sum.wrapping_add(self.pt.pte(*leaf).raw());
            }
        }
        std::hint::black_box(sum);
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

    /// `try_to_unmap`. A shmem folio loses every PTE (the page cache keeps
    /// it). A lazily freed anonymous folio (`MADV_FREE`, no longer
    /// swap-backed) that nobody redirtied loses every PTE too and is then
    /// dropped; a redirtied one becomes swap-backed again and stays. A
    /// swap-cache anonymous (or KSM) folio gets a swap PTE, with a swap
    /// reference from `folio_dup_swap`, in place of each mapping. The PTE
    /// dirty bit moves to the folio. Returns true when the folio is no
    /// longer mapped.
    ///
    /// # Context
    /// Folio locked; anonymous folios that are swap-backed are in the swap
    /// cache.
    pub fn try_to_unmap(&mut self, swap: &mut SwapSubsystem, pfn: Pfn) -> bool {
        let p = *self.folios.get(pfn);
        if p.test(pg::SHMEM) {
            self.try_to_unmap_shmem(pfn);
            return self.folios.get(pfn).mapcount == 0;
        }
        if p.test(pg::ANON) && !p.test(pg::SWAPBACKED) {
            return self.try_to_unmap_lazyfree(pfn);
        }
        let Some(entry) = p.swap else {
            return false;
        };
        let mut ok = true;
        self.rmap_walk(pfn, |m, mm, _, leaf| {
            let pte = m.pt.pte(leaf);
            let sub = pte.pfn().0 - pfn.0;
            if swap
                .folio_dup_swap(&m.folios.folio(pfn), Some(sub))
                .is_err()
            {
                ok = false;
                return false;
            }
            if pte.has(Pte::DIRTY) {
                m.folios.get_mut(pfn).set(pg::DIRTY);
            }
            m.pt.set_pte(leaf, Pte::swap(entry.add(u64::from(sub))));
            m.folios.get_mut(pfn).mapcount -= 1;
            let s = m.mm_mut(mm);
            s.rss_anon -= 1;
            s.rss_swap += 1;
            true
        });
        ok && self.folios.get(pfn).mapcount == 0
    }

    /// The lazyfree branch of `try_to_unmap_one`: a clean folio's PTEs are
    /// cleared (its contents are discarded: the next access reads zeros);
    /// a folio written since `MADV_FREE` is swap-backed again and kept.
    fn try_to_unmap_lazyfree(&mut self, pfn: Pfn) -> bool {
        let mut dirty = self.folios.get(pfn).test(pg::DIRTY);
        self.rmap_walk(pfn, |m, _, _, leaf| {
            dirty |= m.pt.pte(leaf).has(Pte::DIRTY);
            !dirty
        });
        if dirty {
            self.folios.get_mut(pfn).set(pg::SWAPBACKED);
            return false;
        }
        self.rmap_walk(pfn, |m, mm, _, leaf| {
            m.pt.set_pte(leaf, Pte::NONE);
            m.folios.get_mut(pfn).mapcount -= 1;
            m.mm_mut(mm).rss_anon -= 1;
            true
        });
        self.folios.get(pfn).mapcount == 0
    }

    /// `split_folio` of a large anonymous folio that reclaim could not give
    /// contiguous swap: every page becomes an order-0 folio with its own
    /// mapcount and index; the head stays isolated for the caller, the
    /// others go to the LRU list the folio was on.
    ///
    /// # Context
    /// Folio locked, isolated, not in the swap cache.
    pub fn split_folio(&mut self, head: Pfn) {
        let p = *self.folios.get(head);
        let nr = 1u32 << p.order;
        if nr == 1 {
            return;
        }
        let mut counts = vec![0i32; nr as usize];
        self.rmap_walk(head, |m, _, _, leaf| {
            counts[(m.pt.pte(leaf).pfn().0 - head.0) as usize] += 1;
            true
        });
        let keep = pg::ALLOCATED
            | pg::ANON
            | pg::SWAPBACKED
            | pg::UPTODATE
            | pg::DIRTY
            | pg::ACTIVE
            | pg::REFERENCED;
        for i in 0..nr {
            let f = self.folios.get_mut(Pfn(head.0 + i));
            *f = Page {
                flags: p.flags & keep,
                order: 0,
                mapcount: counts[i as usize],
                mapping: p.mapping,
                index: p.index + u64::from(i),
                swap: None,
                memcg: p.memcg,
            };
        }
        self.folios.get_mut(head).flags = p.flags & (keep | pg::LOCKED);
        for i in 1..nr {
            let t = Pfn(head.0 + i);
            self.lru.add(&mut self.folios, t);
        }
        self.stat.inc(swapvm_core::VmEvent::ThpSplitPage);
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
    /// their mapping (and are freed when nothing else holds them), swap
    /// PTEs release their slots with `swap_put_entries_direct`.
    pub fn zap_range(&mut self, swap: &mut SwapSubsystem, id: MmId, start: Vpn, end: Vpn) {
        let pgd = self.mm(id).pgd;
        let mut vpn = start;
        let mut touched = None;
        while vpn < end {
            let Some(leaf) = self.pt.walk(pgd, vpn) else {
                // Skip to the next leaf table.
                vpn = Vpn((vpn.0 | 511) + 1);
                continue;
            };
            if touched != Some(leaf.0) {
                touched = Some(leaf.0);
                let n = (end.0 - vpn.0).min(512 - leaf.1 as u64) as usize;
                self.pt.swap_prefetch_leaf(swap, leaf, n);
            }
            match self.pt.pte(leaf).kind() {
                PteKind::None => {}
                PteKind::Present { pfn, dirty, .. } => {
                    self.pt.set_pte(leaf, Pte::NONE);
                    let pfn = self.folio_of(pfn);
                    let p = self.folios.get_mut(pfn);
                    p.mapcount -= 1;
                    let shmem = p.test(pg::SHMEM);
                    if dirty && shmem {
                        p.set(pg::DIRTY);
                    }
                    let mm = self.mm_mut(id);
                    if shmem {
                        mm.rss_shmem -= 1;
                    } else {
                        mm.rss_anon -= 1;
                    }
                    if self.folios.get(pfn).test(pg::KSM) {
                        self.ksm_remove_rmap_item(swap, pfn, id, vpn);
                    }
                    self.try_free_folio(swap, pfn);
                }
                PteKind::Swap(entry) => self.zap_swap_pte(swap, id, leaf, entry),
            }
            vpn = vpn.add(1);
        }
    }

    /// Clears the swap PTE at `leaf` of `id` and puts its entry with
    /// `swap_put_entries_direct` under the page-table lock, freeing a
    /// swap-cache folio that no owner needs any more.
    pub(crate) fn zap_swap_pte(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        leaf: (TableId, usize),
        entry: swapvm_core::SwpEntry,
    ) {
        self.pt.set_pte(leaf, Pte::NONE);
        self.mm_mut(id).rss_swap -= 1;
        let ptl = swap
            .lockdep()
            .lock(swapvm_core::LockClass::PageTable { mm: id.0 });
        let put = swap.swap_put_entries_direct(entry, 1);
        drop(ptl);
        for pfn in put.cached {
            self.try_free_folio(swap, pfn);
        }
    }

    /// `munmap` of the whole VMA starting at `start`: zaps it, unlinks it
    /// from every anon_vma of its chain and from its inode's i_mmap.
    pub fn munmap(&mut self, swap: &mut SwapSubsystem, id: MmId, start: Vpn) -> bool {
        let Some(v) = self.mm(id).vmas.get(&start.0).cloned() else {
            return false;
        };
        self.zap_range(swap, id, v.start, v.end);
        self.mm_mut(id).vmas.remove(&start.0);
        for &a in &v.chain {
            self.anon_vmas[a as usize].retain(|c| !(c.mm == id && c.start == start.0));
        }
        if let VmaKind::Shmem { inode, .. } = v.kind {
            self.shmem_unlink_vma(swap, inode, id, start.0);
        }
        self.ksm_forget_range(id, v.start, v.end);
        true
    }

    /// `exit_mmap`: unmaps everything and frees the page tables.
    pub fn exit_mmap(&mut self, swap: &mut SwapSubsystem, id: MmId) {
        let starts: Vec<u64> = self.mm(id).vmas.keys().copied().collect();
        for s in starts {
            self.munmap(swap, id, Vpn(s));
        }
        self.ksm_exit(id);
        let pgd = self.mm(id).pgd;
        self.pt.free_tree(pgd);
        self.mms[id.0 as usize] = None;
    }
}
