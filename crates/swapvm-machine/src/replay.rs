//! A machine whose processes replay a memory trace.
//!
//! [`Machine::from_trace`] is [`Machine::new`] with the workload file
//! replaced by a scanned trace: one process per pid of the trace (see
//! swapvm-workload's `trace` module for how a pid's address space becomes
//! regions and how pids share the file). Everything else, RAM, swap
//! devices, reclaim, the tick loop, verification and the report, is the
//! same as for `swapvm run`.

use crate::{Machine, MachineError, RunOptions};
use std::path::PathBuf;
use swapvm_core::MachineConfig;
use swapvm_workload::{ProcessSource, TracePlan, WorkloadSpec};

impl Machine {
    /// Builds a machine from `cfg` whose processes replay `plan`, one per
    /// pid, pids numbered from 1 in order of first appearance in the trace.
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
        let seed = opts.seed.unwrap_or(cfg.machine.seed);
        let sources = plan
            .processes()?
            .into_iter()
            .map(ProcessSource::Trace)
            .collect();
        let name = plan
            .path()
            .file_name()
            .map_or_else(|| "trace".into(), |n| n.to_string_lossy().into_owned());
        let workload = WorkloadSpec {
            name: format!("trace {name}"),
            description: format!(
                "replay of {} ({}, {} pids)",
                plan.path().display(),
                plan.stats.format,
                plan.stats.pids.len()
            ),
            processes: Vec::new(),
            source: PathBuf::from(plan.path()),
        };
        Machine::build(
            cfg,
            opts,
            seed,
            workload,
            sources,
            Vec::new(),
            plan.total_accesses(),
        )
    }
}
