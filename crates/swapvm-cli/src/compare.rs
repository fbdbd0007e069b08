//! `swapvm compare`: arguments to columns, and the comparison printed as
//! text, CSV or JSON (the arithmetic is swapvm_machine::compare's).

use anyhow::{bail, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use swapvm_machine::compare::{self, Column, CompareError, Only, Row, Select, Sort};

/// Set runs side by side: counters, delta and percent against the first
/// column; with several runs per column, mean, standard deviation and a
/// `*` where Welch's t-test finds the difference beyond noise.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Each RUN is a report.json, a run folder (one run, its own column), or a \
                  folder of run folders (OUT/seed1, OUT/seed2, ...: one column of all of them). \
                  --group NAME=GLOB makes a column of the runs a pattern matches (quote it: \
                  --group 'pc0=A/seed*'). Columns: the RUNs in order, then the groups; the first \
                  is the baseline."
)]
pub struct CompareArgs {
    /// Reports, run folders, or folders of run folders.
    #[arg(value_name = "RUN")]
    runs: Vec<PathBuf>,
    /// A column of the runs that GLOB matches (`*`, `?`), named NAME
    /// (repeatable).
    #[arg(long, value_name = "NAME=GLOB", value_parser = parse_group)]
    group: Vec<(String, String)>,
    /// Only these counters: swap (pswp*, swap_*, *swpout*, workingset_*,
    /// pgmajfault) or all.
    #[arg(long, default_value = "all", value_parser = parse_only)]
    only: Only,
    /// Only counters whose name contains this.
    #[arg(long, value_name = "PATTERN")]
    grep: Option<String>,
    /// Row order: report (the kernel's vmstat order), name, or change
    /// (largest percent change first).
    #[arg(long, default_value = "report", value_parser = parse_sort)]
    sort: Sort,
    /// Show counters that are zero in every run too.
    #[arg(long)]
    zeros: bool,
    /// Significance level of the two-sided Welch t-test.
    #[arg(long, default_value_t = compare::ALPHA, value_parser = parse_alpha)]
    alpha: f64,
    /// JSON on stdout.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// CSV on stdout: one row per counter and column.
    #[arg(long)]
    csv: bool,
}

fn parse_group(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((n, g)) if !n.trim().is_empty() && !g.trim().is_empty() => {
            Ok((n.trim().to_owned(), g.trim().to_owned()))
        }
        _ => Err("expected NAME=GLOB, e.g. pc0='runs/pc0/seed*'".into()),
    }
}

fn parse_only(s: &str) -> Result<Only, String> {
    match s {
        "all" => Ok(Only::All),
        "swap" => Ok(Only::Swap),
        _ => Err(format!("{s:?}: expected swap or all")),
    }
}

fn parse_sort(s: &str) -> Result<Sort, String> {
    match s {
        "report" => Ok(Sort::Report),
        "name" => Ok(Sort::Name),
        "change" => Ok(Sort::Change),
        _ => Err(format!("{s:?}: expected report, name or change")),
    }
}

fn parse_alpha(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(a) if a > 0.0 && a < 1.0 => Ok(a),
        _ => Err(format!(
            "{s:?}: expected a level between 0 and 1, e.g. 0.05"
        )),
    }
}

