//! The memory of one machine: frames, address spaces, VMAs, anon_vmas, the
//! zone's free frames and watermarks (mm/page_alloc.c, mm/mmap.c).

use crate::folio::{pg, Folios};
use crate::lru::Lruvecs;
use crate::memcg::{MemCgroups, MemcgId};
use crate::pgtable::{PageTables, TableId};
use crate::ram::Ram;
use std::sync::Arc;
use swapvm_core::{Pfn, VmEvent, VmStat, Vpn, Warnings};

/// Address-space id (one per process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MmId(pub u32);

/// What backs a VMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmaKind {
    /// Private anonymous memory (`MAP_PRIVATE|MAP_ANONYMOUS`): folios on
    /// the VMA's anon_vma chain, copy-on-write across fork.
    Anon,
    /// A shared mapping of shmem inode `inode` from file page `pgoff`
    /// (`MAP_SHARED` of a tmpfs file, or `MAP_SHARED|MAP_ANONYMOUS`, which
    /// the kernel backs with an unlinked shmem inode too).
    Shmem {
        /// The inode.
        inode: u32,
        /// File page mapped at `start`.
        pgoff: u64,
    },
}

/// `VM_*` flags swapvm models.
pub mod vm {
    /// `VM_MERGEABLE`: KSM may merge the VMA's anonymous pages
    /// (`MADV_MERGEABLE`).
    pub const MERGEABLE: u32 = 1 << 0;
    /// `VM_HUGEPAGE`: sizes set to `madvise` may be allocated here
    /// (`MADV_HUGEPAGE`).
    pub const HUGEPAGE: u32 = 1 << 1;
    /// `VM_NOHUGEPAGE`: no large anonymous folios here (`MADV_NOHUGEPAGE`).
    pub const NOHUGEPAGE: u32 = 1 << 2;
}

/// A virtual memory area (`struct vm_area_struct`).
#[derive(Clone, Debug)]
pub struct Vma {
    /// First page.
    pub start: Vpn,
    /// One past the last page.
    pub end: Vpn,
    /// What backs it.
    pub kind: VmaKind,
    /// `VM_*` bits, see [`vm`].
    pub flags: u32,
    /// Its own anon_vma, made at the first anonymous fault
    /// (`anon_vma_prepare`) or at fork; always on `chain` too.
    pub anon_vma: Option<u32>,
    /// The anon_vma chain: every anon_vma this VMA is linked into, its own
    /// and its ancestors' (fork links a child VMA into each of the parent
    /// VMA's), so an rmap walk from any folio it may map finds it.
    pub chain: Vec<u32>,
}

impl Vma {
    /// Pages.
    pub fn pages(&self) -> u64 {
        self.end.0 - self.start.0
    }
}

/// One address space (`struct mm_struct`).
#[derive(Debug)]
pub struct MmStruct {
    /// Root of the page tables.
    pub pgd: TableId,
    /// VMAs by start page.
    pub vmas: crate::vma_map::VmaMap,
    /// Resident anonymous pages (`MM_ANONPAGES`).
    pub rss_anon: u64,
    /// Resident shmem pages (`MM_SHMEMPAGES`).
    pub rss_shmem: u64,
    /// Swap entries in the page tables (`MM_SWAPENTS`).
    pub rss_swap: u64,
    /// The memcg its memory is charged to (`mm->owner`'s memcg).
    pub memcg: MemcgId,
    pub(crate) next_va: u64,
}

pub use crate::anon_vma::{AnonVma, AnonVmaChain};

/// Zone watermarks in frames (`WMARK_MIN/LOW/HIGH`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watermarks {
    /// Below this only reclaim may allocate; faults enter direct reclaim.
    pub min: u64,
    /// Below this kswapd is woken.
    pub low: u64,
    /// kswapd reclaims until free frames reach this.
    pub high: u64,
}

