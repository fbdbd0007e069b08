//! Valgrind lackey traces (`valgrind --tool=lackey --trace-mem=yes`).
//!
//! Lackey's `trace-mem` prints one access per line (lackey/lk_main.c,
//! `trace_instr` and `trace_load`/`trace_store`/`trace_modify`):
//!
//! ```text
//! ==4242== Lackey, an example Valgrind tool
//! I  0401ab70,3
//!  S 1fff000778,8
//!  L 04022e58,8
//!  M 0402ae30,4
//! ```
//!
//! `I` is an instruction fetch (read as a load of the text page), `L` a
//! load, `S` a store, and `M` a modify: read as a load then a store of the
//! same bytes, two records. Addresses are hex without a prefix, sizes
//! decimal. Lines starting with `==` (valgrind's banner and summary, which
//! `--log-file` puts in the same file), `SB addr` lines (superblock entries
//! of `--trace-superblocks=yes`, not accesses) and blank lines are skipped;
//! any other
//! line is an error, so a corrupt trace is not silently shortened. Record
//! with `--log-file=FILE` so that the program's own output stays out of it.
//!
//! A lackey trace is one process: every record has pid 1.

use super::text::{check_access, dec, hex};
use super::{AccessKind, Defect, Position, SharedPath, TraceError, TraceRecord};
use std::io::{BufRead, Write};

/// The pid given to every record of a lackey trace.
pub const LACKEY_PID: u32 = 1;

/// Whether `line` looks like a lackey data line (` L 0400...`), for format
/// detection.
pub fn is_data_line(line: &[u8]) -> bool {
    line.len() >= 4
        && line[0] == b' '
        && matches!(line[1], b'L' | b'S' | b'M')
        && line[2] == b' '
        && line[3].is_ascii_hexdigit()
}

/// A streaming lackey reader over any [`BufRead`].
#[derive(Debug)]
pub struct LackeyReader<R> {
    r: R,
    path: SharedPath,
    line: Vec<u8>,
    lineno: u64,
    /// The store half of an `M` line.
    pending: Option<TraceRecord>,
    done: bool,
}

/// A line's content.
enum Line {
    Skip,
    Access {
        kind: AccessKind,
        modify: bool,
        addr: u64,
        size: u32,
    },
}

impl<R: BufRead> LackeyReader<R> {
    /// Reads lackey text from `r`; `path` names it in errors.
    pub fn new(r: R, path: SharedPath) -> Self {
        LackeyReader {
            r,
            path,
            line: Vec::with_capacity(128),
            lineno: 0,
            pending: None,
            done: false,
        }
    }

    /// The line of the last record.
    pub fn position(&self) -> Position {
        Position::Line(self.lineno)
    }

    fn fail(&mut self, defect: Defect) -> Option<Result<TraceRecord, TraceError>> {
        self.done = true;
        Some(Err(TraceError::Malformed {
            path: self.path.to_path_buf(),
            at: Position::Line(self.lineno),
            defect,
        }))
    }
}

/// Parses one line (without its newline).
fn parse(line: &[u8]) -> Result<Line, Defect> {
    if line.iter().all(u8::is_ascii_whitespace)
        || line.starts_with(b"==")
        || line.starts_with(b"SB ")
    {
        return Ok(Line::Skip);
    }
    let (kind, modify) = if line.starts_with(b"I  ") {
        (AccessKind::Instr, false)
    } else if line.len() >= 3 && line[0] == b' ' && line[2] == b' ' {
        match line[1] {
            b'L' => (AccessKind::Load, false),
            b'S' => (AccessKind::Store, false),
            b'M' => (AccessKind::Load, true),
            other => {
                return Err(Defect::UnknownOp(
                    String::from_utf8_lossy(&[other]).into_owned(),
                ))
            }
        }
    } else {
        return Err(Defect::Garbage("lackey"));
    };
    let rest = std::str::from_utf8(&line[3..])
        .map_err(|_| Defect::Garbage("lackey"))?
        .trim();
    let Some((addr, size)) = rest.split_once(',') else {
        return Err(Defect::Truncated(format!(
            "expected `addr,size`, found {rest:?}"
        )));
    };
    let addr = hex(addr.trim())?;
    let size = dec(size.trim(), "size")?;
    let size = check_access(addr, size)?;
    Ok(Line::Access {
        kind,
        modify,
        addr,
        size,
    })
}

