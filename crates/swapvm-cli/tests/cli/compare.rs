//! `swapvm compare` on hand-made report.json files: delta and percent
//! against the first column, Welch's t-test marks a clear difference and
//! not an identical pair, the CSV's columns, the JSON's shape, and bad
//! input named with exit 2.

use super::*;

/// Writes a schema 2 report with these counters as `dir/name/report.json`.
fn report(dir: &Path, name: &str, vmstat: &[(&str, u64)]) -> PathBuf {
    let run = dir.join(name);
    std::fs::create_dir_all(&run).unwrap();
    let counters: serde_json::Map<String, serde_json::Value> = vmstat
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
        .collect();
    let v = serde_json::json!({
        "schema_version": 2, "config": "c.toml", "workload": "w", "seed": 1,
        "vmstat": counters,
    });
    std::fs::write(run.join("report.json"), v.to_string()).unwrap();
    run
}

/// Two groups of five: `swap_ra` clearly apart, `pswpout` noise around
/// the same mean, `pgfault` identical.
fn two_groups(dir: &Path) {
    let pswpout_a = [1000, 1010, 990, 1005, 995];
    let pswpout_b = [1003, 992, 1008, 997, 1005];
    for i in 0..5 {
        let ra = 500 + i as u64;
        report(
            dir,
            &format!("A/seed{i}"),
            &[
                ("pgfault", 7),
                ("pswpout", pswpout_a[i]),
                ("swap_ra", ra),
                ("pgfree", 0),
            ],
        );
        report(
            dir,
            &format!("B/seed{i}"),
            &[
                ("pgfault", 7),
                ("pswpout", pswpout_b[i]),
                ("swap_ra", 10 + i as u64),
                ("pgfree", 0),
            ],
        );
    }
}

fn line<'a>(stdout: &'a str, counter: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(counter))
        .unwrap_or_else(|| panic!("no {counter} row in:\n{stdout}"))
}

#[test]
fn single_runs_show_delta_and_percent() {
    let dir = tempdir();
    let a = report(
        dir.path(),
        "a",
        &[("pswpin", 200), ("pswpout", 400), ("swap_ra", 0)],
    );
    let b = report(
        dir.path(),
        "b",
        &[("pswpin", 250), ("pswpout", 300), ("swap_ra", 8)],
    );
    let o = swapvm!("compare", a, b.join("report.json"));
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let head = stdout.lines().next().unwrap();
    assert!(head.contains('a') && head.contains('b'), "{stdout}");
    assert!(
        line(&stdout, "pswpin").ends_with("250 ( +25.00%)"),
        "{stdout}"
    );
    assert!(
        line(&stdout, "pswpout").ends_with("300 ( -25.00%)"),
        "{stdout}"
    );
    assert!(
        line(&stdout, "swap_ra").ends_with("8 (     new)"),
        "{stdout}"
    );
    assert!(
        stdout.lines().all(|l| !l.ends_with('*')),
        "one run a side has no test:\n{stdout}"
    );
}

#[test]
fn groups_mark_a_clear_difference_and_not_noise() {
    let dir = tempdir();
    two_groups(dir.path());
    // A folder of run folders is one column.
    let o = swapvm!("compare", dir.path().join("A"), dir.path().join("B"));
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("(5 runs)"), "{stdout}");
    let ra = line(&stdout, "swap_ra");
    assert!(ra.ends_with(" *"), "swap_ra is apart: {ra}");
    assert!(ra.contains("502 ±1.6"), "mean ± sample sd: {ra}");
    let out = line(&stdout, "pswpout");
    assert!(!out.ends_with('*'), "pswpout is noise: {out}");
    let same = line(&stdout, "pgfault");
    assert!(same.ends_with("7 ±0 (  +0.00%)"), "{same}");
    assert!(
        !stdout.contains("pgfree"),
        "all-zero counters are hidden:\n{stdout}"
    );
    assert!(stdout.contains("Welch's t-test"), "{stdout}");
    // The same column twice: nothing is marked.
    let o = swapvm!(
        "compare",
        "--group",
        format!("x={}/A/seed*", dir.path().display()),
        "--group",
        format!("y={}/A/seed*", dir.path().display())
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stdout.lines().all(|l| !l.ends_with('*')), "{stdout}");
    assert!(line(&stdout, "swap_ra").contains("(  +0.00%)"), "{stdout}");
}

