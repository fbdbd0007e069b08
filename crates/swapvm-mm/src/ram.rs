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
    ///
    /// The mapping asks for transparent huge pages (`MADV_HUGEPAGE`; a
    /// hint, ignored where THP is off): every load checks the content stamp
    /// at the start of its frame, and with 4 KiB host pages a trace that
    /// moves over a few hundred frames missed the host's TLB on most of
    /// them (`perf` of a fits-in-RAM replay: about a tenth faster with huge
    /// pages). It costs little memory: the buddy allocator hands out the
    /// lowest free frames first, so the frames in use stay packed at the
    /// bottom of the mapping rather than spread over its huge pages.
    pub fn new(nr: u32) -> std::io::Result<Ram> {
        let map = MmapMut::map_anon(nr as usize * PAGE_SIZE)?;
        // A hint: without it the mapping still works, on 4 KiB pages.
        let _ = map.advise(memmap2::Advice::HugePage);
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
