//! The run report: counters under kernel names, swap I/O figures and
//! latency percentiles, verification, invariant and warning results.

use crate::series::Series;
pub use crate::swap_event::{SwapEvent, SwapEventKind};
use crate::Machine;
use serde::{Deserialize, Serialize};
use swapvm_core::{VmEvent, VmStat};

/// Wall time spent waiting for the disk, in µs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IoWaitUs {
    /// Waiting for reads.
    pub read: u64,
    /// Waiting for writes.
    pub write: u64,
}

/// A latency distribution in microseconds: percentiles, and the
/// histogram's counts in power-of-two buckets.
///
/// The fields after `max_us` were added later; they default when an older
/// report.json is read.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Requests measured.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
    /// Smallest.
    #[serde(default)]
    pub min_us: u64,
    /// Mean.
    #[serde(default)]
    pub mean_us: f64,
    /// 90th percentile.
    #[serde(default)]
    pub p90_us: u64,
    /// 99.99th percentile.
    #[serde(default)]
    pub p9999_us: u64,
    /// Requests per bucket `[lo_us, hi_us)`, bucket bounds powers of two,
    /// from the smallest bucket with a request to the largest (empty
    /// buckets between them included). Counts sum to `count`.
    #[serde(default)]
    pub buckets: Vec<LatencyBucket>,
}

/// One bucket of a [`Latency`] histogram.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LatencyBucket {
    /// Lower bound, inclusive, µs.
    pub lo_us: u64,
    /// Upper bound, exclusive, µs.
    pub hi_us: u64,
    /// Requests with a latency in `[lo_us, hi_us)`.
    pub count: u64,
}

/// One swap device's figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceReport {
    /// On at the end of the run (false: swapped off; its figures are
    /// those of the periods it was on).
    #[serde(default = "default_on")]
    pub on: bool,
    /// Image path.
    pub path: String,
    /// Priority.
    pub priority: i32,
    /// Usable slots.
    pub slots: u64,
    /// Slots in use at the end.
    pub slots_used: u64,
    /// Of `slots_used`, those held by the swap cache alone: swap count 0,
    /// a folio that no process maps (e.g. the read of a fault whose process
    /// was killed while it waited; the kernel's `free_swap_and_cache` skips
    /// a folio locked for I/O). Not a leak: reclaim frees them.
    #[serde(default)]
    pub slots_cache_only: u64,
    /// Reads and writes submitted.
    pub reads: u64,
    /// Writes submitted.
    pub writes: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Failed requests.
    pub errors: u64,
    /// Most requests in flight at once, as the emulation queues them (in
    /// the ring, waiting in the engine for a ring entry, or plugged, and
    /// not yet reaped): may exceed `ring_depth`.
    pub max_in_flight: u64,
    /// Entries of the device's io_uring ring (`queue_depth`, or less if
    /// the kernel clamped it); absent for a device without a ring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_depth: Option<u64>,
    /// This device's swap-in read latency.
    pub read_latency: Latency,
    /// This device's swap-out write latency.
    pub write_latency: Latency,
    /// Clusters on the free, nonfull, frag and full lists at the end.
    pub clusters_free_nonfull_frag_full: [u32; 4],
    /// Clusters discarded (holes punched).
    pub discards: u64,
    /// Rotational (`queue/rotational`, the config's or, for `"auto"`, the
    /// disk's): while one is on, swap-in reads ahead by swap offset.
    #[serde(default)]
    pub rotational: bool,
    /// Swap writes merged into an adjacent one before reaching the disk
    /// (`/proc/diskstats`' writes merged); `writes` counts them all.
    #[serde(default)]
    pub writes_merged: u64,
    /// Slots in use per cluster at the end (header and bad slots count as
    /// in use), for `swapvm inspect --report`.
    pub cluster_usage: Vec<u16>,
    /// The image's UUID, to match a report to its image.
    pub uuid: String,
    /// Slots whose count needed a continuation at the end.
    pub continued_slots: u64,
    /// zram figures, for a zram device.
    pub zram: Option<ZramReport>,
}

