//! Phase programs: a process that runs a list of phases (`kind =
//! "phases"`), each one `[[process.phase]]` table with an `op`:
//!
//! | op | fields | does |
//! |---|---|---|
//! | `mmap` | `region`, `size_mib`, `backing` (`anon`, `shared`, `file`), `file` | maps a region: private anonymous, shared anonymous, or tmpfs file `file` |
//! | `touch` | `region`, `ksm_share`, `ksm_pool` | writes every page once; a share of them with contents from a pool of `ksm_pool` identical contents (KSM-mergeable) |
//! | `access` | `region`, `accesses`, `pattern`, `write_ratio`, `alpha`, `stride`, `hot_fraction`, `hot_probability` | loads and stores: `sequential`, `strided`, `random`, `zipf` (exponent `alpha`) or `hotcold` |
//! | `madvise` | `region`, `advice`, `offset_mib`, `length_mib` | `dontneed`, `free`, `cold`, `pageout`, `mergeable`, `unmergeable`, `hugepage`, `nohugepage`, on the whole region or on `length_mib` (rounded up to pages) from `offset_mib` (page-aligned) |
//! | `munmap` | `region` | unmaps |
//! | `truncate` | `file`, `size_mib` | truncates (or grows) tmpfs file `file` |
//! | `unlink` | `file` | unlinks it |
//! | `fork` | `children` | forks that many children; each runs the `[[process.child]]` phases, then exits |
//! | `sleep` | `ticks` | sleeps |
//! | `swapoff`, `swapon` | `device` | swapoff (started, runs over later ticks) or swapon of the config's `[[swap]]` entry `device` |
//! | `hibernate` | `device` | a hibernate cycle to `[[swap]]` entry `device`: every task frozen, the RAM in use written to hibernation slots, read back and verified, the slots released, tasks thawed |
//!
//! After the last phase the process exits. Regions are numbered by the
//! program (`region = 0..`); a child inherits its parent's regions.

use crate::op::{Advice, Op, PageRange};
use rand_distr::{Distribution, Zipf};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;
use swapvm_core::config::{ensure, ConfigError};
use swapvm_core::SimRng;

/// Most regions a program may use.
pub const REGIONS_MAX: u32 = 64;
/// Most children one fork phase may start.
pub const CHILDREN_MAX: u32 = 256;

// Sizes in MiB take units too (`size_mib = "512K"`), as a config's do.

fn de_size_mib<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    swapvm_core::size::de::mib_f64(d, "size_mib")
}
fn de_offset_mib<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    swapvm_core::size::de::opt_mib_f64(d, "offset_mib")
}
fn de_length_mib<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    swapvm_core::size::de::opt_mib_f64(d, "length_mib")
}

/// One phase as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum RawPhase {
    Mmap {
        region: u32,
        #[serde(deserialize_with = "de_size_mib")]
        size_mib: f64,
        #[serde(default)]
        backing: Backing,
        #[serde(default)]
        file: u32,
    },
    Touch {
        region: u32,
        #[serde(default)]
        ksm_share: f64,
        #[serde(default = "default_pool")]
        ksm_pool: u32,
    },
    Access {
        region: u32,
        accesses: u64,
        #[serde(default = "default_pattern")]
        pattern: PatternName,
        #[serde(default)]
        write_ratio: f64,
        alpha: Option<f64>,
        stride: Option<u64>,
        hot_fraction: Option<f64>,
        hot_probability: Option<f64>,
    },
    Madvise {
        region: u32,
        advice: AdviceName,
        #[serde(default, deserialize_with = "de_offset_mib")]
        offset_mib: Option<f64>,
        #[serde(default, deserialize_with = "de_length_mib")]
        length_mib: Option<f64>,
    },
    Munmap {
        region: u32,
    },
    Truncate {
        file: u32,
        #[serde(deserialize_with = "de_size_mib")]
        size_mib: f64,
    },
    Unlink {
        file: u32,
    },
    Fork {
        children: u32,
    },
    Sleep {
        ticks: u64,
    },
    Swapoff {
        device: u32,
    },
    Swapon {
        device: u32,
    },
    Hibernate {
        #[serde(default)]
        device: u32,
    },
    /// A write to `/sys/kernel/debug/lru_gen` (MGLRU's aging `+` and
    /// eviction `-` commands).
    #[serde(rename = "lru_gen")]
    LruGen {
        cmd: String,
    },
    #[serde(rename = "cgroup_write")]
    CgroupWrite {
        #[serde(default)]
        cgroup: Option<String>,
        file: String,
        value: String,
    },
    /// Absent fields take Senpai's defaults (see [`Senpai`]).
    Senpai {
        #[serde(default)]
        cgroup: Option<String>,
        rounds: u32,
        interval_ticks: Option<u64>,
        pressure_us: Option<u64>,
        max_probe: Option<f64>,
        max_backoff: Option<f64>,
        coeff_probe: Option<f64>,
        coeff_backoff: Option<f64>,
        min_mib: Option<f64>,
    },
}

