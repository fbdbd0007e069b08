//! `ZramEngine`: a compressed swap device in memory, after the kernel's zram
//! (`drivers/block/zram/zram_drv.c`): the slot table, the two compressors,
//! and the zram counters. What is stored how is documented on
//! [`ZramEngine`], since this module is private.
//!
//! # Locking
//!
//! One mutex guards the slot table, the compressor's contexts and the
//! statistics, so each request applies whole with respect to other requests
//! and to [`ZramEngine::stats`], and the statistics always agree with the
//! table. A second mutex guards the completion queue. No code path holds
//! both.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::{BlockEngine, IoCompletion, IoError, IoKind, IoRequest, BLOCK_SIZE};

/// [`BLOCK_SIZE`] as a byte offset.
const BLOCK_BYTES: u64 = BLOCK_SIZE as u64;

/// The width of the word a same-filled block repeats (zram's `unsigned
/// long` on 64-bit kernels).
const FILL_WORD: usize = std::mem::size_of::<u64>();

const _: () = assert!(BLOCK_SIZE % FILL_WORD == 0);

/// The compression algorithm of a [`ZramEngine`] (zram's `comp_algorithm`).
#[doc(alias = "comp_algorithm")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    /// LZ4 block format, through `lz4_flex`: fast, a moderate ratio.
    Lz4,
    /// Zstandard, through `zstd` (libzstd): slower, a better ratio.
    Zstd {
        /// Compression level: 1 (fastest) to 22 (smallest); negative levels
        /// trade ratio for more speed; 0 means zstd's default. zstd clamps
        /// levels beyond its range.
        level: i32,
    },
}

impl Compressor {
    /// The level [`Compressor::parse`] gives `"zstd"`: zstd's own default.
    pub const ZSTD_LEVEL_DEFAULT: i32 = zstd::DEFAULT_COMPRESSION_LEVEL;

    /// Parses an algorithm name as written to zram's `comp_algorithm`:
    /// `"lz4"`, or `"zstd"` at [`Compressor::ZSTD_LEVEL_DEFAULT`]. Any other
    /// name gives `None`.
    pub fn parse(name: &str) -> Option<Compressor> {
        match name {
            "lz4" => Some(Compressor::Lz4),
            "zstd" => Some(Compressor::Zstd {
                level: Compressor::ZSTD_LEVEL_DEFAULT,
            }),
            _ => None,
        }
    }

    /// The algorithm's name, as [`Compressor::parse`] accepts it.
    pub fn name(self) -> &'static str {
        match self {
            Compressor::Lz4 => "lz4",
            Compressor::Zstd { .. } => "zstd",
        }
    }
}

/// Counters of a [`ZramEngine`], named after zram's `mm_stat` fields and its
/// internal `zram_stats`. All of them describe what the table holds now:
/// overwriting a block replaces its share.
#[doc(alias = "mm_stat")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ZramStats {
    /// Bytes stored, before compression: `pages_stored` blocks of
    /// [`BLOCK_SIZE`].
    pub orig_data_size: u64,
    /// Bytes the stored blocks take compressed. A huge page counts
    /// [`BLOCK_SIZE`], a same-filled page nothing.
    pub compr_data_size: u64,
    /// Blocks stored as the one word they repeat, with no data
    /// (`ZRAM_SAME`).
    pub same_pages: u64,
    /// Blocks stored raw because compressing did not make them smaller
    /// (`ZRAM_HUGE`).
    pub huge_pages: u64,
    /// Blocks stored, of every kind.
    pub pages_stored: u64,
}

impl ZramStats {
    /// `orig_data_size / compr_data_size`: how many times smaller the data
    /// is in memory. 0 when nothing is stored; infinite when only
    /// same-filled blocks are, since they take no compressed bytes.
    pub fn compression_ratio(&self) -> f64 {
        if self.orig_data_size == 0 {
            return 0.0;
        }
        self.orig_data_size as f64 / self.compr_data_size as f64
    }

    /// Adds `other`'s counts to these.
    fn add(&mut self, other: &ZramStats) {
        self.orig_data_size += other.orig_data_size;
        self.compr_data_size += other.compr_data_size;
        self.same_pages += other.same_pages;
        self.huge_pages += other.huge_pages;
        self.pages_stored += other.pages_stored;
    }

