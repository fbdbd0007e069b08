//! The run's time series: one row every `machine.sample_every_ticks`
//! ticks, written as `timeseries.csv` and drawn in the run folder's plots.
//!
//! A row holds levels at its tick (resident anonymous pages, swap slots in
//! use, free frames) and, for a few kernel-named counters, the events of
//! the interval that ends at its tick. The first row is taken before the
//! first tick and the last when the run has drained its I/O, so each delta
//! column sums to the report's counter exactly.
//!
//! Sampling is cheap: a row is a fixed-size value pushed onto a `Vec`, and
//! taking one is O(processes) (the RSS sum) plus a read of each counter.

use crate::Machine;
use std::fmt::Write as _;
use swapvm_core::VmEvent;
use swapvm_mm::MemcgId;

/// The counters whose per-interval deltas a row records, in column order.
pub const DELTA_EVENTS: [VmEvent; 9] = [
    VmEvent::PswpIn,
    VmEvent::PswpOut,
    VmEvent::PgFault,
    VmEvent::PgMajFault,
    VmEvent::WorkingsetRefaultAnon,
    VmEvent::PgScanKswapd,
    VmEvent::PgScanDirect,
    VmEvent::PgStealKswapd,
    VmEvent::PgStealDirect,
];

/// Number of delta columns.
pub const NR_DELTAS: usize = DELTA_EVENTS.len();

/// Unit suffix of each delta column's CSV name (`pswpin_pages`, ...).
const DELTA_UNITS: [&str; NR_DELTAS] = [
    "pages", "pages", "faults", "faults", "pages", "pages", "pages", "pages", "pages",
];

/// The CSV header: names with their units last.
pub const CSV_LEVEL_COLUMNS: [&str; 6] = [
    "tick",
    "wall_ms",
    "interval_ticks",
    "rss_pages",
    "swap_used_pages",
    "free_ram_pages",
];

/// One row of the time series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Ticks completed when the row was taken.
    pub tick: u64,
    /// Wall-clock milliseconds since the run started (measured, so not
    /// deterministic, unlike every other column).
    pub wall_ms: u64,
    /// Ticks since the previous row (0 for the first).
    pub interval_ticks: u64,
    /// Resident anonymous pages of all live processes (`MM_ANONPAGES`).
    pub rss_pages: u64,
    /// Swap slots in use, all devices.
    pub swap_used_pages: u64,
    /// Free frames of emulated RAM.
    pub free_ram_pages: u64,
    /// Events of [`DELTA_EVENTS`] in the interval ending at `tick`.
    pub deltas: [u64; NR_DELTAS],
    /// The machine's memory pressure at `tick`: some and full avg10, in
    /// hundredths of a percent.
    pub psi_avg10_centi: [u32; 2],
}

impl Sample {
    /// The delta of `ev` in this row, if `ev` is one of [`DELTA_EVENTS`].
    pub fn delta(&self, ev: VmEvent) -> Option<u64> {
        DELTA_EVENTS
            .iter()
            .position(|&e| e == ev)
            .map(|i| self.deltas[i])
    }
}

/// A run's time series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Series {
    /// Ticks between rows (`machine.sample_every_ticks`).
    pub every_ticks: u64,
    /// Rows in tick order.
    pub rows: Vec<Sample>,
    /// Frames of emulated RAM (for scale in plots).
    pub ram_pages: u64,
    /// Usable swap slots, all devices, at the last row.
    pub swap_total_pages: u64,
    /// Counter values at the last row, the base of the next row's deltas.
    prev: [u64; NR_DELTAS],
    /// Per memory cgroup levels, one row per sample (empty without
    /// `[[cgroup]]` tables).
    pub cgroups: CgroupSeries,
}

/// Per memory cgroup levels over time, for `cgroups.csv` and its plot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupSeries {
    /// The cgroups' paths, the root first.
    pub paths: Vec<String>,
    /// Rows in tick order.
    pub rows: Vec<CgroupRow>,
}

/// One sample of every cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupRow {
    /// Ticks completed when the row was taken.
    pub tick: u64,
    /// Per cgroup, in `paths` order: `memory.current` and
    /// `memory.swap.current` in pages, and some and full avg10 of its
    /// `memory.pressure` in hundredths of a percent.
    pub levels: Vec<CgroupLevels>,
}

/// One cgroup's levels in a [`CgroupRow`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupLevels {
    /// `memory.current`, pages.
    pub current_pages: u64,
    /// `memory.swap.current`, pages.
    pub swap_pages: u64,
    /// Of those, the slots whose page is not also in the swap cache: what
    /// cgroup v1's memory.stat `swap` counts (its memsw counter uncharges
    /// a slot at swap-in).
    pub swap_v1_pages: u64,
    /// some and full avg10, hundredths of a percent.
    pub psi_avg10_centi: [u32; 2],
}

