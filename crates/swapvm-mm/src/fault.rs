//! Page faults (mm/memory.c): the resident fast path, anonymous and write
//! faults, and swap-in (`do_swap_page`).
//!
//! A fault that needs I/O or memory does not block: it returns
//! [`FaultStop::Retry`] (the kernel's `VM_FAULT_RETRY`) and the task awaits
//! the named event, then retries the access.

use crate::folio::pg;
use crate::memory::{vm, Memory, MmId, VmaKind};
use crate::pgtable::TableId;
use swapvm_core::{Pfn, Pte, PteKind, SwpEntry, VmEvent, Vpn, WarnSite};
use swapvm_swap::{SwapError, SwapSubsystem};

/// What a task waits for before retrying a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Folio `Pfn` to be unlocked (its swap read to complete).
    Folio(Pfn),
    /// Free memory (reclaim to make progress).
    Memory,
    /// A charge to the task's memcg failed at the `memory.max` of this
    /// memcg (it or an ancestor): limit reclaim there, then retry
    /// (`try_charge`'s loop).
    Memcg(crate::memcg::MemcgId),
}

/// Why an access did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultStop {
    /// Retry after the event (`VM_FAULT_RETRY`).
    Retry(Wait),
    /// No VMA covers the address (`SIGSEGV`).
    Segv,
    /// The page's swap copy could not be read (`SIGBUS`).
    SigBus,
}

const SHMEM_SWAP_PTE: WarnSite = WarnSite {
    func: "handle_mm_fault",
    rule: "swap PTE in a shared mapping",
};

const SWAPIN_SETUP: WarnSite = WarnSite {
    func: "do_swap_page",
    rule: "swap-in could not bind the swap cache",
};

impl Memory {
    /// One memory access by `id` at `vpn`. The fast path (a present PTE
    /// that allows the access) is a four-level walk and a bit update.
    /// Returns the frame accessed.
    #[inline(always)]
    pub fn access(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        vpn: Vpn,
        write: bool,
        now: u64,
    ) -> Result<Pfn, FaultStop> {
        let pgd = self.mm(id).pgd;
        match self.access_resident(pgd, vpn, write) {
            Some(pfn) => Ok(pfn),
            None => self.access_fault(swap, id, pgd, vpn, write, now),
        }
    }

    /// The fast path of [`Self::access`] alone: if the PTE of `vpn` in the
    /// tree `pgd` is present and allows the access, sets its accessed (and,
    /// for a store, dirty) bit as the MMU would and returns its frame;
    /// otherwise `None` and nothing changed, the access needs
    /// [`Self::access`]'s fault. See [`PageTables::access_resident`].
    ///
    /// [`PageTables::access_resident`]: crate::pgtable::PageTables::access_resident
    #[inline(always)]
    pub fn access_resident(&mut self, pgd: TableId, vpn: Vpn, write: bool) -> Option<Pfn> {
        self.pt.access_resident(pgd, vpn, write)
    }

    /// The rest of [`Self::access`] once the fast path missed. Out of line
    /// and cold so that the fast path stays small enough to inline into the
    /// machine's loop (measured with `swapvm bench`: the resident access
    /// went from a call through the whole fault path to the walk alone).
    #[cold]
    #[inline(never)]
    fn access_fault(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        pgd: TableId,
        vpn: Vpn,
        write: bool,
        now: u64,
    ) -> Result<Pfn, FaultStop> {
        // A fault may resolve only part of the access: a swap-in of a page
        // whose slot is still shared maps it read-only, and the write then
        // needs a write-protect fault. Two rounds always suffice.
        for _ in 0..2 {
            self.handle_mm_fault(swap, id, vpn, write, now)?;
            let leaf = self.pt.walk(pgd, vpn).ok_or(FaultStop::Segv)?;
            let pte = self.pt.pte(leaf);
            if pte.is_present() && (!write || pte.has(Pte::WRITE)) {
                let want = if write {
                    Pte::ACCESSED | Pte::DIRTY
                } else {
                    Pte::ACCESSED
                };
                self.pt.set_pte(leaf, pte.with(want));
                return Ok(pte.pfn());
            }
        }
        Err(FaultStop::Retry(Wait::Memory))
    }

