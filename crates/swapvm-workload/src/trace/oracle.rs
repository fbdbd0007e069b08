//! libCacheSim's oracleGeneral traces.
//!
//! Packed little-endian records of 24 bytes and no header
//! (libCacheSim `traceReader/customized/oracleGeneralBin.h`):
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | u32 | `clock_time` (seconds) |
//! | 4 | u64 | `obj_id` |
//! | 12 | u32 | `obj_size` (bytes) |
//! | 16 | i64 | `next_access_vtime` (-1: never again) |
//!
//! A cache trace has objects, not addresses, and no pid. swapvm reads each
//! object as one 4 KiB page, page number `obj_id` (so `obj_id` must be below
//! 2^52, the pages of a 64-bit address space), of process 1, and every
//! request as a load: oracleGeneral records no operation, and cache traces
//! are dominated by reads (GETs). `obj_size` and the times are not used.
//! `next_access_vtime` below -1 is refused as corrupt.
//!
//! Written traces give every page access its own record: `clock_time` is
//! the record number (saturating at 2^32 - 1), `obj_size` 4096 and
//! `next_access_vtime` -1, since a streaming writer cannot know the future
//! (run libCacheSim's own tools to compute it for Belady-style oracles).
//! Stores become plain requests: the format cannot say "write".

use super::binary::{binary_record_stream, next_fast, next_record, take_buffered, u64_at};
use super::lackey::check_one_pid;
use super::{AccessKind, Defect, Position, RecordStream, SharedPath, TraceError, TraceRecord};
use std::io::{BufRead, Read, Write};
use swapvm_core::{PAGE_SHIFT, PAGE_SIZE};

/// Bytes in one record.
pub const RECORD_LEN: usize = 24;

/// The pid of every record read.
pub const ORACLE_PID: u32 = 1;

/// Largest `obj_id` read: page numbers of a 64-bit address space.
pub const OBJ_ID_MAX: u64 = (1 << (64 - PAGE_SHIFT)) - 1;

/// A streaming oracleGeneral reader.
#[derive(Debug)]
pub struct OracleReader<R> {
    r: R,
    path: SharedPath,
    record: u64,
    done: bool,
}

impl<R: Read> OracleReader<R> {
    /// Reads records from `r`; `path` names it in errors.
    pub fn new(r: R, path: SharedPath) -> Self {
        OracleReader {
            r,
            path,
            record: 0,
            done: false,
        }
    }

    /// Reads records from `r`, positioned at record `record` (the scan's
    /// second half): errors name records from there.
    pub(crate) fn records_at(r: R, path: SharedPath, record: u64) -> Self {
        OracleReader {
            r,
            path,
            record,
            done: false,
        }
    }

    /// The number of the last record read.
    pub fn position(&self) -> Position {
        Position::Record(self.record.saturating_sub(1))
    }
}

/// The record `b` holds, if it is valid (the hot path: no defect is
/// built; [`decode`] names what is wrong).
#[inline]
fn valid(b: &[u8; RECORD_LEN]) -> Option<TraceRecord> {
    let obj_id = u64_at(b, 4);
    let next_access_vtime = u64_at(b, 16) as i64;
    (obj_id <= OBJ_ID_MAX && next_access_vtime >= -1).then_some(TraceRecord {
        pid: ORACLE_PID,
        addr: obj_id << PAGE_SHIFT,
        size: PAGE_SIZE as u32,
        kind: AccessKind::Load,
    })
}

/// Decodes one record, naming the field a bad one gets wrong.
fn decode(b: &[u8; RECORD_LEN]) -> Result<TraceRecord, Defect> {
    valid(b).ok_or_else(|| defect(b))
}

