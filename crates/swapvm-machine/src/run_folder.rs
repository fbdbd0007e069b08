//! The run folder: everything a run leaves for people and scripts to read.
//!
//! | file | what |
//! |---|---|
//! | `report.json` | the [`Report`]: config as loaded, seed, versions, every counter, latency histograms |
//! | `vmstat` | the counters as `name value` lines, the `/proc/vmstat` format |
//! | `timeseries.csv` | the [`Series`](crate::series::Series), one row per sample |
//! | `memory.svg`, `latency.svg`, `faults.svg` | the [`plot`](crate::plot)s |
//! | `pressure.svg` | memory pressure (PSI some/full avg10) over time |
//! | `cgroups.csv`, `cgroups.svg` | per memory cgroup memory.current, swap and pressure over time (with `[[cgroup]]` tables) |
//! | `pressure/memory` | the machine's memory pressure, as `/proc/pressure/memory` prints it |
//! | `cgroup/<path>/memory.stat`, `memory.events`, `memory.pressure` | per memory cgroup (with `[[cgroup]]` tables), as the cgroup v2 files print; the root's in `cgroup/` |
//!
//! Files are written one after another, each whole (to a temporary name,
//! then renamed), so an error leaves the files already written intact and
//! never a half-written one under its final name.

use crate::plot;
use crate::Report;
use std::path::{Path, PathBuf};

/// The run folder's files, in the order they are written.
pub const FILES: [&str; 8] = [
    "report.json",
    "vmstat",
    "timeseries.csv",
    "memory.svg",
    "latency.svg",
    "faults.svg",
    "pressure.svg",
    "pressure/memory",
];

/// Why the run folder could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RunFolderError {
    /// A file or the folder could not be created or written.
    #[error("{}: cannot write", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The report could not be serialised.
    #[error("{}: cannot serialise the report", path.display())]
    Json {
        /// report.json.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// A plot could not be drawn.
    #[error("{}: cannot draw", path.display())]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: plot::PlotError,
    },
}

/// Writes `contents` to `path` through a temporary file in the same folder.
fn write_whole(path: &Path, contents: &[u8]) -> Result<(), RunFolderError> {
    let io = |source| RunFolderError::Io {
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The report as report.json's text (pretty, with a final newline).
pub fn report_json(report: &Report) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(report).map(|s| s + "\n")
}

/// Creates `dir` (and its parents) and writes every file of [`FILES`];
/// returns their paths.
pub fn write(dir: &Path, report: &Report) -> Result<Vec<PathBuf>, RunFolderError> {
    std::fs::create_dir_all(dir).map_err(|source| RunFolderError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut written = Vec::with_capacity(FILES.len());
    for name in FILES {
        let path = dir.join(name);
        let text = match name {
            "report.json" => report_json(report).map_err(|source| RunFolderError::Json {
                path: path.clone(),
                source,
            })?,
            "vmstat" => report.vmstat_text(),
            "timeseries.csv" => report.series.to_csv(),
            "pressure/memory" => {
                let sub = dir.join("pressure");
                std::fs::create_dir_all(&sub)
                    .map_err(|source| RunFolderError::Io { path: sub, source })?;
                report.pressure.text()
            }
            svg => {
                let drawn = match svg {
                    "memory.svg" => plot::memory_svg(report),
                    "latency.svg" => plot::latency_svg(report),
                    "pressure.svg" => crate::plot_pressure::pressure_svg(report),
                    _ => plot::faults_svg(report),
                };
                drawn.map_err(|source| RunFolderError::Plot {
                    path: path.clone(),
                    source,
                })?
            }
        };
        write_whole(&path, text.as_bytes())?;
        tracing::info!(path = %path.display(), bytes = text.len(), "wrote");
        written.push(path);
    }
    for c in &report.cgroups {
        written.extend(write_cgroup(dir, c)?);
    }
    if !report.series.cgroups.paths.is_empty() {
        let path = dir.join("cgroups.csv");
        write_whole(&path, report.series.cgroups.to_csv().as_bytes())?;
        written.push(path);
        let path = dir.join("cgroups.svg");
        let svg =
            crate::plot_pressure::cgroups_svg(report).map_err(|source| RunFolderError::Plot {
                path: path.clone(),
                source,
            })?;
        write_whole(&path, svg.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// `cgroup/<path>/memory.stat` and `memory.events` of one cgroup.
fn write_cgroup(
    dir: &Path,
    c: &crate::memcg::CgroupReport,
) -> Result<Vec<PathBuf>, RunFolderError> {
    let sub = dir.join("cgroup").join(c.path.trim_start_matches('/'));
    std::fs::create_dir_all(&sub).map_err(|source| RunFolderError::Io {
        path: sub.clone(),
        source,
    })?;
    let events: String = c.events.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    let mut out = Vec::new();
    for (name, text) in [
        ("memory.stat", c.memory_stat_text()),
        ("memory.events", events),
        ("memory.pressure", c.pressure.text()),
    ] {
        let path = sub.join(name);
        write_whole(&path, text.as_bytes())?;
        out.push(path);
    }
    Ok(out)
}