    /// `handle_mm_fault`, inside `lru_gen_enter_fault` /
    /// `lru_gen_exit_fault`: folios the fault adds to the LRU are set active
    /// first under MGLRU.
    pub fn handle_mm_fault(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        vpn: Vpn,
        write: bool,
        now: u64,
    ) -> Result<(), FaultStop> {
        let was = std::mem::replace(&mut self.lru.in_fault, true);
        let r = self.handle_mm_fault_inner(swap, id, vpn, write, now);
        self.lru.in_fault = was;
        r
    }

    /// `__handle_mm_fault`.
    fn handle_mm_fault_inner(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        vpn: Vpn,
        write: bool,
        now: u64,
    ) -> Result<(), FaultStop> {
        self.count_event(self.mm_memcg(id), VmEvent::PgFault, 1);
        let v = self.find_vma(id, vpn).ok_or(FaultStop::Segv)?;
        let (vma_start, kind) = (v.start.0, v.kind);
        let pgd = self.mm(id).pgd;
        let leaf = self.pt.walk_alloc(pgd, vpn);
        let pte = self.pt.pte(leaf).kind();
        if let VmaKind::Shmem { inode, pgoff } = kind {
            let index = pgoff + (vpn.0 - vma_start);
            return match pte {
                PteKind::None => self.shmem_fault(swap, id, inode, index, leaf, write, now),
                PteKind::Present { writable, .. } if write && !writable => {
                    self.shmem_wp_page(leaf);
                    Ok(())
                }
                PteKind::Present { .. } => Ok(()),
                // Shared mappings never hold swap PTEs: the page cache does.
                PteKind::Swap(e) => {
                    self.warn
                        .warn_on(true, SHMEM_SWAP_PTE, || format!("{e:?} at {vpn:?}"));
                    Err(FaultStop::SigBus)
                }
            };
        }
        match pte {
            PteKind::None => self.do_anonymous_page(id, vma_start, vpn, leaf, write),
            PteKind::Swap(entry) => {
                self.do_swap_page(swap, id, vma_start, vpn, leaf, entry, write, now)
            }
            PteKind::Present { writable, .. } if write && !writable => {
                self.do_wp_page(swap, id, vma_start, vpn, leaf)
            }
            PteKind::Present { .. } => Ok(()),
        }
    }

    fn do_anonymous_page(
        &mut self,
        id: MmId,
        vma_start: u64,
        vpn: Vpn,
        leaf: (u32, usize),
        write: bool,
    ) -> Result<(), FaultStop> {
        if self.may_thp(id, vma_start) {
            if let Some(r) = self.do_anonymous_large(id, vma_start, vpn, leaf, write) {
                return r;
            }
        }
        let pfn = self
            .alloc_frame(false)
            .ok_or(FaultStop::Retry(Wait::Memory))?;
        self.mem_cgroup_charge(pfn, self.mm_memcg(id))
            .map_err(|m| FaultStop::Retry(Wait::Memcg(m)))?;
        self.ram.page_mut(pfn).fill(0);
        let av = self.anon_vma_prepare(id, vma_start);
        self.folio_add_new_anon_rmap(pfn, av, vpn);
        self.folios.get_mut(pfn).set(pg::UPTODATE);
        self.lru.add(&mut self.folios, pfn);
        self.pt.set_pte(leaf, Pte::present(pfn, true, true, write));
        self.mm_mut(id).rss_anon += 1;
        Ok(())
    }

    /// `thp_vma_allowable_orders` for anonymous faults: the orders set to
    /// `always`, and those set to `madvise` if the VMA has `VM_HUGEPAGE`;
    /// none with `VM_NOHUGEPAGE`. Largest first.
    fn thp_vma_allowable_orders(&self, id: MmId, vma_start: u64) -> Vec<u8> {
        let flags = self.mm(id).vmas.get(&vma_start).map_or(0, |v| v.flags);
        if flags & vm::NOHUGEPAGE != 0 {
            return Vec::new();
        }
        let mut o = self.anon_orders.clone();
        if flags & vm::HUGEPAGE != 0 {
            o.extend(&self.anon_orders_madvise);
            o.sort_unstable_by(|a, b| b.cmp(a));
            o.dedup();
        }
        o
    }

