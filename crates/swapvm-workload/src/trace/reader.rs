//! Opening a trace of any format and reading it as a stream of records.

use super::compress::Input;
use super::*;
use std::io::{BufReader, Read};
use std::sync::Arc;

/// The path a reader names in its errors, shared cheaply.
pub(crate) type SharedPath = Arc<Path>;

/// The buffered reader every trace reader reads a file through.
pub type FileInput = BufReader<Input>;

pub(crate) fn open_buffered(path: &Path) -> Result<FileInput, TraceError> {
    let f = Input::open(path).map_err(|source| TraceError::Open {
        path: path.to_owned(),
        source,
    })?;
    Ok(BufReader::with_capacity(IO_BUF, f))
}

/// The first bytes of `path`, decompressed if it is zstd. A read error
/// after some bytes ends the head there: the reader meets it again and
/// names the record.
pub(crate) fn read_head(path: &Path, buf: &mut [u8]) -> Result<usize, TraceError> {
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
    /// DAMON regions, as the accesses of the replay model.
    Damon(damon::DamonReader<FileInput>),
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
            TraceFormat::Damon => TraceReader::Damon(damon::DamonReader::new(r, shared)?),
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
            TraceReader::Damon(_) => TraceFormat::Damon,
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
            TraceReader::Damon(r) => r.position(),
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
            TraceReader::Damon(r) => r.next(),
        }
    }
}