impl<R: BufRead> super::RecordStream for LackeyReader<R> {
    #[inline]
    fn next_rec(&mut self, err: &mut Option<TraceError>) -> Option<TraceRecord> {
        super::stash_error(self.next(), err)
    }

    fn position(&self) -> Position {
        LackeyReader::position(self)
    }
}

impl<R: BufRead> Iterator for LackeyReader<R> {
    type Item = Result<TraceRecord, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(store) = self.pending.take() {
            return Some(Ok(store));
        }
        loop {
            self.line.clear();
            match self.r.read_until(b'\n', &mut self.line) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {}
                Err(source) => {
                    self.done = true;
                    return Some(Err(TraceError::Read {
                        path: self.path.to_path_buf(),
                        at: Position::Line(self.lineno + 1),
                        source,
                    }));
                }
            }
            self.lineno += 1;
            let complete = self.line.last() == Some(&b'\n');
            let mut l = self.line.as_slice();
            while let [head @ .., b'\n' | b'\r'] = l {
                l = head;
            }
            match parse(l) {
                Ok(Line::Skip) => continue,
                Ok(Line::Access { .. }) if !complete => {
                    self.done = true;
                    return Some(Err(TraceError::Malformed {
                        path: self.path.to_path_buf(),
                        at: Position::Line(self.lineno),
                        defect: super::cut_last_line(),
                    }));
                }
                Ok(Line::Access {
                    kind,
                    modify,
                    addr,
                    size,
                }) => {
                    let rec = TraceRecord {
                        pid: LACKEY_PID,
                        addr,
                        size,
                        kind,
                    };
                    if modify {
                        self.pending = Some(TraceRecord {
                            kind: AccessKind::Store,
                            ..rec
                        });
                    }
                    return Some(Ok(rec));
                }
                Err(d) => return self.fail(d),
            }
        }
    }
}

/// Writes records as lackey lines (`I`, ` L`, ` S`; never ` M`).
#[derive(Debug)]
pub struct LackeyWriter<W: Write> {
    w: W,
    path: SharedPath,
    pid: Option<u32>,
}

impl<W: Write> LackeyWriter<W> {
    /// A writer onto `w`; `path` names it in errors.
    pub fn new(w: W, path: SharedPath) -> Self {
        LackeyWriter { w, path, pid: None }
    }

