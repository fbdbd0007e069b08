//! Pressure stall information for memory, as kernel/sched/psi.c accounts
//! it, in emulated time (one tick is [`TICK_MS`] ms).
//!
//! A task is *stalled on memory* (`TSK_MEMSTALL`) while it is in a
//! `psi_memstall_enter` section: direct reclaim and its throttling, memcg
//! limit reclaim (`try_charge`), the `memory.high` penalty sleep, and the
//! wait for a refaulting folio's read when the folio is in the workingset
//! (`folio_wait_bit_common`, `swap_read_folio`). kswapd's `balance_pgdat`
//! is such a section too, so kswapd reclaiming counts in the root group. A
//! wait for any other read or for writeback is I/O wait: non-idle, but not
//! a memory stall and not productive either.
//!
//! Per CPU and group the kernel's states are: `some` while at least one
//! task of the group is stalled, `full` while one is and no task of the
//! group runs productively, and non-idle while any task is non-idle. The
//! group's stall time is each CPU's time weighted by that CPU's non-idle
//! time (psi.c's approximation of "threads = min(nr_nonidle, nr_cpus)"),
//! aggregated and averaged every `PSI_FREQ` (2 s) with the kernel's
//! exponential decays and fixed-point arithmetic.
//!
//! Simplification: time inside a tick is made of `machine.tick_accesses`
//! op slots; a task's turn is laid out as its productive slots first and
//! its stalled slots right after (a memcg reclaim attempt costs one slot,
//! a stall that blocks the task lasts to the tick's end). The kernel's
//! exact interleaving inside a millisecond is not modelled.

use crate::memcg::TICK_MS;
use serde::{Deserialize, Serialize};

/// `PSI_FREQ`: averages are updated every 2 s of emulated time.
pub const PSI_FREQ_TICKS: u64 = 2000 / TICK_MS;
const FSHIFT: u32 = 11;
const FIXED_1: u64 = 1 << FSHIFT;
/// `EXP_10s`, `EXP_60s`, `EXP_300s`: 1/exp(2 s / window), fixed point.
const EXP: [u64; 3] = [1677, 1981, 2034];
const NS_PER_TICK: u64 = TICK_MS * 1_000_000;
/// `PSI_MEM_SOME`, `PSI_MEM_FULL`, and the non-idle time.
const SOME: usize = 0;
const FULL: usize = 1;
const NONIDLE: usize = 2;

/// What one task did in one tick, in op slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TaskTick {
    /// Slots of productive work, from the tick's start.
    pub run: u32,
    /// Slots stalled on memory, right after `run`.
    pub stall: u32,
    /// The task was non-idle (running, stalled or in I/O wait).
    pub nonidle: bool,
}

impl TaskTick {
    /// A tick spent stalled on memory from its start.
    pub fn stalled(slots: u32) -> TaskTick {
        TaskTick {
            run: 0,
            stall: slots,
            nonidle: true,
        }
    }
    /// A tick spent in I/O wait: non-idle, neither productive nor stalled.
    pub fn iowait() -> TaskTick {
        TaskTick {
            run: 0,
            stall: 0,
            nonidle: true,
        }
    }
}

/// One psi_group: a memcg's subtree, or the system (the root).
#[derive(Debug, Clone, Default)]
struct Group {
    /// Per CPU: some, full and non-idle time in slots, cumulative.
    cpu: Vec<[u64; 3]>,
    /// `cpu` at the last aggregation.
    seen: Vec<[u64; 3]>,
    /// Aggregated some and full stall time, ns.
    total: [u64; 2],
    /// `total` at the last average update.
    avg_total: [u64; 2],
    /// some and full avg10/avg60/avg300, fixed point percent.
    avg: [[u64; 3]; 2],
}

/// Memory pressure of every group.
#[derive(Debug, Clone)]
pub(crate) struct Psi {
    slots: u32,
    groups: Vec<Group>,
    /// (group, cpu, task) of the tick being accounted, reused.
    buf: Vec<(u16, u16, TaskTick)>,
}

impl Psi {
    /// Psi for `groups` groups (group 0 the system) on `cpus` CPUs, with
    /// `slots` op slots a tick.
    pub fn new(groups: usize, cpus: usize, slots: u32) -> Psi {
        let g = Group {
            cpu: vec![[0; 3]; cpus.max(1)],
            seen: vec![[0; 3]; cpus.max(1)],
            ..Group::default()
        };
        Psi {
            slots: slots.max(1),
            groups: vec![g; groups.max(1)],
            buf: Vec::new(),
        }
    }

