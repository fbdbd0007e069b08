//! Memory traces: streaming readers, writers, statistics and replay.
//!
//! A trace is a sequence of memory accesses captured from a real program
//! (or made by another simulator). Five formats are read and written, one
//! file each:
//!
//! | format | module | what a record is |
//! |---|---|---|
//! | Valgrind lackey text (`--tool=lackey --trace-mem=yes`) | [`lackey`] | `I  addr,size`, ` L addr,size`, ` S addr,size`, ` M addr,size` |
//! | CSV | [`csv`] | `time,pid,op,address[,size]` |
//! | libCacheSim oracleGeneral | [`oracle`] | 24 packed bytes: clock_time, obj_id, obj_size, next_access_vtime |
//! | swapvm native binary | [`native`] | 16 packed bytes after a 16-byte header |
//! | libCacheSim lcs | [`lcs`] | 24..100 packed bytes (by version) after an 8192-byte header |
//!
//! Any of them may be zstd-compressed ([`compress`]).
//!
//! Every reader is a streaming decoder: it yields one small `Copy`
//! [`TraceRecord`] at a time from a 64 KiB buffered reader, reusing one line
//! buffer for the text formats, so a trace of any length is read in constant
//! memory and a record costs no heap allocation.
//!
//! The binary formats are read through `BufReader`, not memmap2, on purpose:
//! mapping a file is `unsafe` in Rust (another process truncating or
//! rewriting the trace while it is mapped is undefined behaviour, and a
//! truncation is a SIGBUS, not an error), the workspace keeps `unsafe` in
//! swapvm-io, and sequential reads through a 64 KiB buffer give the same
//! constant memory and sequential throughput. A file shortened under the
//! reader becomes a "truncated record N" error instead of a crash.
//!
//! Bad input is a [`TraceError`] naming the file and the line (text formats)
//! or the record number from 0 (binary formats), with the [`Defect`]: bad
//! hex, unknown op, truncated record, wrong magic, a field out of range.
//! Readers never panic on input; after an error they yield nothing more.
//!
//! Pages: an access of `size` bytes at `addr` touches every 4 KiB page in
//! `addr ..= addr + size - 1`, so an access that straddles a page boundary
//! touches both pages (and counts as two page accesses). A `size` of 0 is
//! taken as 1: the access still touches the page of `addr`.

mod binary;
pub mod compress;
pub mod csv;
pub mod lackey;
pub mod lcs;
pub mod native;
pub mod oracle;
mod replay;
mod stats;

pub use replay::{PackedAccess, TracePlan, TraceProcess, PIDS_MAX, REGION_PAGES};
pub use stats::{PidStats, TraceStats};

use compress::{Input, Sink};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use swapvm_core::PAGE_SHIFT;

/// Buffer size of readers and writers.
pub(crate) const IO_BUF: usize = 64 << 10;

/// The largest access a record may describe, in bytes (1 MiB). Lackey's
/// accesses are at most a vector register; CSV sizes above this are almost
/// certainly a wrong column.
pub const ACCESS_SIZE_MAX: u32 = 1 << 20;

/// What an access does, in lackey's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccessKind {
    /// An instruction fetch (lackey `I`): a load from the text pages.
    Instr,
    /// A data load (lackey `L`).
    Load,
    /// A data store (lackey `S`).
    Store,
}

impl AccessKind {
    /// Whether the access writes its page.
    #[inline]
    pub fn is_write(self) -> bool {
        self == AccessKind::Store
    }
}

/// One access of a trace. Lackey's `M` (modify) is read as two records, a
/// load then a store of the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRecord {
    /// The process; a trace with several pids replays as several processes.
    pub pid: u32,
    /// Byte address in the process's address space.
    pub addr: u64,
    /// Bytes accessed, 1..=[`ACCESS_SIZE_MAX`]; `addr + size - 1` does not
    /// overflow (readers check both).
    pub size: u32,
    /// Fetch, load or store.
    pub kind: AccessKind,
}

impl TraceRecord {
    /// The first and the last 4 KiB page the access touches.
    #[inline]
    pub fn pages(&self) -> (u64, u64) {
        let last = self.addr + (u64::from(self.size.max(1)) - 1);
        (self.addr >> PAGE_SHIFT, last >> PAGE_SHIFT)
    }
}

/// A trace file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceFormat {
    /// Valgrind lackey's `--trace-mem=yes` text.
    Lackey,
    /// `time,pid,op,address[,size]` lines.
    Csv,
    /// libCacheSim's oracleGeneral binary records.
    OracleGeneral,
    /// swapvm's own binary format.
    Native,
    /// libCacheSim's lcs binary format (header and versioned records).
    Lcs,
}

