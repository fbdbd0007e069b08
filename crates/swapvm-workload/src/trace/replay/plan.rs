//! The scan before a replay: pids, access counts, a malformed trace refused.

use super::*;

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
    /// reader. Process `i` is named `<file stem>.<pid>`. With at most
    /// [`DECODE_THREADS_MAX`] pids on a machine of more than one CPU, each
    /// process decodes on a thread of its own (see [`TraceProcess`]).
    ///
    /// # Errors
    ///
    /// [`TraceError`] if the file can no longer be opened.
    pub fn processes(&self) -> Result<Vec<TraceProcess>, TraceError> {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        self.processes_with(cpus > 1 && self.stats.pids.len() <= DECODE_THREADS_MAX)
    }

    /// [`Self::processes`], decoding on a thread per process when
    /// `threaded` (if a thread cannot be started, that process decodes
    /// inline). The ops are the same either way.
    ///
    /// # Errors
    ///
    /// [`TraceError`] if the file can no longer be opened.
    pub fn processes_with(&self, threaded: bool) -> Result<Vec<TraceProcess>, TraceError> {
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
                let name = format!("{stem}.{}", p.pid);
                let decoder = |cap| {
                    Ok::<_, TraceError>(Decoder {
                        path: self.path().to_owned(),
                        pid: p.pid,
                        reader: TraceReader::open(self.path(), Some(self.stats.format))?,
                        batch: Batch {
                            ops: OpBuf::with_capacity(cap),
                            regions: ChunkMap::default(),
                            recent: ChunkCache::default(),
                            last: LastTwo::default(),
                            cursor: None,
                            emitted: 0,
                            mmaps: 0,
                            cap,
                        },
                    })
                };
                let feed = match threaded {
                    true => Feed::Unstarted(Box::new(decoder(THREAD_BATCH_OPS)?)),
                    false => Feed::Inline(Box::new(decoder(BATCH_OPS)?)),
                };
                Ok(TraceProcess {
                    name,
                    path: self.path().to_owned(),
                    pid: p.pid,
                    feed,
                    ops: OpBuf::default(),
                    pos: 0,
                    aside: 0,
                    ready_end: 0,
                    error: None,
                    eof: false,
                    exit_next: false,
                    emitted: 0,
                    position: Position::Record(0),
                    accesses_total: p.page_accesses,
                })
            })
            .collect()
    }
}
