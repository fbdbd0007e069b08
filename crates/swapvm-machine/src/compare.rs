//! `swapvm compare`: the counters of runs side by side, in the manner of
//! mmtests' compare-kernels.
//!
//! A column is one run or a group of runs (several seeds of one config).
//! Each counter gets, per column, the mean and the sample standard
//! deviation over the column's runs, and against the first column the
//! delta and the percent change of the mean; where both columns have at
//! least two runs, Welch's t-test (unequal variances) gives a two-sided
//! p-value, and a difference with p below the significance level (default
//! [`ALPHA`]) is marked significant.
//!
//! This module reads reports and does the arithmetic; the binary parses
//! the arguments and prints text, CSV or JSON.

use std::path::{Path, PathBuf};

/// Default significance level of the Welch t-test: 5 %, two-sided.
pub const ALPHA: f64 = 0.05;

/// A report that cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The file could not be read.
    #[error("{}: cannot read", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a swapvm report.json.
    #[error("{}: not a swapvm report.json: {reason}", path.display())]
    NotAReport {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// A `schema_version` this swapvm does not read, or two inputs of
    /// different versions.
    #[error("{}: {reason}", path.display())]
    Schema {
        /// The file.
        path: PathBuf,
        /// Which versions.
        reason: String,
    },
    /// A folder or pattern that holds no report.
    #[error("{what}: no report.json found")]
    Empty {
        /// The argument.
        what: String,
    },
}

/// The counters of one run, read from its report.json.
#[derive(Debug, Clone, PartialEq)]
pub struct RunCounters {
    /// The report file.
    pub path: PathBuf,
    /// Its `schema_version` (1 when absent).
    pub schema_version: u64,
    /// `vmstat` in the report's order.
    pub vmstat: Vec<(String, u64)>,
}

/// The report file of `path`: itself, or `path/report.json` for a folder.
pub fn report_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("report.json")
    } else {
        path.to_owned()
    }
}

