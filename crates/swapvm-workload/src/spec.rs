//! Workload files: parsing, validation, scaling and instantiation.
//!
//! A workload file names itself and lists `[[process]]` tables; each table
//! becomes `count` emulated processes. Parsing is two steps. Serde reads the
//! file into private `Raw*` mirrors of the TOML, rejecting unknown fields so
//! that a misspelt knob is an error rather than silently ignored. Validation
//! then checks every range and builds the public types, naming the file and
//! the field (`process[0].size_mib`) in each error, as machine configs do.

use crate::phases::{Phase, PhaseGen, Program, RawPhase};
use crate::source::ProcessSource;
use crate::usemem::ProcessGen;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use swapvm_core::config::{ensure, parse_toml, ConfigError};
use swapvm_core::{SimRng, PAGE_SIZE};

/// 4 KiB pages in one MiB.
pub const PAGES_PER_MIB: u64 = (1 << 20) / PAGE_SIZE as u64;
/// Largest `size_mib` a process may ask for: 1 TiB.
pub const SIZE_MIB_MAX: f64 = (1u64 << 20) as f64;
/// Most processes one `[[process]]` table may start (`count`).
pub const COUNT_MAX: u32 = 1024;
/// Most passes after the touch pass (`passes`).
pub const PASSES_MAX: u32 = 1_000_000;
/// Most accesses in one pass (`accesses_per_pass`): 2^40, so that
/// `passes * accesses_per_pass` cannot overflow a `u64`.
pub const ACCESSES_PER_PASS_MAX: u64 = 1 << 40;

const _: () =
    assert!((PASSES_MAX as u128) * (ACCESSES_PER_PASS_MAX as u128) < (u64::MAX as u128) / 2);

/// A parsed, validated workload file.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    /// Short name, e.g. `quickstart`.
    pub name: String,
    /// One line saying what the workload does.
    pub description: String,
    /// The `[[process]]` tables, in file order.
    pub processes: Vec<ProcessSpec>,
    /// The file it came from (for error messages and reports).
    pub source: PathBuf,
}

/// One `[[process]]` table.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Which generator runs.
    pub kind: ProcessKind,
    /// How many identical processes this table starts (like `usemem -n`).
    pub count: u32,
    /// Size of the process's one region, in 4 KiB pages (from `size_mib`).
    pub size_pages: u64,
    /// Passes after the touch pass that writes every page.
    pub passes: u32,
    /// How each of those passes picks pages.
    pub pattern: Pattern,
    /// Probability that a pass access is a store (the touch pass always
    /// stores).
    pub write_ratio: f64,
    /// Accesses in each pass (defaults to `size_pages`).
    pub accesses_per_pass: u64,
    /// The phases of a `kind = "phases"` process (the usemem fields above
    /// are then unused).
    pub program: Option<Arc<Program>>,
    /// The memory cgroup its processes run in (`cgroup = "/batch"`; the
    /// root when absent). The machine checks that the config has it.
    pub cgroup: Option<String>,
    /// CPU time each access is followed by, in µs (`think_us`): the
    /// offered load of a realtime run. A deterministic run ignores it
    /// (its time is logical).
    pub think_us: u32,
}

/// The program a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessKind {
    /// vm-scalability's `usemem`: map one anonymous region, write every page,
    /// then make `passes` passes over it, unmap and exit.
    Usemem,
    /// A program of `[[process.phase]]` tables (see [`crate::phases`]).
    Phases,
    /// Random ops (the fuzz harness's generator): up to four regions of
    /// half to all of `size_mib`, mapped and unmapped at random, with as many accesses
    /// in all as a usemem process of the same fields makes; then exit.
    Random,
}

impl ProcessKind {
    /// The name used in workload files and process names.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessKind::Usemem => "usemem",
            ProcessKind::Phases => "phases",
            ProcessKind::Random => "random",
        }
    }
}

/// How a pass picks the page of each access.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pattern {
    /// Pages in order from 0; the walk wraps at the end of the region and
    /// carries on where the previous pass stopped.
    Sequential,
    /// Uniformly random pages.
    Random,
    /// A page from the first `hot_fraction` of the region with probability
    /// `hot_probability`, else a uniform page from the rest.
    HotCold {
        /// Share of the region that is hot, in (0, 1).
        hot_fraction: f64,
        /// Probability that an access goes to the hot set, in 0..=1.
        hot_probability: f64,
    },
}

/// The file as written: mirrors the TOML, checked by [`WorkloadSpec::from_raw`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default, rename = "process")]
    processes: Vec<RawProcess>,
}

