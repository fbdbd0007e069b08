//! What drives an emulated process: a synthetic generator or a trace.

use crate::phases::PhaseGen;
use crate::trace::{PackedAccess, TraceError, TraceProcess};
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
    /// A fixed list of ops (tests, and admin processes that run
    /// `swapoff`/`swapon`); it exits after the last.
    Script(Script),
}

/// A fixed op list for [`ProcessSource::Script`].
#[derive(Debug, Clone)]
pub struct Script {
    name: String,
    ops: std::collections::VecDeque<Op>,
    accesses: u64,
    exited: bool,
}

impl Script {
    /// A process named `name` running `ops`, then exiting.
    pub fn new(name: impl Into<String>, ops: Vec<Op>) -> Self {
        let accesses = ops
            .iter()
            .filter(|o| matches!(o, Op::Access { .. } | Op::Fill { .. }))
            .count() as u64;
        Script {
            name: name.into(),
            ops: ops.into(),
            accesses,
            exited: false,
        }
    }

    fn next_op(&mut self) -> Option<Op> {
        if self.exited {
            return None;
        }
        match self.ops.pop_front() {
            Some(Op::Exit) | None => {
                self.exited = true;
                Some(Op::Exit)
            }
            Some(op) => Some(op),
        }
    }
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
            ProcessSource::Script(s) => Ok(s.next_op()),
        }
    }

    /// The accesses [`Self::next_op`] would return next that are already
    /// decoded (a trace's batch; empty for the generators, which make one
    /// op per call). See [`TraceProcess::ready`].
    #[inline]
    pub fn ready(&self) -> &[PackedAccess] {
        match self {
            ProcessSource::Trace(t) => t.ready(),
            _ => &[],
        }
    }

    /// Hands out the first `n` ops of [`Self::ready`], as `n` calls of
    /// [`Self::next_op`] would have.
    #[inline]
    pub fn take_ready(&mut self, n: usize) {
        if let ProcessSource::Trace(t) = self {
            t.take_ready(n);
        }
    }

    /// The child's source after this source emitted [`Op::Fork`]; `None`
    /// for sources that never fork.
    pub fn fork_child(&mut self) -> Option<ProcessSource> {
        match self {
            ProcessSource::MmOps(g) => Some(ProcessSource::MmOps(g.fork_child())),
            ProcessSource::Phases(g) => Some(ProcessSource::Phases(g.fork_child())),
            ProcessSource::Usemem(_) | ProcessSource::Trace(_) | ProcessSource::Script(_) => None,
        }
    }

    /// The cgroup write of the [`Op::CgroupWrite`] just returned.
    pub fn take_cgroup_write(&mut self) -> Option<crate::phases::CgroupWrite> {
        match self {
            ProcessSource::Phases(g) => g.take_cgroup_write(),
            _ => None,
        }
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        match self {
            ProcessSource::Usemem(g) => g.name(),
            ProcessSource::Trace(t) => t.name(),
            ProcessSource::MmOps(_) => "mmops",
            ProcessSource::Phases(g) => g.name(),
            ProcessSource::Script(s) => &s.name,
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
            ProcessSource::Script(s) => s.accesses,
        }
    }
}

impl From<ProcessGen> for ProcessSource {
    fn from(g: ProcessGen) -> Self {
        ProcessSource::Usemem(Box::new(g))
    }
}
