//! libCacheSim's `lcs` traces (`*.lcs`), as libCacheSim's
//! `traceReader/generalReader/lcs.h` defines them.
//!
//! An 8192-byte little-endian header, then fixed-size records whose layout
//! the header's `version` picks:
//!
//! | offset | type | header field |
//! |---|---|---|
//! | 0 | u64 | `start_magic` 0x123456789abcdef0 |
//! | 8 | u64 | `version`, 1..=8 (the record layout) |
//! | 16 | 8000 bytes | `lcs_trace_stat`: i64 `version` (1), `n_req`, `n_obj`, `n_req_byte`, `n_obj_byte`, `start_timestamp`, `end_timestamp`, `n_read`, `n_write`, `n_delete`, ... |
//! | 8184 | u64 | `end_magic` 0x123456789abcdef0 |
//!
//! Records (packed): v1 (24 bytes) `u32 clock_time, u64 obj_id, u32
//! obj_size, i64 next_access_vtime`, oracleGeneral's; v2 (28) adds a u32
//! of `op` (low 8 bits) and `tenant` (high 24) before `next_access_vtime`;
//! v3 (36) has an i64 `obj_size` and a u32 `ttl` after op/tenant; v4..v8
//! are v3 followed by 1, 2, 4, 8, 16 u32 features (40, 44, 52, 68, 100).
//!
//! As oracleGeneral, each object is one 4 KiB page (`obj_id` below 2^52)
//! of pid 1. libCacheSim's `req_op_e` ops that write (`set`, `add`, `cas`,
//! `replace`, `append`, `prepend`, `incr`, `decr`, `write`, `update`) are
//! stores; the others (`nop`, `get`, `gets`, `delete`, `read`) are loads:
//! swapvm has no per-record unmap, so a delete touches its page. An op of
//! 15 (`invalid`) or above is refused, as are a negative v3 `obj_size`, a
//! `next_access_vtime` below -1, and a file whose record count differs
//! from a nonzero `n_req`.
//!
//! Written traces are v2 (it keeps loads and stores apart: op `read` 12 or
//! `write` 13), one record per page, `clock_time` the record number,
//! `obj_size` 4096, `next_access_vtime` -1. The header's counts need the
//! whole trace, so records are spooled to an unnamed temporary file and
//! copied behind the header at the end; distinct pages (`n_obj`) are
//! counted in a set that grows with the footprint.

use super::binary::{fill, next_fast, next_record, take_buffered, u64_at, Fill};
use super::lackey::check_one_pid;
use super::{AccessKind, Defect, Position, RecordStream, SharedPath, TraceError, TraceRecord};
use std::collections::HashSet;
use std::io::{BufRead, BufWriter, Read, Seek, Write};
use swapvm_core::{PAGE_SHIFT, PAGE_SIZE};

/// `start_magic` and `end_magic`.
pub const MAGIC: u64 = 0x1234_5678_9abc_def0;
/// Bytes in the header.
pub const HEADER_LEN: usize = 8192;
/// The record version written.
pub const VERSION_WRITTEN: u64 = 2;
/// `lcs_trace_stat.version` written.
const STAT_VERSION: i64 = 1;
/// libCacheSim's `OP_READ` and `OP_WRITE`.
const OP_READ: u8 = 12;
const OP_WRITE: u8 = 13;
/// libCacheSim's `OP_INVALID`: the first op refused.
const OP_INVALID: u8 = 15;
const OBJ_ID_MAX: u64 = super::oracle::OBJ_ID_MAX;

/// The record length of `version`, if libCacheSim defines it.
pub fn record_len(version: u64) -> Option<usize> {
    Some(match version {
        1 => 24,
        2 => 28,
        3 => 36,
        4 => 40,
        5 => 44,
        6 => 52,
        7 => 68,
        8 => 100,
        _ => return None,
    })
}

