//! Integration tests for the block I/O engines, against real files in
//! /var/tmp (ext4 there, so O_DIRECT works; /tmp may be tmpfs).
//!
//! The io_uring engine is tested for real. If this kernel cannot set up
//! io_uring, these tests FAIL with a message saying so; they never skip.

// Tests may unwrap; clippy's allow-unwrap-in-tests does not reach the
// helpers of an integration-test crate.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use swapvm_io::{
    AlignedBuf, BlockEngine, EngineConfig, IoCompletion, IoError, IoKind, IoRequest, SyncEngine,
    UringEngine, BLOCK_SIZE,
};
use tempfile::NamedTempFile;

mod util {
    use super::*;

    /// Directory for test files: a disk-backed filesystem with O_DIRECT.
    pub const TEST_DIR: &str = "/var/tmp";

    pub const MIB: u64 = 1 << 20;

    /// A temporary file of `len` bytes (sparse, reads as zeros).
    pub fn temp_file(len: u64) -> NamedTempFile {
        let file = tempfile::Builder::new()
            .prefix("swapvm-io-test-")
            .tempfile_in(TEST_DIR)
            .unwrap_or_else(|e| panic!("cannot create a temp file in {TEST_DIR}: {e}"));
        file.as_file().set_len(len).unwrap();
        file
    }

    /// Opens a `UringEngine`, failing loudly (never skipping) if the kernel
    /// refuses io_uring.
    pub fn open_uring(path: &Path, queue_depth: u32) -> UringEngine {
        let cfg = EngineConfig {
            queue_depth,
            direct: true,
        };
        match UringEngine::open(path, &cfg) {
            Ok(engine) => engine,
            Err(e) => panic!(
                "\n\n*** io_uring engine could not be opened: {e}\n*** cause: {:?}\n\
                 *** These tests exercise the real kernel io_uring and refuse to skip.\n\n",
                std::error::Error::source(&e)
            ),
        }
    }

    pub fn open_sync(path: &Path) -> SyncEngine {
        SyncEngine::open(path, &EngineConfig::default()).unwrap()
    }

    /// Deterministic bytes for (seed, position): splitmix64.
    pub fn fill(buf: &mut [u8], seed: u64) {
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

    pub fn patterned(len: usize, seed: u64) -> AlignedBuf {
        let mut buf = AlignedBuf::new_zeroed(len);
        fill(buf.as_mut_slice(), seed);
        buf
    }

    pub fn write_req(tag: u64, offset: u64, buf: AlignedBuf) -> IoRequest {
        IoRequest {
            tag,
            kind: IoKind::Write,
            offset,
            buf,
        }
    }

    pub fn read_req(tag: u64, offset: u64, len: usize) -> IoRequest {
        IoRequest {
            tag,
            kind: IoKind::Read,
            offset,
            buf: AlignedBuf::new_zeroed(len),
        }
    }

    /// Waits for `n` completions and indexes them by tag, asserting each tag
    /// arrives exactly once.
    pub fn collect(engine: &dyn BlockEngine, n: usize) -> BTreeMap<u64, IoCompletion> {
        let mut out = BTreeMap::new();
        for _ in 0..n {
            let c = engine.wait_complete().unwrap();
            let tag = c.tag;
            assert!(out.insert(tag, c).is_none(), "tag {tag} completed twice");
        }
        out
    }
}

mod roundtrip {
    use super::util::*;
    use super::*;

    const OFFSETS: [u64; 6] = [0, 4096, 8192, 12 * 4096, MIB, 3 * MIB - 4096];

    fn write_then_read_back(engine: &dyn BlockEngine) {
        for (i, &off) in OFFSETS.iter().enumerate() {
            engine
                .submit(write_req(i as u64, off, patterned(BLOCK_SIZE, off)))
                .unwrap();
        }
        for (tag, c) in collect(engine, OFFSETS.len()) {
            assert_eq!(c.result.unwrap(), BLOCK_SIZE, "write tag {tag}");
            assert_eq!(c.kind, IoKind::Write);
        }
        for (i, &off) in OFFSETS.iter().enumerate() {
            engine
                .submit(read_req(100 + i as u64, off, BLOCK_SIZE))
                .unwrap();
        }
        for (_, c) in collect(engine, OFFSETS.len()) {
            assert_eq!(c.kind, IoKind::Read);
            assert_eq!(c.result.unwrap(), BLOCK_SIZE);
            let want = patterned(BLOCK_SIZE, c.offset);
            assert!(
                c.buf.as_slice() == want.as_slice(),
                "bytes differ at {}",
                c.offset
            );
        }
        assert_eq!(engine.in_flight(), 0);
    }