/// Reads the counters of the report at `path` (a report.json or a run
/// folder). Schema 2 has `vmstat` as an object, schema 1 (no
/// `schema_version`) as a list of `[name, value]` pairs.
///
/// # Errors
/// [`CompareError`] naming the file: unreadable, not JSON, no `vmstat`, a
/// counter that is not a non-negative integer, or a schema version other
/// than 1 and 2.
pub fn read_run(path: &Path) -> Result<RunCounters, CompareError> {
    let path = report_path(path);
    let text = std::fs::read_to_string(&path).map_err(|source| CompareError::Read {
        path: path.clone(),
        source,
    })?;
    let not = |reason: String| CompareError::NotAReport {
        path: path.clone(),
        reason,
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| not(format!("not JSON ({e})")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| not("not a JSON object".into()))?;
    let schema_version = match obj.get("schema_version") {
        None => 1,
        Some(s) => s
            .as_u64()
            .ok_or_else(|| not(format!("schema_version is {s}, not an integer")))?,
    };
    if !(1..=crate::report::SCHEMA_VERSION as u64).contains(&schema_version) {
        return Err(CompareError::Schema {
            path,
            reason: format!(
                "schema_version {schema_version}: this swapvm reads 1 to {}",
                crate::report::SCHEMA_VERSION
            ),
        });
    }
    let count = |name: &str, x: &serde_json::Value| {
        x.as_u64()
            .ok_or_else(|| not(format!("vmstat counter {name:?} is {x}, not a count")))
    };
    let vmstat = match (schema_version, obj.get("vmstat")) {
        (_, None) => return Err(not("no `vmstat`".into())),
        (2.., Some(serde_json::Value::Object(m))) => m
            .iter()
            .map(|(k, x)| Ok((k.clone(), count(k, x)?)))
            .collect::<Result<Vec<_>, _>>()?,
        (1, Some(serde_json::Value::Array(pairs))) => pairs
            .iter()
            .map(|p| match p.as_array().map(Vec::as_slice) {
                Some([serde_json::Value::String(k), x]) => Ok((k.clone(), count(k, x)?)),
                _ => Err(not(format!("vmstat entry {p} is not a [name, value] pair"))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        (n, Some(_)) => {
            let want = if n == 1 {
                "a list of pairs"
            } else {
                "an object"
            };
            return Err(not(format!("schema {n} has `vmstat` as {want}")));
        }
    };
    Ok(RunCounters {
        path,
        schema_version,
        vmstat,
    })
}

/// The runs of a folder of run folders (`OUT/seed1`, `OUT/seed2`, ...):
/// each sub-folder with a report.json, by name.
///
/// # Errors
/// [`CompareError::Read`] when the folder cannot be listed.
pub fn runs_in(dir: &Path) -> Result<Vec<PathBuf>, CompareError> {
    let rd = std::fs::read_dir(dir).map_err(|source| CompareError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut runs: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("report.json").is_file())
        .collect();
    runs.sort();
    Ok(runs)
}

/// Paths matching `pattern`, sorted: `*` (any characters but `/`) and `?`
/// (one) in any component, as a shell expands `A/seed*`.
pub fn glob(pattern: &str) -> Vec<PathBuf> {
    let (mut found, rest) = if let Some(r) = pattern.strip_prefix('/') {
        (vec![PathBuf::from("/")], r)
    } else {
        (vec![PathBuf::new()], pattern)
    };
    for comp in rest.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for base in &found {
            if !comp.contains(['*', '?']) {
                let p = base.join(comp);
                if p.exists() {
                    next.push(p);
                }
                continue;
            }
            let dir = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base.as_path()
            };
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in rd.filter_map(Result::ok) {
                let name = e.file_name();
                if let Some(n) = name.to_str() {
                    if !n.starts_with('.') && wildcard(comp.as_bytes(), n.as_bytes()) {
                        next.push(base.join(n));
                    }
                }
            }
        }
        found = next;
    }
    found.sort();
    found.retain(|p| !p.as_os_str().is_empty());
    found
}

/// `*` and `?` matching of one path component.
fn wildcard(pat: &[u8], s: &[u8]) -> bool {
    match (pat.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&pat[1..], s) || (!s.is_empty() && wildcard(pat, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&pat[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&pat[1..], &s[1..]),
        _ => false,
    }
}

/// A column: a name and its runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Shown at the head of the column.
    pub name: String,
    /// The runs, each a report's counters.
    pub runs: Vec<RunCounters>,
}

/// One counter in one column.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Cell {
    /// Runs.
    pub n: usize,
    /// Mean over the runs.
    pub mean: f64,
    /// Sample standard deviation (0 for one run).
    pub sd: f64,
    /// Mean minus the first column's mean.
    pub delta: f64,
    /// `delta` in percent of the first column's mean (`None` when that is
    /// 0 and this is not).
    pub pct: Option<f64>,
    /// Two-sided p-value of Welch's t-test against the first column
    /// (`None` for the first column, or with fewer than two runs a side).
    pub p: Option<f64>,
    /// `p` below the significance level.
    pub significant: bool,
}

/// One counter across the columns.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    /// The counter's kernel name.
    pub counter: String,
    /// One cell per column.
    pub cells: Vec<Cell>,
}

/// The counters selected by `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Only {
    /// Every counter.
    All,
    /// Swap-related counters: [`is_swap_counter`].
    Swap,
}

/// Swap-related: the name has `swp` or `swap` in it (pswpin, pswpout,
/// swap_ra, swap_ra_hit, thp_swpout, swpout_*) but is not kswapd's
/// (`pgscan_kswapd` is reclaim), or is a refault (`workingset_*`) or a
/// major fault (`pgmajfault`), which swap-ins are.
pub fn is_swap_counter(name: &str) -> bool {
    (name.contains("swp") || name.replace("kswapd", "").contains("swap"))
        || name.starts_with("workingset_")
        || name == "pgmajfault"
}

/// How the rows are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// The report's order (the kernel's vmstat order).
    Report,
    /// By counter name.
    Name,
    /// By the largest absolute percent change in any column, largest
    /// first (a new non-zero counter, with no percent, first of all).
    Change,
}

/// What to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// `--only`.
    pub only: Only,
    /// `--grep`: counters whose name contains it.
    pub grep: Option<String>,
    /// Keep counters that are zero in every run.
    pub zeros: bool,
    /// Row order.
    pub sort: Sort,
    /// Significance level of the t-test.
    pub alpha: f64,
}

