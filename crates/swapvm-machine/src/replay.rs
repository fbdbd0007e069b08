//! A machine whose processes replay a memory trace.
//!
//! [`Machine::from_trace`] is [`Machine::new`] with the workload file
//! replaced by a scanned trace ([`RunOptions::trace`]): one process per pid
//! of the trace, pids numbered from 1 in order of first appearance (see
//! swapvm-workload's `trace` module for how a pid's address space becomes
//! regions and how pids share the file). Everything else, RAM, swap
//! devices, reclaim, the tick loop, verification and the report, is the
//! same as for `swapvm run`.

use crate::{Machine, MachineError, RunOptions, Source};
use std::path::PathBuf;
use swapvm_core::MachineConfig;
use swapvm_workload::{TracePlan, WorkloadSpec};

impl Machine {
    /// Builds a machine from `cfg` whose processes replay `plan`.
    ///
    /// `opts.workload` and `opts.scale` do not apply to a trace and are
    /// ignored; the seed still drives the machine.
    ///
    /// # Errors
    ///
    /// [`MachineError::Trace`] if the trace can no longer be opened, and
    /// whatever [`Machine::new`] can fail with for RAM and swap.
    pub fn from_trace(
        cfg: MachineConfig,
        plan: &TracePlan,
        opts: RunOptions,
    ) -> Result<Machine, MachineError> {
        let opts = RunOptions {
            trace: Some(plan.clone()),
            workload: None,
            scale: None,
            ..opts
        };
        Machine::new(cfg, opts)
    }
}

/// The workload a trace stands for in the report: named after the file,
/// with no process tables.
pub(crate) fn workload_of(plan: &TracePlan) -> WorkloadSpec {
    let name = plan
        .path()
        .file_name()
        .map_or_else(|| "trace".into(), |n| n.to_string_lossy().into_owned());
    WorkloadSpec {
        name: format!("trace {name}"),
        description: format!(
            "replay of {} ({}, {} pids)",
            plan.path().display(),
            plan.stats.format,
            plan.stats.pids.len()
        ),
        processes: Vec::new(),
        source: PathBuf::from(plan.path()),
    }
}

/// One process source per pid, each with its own reader of the file.
pub(crate) fn sources(plan: &TracePlan) -> Result<Vec<(String, Source)>, MachineError> {
    Ok(plan
        .processes()?
        .into_iter()
        .map(|p| (p.name().to_owned(), Source::Trace(p)))
        .collect())
}