impl TraceFormat {
    /// Every format, in the order `--format` lists them.
    pub const ALL: [TraceFormat; 5] = [
        TraceFormat::Lackey,
        TraceFormat::Csv,
        TraceFormat::OracleGeneral,
        TraceFormat::Native,
        TraceFormat::Lcs,
    ];

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceFormat::Lackey => "lackey",
            TraceFormat::Csv => "csv",
            TraceFormat::OracleGeneral => "oracle-general",
            TraceFormat::Native => "native",
            TraceFormat::Lcs => "lcs",
        }
    }

    /// Whether a file of this format can carry more than one pid.
    pub fn multi_pid(self) -> bool {
        matches!(self, TraceFormat::Csv | TraceFormat::Native)
    }

    /// The format of `path`, decompressed first if it is zstd (see
    /// [`compress`]): the native magic first, then the name (`*.csv`,
    /// `*oracleGeneral*`, `*.lackey`, `*.swvmtrace`, each optionally
    /// followed by `.zst`), then a look at the first line of text.
    ///
    /// # Errors
    ///
    /// [`TraceError::Open`] if the file cannot be read,
    /// [`TraceError::Read`] if its zstd stream is corrupt,
    /// [`TraceError::Undetected`] if nothing matched (an empty file says
    /// so).
    pub fn detect(path: &Path) -> Result<TraceFormat, TraceError> {
        let mut head = [0u8; 512];
        let n = read_head(path, &mut head)?;
        let head = &head[..n];
        if head.starts_with(&native::MAGIC) {
            return Ok(TraceFormat::Native);
        }
        if head.starts_with(&lcs::MAGIC.to_le_bytes()) {
            return Ok(TraceFormat::Lcs);
        }
        if let Some(f) = Self::from_extension(path) {
            return Ok(f);
        }
        let first = head
            .split(|&b| b == b'\n')
            .find(|l| !l.iter().all(u8::is_ascii_whitespace) && !l.starts_with(b"#"))
            .unwrap_or_default();
        if first.starts_with(b"==") || first.starts_with(b"I  ") || lackey::is_data_line(first) {
            return Ok(TraceFormat::Lackey);
        }
        if first.contains(&b',') && (first.starts_with(b"time") || first[0].is_ascii_digit()) {
            return Ok(TraceFormat::Csv);
        }
        if head.is_empty() {
            return Err(TraceError::Malformed {
                path: path.to_owned(),
                at: Position::Header,
                defect: Defect::Empty,
            });
        }
        Err(TraceError::Undetected {
            path: path.to_owned(),
        })
    }

    /// The format a file name asks for, if any (for `trace convert`'s
    /// output, which does not exist yet); a `.zst` suffix is looked
    /// through.
    pub fn from_extension(path: &Path) -> Option<TraceFormat> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let name = name.strip_suffix(".zst").unwrap_or(&name);
        if name.contains("oraclegeneral") {
            Some(TraceFormat::OracleGeneral)
        } else if name.ends_with(".csv") {
            Some(TraceFormat::Csv)
        } else if name.ends_with(".lackey") {
            Some(TraceFormat::Lackey)
        } else if name.ends_with(".swvmtrace") {
            Some(TraceFormat::Native)
        } else if name.ends_with(".lcs") {
            Some(TraceFormat::Lcs)
        } else {
            None
        }
    }
}

impl std::fmt::Display for TraceFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TraceFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "lackey" => Ok(TraceFormat::Lackey),
            "csv" => Ok(TraceFormat::Csv),
            "oracle-general" | "oraclegeneral" | "oracle" => Ok(TraceFormat::OracleGeneral),
            "native" | "swapvm" => Ok(TraceFormat::Native),
            "lcs" => Ok(TraceFormat::Lcs),
            _ => Err(format!(
                "unknown trace format {s:?} (use lackey, csv, oracle-general, native or lcs)"
            )),
        }
    }
}

/// What is wrong with a line or record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Defect {
    /// A number that should be hexadecimal is not.
    #[error("bad hex {0:?}")]
    BadHex(String),
    /// A number that should be decimal is not.
    #[error("bad number {0:?} in `{1}`")]
    BadNumber(String, &'static str),
    /// The op letter or word is not one the format knows.
    #[error("unknown op {0:?}")]
    UnknownOp(String),
    /// A line lacks fields, or the file ends inside a record.
    #[error("truncated: {0}")]
    Truncated(String),
    /// The file does not start with the format's magic.
    #[error("wrong magic {found:02x?} (expected {expected:02x?})")]
    WrongMagic {
        /// The bytes found.
        found: Vec<u8>,
        /// The magic of the format.
        expected: Vec<u8>,
    },
    /// A header field the reader does not support.
    #[error("unsupported {field} {value}")]
    Unsupported {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// The file (after decompression) holds no byte at all: said the same
    /// way by every format that needs a header, and by detection.
    #[error("the file is empty (0 bytes)")]
    Empty,
    /// A field's value is outside what the format or swapvm allows.
    #[error("field `{field}` = {value} is out of range ({allowed})")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// Its value, as read.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// A line that is not a trace line of the format.
    #[error("not a {0} trace line")]
    Garbage(&'static str),
}

/// Where in a file a defect is: a 1-based line, or a 0-based record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Line number, from 1 (text formats).
    Line(u64),
    /// Record number, from 0 (binary formats); the header has its own.
    Record(u64),
    /// The header of a binary format.
    Header,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Record(n) => write!(f, "record {n}"),
            Position::Header => f.write_str("header"),
        }
    }
}