/// Hundredths as a decimal (`1234` as `12.34`).
fn centi(x: u32) -> String {
    format!("{}.{:02}", x / 100, x % 100)
}

impl CgroupSeries {
    /// `cgroups.csv`: one line per sample and cgroup.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "tick,cgroup,memory_current_pages,swap_current_pages,swap_v1_pages,psi_some_avg10_pct,psi_full_avg10_pct\n",
        );
        for r in &self.rows {
            for (path, l) in self.paths.iter().zip(&r.levels) {
                let [some, full] = l.psi_avg10_centi;
                let _ = writeln!(
                    s,
                    "{},{path},{},{},{},{},{}",
                    r.tick,
                    l.current_pages,
                    l.swap_pages,
                    l.swap_v1_pages,
                    centi(some),
                    centi(full)
                );
            }
        }
        s
    }

    /// Adds the row at `tick`, replacing one taken earlier in that tick.
    fn push(&mut self, tick: u64, levels: Vec<CgroupLevels>) {
        if let Some(last) = self.rows.last_mut().filter(|r| r.tick == tick) {
            last.levels = levels;
            return;
        }
        self.rows.push(CgroupRow { tick, levels });
    }
}

impl Series {
    /// An empty series sampled every `every_ticks` ticks.
    pub fn new(every_ticks: u64) -> Series {
        Series {
            every_ticks,
            rows: Vec::new(),
            ram_pages: 0,
            swap_total_pages: 0,
            prev: [0; NR_DELTAS],
            cgroups: CgroupSeries::default(),
        }
    }

    /// True when a row is due at `tick`.
    #[inline]
    pub fn due(&self, tick: u64) -> bool {
        self.every_ticks > 0 && tick % self.every_ticks == 0
    }

    /// Tick of the last row taken.
    pub fn last_tick(&self) -> Option<u64> {
        self.rows.last().map(|r| r.tick)
    }

    /// The CSV header line (no newline).
    pub fn csv_header() -> String {
        let mut h = CSV_LEVEL_COLUMNS.join(",");
        for (ev, unit) in DELTA_EVENTS.iter().zip(DELTA_UNITS) {
            let _ = write!(h, ",{}_{unit}", ev.name());
        }
        h.push_str(",psi_some_avg10_pct,psi_full_avg10_pct");
        h
    }

    /// The whole series as CSV: the header, then a line per row.
    pub fn to_csv(&self) -> String {
        // About 60 bytes a row.
        let mut s = String::with_capacity(256 + self.rows.len() * 64);
        s.push_str(&Self::csv_header());
        s.push('\n');
        for r in &self.rows {
            let _ = write!(
                s,
                "{},{},{},{},{},{}",
                r.tick,
                r.wall_ms,
                r.interval_ticks,
                r.rss_pages,
                r.swap_used_pages,
                r.free_ram_pages
            );
            for d in r.deltas {
                let _ = write!(s, ",{d}");
            }
            let [some, full] = r.psi_avg10_centi;
            let _ = write!(s, ",{},{}", centi(some), centi(full));
            s.push('\n');
        }
        s
    }

    /// Adds a row at `tick`; `counters` are the current values of
    /// [`DELTA_EVENTS`].
    pub(crate) fn push(
        &mut self,
        tick: u64,
        wall_ms: u64,
        levels: [u64; 3],
        counters: [u64; NR_DELTAS],
    ) {
        let mut deltas = [0; NR_DELTAS];
        for (i, d) in deltas.iter_mut().enumerate() {
            // Counters only grow; saturate rather than wrap if one did not.
            *d = counters[i].saturating_sub(self.prev[i]);
        }
        self.prev = counters;
        let [rss_pages, swap_used_pages, free_ram_pages] = levels;
        // The tick loop can end in a tick whose row was already taken (the
        // last process exits before the tick counter moves on): fold that
        // tick's events into its row, so ticks stay unique and the deltas
        // still sum to the counters.
        if let Some(last) = self.rows.last_mut().filter(|r| r.tick == tick) {
            for (l, d) in last.deltas.iter_mut().zip(deltas) {
                *l += d;
            }
            last.wall_ms = wall_ms;
            last.rss_pages = rss_pages;
            last.swap_used_pages = swap_used_pages;
            last.free_ram_pages = free_ram_pages;
            return;
        }
        let interval_ticks = self.last_tick().map_or(0, |t| tick.saturating_sub(t));
        self.rows.push(Sample {
            tick,
            wall_ms,
            interval_ticks,
            rss_pages,
            swap_used_pages,
            free_ram_pages,
            deltas,
            psi_avg10_centi: [0; 2],
        });
    }
}

