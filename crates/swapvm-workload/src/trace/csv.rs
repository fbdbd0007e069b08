//! CSV traces: `time,pid,op,address[,size]`, one access per line.
//!
//! ```text
//! time,pid,op,address,size
//! 0,100,R,0x7f0000001000,8
//! 1,101,W,0x7f0000002008,8
//! 2,100,I,4198400
//! ```
//!
//! - `time`: a decimal integer; kept for the reader's own use, not for
//!   ordering: records replay in file order.
//! - `pid`: decimal, 0..2^32. Each pid is a process of its own.
//! - `op`: `R`/`L`/`read`/`load`, `W`/`S`/`write`/`store`, or
//!   `I`/`fetch` (an instruction fetch, replayed as a load); any case.
//! - `address`: `0x`-prefixed hex, or decimal.
//! - `size`: optional, decimal bytes (default 1, at most 1 MiB).
//!
//! A first line starting with `time` is the header; blank lines and lines
//! starting with `#` are skipped. Fields may be padded with spaces.

use super::text::{check_access, dec, hex};
use super::{AccessKind, Defect, Position, SharedPath, TraceError, TraceRecord};
use std::io::{BufRead, Write};

/// A streaming CSV reader over any [`BufRead`].
#[derive(Debug)]
pub struct CsvReader<R> {
    r: R,
    path: SharedPath,
    line: Vec<u8>,
    lineno: u64,
    seen_data: bool,
    done: bool,
}

impl<R: BufRead> CsvReader<R> {
    /// Reads CSV from `r`; `path` names it in errors.
    pub fn new(r: R, path: SharedPath) -> Self {
        CsvReader {
            r,
            path,
            line: Vec::with_capacity(128),
            lineno: 0,
            seen_data: false,
            done: false,
        }
    }

    /// The line of the last record.
    pub fn position(&self) -> Position {
        Position::Line(self.lineno)
    }
}

/// The op column.
fn op(s: &str) -> Result<AccessKind, Defect> {
    let kind = match s.to_ascii_lowercase().as_str() {
        "r" | "l" | "read" | "load" => AccessKind::Load,
        "w" | "s" | "write" | "store" => AccessKind::Store,
        "i" | "fetch" | "instr" => AccessKind::Instr,
        _ => return Err(Defect::UnknownOp(s.to_owned())),
    };
    Ok(kind)
}

/// `0x`-prefixed hex or decimal.
fn address(s: &str) -> Result<u64, Defect> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => hex(h),
        None => dec(s, "address"),
    }
}

/// Parses one data line.
fn parse(line: &str) -> Result<TraceRecord, Defect> {
    let mut f = line.split(',').map(str::trim);
    let mut field = |name: &str| {
        f.next()
            .ok_or_else(|| Defect::Truncated(format!("no `{name}` field")))
    };
    let _time = dec(field("time")?, "time")?;
    let pid = dec(field("pid")?, "pid")?;
    let pid = u32::try_from(pid).map_err(|_| Defect::OutOfRange {
        field: "pid",
        value: pid.to_string(),
        allowed: "0..2^32",
    })?;
    let kind = op(field("op")?)?;
    let addr = address(field("address")?)?;
    let size = match f.next() {
        Some(s) => dec(s, "size")?,
        None => 1,
    };
    if let Some(extra) = f.next() {
        return Err(Defect::OutOfRange {
            field: "columns",
            value: format!("a sixth column {extra:?}"),
            allowed: "time,pid,op,address[,size]",
        });
    }
    let size = check_access(addr, size)?;
    Ok(TraceRecord {
        pid,
        addr,
        size,
        kind,
    })
}

impl<R: BufRead> super::RecordStream for CsvReader<R> {
    #[inline]
    fn next_rec(&mut self, err: &mut Option<TraceError>) -> Option<TraceRecord> {
        super::stash_error(self.next(), err)
    }

    fn position(&self) -> Position {
        CsvReader::position(self)
    }
}

impl<R: BufRead> Iterator for CsvReader<R> {
    type Item = Result<TraceRecord, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.line.clear();
            match self.r.read_until(b'\n', &mut self.line) {
                Ok(0) => self.done = true,
                Ok(_) => {
                    self.lineno += 1;
                    let fail = |d| TraceError::Malformed {
                        path: self.path.to_path_buf(),
                        at: Position::Line(self.lineno),
                        defect: d,
                    };
                    let Ok(text) = std::str::from_utf8(&self.line) else {
                        self.done = true;
                        return Some(Err(fail(Defect::Garbage("csv (not UTF-8)"))));
                    };
                    let text = text.trim();
                    if text.is_empty() || text.starts_with('#') {
                        continue;
                    }
                    if !self.seen_data {
                        self.seen_data = true;
                        if text
                            .get(..4)
                            .is_some_and(|h| h.eq_ignore_ascii_case("time"))
                        {
                            continue;
                        }
                    }
                    if self.line.last() != Some(&b'\n') {
                        self.done = true;
                        return Some(Err(fail(super::cut_last_line())));
                    }
                    return Some(parse(text).map_err(|d| {
                        self.done = true;
                        fail(d)
                    }));
                }
                Err(source) => {
                    self.done = true;
                    return Some(Err(TraceError::Read {
                        path: self.path.to_path_buf(),
                        at: Position::Line(self.lineno + 1),
                        source,
                    }));
                }
            }
        }
        None
    }
}

