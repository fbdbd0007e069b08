//! [`PageCodec`]: zram's page compression, for other users of compressed
//! pages (zswap). One owner of "how a page compresses": the same
//! same-filled test and the same two compressors as [`crate::ZramEngine`].

use crate::zram::{Codec, Slot};
use crate::{Compressor, BLOCK_SIZE};
use std::io;

/// One page as a compressor leaves it.
#[derive(Debug)]
pub struct CompressedPage(Slot);

impl CompressedPage {
    /// The word the page repeats, if it is one 8-byte word repeated
    /// (zram's `ZRAM_SAME`, zswap's same-filled pages): no data to store.
    pub fn same_fill(&self) -> Option<u64> {
        match self.0 {
            Slot::Same { fill } => Some(fill),
            _ => None,
        }
    }

    /// Bytes of the compressed form, `None` when compressing did not make
    /// the page smaller than [`BLOCK_SIZE`] (zram's `ZRAM_HUGE`, zswap's
    /// `reject_compress_poor`), 0 for a same-filled page.
    pub fn compressed_len(&self) -> Option<usize> {
        match &self.0 {
            Slot::Empty | Slot::Same { .. } => Some(0),
            Slot::Compressed(data) => Some(data.len()),
            Slot::Huge(_) => None,
        }
    }
}

/// A compressor with the contexts it reuses from page to page.
pub struct PageCodec(Codec);

impl std::fmt::Debug for PageCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageCodec").finish_non_exhaustive()
    }
}

impl PageCodec {
    /// A codec that compresses with `comp`.
    pub fn new(comp: Compressor) -> PageCodec {
        PageCodec(Codec::new(comp))
    }

    /// Compresses one page of [`BLOCK_SIZE`] bytes.
    ///
    /// # Errors
    /// The compression library's failure (not expected of a working one).
    pub fn compress(&mut self, page: &[u8]) -> io::Result<CompressedPage> {
        debug_assert_eq!(page.len(), BLOCK_SIZE);
        self.0
            .encode(page)
            .map(CompressedPage)
            .map_err(io::Error::other)
    }

    /// Fills `page` ([`BLOCK_SIZE`] bytes) from `c`.
    ///
    /// # Errors
    /// `InvalidData` when `c` does not decompress to a whole page.
    pub fn decompress(&mut self, c: &CompressedPage, page: &mut [u8]) -> io::Result<()> {
        self.0
            .decode(&c.0, page)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_round_trip_and_report_their_kind() {
        for comp in [Compressor::Lz4, Compressor::Zstd { level: 1 }] {
            let mut codec = PageCodec::new(comp);
            let zero = vec![0u8; BLOCK_SIZE];
            let c = codec.compress(&zero).unwrap();
            assert_eq!(c.same_fill(), Some(0));
            let mut stamp = vec![0u8; BLOCK_SIZE];
            stamp[..24].copy_from_slice(&[7u8; 24]);
            stamp[3] = 9;
            let c = codec.compress(&stamp).unwrap();
            let len = c.compressed_len().unwrap();
            assert!(len > 0 && len < 200, "{len}");
            let mut back = vec![1u8; BLOCK_SIZE];
            codec.decompress(&c, &mut back).unwrap();
            assert_eq!(back, stamp);
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let noise: Vec<u8> = (0..BLOCK_SIZE)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let c = codec.compress(&noise).unwrap();
            assert_eq!(c.compressed_len(), None);
            codec.decompress(&c, &mut back).unwrap();
            assert_eq!(back, noise);
        }
    }
}