/// A zram device's memory figures (zram's `mm_stat`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ZramReport {
    /// Bytes stored, uncompressed.
    pub orig_data_size: u64,
    /// Bytes they take compressed.
    pub compr_data_size: u64,
    /// orig / compr.
    pub compression_ratio: f64,
}

/// Swap allocation figures for one folio order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrderReport {
    /// Folio order.
    pub order: u8,
    /// Folio size in KiB (the mTHP `hugepages-<size>kB` name).
    pub size_kb: u64,
    /// Successful slot allocations.
    pub swpout_alloc: u64,
    /// Failed ones (`swpout_fallback` when the folio is then split).
    pub swpout_alloc_fail: u64,
}

/// A whole run's outcome.
///
/// Serialised, it is report.json; its schema is docs/report-schema.md.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// report.json's layout version, [`SCHEMA_VERSION`] when written by
    /// this swapvm (1 for reports written before the field existed).
    #[serde(default = "schema_v1")]
    pub schema_version: u32,
    /// Config file.
    pub config: String,
    /// Workload name.
    pub workload: String,
    /// Seed.
    pub seed: u64,
    /// swapvm version (the crate version).
    pub version: String,
    /// `git describe --always --dirty --tags` of the tree swapvm was built
    /// from, when git could tell at build time.
    #[serde(default)]
    pub git_describe: Option<String>,
    /// `rustc -V` of the compiler that built swapvm.
    #[serde(default)]
    pub rustc_version: Option<String>,
    /// The machine config as loaded: every field, defaults filled in (the
    /// seed here is the config's; `seed` above is the one the run used).
    #[serde(default)]
    pub config_loaded: serde_json::Value,
    /// The workload file that ran (empty when none did).
    #[serde(default)]
    pub workload_file: String,
    /// That file's contents, as the run read them (empty for a trace
    /// replay or when there is no file), so a run folder says exactly
    /// what ran.
    #[serde(default)]
    pub workload_text: String,
    /// Ticks run.
    pub ticks: u64,
    /// Memory accesses completed.
    pub accesses: u64,
    /// Wall-clock time of the run in milliseconds (measured, not part of
    /// the deterministic counters).
    pub wall_ms: u64,
    /// Of `wall_ms`, the time the tick loop waited for swap reads and for
    /// swap writes that were due before the disk had finished them
    /// (measured; zero on devices that complete at once).
    #[serde(default)]
    pub io_wait_us: IoWaitUs,
    /// The time series, one row every `machine.sample_every_ticks` ticks.
    /// Not part of report.json: the run folder writes it as
    /// `timeseries.csv`.
    #[serde(skip)]
    pub series: Series,
    /// Every vmstat counter, in `VmEvent` declaration order; in
    /// report.json an object `{"name": value, ...}` in that order.
    #[serde(with = "counters")]
    pub vmstat: Vec<(String, u64)>,
    /// The run was stopped early by SIGINT/SIGTERM (its counters cover the
    /// ticks that ran).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// The counters at each `Op::Mark`, in the order they ran (empty for
    /// workload files, whose ops have no marks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<Mark>,
    /// Swap devices.
    pub devices: Vec<DeviceReport>,
    /// Slot allocations per folio order (orders with any activity).
    pub swap_orders: Vec<OrderReport>,
    /// Swap-in readahead mode with every configured device on: `"vma"`
    /// (by address) or `"cluster"` (by swap offset: `vma_ra_enabled` off,
    /// or a rotational device on).
    #[serde(default)]
    pub swap_readahead: String,
    /// Swap-in read latency.
    pub read_latency: Latency,
    /// Swap-out write latency.
    pub write_latency: Latency,
    /// `machine.content`: `"full"` (pages have bytes) or `"none"`
    /// (metadata only).
    #[serde(default = "content_full")]
    pub content: String,
    /// Data verification: `"on"`, or `"off"` on a metadata-only machine,
    /// whose `swapin_verified`, `stamps_verified` and `mismatches` are then
    /// zero because nothing was checked, not because all was well.
    #[serde(default = "verify_on")]
    pub verify: String,
    /// Swap-ins verified against their last write.
    pub swapin_verified: u64,
    /// Loads whose content stamp was verified.
    pub stamps_verified: u64,
    /// Verification failures.
    pub mismatches: u64,
    /// The first failures.
    pub mismatch_details: Vec<String>,
    /// Times the invariant checker ran.
    pub checks_run: u64,
    /// Violations found (empty: every invariant held).
    pub violations: Vec<String>,
    /// Contract warnings fired, all sites.
    pub warnings: u64,
    /// `func: rule (count): first message` per site.
    pub warning_sites: Vec<String>,
    /// Processes killed, with the reason.
    pub killed: Vec<String>,
    /// KSM counters (`/sys/kernel/mm/ksm`).
    #[serde(default)]
    pub ksm: KsmReport,
    /// Processes that ran (forked children included).
    #[serde(default)]
    pub processes: u64,
    /// Forks refused for want of memory (`-ENOMEM`).
    #[serde(default)]
    pub forks_failed: u64,
    /// Faults injected (`[fault]`), all devices, and the machine's own.
    #[serde(default)]
    pub faults: FaultReport,
    /// Per process that entered direct reclaim: its entries and the ticks
    /// it spent stalled (from the failed allocation to the retry).
    #[serde(default)]
    pub direct_reclaim: Vec<DirectReclaimReport>,
    /// What swapoff, swapon and hibernate cycles did, one record each;
    /// `Display` gives the summary's line.
    #[serde(default)]
    pub swap_events: Vec<SwapEvent>,
    /// What the hibernate cycles (`hibernate` phases) did.
    #[serde(default)]
    pub hibernation: HibernationReport,
    /// Per memory cgroup, the root first; empty without `[[cgroup]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroups: Vec<crate::memcg::CgroupReport>,
    /// zswap's parameters and debugfs figures; absent without zswap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zswap: Option<crate::zswap::ZswapReport>,
    /// `/proc/pressure/memory`: the whole machine's memory stalls.
    #[serde(default)]
    pub pressure: crate::psi::PsiReport,
    /// Cgroup interface file writes the workload made (`cgroup_write`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroup_writes: Vec<crate::memcg::CgroupWriteReport>,
    /// The loaded-machine figures of a `machine.timing = "realtime"` run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realtime: Option<crate::realtime::RealtimeReport>,
    /// Host memory of the machine's structures and the peak RSS.
    #[serde(default)]
    pub metadata: crate::footprint::MetadataReport,
}

