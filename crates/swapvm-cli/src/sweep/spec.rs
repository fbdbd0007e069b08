//! A study's spec file (TOML) and its expansion into runs.
//!
//! ```toml
//! config = "../configs/quickstart.toml"     # base machine config
//! workload = "../workloads/quickstart.toml" # or: trace = "../workloads/two-pids.csv"
//! seeds = [1, 2, 3]                         # default [1]
//! scale = 0.25                              # optional, as `swapvm run --scale`
//! set = { "machine.content" = "none" }      # every run
//!
//! [axes]                                    # one list of `--set` values per key
//! "machine.ram_mib" = [64, 96, 128]
//! "swap.0.allocator" = ["per-order", "free-clusters-only"]
//! workload = ["../workloads/a.toml", "../workloads/b.toml"]  # an axis of workloads
//!
//! [slurm]                                   # only for --engine slurm
//! partition = "debug"
//! time = "00:10:00"
//! mem_mib = 1024
//! ```
//!
//! Paths are relative to the spec's folder. The study is the product of
//! the axes: keys in byte order (so the order never depends on how the
//! TOML library keeps tables), then the workload axis, then the seeds,
//! the last varying fastest. A run's index is its position in that order;
//! its id is a hash of what it runs (see [`Run::id`]).

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use swapvm_core::config::Override;
use swapvm_core::MachineConfig;

/// The key of the workload axis in `[axes]`.
pub const WORKLOAD_AXIS: &str = "workload";
/// The seeds' column in results.
pub const SEED_AXIS: &str = "seed";

/// The spec file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    config: Option<PathBuf>,
    workload: Option<PathBuf>,
    trace: Option<PathBuf>,
    #[serde(default)]
    seeds: Option<Vec<u64>>,
    scale: Option<f64>,
    #[serde(default)]
    set: BTreeMap<String, toml::Value>,
    #[serde(default)]
    axes: BTreeMap<String, Vec<toml::Value>>,
    #[serde(default)]
    slurm: SlurmSpec,
}

/// `[slurm]`: what the job array asks for (flags override).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSpec {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time`, Slurm's spelling (`MM`, `HH:MM:SS`, `D-HH`).
    pub time: Option<String>,
    /// `--mem` per task in MiB; default: the largest run's expected RSS.
    pub mem_mib: Option<u64>,
}

/// What a run replays or runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A workload file (`swapvm run --workload`); `None`: the config's own.
    Workload(Option<PathBuf>),
    /// A trace (`swapvm replay`).
    Trace(PathBuf),
}

/// One axis: its column name and values (as `--set` raw text).
#[derive(Debug, Clone)]
pub struct Axis {
    /// The `--set` key, [`WORKLOAD_AXIS`].
    pub key: String,
    /// The values, each as a [`toml::Value`].
    pub values: Vec<toml::Value>,
}

/// A parsed spec.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The spec file.
    pub path: PathBuf,
    /// Base machine config.
    pub config: PathBuf,
    /// The base input; with a workload axis its values replace it.
    pub input: Input,
    /// Seeds, innermost axis.
    pub seeds: Vec<u64>,
    /// `--scale` of every run (workloads only).
    pub scale: Option<f64>,
    /// Overrides of every run: the spec's `set`, then the command line's.
    pub set: Vec<Override>,
    /// `[axes]` in byte order of their keys, the workload axis last.
    pub axes: Vec<Axis>,
    /// `[slurm]`.
    pub slurm: SlurmSpec,
}

/// One run of the study.
#[derive(Debug, Clone)]
pub struct Run {
    /// Position in the study's order.
    pub index: usize,
    /// Short hash of what it runs.
    pub id: String,
    /// `(axis key, value as text)` in axis order, the seed last.
    pub axis_values: Vec<(String, String)>,
    /// What it runs.
    pub input: Input,
    /// Seed.
    pub seed: u64,
    /// Every override: the spec's and the command line's, then the axes'.
    pub set: Vec<Override>,
    /// The config as resolved (for the memory estimate and the hash).
    pub config: MachineConfig,
}

/// A value as `--set` text: a string bare, anything else as TOML writes it.
pub fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn override_of(key: &str, v: &toml::Value) -> Override {
    Override {
        key: key.to_owned(),
        raw: value_text(v),
        value: v.clone(),
    }
}

