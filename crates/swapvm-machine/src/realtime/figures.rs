//! The figures of a realtime run: what a loaded-machine study reads.
//!
//! Fault latency is taken as the faulting task saw it: from the turn that
//! returned "retry after this I/O" (`VM_FAULT_RETRY`) to the moment the
//! task had a CPU again to retry the fault, which then maps the page
//! without waiting. It therefore includes the device's latency, the
//! completion's delivery and the wait for a CPU, unlike the device's own
//! read latency, which is reported beside it. A task's stall time sums
//! those waits and its waits for memory (direct reclaim, memcg limits).

use crate::report::{latency, Latency};
use crate::{new_histogram, Machine};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::time::{Duration, Instant};
use swapvm_core::VmEvent;

/// The `realtime` section of report.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RealtimeReport {
    /// `machine.cpus`: most tasks on a CPU at once.
    pub cpus: u32,
    /// `machine.tick_us`: wall-clock µs per tick.
    pub tick_us: u64,
    /// Wall-clock time from the first turn to the last task's end, ms.
    pub wall_ms: u64,
    /// Page faults per second (`pgfault`).
    pub faults_per_s: f64,
    /// Major faults (swap-ins that waited for the device) per second.
    pub majfaults_per_s: f64,
    /// Pages swapped in per second (`pswpin`).
    pub swapins_per_s: f64,
    /// Pages swapped out per second (`pswpout`).
    pub swapouts_per_s: f64,
    /// Fault to mapped, as the task saw it, per fault that waited for I/O.
    pub fault_latency: Latency,
    /// The device's own swap-in read latency, for comparison.
    pub device_read_latency: Latency,
    /// The device's own swap-out write latency.
    pub device_write_latency: Latency,
    /// Requests the devices held (ring, engine queue, plug), sampled every
    /// tick.
    pub queue_depth: Depth,
    /// Per process (forked children included), in pid order.
    pub processes: Vec<ProcessFigures>,
    /// Swap I/Os in flight when the run stopped early (`max_ticks`, an
    /// interrupt); every one must be delivered before the final check.
    pub in_flight_at_stop: u64,
    /// Of those, completions delivered while draining.
    pub drained_at_stop: u64,
    /// How the completion reactor spent its time.
    pub reactor: ReactorFigures,
    /// One row every `machine.sample_every_ticks` ticks (`realtime.csv`).
    pub series: Vec<RealtimeRow>,
}

/// Queue depth percentiles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Depth {
    /// Samples taken.
    pub samples: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

/// One process's realtime figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessFigures {
    /// pid.
    pub pid: u32,
    /// Name.
    pub name: String,
    /// Faults that waited for a swap-in read.
    pub faults_waited: u64,
    /// Time spent waiting for I/O or memory, µs.
    pub stall_us: u64,
    /// When it exited, ms after the start (absent: still running at stop).
    pub exit_ms: Option<u64>,
}

/// The completion reactor's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ReactorFigures {
    /// Times it looked for completions.
    pub polls: u64,
    /// Completions it delivered.
    pub completions: u64,
    /// Times every task waited and it slept in the kernel for a completion.
    pub blocking_waits: u64,
    /// Time spent in those sleeps, µs.
    pub blocked_us: u64,
}

/// One row of `realtime.csv`: rates over the interval since the last row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RealtimeRow {
    /// Wall-clock ms since the start.
    pub t_ms: u64,
    /// Tick.
    pub tick: u64,
    /// `pgfault` per second.
    pub faults_per_s: f64,
    /// `pswpin` per second.
    pub swapins_per_s: f64,
    /// `pswpout` per second.
    pub swapouts_per_s: f64,
    /// Requests the devices held at the sample.
    pub queue_depth: u64,
    /// Swap I/Os the emulation had in flight at the sample.
    pub in_flight: u64,
    /// Fault latency p50 over the interval, µs (0: no fault waited).
    pub fault_p50_us: u64,
    /// Fault latency p99 over the interval, µs.
    pub fault_p99_us: u64,
}

/// What the tasks and the reactor record while the run goes.
pub(crate) struct Figures {
    pub(crate) started: Instant,
    fault_us: Histogram<u64>,
    interval_fault_us: Histogram<u64>,
    depth: Histogram<u64>,
    pub(crate) procs: Vec<ProcessFigures>,
    pub(crate) reactor: ReactorFigures,
    series: Vec<RealtimeRow>,
    last: (Instant, [u64; 3]),
    pub(crate) in_flight_at_stop: u64,
    pub(crate) drained_at_stop: u64,
}

const RATE_EVENTS: [VmEvent; 3] = [VmEvent::PgFault, VmEvent::PswpIn, VmEvent::PswpOut];