    #[test]
    fn uring_write_then_read_back_4k_blocks() {
        let file = temp_file(4 * MIB);
        let engine = open_uring(file.path(), 8);
        write_then_read_back(&engine);
        assert!(engine.shutdown().is_empty());
    }

    #[test]
    fn uring_buffered_write_then_read_back() {
        let file = temp_file(4 * MIB);
        let cfg = EngineConfig {
            queue_depth: 8,
            direct: false,
        };
        let engine = UringEngine::open(file.path(), &cfg).unwrap();
        write_then_read_back(&engine);
    }

    #[test]
    fn sync_write_then_read_back_4k_blocks() {
        let file = temp_file(4 * MIB);
        write_then_read_back(&open_sync(file.path()));
    }

    #[test]
    fn size_bytes_is_file_size() {
        let file = temp_file(3 * MIB + 8192);
        assert_eq!(open_uring(file.path(), 4).size_bytes(), 3 * MIB + 8192);
        assert_eq!(open_sync(file.path()).size_bytes(), 3 * MIB + 8192);
    }

    #[test]
    fn uring_latency_is_measured() {
        let file = temp_file(MIB);
        let engine = open_uring(file.path(), 4);
        engine.submit(read_req(1, 0, BLOCK_SIZE)).unwrap();
        let c = engine.wait_complete().unwrap();
        assert!(c.latency_ns > 0);
        assert!(c.latency_ns < 10_000_000_000, "latency {} ns", c.latency_ns);
    }
}

mod queueing {
    use super::util::*;
    use super::*;

    #[test]
    fn more_requests_than_queue_depth_all_complete_once() {
        let file = temp_file(4 * MIB);
        let engine = open_uring(file.path(), 4);
        let n = 200u64;
        for tag in 0..n {
            let off = tag * BLOCK_SIZE as u64;
            engine
                .submit(write_req(tag, off, patterned(BLOCK_SIZE, tag)))
                .unwrap();
        }
        assert!(engine.in_flight() <= n as usize);
        let done = collect(&engine, n as usize);
        assert_eq!(
            done.keys().copied().collect::<Vec<_>>(),
            (0..n).collect::<Vec<_>>()
        );
        for c in done.values() {
            assert_eq!(c.result.as_ref().unwrap(), &BLOCK_SIZE);
            assert_eq!(c.buf.len(), BLOCK_SIZE);
        }
        assert_eq!(engine.in_flight(), 0);
        assert!(engine.try_complete().is_none());

        // Read them back through the same shallow queue.
        for tag in 0..n {
            engine
                .submit(read_req(1000 + tag, tag * BLOCK_SIZE as u64, BLOCK_SIZE))
                .unwrap();
        }
        for (tag, c) in collect(&engine, n as usize) {
            let want = patterned(BLOCK_SIZE, tag - 1000);
            assert!(c.buf.as_slice() == want.as_slice(), "tag {tag}");
        }
    }

    #[test]
    fn read_past_end_of_file_completes_once_and_others_succeed() {
        let size = MIB;
        let file = temp_file(size);
        let engine = open_uring(file.path(), 8);
        let beyond = 8 * MIB;
        let straddling = size - BLOCK_SIZE as u64;
        engine
            .submit(write_req(1, 0, patterned(BLOCK_SIZE, 1)))
            .unwrap();
        engine.submit(read_req(2, beyond, BLOCK_SIZE)).unwrap();
        engine
            .submit(read_req(3, straddling, 4 * BLOCK_SIZE))
            .unwrap();
        engine.submit(read_req(4, 8192, BLOCK_SIZE)).unwrap();
        let done = collect(&engine, 4);
        assert_eq!(done.len(), 4);

        // Past the end: zero bytes or an error, but the buffer comes back.
        let past = &done[&2];
        assert_eq!(past.buf.len(), BLOCK_SIZE);
        assert_eq!(past.offset, beyond);
        match &past.result {
            Ok(n) => assert!(*n < BLOCK_SIZE, "read past EOF returned {n} bytes"),
            Err(e) => eprintln!("read past EOF failed (acceptable): {e}"),
        }
        // Straddling the end: a short count (the one block before EOF).
        let straddle = &done[&3];
        assert_eq!(straddle.buf.len(), 4 * BLOCK_SIZE);
        assert_eq!(straddle.result.as_ref().unwrap(), &BLOCK_SIZE);

        assert_eq!(done[&1].result.as_ref().unwrap(), &BLOCK_SIZE);
        assert_eq!(done[&4].result.as_ref().unwrap(), &BLOCK_SIZE);
        assert_eq!(engine.in_flight(), 0);
    }