fn default_pool() -> u32 {
    8
}
fn default_pattern() -> PatternName {
    PatternName::Random
}

/// What backs a mapped region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backing {
    /// `MAP_PRIVATE|MAP_ANONYMOUS`.
    #[default]
    Anon,
    /// `MAP_SHARED|MAP_ANONYMOUS` (shmem, shared with children).
    Shared,
    /// A tmpfs file, shared by number across processes.
    File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PatternName {
    Sequential,
    Strided,
    Random,
    Zipf,
    HotCold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AdviceName {
    DontNeed,
    Free,
    Cold,
    PageOut,
    Mergeable,
    Unmergeable,
    HugePage,
    NoHugePage,
}

/// How an access phase picks pages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PhasePattern {
    /// In order, wrapping.
    Sequential,
    /// Every `stride`-th page, wrapping with an offset.
    Strided(u64),
    /// Uniform.
    Random,
    /// Zipf with exponent `alpha` (page 0 hottest).
    Zipf(f64),
    /// Hot set first `hot_fraction` of the region, hit with `hot_probability`.
    HotCold(f64, f64),
}

/// `op = "cgroup_write"`: write `value` to interface `file` of `cgroup`
/// (the process's own when `None`). `memory.reclaim` is proactive reclaim;
/// the other files are those `[[cgroup]]` tables set.
#[derive(Debug, Clone, PartialEq)]
pub struct CgroupWrite {
    /// The cgroup's path.
    pub cgroup: Option<String>,
    /// The interface file, e.g. `memory.high`.
    pub file: String,
    /// What is written, e.g. `"48M"`; empty for a controller's write,
    /// whose value the machine computes.
    pub value: String,
    /// The write is a round of this controller (`op = "senpai"`).
    pub senpai: Option<Senpai>,
}

/// `op = "senpai"`: a proactive reclaimer in the manner of Meta's Senpai.
/// Every `interval_ticks` it reads the cgroup's `memory.pressure` (the
/// `some` stall time of the interval, `p`) and sets `memory.high` relative
/// to the smaller of `memory.high` and `memory.current`: below the target `t = pressure_us` it shrinks the
/// limit by `max_probe * min(1, coeff_probe * (t - p) / t)`; above it grows
/// it by `max_backoff * min(1, (p - t) / t / coeff_backoff)`; never below
/// `min_mib`. The first round only takes the baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Senpai {
    /// Rounds (sleep, then write) before the phase ends.
    pub rounds: u32,
    /// Ticks between rounds.
    pub interval_ticks: u64,
    /// Target `some` stall per interval, µs.
    pub pressure_us: u64,
    /// Largest shrink per round, a fraction of the limit.
    pub max_probe: f64,
    /// Largest growth per round, a fraction of the limit.
    pub max_backoff: f64,
    /// Gain of the shrink below the target.
    pub coeff_probe: f64,
    /// Divisor of the growth above it.
    pub coeff_backoff: f64,
    /// Smallest `memory.high`, pages.
    pub min_pages: u64,
}

