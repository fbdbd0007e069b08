//! `swapvm trace stats`: what a trace touches, in one streaming pass.
//!
//! Distinct pages are counted with one 512-bit bitmap per (pid, 2 MiB chunk)
//! touched, so memory grows with the footprint (64 bytes of bitmap per
//! 2 MiB touched, plus the map entry), never with the trace's length.

use super::replay::{chunk_of, PIDS_MAX, REGION_PAGES};
use super::{
    AccessKind, ChunkCache, LastTwo, Position, RecordStream, TraceError, TraceFormat, TraceReader,
    TraceRecord,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use swapvm_core::PAGE_SIZE;

const WORDS: usize = (REGION_PAGES / 64) as usize;

/// Figures of one pid.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PidStats {
    /// The trace's pid.
    pub pid: u32,
    /// Records (lackey `M` counts twice: a load and a store).
    pub records: u64,
    /// Page accesses: a record straddling a page boundary counts once per
    /// page. This is what a replay of the pid makes.
    pub page_accesses: u64,
    /// Page accesses that are stores.
    pub page_writes: u64,
    /// Distinct 4 KiB pages touched.
    pub distinct_pages: u64,
    /// Distinct 2 MiB chunks touched: the regions a replay maps.
    pub regions: u64,
}

/// Figures of a whole trace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TraceStats {
    /// The file.
    pub path: PathBuf,
    /// Its format.
    #[serde(serialize_with = "format_name")]
    pub format: TraceFormat,
    /// Records in all.
    pub records: u64,
    /// Instruction fetches (records).
    pub instr: u64,
    /// Loads (records).
    pub loads: u64,
    /// Stores (records).
    pub stores: u64,
    /// Records that touch more than one page.
    pub straddling: u64,
    /// Page accesses in all (what a replay makes).
    pub page_accesses: u64,
    /// Page accesses that are stores.
    pub page_writes: u64,
    /// Distinct pages, summed over pids (each pid is its own address space).
    pub distinct_pages: u64,
    /// `distinct_pages` in bytes.
    pub footprint_bytes: u64,
    /// Per pid, in order of first appearance.
    pub pids: Vec<PidStats>,
}

fn format_name<S: serde::Serializer>(f: &TraceFormat, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(f.as_str())
}

impl TraceStats {
    /// Reads the whole of `path` once, calling `progress(records)` now and
    /// then.
    ///
    /// # Errors
    ///
    /// The first [`TraceError`] of the trace, or
    /// [`TraceError::Unrepresentable`] past [`PIDS_MAX`] pids.
    pub fn scan(
        path: &Path,
        format: Option<TraceFormat>,
        mut progress: impl FnMut(u64),
    ) -> Result<TraceStats, TraceError> {
        let reader = TraceReader::open(path, format)?;
        let mut s = TraceStats {
            path: path.to_owned(),
            format: reader.format(),
            records: 0,
            instr: 0,
            loads: 0,
            stores: 0,
            straddling: 0,
            page_accesses: 0,
            page_writes: 0,
            distinct_pages: 0,
            footprint_bytes: 0,
            pids: Vec::new(),
        };
        match reader {
            TraceReader::Lackey(mut r) => scan_records(&mut r, &mut s, &mut progress)?,
            TraceReader::Csv(mut r) => scan_records(&mut r, &mut s, &mut progress)?,
            TraceReader::OracleGeneral(mut r) => scan_records(&mut r, &mut s, &mut progress)?,
            TraceReader::Native(mut r) => scan_records(&mut r, &mut s, &mut progress)?,
        }
        progress(s.records);
        for p in &s.pids {
            s.page_accesses += p.page_accesses;
            s.page_writes += p.page_writes;
            s.distinct_pages += p.distinct_pages;
        }
        s.footprint_bytes = s.distinct_pages * PAGE_SIZE as u64;
        Ok(s)
    }

    /// Share of page accesses that are stores, 0..=1.
    pub fn write_share(&self) -> f64 {
        if self.page_accesses == 0 {
            0.0
        } else {
            self.page_writes as f64 / self.page_accesses as f64
        }
    }
}

/// The scan's loop over every record of `reader` into `s`; generic so that
/// each reader's decode inlines into it (one match on the format per
/// trace, not per record). Records come in bulk from the reader's buffer
/// while they can ([`RecordStream::take_buffered`]), else one at a time.
fn scan_records<I: RecordStream>(
    reader: &mut I,
    s: &mut TraceStats,
    progress: &mut impl FnMut(u64),
) -> Result<(), TraceError> {
    let mut sc = Scanner {
        s,
        progress,
        pid_index: HashMap::new(),
        chunk_index: HashMap::default(),
        bitmaps: Vec::new(),
        last_pid: None,
        last_chunk: LastTwo::default(),
        recent: ChunkCache::default(),
        failed: None,
    };
    let mut err = None;
    loop {
        if reader.take_buffered(|rec| sc.record(rec)) > 0 {
            continue;
        }
        if let Some(e) = sc.failed.take() {
            return Err(e);
        }
        match reader.next_rec(&mut err) {
            Some(rec) => {
                if !sc.record(rec) {
                    return Err(sc.failed.take().unwrap_or_else(|| sc.too_many_pids()));
                }
            }
            None => break,
        }
    }
    if let Some(e) = err {
        return Err(e);
    }
    Ok(())
}

