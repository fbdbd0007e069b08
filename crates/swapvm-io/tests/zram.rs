//! Integration tests for `ZramEngine`, the compressed swap device in
//! memory: round trips with both compressors, the zram counters, errors,
//! and a differential test against `SyncEngine` on a real file.

// Tests may unwrap; clippy's allow-unwrap-in-tests does not reach the
// helpers of an integration-test crate.
#![allow(clippy::unwrap_used)]

use std::io;

use swapvm_io::{
    AlignedBuf, BlockEngine, Compressor, IoCompletion, IoError, IoKind, IoRequest, ZramEngine,
    ZramStats, BLOCK_SIZE,
};

/// Both compressors, zstd at its default level.
const COMPRESSORS: [Compressor; 2] = [
    Compressor::Lz4,
    Compressor::Zstd {
        level: Compressor::ZSTD_LEVEL_DEFAULT,
    },
];

const BLOCK: u64 = BLOCK_SIZE as u64;

mod util {
    use super::*;

    /// Incompressible bytes for (seed, position): splitmix64.
    pub fn fill_random(buf: &mut [u8], seed: u64) {
        let mut state = seed;
        for chunk in buf.chunks_mut(8) {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }

    /// Compressible but not same-filled bytes for `seed`: numbered lines of
    /// text, as a heap of small records might look.
    pub fn fill_text(buf: &mut [u8], seed: u64) {
        let mut text = String::new();
        for line in 0.. {
            if text.len() >= buf.len() {
                break;
            }
            text.push_str(&format!(
                "record {seed}/{line}: state=swapped lru=inactive\n"
            ));
        }
        buf.copy_from_slice(&text.as_bytes()[..buf.len()]);
    }

    pub fn random(len: usize, seed: u64) -> AlignedBuf {
        let mut buf = AlignedBuf::new_zeroed(len);
        fill_random(buf.as_mut_slice(), seed);
        buf
    }

    pub fn text(len: usize, seed: u64) -> AlignedBuf {
        let mut buf = AlignedBuf::new_zeroed(len);
        fill_text(buf.as_mut_slice(), seed);
        buf
    }

    /// A buffer with every byte `byte`.
    pub fn same(len: usize, byte: u8) -> AlignedBuf {
        let mut buf = AlignedBuf::new_zeroed(len);
        buf.as_mut_slice().fill(byte);
        buf
    }

    pub fn copy(buf: &AlignedBuf) -> AlignedBuf {
        let mut out = AlignedBuf::new_zeroed(buf.len());
        out.as_mut_slice().copy_from_slice(buf.as_slice());
        out
    }

    /// Submits one request and takes its completion, which must be the
    /// only one.
    pub fn run(engine: &dyn BlockEngine, req: IoRequest) -> IoCompletion {
        let tag = req.tag;
        engine.submit(req).unwrap();
        assert_eq!(engine.in_flight(), 1);
        let done = engine.wait_complete().unwrap();
        assert_eq!(done.tag, tag);
        assert_eq!(engine.in_flight(), 0);
        done
    }

    pub fn write(engine: &dyn BlockEngine, offset: u64, buf: AlignedBuf) -> IoCompletion {
        run(
            engine,
            IoRequest {
                tag: offset,
                kind: IoKind::Write,
                offset,
                buf,
            },
        )
    }

    pub fn read(engine: &dyn BlockEngine, offset: u64, len: usize) -> IoCompletion {
        run(
            engine,
            IoRequest {
                tag: offset,
                kind: IoKind::Read,
                offset,
                buf: AlignedBuf::new_zeroed(len),
            },
        )
    }

    /// Writes `data` at `offset`, reads it back, and checks both moved every
    /// byte and the bytes came back unchanged.
    pub fn round_trip(engine: &ZramEngine, offset: u64, data: &AlignedBuf) {
        let len = data.len();
        let done = write(engine, offset, copy(data));
        assert_eq!(done.result.unwrap(), len);
        assert!(
            done.buf.as_slice() == data.as_slice(),
            "write changed its buffer"
        );
        let done = read(engine, offset, len);
        assert_eq!(done.result.unwrap(), len);
        assert!(
            done.buf.as_slice() == data.as_slice(),
            "{:?}: read back different bytes at {offset}",
            engine.compressor()
        );
    }
}

mod roundtrip {
    use super::util::*;
    use super::*;