/// The first `[[process.phase]]` or `[[process.child]]` table of `text`
/// that does not decode on its own, as an error naming its field
/// (`process[0].phase[2]`) and its header's line; `None` if every one
/// decodes (the error is elsewhere) or `text` is not TOML.
fn locate_phase_error(text: &str, path: &Path) -> Option<ConfigError> {
    let doc: toml::Table = text.parse().ok()?;
    let procs = doc.get("process")?.as_array()?;
    for (i, p) in procs.iter().enumerate() {
        for key in ["phase", "child"] {
            let Some(list) = p.get(key).and_then(toml::Value::as_array) else {
                continue;
            };
            for (j, ph) in list.iter().enumerate() {
                if let Err(e) = ph.clone().try_into::<RawPhase>() {
                    let at = header_line(text, i, key, j)
                        .map_or_else(String::new, |l| format!("line {l}: "));
                    return Some(ConfigError::Invalid {
                        path: path.to_owned(),
                        field: format!("process[{i}].{key}[{j}]"),
                        reason: format!("{at}{}", e.message().trim_end()),
                    });
                }
            }
        }
    }
    None
}

/// The 1-based line of the `j`th `[[process.KEY]]` header under the `i`th
/// `[[process]]` header, if both are written as headers.
fn header_line(text: &str, i: usize, key: &str, j: usize) -> Option<usize> {
    let want = format!("[[process.{key}]]");
    let mut proc_seen = 0;
    let mut sub_seen = 0;
    for (n, line) in text.lines().enumerate() {
        let head: String = line
            .split('#')
            .next()
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if head == "[[process]]" {
            proc_seen += 1;
            sub_seen = 0;
        } else if head == want && proc_seen == i + 1 {
            if sub_seen == j {
                return Some(n + 1);
            }
            sub_seen += 1;
        }
    }
    None
}

/// `size_mib`: MiB, or a size with a unit (`"512K"`, `"1G"`).
fn de_size_mib<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    swapvm_core::size::de::mib_f64(d, "size_mib")
}

/// One `[[process]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcess {
    kind: ProcessKind,
    #[serde(default = "one_u32")]
    count: u32,
    #[serde(default, deserialize_with = "de_size_mib")]
    size_mib: f64,
    #[serde(default = "one_u32")]
    passes: u32,
    #[serde(default)]
    pattern: Option<PatternName>,
    #[serde(default)]
    write_ratio: f64,
    accesses_per_pass: Option<u64>,
    hot_fraction: Option<f64>,
    hot_probability: Option<f64>,
    #[serde(default)]
    phase: Vec<RawPhase>,
    #[serde(default)]
    child: Vec<RawPhase>,
    #[serde(default)]
    cgroup: Option<String>,
    #[serde(default)]
    think_us: u32,
}

/// Longest `think_us`: 1 s per access.
pub const THINK_US_MAX: u32 = 1_000_000;

/// `pattern = "..."`; the parameters of `hotcold` are separate keys.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum PatternName {
    Sequential,
    Random,
    HotCold,
}

fn one_u32() -> u32 {
    1
}

