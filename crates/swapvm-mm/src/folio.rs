//! Per-frame metadata (`struct page` / `struct folio`) and folio handles.
//!
//! One [`Page`] per frame, 32 bytes: flags, order, mapcount, the mapping
//! (anon_vma, shmem inode or KSM stable node) and linear index used by rmap,
//! and `folio->swap`. Only a folio's head frame carries meaning (swapvm has
//! order-0 folios for now). The LRU links (the kernel's `folio->lru`) are
//! in an array of their own beside the pages, 8 bytes per frame: a list
//! walk (reclaim isolating from the tail) then chases links through that
//! compact array instead of one 40-byte page per step, and a page is half
//! a cache line, never split across two.

use swapvm_core::list::{Link, Linked};
use swapvm_core::{Order, Pfn, SwpEntry};
use swapvm_swap::SwapFolio;

/// Folio flag bits (`PG_*`).
pub mod pg {
    /// `PG_locked`: owned by an I/O or a reclaim pass.
    pub const LOCKED: u32 = 1 << 0;
    /// `PG_uptodate`: the bytes are valid.
    pub const UPTODATE: u32 = 1 << 1;
    /// `PG_dirty`: differs from its swap copy (or has none).
    pub const DIRTY: u32 = 1 << 2;
    /// `PG_writeback`: a swap write is in flight.
    pub const WRITEBACK: u32 = 1 << 3;
    /// `PG_swapbacked`: anonymous or shmem memory.
    pub const SWAPBACKED: u32 = 1 << 4;
    /// `PG_active`: on (or bound for) the active list.
    pub const ACTIVE: u32 = 1 << 5;
    /// `PG_referenced`: seen referenced by a previous scan.
    pub const REFERENCED: u32 = 1 << 6;
    /// `PG_lru`: on an LRU list.
    pub const LRU: u32 = 1 << 7;
    /// Anonymous folio (mapping is an anon_vma).
    pub const ANON: u32 = 1 << 8;
    /// In use (allocated frame).
    pub const ALLOCATED: u32 = 1 << 9;
    /// `PG_reclaim`: reclaim wrote it out and frees it when the write ends.
    pub const RECLAIM: u32 = 1 << 10;
    /// The reclaim that wrote it out was direct reclaim (for pgsteal_direct).
    pub const RECLAIM_DIRECT: u32 = 1 << 11;
    /// A swap read failed: the bytes are not valid (SIGBUS on map).
    pub const IO_ERROR: u32 = 1 << 12;
    /// A shmem folio: `mapping` is its inode, `index` its page offset in
    /// the file. Swap-backed, not anonymous.
    pub const SHMEM: u32 = 1 << 13;
    /// A KSM folio (`folio_test_ksm`): anonymous, write-protected wherever
    /// mapped, `mapping` is its stable node.
    pub const KSM: u32 = 1 << 14;
    /// A tail frame of a large folio: `mapping` holds its head's pfn; all
    /// other metadata is the head's.
    pub const TAIL: u32 = 1 << 15;
    /// `PG_workingset`: the folio was deactivated from the active list (or
    /// refaulted while in the workingset); an eviction records it in the
    /// shadow so a refault can count `workingset_restore_anon`.
    pub const WORKINGSET: u32 = 1 << 16;
    /// `PG_readahead`: swap readahead brought it in (not the faulting
    /// entry itself); the first swap-cache hit on it clears the flag and
    /// counts `swap_ra_hit`.
    pub const READAHEAD: u32 = 1 << 17;
    /// `PGTY_zsmalloc`: a frame of the zswap pool (not a folio: off the
    /// LRU, unmapped, no I/O; see [`crate::zswap`]).
    pub const ZSMALLOC: u32 = 1 << 18;
}

/// No mapping (`folio->mapping == NULL`).
pub const NO_MAPPING: u32 = u32::MAX;

