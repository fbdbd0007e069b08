//! The `swapvm` command: argument parsing, progress and output only; the
//! machine is swapvm-machine's.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use swapvm_core::MachineConfig;
use swapvm_machine::{Machine, Report, RunOptions};
use swapvm_swap::header;

#[derive(Parser, Debug)]
#[command(
    name = "swapvm",
    version,
    about = "Emulate a Linux swapping virtual-memory machine with real swap I/O"
)]
struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a machine config with its workload.
    Run {
        /// Machine config (TOML).
        config: PathBuf,
        /// Workload file (overrides the config's `workload`).
        #[arg(long)]
        workload: Option<PathBuf>,
        /// Seed (overrides `machine.seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Folder for report.json (created).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the report as JSON on stdout instead of the summary.
        #[arg(long)]
        json: bool,
        /// Scale the workload down by this factor, 0 < f <= 1 (quick runs).
        #[arg(long, value_parser = parse_scale)]
        scale: Option<f64>,
        /// Run the invariant checker every N ticks (0: only at the end).
        #[arg(long, default_value_t = 0)]
        check_every: u64,
        /// Make any contract warning fatal.
        #[arg(long)]
        strict: bool,
    },
    /// Create a swap image that Linux tools accept (like mkswap).
    Mkswap {
        /// Image file to create (overwritten).
        image: PathBuf,
        /// Size in MiB.
        #[arg(long)]
        size_mib: u64,
        /// Label (at most 15 bytes).
        #[arg(long, default_value = "")]
        label: String,
        /// UUID (random if absent).
        #[arg(long)]
        uuid: Option<String>,
    },
    /// Show a swap image's header.
    Inspect {
        /// Image file.
        image: PathBuf,
    },
}

fn parse_scale(s: &str) -> Result<f64, String> {
    let f: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if f > 0.0 && f <= 1.0 {
        Ok(f)
    } else {
        Err(format!("{f} is outside 0 < scale <= 1"))
    }
}

fn main() {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("swapvm: error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    match cli.cmd {
        Cmd::Run {
            config,
            workload,
            seed,
            out,
            json,
            scale,
            check_every,
            strict,
        } => {
            let cfg = MachineConfig::load(&config)?;
            let opts = RunOptions {
                seed,
                workload,
                scale,
                check_every,
                strict,
            };
            let machine = Machine::new(cfg, opts)?;
            let bar = progress_bar(machine.total_accesses());
            let report = machine.run(|done, _| bar.set_position(done))?;
            bar.finish_and_clear();
            if let Some(dir) = out {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("{}: cannot create", dir.display()))?;
                let path = dir.join("report.json");
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("{}: cannot write", path.display()))?;
                std::fs::write(dir.join("vmstat"), report.vmstat_text())
                    .with_context(|| format!("{}: cannot write", dir.display()))?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_summary(&report)?;
            }
            Ok(if report.passed() { 0 } else { 1 })
        }
        Cmd::Mkswap {
            image,
            size_mib,
            label,
            uuid,
        } => {
            let uuid = uuid.map(|u| header::parse_uuid(&u)).transpose()?;
            let Some(bytes) = size_mib.checked_mul(1 << 20) else {
                bail!("--size-mib {size_mib} is too large")
            };
            let h = header::mkswap(&image, bytes, &label, uuid)?;
            println!(
                "{}: swap area, {} slots of 4 KiB, label {:?}, uuid {}",
                image.display(),
                h.last_page,
                h.label,
                h.uuid_string()
            );
            Ok(0)
        }
        Cmd::Inspect { image } => {
            let h = header::read_header(&image)?;
            println!("{}", image.display());
            println!("  version     {}", h.version);
            println!(
                "  size        {} MiB ({} pages incl. header)",
                ((u64::from(h.last_page) + 1) * 4096) >> 20,
                u64::from(h.last_page) + 1
            );
            println!("  label       {:?}", h.label);
            println!("  uuid        {}", h.uuid_string());
            println!("  bad pages   {}", h.badpages.len());
            if h.foreign_endian {
                println!("  byte order  foreign");
            }
            Ok(0)
        }
    }
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if std::io::stderr().is_terminal() {
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} accesses ({per_sec}, eta {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

fn print_summary(r: &Report) -> Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(
        o,
        "swapvm {}: {} with workload {} (seed {})",
        r.version, r.config, r.workload, r.seed
    )?;
    writeln!(
        o,
        "  ticks {}, accesses {}, wall time {:.2} s, swap I/O {:.1} MB/s",
        r.ticks,
        r.accesses,
        r.wall_ms as f64 / 1e3,
        r.swap_mb_per_s()
    )?;
    writeln!(o, "vmstat:")?;
    for (n, v) in r.vmstat.iter().filter(|(_, v)| *v > 0) {
        writeln!(o, "  {n:<26} {v}")?;
    }
    writeln!(o, "swap devices:")?;
    for d in &r.devices {
        writeln!(
            o,
            "  {} prio {}: {}/{} slots used; {} reads ({:.1} MiB), {} writes ({:.1} MiB), {} errors, most in flight {}",
            d.path,
            d.priority,
            d.slots_used,
            d.slots,
            d.reads,
            d.bytes_read as f64 / 1048576.0,
            d.writes,
            d.bytes_written as f64 / 1048576.0,
            d.errors,
            d.max_in_flight
        )?;
    }
    for (name, l) in [
        ("swap-in read", &r.read_latency),
        ("swap-out write", &r.write_latency),
    ] {
        writeln!(
            o,
            "  {name:<15} latency p50 {} us, p99 {} us, p99.9 {} us, max {} us ({} requests)",
            l.p50_us, l.p99_us, l.p999_us, l.max_us, l.count
        )?;
    }
    writeln!(
        o,
        "verification: {} swap-ins verified, {} loads stamp-checked, {} mismatches",
        r.swapin_verified, r.stamps_verified, r.mismatches
    )?;
    for m in &r.mismatch_details {
        writeln!(o, "  MISMATCH {m}")?;
    }
    let inv = if r.violations.is_empty() {
        "PASS".to_owned()
    } else {
        format!("FAIL ({} violations)", r.violations.len())
    };
    writeln!(o, "invariants: {inv} ({} checks)", r.checks_run)?;
    for v in &r.violations {
        writeln!(o, "  VIOLATION {v}")?;
    }
    writeln!(o, "warnings fired: {}", r.warnings)?;
    for w in &r.warning_sites {
        writeln!(o, "  WARNING {w}")?;
    }
    for k in &r.killed {
        writeln!(o, "  KILLED {k}")?;
    }
    writeln!(o, "result: {}", if r.passed() { "PASS" } else { "FAIL" })?;
    Ok(())
}
