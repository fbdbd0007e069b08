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
mod chunk_cache;
pub mod compress;
pub mod csv;
pub mod damon;
mod error;
pub mod lackey;
pub mod lcs;
pub mod native;
pub mod oracle;
mod reader;
mod replay;
mod stats;
mod synth;
mod text;
mod writer;

pub use replay::{PackedAccess, TracePlan, TraceProcess, PIDS_MAX, REGION_PAGES};
pub use stats::{PidStats, TraceStats};

pub(crate) use chunk_cache::{ChunkCache, ChunkHash, LastTwo};
pub(crate) use error::cut_last_line;
pub use error::{Defect, Position, TraceError};
pub(crate) use reader::{read_head, stash_error, RecordStream, SharedPath};
pub use reader::{FileInput, TraceReader};
pub use synth::{synth, synth_with, SynthSpec};
pub use writer::{convert, convert_with, TraceWriter};

use std::path::Path;
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
    /// DAMON region reports, replayed through the model of [`damon`].
    Damon,
}

impl TraceFormat {
    /// Every format, in the order `--format` lists them.
    pub const ALL: [TraceFormat; 6] = [
        TraceFormat::Lackey,
        TraceFormat::Csv,
        TraceFormat::OracleGeneral,
        TraceFormat::Native,
        TraceFormat::Lcs,
        TraceFormat::Damon,
    ];

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceFormat::Lackey => "lackey",
            TraceFormat::Csv => "csv",
            TraceFormat::OracleGeneral => "oracle-general",
            TraceFormat::Native => "native",
            TraceFormat::Lcs => "lcs",
            TraceFormat::Damon => "damon",
        }
    }

    /// Whether a file of this format can carry more than one pid.
    pub fn multi_pid(self) -> bool {
        matches!(
            self,
            TraceFormat::Csv | TraceFormat::Native | TraceFormat::Damon
        )
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
        if damon::is_damon(head) {
            return Ok(TraceFormat::Damon);
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
        } else if name.ends_with(".damon") {
            Some(TraceFormat::Damon)
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
            "damon" => Ok(TraceFormat::Damon),
            _ => Err(format!(
                "unknown trace format {s:?} (use lackey, csv, oracle-general, native or lcs)"
            )),
        }
    }
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
