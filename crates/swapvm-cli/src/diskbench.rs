//! `swapvm diskbench`: options, the live bar, and the report as text (in
//! fio's shape: a table, then each direction's latency distribution) or
//! JSON; the benchmark itself is the swapvm-diskbench crate.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;
use swapvm_diskbench::{
    self as diskbench, BenchConfig, BenchEngine, BenchReport, DirStats, LatencyNs, Pattern,
};

#[derive(clap::Args, Debug)]
pub struct DiskbenchArgs {
    /// File or block device. A missing file is created with --size and
    /// filled first. Writes refuse a device holding a filesystem or (block
    /// devices) a swap signature, and keep clear of a swap file's header.
    device: PathBuf,
    /// Request pattern: swapout-4k, swapout-64k (alias large-folio),
    /// swapout-2m, swapin-4k, readahead, mixed, randwrite-4k, randread-4k,
    /// seqwrite-64k.
    #[arg(long, default_value = "swapout-4k", value_parser = parse_pattern)]
    pattern: Pattern,
    /// Requests kept in flight.
    #[arg(long, default_value_t = 32)]
    qd: u32,
    /// Seconds to run [default: 10, or no time limit with --ops].
    #[arg(long, value_parser = parse_seconds)]
    duration: Option<Duration>,
    /// Stop after this many requests.
    #[arg(long)]
    ops: Option<u64>,
    /// Size of the file to create if DEVICE does not exist (4096, 512M, 2G).
    #[arg(long, value_parser = parse_size)]
    size: Option<u64>,
    /// Print the results as JSON on stdout instead of the text (fio's
    /// field names beside swapvm's: iops, bw, runtime, lat_ns).
    #[arg(long)]
    json: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json_file: Option<PathBuf>,
    /// Write a bandwidth log: CSV, one row per interval (reads and writes,
    /// requests, bytes, IOPS and KiB/s), as fio's --write_bw_log.
    #[arg(long, value_name = "FILE")]
    bw_log: Option<PathBuf>,
    /// Seconds per row of the bandwidth log.
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_seconds)]
    bw_log_interval: Duration,
    /// Write even over a filesystem or swap signature, destroying it.
    #[arg(long)]
    force: bool,
    /// uring: the bare ring and a buffer pool, driven from this thread;
    /// uring-inline: the engine `swapvm run` uses (`submit = "inline"`);
    /// uring-thread: the engine with its own thread (`submit = "thread"`);
    /// psync: pread/pwrite.
    #[arg(long, default_value = "uring", value_parser = parse_engine)]
    engine: BenchEngine,
    /// Use an SQPOLL kernel thread sleeping after IDLE_MS (uring only).
    #[arg(long, value_name = "IDLE_MS")]
    sqpoll: Option<u32>,
    /// No registered buffers or file, no DEFER_TASKRUN (uring only).
    #[arg(long)]
    no_register: bool,
    /// Go through the page cache instead of O_DIRECT.
    #[arg(long)]
    buffered: bool,
    /// Seed of the offsets and of the data written.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_pattern(s: &str) -> Result<Pattern, String> {
    s.parse()
        .map_err(|e: diskbench::UnknownPattern| e.to_string())
}

fn parse_engine(s: &str) -> Result<BenchEngine, String> {
    s.parse()
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number of seconds: {e}"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{secs} is not a positive number of seconds"))
}

/// Bytes, with an optional binary unit (swapvm-core's one parser of
/// sizes, as configs use).
fn parse_size(s: &str) -> Result<u64, String> {
    swapvm_core::size::parse_size(s)
}