/// The state of [`scan_records`].
struct Scanner<'a, P> {
    s: &'a mut TraceStats,
    progress: &'a mut P,
    pid_index: HashMap<u32, usize>,
    chunk_index: HashMap<(u32, u64), usize, super::ChunkHash>,
    bitmaps: Vec<[u64; WORDS]>,
    // The last pid and the last two chunks seen: consecutive accesses are
    // mostly to one of those, which then costs no hash lookup.
    last_pid: Option<(u32, usize)>,
    last_chunk: LastTwo<(u32, u64), usize>,
    recent: ChunkCache<(u32, u64), usize>,
    /// Why the scan stopped at a record [`Self::record`] refused.
    failed: Option<TraceError>,
}

impl<P: FnMut(u64)> Scanner<'_, P> {
    /// The error past [`PIDS_MAX`] pids, at the record being counted.
    fn too_many_pids(&self) -> TraceError {
        TraceError::Unrepresentable {
            path: self.s.path.clone(),
            at: Position::Record(self.s.records),
            reason: format!("more than {PIDS_MAX} pids"),
        }
    }

    /// Counts `rec`; `false` (and `failed` set, `rec` not counted) past
    /// [`PIDS_MAX`] pids. Inlined into the bulk decode loop.
    #[inline(always)]
    fn record(&mut self, rec: TraceRecord) -> bool {
        let s = &mut *self.s;
        let p = match self.last_pid {
            Some((pid, p)) if pid == rec.pid => p,
            _ => {
                let n = self.pid_index.len();
                let p = *self.pid_index.entry(rec.pid).or_insert(n);
                if p == s.pids.len() {
                    if p == PIDS_MAX {
                        self.pid_index.remove(&rec.pid);
                        self.failed = Some(self.too_many_pids());
                        return false;
                    }
                    s.pids.push(PidStats {
                        pid: rec.pid,
                        ..PidStats::default()
                    });
                }
                self.last_pid = Some((rec.pid, p));
                p
            }
        };
        s.records += 1;
        match rec.kind {
            AccessKind::Instr => s.instr += 1,
            AccessKind::Load => s.loads += 1,
            AccessKind::Store => s.stores += 1,
        }
        let ps = &mut s.pids[p];
        ps.records += 1;
        let (first, last) = rec.pages();
        let pages = last - first + 1;
        s.straddling += u64::from(pages > 1);
        ps.page_accesses += pages;
        if rec.kind.is_write() {
            ps.page_writes += pages;
        }
        for page in first..=last {
            let key = (rec.pid, chunk_of(page));
            let b = match self.last_chunk.get(key) {
                Some(b) => b,
                None => {
                    let h = key.1 ^ u64::from(key.0);
                    let b = match self.recent.get(h, key) {
                        Some(b) => b,
                        None => {
                            let n = self.bitmaps.len();
                            let b = *self.chunk_index.entry(key).or_insert(n);
                            if b == n {
                                self.bitmaps.push([0; WORDS]);
                                ps.regions += 1;
                            }
                            self.recent.insert(h, key, b);
                            b
                        }
                    };
                    self.last_chunk.put(key, b);
                    b
                }
            };
            let bit = page % REGION_PAGES;
            let word = &mut self.bitmaps[b][(bit / 64) as usize];
            let mask = 1u64 << (bit % 64);
            if *word & mask == 0 {
                *word |= mask;
                ps.distinct_pages += 1;
            }
        }
        if s.records % 65536 == 0 {
            (self.progress)(s.records);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::oracle::RECORD_LEN;

    fn oracle_file(dir: &Path, objs: &[u64]) -> PathBuf {
        let path = dir.join("s.oracleGeneral.bin");
        let mut f = Vec::new();
        for (i, &o) in objs.iter().enumerate() {
            f.extend((i as u32).to_le_bytes());
            f.extend(o.to_le_bytes());
            f.extend(4096u32.to_le_bytes());
            f.extend((-1i64).to_le_bytes());
        }
        std::fs::write(&path, f).unwrap();
        path
    }

    #[test]
    fn bulk_scan_counts_every_record_and_names_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        // More than one 64 KiB buffer, pages alternating between chunks
        // (the last-two cache) and revisiting old ones (the map).
        let objs: Vec<u64> = (0..10_000u64).map(|i| (i % 7) * 4096 + i % 300).collect();
        let path = oracle_file(dir.path(), &objs);
        let s = TraceStats::scan(&path, None, |_| {}).unwrap();
        assert_eq!(s.records, 10_000);
        assert_eq!(s.loads, 10_000);
        assert_eq!(s.page_accesses, 10_000);
        let distinct: std::collections::HashSet<_> = objs.iter().collect();
        assert_eq!(s.distinct_pages, distinct.len() as u64);
        assert_eq!(s.pids.len(), 1);
        assert_eq!(s.pids[0].regions, 7);

        let mut bytes = std::fs::read(&path).unwrap();
        let at = 4321 * RECORD_LEN + 4;
        bytes[at..at + 8].copy_from_slice(&(1u64 << 52).to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let e = TraceStats::scan(&path, None, |_| {}).unwrap_err();
        assert!(e.to_string().contains("record 4321: field `obj_id`"), "{e}");
    }
}