/// A trace that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be opened or created.
    #[error("{}: cannot open", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading failed (not a defect of the content).
    #[error("{}: read error at {at}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Where.
        at: Position,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing failed.
    #[error("{}: write error", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The content is malformed at a line or record.
    #[error("{}: {at}: {defect}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where.
        at: Position,
        /// What.
        defect: Defect,
    },
    /// The trace is well formed but cannot be written in the target format
    /// or replayed (e.g. a second pid into a one-pid format).
    #[error("{}: {at}: {reason}", path.display())]
    Unrepresentable {
        /// The file being written or replayed.
        path: PathBuf,
        /// The record of the input that does not fit.
        at: Position,
        /// Why.
        reason: String,
    },
    /// [`TraceFormat::detect`] could not tell.
    #[error("{}: cannot tell the trace format from its name or content; pass --format (lackey, csv, oracle-general, native, lcs)", path.display())]
    Undetected {
        /// The file.
        path: PathBuf,
    },
}

impl TraceError {
    /// The defect, if the error is one.
    pub fn defect(&self) -> Option<&Defect> {
        match self {
            TraceError::Malformed { defect, .. } => Some(defect),
            _ => None,
        }
    }
}

/// The path a reader names in its errors, shared cheaply.
pub(crate) type SharedPath = Arc<Path>;

/// The buffered reader every trace reader reads a file through.
pub type FileInput = BufReader<Input>;

fn open_buffered(path: &Path) -> Result<FileInput, TraceError> {
    let f = Input::open(path).map_err(|source| TraceError::Open {
        path: path.to_owned(),
        source,
    })?;
    Ok(BufReader::with_capacity(IO_BUF, f))
}

/// The first bytes of `path`, decompressed if it is zstd. A read error
/// after some bytes ends the head there: the reader meets it again and
/// names the record.
fn read_head(path: &Path, buf: &mut [u8]) -> Result<usize, TraceError> {
    let mut f = Input::open(path).map_err(|source| TraceError::Open {
        path: path.to_owned(),
        source,
    })?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) if n > 0 => break,
            Err(source) => {
                return Err(TraceError::Read {
                    path: path.to_owned(),
                    at: Position::Header,
                    source,
                })
            }
        }
    }
    Ok(n)
}

/// A reader as the replay and the scan drive it: records without the
/// `Result` wrapper, the error put aside. An `Option<Result<TraceRecord,
/// TraceError>>` is the size of an error (a path, a defect with strings)
/// and is moved through memory on every record; the hot loops move a
/// 24-byte record instead and look at the error once, after the stream
/// stops. The binary readers decode in place from their buffer here.
pub(crate) trait RecordStream {
    /// The next record; `None` at the end of the trace, or at an error,
    /// which is then put in `err` (and the stream yields nothing more).
    fn next_rec(&mut self, err: &mut Option<TraceError>) -> Option<TraceRecord>;

    /// Where the last record came from.
    fn position(&self) -> Position;

    /// Hands records to `take` in bulk while they are cheap to decode
    /// (whole, valid records already in the reader's buffer), until `take`
    /// refuses one (it is then not consumed: the next call or
    /// [`Self::next_rec`] yields it again). Returns the number taken; 0
    /// says "use `next_rec`", which reports errors and the end. The text
    /// readers have no bulk form.
    #[inline]
    fn take_buffered(&mut self, take: impl FnMut(TraceRecord) -> bool) -> usize {
        let _ = take;
        0
    }
}

/// The record of an iterator step, its error moved into `err`.
#[inline]
pub(crate) fn stash_error(
    step: Option<Result<TraceRecord, TraceError>>,
    err: &mut Option<TraceError>,
) -> Option<TraceRecord> {
    match step {
        Some(Ok(rec)) => Some(rec),
        Some(Err(e)) => {
            *err = Some(e);
            None
        }
        None => None,
    }
}

/// A reader of any format: enum dispatch, so a record costs no virtual call
/// and no allocation.
#[derive(Debug)]
pub enum TraceReader {
    /// Lackey text.
    Lackey(lackey::LackeyReader<FileInput>),
    /// CSV text.
    Csv(csv::CsvReader<FileInput>),
    /// oracleGeneral binary.
    OracleGeneral(oracle::OracleReader<FileInput>),
    /// Native binary.
    Native(native::NativeReader<FileInput>),
    /// libCacheSim lcs binary.
    Lcs(lcs::LcsReader<FileInput>),
}

impl TraceReader {
    /// Opens `path` as `format` (detected when `None`).
    ///
    /// # Errors
    ///
    /// [`TraceError`] if the file cannot be opened, its format cannot be
    /// told, or (binary formats) its header is wrong.
    pub fn open(path: &Path, format: Option<TraceFormat>) -> Result<TraceReader, TraceError> {
        let format = match format {
            Some(f) => f,
            None => TraceFormat::detect(path)?,
        };
        let r = open_buffered(path)?;
        let shared: SharedPath = Arc::from(path);
        Ok(match format {
            TraceFormat::Lackey => TraceReader::Lackey(lackey::LackeyReader::new(r, shared)),
            TraceFormat::Csv => TraceReader::Csv(csv::CsvReader::new(r, shared)),
            TraceFormat::OracleGeneral => {
                TraceReader::OracleGeneral(oracle::OracleReader::new(r, shared))
            }
            TraceFormat::Native => TraceReader::Native(native::NativeReader::new(r, shared)?),
            TraceFormat::Lcs => TraceReader::Lcs(lcs::LcsReader::new(r, shared)?),
        })
    }

