//! Fault injection on the machine's side, and the OOM killer that is the
//! machine's last answer to memory it cannot reclaim.
//!
//! The `[fault]` section ([`FaultConfig`]) is split by who applies each
//! fault: I/O faults go to swapvm-io's [`swapvm_io::FaultyEngine`] as a
//! [`FaultPlan`] per device; the continuation `-ENOMEM` is armed in the
//! swap layer; a kill in the middle of a fault is decided here, when a
//! process's fault has to wait for its swap-in read.
//!
//! How the machine answers each fault, as the kernel does:
//! - write error (or short write, or `ENOSPC`): the folio stays in memory,
//!   dirty, back on the LRU (`folio_end_writeback` with an error redirties
//!   it); its slot stays bound, so nothing is lost;
//! - read error: the fault of that process fails (`VM_FAULT_SIGBUS`), the
//!   process is killed and reported; no other process's data is touched;
//! - torn write: the device says the write succeeded; the verifier's
//!   checksum catches it at read-back, the read is failed like a read error
//!   (as a device with integrity protection would fail it) and the
//!   mismatch is reported with the slot;
//! - a device that fills: writes to new slots fail with `ENOSPC`, so
//!   reclaim stops making progress and the OOM killer below ends the
//!   largest process;
//! - kill mid-fault: the process exits while its swap-in read is in
//!   flight; the read completes into a swap-cache folio nobody maps, which
//!   reclaim then frees.

use crate::Proc;
use swapvm_core::{FaultConfig, SimRng};
use swapvm_io::FaultPlan;
use swapvm_mm::Memory;

/// RNG stream of the machine's own fault decisions (workload processes use
/// streams 1.., see `WorkloadSpec::instantiate`).
const KILL_STREAM: u64 = 0x6b69_6c6c;

/// The seed all faults of a run derive from.
pub(crate) fn fault_seed(cfg: &FaultConfig, run_seed: u64) -> u64 {
    cfg.seed.unwrap_or(run_seed)
}

/// The I/O fault plan of swap device number `index` (in config order), or
/// `None` when no I/O fault is armed. Each device draws its own stream.
pub(crate) fn io_plan(cfg: &FaultConfig, run_seed: u64, index: usize) -> Option<FaultPlan> {
    if !cfg.any_io() {
        return None;
    }
    let seed =
        fault_seed(cfg, run_seed) ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(index as u64 + 1));
    Some(FaultPlan {
        seed,
        read_error_rate: cfg.read_error_rate,
        write_error_rate: cfg.write_error_rate,
        read_error_blocks: cfg.read_error_slots.iter().copied().collect(),
        write_error_blocks: cfg.write_error_slots.iter().copied().collect(),
        short_write_rate: cfg.short_write_rate,
        torn_write_rate: cfg.torn_write_rate,
        full_after_blocks: cfg.device_full_after_slots,
        read_delay: std::time::Duration::from_micros(cfg.read_delay_us),
    })
}

/// Ticks without progress before the OOM killer acts (plus I/O latency).
pub(crate) const OOM_TICKS: u64 = 256;

/// The machine's own fault decisions.
#[derive(Debug)]
pub(crate) struct Injector {
    rng: SimRng,
    kill_mid_fault_rate: f64,
    /// Processes killed while their fault waited for a read.
    pub(crate) kills: u64,
}

impl Injector {
    pub(crate) fn new(cfg: &FaultConfig, run_seed: u64) -> Self {
        Injector {
            rng: SimRng::derive(fault_seed(cfg, run_seed), KILL_STREAM),
            kill_mid_fault_rate: cfg.kill_mid_fault_rate,
            kills: 0,
        }
    }

    /// Called when a process's fault starts waiting for its swap-in read:
    /// true if a `SIGKILL` arrives now. Draws only when the fault is armed,
    /// so a run without it keeps its RNG streams untouched.
    pub(crate) fn kill_mid_fault(&mut self) -> bool {
        if self.kill_mid_fault_rate <= 0.0 {
            return false;
        }
        let k = self.rng.chance(self.kill_mid_fault_rate);
        self.kills += u64::from(k);
        k
    }
}

/// `oom_badness` of a process: its resident anon pages plus its swap
/// entries (the kernel's `get_mm_rss + MM_SWAPENTS`); `None` for a process
/// with no memory to free.
fn oom_badness(mem: &Memory, p: &Proc) -> Option<u64> {
    if p.exited {
        return None;
    }
    let mm = mem.mm(p.mm?);
    let points = mm.rss_anon + mm.rss_swap;
    (points > 0).then_some(points)
}

/// [`select_bad_process`] over the processes given (`None`: not eligible,
/// e.g. outside the OOMing memcg).
pub(crate) fn select_bad_process_among(
    mem: &Memory,
    procs: &[Option<&Proc>],
) -> Option<(usize, u64)> {
    procs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.and_then(|p| oom_badness(mem, p)).map(|b| (i, b)))
        .max_by_key(|&(i, b)| (b, std::cmp::Reverse(i)))
}

/// `select_bad_process`: the live process with the highest badness, the
/// lowest index among equals (deterministic). Returns `(index, points)`.
pub(crate) fn select_bad_process(mem: &Memory, procs: &[Proc]) -> Option<(usize, u64)> {
    procs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| oom_badness(mem, p).map(|b| (i, b)))
        .max_by_key(|&(i, b)| (b, std::cmp::Reverse(i)))
}

impl crate::Machine {
    /// `out_of_memory`, called once per tick: when for long enough no
    /// access completed and no frame was freed while a process waited for
    /// memory (reclaim can make no progress: swap full, or every write
    /// failing), kills the process with the highest [`oom_badness`].
    /// Returns true if it killed one.
    ///
    /// "Long enough" is [`OOM_TICKS`] plus four I/O latencies: reclaim
    /// must first age the pages (a page mapped and referenced is kept on
    /// its first scan), and writeback that is merely slow, or a machine
    /// that is thrashing but still moving, must not be mistaken for one
    /// that cannot move at all.
    ///
    /// Under MGLRU with `min_ttl_ms`, kswapd may ask for a kill at once
    /// (every generation is younger than that: `lru_gen_age_node`).
    pub(crate) fn out_of_memory_tick(&mut self, ran: bool) -> bool {
        let min_ttl = self.reclaim.take_oom_request();
        let free = self.mem.nr_free();
        let waiting = self
            .procs
            .iter()
            .any(|p| !p.exited && p.blocked == Some(swapvm_mm::Wait::Memory));
        if ran || free > self.last_free || !waiting {
            self.no_progress_ticks = 0;
        } else {
            self.no_progress_ticks += 1;
        }
        self.last_free = free;
        let limit = OOM_TICKS + 4 * u64::from(self.cfg.machine.io_latency_ticks);
        if self.no_progress_ticks < limit && !min_ttl {
            return false;
        }
        self.no_progress_ticks = 0;
        let Some((i, points)) = select_bad_process(&self.mem, &self.procs) else {
            return false;
        };
        self.stat.inc(swapvm_core::VmEvent::OomKill);
        let cause = if min_ttl {
            "every generation younger than min_ttl_ms"
        } else {
            "reclaim made no progress"
        };
        let why = format!(
            "{}: out of memory at tick {}, {cause} \
             (badness {points} pages: resident + swap entries)",
            crate::report::OOM_KILL,
            self.tick
        );
        self.exit_process(i, Some(why));
        true
    }
}
