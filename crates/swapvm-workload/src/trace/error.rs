//! What a trace reader or writer reports: the defect of a line or record,
//! where it is, and the error naming the file.

use std::path::PathBuf;

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
    #[error("{}: cannot tell the trace format from its name or content; pass --format (lackey, csv, oracle-general, native, lcs, damon)", path.display())]
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

/// The defect of a text trace whose last data line has no newline: the
/// file was cut while it was written, and what remains of the line could
/// read as a different address.
pub(crate) fn cut_last_line() -> Defect {
    Defect::Truncated("the last line has no newline: the file was cut while it was written".into())
}
