//! Host memory of the structures that grow with emulated RAM: what one
//! emulated 4 KiB page costs the host (the kernel's `struct page`, its
//! page-table share and its LRU links).
//!
//! Every figure is a capacity (what the structure holds allocated, used or
//! not), so it is a property of the run's structures, not a measurement of
//! the process: the same machine and workload give the same figures.

use crate::memory::Memory;

/// The per-frame structures of one [`Memory`], in host bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmFootprint {
    /// Emulated frames.
    pub frames: u64,
    /// The `struct Page` array.
    pub page_bytes: u64,
    /// The LRU links (`folio->lru`), one pair per frame.
    pub lru_bytes: u64,
    /// The frames' content words on a metadata-only machine (0 with page
    /// bytes: those are the emulated RAM itself, [`Self::ram_bytes`]).
    pub content_bytes: u64,
    /// The page-table slab, its free list and the leaf cache.
    pub page_table_bytes: u64,
    /// The buddy allocator's free-area bitmaps.
    pub buddy_bytes: u64,
    /// The RAM arena with page bytes (`machine.content = "full"`), not
    /// metadata; 0 on a metadata-only machine.
    pub ram_bytes: u64,
}

impl MmFootprint {
    /// Metadata bytes: everything but the page bytes of a full machine.
    pub fn metadata_bytes(&self) -> u64 {
        self.page_bytes
            + self.lru_bytes
            + self.content_bytes
            + self.page_table_bytes
            + self.buddy_bytes
    }

    /// Metadata bytes per emulated frame (0 for a machine of no frames).
    pub fn bytes_per_page(&self) -> f64 {
        if self.frames == 0 {
            return 0.0;
        }
        self.metadata_bytes() as f64 / self.frames as f64
    }
}

impl Memory {
    /// The host bytes of the structures that grow with RAM; see
    /// [`MmFootprint`].
    pub fn footprint(&self) -> MmFootprint {
        let (page_bytes, lru_bytes) = self.folios.host_bytes();
        let arena = self.ram.mapped_bytes() as u64;
        let (content_bytes, ram_bytes) = if self.ram.has_bytes() {
            (0, arena)
        } else {
            (arena, 0)
        };
        MmFootprint {
            frames: self.nr_frames(),
            page_bytes,
            lru_bytes,
            content_bytes,
            page_table_bytes: self.pt.host_bytes(),
            buddy_bytes: self.buddy.host_bytes(),
            ram_bytes,
        }
    }
}
