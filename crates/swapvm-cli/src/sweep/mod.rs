//! `swapvm sweep SPEC.toml`: a study, the product of a spec's axes over a
//! base config, each run a normal run folder `OUT/<run-id>/`.
//!
//! - [`spec`]: the spec file and its expansion into runs, the run ids.
//! - [`task`]: one run in its own process (`--run-index`), the unit that
//!   every engine schedules.
//! - [`local`]: the local engine (all cores, memory-aware admission).
//! - [`slurm`]: the Slurm engine (a job array), `--status`, `--collect`.
//! - [`results`]: `OUT/results.csv` and `results.jsonl`.
//! - [`plot`]: `--plot COUNTER --x AXIS [--series AXIS]`.

pub mod local;
pub mod plot;
pub mod results;
pub mod slurm;
pub mod spec;
pub mod task;

use anyhow::{bail, Result};
use std::path::PathBuf;
use swapvm_core::config::Override;

/// Where a sweep runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// This machine, all cores.
    Local,
    /// A Slurm job array (sbatch).
    Slurm,
}

#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    /// The study's spec (TOML; see README, "Studies").
    spec: PathBuf,
    /// Output folder: a run folder per run, results.csv, results.jsonl
    /// [default: sweeps/<spec name>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where the runs run.
    #[arg(long, value_enum, default_value_t = Engine::Local)]
    engine: Engine,
    /// Runs at once, local engine [default: the CPU count].
    #[arg(short = 'j', long)]
    jobs: Option<usize>,
    /// Memory the local engine's runs may take together, MiB [default:
    /// 90% of the host's MemAvailable].
    #[arg(long)]
    mem_budget_mib: Option<u64>,
    /// Set a config field in every run (repeatable, after the spec's `set`,
    /// before the axes).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = crate::parse_set)]
    set: Vec<Override>,
    /// Run only run I of the study, in this process (what each engine's
    /// task calls).
    #[arg(long, value_name = "I")]
    run_index: Option<usize>,
    /// Print the study's runs: index, id, axis values, command.
    #[arg(long)]
    list: bool,
    /// Count done, failed and missing runs (and, with Slurm, queued tasks).
    #[arg(long)]
    status: bool,
    /// Write results.csv and results.jsonl from the run folders (after a
    /// Slurm job); exit 0 only when every run is done.
    #[arg(long)]
    collect: bool,
    /// Plot this counter (a vmstat name, wall_ms, ticks, accesses, or
    /// miss_ratio: pgmajfault per access) of the finished runs.
    #[arg(long, value_name = "COUNTER", requires = "x")]
    plot: Option<String>,
    /// The plot's x axis (an axis of the spec).
    #[arg(long, value_name = "AXIS")]
    x: Option<String>,
    /// One line per value of this axis.
    #[arg(long, value_name = "AXIS")]
    series: Option<String>,
    /// The plot's file [default: OUT/<counter>-vs-<axis>.svg].
    #[arg(long, value_name = "FILE")]
    plot_out: Option<PathBuf>,
    /// Slurm partition [default: the spec's, else the cluster's].
    #[arg(long)]
    partition: Option<String>,
    /// Slurm time limit per task [default: the spec's, else the
    /// partition's].
    #[arg(long)]
    time: Option<String>,
    /// Slurm memory per task, MiB [default: the spec's, else the largest
    /// run's expected RSS].
    #[arg(long)]
    mem_mib: Option<u64>,
}