    /// Takes `other`'s counts, which these include, away from these.
    fn sub(&mut self, other: &ZramStats) {
        self.orig_data_size -= other.orig_data_size;
        self.compr_data_size -= other.compr_data_size;
        self.same_pages -= other.same_pages;
        self.huge_pages -= other.huge_pages;
        self.pages_stored -= other.pages_stored;
    }
}

/// What one slot of the table holds.
#[derive(Debug, Default)]
pub(crate) enum Slot {
    /// Never written: reads as zeros.
    #[default]
    Empty,
    /// Every 8-byte word of the block is `fill`, in native byte order; no
    /// data is stored.
    #[doc(alias = "ZRAM_SAME")]
    Same {
        /// The repeated word.
        fill: u64,
    },
    /// The block compressed by the engine's [`Compressor`]; shorter than
    /// [`BLOCK_SIZE`].
    Compressed(Box<[u8]>),
    /// The block itself, [`BLOCK_SIZE`] bytes: compressing did not make it
    /// smaller.
    #[doc(alias = "ZRAM_HUGE")]
    Huge(Box<[u8]>),
}

// The table costs this much per block of the device, written or not, as
// zram's table does.
const _: () = assert!(std::mem::size_of::<Slot>() <= 24);

impl Slot {
    /// This slot's share of the statistics.
    fn stats(&self) -> ZramStats {
        let stored = |compr_data_size: usize| ZramStats {
            orig_data_size: BLOCK_BYTES,
            compr_data_size: compr_data_size as u64,
            pages_stored: 1,
            ..ZramStats::default()
        };
        match self {
            Slot::Empty => ZramStats::default(),
            Slot::Same { .. } => ZramStats {
                same_pages: 1,
                ..stored(0)
            },
            Slot::Compressed(data) => stored(data.len()),
            Slot::Huge(data) => ZramStats {
                huge_pages: 1,
                ..stored(data.len())
            },
        }
    }
}

/// zram's `page_same_filled`: the word `block` repeats, if it is one word
/// repeated.
fn same_filled(block: &[u8]) -> Option<u64> {
    let first = block.get(..FILL_WORD)?;
    if !block.chunks_exact(FILL_WORD).all(|word| word == first) {
        return None;
    }
    let mut word = [0u8; FILL_WORD];
    word.copy_from_slice(first);
    Some(u64::from_ne_bytes(word))
}

/// An error of a compression library, kept as the cause.
pub(crate) type CodecCause = Box<dyn std::error::Error + Send + Sync>;

/// Why a request failed, carried inside its completion's [`io::Error`].
#[derive(Debug, thiserror::Error)]
enum ZramError {
    /// A write reached past the end of the device.
    #[error("write of {len} bytes at byte {offset} reaches past the end of the {size_bytes}-byte zram device")]
    PastEnd {
        offset: u64,
        len: usize,
        size_bytes: u64,
    },
    /// The compression library failed on one block.
    #[error("{algo} {op} of the zram block at byte {offset} failed")]
    Codec {
        algo: &'static str,
        op: &'static str,
        offset: u64,
        #[source]
        source: CodecCause,
    },
}

/// zstd's contexts, reused: making them costs more than compressing a block.
struct ZstdContexts {
    cctx: zstd::bulk::Compressor<'static>,
    dctx: zstd::bulk::Decompressor<'static>,
}

impl ZstdContexts {
    fn new(level: i32) -> io::Result<ZstdContexts> {
        Ok(ZstdContexts {
            cctx: zstd::bulk::Compressor::new(level)?,
            dctx: zstd::bulk::Decompressor::new()?,
        })
    }
}

/// A [`Compressor`] with the state it reuses from block to block.
pub(crate) struct Codec {
    comp: Compressor,
    /// Made on first use, so that [`ZramEngine::new`] cannot fail, and a
    /// failure to make them fails the request that needed them.
    zstd: Option<ZstdContexts>,
    /// Room for one block compressed in the worst case, by either library.
    scratch: Box<[u8]>,
}