#[test]
fn only_grep_sort_and_zeros_select_rows() {
    let dir = tempdir();
    two_groups(dir.path());
    let (a, b) = (dir.path().join("A"), dir.path().join("B"));
    let rows = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<&std::ffi::OsStr> = vec!["compare".as_ref(), a.as_os_str(), b.as_os_str()];
        all.extend(args.iter().map(std::ffi::OsStr::new));
        let o = swapvm(&all);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        text(&o)
            .0
            .lines()
            .skip(2)
            .take_while(|l| !l.is_empty())
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(rows(&[]), ["pgfault", "pswpout", "swap_ra"]);
    assert_eq!(rows(&["--only", "swap"]), ["pswpout", "swap_ra"]);
    assert_eq!(rows(&["--grep", "ra"]), ["swap_ra"]);
    assert_eq!(
        rows(&["--sort", "change"]),
        ["swap_ra", "pswpout", "pgfault"]
    );
    assert_eq!(
        rows(&["--sort", "name", "--zeros"]),
        ["pgfault", "pgfree", "pswpout", "swap_ra"]
    );
}

#[test]
fn csv_has_one_row_per_counter_and_column() {
    let dir = tempdir();
    two_groups(dir.path());
    let o = swapvm!(
        "compare",
        "--csv",
        dir.path().join("A"),
        dir.path().join("B")
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "counter,column,runs,mean,sd,delta,pct,p,significant"
    );
    assert_eq!(lines.len(), 1 + 3 * 2, "{stdout}");
    let ra: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("swap_ra,B,"))
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(ra.len(), 9);
    assert_eq!(&ra[..4], ["swap_ra", "B", "5", "12"]);
    assert_eq!(ra[5], "-490");
    assert!(
        ra[7].parse::<f64>().unwrap() < 0.05 && ra[8] == "true",
        "{ra:?}"
    );
    let base: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("swap_ra,A,"))
        .unwrap()
        .split(',')
        .collect();
    assert_eq!((base[7], base[8]), ("", "false"), "the baseline has no p");
}

#[test]
fn json_has_columns_and_counters() {
    let dir = tempdir();
    two_groups(dir.path());
    let o = swapvm!(
        "compare",
        "--json",
        "--alpha",
        "0.01",
        dir.path().join("A"),
        dir.path().join("B")
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["alpha"], 0.01);
    assert_eq!(v["columns"][0]["name"], "A");
    assert_eq!(v["columns"][1]["runs"].as_array().unwrap().len(), 5);
    let ra = v["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["counter"] == "swap_ra")
        .unwrap();
    assert_eq!(ra["cells"][0]["mean"], 502.0);
    assert_eq!(ra["cells"][0]["p"], serde_json::Value::Null);
    assert_eq!(ra["cells"][1]["significant"], true);
    assert!(ra["cells"][1]["pct"].as_f64().unwrap() < -97.0);
}

#[test]
fn schema_1_vmstat_lists_are_read() {
    let dir = tempdir();
    let old = dir.path().join("old.json");
    std::fs::write(
        &old,
        r#"{"config": "c", "vmstat": [["pswpout", 10], ["swap_ra", 2]]}"#,
    )
    .unwrap();
    let old2 = dir.path().join("old2.json");
    std::fs::write(&old2, r#"{"config": "c", "vmstat": [["pswpout", 15]]}"#).unwrap();
    let o = swapvm!("compare", old, old2);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(
        line(&stdout, "pswpout").ends_with("15 ( +50.00%)"),
        "{stdout}"
    );
}

#[test]
fn bad_input_names_the_file_and_exits_2() {
    let dir = tempdir();
    let good = report(dir.path(), "good", &[("pswpout", 1)]);
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let v1 = write("v1.json", r#"{"vmstat": [["pswpout", 1]]}"#);
    let cases: Vec<(PathBuf, &str)> = vec![
        (dir.path().join("missing.json"), "cannot read"),
        (
            write("text.json", "hello"),
            "not a swapvm report.json: not JSON",
        ),
        (
            write("novm.json", r#"{"schema_version": 2}"#),
            "no `vmstat`",
        ),
        (
            write("v9.json", r#"{"schema_version": 9, "vmstat": {}}"#),
            "schema_version 9",
        ),
        (
            write(
                "neg.json",
                r#"{"schema_version": 2, "vmstat": {"pswpout": -1}}"#,
            ),
            "not a count",
        ),
        (
            write(
                "shape.json",
                r#"{"schema_version": 2, "vmstat": [["a", 1]]}"#,
            ),
            "as an object",
        ),
        (v1, "schema_version 1 but"),
        (dir.path().join("nothing-*"), "no report.json found"),
    ];
    for (bad, needle) in cases {
        let o = swapvm!("compare", good, bad);
        let stderr = assert_fails(&o, &[needle]);
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        let shown = bad.display().to_string();
        assert!(
            stderr.contains(&shown) || needle == "schema_version 1 but",
            "{stderr}"
        );
    }
    let o = swapvm!("compare", good, "--group", "x");
    assert_fails(&o, &["NAME=GLOB"]);
    let o = swapvm!(
        "compare",
        "--group",
        format!("x={}/none*", dir.path().display())
    );
    assert_fails(&o, &["--group x=", "no report.json found"]);
    assert_eq!(o.status.code(), Some(2));
}
