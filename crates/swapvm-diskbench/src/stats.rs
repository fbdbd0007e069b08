//! Counting completions: operations, bytes, errors and latency histograms
//! (hdrhistogram, 3 significant digits), per direction and in total, and
//! the bandwidth log: the same counts cut into intervals of the run.

use std::io;
use std::time::Duration;

use hdrhistogram::Histogram;

use swapvm_io::IoKind;

/// Highest latency the histograms resolve: one hour, in nanoseconds. Longer
/// ones are clamped to it.
const LATENCY_NS_MAX: u64 = 3_600_000_000_000;

/// The percentiles reported, fio's default `percentile_list`.
pub const PERCENTILES: [f64; 17] = [
    1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95,
    99.99,
];

/// Completion latency of one direction in nanoseconds, as fio's `lat_ns`
/// object: every field 0 when nothing completed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LatencyNs {
    /// Lowest.
    pub min: u64,
    /// Highest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stddev: f64,
    /// Samples (fio's `N`).
    #[serde(rename = "N")]
    pub n: u64,
    /// Each of [`PERCENTILES`] with its latency, keyed as fio keys them
    /// (`"99.900000"`), in increasing order.
    pub percentile: Percentiles,
}

impl Default for LatencyNs {
    fn default() -> LatencyNs {
        LatencyNs {
            min: 0,
            max: 0,
            mean: 0.0,
            stddev: 0.0,
            n: 0,
            percentile: Percentiles(PERCENTILES.iter().map(|&p| (p, 0)).collect()),
        }
    }
}

/// `(percentile, latency_ns)` pairs, serialised as a JSON object in this
/// order (a map keyed by strings would sort `"10.000000"` before `"5..."`).
#[derive(Debug, Clone, PartialEq)]
pub struct Percentiles(pub Vec<(f64, u64)>);

impl Percentiles {
    /// The latency at percentile `p`, if `p` is one of [`PERCENTILES`].
    pub fn get(&self, p: f64) -> Option<u64> {
        self.0.iter().find(|(q, _)| *q == p).map(|&(_, ns)| ns)
    }
}

impl serde::Serialize for Percentiles {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (p, ns) in &self.0 {
            m.serialize_entry(&format!("{p:.6}"), ns)?;
        }
        m.end()
    }
}

/// Throughput and latency of one direction (or of all requests). The
/// `latency_us_*` fields are swapvm's; `io_bytes`, `bw_bytes`, `bw`,
/// `runtime` and `lat_ns` carry fio's names and units.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DirStats {
    /// Requests completed successfully.
    pub ops: u64,
    /// Bytes they moved.
    pub bytes: u64,
    /// Requests per second.
    pub iops: f64,
    /// Decimal megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Bytes moved (fio's `io_bytes`; the same as `bytes`).
    pub io_bytes: u64,
    /// Bytes per second (fio's `bw_bytes`).
    pub bw_bytes: f64,
    /// KiB per second (fio's `bw`).
    pub bw: f64,
    /// Milliseconds of the run (fio's `runtime`), 0 when nothing completed.
    pub runtime: u64,
    /// Mean latency, microseconds.
    pub latency_us_mean: f64,
    /// Median latency, microseconds.
    pub latency_us_p50: f64,
    /// 90th percentile latency, microseconds.
    pub latency_us_p90: f64,
    /// 99th percentile latency, microseconds.
    pub latency_us_p99: f64,
    /// 99.9th percentile latency, microseconds.
    pub latency_us_p999: f64,
    /// 99.99th percentile latency, microseconds.
    pub latency_us_p9999: f64,
    /// Highest latency, microseconds.
    pub latency_us_max: f64,
    /// The full latency distribution, nanoseconds.
    pub lat_ns: LatencyNs,
}

/// The quantile of percentile `p`, a hair low: `99.9 / 100.0` is
/// 0.9990000000000001, which would make the 99.9th percentile of 1000
/// samples the 1000th instead of the 999th. 1e-12 moves a rank only past
/// 10^12 samples.
fn quantile(p: f64) -> f64 {
    (p / 100.0 - 1e-12).clamp(0.0, 1.0)
}

/// One direction's running counts.
struct Direction {
    ops: u64,
    bytes: u64,
    latency_ns: Histogram<u64>,
}