impl Codec {
    pub(crate) fn new(comp: Compressor) -> Codec {
        let scratch_len = lz4_flex::block::get_maximum_output_size(BLOCK_SIZE)
            .max(zstd::compress_bound(BLOCK_SIZE));
        Codec {
            comp,
            zstd: None,
            scratch: vec![0u8; scratch_len].into_boxed_slice(),
        }
    }

    /// The zstd contexts, made now if this is their first use.
    fn zstd(zstd: &mut Option<ZstdContexts>, level: i32) -> io::Result<&mut ZstdContexts> {
        Ok(match zstd {
            Some(ctx) => ctx,
            None => zstd.insert(ZstdContexts::new(level)?),
        })
    }

    /// Turns one block into the slot that stores it (zram's
    /// `zram_write_page`).
    pub(crate) fn encode(&mut self, block: &[u8]) -> Result<Slot, CodecCause> {
        if let Some(fill) = same_filled(block) {
            return Ok(Slot::Same { fill });
        }
        let len = match self.comp {
            Compressor::Lz4 => lz4_flex::block::compress_into(block, &mut self.scratch)?,
            Compressor::Zstd { level } => Codec::zstd(&mut self.zstd, level)?
                .cctx
                .compress_to_buffer(block, &mut self.scratch[..])?,
        };
        Ok(match self.scratch.get(..len) {
            Some(compressed) if len < BLOCK_SIZE => Slot::Compressed(compressed.into()),
            _ => Slot::Huge(block.into()),
        })
    }

    /// Fills `block` from `slot` (zram's `zram_read_page`).
    pub(crate) fn decode(&mut self, slot: &Slot, block: &mut [u8]) -> Result<(), CodecCause> {
        let data = match slot {
            Slot::Empty => {
                block.fill(0);
                return Ok(());
            }
            Slot::Same { fill } => {
                for word in block.chunks_exact_mut(FILL_WORD) {
                    word.copy_from_slice(&fill.to_ne_bytes());
                }
                return Ok(());
            }
            Slot::Huge(data) => {
                block.copy_from_slice(data);
                return Ok(());
            }
            Slot::Compressed(data) => data,
        };
        let len = match self.comp {
            Compressor::Lz4 => lz4_flex::block::decompress_into(data, block)?,
            Compressor::Zstd { level } => Codec::zstd(&mut self.zstd, level)?
                .dctx
                .decompress_to_buffer(data, block)?,
        };
        if len != BLOCK_SIZE {
            return Err(format!("decompressed to {len} bytes, not {BLOCK_SIZE}").into());
        }
        Ok(())
    }
}

/// Everything a request reads or changes, under one lock.
struct Table {
    /// One slot per block of the device.
    slots: Vec<Slot>,
    codec: Codec,
    /// The sum of every slot's [`Slot::stats`].
    stats: ZramStats,
}

impl Table {
    /// Stores `data`, which is at byte `offset`, in the slots from `first`
    /// on: whole or not at all. A write reaching past the end of the table
    /// fails before anything is compressed, and every block is compressed
    /// before any slot changes.
    fn store(&mut self, first: usize, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = first.checked_add(data.len() / BLOCK_SIZE);
        let Some(slots) = end.and_then(|end| self.slots.get_mut(first..end)) else {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                ZramError::PastEnd {
                    offset,
                    len: data.len(),
                    size_bytes: self.slots.len() as u64 * BLOCK_BYTES,
                },
            ));
        };
        let comp = self.codec.comp;
        let codec = &mut self.codec;
        let encoded = data
            .chunks_exact(BLOCK_SIZE)
            .zip((offset..).step_by(BLOCK_SIZE))
            .map(|(block, at)| {
                codec
                    .encode(block)
                    .map_err(|source| codec_error(comp, IoKind::Write, at, source))
            })
            .collect::<io::Result<Vec<Slot>>>()?;
        for (slot, new) in slots.iter_mut().zip(encoded) {
            self.stats.sub(&slot.stats());
            self.stats.add(&new.stats());
            *slot = new;
        }
        Ok(())
    }

    /// Fills `buf` from the slots from `first` on, stopping at the end of
    /// the device, and returns the bytes filled.
    fn load(&mut self, first: usize, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let comp = self.codec.comp;
        let slots = self.slots.get(first..).unwrap_or_default();
        let mut filled = 0;
        for (block, slot) in buf.chunks_exact_mut(BLOCK_SIZE).zip(slots) {
            let at = offset + filled as u64;
            self.codec
                .decode(slot, block)
                .map_err(|source| codec_error(comp, IoKind::Read, at, source))?;
            filled += BLOCK_SIZE;
        }
        Ok(filled)
    }

    /// Recomputes the statistics from the slots and checks that they agree
    /// with the running counts, and that every slot keeps its shape.
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut stats = ZramStats::default();
        for slot in &self.slots {
            match slot {
                Slot::Compressed(data) => assert!(data.len() < BLOCK_SIZE),
                Slot::Huge(data) => assert_eq!(data.len(), BLOCK_SIZE),
                Slot::Empty | Slot::Same { .. } => {}
            }
            stats.add(&slot.stats());
        }
        assert_eq!(stats, self.stats);
        assert_eq!(stats.orig_data_size, stats.pages_stored * BLOCK_BYTES);
    }
}

