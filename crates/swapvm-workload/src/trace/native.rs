//! swapvm's own binary trace format (`*.swvmtrace`).
//!
//! Fixed-size little-endian records after a 16-byte header, so record `n`
//! is at byte `16 + 16 n`, a truncated file is detected to the record, and
//! a reader needs no state but its offset.
//!
//! Header:
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | [u8; 8] | magic `SWVMTRC\0` |
//! | 8 | u16 | version, 1 |
//! | 10 | u16 | record length, 16 |
//! | 12 | u32 | flags, 0 (reserved) |
//!
//! Record:
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | u64 | byte address |
//! | 8 | u32 | pid |
//! | 12 | u32 | `size << 2 \| kind`: kind 0 fetch, 1 load, 2 store (3 refused); size 1..=2^20 bytes (0 is read as 1, as in every format) |
//!
//! Sixteen bytes a record is not compression: it is about the size of
//! lackey's text (a 67-million-record lackey trace of `ls -lR` took 960 MB
//! as text, 1074 MB native). What it buys is decoding without parsing: that
//! trace replayed at 11.5 million accesses/s from the native file against
//! 3.9 million from the text. It keeps everything swapvm replays (pid,
//! address, size, fetch/load/store) and nothing else. A delta/varint
//! encoding would be several times smaller; it is not done.

use super::binary::{
    binary_record_stream, fill, next_fast, next_record, take_buffered, u16_at, u32_at, u64_at, Fill,
};
use super::{
    AccessKind, Defect, Position, RecordStream, SharedPath, TraceError, TraceRecord,
    ACCESS_SIZE_MAX,
};
use std::io::{BufRead, Read, Write};

/// The file's first eight bytes.
pub const MAGIC: [u8; 8] = *b"SWVMTRC\0";
/// The format version written and read.
pub const VERSION: u16 = 1;
/// Bytes in the header.
pub const HEADER_LEN: usize = 16;
/// Bytes in one record.
pub const RECORD_LEN: usize = 16;

/// A streaming native-format reader.
#[derive(Debug)]
pub struct NativeReader<R> {
    r: R,
    path: SharedPath,
    record: u64,
    done: bool,
}

impl<R: Read> NativeReader<R> {
    /// Reads and checks the header from `r`; `path` names it in errors.
    ///
    /// # Errors
    ///
    /// [`TraceError::Malformed`] at the header: wrong magic, an unsupported
    /// version, record length or flags, or a file shorter than the header.
    pub fn new(mut r: R, path: SharedPath) -> Result<Self, TraceError> {
        let header_err = |defect| TraceError::Malformed {
            path: path.to_path_buf(),
            at: Position::Header,
            defect,
        };
        let mut h = [0u8; HEADER_LEN];
        match fill(&mut r, &mut h) {
            Ok(Fill::Full) => {}
            Ok(Fill::Eof) => return Err(header_err(Defect::Empty)),
            Ok(Fill::Partial(_)) if !h.starts_with(&MAGIC) => {
                return Err(header_err(Defect::WrongMagic {
                    found: h[..8].to_vec(),
                    expected: MAGIC.to_vec(),
                }))
            }
            Ok(_) => {
                return Err(header_err(Defect::Truncated(format!(
                    "the file is shorter than the {HEADER_LEN}-byte header"
                ))))
            }
            Err(source) => {
                return Err(TraceError::Read {
                    path: path.to_path_buf(),
                    at: Position::Header,
                    source,
                })
            }
        }
        if h[..8] != MAGIC {
            return Err(header_err(Defect::WrongMagic {
                found: h[..8].to_vec(),
                expected: MAGIC.to_vec(),
            }));
        }
        for (field, value, want) in [
            ("version", u64::from(u16_at(&h, 8)), u64::from(VERSION)),
            (
                "record length",
                u64::from(u16_at(&h, 10)),
                RECORD_LEN as u64,
            ),
            ("flags", u64::from(u32_at(&h, 12)), 0),
        ] {
            if value != want {
                return Err(header_err(Defect::Unsupported { field, value }));
            }
        }
        Ok(NativeReader {
            r,
            path,
            record: 0,
            done: false,
        })
    }