/// Writes records as CSV with a header; `time` is the record number.
#[derive(Debug)]
pub struct CsvWriter<W: Write> {
    w: W,
    path: SharedPath,
    n: u64,
}

impl<W: Write> CsvWriter<W> {
    /// A writer onto `w`, header written.
    ///
    /// # Errors
    ///
    /// [`TraceError::Write`].
    pub fn new(mut w: W, path: SharedPath) -> Result<Self, TraceError> {
        writeln!(w, "time,pid,op,address,size").map_err(|source| TraceError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(CsvWriter { w, path, n: 0 })
    }

    /// Appends one record.
    ///
    /// # Errors
    ///
    /// [`TraceError::Write`].
    pub fn write(&mut self, rec: &TraceRecord) -> Result<(), TraceError> {
        let op = match rec.kind {
            AccessKind::Instr => 'I',
            AccessKind::Load => 'R',
            AccessKind::Store => 'W',
        };
        writeln!(
            self.w,
            "{},{},{op},{:#x},{}",
            self.n, rec.pid, rec.addr, rec.size
        )
        .map_err(|source| TraceError::Write {
            path: self.path.to_path_buf(),
            source,
        })?;
        self.n += 1;
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

    fn read(text: &str) -> Vec<Result<TraceRecord, TraceError>> {
        CsvReader::new(text.as_bytes(), Arc::from(Path::new("/t/x.csv"))).collect()
    }

    #[test]
    fn a_record_cut_before_its_newline_is_an_error() {
        let all = read("time,pid,op,address,size\n0,100,R,0x1000,8\n1,100,W,0x20");
        assert!(all[0].is_ok());
        let e = all[1].as_ref().unwrap_err().to_string();
        assert!(
            e.starts_with("/t/x.csv: line 3: truncated: the last line has no newline"),
            "{e}"
        );
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn reads_header_comments_and_both_address_forms() {
        let got: Vec<TraceRecord> = read(
            "# captured\ntime,pid,op,address,size\n0,100,R,0x7f0000001000,8\n\n 1 , 101 , w , 4096 \n2,100,fetch,0X10,4\n",
        )
        .into_iter()
        .map(Result::unwrap)
        .collect();
        assert_eq!(
            got,
            [
                TraceRecord {
                    pid: 100,
                    addr: 0x7f00_0000_1000,
                    size: 8,
                    kind: AccessKind::Load
                },
                TraceRecord {
                    pid: 101,
                    addr: 4096,
                    size: 1,
                    kind: AccessKind::Store
                },
                TraceRecord {
                    pid: 100,
                    addr: 0x10,
                    size: 4,
                    kind: AccessKind::Instr
                },
            ]
        );
    }

    fn defect(text: &str) -> (String, Defect) {
        let e = read(text)
            .into_iter()
            .find_map(Result::err)
            .expect("an error");
        (e.to_string(), e.defect().cloned().expect("a defect"))
    }

    #[test]
    fn errors_name_file_line_and_defect() {
        let (msg, d) = defect("time,pid,op,address\n0,1,R,0x10\n1,1,R,0xg0\n");
        assert!(msg.starts_with("/t/x.csv: line 3: bad hex"), "{msg}");
        assert_eq!(d, Defect::BadHex("g0".into()));
        assert_eq!(defect("0,1,X,0x10\n").1, Defect::UnknownOp("X".into()));
        assert!(matches!(defect("0,1,R\n").1, Defect::Truncated(_)));
        assert!(matches!(
            defect("0,4294967296,R,0x10\n").1,
            Defect::OutOfRange { field: "pid", .. }
        ));
        assert!(matches!(
            defect("0,1,R,0x10,8,9\n").1,
            Defect::OutOfRange {
                field: "columns",
                ..
            }
        ));
        assert!(matches!(
            defect("0,1,R,0x10,2000000\n").1,
            Defect::OutOfRange { field: "size", .. }
        ));
        assert!(matches!(
            defect("0,1,R,99999999999999999999\n").1,
            Defect::OutOfRange {
                field: "address",
                ..
            }
        ));
        assert!(matches!(
            defect("x,1,R,0x10\n").1,
            Defect::BadNumber(_, "time")
        ));
    }

    #[test]
    fn writer_round_trips() {
        let recs = [
            TraceRecord {
                pid: 7,
                addr: 0xffff_ffff_ffff_f000,
                size: 4096,
                kind: AccessKind::Store,
            },
            TraceRecord {
                pid: 0,
                addr: 0,
                size: 1,
                kind: AccessKind::Instr,
            },
        ];
        let mut out = Vec::new();
        let mut w = CsvWriter::new(&mut out, Arc::from(Path::new("/t/o.csv"))).unwrap();
        for r in &recs {
            w.write(r).unwrap();
        }
        w.finish().unwrap();
        let back: Vec<_> = read(std::str::from_utf8(&out).unwrap())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(back, recs);
    }
}