/// A validated phase.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Map a region.
    Mmap {
        /// Region number.
        region: u32,
        /// Pages.
        pages: u64,
        /// Backing.
        backing: Backing,
        /// tmpfs file (with `Backing::File`).
        file: u32,
    },
    /// Write every page.
    Touch {
        /// Region.
        region: u32,
        /// Share of pages written with pool contents.
        ksm_share: f64,
        /// Pool size.
        ksm_pool: u32,
    },
    /// Loads and stores.
    Access {
        /// Region.
        region: u32,
        /// How many.
        accesses: u64,
        /// Page choice.
        pattern: PhasePattern,
        /// Share of stores.
        write_ratio: f64,
    },
    /// madvise.
    Madvise {
        /// Region.
        region: u32,
        /// Advice.
        advice: Advice,
        /// The range inside the region (`None`: all of it).
        pages: Option<PageRange>,
    },
    /// munmap.
    Munmap {
        /// Region.
        region: u32,
    },
    /// tmpfs truncate.
    Truncate {
        /// File.
        file: u32,
        /// New size.
        pages: u64,
    },
    /// tmpfs unlink.
    Unlink {
        /// File.
        file: u32,
    },
    /// fork.
    Fork {
        /// Children.
        children: u32,
    },
    /// sleep.
    Sleep {
        /// Ticks.
        ticks: u64,
    },
    /// `swapoff` of the config's `[[swap]]` entry `device` (starts it; the
    /// process goes on while it runs).
    Swapoff {
        /// Index of the `[[swap]]` entry.
        device: u32,
    },
    /// `swapon` of that entry again.
    Swapon {
        /// Index of the `[[swap]]` entry.
        device: u32,
    },
    /// A write to a cgroup interface file, as a controller (Senpai, TMO)
    /// makes one.
    CgroupWrite(CgroupWrite),
    /// A hibernate cycle to that entry.
    Hibernate {
        /// Index of the `[[swap]]` entry.
        device: u32,
    },
    /// A command to MGLRU's debugfs file, as proactive reclaim scripts
    /// write them.
    LruGen(swapvm_core::config::lru_gen::LruGenCmd),
}

/// A process's phases and the phases its forked children run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Program {
    /// The process's own phases.
    pub main: Vec<Phase>,
    /// What each forked child runs.
    pub child: Vec<Phase>,
}

/// A cgroup write the kernel would accept: `memory.reclaim` takes a size,
/// the other files what a `[[cgroup]]` table takes.
fn check_cgroup_write(file: &str, value: &str) -> Result<(), String> {
    if file == "memory.reclaim" {
        return swapvm_core::size::memparse(value.trim(), false).map(|_| ());
    }
    let mut l = swapvm_core::config::CgroupLimits::root();
    swapvm_core::config::cgroup::write_file(&mut l, file, &toml::Value::String(value.into()))
}

fn pages_of(mib: f64, path: &Path, field: &str) -> Result<u64, ConfigError> {
    ensure(mib > 0.0 && mib <= crate::SIZE_MIB_MAX, path, field, || {
        format!("{mib} MiB is outside (0, {}]", crate::SIZE_MIB_MAX)
    })?;
    Ok(((mib * crate::PAGES_PER_MIB as f64).ceil() as u64).max(1))
}

/// The page range of a `madvise` phase's `offset_mib` and `length_mib`
/// (either may be left out: from the start, to the end). As `madvise(2)`
/// takes them, the offset must be page-aligned and the length is rounded
/// up to whole pages.
fn madvise_range(
    offset_mib: Option<f64>,
    length_mib: Option<f64>,
    path: &Path,
    f: &dyn Fn(&str) -> String,
) -> Result<Option<PageRange>, ConfigError> {
    if offset_mib.is_none() && length_mib.is_none() {
        return Ok(None);
    }
    let off = offset_mib.unwrap_or(0.0);
    ensure(
        (0.0..crate::SIZE_MIB_MAX).contains(&off),
        path,
        &f("offset_mib"),
        || format!("{off} MiB is outside [0, {})", crate::SIZE_MIB_MAX),
    )?;
    let start = off * crate::PAGES_PER_MIB as f64;
    ensure(start.fract() == 0.0, path, &f("offset_mib"), || {
        format!("{off} MiB is not a multiple of the 4 KiB page")
    })?;
    let start = start as u64;
    let end = match length_mib {
        None => u64::MAX,
        Some(len) => start + pages_of(len, path, &f("length_mib"))?,
    };
    Ok(Some(PageRange { start, end }))
}