impl Default for Select {
    fn default() -> Self {
        Select {
            only: Only::All,
            grep: None,
            zeros: false,
            sort: Sort::Report,
            alpha: ALPHA,
        }
    }
}

/// Checks that every run in `columns` has the same schema version.
///
/// # Errors
/// [`CompareError::Schema`] naming the first run that differs from the
/// first run.
pub fn check_schemas(columns: &[Column]) -> Result<(), CompareError> {
    let mut runs = columns.iter().flat_map(|c| &c.runs);
    let Some(first) = runs.next() else {
        return Ok(());
    };
    match runs.find(|r| r.schema_version != first.schema_version) {
        Some(r) => Err(CompareError::Schema {
            path: r.path.clone(),
            reason: format!(
                "schema_version {} but {} has {}; compare reports of one layout",
                r.schema_version,
                first.path.display(),
                first.schema_version
            ),
        }),
        None => Ok(()),
    }
}

/// The rows of the comparison: each counter any run has (in the first
/// run's order, then any others in the order they appear), a cell per
/// column. A run without a counter counts it as 0.
pub fn compare(columns: &[Column], sel: &Select) -> Vec<Row> {
    let mut names: Vec<&str> = Vec::new();
    for r in columns.iter().flat_map(|c| &c.runs) {
        for (k, _) in &r.vmstat {
            if !names.contains(&k.as_str()) {
                names.push(k);
            }
        }
    }
    let mut rows: Vec<Row> = names
        .into_iter()
        .filter(|n| sel.only == Only::All || is_swap_counter(n))
        .filter(|n| sel.grep.as_deref().is_none_or(|g| n.contains(g)))
        .map(|name| {
            let values: Vec<Vec<f64>> = columns
                .iter()
                .map(|c| c.runs.iter().map(|r| value(r, name)).collect())
                .collect();
            Row {
                counter: name.to_owned(),
                cells: cells(&values, sel.alpha),
            }
        })
        .filter(|r| sel.zeros || r.cells.iter().any(|c| c.mean != 0.0 || c.sd != 0.0))
        .collect();
    match sel.sort {
        Sort::Report => {}
        Sort::Name => rows.sort_by(|a, b| a.counter.cmp(&b.counter)),
        Sort::Change => {
            let key = |r: &Row| {
                r.cells
                    .iter()
                    .skip(1)
                    .map(|c| match c.pct {
                        Some(p) => p.abs(),
                        None => f64::INFINITY,
                    })
                    .fold(0.0, f64::max)
            };
            rows.sort_by(|a, b| key(b).total_cmp(&key(a)));
        }
    }
    rows
}

fn value(r: &RunCounters, name: &str) -> f64 {
    r.vmstat
        .iter()
        .find(|(k, _)| k == name)
        .map_or(0.0, |(_, v)| *v as f64)
}

/// Mean and sample standard deviation.
fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

fn cells(values: &[Vec<f64>], alpha: f64) -> Vec<Cell> {
    let base = values.first().map(|v| mean_sd(v)).unwrap_or((0.0, 0.0));
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let (mean, sd) = mean_sd(v);
            let delta = mean - base.0;
            let pct = if base.0 != 0.0 {
                Some(delta / base.0 * 100.0)
            } else if delta == 0.0 {
                Some(0.0)
            } else {
                None
            };
            let p = if i == 0 { None } else { welch_p(&values[0], v) };
            Cell {
                n: v.len(),
                mean,
                sd,
                delta,
                pct,
                p,
                significant: p.is_some_and(|p| p < alpha),
            }
        })
        .collect()
}

