//! Replay: a trace's pids as processes speaking the machine's [`Op`]s.
//!
//! The machine places regions at addresses of its own choosing, so a pid's
//! sparse address space is cut into 2 MiB-aligned chunks ([`REGION_PAGES`]
//! pages, the size of a PMD) and each chunk becomes one region the first
//! time it is touched: the process emits `Mmap { region, pages: 512 }` for
//! a new chunk, then the access. Regions are numbered in order of first
//! touch, so a replay is deterministic. A process exits at the end of the
//! trace, which tears down every region (no Munmap is emitted).
//!
//! Several pids. Each pid is one process with its own reader over the
//! file, which skips the other pids' records. Memory stays constant (a
//! reader's 64 KiB buffer per process, never a queue of records), at the
//! cost of reading the file once per pid; traces have few pids. Records of
//! one pid replay in trace order. The interleaving between pids is the
//! machine's round-robin schedule (`tick_accesses` accesses per process per
//! tick, a process blocked on swap-in waiting), not the trace's: a replay
//! reproduces each process's reference string, not the original timing.
//!
//! Batches. A process decodes its records a batch at a time
//! ([`BATCH_OPS`] ops) into a reused op buffer, and [`TraceProcess::next_op`]
//! hands them out one by one: the reader's format is matched once per
//! batch, not once per record, the decode loop is monomorphic and inlined,
//! and the per-op call is an index into the buffer. No heap allocation
//! happens per record or per batch (the buffer keeps its capacity). A
//! reader error ends the batch; the ops decoded before it are handed out
//! first, then the error, exactly where the one-record-at-a-time stream
//! would have returned it.
//!
//! Decoder threads. With at most [`DECODE_THREADS_MAX`] pids on a machine
//! of more than one CPU, each process's batches ([`THREAD_BATCH_OPS`] ops)
//! are decoded by a thread of its own, started at the process's first op
//! and a few batches ahead of it, so reading and decoding the file
//! overlap the machine's work. The thread makes the ops the inline decoder
//! makes, in the same order: the replay stays deterministic, and an error
//! still comes after the ops before it. Two bounded channels carry the
//! batches and recycle their buffers, so memory stays constant; dropping
//! the process stops and joins its thread. The machine takes a decoded
//! batch as a slice ([`TraceProcess::ready`], [`TraceProcess::take_ready`])
//! rather than op by op.
//!
//! Packed batches. A batch holds a [`PackedAccess`] (4 bytes) per op; the
//! ops that are not an access of a region below
//! [`PackedAccess::REGIONS`] (Mmap, Exit, an access of a later region) are
//! kept aside with their index, a placeholder in their slot. A decoder
//! thread writes the batches and the machine's thread reads them, so every
//! byte of a batch moves between the two cores' caches: 4 bytes an op
//! instead of a 16-byte [`Op`] is a quarter of that traffic, which was the
//! decoder's largest cost (its stores into lines the other core had read).
//!
//! [`TracePlan::scan`] reads the trace once before the machine starts: it
//! finds the pids and their access counts (for the progress bar) and
//! rejects a malformed trace before any I/O is done. If the file changes
//! between the scan and the replay, the reader's error ends the process and
//! is reported with its line or record.

mod decode;
mod packed;
mod plan;

use super::{
    ChunkCache, LastTwo, Position, RecordStream, TraceError, TraceFormat, TraceReader, TraceRecord,
    TraceStats,
};
use crate::Op;
use decode::*;
use packed::OpBuf;
pub use packed::PackedAccess;
pub(crate) use plan::chunk_of;
pub use plan::TracePlan;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

type ChunkMap = HashMap<u64, u32, super::ChunkHash>;

/// Pages in one replay region: 2 MiB, a PMD's worth.
pub const REGION_PAGES: u64 = 512;

/// Ops decoded per batch (see the module documentation): 4 KiB of packed
/// ops, enough that the per-batch cost vanishes, small enough to stay in L1.
pub const BATCH_OPS: usize = 1024;

/// Ops per batch when a decoder thread fills them (16 KiB packed): larger than
/// [`BATCH_OPS`] so that the hand-over (a channel send each way, now and
/// then a thread wake-up) is paid once per few thousand ops, small enough
/// that the batches in flight stay in the caches.
pub const THREAD_BATCH_OPS: usize = 4096;

