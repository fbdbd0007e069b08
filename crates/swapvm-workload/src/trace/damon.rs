//! DAMON region traces: what `swapvm trace record --damon` captures, and
//! the model that replays it as page accesses.
//!
//! DAMON (mm/damon) does not see single accesses. Every sampling interval
//! it checks one page of each region (its accessed bit), and every
//! aggregation interval it reports, per region, `nr_accesses`: in how many
//! of that interval's samples the checked page had been accessed, out of
//! at most `aggr_us / sample_us`. Regions split and merge adaptively so
//! that each is roughly uniform. A DAMON trace is those reports, one line
//! per region and aggregation interval:
//!
//! ```text
//! # swapvm damon regions v1
//! # sample_us=5000
//! # aggr_us=100000
//! # seed=0
//! interval,pid,start,end,nr_accesses,age
//! 0,4242,0x55d0c0000000,0x55d0c0200000,20,3
//! ```
//!
//! `start` and `end` are page-aligned hex addresses (end exclusive), `age`
//! is DAMON's count of aggregation intervals the region kept its access
//! frequency, `interval` counts aggregation intervals from 0 and does not
//! decrease. Other `# key=value` lines (the command, the capture method)
//! are kept as metadata. The file may be zstd-compressed.
//!
//! # The replay model
//!
//! DAMON reads `nr_accesses / (aggr_us / sample_us)` as an access
//! frequency: the chance `p` that a page of the region was accessed within
//! one sampling interval (a region is split until its pages behave alike).
//! Taking a page's accesses in different samples as independent, as that
//! reading does, a page is accessed at least once in the aggregation
//! interval with probability `q = 1 - (1 - p)^(aggr_us / sample_us)`.
//! Each region line becomes accesses to its pages, in address order: a
//! page is touched in that interval when its *rank*, a hash of the seed,
//! the pid, the page number and the interval mapped into [0, 1), is below
//! `q` (all pages when `nr_accesses` is the maximum, none when it is 0).
//! The first touch of a page is a store (the program wrote it into
//! being), every later touch a load. A capture may miss intervals (its
//! reports are taken as fast as DAMON gives them); a line whose interval
//! is `g` after the report before stands for all `g` of them (at most
//! [`GAP_MAX`]), so its pages are touched with probability
//! `1 - (1 - p)^(g * aggr_us / sample_us)`.
//!
//! What the model can and cannot reproduce, compared with a per-access
//! trace: it reproduces which pages are touched in each interval, at the
//! resolution of DAMON's regions, hence working-set size over time, its
//! phases, and which memory is cold; with those, the reclaim and swap
//! counters of a workload whose working set is stable within an interval.
//! It cannot reproduce the order of accesses within an interval (pages go
//! in address order), a program that touches the same pages in every
//! interval at a frequency below the maximum (the model picks them afresh
//! each interval, so it touches more distinct pages), one that sweeps all
//! its pages once an interval between two samples (`q` falls short of 1), how often a page is touched beyond once an interval,
//! reads versus writes after the first touch (DAMON sees the accessed bit
//! only: a program that rewrites its memory is under-counted in
//! `pswpout`, since swapped-in pages stay clean), nor accesses to pages of
//! a region whose sampled page happened to be idle. `age` is not used.

use super::text::{dec, hex};
use super::{
    AccessKind, ChunkHash, Defect, Position, RecordStream, SharedPath, TraceError, TraceRecord,
};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use swapvm_core::PAGE_SHIFT;

/// The first line of every DAMON region trace.
pub const MAGIC_LINE: &str = "# swapvm damon regions v1";

/// The column header line.
pub const COLUMNS: &str = "interval,pid,start,end,nr_accesses,age";

/// Largest region a line may describe: 64 GiB. The model visits every page
/// of a region with a nonzero frequency, so a region spanning an unmapped
/// gap of the address space is refused rather than replayed for hours.
pub const REGION_BYTES_MAX: u64 = 64 << 30;