    /// Records task state `t` on `cpu` for `group` in the current tick.
    /// Context: called for the task's memcg and every ancestor.
    pub fn add(&mut self, group: u16, cpu: usize, t: TaskTick) {
        if t.nonidle {
            self.buf.push((group, cpu as u16, t));
        }
    }

    /// Accounts the tick whose tasks were [`Psi::add`]ed, then, when
    /// `ticks_done` completes a `PSI_FREQ` period, updates the averages.
    pub fn end_tick(&mut self, ticks_done: u64) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.sort_unstable_by_key(|&(g, c, _)| (g, c));
        for run in buf.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
            let (g, c) = (usize::from(run[0].0), usize::from(run[0].1));
            let times = cpu_tick(run.iter().map(|e| e.2), self.slots);
            if let Some(cpu) = self.groups.get_mut(g).and_then(|g| g.cpu.get_mut(c)) {
                for (acc, t) in cpu.iter_mut().zip(times) {
                    *acc += t;
                }
            }
        }
        buf.clear();
        self.buf = buf;
        if ticks_done > 0 && ticks_done % PSI_FREQ_TICKS == 0 {
            for g in &mut self.groups {
                g.aggregate(self.slots);
                g.update_avgs();
            }
        }
    }

    /// Aggregates what the current period has so far, so that totals are
    /// up to date (the averages keep their last 2 s update, as a read of
    /// the kernel's file shows them).
    pub fn flush(&mut self) {
        for g in &mut self.groups {
            g.aggregate(self.slots);
        }
    }

    /// Aggregates `group`'s pending time, as a read of its pressure file
    /// does in the kernel.
    pub fn flush_group(&mut self, group: usize) {
        if let Some(g) = self.groups.get_mut(group) {
            g.aggregate(self.slots);
        }
    }

    /// `memory.pressure` of `group`.
    pub fn report(&self, group: usize) -> PsiReport {
        let Some(g) = self.groups.get(group) else {
            return PsiReport::default();
        };
        let line = |s: usize| PsiLine {
            avg10: load_pct(g.avg[s][0]),
            avg60: load_pct(g.avg[s][1]),
            avg300: load_pct(g.avg[s][2]),
            total_us: g.total[s] / 1000,
        };
        PsiReport {
            some: line(SOME),
            full: line(FULL),
        }
    }

    /// some and full avg10 of `group`, in hundredths of a percent.
    pub fn avg10_centi(&self, group: usize) -> [u32; 2] {
        self.groups.get(group).map_or([0; 2], |g| {
            [SOME, FULL].map(|s| {
                let a = g.avg[s][0];
                ((a >> FSHIFT) * 100 + (((a & (FIXED_1 - 1)) * 100) >> FSHIFT)) as u32
            })
        })
    }
}