impl Spec {
    /// Reads and checks a spec; `extra` are the command line's `--set`s.
    ///
    /// # Errors
    ///
    /// The file cannot be read, is not TOML of this shape (the cause names
    /// the line and field), or a field is wrong (named).
    pub fn load(path: &Path, extra: &[Override]) -> Result<Spec> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the sweep spec", path.display()))?;
        Self::parse(&text, path, extra)
    }

    /// [`Spec::load`] on `text`, which came from `path`.
    pub fn parse(text: &str, path: &Path, extra: &[Override]) -> Result<Spec> {
        let f: SpecFile = toml::from_str(text)
            .with_context(|| format!("{}: invalid sweep spec", path.display()))?;
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        let rel = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        let field =
            |name: &str, why: String| anyhow::anyhow!("{}: field `{name}`: {why}", path.display());
        let Some(config) = f.config.as_deref() else {
            return Err(field("config", "missing: the base machine config".into()));
        };
        let input = match (&f.workload, &f.trace) {
            (Some(_), Some(_)) => {
                return Err(field(
                    "trace",
                    "give `workload` or `trace`, not both".into(),
                ))
            }
            (None, Some(t)) => Input::Trace(rel(t)),
            (w, None) => Input::Workload(w.as_deref().map(rel)),
        };
        let seeds = f.seeds.unwrap_or_else(|| vec![1]);
        if seeds.is_empty() {
            return Err(field("seeds", "empty: give at least one seed".into()));
        }
        let mut seen = seeds.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != seeds.len() {
            return Err(field("seeds", "a seed is listed twice".into()));
        }
        if let Some(s) = f.scale {
            if !(s > 0.0 && s <= 1.0) {
                return Err(field("scale", format!("{s} is outside 0 < scale <= 1")));
            }
            if matches!(input, Input::Trace(_)) {
                return Err(field("scale", "a trace replay cannot be scaled".into()));
            }
        }
        let mut set: Vec<Override> = f.set.iter().map(|(k, v)| override_of(k, v)).collect();
        set.extend(extra.iter().cloned());
        let mut axes = Vec::new();
        let mut workload_axis = None;
        for (key, values) in f.axes {
            let name = format!("axes.\"{key}\"");
            if values.is_empty() {
                return Err(field(&name, "empty list: give at least one value".into()));
            }
            if key == WORKLOAD_AXIS {
                if matches!(input, Input::Trace(_)) {
                    return Err(field(
                        &name,
                        "a workload axis needs `workload`, not `trace`".into(),
                    ));
                }
                let mut files = Vec::new();
                for v in &values {
                    let Some(s) = v.as_str() else {
                        return Err(field(&name, format!("{v} is not a file name")));
                    };
                    files.push(toml::Value::String(rel(Path::new(s)).display().to_string()));
                }
                workload_axis = Some(Axis { key, values: files });
            } else if key == SEED_AXIS {
                return Err(field(&name, "seeds are the top-level `seeds` list".into()));
            } else {
                axes.push(Axis { key, values });
            }
        }
        axes.extend(workload_axis);
        let spec = Spec {
            path: path.to_owned(),
            config: rel(config),
            input,
            seeds,
            scale: f.scale,
            set,
            axes,
            slurm: f.slurm,
        };
        // Every axis value is type-checked now, against the base config,
        // so a typo fails the sweep before any run starts.
        for axis in spec.axes.iter().filter(|a| a.key != WORKLOAD_AXIS) {
            for v in &axis.values {
                let mut sets = spec.set.clone();
                sets.push(override_of(&axis.key, v));
                MachineConfig::load_with(&spec.config, &sets).with_context(|| {
                    format!(
                        "{}: field `axes.\"{}\"`: value {}",
                        path.display(),
                        axis.key,
                        value_text(v)
                    )
                })?;
            }
        }
        Ok(spec)
    }

    /// Runs in the study.
    pub fn len(&self) -> usize {
        self.axes.iter().map(|a| a.values.len()).product::<usize>() * self.seeds.len()
    }

    /// The column names of the axes, in order, the seed last.
    pub fn axis_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.axes.iter().map(|a| a.key.clone()).collect();
        keys.push(SEED_AXIS.to_owned());
        keys
    }

    /// Run `index` of the study, its config resolved.
    ///
    /// # Errors
    ///
    /// `index` is out of range, or the combination of values makes a
    /// config that does not validate.
    pub fn run(&self, index: usize) -> Result<Run> {
        let n = self.len();
        ensure!(
            index < n,
            "run index {index}: the study has {n} runs (0..{n})"
        );
        // Mixed radix, the seed the fastest digit.
        let mut rest = index;
        let seed = self.seeds[rest % self.seeds.len()];
        rest /= self.seeds.len();
        let mut picks = vec![0; self.axes.len()];
        for (i, axis) in self.axes.iter().enumerate().rev() {
            picks[i] = rest % axis.values.len();
            rest /= axis.values.len();
        }
        let mut set = self.set.clone();
        let mut input = self.input.clone();
        let mut axis_values = Vec::new();
        for (axis, &pick) in self.axes.iter().zip(&picks) {
            let v = &axis.values[pick];
            axis_values.push((axis.key.clone(), value_text(v)));
            if axis.key == WORKLOAD_AXIS {
                input = Input::Workload(Some(PathBuf::from(value_text(v))));
            } else {
                set.push(override_of(&axis.key, v));
            }
        }
        axis_values.push((SEED_AXIS.to_owned(), seed.to_string()));
        let config = MachineConfig::load_with(&self.config, &set).with_context(|| {
            format!(
                "{}: run {index} ({})",
                self.path.display(),
                describe(&axis_values)
            )
        })?;
        let id = run_id(&config, &input, seed, self.scale)?;
        Ok(Run {
            index,
            id,
            axis_values,
            input,
            seed,
            set,
            config,
        })
    }

    /// Every run, in order.
    pub fn runs(&self) -> Result<Vec<Run>> {
        (0..self.len()).map(|i| self.run(i)).collect()
    }
}