impl Watermarks {
    /// The kernel's derivation (`__setup_per_zone_wmarks`): min from
    /// `min_free_kbytes` (default `sqrt(16 * RAM in KiB)`, clamped to
    /// 128 KiB..256 MiB), then low and high each a further
    /// `max(min / 4, RAM * watermark_scale_factor / 10000)` above.
    pub fn derive(
        ram_pages: u64,
        min_free_kbytes: Option<u64>,
        watermark_scale_factor: u32,
    ) -> Self {
        let ram_kb = ram_pages * 4;
        let min_kb = min_free_kbytes
            .unwrap_or_else(|| ((16 * ram_kb) as f64).sqrt() as u64)
            .clamp(128, 262_144);
        let min = (min_kb / 4).min(ram_pages / 4);
        let step = (min / 4).max(ram_pages * u64::from(watermark_scale_factor) / 10_000);
        Watermarks {
            min,
            low: min + step,
            high: min + 2 * step,
        }
    }
}

/// All memory state of a machine.
#[derive(Debug)]
pub struct Memory {
    /// Page content: the bytes, or each frame's content word on a
    /// metadata-only machine (see [`Ram`]).
    pub ram: Ram,
    /// Per-frame metadata.
    pub folios: Folios,
    /// Page-table slab.
    pub pt: PageTables,
    /// Address spaces by id.
    pub mms: Vec<Option<MmStruct>>,
    /// anon_vmas by index.
    pub anon_vmas: Vec<AnonVma>,
    /// The LRU lists, one lruvec per memcg.
    pub lru: Lruvecs,
    /// The memory cgroup hierarchy (the root alone without `[[cgroup]]`).
    pub memcg: MemCgroups,
    /// shmem inodes and their page caches.
    pub shmem: crate::shmem::Shmem,
    /// KSM: ksmd's scan state and the stable tree.
    pub ksm: crate::ksm::Ksm,
    /// Zone watermarks.
    pub wmark: Watermarks,
    pub(crate) buddy: crate::buddy::Buddy,
    /// mTHP orders anonymous faults may allocate in every VMA without
    /// `VM_NOHUGEPAGE`, largest first (`hugepages-<size>kB/enabled` resolving
    /// to `always`).
    pub anon_orders: Vec<u8>,
    /// mTHP orders allocated only in `VM_HUGEPAGE` VMAs (resolving to
    /// `madvise`), largest first.
    pub anon_orders_madvise: Vec<u8>,
    /// Swap large folios in whole from every device, not only from those
    /// with synchronous I/O (`[mthp] swapin_any_device`).
    pub swapin_any_device: bool,
    /// Swap readahead knobs and window history (swap_state.rs).
    pub swap_ra: crate::swap_state::SwapRaState,
    /// Shared counters.
    pub stat: Arc<VmStat>,
    /// Shared warning registry.
    pub warn: Arc<Warnings>,
    /// The frames the zswap pool takes (none without zswap).
    pub zswap_frames: crate::zswap::ZswapFrames,
    /// Set while swapoff's `unuse_pte` runs `do_swap_page` (only the seed
    /// bug switch `swapoff_put_on_ksm_copy` tells the two callers apart).
    pub(crate) unusing: bool,
}

/// First virtual address handed out by `mmap` (like a 64-bit mmap base).
pub const MMAP_BASE: u64 = 0x7f00_0000_0000;

impl Memory {
    /// A machine with `ram_pages` frames of 4 KiB of bytes, all free.
    pub fn new(
        ram_pages: u32,
        wmark: Watermarks,
        stat: Arc<VmStat>,
        warn: Arc<Warnings>,
    ) -> std::io::Result<Self> {
        Ok(Self::with_ram(Ram::new(ram_pages)?, wmark, stat, warn))
    }

    /// A machine whose frames are `ram`'s (full or metadata-only), all
    /// free.
    pub fn with_ram(ram: Ram, wmark: Watermarks, stat: Arc<VmStat>, warn: Arc<Warnings>) -> Self {
        let ram_pages = ram.frames();
        Memory {
            ram,
            folios: Folios::new(ram_pages),
            pt: PageTables::new(u64::from(ram_pages)),
            mms: Vec::new(),
            anon_vmas: Vec::new(),
            lru: Lruvecs::default(),
            memcg: MemCgroups::default(),
            shmem: crate::shmem::Shmem::default(),
            ksm: crate::ksm::Ksm::default(),
            wmark,
            buddy: crate::buddy::Buddy::new(ram_pages),
            anon_orders: Vec::new(),
            anon_orders_madvise: Vec::new(),
            swapin_any_device: false,
            swap_ra: Default::default(),
            zswap_frames: Default::default(),
            stat,
            warn,
            unusing: false,
        }
    }

