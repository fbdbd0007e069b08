//! What drives an emulated process: a synthetic generator or a trace.

use crate::trace::{TraceError, TraceProcess};
use crate::{Op, ProcessGen};

/// The op stream of one emulated process.
#[derive(Debug)]
pub enum ProcessSource {
    /// A usemem generator from a workload file.
    Usemem(ProcessGen),
    /// One pid of a replayed trace.
    Trace(TraceProcess),
}

impl ProcessSource {
    /// The next op, or `None` after [`Op::Exit`].
    ///
    /// # Errors
    ///
    /// Only a trace fails: its reader's [`TraceError`].
    #[inline]
    pub fn next_op(&mut self) -> Result<Option<Op>, TraceError> {
        match self {
            ProcessSource::Usemem(g) => Ok(g.next_op()),
            ProcessSource::Trace(t) => t.next_op(),
        }
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        match self {
            ProcessSource::Usemem(g) => g.name(),
            ProcessSource::Trace(t) => t.name(),
        }
    }

    /// Accesses the process makes in all.
    pub fn accesses_total(&self) -> u64 {
        match self {
            ProcessSource::Usemem(g) => g.accesses_total(),
            ProcessSource::Trace(t) => t.accesses_total(),
        }
    }
}

impl From<ProcessGen> for ProcessSource {
    fn from(g: ProcessGen) -> Self {
        ProcessSource::Usemem(g)
    }
}