impl WorkloadSpec {
    /// Loads and validates a workload file.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `path`, and the line or field at fault.
    pub fn load(path: &Path) -> Result<WorkloadSpec, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates `text`, which came from `path`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] for bad TOML, unknown fields or unknown
    /// `kind`/`pattern` names (the cause lists the allowed ones);
    /// [`ConfigError::Invalid`] for a value out of range, naming the field
    /// as in `process[0].size_mib`.
    pub fn from_toml(text: &str, path: &Path) -> Result<WorkloadSpec, ConfigError> {
        match parse_toml(text, path) {
            Ok(raw) => Self::from_raw(raw, path),
            // serde buffers an `op`-tagged table before it decodes it, so
            // the TOML error points at the first [[process.phase]] of the
            // array whichever is wrong: find the one that is.
            Err(e) => Err(locate_phase_error(text, path).unwrap_or(e)),
        }
    }

    fn from_raw(raw: RawWorkload, path: &Path) -> Result<WorkloadSpec, ConfigError> {
        ensure(!raw.name.trim().is_empty(), path, "name", || {
            "must not be empty".into()
        })?;
        ensure(!raw.processes.is_empty(), path, "process", || {
            "a workload needs at least one [[process]] table".into()
        })?;
        let processes = raw
            .processes
            .iter()
            .enumerate()
            .map(|(i, p)| p.validate(i, path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(WorkloadSpec {
            name: raw.name,
            description: raw.description,
            processes,
            source: path.to_owned(),
        })
    }

    /// Shrinks every size and access count by `factor` (0 < factor <= 1), at
    /// least 1 page; for quick test runs of shipped workloads.
    ///
    /// Counts round up, so a scaled workload never loses a process's region
    /// or a pass; `count`, `passes`, the pattern and the ratios are kept.
    ///
    /// # Panics
    ///
    /// If `factor` is not in (0, 1]: callers check user input first.
    pub fn scaled(&self, factor: f64) -> WorkloadSpec {
        assert!(
            factor > 0.0 && factor <= 1.0,
            "scale factor {factor} is outside (0, 1]"
        );
        let scale = |n: u64| (n as f64 * factor).ceil() as u64;
        let mut spec = self.clone();
        for p in &mut spec.processes {
            if let Some(prog) = &p.program {
                let sc = |v: &[Phase]| v.iter().map(|x| x.scaled(factor)).collect();
                p.program = Some(Arc::new(Program {
                    main: sc(&prog.main),
                    child: sc(&prog.child),
                }));
                continue;
            }
            p.size_pages = scale(p.size_pages).max(1);
            p.accesses_per_pass = scale(p.accesses_per_pass);
        }
        spec
    }

    /// `think_us` of each process [`Self::instantiate`] starts, in its
    /// order.
    pub fn think_us(&self) -> Vec<u32> {
        self.processes
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.think_us, p.count as usize))
            .collect()
    }

    /// One generator per emulated process (a ProcessSpec with count = N
    /// gives N), in a fixed order; process i draws from
    /// `SimRng::derive(seed, i as u64 + 1)`.
    ///
    /// Process `i` is named `<kind>.<i>`, e.g. `usemem.0`. Stream 0 is left
    /// to the caller, so the machine may draw from `derive(seed, 0)` without
    /// perturbing any process.
    pub fn instantiate(&self, seed: u64) -> Vec<ProcessSource> {
        let mut gens = Vec::new();
        for spec in &self.processes {
            for _ in 0..spec.count {
                let i = gens.len();
                let rng = SimRng::derive(seed, i as u64 + 1);
                gens.push(match &spec.program {
                    Some(p) => ProcessSource::Phases(PhaseGen::new(
                        format!("{}.{i}", spec.kind.as_str()),
                        Arc::clone(p),
                        rng,
                    )),
                    None => ProcessSource::Usemem(Box::new(ProcessGen::new(spec, i, rng))),
                });
            }
        }
        gens
    }

    /// The cgroup of each process [`Self::instantiate`] makes, in order,
    /// with the field that named it (`process[1].cgroup`).
    pub fn cgroups(&self) -> Vec<(Option<&str>, String)> {
        self.processes
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                let c = p.cgroup.as_deref();
                (0..p.count).map(move |_| (c, format!("process[{i}].cgroup")))
            })
            .collect()
    }

    /// The usemem generators of [`Self::instantiate`] (tests).
    #[cfg(test)]
    pub(crate) fn usemem_gens(&self, seed: u64) -> Vec<ProcessGen> {
        self.instantiate(seed)
            .into_iter()
            .filter_map(|s| match s {
                ProcessSource::Usemem(g) => Some(*g),
                _ => None,
            })
            .collect()
    }

    /// At most how many pages the workload's processes map at once: each
    /// process's regions (a phase program's `mmap`s, its children's too,
    /// as if none were unmapped), times its count. An upper bound, for
    /// telling whether a machine is small enough to swap.
    pub fn pages_mapped_max(&self) -> u64 {
        let mmaps = |v: &[Phase]| {
            v.iter().fold(0u64, |sum, p| match p {
                Phase::Mmap { pages, .. } => sum.saturating_add(*pages),
                _ => sum,
            })
        };
        self.processes.iter().fold(0u64, |sum, p| {
            let one = match &p.program {
                Some(prog) => {
                    let children = prog.main.iter().fold(0u64, |n, ph| match ph {
                        Phase::Fork { children } => n + u64::from(*children),
                        _ => n,
                    });
                    mmaps(&prog.main).saturating_add(children.saturating_mul(mmaps(&prog.child)))
                }
                None => p.size_pages,
            };
            sum.saturating_add(u64::from(p.count).saturating_mul(one))
        })
    }

    /// Total accesses all generators will emit (for a progress bar).
    pub fn total_accesses(&self) -> u64 {
        self.processes.iter().fold(0u64, |sum, p| {
            sum.saturating_add(u64::from(p.count).saturating_mul(p.accesses_total()))
        })
    }
}

impl ProcessSpec {
    /// Accesses one process of this table makes: the touch pass over every
    /// page plus `passes * accesses_per_pass` (none at all for an empty
    /// region).
    pub fn accesses_total(&self) -> u64 {
        if let Some(p) = &self.program {
            return p.accesses_total();
        }
        if self.size_pages == 0 {
            return 0;
        }
        let passes = u64::from(self.passes).saturating_mul(self.accesses_per_pass);
        self.size_pages.saturating_add(passes)
    }
}

