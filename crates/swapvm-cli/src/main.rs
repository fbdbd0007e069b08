//! The `swapvm` command: argument parsing, progress and output only; the
//! machine is swapvm-machine's.

mod bench;
mod compare;
mod diskbench;
mod sweep;
mod trace;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use swapvm_core::config::Override;
use swapvm_core::MachineConfig;
use swapvm_machine::{Machine, Outcome, Report, RunOptions};
use swapvm_swap::header;

mod pagemap;
mod progress;
mod record;
mod record_damon;

#[derive(Parser, Debug)]
#[command(
    name = "swapvm",
    version,
    about = "Emulate a Linux swapping virtual-memory machine with real swap I/O",
    after_help = "Exit codes: 0 pass, 1 a verification or invariant failure, 2 bad input, \
                  3 a workload's process was OOM-killed, 130 interrupted (SIGINT/SIGTERM)."
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
        /// Run folder (created): report.json, vmstat, timeseries.csv and
        /// the plots memory.svg, latency.svg, faults.svg.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Overwrite the files of an --out folder that is not empty.
        #[arg(long)]
        force: bool,
        /// Print the report as JSON on stdout instead of the summary.
        #[arg(long)]
        json: bool,
        /// Scale the workload, RAM and swap down by this factor, 0 < f <= 1
        /// (quick runs); refused if the scaled run would no longer swap.
        #[arg(long, value_parser = parse_scale)]
        scale: Option<f64>,
        /// Run the invariant checker every N ticks (0: only at the end).
        #[arg(long, default_value_t = 0)]
        check_every: u64,
        /// Make any contract warning fatal.
        #[arg(long)]
        strict: bool,
        /// Inject a fault, as a `[fault]` field: KEY=VALUE, e.g.
        /// read_error_rate=0.01 or write_error_slots=5,9 (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        fault: Vec<String>,
        /// Set a config field by its dotted path, e.g. machine.ram_mib=128
        /// or swap.0.allocator=free-clusters-only; checked like the file
        /// (repeatable, applied in order).
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
        set: Vec<Override>,
        /// Re-introduce a bug the seed review found, to see the checks
        /// catch it (repeatable; see README).
        #[arg(long, value_name = "NAME")]
        seed_bug: Vec<String>,
    },
    /// Create a swap image that Linux tools accept (like mkswap).
    Mkswap {
        /// Image file to create (overwritten), or a block device.
        image: PathBuf,
        /// Size in MiB, or with a unit (256MiB, 1G); a block device: at
        /// most its size, the whole device if absent.
        #[arg(long, value_parser = parse_mib)]
        size_mib: Option<u64>,
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
        /// A run's report.json: also show the image's usage per cluster at
        /// the end of that run.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Measure swap-shaped I/O on a file or block device (io_uring, O_DIRECT).
    Diskbench(diskbench::DiskbenchArgs),
    /// Replay a memory trace on a machine: one process per pid.
    Replay(trace::ReplayArgs),
    /// Set runs side by side: counters per run or group of runs, delta and
    /// percent against the first, significance by Welch's t-test.
    Compare(compare::CompareArgs),
    /// Run a study: the product of a spec's axes, each run its own process
    /// and run folder, on all local cores or as a Slurm job array.
    Sweep(sweep::SweepArgs),
    /// Look at or convert memory traces.
    Trace {
        #[command(subcommand)]
        cmd: trace::TraceCmd,
    },
    /// Measure accesses/s, faults/s, replay throughput, metadata per page
    /// and peak RSS, each beside its baseline.
    Bench(bench::BenchArgs),
    /// Deterministic simulation testing: random machines, workloads and
    /// faults, one per seed, checked after every tick.
    Fuzz {
        /// Seeds to run, A..B (B excluded), or one seed.
        #[arg(long, value_parser = parse_seeds)]
        seeds: std::ops::Range<u64>,
        /// Folder for the cases' temporary folders (a real disk, for
        /// O_DIRECT).
        #[arg(long, default_value = "/var/tmp")]
        dir: PathBuf,
        /// Keep each case's folder (config, workload, swap images).
        #[arg(long)]
        keep: bool,
        /// Run every seed twice and compare the counters.
        #[arg(long)]
        determinism: bool,
        /// Switch a seed-review bug on in every case, to see the harness
        /// catch it (repeatable).
        #[arg(long, value_name = "NAME")]
        seed_bug: Vec<String>,
    },
    /// The kernel selftest thp_swap_allocator_test on the emulated
    /// machine: 64 KiB mTHP swapped out to a fragmented 64 MiB zram device,
    /// the fallback share per iteration.
    ThpSwapAllocatorTest(ThpAllocArgs),
}