impl RawPhase {
    pub(crate) fn validate(&self, path: &Path, at: &str) -> Result<Phase, ConfigError> {
        let f = |name: &str| format!("{at}.{name}");
        let region_ok = |r: u32| {
            ensure(r < REGIONS_MAX, path, &f("region"), || {
                format!("{r} is outside 0..{REGIONS_MAX}")
            })
        };
        let prob = |v: f64, name: &str| {
            ensure((0.0..=1.0).contains(&v), path, &f(name), || {
                format!("{v} is outside 0..=1")
            })
        };
        Ok(match *self {
            RawPhase::Mmap {
                region,
                size_mib,
                backing,
                file,
            } => {
                region_ok(region)?;
                Phase::Mmap {
                    region,
                    pages: pages_of(size_mib, path, &f("size_mib"))?,
                    backing,
                    file,
                }
            }
            RawPhase::Touch {
                region,
                ksm_share,
                ksm_pool,
            } => {
                region_ok(region)?;
                prob(ksm_share, "ksm_share")?;
                ensure(ksm_pool >= 1, path, &f("ksm_pool"), || {
                    "must be at least 1".into()
                })?;
                Phase::Touch {
                    region,
                    ksm_share,
                    ksm_pool,
                }
            }
            RawPhase::Access {
                region,
                accesses,
                pattern,
                write_ratio,
                alpha,
                stride,
                hot_fraction,
                hot_probability,
            } => {
                region_ok(region)?;
                prob(write_ratio, "write_ratio")?;
                ensure(
                    (1..=crate::ACCESSES_PER_PASS_MAX).contains(&accesses),
                    path,
                    &f("accesses"),
                    || format!("{accesses} is outside 1..={}", crate::ACCESSES_PER_PASS_MAX),
                )?;
                let only = |v: bool, name: &str, with: &str| {
                    ensure(!v, path, &f(name), || {
                        format!("only allowed with pattern = \"{with}\"")
                    })
                };
                let need = |v: Option<f64>, name: &str| {
                    v.ok_or_else(|| ConfigError::Invalid {
                        path: path.to_owned(),
                        field: f(name),
                        reason: "required with this pattern".into(),
                    })
                };
                if pattern != PatternName::Zipf {
                    only(alpha.is_some(), "alpha", "zipf")?;
                }
                if pattern != PatternName::Strided {
                    only(stride.is_some(), "stride", "strided")?;
                }
                if pattern != PatternName::HotCold {
                    only(hot_fraction.is_some(), "hot_fraction", "hotcold")?;
                    only(hot_probability.is_some(), "hot_probability", "hotcold")?;
                }
                let pattern = match pattern {
                    PatternName::Sequential => PhasePattern::Sequential,
                    PatternName::Random => PhasePattern::Random,
                    PatternName::Strided => {
                        let s = stride.ok_or_else(|| ConfigError::Invalid {
                            path: path.to_owned(),
                            field: f("stride"),
                            reason: "required with pattern = \"strided\"".into(),
                        })?;
                        ensure(s >= 1, path, &f("stride"), || "must be at least 1".into())?;
                        PhasePattern::Strided(s)
                    }
                    PatternName::Zipf => {
                        let a = need(alpha, "alpha")?;
                        ensure(a > 0.0 && a <= 10.0, path, &f("alpha"), || {
                            format!("{a} is outside (0, 10]")
                        })?;
                        PhasePattern::Zipf(a)
                    }
                    PatternName::HotCold => {
                        let hf = need(hot_fraction, "hot_fraction")?;
                        let hp = need(hot_probability, "hot_probability")?;
                        ensure(hf > 0.0 && hf < 1.0, path, &f("hot_fraction"), || {
                            format!("{hf} is outside (0, 1)")
                        })?;
                        prob(hp, "hot_probability")?;
                        PhasePattern::HotCold(hf, hp)
                    }
                };
                Phase::Access {
                    region,
                    accesses,
                    pattern,
                    write_ratio,
                }
            }
            RawPhase::Madvise {
                region,
                advice,
                offset_mib,
                length_mib,
            } => {
                region_ok(region)?;
                let advice = match advice {
                    AdviceName::DontNeed => Advice::DontNeed,
                    AdviceName::Free => Advice::Free,
                    AdviceName::Cold => Advice::Cold,
                    AdviceName::PageOut => Advice::PageOut,
                    AdviceName::Mergeable => Advice::Mergeable,
                    AdviceName::Unmergeable => Advice::Unmergeable,
                    AdviceName::HugePage => Advice::HugePage,
                    AdviceName::NoHugePage => Advice::NoHugePage,
                };
                let pages = madvise_range(offset_mib, length_mib, path, &f)?;
                let field = if offset_mib.is_some() {
                    "offset_mib"
                } else {
                    "length_mib"
                };
                ensure(
                    pages.is_none() || !advice.is_vma_flag(),
                    path,
                    &f(field),
                    || {
                        "this advice sets a flag on the whole region (swapvm does not split VMAs); \
                     leave out offset_mib and length_mib"
                            .into()
                    },
                )?;
                Phase::Madvise {
                    region,
                    advice,
                    pages,
                }
            }
            RawPhase::Munmap { region } => {
                region_ok(region)?;
                Phase::Munmap { region }
            }
            RawPhase::Truncate { file, size_mib } => Phase::Truncate {
                file,
                pages: if size_mib == 0.0 {
                    0
                } else {
                    pages_of(size_mib, path, &f("size_mib"))?
                },
            },
            RawPhase::Unlink { file } => Phase::Unlink { file },
            RawPhase::Fork { children } => {
                ensure(
                    (1..=CHILDREN_MAX).contains(&children),
                    path,
                    &f("children"),
                    || format!("{children} is outside 1..={CHILDREN_MAX}"),
                )?;
                Phase::Fork { children }
            }
            RawPhase::Sleep { ticks } => {
                ensure(ticks <= 1 << 32, path, &f("ticks"), || {
                    format!("{ticks} is above 2^32")
                })?;
                Phase::Sleep { ticks }
            }
            RawPhase::Swapoff { device } => Phase::Swapoff { device },
            RawPhase::Swapon { device } => Phase::Swapon { device },
            RawPhase::Hibernate { device } => Phase::Hibernate { device },
            RawPhase::LruGen { ref cmd } => Phase::LruGen(
                swapvm_core::config::lru_gen::LruGenCmd::parse(cmd).map_err(|r| {
                    ConfigError::Invalid {
                        path: path.to_owned(),
                        field: f("cmd"),
                        reason: r,
                    }
                })?,
            ),
            RawPhase::CgroupWrite {
                ref cgroup,
                ref file,
                ref value,
            } => {
                check_cgroup_write(file, value).map_err(|r| ConfigError::Invalid {
                    path: path.to_owned(),
                    field: f("value"),
                    reason: r,
                })?;
                Phase::CgroupWrite(CgroupWrite {
                    cgroup: cgroup.clone(),
                    file: file.clone(),
                    value: value.clone(),
                    senpai: None,
                })
            }
            RawPhase::Senpai {
                ref cgroup,
                rounds,
                interval_ticks,
                pressure_us,
                max_probe,
                max_backoff,
                coeff_probe,
                coeff_backoff,
                min_mib,
            } => {
                // Senpai's own defaults: 6 s intervals, 10 ms of stall each.
                let interval_ticks = interval_ticks.unwrap_or(6000);
                let pressure_us = pressure_us.unwrap_or(10_000);
                let max_probe = max_probe.unwrap_or(0.01);
                let max_backoff = max_backoff.unwrap_or(1.0);
                let coeff_probe = coeff_probe.unwrap_or(10.0);
                let coeff_backoff = coeff_backoff.unwrap_or(20.0);
                let min_mib = min_mib.unwrap_or(1.0);
                ensure(rounds >= 1, path, &f("rounds"), || {
                    "must be at least 1".into()
                })?;
                ensure(
                    (1..=1 << 32).contains(&interval_ticks),
                    path,
                    &f("interval_ticks"),
                    || format!("{interval_ticks} is outside 1..=2^32"),
                )?;
                ensure(pressure_us > 0, path, &f("pressure_us"), || {
                    "must be positive".into()
                })?;
                for (name, v) in [("max_probe", max_probe), ("max_backoff", max_backoff)] {
                    ensure(v > 0.0 && v <= 1.0, path, &f(name), || {
                        format!("{v} is outside (0, 1]")
                    })?;
                }
                for (name, v) in [
                    ("coeff_probe", coeff_probe),
                    ("coeff_backoff", coeff_backoff),
                ] {
                    ensure(v > 0.0 && v.is_finite(), path, &f(name), || {
                        format!("{v} must be positive")
                    })?;
                }
                let min_pages = pages_of(min_mib, path, &f("min_mib"))?;
                Phase::CgroupWrite(CgroupWrite {
                    cgroup: cgroup.clone(),
                    file: "memory.high".into(),
                    value: String::new(),
                    senpai: Some(Senpai {
                        rounds,
                        interval_ticks,
                        pressure_us,
                        max_probe,
                        max_backoff,
                        coeff_probe,
                        coeff_backoff,
                        min_pages,
                    }),
                })
            }
        })
    }
}