    /// Reads records from `r`, positioned at record `record` of a file
    /// whose header was checked already (the scan's second half): errors
    /// name records from there.
    pub(crate) fn records_at(r: R, path: SharedPath, record: u64) -> Self {
        NativeReader {
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
    let addr = u64_at(b, 0);
    let pid = u32_at(b, 8);
    let word = u32_at(b, 12);
    let kind = match word & 3 {
        0 => AccessKind::Instr,
        1 => AccessKind::Load,
        2 => AccessKind::Store,
        _ => return None,
    };
    // A size of 0 is read as 1, as in every format (swapvm writes none).
    let size = (word >> 2).max(1);
    let ok = size <= ACCESS_SIZE_MAX && addr.checked_add(u64::from(size) - 1).is_some();
    ok.then_some(TraceRecord {
        pid,
        addr,
        size,
        kind,
    })
}

/// Decodes one record, naming the field a bad one gets wrong.
fn decode(b: &[u8; RECORD_LEN]) -> Result<TraceRecord, Defect> {
    valid(b).ok_or_else(|| defect(b))
}

/// What is wrong with a record [`valid`] refused.
#[cold]
fn defect(b: &[u8; RECORD_LEN]) -> Defect {
    let word = u32_at(b, 12);
    if word & 3 == 3 {
        return Defect::UnknownOp("kind 3".into());
    }
    Defect::OutOfRange {
        field: "size",
        value: (word >> 2).to_string(),
        allowed: "0..=1048576 bytes, not past the top of the address space",
    }
}

/// Encodes one record.
fn encode(rec: &TraceRecord) -> [u8; RECORD_LEN] {
    let kind = match rec.kind {
        AccessKind::Instr => 0,
        AccessKind::Load => 1,
        AccessKind::Store => 2,
    };
    let mut b = [0u8; RECORD_LEN];
    b[0..8].copy_from_slice(&rec.addr.to_le_bytes());
    b[8..12].copy_from_slice(&rec.pid.to_le_bytes());
    b[12..16].copy_from_slice(&((rec.size.max(1) << 2) | kind).to_le_bytes());
    b
}

impl<R: BufRead> Iterator for NativeReader<R> {
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

binary_record_stream!(NativeReader, valid);

/// Writes the native format.
#[derive(Debug)]
pub struct NativeWriter<W: Write> {
    w: W,
    path: SharedPath,
}

impl<W: Write> NativeWriter<W> {
    /// A writer onto `w`, header written.
    ///
    /// # Errors
    ///
    /// [`TraceError::Write`].
    pub fn new(mut w: W, path: SharedPath) -> Result<Self, TraceError> {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(&MAGIC);
        h[8..10].copy_from_slice(&VERSION.to_le_bytes());
        h[10..12].copy_from_slice(&(RECORD_LEN as u16).to_le_bytes());
        w.write_all(&h).map_err(|source| TraceError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(NativeWriter { w, path })
    }

    /// Appends one record.
    ///
    /// # Errors
    ///
    /// [`TraceError::Unrepresentable`] for a size above
    /// [`ACCESS_SIZE_MAX`] (readers never yield one); [`TraceError::Write`].
    pub fn write(&mut self, rec: &TraceRecord, at: Position) -> Result<(), TraceError> {
        if rec.size > ACCESS_SIZE_MAX {
            return Err(TraceError::Unrepresentable {
                path: self.path.to_path_buf(),
                at,
                reason: format!("size {} above {ACCESS_SIZE_MAX}", rec.size),
            });
        }
        self.w
            .write_all(&encode(rec))
            .map_err(|source| TraceError::Write {
                path: self.path.to_path_buf(),
                source,
            })
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

    fn path() -> SharedPath {
        Arc::from(Path::new("/t/x.swvmtrace"))
    }

    fn write(recs: &[TraceRecord]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = NativeWriter::new(&mut out, path()).unwrap();
        for (i, r) in recs.iter().enumerate() {
            w.write(r, Position::Record(i as u64)).unwrap();
        }
        w.finish().unwrap();
        out
    }

    fn read(bytes: &[u8]) -> Result<Vec<Result<TraceRecord, TraceError>>, TraceError> {
        Ok(NativeReader::new(bytes, path())?.collect())
    }

    fn sample() -> Vec<TraceRecord> {
        vec![
            TraceRecord {
                pid: 1,
                addr: 0x7fff_0000_0ffc,
                size: 8,
                kind: AccessKind::Store,
            },
            TraceRecord {
                pid: u32::MAX,
                addr: 0,
                size: ACCESS_SIZE_MAX,
                kind: AccessKind::Instr,
            },
            TraceRecord {
                pid: 0,
                addr: u64::MAX,
                size: 1,
                kind: AccessKind::Load,
            },
        ]
    }

    #[test]
    fn round_trips() {
        let bytes = write(&sample());
        assert_eq!(bytes.len(), HEADER_LEN + 3 * RECORD_LEN);
        let back: Vec<_> = read(&bytes)
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(back, sample());
        assert!(read(&write(&[])).unwrap().is_empty());
    }

    #[test]
    fn header_errors() {
        let mut bytes = write(&sample());
        bytes[0] = b'X';
        let e = read(&bytes).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/t/x.swvmtrace: header: wrong magic"),
            "{e}"
        );
        let e = read(b"").unwrap_err();
        assert!(e.to_string().contains("header: the file is empty"), "{e}");
        let e = read(b"SWV").unwrap_err();
        assert!(matches!(e.defect(), Some(Defect::WrongMagic { .. })), "{e}");
        let e = read(&MAGIC).unwrap_err();
        assert!(matches!(e.defect(), Some(Defect::Truncated(_))), "{e}");
        let mut bytes = write(&sample());
        bytes[8] = 2;
        let e = read(&bytes).unwrap_err();
        assert!(e.to_string().contains("unsupported version 2"), "{e}");
        let mut bytes = write(&sample());
        bytes[12] = 1;
        assert!(read(&bytes).is_err());
    }

    #[test]
    fn record_errors_name_the_record() {
        let good = write(&sample());
        let at = |n: usize| HEADER_LEN + n * RECORD_LEN;
        let mut b = good.clone();
        b.truncate(at(2) + 5);
        let all = read(&b).unwrap();
        let e = all[2].as_ref().unwrap_err();
        assert!(e.to_string().contains("record 2: truncated"), "{e}");

        let mut b = good.clone();
        b[at(1) + 12] |= 3;
        let e = read(&b).unwrap().pop().unwrap().unwrap_err();
        assert!(e.to_string().contains("record 1: unknown op"), "{e}");

        // Size 0 is read as 1, as the text formats read it; too large is
        // refused.
        let mut b = good.clone();
        b[at(0) + 12..at(0) + 16].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(read(&b).unwrap().remove(0).unwrap().size, 1);
        b[at(0) + 12..at(0) + 16].copy_from_slice(&(((1u32 << 20) + 1) << 2 | 2).to_le_bytes());
        let e = read(&b).unwrap().remove(0).unwrap_err();
        assert!(e.to_string().contains("record 0: field `size`"), "{e}");

        let mut b = good;
        b[at(2) + 12..at(2) + 16].copy_from_slice(&((8u32 << 2) | 1).to_le_bytes());
        let e = read(&b).unwrap().pop().unwrap().unwrap_err();
        assert!(matches!(e.defect(), Some(Defect::OutOfRange { .. })), "{e}");
    }
}
