//! `swapvm trace stats`: what a trace touches, in one streaming pass.
//!
//! Distinct pages are counted with one 512-bit bitmap per (pid, 2 MiB chunk)
//! touched, so memory grows with the footprint (64 bytes of bitmap per
//! 2 MiB touched, plus the map entry), never with the trace's length.
//!
//! Two halves. A binary trace (fixed-size records) of at least
//! [`SPLIT_MIN`] bytes on a host of more than one CPU is scanned as two
//! halves of its records, the second on a thread of its own, and the two
//! merged: counts add, bitmaps of the same (pid, chunk) are or-ed, pids
//! keep their order of first appearance. The pass is the replay's only
//! serial part before the machine starts, and a pass over the file is
//! bound by one core's copy and decode, so two cores halve it. If either
//! half fails (a bad record, too many pids), the whole file is scanned
//! again on one thread, so the error is exactly the one-pass scan's.
//! A zstd-compressed trace is always scanned in one pass: a stream
//! cannot be entered in its middle.

use super::replay::{chunk_of, PIDS_MAX, REGION_PAGES};
use super::{native, oracle, SharedPath, IO_BUF};
use super::{
    AccessKind, ChunkCache, LastTwo, Position, RecordStream, TraceError, TraceFormat, TraceReader,
    TraceRecord,
};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use swapvm_core::PAGE_SIZE;

const WORDS: usize = (REGION_PAGES / 64) as usize;

/// Smallest binary trace scanned as two halves: below it, a thread costs
/// more than it saves (8 MiB scans in a few milliseconds).
pub(crate) const SPLIT_MIN: u64 = 8 << 20;

type ChunkIndex = HashMap<(u32, u64), usize, super::ChunkHash>;

/// The pages a scan saw: a bitmap per (pid, chunk).
#[derive(Default)]
struct Footprint {
    chunk_index: ChunkIndex,
    bitmaps: Vec<[u64; WORDS]>,
}

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
        progress: impl FnMut(u64),
    ) -> Result<TraceStats, TraceError> {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let split_min = if cpus > 1 { SPLIT_MIN } else { u64::MAX };
        TraceStats::scan_split(path, format, progress, split_min)
    }

    /// [`Self::scan`], in two halves (see the module documentation) if the
    /// trace is binary and at least `split_min` bytes long. The figures and
    /// the error are the same either way.
    pub(crate) fn scan_split(
        path: &Path,
        format: Option<TraceFormat>,
        mut progress: impl FnMut(u64),
        split_min: u64,
    ) -> Result<TraceStats, TraceError> {
        let reader = TraceReader::open(path, format)?;
        let format = reader.format();
        let record_len = match format {
            TraceFormat::OracleGeneral => Some((0, oracle::RECORD_LEN)),
            TraceFormat::Native => Some((native::HEADER_LEN, native::RECORD_LEN)),
            TraceFormat::Lackey | TraceFormat::Csv | TraceFormat::Lcs | TraceFormat::Damon => None,
        };
        // A compressed file cannot be read from its middle.
        let record_len = record_len.filter(|_| !super::compress::is_zstd_file(path));
        if let Some((header, len)) = record_len {
            let size = std::fs::metadata(path).map_or(0, |m| m.len());
            if size >= split_min.max(2 * len as u64) {
                let p = &mut progress;
                if let Some(s) = scan_halves(path, format, header as u64, len as u64, size, p) {
                    return Ok(s);
                }
            }
        }
        let mut s = TraceStats::empty(path, format);
        match reader {
            TraceReader::Lackey(mut r) => scan_records(&mut r, &mut s, &mut progress)?,
            TraceReader::Csv(mut r) => scan_records(&mut r, &mut s, &mut progress)?,
            TraceReader::OracleGeneral(mut r) => scan_records(&mut r, &mut s, &mut progress)?,
            TraceReader::Native(mut r) => scan_records(&mut r, &mut s, &mut progress)?,
            TraceReader::Lcs(mut r) => scan_records(&mut r, &mut s, &mut progress)?,
            TraceReader::Damon(mut r) => scan_records(&mut r, &mut s, &mut progress)?,
        };
        progress(s.records);
        Ok(s.totals())
    }

    /// No records yet.
    fn empty(path: &Path, format: TraceFormat) -> TraceStats {
        TraceStats {
            path: path.to_owned(),
            format,
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
        }
    }

    /// The whole-trace sums of the per-pid figures.
    fn totals(mut self) -> TraceStats {
        for p in &self.pids {
            self.page_accesses += p.page_accesses;
            self.page_writes += p.page_writes;
            self.distinct_pages += p.distinct_pages;
        }
        self.footprint_bytes = self.distinct_pages * PAGE_SIZE as u64;
        self
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
) -> Result<Footprint, TraceError> {
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
    Ok(Footprint {
        chunk_index: sc.chunk_index,
        bitmaps: sc.bitmaps,
    })
}