/// `key=value, ...` of a run's axes.
pub fn describe(axis_values: &[(String, String)]) -> String {
    axis_values
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The run's id: 12 hex digits of an xxh3 hash over the resolved config
/// (every field, as report.json's `config_loaded` writes it), the
/// workload file's or trace's bytes, the seed and the scale. The same run
/// in another study, or after the spec's axes were reordered, has the
/// same id; a changed workload file gives a new one. The swap images'
/// paths are part of the config, as the base config names them (the
/// sweep moves each run's images into its folder after hashing).
pub fn run_id(
    config: &MachineConfig,
    input: &Input,
    seed: u64,
    scale: Option<f64>,
) -> Result<String> {
    use xxhash_rust::xxh3::Xxh3;
    let mut h = Xxh3::new();
    h.update(b"swapvm-sweep-run v1\0");
    h.update(serde_json::to_string(config)?.as_bytes());
    let file = match input {
        Input::Workload(Some(w)) => Some(w.clone()),
        Input::Workload(None) => config.workload.as_deref().map(|w| config.resolve(w)),
        Input::Trace(t) => Some(t.clone()),
    };
    h.update(match input {
        Input::Trace(_) => b"\0trace\0",
        Input::Workload(_) => b"\0workload\0",
    });
    if let Some(f) = file {
        let bytes = std::fs::read(&f).with_context(|| format!("{}: cannot read", f.display()))?;
        h.update(&bytes);
    }
    h.update(b"\0seed\0");
    h.update(&seed.to_le_bytes());
    if let Some(s) = scale {
        h.update(b"\0scale\0");
        h.update(&s.to_bits().to_le_bytes());
    }
    Ok(format!("{:012x}", h.digest() >> 16))
}

/// Refuses a run index given without a spec that has it.
pub fn check_index(spec: &Spec, index: usize) -> Result<()> {
    if index >= spec.len() {
        bail!(
            "--run-index {index}: {} has {} runs (0..{})",
            spec.path.display(),
            spec.len(),
            spec.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A base config and a spec with `axes` in a temporary folder.
    fn spec(axes: &str, seeds: &str) -> (tempfile::TempDir, Spec) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("c.toml"),
            "[machine]\nram_mib = 8\n[[swap]]\npath = \"s.img\"\nsize_mib = 16\n",
        )
        .unwrap();
        let path = dir.path().join("s.toml");
        let text = format!("config = \"c.toml\"\nseeds = {seeds}\n[axes]\n{axes}");
        let s = Spec::parse(&text, &path, &[]).unwrap();
        (dir, s)
    }

    #[test]
    fn the_study_is_the_product_keys_in_byte_order_seeds_fastest() {
        let (_d, s) = spec(
            "\"reclaim.swappiness\" = [10, 60, 100]\n\"machine.ram_mib\" = [8, 12]\n",
            "[5, 6]",
        );
        assert_eq!(s.len(), 12);
        assert_eq!(
            s.axis_keys(),
            ["machine.ram_mib", "reclaim.swappiness", "seed"]
        );
        let runs = s.runs().unwrap();
        let d: Vec<String> = runs.iter().map(|r| describe(&r.axis_values)).collect();
        assert_eq!(d[0], "machine.ram_mib=8, reclaim.swappiness=10, seed=5");
        assert_eq!(d[1], "machine.ram_mib=8, reclaim.swappiness=10, seed=6");
        assert_eq!(d[2], "machine.ram_mib=8, reclaim.swappiness=60, seed=5");
        assert_eq!(d[11], "machine.ram_mib=12, reclaim.swappiness=100, seed=6");
        assert_eq!(runs[11].config.machine.ram_mib, 12);
        assert_eq!(runs[11].config.reclaim.swappiness, 100);
        assert!(s.run(12).is_err());
    }
}
