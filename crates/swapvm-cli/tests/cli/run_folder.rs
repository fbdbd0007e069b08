//! `swapvm run --out DIR` writes the whole run folder; `--json` prints
//! exactly its report.json; a bad sampling interval or an unwritable
//! folder is a clean error that loses nothing already shown; no progress
//! bar is drawn when standard error is not a terminal.

use super::*;

const FILES: [&str; 8] = [
    "report.json",
    "vmstat",
    "timeseries.csv",
    "memory.svg",
    "latency.svg",
    "faults.svg",
    "pressure.svg",
    "pressure/memory",
];

/// The tiny machine sampled every `every` ticks.
fn sampled(every: &str) -> Tiny {
    Tiny::with(
        &format!(
            "workload = \"workload.toml\"\n{TINY_MACHINE}sample_every_ticks = {every}\n{TINY_SWAP}"
        ),
        Some(TINY_WORKLOAD),
    )
}

#[test]
fn out_writes_every_file_and_says_where() {
    let t = sampled("5");
    let out = t.path("runs/a");
    let o = swapvm!("run", t.config(), "--out", out);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    for f in FILES {
        let len = std::fs::metadata(out.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{f} missing or empty");
    }
    assert!(
        stdout.contains(&format!("run folder: {}", out.display())),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(out.join("timeseries.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(
        header.starts_with("tick,wall_ms,interval_ticks,rss_pages"),
        "{header}"
    );
    assert!(header.contains("pswpout_pages"), "{header}");
    // Rows every 5 ticks: many more than the default interval would give.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let ticks = report["ticks"].as_u64().unwrap();
    assert_eq!(csv.lines().count() as u64, 1 + ticks.div_ceil(5) + 1);
    // No progress bar and nothing else on stderr: it is not a terminal.
    assert!(
        !stderr.contains("accesses"),
        "bar drawn off a terminal: {stderr}"
    );
}

#[test]
fn json_with_out_prints_exactly_report_json() {
    let t = Tiny::new();
    let out = t.path("run");
    let o = swapvm!("run", t.config(), "--json", "--out", out);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        stdout,
        std::fs::read_to_string(out.join("report.json")).unwrap()
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["config_loaded"]["machine"]["seed"], 3);
    assert!(v["write_latency"]["buckets"]
        .as_array()
        .is_some_and(|b| !b.is_empty()));
}

#[test]
fn bad_sampling_interval_names_file_and_field() {
    for bad in ["0", "-1", "\"often\""] {
        let t = sampled(bad);
        let o = swapvm!("run", t.config());
        assert_fails(&o, &[&t.shows("config.toml"), "sample_every_ticks"]);
        assert_eq!(o.status.code(), Some(2), "interval {bad}");
    }
}

#[test]
fn unwritable_out_is_an_error_after_the_summary() {
    let t = Tiny::new();
    // A file where the folder should be.
    let blocker = t.path("blocker");
    std::fs::write(&blocker, "not a folder").unwrap();
    let out = blocker.join("run");
    let o = swapvm!("run", t.config(), "--out", out);
    let stderr = assert_fails(&o, &[&out.display().to_string(), "cannot write"]);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    let (stdout, _) = text(&o);
    assert!(stdout.contains("result: PASS"), "summary lost: {stdout}");
}