    #[test]
    fn wait_with_nothing_in_flight_is_engine_gone() {
        let file = temp_file(MIB);
        let engine = open_uring(file.path(), 4);
        assert!(matches!(engine.wait_complete(), Err(IoError::EngineGone)));
        let sync = open_sync(file.path());
        assert!(matches!(sync.wait_complete(), Err(IoError::EngineGone)));
    }
}

mod shutdown {
    use super::util::*;
    use super::*;

    fn submit_writes(engine: &UringEngine, n: u64) {
        for tag in 0..n {
            let off = tag * BLOCK_SIZE as u64;
            engine
                .submit(write_req(tag, off, patterned(BLOCK_SIZE, tag + 77)))
                .unwrap();
        }
    }

    fn assert_on_disk(path: &Path, n: u64) {
        let bytes = std::fs::read(path).unwrap();
        for tag in 0..n {
            let at = tag as usize * BLOCK_SIZE;
            let want = patterned(BLOCK_SIZE, tag + 77);
            assert!(
                bytes[at..at + BLOCK_SIZE] == *want.as_slice(),
                "block {tag} not on disk"
            );
        }
    }

    #[test]
    fn shutdown_with_requests_in_flight_returns_every_tag_once() {
        let file = temp_file(4 * MIB);
        let engine = open_uring(file.path(), 16);
        let n = 100;
        submit_writes(&engine, n);
        // Whatever has already completed may be taken before shutdown.
        let mut seen: Vec<u64> = Vec::new();
        if let Some(c) = engine.try_complete() {
            seen.push(c.tag);
        }
        let rest = engine.shutdown();
        for c in &rest {
            assert_eq!(c.result.as_ref().unwrap(), &BLOCK_SIZE, "tag {}", c.tag);
            assert_eq!(c.buf.len(), BLOCK_SIZE);
        }
        seen.extend(rest.iter().map(|c| c.tag));
        seen.sort_unstable();
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
        assert_on_disk(file.path(), n);
    }

    #[test]
    fn drop_with_requests_in_flight_waits_for_them() {
        let file = temp_file(4 * MIB);
        let engine = open_uring(file.path(), 8);
        submit_writes(&engine, 64);
        drop(engine);
        assert_on_disk(file.path(), 64);
    }
}

mod errors {
    use super::util::*;
    use super::*;

    fn misaligned_is_rejected(engine: &dyn BlockEngine) {
        let req = write_req(42, 512, patterned(BLOCK_SIZE, 42));
        match engine.submit(req) {
            Err(IoError::Rejected { reason, request }) => {
                assert!(reason.contains("offset"), "reason: {reason}");
                assert_eq!(request.tag, 42);
                assert_eq!(request.offset, 512);
                assert_eq!(request.kind, IoKind::Write);
                assert!(request.buf.as_slice() == patterned(BLOCK_SIZE, 42).as_slice());
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
        assert_eq!(engine.in_flight(), 0);
        assert!(engine.try_complete().is_none());
    }

    #[test]
    fn uring_misaligned_offset_is_rejected_with_request() {
        let file = temp_file(MIB);
        misaligned_is_rejected(&open_uring(file.path(), 4));
    }

    #[test]
    fn sync_misaligned_offset_is_rejected_with_request() {
        let file = temp_file(MIB);
        misaligned_is_rejected(&open_sync(file.path()));
    }

    fn assert_open_error_names_path(err: IoError, path: &Path) {
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "message: {msg}");
        match err {
            IoError::Open { path: p, source } => {
                assert_eq!(p, path);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
                // The cause is chained, not repeated in the message.
                assert!(!msg.contains(&source.to_string()), "message: {msg}");
            }
            other => panic!("expected Open, got {other:?}"),
        }
    }

    #[test]
    fn missing_path_is_open_error_naming_path() {
        let dir = tempfile::tempdir_in(TEST_DIR).unwrap();
        let path = dir.path().join("no-such-swapfile.img");
        let cfg = EngineConfig::default();
        assert_open_error_names_path(UringEngine::open(&path, &cfg).unwrap_err(), &path);
        assert_open_error_names_path(SyncEngine::open(&path, &cfg).unwrap_err(), &path);
        assert!(!path.exists(), "open must not create the file");
    }
}

/// The same read/write sequence through io_uring on file A and pread/pwrite
/// on file B: every completion must agree, and so must the files.
mod differential {
    use super::util::*;
    use super::*;
    use proptest::prelude::*;