/// The most aggregation intervals one report stands for.
pub const GAP_MAX: u64 = 4;

/// What the header of a DAMON trace says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamonHeader {
    /// DAMON's sampling interval, microseconds.
    pub sample_us: u64,
    /// DAMON's aggregation interval, microseconds (at least `sample_us`).
    pub aggr_us: u64,
    /// The seed of the page ranks.
    pub seed: u64,
    /// Other `key=value` lines, in file order (command, method, ...).
    pub meta: Vec<(String, String)>,
}

impl DamonHeader {
    /// The most samples an aggregation interval holds: `nr_accesses`'s
    /// largest value.
    pub fn max_nr_accesses(&self) -> u64 {
        (self.aggr_us / self.sample_us.max(1)).max(1)
    }
}

/// One region of one aggregation interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DamonRegion {
    /// Aggregation interval, from 0.
    pub interval: u64,
    /// The monitored process.
    pub pid: u32,
    /// First byte (page-aligned).
    pub start: u64,
    /// One past the last byte (page-aligned, above `start`).
    pub end: u64,
    /// Samples of the interval that found the region accessed.
    pub nr_accesses: u64,
    /// Aggregation intervals the region kept its frequency.
    pub age: u64,
}

/// Writes a DAMON region trace onto `w`.
#[derive(Debug)]
pub struct DamonWriter<W: Write> {
    w: W,
    path: SharedPath,
}

impl<W: Write> DamonWriter<W> {
    /// Writes the header.
    ///
    /// # Errors
    ///
    /// [`TraceError::Write`].
    pub fn new(mut w: W, path: SharedPath, h: &DamonHeader) -> Result<Self, TraceError> {
        let res = (|| {
            writeln!(w, "{MAGIC_LINE}")?;
            writeln!(w, "# sample_us={}", h.sample_us)?;
            writeln!(w, "# aggr_us={}", h.aggr_us)?;
            writeln!(w, "# seed={}", h.seed)?;
            for (k, v) in &h.meta {
                writeln!(w, "# {k}={}", v.replace('\n', " "))?;
            }
            writeln!(w, "{COLUMNS}")
        })();
        res.map_err(|source| TraceError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(DamonWriter { w, path })
    }

    /// Appends one region.
    ///
    /// # Errors
    ///
    /// [`TraceError::Write`].
    pub fn write(&mut self, r: &DamonRegion) -> Result<(), TraceError> {
        writeln!(
            self.w,
            "{},{},{:#x},{:#x},{},{}",
            r.interval, r.pid, r.start, r.end, r.nr_accesses, r.age
        )
        .map_err(|source| TraceError::Write {
            path: self.path.to_path_buf(),
            source,
        })
    }

    /// Flushes and hands back the writer.
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

/// Whether `head` (a file's first bytes) is a DAMON region trace.
pub fn is_damon(head: &[u8]) -> bool {
    head.starts_with(MAGIC_LINE.as_bytes())
}

/// The region being expanded into accesses.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    pid: u32,
    interval: u64,
    /// Next page to consider, and one past the last.
    page: u64,
    end: u64,
    /// Pages whose rank is below this are touched; `u64::MAX` is "all".
    threshold: u64,
}

/// Reads a DAMON region trace as the page accesses of the replay model.
#[derive(Debug)]
pub struct DamonReader<R> {
    r: R,
    path: SharedPath,
    header: DamonHeader,
    line: Vec<u8>,
    lineno: u64,
    /// The line of the region being expanded.
    region_line: u64,
    last_interval: u64,
    /// Intervals the current report stands for.
    gap: u64,
    /// Whether a region line has been read.
    started: bool,
    cur: Option<Cursor>,
    /// Pages touched so far, a bit per page of each (pid, 2 MiB chunk).
    seen: HashMap<(u32, u64), [u64; 8], ChunkHash>,
    done: bool,
}

impl<R: BufRead> DamonReader<R> {
    /// Reads the header from `r`; `path` names it in errors.
    ///
    /// # Errors
    ///
    /// [`TraceError::Malformed`] at the line of a bad header,
    /// [`TraceError::Read`].
    pub fn new(mut r: R, path: SharedPath) -> Result<Self, TraceError> {
        let mut line = Vec::with_capacity(128);
        let mut lineno = 0;
        let header = read_header(&mut r, &path, &mut line, &mut lineno)?;
        Ok(DamonReader {
            r,
            path,
            header,
            line,
            lineno,
            region_line: lineno,
            last_interval: 0,
            gap: 1,
            started: false,
            cur: None,
            seen: HashMap::default(),
            done: false,
        })
    }