impl RawProcess {
    /// Checks the table at index `i` of `path` and converts it.
    fn validate(&self, i: usize, path: &Path) -> Result<ProcessSpec, ConfigError> {
        let field = |name: &str| format!("process[{i}].{name}");
        ensure(
            (1..=COUNT_MAX).contains(&self.count),
            path,
            &field("count"),
            || format!("{} is outside 1..={COUNT_MAX}", self.count),
        )?;
        ensure(
            self.think_us <= THINK_US_MAX,
            path,
            &field("think_us"),
            || {
                format!(
                    "{} is above the maximum of {THINK_US_MAX} µs",
                    self.think_us
                )
            },
        )?;
        if self.kind == ProcessKind::Phases {
            return self.validate_phases(i, path);
        }
        for (name, given) in [
            ("phase", !self.phase.is_empty()),
            ("child", !self.child.is_empty()),
        ] {
            ensure(!given, path, &field(name), || {
                "only allowed with kind = \"phases\"".into()
            })?;
        }
        // Written so that NaN fails too.
        ensure(self.size_mib > 0.0, path, &field("size_mib"), || {
            format!("{} MiB; must be above 0", self.size_mib)
        })?;
        ensure(
            self.size_mib <= SIZE_MIB_MAX,
            path,
            &field("size_mib"),
            || {
                format!(
                    "{} MiB is above the maximum of {SIZE_MIB_MAX} MiB (1 TiB)",
                    self.size_mib
                )
            },
        )?;
        ensure(self.passes <= PASSES_MAX, path, &field("passes"), || {
            format!("{} is above the maximum of {PASSES_MAX}", self.passes)
        })?;
        check_probability(self.write_ratio, path, &field("write_ratio"))?;
        let size_pages = mib_to_pages(self.size_mib);
        let accesses_per_pass = self.accesses_per_pass.unwrap_or(size_pages);
        ensure(
            (1..=ACCESSES_PER_PASS_MAX).contains(&accesses_per_pass),
            path,
            &field("accesses_per_pass"),
            || {
                format!("{accesses_per_pass} is outside 1..={ACCESSES_PER_PASS_MAX} (use passes = 0 for none)")
            },
        )?;
        Ok(ProcessSpec {
            kind: self.kind,
            count: self.count,
            size_pages,
            passes: self.passes,
            pattern: self.pattern(path, &field)?,
            write_ratio: self.write_ratio,
            accesses_per_pass,
            program: None,
            cgroup: self.cgroup.clone(),
            think_us: self.think_us,
        })
    }

    /// A `kind = "phases"` table: its phases and child phases; the usemem
    /// knobs are refused.
    fn validate_phases(&self, i: usize, path: &Path) -> Result<ProcessSpec, ConfigError> {
        let field = |name: &str| format!("process[{i}].{name}");
        for (name, given) in [
            ("size_mib", self.size_mib != 0.0),
            ("pattern", self.pattern.is_some()),
            ("accesses_per_pass", self.accesses_per_pass.is_some()),
            ("hot_fraction", self.hot_fraction.is_some()),
            ("hot_probability", self.hot_probability.is_some()),
            ("write_ratio", self.write_ratio != 0.0),
        ] {
            ensure(!given, path, &field(name), || {
                "a usemem knob; with kind = \"phases\" each [[process.phase]] says what to do"
                    .into()
            })?;
        }
        ensure(!self.phase.is_empty(), path, &field("phase"), || {
            "kind = \"phases\" needs at least one [[process.phase]]".into()
        })?;
        let check = |list: &[RawPhase], name: &str| {
            list.iter()
                .enumerate()
                .map(|(k, p)| p.validate(path, &format!("process[{i}].{name}[{k}]")))
                .collect::<Result<Vec<Phase>, _>>()
        };
        let main = check(&self.phase, "phase")?;
        let child = check(&self.child, "child")?;
        if !child.is_empty() {
            ensure(
                main.iter().any(|p| matches!(p, Phase::Fork { .. })),
                path,
                &field("child"),
                || "child phases need a fork phase to run them".into(),
            )?;
        }
        Ok(ProcessSpec {
            kind: ProcessKind::Phases,
            count: self.count,
            size_pages: 0,
            passes: 0,
            pattern: Pattern::Random,
            write_ratio: 0.0,
            accesses_per_pass: 0,
            program: Some(Arc::new(Program { main, child })),
            cgroup: self.cgroup.clone(),
            think_us: self.think_us,
        })
    }

    /// Builds the pattern: `hot_*` are required with `hotcold` and refused
    /// with anything else, so a stray knob cannot be silently ignored.
    fn pattern(&self, path: &Path, field: &dyn Fn(&str) -> String) -> Result<Pattern, ConfigError> {
        let Some(pattern) = self.pattern else {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                field: field("pattern"),
                reason: "required with kind = \"usemem\": sequential, random or hotcold".into(),
            });
        };
        let simple = match pattern {
            PatternName::Sequential => Pattern::Sequential,
            PatternName::Random => Pattern::Random,
            PatternName::HotCold => {
                let hot_fraction = required(self.hot_fraction, path, &field("hot_fraction"))?;
                let hot_probability =
                    required(self.hot_probability, path, &field("hot_probability"))?;
                // Written so that NaN fails too.
                ensure(
                    hot_fraction > 0.0 && hot_fraction < 1.0,
                    path,
                    &field("hot_fraction"),
                    || {
                        format!("{hot_fraction} is outside (0, 1): both the hot and the cold set need pages")
                    },
                )?;
                check_probability(hot_probability, path, &field("hot_probability"))?;
                return Ok(Pattern::HotCold {
                    hot_fraction,
                    hot_probability,
                });
            }
        };
        for (name, value) in [
            ("hot_fraction", self.hot_fraction),
            ("hot_probability", self.hot_probability),
        ] {
            ensure(value.is_none(), path, &field(name), || {
                "only allowed with pattern = \"hotcold\"".into()
            })?;
        }
        Ok(simple)
    }
}