/// Runs `$f::<N>($args)` for the record length `$len` (one of
/// [`record_len`]'s), so each version's decode is monomorphic.
macro_rules! by_len {
    ($len:expr, $f:ident($($arg:expr),*)) => {
        match $len {
            24 => $f::<24, _>($($arg),*),
            28 => $f::<28, _>($($arg),*),
            36 => $f::<36, _>($($arg),*),
            40 => $f::<40, _>($($arg),*),
            44 => $f::<44, _>($($arg),*),
            52 => $f::<52, _>($($arg),*),
            68 => $f::<68, _>($($arg),*),
            _ => $f::<100, _>($($arg),*),
        }
    };
}

/// A streaming lcs reader.
#[derive(Debug)]
pub struct LcsReader<R> {
    r: R,
    path: SharedPath,
    record: u64,
    done: bool,
    len: usize,
    n_req: u64,
    end_checked: bool,
}

fn header_err(path: &SharedPath, defect: Defect) -> TraceError {
    TraceError::Malformed {
        path: path.to_path_buf(),
        at: Position::Header,
        defect,
    }
}

impl<R: Read> LcsReader<R> {
    /// Reads and checks the header from `r`; `path` names it in errors.
    ///
    /// # Errors
    ///
    /// [`TraceError::Malformed`] at the header: empty, short, a wrong
    /// magic, an unknown version, a negative `n_req` or `n_obj`.
    pub fn new(mut r: R, path: SharedPath) -> Result<Self, TraceError> {
        let mut h = vec![0u8; HEADER_LEN];
        match fill(&mut r, &mut h) {
            Ok(Fill::Full) => {}
            Ok(Fill::Eof) => return Err(header_err(&path, Defect::Empty)),
            Ok(Fill::Partial(_)) => {
                return Err(header_err(
                    &path,
                    Defect::Truncated(format!(
                        "the file is shorter than the {HEADER_LEN}-byte lcs header"
                    )),
                ))
            }
            Err(source) => {
                return Err(TraceError::Read {
                    path: path.to_path_buf(),
                    at: Position::Header,
                    source,
                })
            }
        }
        for at in [0, HEADER_LEN - 8] {
            if u64_at(&h, at) != MAGIC {
                return Err(header_err(
                    &path,
                    Defect::WrongMagic {
                        found: h[at..at + 8].to_vec(),
                        expected: MAGIC.to_le_bytes().to_vec(),
                    },
                ));
            }
        }
        let version = u64_at(&h, 8);
        let len = record_len(version).ok_or_else(|| {
            header_err(
                &path,
                Defect::Unsupported {
                    field: "version",
                    value: version,
                },
            )
        })?;
        let (n_req, n_obj) = (u64_at(&h, 24) as i64, u64_at(&h, 32) as i64);
        if n_req < 0 || n_obj < 0 {
            return Err(header_err(
                &path,
                Defect::OutOfRange {
                    field: "n_req/n_obj",
                    value: format!("{n_req}/{n_obj}"),
                    allowed: "0 or more",
                },
            ));
        }
        Ok(LcsReader {
            r,
            path,
            record: 0,
            done: false,
            len,
            n_req: n_req as u64,
            end_checked: false,
        })
    }

    /// The number of the last record read.
    pub fn position(&self) -> Position {
        Position::Record(self.record.saturating_sub(1))
    }

    /// The error of a file whose record count differs from a nonzero
    /// `n_req`, once, at its end.
    fn check_end(&mut self) -> Option<Result<TraceRecord, TraceError>> {
        if self.end_checked || self.n_req == 0 || self.record == self.n_req {
            self.end_checked = true;
            return None;
        }
        self.end_checked = true;
        Some(Err(TraceError::Malformed {
            path: self.path.to_path_buf(),
            at: Position::Record(self.record),
            defect: Defect::Truncated(format!(
                "the header says n_req = {} but the file holds {} records",
                self.n_req, self.record
            )),
        }))
    }
}

/// Where a version's fields are: (op, next_access_vtime), by length.
#[inline(always)]
const fn offsets(n: usize) -> (Option<usize>, usize) {
    match n {
        24 => (None, 16),
        28 => (Some(16), 20),
        _ => (Some(20), 28),
    }
}

