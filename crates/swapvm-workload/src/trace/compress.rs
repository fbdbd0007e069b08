//! zstd-compressed traces, and the files traces are read from and
//! written to.
//!
//! Any trace may be zstd-compressed, as libCacheSim publishes its traces
//! (`*.oracleGeneral.zst`). A file is decompressed when it starts with the
//! zstd frame magic (`28 b5 2f fd`), whatever its name; its format is then
//! told from the decompressed stream and from the name without `.zst`.
//! Decompression streams through a fixed window, so memory stays constant.
//!
//! Writers write to a temporary file in the output's folder and rename it
//! over the output only when the whole trace is written, so a failed
//! `trace convert` or `trace synth` leaves no half-written file under the
//! final name (the temporary file is removed when the writer is dropped).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

/// The first four bytes of a zstd frame (RFC 8878, section 3.1.1).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// zstd level of compressed traces written: zstd's default, about as
/// fast to write as an uncompressed trace on a disk.
pub const ZSTD_LEVEL: i32 = 3;

/// Whether `path`'s name asks for zstd (`*.zst`).
pub fn is_zst_name(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zst"))
}

/// The bytes a trace file holds: as stored, or decompressed.
pub enum Input {
    /// An uncompressed file.
    Plain(File),
    /// A zstd stream, decoded as it is read. After the decoder's first
    /// error every read fails the same way: a reader that retries gets
    /// the error again, never a clean end of file in mid-stream.
    Zstd {
        /// The decoder.
        dec: Box<zstd::stream::read::Decoder<'static, BufReader<File>>>,
        /// The first error, repeated.
        failed: Option<(io::ErrorKind, String)>,
    },
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Input::Plain(_) => "Input::Plain",
            Input::Zstd { .. } => "Input::Zstd",
        })
    }
}

impl Input {
    /// Opens `path`, decompressing it if it starts with [`ZSTD_MAGIC`].
    ///
    /// # Errors
    ///
    /// The error of opening or reading the file's first bytes, or of
    /// setting up the decoder.
    pub fn open(path: &Path) -> io::Result<Input> {
        let mut f = File::open(path)?;
        let mut magic = [0u8; 4];
        let n = read_full(&mut f, &mut magic)?;
        let f = File::open(path)?;
        if n == magic.len() && magic == ZSTD_MAGIC {
            let dec = zstd::stream::read::Decoder::new(f)?;
            Ok(Input::Zstd {
                dec: Box::new(dec),
                failed: None,
            })
        } else {
            Ok(Input::Plain(f))
        }
    }

    /// Whether the bytes are decompressed from zstd.
    pub fn is_compressed(&self) -> bool {
        matches!(self, Input::Zstd { .. })
    }
}

impl Read for Input {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Input::Plain(f) => f.read(buf),
            Input::Zstd { dec, failed } => {
                if let Some((kind, msg)) = failed {
                    return Err(io::Error::new(*kind, msg.clone()));
                }
                dec.read(buf).map_err(|e| {
                    let kind = e.kind();
                    let msg = format!("zstd stream: {e} (is the file cut short?)");
                    *failed = Some((kind, msg.clone()));
                    io::Error::new(kind, msg)
                })
            }
        }
    }
}

/// Reads into `buf` until it is full or the stream ends; the bytes read.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Where a trace writer's bytes go: a temporary file, compressed or not,
/// renamed over the output by [`Sink::commit`].
pub enum Sink {
    /// Uncompressed.
    Plain(BufWriter<File>),
    /// zstd-compressed.
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sink::Plain(_) => "Sink::Plain",
            Sink::Zstd(_) => "Sink::Zstd",
        })
    }
}

impl Write for Sink {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Zstd(w) => w.write(buf),
        }
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.write_all(buf),
            Sink::Zstd(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Zstd(w) => w.flush(),
        }
    }
}

/// A temporary file beside `path` (same folder, so the final rename
/// cannot cross filesystems) and its sink, compressed when `compress`.
pub(crate) fn create_temp(
    path: &Path,
    compress: bool,
    buf: usize,
) -> io::Result<(Sink, tempfile::TempPath)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().map_or_else(
        || ".trace.".into(),
        |n| format!(".{}.", n.to_string_lossy()),
    );
    let (file, temp) = tempfile::Builder::new()
        .prefix(&name)
        .suffix(".part")
        .tempfile_in(dir)?
        .into_parts();
    let w = BufWriter::with_capacity(buf, file);
    let sink = if compress {
        Sink::Zstd(zstd::stream::write::Encoder::new(w, ZSTD_LEVEL)?)
    } else {
        Sink::Plain(w)
    };
    Ok((sink, temp))
}

/// Ends the stream (the zstd frame's epilogue), flushes, and renames the
/// temporary file to `path`, with the permissions of a file made by
/// `File::create` (the temporary file is private while written).
pub(crate) fn commit(sink: Sink, temp: tempfile::TempPath, path: &Path) -> io::Result<()> {
    let w = match sink {
        Sink::Plain(w) => w,
        Sink::Zstd(e) => e.finish()?,
    };
    w.into_inner().map_err(io::IntoInnerError::into_error)?;
    set_default_mode(&temp)?;
    temp.persist(path).map_err(|e| e.error)
}

/// `rw-r--r--` less nothing: what `File::create` gives under the usual
/// umask 022 (tempfile creates files `rw-------`).
fn set_default_mode(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

/// Whether `path` starts with [`ZSTD_MAGIC`] (false if it cannot be read:
/// the reader then reports why).
pub fn is_zstd_file(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| read_full(&mut f, &mut magic))
        .is_ok_and(|n| n == magic.len() && magic == ZSTD_MAGIC)
}