    /// What the header says.
    pub fn header(&self) -> &DamonHeader {
        &self.header
    }

    /// The line of the region the last access came from.
    pub fn position(&self) -> Position {
        Position::Line(self.region_line)
    }

    fn fail(&self, defect: Defect) -> TraceError {
        TraceError::Malformed {
            path: self.path.to_path_buf(),
            at: Position::Line(self.lineno),
            defect,
        }
    }

    /// Reads the next region line into `cur`; `Ok(false)` at the end.
    fn next_region(&mut self) -> Result<bool, TraceError> {
        loop {
            self.line.clear();
            let n =
                self.r
                    .read_until(b'\n', &mut self.line)
                    .map_err(|source| TraceError::Read {
                        path: self.path.to_path_buf(),
                        at: Position::Line(self.lineno + 1),
                        source,
                    })?;
            if n == 0 {
                return Ok(false);
            }
            self.lineno += 1;
            let Ok(text) = std::str::from_utf8(&self.line) else {
                return Err(self.fail(Defect::Garbage("damon (not UTF-8)")));
            };
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') || text == COLUMNS {
                continue;
            }
            if self.line.last() != Some(&b'\n') {
                return Err(self.fail(super::cut_last_line()));
            }
            let r = parse_region(text).map_err(|d| self.fail(d))?;
            if r.interval < self.last_interval {
                return Err(self.fail(Defect::OutOfRange {
                    field: "interval",
                    value: r.interval.to_string(),
                    allowed: "no smaller than the line before's",
                }));
            }
            if self.started && r.interval > self.last_interval {
                self.gap = (r.interval - self.last_interval).min(GAP_MAX);
            }
            self.started = true;
            self.last_interval = r.interval;
            self.region_line = self.lineno;
            self.cur = Some(self.cursor(&r));
            return Ok(true);
        }
    }

    fn cursor(&self, r: &DamonRegion) -> Cursor {
        let max = self.header.max_nr_accesses();
        let threshold = if r.nr_accesses >= max {
            u64::MAX
        } else {
            let p = r.nr_accesses as f64 / max as f64;
            let q = 1.0 - (1.0 - p).powf((max * self.gap) as f64);
            // The float-to-int cast saturates at u64::MAX.
            (q * u64::MAX as f64) as u64
        };
        Cursor {
            pid: r.pid,
            interval: r.interval,
            page: r.start >> PAGE_SHIFT,
            end: if r.nr_accesses == 0 {
                r.start >> PAGE_SHIFT
            } else {
                r.end >> PAGE_SHIFT
            },
            threshold,
        }
    }

    /// Marks `page` of `pid` seen; whether it was seen before.
    fn touch(&mut self, pid: u32, page: u64) -> bool {
        let bits = self.seen.entry((pid, page >> 9)).or_insert([0; 8]);
        let (w, b) = (((page >> 6) & 7) as usize, page & 63);
        let before = bits[w] >> b & 1 == 1;
        bits[w] |= 1 << b;
        before
    }

    /// The next access of the current region, if any is left.
    fn next_access(&mut self) -> Option<TraceRecord> {
        let mut c = self.cur?;
        while c.page < c.end {
            let page = c.page;
            c.page += 1;
            if c.threshold == u64::MAX
                || rank(self.header.seed, c.pid, page, c.interval) < c.threshold
            {
                self.cur = Some(c);
                let kind = if self.touch(c.pid, page) {
                    AccessKind::Load
                } else {
                    AccessKind::Store
                };
                return Some(TraceRecord {
                    pid: c.pid,
                    addr: page << PAGE_SHIFT,
                    size: 8,
                    kind,
                });
            }
        }
        self.cur = None;
        None
    }
}