    #[test]
    fn random_blocks_lz4() {
        let engine = ZramEngine::new(64 * BLOCK, Compressor::Lz4);
        round_trip(&engine, 0, &random(BLOCK_SIZE, 1));
        round_trip(&engine, 5 * BLOCK, &random(16 * BLOCK_SIZE, 2));
    }

    #[test]
    fn random_blocks_zstd() {
        let engine = ZramEngine::new(64 * BLOCK, COMPRESSORS[1]);
        round_trip(&engine, 0, &random(BLOCK_SIZE, 1));
        round_trip(&engine, 5 * BLOCK, &random(16 * BLOCK_SIZE, 2));
    }

    #[test]
    fn compressible_blocks_lz4() {
        let engine = ZramEngine::new(64 * BLOCK, Compressor::Lz4);
        round_trip(&engine, 0, &text(BLOCK_SIZE, 1));
        round_trip(&engine, 63 * BLOCK, &text(BLOCK_SIZE, 2));
        round_trip(&engine, 8 * BLOCK, &text(16 * BLOCK_SIZE, 3));
    }

    #[test]
    fn compressible_blocks_zstd() {
        for level in [-5, 1, Compressor::ZSTD_LEVEL_DEFAULT, 19] {
            let engine = ZramEngine::new(64 * BLOCK, Compressor::Zstd { level });
            round_trip(&engine, 0, &text(BLOCK_SIZE, 1));
            round_trip(&engine, 63 * BLOCK, &text(BLOCK_SIZE, 2));
            round_trip(&engine, 8 * BLOCK, &text(16 * BLOCK_SIZE, 3));
        }
    }

    #[test]
    fn same_filled_blocks_both_compressors() {
        for comp in COMPRESSORS {
            let engine = ZramEngine::new(8 * BLOCK, comp);
            round_trip(&engine, 0, &same(BLOCK_SIZE, 0));
            round_trip(&engine, BLOCK, &same(2 * BLOCK_SIZE, 0xa5));
        }
    }

    /// One request of mixed blocks stores one slot per block; each block
    /// reads back alone.
    #[test]
    fn multi_block_write_stores_each_block() {
        for comp in COMPRESSORS {
            let engine = ZramEngine::new(16 * BLOCK, comp);
            let mut data = AlignedBuf::new_zeroed(4 * BLOCK_SIZE);
            let blocks: Vec<&mut [u8]> = data.as_mut_slice().chunks_mut(BLOCK_SIZE).collect();
            let [a, b, c, _zero] = <[&mut [u8]; 4]>::try_from(blocks).unwrap();
            fill_random(a, 7);
            fill_text(b, 7);
            c.fill(0x11);
            assert_eq!(
                write(&engine, 4 * BLOCK, copy(&data)).result.unwrap(),
                data.len()
            );
            let stats = engine.stats();
            assert_eq!(stats.pages_stored, 4);
            assert_eq!(stats.huge_pages, 1);
            assert_eq!(stats.same_pages, 2);
            for (i, want) in data.as_slice().chunks(BLOCK_SIZE).enumerate() {
                let done = read(&engine, (4 + i as u64) * BLOCK, BLOCK_SIZE);
                assert_eq!(done.result.unwrap(), BLOCK_SIZE);
                assert!(done.buf.as_slice() == want, "{comp:?}: block {i}");
            }
        }
    }

    #[test]
    fn unwritten_block_reads_zeros() {
        for comp in COMPRESSORS {
            let engine = ZramEngine::new(16 * BLOCK, comp);
            write(&engine, 2 * BLOCK, text(BLOCK_SIZE, 1));
            // A read over written and unwritten blocks, into a dirty buffer.
            let done = run(
                &engine,
                IoRequest {
                    tag: 1,
                    kind: IoKind::Read,
                    offset: BLOCK,
                    buf: same(3 * BLOCK_SIZE, 0xff),
                },
            );
            assert_eq!(done.result.unwrap(), 3 * BLOCK_SIZE);
            let got = done.buf.as_slice();
            assert!(got[..BLOCK_SIZE].iter().all(|&b| b == 0));
            assert!(got[BLOCK_SIZE..2 * BLOCK_SIZE] == text(BLOCK_SIZE, 1).as_slice()[..]);
            assert!(got[2 * BLOCK_SIZE..].iter().all(|&b| b == 0));
        }
    }