/// Batches a decoder thread works ahead of its process.
const DECODE_DEPTH: usize = 3;

/// Most pids whose processes get a decoder thread each; a trace with more
/// decodes inline (a thread per pid would outnumber the CPUs long before).
pub const DECODE_THREADS_MAX: usize = 4;

/// Most pids a replayed trace may have: one emulated process each.
pub const PIDS_MAX: usize = crate::COUNT_MAX as usize;

const _: () = assert!(REGION_PAGES.is_power_of_two() && REGION_PAGES % 64 == 0);

/// One pid of a trace as a stream of [`Op`]s.
#[derive(Debug)]
pub struct TraceProcess {
    name: String,
    path: PathBuf,
    pid: u32,
    feed: Feed,
    /// The batch being handed out.
    ops: OpBuf,
    /// The next op of `ops` to hand out.
    pos: usize,
    /// The first entry of `ops.aside` not handed out yet.
    aside: usize,
    /// Where the next op kept aside is (`ops.len()` if none is left):
    /// `ops.packed[pos..ready_end]` are accesses.
    ready_end: usize,
    /// The error that ended the last batch, handed out after its ops.
    error: Option<TraceError>,
    /// The reader reached the end: `ops` ends with [`Op::Exit`].
    eof: bool,
    /// An error ended the trace: [`Op::Exit`] follows it.
    exit_next: bool,
    /// Page accesses in the batches received so far.
    emitted: u64,
    /// Where the reader was after the batch received last.
    position: Position,
    accesses_total: u64,
}

impl TraceProcess {
    /// The next op, or `None` after [`Op::Exit`] was returned.
    ///
    /// # Errors
    ///
    /// The reader's [`TraceError`] (the file changed since the scan), or
    /// [`TraceError::Unrepresentable`] past 2^32 regions.
    #[inline]
    pub fn next_op(&mut self) -> Result<Option<Op>, TraceError> {
        if self.pos < self.ready_end {
            if let Some(&a) = self.ops.packed.get(self.pos) {
                self.pos += 1;
                return Ok(Some(a.op()));
            }
        }
        self.next_aside()
    }

    /// [`Self::next_op`] at an op kept aside or the end of the batch.
    #[inline(never)]
    fn next_aside(&mut self) -> Result<Option<Op>, TraceError> {
        match self.ops.aside.get(self.aside) {
            Some(&(at, op)) if at == self.pos => {
                self.pos += 1;
                self.aside += 1;
                self.ready_end = self.next_aside_at();
                Ok(Some(op))
            }
            _ => self.next_batch(),
        }
    }

    /// Where the next op kept aside is, or the end of the batch.
    fn next_aside_at(&self) -> usize {
        self.ops
            .aside
            .get(self.aside)
            .map_or(self.ops.len(), |&(at, _)| at)
    }

    /// The accesses decoded ahead and not handed out yet: the next ones
    /// [`Self::next_op`] would return, in order, up to the next op that is
    /// not a packed access (empty there, and when the batch is used up;
    /// `next_op` then returns that op, takes the next batch or returns the
    /// pending error). With [`Self::take_ready`], a consumer runs a slice
    /// of accesses without a call per op.
    #[inline]
    pub fn ready(&self) -> &[PackedAccess] {
        self.ops
            .packed
            .get(self.pos..self.ready_end)
            .unwrap_or_default()
    }