#[derive(clap::Args, Debug)]
struct ThpAllocArgs {
    /// A 4 MiB area of small folios too (the selftest's -s).
    #[arg(short = 's')]
    small: bool,
    /// Swap in by whole 64 KiB blocks (the selftest's -a).
    #[arg(short = 'a')]
    aligned: bool,
    /// Slot allocator: per-order or free-clusters-only.
    #[arg(long, default_value = "per-order", value_parser = parse_allocator)]
    allocator: swapvm_core::config::Allocator,
    /// Iterations.
    #[arg(long, default_value_t = 100)]
    iterations: u32,
    /// Seed of the random offsets.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Folder for the run's config.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
}

fn parse_allocator(s: &str) -> Result<swapvm_core::config::Allocator, String> {
    use swapvm_core::config::Allocator;
    match s {
        "per-order" => Ok(Allocator::PerOrder),
        "free-clusters-only" => Ok(Allocator::FreeClustersOnly),
        _ => Err(format!("{s:?}: expected per-order or free-clusters-only")),
    }
}

/// Runs the harness and prints the selftest's line per iteration.
fn run_thp_alloc(a: &ThpAllocArgs) -> Result<i32> {
    use swapvm_machine::thp_alloc_test::ThpAllocTest;
    anyhow::ensure!(a.iterations >= 1, "--iterations must be at least 1");
    let dir = tempfile::Builder::new()
        .prefix("swapvm-thp-alloc-")
        .tempdir_in(&a.dir)
        .with_context(|| format!("cannot make a folder in {}", a.dir.display()))?;
    let t = ThpAllocTest {
        small: a.small,
        aligned_swapin: a.aligned,
        allocator: a.allocator,
        iterations: a.iterations,
        scale: 1,
        seed: a.seed,
    };
    for (i, it) in t.run(dir.path())?.iter().enumerate() {
        println!(
            "Iteration {}: swpout inc: {}, swpout fallback inc: {}, Fallback percentage: {:.2}%",
            i + 1,
            it.swpout,
            it.fallback,
            it.fallback_pct()
        );
    }
    Ok(0)
}

/// Refuses an `--out` folder that already holds files (an earlier run's
/// results would be mixed with or lost to this one's) unless `force`; a
/// path that is not a folder is refused always. Checked before the run.
pub(crate) fn check_out_folder(out: Option<&std::path::Path>, force: bool) -> Result<()> {
    let Some(dir) = out else {
        return Ok(());
    };
    if !dir.exists() {
        return Ok(());
    }
    anyhow::ensure!(
        dir.is_dir(),
        "--out {}: exists and is not a folder",
        dir.display()
    );
    let used = std::fs::read_dir(dir)
        .with_context(|| format!("--out {}: cannot read the folder", dir.display()))?
        .next()
        .is_some();
    anyhow::ensure!(
        !used || force,
        "--out {}: the folder is not empty; pass --force to overwrite its files, or name another",
        dir.display()
    );
    Ok(())
}

/// A flag that the first SIGINT or SIGTERM sets, so the run stops at the
/// next tick boundary and still reports; a second one exits at once with
/// 130, as an impatient user expects.
fn interrupt_flag() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left
        // it: set means this is the second.
        signal_hook::flag::register_conditional_shutdown(sig, 130, std::sync::Arc::clone(&flag))
            .context("cannot install a signal handler")?;
        signal_hook::flag::register(sig, std::sync::Arc::clone(&flag))
            .context("cannot install a signal handler")?;
    }
    Ok(flag)
}

fn parse_seeds(s: &str) -> Result<std::ops::Range<u64>, String> {
    let num = |x: &str| {
        x.trim()
            .parse::<u64>()
            .map_err(|e| format!("{x:?} is not a seed: {e}"))
    };
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            if a < b {
                Ok(a..b)
            } else {
                Err(format!(
                    "{a}..{b} is empty; B is excluded, as in Rust ranges"
                ))
            }
        }
        None => {
            let a = num(s)?;
            Ok(a..a.saturating_add(1))
        }
    }
}

