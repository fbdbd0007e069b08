//! Golden counters: every shipped config with the workload it is run with,
//! and the shipped traces on the replay config, in metadata-only mode
//! (`content = "none"`, `null` devices: the same decisions as the full
//! mode, which `tests/metadata.rs` proves), compared figure by figure with
//! `tests/golden/<case>.vmstat` ([`Report::decided`]: the counters and
//! every other figure the run decides, not the measured times).
//!
//! A change that alters a decision updates the files on purpose:
//!
//! ```text
//! SWAPVM_BLESS=1 cargo test -p swapvm-machine --test golden
//! ```
//!
//! and its commit says why the figures moved. A refactor changes none.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use swapvm_core::config::{ContentMode, SwapBackend};
use swapvm_core::{MachineConfig, VmEvent};
use swapvm_machine::{Machine, Outcome, Report, RunOptions};
use swapvm_workload::TracePlan;

const BLESS: &str = "SWAPVM_BLESS=1 cargo test -p swapvm-machine --test golden";

fn top() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `config` in metadata-only mode: no page bytes, every device `null`
/// (a config with zram runs as shipped).
fn metadata_only(config: &str) -> MachineConfig {
    let mut cfg = MachineConfig::load(&top().join(config)).unwrap();
    // zram needs page bytes and keeps them in memory: such a config runs
    // as shipped (full content, no disk), which is as deterministic.
    if cfg.swap.iter().any(|d| d.backend == SwapBackend::Zram) {
        return cfg;
    }
    cfg.machine.content = ContentMode::None;
    for d in &mut cfg.swap {
        assert!(
            matches!(d.backend, SwapBackend::File | SwapBackend::Null),
            "{config}: only file devices have a null twin with the same decisions"
        );
        d.backend = SwapBackend::Null;
    }
    cfg
}

/// Runs `workload` (a workload file, or a trace with the `.csv` or
/// `.lackey` extension) on `config`.
fn run(config: &str, workload: &str) -> Report {
    let cfg = metadata_only(config);
    let path = top().join(workload);
    let opts = RunOptions::default();
    let m = if workload.ends_with(".toml") {
        let opts = RunOptions {
            workload: Some(path),
            ..opts
        };
        Machine::new(cfg, opts).unwrap()
    } else {
        let plan = TracePlan::scan(&path, None, |_| {}).unwrap();
        Machine::from_trace(cfg, &plan, opts).unwrap()
    };
    m.run(|_, _| {}).unwrap()
}

/// Compares the run of `workload` on `config` with `tests/golden/<case>`,
/// or writes it there under `SWAPVM_BLESS=1`.
fn golden(case: &str, config: &str, workload: &str) {
    let report = run(config, workload);
    assert_eq!(
        report.outcome(),
        Outcome::Pass,
        "{config} with {workload}: a shipped case must pass (killed {:?})",
        report.killed
    );
    let text: String = report.decided().iter().map(|l| format!("{l}\n")).collect();
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{case}.vmstat"));
    if std::env::var_os("SWAPVM_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&file, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}; write it with `{BLESS}`", file.display()));
    let (got, want): (Vec<&str>, Vec<&str>) = (text.lines().collect(), want.lines().collect());
    let differ: Vec<String> = (0..got.len().max(want.len()))
        .filter(|&i| got.get(i) != want.get(i))
        .map(|i| {
            format!(
                "  golden: {}\n  now:    {}",
                want.get(i).unwrap_or(&"(none)"),
                got.get(i).unwrap_or(&"(none)")
            )
        })
        .collect();
    assert!(
        differ.is_empty(),
        "{config} with {workload}: {} figures differ from {}:\n{}\n\
         If the change means to alter these decisions, run `{BLESS}` and say why in the commit.",
        differ.len(),
        file.display(),
        differ.join("\n")
    );
}

/// The cases: `(golden file, config, workload or trace)`.
const CASES: &[(&str, &str, &str)] = &[
    (
        "memcg-tenants",
        "configs/memcg-tenants.toml",
        "workloads/memcg-tenants.toml",
    ),
    (
        "memcg-senpai",
        "configs/memcg-senpai.toml",
        "workloads/memcg-senpai.toml",
    ),
    (
        "memcg-build",
        "configs/memcg-build.toml",
        "workloads/memcg-build.toml",
    ),
    (
        "quickstart",
        "configs/quickstart.toml",
        "workloads/quickstart.toml",
    ),
    ("ksm", "configs/ksm.toml", "workloads/ksm-vms.toml"),
    (
        "two-devices",
        "configs/two-devices.toml",
        "workloads/swapoff-under-load.toml",
    ),
    (
        "whatif-16g",
        "configs/whatif-16g.toml",
        "workloads/quickstart.toml",
    ),
    (
        "whatif-256g",
        "configs/whatif-256g.toml",
        "workloads/quickstart.toml",
    ),
    (
        "vmstat-compare",
        "configs/vmstat-compare.toml",
        "workloads/usemem-seq.toml",
    ),
    (
        "fork-server",
        "configs/quickstart.toml",
        "workloads/fork-server.toml",
    ),
    (
        "hibernate-cycle",
        "configs/quickstart.toml",
        "workloads/hibernate-cycle.toml",
    ),
    (
        "lazyfree-cache",
        "configs/quickstart.toml",
        "workloads/lazyfree-cache.toml",
    ),
    (
        "tmpfs-build",
        "configs/quickstart.toml",
        "workloads/tmpfs-build.toml",
    ),
    (
        "usemem-seq",
        "configs/quickstart.toml",
        "workloads/usemem-seq.toml",
    ),
    (
        "zipf-kv",
        "configs/quickstart.toml",
        "workloads/zipf-kv.toml",
    ),
    (
        "memcg-usemem",
        "configs/memcg-usemem.toml",
        "workloads/memcg-usemem.toml",
    ),
    (
        "zswap-usemem",
        "configs/zswap.toml",
        "workloads/memcg-usemem.toml",
    ),
    (
        "replay-true-head",
        "configs/replay.toml",
        "workloads/true-head.lackey",
    ),
    (
        "replay-two-pids",
        "configs/replay.toml",
        "workloads/two-pids.csv",
    ),
];

