//! One run of a study, in its own process: `swapvm sweep SPEC --run-index
//! I --out OUT`, what the local engine spawns and what a Slurm array task
//! calls. It runs the exact `swapvm run` (or `swapvm replay`) command that
//! [`command`] spells, in this process, into `OUT/<run-id>/`, then writes
//! `sweep-run.json` beside the run folder's files.

use super::spec::{Input, Run, Spec};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use swapvm_core::config::{Override, SwapBackend};

/// The file a finished task writes last into its run folder.
pub const MARKER: &str = "sweep-run.json";
/// The task's own output (the local engine's redirect of its stdout and
/// stderr; the only file a redone run keeps).
pub const LOG: &str = "run.log";
/// Set by the local engine in its children: the child dies with it, so a
/// killed sweep leaves no orphan that a restarted one would race.
pub const PARENT_ENV: &str = "SWAPVM_SWEEP_PARENT";

/// `sweep-run.json`: what the sweep itself knows about a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    /// Index in the study.
    pub index: usize,
    /// Run id.
    pub run_id: String,
    /// The task's exit code (as `swapvm run`'s).
    pub exit_code: i32,
    /// Wall time of the task, process start to the folder written (ms).
    pub wall_ms: u64,
    /// Host the task ran on.
    pub host: String,
    /// The command it ran.
    pub command: Vec<String>,
}

/// The run's folder.
pub fn run_dir(out: &Path, run: &Run) -> PathBuf {
    out.join(&run.id)
}

/// `--set` text that parses back to the same value: a string that would
/// read as another TOML type (`"128"`) keeps its quotes.
fn set_arg(o: &Override) -> String {
    let plain = Override::new(&o.key, &o.raw);
    if plain.value == o.value {
        format!("{}={}", o.key, o.raw)
    } else {
        format!("{}={}", o.key, o.value)
    }
}

/// The swap image paths of a run: one per file-backed device, in the run's
/// folder, so parallel runs never share an image.
fn image_sets(run: &Run, dir: &Path) -> Vec<String> {
    run.config
        .swap
        .iter()
        .enumerate()
        .filter(|(_, s)| s.backend == SwapBackend::File)
        .map(|(i, _)| {
            format!(
                "swap.{i}.path={}",
                dir.join(format!("swap{i}.img")).display()
            )
        })
        .collect()
}

/// The `swapvm run`/`replay` command line of a run (argv, without the
/// program name's path), writing into `dir`.
pub fn command(spec: &Spec, run: &Run, dir: &Path) -> Vec<String> {
    let mut argv: Vec<String> = vec!["swapvm".into()];
    match &run.input {
        Input::Trace(t) => {
            argv.extend(["replay".into(), t.display().to_string()]);
            argv.extend(["--config".into(), spec.config.display().to_string()]);
        }
        Input::Workload(w) => {
            argv.extend(["run".into(), spec.config.display().to_string()]);
            if let Some(w) = w {
                argv.extend(["--workload".into(), w.display().to_string()]);
            }
            if let Some(s) = spec.scale {
                argv.extend(["--scale".into(), s.to_string()]);
            }
        }
    }
    argv.extend(["--seed".into(), run.seed.to_string()]);
    argv.extend(["--out".into(), dir.display().to_string(), "--force".into()]);
    for o in &run.set {
        argv.extend(["--set".into(), set_arg(o)]);
    }
    for s in image_sets(run, dir) {
        argv.extend(["--set".into(), s]);
    }
    argv
}

/// Empties a run folder but for the task's log: a half-written run is
/// redone from nothing.
fn clear_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    for e in std::fs::read_dir(dir).with_context(|| format!("{}: cannot read", dir.display()))? {
        let e = e?;
        if e.file_name() == LOG {
            continue;
        }
        let p = e.path();
        if e.file_type()?.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        }
        .with_context(|| format!("{}: cannot remove", p.display()))?;
    }
    Ok(())
}

/// Dies with the local engine that started this task (see [`PARENT_ENV`]).
fn follow_parent() {
    let Ok(want) = std::env::var(PARENT_ENV) else {
        return;
    };
    if rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .is_err()
    {
        return;
    }
    // The parent may have died before the call: then this process has
    // been re-parented already and no signal will come.
    let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get().to_string());
    if parent.as_deref() != Some(want.as_str()) {
        std::process::exit(130);
    }
}

/// Runs run `index` of `spec` into `out`; returns its exit code.
pub fn run_index(spec: &Spec, index: usize, out: &Path) -> Result<i32> {
    let started = Instant::now();
    follow_parent();
    super::spec::check_index(spec, index)?;
    let run = spec.run(index)?;
    let out =
        std::path::absolute(out).with_context(|| format!("{}: no such folder", out.display()))?;
    let dir = run_dir(&out, &run);
    clear_dir(&dir)?;
    let argv = command(spec, &run, &dir);
    eprintln!(
        "swapvm sweep: run {index} ({}), id {}: {}",
        super::spec::describe(&run.axis_values),
        run.id,
        argv.join(" ")
    );
    let code = match <crate::Cli as clap::Parser>::try_parse_from(&argv) {
        Ok(cli) => match crate::run(cli) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("swapvm: error: {e:#}");
                error_exit_code(&e)
            }
        },
        Err(e) => {
            eprintln!("swapvm sweep: run {index}: {e}");
            2
        }
    };
    // The images are scratch: the report has every figure they held.
    for s in image_sets(&run, &dir) {
        if let Some((_, p)) = s.split_once('=') {
            let _ = std::fs::remove_file(p);
        }
    }
    let marker = Marker {
        index,
        run_id: run.id.clone(),
        exit_code: code,
        wall_ms: started.elapsed().as_millis() as u64,
        host: rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
        command: argv,
    };
    let path = dir.join(MARKER);
    let tmp = dir.join(format!("{MARKER}.tmp"));
    std::fs::write(&tmp, serde_json::to_string_pretty(&marker)? + "\n")
        .with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(code)
}

/// The exit code `swapvm` gives an error: 3 when no task could make
/// progress (the machine is too small, an outcome like an OOM kill), else
/// 2 (bad input), as `main` does.
fn error_exit_code(e: &anyhow::Error) -> i32 {
    let stalled = e.chain().any(|c| {
        matches!(
            c.downcast_ref(),
            Some(swapvm_machine::MachineError::Stalled { .. })
        )
    });
    if stalled {
        swapvm_machine::Outcome::OomKilled.exit_code()
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_argument_parses_back_to_the_same_value() {
        let string_128 = Override {
            key: "swap.0.label".into(),
            raw: "128".into(),
            value: toml::Value::String("128".into()),
        };
        assert_eq!(set_arg(&string_128), "swap.0.label=\"128\"");
        let int = Override::new("machine.ram_mib", "128");
        assert_eq!(set_arg(&int), "machine.ram_mib=128");
        let word = Override::new("swap.0.allocator", "per-order");
        assert_eq!(set_arg(&word), "swap.0.allocator=per-order");
        for o in [string_128, int, word] {
            let (k, v) = set_arg(&o)
                .split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .unwrap_or_default();
            assert_eq!(Override::new(&k, &v).value, o.value);
        }
    }
}