/// The `io::Error` for the block at `offset`, which the compression library
/// failed on. A block that does not decompress is `InvalidData`: what is
/// stored is not what was written.
fn codec_error(comp: Compressor, kind: IoKind, offset: u64, source: CodecCause) -> io::Error {
    let (kind, op) = match kind {
        IoKind::Read => (io::ErrorKind::InvalidData, "decompression"),
        IoKind::Write => (io::ErrorKind::Other, "compression"),
    };
    io::Error::new(
        kind,
        ZramError::Codec {
            algo: comp.name(),
            op,
            offset,
            source,
        },
    )
}

/// A compressed swap device in memory, after the kernel's zram.
///
/// Each 4 KiB block of the device has one slot in a table, as zram has one
/// `zram_table_entry` per page. A write compresses each of its blocks and
/// stores it in the block's slot, replacing what was there; a read
/// decompresses into the caller's buffer, and a block never written reads as
/// zeros. Like zram, two kinds of block are not stored compressed:
///
/// - a block that is one 8-byte word repeated, above all an all-zero block,
///   is stored as that word in the slot, with no data (zram's `ZRAM_SAME`);
/// - a block whose compressed form is not smaller than the block is stored
///   raw (zram's `ZRAM_HUGE`).
///
/// [`ZramEngine::stats`] counts them, in zram's terms.
///
/// Every request completes synchronously inside `submit`, as with
/// [`SyncEngine`](crate::SyncEngine), and its completion is queued for
/// `try_complete` / `wait_complete`. There is no device to wait for, so a
/// completion's `latency_ns` is the time spent compressing or decompressing
/// and copying the request's blocks.
///
/// # Device size
///
/// The device has a fixed size, zram's `disksize`. A read crossing the end
/// is short, and one starting at or past the end transfers nothing, as
/// pread on a file or a block device does. A write reaching past the end
/// completes with [`io::ErrorKind::StorageFull`] and stores nothing, not
/// even its blocks inside the device: unlike a file, the device cannot grow.
///
/// # Errors in completions
///
/// Besides a write past the end, a block the compression library fails on
/// fails its request: `Other` for compression (nothing of the write is
/// stored), `InvalidData` for decompression (the blocks before it are
/// filled). Neither happens unless a library is broken.
pub struct ZramEngine {
    comp: Compressor,
    /// A multiple of [`BLOCK_SIZE`]; the table has one slot per block.
    size_bytes: u64,
    table: Mutex<Table>,
    /// Completed and not yet taken. Its length is `in_flight()`.
    done: Mutex<VecDeque<IoCompletion>>,
}

