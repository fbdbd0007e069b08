//! Deterministic simulation of the memory layer: random sequences of mmap
//! (private, shared anonymous, tmpfs), loads and stores, KSM-mergeable pool
//! fills, every madvise, fork, munmap, tmpfs truncate and unlink, and exit,
//! on a 4 MiB machine that swaps all the time, with ksmd running and a low
//! per-slot count maximum so continuations are used. The invariant checker
//! runs after every tick. A failing seed is printed with the command that
//! replays it.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use swapvm_core::{MachineConfig, VmEvent};
use swapvm_machine::{Machine, MmOpsRun, Report, RunOptions};
use swapvm_workload::MmOpsConfig;
use tempfile::TempDir;

fn machine_dir(seed: u64) -> (TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("swapvm-mmsim-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let config = dir.path().join("config.toml");
    // Seed-derived shape, swarm style: CPUs, count maximum, ksmd speed.
    let cpus = 1 + seed % 2;
    let count_max = 2 + seed % 3;
    let pages_to_scan = 16 << (seed % 3);
    // A quarter of the seeds get a small swap device, so that large
    // folios find no contiguous slots and are split.
    let swap_mib = if seed % 4 == 2 { 10 } else { 24 };
    // Half the seeds fault in large folios (16K and 64K mTHP); half of
    // those swap them back in whole from the file device too (the kernel
    // does only from synchronous-I/O devices).
    let mthp = match seed % 4 {
        0 => "[mthp]\nenabled_kb = [16, 64]\nswapin_any_device = true\n",
        2 => "[mthp]\nenabled_kb = [16, 64]\n",
        _ => "",
    };
    std::fs::write(
        &config,
        format!(
            "[machine]\nram_mib = 4\ncpus = {cpus}\nseed = {seed}\ntick_accesses = 16\n\
             swap_count_max = {count_max}\n\
             [[swap]]\npath = \"swap.img\"\nsize_mib = {swap_mib}\n\
             [ksm]\nrun = true\npages_to_scan = {pages_to_scan}\n{mthp}"
        ),
    )
    .unwrap();
    (dir, config)
}

fn run(config: &Path, seed: u64, procs: u32, ops: MmOpsConfig) -> Report {
    let cfg = MachineConfig::load(config).unwrap();
    let opts = RunOptions {
        seed: Some(seed),
        check_every: 1,
        mmops: Some(MmOpsRun { procs, ops }),
        ..RunOptions::default()
    };
    Machine::new(cfg, opts).unwrap().run(|_, _| {}).unwrap()
}

/// What must hold after any seed: every byte verified, every invariant
/// held at every tick, no contract warning, no slot left, and processes
/// killed only by the SIGBUS of an access beyond a truncated file's end.
fn check(seed: u64, r: &Report) -> Result<(), String> {
    let mut why = Vec::new();
    if r.mismatches > 0 {
        why.push(format!("mismatches: {:?}", r.mismatch_details));
    }
    if !r.violations.is_empty() {
        why.push(format!("violations: {:?}", r.violations));
    }
    if r.warnings > 0 {
        why.push(format!("warnings: {:?}", r.warning_sites));
    }
    if r.devices.iter().any(|d| d.slots_used > 0) {
        why.push(format!(
            "slots left in use: {:?}",
            r.devices.iter().map(|d| d.slots_used).collect::<Vec<_>>()
        ));
    }
    if let Some(k) = r.killed.iter().find(|k| !k.contains("SigBus")) {
        why.push(format!("killed: {k}"));
    }
    if r.checks_run < r.ticks {
        why.push(format!(
            "checker ran {} times in {} ticks",
            r.checks_run, r.ticks
        ));
    }
    if why.is_empty() {
        return Ok(());
    }
    Err(format!(
        "SEED={seed} failed (replay: SWAPVM_MMSIM_SEED={seed} cargo test -p swapvm-machine --test mm_sim -- replay --nocapture):\n{}",
        why.join("\n")
    ))
}

#[test]
fn random_mm_ops_over_many_seeds_keep_every_invariant() {
    let seeds: u64 = std::env::var("SWAPVM_MMSIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let mut total = [0u64; 12];
    let names = [
        "pswpout",
        "pswpin",
        "cow_fault",
        "pglazyfree",
        "ksm merges",
        "forks",
        "pgmajfault",
        "cow_ksm",
        "anon_fault_alloc",
        "thp_swpout",
        "thp_swpin",
        "thp_split_page",
    ];
    for seed in 1..=seeds {
        let (_dir, config) = machine_dir(seed);
        let r = run(&config, seed, 3, MmOpsConfig::default());
        if let Err(e) = check(seed, &r) {
            panic!("{e}");
        }
        total[0] += r.counter(VmEvent::PswpOut);
        total[1] += r.counter(VmEvent::PswpIn);
        total[2] += r.counter(VmEvent::CowFault);
        total[3] += r.counter(VmEvent::PgLazyFree);
        total[4] += r.ksm.pages_merged;
        total[5] += r.processes - 3;
        total[6] += r.counter(VmEvent::PgMajFault);
        total[7] += r.counter(VmEvent::CowKsm);
        total[8] += r.counter(VmEvent::AnonFaultAlloc);
        total[9] += r.counter(VmEvent::ThpSwpout);
        total[10] += r.counter(VmEvent::ThpSwpin);
        total[11] += r.counter(VmEvent::ThpSplitPage);
    }
    eprintln!(
        "{seeds} seeds: {:?}",
        names.iter().zip(total).collect::<Vec<_>>()
    );
    // The sequences must reach every mechanism, or the test proves little.
    for (n, t) in names.iter().zip(total) {
        assert!(t > 0, "no {n} over {seeds} seeds: {:?}", total);
    }
}

/// Replays one seed (`SWAPVM_MMSIM_SEED=N`), printing its report.
#[test]
fn replay() {
    let Some(seed) = std::env::var("SWAPVM_MMSIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    let (_dir, config) = machine_dir(seed);
    let r = run(&config, seed, 3, MmOpsConfig::default());
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    check(seed, &r).unwrap();
}

#[test]
fn same_seed_same_counters() {
    let (_d1, c1) = machine_dir(5);
    let (_d2, c2) = machine_dir(5);
    let a = run(&c1, 5, 3, MmOpsConfig::default());
    let b = run(&c2, 5, 3, MmOpsConfig::default());
    assert_eq!(a.vmstat, b.vmstat);
    assert_eq!(a.ksm, b.ksm);
    assert_eq!(a.ticks, b.ticks);
    assert_eq!(a.processes, b.processes);
}
