//! Writing a trace of any format, and converting between formats.

use super::compress::Sink;
use super::*;
use std::path::PathBuf;
use std::sync::Arc;

/// A writer of one format, onto a [`Sink`].
#[derive(Debug)]
enum FormatWriter {
    Lackey(lackey::LackeyWriter<Sink>),
    Csv(csv::CsvWriter<Sink>),
    OracleGeneral(oracle::OracleWriter<Sink>),
    Native(native::NativeWriter<Sink>),
    Lcs(lcs::LcsWriter<Sink>),
    Damon(damon::DamonWriter<Sink>),
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
        let (sink, temp, shared) = Self::temp(path, compress)?;
        let w = match format {
            TraceFormat::Lackey => FormatWriter::Lackey(lackey::LackeyWriter::new(sink, shared)),
            TraceFormat::Csv => FormatWriter::Csv(csv::CsvWriter::new(sink, shared)?),
            TraceFormat::OracleGeneral => {
                FormatWriter::OracleGeneral(oracle::OracleWriter::new(sink, shared))
            }
            TraceFormat::Native => FormatWriter::Native(native::NativeWriter::new(sink, shared)?),
            TraceFormat::Lcs => FormatWriter::Lcs(lcs::LcsWriter::new(sink, shared)?),
            TraceFormat::Damon => {
                return Err(TraceError::Unrepresentable {
                    path: path.to_owned(),
                    at: Position::Header,
                    reason: "DAMON regions are captured (`swapvm trace record --damon`), \
                             not made from accesses"
                        .into(),
                })
            }
        };
        Ok(TraceWriter {
            w,
            temp,
            path: path.to_owned(),
        })
    }

    /// A writer of DAMON regions ([`damon`]) with header `h`, compressed
    /// when `compress`; regions go in with [`Self::write_region`].
    ///
    /// # Errors
    ///
    /// [`TraceError::Open`] or [`TraceError::Write`].
    pub fn create_damon(
        path: &Path,
        h: &damon::DamonHeader,
        compress: bool,
    ) -> Result<TraceWriter, TraceError> {
        let (sink, temp, shared) = Self::temp(path, compress)?;
        Ok(TraceWriter {
            w: FormatWriter::Damon(damon::DamonWriter::new(sink, shared, h)?),
            temp,
            path: path.to_owned(),
        })
    }

    /// The temporary file beside `path` that [`Self::finish`] renames.
    fn temp(
        path: &Path,
        compress: bool,
    ) -> Result<(Sink, tempfile::TempPath, SharedPath), TraceError> {
        let (sink, temp) =
            compress::create_temp(path, compress, IO_BUF).map_err(|source| TraceError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok((sink, temp, Arc::from(path)))
    }

    /// Appends one DAMON region.
    ///
    /// # Errors
    ///
    /// [`TraceError::Write`]; [`TraceError::Unrepresentable`] if this is
    /// not a DAMON writer.
    pub fn write_region(&mut self, r: &damon::DamonRegion) -> Result<(), TraceError> {
        match &mut self.w {
            FormatWriter::Damon(w) => w.write(r),
            _ => Err(TraceError::Unrepresentable {
                path: self.path.clone(),
                at: Position::Header,
                reason: "a region into an access trace".into(),
            }),
        }
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
            FormatWriter::Damon(_) => Err(TraceError::Unrepresentable {
                path: self.path.clone(),
                at,
                reason: "DAMON regions are captured, not made from accesses".into(),
            }),
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
            FormatWriter::Damon(w) => w.finish()?,
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