/// `swapvm fuzz`: prints `SEED=` before each case, and on the first
/// failure the seed, the command that replays it and the case's files.
fn run_fuzz(
    seeds: std::ops::Range<u64>,
    dir: &std::path::Path,
    keep: bool,
    twice: bool,
    bugs: &[String],
) -> Result<i32> {
    use swapvm_machine::fuzz;
    let started = std::time::Instant::now();
    let mut stdout = std::io::stdout().lock();
    let mut ran = 0u64;
    let (mut out_pages, mut in_pages, mut faults, mut killed, mut ticks) = (0, 0, 0, 0, 0);
    for seed in seeds {
        writeln!(stdout, "SEED={seed}")?;
        stdout.flush()?;
        let out = fuzz::run_seed_with(seed, dir, keep, twice, bugs)
            .with_context(|| format!("seed {seed}: {}", fuzz::repro_command_with(seed, bugs)))?;
        ran += 1;
        out_pages += out.pswpout;
        in_pages += out.pswpin;
        faults += out.faults;
        killed += out.killed;
        ticks += out.ticks;
        if let Some(why) = out.failure {
            let case = fuzz::derive_case(seed).with_seed_bugs(bugs)?;
            writeln!(
                stdout,
                "FAILED seed {seed} after {} ticks:\n{why}",
                out.ticks
            )?;
            writeln!(stdout, "replay: {}", fuzz::repro_command_with(seed, bugs))?;
            writeln!(
                stdout,
                "--- config.toml\n{}--- workload.toml\n{}",
                case.config_toml, case.workload_toml
            )?;
            return Ok(1);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    writeln!(
        stdout,
        "ok: {ran} seeds in {secs:.1} s ({:.0} seeds/min); {ticks} ticks checked, \
         pswpout {out_pages}, pswpin {in_pages}, faults injected {faults}, processes killed {killed}",
        ran as f64 * 60.0 / secs.max(1e-9)
    )?;
    Ok(0)
}

/// `--set KEY=VALUE`; the config module parses the value and applies it.
fn parse_set(s: &str) -> Result<Override, String> {
    match s.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok(Override::new(key, value)),
        _ => Err("expected KEY=VALUE, e.g. machine.ram_mib=128".into()),
    }
}

/// A size flag in MiB: a bare number of MiB, or a size with a unit that
/// is a whole number of MiB.
fn parse_mib(s: &str) -> Result<u64, String> {
    swapvm_core::size::parse_size_in(s, 1 << 20, "MiB")
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
    // A closed stdout (`swapvm inspect IMG | head -1`) ends the process
    // quietly, as it does for coreutils, instead of a panic in println!.
    swapvm_io::sigpipe_default();
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("swapvm: error: {e:#}");
            // No task could make progress: the machine is too small for the
            // workload, an outcome like an OOM kill, not bad input.
            let stalled = e.chain().any(|c| {
                matches!(
                    c.downcast_ref(),
                    Some(swapvm_machine::MachineError::Stalled { .. })
                )
            });
            std::process::exit(if stalled {
                Outcome::OomKilled.exit_code()
            } else {
                2
            });
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
            force,
            json,
            scale,
            check_every,
            strict,
            fault,
            set,
            seed_bug,
        } => {
            check_out_folder(out.as_deref(), force)?;
            let mut cfg = MachineConfig::load_with(&config, &set)?;
            for kv in &fault {
                cfg.fault.set(kv, std::path::Path::new("--fault"))?;
            }
            for name in &seed_bug {
                cfg.seed_bugs
                    .set(name, std::path::Path::new("--seed-bug"))?;
            }
            if cfg.seed_bugs.any() && cfg.machine.hibernate_every == 0 {
                eprintln!(
                    "swapvm: note: the seed bugs live in the hibernation slot routines, which \
                     run only with machine.hibernate_every > 0"
                );
            }
            let opts = RunOptions {
                seed,
                workload,
                scale,
                scale_machine: true,
                check_every,
                strict,
                interrupt: Some(interrupt_flag()?),
                ..RunOptions::default()
            };
            let machine = Machine::new(cfg, opts)?;
            let mut bar = progress::Progress::new(machine.total_accesses());
            let report = machine.run_status(|st| bar.set(st));
            // Clear the bar before an error is printed, too.
            bar.finish();
            let report = report?;
            // The folder is written before anything is printed, but a
            // failure to write it is reported only after the results, so
            // they are not lost with it.
            let folder = out
                .as_deref()
                .map(|dir| swapvm_machine::run_folder::write(dir, &report));
            if json {
                print!("{}", swapvm_machine::run_folder::report_json(&report)?);
            } else {
                print_summary(&report)?;
                if let (Some(dir), Some(Ok(written))) = (&out, &folder) {
                    println!(
                        "run folder: {} ({})",
                        dir.display(),
                        folder_files(dir, written)
                    );
                }
            }
            folder.transpose()?;
            Ok(report.outcome().exit_code())
        }
        Cmd::Mkswap {
            image,
            size_mib,
            label,
            uuid,
        } => {
            let uuid = uuid.map(|u| header::parse_uuid(&u)).transpose()?;
            let device = header::device_bytes(&image)?;
            let bytes = match (size_mib, device) {
                (Some(mib), _) => match mib.checked_mul(1 << 20) {
                    Some(bytes) => bytes,
                    None => bail!("--size-mib {mib} is too large"),
                },
                (None, Some(bytes)) => bytes,
                (None, None) => bail!(
                    "{}: --size-mib is needed for an image file (only a block device has a size of its own)",
                    image.display()
                ),
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
        Cmd::Diskbench(args) => diskbench::run(args),
        Cmd::Replay(args) => trace::replay(args),
        Cmd::Compare(args) => compare::run(args),
        Cmd::Sweep(args) => sweep::run(args),
        Cmd::Trace { cmd } => trace::run(cmd),
        Cmd::Fuzz {
            seeds,
            dir,
            keep,
            determinism,
            seed_bug,
        } => run_fuzz(seeds, &dir, keep, determinism, &seed_bug),
        Cmd::Bench(args) => bench::run(args),
        Cmd::ThpSwapAllocatorTest(args) => run_thp_alloc(&args),
        Cmd::Inspect { image, report } => {
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
            if let Some(path) = report {
                print_cluster_usage(&path, &h.uuid_string())?;
            }
            Ok(0)
        }
    }
}

/// Prints the per-cluster usage that a run's report recorded for the
/// image with `uuid`: one character per cluster, `.` free, `1`-`9` tenths
/// in use, `#` full.
fn print_cluster_usage(path: &std::path::Path, uuid: &str) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let report: Report = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a swapvm report.json", path.display()))?;
    let Some(d) = report.devices.iter().find(|d| d.uuid == uuid) else {
        bail!(
            "{}: no device with uuid {uuid} in this report",
            path.display()
        );
    };
    let [free, nonfull, frag, full] = d.clusters_free_nonfull_frag_full;
    println!(
        "  run         {} (seed {}), {} of {} slots in use at the end",
        report.config, report.seed, d.slots_used, d.slots
    );
    println!(
        "  clusters    {free} free, {nonfull} nonfull, {frag} frag, {full} full; {} discarded",
        d.discards
    );
    let cells: String = d
        .cluster_usage
        .iter()
        .map(|&c| match c {
            0 => '.',
            512.. => '#',
            c => char::from(b'1' + (u32::from(c) * 9 / 512).min(8) as u8),
        })
        .collect();
    for (i, row) in cells.as_bytes().chunks(64).enumerate() {
        println!("  {:>6}  {}", i * 64, String::from_utf8_lossy(row));
    }
    Ok(())
}