impl ZramEngine {
    /// Makes an empty device of `size_bytes`, rounded up to a multiple of
    /// [`BLOCK_SIZE`] as zram rounds `disksize` up to whole pages, that
    /// compresses with `comp`.
    ///
    /// The slot table is allocated now, 24 bytes per block of the device
    /// (6 MiB per GiB), as zram allocates its table when `disksize` is set.
    ///
    /// # Panics
    ///
    /// If the table cannot be allocated: more blocks than `usize` can count,
    /// or more bytes than one allocation can have. (An allocation the system
    /// refuses aborts, as any allocation does.)
    #[doc(alias = "disksize")]
    pub fn new(size_bytes: u64, comp: Compressor) -> ZramEngine {
        let blocks = size_bytes.div_ceil(BLOCK_BYTES);
        let slots_len = usize::try_from(blocks)
            .unwrap_or_else(|_| panic!("zram: {blocks} blocks do not fit in a table"));
        let mut slots = Vec::new();
        slots.resize_with(slots_len, Slot::default);
        ZramEngine {
            comp,
            size_bytes: blocks * BLOCK_BYTES,
            table: Mutex::new(Table {
                slots,
                codec: Codec::new(comp),
                stats: ZramStats::default(),
            }),
            done: Mutex::new(VecDeque::new()),
        }
    }

    /// The compression algorithm the device was made with.
    pub fn compressor(&self) -> Compressor {
        self.comp
    }

    /// A snapshot of the counters, taken between requests: it never shows
    /// half a request.
    #[doc(alias = "mm_stat")]
    pub fn stats(&self) -> ZramStats {
        self.table().stats
    }

    /// Locks the table. A panic while it was held is a bug in this file and
    /// may have left the statistics off by the block being stored, but
    /// every slot still holds a whole block, so a poisoned lock stays
    /// usable.
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks the completion queue. A panic elsewhere cannot leave a
    /// `VecDeque` half-updated, so a poisoned lock is still usable.
    fn done(&self) -> MutexGuard<'_, VecDeque<IoCompletion>> {
        self.done.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Carries out one request on the table, as one pread or pwrite would
    /// on a file of `size_bytes`, except that a write cannot extend it.
    fn transfer(&self, kind: IoKind, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        // An offset beyond what `usize` counts is past the end as well.
        let first = usize::try_from(offset / BLOCK_BYTES).unwrap_or(usize::MAX);
        let mut table = self.table();
        match kind {
            IoKind::Read => table.load(first, offset, buf),
            IoKind::Write => table.store(first, offset, buf).map(|()| buf.len()),
        }
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        self.table().check_invariants();
    }
}

impl fmt::Debug for ZramEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No locking here: a `Debug` call from code holding a lock must not
        // deadlock.
        f.debug_struct("ZramEngine")
            .field("comp", &self.comp)
            .field("size_bytes", &self.size_bytes)
            .finish_non_exhaustive()
    }
}

impl BlockEngine for ZramEngine {
    fn submit(&self, req: IoRequest) -> Result<(), IoError> {
        crate::psync::complete_inline(&mut self.done(), req, |kind, offset, buf| {
            self.transfer(kind, offset, buf)
        })
    }

    fn try_complete(&self) -> Option<IoCompletion> {
        self.done().pop_front()
    }

    fn wait_complete(&self) -> Result<IoCompletion, IoError> {
        // Everything submitted has already completed: if the queue is empty,
        // nothing can ever arrive, and blocking would hang forever.
        self.try_complete().ok_or(IoError::EngineGone)
    }

    fn in_flight(&self) -> usize {
        self.done().len()
    }

    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AlignedBuf;

    fn request(kind: IoKind, offset: u64, buf: AlignedBuf) -> IoRequest {
        IoRequest {
            tag: 0,
            kind,
            offset,
            buf,
        }
    }

    /// Submits one request and takes its completion.
    fn run(engine: &ZramEngine, kind: IoKind, offset: u64, buf: AlignedBuf) -> IoCompletion {
        engine.submit(request(kind, offset, buf)).unwrap();
        let done = engine.wait_complete().unwrap();
        engine.check_invariants();
        done
    }

    fn filled(len: usize, mut f: impl FnMut(usize) -> u8) -> AlignedBuf {
        let mut buf = AlignedBuf::new_zeroed(len);
        for (i, b) in buf.as_mut_slice().iter_mut().enumerate() {
            *b = f(i);
        }
        buf
    }