    /// Each overwrite replaces the block and its share of the counters.
    #[test]
    fn overwrite_replaces() {
        for comp in COMPRESSORS {
            let engine = ZramEngine::new(4 * BLOCK, comp);
            round_trip(&engine, BLOCK, &random(BLOCK_SIZE, 1));
            assert_eq!(engine.stats().huge_pages, 1);
            round_trip(&engine, BLOCK, &text(BLOCK_SIZE, 2));
            let stats = engine.stats();
            assert_eq!((stats.pages_stored, stats.huge_pages), (1, 0));
            assert!(stats.compr_data_size < BLOCK, "{stats:?}");
            round_trip(&engine, BLOCK, &same(BLOCK_SIZE, 0));
            let stats = engine.stats();
            assert_eq!((stats.pages_stored, stats.same_pages), (1, 1));
            assert_eq!(stats.compr_data_size, 0);
            round_trip(&engine, BLOCK, &random(BLOCK_SIZE, 3));
            let stats = engine.stats();
            assert_eq!(
                (stats.pages_stored, stats.same_pages, stats.huge_pages),
                (1, 0, 1)
            );
        }
    }

    #[test]
    fn latency_is_measured() {
        for comp in COMPRESSORS {
            let engine = ZramEngine::new(16 * BLOCK, comp);
            let done = write(&engine, 0, text(16 * BLOCK_SIZE, 1));
            assert!(done.latency_ns > 0, "{comp:?}: write latency 0");
            let done = read(&engine, 0, 16 * BLOCK_SIZE);
            assert!(done.latency_ns > 0, "{comp:?}: read latency 0");
        }
    }
}

mod stats {
    use super::util::*;
    use super::*;

    #[test]
    fn empty_device_has_zero_stats_and_ratio() {
        let engine = ZramEngine::new(16 * BLOCK, Compressor::Lz4);
        assert_eq!(engine.stats(), ZramStats::default());
        assert_eq!(engine.stats().compression_ratio(), 0.0);
        // A read stores nothing.
        read(&engine, 0, 4 * BLOCK_SIZE);
        assert_eq!(engine.stats(), ZramStats::default());
    }

    #[test]
    fn compressible_data_has_ratio_above_one() {
        for comp in COMPRESSORS {
            let engine = ZramEngine::new(64 * BLOCK, comp);
            write(&engine, 0, text(32 * BLOCK_SIZE, 1));
            let stats = engine.stats();
            assert_eq!(stats.pages_stored, 32);
            assert_eq!(stats.orig_data_size, 32 * BLOCK);
            assert_eq!((stats.same_pages, stats.huge_pages), (0, 0));
            assert!(stats.compr_data_size > 0);
            assert!(stats.compression_ratio() > 1.0, "{comp:?}: {stats:?}");
        }
    }

    #[test]
    fn zero_blocks_are_same_pages() {
        for comp in COMPRESSORS {
            let engine = ZramEngine::new(16 * BLOCK, comp);
            write(&engine, 0, same(8 * BLOCK_SIZE, 0));
            let stats = engine.stats();
            assert_eq!(stats.same_pages, 8);
            assert_eq!(stats.pages_stored, 8);
            assert_eq!(stats.orig_data_size, 8 * BLOCK);
            assert_eq!(stats.compr_data_size, 0);
            assert_eq!(stats.compression_ratio(), f64::INFINITY);
        }
    }

    #[test]
    fn random_data_is_huge_pages() {
        for comp in COMPRESSORS {
            let engine = ZramEngine::new(16 * BLOCK, comp);
            write(&engine, 0, random(8 * BLOCK_SIZE, 1));
            let stats = engine.stats();
            assert_eq!(stats.huge_pages, 8, "{comp:?}");
            assert_eq!(stats.pages_stored, 8);
            assert_eq!(stats.compr_data_size, 8 * BLOCK);
            assert_eq!(stats.compression_ratio(), 1.0);
        }
    }