impl Phase {
    /// Accesses the phase makes given the region sizes (touch: every page).
    fn accesses(&self, sizes: &[u64]) -> u64 {
        match *self {
            Phase::Touch { region, .. } => sizes.get(region as usize).copied().unwrap_or(0),
            Phase::Access { accesses, .. } => accesses,
            _ => 0,
        }
    }
    /// The phase shrunk by `factor` (sizes and counts, at least 1).
    pub(crate) fn scaled(&self, factor: f64) -> Phase {
        let s = |n: u64| ((n as f64 * factor).ceil() as u64).max(1);
        let mut p = self.clone();
        match &mut p {
            Phase::Mmap { pages, .. } => *pages = s(*pages),
            Phase::Access { accesses, .. } => *accesses = s(*accesses),
            Phase::Truncate { pages, .. } if *pages > 0 => *pages = s(*pages),
            _ => {}
        }
        p
    }
}

impl Program {
    /// Accesses one process of the program makes, its children included.
    pub fn accesses_total(&self) -> u64 {
        let mut sizes = vec![0u64; REGIONS_MAX as usize];
        let mut total = 0u64;
        let mut forks = 0u64;
        for p in &self.main {
            if let Phase::Mmap { region, pages, .. } = p {
                sizes[*region as usize] = *pages;
            }
            if let Phase::Fork { children } = p {
                let mut csizes = sizes.clone();
                let mut c = 0u64;
                for q in &self.child {
                    if let Phase::Mmap { region, pages, .. } = q {
                        csizes[*region as usize] = *pages;
                    }
                    c = c.saturating_add(q.accesses(&csizes));
                }
                forks = forks.saturating_add(u64::from(*children).saturating_mul(c));
            }
            total = total.saturating_add(p.accesses(&sizes));
        }
        total.saturating_add(forks)
    }
}

