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
    AlignedBuf, BlockEngine, EngineConfig, InlineUringEngine, IoCompletion, IoError, IoKind,
    IoRequest, QueueConfig, QueueError, SyncEngine, UringEngine, UringQueue, BLOCK_SIZE,
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
            ..EngineConfig::default()
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

    /// Opens an `InlineUringEngine`, failing loudly like `open_uring`.
    pub fn open_inline(path: &Path, queue_depth: u32) -> InlineUringEngine {
        let cfg = EngineConfig {
            queue_depth,
            direct: true,
            ..EngineConfig::default()
        };
        InlineUringEngine::open(path, &cfg).unwrap_or_else(|e| {
            panic!(
                "\n\n*** inline io_uring engine could not be opened: {e}\n*** cause: {:?}\n\n",
                std::error::Error::source(&e)
            )
        })
    }

    /// Opens a `UringQueue` of `slots` slots of `slot_len` bytes, failing
    /// loudly like `open_uring`.
    pub fn open_queue(path: &Path, queue_depth: u32, slots: usize, slot_len: usize) -> UringQueue {
        let cfg = QueueConfig {
            queue_depth,
            slots,
            slot_len,
            ..QueueConfig::default()
        };
        UringQueue::open(path, &cfg).unwrap_or_else(|e| {
            panic!(
                "\n\n*** io_uring queue could not be opened: {e}\n*** cause: {:?}\n\n",
                std::error::Error::source(&e)
            )
        })
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
            ..EngineConfig::default()
        };
        let engine = UringEngine::open(file.path(), &cfg).unwrap();
        write_then_read_back(&engine);
    }

    #[test]
    fn uring_sqpoll_write_then_read_back() {
        let file = temp_file(4 * MIB);
        let cfg = EngineConfig {
            queue_depth: 8,
            sqpoll_idle_ms: Some(10),
            ..EngineConfig::default()
        };
        let engine = UringEngine::open(file.path(), &cfg).unwrap();
        write_then_read_back(&engine);
        assert!(engine.shutdown().is_empty());
    }

    #[test]
    fn inline_write_then_read_back_4k_blocks() {
        let file = temp_file(4 * MIB);
        write_then_read_back(&open_inline(file.path(), 8));
    }

    #[test]
    fn inline_buffered_and_sqpoll_write_then_read_back() {
        for (direct, sqpoll_idle_ms) in [(false, None), (true, Some(10))] {
            let file = temp_file(4 * MIB);
            let cfg = EngineConfig {
                queue_depth: 8,
                direct,
                sqpoll_idle_ms,
                ..EngineConfig::default()
            };
            write_then_read_back(&InlineUringEngine::open(file.path(), &cfg).unwrap());
        }
    }

    #[test]
    fn inline_latency_is_measured() {
        let file = temp_file(MIB);
        let engine = open_inline(file.path(), 4);
        engine.submit(read_req(1, 0, BLOCK_SIZE)).unwrap();
        let c = engine.wait_complete().unwrap();
        assert!(c.latency_ns > 0);
        assert!(c.latency_ns < 10_000_000_000, "latency {} ns", c.latency_ns);
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
        more_than_depth(&open_uring(file.path(), 4));
    }

    #[test]
    fn inline_more_requests_than_queue_depth_all_complete_once() {
        let file = temp_file(4 * MIB);
        more_than_depth(&open_inline(file.path(), 4));
    }

    /// 200 writes and 200 reads through a queue of depth 4: each completes
    /// once, in any order, with the bytes written.
    fn more_than_depth(engine: &dyn BlockEngine) {
        let n = 200u64;
        for tag in 0..n {
            let off = tag * BLOCK_SIZE as u64;
            engine
                .submit(write_req(tag, off, patterned(BLOCK_SIZE, tag)))
                .unwrap();
        }
        assert!(engine.in_flight() <= n as usize);
        let done = collect(engine, n as usize);
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
        for (tag, c) in collect(engine, n as usize) {
            let want = patterned(BLOCK_SIZE, tag - 1000);
            assert!(c.buf.as_slice() == want.as_slice(), "tag {tag}");
        }
    }

    #[test]
    fn read_past_end_of_file_completes_once_and_others_succeed() {
        let file = temp_file(MIB);
        past_eof(&open_uring(file.path(), 8), MIB);
    }

    #[test]
    fn inline_read_past_end_of_file_completes_once_and_others_succeed() {
        let file = temp_file(MIB);
        past_eof(&open_inline(file.path(), 8), MIB);
    }

    fn past_eof(engine: &dyn BlockEngine, size: u64) {
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
        let done = collect(engine, 4);
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
        let inline = open_inline(file.path(), 4);
        assert!(matches!(inline.wait_complete(), Err(IoError::EngineGone)));
        assert!(inline.try_complete().is_none());
    }
}