/// A page's rank in an interval: a pseudo-random point of the u64 range
/// (splitmix64 of the seed, pid, page and interval), drawn afresh each
/// interval.
#[inline]
fn rank(seed: u64, pid: u32, page: u64, interval: u64) -> u64 {
    let mut z = seed
        ^ (u64::from(pid) << 40)
        ^ page.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ interval.wrapping_mul(0xd1b5_4a32_d192_ed03);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Reads the magic line and the `# key=value` lines up to the first
/// region or the column header.
fn read_header<R: BufRead>(
    r: &mut R,
    path: &SharedPath,
    line: &mut Vec<u8>,
    lineno: &mut u64,
) -> Result<DamonHeader, TraceError> {
    let fail = |at, defect| TraceError::Malformed {
        path: path.to_path_buf(),
        at: Position::Line(at),
        defect,
    };
    let (mut sample_us, mut aggr_us, mut seed, mut meta) = (None, None, 0, Vec::new());
    loop {
        // Peek: a region line ends the header and is read again later.
        let buf = r.fill_buf().map_err(|source| TraceError::Read {
            path: path.to_path_buf(),
            at: Position::Line(*lineno + 1),
            source,
        })?;
        if buf.is_empty() || (*lineno > 0 && !buf.starts_with(b"#")) {
            break;
        }
        line.clear();
        let _ = r
            .read_until(b'\n', line)
            .map_err(|source| TraceError::Read {
                path: path.to_path_buf(),
                at: Position::Line(*lineno + 1),
                source,
            })?;
        *lineno += 1;
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if *lineno == 1 {
            if text != MAGIC_LINE {
                return Err(fail(1, Defect::Garbage("damon header (first line)")));
            }
            continue;
        }
        let Some((k, v)) = text.trim_start_matches('#').trim().split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "sample_us" => sample_us = Some(dec(v, "sample_us").map_err(|d| fail(*lineno, d))?),
            "aggr_us" => aggr_us = Some(dec(v, "aggr_us").map_err(|d| fail(*lineno, d))?),
            "seed" => seed = dec(v, "seed").map_err(|d| fail(*lineno, d))?,
            _ => meta.push((k.to_owned(), v.to_owned())),
        }
    }
    if *lineno == 0 {
        return Err(fail(0, Defect::Empty));
    }
    let missing = |field| fail(*lineno, Defect::Truncated(format!("no `# {field}=` line")));
    let sample_us = sample_us.ok_or_else(|| missing("sample_us"))?;
    let aggr_us = aggr_us.ok_or_else(|| missing("aggr_us"))?;
    if sample_us == 0 || aggr_us < sample_us {
        return Err(fail(
            *lineno,
            Defect::OutOfRange {
                field: "aggr_us",
                value: format!("{aggr_us} (sample_us {sample_us})"),
                allowed: "sample_us >= 1 and aggr_us >= sample_us",
            },
        ));
    }
    Ok(DamonHeader {
        sample_us,
        aggr_us,
        seed,
        meta,
    })
}

/// `0x`-prefixed hex, page-aligned.
fn page_addr(s: &str, field: &'static str) -> Result<u64, Defect> {
    let h = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or_else(|| Defect::BadHex(s.to_owned()))?;
    let a = hex(h)?;
    if a & ((1 << PAGE_SHIFT) - 1) != 0 {
        return Err(Defect::OutOfRange {
            field,
            value: s.to_owned(),
            allowed: "a multiple of 4096",
        });
    }
    Ok(a)
}