/// Where a phase program is.
#[derive(Debug, Clone)]
pub struct PhaseGen {
    name: String,
    program: Arc<Program>,
    child: bool,
    rng: SimRng,
    phase: usize,
    /// Progress inside the phase (pages touched, accesses made, children
    /// forked).
    step: u64,
    /// The write of the last [`Op::CgroupWrite`] returned, until taken
    /// (boxed: it is rare, and keeps the generator small).
    pending_write: Option<Box<CgroupWrite>>,
    /// Region sizes in pages (None: unmapped).
    regions: Vec<Option<u64>>,
    cursor: u64,
    zipf: Option<(u64, f64, Zipf<f64>)>,
    children: u64,
    accesses: u64,
    exited: bool,
}

impl PhaseGen {
    /// The generator of process `name` running `program`'s main phases.
    pub fn new(name: String, program: Arc<Program>, rng: SimRng) -> Self {
        PhaseGen {
            name,
            program,
            child: false,
            rng,
            phase: 0,
            step: 0,
            pending_write: None,
            regions: Vec::new(),
            cursor: 0,
            zipf: None,
            children: 0,
            accesses: 0,
            exited: false,
        }
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Accesses made so far.
    pub fn accesses_done(&self) -> u64 {
        self.accesses
    }

    /// The child's generator after this one emitted [`Op::Fork`]: it runs
    /// the program's child phases with the parent's regions.
    pub fn fork_child(&mut self) -> PhaseGen {
        self.children += 1;
        let seed = self.rng.next_u64();
        PhaseGen {
            name: format!("{}.{}", self.name, self.children),
            program: Arc::clone(&self.program),
            child: true,
            rng: SimRng::new(seed),
            phase: 0,
            step: 0,
            pending_write: None,
            regions: self.regions.clone(),
            cursor: 0,
            zipf: None,
            children: 0,
            accesses: 0,
            exited: false,
        }
    }

    /// The write of the [`Op::CgroupWrite`] just returned.
    pub fn take_cgroup_write(&mut self) -> Option<CgroupWrite> {
        self.pending_write.take().map(|w| *w)
    }

    fn phases(&self) -> &[Phase] {
        if self.child {
            &self.program.child
        } else {
            &self.program.main
        }
    }

    fn size(&self, region: u32) -> u64 {
        self.regions
            .get(region as usize)
            .copied()
            .flatten()
            .unwrap_or(0)
    }

    fn next_phase(&mut self) {
        self.phase += 1;
        self.step = 0;
        self.cursor = 0;
        self.zipf = None;
    }

    /// The next op; `None` after [`Op::Exit`].
    pub fn next_op(&mut self) -> Option<Op> {
        loop {
            if self.exited {
                return None;
            }
            let Some(p) = self.phases().get(self.phase).cloned() else {
                self.exited = true;
                return Some(Op::Exit);
            };
            match p {
                Phase::Mmap {
                    region,
                    pages,
                    backing,
                    file,
                } => {
                    self.next_phase();
                    if self.regions.len() <= region as usize {
                        self.regions.resize(region as usize + 1, None);
                    }
                    self.regions[region as usize] = Some(pages);
                    return Some(match backing {
                        Backing::Anon => Op::Mmap { region, pages },
                        Backing::Shared => Op::MmapShared { region, pages },
                        Backing::File => Op::ShmemMap {
                            region,
                            file,
                            pages,
                        },
                    });
                }
                Phase::Touch {
                    region,
                    ksm_share,
                    ksm_pool,
                } => {
                    let n = self.size(region);
                    if self.step >= n {
                        self.next_phase();
                        continue;
                    }
                    let page = self.step;
                    self.step += 1;
                    self.accesses += 1;
                    if ksm_share > 0.0 && self.rng.chance(ksm_share) {
                        let pool = self.rng.below(u64::from(ksm_pool)) as u32;
                        return Some(Op::Fill { region, page, pool });
                    }
                    return Some(Op::Access {
                        region,
                        page,
                        write: true,
                    });
                }
                Phase::Access {
                    region,
                    accesses,
                    pattern,
                    write_ratio,
                } => {
                    let n = self.size(region);
                    if self.step >= accesses || n == 0 {
                        self.next_phase();
                        continue;
                    }
                    self.step += 1;
                    self.accesses += 1;
                    let page = self.pick(n, pattern);
                    let write = self.rng.chance(write_ratio);
                    return Some(Op::Access {
                        region,
                        page,
                        write,
                    });
                }
                Phase::Madvise {
                    region,
                    advice,
                    pages,
                } => {
                    self.next_phase();
                    if self.size(region) > 0 {
                        return Some(Op::Madvise {
                            region,
                            advice,
                            pages,
                        });
                    }
                }
                Phase::Munmap { region } => {
                    self.next_phase();
                    if self.size(region) > 0 {
                        self.regions[region as usize] = None;
                        return Some(Op::Munmap { region });
                    }
                }
                Phase::Truncate { file, pages } => {
                    self.next_phase();
                    return Some(Op::ShmemTruncate { file, pages });
                }
                Phase::Unlink { file } => {
                    self.next_phase();
                    return Some(Op::ShmemUnlink { file });
                }
                Phase::Fork { children } => {
                    if self.step >= u64::from(children) {
                        self.next_phase();
                        continue;
                    }
                    self.step += 1;
                    return Some(Op::Fork);
                }
                Phase::Sleep { ticks } => {
                    self.next_phase();
                    return Some(Op::Sleep { ticks });
                }
                Phase::Swapoff { device } => {
                    self.next_phase();
                    return Some(Op::Swapoff { device });
                }
                Phase::Swapon { device } => {
                    self.next_phase();
                    return Some(Op::Swapon { device });
                }
                Phase::CgroupWrite(w) => {
                    let Some(c) = w.senpai else {
                        self.pending_write = Some(Box::new(w.clone()));
                        self.next_phase();
                        return Some(Op::CgroupWrite);
                    };
                    // A controller: sleep, write, `rounds` times.
                    if self.step >= 2 * u64::from(c.rounds) {
                        self.next_phase();
                        continue;
                    }
                    self.step += 1;
                    if self.step % 2 == 1 {
                        return Some(Op::Sleep {
                            ticks: c.interval_ticks,
                        });
                    }
                    self.pending_write = Some(Box::new(w.clone()));
                    return Some(Op::CgroupWrite);
                }
                Phase::Hibernate { device } => {
                    self.next_phase();
                    return Some(Op::Hibernate { device });
                }
                Phase::LruGen(cmd) => {
                    self.next_phase();
                    return Some(Op::LruGen(cmd));
                }
            }
        }
    }

    fn pick(&mut self, n: u64, pattern: PhasePattern) -> u64 {
        match pattern {
            PhasePattern::Sequential => {
                let p = self.cursor % n;
                self.cursor += 1;
                p
            }
            PhasePattern::Strided(s) => {
                // Pages 0, s, 2s, ..., then 1, 1 + s, ...: each lap of the
                // region visits every page once.
                let s = s.min(n);
                let per = n.div_ceil(s);
                loop {
                    let slot = self.cursor % (per * s);
                    self.cursor += 1;
                    let pos = (slot % per) * s + slot / per;
                    if pos < n {
                        return pos;
                    }
                }
            }
            PhasePattern::Random => self.rng.below(n),
            PhasePattern::Zipf(alpha) => {
                let fresh = !matches!(self.zipf, Some((m, a, _)) if m == n && a == alpha);
                if fresh {
                    // Zipf::new fails only for n = 0 or alpha <= 0, which
                    // validation and the n == 0 check above rule out.
                    self.zipf = Zipf::new(n, alpha).ok().map(|z| (n, alpha, z));
                }
                match &self.zipf {
                    Some((_, _, z)) => (z.sample(&mut self.rng) as u64).clamp(1, n) - 1,
                    None => self.rng.below(n),
                }
            }
            PhasePattern::HotCold(hf, hp) => {
                let hot = ((n as f64 * hf) as u64).clamp(1, n.saturating_sub(1).max(1));
                if self.rng.chance(hp) || hot >= n {
                    self.rng.below(hot)
                } else {
                    hot + self.rng.below(n - hot)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(main: Vec<Phase>, child: Vec<Phase>) -> PhaseGen {
        PhaseGen::new(
            "t".into(),
            Arc::new(Program { main, child }),
            SimRng::new(1),
        )
    }

    #[test]
    fn zipf_is_skewed_to_low_pages_and_strided_covers_every_page() {
        let mut g = gen(Vec::new(), Vec::new());
        let mut low = 0;
        for _ in 0..10_000 {
            if g.pick(1000, PhasePattern::Zipf(0.9)) < 10 {
                low += 1;
            }
        }
        // Uniform would put 1% in the first 10 pages; zipf 0.9 about 40%.
        assert!(low > 2_000, "{low}");
        let mut seen = vec![false; 10];
        for _ in 0..10 {
            seen[g.pick(10, PhasePattern::Strided(3)) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
    }

    #[test]
    fn a_program_maps_touches_forks_and_exits_and_counts_its_accesses() {
        let main = vec![
            Phase::Mmap {
                region: 0,
                pages: 4,
                backing: Backing::Anon,
                file: 0,
            },
            Phase::Touch {
                region: 0,
                ksm_share: 0.0,
                ksm_pool: 1,
            },
            Phase::Fork { children: 2 },
            Phase::Sleep { ticks: 3 },
        ];
        let child = vec![Phase::Access {
            region: 0,
            accesses: 5,
            pattern: PhasePattern::Random,
            write_ratio: 0.5,
        }];
        let prog = Program {
            main: main.clone(),
            child: child.clone(),
        };
        assert_eq!(prog.accesses_total(), 4 + 2 * 5);
        let mut g = gen(main, child);
        let mut ops = Vec::new();
        let mut kids = Vec::new();
        while let Some(op) = g.next_op() {
            if op == Op::Fork {
                kids.push(g.fork_child());
            }
            ops.push(op);
        }
        assert_eq!(ops.len(), 1 + 4 + 2 + 1 + 1);
        assert_eq!(ops.last(), Some(&Op::Exit));
        for mut k in kids {
            let n = std::iter::from_fn(|| k.next_op())
                .filter(|o| matches!(o, Op::Access { region: 0, .. }))
                .count();
            assert_eq!(n, 5, "the child inherits region 0");
        }
    }
}