    /// Blocks in the files at the start; ops reach up to 256 + 16, so some
    /// cross the end (short reads) and some writes extend the file.
    const FILE_BLOCKS: u64 = 240;

    #[derive(Debug, Clone)]
    enum Op {
        Read {
            block: u64,
            blocks: usize,
        },
        Write {
            block: u64,
            blocks: usize,
            seed: u64,
        },
    }

    impl Op {
        fn range(&self) -> (u64, u64) {
            let (Op::Read { block, blocks } | Op::Write { block, blocks, .. }) = *self;
            (block, block + blocks as u64)
        }

        fn is_write(&self) -> bool {
            matches!(self, Op::Write { .. })
        }

        fn request(&self, tag: u64) -> IoRequest {
            let offset = self.range().0 * BLOCK_SIZE as u64;
            match *self {
                Op::Read { blocks, .. } => read_req(tag, offset, blocks * BLOCK_SIZE),
                Op::Write { blocks, seed, .. } => {
                    write_req(tag, offset, patterned(blocks * BLOCK_SIZE, seed))
                }
            }
        }
    }

    fn op() -> impl Strategy<Value = Op> {
        let blocks = prop_oneof![Just(1usize), Just(4), Just(16)];
        prop_oneof![
            (0..256u64, blocks.clone()).prop_map(|(block, blocks)| Op::Read { block, blocks }),
            (0..256u64, blocks, any::<u64>()).prop_map(|(block, blocks, seed)| Op::Write {
                block,
                blocks,
                seed
            }),
        ]
    }

    /// Splits the ops, in order, into batches that may run concurrently
    /// with the same result as running them one by one: no write overlaps
    /// another op of its batch, and a write that extends the file runs
    /// alone (otherwise a read crossing the end would race with it).
    fn batches(ops: &[Op]) -> Vec<Vec<(u64, Op)>> {
        let mut out: Vec<Vec<(u64, Op)>> = vec![Vec::new()];
        let mut size_blocks = FILE_BLOCKS;
        for (tag, op) in ops.iter().enumerate() {
            let (start, end) = op.range();
            let extends = op.is_write() && end > size_blocks;
            let conflicts = out.last().unwrap().iter().any(|(_, other)| {
                let (s, e) = other.range();
                (op.is_write() || other.is_write()) && start < e && s < end
            });
            if conflicts || extends {
                out.push(Vec::new());
            }
            out.last_mut().unwrap().push((tag as u64, op.clone()));
            if extends {
                size_blocks = end;
                out.push(Vec::new());
            }
        }
        out
    }

    /// Runs one batch: submit everything, then take every completion.
    fn run(engine: &dyn BlockEngine, batch: &[(u64, Op)]) -> BTreeMap<u64, IoCompletion> {
        for (tag, op) in batch {
            engine.submit(op.request(*tag)).unwrap();
        }
        collect(engine, batch.len())
    }

    fn compare(tag: u64, a: &IoCompletion, b: &IoCompletion) -> Result<(), TestCaseError> {
        let (ra, rb) = (a.result.as_ref(), b.result.as_ref());
        let (na, nb) = match (ra, rb) {
            (Ok(na), Ok(nb)) => (*na, *nb),
            _ => return Err(TestCaseError::fail(format!("tag {tag}: {ra:?} vs {rb:?}"))),
        };
        prop_assert_eq!(na, nb, "tag {} transferred different counts", tag);
        prop_assert_eq!(a.buf.len(), b.buf.len());
        if a.kind == IoKind::Read {
            prop_assert!(
                a.buf.as_slice()[..na] == b.buf.as_slice()[..nb],
                "tag {} read different bytes",
                tag
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn uring_matches_psync(ops in prop::collection::vec(op(), 1..64), depth in 1u32..16) {
            let file_a = temp_file(FILE_BLOCKS * BLOCK_SIZE as u64);
            let file_b = temp_file(FILE_BLOCKS * BLOCK_SIZE as u64);
            let uring = open_uring(file_a.path(), depth);
            let psync = open_sync(file_b.path());
            for batch in batches(&ops) {
                let done_a = run(&uring, &batch);
                let done_b = run(&psync, &batch);
                for (tag, a) in &done_a {
                    compare(*tag, a, &done_b[tag])?;
                }
            }
            prop_assert!(uring.shutdown().is_empty());
            let bytes_a = std::fs::read(file_a.path()).unwrap();
            let bytes_b = std::fs::read(file_b.path()).unwrap();
            prop_assert_eq!(bytes_a.len(), bytes_b.len());
            prop_assert!(bytes_a == bytes_b, "files differ");
        }
    }
}
