//! Memory cgroups end to end: limits, swap limits, protection, the memcg
//! OOM killer, and the memcg invariants under random op sequences. Small
//! machines on real image files in /var/tmp.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use swapvm_core::{MachineConfig, SimRng, VmEvent};
use swapvm_machine::memcg::CgroupReport;
use swapvm_machine::{Machine, Report, RunOptions};
use swapvm_workload::{MmOps, MmOpsConfig, ProcessSource};
use tempfile::TempDir;

fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("swapvm-memcg-test-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

/// A machine of `ram_mib` with a 64 MiB swap image and `cgroups` (TOML
/// `[[cgroup]]` tables), running `workload`'s `[[process]]` tables.
fn run_with(ram_mib: u32, cgroups: &str, workload: &str, opts: RunOptions) -> Report {
    let dir = tempdir();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "workload = \"w.toml\"\n[machine]\nram_mib = {ram_mib}\nseed = 5\ntick_accesses = 64\n\
             [[swap]]\npath = \"s.img\"\nsize_mib = 64\n{cgroups}"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("w.toml"),
        format!("name = \"t\"\n{workload}"),
    )
    .unwrap();
    let cfg = MachineConfig::load(&config).unwrap();
    Machine::new(cfg, opts).unwrap().run(|_, _| {}).unwrap()
}

fn run(ram_mib: u32, cgroups: &str, workload: &str) -> Report {
    let opts = RunOptions {
        check_every: 50,
        ..RunOptions::default()
    };
    run_with(ram_mib, cgroups, workload, opts)
}

fn cg<'a>(r: &'a Report, path: &str) -> &'a CgroupReport {
    r.cgroups.iter().find(|c| c.path == path).unwrap()
}

fn event(c: &CgroupReport, name: &str) -> u64 {
    c.events.iter().find(|(k, _)| k == name).unwrap().1
}

fn usemem(cgroup: &str, mib: u32, passes: u32, pattern: &str) -> String {
    format!(
        "[[process]]\nkind = \"usemem\"\ncgroup = \"{cgroup}\"\nsize_mib = {mib}\npasses = {passes}\n\
         pattern = \"{pattern}\"\nwrite_ratio = 0.5\n"
    )
}

#[test]
fn a_memcg_limit_reclaims_the_cgroup_not_the_machine() {
    let r = run(
        64,
        "[[cgroup]]\npath = \"/job\"\nmemory.max = \"8M\"\n",
        &usemem("/job", 16, 2, "random"),
    );
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    let job = cg(&r, "/job");
    assert!(
        job.memory_peak <= 8 << 20,
        "peak {} over memory.max",
        job.memory_peak
    );
    assert!(job.stat("pswpout") > 0 && event(job, "max") > 0, "{job:?}");
    // 64 MiB of RAM never runs low: no kswapd, no global direct reclaim.
    assert_eq!(r.counter(VmEvent::PgScanKswapd), 0);
    assert_eq!(r.counter(VmEvent::AllocStall), 0);
    assert_eq!(job.stat("pgscan_direct"), r.counter(VmEvent::PgScanDirect));
    assert!(r.killed.is_empty(), "{:?}", r.killed);
}

#[test]
fn swap_max_zero_keeps_pages_out_of_swap_and_ooms_only_that_cgroup() {
    let cgroups = "[[cgroup]]\npath = \"/nosw\"\nmemory.max = \"8M\"\nmemory.swap.max = \"0\"\n\
                   [[cgroup]]\npath = \"/sw\"\nmemory.max = \"8M\"\n";
    let w = usemem("/nosw", 12, 1, "sequential") + &usemem("/sw", 12, 1, "sequential");
    let r = run(64, cgroups, &w);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    let (nosw, sw) = (cg(&r, "/nosw"), cg(&r, "/sw"));
    assert_eq!((nosw.swap_peak, nosw.stat("pswpout")), (0, 0), "{nosw:?}");
    // With no swap room its anon lists are not even scanned (can_age_anon_pages),
    // so no swap-out was refused either: memory.swap.events max stays 0.
    assert_eq!(nosw.swap_events_max, 0);
    assert!(sw.stat("pswpout") > 0, "{sw:?}");
    assert_eq!(r.killed.len(), 1, "{:?}", r.killed);
    assert!(
        r.killed[0].contains("memory cgroup /nosw"),
        "{:?}",
        r.killed
    );
    assert_eq!((event(nosw, "oom"), event(nosw, "oom_kill")), (1, 1));
    assert_eq!(event(sw, "oom_kill"), 0);
    assert_eq!(r.counter(VmEvent::OomKill), 1);
}