impl Direction {
    fn new() -> Direction {
        Direction {
            ops: 0,
            bytes: 0,
            // Bounds are constants that satisfy the constructor's rules
            // (low >= 1, high >= 2 * low, 0..=5 significant digits).
            latency_ns: Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3)
                .unwrap_or_else(|e| unreachable!("histogram bounds: {e}")),
        }
    }

    fn record(&mut self, bytes: usize, latency_ns: u64) {
        self.ops += 1;
        self.bytes += bytes as u64;
        self.latency_ns
            .saturating_record(latency_ns.clamp(1, LATENCY_NS_MAX));
    }

    fn latency(&self) -> LatencyNs {
        let h = &self.latency_ns;
        LatencyNs {
            min: h.min(),
            max: h.max(),
            mean: h.mean(),
            stddev: h.stdev(),
            n: h.len(),
            percentile: Percentiles(
                PERCENTILES
                    .iter()
                    .map(|&p| (p, h.value_at_quantile(quantile(p))))
                    .collect(),
            ),
        }
    }

    fn stats(&self, elapsed: Duration) -> DirStats {
        if self.ops == 0 {
            return DirStats::default();
        }
        let secs = elapsed.as_secs_f64().max(1e-9);
        let lat = self.latency();
        let us = |p: f64| lat.percentile.get(p).unwrap_or(0) as f64 / 1e3;
        let bw_bytes = self.bytes as f64 / secs;
        DirStats {
            ops: self.ops,
            bytes: self.bytes,
            iops: self.ops as f64 / secs,
            mb_per_s: bw_bytes / 1e6,
            io_bytes: self.bytes,
            bw_bytes,
            bw: bw_bytes / 1024.0,
            runtime: elapsed.as_millis() as u64,
            latency_us_mean: lat.mean / 1e3,
            latency_us_p50: us(50.0),
            latency_us_p90: us(90.0),
            latency_us_p99: us(99.0),
            latency_us_p999: us(99.9),
            latency_us_p9999: us(99.99),
            latency_us_max: lat.max as f64 / 1e3,
            lat_ns: lat,
        }
    }
}

/// One interval of the bandwidth log (fio's `--write_bw_log`, with reads
/// and writes on one row).
#[derive(Debug, Clone, PartialEq)]
pub struct BwSample {
    /// End of the interval, since the first request.
    pub end: Duration,
    /// Its length: the interval asked for, or longer when no completion
    /// came in time to close it (rates are over this length); the last
    /// one may be shorter.
    pub length: Duration,
    /// Reads completed in it.
    pub read_ops: u64,
    /// Bytes they moved.
    pub read_bytes: u64,
    /// Writes completed in it.
    pub write_ops: u64,
    /// Bytes they moved.
    pub write_bytes: u64,
}

/// The header line of [`write_bw_log`].
pub const BW_LOG_HEADER: &str = "end_ms,interval_ms,read_ops,read_bytes,read_iops,read_kib_per_s,\
                                 write_ops,write_bytes,write_iops,write_kib_per_s";

/// Writes `samples` as CSV, one row per interval under [`BW_LOG_HEADER`];
/// rates are per second of the interval, bandwidth in KiB/s as fio's.
///
/// # Errors
/// What `out` returns.
pub fn write_bw_log(samples: &[BwSample], out: &mut dyn io::Write) -> io::Result<()> {
    writeln!(out, "{BW_LOG_HEADER}")?;
    for s in samples {
        let secs = s.length.as_secs_f64().max(1e-9);
        writeln!(
            out,
            "{:.3},{:.3},{},{},{:.1},{:.1},{},{},{:.1},{:.1}",
            s.end.as_secs_f64() * 1e3,
            s.length.as_secs_f64() * 1e3,
            s.read_ops,
            s.read_bytes,
            s.read_ops as f64 / secs,
            s.read_bytes as f64 / 1024.0 / secs,
            s.write_ops,
            s.write_bytes,
            s.write_ops as f64 / secs,
            s.write_bytes as f64 / 1024.0 / secs,
        )?;
    }
    Ok(())
}

/// The bandwidth log being cut: totals at the last cut, and the next
/// boundary (a multiple of the interval).
struct BwLog {
    interval: Duration,
    next: Duration,
    last_end: Duration,
    /// (read ops, read bytes, write ops, write bytes) at the last cut.
    last: [u64; 4],
    samples: Vec<BwSample>,
}

/// Counts of a run so far.
pub(crate) struct Recorder {
    read: Direction,
    write: Direction,
    total: Direction,
    log: Option<BwLog>,
    /// Requests that failed or moved fewer bytes than asked.
    pub errors: u64,
    /// The first of them, for the report.
    pub first_error: Option<io::Error>,
}

impl Recorder {
    /// A recorder that also cuts a bandwidth log every `bw_interval`.
    pub fn new(bw_interval: Option<Duration>) -> Recorder {
        Recorder {
            read: Direction::new(),
            write: Direction::new(),
            total: Direction::new(),
            log: bw_interval.map(|interval| BwLog {
                interval,
                next: interval,
                last_end: Duration::ZERO,
                last: [0; 4],
                samples: Vec::new(),
            }),
            errors: 0,
            first_error: None,
        }
    }