/// Opens `path` for a half scan: positioned at byte `at`, reading at most
/// `len` bytes (`None`: to the end).
fn open_part(path: &Path, at: u64, len: Option<u64>) -> Option<BufReader<std::io::Take<File>>> {
    let mut f = File::open(path).ok()?;
    f.seek(SeekFrom::Start(at)).ok()?;
    Some(BufReader::with_capacity(
        IO_BUF,
        f.take(len.unwrap_or(u64::MAX)),
    ))
}

/// One half's figures and pages.
type Half = Result<(TraceStats, Footprint), TraceError>;

/// Scans the records of a binary trace of `size` bytes (`header` bytes of
/// header, then records of `len` bytes) as two halves, the second on a
/// thread; `None` if the halves cannot be scanned and merged (a file
/// that cannot be reopened, no thread, an error in either half, too many
/// pids in all): the caller then scans the file in one pass, which finds
/// the one-pass error.
fn scan_halves(
    path: &Path,
    format: TraceFormat,
    header: u64,
    len: u64,
    size: u64,
    progress: &mut impl FnMut(u64),
) -> Option<TraceStats> {
    let first_records = size.saturating_sub(header) / len / 2;
    let shared: SharedPath = Arc::from(path);
    let split = header + first_records * len;
    // The first half: the records before `split` (the header too, checked
    // again), its end a clean end of file.
    let first = |progress: &mut dyn FnMut(u64)| -> Option<Half> {
        let r = open_part(path, 0, Some(split))?;
        let mut s = TraceStats::empty(path, format);
        let mut p = |n: u64| progress(2 * n);
        let fp = match format {
            TraceFormat::OracleGeneral => scan_records(
                &mut oracle::OracleReader::new(r, shared.clone()),
                &mut s,
                &mut p,
            ),
            TraceFormat::Native => match native::NativeReader::new(r, shared.clone()) {
                Ok(mut r) => scan_records(&mut r, &mut s, &mut p),
                Err(e) => Err(e),
            },
            TraceFormat::Lackey | TraceFormat::Csv | TraceFormat::Lcs | TraceFormat::Damon => {
                return None
            }
        };
        Some(fp.map(|fp| (s, fp)))
    };
    // The second: from `split` to the end, numbering records from
    // `first_records`, so a truncated last record is found as before.
    let second = || -> Option<Half> {
        let r = open_part(path, split, None)?;
        let mut s = TraceStats::empty(path, format);
        let shared = shared.clone();
        let fp = match format {
            TraceFormat::OracleGeneral => scan_records(
                &mut oracle::OracleReader::records_at(r, shared, first_records),
                &mut s,
                &mut |_| {},
            ),
            TraceFormat::Native => scan_records(
                &mut native::NativeReader::records_at(r, shared, first_records),
                &mut s,
                &mut |_| {},
            ),
            TraceFormat::Lackey | TraceFormat::Csv | TraceFormat::Lcs | TraceFormat::Damon => {
                return None
            }
        };
        Some(fp.map(|fp| (s, fp)))
    };
    let (a, b) = std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("trace scan".into())
            .spawn_scoped(scope, second);
        let a = first(progress);
        let b = match spawned {
            Ok(h) => h.join().ok().flatten(),
            Err(_) => None,
        };
        (a, b)
    });
    let (a, b) = (a?.ok()?, b?.ok()?);
    merge(a, b)
}

