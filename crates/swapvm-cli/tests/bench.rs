//! `swapvm bench --quick` runs and prints every figure. This checks the
//! output's structure only: timing belongs in the benchmark, not in a test.

#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn bench_quick_prints_every_figure() {
    let dir = tempfile::Builder::new()
        .prefix("swapvm-bench-test-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_swapvm"))
        .args(["bench", "--quick", "--dir"])
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "exit {:?}\n{out}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: Vec<&str> = out.lines().collect();
    let count = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
    // Two RAM sizes, each sequential and random, each with a ratio.
    assert_eq!(count("resident access sequential"), 2, "{out}");
    assert_eq!(count("resident access random"), 2, "{out}");
    for l in lines.iter().filter(|l| l.starts_with("resident")) {
        assert!(
            l.contains("swapvm") && l.contains("baseline 4-level walk") && l.contains("ratio"),
            "{l}"
        );
    }
    for prefix in ["usemem ", "replay fits", "replay 4xRAM"] {
        let l = lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}: {out}"));
        assert!(l.contains("accesses/s") && l.contains("faults/s"), "{l}");
        assert!(l.contains("verified yes"), "{l}");
    }
    let meta = lines
        .iter()
        .find(|l| l.starts_with("metadata per 4 KiB page"))
        .unwrap_or_else(|| panic!("no metadata line: {out}"));
    for part in [
        "struct Page",
        "kernel 64 B",
        "page table",
        "swap table",
        "kernel 80 B",
    ] {
        assert!(meta.contains(part), "{meta}");
    }
    // The footprint machine with page bytes and without, each in its own
    // process.
    for (mode, tail) in [
        ("full", ", verified"),
        ("none", ", checker passed, verification off"),
    ] {
        let l = lines
            .iter()
            .find(|l| l.starts_with(&format!("footprint content = {mode}")))
            .unwrap_or_else(|| panic!("no {mode} footprint: {out}"));
        assert!(
            l.contains("peak RSS") && l.contains("B per frame") && l.ends_with(tail),
            "{l}"
        );
    }
    assert!(count("metadata-only per 4 KiB page") == 1, "{out}");
    assert_eq!(count("peak RSS (VmHWM) "), 1, "{out}");
    // The bench's folder inside --dir is removed at the end.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