/// The report.json layout this swapvm writes: 2 has `vmstat` as an
/// object and `swap_events` as records (1 had pairs and text lines).
pub const SCHEMA_VERSION: u32 = 2;

fn schema_v1() -> u32 {
    1
}

/// Serde for a counter list: written as a JSON object in list order, read
/// back in the text's order (an object, or the `[name, value]` pairs of
/// schema 1).
mod counters {
    use serde::de::{MapAccess, SeqAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(v: &[(String, u64)], s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(v.len()))?;
        for (k, x) in v {
            m.serialize_entry(k, x)?;
        }
        m.end()
    }

    struct Counters;

    impl<'de> Visitor<'de> for Counters {
        type Value = Vec<(String, u64)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of counters, or a list of [name, value] pairs")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
            let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0));
            while let Some(e) = a.next_entry()? {
                v.push(e);
            }
            Ok(v)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
            let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0));
            while let Some(e) = a.next_element()? {
                v.push(e);
            }
            Ok(v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, u64)>, D::Error> {
        d.deserialize_any(Counters)
    }
}

/// The tag of an OOM kill in [`Report::killed`].
pub const OOM_KILL: &str = "oom-kill";

/// How a run ended ([`Report::outcome`]); `swapvm run` exits with
/// [`Outcome::exit_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything verified, every invariant held: exit code 0.
    Pass,
    /// A check failed or a process was killed other than by the OOM
    /// killer: exit code 1.
    Failed,
    /// Checks passed, but the OOM killer killed a process (or no task
    /// could make progress): exit code 3.
    OomKilled,
    /// Checks passed up to a SIGINT/SIGTERM that stopped the run early:
    /// exit code 130, as a shell reports an interrupted command.
    Interrupted,
}

