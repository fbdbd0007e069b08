//! Counting completions: operations, bytes, errors and latency histograms
//! (hdrhistogram, 3 significant digits), per direction and in total.

use std::io;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::IoKind;

/// Highest latency the histograms resolve: one hour, in nanoseconds. Longer
/// ones are clamped to it.
const LATENCY_NS_MAX: u64 = 3_600_000_000_000;

/// Throughput and latency of one direction (or of all requests).
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
    /// Mean latency, microseconds.
    pub latency_us_mean: f64,
    /// Median latency, microseconds.
    pub latency_us_p50: f64,
    /// 99th percentile latency, microseconds.
    pub latency_us_p99: f64,
    /// 99.9th percentile latency, microseconds.
    pub latency_us_p999: f64,
    /// Highest latency, microseconds.
    pub latency_us_max: f64,
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

    fn stats(&self, elapsed: Duration) -> DirStats {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let h = &self.latency_ns;
        let us = |ns: u64| ns as f64 / 1e3;
        if self.ops == 0 {
            return DirStats::default();
        }
        DirStats {
            ops: self.ops,
            bytes: self.bytes,
            iops: self.ops as f64 / secs,
            mb_per_s: self.bytes as f64 / 1e6 / secs,
            latency_us_mean: h.mean() / 1e3,
            latency_us_p50: us(h.value_at_quantile(0.50)),
            latency_us_p99: us(h.value_at_quantile(0.99)),
            latency_us_p999: us(h.value_at_quantile(0.999)),
            latency_us_max: us(h.max()),
        }
    }
}

/// Counts of a run so far.
pub(crate) struct Recorder {
    read: Direction,
    write: Direction,
    total: Direction,
    /// Requests that failed or moved fewer bytes than asked.
    pub errors: u64,
    /// The first of them, for the report.
    pub first_error: Option<io::Error>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            read: Direction::new(),
            write: Direction::new(),
            total: Direction::new(),
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

    /// Successful requests so far.
    pub fn ops(&self) -> u64 {
        self.total.ops
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
        let mut r = Recorder::new();
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
        assert!((read.latency_us_p99 - 990.0).abs() < 1.0, "{read:?}");
        assert!((read.latency_us_p999 - 999.0).abs() < 1.0, "{read:?}");
        assert!((read.latency_us_max - 1000.0).abs() < 1.0, "{read:?}");
        assert_eq!((write.ops, write.bytes), (1, 8192));
        assert_eq!(total.ops, 1001);
        assert_eq!(r.errors, 2);
        assert!(r.first_error.unwrap().to_string().contains("short"));
    }

    #[test]
    fn empty_direction_is_all_zero() {
        let r = Recorder::new();
        assert_eq!(r.stats(Duration::from_secs(1)).1, DirStats::default());
    }
}
