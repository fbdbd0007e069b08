//! Machines built from traces: several pids run as several processes, the
//! run is deterministic, and a trace that turns bad after the scan ends its
//! process with the file and line in the report instead of a panic.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use swapvm_core::{MachineConfig, VmEvent};
use swapvm_machine::{Machine, RunOptions};
use swapvm_workload::{Op, ProcessSource, Script, TracePlan};
use tempfile::TempDir;

fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("swapvm-machine-replay-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

/// An 8 MiB machine with 16 MiB of swap in `dir`, two CPUs.
fn config(dir: &Path) -> MachineConfig {
    let path = dir.join("m.toml");
    let text = "[machine]\nram_mib = 8\ncpus = 2\nseed = 2\n[[swap]]\npath = \"swap.img\"\nsize_mib = 16\n";
    std::fs::write(&path, text).unwrap();
    MachineConfig::load(&path).unwrap()
}

/// A CSV of three pids, `pages` pages each, each page stored to then
/// loaded.
fn three_pids(dir: &Path, pages: u64) -> std::path::PathBuf {
    let path = dir.join("t.csv");
    let mut text = String::from("time,pid,op,address,size\n");
    for i in 0..2 * pages {
        for pid in [10, 20, 30] {
            let op = if i < pages { "W" } else { "R" };
            text.push_str(&format!(
                "{i},{pid},{op},{:#x},8\n",
                0x4000_0000 + (i % pages) * 4096
            ));
        }
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn pids_run_as_processes_and_replays_are_deterministic() {
    let dir = tempdir();
    // 3 x 1024 pages: 12 MiB in an 8 MiB machine, so it swaps.
    let trace = three_pids(dir.path(), 1024);
    let plan = TracePlan::scan(&trace, None, |_| {}).unwrap();
    assert_eq!(plan.stats.pids.len(), 3);
    let run = || {
        Machine::from_trace(config(dir.path()), &plan, RunOptions::default())
            .unwrap()
            .run(|_, _| {})
            .unwrap()
    };
    let r = run();
    assert!(r.passed(), "{:?}", r.killed);
    assert_eq!(r.accesses, 3 * 2 * 1024);
    assert_eq!(r.workload, "trace t.csv");
    assert!(r.counter(VmEvent::PgAlloc) >= 3 * 1024);
    assert!(r.counter(VmEvent::PswpOut) > 0);
    assert!(r.stamps_verified > 0);
    let again = run();
    assert_eq!(r.vmstat, again.vmstat);
}

#[test]
fn a_trace_corrupted_after_the_scan_ends_its_process_with_the_line() {
    let dir = tempdir();
    let trace = three_pids(dir.path(), 16);
    let plan = TracePlan::scan(&trace, None, |_| {}).unwrap();
    let m = Machine::from_trace(config(dir.path()), &plan, RunOptions::default()).unwrap();
    // Line 40 goes bad between the scan and the replay.
    let text = std::fs::read_to_string(&trace).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[39] = "39,20,Q,0x1000";
    std::fs::write(&trace, lines.join("\n") + "\n").unwrap();
    let r = m.run(|_, _| {}).unwrap();
    assert!(!r.passed());
    assert_eq!(r.killed.len(), 3, "{:?}", r.killed);
    assert!(
        r.killed
            .iter()
            .all(|k| k.contains("t.csv: line 40: unknown op \"Q\"")),
        "{:?}",
        r.killed
    );
    assert_eq!(r.mismatches, 0);
}

/// A CSV of two pids, `pages` pages each, in passes: stores, loads (every
/// third loaded twice in a row: `run_resident`'s "same page again" case),
/// loads, stores, loads. Two pids of 1536 pages are 12 MiB, so an 8 MiB
/// machine swaps.
fn repeats(dir: &Path, pages: u64) -> std::path::PathBuf {
    let path = dir.join("r.csv");
    let mut text = String::from("time,pid,op,address,size\n");
    let mut t = 0;
    for pass in ["W", "R", "R", "W", "R"] {
        for i in 0..pages {
            for pid in [1, 2] {
                let addr = 0x7000_0000 + ((i * 37) % pages) * 4096;
                text.push_str(&format!("{t},{pid},{pass},{addr:#x},8\n"));
                t += 1;
                if pass == "R" && i % 3 == 0 {
                    text.push_str(&format!("{t},{pid},R,{:#x},8\n", addr + 64));
                    t += 1;
                }
            }
        }
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_resident_fast_path_gives_the_counters_of_the_op_at_a_time_path() {
    let dir = tempdir();
    let trace = repeats(dir.path(), 1536);
    let plan = TracePlan::scan(&trace, None, |_| {}).unwrap();
    let run = |sources: Vec<ProcessSource>| {
        let r = Machine::with_sources(config(dir.path()), RunOptions::default(), "r", sources)
            .unwrap()
            .run(|_, _| {})
            .unwrap();
        assert!(r.passed(), "{:?}", r.killed);
        r
    };
    // Trace sources: run_resident takes their decoded batches, inline or
    // from decoder threads.
    let trace_sources = |threaded| {
        plan.processes_with(threaded)
            .unwrap()
            .into_iter()
            .map(ProcessSource::Trace)
            .collect()
    };
    // The same ops as scripts: every op through do_op, one at a time.
    let scripts = plan
        .processes_with(false)
        .unwrap()
        .into_iter()
        .map(|mut p| {
            let ops: Vec<Op> = std::iter::from_fn(|| p.next_op().unwrap()).collect();
            ProcessSource::Script(Script::new(p.name(), ops))
        })
        .collect();
    let slow = run(scripts);
    assert!(slow.counter(VmEvent::PswpOut) > 0, "the test should swap");
    for threaded in [false, true] {
        let fast = run(trace_sources(threaded));
        assert_eq!(fast.vmstat, slow.vmstat, "threaded {threaded}");
        assert_eq!(fast.ticks, slow.ticks);
        assert_eq!(fast.accesses, slow.accesses);
        assert_eq!(fast.stamps_verified, slow.stamps_verified);
        assert_eq!(fast.mismatches, 0);
    }
}
