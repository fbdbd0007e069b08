//! The run folder of a tiny machine: the CSV's per-interval deltas add up
//! to the report's counters, the SVGs are well-formed SVG carrying their
//! series, report.json round-trips and every field it has is documented in
//! the README, and a bad sampling interval is an error naming the file and
//! the field.

use super::*;
use swapvm_machine::report::Latency;
use swapvm_machine::run_folder;
use swapvm_machine::series::{Series, DELTA_EVENTS};

/// A tiny machine (as [`tiny`]) sampled every `every` ticks.
fn sampled(every: u64) -> Tiny {
    let t = tiny(&Shape::default());
    let text = std::fs::read_to_string(&t.config).unwrap();
    let text = text.replace(
        "[machine]\n",
        &format!("[machine]\nsample_every_ticks = {every}\n"),
    );
    std::fs::write(&t.config, text).unwrap();
    t
}

/// The CSV as a header and rows of numbers.
/// The CSV's header and rows; percentages (`*_pct`, two decimals) are
/// read in hundredths so that every cell is an integer.
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<u64>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let cell = |(h, x): (&String, &str)| -> u64 {
        if h.ends_with("_pct") {
            let (int, frac) = x.split_once('.').unwrap();
            assert_eq!(frac.len(), 2, "{h} = {x}");
            int.parse::<u64>().unwrap() * 100 + frac.parse::<u64>().unwrap()
        } else {
            x.parse().unwrap()
        }
    };
    let rows: Vec<Vec<u64>> = lines
        .map(|l| header.iter().zip(l.split(',')).map(cell).collect())
        .collect();
    for r in &rows {
        assert_eq!(r.len(), header.len(), "ragged row {r:?}");
    }
    (header, rows)
}

fn column(header: &[String], rows: &[Vec<u64>], name: &str) -> Vec<u64> {
    let i = header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    rows.iter().map(|r| r[i]).collect()
}

fn assert_buckets_add_up(what: &str, l: &Latency) {
    let sum: u64 = l.buckets.iter().map(|b| b.count).sum();
    assert_eq!(sum, l.count, "{what}: buckets {:?}", l.buckets);
    for w in l.buckets.windows(2) {
        assert_eq!(w[0].hi_us, w[1].lo_us, "{what}: buckets not contiguous");
    }
    for b in &l.buckets {
        assert!(b.lo_us.is_power_of_two() && b.hi_us == 2 * b.lo_us, "{b:?}");
    }
    if l.count > 0 {
        assert!(
            l.min_us <= l.p50_us && l.p50_us <= l.p90_us,
            "{what}: {l:?}"
        );
        assert!(
            l.p90_us <= l.p99_us && l.p999_us <= l.p9999_us,
            "{what}: {l:?}"
        );
        assert!(l.p9999_us <= l.max_us, "{what}: {l:?}");
        let first = l.buckets.first().unwrap();
        let last = l.buckets.last().unwrap();
        assert!(
            first.lo_us <= l.min_us && l.max_us < last.hi_us,
            "{what}: {l:?}"
        );
    }
}

/// Zeroes every latency mean of `r`, returning them (floats compare
/// equal only to a rounding after a JSON round trip).
fn take_means(r: &mut Report) -> Vec<f64> {
    let mut all = vec![&mut r.read_latency, &mut r.write_latency];
    for d in &mut r.devices {
        all.push(&mut d.read_latency);
        all.push(&mut d.write_latency);
    }
    all.into_iter()
        .map(|l| std::mem::take(&mut l.mean_us))
        .collect()
}

/// Runs a machine sampled every 7 ticks and writes its run folder.
fn run_and_write() -> (Tiny, Report, PathBuf) {
    let t = sampled(7);
    let r = run_config(&t.config, RunOptions::default());
    assert_swapped_and_clean(&r);
    let out = t.dir.path().join("run");
    let written = run_folder::write(&out, &r).unwrap();
    assert_eq!(written.len(), run_folder::FILES.len());
    for (p, name) in written.iter().zip(run_folder::FILES) {
        assert_eq!(p, &out.join(name));
        assert!(
            std::fs::metadata(p).unwrap().len() > 0,
            "{} empty",
            p.display()
        );
    }
    (t, r, out)
}