/// What is wrong with a record [`valid`] refused.
#[cold]
fn defect(b: &[u8; RECORD_LEN]) -> Defect {
    let obj_id = u64_at(b, 4);
    if obj_id > OBJ_ID_MAX {
        return Defect::OutOfRange {
            field: "obj_id",
            value: obj_id.to_string(),
            allowed: "0..2^52 (one 4 KiB page per object)",
        };
    }
    Defect::OutOfRange {
        field: "next_access_vtime",
        value: (u64_at(b, 16) as i64).to_string(),
        allowed: "-1 (never) or a virtual time",
    }
}

impl<R: BufRead> Iterator for OracleReader<R> {
    type Item = Result<TraceRecord, TraceError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(rec) = next_fast(&mut self.r, &mut self.record, valid) {
            return Some(Ok(rec));
        }
        next_record(
            &mut self.r,
            &self.path,
            &mut self.record,
            &mut self.done,
            decode,
        )
    }
}

binary_record_stream!(OracleReader, valid);

/// Writes oracleGeneral records, one per page an access touches.
#[derive(Debug)]
pub struct OracleWriter<W: Write> {
    w: W,
    path: SharedPath,
    pid: Option<u32>,
    n: u64,
}

impl<W: Write> OracleWriter<W> {
    /// A writer onto `w`; `path` names it in errors.
    pub fn new(w: W, path: SharedPath) -> Self {
        OracleWriter {
            w,
            path,
            pid: None,
            n: 0,
        }
    }

    /// Appends a record for each page `rec` touches.
    ///
    /// # Errors
    ///
    /// [`TraceError::Unrepresentable`] for a second pid;
    /// [`TraceError::Write`].
    pub fn write(&mut self, rec: &TraceRecord, at: Position) -> Result<(), TraceError> {
        check_one_pid(&mut self.pid, rec, &self.path, at, "oracleGeneral")?;
        let (first, last) = rec.pages();
        for page in first..=last {
            let mut b = [0u8; RECORD_LEN];
            b[0..4].copy_from_slice(&u32::try_from(self.n).unwrap_or(u32::MAX).to_le_bytes());
            b[4..12].copy_from_slice(&page.to_le_bytes());
            b[12..16].copy_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
            b[16..24].copy_from_slice(&(-1i64).to_le_bytes());
            self.w.write_all(&b).map_err(|source| TraceError::Write {
                path: self.path.to_path_buf(),
                source,
            })?;
            self.n += 1;
        }
        Ok(())
    }

    /// Flushes; returns the sink.
    ///
    /// # Errors
    ///
    /// [`TraceError::Write`].
    pub fn finish(mut self) -> Result<W, TraceError> {
        self.w.flush().map_err(|source| TraceError::Write {
            path: self.path.to_path_buf(),
            source,
        })?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::Arc;

    fn raw(clock: u32, obj: u64, size: u32, next: i64) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[0..4].copy_from_slice(&clock.to_le_bytes());
        b[4..12].copy_from_slice(&obj.to_le_bytes());
        b[12..16].copy_from_slice(&size.to_le_bytes());
        b[16..24].copy_from_slice(&next.to_le_bytes());
        b
    }

    fn read(bytes: &[u8]) -> Vec<Result<TraceRecord, TraceError>> {
        OracleReader::new(bytes, Arc::from(Path::new("/t/x.oracleGeneral.bin"))).collect()
    }

