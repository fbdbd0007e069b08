//! Shared by the binary readers: fixed-size records from a byte stream,
//! telling a clean end of file from one inside a record.

use super::{Defect, Position, SharedPath, TraceError, TraceRecord};
use std::io::{BufRead, ErrorKind, Read};

/// How filling a record buffer ended.
pub(crate) enum Fill {
    /// The buffer is full.
    Full,
    /// End of file before the first byte: no more records.
    Eof,
    /// End of file after this many bytes: a truncated record.
    Partial(usize),
}

/// Fills `buf` from `r`, retrying interrupted reads.
pub(crate) fn fill<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<Fill> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => return Ok(if n == 0 { Fill::Eof } else { Fill::Partial(n) }),
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Fill::Full)
}

/// The next record of a binary reader when it is cheap: the reader's
/// buffer holds the whole record and `valid` accepts it. The record is
/// decoded in place from the buffer (no copy into a record array, no read
/// call) and consumed. `None` means "take [`next_record`]": a record that
/// straddles the end of the buffer, the end of the file, an I/O error or a
/// record `valid` refuses, whose defect `next_record` then names.
#[inline]
pub(crate) fn next_fast<R: BufRead, const N: usize>(
    r: &mut R,
    record: &mut u64,
    valid: impl Fn(&[u8; N]) -> Option<TraceRecord>,
) -> Option<TraceRecord> {
    let buf = r.fill_buf().ok()?;
    let b: &[u8; N] = buf.get(..N)?.try_into().ok()?;
    let rec = valid(b)?;
    r.consume(N);
    *record += 1;
    Some(rec)
}

/// The bulk form of [`next_fast`]: decodes the whole records `r`'s buffer
/// holds (refilling it first if it is empty) and hands them to `take` in
/// order, until `take` refuses one, a record fails `valid`, or the buffer
/// holds no further whole record. Records taken are consumed; the one
/// refused or invalid, and a partial record at the end of the buffer, stay
/// for the next call (or for [`next_record`], which names a defect).
/// Returns how many were taken; 0 means "take the general path". One
/// `fill_buf` per buffer instead of per record, and the decode loop runs
/// over a plain slice.
#[inline]
pub(crate) fn take_buffered<R: BufRead, const N: usize>(
    r: &mut R,
    record: &mut u64,
    valid: impl Fn(&[u8; N]) -> Option<TraceRecord>,
    mut take: impl FnMut(TraceRecord) -> bool,
) -> usize {
    let Ok(buf) = r.fill_buf() else {
        return 0;
    };
    let mut n = 0;
    for b in buf.chunks_exact(N) {
        let Ok(b) = <&[u8; N]>::try_from(b) else {
            break;
        };
        let Some(rec) = valid(b) else {
            break;
        };
        if !take(rec) {
            break;
        }
        n += 1;
    }
    r.consume(n * N);
    *record += n as u64;
    n
}

/// The next record of a binary reader: `N` bytes from `r`, decoded. A
/// clean end of file ends the stream; a truncated record, a read error or
/// a record `decode` refuses is reported once at record number `*record`
/// of `path`, and the stream ends (`*done`).
///
/// The readers try [`next_fast`] first; this is the general path, out of
/// line: it fills a record array by `read` calls, which refill the buffer,
/// see the end of the file and retry interrupted reads.
#[cold]
#[inline(never)]
pub(crate) fn next_record<R: Read, const N: usize, D>(
    r: &mut R,
    path: &SharedPath,
    record: &mut u64,
    done: &mut bool,
    decode: D,
) -> Option<Result<TraceRecord, TraceError>>
where
    D: Fn(&[u8; N]) -> Result<TraceRecord, Defect>,
{
    if *done {
        return None;
    }
    let mut b = [0u8; N];
    let defect = match fill(r, &mut b) {
        Ok(Fill::Full) => match decode(&b) {
            Ok(rec) => {
                *record += 1;
                return Some(Ok(rec));
            }
            Err(d) => d,
        },
        Ok(Fill::Eof) => {
            *done = true;
            return None;
        }
        Ok(Fill::Partial(n)) => {
            Defect::Truncated(format!("the file ends {n} bytes into a {N}-byte record"))
        }
        Err(source) => {
            *done = true;
            return Some(Err(TraceError::Read {
                path: path.to_path_buf(),
                at: Position::Record(*record),
                source,
            }));
        }
    };
    *done = true;
    Some(Err(TraceError::Malformed {
        path: path.to_path_buf(),
        at: Position::Record(*record),
        defect,
    }))
}

/// A little-endian u16 at `at`.
#[inline]
pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// A little-endian u32 at `at`.
#[inline]
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A little-endian u64 at `at`.
#[inline]
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The [`super::RecordStream`] of a binary reader `$reader` (fields `done`,
/// `r`, `record`; methods `next` and `position`) whose records `$valid`
/// decodes: the cheap in-place step when it applies, else `next`, whose
/// error is set aside for the caller.
macro_rules! binary_record_stream {
    ($reader:ident, $valid:path) => {
        impl<R: BufRead> RecordStream for $reader<R> {
            #[inline]
            fn next_rec(&mut self, err: &mut Option<TraceError>) -> Option<TraceRecord> {
                if self.done {
                    return None;
                }
                if let Some(rec) = next_fast(&mut self.r, &mut self.record, $valid) {
                    return Some(rec);
                }
                super::stash_error(self.next(), err)
            }

            #[inline]
            fn take_buffered(&mut self, take: impl FnMut(TraceRecord) -> bool) -> usize {
                if self.done {
                    return 0;
                }
                take_buffered(&mut self.r, &mut self.record, $valid, take)
            }

            fn position(&self) -> Position {
                $reader::position(self)
            }
        }
    };
}
pub(crate) use binary_record_stream;