/// The record `b` holds, if it is valid.
#[inline]
fn valid<const N: usize>(b: &[u8; N]) -> Option<TraceRecord> {
    let (op_at, next_at) = offsets(N);
    let obj_id = u64_at(b, 4);
    let op = op_at.map_or(OP_READ, |at| b[at]);
    let size_ok = N < 36 || (u64_at(b, 12) as i64) >= 0;
    let ok = obj_id <= OBJ_ID_MAX && (u64_at(b, next_at) as i64) >= -1 && op < OP_INVALID;
    (ok && size_ok).then_some(TraceRecord {
        pid: super::oracle::ORACLE_PID,
        addr: obj_id << PAGE_SHIFT,
        size: PAGE_SIZE as u32,
        kind: if matches!(op, 3..=8 | 10 | 11 | 13 | 14) {
            AccessKind::Store
        } else {
            AccessKind::Load
        },
    })
}

/// Decodes one record, naming the field a bad one gets wrong.
fn decode<const N: usize>(b: &[u8; N]) -> Result<TraceRecord, Defect> {
    valid(b).ok_or_else(|| defect(b))
}

#[cold]
fn defect<const N: usize>(b: &[u8; N]) -> Defect {
    let (op_at, next_at) = offsets(N);
    let obj_id = u64_at(b, 4);
    if obj_id > OBJ_ID_MAX {
        return Defect::OutOfRange {
            field: "obj_id",
            value: obj_id.to_string(),
            allowed: "0..2^52 (one 4 KiB page per object)",
        };
    }
    if let Some(op) = op_at.map(|at| b[at]).filter(|&op| op >= OP_INVALID) {
        return Defect::UnknownOp(format!("lcs op {op}"));
    }
    if N >= 36 && (u64_at(b, 12) as i64) < 0 {
        return Defect::OutOfRange {
            field: "obj_size",
            value: (u64_at(b, 12) as i64).to_string(),
            allowed: "0 or more",
        };
    }
    Defect::OutOfRange {
        field: "next_access_vtime",
        value: (u64_at(b, next_at) as i64).to_string(),
        allowed: "-1 (never) or a virtual time",
    }
}

fn step<const N: usize, R: BufRead>(
    s: &mut LcsReader<R>,
) -> Option<Result<TraceRecord, TraceError>> {
    if let Some(rec) = next_fast(&mut s.r, &mut s.record, valid::<N>) {
        return Some(Ok(rec));
    }
    match next_record(&mut s.r, &s.path, &mut s.record, &mut s.done, decode::<N>) {
        None => s.check_end(),
        some => some,
    }
}

fn bulk<const N: usize, R: BufRead>(
    s: &mut LcsReader<R>,
    take: impl FnMut(TraceRecord) -> bool,
) -> usize {
    take_buffered(&mut s.r, &mut s.record, valid::<N>, take)
}

impl<R: BufRead> Iterator for LcsReader<R> {
    type Item = Result<TraceRecord, TraceError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done && self.end_checked {
            return None;
        }
        by_len!(self.len, step(self))
    }
}

impl<R: BufRead> RecordStream for LcsReader<R> {
    #[inline]
    fn next_rec(&mut self, err: &mut Option<TraceError>) -> Option<TraceRecord> {
        super::stash_error(self.next(), err)
    }

    #[inline]
    fn take_buffered(&mut self, take: impl FnMut(TraceRecord) -> bool) -> usize {
        if self.done {
            return 0;
        }
        by_len!(self.len, bulk(self, take))
    }

    fn position(&self) -> Position {
        LcsReader::position(self)
    }
}

/// Writes lcs v2 records, one per page an access touches.
#[derive(Debug)]
pub struct LcsWriter<W: Write> {
    w: W,
    spool: BufWriter<std::fs::File>,
    path: SharedPath,
    pid: Option<u32>,
    n: u64,
    n_write: u64,
    objs: HashSet<u64>,
}