fn print_summary(r: &Report) -> Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(
        o,
        "swapvm {}: {} with workload {} (seed {})",
        r.version, r.config, r.workload, r.seed
    )?;
    if r.interrupted {
        writeln!(
            o,
            "  interrupted at tick {}: in-flight I/O drained and checked; the figures cover the ticks that ran",
            r.ticks
        )?;
    }
    writeln!(
        o,
        "  ticks {}, accesses {}, wall time {:.2} s, swap I/O {:.1} MB/s",
        r.ticks,
        r.accesses,
        r.wall_ms as f64 / 1e3,
        r.swap_mb_per_s()
    )?;
    if r.io_wait_us.read + r.io_wait_us.write > 0 {
        writeln!(
            o,
            "  of which waiting for the disk: {:.2} s for reads, {:.2} s for writes due",
            r.io_wait_us.read as f64 / 1e6,
            r.io_wait_us.write as f64 / 1e6
        )?;
    }
    writeln!(
        o,
        "  {}; {:.0} accesses/s",
        r.metadata.summary(),
        r.accesses as f64 * 1e3 / r.wall_ms.max(1) as f64
    )?;
    writeln!(o, "vmstat:")?;
    for (n, v) in r.vmstat.iter().filter(|(_, v)| *v > 0) {
        writeln!(o, "  {n:<26} {v}")?;
    }
    writeln!(
        o,
        "swap devices (swap-in readahead by {}):",
        if r.swap_readahead == "vma" {
            "address, vma"
        } else {
            "swap offset, cluster"
        }
    )?;
    for d in &r.devices {
        writeln!(
            o,
            "  {} prio {}{}: {}/{} slots used{}; {} reads ({:.1} MiB), {} writes ({:.1} MiB), {} errors, {}",
            d.path,
            d.priority,
            if d.rotational { ", rotational" } else { "" },
            d.slots_used,
            d.slots,
            if d.slots_cache_only > 0 {
                format!(
                    " ({} by the swap cache alone: unmapped folios, not a leak)",
                    d.slots_cache_only
                )
            } else {
                String::new()
            },
            d.reads,
            d.bytes_read as f64 / 1048576.0,
            d.writes,
            d.bytes_written as f64 / 1048576.0,
            d.errors,
            match d.ring_depth {
                Some(ring) => format!(
                    "io_uring ring depth {ring}, most requests queued {} (ring, engine queue and plug)",
                    d.max_in_flight
                ),
                None => format!("most requests queued {}", d.max_in_flight),
            }
        )?;
        for (name, l) in [("read", &d.read_latency), ("write", &d.write_latency)] {
            if l.count > 0 {
                writeln!(
                    o,
                    "    {name:<5} latency p50 {} us, p99 {} us, p99.9 {} us, max {} us ({} requests)",
                    l.p50_us, l.p99_us, l.p999_us, l.max_us, l.count
                )?;
            }
        }
        let [free, nonfull, frag, full] = d.clusters_free_nonfull_frag_full;
        writeln!(
            o,
            "    clusters {free} free, {nonfull} nonfull, {frag} frag, {full} full; {} discarded; {} slots with a count continuation",
            d.discards, d.continued_slots
        )?;
        if let Some(z) = &d.zram {
            writeln!(
                o,
                "    zram: {:.1} MiB stored in {:.1} MiB, compression ratio {:.2}",
                z.orig_data_size as f64 / 1048576.0,
                z.compr_data_size as f64 / 1048576.0,
                z.compression_ratio
            )?;
        }
    }
    for so in &r.swap_orders {
        writeln!(
            o,
            "  order {} ({} kB) swap allocations: {} ok, {} failed",
            so.order, so.size_kb, so.swpout_alloc, so.swpout_alloc_fail
        )?;
    }
    if let Some(z) = &r.zswap {
        writeln!(
            o,
            "zswap ({}, max_pool_percent {}, accept_threshold_percent {}, shrinker {}): \
             pool_total_size {:.1} MiB, stored_pages {}, same_filled_pages {}, written_back_pages {}",
            z.compressor,
            z.max_pool_percent,
            z.accept_threshold_percent,
            if z.shrinker_enabled { "on" } else { "off" },
            z.pool_total_size as f64 / 1048576.0,
            z.stored_pages,
            z.same_filled_pages,
            z.written_back_pages
        )?;
        writeln!(
            o,
            "  pool_limit_hit {}, reject_compress_poor {}, reject_reclaim_fail {}, reject_alloc_fail {}, \
             reject_kmemcache_fail {}, memory.zswap.max refusals {}",
            z.pool_limit_hit,
            z.reject_compress_poor,
            z.reject_reclaim_fail,
            z.reject_alloc_fail,
            z.reject_kmemcache_fail,
            z.reject_memcg_max
        )?;
    }
    writeln!(o, "all devices:")?;
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
    if r.verify == "off" {
        writeln!(
            o,
            "verification: off (machine.content = \"{}\": no page bytes to check)",
            r.content
        )?;
    } else {
        writeln!(
            o,
            "verification: {} swap-ins verified, {} loads stamp-checked, {} mismatches",
            r.swapin_verified, r.stamps_verified, r.mismatches
        )?;
    }
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
    let f = &r.faults;
    if f.io.total() + f.kills_mid_fault + f.swapoffs > 0 {
        writeln!(
            o,
            "faults injected: {} read errors, {} write errors, {} short writes, {} torn writes \
             ({} caught at read-back), {} ENOSPC, {} kills mid-fault, {} swapoffs",
            f.io.read_errors,
            f.io.write_errors,
            f.io.short_writes,
            f.io.torn_writes,
            f.swapin_mismatches,
            f.io.enospc,
            f.kills_mid_fault,
            f.swapoffs
        )?;
    }
    for (key, v) in [
        ("read_error_slots", &f.read_error_slots_unreached),
        ("write_error_slots", &f.write_error_slots_unreached),
    ] {
        if !v.is_empty() {
            let list: Vec<String> = v.iter().map(u64::to_string).collect();
            writeln!(
                o,
                "faults not injected: fault.{key} {} never reached (no request touched {})",
                list.join(", "),
                if v.len() == 1 { "it" } else { "them" }
            )?;
        }
    }
    for p in &r.direct_reclaim {
        writeln!(
            o,
            "direct reclaim: pid {} {}: {} stalls, {} ticks stalled",
            p.pid, p.name, p.allocstall, p.stall_ticks
        )?;
    }
    for e in &r.swap_events {
        writeln!(o, "swap: {e}")?;
    }
    writeln!(o, "pressure: {}", pressure_line(&r.pressure))?;
    write_cgroups(&mut o, r)?;
    let h = &r.hibernation;
    if h.cycles > 0 {
        writeln!(
            o,
            "hibernation: {} cycles ({} failed), {} image pages written, {} verified, \
             {} mismatches, {} ticks frozen",
            h.cycles, h.failed, h.pages_written, h.pages_verified, h.mismatches, h.ticks_frozen
        )?;
    }
    writeln!(o, "result: {}", r.outcome().name())?;
    Ok(())
}