    /// The format being read.
    pub fn format(&self) -> TraceFormat {
        match self {
            TraceReader::Lackey(_) => TraceFormat::Lackey,
            TraceReader::Csv(_) => TraceFormat::Csv,
            TraceReader::OracleGeneral(_) => TraceFormat::OracleGeneral,
            TraceReader::Native(_) => TraceFormat::Native,
            TraceReader::Lcs(_) => TraceFormat::Lcs,
        }
    }

    /// Where the last record came from.
    pub fn position(&self) -> Position {
        match self {
            TraceReader::Lackey(r) => r.position(),
            TraceReader::Csv(r) => r.position(),
            TraceReader::OracleGeneral(r) => r.position(),
            TraceReader::Native(r) => r.position(),
            TraceReader::Lcs(r) => r.position(),
        }
    }
}

impl Iterator for TraceReader {
    type Item = Result<TraceRecord, TraceError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            TraceReader::Lackey(r) => r.next(),
            TraceReader::Csv(r) => r.next(),
            TraceReader::OracleGeneral(r) => r.next(),
            TraceReader::Native(r) => r.next(),
            TraceReader::Lcs(r) => r.next(),
        }
    }
}

/// A writer of one format, onto a [`Sink`].
#[derive(Debug)]
enum FormatWriter {
    Lackey(lackey::LackeyWriter<Sink>),
    Csv(csv::CsvWriter<Sink>),
    OracleGeneral(oracle::OracleWriter<Sink>),
    Native(native::NativeWriter<Sink>),
    Lcs(lcs::LcsWriter<Sink>),
}

/// A writer of any format, compressed or not. The trace is written to a
/// temporary file beside the output and renamed over it by
/// [`Self::finish`]; a writer dropped before that (an error) removes its
/// temporary file and leaves any existing output as it was.
#[derive(Debug)]
pub struct TraceWriter {
    w: FormatWriter,
    temp: tempfile::TempPath,
    path: PathBuf,
}

impl TraceWriter {
    /// Creates a writer of `format` for `path`, zstd-compressed when the
    /// name ends in `.zst`.
    ///
    /// # Errors
    ///
    /// [`TraceError::Open`] or [`TraceError::Write`].
    pub fn create(path: &Path, format: TraceFormat) -> Result<TraceWriter, TraceError> {
        Self::create_with(path, format, compress::is_zst_name(path))
    }

    /// [`Self::create`], compressed when `compress`, whatever the name.
    ///
    /// # Errors
    ///
    /// [`TraceError::Open`] or [`TraceError::Write`].
    pub fn create_with(
        path: &Path,
        format: TraceFormat,
        compress: bool,
    ) -> Result<TraceWriter, TraceError> {
        let (sink, temp) =
            compress::create_temp(path, compress, IO_BUF).map_err(|source| TraceError::Open {
                path: path.to_owned(),
                source,
            })?;
        let shared: SharedPath = Arc::from(path);
        let w = match format {
            TraceFormat::Lackey => FormatWriter::Lackey(lackey::LackeyWriter::new(sink, shared)),
            TraceFormat::Csv => FormatWriter::Csv(csv::CsvWriter::new(sink, shared)?),
            TraceFormat::OracleGeneral => {
                FormatWriter::OracleGeneral(oracle::OracleWriter::new(sink, shared))
            }
            TraceFormat::Native => FormatWriter::Native(native::NativeWriter::new(sink, shared)?),
            TraceFormat::Lcs => FormatWriter::Lcs(lcs::LcsWriter::new(sink, shared)?),
        };
        Ok(TraceWriter {
            w,
            temp,
            path: path.to_owned(),
        })
    }

    /// Appends one record; `at` names the input record, for errors.
    ///
    /// # Errors
    ///
    /// [`TraceError::Write`], or [`TraceError::Unrepresentable`] when the
    /// format cannot hold the record (a second pid in a one-pid format, a
    /// size too large).
    pub fn write(&mut self, rec: &TraceRecord, at: Position) -> Result<(), TraceError> {
        match &mut self.w {
            FormatWriter::Lackey(w) => w.write(rec, at),
            FormatWriter::Csv(w) => w.write(rec),
            FormatWriter::OracleGeneral(w) => w.write(rec, at),
            FormatWriter::Native(w) => w.write(rec, at),
            FormatWriter::Lcs(w) => w.write(rec, at),
        }
    }