/// A `hotcold` parameter that must be given.
fn required(value: Option<f64>, path: &Path, field: &str) -> Result<f64, ConfigError> {
    value.ok_or_else(|| ConfigError::Invalid {
        path: path.to_owned(),
        field: field.to_owned(),
        reason: "required with pattern = \"hotcold\"".into(),
    })
}

/// Checks a probability-like value is in 0..=1 (NaN is not).
fn check_probability(v: f64, path: &Path, field: &str) -> Result<(), ConfigError> {
    ensure((0.0..=1.0).contains(&v), path, field, || {
        format!("{v} is outside 0..=1")
    })
}

/// `size_mib` to pages, rounding a partial page up; at most 2^28 pages for
/// a validated size, which an `f64` holds exactly.
fn mib_to_pages(size_mib: f64) -> u64 {
    ((size_mib * PAGES_PER_MIB as f64).ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Op;
    use proptest::prelude::*;

    const FILE: &str = "/w/test.toml";

    fn parse(text: &str) -> Result<WorkloadSpec, ConfigError> {
        WorkloadSpec::from_toml(text, Path::new(FILE))
    }

    /// The whole message a user sees: the error and its causes.
    fn message(e: &ConfigError) -> String {
        let mut msg = e.to_string();
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            msg.push_str(&format!(": {c}"));
            cause = c.source();
        }
        msg
    }

    /// `text` must fail, naming the file and `field`.
    fn assert_rejected(text: &str, field: &str) -> String {
        let e = parse(text).expect_err(text);
        let msg = message(&e);
        assert!(msg.contains(FILE), "no file in: {msg}");
        assert!(msg.contains(field), "no `{field}` in: {msg}");
        msg
    }

    /// A one-process workload with `extra` lines in the process table.
    fn one(extra: &str) -> String {
        format!("name = \"t\"\n[[process]]\nkind = \"usemem\"\n{extra}\n")
    }

    fn workloads_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workloads")
    }

    #[test]
    fn sizes_take_units() {
        let pages = |extra: &str| {
            parse(&one(&format!("{extra}\npattern = \"sequential\"")))
                .map(|w| w.processes[0].size_pages)
        };
        assert_eq!(pages("size_mib = \"512K\"").unwrap(), 128);
        assert_eq!(pages("size_mib = \"1G\"").unwrap(), 1 << 18);
        assert_eq!(pages("size_mib = 1.5").unwrap(), 384);
        assert_eq!(pages("size_mib = \"0.25\"").unwrap(), 64);
        let e = pages("size_mib = \"lots\"").unwrap_err();
        let msg = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(
            msg.contains(FILE) && msg.contains("size_mib: \"lots\" is not a size"),
            "{msg}"
        );
        // Phases too: an mmap, a madvise range.
        let w = parse(
            "name = \"t\"\n[[process]]\nkind = \"phases\"\n[[process.phase]]\nop = \"mmap\"\n\
             region = 0\nsize_mib = \"2M\"\n[[process.phase]]\nop = \"madvise\"\nregion = 0\n\
             advice = \"cold\"\noffset_mib = \"1M\"\nlength_mib = \"64K\"\n",
        )
        .unwrap();
        assert_eq!(w.pages_mapped_max(), 512);
    }

    #[test]
    fn example_gets_defaults() {
        let w = parse(&one("size_mib = 1\npattern = \"sequential\"")).unwrap();
        assert_eq!(w.name, "t");
        assert_eq!(w.description, "");
        assert_eq!(w.source, Path::new(FILE));
        let p = &w.processes[0];
        assert_eq!(p.kind, ProcessKind::Usemem);
        assert_eq!((p.count, p.size_pages, p.passes), (1, 256, 1));
        assert_eq!(p.pattern, Pattern::Sequential);
        assert_eq!(p.write_ratio, 0.0);
        assert_eq!(p.accesses_per_pass, 256);
        assert_eq!(w.total_accesses(), 512);
    }

    /// A typo in the third `[[process.phase]]` of the second process is
    /// reported at that table's line, not at the first phase's.
    #[test]
    fn a_typo_in_the_nth_phase_names_its_line() {
        let text = "name = \"t\"\n\
                    [[process]]\nkind = \"usemem\"\nsize_mib = 1\n\
                    [[process]]\nkind = \"phases\"\n\
                    [[process.phase]]\nop = \"mmap\"\nregion = 0\nsize_mib = 1\n\
                    [[process.phase]]\nop = \"touch\"\nregion = 0\n\
                    [[process.phase]]  # the third\nop = \"sleep\"\ntiks = 20\n";
        let msg = message(&parse(text).unwrap_err());
        assert!(msg.contains(FILE), "{msg}");
        assert!(msg.contains("process[1].phase[2]"), "{msg}");
        assert!(msg.contains("line 14: "), "{msg}");
        assert!(msg.contains("tiks"), "{msg}");
        // An error outside the phases keeps TOML's own position.
        let msg = message(&parse("name = \"t\"\nbogus = 1\n").unwrap_err());
        assert!(msg.contains("line 2"), "{msg}");
    }

    /// A phases process: region 0 of 1 MiB, then a madvise with `extra`.
    fn madvise_phase(extra: &str) -> String {
        format!(
            "name = \"t\"\n[[process]]\nkind = \"phases\"\n\
             [[process.phase]]\nop = \"mmap\"\nregion = 0\nsize_mib = 1\n\
             [[process.phase]]\nop = \"madvise\"\nregion = 0\n{extra}\n"
        )
    }

    #[test]
    fn a_madvise_phase_takes_a_page_range() {
        use crate::op::{Advice, PageRange};
        use crate::phases::Phase;
        let range = |extra: &str| {
            let w = parse(&madvise_phase(extra)).unwrap();
            match w.processes[0].program.as_ref().unwrap().main[1] {
                Phase::Madvise { advice, pages, .. } => (advice, pages),
                ref p => panic!("{p:?}"),
            }
        };
        let r = |start, end| Some(PageRange { start, end });
        assert_eq!(range("advice = \"cold\""), (Advice::Cold, None));
        assert_eq!(
            range("advice = \"dontneed\"\noffset_mib = 0.5\nlength_mib = 0.0625"),
            (Advice::DontNeed, r(128, 144))
        );
        // The length rounds up to a page; no offset is the start, no length
        // the end.
        assert_eq!(range("advice = \"free\"\nlength_mib = 0.001").1, r(0, 1));
        assert_eq!(
            range("advice = \"pageout\"\noffset_mib = 0.25").1,
            r(64, u64::MAX)
        );
        assert_eq!(range("advice = \"hugepage\"").0, Advice::HugePage);
        assert_eq!(range("advice = \"nohugepage\"").0, Advice::NoHugePage);
    }

    #[test]
    fn a_bad_madvise_range_names_the_field() {
        let bad = [
            (
                "advice = \"cold\"\noffset_mib = 0.001",
                "offset_mib",
                "page",
            ),
            (
                "advice = \"cold\"\noffset_mib = -1",
                "offset_mib",
                "outside",
            ),
            ("advice = \"cold\"\nlength_mib = 0", "length_mib", "outside"),
            (
                "advice = \"hugepage\"\nlength_mib = 1",
                "length_mib",
                "whole region",
            ),
            (
                "advice = \"mergeable\"\noffset_mib = 0",
                "offset_mib",
                "whole region",
            ),
        ];
        for (extra, field, why) in bad {
            let msg = assert_rejected(&madvise_phase(extra), &format!("phase[1].{field}"));
            assert!(msg.contains(why), "{extra}: {msg}");
        }
    }

    #[test]
    fn fractional_sizes_round_up_to_pages() {
        let pages = |mib: &str| {
            parse(&one(&format!("size_mib = {mib}\npattern = \"random\"")))
                .unwrap()
                .processes[0]
                .size_pages
        };
        assert_eq!(pages("0.5"), 128);
        assert_eq!(pages("192"), 192 * 256);
        assert_eq!(pages("0.000001"), 1);
        assert_eq!(pages("1048576"), 1 << 28);
    }

    #[test]
    fn hotcold_parses() {
        let w = parse(&one(
            "size_mib = 4\npattern = \"hotcold\"\nhot_fraction = 0.1\nhot_probability = 0.9\naccesses_per_pass = 7",
        ))
        .unwrap();
        let p = &w.processes[0];
        assert_eq!(
            p.pattern,
            Pattern::HotCold {
                hot_fraction: 0.1,
                hot_probability: 0.9
            }
        );
        assert_eq!(p.accesses_per_pass, 7);
    }

    #[test]
    fn shipped_workloads_parse() {
        let quick = WorkloadSpec::load(&workloads_dir().join("quickstart.toml")).unwrap();
        assert_eq!(quick.name, "quickstart");
        assert!(!quick.description.is_empty());
        let p = &quick.processes[0];
        assert_eq!((p.count, p.size_pages, p.passes), (1, 192 * 256, 2));
        assert_eq!((p.pattern, p.write_ratio), (Pattern::Random, 0.5));

        let seq = WorkloadSpec::load(&workloads_dir().join("usemem-seq.toml")).unwrap();
        assert_eq!(seq.name, "usemem-seq");
        assert!(!seq.description.is_empty());
        let p = &seq.processes[0];
        assert_eq!((p.count, p.size_pages, p.passes), (1, 96 * 256, 3));
        assert_eq!((p.pattern, p.write_ratio), (Pattern::Sequential, 0.25));
    }

    #[test]
    fn every_shipped_workload_parses() {
        let mut n = 0;
        for entry in std::fs::read_dir(workloads_dir()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let w = WorkloadSpec::load(&path).unwrap_or_else(|e| panic!("{}", message(&e)));
                assert!(
                    !w.description.is_empty(),
                    "{}: no description",
                    path.display()
                );
                n += 1;
            }
        }
        assert!(n >= 2);
    }

    #[test]
    fn load_names_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.toml");
        let e = WorkloadSpec::load(&path).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e.to_string().contains("absent.toml"), "{e}");
    }

    #[test]
    fn load_reads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.toml");
        std::fs::write(&path, one("size_mib = 2\npattern = \"random\"\ncount = 2")).unwrap();
        let w = WorkloadSpec::load(&path).unwrap();
        assert_eq!(w.source, path);
        assert_eq!(w.usemem_gens(1).len(), 2);
    }

    #[test]
    fn workload_errors_name_file_and_field() {
        assert_rejected("name = \"t\"\n", "process");
        assert_rejected(
            "name = \" \"\n[[process]]\nkind = \"usemem\"\nsize_mib = 1\npattern = \"random\"\n",
            "name",
        );
        assert_rejected("description = \"no name\"\n", "name");
    }

    #[test]
    fn process_range_errors_name_file_and_field() {
        let base = "size_mib = 1\npattern = \"random\"";
        let cases = [
            ("count = 0", "process[0].count"),
            ("count = 1025", "process[0].count"),
            ("passes = 1000001", "process[0].passes"),
            ("write_ratio = 1.5", "process[0].write_ratio"),
            ("write_ratio = -0.1", "process[0].write_ratio"),
            ("write_ratio = nan", "process[0].write_ratio"),
            ("accesses_per_pass = 0", "process[0].accesses_per_pass"),
            (
                "accesses_per_pass = 1099511627777",
                "process[0].accesses_per_pass",
            ),
        ];
        for (line, field) in cases {
            assert_rejected(&one(&format!("{base}\n{line}")), field);
        }
        for size in ["0", "-1", "nan", "inf", "1048577"] {
            assert_rejected(
                &one(&format!("size_mib = {size}\npattern = \"random\"")),
                "process[0].size_mib",
            );
        }
    }

    #[test]
    fn hot_parameter_errors_name_file_and_field() {
        let hot = |extra: &str| one(&format!("size_mib = 1\npattern = \"hotcold\"\n{extra}"));
        let cases = [
            (hot("hot_probability = 0.9"), "process[0].hot_fraction"),
            (hot("hot_fraction = 0.1"), "process[0].hot_probability"),
            (
                hot("hot_fraction = 0\nhot_probability = 0.9"),
                "process[0].hot_fraction",
            ),
            (
                hot("hot_fraction = 1\nhot_probability = 0.9"),
                "process[0].hot_fraction",
            ),
            (
                hot("hot_fraction = 0.1\nhot_probability = 1.1"),
                "process[0].hot_probability",
            ),
            (
                hot("hot_fraction = nan\nhot_probability = 0.5"),
                "process[0].hot_fraction",
            ),
            (
                one("size_mib = 1\npattern = \"random\"\nhot_fraction = 0.1"),
                "process[0].hot_fraction",
            ),
            (
                one("size_mib = 1\npattern = \"sequential\"\nhot_probability = 0.9"),
                "process[0].hot_probability",
            ),
        ];
        for (text, field) in cases {
            assert_rejected(&text, field);
        }
    }

    #[test]
    fn later_tables_are_named_by_index() {
        let text =
            "name = \"t\"\n[[process]]\nkind = \"usemem\"\nsize_mib = 1\npattern = \"random\"\n\
                    [[process]]\nkind = \"usemem\"\nsize_mib = 0\npattern = \"random\"\n";
        assert_rejected(text, "process[1].size_mib");
    }

    #[test]
    fn unknown_names_list_the_allowed_values() {
        let msg = assert_rejected(&one("size_mib = 1\npattern = \"zipf\""), "pattern");
        for allowed in ["zipf", "sequential", "random", "hotcold"] {
            assert!(msg.contains(allowed), "{msg}");
        }
        let msg = assert_rejected(
            "name = \"t\"\n[[process]]\nkind = \"stream\"\nsize_mib = 1\npattern = \"random\"\n",
            "kind",
        );
        assert!(msg.contains("usemem"), "{msg}");
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_line() {
        let msg = assert_rejected(
            &one("size_mib = 1\npattern = \"random\"\nsize_gib = 1"),
            "size_gib",
        );
        assert!(msg.contains("line 6"), "{msg}");
        assert_rejected("name = \"t\"\nbogus = 1\n", "bogus");
    }

    #[test]
    fn scaled_shrinks_sizes_and_accesses() {
        let w = parse(&one(
            "size_mib = 192\npattern = \"random\"\npasses = 2\naccesses_per_pass = 1000",
        ))
        .unwrap();
        let s = w.scaled(0.01);
        let p = &s.processes[0];
        assert_eq!(p.size_pages, 492); // 49152 * 0.01 = 491.52, rounded up
        assert_eq!(p.accesses_per_pass, 10);
        assert_eq!((p.count, p.passes, p.pattern), (1, 2, Pattern::Random));
        assert_eq!(s.total_accesses(), 492 + 2 * 10);

        let tiny = w.scaled(1e-12).processes[0].clone();
        assert_eq!((tiny.size_pages, tiny.accesses_per_pass), (1, 1));
        assert_eq!(w.scaled(1.0).processes[0].size_pages, 192 * 256);
    }

    #[test]
    #[should_panic(expected = "outside (0, 1]")]
    fn scaled_refuses_a_factor_above_one() {
        let w = parse(&one("size_mib = 1\npattern = \"random\"")).unwrap();
        let _ = w.scaled(2.0);
    }

    #[test]
    fn count_gives_that_many_distinct_processes() {
        let w = parse(&one(
            "size_mib = 1\npattern = \"random\"\ncount = 3\nwrite_ratio = 0.5",
        ))
        .unwrap();
        let mut gens = w.usemem_gens(9);
        let names: Vec<&str> = gens.iter().map(ProcessGen::name).collect();
        assert_eq!(names, ["usemem.0", "usemem.1", "usemem.2"]);
        let streams: Vec<Vec<_>> = gens
            .iter_mut()
            .map(|g| std::iter::from_fn(|| g.next_op()).collect())
            .collect();
        assert_ne!(streams[0], streams[1]);
        assert_ne!(streams[1], streams[2]);
        assert_ne!(streams[0], streams[2]);
    }

    /// `think_us` is per table, repeated for each of its `count`
    /// processes; out of range it is refused by name.
    #[test]
    fn think_us_per_process_and_its_range() {
        let text = "name = \"t\"\n[[process]]\nkind = \"usemem\"\nsize_mib = 1\npattern = \"random\"\ncount = 2\nthink_us = 7\n\
                    [[process]]\nkind = \"usemem\"\nsize_mib = 1\npattern = \"random\"\n";
        let w = parse(text).unwrap();
        assert_eq!(w.think_us(), [7, 7, 0]);
        assert_eq!(w.think_us().len(), w.instantiate(1).len());
        let e = parse(&one(
            "size_mib = 1\npattern = \"random\"\nthink_us = 2000000",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("process[0].think_us"), "{e}");
    }

    #[test]
    fn total_accesses_matches_the_generators() {
        let text = "name = \"t\"\n[[process]]\nkind = \"usemem\"\nsize_mib = 0.25\npattern = \"random\"\ncount = 2\npasses = 3\n\
                    [[process]]\nkind = \"usemem\"\nsize_mib = 0.1\npattern = \"sequential\"\naccesses_per_pass = 5\n";
        let w = parse(text).unwrap();
        let mut emitted = 0;
        for mut g in w.usemem_gens(3) {
            while let Some(op) = g.next_op() {
                emitted += u64::from(matches!(op, Op::Access { .. }));
            }
            assert_eq!(g.accesses_done(), g.accesses_total());
        }
        assert_eq!(w.total_accesses(), emitted);
        assert_eq!(emitted, 2 * (64 + 3 * 64) + (26 + 5));
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC*") {
            let _ = parse(&text);
        }

        #[test]
        fn arbitrary_values_never_panic(
            count in -2i64..2000,
            size_mib in prop_oneof![-1.0f64..8.0, Just(f64::NAN), Just(f64::INFINITY), Just(2e6)],
            passes in -1i64..4,
            pattern in prop_oneof![Just("sequential"), Just("random"), Just("hotcold"), Just("bogus")],
            write_ratio in -0.5f64..1.5,
            hot_fraction in proptest::option::of(-0.5f64..1.5),
            hot_probability in proptest::option::of(-0.5f64..1.5),
            accesses_per_pass in proptest::option::of(-1i64..3000),
            seed: u64,
        ) {
            let mut text = format!(
                "count = {count}\nsize_mib = {size_mib:?}\npasses = {passes}\npattern = \"{pattern}\"\nwrite_ratio = {write_ratio:?}"
            );
            for (key, value) in [("hot_fraction", hot_fraction), ("hot_probability", hot_probability)] {
                if let Some(v) = value {
                    text.push_str(&format!("\n{key} = {v:?}"));
                }
            }
            if let Some(n) = accesses_per_pass {
                text.push_str(&format!("\naccesses_per_pass = {n}"));
            }
            let Ok(w) = parse(&one(&text)) else { return Ok(()) };
            let w = w.scaled(0.05);
            let mut emitted = 0u64;
            for mut g in w.usemem_gens(seed) {
                let Some(Op::Mmap { pages, .. }) = g.next_op() else { panic!("no mmap first") };
                while let Some(op) = g.next_op() {
                    if let Op::Access { page, .. } = op {
                        prop_assert!(page < pages);
                        emitted += 1;
                    }
                }
            }
            prop_assert_eq!(emitted, w.total_accesses());
        }
    }
}