/// One CPU's some, full and non-idle slots in one tick, from the states of
/// its non-idle tasks: `some` is the union of the stall intervals, `full`
/// the part of it after the last productive slot of any task.
fn cpu_tick(tasks: impl Iterator<Item = TaskTick>, slots: u32) -> [u64; 3] {
    let slots = u64::from(slots);
    let mut spans: Vec<(u64, u64)> = Vec::new();
    let mut last_run = 0u64;
    for t in tasks {
        let run = u64::from(t.run).min(slots);
        last_run = last_run.max(run);
        let end = (run + u64::from(t.stall)).min(slots);
        if end > run {
            spans.push((run, end));
        }
    }
    spans.sort_unstable();
    let (mut some, mut full) = (0, 0);
    let mut cur: Option<(u64, u64)> = None;
    let mut close = |(a, b): (u64, u64)| {
        some += b - a;
        full += b.saturating_sub(a.max(last_run));
    };
    for (a, b) in spans {
        cur = match cur {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some(done) => {
                close(done);
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some(done) = cur {
        close(done);
    }
    [some, full, slots]
}

impl Group {
    /// psi.c's `collect_percpu_times`: each CPU's new stall time weighted
    /// by its share of the non-idle time, added to the totals.
    fn aggregate(&mut self, slots: u32) {
        let mut weighted = [0u128; 2];
        let mut nonidle_total = 0u128;
        for (cur, seen) in self.cpu.iter().zip(self.seen.iter_mut()) {
            let d: [u64; 3] = [0, 1, 2].map(|s| cur[s] - seen[s]);
            *seen = *cur;
            let nonidle = u128::from(d[NONIDLE]);
            nonidle_total += nonidle;
            for s in [SOME, FULL] {
                weighted[s] += u128::from(d[s]) * nonidle;
            }
        }
        let ns_per_slot = u128::from(NS_PER_TICK) / u128::from(slots).max(1);
        for s in [SOME, FULL] {
            let t = weighted[s] * ns_per_slot / nonidle_total.max(1);
            self.total[s] += u64::try_from(t).unwrap_or(u64::MAX);
        }
    }

    /// psi.c's `calc_avgs` for one `PSI_FREQ` period.
    fn update_avgs(&mut self) {
        let period = PSI_FREQ_TICKS * NS_PER_TICK;
        for s in [SOME, FULL] {
            let sample = (self.total[s] - self.avg_total[s]).min(period);
            self.avg_total[s] = self.total[s];
            let pct = sample * 100 / period * FIXED_1;
            for (avg, exp) in self.avg[s].iter_mut().zip(EXP) {
                *avg = calc_load(*avg, exp, pct);
            }
        }
    }
}

/// The load average's fixed-point exponential decay (`calc_load`).
fn calc_load(load: u64, exp: u64, active: u64) -> u64 {
    let mut newload = load * exp + active * (FIXED_1 - exp);
    if active >= load {
        newload += FIXED_1 - 1;
    }
    newload / FIXED_1
}

/// A fixed-point percentage as the kernel prints it (`LOAD_INT.LOAD_FRAC`).
fn load_pct(x: u64) -> f64 {
    let int = x >> FSHIFT;
    let frac = ((x & (FIXED_1 - 1)) * 100) >> FSHIFT;
    int as f64 + frac as f64 / 100.0
}

/// One line of a pressure file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PsiLine {
    /// Percent of the last 10 s stalled (decaying average).
    pub avg10: f64,
    /// Over 60 s.
    pub avg60: f64,
    /// Over 300 s.
    pub avg300: f64,
    /// Stall time in all, µs of emulated time.
    pub total_us: u64,
}

/// `memory.pressure` (or `/proc/pressure/memory` for the system).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PsiReport {
    /// At least one task stalled.
    pub some: PsiLine,
    /// Every non-idle task stalled.
    pub full: PsiLine,
}

impl PsiReport {
    /// The file as the kernel prints it.
    pub fn text(&self) -> String {
        let line = |name: &str, l: &PsiLine| {
            format!(
                "{name} avg10={:.2} avg60={:.2} avg300={:.2} total={}\n",
                l.avg10, l.avg60, l.avg300, l.total_us
            )
        };
        line("some", &self.some) + &line("full", &self.full)
    }
}

impl crate::Machine {
    /// Whether waiting on `w` is a memory stall: reclaim (direct or memcg
    /// limit), or a workingset folio's read (a thrashing refault).
    fn wait_is_memstall(&self, w: swapvm_mm::Wait) -> bool {
        use swapvm_mm::pg;
        match w {
            swapvm_mm::Wait::Memory | swapvm_mm::Wait::Memcg(_) => true,
            swapvm_mm::Wait::Folio(pfn) => {
                let f = self.mem.folios.get(pfn);
                f.test(pg::WORKINGSET) && !f.test(pg::UPTODATE)
            }
        }
    }

    /// The tick of process `i`, blocked (or frozen) for all of it.
    pub(crate) fn psi_waiting(&self, i: usize) -> TaskTick {
        match self.procs[i].blocked {
            _ if self.frozen() => TaskTick::default(),
            Some(w) if self.wait_is_memstall(w) => {
                TaskTick::stalled(self.cfg.machine.tick_accesses)
            }
            Some(_) => TaskTick::iowait(),
            None => TaskTick::default(),
        }
    }

    /// The tick of process `i` after a turn that used `used` op slots,
    /// `stall` of them in memcg reclaim. A turn that ended blocked spent
    /// its failed op's slot and the rest of the tick waiting.
    pub(crate) fn psi_after_turn(&self, i: usize, used: usize, stall: u32) -> TaskTick {
        let slots = self.cfg.machine.tick_accesses;
        let used = u32::try_from(used).unwrap_or(slots);
        match self.procs[i].blocked {
            Some(w) => {
                let run = used.saturating_sub(stall + 1);
                let stall = if self.wait_is_memstall(w) {
                    slots.saturating_sub(run)
                } else {
                    stall
                };
                TaskTick {
                    run,
                    stall,
                    nonidle: true,
                }
            }
            None => TaskTick {
                run: used.saturating_sub(stall),
                stall,
                nonidle: true,
            },
        }
    }

    /// Accounts the tick's task states in every group the task is in
    /// (its memcg and each ancestor; the root is the system) and, every
    /// `PSI_FREQ`, updates the averages.
    /// Context: after every task's turn of the tick, before it advances.
    pub(crate) fn psi_tick(&mut self) {
        let slots = self.cfg.machine.tick_accesses;
        for p in &mut self.procs {
            let t = std::mem::take(&mut p.psi);
            if t.nonidle {
                for m in self.mem.memcg.ancestors(p.memcg) {
                    self.psi.add(m.0, p.cpu, t);
                }
            }
        }
        if std::mem::take(&mut self.kswapd_stalled) {
            self.psi.add(0, 0, TaskTick::stalled(slots));
        }
        self.psi.end_tick(self.tick + 1);
    }

    /// `memory.pressure` of memcg `group` (0: `/proc/pressure/memory`).
    pub(crate) fn pressure(&self, group: usize) -> PsiReport {
        self.psi.report(group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(run: u32, stall: u32) -> TaskTick {
        TaskTick {
            run,
            stall,
            nonidle: true,
        }
    }

    #[test]
    fn full_needs_every_task_stalled() {
        // One task runs the whole tick, the other stalls: some, not full.
        assert_eq!(cpu_tick([t(8, 0), t(0, 8)].into_iter(), 8), [8, 0, 8]);
        // Both stalled from slot 2 and 4: some 6, full 4.
        assert_eq!(cpu_tick([t(2, 6), t(4, 4)].into_iter(), 8), [6, 4, 8]);
        // I/O wait is neither productive nor stalled: full while it waits.
        assert_eq!(
            cpu_tick([TaskTick::iowait(), t(0, 8)].into_iter(), 8),
            [8, 8, 8]
        );
        // Disjoint stalls are summed.
        assert_eq!(cpu_tick([t(0, 2), t(5, 2)].into_iter(), 8), [4, 2, 8]);
    }

    #[test]
    fn cpus_are_weighted_by_their_nonidle_time() {
        let mut p = Psi::new(1, 2, 4);
        for tick in 1..=PSI_FREQ_TICKS {
            // CPU 0 stalled all along; CPU 1 busy, productive.
            p.add(0, 0, TaskTick::stalled(4));
            p.add(0, 1, t(4, 0));
            p.end_tick(tick);
        }
        let r = p.report(0);
        // Half the machine's non-idle time is lost: 1 s of 2 s.
        assert_eq!(r.some.total_us, 1_000_000);
        assert_eq!(r.full.total_us, 1_000_000);
        // One 50 % sample into a 10 s decay: 50 * (1 - 1677/2048).
        assert_eq!(r.some.avg10, 9.05);
        assert!(r.some.avg60 < r.some.avg10 && r.some.avg300 < r.some.avg60);
    }

    #[test]
    fn averages_decay_once_the_stall_ends() {
        let mut p = Psi::new(1, 1, 1);
        for tick in 1..=10 * PSI_FREQ_TICKS {
            p.add(0, 0, TaskTick::stalled(1));
            p.end_tick(tick);
        }
        let high = p.report(0).some.avg10;
        assert!(high > 60.0, "{high}");
        for tick in 10 * PSI_FREQ_TICKS + 1..=20 * PSI_FREQ_TICKS {
            p.add(0, 0, t(1, 0));
            p.end_tick(tick);
        }
        let r = p.report(0);
        assert!(r.some.avg10 < high / 5.0, "{}", r.some.avg10);
        assert_eq!(r.some.total_us, 20_000_000);
        assert_eq!(
            r.text().lines().next(),
            Some(
                format!(
                    "some avg10={:.2} avg60={:.2} avg300={:.2} total=20000000",
                    r.some.avg10, r.some.avg60, r.some.avg300
                )
                .as_str()
            )
        );
    }
}