    /// Flushes, ends the compressed stream, and renames the file to its
    /// name.
    ///
    /// # Errors
    ///
    /// [`TraceError::Write`].
    pub fn finish(self) -> Result<(), TraceError> {
        let sink = match self.w {
            FormatWriter::Lackey(w) => w.finish()?,
            FormatWriter::Csv(w) => w.finish()?,
            FormatWriter::OracleGeneral(w) => w.finish()?,
            FormatWriter::Native(w) => w.finish()?,
            FormatWriter::Lcs(w) => w.finish()?,
        };
        compress::commit(sink, self.temp, &self.path).map_err(|source| TraceError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// Copies every record of `input` (format `from`, detected when `None`)
/// into `output` as `to` (from the output's name when `None`, `.zst`
/// looked through), zstd-compressed when the name ends in `.zst`; returns
/// the records copied.
///
/// # Errors
///
/// The first [`TraceError`] of reading or writing; the output is then
/// not written (see [`TraceWriter`]).
pub fn convert(
    input: &Path,
    from: Option<TraceFormat>,
    output: &Path,
    to: Option<TraceFormat>,
    progress: impl FnMut(u64),
) -> Result<u64, TraceError> {
    convert_with(
        input,
        from,
        output,
        to,
        compress::is_zst_name(output),
        progress,
    )
}

/// [`convert`], the output zstd-compressed when `compress`.
///
/// # Errors
///
/// As [`convert`].
pub fn convert_with(
    input: &Path,
    from: Option<TraceFormat>,
    output: &Path,
    to: Option<TraceFormat>,
    compress: bool,
    mut progress: impl FnMut(u64),
) -> Result<u64, TraceError> {
    let reader = TraceReader::open(input, from)?;
    let to = match to {
        Some(f) => f,
        None => TraceFormat::from_extension(output).ok_or_else(|| TraceError::Undetected {
            path: output.to_owned(),
        })?,
    };
    let mut writer = TraceWriter::create_with(output, to, compress)?;
    let mut n = 0u64;
    for rec in reader {
        writer.write(&rec?, Position::Record(n))?;
        n += 1;
        if n % 65536 == 0 {
            progress(n);
        }
    }
    writer.finish()?;
    progress(n);
    Ok(n)
}

/// What [`synth`] writes.
#[derive(Debug, Clone, Copy)]
pub struct SynthSpec {
    /// Pages of the footprint, each stored to once first; split evenly
    /// among the pids (rounded down to a multiple of `pids`).
    pub pages: u64,
    /// Processes, pids 1..=pids; records go to them in turn.
    pub pids: u32,
    /// Uniformly random accesses after that first pass.
    pub accesses: u64,
    /// Share of the random accesses that are stores, 0..=1.
    pub write_ratio: f64,
    /// Seed of the page and op choices.
    pub seed: u64,
}

/// Writes a synthetic trace to `path` as `format`: usemem's shape (every
/// page stored to in order, then uniform random 8-byte accesses), for
/// benchmarks and tests of traces of any size. With several pids, records
/// go to pid 1, 2, ... in turn, each pid over its own share of the pages.
/// Returns the records written.
///
/// # Errors
///
/// [`TraceError::Open`] or [`TraceError::Write`].
pub fn synth(
    path: &Path,
    format: TraceFormat,
    spec: SynthSpec,
    progress: impl FnMut(u64),
) -> Result<u64, TraceError> {
    synth_with(path, format, spec, compress::is_zst_name(path), progress)
}

/// [`synth`], zstd-compressed when `compress`.
///
/// # Errors
///
/// As [`synth`].
pub fn synth_with(
    path: &Path,
    format: TraceFormat,
    spec: SynthSpec,
    compress: bool,
    mut progress: impl FnMut(u64),
) -> Result<u64, TraceError> {
    const BASE: u64 = 0x7f00_0000_0000;
    let mut w = TraceWriter::create_with(path, format, compress)?;
    let mut rng = swapvm_core::SimRng::derive(spec.seed, 0);
    let pids = u64::from(spec.pids.max(1));
    let share = spec.pages / pids;
    let pages = share * pids;
    // No page, no random access: `below(0)` has nothing to pick.
    let accesses = if share == 0 { 0 } else { spec.accesses };
    let total = pages.saturating_add(accesses);
    for i in 0..total {
        let pid = i % pids;
        let (page, kind) = if i < pages {
            (i / pids, AccessKind::Store)
        } else if rng.chance(spec.write_ratio) {
            (rng.below(share), AccessKind::Store)
        } else {
            (rng.below(share), AccessKind::Load)
        };
        let rec = TraceRecord {
            pid: pid as u32 + 1,
            addr: BASE + (page << PAGE_SHIFT) + 8 * rng.below(512),
            size: 8,
            kind,
        };
        w.write(&rec, Position::Record(i))?;
        if i % 65536 == 0 {
            progress(i);
        }
    }
    w.finish()?;
    progress(total);
    Ok(total)
}

/// Shared text-format helpers.
pub(crate) mod text {
    use super::{Defect, ACCESS_SIZE_MAX};

    /// Parses hex digits (no prefix) into a u64.
    pub(crate) fn hex(s: &str) -> Result<u64, Defect> {
        if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Defect::BadHex(s.to_owned()));
        }
        u64::from_str_radix(s, 16).map_err(|_| Defect::BadHex(s.to_owned()))
    }

    /// Parses a decimal u64 for `field`.
    pub(crate) fn dec(s: &str, field: &'static str) -> Result<u64, Defect> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Defect::BadNumber(s.to_owned(), field));
        }
        s.parse().map_err(|_| Defect::OutOfRange {
            field,
            value: s.to_owned(),
            allowed: "0..2^64",
        })
    }