impl Outcome {
    /// The process exit code for this outcome (2 is bad input).
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Pass => 0,
            Outcome::Failed => 1,
            Outcome::OomKilled => 3,
            Outcome::Interrupted => 130,
        }
    }
    /// The summary's `result:` word.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Failed => "FAIL",
            Outcome::OomKilled => "OOM-KILLED",
            Outcome::Interrupted => "INTERRUPTED",
        }
    }
}

/// The hibernate cycles of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HibernationReport {
    /// Cycles run (completed or failed).
    pub cycles: u64,
    /// Cycles that failed: too few free slots, or an image I/O error.
    pub failed: u64,
    /// Image pages written by completed cycles.
    pub pages_written: u64,
    /// Image pages read back equal to what was written.
    pub pages_verified: u64,
    /// Image pages read back different from what was written.
    pub mismatches: u64,
    /// Ticks the tasks spent frozen, all cycles.
    pub ticks_frozen: u64,
}

fn content_full() -> String {
    "full".into()
}
fn verify_on() -> String {
    "on".into()
}

/// One process's direct-reclaim stalls.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DirectReclaimReport {
    /// Its pid.
    pub pid: u32,
    /// Its name.
    pub name: String,
    /// Times its allocation failed below min and it entered direct
    /// reclaim (its share of `allocstall_normal`).
    pub allocstall: u64,
    /// Ticks it waited for reclaim to free memory.
    pub stall_ticks: u64,
}

/// KSM counters at the end of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KsmReport {
    /// `pages_shared`.
    pub pages_shared: u64,
    /// `pages_sharing`.
    pub pages_sharing: u64,
    /// `pages_unshared`.
    pub pages_unshared: u64,
    /// `full_scans`.
    pub full_scans: u64,
    /// Pages scanned.
    pub pages_scanned: u64,
    /// Pages merged into KSM folios.
    pub pages_merged: u64,
}

/// What fault injection did in a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FaultReport {
    /// I/O faults injected, all devices.
    pub io: swapvm_io::FaultCounts,
    /// Processes killed in the middle of a fault.
    pub kills_mid_fault: u64,
    /// Swap-in reads whose bytes differed from their last write.
    pub swapin_mismatches: u64,
    /// Loads that saw content other than the process's last store.
    pub stamp_mismatches: u64,
    /// Swapoffs started by `fault.swapoff_at_tick` (their outcome is in
    /// `swap_events`).
    #[serde(default)]
    pub swapoffs: u64,
    /// Slots of `fault.read_error_slots` that no read reached on any
    /// device: they injected nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_error_slots_unreached: Vec<u64>,
    /// Slots of `fault.write_error_slots` that no write reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_error_slots_unreached: Vec<u64>,
}