    /// Whether any large order is allowed in the VMA (the cheap test before
    /// the mTHP paths).
    fn may_thp(&self, id: MmId, vma_start: u64) -> bool {
        if self.anon_orders.is_empty() && self.anon_orders_madvise.is_empty() {
            return false;
        }
        !self.thp_vma_allowable_orders(id, vma_start).is_empty()
    }

    /// The mTHP branch of `do_anonymous_page` (`alloc_anon_folio`): the
    /// largest enabled order whose aligned range lies inside the VMA with
    /// every PTE still empty gets a large folio, mapped by one PTE per
    /// page. `None` when no order fits or every allocation failed (the
    /// caller falls back to order 0).
    fn do_anonymous_large(
        &mut self,
        id: MmId,
        vma_start: u64,
        vpn: Vpn,
        leaf: (u32, usize),
        write: bool,
    ) -> Option<Result<(), FaultStop>> {
        let vma_end = self.mm(id).vmas.get(&vma_start)?.end.0;
        for order in self.thp_vma_allowable_orders(id, vma_start) {
            let nr = 1u64 << order;
            let base = vpn.0 & !(nr - 1);
            if base < vma_start || base + nr > vma_end {
                continue;
            }
            // Aligned and at most 512 pages: one leaf table holds the range.
            let first = leaf.1 - (vpn.0 - base) as usize;
            if (0..nr as usize).any(|i| !self.pt.pte((leaf.0, first + i)).is_none()) {
                continue;
            }
            let Some(pfn) = self.alloc_folio(order, false) else {
                self.stat.inc(VmEvent::AnonFaultFallback);
                continue;
            };
            // A charge refused falls back to a smaller order, as an
            // allocation failure does (anon_fault_fallback_charge).
            if self.mem_cgroup_charge(pfn, self.mm_memcg(id)).is_err() {
                self.stat.inc(VmEvent::AnonFaultFallback);
                continue;
            }
            self.stat.inc(VmEvent::AnonFaultAlloc);
            self.ram.pages_mut(pfn, nr as usize).fill(0);
            let av = self.anon_vma_prepare(id, vma_start);
            self.folio_add_new_anon_rmap(pfn, av, Vpn(base));
            let p = self.folios.get_mut(pfn);
            p.mapcount = nr as i32;
            p.set(pg::UPTODATE);
            self.lru.add(&mut self.folios, pfn);
            for i in 0..nr as u32 {
                let pte = Pte::present(Pfn(pfn.0 + i), true, true, write);
                self.pt.set_pte((leaf.0, first + i as usize), pte);
            }
            self.mm_mut(id).rss_anon += nr;
            return Some(Ok(()));
        }
        None
    }

