//! A study's state on disk and its results: `OUT/results.csv` and
//! `OUT/results.jsonl`, one row per run in study order.
//!
//! Columns, in this order (the same keys in each JSON line):
//!
//! 1. `index`, `run_id`
//! 2. the axes in the spec's study order (keys in byte order, then
//!    `workload` if it is an axis), then `seed`
//! 3. `status` (`done`, `failed`: the run ended with a code other than 0
//!    or 3, or without a report; `missing`: not run yet, or half-written),
//!    `exit_code` (empty when missing)
//! 4. `wall_ms` (the task's process, start to folder written; the
//!    report's own when the sweep was killed before it wrote its marker),
//!    `run_wall_ms` (the emulation's, report.json `wall_ms`)
//! 5. `ticks`, `accesses`
//! 6. every vmstat counter in `VmEvent` declaration order (report.json's
//!    `vmstat` order)
//!
//! Counters of a run that is not done are empty.

use super::spec::{Run, Spec};
use super::task::{run_dir, Marker, MARKER};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;
use swapvm_machine::Report;

/// A run's state in its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A complete run folder and a report (exit 0 or 3).
    Done,
    /// Ran and failed (exit 1, 2, or no report after the task ended).
    Failed,
    /// Not run, or half-written (to be redone).
    Missing,
}

impl Status {
    /// The `status` column's word.
    pub fn name(self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Missing => "missing",
        }
    }
}

/// What the folder of one run holds.
#[derive(Debug, Clone)]
pub struct RunState {
    /// Done, failed or missing.
    pub status: Status,
    /// The task's marker, when it wrote one.
    pub marker: Option<Marker>,
    /// The report, when the folder is complete.
    pub report: Option<Report>,
}

impl RunState {
    /// A run that needs no rerun: done, or failed with a complete folder
    /// (a deterministic failure would fail again).
    pub fn finished(&self) -> bool {
        self.report.is_some()
    }
}

/// The report of a complete run folder: every file of the run folder
/// present and report.json whole and not interrupted. `None` otherwise.
pub fn complete_report(dir: &Path) -> Option<Report> {
    if !swapvm_machine::run_folder::FILES
        .iter()
        .all(|f| dir.join(f).is_file())
    {
        return None;
    }
    let text = std::fs::read_to_string(dir.join("report.json")).ok()?;
    let report: Report = serde_json::from_str(&text).ok()?;
    (!report.interrupted).then_some(report)
}

/// The state of `run` in `out`.
pub fn state(out: &Path, run: &Run) -> RunState {
    let dir = run_dir(out, run);
    let marker: Option<Marker> = std::fs::read_to_string(dir.join(MARKER))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let report = complete_report(&dir);
    let code = marker
        .as_ref()
        .map(|m| m.exit_code)
        .or_else(|| report.as_ref().map(|r| r.outcome().exit_code()));
    let status = match (&report, code) {
        (Some(_), Some(0 | 3)) => Status::Done,
        (Some(_), _) => Status::Failed,
        // A marker without a complete folder: the task gave up (bad
        // input, a crash); it is redone, but counted as failed until then.
        (None, Some(c)) if c != 130 => Status::Failed,
        (None, _) => Status::Missing,
    };
    RunState {
        status,
        marker,
        report,
    }
}

/// The column names, in order.
pub fn columns(spec: &Spec) -> Vec<String> {
    let mut c: Vec<String> = ["index", "run_id"].map(String::from).to_vec();
    c.extend(spec.axis_keys());
    c.extend(
        [
            "status",
            "exit_code",
            "wall_ms",
            "run_wall_ms",
            "ticks",
            "accesses",
        ]
        .map(String::from),
    );
    c.extend(
        swapvm_core::VmEvent::ALL
            .iter()
            .map(|e| e.name().to_owned()),
    );
    c
}

/// One cell: text, or a number (unquoted in JSON).
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Text (axis values that are not numbers, the id, the status).
    Text(String),
    /// A number.
    Num(u64),
    /// Empty (a counter of a run that is not done).
    Empty,
}