impl Report {
    /// The value of counter `ev`.
    pub fn counter(&self, ev: VmEvent) -> u64 {
        self.vmstat
            .iter()
            .find(|(n, _)| n == ev.name())
            .map_or(0, |(_, v)| *v)
    }
    /// True when data verified, invariants held, no warning fired and no
    /// process was killed.
    pub fn passed(&self) -> bool {
        self.outcome() == Outcome::Pass
    }
    /// How the run ended: an OOM kill is a workload outcome (the machine
    /// was too small for it), not an emulator failure; a failed check, or
    /// a process killed for any other reason (SIGBUS after a read error,
    /// an injected SIGKILL), is a failure.
    pub fn outcome(&self) -> Outcome {
        let checks = self.mismatches == 0
            && self.hibernation.mismatches == 0
            && self.violations.is_empty()
            && self.warnings == 0;
        let oom = |k: &String| k.contains(OOM_KILL);
        if !checks || !self.killed.iter().all(oom) {
            Outcome::Failed
        } else if self.interrupted {
            Outcome::Interrupted
        } else if self.killed.is_empty() {
            Outcome::Pass
        } else {
            Outcome::OomKilled
        }
    }
    /// Swap I/O throughput over the run's wall time, MB/s (10^6 bytes),
    /// reads and writes together.
    pub fn swap_mb_per_s(&self) -> f64 {
        let bytes: u64 = self
            .devices
            .iter()
            .map(|d| d.bytes_read + d.bytes_written)
            .sum();
        bytes as f64 / 1e6 / (self.wall_ms.max(1) as f64 / 1e3)
    }
    /// Everything of the report that the emulation decides, as `name value`
    /// lines in `/proc/vmstat` style: the counters, then the run's outcome
    /// and each device's figures. Measured figures (latencies, wall and
    /// wait times, in-flight peaks), paths, UUIDs and verification results
    /// (which a metadata-only run does not compute) are left out, so two
    /// runs that made the same decisions give the same lines, whatever
    /// their content mode or disk.
    pub fn decided(&self) -> Vec<String> {
        // zswap's counters cannot move without zswap: such a run's figures
        // stay as they were before zswap existed.
        let mut v: Vec<String> = self
            .vmstat
            .iter()
            .filter(|(n, _)| self.zswap.is_some() || !crate::zswap::is_zswap_counter(n))
            .map(|(n, x)| format!("{n} {x}"))
            .collect();
        v.push(format!("ticks {}", self.ticks));
        v.push(format!("accesses {}", self.accesses));
        v.push(format!("processes {}", self.processes));
        v.push(format!("forks_failed {}", self.forks_failed));
        v.push(format!("killed {:?}", self.killed));
        v.push(format!("ksm {:?}", self.ksm));
        v.push(format!("swap_orders {:?}", self.swap_orders));
        v.push(format!("swap_readahead {}", self.swap_readahead));
        let events: Vec<String> = self.swap_events.iter().map(ToString::to_string).collect();
        v.push(format!("swap_events {events:?}"));
        v.push(format!("faults.io {:?}", self.faults.io));
        v.push(format!("kills_mid_fault {}", self.faults.kills_mid_fault));
        v.push(format!("direct_reclaim {:?}", self.direct_reclaim));
        v.push(format!("violations {:?}", self.violations));
        v.push(format!("warnings {:?}", self.warning_sites));
        v.push(format!("checks_run {}", self.checks_run));
        v.push(format!("hibernation {:?}", self.hibernation));
        if let Some(z) = &self.zswap {
            v.push(format!("zswap {z:?}"));
        }
        for c in &self.cgroups {
            v.push(format!(
                "cgroup {} current {} peak {} swap {} swap_peak {} events {:?} swap_max_events {} throttled {}",
                c.path, c.memory_current, c.memory_peak, c.swap_current, c.swap_peak, c.events,
                c.swap_events_max, c.high_throttled_ticks
            ));
            v.push(format!("cgroup {} stat {:?}", c.path, c.stat));
            v.push(format!("cgroup {} pressure {:?}", c.path, c.pressure));
        }
        for w in &self.cgroup_writes {
            v.push(format!("cgroup_write {w:?}"));
        }
        for (i, d) in self.devices.iter().enumerate() {
            v.push(format!(
                "swap[{i}] slots {} used {} reads {} writes {} bytes_read {} bytes_written {} errors {} continued {} rotational {}",
                d.slots, d.slots_used, d.reads, d.writes, d.bytes_read, d.bytes_written, d.errors,
                d.continued_slots, d.rotational
            ));
            v.push(format!(
                "swap[{i}] clusters free/nonfull/frag/full {:?} usage {}",
                d.clusters_free_nonfull_frag_full,
                run_lengths(&d.cluster_usage)
            ));
        }
        v
    }
    /// The counters only, as `name value` lines (the `/proc/vmstat` format),
    /// for comparing runs.
    pub fn vmstat_text(&self) -> String {
        self.vmstat
            .iter()
            .map(|(n, v)| format!("{n} {v}\n"))
            .collect()
    }
}