mod shutdown {
    use super::util::*;
    use super::*;

    fn submit_writes(engine: &dyn BlockEngine, n: u64) {
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

    /// One engine lifetime through everything at once: five times more
    /// requests than the queue holds, some of them failing in the kernel
    /// (a write far beyond the largest file ext4 allows: EFBIG), some
    /// reading past the end (a zero count), one rejected before
    /// submission, and a shutdown while most are still queued or in
    /// flight. Every accepted tag must come back exactly once, with its
    /// buffer, and every good write must be on disk.
    #[test]
    fn full_queue_errors_and_shutdown_lose_no_completion() {
        let file = temp_file(MIB);
        let engine = open_uring(file.path(), 4);
        let beyond_max_file = 1u64 << 50;
        let mut accepted = Vec::new();
        for tag in 0..20u64 {
            let req = match tag % 5 {
                0 => write_req(tag, beyond_max_file, patterned(BLOCK_SIZE, tag)),
                1 => read_req(tag, 64 * MIB, BLOCK_SIZE),
                _ => write_req(
                    tag,
                    tag * BLOCK_SIZE as u64,
                    patterned(BLOCK_SIZE, tag + 77),
                ),
            };
            engine.submit(req).unwrap();
            accepted.push(tag);
        }
        let rejected = engine.submit(read_req(99, 100, BLOCK_SIZE));
        assert!(matches!(rejected, Err(IoError::Rejected { .. })));
        let mut done: BTreeMap<u64, IoCompletion> = BTreeMap::new();
        if let Ok(c) = engine.wait_complete() {
            done.insert(c.tag, c);
        }
        for c in engine.shutdown() {
            let tag = c.tag;
            assert!(done.insert(tag, c).is_none(), "tag {tag} completed twice");
        }
        assert_eq!(done.keys().copied().collect::<Vec<_>>(), accepted);
        for (tag, c) in &done {
            assert_eq!(c.buf.len(), BLOCK_SIZE, "tag {tag} lost its buffer");
            match tag % 5 {
                0 => assert!(c.result.is_err(), "write at 2^50 succeeded: {:?}", c.result),
                1 => assert_eq!(c.result.as_ref().unwrap(), &0, "read past the end"),
                _ => assert_eq!(c.result.as_ref().unwrap(), &BLOCK_SIZE, "tag {tag}"),
            }
        }
        let bytes = std::fs::read(file.path()).unwrap();
        assert_eq!(
            bytes.len() as u64,
            MIB,
            "the failed writes must not extend the file"
        );
        for tag in (0..20u64).filter(|t| t % 5 >= 2) {
            let at = tag as usize * BLOCK_SIZE;
            assert!(
                bytes[at..at + BLOCK_SIZE] == *patterned(BLOCK_SIZE, tag + 77).as_slice(),
                "block {tag} not on disk"
            );
        }
    }

    /// Requests sent while the engine thread waits in the kernel for a slow
    /// batch must reach the disk and complete (the doorbell path): submit
    /// in several bursts, each while earlier ones are still in flight.
    #[test]
    fn requests_sent_while_the_thread_waits_all_complete() {
        let file = temp_file(8 * MIB);
        let engine = open_uring(file.path(), 64);
        let mut tag = 0u64;
        let mut done = 0usize;
        for burst in 0..50 {
            for _ in 0..(1 + burst % 7) {
                let off = (tag % 2048) * BLOCK_SIZE as u64;
                engine
                    .submit(write_req(tag, off, patterned(BLOCK_SIZE, tag)))
                    .unwrap();
                tag += 1;
            }
            // Take one (the thread is then most likely back in the kernel
            // waiting for the rest) before the next burst.
            let c = engine.wait_complete().unwrap();
            assert_eq!(c.result.unwrap(), BLOCK_SIZE);
            done += 1;
        }
        while engine.in_flight() > 0 {
            assert_eq!(engine.wait_complete().unwrap().result.unwrap(), BLOCK_SIZE);
            done += 1;
        }
        assert_eq!(done as u64, tag);
    }

    #[test]
    fn drop_with_requests_in_flight_waits_for_them() {
        let file = temp_file(4 * MIB);
        let engine = open_uring(file.path(), 8);
        submit_writes(&engine, 64);
        drop(engine);
        assert_on_disk(file.path(), 64);
    }

    /// Dropped with writes in the kernel and more queued behind a full
    /// ring: every one reaches the disk before the buffers go.
    #[test]
    fn inline_drop_with_requests_in_flight_waits_for_them() {
        let file = temp_file(4 * MIB);
        let engine = open_inline(file.path(), 8);
        submit_writes(&engine, 64);
        assert_eq!(engine.in_flight(), 64);
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

    /// Most ops in one batch, and the largest op, in blocks: the queue's
    /// slots must hold one batch.
    const MAX_BATCH: usize = 64;
    const MAX_OP_BLOCKS: usize = 16;

    /// Runs one batch through a `UringQueue`, slot `i` carrying the batch's
    /// `i`-th op, and returns (tag, result, bytes read) per op. When the
    /// queue is full it takes completions before pushing more.
    fn run_queue(q: &mut UringQueue, batch: &[(u64, Op)]) -> BTreeMap<u64, (usize, Vec<u8>)> {
        let mut out = BTreeMap::new();
        let take = |q: &mut UringQueue, out: &mut BTreeMap<u64, (usize, Vec<u8>)>| {
            q.submit(1).unwrap();
            while let Some(c) = q.complete() {
                let (tag, _) = &batch[c.slot];
                let n = c.result.unwrap_or_else(|e| panic!("tag {tag}: {e}"));
                let bytes = match c.kind {
                    IoKind::Read => q.buf(c.slot).unwrap()[..n].to_vec(),
                    IoKind::Write => Vec::new(),
                };
                out.insert(*tag, (n, bytes));
            }
        };
        for (slot, (_, op)) in batch.iter().enumerate() {
            let (block, blocks) = match *op {
                Op::Read { block, blocks } | Op::Write { block, blocks, .. } => (block, blocks),
            };
            let len = blocks * BLOCK_SIZE;
            let kind = match *op {
                Op::Read { .. } => IoKind::Read,
                Op::Write { seed, .. } => {
                    fill(&mut q.buf_mut(slot).unwrap()[..len], seed);
                    IoKind::Write
                }
            };
            let offset = block * BLOCK_SIZE as u64;
            while let Err(QueueError::Full { .. }) = q.push(slot, kind, offset, len) {
                take(q, &mut out);
            }
        }
        while q.in_flight() > 0 {
            take(q, &mut out);
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// The same sequence through `UringQueue` (registered buffers and
        /// file) and through pread/pwrite.
        #[test]
        fn queue_matches_psync(ops in prop::collection::vec(op(), 1..MAX_BATCH), depth in 1u32..16) {
            let file_a = temp_file(FILE_BLOCKS * BLOCK_SIZE as u64);
            let file_b = temp_file(FILE_BLOCKS * BLOCK_SIZE as u64);
            let mut q = open_queue(file_a.path(), depth, MAX_BATCH, MAX_OP_BLOCKS * BLOCK_SIZE);
            let psync = open_sync(file_b.path());
            for batch in batches(&ops) {
                let done_a = run_queue(&mut q, &batch);
                let done_b = run(&psync, &batch);
                prop_assert_eq!(done_a.len(), batch.len());
                for (tag, (na, bytes_a)) in &done_a {
                    let b = &done_b[tag];
                    let nb = *b.result.as_ref().unwrap();
                    prop_assert_eq!(*na, nb, "tag {} transferred different counts", tag);
                    if b.kind == IoKind::Read {
                        prop_assert!(bytes_a[..] == b.buf.as_slice()[..nb], "tag {} read different bytes", tag);
                    }
                }
            }
            drop(q);
            let bytes_a = std::fs::read(file_a.path()).unwrap();
            let bytes_b = std::fs::read(file_b.path()).unwrap();
            prop_assert_eq!(bytes_a.len(), bytes_b.len());
            prop_assert!(bytes_a == bytes_b, "files differ");
        }

        #[test]
        fn inline_matches_psync(ops in prop::collection::vec(op(), 1..64), depth in 1u32..16) {
            let file_a = temp_file(FILE_BLOCKS * BLOCK_SIZE as u64);
            let file_b = temp_file(FILE_BLOCKS * BLOCK_SIZE as u64);
            let inline = open_inline(file_a.path(), depth);
            let psync = open_sync(file_b.path());
            for batch in batches(&ops) {
                let done_a = run(&inline, &batch);
                let done_b = run(&psync, &batch);
                for (tag, a) in &done_a {
                    compare(*tag, a, &done_b[tag])?;
                }
            }
            prop_assert_eq!(inline.in_flight(), 0);
            drop(inline);
            let bytes_a = std::fs::read(file_a.path()).unwrap();
            let bytes_b = std::fs::read(file_b.path()).unwrap();
            prop_assert_eq!(bytes_a.len(), bytes_b.len());
            prop_assert!(bytes_a == bytes_b, "files differ");
        }

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

/// `UringQueue`: the caller-driven ring with its own buffer slots.
mod queue {
    use super::util::*;
    use super::*;

    /// Submits and takes every completion, checking each slot's result.
    fn wait_all(q: &mut UringQueue) -> BTreeMap<usize, swapvm_io::QueueCompletion> {
        let mut out = BTreeMap::new();
        while q.in_flight() > 0 {
            q.submit(1).unwrap();
            while let Some(c) = q.complete() {
                assert!(out.insert(c.slot, c).is_none(), "slot completed twice");
            }
        }
        out
    }

    #[test]
    fn write_then_read_back_through_slots() {
        let file = temp_file(4 * MIB);
        let mut q = open_queue(file.path(), 8, 8, 4 * BLOCK_SIZE);
        for slot in 0..8 {
            fill(q.buf_mut(slot).unwrap(), slot as u64);
            let off = slot as u64 * 3 * MIB / 8 / 4096 * 4096;
            q.push(slot, IoKind::Write, off, 4 * BLOCK_SIZE).unwrap();
        }
        assert_eq!(q.in_flight(), 8);
        for (slot, c) in wait_all(&mut q) {
            assert_eq!(c.result.unwrap(), 4 * BLOCK_SIZE, "slot {slot}");
            assert_eq!(c.kind, IoKind::Write);
        }
        for slot in 0..8 {
            q.buf_mut(slot).unwrap().fill(0);
            let off = slot as u64 * 3 * MIB / 8 / 4096 * 4096;
            q.push(slot, IoKind::Read, off, 4 * BLOCK_SIZE).unwrap();
        }
        for (slot, c) in wait_all(&mut q) {
            assert_eq!(c.result.unwrap(), 4 * BLOCK_SIZE);
            let want = patterned(4 * BLOCK_SIZE, slot as u64);
            assert!(q.buf(slot).unwrap() == want.as_slice(), "slot {slot}");
        }
    }

    /// Full queue, busy slot, malformed requests: refused, nothing queued,
    /// and the queue goes on working.
    #[test]
    fn refusals_leave_the_queue_usable() {
        let file = temp_file(MIB);
        let mut q = open_queue(file.path(), 2, 4, BLOCK_SIZE);
        q.push(0, IoKind::Read, 0, BLOCK_SIZE).unwrap();
        assert_eq!(
            q.push(0, IoKind::Read, 4096, BLOCK_SIZE),
            Err(QueueError::SlotBusy { slot: 0 })
        );
        assert!(
            q.buf(0).is_none() && q.buf_mut(0).is_none(),
            "in-flight slot reachable"
        );
        q.push(1, IoKind::Read, 4096, BLOCK_SIZE).unwrap();
        assert_eq!(
            q.push(2, IoKind::Read, 8192, BLOCK_SIZE),
            Err(QueueError::Full { depth: 2 })
        );
        assert!(matches!(
            q.push(2, IoKind::Read, 100, BLOCK_SIZE),
            Err(QueueError::Full { .. })
        ));
        assert_eq!(wait_all(&mut q).len(), 2);
        for (slot, off, len) in [
            (2, 100, BLOCK_SIZE),
            (2, 0, 2 * BLOCK_SIZE),
            (2, 0, 0),
            (9, 0, BLOCK_SIZE),
        ] {
            assert!(
                matches!(
                    q.push(slot, IoKind::Read, off, len),
                    Err(QueueError::Invalid { .. })
                ),
                "slot {slot} offset {off} len {len} accepted"
            );
        }
        assert!(matches!(
            q.push_readv(3, 2, 0),
            Err(QueueError::Invalid { .. })
        ));
        assert_eq!(q.in_flight(), 0);
        q.push(3, IoKind::Read, 0, BLOCK_SIZE).unwrap();
        assert_eq!(wait_all(&mut q)[&3].result.as_ref().unwrap(), &BLOCK_SIZE);
    }

    /// A failing request (EFBIG) and a read past the end each complete once,
    /// next to good ones, and free their slots.
    #[test]
    fn request_errors_come_back_per_request() {
        let file = temp_file(MIB);
        let mut q = open_queue(file.path(), 4, 4, BLOCK_SIZE);
        q.push(0, IoKind::Write, 1 << 50, BLOCK_SIZE).unwrap();
        q.push(1, IoKind::Read, 64 * MIB, BLOCK_SIZE).unwrap();
        q.push(2, IoKind::Write, 0, BLOCK_SIZE).unwrap();
        q.push_readv(3, 1, MIB - 4096).unwrap();
        let done = wait_all(&mut q);
        assert!(done[&0].result.is_err());
        assert_eq!(done[&1].result.as_ref().unwrap(), &0);
        assert_eq!(done[&2].result.as_ref().unwrap(), &BLOCK_SIZE);
        assert_eq!(done[&3].result.as_ref().unwrap(), &BLOCK_SIZE);
        assert!(
            (0..4).all(|s| q.buf(s).is_some()),
            "a slot stayed in flight"
        );
    }

    /// A vectored read fills its slots in order, like pread of the whole
    /// range, and comes back short at the end of the file.
    #[test]
    fn vectored_read_fills_consecutive_slots() {
        let file = temp_file(MIB);
        let data = patterned(8 * BLOCK_SIZE, 42);
        let sync = open_sync(file.path());
        sync.submit(write_req(1, 64 * 1024, data)).unwrap();
        assert_eq!(
            sync.wait_complete().unwrap().result.unwrap(),
            8 * BLOCK_SIZE
        );
        let mut q = open_queue(file.path(), 4, 16, BLOCK_SIZE);
        q.push_readv(8, 8, 64 * 1024).unwrap();
        q.push_readv(0, 8, MIB - 3 * 4096).unwrap();
        let done = wait_all(&mut q);
        assert_eq!(done[&8].nr_slots, 8);
        assert_eq!(done[&8].result.as_ref().unwrap(), &(8 * BLOCK_SIZE));
        assert_eq!(
            done[&0].result.as_ref().unwrap(),
            &(3 * BLOCK_SIZE),
            "short at EOF"
        );
        let want = patterned(8 * BLOCK_SIZE, 42);
        for i in 0..8 {
            assert!(
                q.buf(8 + i).unwrap() == &want.as_slice()[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE],
                "slot {}",
                8 + i
            );
        }
    }

    /// Dropping the queue with requests in flight waits for them: the
    /// writes are on disk afterwards.
    #[test]
    fn drop_with_requests_in_flight_waits_for_them() {
        let file = temp_file(MIB);
        {
            let mut q = open_queue(file.path(), 16, 16, BLOCK_SIZE);
            for slot in 0..16 {
                fill(q.buf_mut(slot).unwrap(), slot as u64 + 5);
                q.push(slot, IoKind::Write, slot as u64 * 4096, BLOCK_SIZE)
                    .unwrap();
            }
            q.submit(0).unwrap();
        }
        let bytes = std::fs::read(file.path()).unwrap();
        for slot in 0..16 {
            let at = slot * BLOCK_SIZE;
            assert!(
                bytes[at..at + BLOCK_SIZE] == *patterned(BLOCK_SIZE, slot as u64 + 5).as_slice(),
                "block {slot} not on disk"
            );
        }
    }

    #[test]
    fn sqpoll_queue_works() {
        let file = temp_file(MIB);
        let cfg = QueueConfig {
            queue_depth: 4,
            slots: 4,
            sqpoll_idle_ms: Some(10),
            ..QueueConfig::default()
        };
        let mut q = UringQueue::open(file.path(), &cfg).unwrap();
        // The kernel may refuse SQPOLL (then the queue does without), but
        // the requests must complete either way.
        eprintln!("features: {:?}", q.features());
        for slot in 0..4 {
            fill(q.buf_mut(slot).unwrap(), slot as u64);
            q.push(slot, IoKind::Write, slot as u64 * 8192, BLOCK_SIZE)
                .unwrap();
        }
        for (slot, c) in wait_all(&mut q) {
            assert_eq!(c.result.unwrap(), BLOCK_SIZE, "slot {slot}");
        }
    }

    #[test]
    fn plain_ring_without_registration_works_too() {
        let file = temp_file(MIB);
        let cfg = QueueConfig {
            queue_depth: 4,
            slots: 4,
            register_buffers: false,
            register_file: false,
            defer_taskrun: false,
            ..QueueConfig::default()
        };
        let mut q = UringQueue::open(file.path(), &cfg).unwrap();
        let f = q.features();
        assert!(!f.registered_buffers && !f.fixed_file && !f.defer_taskrun && !f.sqpoll);
        fill(q.buf_mut(0).unwrap(), 3);
        q.push(0, IoKind::Write, 8192, BLOCK_SIZE).unwrap();
        assert_eq!(wait_all(&mut q)[&0].result.as_ref().unwrap(), &BLOCK_SIZE);
        q.push(1, IoKind::Read, 8192, BLOCK_SIZE).unwrap();
        wait_all(&mut q);
        assert!(q.buf(1).unwrap() == patterned(BLOCK_SIZE, 3).as_slice());
    }
}