/// A name for a run or folder: its last component (a report file's
/// folder, unless the file is named otherwise than report.json).
fn name_of(p: &Path) -> String {
    let p = if p.file_name().is_some_and(|n| n == "report.json") {
        p.parent().unwrap_or(p)
    } else {
        p
    };
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn read_all(paths: &[PathBuf]) -> Result<Vec<compare::RunCounters>, CompareError> {
    paths.iter().map(|p| compare::read_run(p)).collect()
}

/// The columns the arguments name.
fn columns(a: &CompareArgs) -> Result<Vec<Column>> {
    let mut cols = Vec::new();
    for p in &a.runs {
        let lossy = p.to_string_lossy();
        let runs = if p.is_dir() && !p.join("report.json").exists() {
            let runs = compare::runs_in(p)?;
            if runs.is_empty() {
                return Err(CompareError::Empty {
                    what: format!("{} (a folder of run folders?)", p.display()),
                }
                .into());
            }
            read_all(&runs)?
        } else if !p.exists() && lossy.contains(['*', '?']) {
            // A pattern the shell did not expand (quoted).
            let runs = compare::glob(&lossy);
            if runs.is_empty() {
                return Err(CompareError::Empty {
                    what: lossy.into_owned(),
                }
                .into());
            }
            read_all(&runs)?
        } else {
            vec![compare::read_run(p)?]
        };
        cols.push(Column {
            name: name_of(p),
            runs,
        });
    }
    for (name, pattern) in &a.group {
        let runs = compare::glob(pattern);
        if runs.is_empty() {
            return Err(CompareError::Empty {
                what: format!("--group {name}={pattern}"),
            }
            .into());
        }
        cols.push(Column {
            name: name.clone(),
            runs: read_all(&runs)?,
        });
    }
    if cols.is_empty() {
        bail!("nothing to compare: name report.json files, run folders, or --group NAME=GLOB");
    }
    compare::check_schemas(&cols)?;
    Ok(cols)
}

/// `swapvm compare`.
pub fn run(a: CompareArgs) -> Result<i32> {
    let cols = columns(&a)?;
    let sel = Select {
        only: a.only,
        grep: a.grep.clone(),
        zeros: a.zeros,
        sort: a.sort,
        alpha: a.alpha,
    };
    let rows = compare::compare(&cols, &sel);
    let mut o = std::io::stdout().lock();
    if a.json {
        writeln!(
            o,
            "{}",
            serde_json::to_string_pretty(&json(&cols, &rows, a.alpha))?
        )?;
    } else if a.csv {
        write_csv(&mut o, &cols, &rows)?;
    } else {
        write_text(&mut o, &cols, &rows, a.alpha)?;
    }
    Ok(0)
}

fn json(cols: &[Column], rows: &[Row], alpha: f64) -> serde_json::Value {
    serde_json::json!({
        "alpha": alpha,
        "test": "welch-t-two-sided",
        "columns": cols.iter().map(|c| serde_json::json!({
            "name": c.name,
            "runs": c.runs.iter().map(|r| r.path.display().to_string()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "counters": rows,
    })
}

/// The CSV's columns, in order.
pub const CSV_HEADER: &str = "counter,column,runs,mean,sd,delta,pct,p,significant";

fn write_csv(o: &mut impl Write, cols: &[Column], rows: &[Row]) -> std::io::Result<()> {
    writeln!(o, "{CSV_HEADER}")?;
    let opt = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
    for r in rows {
        for (c, cell) in cols.iter().zip(&r.cells) {
            writeln!(
                o,
                "{},{},{},{},{},{},{},{},{}",
                csv_field(&r.counter),
                csv_field(&c.name),
                cell.n,
                cell.mean,
                cell.sd,
                cell.delta,
                opt(cell.pct),
                opt(cell.p),
                cell.significant
            )?;
        }
    }
    Ok(())
}

/// A CSV field, quoted when it holds a comma, quote or newline.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// compare-kernels' layout: a column per run or group, `mean ± sd` where
/// it has several runs, the percent change against the first column in
/// parentheses, and `*` where the difference is significant.
fn write_text(
    o: &mut impl Write,
    cols: &[Column],
    rows: &[Row],
    alpha: f64,
) -> std::io::Result<()> {
    let cell_text = |i: usize, c: &compare::Cell| {
        let mut s = num(c.mean);
        if c.n > 1 {
            s.push_str(&format!(" ±{}", num(c.sd)));
        }
        if i > 0 {
            match c.pct {
                Some(p) => s.push_str(&format!(" ({p:+7.2}%)")),
                None => s.push_str(" (     new)"),
            }
            s.push_str(if c.significant { " *" } else { "  " });
        }
        s
    };
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.cells
                .iter()
                .enumerate()
                .map(|(i, c)| cell_text(i, c))
                .collect()
        })
        .collect();
    let heads: Vec<(String, String)> = cols
        .iter()
        .map(|c| {
            let n = c.runs.len();
            (
                c.name.clone(),
                format!("({n} run{})", if n == 1 { "" } else { "s" }),
            )
        })
        .collect();
    let name_w = rows
        .iter()
        .map(|r| r.counter.len())
        .chain([7])
        .max()
        .unwrap_or(7);
    let widths: Vec<usize> = (0..cols.len())
        .map(|i| {
            table
                .iter()
                .map(|row| row[i].chars().count())
                .chain([heads[i].0.chars().count(), heads[i].1.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    for line in 0..2 {
        write!(o, "{:<name_w$}", "")?;
        for (i, h) in heads.iter().enumerate() {
            let text = if line == 0 { &h.0 } else { &h.1 };
            write!(o, "  {:>w$}", text, w = widths[i])?;
        }
        writeln!(o)?;
    }
    for (r, cells) in rows.iter().zip(&table) {
        let mut l = format!("{:<name_w$}", r.counter);
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(c.chars().count());
            l.push_str(&format!("  {:pad$}{c}", ""));
        }
        writeln!(o, "{}", l.trim_end())?;
    }
    if rows.is_empty() {
        writeln!(o, "(no counters to show)")?;
    }
    if cols.len() > 1 {
        writeln!(
            o,
            "\nPercent change against {}; * marks a difference beyond noise: Welch's t-test, \
             two-sided, p < {alpha} (columns of 2 runs or more).",
            cols[0].name
        )?;
    }
    Ok(())
}