/// One line per memory cgroup: memory.current/peak/max, swap, events and
/// the main memory.stat figures.
fn write_cgroups(o: &mut impl Write, r: &Report) -> std::io::Result<()> {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let lim = |l: Option<u64>| l.map_or("max".to_owned(), |b| format!("{:.0}M", mib(b)));
    for c in &r.cgroups {
        let ev: Vec<String> = c.events.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(
            o,
            "cgroup {}: memory.current {:.1} MiB (peak {:.1}, max {}, high {}), swap {:.1} MiB \
             (peak {:.1}, max {}); events: {}; pswpin {} pswpout {} pgmajfault {} pgscan {} pgsteal {}",
            c.path,
            mib(c.memory_current),
            mib(c.memory_peak),
            lim(c.memory_max),
            lim(c.memory_high),
            mib(c.swap_current),
            mib(c.swap_peak),
            lim(c.swap_max),
            ev.join(", "),
            c.stat("pswpin"),
            c.stat("pswpout"),
            c.stat("pgmajfault"),
            c.stat("pgscan"),
            c.stat("pgsteal"),
        )?;
        writeln!(o, "cgroup {}: {}", c.path, pressure_line(&c.pressure))?;
    }
    Ok(())
}

/// The files of a run folder, relative to it, with the per-cgroup files
/// counted rather than listed.
fn folder_files(dir: &std::path::Path, written: &[std::path::PathBuf]) -> String {
    let rel = |p: &std::path::PathBuf| {
        p.strip_prefix(dir)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let (cg, top): (Vec<_>, Vec<_>) = written
        .iter()
        .map(rel)
        .partition(|p| p.starts_with("cgroup/"));
    let mut s = top.join(", ");
    if !cg.is_empty() {
        s.push_str(&format!(", cgroup/ ({} files)", cg.len()));
    }
    s
}

/// A memory.pressure file on one line: `some avg10=... total=...; full ...`.
fn pressure_line(p: &swapvm_machine::psi::PsiReport) -> String {
    let l = |n: &str, l: &swapvm_machine::psi::PsiLine| {
        format!(
            "{n} avg10={:.2} avg60={:.2} avg300={:.2} total={:.3}s",
            l.avg10,
            l.avg60,
            l.avg300,
            l.total_us as f64 / 1e6
        )
    };
    format!(
        "memory.pressure {}; {}",
        l("some", &p.some),
        l("full", &p.full)
    )
}