/// Metadata of one frame. Aligned to its size, so that no page straddles
/// two cache lines.
#[derive(Clone, Copy, Debug, Default)]
#[repr(align(32))]
pub struct Page {
    /// `PG_*` bits, see [`pg`].
    pub flags: u32,
    /// Folio order (head only).
    pub order: u8,
    /// Page-table mappings of the folio (head only).
    pub mapcount: i32,
    /// `folio->mapping`: the anon_vma index of an anonymous folio, the
    /// inode of a shmem folio ([`pg::SHMEM`]), the stable node of a KSM
    /// folio ([`pg::KSM`]); [`NO_MAPPING`] if none.
    pub mapping: u32,
    /// `folio->index`: the vpn of an anonymous folio (linear in every VMA
    /// of its anon_vma, which all share the layout fork copied), the page
    /// offset in the file of a shmem folio.
    pub index: u64,
    /// `folio->swap` while in the swap cache.
    pub swap: Option<SwpEntry>,
    /// `folio_memcg`: the id of the memory cgroup the folio is charged to
    /// (head only; 0 is the root).
    pub memcg: u16,
}

const _: () = assert!(std::mem::size_of::<Page>() == 32);

impl Page {
    /// Tests flag bits.
    #[inline]
    pub fn test(&self, f: u32) -> bool {
        self.flags & f != 0
    }
    /// Sets flag bits.
    #[inline]
    pub fn set(&mut self, f: u32) {
        self.flags |= f;
    }
    /// Clears flag bits.
    #[inline]
    pub fn clear(&mut self, f: u32) {
        self.flags &= !f;
    }
}

/// All frames' metadata.
#[derive(Debug)]
pub struct Folios {
    pages: Vec<Page>,
    /// The LRU links of each frame (`folio->lru`), by pfn. A frame off
    /// every list has the default (unlinked) links.
    lru: Vec<Link>,
}

impl Folios {
    /// `nr` free frames.
    pub fn new(nr: u32) -> Self {
        Folios {
            pages: vec![
                Page {
                    mapping: NO_MAPPING,
                    ..Page::default()
                };
                nr as usize
            ],
            lru: vec![Link::default(); nr as usize],
        }
    }
    /// Frames.
    pub fn len(&self) -> u32 {
        self.pages.len() as u32
    }
    /// True if there are no frames.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }
    /// Host bytes of the frames' metadata, by capacity: (`struct Page`
    /// array, LRU links).
    pub fn host_bytes(&self) -> (u64, u64) {
        let bytes = |cap: usize, each: usize| (cap * each) as u64;
        (
            bytes(self.pages.capacity(), std::mem::size_of::<Page>()),
            bytes(self.lru.capacity(), std::mem::size_of::<Link>()),
        )
    }
    /// Frame `pfn`'s metadata.
    #[inline]
    pub fn get(&self, pfn: Pfn) -> &Page {
        &self.pages[pfn.idx()]
    }
    /// Frame `pfn`'s metadata, mutably.
    #[inline]
    pub fn get_mut(&mut self, pfn: Pfn) -> &mut Page {
        &mut self.pages[pfn.idx()]
    }
    /// A handle on folio `pfn` that the swap layer accepts.
    pub fn folio(&mut self, pfn: Pfn) -> FolioMut<'_> {
        FolioMut {
            pfn,
            page: &mut self.pages[pfn.idx()],
        }
    }
}

impl Linked for Folios {
    fn link(&mut self, i: u32) -> &mut Link {
        &mut self.lru[i as usize]
    }
}

/// A mutable view of one folio, as the swap layer sees it.
#[derive(Debug)]
pub struct FolioMut<'a> {
    pfn: Pfn,
    /// The head frame's metadata.
    pub page: &'a mut Page,
}

impl SwapFolio for FolioMut<'_> {
    fn pfn(&self) -> Pfn {
        self.pfn
    }
    fn order(&self) -> Order {
        Order::new(self.page.order)
    }
    fn is_locked(&self) -> bool {
        self.page.test(pg::LOCKED)
    }
    fn is_writeback(&self) -> bool {
        self.page.test(pg::WRITEBACK)
    }
    fn swap(&self) -> Option<SwpEntry> {
        self.page.swap
    }
    fn set_swap(&mut self, entry: Option<SwpEntry>) {
        self.page.swap = entry;
    }
    fn memcg_id(&self) -> u16 {
        self.page.memcg
    }
}