impl<W: Write> LcsWriter<W> {
    /// A writer onto `w`; `path` names it in errors.
    ///
    /// # Errors
    ///
    /// [`TraceError::Write`] if the spool file (unnamed, in the folder of
    /// `path`) cannot be made.
    pub fn new(w: W, path: SharedPath) -> Result<Self, TraceError> {
        // Beside the output, not in /tmp: a trace may not fit a tmpfs.
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        let spool = tempfile::tempfile_in(dir).map_err(|source| TraceError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(LcsWriter {
            w,
            spool: BufWriter::with_capacity(super::IO_BUF, spool),
            path,
            pid: None,
            n: 0,
            n_write: 0,
            objs: HashSet::new(),
        })
    }

    fn write_err(&self, source: std::io::Error) -> TraceError {
        TraceError::Write {
            path: self.path.to_path_buf(),
            source,
        }
    }

    /// Appends a record for each page `rec` touches.
    ///
    /// # Errors
    ///
    /// [`TraceError::Unrepresentable`] for a second pid;
    /// [`TraceError::Write`].
    pub fn write(&mut self, rec: &TraceRecord, at: Position) -> Result<(), TraceError> {
        check_one_pid(&mut self.pid, rec, &self.path, at, "lcs")?;
        let op = if rec.kind.is_write() {
            OP_WRITE
        } else {
            OP_READ
        };
        let (first, last) = rec.pages();
        for page in first..=last {
            let mut b = [0u8; 28];
            b[0..4].copy_from_slice(&u32::try_from(self.n).unwrap_or(u32::MAX).to_le_bytes());
            b[4..12].copy_from_slice(&page.to_le_bytes());
            b[12..16].copy_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
            b[16..20].copy_from_slice(&u32::from(op).to_le_bytes());
            b[20..28].copy_from_slice(&(-1i64).to_le_bytes());
            self.spool.write_all(&b).map_err(|e| self.write_err(e))?;
            self.n += 1;
            self.n_write += u64::from(op == OP_WRITE);
            self.objs.insert(page);
        }
        Ok(())
    }

    /// The header of what was written.
    fn header(&self) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        let page = PAGE_SIZE as i64;
        let n = self.n as i64;
        let objs = self.objs.len() as i64;
        let fields: [(usize, i64); 13] = [
            (0, MAGIC as i64),
            (8, VERSION_WRITTEN as i64),
            (16, STAT_VERSION),
            (24, n),
            (32, objs),
            (40, n * page),
            (48, objs * page),
            (56, 0),
            (64, n.saturating_sub(1).min(i64::from(u32::MAX))),
            (72, n - self.n_write as i64),
            (80, self.n_write as i64),
            (96, page),
            (104, page),
        ];
        for (at, v) in fields {
            h[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        h[HEADER_LEN - 8..].copy_from_slice(&MAGIC.to_le_bytes());
        h
    }

    /// Writes the header and the spooled records, flushes; returns the
    /// sink.
    ///
    /// # Errors
    ///
    /// [`TraceError::Write`].
    pub fn finish(mut self) -> Result<W, TraceError> {
        let header = self.header();
        let r = (|| {
            self.w.write_all(&header)?;
            let mut spool = self.spool.into_inner().map_err(|e| e.into_error())?;
            spool.rewind()?;
            std::io::copy(&mut spool, &mut self.w)?;
            self.w.flush()
        })();
        r.map_err(|source| TraceError::Write {
            path: self.path.to_path_buf(),
            source,
        })?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{TraceFormat, TraceReader, TraceWriter};
    use std::path::Path;
    use std::sync::Arc;

    fn recs() -> Vec<TraceRecord> {
        (0..5000u64)
            .map(|i| TraceRecord {
                pid: 1,
                addr: (i * 31 % 700) << PAGE_SHIFT,
                size: PAGE_SIZE as u32,
                kind: if i % 3 == 0 {
                    AccessKind::Store
                } else {
                    AccessKind::Load
                },
            })
            .collect()
    }

    fn write(path: &Path) {
        let mut w = TraceWriter::create(path, TraceFormat::Lcs).unwrap();
        for (i, r) in recs().iter().enumerate() {
            w.write(r, Position::Record(i as u64)).unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn round_trips_plain_and_zst_with_the_header_counts() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["t.lcs", "t.lcs.zst"] {
            let path = dir.path().join(name);
            write(&path);
            let got: Vec<_> = TraceReader::open(&path, None)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(got, recs(), "{name}");
        }
        let b = std::fs::read(dir.path().join("t.lcs")).unwrap();
        assert_eq!(b.len(), HEADER_LEN + 28 * 5000);
        let at = |o: usize| u64_at(&b, o);
        assert_eq!((at(0), at(8), at(16)), (MAGIC, 2, 1));
        assert_eq!((at(24), at(32), at(80)), (5000, 700, 1667));
        assert_eq!(at(HEADER_LEN - 8), MAGIC);
        // The magic decides, whatever the name.
        let odd = dir.path().join("x.csv");
        std::fs::copy(dir.path().join("t.lcs.zst"), &odd).unwrap();
        assert_eq!(TraceFormat::detect(&odd).unwrap(), TraceFormat::Lcs);
    }

    fn read(b: &[u8]) -> Vec<Result<TraceRecord, TraceError>> {
        let p: SharedPath = Arc::from(Path::new("/t/a.lcs"));
        match LcsReader::new(b, p) {
            Ok(r) => r.collect(),
            Err(e) => vec![Err(e)],
        }
    }

    fn header(version: u64, n_req: i64) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        h[8..16].copy_from_slice(&version.to_le_bytes());
        h[24..32].copy_from_slice(&n_req.to_le_bytes());
        h[HEADER_LEN - 8..].copy_from_slice(&MAGIC.to_le_bytes());
        h
    }

    /// A v3..v8 record: op/tenant at 20, i64 obj_size at 12.
    fn v3(len: usize, obj: u64, op: u8, size: i64) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[4..12].copy_from_slice(&obj.to_le_bytes());
        b[12..20].copy_from_slice(&size.to_le_bytes());
        b[20] = op;
        b[28..36].copy_from_slice(&(-1i64).to_le_bytes());
        b
    }

    #[test]
    fn every_version_reads_and_bad_records_name_their_number() {
        for version in 3..=8 {
            let len = record_len(version).unwrap();
            let mut f = header(version, 2);
            f.extend(v3(len, 9, 1, 100));
            f.extend(v3(len, 10, 3, 100));
            let got: Vec<_> = read(&f).into_iter().map(Result::unwrap).collect();
            assert_eq!(got.len(), 2, "v{version}");
            assert_eq!((got[0].addr, got[0].kind), (9 << 12, AccessKind::Load));
            assert_eq!(got[1].kind, AccessKind::Store);
        }
        let mut f = header(3, 0);
        f.extend(v3(36, 1, 1, 1));
        f.extend(v3(36, 1, 15, 1));
        let e = read(&f).pop().unwrap().unwrap_err().to_string();
        assert_eq!(e, "/t/a.lcs: record 1: unknown op \"lcs op 15\"");
        let mut f = header(3, 0);
        f.extend(v3(36, 1, 1, -5));
        let e = read(&f).pop().unwrap().unwrap_err().to_string();
        assert!(e.contains("record 0: field `obj_size`"), "{e}");
        // Truncated record; a count that differs from n_req.
        let mut f = header(3, 0);
        f.extend(v3(36, 1, 1, 1));
        f.extend(&v3(36, 1, 1, 1)[..20]);
        let e = read(&f).pop().unwrap().unwrap_err().to_string();
        assert!(e.contains("record 1: truncated"), "{e}");
        let mut f = header(3, 3);
        f.extend(v3(36, 1, 1, 1));
        let all = read(&f);
        assert_eq!(all.len(), 2);
        let e = all[1].as_ref().unwrap_err().to_string();
        assert!(
            e.contains("record 1: truncated: the header says n_req = 3"),
            "{e}"
        );
    }

    #[test]
    fn bad_headers_say_what_is_wrong() {
        let mut wrong_end = header(2, 0);
        wrong_end[HEADER_LEN - 1] = 0;
        for (bytes, want) in [
            (Vec::new(), "header: the file is empty"),
            (
                header(2, 0)[..100].to_vec(),
                "shorter than the 8192-byte lcs header",
            ),
            (wrong_end, "wrong magic"),
            (header(9, 0), "unsupported version 9"),
            (header(1, -1), "n_req/n_obj"),
        ] {
            let e = read(&bytes).pop().unwrap().unwrap_err().to_string();
            assert!(e.starts_with("/t/a.lcs: header: "), "{e}");
            assert!(e.contains(want), "{e}");
        }
    }
}