impl Figures {
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        Figures {
            started: now,
            fault_us: new_histogram(),
            interval_fault_us: new_histogram(),
            depth: Histogram::new_with_bounds(1, 1 << 20, 3).expect("static bounds are valid"),
            procs: Vec::new(),
            reactor: ReactorFigures::default(),
            series: Vec::new(),
            last: (now, [0; 3]),
            in_flight_at_stop: 0,
            drained_at_stop: 0,
        }
    }

    /// The figures of process `i`, created on first use.
    pub(crate) fn proc_mut(&mut self, i: usize) -> &mut ProcessFigures {
        if self.procs.len() <= i {
            self.procs.resize_with(i + 1, ProcessFigures::default);
        }
        &mut self.procs[i]
    }

    /// Process `i` waited `d`; `fault`: for a swap-in read of its fault.
    pub(crate) fn waited(&mut self, i: usize, d: Duration, fault: bool) {
        let us = (d.as_micros() as u64).max(1);
        let p = self.proc_mut(i);
        p.stall_us += us;
        if fault {
            p.faults_waited += 1;
            let _ = self.fault_us.record(us);
            let _ = self.interval_fault_us.record(us);
        }
    }

    /// Process `i` exited now.
    pub(crate) fn exited(&mut self, i: usize) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.proc_mut(i).exit_ms = Some(ms);
    }

    /// Samples the devices' queue depth (every tick).
    pub(crate) fn sample_depth(&mut self, depth: usize) {
        let _ = self.depth.record(depth as u64);
    }

    /// Takes a `realtime.csv` row.
    pub(crate) fn sample_row(&mut self, m: &Machine) {
        let now = Instant::now();
        let counts = RATE_EVENTS.map(|e| m.stat.get(e));
        let secs = now.duration_since(self.last.0).as_secs_f64().max(1e-9);
        let rate = |k: usize| (counts[k] - self.last.1[k]) as f64 / secs;
        let h = &self.interval_fault_us;
        let q = |x| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(x)
            }
        };
        self.series.push(RealtimeRow {
            t_ms: now.duration_since(self.started).as_millis() as u64,
            tick: m.tick,
            faults_per_s: rate(0),
            swapins_per_s: rate(1),
            swapouts_per_s: rate(2),
            queue_depth: m.swap.device_in_flight() as u64,
            in_flight: m.swap.io_in_flight() as u64,
            fault_p50_us: q(0.5),
            fault_p99_us: q(0.99),
        });
        self.interval_fault_us.reset();
        self.last = (now, counts);
    }

    /// The report section, at the end of the run.
    pub(crate) fn report(mut self, m: &Machine) -> RealtimeReport {
        let wall = self.started.elapsed();
        let secs = wall.as_secs_f64().max(1e-9);
        let per_s = |e| m.stat.get(e) as f64 / secs;
        for (i, p) in m.procs.iter().enumerate() {
            let f = self.proc_mut(i);
            f.pid = p.pid;
            f.name.clone_from(&p.name);
        }
        let d = &self.depth;
        RealtimeReport {
            cpus: m.cfg.machine.cpus,
            tick_us: m.cfg.machine.tick_us,
            wall_ms: wall.as_millis() as u64,
            faults_per_s: per_s(VmEvent::PgFault),
            majfaults_per_s: per_s(VmEvent::PgMajFault),
            swapins_per_s: per_s(VmEvent::PswpIn),
            swapouts_per_s: per_s(VmEvent::PswpOut),
            fault_latency: latency(&self.fault_us),
            device_read_latency: latency(&m.latency_us[0]),
            device_write_latency: latency(&m.latency_us[1]),
            queue_depth: Depth {
                samples: d.len(),
                mean: if d.is_empty() { 0.0 } else { d.mean() },
                p50: d.value_at_quantile(0.5),
                p99: d.value_at_quantile(0.99),
                max: d.max(),
            },
            processes: self.procs,
            in_flight_at_stop: self.in_flight_at_stop,
            drained_at_stop: self.drained_at_stop,
            reactor: self.reactor,
            series: self.series,
        }
    }
}

impl RealtimeReport {
    /// `realtime.csv`: the rows, with a header.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "t_ms,tick,faults_per_s,swapins_per_s,swapouts_per_s,queue_depth,in_flight,fault_p50_us,fault_p99_us\n",
        );
        for r in &self.series {
            let _ = writeln!(
                s,
                "{},{},{:.1},{:.1},{:.1},{},{},{},{}",
                r.t_ms,
                r.tick,
                r.faults_per_s,
                r.swapins_per_s,
                r.swapouts_per_s,
                r.queue_depth,
                r.in_flight,
                r.fault_p50_us,
                r.fault_p99_us
            );
        }
        s
    }
}
