//! shmem (mm/shmem.c): tmpfs-like inodes mapped shared by several
//! processes, and shared anonymous mappings (which the kernel backs with an
//! unlinked shmem inode too).
//!
//! Each inode's page cache holds, per page index, nothing, a folio, or a
//! swap entry (the kernel's xarray value entries). The page cache is a swap
//! owner: an entry stored there holds one swap count.
//!
//! - Writeout (`shmem_writeout`, driven by reclaim once every PTE is gone):
//!   `folio_alloc_swap`, `folio_dup_swap` for the page cache's reference,
//!   then the folio leaves the page cache and its entry takes its place; the
//!   folio lives on in the swap cache only until its write completes.
//! - Swap-in (`shmem_swapin_folio`): the folio read into the swap cache
//!   returns to the page cache; `folio_put_swap` drops the page cache's
//!   reference and `swap_cache_del_folio` frees the slot.
//! - Truncate and unlink (`shmem_undo_range`): folios are unmapped and
//!   dropped, swap entries put with `swap_put_entries_direct`.
//!
//! Simplifications: no file descriptors are modelled, so an inode lives
//! while it is linked or mapped; no huge pages; size is fixed at creation
//! except by truncation.

use crate::fault::{FaultStop, Wait};
use crate::folio::{pg, NO_MAPPING};
use crate::memory::{Memory, MmId, VmaKind};
use swapvm_core::{Pfn, Pte, PteKind, SwpEntry, VmEvent, Vpn, WarnSite};
use swapvm_swap::SwapSubsystem;

/// What the page cache holds at one index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShmemEntry {
    /// A hole: reads as zeros, allocated at the first fault.
    #[default]
    None,
    /// A resident folio.
    Folio(Pfn),
    /// The page is in swap (a value entry); the page cache owns one count.
    Swap(SwpEntry),
}

/// One inode (`struct shmem_inode_info` and its `address_space`).
#[derive(Debug, Clone, Default)]
pub struct ShmemInode {
    /// The page cache, one entry per page of the file.
    pub pages: Vec<ShmemEntry>,
    /// Mappings: `(mm, vma start)` of each VMA mapping the inode
    /// (`mapping->i_mmap`).
    pub i_mmap: Vec<(MmId, u64)>,
    /// Unlinked: freed when the last mapping goes.
    pub unlinked: bool,
}

/// All inodes of the machine's tmpfs.
#[derive(Debug, Default)]
pub struct Shmem {
    inodes: Vec<Option<ShmemInode>>,
}

impl Shmem {
    /// The inode `ino`, if it exists.
    pub fn inode(&self, ino: u32) -> Option<&ShmemInode> {
        self.inodes.get(ino as usize)?.as_ref()
    }
    fn inode_mut(&mut self, ino: u32) -> Option<&mut ShmemInode> {
        self.inodes.get_mut(ino as usize)?.as_mut()
    }
    /// Live inodes as `(ino, inode)`.
    pub fn inodes(&self) -> impl Iterator<Item = (u32, &ShmemInode)> {
        self.inodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i as u32, n)))
    }
    pub(crate) fn i_mmap_insert(&mut self, ino: u32, mm: MmId, start: u64) {
        if let Some(n) = self.inode_mut(ino) {
            n.i_mmap.push((mm, start));
        }
    }
    /// The `i`-th mapping of `ino`, for allocation-free rmap walks.
    pub(crate) fn i_mmap_nth(&self, ino: u32, i: usize) -> Option<(MmId, u64)> {
        self.inode(ino)?.i_mmap.get(i).copied()
    }
    /// The page cache entry at `index`.
    pub fn entry(&self, ino: u32, index: u64) -> ShmemEntry {
        self.inode(ino)
            .and_then(|n| n.pages.get(index as usize).copied())
            .unwrap_or_default()
    }
    fn set_entry(&mut self, ino: u32, index: u64, e: ShmemEntry) {
        if let Some(s) = self
            .inode_mut(ino)
            .and_then(|n| n.pages.get_mut(index as usize))
        {
            *s = e;
        }
    }
}

const SHMEM_SWAPIN: WarnSite = WarnSite {
    func: "shmem_swapin_folio",
    rule: "swap-in could not bind the swap cache",
};

impl Memory {
    /// Creates a tmpfs file of `pages` pages (all holes).
    pub fn shmem_create(&mut self, pages: u64) -> u32 {
        self.shmem.inodes.push(Some(ShmemInode {
            pages: vec![ShmemEntry::None; pages as usize],
            i_mmap: Vec::new(),
            unlinked: false,
        }));
        (self.shmem.inodes.len() - 1) as u32
    }