/// `v` as `value*count` runs (`512*30 17 0*97`): per-cluster usage stays
/// one short line even on a large device.
fn run_lengths(v: &[u16]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let n = v[i..].iter().take_while(|&&x| x == v[i]).count();
        out.push(if n == 1 {
            v[i].to_string()
        } else {
            format!("{}*{n}", v[i])
        });
        i += n;
    }
    out.join(" ")
}

pub(crate) fn latency(h: &hdrhistogram::Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        count: h.len(),
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        min_us: h.min(),
        mean_us: h.mean(),
        p90_us: h.value_at_quantile(0.9),
        p9999_us: h.value_at_quantile(0.9999),
        buckets: log2_buckets(h),
    }
}

/// The histogram's counts in buckets `[2^k, 2^(k+1))`.
///
/// Exact, not interpolated: hdrhistogram's equivalence ranges never cross
/// a power of two (its buckets are powers of two, split into linear
/// sub-buckets), so every recorded range falls in one bucket.
fn log2_buckets(h: &hdrhistogram::Histogram<u64>) -> Vec<LatencyBucket> {
    let mut counts = [0u64; 64];
    for v in h.iter_recorded() {
        let x = v.value_iterated_to().max(1);
        counts[x.ilog2() as usize] += v.count_at_value();
    }
    let Some(first) = counts.iter().position(|&c| c > 0) else {
        return Vec::new();
    };
    let last = counts.iter().rposition(|&c| c > 0).unwrap_or(first);
    (first..=last)
        .map(|k| LatencyBucket {
            lo_us: 1 << k,
            hi_us: 1u64.checked_shl(k as u32 + 1).unwrap_or(u64::MAX),
            count: counts[k],
        })
        .collect()
}

/// The workload file that ran: `--workload`, else the config's.
fn workload_file(m: &Machine) -> String {
    let file = m.opts.workload.clone();
    file.or_else(|| m.cfg.workload.as_deref().map(|p| m.cfg.resolve(p)))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn default_on() -> bool {
    true
}

/// Every counter at one `Op::Mark`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mark {
    /// The mark's label.
    pub id: u32,
    /// The process that ran it.
    pub pid: u32,
    /// The tick it ran in.
    pub tick: u64,
    /// Every vmstat counter, in report order (an object in report.json).
    #[serde(with = "counters")]
    pub vmstat: Vec<(String, u64)>,
}

impl Mark {
    pub(crate) fn now(id: u32, pid: u32, tick: u64, stat: &VmStat) -> Mark {
        let vmstat = stat
            .snapshot()
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v))
            .collect();
        Mark {
            id,
            pid,
            tick,
            vmstat,
        }
    }

    /// Counter `name` (0 if there is none).
    pub fn get(&self, name: &str) -> u64 {
        self.vmstat
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |&(_, v)| v)
    }
}

/// `slot 5` or `slots 5, 0x20` (as the config may write them: hex from
/// 0x100 up).
fn slot_list(v: &[u64]) -> String {
    let each: Vec<String> = v
        .iter()
        .map(|&b| {
            if b >= 0x100 {
                format!("{b:#x}")
            } else {
                b.to_string()
            }
        })
        .collect();
    format!(
        "slot{} {}",
        if v.len() == 1 { "" } else { "s" },
        each.join(", ")
    )
}

/// The report of the device of swap type `ty` while it is on.
pub(crate) fn device_report(m: &mut Machine, ty: swapvm_core::SwapType) -> Option<DeviceReport> {
    let zram = m.zram_stats(ty);
    let (read_latency, write_latency) = m
        .dev_latency_us
        .get(ty.0 as usize)
        .map_or((Latency::default(), Latency::default()), |h| {
            (latency(&h[0]), latency(&h[1]))
        });
    let d = m.swap.device_mut(ty)?;
    let lists = d.clusters().list_counts();
    let io = m.swap.io_stats(ty);
    let d = m.swap.device(ty)?;
    let slots_cache_only = (1..d.max())
        .filter(|&off| {
            let s = d.slot(swapvm_core::SwapOffset(off));
            s.count == 0 && matches!(s.binding, swapvm_swap::SlotBinding::Folio(_))
        })
        .count() as u64;
    Some(DeviceReport {
        slots_cache_only,
        path: d.path.display().to_string(),
        on: true,
        priority: d.priority,
        slots: d.pages,
        slots_used: d.inuse_pages,
        reads: io.reads,
        writes: io.writes,
        bytes_read: io.bytes_read,
        bytes_written: io.bytes_written,
        errors: io.errors,
        max_in_flight: io.max_in_flight,
        ring_depth: m.swap.ring_depth(ty).map(|d| d as u64),
        read_latency,
        write_latency,
        clusters_free_nonfull_frag_full: lists,
        discards: d.discards,
        rotational: d.rotational,
        writes_merged: io.writes_merged,
        cluster_usage: (0..d.clusters_ref().len())
            .map(|ci| d.clusters_ref().info(ci).count)
            .collect(),
        uuid: d.header.uuid_string(),
        continued_slots: d.continued_slots() as u64,
        zram,
    })
}