    #[test]
    fn objects_are_pages_of_pid_1_read() {
        let mut f = Vec::new();
        f.extend(raw(1, 7, 100, 2));
        f.extend(raw(2, 7, 100, -1));
        f.extend(raw(3, OBJ_ID_MAX, 1 << 20, i64::MAX));
        let got: Vec<_> = read(&f).into_iter().map(Result::unwrap).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].addr, 7 << 12);
        assert_eq!(got[0].pages(), (7, 7));
        assert_eq!(got[2].pages(), (OBJ_ID_MAX, OBJ_ID_MAX));
        assert!(got.iter().all(|r| r.pid == 1 && r.kind == AccessKind::Load));
    }

    #[test]
    fn errors_name_the_record() {
        let mut f = Vec::new();
        f.extend(raw(1, 7, 100, 2));
        f.extend(raw(2, 1 << 52, 100, -1));
        let e = read(&f).pop().unwrap().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/t/x.oracleGeneral.bin: record 1: field `obj_id`"),
            "{e}"
        );

        let mut f = Vec::new();
        f.extend(raw(1, 7, 100, -2));
        let e = read(&f).pop().unwrap().unwrap_err();
        assert!(matches!(
            e.defect(),
            Some(Defect::OutOfRange {
                field: "next_access_vtime",
                ..
            })
        ));

        let mut f = Vec::new();
        f.extend(raw(1, 7, 100, 2));
        f.extend(raw(1, 8, 100, 2));
        f.truncate(24 + 10);
        let all = read(&f);
        assert_eq!(all.len(), 2);
        let e = all[1].as_ref().unwrap_err();
        assert!(e.to_string().contains("record 1: truncated"), "{e}");
    }

    /// Every record through the replay's and the scan's way of reading:
    /// bulk from the buffer while it can, else one at a time.
    fn read_bulk(bytes: &[u8], buf: usize) -> (Vec<TraceRecord>, Option<TraceError>) {
        let r = std::io::BufReader::with_capacity(buf, bytes);
        let mut r = OracleReader::new(r, Arc::from(Path::new("/t/x.oracleGeneral.bin")));
        let (mut out, mut err) = (Vec::new(), None);
        loop {
            if r.take_buffered(|rec| {
                out.push(rec);
                true
            }) > 0
            {
                continue;
            }
            match r.next_rec(&mut err) {
                Some(rec) => out.push(rec),
                None => return (out, err),
            }
        }
    }

    #[test]
    fn bulk_decode_gives_the_records_and_errors_of_the_iterator() {
        let mut f = Vec::new();
        for i in 0..1000u64 {
            f.extend(raw(i as u32, i * 3 % 777, 4096, -1));
        }
        // Buffers of whole records, and of sizes that split a record.
        for buf in [24 * 10, 1000, 64 << 10] {
            let (got, err) = read_bulk(&f, buf);
            assert!(err.is_none());
            let want: Vec<_> = read(&f).into_iter().map(Result::unwrap).collect();
            assert_eq!(got, want, "buffer {buf}");
        }
        // A bad record inside a buffer: the records before it, then its
        // error with its number; a truncated tail likewise.
        let mut bad = f.clone();
        bad[700 * RECORD_LEN + 4..700 * RECORD_LEN + 12]
            .copy_from_slice(&(1u64 << 52).to_le_bytes());
        let mut short = f.clone();
        short.truncate(999 * RECORD_LEN + 5);
        for (bytes, n, what) in [
            (&bad, 700, "record 700: field `obj_id`"),
            (&short, 999, "record 999: truncated"),
        ] {
            for buf in [24 * 10, 1000, 64 << 10] {
                let (got, err) = read_bulk(bytes, buf);
                assert_eq!(got.len(), n, "buffer {buf}");
                let e = err.unwrap().to_string();
                assert!(e.contains(what), "{e}");
            }
        }
    }

    #[test]
    fn writer_splits_pages_and_round_trips_pages() {
        let mut out = Vec::new();
        let mut w = OracleWriter::new(&mut out, Arc::from(Path::new("/t/o.bin")));
        let straddle = TraceRecord {
            pid: 3,
            addr: 0x1ffc,
            size: 8,
            kind: AccessKind::Store,
        };
        w.write(&straddle, Position::Record(0)).unwrap();
        assert!(w
            .write(&TraceRecord { pid: 4, ..straddle }, Position::Record(1))
            .is_err());
        w.finish().unwrap();
        assert_eq!(out.len(), 2 * RECORD_LEN);
        let pages: Vec<_> = read(&out)
            .into_iter()
            .map(|r| r.unwrap().pages().0)
            .collect();
        assert_eq!(pages, [1, 2]);
    }
}