    /// `stats` goes through `&self` while another thread writes through
    /// `&self`, and never sees half a request.
    #[test]
    fn stats_are_consistent_while_another_thread_writes() {
        fn assert_send_sync<T: Send + Sync>(_: &T) {}
        let engine = ZramEngine::new(64 * BLOCK, Compressor::Lz4);
        assert_send_sync(&engine);
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..200u64 {
                    let buf = if i % 2 == 0 {
                        text(4 * BLOCK_SIZE, i)
                    } else {
                        random(4 * BLOCK_SIZE, i)
                    };
                    engine
                        .submit(IoRequest {
                            tag: i,
                            kind: IoKind::Write,
                            offset: (i % 16) * 4 * BLOCK,
                            buf,
                        })
                        .unwrap();
                    assert!(engine.try_complete().unwrap().result.is_ok());
                }
            });
            s.spawn(|| {
                for _ in 0..2000 {
                    let stats = engine.stats();
                    assert_eq!(stats.orig_data_size, stats.pages_stored * BLOCK);
                    assert_eq!(stats.pages_stored % 4, 0, "half a request: {stats:?}");
                    assert!(stats.compr_data_size <= stats.orig_data_size);
                }
            });
        });
        assert_eq!(engine.stats().pages_stored, 64);
    }
}

mod errors {
    use super::util::*;
    use super::*;

