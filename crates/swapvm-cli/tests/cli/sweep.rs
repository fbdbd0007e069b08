//! `swapvm sweep`: a bad spec is an error naming the file and field (exit
//! 2); run ids are stable; a finished run is not run again and a
//! half-written one is redone; results.csv has its documented columns; a
//! study's counters equal those of its runs run one by one with `swapvm
//! run`; a plot is drawn.

use super::*;

/// A tiny study: the tiny machine with RAM and seeds as axes.
fn study(axes: &str, seeds: &str) -> Tiny {
    let t = Tiny::new();
    std::fs::write(
        t.path("study.toml"),
        format!("config = \"config.toml\"\nseeds = {seeds}\n\n[axes]\n{axes}"),
    )
    .unwrap();
    t
}

const RAM_AXIS: &str = "\"machine.ram_mib\" = [8, 12]\n";

/// The `--list` lines: (index, id, axes) per run.
fn list(t: &Tiny) -> Vec<(String, String, String)> {
    let o = swapvm!(
        "sweep",
        t.path("study.toml"),
        "--out",
        t.path("out"),
        "--list"
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    text(&o)
        .0
        .lines()
        .map(|l| {
            let (head, _) = l.split_once('\t').unwrap();
            let mut w = head.splitn(3, ' ');
            (
                w.next().unwrap().to_owned(),
                w.next().unwrap().to_owned(),
                w.next().unwrap().to_owned(),
            )
        })
        .collect()
}

fn sweep_ok(t: &Tiny, out: &str, extra: &[&str]) -> String {
    let mut args: Vec<std::ffi::OsString> = vec![
        "sweep".into(),
        t.path("study.toml").into(),
        "--out".into(),
        t.path(out).into(),
    ];
    args.extend(extra.iter().map(Into::into));
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let o = swapvm(&refs);
    let (stdout, stderr) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    stderr
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

mod bad_spec {
    use super::*;

    fn fails(spec: &str, needles: &[&str]) {
        let t = Tiny::new();
        std::fs::write(t.path("study.toml"), spec).unwrap();
        let o = swapvm!("sweep", t.path("study.toml"), "--out", t.path("out"));
        assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
        let mut n = vec!["study.toml"];
        n.extend(needles);
        assert_fails(&o, &n);
        assert!(
            !t.path("out").exists(),
            "nothing may be written for a bad spec"
        );
    }

    #[test]
    fn an_unknown_field_is_named_with_its_line() {
        fails(
            "config = \"config.toml\"\nseed = [1]\n",
            &["unknown field `seed`", "line 2"],
        );
    }

    #[test]
    fn a_missing_config_is_named() {
        fails("seeds = [1]\n", &["field `config`"]);
    }

    #[test]
    fn an_axis_value_of_the_wrong_type_names_the_axis_and_the_key() {
        fails(
            "config = \"config.toml\"\n[axes]\n\"machine.ram_mib\" = [8, \"lots\"]\n",
            &["axes.\"machine.ram_mib\"", "lots", "--set machine.ram_mib"],
        );
    }

    #[test]
    fn an_axis_on_a_field_that_does_not_exist_is_named() {
        fails(
            "config = \"config.toml\"\n[axes]\n\"machine.ram_gib\" = [1]\n",
            &["axes.\"machine.ram_gib\"", "ram_gib"],
        );
    }

    #[test]
    fn an_empty_axis_and_repeated_seeds_are_refused() {
        fails(
            "config = \"config.toml\"\n[axes]\n\"machine.ram_mib\" = []\n",
            &["axes.\"machine.ram_mib\"", "empty"],
        );
        fails(
            "config = \"config.toml\"\nseeds = [1, 1]\n",
            &["field `seeds`", "twice"],
        );
    }

    #[test]
    fn workload_and_trace_together_are_refused() {
        fails(
            "config = \"config.toml\"\nworkload = \"workload.toml\"\ntrace = \"t.csv\"\n",
            &["field `trace`", "not both"],
        );
    }
}

#[test]
fn run_ids_are_stable_and_name_what_runs() {
    let t = study(RAM_AXIS, "[1, 2]");
    let a = list(&t);
    assert_eq!(a.len(), 4);
    assert_eq!(a, list(&t), "the same spec lists the same runs");
    let ids: std::collections::BTreeSet<_> = a.iter().map(|r| r.1.clone()).collect();
    assert_eq!(ids.len(), 4, "every run its own id: {a:?}");
    assert!(a
        .iter()
        .all(|r| r.1.len() == 12 && r.1.bytes().all(|b| b.is_ascii_hexdigit())));
    // Another axis order in the file, another seed list and a second axis
    // do not change the id of a run that is the same run.
    std::fs::write(
        t.path("study.toml"),
        "config = \"config.toml\"\nseeds = [2, 7]\n[axes]\n\"reclaim.swappiness\" = [60, 100]\n\
         \"machine.ram_mib\" = [12, 8]\n",
    )
    .unwrap();
    let b = list(&t);
    let id = |l: &[(String, String, String)], want: &str| {
        l.iter().find(|r| r.2 == want).map(|r| r.1.clone()).unwrap()
    };
    // swappiness 60 is the default: the same resolved config.
    assert_eq!(
        id(&a, "machine.ram_mib=12, seed=2"),
        id(&b, "machine.ram_mib=12, reclaim.swappiness=60, seed=2")
    );
    // A changed workload file is another run.
    std::fs::write(t.path("workload.toml"), TINY_WORKLOAD.replace("20", "21")).unwrap();
    std::fs::write(
        t.path("study.toml"),
        format!("config = \"config.toml\"\nseeds = [1, 2]\n[axes]\n{RAM_AXIS}"),
    )
    .unwrap();
    let c = list(&t);
    assert!(a.iter().zip(&c).all(|(x, y)| x.1 != y.1), "{a:?} vs {c:?}");
}

#[test]
fn results_csv_has_the_documented_columns_one_row_per_run() {
    let t = study(RAM_AXIS, "[1]");
    sweep_ok(&t, "out", &["-j", "2"]);
    let rows = csv_rows(&t.path("out/results.csv"));
    let head = &rows[0];
    let want_first = [
        "index",
        "run_id",
        "machine.ram_mib",
        "seed",
        "status",
        "exit_code",
        "wall_ms",
        "run_wall_ms",
        "ticks",
        "accesses",
        "pgfault",
        "pgmajfault",
        "pswpin",
        "pswpout",
    ];
    assert_eq!(&head[..want_first.len()], want_first);
    assert!(
        head.iter().any(|c| c == "swap_ra_hit") && head.iter().any(|c| c == "thp_swpout_fallback")
    );
    assert_eq!(rows.len(), 3, "a header and one row per run");
    let col = |name: &str| head.iter().position(|c| c == name).unwrap();
    for (i, r) in rows[1..].iter().enumerate() {
        assert_eq!(r.len(), head.len());
        assert_eq!(r[col("index")], i.to_string());
        assert_eq!(r[col("status")], "done");
        assert!(
            r[col("pswpout")].parse::<u64>().unwrap() > 0,
            "the tiny machine swaps: {r:?}"
        );
        assert!(r[col("wall_ms")].parse::<u64>().unwrap() > 0);
    }
    assert_eq!(rows[1][col("machine.ram_mib")], "8");
    assert_eq!(rows[2][col("machine.ram_mib")], "12");
    // The JSON lines have the same keys, in the same order.
    let jl = std::fs::read_to_string(t.path("out/results.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(jl.lines().next().unwrap()).unwrap();
    assert_eq!(first["machine.ram_mib"], 8);
    assert_eq!(first["status"], "done");
    let keys: Vec<&str> = jl.lines().next().unwrap()[1..]
        .split(",\"")
        .map(|kv| kv.trim_start_matches('"').split('"').next().unwrap())
        .collect();
    assert_eq!(keys, head.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn a_finished_run_is_not_run_again_and_a_half_written_one_is_redone() {
    let t = study(RAM_AXIS, "[1]");
    sweep_ok(&t, "out", &[]);
    let runs = list(&t);
    let dir = |i: usize| t.path("out").join(&runs[i].1);
    let marker = |i: usize| std::fs::read_to_string(dir(i).join("sweep-run.json")).unwrap();
    let m0 = marker(0);
    let vmstat1 = std::fs::read_to_string(dir(1).join("vmstat")).unwrap();
    // Run 1 as a crash leaves it: report.json written, the plots not.
    std::fs::remove_file(dir(1).join("faults.svg")).unwrap();
    std::fs::remove_file(dir(1).join("sweep-run.json")).unwrap();
    let stderr = sweep_ok(&t, "out", &[]);
    assert!(
        stderr.contains("2 runs, 1 already finished, 1 to run"),
        "{stderr}"
    );
    assert_eq!(marker(0), m0, "the finished run was not run again");
    // The marker was removed above; a new one means the run was redone.
    // (Comparing contents would not do: a rerun may take as many ms.)
    assert!(
        dir(1).join("sweep-run.json").is_file(),
        "the half-written run was redone (a new marker)"
    );
    assert!(dir(1).join("faults.svg").is_file());
    assert_eq!(
        std::fs::read_to_string(dir(1).join("vmstat")).unwrap(),
        vmstat1
    );
    // An interrupted run's report does not count as finished either.
    let p = dir(0).join("report.json");
    let mut r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    r["interrupted"] = true.into();
    std::fs::write(&p, r.to_string()).unwrap();
    let stderr = sweep_ok(&t, "out", &[]);
    assert!(stderr.contains("1 already finished, 1 to run"), "{stderr}");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    assert_ne!(r["interrupted"], true, "the interrupted run was redone");
    // Everything finished: nothing runs.
    let stderr = sweep_ok(&t, "out", &[]);
    assert!(stderr.contains("2 already finished, 0 to run"), "{stderr}");
}

/// The counters of a run folder: its `vmstat` file.
fn vmstat(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("vmstat")).unwrap()
}

#[test]
fn a_parallel_study_has_the_counters_of_its_runs_run_one_by_one() {
    let t = study(
        "\"machine.ram_mib\" = [8, 12]\n\"reclaim.page_cluster\" = [0, 3]\n",
        "[1]",
    );
    sweep_ok(&t, "out", &["-j", "2"]);
    let o = swapvm!(
        "sweep",
        t.path("study.toml"),
        "--out",
        t.path("out"),
        "--list"
    );
    let out = t.shows("out");
    let one = t.shows("one");
    for line in text(&o).0.lines() {
        let (head, cmd) = line.split_once('\t').unwrap();
        let id = head.split(' ').nth(1).unwrap();
        // The very command the sweep ran, into another folder.
        let argv: Vec<String> = cmd
            .split(' ')
            .skip(1)
            .map(|a| a.replace(&out, &one))
            .collect();
        let st = Command::new(env!("CARGO_BIN_EXE_swapvm"))
            .args(&argv)
            .output()
            .unwrap();
        assert_eq!(st.status.code(), Some(0), "{argv:?}: {:?}", text(&st));
        let (a, b) = (t.path("out").join(id), t.path("one").join(id));
        assert_eq!(vmstat(&a), vmstat(&b), "run {head}");
        assert!(
            !a.join("swap0.img").exists(),
            "the sweep removes a run's swap image"
        );
    }
}

#[test]
fn plot_draws_a_line_per_series_with_error_bars_over_seeds() {
    let t = study(
        "\"machine.ram_mib\" = [8, 12]\n\"reclaim.page_cluster\" = [0, 3]\n",
        "[1, 2]",
    );
    sweep_ok(&t, "out", &[]);
    let o = swapvm!(
        "sweep",
        t.path("study.toml"),
        "--out",
        t.path("out"),
        "--plot",
        "pgmajfault",
        "--x",
        "machine.ram_mib",
        "--series",
        "reclaim.page_cluster"
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let svg = std::fs::read_to_string(text(&o).0.trim()).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
    assert!(svg.contains("reclaim.page_cluster=0") && svg.contains("reclaim.page_cluster=3"));
    let o = swapvm!(
        "sweep",
        t.path("study.toml"),
        "--out",
        t.path("out"),
        "--plot",
        "pgmajfault",
        "--x",
        "ram"
    );
    assert_fails(&o, &["--x ram", "not an axis"]);
}

#[test]
fn every_shipped_study_parses_with_the_runs_it_says() {
    let studies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../studies");
    for (name, runs) in [
        ("allocators.toml", 24),
        ("readahead.toml", 24),
        ("mrc.toml", 7),
    ] {
        let o = swapvm!(
            "sweep",
            studies.join(name),
            "--out",
            "/nonexistent/sweep",
            "--list"
        );
        assert_eq!(o.status.code(), Some(0), "{name}: {:?}", text(&o));
        assert_eq!(text(&o).0.lines().count(), runs, "{name}");
    }
}