#[test]
fn oom_group_kills_every_process_of_the_group_and_no_other() {
    let cgroups = "[[cgroup]]\npath = \"/g\"\nmemory.max = \"8M\"\nmemory.swap.max = 0\n\
                   memory.oom.group = 1\n";
    let w = usemem("/g", 12, 1, "sequential")
        + &usemem("/g", 2, 200, "sequential")
        + &usemem("/", 2, 200, "sequential");
    let r = run(64, cgroups, &w);
    assert_eq!(r.killed.len(), 2, "{:?}", r.killed);
    assert!(r.killed.iter().all(|k| k.contains("memory cgroup /g")));
    let g = cg(&r, "/g");
    assert_eq!((event(g, "oom_group_kill"), event(g, "oom_kill")), (1, 2));
}

/// `/lat` (10 MiB, hot) beside a `/batch` that grows to 48 MiB on a 32 MiB
/// machine: global reclaim takes from `/lat` unless `memory.low` covers it.
fn tenants(low: &str) -> Report {
    let cgroups = format!(
        "[[cgroup]]\npath = \"/lat\"\nmemory.low = \"{low}\"\n[[cgroup]]\npath = \"/batch\"\n"
    );
    let w = usemem("/lat", 10, 12, "random") + &usemem("/batch", 48, 2, "sequential");
    run(32, &cgroups, &w)
}

#[test]
fn memory_low_protects_a_tenant_from_a_growing_neighbour() {
    let (bare, protected) = (tenants("0"), tenants("12M"));
    for r in [&bare, &protected] {
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert!(r.killed.is_empty(), "{:?}", r.killed);
    }
    let out = |r: &Report| cg(r, "/lat").stat("pswpout");
    assert!(out(&bare) > 0, "without memory.low /lat is reclaimed");
    assert!(
        out(&protected) * 4 < out(&bare),
        "memory.low: /lat swapped out {} pages, {} without it",
        out(&protected),
        out(&bare)
    );
    // Within its protection the whole time: never reclaimed below low.
    assert_eq!(event(cg(&protected, "/lat"), "low"), 0);
}

/// Random mm-op processes in two limited cgroups and the root, the
/// invariant checker (memcg charges, lruvecs, swap_cgroup owners, limits)
/// after every tick.
#[test]
fn random_ops_in_cgroups_keep_the_memcg_invariants() {
    for seed in 0..6u64 {
        let dir = tempdir();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            "[machine]\nram_mib = 8\nseed = 1\ntick_accesses = 32\n\
             [[swap]]\npath = \"s.img\"\nsize_mib = 32\n\
             [[cgroup]]\npath = \"/a\"\nmemory.max = \"1M\"\n\
             [[cgroup]]\npath = \"/a/b\"\nmemory.max = \"512K\"\nmemory.swap.max = \"256K\"\n\
             [[cgroup]]\npath = \"/c\"\nmemory.high = \"1M\"\nmemory.low = \"512K\"\n",
        )
        .unwrap();
        let cfg = MachineConfig::load(&config).unwrap();
        let ops = MmOpsConfig {
            ops: 600,
            ..MmOpsConfig::default()
        };
        let sources = ["/a", "/a/b", "/c", "/"]
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let rng = SimRng::derive(seed, i as u64 + 1);
                (c.to_string(), ProcessSource::MmOps(MmOps::new(ops, rng)))
            })
            .collect();
        let opts = RunOptions {
            check_every: 1,
            seed: Some(seed),
            ..RunOptions::default()
        };
        let r = Machine::with_sources_in(cfg, opts, "mmops", sources)
            .unwrap()
            .run(|_, _| {})
            .unwrap();
        let replay = format!("seed {seed}: cargo test -p swapvm-machine --test memcg random_ops");
        assert!(r.violations.is_empty(), "{replay}: {:?}", r.violations);
        assert!(
            event(cg(&r, "/a"), "max") > 0,
            "{replay}: the limits were never reached"
        );
    }
}