    /// `folio_add_new_anon_rmap`: a fresh exclusive anon folio mapped once.
    fn folio_add_new_anon_rmap(&mut self, pfn: Pfn, anon_vma: u32, vpn: Vpn) {
        let p = self.folios.get_mut(pfn);
        p.set(pg::ANON | pg::SWAPBACKED);
        p.mapcount = 1;
        p.mapping = anon_vma;
        p.index = vpn.0;
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn do_swap_page(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        vma_start: u64,
        vpn: Vpn,
        leaf: (u32, usize),
        entry: SwpEntry,
        write: bool,
        now: u64,
    ) -> Result<(), FaultStop> {
        let Some(pfn) = swap.swap_cache_get_folio(entry) else {
            return self.swapin(swap, id, vma_start, vpn, leaf, entry, write, now);
        };
        let p = *self.folios.get(pfn);
        if p.test(pg::LOCKED) {
            return Err(FaultStop::Retry(Wait::Folio(pfn)));
        }
        if p.test(pg::IO_ERROR) {
            return Err(FaultStop::SigBus);
        }
        self.stat.inc(VmEvent::SwapCacheHit);
        let Some(base) = p.swap else {
            return Err(FaultStop::Retry(Wait::Memory));
        };
        let sub = entry.offset().0 - base.offset().0;
        let site = crate::swap_state::RaSite {
            mm: id,
            vma_start,
            vpn,
        };
        self.swap_update_readahead(swap, pfn, Some(site));
        if crate::swap_state::folio_unclaimed(&p) {
            // First use of a folio read ahead: this fault claims it for
            // its anon_vma, as a swap-in of its own would have.
            let nr = 1u64 << p.order;
            let av = self.swapin_anon_vma(swap, id, vma_start, base, nr);
            let f = self.folios.get_mut(pfn);
            f.set(pg::ANON | pg::SWAPBACKED);
            f.mapping = av;
            f.index = vpn.0 - sub;
        }
        let p = *self.folios.get(pfn);
        if !self.folio_mappable_at(&p, id, vma_start, Vpn(vpn.0 - sub)) {
            return self.swapin_copy(swap, id, vma_start, vpn, leaf, pfn, sub);
        }
        // Context for the folio helpers: folio locked, in the swap cache;
        // the page-table slot (our PTL) is held by this single-threaded walk.
        self.folios.get_mut(pfn).set(pg::LOCKED);
        if p.test(pg::KSM) {
            self.ksm_add_rmap_item(pfn, id, vpn);
        }
        // Map every page of the folio whose PTE here still holds its entry
        // (a large folio comes back whole when it can).
        let nr = 1u64 << p.order;
        let first = leaf.1 - sub as usize;
        // The pages mapped here, one bit each (no allocation per fault).
        let mut mapped = [0u64; (1 << swapvm_core::Order::MAX) / 64];
        let is_mapped = |m: &[u64], j: u64| m[(j / 64) as usize] >> (j % 64) & 1 != 0;
        let mut n = 0i32;
        for j in 0..nr {
            let l = (leaf.0, first + j as usize);
            if self.pt.pte(l).swap_entry() == Some(base.add(j)) {
                swap.folio_put_swap(&self.folios.folio(pfn), Some(j as u32));
                mapped[(j / 64) as usize] |= 1 << (j % 64);
                n += 1;
            }
        }
        self.folios.get_mut(pfn).mapcount += n;
        // Exclusive: no other swap owner and no other mapping.
        let alone = self.folios.get(pfn).mapcount == n && !p.test(pg::KSM);
        let exclusive = |swap: &SwapSubsystem, j: u64| {
            let e = base.add(j);
            let _ci = swap.swap_cluster_lock(e);
            alone && !swap.swap_entry_swapped(e)
        };
        if (write || swap.vm_swap_full() || self.mem_cgroup_swap_full(swap, pfn))
            && (0..nr).all(|j| exclusive(swap, j))
            && !self.folios.get(pfn).test(pg::WRITEBACK)
        {
            swap.folio_free_swap(&mut self.folios.folio(pfn));
        }
        for j in (0..nr).filter(|&j| is_mapped(&mapped, j)) {
            let l = (leaf.0, first + j as usize);
            let w = write && j == sub && exclusive(swap, j);
            let page = Pfn(pfn.0 + j as u32);
            self.pt.set_pte(l, Pte::present(page, w, true, w));
        }
        self.folios.get_mut(pfn).clear(pg::LOCKED);
        let mm = self.mm_mut(id);
        mm.rss_swap -= n as u64;
        mm.rss_anon += n as u64;
        Ok(())
    }

    /// The anon_vma a folio swapped in for the `nr` entries from `base`
    /// joins (`__folio_set_anon`): the VMA's own when this mapping is the
    /// entries' only owner (exclusive), else the root of its fork family,
    /// into which every VMA that may share the entries is linked, so the
    /// rmap walk finds each of their mappings.
    ///
    /// Simplification: the kernel asks the swap PTE's exclusive bit, which
    /// fork clears; swapvm asks the swap count, which fork raises. They
    /// differ only after the other owners are gone, when the root is still
    /// chosen by the kernel and the own anon_vma here: both reach the VMA.
    fn swapin_anon_vma(
        &mut self,
        swap: &SwapSubsystem,
        id: MmId,
        vma_start: u64,
        base: SwpEntry,
        nr: u64,
    ) -> u32 {
        let own = self.anon_vma_prepare(id, vma_start);
        if (0..nr).all(|j| swap.swap_count(base.add(j)) <= 1) {
            own
        } else {
            self.anon_vma_root(own)
        }
    }

    /// Whether swap-cache folio `p` may be mapped at `(id, vpn)` as it is
    /// (the test of `ksm_might_need_to_copy`): a KSM folio always (the
    /// stable node gains an item), an anonymous one if it sits at the same
    /// index and its anon_vma is of the VMA's fork family (same root), as
    /// a forked sibling's swap-in of a shared entry is.
    fn folio_mappable_at(
        &self,
        p: &crate::folio::Page,
        id: MmId,
        vma_start: u64,
        vpn: Vpn,
    ) -> bool {
        if p.test(pg::KSM) {
            return true;
        }
        let root = self.anon_vma_root(p.mapping);
        p.test(pg::ANON)
            && p.index == vpn.0
            && self
                .mm(id)
                .vmas
                .get(&vma_start)
                .and_then(|v| v.anon_vma)
                .is_some_and(|own| self.anon_vma_root(own) == root)
    }

    /// The copy branch of `ksm_might_need_to_copy`: the swap-cache folio
    /// cannot be mapped here (its rmap would not find this PTE), so this
    /// mapping gets a private copy of page `sub` and puts its swap
    /// reference on the swap-cache folio, which keeps the slot for its
    /// other owners.
    #[allow(clippy::too_many_arguments)]
    fn swapin_copy(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        vma_start: u64,
        vpn: Vpn,
        leaf: (u32, usize),
        cache: Pfn,
        sub: u64,
    ) -> Result<(), FaultStop> {
        let copy =
            self.map_anon_copy(id, vma_start, vpn, leaf, Pfn(cache.0 + sub as u32), false)?;
        if self.unusing && swap.bugs.swapoff_put_on_ksm_copy {
            // The seed bug: the put goes to the (locked) copy, which is
            // not in the swap cache; it is refused and the count leaks.
            self.folios.get_mut(copy).set(pg::LOCKED);
            swap.folio_put_swap(&self.folios.folio(copy), None);
            self.folios.get_mut(copy).clear(pg::LOCKED);
        } else {
            // Context: folio locked and in the swap cache.
            self.folios.get_mut(cache).set(pg::LOCKED);
            swap.folio_put_swap(&self.folios.folio(cache), Some(sub as u32));
            self.folios.get_mut(cache).clear(pg::LOCKED);
        }
        self.stat.inc(VmEvent::KsmSwapinCopy);
        let mm = self.mm_mut(id);
        mm.rss_swap -= 1;
        mm.rss_anon += 1;
        self.try_free_folio(swap, cache);
        Ok(())
    }

    /// Starts the swap-in read of `entry` into a new folio in the swap cache.
    #[allow(clippy::too_many_arguments)]
    fn swapin(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        vma_start: u64,
        vpn: Vpn,
        leaf: (u32, usize),
        entry: SwpEntry,
        write: bool,
        now: u64,
    ) -> Result<(), FaultStop> {
        // SWP_SYNCHRONOUS_IO and this mapping the entry's only owner: the
        // kernel's direct path, which may bring a large folio back whole
        // and reads nothing ahead.
        let sync_io = swap.device(entry.ty()).is_some_and(|d| d.synchronous_io)
            && swap.swap_count(entry) == 1;
        if self.may_thp(id, vma_start) && (sync_io || self.swapin_any_device) {
            if let Some(r) = self.swapin_large(swap, id, vma_start, vpn, leaf, entry, now) {
                return r;
            }
        }
        let pfn = self
            .alloc_frame(false)
            .ok_or(FaultStop::Retry(Wait::Memory))?;
        self.mem_cgroup_swapin_charge_folio(swap, pfn, id, entry)
            .map_err(|m| FaultStop::Retry(Wait::Memcg(m)))?;
        let av = self.swapin_anon_vma(swap, id, vma_start, entry, 1);
        {
            let p = self.folios.get_mut(pfn);
            p.set(pg::ANON | pg::SWAPBACKED | pg::LOCKED);
            p.mapping = av;
            p.index = vpn.0;
        }
        let bound = swap.swap_cache_add_folio(&mut self.folios.folio(pfn), entry);
        let shadow = match bound {
            Ok(shadow) => shadow,
            Err(e) => {
                self.warn
                    .warn_on(true, SWAPIN_SETUP, || format!("{entry:?} at {vpn:?}: {e}"));
                self.folios.get_mut(pfn).clear(pg::LOCKED);
                self.free_frame(pfn);
                return Err(match e {
                    SwapError::Exists { .. } => FaultStop::Retry(Wait::Memory),
                    _ => FaultStop::SigBus,
                });
            }
        };
        self.count_event(self.mm_memcg(id), VmEvent::PgMajFault, 1);
        if let Some(shadow) = shadow {
            // Before the LRU add: a recent refault starts active.
            self.workingset_refault(pfn, shadow);
        }
        self.lru.add(&mut self.folios, pfn);
        if swap.swap_zeromap_test(entry, 1) {
            // swap_read_folio_zeromap: the page was all zeros and never
            // written; it reads back without I/O.
            self.ram.page_mut(pfn).fill(0);
            let p = self.folios.get_mut(pfn);
            p.set(pg::UPTODATE);
            p.clear(pg::LOCKED);
            self.count_event(self.folio_memcg(pfn), VmEvent::SwpinZero, 1);
            return self.do_swap_page(swap, id, vma_start, vpn, leaf, entry, write, now);
        }
        let r = self.swap_read_start(swap, pfn, entry, 1, now);
        if r != FaultStop::SigBus && !sync_io {
            self.swapin_readahead(swap, id, vma_start, vpn, entry, now);
        }
        Err(r)
    }

    /// The mTHP branch of swap-in (`alloc_swap_folio`): when the aligned
    /// range of an enabled order around `vpn` holds swap PTEs of
    /// contiguous, aligned slots, none of them cached or a zero page, one
    /// large folio is read for all of them. `None` when no order qualifies
    /// or the allocation failed (order-0 swap-in follows).
    #[allow(clippy::too_many_arguments)]
    fn swapin_large(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        vma_start: u64,
        vpn: Vpn,
        leaf: (u32, usize),
        entry: SwpEntry,
        now: u64,
    ) -> Option<Result<(), FaultStop>> {
        let vma_end = self.mm(id).vmas.get(&vma_start)?.end.0;
        for order in self.thp_vma_allowable_orders(id, vma_start) {
            let nr = 1u64 << order;
            let base_vpn = vpn.0 & !(nr - 1);
            let sub = vpn.0 - base_vpn;
            if base_vpn < vma_start || base_vpn + nr > vma_end || entry.offset().0 < sub {
                continue;
            }
            let base = SwpEntry::new(entry.ty(), swapvm_core::SwapOffset(entry.offset().0 - sub))?;
            if base.offset().0 % nr != 0 {
                continue;
            }
            let first = leaf.1 - sub as usize;
            let whole = (0..nr).all(|j| {
                let e = base.add(j);
                self.pt.pte((leaf.0, first + j as usize)).swap_entry() == Some(e)
                    && swap.swap_cache_get_folio(e).is_none()
                    && !swap.swap_zeromap_test(e, 1)
            });
            if !whole {
                continue;
            }
            let Some(pfn) = self.alloc_folio(order, false) else {
                continue;
            };
            if self
                .mem_cgroup_swapin_charge_folio(swap, pfn, id, base)
                .is_err()
            {
                continue;
            }
            let av = self.swapin_anon_vma(swap, id, vma_start, base, nr);
            let p = self.folios.get_mut(pfn);
            p.set(pg::ANON | pg::SWAPBACKED | pg::LOCKED);
            p.mapping = av;
            p.index = base_vpn;
            if swap
                .swap_cache_add_folio(&mut self.folios.folio(pfn), base)
                .is_err()
            {
                self.folios.get_mut(pfn).clear(pg::LOCKED);
                self.free_frame(pfn);
                continue;
            }
            self.count_event(self.mm_memcg(id), VmEvent::PgMajFault, 1);
            self.lru.add(&mut self.folios, pfn);
            let r = self.swap_read_start(swap, pfn, base, nr as u32, now);
            if r != FaultStop::SigBus {
                self.stat.inc(VmEvent::ThpSwpin);
            }
            return Some(Err(r));
        }
        None
    }

    /// `swapin_readahead`: by address when [`Memory::swap_use_vma_readahead`],
    /// else by swap offset (swap_state.rs).
    fn swapin_readahead(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        vma_start: u64,
        vpn: Vpn,
        entry: SwpEntry,
        now: u64,
    ) {
        if self.swap_use_vma_readahead(swap) {
            let Some(end) = self.find_vma(id, vpn).map(|v| v.end.0) else {
                return;
            };
            self.swap_vma_readahead(swap, id, (vma_start, end), vpn, now);
        } else {
            self.swap_cluster_readahead(swap, entry, now);
        }
    }

    /// Completes a swap read into folio `pfn` (`swap_read_folio` end_io):
    /// fills it from the blocks read (`data`, one 4 KiB block per page; a
    /// metadata-only RAM takes each block's content word), marks it up to
    /// date and unlocks it; on error marks it so the fault raises SIGBUS.
    pub fn swap_read_done(&mut self, pfn: Pfn, data: Result<&[u8], ()>) {
        match data {
            Ok(bytes) => {
                let nr = 1usize << self.folios.get(pfn).order;
                self.ram.fill_from_blocks(pfn, nr, bytes);
                self.folios.get_mut(pfn).set(pg::UPTODATE);
            }
            Err(()) => self.folios.get_mut(pfn).set(pg::IO_ERROR),
        }
        self.folios.get_mut(pfn).clear(pg::LOCKED);
    }

    /// `do_wp_page`: a write to a present, write-protected PTE. Reuses an
    /// exclusive folio (dropping its now-stale swap copy), copies a shared
    /// or KSM one.
    fn do_wp_page(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        vma_start: u64,
        vpn: Vpn,
        leaf: (u32, usize),
    ) -> Result<(), FaultStop> {
        let pte = self.pt.pte(leaf);
        let page = pte.pfn();
        let old = self.folio_of(page);
        let p = *self.folios.get(old);
        if p.test(pg::LOCKED) {
            return Err(FaultStop::Retry(Wait::Folio(old)));
        }
        let sub = u64::from(page.0 - old.0);
        let in_cache_shared = p.swap.is_some_and(|e| {
            let e = e.add(sub);
            let _ci = swap.swap_cluster_lock(e);
            swap.swap_entry_swapped(e)
        });
        let exclusive = if p.order == 0 {
            p.mapcount == 1
        } else {
            // A large folio's mapcount counts every page's PTEs: this page
            // is exclusive when no other PTE maps it.
            let mut others = 0;
            self.rmap_walk(old, |m, mm, v, l| {
                if m.pt.pte(l).pfn() == page && (mm, v) != (id, vpn) {
                    others += 1;
                }
                true
            });
            others == 0
        };
        if exclusive && !in_cache_shared && !p.test(pg::KSM) {
            if p.swap.is_some() && !p.test(pg::WRITEBACK) {
                self.folios.get_mut(old).set(pg::LOCKED);
                swap.folio_free_swap(&mut self.folios.folio(old));
                self.folios.get_mut(old).clear(pg::LOCKED);
            }
            self.pt
                .set_pte(leaf, pte.with(Pte::WRITE | Pte::DIRTY | Pte::ACCESSED));
            return Ok(());
        }
        self.cow_copy(swap, id, vma_start, vpn, leaf, page, true)
    }

    /// Copy on write (`wp_page_copy`): `vpn` gets a private copy of page
    /// `old` in the VMA's own anon_vma, writable; `old`'s folio loses this
    /// mapping.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn cow_copy(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        vma_start: u64,
        vpn: Vpn,
        leaf: (u32, usize),
        old: Pfn,
        write: bool,
    ) -> Result<(), FaultStop> {
        self.map_anon_copy(id, vma_start, vpn, leaf, old, write)?;
        self.stat.inc(VmEvent::CowFault);
        let old = self.folio_of(old);
        if self.folios.get(old).test(pg::KSM) {
            self.ksm_remove_rmap_item(swap, old, id, vpn);
            self.stat.inc(VmEvent::CowKsm);
        }
        self.folios.get_mut(old).mapcount -= 1;
        self.try_free_folio(swap, old);
        Ok(())
    }

