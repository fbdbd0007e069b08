//! Emulated RAM: one anonymous memmap2 mapping whose bytes are the pages'
//! bytes.

use memmap2::MmapMut;
use swapvm_core::{Pfn, PAGE_SIZE};

/// The frames' bytes.
#[derive(Debug)]
pub struct Ram {
    map: MmapMut,
    nr: u32,
}

impl Ram {
    /// `nr` zeroed frames.
    pub fn new(nr: u32) -> std::io::Result<Ram> {
        let map = MmapMut::map_anon(nr as usize * PAGE_SIZE)?;
        Ok(Ram { map, nr })
    }
    /// Frames.
    pub fn frames(&self) -> u32 {
        self.nr
    }
    /// The bytes of frame `pfn`.
    #[inline]
    pub fn page(&self, pfn: Pfn) -> &[u8] {
        let o = pfn.idx() * PAGE_SIZE;
        &self.map[o..o + PAGE_SIZE]
    }
    /// The bytes of frame `pfn`, mutably.
    #[inline]
    pub fn page_mut(&mut self, pfn: Pfn) -> &mut [u8] {
        let o = pfn.idx() * PAGE_SIZE;
        &mut self.map[o..o + PAGE_SIZE]
    }
    /// The bytes of `nr` contiguous frames from `pfn` (a large folio).
    #[inline]
    pub fn pages(&self, pfn: Pfn, nr: usize) -> &[u8] {
        let o = pfn.idx() * PAGE_SIZE;
        &self.map[o..o + nr * PAGE_SIZE]
    }
    /// The bytes of `nr` contiguous frames from `pfn`, mutably.
    #[inline]
    pub fn pages_mut(&mut self, pfn: Pfn, nr: usize) -> &mut [u8] {
        let o = pfn.idx() * PAGE_SIZE;
        &mut self.map[o..o + nr * PAGE_SIZE]
    }
    /// Copies frame `src` to frame `dst` (`copy_user_highpage`).
    pub fn copy_page(&mut self, dst: Pfn, src: Pfn) {
        let (d, s) = (dst.idx() * PAGE_SIZE, src.idx() * PAGE_SIZE);
        self.map.copy_within(s..s + PAGE_SIZE, d);
    }
}