#[test]
fn a_process_naming_a_missing_cgroup_is_an_error_naming_the_field() {
    let dir = tempdir();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[machine]\nram_mib = 8\n[[cgroup]]\npath = \"/a\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("w.toml"),
        format!("name = \"t\"\n{}", usemem("/b", 1, 1, "random")),
    )
    .unwrap();
    let cfg = MachineConfig::load(&config).unwrap();
    let opts = RunOptions {
        workload: Some(dir.path().join("w.toml")),
        ..RunOptions::default()
    };
    let e = Machine::new(cfg, opts).err().unwrap().to_string();
    assert!(
        e.contains("w.toml") && e.contains("process[0].cgroup") && e.contains("\"/b\""),
        "{e}"
    );
}

#[test]
fn bad_cgroup_tables_are_errors_naming_the_field() {
    for (table, field) in [
        (
            "path = \"/a\"\nmemory.maxx = \"1M\"",
            "cgroup[0].memory.maxx",
        ),
        (
            "path = \"/a\"\nmemory.max = \"1.5G\"",
            "cgroup[0].memory.max",
        ),
        ("path = \"/a/b\"", "cgroup[0].path"),
    ] {
        let text = format!("[machine]\nram_mib = 8\n[[cgroup]]\n{table}\n");
        let e = MachineConfig::from_toml(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml") && e.contains(field), "{table}: {e}");
    }
}

/// A process in `/a` that maps and writes `mib` MiB, then writes
/// `memory.reclaim` = `ask`.
fn reclaim_run(mib: u32, ask: &str) -> Report {
    let w = format!(
        "[[process]]\nkind = \"phases\"\ncgroup = \"/a\"\n\
         [[process.phase]]\nop = \"mmap\"\nregion = 0\nsize_mib = {mib}\n\
         [[process.phase]]\nop = \"touch\"\nregion = 0\n\
         [[process.phase]]\nop = \"cgroup_write\"\nfile = \"memory.reclaim\"\nvalue = \"{ask}\"\n\
         [[process.phase]]\nop = \"sleep\"\nticks = 20\n"
    );
    run(64, "[[cgroup]]\npath = \"/a\"\n", &w)
}

#[test]
fn memory_reclaim_reclaims_what_is_asked_or_says_eagain() {
    let r = reclaim_run(8, "4M");
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    let w = &r.cgroup_writes[0];
    assert_eq!(
        (w.cgroup.as_str(), w.result.as_str()),
        ("/a", "ok"),
        "{w:?}"
    );
    assert!(w.reclaimed >= 1024, "{w:?}");
    assert!(cg(&r, "/a").stat("pswpout") >= 1024);
    // More than the cgroup has: it gives up with EAGAIN, as the kernel does.
    let r = reclaim_run(8, "64M");
    let w = &r.cgroup_writes[0];
    assert_eq!(w.result, "EAGAIN", "{w:?}");
    assert!(w.reclaimed < 16384 && w.reclaimed > 0, "{w:?}");
}

#[test]
fn lowering_memory_high_reclaims_and_throttles() {
    let w = "[[process]]\nkind = \"phases\"\ncgroup = \"/a\"\n\
             [[process.phase]]\nop = \"mmap\"\nregion = 0\nsize_mib = 12\n\
             [[process.phase]]\nop = \"touch\"\nregion = 0\n\
             [[process.phase]]\nop = \"cgroup_write\"\nfile = \"memory.high\"\nvalue = \"4M\"\n\
             [[process.phase]]\nop = \"access\"\nregion = 0\naccesses = 6144\npattern = \"random\"\nwrite_ratio = 0.5\n";
    let r = run(64, "[[cgroup]]\npath = \"/a\"\n", w);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    let a = cg(&r, "/a");
    assert!(event(a, "high") > 0 && a.stat("pswpout") > 0, "{a:?}");
    assert!(r.cgroup_writes[0].reclaimed > 0);
    assert!(
        r.killed.is_empty(),
        "memory.high never OOM-kills: {:?}",
        r.killed
    );
}

/// `cpus` CPUs; `/calm` touches 2 MiB over and over (it fits: it never waits),
/// `/thrash` works through 16 MiB under an 8 MiB `memory.max`. The run
/// stops at a tick cap while both still run.
fn calm_and_thrash_on(cpus: u32) -> Report {
    let dir = tempdir();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "workload = \"w.toml\"\n[machine]\nram_mib = 64\nseed = 5\ntick_accesses = 64\n\
             cpus = {cpus}\nmax_ticks = 6000\n[[swap]]\npath = \"s.img\"\nsize_mib = 64\n\
             [[cgroup]]\npath = \"/calm\"\n[[cgroup]]\npath = \"/thrash\"\nmemory.max = \"8M\"\n"
        ),
    )
    .unwrap();
    let workload = format!(
        "name = \"t\"\n{}{}",
        usemem("/calm", 2, 100_000, "sequential"),
        usemem("/thrash", 16, 100_000, "random")
    );
    std::fs::write(dir.path().join("w.toml"), workload).unwrap();
    let cfg = MachineConfig::load(&config).unwrap();
    let opts = RunOptions {
        check_every: 500,
        ..RunOptions::default()
    };
    Machine::new(cfg, opts).unwrap().run(|_, _| {}).unwrap()
}