impl DeviceReport {
    /// This report with the I/O of `earlier` on-periods of the same
    /// `[[swap]]` entry (before a swapoff) added in.
    pub(crate) fn with_earlier(mut self, earlier: &DeviceReport) -> DeviceReport {
        self.reads += earlier.reads;
        self.writes += earlier.writes;
        self.bytes_read += earlier.bytes_read;
        self.bytes_written += earlier.bytes_written;
        self.errors += earlier.errors;
        self.writes_merged += earlier.writes_merged;
        self.discards += earlier.discards;
        self.max_in_flight = self.max_in_flight.max(earlier.max_in_flight);
        self
    }
}

/// Every configured device, in config order: its figures summed over all
/// its swapon periods, the ones swapped off at the end marked `on: false`.
fn devices(m: &mut Machine) -> Vec<DeviceReport> {
    (0..m.swap_types.len())
        .filter_map(|i| {
            let now = m.swap_types[i].and_then(|ty| device_report(m, ty));
            let earlier = m.retired.get(i).and_then(Option::as_ref);
            match (now, earlier) {
                (Some(n), Some((e, _))) => Some(n.with_earlier(e)),
                (Some(n), None) => Some(n),
                (None, Some((e, _))) => Some(e.clone()),
                (None, None) => None,
            }
        })
        .collect()
}