/// Takes a row of `m`'s series at its current tick (a second call in the
/// same tick updates that tick's row).
pub(crate) fn sample(m: &mut Machine) {
    let rss: u64 = m
        .procs
        .iter()
        .filter_map(|p| p.mm)
        .map(|id| m.mem.mm(id).rss_anon + m.mem.mm(id).rss_shmem)
        .sum();
    let total = m.swap.total_swap_pages();
    let free_slots = u64::try_from(m.swap.nr_swap_pages()).unwrap_or(0);
    let swap_used = total.saturating_sub(free_slots);
    let counters = DELTA_EVENTS.map(|ev| m.stat.get(ev));
    let wall_ms = m.started.elapsed().as_millis() as u64;
    m.series.ram_pages = m.mem.nr_frames();
    m.series.swap_total_pages = total;
    let free = m.mem.nr_free();
    tracing::debug!(
        tick = m.tick,
        rss_pages = rss,
        swap_used_pages = swap_used,
        free_ram_pages = free,
        "sample"
    );
    m.series
        .push(m.tick, wall_ms, [rss, swap_used, free], counters);
    if let Some(last) = m.series.rows.last_mut() {
        last.psi_avg10_centi = m.psi.avg10_centi(0);
    }
    if !m.mem.memcg.is_empty() {
        sample_cgroups(m);
    }
}

/// The cgroup row of `m`'s series at its current tick.
fn sample_cgroups(m: &mut Machine) {
    let c = &m.mem.memcg;
    if m.series.cgroups.paths.is_empty() {
        m.series.cgroups.paths = (0..c.len())
            .map(|k| c.get(MemcgId(k as u16)).limits.path.clone())
            .collect();
    }
    let own_swap = |id: MemcgId| m.swap.swap_cgroup_usage(id.0);
    let own_uncached = |id: MemcgId| {
        m.swap
            .swap_cgroup_usage(id.0)
            .saturating_sub(m.swap.swap_cgroup_cached(id.0))
    };
    let levels = (0..c.len())
        .map(|k| {
            let id = MemcgId(k as u16);
            CgroupLevels {
                current_pages: c.get(id).usage,
                swap_pages: c.swap_current(id, own_swap),
                swap_v1_pages: c.swap_current(id, own_uncached),
                psi_avg10_centi: m.psi.avg10_centi(k),
            }
        })
        .collect();
    m.series.cgroups.push(m.tick, levels);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_are_differences_and_sum_to_the_last_counters() {
        let mut s = Series::new(10);
        s.push(0, 0, [0, 0, 100], [0; NR_DELTAS]);
        s.push(10, 1, [5, 0, 95], [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        s.push(13, 2, [4, 1, 96], [2, 4, 6, 8, 10, 12, 14, 16, 18]);
        assert_eq!(s.rows[1].deltas, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(s.rows[2].deltas, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(s.rows[2].interval_ticks, 3);
        assert_eq!(s.rows[0].interval_ticks, 0);
        assert_eq!(s.rows[2].delta(VmEvent::PswpOut), Some(2));
        assert_eq!(s.rows[2].delta(VmEvent::OomKill), None);
    }

    #[test]
    fn a_second_row_in_the_same_tick_folds_into_the_first() {
        let mut s = Series::new(10);
        s.push(0, 0, [0, 0, 100], [0; NR_DELTAS]);
        s.push(10, 1, [5, 0, 95], [1; NR_DELTAS]);
        s.push(10, 2, [6, 1, 94], [3; NR_DELTAS]);
        assert_eq!(s.rows.len(), 2);
        assert_eq!(s.rows[1].deltas, [3; NR_DELTAS]);
        assert_eq!(s.rows[1].rss_pages, 6);
        assert_eq!(s.rows[1].interval_ticks, 10);
    }

    #[test]
    fn csv_has_a_header_with_units_and_a_line_per_row() {
        let mut s = Series::new(1);
        s.push(0, 0, [1, 2, 3], [0; NR_DELTAS]);
        s.push(1, 0, [1, 2, 3], [7; NR_DELTAS]);
        let csv = s.to_csv();
        let mut lines = csv.lines();
        let header: Vec<_> = lines.next().unwrap().split(',').collect();
        assert_eq!(header.len(), CSV_LEVEL_COLUMNS.len() + NR_DELTAS + 2);
        assert_eq!(header.last(), Some(&"psi_full_avg10_pct"));
        assert!(header.contains(&"pswpout_pages"));
        assert!(header.contains(&"pgmajfault_faults"));
        assert!(header.contains(&"workingset_refault_anon_pages"));
        s.rows[1].psi_avg10_centi = [1234, 5];
        let csv = s.to_csv();
        let mut lines = csv.lines().skip(1);
        assert_eq!(
            lines.next(),
            Some("0,0,0,1,2,3,0,0,0,0,0,0,0,0,0,0.00,0.00")
        );
        assert_eq!(
            lines.next(),
            Some("1,0,1,1,2,3,7,7,7,7,7,7,7,7,7,12.34,0.05")
        );
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn due_every_interval() {
        let s = Series::new(4);
        assert!(s.due(0) && s.due(8) && !s.due(3));
    }
}