    /// Appends one record.
    ///
    /// # Errors
    ///
    /// [`TraceError::Unrepresentable`] for a second pid (lackey traces are
    /// one process); [`TraceError::Write`].
    pub fn write(&mut self, rec: &TraceRecord, at: Position) -> Result<(), TraceError> {
        check_one_pid(&mut self.pid, rec, &self.path, at, "lackey")?;
        let r = match rec.kind {
            AccessKind::Instr => writeln!(self.w, "I  {:08x},{}", rec.addr, rec.size),
            AccessKind::Load => writeln!(self.w, " L {:08x},{}", rec.addr, rec.size),
            AccessKind::Store => writeln!(self.w, " S {:08x},{}", rec.addr, rec.size),
        };
        r.map_err(|source| TraceError::Write {
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

/// For one-pid formats: the first record fixes the pid, another pid is
/// refused rather than silently merged into one process.
pub(crate) fn check_one_pid(
    pid: &mut Option<u32>,
    rec: &TraceRecord,
    path: &SharedPath,
    at: Position,
    format: &str,
) -> Result<(), TraceError> {
    match *pid {
        None => *pid = Some(rec.pid),
        Some(p) if p == rec.pid => {}
        Some(p) => {
            return Err(TraceError::Unrepresentable {
                path: path.to_path_buf(),
                at,
                reason: format!(
                    "pid {} after pid {p}: a {format} trace holds one process (convert to csv or native)",
                    rec.pid
                ),
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::Arc;

    fn read(text: &str) -> Vec<Result<TraceRecord, TraceError>> {
        LackeyReader::new(text.as_bytes(), Arc::from(Path::new("/t/x.lackey"))).collect()
    }

    fn rec(addr: u64, size: u32, kind: AccessKind) -> TraceRecord {
        TraceRecord {
            pid: LACKEY_PID,
            addr,
            size,
            kind,
        }
    }

    #[test]
    fn reads_every_kind_and_splits_modify() {
        let got: Vec<TraceRecord> = read(
            "==7== Lackey\r\n==7== \nSB 0401ab70\nI  0401ab70,3\n S 1fff000778,8\n L 04022e58,8\n M 0402ae30,4\n\n==7== Exit code: 0\n",
        )
        .into_iter()
        .map(Result::unwrap)
        .collect();
        assert_eq!(
            got,
            [
                rec(0x0401ab70, 3, AccessKind::Instr),
                rec(0x1fff000778, 8, AccessKind::Store),
                rec(0x04022e58, 8, AccessKind::Load),
                rec(0x0402ae30, 4, AccessKind::Load),
                rec(0x0402ae30, 4, AccessKind::Store),
            ]
        );
    }

    fn defect(text: &str) -> (String, Defect) {
        let all = read(text);
        let e = all.into_iter().find_map(Result::err).expect("an error");
        (e.to_string(), e.defect().cloned().expect("a defect"))
    }

    #[test]
    fn a_data_line_cut_before_its_newline_is_an_error() {
        // " L 04022e58,16" cut after ",1": it would read as a 1-byte load.
        let (msg, _) = defect("I  0400,1\n L 04022e58,1");
        assert!(
            msg.starts_with("/t/x.lackey: line 2: truncated: the last line has no newline"),
            "{msg}"
        );
        let (msg, _) = defect("I  0400,1\n L 04022e58,8");
        assert!(msg.contains("line 2: truncated"), "{msg}");
        // A banner line without its newline is only text.
        assert_eq!(read("I  0400,1\n==7== Exit").len(), 1);
    }

    #[test]
    fn errors_name_file_line_and_defect() {
        let (msg, d) = defect("I  0400,1\n L 04zz,8\n");
        assert!(msg.starts_with("/t/x.lackey: line 2: bad hex"), "{msg}");
        assert_eq!(d, Defect::BadHex("04zz".into()));
        let (msg, d) = defect(" X 0400,8\n");
        assert!(msg.contains("line 1"), "{msg}");
        assert_eq!(d, Defect::UnknownOp("X".into()));
        assert!(matches!(defect(" L 0400\n").1, Defect::Truncated(_)));
        assert!(matches!(defect(" L 0400,\n").1, Defect::BadNumber(..)));
        assert!(matches!(
            defect(" L 0400,99999999\n").1,
            Defect::OutOfRange { field: "size", .. }
        ));
        assert!(matches!(
            defect(" L ffffffffffffffff,8\n").1,
            Defect::OutOfRange {
                field: "address",
                ..
            }
        ));
        assert!(matches!(
            defect(" L 1ffffffffffffffff,8\n").1,
            Defect::BadHex(_)
        ));
        assert_eq!(defect("hello\n").1, Defect::Garbage("lackey"));
        assert_eq!(
            defect(" L \u{ff}0400,8\n").1,
            Defect::BadHex("\u{ff}0400".into())
        );
    }

    #[test]
    fn nothing_after_an_error() {
        let all = read(" L 0400,8\n L zz,8\n L 0400,8\n");
        assert_eq!(all.len(), 2);
        assert!(all[1].is_err());
    }

    #[test]
    fn writer_round_trips_and_refuses_a_second_pid() {
        let mut out = Vec::new();
        let path: SharedPath = Arc::from(Path::new("/t/o.lackey"));
        let mut w = LackeyWriter::new(&mut out, path);
        let recs = [
            rec(0x400, 3, AccessKind::Instr),
            rec(0x1000, 8, AccessKind::Load),
            rec(0xdead_beef_0000, 16, AccessKind::Store),
        ];
        for (i, r) in recs.iter().enumerate() {
            w.write(r, Position::Record(i as u64)).unwrap();
        }
        let other = TraceRecord { pid: 2, ..recs[0] };
        let e = w.write(&other, Position::Record(3)).unwrap_err();
        assert!(e.to_string().contains("record 3"), "{e}");
        w.finish().unwrap();
        let back: Vec<_> = read(std::str::from_utf8(&out).unwrap())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(back, recs);
    }
}