#[test]
fn psi_full_is_zero_when_one_task_of_two_never_stalls() {
    let r = calm_and_thrash_on(1);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    let (calm, thrash) = (cg(&r, "/calm"), cg(&r, "/thrash"));
    assert_eq!(calm.stat("pgmajfault"), 0, "{calm:?}");
    assert!(thrash.stat("pgmajfault") > 0, "{thrash:?}");
    // The calm task never stalls: nothing in its group.
    assert_eq!(calm.pressure.some.total_us, 0, "{:?}", calm.pressure);
    // The thrashing task is its group's only task: its stalls are full.
    let t = thrash.pressure;
    assert!(
        t.some.total_us > 0 && t.full.total_us == t.some.total_us,
        "{t:?}"
    );
    assert!(t.some.avg10 > 0.0 && t.some.avg60 > 0.0, "{t:?}");
    // The machine: someone stalls, but a task always runs on the CPU.
    assert_eq!(
        r.pressure.some.total_us, t.some.total_us,
        "{:?}",
        r.pressure
    );
    assert_eq!(r.pressure.full.total_us, 0, "{:?}", r.pressure);
    let root = cg(&r, "/");
    assert_eq!(root.pressure, r.pressure);
}

#[test]
fn psi_full_counts_stalls_on_a_cpu_of_their_own() {
    // The same two tasks on two CPUs: the thrashing one's CPU has nobody
    // productive while it stalls, so the machine's full time is the share
    // of non-idle time that CPU lost (psi.c's per-CPU aggregation).
    let r = calm_and_thrash_on(2);
    let t = cg(&r, "/thrash").pressure;
    let full = r.pressure.full.total_us;
    assert!(
        full > 0 && full < t.full.total_us,
        "{:?} vs {t:?}",
        r.pressure
    );
}