    /// Sets up the memcg hierarchy (before any folio is allocated).
    pub fn set_memcgs(&mut self, memcg: MemCgroups) {
        self.lru.resize(memcg.len());
        self.memcg = memcg;
    }

    /// Free frames (`NR_FREE_PAGES`).
    pub fn nr_free(&self) -> u64 {
        self.buddy.nr_free()
    }
    /// Frames in RAM.
    pub fn nr_frames(&self) -> u64 {
        u64::from(self.folios.len())
    }

    /// Allocates one frame. An ordinary allocation fails below the min
    /// watermark (the caller enters reclaim and retries); `reserve` allows
    /// dipping into it (`ALLOC_HARDER`-style, for paths that free memory).
    pub fn alloc_frame(&mut self, reserve: bool) -> Option<Pfn> {
        self.alloc_folio(0, reserve)
    }

    /// Allocates a folio of `2^order` contiguous, aligned frames: the head
    /// carries the folio's metadata, the tails point at it. Fails below the
    /// min watermark unless `reserve`.
    pub fn alloc_folio(&mut self, order: u8, reserve: bool) -> Option<Pfn> {
        let nr = 1u64 << order;
        if !reserve && self.nr_free() < self.wmark.min + nr {
            return None;
        }
        let pfn = self.buddy.alloc(order)?;
        let p = self.folios.get_mut(pfn);
        debug_assert!(!p.test(pg::ALLOCATED));
        *p = crate::folio::Page {
            flags: pg::ALLOCATED,
            order,
            mapping: crate::folio::NO_MAPPING,
            ..Default::default()
        };
        for i in 1..nr as u32 {
            *self.folios.get_mut(Pfn(pfn.0 + i)) = crate::folio::Page {
                flags: pg::ALLOCATED | pg::TAIL,
                mapping: pfn.0,
                ..Default::default()
            };
        }
        self.stat.add(VmEvent::PgAlloc, nr);
        Some(pfn)
    }

    /// The head frame of the folio frame `pfn` belongs to (`page_folio`).
    #[inline]
    pub fn folio_of(&self, pfn: Pfn) -> Pfn {
        let p = self.folios.get(pfn);
        if p.test(pg::TAIL) {
            Pfn(p.mapping)
        } else {
            pfn
        }
    }

    /// Returns a folio's frames to the free pool.
    ///
    /// # Context
    /// Unmapped, off the LRU, not in the swap cache, no I/O.
    pub fn free_frame(&mut self, pfn: Pfn) {
        // mem_cgroup_uncharge: the charge ends with the folio.
        let p = self.folios.get(pfn);
        let (memcg, order) = (MemcgId(p.memcg), p.order);
        self.memcg.uncharge(memcg, 1 << order);
        self.release_frame(pfn);
    }

    /// [`Memory::free_frame`] of a folio that was never charged (its charge
    /// was refused).
    pub(crate) fn release_frame(&mut self, pfn: Pfn) {
        let p = self.folios.get_mut(pfn);
        assert!(
            p.test(pg::ALLOCATED)
                && !p.test(pg::TAIL)
                && p.mapcount == 0
                && p.swap.is_none()
                && !p.test(pg::LRU | pg::WRITEBACK),
            "freeing busy frame {pfn:?}: {p:?}"
        );
        if p.test(pg::KSM) {
            let node = p.mapping;
            self.ksm.node_freed(node);
        }
        let order = self.folios.get(pfn).order;
        for i in 0..1u32 << order {
            *self.folios.get_mut(Pfn(pfn.0 + i)) = crate::folio::Page {
                mapping: crate::folio::NO_MAPPING,
                ..Default::default()
            };
        }
        self.buddy.free(pfn, order);
        self.stat.add(VmEvent::PgFree, 1 << order);
    }

    /// Frees an isolated folio that nothing maps or caches any more (the
    /// end of the lazyfree branch of `shrink_folio_list`).
    ///
    /// # Context
    /// Folio unlocked, isolated, unmapped, not in the swap or page cache.
    pub fn lru_free_isolated(&mut self, pfn: Pfn) {
        self.free_frame(pfn);
    }