#[test]
fn csv_deltas_sum_to_the_report_counters() {
    let (_t, r, out) = run_and_write();
    let d = describe(&r);
    let (header, rows) = read_csv(&out.join("timeseries.csv"));
    assert_eq!(header.join(","), Series::csv_header());
    for ev in DELTA_EVENTS {
        let name = header
            .iter()
            .find(|h| h.starts_with(ev.name()) && h[ev.name().len()..].starts_with('_'))
            .filter(|h| {
                // pgscan_kswapd must not match pgscan_kswapd_... of another.
                h.rsplit_once('_').map(|x| x.0) == Some(ev.name())
            })
            .unwrap_or_else(|| panic!("no column for {}", ev.name()));
        let sum: u64 = column(&header, &rows, name).iter().sum();
        assert_eq!(sum, r.counter(ev), "{name}: {d}");
    }
    // Rows every 7 ticks from tick 0, and a last one when the run ended.
    let ticks = column(&header, &rows, "tick");
    let intervals = column(&header, &rows, "interval_ticks");
    assert_eq!(ticks[0], 0);
    assert_eq!(intervals[0], 0);
    assert_eq!(*ticks.last().unwrap(), r.ticks, "{d}");
    for i in 1..ticks.len() {
        assert_eq!(intervals[i], ticks[i] - ticks[i - 1]);
        if i + 1 < ticks.len() {
            assert_eq!(ticks[i] % 7, 0, "row {i} at tick {}", ticks[i]);
        }
    }
    assert_eq!(rows.len() as u64, r.ticks.div_ceil(7) + 1, "{d}");
    // Levels: a run that swaps has resident memory and swap in use on the
    // way, never more of either than exists, and gives everything back.
    let slots: u64 = r.devices.iter().map(|x| x.slots).sum();
    let rss = column(&header, &rows, "rss_pages");
    let swap = column(&header, &rows, "swap_used_pages");
    let free = column(&header, &rows, "free_ram_pages");
    let ram = 8 * 256;
    assert!(*rss.iter().max().unwrap() > 0);
    for name in ["psi_some_avg10_pct", "psi_full_avg10_pct"] {
        assert!(column(&header, &rows, name).iter().all(|&x| x <= 10_000));
    }
    assert!(*swap.iter().max().unwrap() > 0 && *swap.iter().max().unwrap() <= slots);
    assert!(free.iter().all(|&f| f <= ram));
    assert!(rss.iter().zip(&free).all(|(r, f)| r + f <= ram));
    assert_eq!(free[0], ram, "RAM not free before the first tick");
    assert_eq!((*rss.last().unwrap(), *swap.last().unwrap()), (0, 0));
    assert_eq!(*swap.last().unwrap(), r.devices[0].slots_used);
    // The series in the report is the CSV's.
    assert_eq!(r.series.rows.len(), rows.len());
}

#[test]
fn svgs_parse_and_carry_their_series() {
    let (_t, r, out) = run_and_write();
    let wants: [(&str, &[&str]); 3] = [
        (
            "memory.svg",
            &["RSS", "free RAM", "swap used", "tick", "MiB"],
        ),
        (
            "latency.svg",
            &["swap-in read", "swap-out write", "µs", "share of requests"],
        ),
        (
            "faults.svg",
            &[
                "pgfault",
                "pgmajfault",
                "pswpin",
                "pswpout",
                "pgscan",
                "per tick",
            ],
        ),
    ];
    for (name, texts) in wants {
        let text = std::fs::read_to_string(out.join(name)).unwrap();
        let doc =
            roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{name} is not XML: {e}"));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg", "{name}");
        let shown: String = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "text")
            .filter_map(|n| n.text())
            .collect::<Vec<_>>()
            .join("\n");
        for t in texts {
            assert!(shown.contains(t), "{name} shows no {t:?}:\n{shown}");
        }
        // Lines are polylines, histogram bars rects.
        let marks = doc
            .descendants()
            .filter(|n| matches!(n.tag_name().name(), "polyline" | "rect"))
            .count();
        assert!(marks > 10, "{name}: only {marks} marks");
    }
    // Every swap write is a bar's worth of latency in the plot's legend.
    let latency = std::fs::read_to_string(out.join("latency.svg")).unwrap();
    assert!(
        latency.contains(&format!("{} requests", r.write_latency.count)),
        "latency.svg lacks the write count"
    );
}

