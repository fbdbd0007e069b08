//! What drives an emulated process: a synthetic generator or a trace.

use crate::phases::PhaseGen;
use crate::trace::{TraceError, TraceProcess};
use crate::{MmOps, Op, ProcessGen};

/// The op stream of one emulated process.
#[derive(Debug)]
pub enum ProcessSource {
    /// A usemem generator from a workload file.
    Usemem(Box<ProcessGen>),
    /// One pid of a replayed trace.
    Trace(TraceProcess),
    /// Random memory-management op sequences (simulation tests, fuzzing).
    MmOps(MmOps),
    /// A phase program from a workload file.
    Phases(PhaseGen),
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
            ProcessSource::MmOps(g) => Ok(g.next_op()),
            ProcessSource::Phases(g) => Ok(g.next_op()),
        }
    }

    /// The child's source after this source emitted [`Op::Fork`]; `None`
    /// for sources that never fork.
    pub fn fork_child(&mut self) -> Option<ProcessSource> {
        match self {
            ProcessSource::MmOps(g) => Some(ProcessSource::MmOps(g.fork_child())),
            ProcessSource::Phases(g) => Some(ProcessSource::Phases(g.fork_child())),
            ProcessSource::Usemem(_) | ProcessSource::Trace(_) => None,
        }
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        match self {
            ProcessSource::Usemem(g) => g.name(),
            ProcessSource::Trace(t) => t.name(),
            ProcessSource::MmOps(_) => "mmops",
            ProcessSource::Phases(g) => g.name(),
        }
    }

    /// Accesses the process makes in all.
    pub fn accesses_total(&self) -> u64 {
        match self {
            ProcessSource::Usemem(g) => g.accesses_total(),
            ProcessSource::Trace(t) => t.accesses_total(),
            // Unknown ahead: forks and madvise decide it.
            ProcessSource::MmOps(_) => 0,
            // Counted for the whole program by the workload.
            ProcessSource::Phases(_) => 0,
        }
    }
}

impl From<ProcessGen> for ProcessSource {
    fn from(g: ProcessGen) -> Self {
        ProcessSource::Usemem(Box::new(g))
    }
}