/// A value as a cell: numbers stay numbers.
fn axis_cell(v: &str) -> Cell {
    v.parse::<u64>()
        .map_or_else(|_| Cell::Text(v.to_owned()), Cell::Num)
}

/// One row per run, in the order of [`columns`].
pub fn rows(spec: &Spec, runs: &[Run], out: &Path) -> Vec<Vec<Cell>> {
    runs.iter()
        .map(|run| {
            let st = state(out, run);
            let mut row = vec![Cell::Num(run.index as u64), Cell::Text(run.id.clone())];
            row.extend(run.axis_values.iter().map(|(_, v)| axis_cell(v)));
            row.push(Cell::Text(st.status.name().into()));
            let code = st
                .marker
                .as_ref()
                .map(|m| m.exit_code)
                .or_else(|| st.report.as_ref().map(|r| r.outcome().exit_code()));
            row.push(code.map_or(Cell::Empty, |c| Cell::Text(c.to_string())));
            let wall = st
                .marker
                .as_ref()
                .map(|m| m.wall_ms)
                .or_else(|| st.report.as_ref().map(|r| r.wall_ms));
            row.push(wall.map_or(Cell::Empty, Cell::Num));
            match &st.report {
                Some(r) => {
                    row.extend([r.wall_ms, r.ticks, r.accesses].map(Cell::Num));
                    for e in swapvm_core::VmEvent::ALL {
                        let v = r
                            .vmstat
                            .iter()
                            .find(|(n, _)| n == e.name())
                            .map(|(_, v)| *v);
                        row.push(v.map_or(Cell::Empty, Cell::Num));
                    }
                }
                None => row.extend(std::iter::repeat_n(
                    Cell::Empty,
                    3 + swapvm_core::VmEvent::ALL.len(),
                )),
            }
            debug_assert_eq!(row.len(), columns(spec).len());
            row
        })
        .collect()
}

/// A CSV field: quoted when it must be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// results.csv's text.
pub fn csv(cols: &[String], rows: &[Vec<Cell>]) -> String {
    let mut s = cols
        .iter()
        .map(|c| csv_field(c))
        .collect::<Vec<_>>()
        .join(",");
    s.push('\n');
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .map(|c| match c {
                Cell::Text(t) => csv_field(t),
                Cell::Num(n) => n.to_string(),
                Cell::Empty => String::new(),
            })
            .collect();
        s.push_str(&cells.join(","));
        s.push('\n');
    }
    s
}

/// results.jsonl's text: one object per row, keys in column order.
pub fn jsonl(cols: &[String], rows: &[Vec<Cell>]) -> String {
    let mut s = String::new();
    for row in rows {
        let fields: Vec<String> = cols
            .iter()
            .zip(row)
            .map(|(k, c)| {
                let v = match c {
                    Cell::Text(t) => serde_json::Value::String(t.clone()).to_string(),
                    Cell::Num(n) => n.to_string(),
                    Cell::Empty => "null".into(),
                };
                format!("{}:{v}", serde_json::Value::String(k.clone()))
            })
            .collect();
        s.push('{');
        s.push_str(&fields.join(","));
        s.push_str("}\n");
    }
    s
}

/// Writes results.csv and results.jsonl (each whole, through a temporary
/// name); returns the counts of done, failed and missing runs.
pub fn write(spec: &Spec, runs: &[Run], out: &Path) -> Result<[usize; 3]> {
    let cols = columns(spec);
    let rows = rows(spec, runs, out);
    let mut counts = [0; 3];
    for row in &rows {
        let i = match &row[cols.iter().position(|c| c == "status").unwrap_or(0)] {
            Cell::Text(t) if t == "done" => 0,
            Cell::Text(t) if t == "failed" => 1,
            _ => 2,
        };
        counts[i] += 1;
    }
    for (name, text) in [
        ("results.csv", csv(&cols, &rows)),
        ("results.jsonl", jsonl(&cols, &rows)),
    ] {
        let path = out.join(name);
        let tmp = out.join(format!("{name}.tmp"));
        std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(counts)
}