/// Two-sided p-value of Welch's t-test that `a` and `b` have the same
/// mean; `None` with fewer than two samples on a side. Two samples with no
/// spread at all are the same (p = 1) or differ for certain (p = 0): a
/// deterministic emulator gives both.
pub fn welch_p(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let ((ma, sa), (mb, sb)) = (mean_sd(a), mean_sd(b));
    let (va, vb) = (sa * sa / a.len() as f64, sb * sb / b.len() as f64);
    let se2 = va + vb;
    if se2 == 0.0 {
        return Some(if ma == mb { 1.0 } else { 0.0 });
    }
    let t = (ma - mb) / se2.sqrt();
    // Welch–Satterthwaite degrees of freedom.
    let df = se2 * se2 / (va * va / (a.len() as f64 - 1.0) + vb * vb / (b.len() as f64 - 1.0));
    Some(student_t_two_sided(t, df))
}

/// P(|T| >= |t|) for Student's t with `df` degrees of freedom:
/// I_{df/(df+t²)}(df/2, 1/2), the regularised incomplete beta function.
pub fn student_t_two_sided(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    inc_beta(df / 2.0, 0.5, x).clamp(0.0, 1.0)
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; about 15 digits).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1-x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularised incomplete beta function I_x(a, b), by its continued
/// fraction (modified Lentz), using the symmetry I_x(a,b) = 1 - I_{1-x}(b,a)
/// where the fraction converges slowly.
fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        for num in [
            m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),
        ] {
            d = 1.0 + num * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + num / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn student_t_matches_tables() {
        // Two-sided critical values: t(0.975, df) from standard tables.
        for (t, df) in [(12.706, 1.0), (2.776, 4.0), (2.306, 8.0), (1.960, 1e6)] {
            let p = student_t_two_sided(t, df);
            assert!(close(p, 0.05, 2e-4), "t={t} df={df}: p={p}");
        }
        assert!(close(student_t_two_sided(0.0, 5.0), 1.0, 1e-12));
        // df = 1 is Cauchy: P(|T| >= 1) = 1/2.
        assert!(close(student_t_two_sided(1.0, 1.0), 0.5, 1e-12));
    }

    #[test]
    fn welch_marks_a_clear_difference_and_not_noise() {
        let a = [100.0, 102.0, 98.0, 101.0, 99.0];
        let b = [120.0, 118.0, 121.0, 119.0, 122.0];
        assert!(welch_p(&a, &b).is_some_and(|p| p < 1e-5));
        let c = [101.0, 99.0, 100.0, 103.0, 97.0];
        assert!(welch_p(&a, &c).is_some_and(|p| p > 0.5));
        assert_eq!(welch_p(&a, &a), Some(1.0));
        assert_eq!(welch_p(&[5.0, 5.0], &[5.0, 5.0]), Some(1.0));
        assert_eq!(welch_p(&[5.0, 5.0], &[6.0, 6.0]), Some(0.0));
        assert_eq!(welch_p(&[5.0], &[6.0, 6.0]), None);
        // t = -2.2514, df = 5.5208; p = 0.069134 by integrating the t
        // density numerically (an independent check of the beta route).
        let p = welch_p(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 6.0, 8.0, 10.0]);
        assert!(p.is_some_and(|p| close(p, 0.069134, 1e-6)), "{p:?}");
    }

    #[test]
    fn swap_counters_leave_out_kswapd_reclaim() {
        for n in [
            "pswpin",
            "swap_ra",
            "thp_swpout",
            "workingset_refault_anon",
            "pgmajfault",
        ] {
            assert!(is_swap_counter(n), "{n}");
        }
        for n in ["pgscan_kswapd", "pgsteal_kswapd", "pgfault", "pgfree"] {
            assert!(!is_swap_counter(n), "{n}");
        }
    }

    #[test]
    fn globs_match_components() {
        assert!(wildcard(b"seed*", b"seed12"));
        assert!(wildcard(b"s?ed*", b"seed"));
        assert!(!wildcard(b"seed*", b"base"));
        assert!(wildcard(b"*", b""));
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["A/seed1", "A/seed2", "A/other", "B/seed1"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        let root = dir.path().display().to_string();
        let got = glob(&format!("{root}/A/seed*"));
        let want: Vec<PathBuf> = ["A/seed1", "A/seed2"]
            .iter()
            .map(|d| dir.path().join(d))
            .collect();
        assert_eq!(got, want);
        assert_eq!(glob(&format!("{root}/*/seed1")).len(), 2);
        assert!(glob(&format!("{root}/C/*")).is_empty());
    }
}
