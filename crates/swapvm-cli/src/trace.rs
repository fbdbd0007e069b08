//! `swapvm replay`, `swapvm trace stats` and `swapvm trace convert`.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use swapvm_core::MachineConfig;
use swapvm_machine::{Machine, RunOptions};
use swapvm_workload::trace::{self, TraceStats};
use swapvm_workload::{TraceFormat, TracePlan};

/// The machine a replay runs on unless `--config` says otherwise.
pub const DEFAULT_CONFIG: &str = "configs/replay.toml";

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Trace file: Valgrind lackey, CSV, libCacheSim oracleGeneral or
    /// swapvm's native format, libCacheSim lcs or DAMON regions, plain or zstd-compressed.
    trace: PathBuf,
    /// Machine config (TOML); its `workload` is not used.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Trace format: lackey, csv, oracle-general, native, lcs, damon [default: from
    /// the file's magic, name or first line].
    #[arg(long, value_parser = parse_format)]
    format: Option<TraceFormat>,
    /// Seed (overrides `machine.seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Set a config field by its dotted path, e.g. machine.ram_mib=128
    /// (repeatable, applied in order; see `swapvm run --help`).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = crate::parse_set)]
    set: Vec<swapvm_core::config::Override>,
    /// Run folder (created): the files `swapvm run --out` writes, and
    /// trace-stats.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Overwrite the files of an --out folder that is not empty.
    #[arg(long)]
    force: bool,
    /// Print the report as JSON on stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// Run the invariant checker every N ticks (0: only at the end).
    #[arg(long, default_value_t = 0)]
    check_every: u64,
    /// Make any contract warning fatal.
    #[arg(long)]
    strict: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum TraceCmd {
    /// Accesses, distinct pages, footprint and read/write share of a trace.
    Stats {
        /// Trace file.
        trace: PathBuf,
        /// Trace format [default: detected].
        #[arg(long, value_parser = parse_format)]
        format: Option<TraceFormat>,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Convert a trace between formats.
    Convert {
        /// Input trace.
        input: PathBuf,
        /// Output trace (overwritten).
        output: PathBuf,
        /// Input format [default: detected].
        #[arg(long, value_parser = parse_format)]
        from: Option<TraceFormat>,
        /// Output format [default: from the output's name: *.csv, *.lackey,
        /// *oracleGeneral*, *.swvmtrace, *.lcs, each optionally + .zst].
        #[arg(long, value_parser = parse_format)]
        to: Option<TraceFormat>,
        /// zstd-compress the output [default: when its name ends in .zst].
        #[arg(long)]
        compress: bool,
    },
    /// Write a synthetic trace (usemem-shaped: every page stored to once,
    /// then uniform random accesses), e.g. for replay benchmarks.
    Synth {
        /// Output trace (overwritten).
        output: PathBuf,
        /// Pages of the footprint.
        #[arg(long)]
        pages: u64,
        /// Random accesses after the first pass over every page.
        #[arg(long)]
        accesses: u64,
        /// Processes (pids 1..=N), each over its share of the pages.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
        pids: u32,
        /// Share of the random accesses that are stores.
        #[arg(long, default_value_t = 0.5, value_parser = parse_ratio)]
        write_ratio: f64,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output format [default: from the output's name].
        #[arg(long, value_parser = parse_format)]
        to: Option<TraceFormat>,
        /// zstd-compress the output [default: when its name ends in .zst].
        #[arg(long)]
        compress: bool,
    },
    /// Run a program under Valgrind lackey and write its memory trace,
    /// converted as it runs (forked children get their own pids); or, with
    /// --damon, capture its access pattern at native speed with DAMON.
    Record {
        /// The trace to write (overwritten; written whole at the end).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// native (zstd-compressed unless --no-compress) or lackey text.
        #[arg(long, default_value = "native", value_parser = parse_format)]
        format: TraceFormat,
        /// Write the trace uncompressed.
        #[arg(long)]
        no_compress: bool,
        /// Do not run the program natively first (that run gives the
        /// slowdown printed at the end).
        #[arg(long)]
        no_baseline: bool,
        /// Capture with DAMON (region reports of each aggregation
        /// interval, a `.damon` trace) instead of Valgrind lackey.
        #[arg(long)]
        damon: bool,
        /// DAMON's sampling interval, microseconds.
        #[arg(long, default_value_t = 5000, requires = "damon", value_parser = clap::value_parser!(u64).range(100..))]
        sample_us: u64,
        /// DAMON's aggregation interval, milliseconds.
        #[arg(long, default_value_t = 100, requires = "damon", value_parser = clap::value_parser!(u64).range(1..))]
        aggr_ms: u64,
        /// The least and the most regions DAMON keeps.
        #[arg(long, default_value = "10,1000", requires = "damon", value_parser = parse_regions)]
        regions: (u64, u64),
        /// Monitor this running process instead of starting a command.
        #[arg(long, requires = "damon", conflicts_with = "command")]
        pid: Option<u32>,
        /// The program and its arguments, after `--`.
        #[arg(trailing_var_arg = true, required_unless_present = "pid", num_args = 1..)]
        command: Vec<String>,
    },
}

fn parse_regions(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("{s:?}: expected MIN,MAX with 3 <= MIN <= MAX");
    let (a, b) = s.split_once(',').ok_or_else(bad)?;
    let (a, b): (u64, u64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a < 3 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    let f: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err(format!("{f} is outside 0..=1"))
    }
}

fn parse_format(s: &str) -> Result<TraceFormat, String> {
    s.parse()
}

/// A bar that stays hidden for the first second, so short runs print
/// nothing, and always when stderr is not a terminal.
pub(crate) struct DelayedBar {
    bar: ProgressBar,
    started: Instant,
    shown: bool,
    terminal: bool,
}

impl DelayedBar {
    /// A bar over `total` (a spinner when `None`) counting `unit`.
    pub(crate) fn new(total: Option<u64>, unit: &str) -> DelayedBar {
        let (bar, template) = match total {
            Some(n) => (
                ProgressBar::new(n),
                format!("{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})"),
            ),
            None => (
                ProgressBar::new_spinner(),
                format!("{{spinner}} [{{elapsed_precise}}] {{pos}} {unit} ({{per_sec}})"),
            ),
        };
        bar.set_draw_target(ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        DelayedBar {
            bar,
            started: Instant::now(),
            shown: false,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    pub(crate) fn set(&mut self, pos: u64) {
        self.bar.set_position(pos);
        if !self.shown && self.terminal && self.started.elapsed() >= Duration::from_secs(1) {
            self.shown = true;
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Scans a trace with a progress spinner.
fn scan(path: &Path, format: Option<TraceFormat>) -> Result<TraceStats> {
    let mut bar = DelayedBar::new(None, "records scanned");
    let stats = TraceStats::scan(path, format, |n| bar.set(n));
    bar.finish();
    let stats = stats?;
    if stats.records == 0 {
        eprintln!(
            "warning: {}: the trace holds no record ({}): a replay makes no access",
            path.display(),
            stats.format
        );
    }
    Ok(stats)
}

pub fn replay(a: ReplayArgs) -> Result<i32> {
    crate::check_out_folder(a.out.as_deref(), a.force)?;
    let cfg = MachineConfig::load_with(&a.config, &a.set).with_context(|| {
        format!(
            "replay needs a machine config (default {DEFAULT_CONFIG}, relative to the current folder); pass --config"
        )
    })?;
    let scan_started = Instant::now();
    let plan = TracePlan {
        stats: scan(&a.trace, a.format)?,
    };
    let scan_s = scan_started.elapsed().as_secs_f64();
    let opts = RunOptions {
        seed: a.seed,
        check_every: a.check_every,
        strict: a.strict,
        interrupt: Some(crate::interrupt_flag()?),
        ..RunOptions::default()
    };
    let machine = Machine::from_trace(cfg, &plan, opts)?;
    let mut bar = DelayedBar::new(Some(machine.total_accesses()), "accesses");
    let report = machine.run(|done, _| bar.set(done));
    bar.finish();
    let report = report?;
    if let Some(dir) = &a.out {
        swapvm_machine::run_folder::write(dir, &report)?;
        let path = dir.join("trace-stats.json");
        std::fs::write(&path, serde_json::to_string_pretty(&plan.stats)? + "\n")
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_stats(&plan.stats)?;
        let secs = (report.wall_ms as f64 / 1e3).max(1e-3);
        println!(
            "replay: {} page accesses in {:.2} s: {:.0} accesses/s (scan {:.2} s)",
            report.accesses,
            report.wall_ms as f64 / 1e3,
            report.accesses as f64 / secs,
            scan_s
        );
        crate::print_summary(&report)?;
    }
    Ok(report.outcome().exit_code())
}

pub fn run(cmd: TraceCmd) -> Result<i32> {
    match cmd {
        TraceCmd::Record {
            output,
            format,
            no_compress,
            no_baseline,
            damon,
            sample_us,
            aggr_ms,
            regions,
            pid,
            command,
        } => {
            if damon {
                if sample_us > aggr_ms * 1000 {
                    anyhow::bail!("--sample-us {sample_us} is longer than --aggr-ms {aggr_ms}");
                }
                return crate::record_damon::record(crate::record_damon::DamonArgs {
                    compress: !no_compress || trace::compress::is_zst_name(&output),
                    output,
                    sample_us,
                    aggr_us: aggr_ms * 1000,
                    regions,
                    baseline: !no_baseline,
                    pid,
                    command,
                });
            }
            if !matches!(format, TraceFormat::Native | TraceFormat::Lackey) {
                anyhow::bail!(
                    "trace record writes --format native or lackey, not {}",
                    format.as_str()
                );
            }
            let compress = !no_compress && format == TraceFormat::Native
                || trace::compress::is_zst_name(&output);
            crate::record::record(crate::record::RecordArgs {
                output,
                format,
                compress,
                baseline: !no_baseline,
                command,
            })
        }
        TraceCmd::Stats {
            trace,
            format,
            json,
        } => {
            let stats = scan(&trace, format)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print_stats(&stats)?;
            }
            Ok(0)
        }
        TraceCmd::Convert {
            input,
            output,
            from,
            to,
            compress,
        } => {
            let mut bar = DelayedBar::new(None, "records converted");
            let compress = compress || trace::compress::is_zst_name(&output);
            let n = trace::convert_with(&input, from, &output, to, compress, |n| bar.set(n));
            bar.finish();
            let n = n?;
            println!("{}: {n} records written", output.display());
            Ok(0)
        }
        TraceCmd::Synth {
            output,
            pages,
            accesses,
            pids,
            write_ratio,
            seed,
            to,
            compress,
        } => {
            let Some(format) = to.or_else(|| TraceFormat::from_extension(&output)) else {
                anyhow::bail!(
                    "{}: cannot tell the format from the name; pass --to",
                    output.display()
                );
            };
            let spec = trace::SynthSpec {
                pages,
                pids,
                accesses,
                write_ratio,
                seed,
            };
            let mut bar = DelayedBar::new(pages.checked_add(accesses), "records written");
            let compress = compress || trace::compress::is_zst_name(&output);
            let n = trace::synth_with(&output, format, spec, compress, |n| bar.set(n));
            bar.finish();
            println!("{}: {} records written", output.display(), n?);
            Ok(0)
        }
    }
}

fn print_stats(s: &TraceStats) -> Result<()> {
    let mut o = std::io::stdout().lock();
    let pct = |n: u64| {
        if s.records == 0 {
            0.0
        } else {
            100.0 * n as f64 / s.records as f64
        }
    };
    writeln!(o, "trace {} ({}):", s.path.display(), s.format)?;
    writeln!(
        o,
        "  records {}: {} instruction fetches ({:.1}%), {} loads ({:.1}%), {} stores ({:.1}%); {} straddle a page boundary",
        s.records,
        s.instr,
        pct(s.instr),
        s.loads,
        pct(s.loads),
        s.stores,
        pct(s.stores),
        s.straddling
    )?;
    writeln!(
        o,
        "  page accesses {} ({:.1}% reads, {:.1}% writes), distinct pages {}, footprint {:.2} MiB",
        s.page_accesses,
        100.0 * (1.0 - s.write_share()),
        100.0 * s.write_share(),
        s.distinct_pages,
        s.footprint_bytes as f64 / 1048576.0
    )?;
    for p in s.pids.iter().take(16) {
        writeln!(
            o,
            "  pid {}: {} records, {} page accesses ({} writes), {} distinct pages in {} regions of 2 MiB",
            p.pid, p.records, p.page_accesses, p.page_writes, p.distinct_pages, p.regions
        )?;
    }
    if s.pids.len() > 16 {
        writeln!(o, "  ... {} pids in all", s.pids.len())?;
    }
    Ok(())
}