    #[test]
    fn parse_and_name_round_trip() {
        assert_eq!(Compressor::parse("lz4"), Some(Compressor::Lz4));
        assert_eq!(
            Compressor::parse("zstd"),
            Some(Compressor::Zstd {
                level: Compressor::ZSTD_LEVEL_DEFAULT
            })
        );
        assert_eq!(Compressor::parse("lzo-rle"), None);
        assert_eq!(Compressor::parse("LZ4"), None);
        for comp in [Compressor::Lz4, Compressor::Zstd { level: 7 }] {
            assert_eq!(
                Compressor::parse(comp.name()).map(Compressor::name),
                Some(comp.name())
            );
        }
    }

    #[test]
    fn same_filled_finds_repeated_words_only() {
        assert_eq!(same_filled(&[0u8; BLOCK_SIZE]), Some(0));
        let word = 0x0102_0304_0506_0708u64.to_ne_bytes();
        let block: Vec<u8> = word.iter().copied().cycle().take(BLOCK_SIZE).collect();
        assert_eq!(same_filled(&block), Some(0x0102_0304_0506_0708));
        let mut almost = [0u8; BLOCK_SIZE];
        almost[BLOCK_SIZE - 1] = 1;
        assert_eq!(same_filled(&almost), None);
    }

    #[test]
    fn each_slot_kind_round_trips_and_is_counted() {
        let engine = ZramEngine::new(8 * BLOCK_BYTES, Compressor::Lz4);
        let mut random = 0x9e37_79b9_7f4a_7c15u64;
        let blocks = [
            filled(BLOCK_SIZE, |_| 0),
            filled(BLOCK_SIZE, |_| 0xab),
            filled(BLOCK_SIZE, |i| (i % 61) as u8),
            filled(BLOCK_SIZE, |_| {
                random ^= random << 13;
                random ^= random >> 7;
                random ^= random << 17;
                random as u8
            }),
        ];
        for (i, block) in blocks.iter().enumerate() {
            let copy = filled(BLOCK_SIZE, |j| block.as_slice()[j]);
            let done = run(&engine, IoKind::Write, i as u64 * BLOCK_BYTES, copy);
            assert_eq!(done.result.unwrap(), BLOCK_SIZE);
        }
        let table = engine.table();
        assert!(matches!(table.slots[0], Slot::Same { fill: 0 }));
        assert!(matches!(
            table.slots[1],
            Slot::Same {
                fill: 0xabab_abab_abab_abab
            }
        ));
        assert!(matches!(table.slots[2], Slot::Compressed(_)));
        assert!(matches!(table.slots[3], Slot::Huge(_)));
        assert!(matches!(table.slots[4], Slot::Empty));
        drop(table);
        for (i, block) in blocks.iter().enumerate() {
            let buf = AlignedBuf::new_zeroed(BLOCK_SIZE);
            let done = run(&engine, IoKind::Read, i as u64 * BLOCK_BYTES, buf);
            assert_eq!(done.result.unwrap(), BLOCK_SIZE);
            assert!(done.buf.as_slice() == block.as_slice(), "block {i}");
        }
    }

    #[test]
    fn size_rounds_up_to_whole_blocks() {
        assert_eq!(
            ZramEngine::new(1, Compressor::Lz4).size_bytes(),
            BLOCK_BYTES
        );
        assert_eq!(ZramEngine::new(0, Compressor::Lz4).size_bytes(), 0);
        let engine = ZramEngine::new(BLOCK_BYTES + 1, Compressor::Lz4);
        assert_eq!(engine.size_bytes(), 2 * BLOCK_BYTES);
        assert_eq!(engine.table().slots.len(), 2);
    }

    #[test]
    fn failed_write_changes_nothing() {
        let engine = ZramEngine::new(2 * BLOCK_BYTES, Compressor::Zstd { level: 1 });
        let done = run(
            &engine,
            IoKind::Write,
            BLOCK_BYTES,
            filled(2 * BLOCK_SIZE, |_| 7),
        );
        let err = done.result.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(err.to_string().contains("past the end"), "{err}");
        assert_eq!(engine.stats(), ZramStats::default());
    }
}