    /// Maps at `vpn` a new private anonymous page holding a copy of page
    /// `src`, in the VMA's own anon_vma, writable (dirty in the PTE if
    /// `dirty`): the common half of COW and of the swap-in copy.
    fn map_anon_copy(
        &mut self,
        id: MmId,
        vma_start: u64,
        vpn: Vpn,
        leaf: (u32, usize),
        src: Pfn,
        dirty: bool,
    ) -> Result<Pfn, FaultStop> {
        let new = self
            .alloc_frame(false)
            .ok_or(FaultStop::Retry(Wait::Memory))?;
        self.mem_cgroup_charge(new, self.mm_memcg(id))
            .map_err(|m| FaultStop::Retry(Wait::Memcg(m)))?;
        self.ram.copy_page(new, src);
        let av = self.anon_vma_prepare(id, vma_start);
        self.folio_add_new_anon_rmap(new, av, vpn);
        self.folios.get_mut(new).set(pg::UPTODATE | pg::DIRTY);
        self.lru.add(&mut self.folios, new);
        self.pt.set_pte(leaf, Pte::present(new, true, true, dirty));
        Ok(new)
    }

    /// Starts the read of `nr` slots from `entry` into swap-cache folio
    /// `pfn` (locked, on the LRU); on a refused submission undoes the
    /// folio and fails the fault (SIGBUS). Otherwise the fault retries
    /// once the folio is unlocked.
    ///
    /// # Context
    /// Folio locked and in the swap cache.
    pub(crate) fn swap_read_start(
        &mut self,
        swap: &mut SwapSubsystem,
        pfn: Pfn,
        entry: SwpEntry,
        nr: u32,
        now: u64,
    ) -> FaultStop {
        let memcg = self.folio_memcg(pfn);
        let read = swap.swap_read_folio(entry, nr, u64::from(pfn.0), now);
        // Pages zswap served are its memcg's `zswpin`, kept by zswap.
        let from_device = read.as_ref().map_or(nr, |&n| n);
        self.memcg
            .count(memcg, VmEvent::PswpIn, u64::from(from_device));
        if let Err(e) = read {
            tracing::error!("swap read of {entry:?} (+{nr}) failed to start: {e}");
            self.lru.del(&mut self.folios, pfn);
            let mut f = self.folios.folio(pfn);
            swap.swap_cache_del_folio(&mut f, None);
            f.page.clear(pg::LOCKED);
            self.free_frame(pfn);
            return FaultStop::SigBus;
        }
        FaultStop::Retry(Wait::Folio(pfn))
    }

    /// Frees folio `pfn` if nothing holds it any more: unmapped, unlocked,
    /// no I/O, and (if in the swap cache) no swap owner left
    /// (`free_swap_cache` + the final `folio_put`).
    pub fn try_free_folio(&mut self, swap: &mut SwapSubsystem, pfn: Pfn) -> bool {
        let p = *self.folios.get(pfn);
        if !p.test(pg::ALLOCATED) || p.mapcount > 0 || p.test(pg::LOCKED | pg::WRITEBACK) {
            return false;
        }
        if p.test(pg::SHMEM) {
            // The page cache holds it.
            return false;
        }
        if p.swap.is_some() {
            self.folios.get_mut(pfn).set(pg::LOCKED);
            let freed = swap.folio_free_swap(&mut self.folios.folio(pfn));
            self.folios.get_mut(pfn).clear(pg::LOCKED);
            if !freed {
                return false;
            }
        }
        self.lru.del(&mut self.folios, pfn);
        self.free_frame(pfn);
        true
    }
}