    /// Creates an empty address space.
    pub fn mm_create(&mut self) -> MmId {
        let pgd = self.pt.alloc_table();
        let mm = MmStruct {
            pgd,
            vmas: crate::vma_map::VmaMap::new(),
            rss_anon: 0,
            rss_shmem: 0,
            rss_swap: 0,
            memcg: MemcgId::ROOT,
            next_va: MMAP_BASE,
        };
        self.mms.push(Some(mm));
        MmId((self.mms.len() - 1) as u32)
    }

    /// The address space `id`.
    ///
    /// # Panics
    /// If it does not exist: ids come from [`Memory::mm_create`].
    #[inline]
    pub fn mm(&self, id: MmId) -> &MmStruct {
        self.mms[id.0 as usize].as_ref().expect("live mm")
    }
    /// The address space `id`, mutably.
    pub fn mm_mut(&mut self, id: MmId) -> &mut MmStruct {
        self.mms[id.0 as usize].as_mut().expect("live mm")
    }

    /// Maps `pages` anonymous pages (`mmap(MAP_PRIVATE|MAP_ANONYMOUS)`),
    /// returning the first page. Leaves a one-page guard gap after it.
    pub fn mmap_anon(&mut self, id: MmId, pages: u64) -> Vpn {
        self.mmap_region(id, pages, VmaKind::Anon)
    }

    /// Maps a VMA of `kind` at the next free address (`mmap_region`). A
    /// private anonymous mapping whose length is a multiple of the PMD size
    /// starts on a PMD boundary, as `__get_unmapped_area` places it
    /// (`thp_get_unmapped_area`, 6.12 and later), so its large folios and
    /// readahead windows fall where the kernel's do.
    pub fn mmap_region(&mut self, id: MmId, pages: u64, kind: VmaKind) -> Vpn {
        const PMD_PAGES: u64 = 512;
        let mm = self.mm_mut(id);
        let mut start = Vpn::from_addr(mm.next_va);
        if kind == VmaKind::Anon && pages % PMD_PAGES == 0 {
            start = Vpn(start.0.next_multiple_of(PMD_PAGES));
        }
        let end = start.add(pages);
        mm.next_va = end.add(1).addr();
        mm.vmas.insert(
            start.0,
            Vma {
                start,
                end,
                kind,
                flags: 0,
                anon_vma: None,
                chain: Vec::new(),
            },
        );
        if let VmaKind::Shmem { inode, .. } = kind {
            self.shmem.i_mmap_insert(inode, id, start.0);
        }
        start
    }

    /// The VMA containing `vpn`.
    #[inline]
    pub fn find_vma(&self, id: MmId, vpn: Vpn) -> Option<&Vma> {
        let v = self.mm(id).vmas.floor(vpn.0)?;
        (vpn < v.end).then_some(v)
    }

    /// `anon_vma_prepare`: the VMA's anon_vma, created on first use and
    /// linked into its chain.
    pub fn anon_vma_prepare(&mut self, id: MmId, vma_start: u64) -> u32 {
        if let Some(a) = self.mm(id).vmas.get(&vma_start).and_then(|v| v.anon_vma) {
            return a;
        }
        let a = self.anon_vma_alloc(id, vma_start, None);
        if let Some(v) = self.mm_mut(id).vmas.get_mut(&vma_start) {
            v.anon_vma = Some(a);
            v.chain.push(a);
        }
        a
    }

    /// A new anon_vma holding one VMA, in the fork family of `root`
    /// (`None`: a family of its own).
    pub(crate) fn anon_vma_alloc(&mut self, id: MmId, vma_start: u64, root: Option<u32>) -> u32 {
        let a = self.anon_vmas.len() as u32;
        let c = AnonVmaChain::new(id, vma_start);
        self.anon_vmas.push(AnonVma::new(c, root.unwrap_or(a)));
        a
    }

    /// `anon_vma->root` of anon_vma `a`.
    pub fn anon_vma_root(&self, a: u32) -> u32 {
        self.anon_vmas.get(a as usize).map_or(a, |av| av.root)
    }
}