    /// Checks an access size and that the access does not run past the top
    /// of the address space; a size of 0 is read as 1.
    pub(crate) fn check_access(addr: u64, size: u64) -> Result<u32, Defect> {
        let size = size.max(1);
        if size > u64::from(ACCESS_SIZE_MAX) {
            return Err(Defect::OutOfRange {
                field: "size",
                value: size.to_string(),
                allowed: "0..=1048576 bytes",
            });
        }
        if addr.checked_add(size - 1).is_none() {
            return Err(Defect::OutOfRange {
                field: "address",
                value: format!("{addr:#x}"),
                allowed: "address + size - 1 below 2^64",
            });
        }
        Ok(size as u32)
    }
}

/// The two chunks touched last and their values: in front of a
/// [`ChunkCache`]. A lackey trace alternates between a code chunk and a
/// data chunk, so one "last chunk" missed on about half of the accesses of
/// `sort`'s trace; the last two catch nine in ten, for two compares and no
/// hashing. A hit writes one byte (which entry was used last), not the
/// entries: swapping them on every alternation was a store-forwarding stall
/// in the scan's profile.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LastTwo<K, V> {
    entries: [Option<(K, V)>; 2],
    /// The entry used last; `put` replaces the other.
    latest: usize,
}

impl<K: Copy + Eq, V: Copy> Default for LastTwo<K, V> {
    fn default() -> Self {
        LastTwo {
            entries: [None, None],
            latest: 0,
        }
    }
}

impl<K: Copy + Eq, V: Copy> LastTwo<K, V> {
    /// The value of `key` if it is one of the two, which becomes the latest.
    #[inline(always)]
    pub(crate) fn get(&mut self, key: K) -> Option<V> {
        for (i, e) in self.entries.iter().enumerate() {
            if let Some((k, v)) = *e {
                if k == key {
                    self.latest = i;
                    return Some(v);
                }
            }
        }
        None
    }

    /// Makes `key` the latest, with `value`, in place of the older entry.
    #[inline(always)]
    pub(crate) fn put(&mut self, key: K, value: V) {
        self.latest ^= 1;
        self.entries[self.latest & 1] = Some((key, value));
    }
}

/// Slots of a [`ChunkCache`].
const CHUNK_CACHE_SLOTS: usize = 64;

/// A direct-mapped cache in front of a chunk map, for page accesses that
/// leave the last chunk: a lackey trace moves between code, heap, stack
/// and libraries every few accesses, and each move cost a hash-map lookup
/// (about a twentieth of a fits-in-RAM replay's profile). A hit is an index
/// and a compare; a miss falls back to the map, which stays the truth (the
/// cache holds copies of its entries and is never iterated).
#[derive(Debug, Clone)]
pub(crate) struct ChunkCache<K, V> {
    /// Boxed: a kilobyte inline would make every `ProcessSource` that big.
    slots: Box<[Option<(K, V)>; CHUNK_CACHE_SLOTS]>,
}

impl<K: Copy + Eq, V: Copy> Default for ChunkCache<K, V> {
    fn default() -> Self {
        ChunkCache {
            slots: Box::new([None; CHUNK_CACHE_SLOTS]),
        }
    }
}

impl<K: Copy + Eq, V: Copy> ChunkCache<K, V> {
    /// The slot of a key whose chunk number (mixed with its pid, if any)
    /// is `h`: neighbouring chunks get neighbouring slots.
    #[inline]
    fn slot(h: u64) -> usize {
        ((h ^ (h >> 6) ^ (h >> 12)) as usize) % CHUNK_CACHE_SLOTS
    }

    /// The cached value of `key`, if its slot holds it.
    #[inline]
    pub(crate) fn get(&self, h: u64, key: K) -> Option<V> {
        match self.slots[Self::slot(h)] {
            Some((k, v)) if k == key => Some(v),
            _ => None,
        }
    }

    /// Caches `key`'s value, evicting what its slot held.
    #[inline]
    pub(crate) fn insert(&mut self, h: u64, key: K, value: V) {
        self.slots[Self::slot(h)] = Some((key, value));
    }
}

/// A multiplicative (Fibonacci) hash of chunk keys (a chunk number, with
/// its pid in the scan), for the chunk maps that every page access leaving
/// the last chunk looks up: the replay's chunk-to-region map and the scan's
/// chunk bitmaps. std's SipHash there was about a tenth of a fits-in-RAM
/// replay's profile (`perf record` of `swapvm replay`, random accesses over
/// 16 chunks). Collision resistance is not needed: a trace only slows its
/// own replay, and neither map is iterated, so their order cannot leak.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ChunkHasher(u64);

impl std::hash::Hasher for ChunkHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Builds [`ChunkHasher`]s.
pub(crate) type ChunkHash = std::hash::BuildHasherDefault<ChunkHasher>;