#[test]
fn senpai_shrinks_memory_high_while_the_cgroup_does_not_stall() {
    // /app touches 32 MiB and sleeps: no pressure, so every round after
    // the baseline takes max_probe (5 %) off the smaller of the limit and
    // memory.current, and reclaim follows it down.
    let workload = "[[process]]\nkind = \"phases\"\ncgroup = \"/app\"\n\
        [[process.phase]]\nop = \"mmap\"\nregion = 0\nsize_mib = 32\n\
        [[process.phase]]\nop = \"touch\"\nregion = 0\n\
        [[process.phase]]\nop = \"sleep\"\nticks = 4000\n\
        [[process]]\nkind = \"phases\"\n\
        [[process.phase]]\nop = \"senpai\"\ncgroup = \"/app\"\nrounds = 8\ninterval_ticks = 400\n\
        max_probe = 0.05\n";
    let r = run(64, "[[cgroup]]\npath = \"/app\"\n", workload);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    let w = &r.cgroup_writes;
    assert_eq!(w.len(), 7, "{w:?}");
    let mut last = 32u64 << 20;
    for x in w {
        assert_eq!((x.file.as_str(), x.result.as_str()), ("memory.high", "ok"));
        let v: u64 = x.value.parse().unwrap();
        let most = (last / 4096 * 95 / 100 + 1) * 4096;
        assert!(v <= most && v >= last / 10 * 9, "{v} after {last}: {w:?}");
        last = v;
    }
    let app = cg(&r, "/app");
    assert!(app.stat("pswpout") > 0, "{app:?}");
    assert_eq!(app.memory_high, Some(last));
}

#[test]
fn a_bad_senpai_phase_names_its_field() {
    let dir = tempdir();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "workload = \"w.toml\"\n[machine]\nram_mib = 64\n[[swap]]\npath = \"s.img\"\nsize_mib = 8\n",
    )
    .unwrap();
    let w = dir.path().join("w.toml");
    for (bad, field) in [
        ("rounds = 0", "rounds"),
        ("rounds = 2\nmax_probe = 1.5", "max_probe"),
        ("rounds = 2\npressure_us = 0", "pressure_us"),
    ] {
        std::fs::write(
            &w,
            format!("name = \"t\"\n[[process]]\nkind = \"phases\"\n[[process.phase]]\nop = \"senpai\"\n{bad}\n"),
        )
        .unwrap();
        let cfg = MachineConfig::load(&config).unwrap();
        let opts = RunOptions {
            workload: Some(w.clone()),
            ..RunOptions::default()
        };
        let e = Machine::new(cfg, opts).unwrap_err().to_string();
        assert!(e.contains("w.toml") && e.contains(field), "{bad}: {e}");
    }
}

#[test]
fn the_run_folder_has_each_cgroups_series_and_pressure() {
    let r = run(
        64,
        "[[cgroup]]\npath = \"/job\"\nmemory.max = \"8M\"\n",
        &usemem("/job", 16, 2, "random"),
    );
    let dir = tempdir();
    let written = swapvm_machine::run_folder::write(dir.path(), &r).unwrap();
    for f in ["cgroups.csv", "cgroups.svg", "cgroup/job/memory.pressure"] {
        assert!(written.contains(&dir.path().join(f)), "{f} not written");
    }
    let csv = std::fs::read_to_string(dir.path().join("cgroups.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (cur, swap, v1) = (
        col("memory_current_pages"),
        col("swap_current_pages"),
        col("swap_v1_pages"),
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let job: Vec<&Vec<&str>> = rows.iter().filter(|r| r[1] == "/job").collect();
    assert_eq!(job.len() * 2, rows.len(), "one row per sample and cgroup");
    let n = |r: &Vec<&str>, i: usize| r[i].parse::<u64>().unwrap();
    // Never over memory.max (8 MiB) at a sample; v1's swap leaves out the
    // swap-cached slots, so it is at most v2's; the job swapped.
    assert!(job
        .iter()
        .all(|r| n(r, cur) <= 2048 && n(r, v1) <= n(r, swap)));
    assert!(job.iter().any(|r| n(r, v1) > 0 && n(r, v1) < n(r, swap)));
    let text = std::fs::read_to_string(dir.path().join("cgroup/job/memory.pressure")).unwrap();
    assert_eq!(text, cg(&r, "/job").pressure.text());
    assert!(text.starts_with("some avg10=") && text.contains("\nfull avg10="));
}