pub(crate) fn build(m: &mut Machine) -> Report {
    let devices = devices(m);
    let swap_orders = m
        .swap
        .order_stats()
        .iter()
        .enumerate()
        .filter(|(_, s)| s.alloc + s.alloc_fail > 0)
        .map(|(o, s)| OrderReport {
            order: o as u8,
            size_kb: 4 << o,
            swpout_alloc: s.alloc,
            swpout_alloc_fail: s.alloc_fail,
        })
        .collect();
    let mut io_faults = swapvm_io::FaultCounts::default();
    for &ty in m.swap.device_types() {
        io_faults.add(m.swap.fault_counts(ty));
    }
    // Faults injected on devices before their swapoff.
    for (_, f) in m.retired.iter().flatten() {
        io_faults.add(*f);
    }
    let mut hit = m.retired_blocks_hit.clone();
    for &ty in m.swap.device_types() {
        hit.add(&m.swap.fault_blocks_hit(ty));
    }
    let unreached = |listed: &[u64], hit: &std::collections::BTreeSet<u64>| {
        let mut v: Vec<u64> = listed
            .iter()
            .copied()
            .filter(|b| !hit.contains(b))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let read_error_slots_unreached = unreached(&m.cfg.fault.read_error_slots, &hit.read);
    let write_error_slots_unreached = unreached(&m.cfg.fault.write_error_slots, &hit.write);
    for (key, v) in [
        ("read_error_slots", &read_error_slots_unreached),
        ("write_error_slots", &write_error_slots_unreached),
    ] {
        if !v.is_empty() {
            tracing::warn!(
                "{}: fault.{key}: {} never reached by a {} on any device, so {} injected nothing",
                m.cfg.source.display(),
                slot_list(v),
                if key.starts_with("read") {
                    "read"
                } else {
                    "write"
                },
                if v.len() == 1 { "it" } else { "they" }
            );
        }
    }
    let faults = FaultReport {
        read_error_slots_unreached,
        write_error_slots_unreached,
        io: io_faults,
        kills_mid_fault: m.injector.kills,
        swapin_mismatches: m.verify.swapin_mismatches,
        stamp_mismatches: m.verify.stamp_mismatches,
        swapoffs: m.faults_swapoff,
    };
    let warning_sites = m
        .warn
        .records()
        .into_iter()
        .map(|r| {
            format!(
                "{}: {} ({}): {}",
                r.site.func, r.site.rule, r.count, r.first
            )
        })
        .collect();
    let cgroups = m.cgroup_reports();
    Report {
        cgroups,
        zswap: crate::zswap::report(&m.mem, &m.swap),
        pressure: m.pressure(0),
        cgroup_writes: m.cgroup_writes.clone(),
        realtime: None,
        metadata: crate::footprint::MetadataReport::new(&m.mem.footprint(), &m.swap.footprint()),
        schema_version: SCHEMA_VERSION,
        config: m.cfg.source.display().to_string(),
        workload: m.workload.name.clone(),
        seed: m.seed,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        git_describe: option_env!("SWAPVM_GIT_DESCRIBE").map(str::to_owned),
        rustc_version: option_env!("SWAPVM_RUSTC_VERSION").map(str::to_owned),
        config_loaded: serde_json::to_value(&m.cfg).unwrap_or_else(|e| {
            // Only a path that is not UTF-8 can fail here.
            tracing::warn!("config not recorded in the report: {e}");
            serde_json::Value::Null
        }),
        workload_file: workload_file(m),
        workload_text: m.workload_text.clone(),
        ticks: m.tick,
        accesses: m.accesses,
        wall_ms: m.started.elapsed().as_millis() as u64,
        io_wait_us: {
            let (r, w) = m.swap.io_wait_ns();
            IoWaitUs {
                read: r / 1_000,
                write: w / 1_000,
            }
        },
        series: std::mem::take(&mut m.series),
        vmstat: m
            .stat
            .snapshot()
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v))
            .collect(),
        marks: std::mem::take(&mut m.marks),
        interrupted: m.interrupted,
        devices,
        swap_orders,
        swap_readahead: m.swap_readahead.to_owned(),
        read_latency: latency(&m.latency_us[0]),
        write_latency: latency(&m.latency_us[1]),
        content: m.cfg.machine.content.name().to_owned(),
        verify: if m.verify.enabled() { "on" } else { "off" }.to_owned(),
        swapin_verified: m.verify.swapin_verified,
        stamps_verified: m.verify.stamps_verified,
        mismatches: m.verify.mismatches,
        mismatch_details: m
            .verify
            .first
            .iter()
            .map(|x| format!("tick {}: {}", x.tick, x.what))
            .collect(),
        checks_run: m.checks_run,
        violations: m.violations.clone(),
        warnings: m.warn.total(),
        warning_sites,
        killed: m
            .procs
            .iter()
            .filter_map(|p| {
                p.killed
                    .as_ref()
                    .map(|k| format!("pid {} {}: {k}", p.pid, p.name))
            })
            .collect(),
        ksm: {
            let k = m.mem.ksm.stats();
            KsmReport {
                pages_shared: k.pages_shared,
                pages_sharing: k.pages_sharing,
                pages_unshared: k.pages_unshared,
                full_scans: k.full_scans,
                pages_scanned: k.pages_scanned,
                pages_merged: k.pages_merged,
            }
        },
        processes: m.procs.len() as u64,
        forks_failed: m.forks_failed,
        faults,
        direct_reclaim: m
            .procs
            .iter()
            .filter(|p| p.reclaim_stall.allocstall > 0)
            .map(|p| DirectReclaimReport {
                pid: p.pid,
                name: p.name.clone(),
                allocstall: p.reclaim_stall.allocstall,
                stall_ticks: p.reclaim_stall.ticks,
            })
            .collect(),
        swap_events: m.swap_events.clone(),
        hibernation: m.hib_report.clone(),
    }
}
