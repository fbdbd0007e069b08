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
//! [`TracePlan::scan`] reads the trace once before the machine starts: it
//! finds the pids and their access counts (for the progress bar) and
//! rejects a malformed trace before any I/O is done. If the file changes
//! between the scan and the replay, the reader's error ends the process and
//! is reported with its line or record.

use super::{Position, TraceError, TraceFormat, TraceReader, TraceStats};
use crate::Op;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

type ChunkMap = HashMap<u64, u32, super::ChunkHash>;

/// Pages in one replay region: 2 MiB, a PMD's worth.
pub const REGION_PAGES: u64 = 512;

/// Most pids a replayed trace may have: one emulated process each.
pub const PIDS_MAX: usize = crate::COUNT_MAX as usize;

const _: () = assert!(REGION_PAGES.is_power_of_two() && REGION_PAGES % 64 == 0);

/// The chunk (future region) of page `page`.
#[inline]
pub(crate) fn chunk_of(page: u64) -> u64 {
    page / REGION_PAGES
}

/// A scanned trace, ready to become processes.
#[derive(Debug, Clone)]
pub struct TracePlan {
    /// What the scan found.
    pub stats: TraceStats,
}

impl TracePlan {
    /// Scans `path` (see [`TraceStats::scan`]).
    ///
    /// # Errors
    ///
    /// The first [`TraceError`] of the trace.
    pub fn scan(
        path: &Path,
        format: Option<TraceFormat>,
        progress: impl FnMut(u64),
    ) -> Result<TracePlan, TraceError> {
        Ok(TracePlan {
            stats: TraceStats::scan(path, format, progress)?,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.stats.path
    }

    /// Page accesses all processes will make.
    pub fn total_accesses(&self) -> u64 {
        self.stats.page_accesses
    }

    /// One process per pid, in order of first appearance, each with its own
    /// reader. Process `i` is named `<file stem>.<pid>`.
    ///
    /// # Errors
    ///
    /// [`TraceError`] if the file can no longer be opened.
    pub fn processes(&self) -> Result<Vec<TraceProcess>, TraceError> {
        let stem = self
            .path()
            .file_name()
            .map(|n| n.to_string_lossy())
            .and_then(|n| n.split('.').next().map(str::to_owned))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "trace".to_owned());
        self.stats
            .pids
            .iter()
            .map(|p| {
                Ok(TraceProcess {
                    name: format!("{stem}.{}", p.pid),
                    path: self.path().to_owned(),
                    pid: p.pid,
                    reader: TraceReader::open(self.path(), Some(self.stats.format))?,
                    regions: ChunkMap::default(),
                    last: None,
                    cursor: None,
                    pending: None,
                    accesses_done: 0,
                    accesses_total: p.page_accesses,
                    exited: false,
                })
            })
            .collect()
    }
}

/// The pages of one record still to emit.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    next: u64,
    last: u64,
    write: bool,
}

/// One pid of a trace as a stream of [`Op`]s.
#[derive(Debug)]
pub struct TraceProcess {
    name: String,
    path: PathBuf,
    pid: u32,
    reader: TraceReader,
    /// Chunk to region; looked up, never iterated, so its order cannot leak.
    regions: ChunkMap,
    /// The last chunk and its region.
    last: Option<(u64, u32)>,
    cursor: Option<Cursor>,
    /// The access that follows an Mmap just emitted.
    pending: Option<Op>,
    accesses_done: u64,
    accesses_total: u64,
    exited: bool,
}

impl TraceProcess {
    /// The next op, or `None` after [`Op::Exit`] was returned.
    ///
    /// # Errors
    ///
    /// The reader's [`TraceError`] (the file changed since the scan), or
    /// [`TraceError::Unrepresentable`] past 2^32 regions.
    pub fn next_op(&mut self) -> Result<Option<Op>, TraceError> {
        if let Some(op) = self.pending.take() {
            return Ok(Some(op));
        }
        loop {
            if let Some(c) = self.cursor {
                self.cursor = (c.next < c.last).then_some(Cursor {
                    next: c.next + 1,
                    ..c
                });
                return self.page_op(c.next, c.write).map(Some);
            }
            if self.exited {
                return Ok(None);
            }
            match self.reader.next() {
                Some(Ok(rec)) if rec.pid == self.pid => {
                    let (next, last) = rec.pages();
                    self.cursor = Some(Cursor {
                        next,
                        last,
                        write: rec.kind.is_write(),
                    });
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => {
                    self.exited = true;
                    return Ok(Some(Op::Exit));
                }
            }
        }
    }

    /// The op for an access to `page`: the access, or the Mmap of its new
    /// region with the access held back for the next call.
    #[inline]
    fn page_op(&mut self, page: u64, write: bool) -> Result<Op, TraceError> {
        let chunk = chunk_of(page);
        let access = |region| Op::Access {
            region,
            page: page % REGION_PAGES,
            write,
        };
        self.accesses_done += 1;
        if let Some((c, r)) = self.last {
            if c == chunk {
                return Ok(access(r));
            }
        }
        if let Some(&r) = self.regions.get(&chunk) {
            self.last = Some((chunk, r));
            return Ok(access(r));
        }
        let Ok(region) = u32::try_from(self.regions.len()) else {
            return Err(TraceError::Unrepresentable {
                path: self.path.clone(),
                at: self.reader.position(),
                reason: "more than 2^32 regions of 2 MiB in one pid".into(),
            });
        };
        self.regions.insert(chunk, region);
        self.last = Some((chunk, region));
        self.pending = Some(access(region));
        Ok(Op::Mmap {
            region,
            pages: REGION_PAGES,
        })
    }

    /// The process's name, `<file stem>.<pid>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The trace's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Page accesses emitted so far.
    pub fn accesses_done(&self) -> u64 {
        self.accesses_done
    }

    /// Page accesses this process makes in all (from the scan).
    pub fn accesses_total(&self) -> u64 {
        self.accesses_total
    }

    /// Where the reader is, for messages.
    pub fn position(&self) -> Position {
        self.reader.position()
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
}
