//! Emulated RAM: one anonymous memmap2 mapping whose bytes are the pages'
//! bytes, or, on a metadata-only machine (`machine.content = "none"`),
//! only each frame's content word.
//!
//! Every user goes through the same accessors in both modes: a "page" is
//! [`Ram::page_bytes`] bytes, 4 KiB in full mode and the 8-byte content
//! word in metadata-only mode. Zero-filling, copying (COW), the zeromap's
//! all-zero test and KSM's checksum and compare therefore run unchanged,
//! and decide the same way in both modes: the machine's content of a page
//! is a function of one content key (zero for the zero page), and the word
//! is that key, so two pages have equal words exactly when they have equal
//! bytes, and a zero word exactly when zero bytes.

use memmap2::MmapMut;
use swapvm_core::config::CONTENT_WORD_BYTES;
use swapvm_core::{Pfn, PAGE_SHIFT, PAGE_SIZE};

/// The frames' content.
#[derive(Debug)]
pub struct Ram {
    map: MmapMut,
    nr: u32,
    /// log2 of the bytes per frame (12, or 3 for a content word).
    shift: u32,
}

impl Ram {
    /// `nr` zeroed frames of 4 KiB each (`machine.content = "full"`).
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
        let ram = Self::with_shift(nr, PAGE_SHIFT)?;
        // A hint: without it the mapping still works, on 4 KiB pages.
        let _ = ram.map.advise(memmap2::Advice::HugePage);
        Ok(ram)
    }

    /// `nr` zeroed frames of one content word each, no page bytes
    /// (`machine.content = "none"`): 8 bytes of host memory per frame
    /// instead of 4 KiB, touched only when the frame is.
    pub fn metadata_only(nr: u32) -> std::io::Result<Ram> {
        Self::with_shift(nr, CONTENT_WORD_BYTES.trailing_zeros())
    }

    fn with_shift(nr: u32, shift: u32) -> std::io::Result<Ram> {
        let map = MmapMut::map_anon((nr as usize) << shift)?;
        Ok(Ram { map, nr, shift })
    }

    /// Frames.
    pub fn frames(&self) -> u32 {
        self.nr
    }
    /// Content bytes per frame: `PAGE_SIZE`, or `CONTENT_WORD_BYTES` on a
    /// metadata-only machine.
    #[inline]
    pub fn page_bytes(&self) -> usize {
        1 << self.shift
    }
    /// True when frames hold their 4 KiB of bytes.
    pub fn has_bytes(&self) -> bool {
        self.page_bytes() == PAGE_SIZE
    }
    /// Bytes mapped for page content, all frames (the RAM arena: RAM's
    /// size in full mode, one word per frame in metadata-only mode).
    pub fn mapped_bytes(&self) -> usize {
        self.map.len()
    }
    /// The content of frame `pfn`.
    #[inline]
    pub fn page(&self, pfn: Pfn) -> &[u8] {
        let o = pfn.idx() << self.shift;
        &self.map[o..o + self.page_bytes()]
    }
    /// The content of frame `pfn`, mutably.
    #[inline]
    pub fn page_mut(&mut self, pfn: Pfn) -> &mut [u8] {
        let o = pfn.idx() << self.shift;
        let n = self.page_bytes();
        &mut self.map[o..o + n]
    }
    /// The content of `nr` contiguous frames from `pfn` (a large folio).
    #[inline]
    pub fn pages(&self, pfn: Pfn, nr: usize) -> &[u8] {
        let o = pfn.idx() << self.shift;
        &self.map[o..o + (nr << self.shift)]
    }
    /// The content of `nr` contiguous frames from `pfn`, mutably.
    #[inline]
    pub fn pages_mut(&mut self, pfn: Pfn, nr: usize) -> &mut [u8] {
        let o = pfn.idx() << self.shift;
        &mut self.map[o..o + (nr << self.shift)]
    }
    /// Copies frame `src` to frame `dst` (`copy_user_highpage`).
    pub fn copy_page(&mut self, dst: Pfn, src: Pfn) {
        let (d, s, n) = (
            dst.idx() << self.shift,
            src.idx() << self.shift,
            self.page_bytes(),
        );
        self.map.copy_within(s..s + n, d);
    }
    /// Fills `nr` frames from `pfn` from `blocks`, one 4 KiB block per
    /// frame as a swap read returns them: each frame takes the start of
    /// its block (all of it in full mode).
    ///
    /// # Panics
    /// If `blocks` holds fewer than `nr` blocks: the caller's read was for
    /// `nr` pages.
    pub fn fill_from_blocks(&mut self, pfn: Pfn, nr: usize, blocks: &[u8]) {
        let n = self.page_bytes();
        let dst = self.pages_mut(pfn, nr);
        if n == PAGE_SIZE {
            dst.copy_from_slice(&blocks[..nr * PAGE_SIZE]);
        } else {
            for (d, b) in dst.chunks_exact_mut(n).zip(blocks.chunks_exact(PAGE_SIZE)) {
                d.copy_from_slice(&b[..n]);
            }
        }
    }
}