#[test]
fn report_json_round_trips_and_is_documented() {
    let (_t, r, out) = run_and_write();
    let text = std::fs::read_to_string(out.join("report.json")).unwrap();
    let mut back: Report = serde_json::from_str(&text).unwrap();
    // The series is the CSV's, not report.json's; means are floats, equal
    // to a rounding of the last digit.
    let mut want = r.clone();
    want.series = Series::default();
    let (got, wanted) = (take_means(&mut back), take_means(&mut want));
    for (a, b) in got.iter().zip(&wanted) {
        assert!((a - b).abs() <= 1e-9 * b.max(1.0), "mean {a} != {b}");
    }
    assert_eq!(back, want);
    // The fields the issue asks for are there and filled.
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    // A report.json written before those fields existed still reads (for
    // `swapvm inspect --report` of an older run).
    let mut old = v.clone();
    let top = old.as_object_mut().unwrap();
    for k in [
        "git_describe",
        "rustc_version",
        "config_loaded",
        "workload_file",
        "workload_text",
        "schema_version",
    ] {
        assert!(top.remove(k).is_some(), "{k} missing");
    }
    let strip = |l: &mut serde_json::Value| {
        let l = l.as_object_mut().unwrap();
        for k in ["min_us", "mean_us", "p90_us", "p9999_us", "buckets"] {
            assert!(l.remove(k).is_some(), "{k} missing");
        }
    };
    strip(&mut top["read_latency"]);
    strip(&mut top["write_latency"]);
    for d in top["devices"].as_array_mut().unwrap() {
        strip(&mut d["read_latency"]);
        strip(&mut d["write_latency"]);
    }
    // Schema 1 wrote the counters as [name, value] pairs.
    top["vmstat"] = serde_json::to_value(&r.vmstat).unwrap();
    let old: Report = serde_json::from_value(old).unwrap();
    assert_eq!(old.schema_version, 1);
    assert_eq!(old.vmstat, r.vmstat);
    assert_eq!(old.write_latency.p99_us, r.write_latency.p99_us);
    assert_eq!(v["seed"], 1);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v.get("git_describe").is_some());
    assert_eq!(v["config_loaded"]["machine"]["ram_mib"], 8);
    assert_eq!(v["config_loaded"]["machine"]["sample_every_ticks"], 7);
    assert_eq!(v["config_loaded"]["swap"][0]["size_mib"], 32);
    assert_eq!(v["schema_version"], swapvm_machine::report::SCHEMA_VERSION);
    assert!(v["vmstat"].is_object(), "vmstat is not an object");
    assert_eq!(
        v["vmstat"]["pswpout"],
        r.counter(swapvm_core::VmEvent::PswpOut)
    );
    assert!(!v["workload_text"].as_str().unwrap().is_empty());
    // serde_json's Value sorts keys: read the order from the text itself.
    let names: Vec<&str> = back.vmstat.iter().map(|(n, _)| n.as_str()).collect();
    let all: Vec<&str> = swapvm_core::VmEvent::ALL.iter().map(|e| e.name()).collect();
    assert_eq!(names, all, "report.json must carry every vmstat counter");
    assert_buckets_add_up("read", &r.read_latency);
    assert_buckets_add_up("write", &r.write_latency);
    for d in &r.devices {
        assert_buckets_add_up("device read", &d.read_latency);
        assert_buckets_add_up("device write", &d.write_latency);
    }
    assert!(!r.write_latency.buckets.is_empty());
    // Every top-level field is documented in the README's "Run folder".
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let section = readme
        .split("## Run folder")
        .nth(1)
        .expect("README has no \"## Run folder\" section");
    let section = section.split("\n## ").next().unwrap();
    for key in v.as_object().unwrap().keys() {
        assert!(
            section.contains(&format!("`{key}`")),
            "report.json field `{key}` is not documented in README.md's Run folder"
        );
    }
    for name in run_folder::FILES {
        assert!(
            section.contains(&format!("`{name}`")),
            "{name} undocumented"
        );
    }
    for h in Series::csv_header().split(',') {
        assert!(
            section.contains(&format!("`{h}`")),
            "CSV column {h} undocumented"
        );
    }
}

#[test]
fn bad_sampling_interval_names_file_and_field() {
    let t = sampled(0);
    let e = MachineConfig::load(&t.config).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&t.config.display().to_string()), "{msg}");
    assert!(msg.contains("machine.sample_every_ticks"), "{msg}");
}

#[test]
fn series_is_deterministic_but_for_wall_time() {
    let rows = || {
        let t = sampled(3);
        let r = run_config(&t.config, RunOptions::default());
        let mut rows = r.series.rows;
        for x in &mut rows {
            x.wall_ms = 0;
        }
        rows
    };
    let (a, b) = (rows(), rows());
    assert!(a.len() > 10, "{} rows", a.len());
    assert_eq!(a, b, "same seed, different time series");
}

#[test]
fn latency_plot_has_a_panel_per_device_when_there_are_two() {
    let t = tiny(&Shape {
        swap_extra: "[[swap]]\npath = \"second\"\nsize_mib = 32\nbackend = \"zram\"",
        ..Shape::default()
    });
    let r = run_config(&t.config, RunOptions::default());
    assert_eq!(r.devices.len(), 2, "{}", describe(&r));
    let svg = swapvm_machine::plot::latency_svg(&r).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let shown: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    for d in &r.devices {
        assert!(
            shown.iter().any(|s| s.contains(&d.path)),
            "no panel for {}",
            d.path
        );
        let legend = format!("{} requests", d.write_latency.count);
        assert!(shown.iter().any(|s| s.contains(&legend)), "no {legend}");
    }
    assert!(shown.iter().any(|s| s.contains("zram")));
}