macro_rules! cases {
    ($($test:ident $case:literal;)*) => {$(
        #[test]
        fn $test() {
            let &(case, config, workload) =
                CASES.iter().find(|c| c.0 == $case).unwrap();
            golden(case, config, workload);
        }
    )*
        /// The cases a test runs.
        const TESTED: &[&str] = &[$($case),*];
    };
}

cases! {
    quickstart "quickstart";
    ksm "ksm";
    two_devices "two-devices";
    whatif_16g "whatif-16g";
    whatif_256g "whatif-256g";
    vmstat_compare "vmstat-compare";
    fork_server "fork-server";
    hibernate_cycle "hibernate-cycle";
    lazyfree_cache "lazyfree-cache";
    tmpfs_build "tmpfs-build";
    usemem_seq "usemem-seq";
    zipf_kv "zipf-kv";
    memcg_usemem "memcg-usemem";
    zswap_usemem "zswap-usemem";
    memcg_tenants "memcg-tenants";
    memcg_senpai "memcg-senpai";
    memcg_build "memcg-build";
    replay_true_head "replay-true-head";
    replay_two_pids "replay-two-pids";
}

/// Every shipped config and workload is in a case, every case has a test
/// and a golden file, and no golden file is left over from a removed case.
#[test]
fn every_shipped_file_has_a_case() {
    let names = |dir: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(top().join(dir))
            .unwrap()
            .map(|e| format!("{dir}/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        v.sort();
        v
    };
    for f in names("configs") {
        assert!(
            CASES.iter().any(|c| c.1 == f),
            "{f}: no golden case runs it"
        );
    }
    for f in names("workloads") {
        assert!(
            CASES.iter().any(|c| c.2 == f),
            "{f}: no golden case runs it"
        );
        if !f.ends_with(".toml") {
            continue; // a trace: replayed on configs/replay.toml
        }
        // The config a workload is meant for, named in its first line, is
        // one its case runs it on (and the case asserts it passes there).
        let text = std::fs::read_to_string(top().join(&f)).unwrap();
        let named = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# config: "))
            .and_then(|l| l.split_whitespace().next());
        let Some(config) = named else {
            panic!("{f}: the first line must be `# config: configs/<name>.toml (...)`");
        };
        assert!(
            CASES.iter().any(|c| c.1 == config && c.2 == f),
            "{f}: names {config}, which no golden case runs it on"
        );
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for (case, ..) in CASES {
        assert!(TESTED.contains(case), "{case}: no test runs it");
        assert!(
            dir.join(format!("{case}.vmstat")).exists(),
            "{case}: no golden file; `{BLESS}`"
        );
    }
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let case = name.strip_suffix(".vmstat").unwrap_or(&name);
        assert!(
            CASES.iter().any(|c| c.0 == case),
            "tests/golden/{name}: no case"
        );
    }
}

/// With `page_cluster = 0` nothing is read ahead, so no fault can count a
/// readahead hit: a swap-cache folio no mapping has claimed yet (tmpfs
/// pages caught in writeout, a sibling's swap-in) is a `swap_cache_hit`
/// only. The kernel counts `swap_ra_hit` for folios with `PG_readahead`.
#[test]
fn page_cluster_zero_counts_swap_cache_hits_but_no_readahead_hits() {
    for workload in ["workloads/tmpfs-build.toml", "workloads/fork-server.toml"] {
        let mut cfg = metadata_only("configs/quickstart.toml");
        cfg.reclaim.page_cluster = 0;
        let opts = RunOptions {
            workload: Some(top().join(workload)),
            ..RunOptions::default()
        };
        let r = Machine::new(cfg, opts).unwrap().run(|_, _| {}).unwrap();
        let c = |ev| r.counter(ev);
        assert!(c(VmEvent::PswpIn) > 0, "{workload}: it must swap in");
        assert!(
            c(VmEvent::SwapCacheHit) > 0,
            "{workload}: cache hits expected"
        );
        assert_eq!(
            (c(VmEvent::SwapRa), c(VmEvent::SwapRaHit)),
            (0, 0),
            "{workload}"
        );
    }
}