/// Parses one region line.
fn parse_region(line: &str) -> Result<DamonRegion, Defect> {
    let mut f = line.split(',').map(str::trim);
    let mut field = |name: &str| {
        f.next()
            .ok_or_else(|| Defect::Truncated(format!("no `{name}` field")))
    };
    let interval = dec(field("interval")?, "interval")?;
    let pid = dec(field("pid")?, "pid")?;
    let pid = u32::try_from(pid).map_err(|_| Defect::OutOfRange {
        field: "pid",
        value: pid.to_string(),
        allowed: "0..2^32",
    })?;
    let start = page_addr(field("start")?, "start")?;
    let end = page_addr(field("end")?, "end")?;
    let nr_accesses = dec(field("nr_accesses")?, "nr_accesses")?;
    let age = dec(field("age")?, "age")?;
    if let Some(extra) = f.next() {
        return Err(Defect::OutOfRange {
            field: "columns",
            value: format!("a seventh column {extra:?}"),
            allowed: COLUMNS,
        });
    }
    if end <= start || end - start > REGION_BYTES_MAX {
        return Err(Defect::OutOfRange {
            field: "end",
            value: format!("{end:#x} (start {start:#x})"),
            allowed: "above start, at most 64 GiB above",
        });
    }
    Ok(DamonRegion {
        interval,
        pid,
        start,
        end,
        nr_accesses,
        age,
    })
}

impl<R: BufRead> RecordStream for DamonReader<R> {
    #[inline]
    fn next_rec(&mut self, err: &mut Option<TraceError>) -> Option<TraceRecord> {
        super::stash_error(self.next(), err)
    }

    fn position(&self) -> Position {
        DamonReader::position(self)
    }
}

