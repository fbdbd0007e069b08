//! swapvm-workload: what the emulated processes do.
//!
//! It owns the workload definitions (the TOML files under `workloads/`,
//! parsed and validated into a [`WorkloadSpec`]) and the access generators
//! that turn a definition and a seed into one deterministic stream of [`Op`]s
//! per emulated process ([`ProcessGen`]), in the manner of vm-scalability's
//! `usemem`.
//!
//! It also owns memory traces ([`trace`]): streaming readers and writers
//! of Valgrind lackey, CSV, libCacheSim oracleGeneral and swapvm's native
//! binary format, their statistics, and their replay as processes
//! ([`TraceProcess`]). [`ProcessSource`] is either kind of process.
//!
//! It refuses to know about page tables, RAM, reclaim and swap: a generator
//! only says which page of which region a process touches next and whether it
//! writes. Whether that page is present, swapped out or has to be faulted in
//! is the machine's business; the generator never waits for it and never
//! re-emits an op (the machine keeps an op that could not complete yet and
//! retries it).

#![warn(missing_docs)]

mod mmops;
mod op;
pub mod phases;
mod random;
mod source;
mod spec;
pub mod trace;
mod usemem;

pub use mmops::{MmOps, MmOpsConfig};
pub use op::{Advice, Op, PageRange};
pub use source::{ProcessSource, Script};
pub use spec::{
    Pattern, ProcessKind, ProcessSpec, WorkloadSpec, ACCESSES_PER_PASS_MAX, COUNT_MAX,
    PAGES_PER_MIB, PASSES_MAX, SIZE_MIB_MAX,
};
pub use trace::{PackedAccess, TraceError, TraceFormat, TracePlan, TraceProcess};
pub use usemem::ProcessGen;