/// `swapvm sweep`.
pub fn run(a: SweepArgs) -> Result<i32> {
    let spec = spec::Spec::load(&a.spec, &a.set)?;
    let out = a.out.clone().unwrap_or_else(|| {
        let stem = a.spec.file_stem().map(PathBuf::from).unwrap_or_default();
        PathBuf::from("sweeps").join(stem)
    });
    if let Some(i) = a.run_index {
        return task::run_index(&spec, i, &out);
    }
    let runs = spec.runs()?;
    let sets: Vec<String> = a
        .set
        .iter()
        .map(|o| format!("{}={}", o.key, o.raw))
        .collect();
    if a.list {
        for r in &runs {
            let argv = task::command(&spec, r, &task::run_dir(&out, r));
            println!(
                "{} {} {}\t{}",
                r.index,
                r.id,
                spec::describe(&r.axis_values),
                argv.join(" ")
            );
        }
        return Ok(0);
    }
    if let Some(counter) = &a.plot {
        let Some(x) = &a.x else {
            bail!("--plot needs --x AXIS")
        };
        let path = a.plot_out.clone().unwrap_or_else(|| {
            out.join(format!("{counter}-vs-{}.svg", x.replace(['/', '.'], "_")))
        });
        plot::write(&spec, &runs, &out, counter, x, a.series.as_deref(), &path)?;
        println!("{}", path.display());
        return Ok(0);
    }
    if a.status || a.collect {
        std::fs::create_dir_all(&out)?;
        let [done, failed, missing] = if a.collect {
            results::write(&spec, &runs, &out)?
        } else {
            let mut c = [0; 3];
            for r in &runs {
                c[results::state(&out, r).status as usize] += 1;
            }
            c
        };
        println!(
            "{}: {} runs: {done} done, {failed} failed, {missing} missing",
            out.display(),
            runs.len()
        );
        let jobs = slurm::job_ids(&out);
        if !jobs.is_empty() {
            if let Some(q) = slurm::queued(&jobs) {
                let q: Vec<String> = q
                    .iter()
                    .map(|(s, n)| format!("{n} {}", s.to_lowercase()))
                    .collect();
                println!(
                    "slurm jobs {}: {}",
                    jobs.join(","),
                    if q.is_empty() {
                        "none queued".into()
                    } else {
                        q.join(", ")
                    }
                );
            }
            for bad in slurm::ended_badly(&jobs) {
                println!("slurm task {bad}");
            }
        }
        if a.collect {
            println!(
                "results: {}, {}",
                out.join("results.csv").display(),
                out.join("results.jsonl").display()
            );
        }
        return Ok(if failed + missing == 0 { 0 } else { 1 });
    }
    std::fs::create_dir_all(&out)?;
    match a.engine {
        Engine::Local => {
            let jobs = a
                .jobs
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .max(1);
            let mem_budget_mib = a
                .mem_budget_mib
                .or_else(|| local::host_available_mib().map(|m| m * 9 / 10))
                .unwrap_or(u64::MAX);
            local::run(
                &spec,
                &runs,
                &out,
                &local::LocalOptions {
                    jobs,
                    mem_budget_mib,
                    sets,
                },
            )
        }
        Engine::Slurm => {
            let todo: Vec<usize> = runs
                .iter()
                .filter(|r| !results::state(&out, r).finished())
                .map(|r| r.index)
                .collect();
            if todo.is_empty() {
                println!(
                    "{}: every run is finished; --collect writes the results",
                    out.display()
                );
                return Ok(0);
            }
            let mem_mib = a.mem_mib.or(spec.slurm.mem_mib).unwrap_or_else(|| {
                runs.iter()
                    .map(|r| local::expected_rss_mib(&r.config))
                    .max()
                    .unwrap_or(0)
            });
            let req = slurm::JobRequest {
                partition: a.partition.clone().or_else(|| spec.slurm.partition.clone()),
                time: a.time.clone().or_else(|| spec.slurm.time.clone()),
                mem_mib,
            };
            let id = slurm::submit(&spec, &out, &todo, &req, &sets)?;
            println!(
                "submitted job {id}: {} array tasks ({} runs already finished); \
                 `swapvm sweep {} --out {} --status` to follow, `--collect` for the results",
                todo.len(),
                runs.len() - todo.len(),
                a.spec.display(),
                out.display()
            );
            Ok(0)
        }
    }
}