/// The defect of a text trace whose last data line has no newline: the
/// file was cut while it was written, and what remains of the line could
/// read as a different address.
pub(crate) fn cut_last_line() -> Defect {
    Defect::Truncated("the last line has no newline: the file was cut while it was written".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_by_magic_name_and_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let mut native = native::MAGIC.to_vec();
        native.extend([1, 0, 16, 0, 0, 0, 0, 0]);
        let cases = [
            (file("a.csv.bin", &native), TraceFormat::Native),
            (
                file("b.oracleGeneral.bin", b"\x01\x02"),
                TraceFormat::OracleGeneral,
            ),
            (file("c.csv", b"junk"), TraceFormat::Csv),
            (file("d.lackey", b""), TraceFormat::Lackey),
            (
                file("e.out", b"==12== Lackey\nI  0400,1\n"),
                TraceFormat::Lackey,
            ),
            (file("f.out", b"\n L 0400,8\n"), TraceFormat::Lackey),
            (file("g.txt", b"# pid 1, 2\n0,1,R,0x10\n"), TraceFormat::Csv),
            (file("h.txt", b"time,pid,op,address\n"), TraceFormat::Csv),
        ];
        for (path, want) in cases {
            assert_eq!(
                TraceFormat::detect(&path).unwrap(),
                want,
                "{}",
                path.display()
            );
        }
        let e = TraceFormat::detect(&file("i.dat", b"\x00\x01\x02")).unwrap_err();
        assert!(matches!(e, TraceError::Undetected { .. }), "{e}");
        let e = TraceFormat::detect(&dir.path().join("absent")).unwrap_err();
        assert!(matches!(e, TraceError::Open { .. }), "{e}");
    }

    #[test]
    fn format_names_parse_back() {
        for f in TraceFormat::ALL {
            assert_eq!(f.as_str().parse::<TraceFormat>().unwrap(), f);
        }
        assert!("zip".parse::<TraceFormat>().unwrap_err().contains("lackey"));
    }

    #[test]
    fn synth_writes_the_asked_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.swvmtrace");
        let spec = SynthSpec {
            pages: 100,
            pids: 1,
            accesses: 1000,
            write_ratio: 0.0,
            seed: 3,
        };
        assert_eq!(
            synth(&path, TraceFormat::Native, spec, |_| {}).unwrap(),
            1100
        );
        let s = TraceStats::scan(&path, None, |_| {}).unwrap();
        assert_eq!((s.records, s.stores, s.distinct_pages), (1100, 100, 100));
        let empty = SynthSpec { pages: 0, ..spec };
        assert_eq!(synth(&path, TraceFormat::Csv, empty, |_| {}).unwrap(), 0);
        let four = SynthSpec {
            pages: 103,
            pids: 4,
            ..spec
        };
        assert_eq!(
            synth(&path, TraceFormat::Native, four, |_| {}).unwrap(),
            1100
        );
        let s = TraceStats::scan(&path, None, |_| {}).unwrap();
        let per_pid: Vec<_> = s
            .pids
            .iter()
            .map(|p| (p.pid, p.distinct_pages, p.records))
            .collect();
        assert_eq!(
            per_pid,
            [(1, 25, 275), (2, 25, 275), (3, 25, 275), (4, 25, 275)]
        );
    }

    /// A few records of every kind, one pid (every format can hold them).
    fn sample_records() -> Vec<TraceRecord> {
        (0..100_000u64)
            .map(|i| TraceRecord {
                pid: 1,
                addr: 0x7f00_0000_0000 + (i * 7919 % 5000) * 4096,
                size: 4096,
                kind: [AccessKind::Instr, AccessKind::Load, AccessKind::Store][i as usize % 3],
            })
            .collect()
    }

    fn write_all(path: &Path, format: TraceFormat, recs: &[TraceRecord]) {
        let mut w = TraceWriter::create(path, format).unwrap();
        for (i, r) in recs.iter().enumerate() {
            w.write(r, Position::Record(i as u64)).unwrap();
        }
        w.finish().unwrap();
    }

    fn read_all(path: &Path, format: Option<TraceFormat>) -> Vec<TraceRecord> {
        TraceReader::open(path, format)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn zst_round_trips_in_every_format() {
        let dir = tempfile::tempdir().unwrap();
        let recs = sample_records();
        for (name, format) in [
            ("t.lackey", TraceFormat::Lackey),
            ("t.csv", TraceFormat::Csv),
            ("t.oracleGeneral.bin", TraceFormat::OracleGeneral),
            ("t.swvmtrace", TraceFormat::Native),
        ] {
            let plain = dir.path().join(name);
            let zst = dir.path().join(format!("{name}.zst"));
            write_all(&plain, format, &recs);
            write_all(&zst, format, &recs);
            let bytes = std::fs::read(&zst).unwrap();
            assert!(bytes.starts_with(&compress::ZSTD_MAGIC), "{name}");
            assert!(bytes.len() < std::fs::metadata(&plain).unwrap().len() as usize);
            assert_eq!(TraceFormat::detect(&zst).unwrap(), format, "{name}");
            assert_eq!(read_all(&zst, None), read_all(&plain, None), "{name}");
            let stats = TraceStats::scan(&zst, None, |_| {}).unwrap();
            assert_eq!(
                stats,
                TraceStats {
                    path: zst.clone(),
                    ..TraceStats::scan(&plain, None, |_| {}).unwrap()
                }
            );
        }
    }

    #[test]
    fn zstd_is_found_by_magic_whatever_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let recs = sample_records();
        let native = dir.path().join("n.swvmtrace.zst");
        write_all(&native, TraceFormat::Native, &recs);
        let lackey = dir.path().join("l.lackey.zst");
        write_all(&lackey, TraceFormat::Lackey, &recs);
        // Wrong names: the content decides, after decompression.
        let as_csv = dir.path().join("looks.csv");
        std::fs::rename(&native, &as_csv).unwrap();
        assert_eq!(TraceFormat::detect(&as_csv).unwrap(), TraceFormat::Native);
        let as_bin = dir.path().join("trace.bin");
        std::fs::rename(&lackey, &as_bin).unwrap();
        assert_eq!(TraceFormat::detect(&as_bin).unwrap(), TraceFormat::Lackey);
        assert_eq!(
            read_all(&as_bin, None),
            read_all(&as_csv, None)
                .into_iter()
                .map(|r| TraceRecord { ..r })
                .collect::<Vec<_>>()
        );
        // A `.zst` name on a plain file: read as it is.
        let plain = dir.path().join("plain.csv.zst");
        write_all(&plain, TraceFormat::Csv, &recs[..3]);
        let compressed = std::fs::read(&plain).unwrap();
        std::fs::write(&plain, zstd::decode_all(&compressed[..]).unwrap()).unwrap();
        assert_eq!(read_all(&plain, None), &recs[..3]);
    }

    #[test]
    fn a_cut_zst_is_an_error_naming_file_and_record() {
        let dir = tempfile::tempdir().unwrap();
        let recs = sample_records();
        for (name, format, at) in [
            ("c.swvmtrace.zst", TraceFormat::Native, "record "),
            ("c.oracleGeneral.zst", TraceFormat::OracleGeneral, "record "),
            ("c.csv.zst", TraceFormat::Csv, "line "),
        ] {
            let path = dir.path().join(name);
            write_all(&path, format, &recs);
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
            let mut r = TraceReader::open(&path, None).unwrap();
            let n = r.by_ref().take_while(Result::is_ok).count();
            assert!(n < recs.len(), "{name}: {n} records");
            let mut r = TraceReader::open(&path, None).unwrap();
            let e = r.nth(n).unwrap().unwrap_err().to_string();
            assert!(e.starts_with(&path.display().to_string()), "{e}");
            assert!(e.contains(at), "{name}: {e}");
            assert!(r.next().is_none(), "{name}: a record after the error");
            let e = TraceStats::scan(&path, None, |_| {})
                .unwrap_err()
                .to_string();
            assert!(e.contains(at), "{name}: {e}");
        }
    }

    #[test]
    fn a_failed_convert_leaves_no_output() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        let mut text = String::from("time,pid,op,address\n");
        for i in 0..100_000 {
            text.push_str(&format!("{i},1,R,0x{:x}\n", 0x1000 * i));
        }
        text.push_str("9,1,Q,0x10\n");
        std::fs::write(&input, text).unwrap();
        for out in ["out.swvmtrace", "out.swvmtrace.zst"] {
            let output = dir.path().join(out);
            let e = convert(&input, None, &output, None, |_| {}).unwrap_err();
            assert!(e.to_string().contains("line 100002"), "{e}");
            assert!(!output.exists(), "{out} left behind");
            // An existing output is kept as it was.
            std::fs::write(&output, b"old").unwrap();
            assert!(convert(&input, None, &output, None, |_| {}).is_err());
            assert_eq!(std::fs::read(&output).unwrap(), b"old");
            std::fs::remove_file(&output).unwrap();
        }
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from("in.csv")]);
    }

    #[test]
    fn an_empty_file_says_so_in_every_format() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["e", "e.swvmtrace", "e.zst"] {
            let path = dir.path().join(name);
            std::fs::write(&path, b"").unwrap();
            let e = TraceReader::open(&path, None).unwrap_err();
            assert!(matches!(e.defect(), Some(Defect::Empty)), "{name}: {e}");
            assert!(
                e.to_string()
                    .ends_with("header: the file is empty (0 bytes)"),
                "{e}"
            );
        }
        // An empty zstd stream is an empty file too.
        let path = dir.path().join("z.swvmtrace");
        std::fs::write(&path, zstd::encode_all(&b""[..], 3).unwrap()).unwrap();
        let e = TraceReader::open(&path, None).unwrap_err();
        assert!(matches!(e.defect(), Some(Defect::Empty)), "{e}");
        // Headerless formats: zero records, no error (replay warns).
        for name in ["e.csv", "e.lackey", "e.oracleGeneral.bin"] {
            let path = dir.path().join(name);
            std::fs::write(&path, b"").unwrap();
            assert_eq!(read_all(&path, None), []);
        }
    }
}