/// The stats of two consecutive parts of a trace as one; `None` past
/// [`PIDS_MAX`] pids in all.
fn merge(a: (TraceStats, Footprint), b: (TraceStats, Footprint)) -> Option<TraceStats> {
    let ((mut s, mut fp), (t, tf)) = (a, b);
    s.records += t.records;
    s.instr += t.instr;
    s.loads += t.loads;
    s.stores += t.stores;
    s.straddling += t.straddling;
    let mut index: HashMap<u32, usize> =
        s.pids.iter().enumerate().map(|(i, p)| (p.pid, i)).collect();
    for p in t.pids {
        match index.get(&p.pid) {
            Some(&i) => {
                let q = &mut s.pids[i];
                q.records += p.records;
                q.page_accesses += p.page_accesses;
                q.page_writes += p.page_writes;
            }
            None => {
                if s.pids.len() == PIDS_MAX {
                    return None;
                }
                index.insert(p.pid, s.pids.len());
                s.pids.push(p);
            }
        }
    }
    // Or the second part's bitmaps into the first's; then count every
    // pid's pages and chunks again from the union. Sums, so the map's
    // order does not matter.
    for (key, b) in tf.chunk_index {
        let words = tf.bitmaps.get(b)?;
        match fp.chunk_index.get(&key) {
            Some(&a) => {
                let mine = fp.bitmaps.get_mut(a)?;
                for (w, o) in mine.iter_mut().zip(words) {
                    *w |= o;
                }
            }
            None => {
                fp.chunk_index.insert(key, fp.bitmaps.len());
                fp.bitmaps.push(*words);
            }
        }
    }
    for p in &mut s.pids {
        p.distinct_pages = 0;
        p.regions = 0;
    }
    for (&(pid, _), &b) in &fp.chunk_index {
        let p = s.pids.get_mut(*index.get(&pid)?)?;
        p.regions += 1;
        p.distinct_pages += fp
            .bitmaps
            .get(b)?
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum::<u64>();
    }
    Some(s.totals())
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

    /// The scan in two halves and in one pass, over a real file.
    fn both(path: &Path) -> (Result<TraceStats, String>, Result<TraceStats, String>) {
        let one = TraceStats::scan_split(path, None, |_| {}, u64::MAX);
        let two = TraceStats::scan_split(path, None, |_| {}, 0);
        (
            one.map_err(|e| e.to_string()),
            two.map_err(|e| e.to_string()),
        )
    }

    #[test]
    fn halves_give_the_one_pass_figures_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        // Chunks in both halves, in one only, pages seen in both.
        let objs: Vec<u64> = (0..20_001u64)
            .map(|i| match i % 3 {
                0 => i % 900,
                1 if i < 10_000 => 5000 + i % 77,
                _ => 9000 + (i * 7) % 1500,
            })
            .collect();
        let path = oracle_file(dir.path(), &objs);
        let (one, two) = both(&path);
        assert_eq!(one.as_ref().unwrap().records, 20_001);
        assert_eq!(one, two);

        // A bad record in either half; a truncated last record.
        let good = std::fs::read(&path).unwrap();
        for n in [17, 15_000] {
            let mut bytes = good.clone();
            let at = n * RECORD_LEN + 4;
            bytes[at..at + 8].copy_from_slice(&(1u64 << 52).to_le_bytes());
            std::fs::write(&path, &bytes).unwrap();
            let (one, two) = both(&path);
            assert!(one
                .as_ref()
                .unwrap_err()
                .contains(&format!("record {n}: field")));
            assert_eq!(one, two);
        }
        let mut bytes = good.clone();
        bytes.truncate(20_000 * RECORD_LEN + 7);
        std::fs::write(&path, &bytes).unwrap();
        let (one, two) = both(&path);
        assert!(one
            .as_ref()
            .unwrap_err()
            .contains("record 20000: truncated"));
        assert_eq!(one, two);
    }

    #[test]
    fn halves_of_a_native_trace_keep_pids_in_order_and_the_pid_limit() {
        use crate::trace::{TraceRecord, TraceWriter};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.swvmtrace");
        let write = |recs: &mut dyn Iterator<Item = TraceRecord>| {
            let mut w = TraceWriter::create(&path, TraceFormat::Native).unwrap();
            for (i, r) in recs.enumerate() {
                w.write(&r, Position::Record(i as u64)).unwrap();
            }
            w.finish().unwrap();
        };
        let rec = |pid, addr, size, kind| TraceRecord {
            pid,
            addr,
            size,
            kind,
        };
        // Pids 5 and 2 first in the second half; records straddling
        // pages; stores and fetches.
        let kinds = [AccessKind::Load, AccessKind::Store, AccessKind::Instr];
        write(&mut (0..9_000u64).map(|i| {
            let pid = if i < 4_500 {
                [3, 1][i as usize % 2]
            } else {
                [5, 2, 3][i as usize % 3]
            };
            rec(
                pid,
                (i * 4093) % (9 << 21),
                1 + (i % 9) as u32 * 1000,
                kinds[i as usize % 3],
            )
        }));
        let (one, two) = both(&path);
        let one_pids: Vec<u32> = one.as_ref().unwrap().pids.iter().map(|p| p.pid).collect();
        assert_eq!(one_pids, [3, 1, 5, 2]);
        assert_eq!(one, two);

        // PIDS_MAX pids in each half, more in all: the one-pass error.
        let max = PIDS_MAX as u32;
        write(&mut (0..2 * max).map(|i| rec(i + 1, 0, 8, AccessKind::Load)));
        let (one, two) = both(&path);
        assert!(one.as_ref().unwrap_err().contains("more than"), "{one:?}");
        assert_eq!(one, two);

        // A bad header is found whichever way.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] = b'X';
        std::fs::write(&path, &bytes).unwrap();
        let (one, two) = both(&path);
        assert!(one.is_err());
        assert_eq!(one, two);
    }
}