    /// Hands out the first `n` ops of [`Self::ready`], as `n` calls of
    /// [`Self::next_op`] would have (at most all of them).
    #[inline]
    pub fn take_ready(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.ready_end.max(self.pos));
    }

    /// [`Self::next_op`] once the batch is used up: the pending error, the
    /// end, or the first op of a new batch.
    #[inline(never)]
    fn next_batch(&mut self) -> Result<Option<Op>, TraceError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.eof {
            return Ok(None);
        }
        if self.exit_next {
            self.exit_next = false;
            self.eof = true;
            self.ops.clear();
            self.pos = 0;
            self.aside = 0;
            self.ready_end = 0;
            return Ok(Some(Op::Exit));
        }
        self.feed.start(&self.name);
        let used = std::mem::take(&mut self.ops);
        let d = match &mut self.feed {
            Feed::Inline(dec) | Feed::Unstarted(dec) => dec.decode(used),
            Feed::Thread(t) => {
                // A closed channel means the thread died (a panic in the
                // decoder): the process ends with an error, not a hang.
                let got = t.free.as_ref().map(|f| f.send(used));
                match (got, t.full.as_ref().map(mpsc::Receiver::recv)) {
                    (Some(_), Some(Ok(d))) => d,
                    _ => {
                        self.exit_next = true;
                        return Err(TraceError::Read {
                            path: self.path.clone(),
                            at: self.position,
                            source: std::io::Error::other("the trace's decoder thread stopped"),
                        });
                    }
                }
            }
        };
        self.ops = d.ops;
        self.pos = 0;
        self.aside = 0;
        self.ready_end = self.next_aside_at();
        self.emitted = d.emitted;
        self.position = d.position;
        match d.end {
            None => {}
            Some(Ok(())) => self.eof = true,
            // The decoder stops at an error: the process exits after it.
            Some(Err(e)) => {
                self.error = Some(e);
                self.exit_next = true;
            }
        }
        match self.ops.len() {
            0 => self.next_batch(),
            _ => self.next_op(),
        }
    }

    /// The process's name, `<file stem>.<pid>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The trace's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Page accesses emitted so far (returned by [`Self::next_op`], not
    /// those decoded ahead in the batch).
    pub fn accesses_done(&self) -> u64 {
        // The ops ahead are the packed ones after `pos` and the ones kept
        // aside from `aside` on, which are the only ones at or after `pos`.
        let aside = self.ops.aside.get(self.aside..).unwrap_or_default();
        let not_access = aside
            .iter()
            .filter(|(_, op)| !matches!(op, Op::Access { .. }))
            .count();
        let ahead = self.ops.len().saturating_sub(self.pos) - not_access;
        self.emitted - ahead as u64
    }

    /// Page accesses this process makes in all (from the scan).
    pub fn accesses_total(&self) -> u64 {
        self.accesses_total
    }

    /// Where the reader is, for messages: up to a batch ahead of the last
    /// op returned.
    pub fn position(&self) -> Position {
        self.position
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{AccessKind, TraceRecord, TraceWriter};

    /// Writes `recs` as a native trace and plans it.
    fn plan(dir: &Path, recs: &[TraceRecord]) -> TracePlan {
        let path = dir.join("t.swvmtrace");
        let mut w = TraceWriter::create(&path, TraceFormat::Native).unwrap();
        for (i, r) in recs.iter().enumerate() {
            w.write(r, Position::Record(i as u64)).unwrap();
        }
        w.finish().unwrap();
        TracePlan::scan(&path, None, |_| {}).unwrap()
    }

    fn rec(pid: u32, addr: u64, size: u32, kind: AccessKind) -> TraceRecord {
        TraceRecord {
            pid,
            addr,
            size,
            kind,
        }
    }

    fn ops(p: &mut TraceProcess) -> Vec<Op> {
        std::iter::from_fn(|| p.next_op().unwrap()).collect()
    }

    #[test]
    fn chunks_become_regions_in_first_touch_order() {
        let dir = tempfile::tempdir().unwrap();
        let mb2 = 2 << 20;
        let recs = [
            rec(9, 5 * mb2 + 0x1000, 8, AccessKind::Load),
            // Straddles the page boundary and the chunk boundary.
            rec(9, 6 * mb2 - 4, 8, AccessKind::Store),
            rec(9, 5 * mb2, 1, AccessKind::Instr),
        ];
        let p = plan(dir.path(), &recs);
        assert_eq!(p.total_accesses(), 4);
        let mut procs = p.processes().unwrap();
        assert_eq!(procs.len(), 1);
        assert_eq!(procs[0].name(), "t.9");
        let acc = |region, page, write| Op::Access {
            region,
            page,
            write,
        };
        let mmap = |region| Op::Mmap {
            region,
            pages: REGION_PAGES,
        };
        assert_eq!(
            ops(&mut procs[0]),
            [
                mmap(0),
                acc(0, 1, false),
                acc(0, 511, true),
                mmap(1),
                acc(1, 0, true),
                acc(0, 0, false),
                Op::Exit
            ]
        );
        assert_eq!(procs[0].accesses_done(), 4);
        assert_eq!(procs[0].next_op().unwrap(), None);
    }

    #[test]
    fn each_pid_reads_only_its_own_records() {
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<_> = (0..30)
            .map(|i| rec([3, 1, 2][i % 3], (i as u64) << 12, 1, AccessKind::Store))
            .collect();
        let p = plan(dir.path(), &recs);
        let pids: Vec<u32> = p.stats.pids.iter().map(|s| s.pid).collect();
        assert_eq!(pids, [3, 1, 2]);
        for (k, mut proc_) in p.processes().unwrap().into_iter().enumerate() {
            let pages: Vec<u64> = ops(&mut proc_)
                .into_iter()
                .filter_map(|op| match op {
                    Op::Access { page, .. } => Some(page),
                    _ => None,
                })
                .collect();
            let want: Vec<u64> = (0..10).map(|j| (3 * j + k) as u64).collect();
            assert_eq!(pages, want, "pid {}", proc_.pid());
        }
    }

    /// The op stream the batches must reproduce, one record at a time:
    /// each page of each record of `pid`, an Mmap before a chunk's first.
    fn reference_ops(recs: &[TraceRecord], pid: u32) -> Vec<Op> {
        let mut regions = std::collections::HashMap::new();
        let mut out = Vec::new();
        for r in recs.iter().filter(|r| r.pid == pid) {
            let (first, last) = r.pages();
            for page in first..=last {
                let n = regions.len() as u32;
                let region = *regions.entry(chunk_of(page)).or_insert_with(|| {
                    out.push(Op::Mmap {
                        region: n,
                        pages: REGION_PAGES,
                    });
                    n
                });
                out.push(Op::Access {
                    region,
                    page: page % REGION_PAGES,
                    write: r.kind.is_write(),
                });
            }
        }
        out.push(Op::Exit);
        out
    }

    #[test]
    fn batches_reproduce_the_record_at_a_time_stream() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = 7u64;
        let mut next = || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            rng >> 33
        };
        // Several batches' worth, two pids, chunks revisited out of order
        // (the chunk cache and the map), and records that straddle pages
        // and chunks, some of many pages, so a record's pages cross a
        // batch boundary.
        let recs: Vec<_> = (0..20000)
            .map(|_| {
                let chunk = next() % 90;
                let addr = (chunk << 21) + (next() % (2 << 20));
                let size = match next() % 10 {
                    0 => 64 << 10,
                    1 => 8192,
                    _ => 8,
                };
                let kind =
                    [AccessKind::Load, AccessKind::Store, AccessKind::Instr][next() as usize % 3];
                rec(1 + (next() % 2) as u32, addr, size, kind)
            })
            .collect();
        let p = plan(dir.path(), &recs);
        // Inline and on decoder threads: the same ops.
        for threaded in [false, true] {
            for mut proc_ in p.processes_with(threaded).unwrap() {
                let want = reference_ops(&recs, proc_.pid());
                assert!(want.len() > 3 * THREAD_BATCH_OPS);
                let got = ops(&mut proc_);
                assert_eq!(got.len(), want.len());
                assert!(got == want, "pid {} threaded {threaded}", proc_.pid());
                assert_eq!(proc_.accesses_done(), proc_.accesses_total());
            }
        }
    }

    #[test]
    fn ready_slices_hand_out_the_same_stream_as_next_op() {
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<_> = (0..30000u64)
            .map(|i| rec(1, ((i * 7919) % 3000) << 12, 8, AccessKind::Load))
            .collect();
        let p = plan(dir.path(), &recs);
        let want = reference_ops(&recs, 1);
        for threaded in [false, true] {
            let mut proc_ = p.processes_with(threaded).unwrap().remove(0);
            let mut got = Vec::new();
            let mut step = 0usize;
            loop {
                // Take 0, 1, 2, ... 99 ops from the ready slice, then one by
                // next_op (which refills it).
                let ready = proc_.ready();
                let n = (step % 100).min(ready.len());
                got.extend(ready[..n].iter().map(|a| a.op()));
                proc_.take_ready(n);
                assert_eq!(
                    proc_.accesses_done(),
                    got.iter()
                        .filter(|o| matches!(o, Op::Access { .. }))
                        .count() as u64
                );
                match proc_.next_op().unwrap() {
                    Some(op) => got.push(op),
                    None => break,
                }
                step += 1;
            }
            assert!(got == want, "threaded {threaded}");
            // Taking more than is ready takes what is there.
            proc_.take_ready(5);
            assert!(proc_.ready().is_empty());
        }
    }

    #[test]
    fn packed_accesses_round_trip_and_later_regions_go_aside() {
        for (region, page, write) in [
            (0, 0, false),
            (7, 511, true),
            (PackedAccess::REGIONS - 1, 3, false),
        ] {
            let a = PackedAccess::new(region, page, write).unwrap();
            assert_eq!((a.region(), a.page(), a.write()), (region, page, write));
            assert_ne!(a, PackedAccess::PLACEHOLDER);
        }
        assert!(PackedAccess::new(PackedAccess::REGIONS, 0, false).is_none());

        // A batch with an access of a region past the packed ones (a pid
        // of more than 2^22 chunks) hands out the same ops in order, and
        // `ready` stops before each op kept aside.
        let dir = tempfile::tempdir().unwrap();
        let p = plan(dir.path(), &[rec(1, 0, 8, AccessKind::Load)]);
        let mut proc_ = p.processes_with(false).unwrap().remove(0);
        let big = PackedAccess::REGIONS + 5;
        let want = [
            Op::Mmap {
                region: 0,
                pages: REGION_PAGES,
            },
            Op::Access {
                region: 0,
                page: 1,
                write: false,
            },
            Op::Access {
                region: 0,
                page: 1,
                write: false,
            },
            Op::Access {
                region: big,
                page: 2,
                write: true,
            },
            Op::Access {
                region: 0,
                page: 3,
                write: true,
            },
            Op::Exit,
        ];
        let mut buf = OpBuf::default();
        for op in want {
            buf.push(op);
        }
        assert_eq!(buf.aside.len(), 3);
        proc_.ops = buf;
        proc_.ready_end = proc_.next_aside_at();
        proc_.eof = true;
        proc_.emitted = 4;
        assert!(proc_.ready().is_empty());
        assert_eq!(proc_.accesses_done(), 0);
        assert_eq!(proc_.next_op().unwrap(), Some(want[0]));
        assert_eq!(proc_.ready().len(), 2);
        proc_.take_ready(5);
        assert_eq!(proc_.accesses_done(), 2);
        assert_eq!(proc_.next_op().unwrap(), Some(want[3]));
        assert_eq!(proc_.ready(), [PackedAccess::new(0, 3, true).unwrap()]);
        assert_eq!(proc_.next_op().unwrap(), Some(want[4]));
        assert_eq!(proc_.accesses_done(), 4);
        assert_eq!(proc_.next_op().unwrap(), Some(Op::Exit));
        assert_eq!(proc_.next_op().unwrap(), None);
    }

    #[test]
    fn a_process_dropped_mid_trace_stops_its_decoder() {
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<_> = (0..50000u64)
            .map(|i| rec(1, (i % 5000) << 12, 8, AccessKind::Load))
            .collect();
        let p = plan(dir.path(), &recs);
        let mut procs = p.processes_with(true).unwrap();
        assert!(matches!(procs[0].next_op().unwrap(), Some(Op::Mmap { .. })));
        // Dropping joins the thread: this returns, and no thread is left.
        drop(procs);
    }

    #[test]
    fn an_error_comes_after_the_ops_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<_> = (0..3000u64)
            .map(|i| rec(1, (i % 700) << 12, 8, AccessKind::Load))
            .collect();
        let p = plan(dir.path(), &recs);
        // Record 2500 gets kind 3 after the scan: the file changed under
        // the replay.
        let mut bytes = std::fs::read(p.path()).unwrap();
        let at = crate::trace::native::HEADER_LEN + 2500 * crate::trace::native::RECORD_LEN + 12;
        bytes[at] |= 3;
        std::fs::write(p.path(), &bytes).unwrap();
        for threaded in [false, true] {
            let mut procs = p.processes_with(threaded).unwrap();
            let mut accesses = 0;
            let err = loop {
                match procs[0].next_op() {
                    Ok(Some(Op::Access { .. })) => accesses += 1,
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("no error"),
                    Err(e) => break e,
                }
            };
            assert_eq!(accesses, 2500);
            assert_eq!(procs[0].accesses_done(), 2500);
            assert!(err.to_string().contains("record 2500"), "{err}");
            assert_eq!(procs[0].next_op().unwrap(), Some(Op::Exit));
            assert_eq!(procs[0].next_op().unwrap(), None);
        }
    }
}