    /// `mmap(MAP_SHARED)` of `pages` pages of inode `ino` from page `pgoff`.
    /// `None` if the inode does not exist.
    pub fn mmap_shmem(&mut self, id: MmId, ino: u32, pgoff: u64, pages: u64) -> Option<Vpn> {
        self.shmem.inode(ino)?;
        Some(self.mmap_region(id, pages, VmaKind::Shmem { inode: ino, pgoff }))
    }

    /// `mmap(MAP_SHARED|MAP_ANONYMOUS)`: a new unlinked inode, mapped.
    pub fn mmap_shared_anon(&mut self, id: MmId, pages: u64) -> Vpn {
        let ino = self.shmem_create(pages);
        if let Some(n) = self.shmem.inode_mut(ino) {
            n.unlinked = true;
        }
        self.mmap_region(
            id,
            pages,
            VmaKind::Shmem {
                inode: ino,
                pgoff: 0,
            },
        )
    }

    /// The fault of a shared shmem mapping (`shmem_fault` then
    /// `finish_fault`): maps the page cache folio, allocating a zeroed one
    /// in a hole and swapping in a swapped one.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn shmem_fault(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        ino: u32,
        index: u64,
        leaf: (u32, usize),
        write: bool,
        now: u64,
    ) -> Result<(), FaultStop> {
        let Some(n) = self.shmem.inode(ino) else {
            return Err(FaultStop::SigBus);
        };
        if index >= n.pages.len() as u64 {
            // Beyond i_size.
            return Err(FaultStop::SigBus);
        }
        let pfn = match self.shmem.entry(ino, index) {
            ShmemEntry::Folio(pfn) => pfn,
            ShmemEntry::None => {
                let pfn = self
                    .alloc_frame(false)
                    .ok_or(FaultStop::Retry(Wait::Memory))?;
                self.mem_cgroup_charge(pfn, self.mm_memcg(id))
                    .map_err(|m| FaultStop::Retry(Wait::Memcg(m)))?;
                self.ram.page_mut(pfn).fill(0);
                let p = self.folios.get_mut(pfn);
                p.set(pg::SHMEM | pg::SWAPBACKED | pg::UPTODATE | pg::DIRTY);
                p.mapping = ino;
                p.index = index;
                self.lru.add(&mut self.folios, pfn);
                self.shmem.set_entry(ino, index, ShmemEntry::Folio(pfn));
                pfn
            }
            ShmemEntry::Swap(entry) => self.shmem_swapin_folio(swap, ino, index, entry, now)?,
        };
        let p = self.folios.get(pfn);
        if p.test(pg::LOCKED) {
            return Err(FaultStop::Retry(Wait::Folio(pfn)));
        }
        self.folios.get_mut(pfn).mapcount += 1;
        if write {
            self.folios.get_mut(pfn).set(pg::DIRTY);
        }
        self.pt.set_pte(leaf, Pte::present(pfn, write, true, write));
        self.mm_mut(id).rss_shmem += 1;
        Ok(())
    }

    /// A write to a present, write-protected PTE of a shared mapping
    /// (`wp_page_shared`): no copy, the PTE becomes writable and the folio
    /// dirty.
    pub(crate) fn shmem_wp_page(&mut self, leaf: (u32, usize)) {
        let pte = self.pt.pte(leaf);
        self.folios.get_mut(pte.pfn()).set(pg::DIRTY);
        self.pt
            .set_pte(leaf, pte.with(Pte::WRITE | Pte::DIRTY | Pte::ACCESSED));
    }

    /// `shmem_swapin_folio`: brings the page at `index` back from `entry`.
    /// A folio already in the swap cache, read and unlocked, returns to the
    /// page cache at once; otherwise a read is started and the caller
    /// retries after it.
    pub(crate) fn shmem_swapin_folio(
        &mut self,
        swap: &mut SwapSubsystem,
        ino: u32,
        index: u64,
        entry: SwpEntry,
        now: u64,
    ) -> Result<Pfn, FaultStop> {
        if let Some(pfn) = swap.swap_cache_get_folio(entry) {
            let p = *self.folios.get(pfn);
            if p.test(pg::LOCKED | pg::WRITEBACK) {
                return Err(FaultStop::Retry(Wait::Folio(pfn)));
            }
            if p.test(pg::IO_ERROR) {
                return Err(FaultStop::SigBus);
            }
            self.stat.inc(VmEvent::SwapCacheHit);
            self.swap_update_readahead(swap, pfn, None);
            // Context: folio locked and in the swap cache; the inode's
            // mapping lock (this single-threaded path) covers the entry.
            self.folios.get_mut(pfn).set(pg::LOCKED);
            swap.folio_put_swap(&self.folios.folio(pfn), None);
            let mut f = self.folios.folio(pfn);
            swap.swap_cache_del_folio(&mut f, None);
            let p = self.folios.get_mut(pfn);
            p.clear(pg::LOCKED | pg::ANON);
            // Its swap copy is gone: only this folio holds the data.
            p.set(pg::SHMEM | pg::SWAPBACKED | pg::DIRTY);
            p.mapping = ino;
            p.index = index;
            self.shmem.set_entry(ino, index, ShmemEntry::Folio(pfn));
            return Ok(pfn);
        }
        let pfn = self
            .alloc_frame(false)
            .ok_or(FaultStop::Retry(Wait::Memory))?;
        let owner = crate::memcg::MemcgId(swap.lookup_swap_cgroup_id(entry));
        self.mem_cgroup_charge(pfn, owner)
            .map_err(|m| FaultStop::Retry(Wait::Memcg(m)))?;
        self.folios.get_mut(pfn).set(pg::SWAPBACKED | pg::LOCKED);
        let shadow = match swap.swap_cache_add_folio(&mut self.folios.folio(pfn), entry) {
            Ok(shadow) => shadow,
            Err(e) => {
                self.warn
                    .warn_on(true, SHMEM_SWAPIN, || format!("{entry:?} ino {ino}: {e}"));
                self.folios.get_mut(pfn).clear(pg::LOCKED);
                self.free_frame(pfn);
                return Err(FaultStop::SigBus);
            }
        };
        self.count_event(owner, VmEvent::PgMajFault, 1);
        if let Some(shadow) = shadow {
            self.workingset_refault(pfn, shadow);
        }
        self.lru.add(&mut self.folios, pfn);
        if swap.swap_zeromap_test(entry, 1) {
            self.ram.page_mut(pfn).fill(0);
            let p = self.folios.get_mut(pfn);
            p.set(pg::UPTODATE);
            p.clear(pg::LOCKED);
            self.count_event(owner, VmEvent::SwpinZero, 1);
            return self.shmem_swapin_folio(swap, ino, index, entry, now);
        }
        let r = self.swap_read_start(swap, pfn, entry, 1, now);
        if r != FaultStop::SigBus {
            // shmem_swapin_cluster: readahead by swap offset.
            self.swap_cluster_readahead(swap, entry, now);
        }
        Err(r)
    }

    /// `shmem_writeout`: moves an unmapped shmem folio from the page cache
    /// to the swap cache, its swap entry taking its place in the page cache.
    /// The caller then writes it out (`swap_writeout`).
    ///
    /// # Context
    /// Folio locked, isolated, unmapped, in the page cache.
    ///
    /// # Errors
    /// The swap layer's (no space, continuation); the folio is unchanged.
    pub fn shmem_writeout(
        &mut self,
        swap: &mut SwapSubsystem,
        pfn: Pfn,
        cpu: usize,
    ) -> Result<SwpEntry, swapvm_swap::SwapError> {
        let p = *self.folios.get(pfn);
        debug_assert!(p.test(pg::SHMEM) && p.mapcount == 0);
        let entry = swap.folio_alloc_swap(&mut self.folios.folio(pfn), cpu)?;
        if let Err(e) = swap.folio_dup_swap(&self.folios.folio(pfn), None) {
            // Nothing owns the slots yet: dropping the binding frees them.
            swap.folio_free_swap(&mut self.folios.folio(pfn));
            return Err(e);
        }
        self.shmem
            .set_entry(p.mapping, p.index, ShmemEntry::Swap(entry));
        let f = self.folios.get_mut(pfn);
        f.clear(pg::SHMEM);
        f.mapping = NO_MAPPING;
        f.set(pg::DIRTY);
        Ok(entry)
    }

    /// `unmap_mapping_range` for pages `[from, to)` of `ino`: zaps the PTEs
    /// of every mapping that maps them.
    fn shmem_unmap_range(&mut self, swap: &mut SwapSubsystem, ino: u32, from: u64, to: u64) {
        let mut i = 0;
        while let Some((mm, start)) = self.shmem.i_mmap_nth(ino, i) {
            i += 1;
            let Some(v) = self
                .mms
                .get(mm.0 as usize)
                .and_then(Option::as_ref)
                .and_then(|m| m.vmas.get(&start))
            else {
                continue;
            };
            let VmaKind::Shmem { pgoff, .. } = v.kind else {
                continue;
            };
            let lo = from.max(pgoff);
            let hi = to.min(pgoff + v.pages());
            if lo < hi {
                let s = v.start.add(lo - pgoff);
                let e = v.start.add(hi - pgoff);
                self.zap_range(swap, mm, s, e);
            }
        }
    }

    /// `shmem_truncate_range` to `pages`: pages from `pages` on are
    /// unmapped and dropped, their swap entries put; the file shrinks.
    pub fn shmem_truncate(&mut self, swap: &mut SwapSubsystem, ino: u32, pages: u64) {
        let Some(len) = self.shmem.inode(ino).map(|n| n.pages.len() as u64) else {
            return;
        };
        if pages >= len {
            return;
        }
        self.shmem_unmap_range(swap, ino, pages, len);
        for index in pages..len {
            match self.shmem.entry(ino, index) {
                ShmemEntry::None => {}
                ShmemEntry::Folio(pfn) => {
                    self.shmem.set_entry(ino, index, ShmemEntry::None);
                    let p = self.folios.get_mut(pfn);
                    p.clear(pg::SHMEM | pg::DIRTY);
                    p.mapping = NO_MAPPING;
                    self.try_free_folio(swap, pfn);
                }
                ShmemEntry::Swap(entry) => {
                    self.shmem.set_entry(ino, index, ShmemEntry::None);
                    // Context: the inode's mapping lock.
                    let lock = swap
                        .lockdep()
                        .lock(swapvm_core::LockClass::Mapping { mapping: ino });
                    let put = swap.swap_put_entries_direct(entry, 1);
                    drop(lock);
                    for pfn in put.cached {
                        self.try_free_folio(swap, pfn);
                    }
                }
            }
        }
        if let Some(n) = self.shmem.inode_mut(ino) {
            n.pages.truncate(pages as usize);
        }
    }

    /// Grows inode `ino` to at least `pages` pages with holes (`ftruncate`
    /// upwards).
    pub fn shmem_grow(&mut self, ino: u32, pages: u64) {
        if let Some(n) = self.shmem.inode_mut(ino) {
            if (n.pages.len() as u64) < pages {
                n.pages.resize(pages as usize, ShmemEntry::None);
            }
        }
    }

    /// Unlinks inode `ino`: it is freed once no VMA maps it.
    pub fn shmem_unlink(&mut self, swap: &mut SwapSubsystem, ino: u32) {
        if let Some(n) = self.shmem.inode_mut(ino) {
            n.unlinked = true;
        }
        self.shmem_maybe_evict(swap, ino);
    }

    /// `shmem_evict_inode` of an unlinked inode nothing maps any more.
    pub(crate) fn shmem_maybe_evict(&mut self, swap: &mut SwapSubsystem, ino: u32) {
        let Some(n) = self.shmem.inode(ino) else {
            return;
        };
        if n.unlinked && n.i_mmap.is_empty() {
            self.shmem_truncate(swap, ino, 0);
            self.shmem.inodes[ino as usize] = None;
        }
    }

    /// Drops VMA `(id, start)` from the i_mmap of `ino`.
    pub(crate) fn shmem_unlink_vma(
        &mut self,
        swap: &mut SwapSubsystem,
        ino: u32,
        id: MmId,
        start: u64,
    ) {
        if let Some(n) = self.shmem.inode_mut(ino) {
            n.i_mmap.retain(|&(m, s)| !(m == id && s == start));
        }
        self.shmem_maybe_evict(swap, ino);
    }

    /// `try_to_unmap` of a shmem folio: every PTE mapping it is cleared
    /// (the page cache still holds it; a later access faults it back in),
    /// the PTE dirty bit moving to the folio.
    pub(crate) fn try_to_unmap_shmem(&mut self, pfn: Pfn) {
        self.rmap_walk(pfn, |m, mm, _, leaf| {
            if let PteKind::Present { dirty, .. } = m.pt.pte(leaf).kind() {
                if dirty {
                    m.folios.get_mut(pfn).set(pg::DIRTY);
                }
            }
            m.pt.set_pte(leaf, Pte::NONE);
            m.folios.get_mut(pfn).mapcount -= 1;
            m.mm_mut(mm).rss_shmem -= 1;
            true
        });
    }
}