    #[test]
    fn misaligned_offset_is_rejected_with_request() {
        let engine = ZramEngine::new(16 * BLOCK, Compressor::Lz4);
        let req = IoRequest {
            tag: 42,
            kind: IoKind::Write,
            offset: 512,
            buf: text(BLOCK_SIZE, 42),
        };
        match engine.submit(req) {
            Err(IoError::Rejected { reason, request }) => {
                assert!(reason.contains("offset"), "reason: {reason}");
                assert_eq!(
                    (request.tag, request.offset, request.kind),
                    (42, 512, IoKind::Write)
                );
                assert!(request.buf.as_slice() == text(BLOCK_SIZE, 42).as_slice());
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
        assert_eq!(engine.in_flight(), 0);
        assert!(engine.try_complete().is_none());
        assert_eq!(engine.stats(), ZramStats::default());
    }

    #[test]
    fn wait_with_nothing_in_flight_is_engine_gone() {
        let engine = ZramEngine::new(BLOCK, Compressor::Lz4);
        assert!(matches!(engine.wait_complete(), Err(IoError::EngineGone)));
    }

    /// A write reaching past the end completes with an error, hands its
    /// buffer back unchanged, and stores nothing, not even its blocks that
    /// are inside the device.
    #[test]
    fn write_past_end_completes_with_error_and_buffer() {
        for comp in COMPRESSORS {
            let engine = ZramEngine::new(8 * BLOCK, comp);
            for (offset, len) in [
                (8 * BLOCK, BLOCK_SIZE),
                (6 * BLOCK, 4 * BLOCK_SIZE),
                ((u64::MAX / 4) & !(BLOCK - 1), BLOCK_SIZE),
            ] {
                let done = write(&engine, offset, text(len, 9));
                let err = done.result.unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{err}");
                assert!(err.to_string().contains("past the end"), "{err}");
                assert_eq!((done.offset, done.kind), (offset, IoKind::Write));
                assert!(done.buf.as_slice() == text(len, 9).as_slice());
            }
            assert_eq!(engine.stats(), ZramStats::default());
            let done = read(&engine, 6 * BLOCK, 2 * BLOCK_SIZE);
            assert!(done.buf.as_slice().iter().all(|&b| b == 0));
        }
    }

    /// Reads behave as pread on a file of the device's size: short across
    /// the end, empty at or past it, the buffer handed back either way.
    #[test]
    fn read_past_end_is_short_like_a_file() {
        let engine = ZramEngine::new(8 * BLOCK, Compressor::Lz4);
        write(&engine, 6 * BLOCK, text(2 * BLOCK_SIZE, 3));
        let done = read(&engine, 6 * BLOCK, 4 * BLOCK_SIZE);
        assert_eq!(done.result.unwrap(), 2 * BLOCK_SIZE);
        assert!(done.buf.as_slice()[..2 * BLOCK_SIZE] == text(2 * BLOCK_SIZE, 3).as_slice()[..]);
        for offset in [8 * BLOCK, 100 * BLOCK, (u64::MAX / 4) & !(BLOCK - 1)] {
            let done = read(&engine, offset, BLOCK_SIZE);
            assert_eq!(done.result.unwrap(), 0);
            assert_eq!(done.buf.len(), BLOCK_SIZE);
        }
    }
}

/// The same random reads and writes through `ZramEngine` and through
/// `SyncEngine` on a file of the device's size give the same results.
mod differential {
    use super::util::*;
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use swapvm_io::{EngineConfig, SyncEngine};

    /// Blocks in the device and in the file. Ops reach up to 8 blocks past
    /// the end: reads crossing it are short on both; writes crossing it
    /// fail on zram and are not sent to the file, which would grow.
    const DEV_BLOCKS: u64 = 48;

    /// What a write fills each of its blocks with.
    #[derive(Debug, Clone, Copy)]
    enum Fill {
        Random(u64),
        Text(u64),
        Same(u8),
    }

    impl Fill {
        fn buf(self, blocks: usize) -> AlignedBuf {
            let len = blocks * BLOCK_SIZE;
            match self {
                Fill::Random(seed) => random(len, seed),
                Fill::Text(seed) => text(len, seed),
                Fill::Same(byte) => same(len, byte),
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Read {
            block: u64,
            blocks: usize,
        },
        Write {
            block: u64,
            blocks: usize,
            fill: Fill,
        },
    }

    fn fill() -> impl Strategy<Value = Fill> {
        prop_oneof![
            any::<u64>().prop_map(Fill::Random),
            any::<u64>().prop_map(Fill::Text),
            prop_oneof![Just(0u8), any::<u8>()].prop_map(Fill::Same),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let blocks = prop_oneof![Just(1usize), Just(2), Just(4), Just(16)];
        let block = 0..DEV_BLOCKS + 8;
        prop_oneof![
            1 => (block.clone(), blocks.clone())
                .prop_map(|(block, blocks)| Op::Read { block, blocks }),
            2 => (block, blocks, fill())
                .prop_map(|(block, blocks, fill)| Op::Write { block, blocks, fill }),
        ]
    }

    fn compressor() -> impl Strategy<Value = Compressor> {
        prop_oneof![
            Just(Compressor::Lz4),
            (-5..=9i32).prop_map(|level| Compressor::Zstd { level }),
        ]
    }

    /// Runs one op on both engines and compares; `written` is the model of
    /// which blocks zram stores.
    fn step(
        zram: &ZramEngine,
        psync: &SyncEngine,
        op: &Op,
        written: &mut BTreeSet<u64>,
    ) -> Result<(), TestCaseError> {
        match *op {
            Op::Read { block, blocks } => {
                let a = read(zram, block * BLOCK, blocks * BLOCK_SIZE);
                let b = read(psync, block * BLOCK, blocks * BLOCK_SIZE);
                let (na, nb) = (a.result.unwrap(), b.result.unwrap());
                prop_assert_eq!(na, nb, "{:?}: different counts", op);
                prop_assert!(
                    a.buf.as_slice()[..na] == b.buf.as_slice()[..nb],
                    "{:?}: different bytes",
                    op
                );
            }
            Op::Write {
                block,
                blocks,
                fill,
            } => {
                let end = block + blocks as u64;
                let a = write(zram, block * BLOCK, fill.buf(blocks));
                if end > DEV_BLOCKS {
                    prop_assert_eq!(a.result.unwrap_err().kind(), io::ErrorKind::StorageFull);
                } else {
                    prop_assert_eq!(a.result.unwrap(), blocks * BLOCK_SIZE);
                    let b = write(psync, block * BLOCK, fill.buf(blocks));
                    prop_assert_eq!(b.result.unwrap(), blocks * BLOCK_SIZE);
                    written.extend(block..end);
                }
            }
        }
        let stats = zram.stats();
        prop_assert_eq!(stats.pages_stored, written.len() as u64);
        prop_assert_eq!(stats.orig_data_size, stats.pages_stored * BLOCK);
        prop_assert!(stats.compr_data_size <= stats.orig_data_size);
        prop_assert!(stats.same_pages + stats.huge_pages <= stats.pages_stored);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn zram_matches_psync(comp in compressor(), ops in prop::collection::vec(op(), 1..64)) {
            let file = tempfile::Builder::new()
                .prefix("swapvm-zram-test-")
                .tempfile_in("/var/tmp")
                .unwrap();
            file.as_file().set_len(DEV_BLOCKS * BLOCK).unwrap();
            let psync = SyncEngine::open(file.path(), &EngineConfig::default()).unwrap();
            let zram = ZramEngine::new(DEV_BLOCKS * BLOCK, comp);
            prop_assert_eq!(zram.size_bytes(), psync.size_bytes());
            let mut written = BTreeSet::new();
            for op in &ops {
                step(&zram, &psync, op, &mut written)?;
            }
            // The whole device at the end, in one read.
            step(&zram, &psync, &Op::Read { block: 0, blocks: DEV_BLOCKS as usize }, &mut written)?;
        }
    }
}