impl<R: BufRead> Iterator for DamonReader<R> {
    type Item = Result<TraceRecord, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if let Some(rec) = self.next_access() {
                return Some(Ok(rec));
            }
            match self.next_region() {
                Ok(true) => {}
                Ok(false) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::Arc;

    fn reader(text: &str) -> Result<DamonReader<&[u8]>, TraceError> {
        DamonReader::new(text.as_bytes(), Arc::from(Path::new("t.damon")))
    }

    const HEAD: &str = "# swapvm damon regions v1\n# sample_us=5000\n# aggr_us=100000\n# seed=7\n# command=x y\ninterval,pid,start,end,nr_accesses,age\n";

    fn pages(text: &str) -> Vec<(u64, AccessKind)> {
        reader(text)
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                (r.addr >> 12, r.kind)
            })
            .collect()
    }

    #[test]
    fn a_hot_region_touches_every_page_once_stored_then_loaded() {
        let t = format!("{HEAD}0,1,0x10000,0x14000,20,0\n1,1,0x10000,0x14000,25,1\n");
        let p = pages(&t);
        let store = AccessKind::Store;
        let load = AccessKind::Load;
        let want: Vec<_> = (16..20)
            .map(|pg| (pg, store))
            .chain((16..20).map(|pg| (pg, load)))
            .collect();
        assert_eq!(p, want);
        let h = reader(&t).unwrap().header().clone();
        assert_eq!((h.sample_us, h.aggr_us, h.seed), (5000, 100000, 7));
        assert_eq!(h.meta, vec![("command".into(), "x y".into())]);
    }

    #[test]
    fn a_frequency_touches_its_share_of_pages_drawn_afresh_each_interval() {
        // 4096 pages at 1 of 20 samples twice: q = 1 - 0.95^20 = 0.64.
        let t =
            format!("{HEAD}0,1,0x0,0x1000000,1,0\n1,1,0x0,0x1000000,1,1\n2,1,0x0,0x1000000,19,0\n");
        let mut per = vec![Vec::new(); 3];
        let mut r = reader(&t).unwrap();
        let mut stores = 0;
        while let Some(Ok(rec)) = r.next() {
            let Position::Line(l) = r.position() else {
                panic!("a text position")
            };
            per[(l - 7) as usize].push(rec.addr >> 12);
            stores += usize::from(rec.kind == AccessKind::Store);
        }
        let share = |v: &Vec<u64>| v.len() as f64 / 4096.0;
        let q = 1.0 - 0.95f64.powi(20);
        assert!((share(&per[0]) - q).abs() < 0.03, "{}", share(&per[0]));
        assert!((share(&per[1]) - q).abs() < 0.03);
        assert_ne!(per[0], per[1], "drawn afresh each interval");
        assert!(share(&per[2]) > 0.99, "19 of 20 samples: nearly every page");
        let distinct: std::collections::BTreeSet<_> = per.iter().flatten().collect();
        assert_eq!(
            stores,
            distinct.len(),
            "each page stored once, on its first touch"
        );
    }

    #[test]
    fn a_report_after_missed_intervals_stands_for_them() {
        // 1 of 20 samples, the next report two intervals later: q over 40.
        let t = format!("{HEAD}0,1,0x0,0x1000000,1,0\n2,1,0x0,0x1000000,1,0\n");
        let mut r = reader(&t).unwrap();
        let mut n = [0usize; 2];
        while let Some(Ok(_)) = r.next() {
            let Position::Line(l) = r.position() else {
                panic!("a text position")
            };
            n[(l - 7) as usize] += 1;
        }
        let q = |k| 1.0 - 0.95f64.powi(k);
        assert!((n[0] as f64 / 4096.0 - q(20)).abs() < 0.03, "{n:?}");
        assert!((n[1] as f64 / 4096.0 - q(40)).abs() < 0.03, "{n:?}");
    }

    #[test]
    fn a_cold_region_touches_nothing() {
        assert!(pages(&format!("{HEAD}0,1,0x0,0x100000,0,9\n")).is_empty());
    }

    #[test]
    fn bad_lines_are_named() {
        let err = |t: &str| {
            reader(t)
                .and_then(|r| r.collect::<Result<Vec<_>, _>>())
                .unwrap_err()
                .to_string()
        };
        assert!(
            err("hello\n").contains("t.damon: line 1"),
            "{}",
            err("hello\n")
        );
        let e = err("# swapvm damon regions v1\n# aggr_us=100\n0,1,0x0,0x1000,1,0\n");
        assert!(e.contains("sample_us"), "{e}");
        let e = err(&format!("{HEAD}0,1,0x10,0x1000,1,0\n"));
        assert!(e.contains("line 7") && e.contains("start"), "{e}");
        let e = err(&format!("{HEAD}1,1,0x0,0x1000,1,0\n0,1,0x0,0x1000,1,0\n"));
        assert!(e.contains("line 8") && e.contains("interval"), "{e}");
        let e = err(&format!("{HEAD}0,1,0x2000,0x1000,1,0\n"));
        assert!(e.contains("end"), "{e}");
        let e = err(&format!("{HEAD}0,1,0x0,0x1000,1\n"));
        assert!(e.contains("age"), "{e}");
        let e = err(&format!("{HEAD}0,1,0x0,0x1000,1,0"));
        assert!(e.contains("newline"), "{e}");
    }

    #[test]
    fn written_regions_read_back() {
        let h = DamonHeader {
            sample_us: 1000,
            aggr_us: 10000,
            seed: 3,
            meta: vec![("method".into(), "damon".into())],
        };
        let mut w = DamonWriter::new(Vec::new(), Arc::from(Path::new("o")), &h).unwrap();
        let r = DamonRegion {
            interval: 0,
            pid: 9,
            start: 0x7000,
            end: 0x9000,
            nr_accesses: 10,
            age: 2,
        };
        w.write(&r).unwrap();
        let bytes = w.finish().unwrap();
        assert!(is_damon(&bytes));
        let mut rd = DamonReader::new(&bytes[..], Arc::from(Path::new("o"))).unwrap();
        assert_eq!(rd.header(), &h);
        let recs: Vec<_> = rd.by_ref().map(Result::unwrap).collect();
        assert_eq!(
            recs.iter().map(|r| r.addr).collect::<Vec<_>>(),
            vec![0x7000, 0x8000]
        );
        assert!(recs.iter().all(|r| r.pid == 9));
    }
}