/// Runs `swapvm diskbench`; exit code 0, or 1 if any request failed.
pub fn run(a: DiskbenchArgs) -> Result<i32> {
    let duration = match (a.duration, a.ops) {
        (None, None) => Some(Duration::from_secs(10)),
        (d, _) => d,
    };
    let cfg = BenchConfig {
        path: a.device.clone(),
        pattern: a.pattern,
        queue_depth: a.qd,
        duration,
        ops: a.ops,
        create_bytes: a.size,
        force: a.force,
        engine: a.engine,
        direct: !a.buffered,
        register: !a.no_register,
        sqpoll_idle_ms: a.sqpoll,
        seed: a.seed,
        bw_log_interval: a.bw_log.as_ref().map(|_| a.bw_log_interval),
    };
    let mut bar = LiveBar::new();
    let report = diskbench::run(&cfg, &mut |p| bar.update(p));
    bar.bar.finish_and_clear();
    let report = report?;
    let json = serde_json::to_string_pretty(&report)? + "\n";
    if let Some(path) = &a.json_file {
        std::fs::write(path, &json).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    if let Some(path) = &a.bw_log {
        write_bw_log(path, &report)?;
    }
    if a.json {
        std::io::stdout().lock().write_all(json.as_bytes())?;
    } else {
        print_bench(&report)?;
    }
    Ok(if report.errors == 0 { 0 } else { 1 })
}

fn write_bw_log(path: &std::path::Path, r: &BenchReport) -> Result<()> {
    let mut out = Vec::new();
    diskbench::write_bw_log(&r.bw_log, &mut out)?;
    std::fs::write(path, out).with_context(|| format!("{}: cannot write", path.display()))
}

/// A bar over the run's fraction done (of 1000) with IOPS and MB/s over
/// the last half second or more, drawn only on a terminal.
struct LiveBar {
    bar: ProgressBar,
    /// (elapsed, ops, bytes) where the shown rate's window starts.
    window: (Duration, u64, u64),
    rate: String,
}

impl LiveBar {
    const WINDOW: Duration = Duration::from_millis(500);

    fn new() -> LiveBar {
        let bar = ProgressBar::new(1000);
        if std::io::stderr().is_terminal() {
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
        } else {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        LiveBar {
            bar,
            window: (Duration::ZERO, 0, 0),
            rate: String::new(),
        }
    }

    fn update(&mut self, p: diskbench::Progress) {
        let (t0, ops0, bytes0) = self.window;
        let dt = p.elapsed.saturating_sub(t0);
        if dt >= Self::WINDOW {
            let secs = dt.as_secs_f64();
            self.rate = format!(
                ", {} IOPS, {:.1} MB/s",
                crate::progress::human_rate((p.ops - ops0) as f64 / secs),
                (p.bytes - bytes0) as f64 / 1e6 / secs
            );
            self.window = (p.elapsed, p.ops, p.bytes);
        }
        self.bar.set_position((p.fraction * 1000.0) as u64);
        self.bar
            .set_message(format!("{} requests{}", p.ops, self.rate));
    }
}

fn print_bench(r: &BenchReport) -> Result<()> {
    let mut o = std::io::stdout().lock();
    print_setup(&mut o, r)?;
    writeln!(
        o,
        "  {:<6} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "",
        "requests",
        "IOPS",
        "MB/s",
        "p50 us",
        "p90 us",
        "p99 us",
        "p99.9 us",
        "p99.99 us",
        "max us"
    )?;
    let rows: [(&str, &DirStats); 3] =
        [("read", &r.read), ("write", &r.write), ("total", &r.total)];
    for (name, d) in rows.iter().filter(|(_, d)| d.ops > 0) {
        writeln!(
            o,
            "  {name:<6} {:>10} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            d.ops,
            d.iops,
            d.mb_per_s,
            d.latency_us_p50,
            d.latency_us_p90,
            d.latency_us_p99,
            d.latency_us_p999,
            d.latency_us_p9999,
            d.latency_us_max
        )?;
    }
    // Each direction's distribution, as fio prints it (the total's is
    // theirs combined, in the table).
    for (name, d) in rows[..2].iter().filter(|(_, d)| d.ops > 0) {
        for line in latency_lines(name, &d.lat_ns) {
            writeln!(o, "{line}")?;
        }
    }
    writeln!(o, "  cpu: usr {:.1}%, sys {:.1}%", r.usr_cpu, r.sys_cpu)?;
    writeln!(o, "  {:.2} s, {} errors", r.seconds, r.errors)?;
    if let Some(e) = &r.first_error {
        writeln!(o, "  first error: {e}")?;
    }
    Ok(())
}

/// The device, pattern and engine lines.
fn print_setup(o: &mut dyn Write, r: &BenchReport) -> Result<()> {
    let kind = match r.device_kind {
        diskbench::DeviceKind::File => "file",
        diskbench::DeviceKind::BlockDevice => "block device",
    };
    let f = &r.features;
    let features: Vec<&str> = [
        (f.registered_buffers, "registered buffers"),
        (f.fixed_file, "fixed file"),
        (f.defer_taskrun, "defer-taskrun"),
        (f.sqpoll, "sqpoll"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    writeln!(
        o,
        "swapvm diskbench {} ({kind}, {:.1} MiB{}): {}",
        r.device,
        r.device_bytes as f64 / 1048576.0,
        if r.created { ", created" } else { "" },
        r.pattern_description
    )?;
    writeln!(
        o,
        "  pattern {}, {} KiB requests, QD {}, engine {}{}, {}",
        r.pattern,
        r.request_bytes / 1024,
        r.queue_depth,
        r.engine,
        if features.is_empty() {
            String::new()
        } else {
            format!(" ({})", features.join(", "))
        },
        if r.direct { "O_DIRECT" } else { "buffered" }
    )?;
    if r.header_preserved {
        writeln!(o, "  swap header found: nothing written below byte 4096")?;
    }
    Ok(())
}

/// fio's latency block for one direction: min, mean, stdev and max, then
/// the percentile list four to a line (`|  1.00th=[   12], ...`), in
/// microseconds.
fn latency_lines(name: &str, l: &LatencyNs) -> Vec<String> {
    let us = |ns: u64| ns as f64 / 1e3;
    let mut lines = vec![format!(
        "  {name} lat (us): min {:.1}, mean {:.1}, stdev {:.1}, max {:.1}",
        us(l.min),
        l.mean / 1e3,
        l.stddev / 1e3,
        us(l.max)
    )];
    lines.push(format!("  {name} lat percentiles (us):"));
    for row in l.percentile.0.chunks(4) {
        let cells: Vec<String> = row
            .iter()
            .map(|&(p, ns)| format!("{p:5.2}th=[{:>7.0}]", us(ns)))
            .collect();
        lines.push(format!("     | {}", cells.join(", ")));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use swapvm_diskbench::Percentiles;

    #[test]
    fn latency_block_lists_every_percentile_as_fio_does() {
        let l = LatencyNs {
            min: 1_000,
            max: 9_000_000,
            mean: 12_500.0,
            stddev: 3_000.0,
            n: 10,
            percentile: Percentiles(
                diskbench::PERCENTILES
                    .iter()
                    .map(|&p| (p, (p * 1000.0) as u64))
                    .collect(),
            ),
        };
        let lines = latency_lines("read", &l);
        assert_eq!(
            lines[0],
            "  read lat (us): min 1.0, mean 12.5, stdev 3.0, max 9000.0"
        );
        assert_eq!(
            lines[2],
            "     |  1.00th=[      1],  5.00th=[      5], 10.00th=[     10], 20.00th=[     20]"
        );
        assert!(
            lines.last().unwrap().ends_with("99.99th=[    100]"),
            "{lines:?}"
        );
        assert_eq!(lines.len(), 2 + 5);
    }

    #[test]
    fn sizes_and_seconds_parse() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert!(parse_size("1Q").is_err());
        assert!(parse_seconds("0").is_err());
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
    }
}