    /// Records one completion of a request of `asked` bytes.
    pub fn record(
        &mut self,
        kind: IoKind,
        asked: usize,
        result: io::Result<usize>,
        latency_ns: u64,
    ) {
        let error = match result {
            Ok(n) if n == asked => {
                let dir = match kind {
                    IoKind::Read => &mut self.read,
                    IoKind::Write => &mut self.write,
                };
                dir.record(n, latency_ns);
                self.total.record(n, latency_ns);
                return;
            }
            Ok(n) => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("short transfer: {n} of {asked} bytes"),
            ),
            Err(e) => e,
        };
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }

    /// Closes the bandwidth log's interval if `elapsed` (since the first
    /// request) has reached its end. Called after each batch of
    /// completions; cheap without a log.
    pub fn tick(&mut self, elapsed: Duration) {
        if self.log.as_ref().is_some_and(|l| elapsed >= l.next) {
            self.cut(elapsed);
        }
    }

    /// Closes the last, partial interval of the log at the end of the run,
    /// unless the run ended exactly on a cut. A tail shorter than half an
    /// interval (the drain of the last requests) joins the interval before
    /// it, so that its few completions do not show as a spike in rate.
    pub fn finish(&mut self, elapsed: Duration) {
        let Some(log) = self.log.as_ref() else { return };
        if elapsed <= log.last_end {
            return;
        }
        let short = elapsed - log.last_end < log.interval / 2;
        if short && !log.samples.is_empty() {
            let d = self.deltas();
            if let Some(log) = self.log.as_mut() {
                if let Some(s) = log.samples.last_mut() {
                    s.read_ops += d[0];
                    s.read_bytes += d[1];
                    s.write_ops += d[2];
                    s.write_bytes += d[3];
                    s.length += elapsed - log.last_end;
                    s.end = elapsed;
                }
                log.last_end = elapsed;
            }
        } else {
            self.cut(elapsed);
        }
    }

    /// (read ops, read bytes, write ops, write bytes) now.
    fn totals(&self) -> [u64; 4] {
        [
            self.read.ops,
            self.read.bytes,
            self.write.ops,
            self.write.bytes,
        ]
    }

    /// [`Self::totals`] since the last cut.
    fn deltas(&self) -> [u64; 4] {
        let last = self.log.as_ref().map_or([0; 4], |l| l.last);
        let now = self.totals();
        std::array::from_fn(|i| now[i] - last[i])
    }

    fn cut(&mut self, elapsed: Duration) {
        let now = self.totals();
        let d = self.deltas();
        let Some(log) = self.log.as_mut() else { return };
        log.samples.push(BwSample {
            end: elapsed,
            length: elapsed - log.last_end,
            read_ops: d[0],
            read_bytes: d[1],
            write_ops: d[2],
            write_bytes: d[3],
        });
        log.last = now;
        log.last_end = elapsed;
        while log.next <= elapsed {
            log.next += log.interval;
        }
    }

    /// The bandwidth log so far (empty without one).
    pub fn take_log(&mut self) -> Vec<BwSample> {
        self.log
            .as_mut()
            .map(|l| std::mem::take(&mut l.samples))
            .unwrap_or_default()
    }

    /// Successful requests so far.
    pub fn ops(&self) -> u64 {
        self.total.ops
    }

    /// Bytes moved by successful requests so far.
    pub fn bytes(&self) -> u64 {
        self.total.bytes
    }

    /// (read, write, total) figures over `elapsed`.
    pub fn stats(&self, elapsed: Duration) -> (DirStats, DirStats, DirStats) {
        (
            self.read.stats(elapsed),
            self.write.stats(elapsed),
            self.total.stats(elapsed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentiles() {
        let mut r = Recorder::new(None);
        for i in 1..=1000u64 {
            r.record(IoKind::Read, 4096, Ok(4096), i * 1000);
        }
        r.record(IoKind::Write, 8192, Ok(8192), 5_000);
        r.record(IoKind::Write, 8192, Ok(4096), 5_000);
        r.record(IoKind::Read, 4096, Err(io::Error::from_raw_os_error(5)), 1);
        let (read, write, total) = r.stats(Duration::from_secs(2));
        assert_eq!((read.ops, read.bytes), (1000, 4096 * 1000));
        assert_eq!(read.iops, 500.0);
        assert!((read.latency_us_p50 - 500.0).abs() < 1.0, "{read:?}");
        assert!((read.latency_us_p90 - 900.0).abs() < 1.0, "{read:?}");
        assert!((read.latency_us_p99 - 990.0).abs() < 1.0, "{read:?}");
        assert!((read.latency_us_p999 - 999.0).abs() < 1.0, "{read:?}");
        assert!((read.latency_us_p9999 - 1000.0).abs() < 1.0, "{read:?}");
        assert!((read.latency_us_max - 1000.0).abs() < 1.0, "{read:?}");
        assert_eq!((write.ops, write.bytes), (1, 8192));
        assert_eq!(total.ops, 1001);
        assert_eq!(r.errors, 2);
        assert!(r.first_error.unwrap().to_string().contains("short"));
    }

    /// fio's units: bw in KiB/s, runtime in ms, lat_ns with min, mean,
    /// stddev and every percentile of the default list.
    #[test]
    fn fio_fields() {
        let mut r = Recorder::new(None);
        for i in 1..=100u64 {
            r.record(IoKind::Write, 4096, Ok(4096), i * 1000);
        }
        let w = r.stats(Duration::from_millis(500)).1;
        assert_eq!(w.io_bytes, 409_600);
        assert_eq!(w.runtime, 500);
        assert!((w.bw - 800.0).abs() < 1e-9 && (w.bw_bytes - 819_200.0).abs() < 1e-6);
        let l = &w.lat_ns;
        assert_eq!((l.n, l.min), (100, 1000));
        assert!((l.mean - 50_500.0).abs() < 100.0, "{l:?}");
        assert!((l.stddev - 28_866.0).abs() < 100.0, "{l:?}");
        assert_eq!(l.percentile.0.len(), PERCENTILES.len());
        // The histogram keeps 3 significant digits.
        let near = |p: f64, ns: u64| {
            let got = l.percentile.get(p).unwrap() as f64;
            assert!((got / ns as f64 - 1.0).abs() < 1e-3, "p{p}: {got} vs {ns}");
        };
        near(1.0, 1000);
        near(5.0, 5000);
        near(90.0, 90_000);
        near(99.99, 100_000);
        let j = serde_json::to_string(&l.percentile).unwrap();
        assert!(j.starts_with("{\"1.000000\":1000,\"5.000000\":"), "{j}");
        assert!(j.contains("\"99.990000\":"), "{j}");
    }

    #[test]
    fn empty_direction_is_all_zero() {
        let r = Recorder::new(None);
        let d = r.stats(Duration::from_secs(1)).1;
        assert_eq!(d, DirStats::default());
        assert!(d.lat_ns.percentile.0.iter().all(|&(_, ns)| ns == 0));
    }

    /// Cuts fall on the first tick at or past each boundary; a gap longer
    /// than an interval makes one long interval, not empty ones; the
    /// partial last interval is kept; the intervals add up to the run.
    #[test]
    fn bandwidth_log_intervals() {
        let ms = Duration::from_millis;
        let mut r = Recorder::new(Some(ms(100)));
        let at = |r: &mut Recorder, t: u64, n: u64| {
            for _ in 0..n {
                r.record(IoKind::Read, 4096, Ok(4096), 10);
            }
            r.record(IoKind::Write, 8192, Ok(8192), 10);
            r.tick(ms(t));
        };
        at(&mut r, 50, 1);
        at(&mut r, 100, 2);
        at(&mut r, 130, 1);
        at(&mut r, 350, 4);
        r.record(IoKind::Read, 4096, Ok(4096), 10);
        r.finish(ms(360));
        let log = r.take_log();
        let ends: Vec<_> = log.iter().map(|s| s.end).collect();
        // The 10 ms tail joined the interval before it.
        assert_eq!(ends, [ms(100), ms(360)]);
        assert_eq!(log[1].length, ms(260));
        assert_eq!((log[0].read_ops, log[0].write_bytes), (3, 16384));
        assert_eq!((log[1].read_ops, log[1].write_ops), (6, 2));
        // A tail of half an interval or more is a row of its own.
        let mut r = Recorder::new(Some(ms(100)));
        r.tick(ms(100));
        r.record(IoKind::Read, 4096, Ok(4096), 10);
        r.finish(ms(150));
        let tail = r.take_log();
        assert_eq!(tail.len(), 2);
        assert_eq!((tail[1].length, tail[1].read_ops), (ms(50), 1));
        let mut csv = Vec::new();
        write_bw_log(&log, &mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], BW_LOG_HEADER);
        assert_eq!(
            lines[1],
            "100.000,100.000,3,12288,30.0,120.0,2,16384,20.0,160.0"
        );
    }
}
