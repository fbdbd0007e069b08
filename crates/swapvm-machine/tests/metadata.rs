//! The metadata-only mode (`machine.content = "none"`, `backend = "null"`)
//! against the full mode (page bytes, a real swap file in /var/tmp): the
//! same deterministic workload and seed must give the same counters, every
//! one of them, in both. Plus: no RAM arena without content, and the
//! combinations that cannot work are config errors naming the field.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use swapvm_core::{MachineConfig, VmEvent};
use swapvm_machine::{Machine, Report, RunOptions};
use tempfile::TempDir;

fn tempdir() -> TempDir {
    // /var/tmp: a real disk (tmpfs refuses O_DIRECT).
    tempfile::Builder::new()
        .prefix("swapvm-meta-test-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../workloads")
        .join(name)
        .canonicalize()
        .unwrap()
}

/// One comparison: a machine (`[machine]` fields past `ram_mib`, and any
/// other sections), its swap devices, and a workload.
struct Case {
    name: &'static str,
    ram_mib: u64,
    /// Extra `[machine]` lines.
    machine: &'static str,
    /// Swap device sizes in MiB, one `[[swap]]` each.
    swap_mib: &'static [u64],
    /// Sections after the swap devices (`[ksm]`, `[mthp]`, `[fault]`).
    sections: &'static str,
    workload: Workload,
    scale: Option<f64>,
}

enum Workload {
    File(&'static str),
    Text(&'static str),
}

/// Writes the case's config in `content` mode into `dir` and returns it.
fn write_config(dir: &Path, c: &Case, seed: u64, none: bool) -> PathBuf {
    let mut t = format!(
        "[machine]\nram_mib = {}\nseed = {seed}\n{}\ncontent = \"{}\"\n",
        c.ram_mib,
        c.machine,
        if none { "none" } else { "full" }
    );
    for (i, mib) in c.swap_mib.iter().enumerate() {
        t += &format!(
            "[[swap]]\npath = \"swap{i}.img\"\nsize_mib = {mib}\nlabel = \"meta{i}\"\nbackend = \"{}\"\n",
            if none { "null" } else { "file" }
        );
    }
    t += c.sections;
    let path = dir.join(if none { "none.toml" } else { "full.toml" });
    std::fs::write(&path, t).unwrap();
    path
}

fn run(dir: &Path, c: &Case, seed: u64, none: bool) -> (Report, usize) {
    let config = write_config(dir, c, seed, none);
    let workload = match c.workload {
        Workload::File(f) => shipped(f),
        Workload::Text(t) => {
            let p = dir.join("workload.toml");
            std::fs::write(&p, t).unwrap();
            p
        }
    };
    let cfg = MachineConfig::load(&config).unwrap();
    let m = Machine::new(
        cfg,
        RunOptions {
            workload: Some(workload),
            scale: c.scale,
            check_every: 64,
            ..RunOptions::default()
        },
    )
    .unwrap();
    let arena = m.ram_mapped_bytes();
    (m.run(|_, _| {}).unwrap(), arena)
}

/// Runs `c` in both modes with `seed` and asserts that every decided
/// figure is the same; returns the full mode's report for the case's own
/// checks (that it exercised what it is about).
fn same_in_both_modes(c: &Case, seed: u64) -> Report {
    println!("SEED={seed} case {}", c.name);
    let dir = tempdir();
    let (full, full_arena) = run(dir.path(), c, seed, false);
    let (none, none_arena) = run(dir.path(), c, seed, true);
    let frames = c.ram_mib as usize * 256;
    assert_eq!(full_arena, frames * 4096, "{}: full-mode arena", c.name);
    assert_eq!(none_arena, frames * 8, "{}: metadata-only arena", c.name);
    assert_eq!(
        (full.content.as_str(), full.verify.as_str()),
        ("full", "on")
    );
    assert_eq!(
        (none.content.as_str(), none.verify.as_str()),
        ("none", "off")
    );
    assert!(full.swapin_verified > 0 || full.counter(VmEvent::PswpIn) == 0);
    assert_eq!(
        full.mismatches, 0,
        "{}: {:?}",
        c.name, full.mismatch_details
    );
    assert_eq!(
        (none.swapin_verified, none.stamps_verified, none.mismatches),
        (0, 0, 0),
        "verification off checks nothing"
    );
    let (a, b) = (full.decided(), none.decided());
    let differ: Vec<String> = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| format!("  full: {x}\n  none: {y}"))
        .collect();
    assert!(
        differ.is_empty() && a.len() == b.len(),
        "case {} SEED={seed}: metadata-only run differs from the full run in {} figures:\n{}",
        c.name,
        differ.len(),
        differ.join("\n")
    );
    assert!(full.violations.is_empty(), "{:?}", full.violations);
    assert!(
        full.counter(VmEvent::PswpOut) > 0,
        "{}: no swap-out",
        c.name
    );
    full
}

const USEMEM: &str = "name = \"usemem\"\n[[process]]\nkind = \"usemem\"\ncount = 2\n\
    size_mib = 10\npasses = 2\npattern = \"random\"\nwrite_ratio = 0.5\n";

#[test]
fn usemem_under_pressure_same_counters() {
    let c = Case {
        name: "usemem",
        ram_mib: 8,
        machine: "cpus = 2",
        swap_mib: &[32],
        sections: "",
        workload: Workload::Text(USEMEM),
        scale: None,
    };
    for seed in [1, 7, 0x5eed] {
        let r = same_in_both_modes(&c, seed);
        assert!(r.counter(VmEvent::PswpIn) > 0 && r.counter(VmEvent::PgMajFault) > 0);
        assert!(r.counter(VmEvent::WorkingsetRefaultAnon) > 0);
    }
}

#[test]
fn ksm_merges_the_same_pages_in_both_modes() {
    let c = Case {
        name: "ksm-vms",
        ram_mib: 16,
        machine: "cpus = 2",
        swap_mib: &[64],
        sections: "[ksm]\nrun = true\npages_to_scan = 512\n",
        workload: Workload::File("ksm-vms.toml"),
        scale: Some(0.25),
    };
    let r = same_in_both_modes(&c, 1);
    // (pages_sharing is the end of the run's, after every VM exited.)
    assert!(
        r.ksm.pages_merged > 0 && r.ksm.full_scans > 0,
        "{:?}",
        r.ksm
    );
}

#[test]
fn shmem_tmpfs_same_counters() {
    let c = Case {
        name: "tmpfs-build",
        ram_mib: 16,
        machine: "cpus = 2",
        swap_mib: &[64],
        sections: "",
        workload: Workload::File("tmpfs-build.toml"),
        scale: Some(0.25),
    };
    let r = same_in_both_modes(&c, 3);
    assert!(r.counter(VmEvent::PswpIn) > 0);
}

#[test]
fn mthp_same_counters() {
    let c = Case {
        name: "usemem-mthp",
        ram_mib: 8,
        machine: "cpus = 2",
        swap_mib: &[32],
        sections: "[mthp]\nenabled_kb = [16, 64]\n",
        workload: Workload::Text(USEMEM),
        scale: None,
    };
    let r = same_in_both_modes(&c, 2);
    assert!(
        r.counter(VmEvent::ThpSwpout) > 0,
        "no large folio swapped out"
    );
}

#[test]
fn fork_cow_same_counters() {
    let c = Case {
        name: "fork-server",
        ram_mib: 8,
        machine: "",
        swap_mib: &[48],
        sections: "",
        workload: Workload::File("fork-server.toml"),
        scale: Some(0.2),
    };
    let r = same_in_both_modes(&c, 4);
    assert!(r.counter(VmEvent::CowFault) > 0 && r.processes > 1);
}

#[test]
fn lazyfree_and_zero_pages_same_counters() {
    let c = Case {
        name: "lazyfree-cache",
        ram_mib: 8,
        machine: "",
        swap_mib: &[48],
        sections: "",
        workload: Workload::File("lazyfree-cache.toml"),
        scale: Some(0.25),
    };
    same_in_both_modes(&c, 5);
}

#[test]
fn swapoff_of_one_of_two_devices_same_counters() {
    let c = Case {
        name: "swapoff-under-load",
        ram_mib: 16,
        machine: "cpus = 2",
        swap_mib: &[48, 48],
        sections: "",
        workload: Workload::File("swapoff-under-load.toml"),
        scale: Some(0.25),
    };
    let r = same_in_both_modes(&c, 6);
    assert!(!r.swap_events.is_empty(), "no swapoff ran");
}

/// A hibernate cycle writes every frame in use to hibernation slots and
/// reads it back: on a null device the content words make the round trip.
#[test]
fn hibernate_cycles_same_counters() {
    let c = Case {
        name: "hibernate-cycle",
        ram_mib: 16,
        machine: "hibernate_every = 40",
        swap_mib: &[96],
        sections: "",
        workload: Workload::File("hibernate-cycle.toml"),
        scale: Some(0.25),
    };
    let r = same_in_both_modes(&c, 9);
    let h = &r.hibernation;
    assert!(
        h.cycles > 0 && h.pages_verified > 0 && h.mismatches == 0,
        "{h:?}"
    );
}

/// I/O errors and kills on the null device are injected as on a file:
/// the same requests fail, so the same counters come out.
#[test]
fn injected_io_faults_same_counters() {
    let c = Case {
        name: "usemem-faults",
        ram_mib: 8,
        machine: "cpus = 2",
        swap_mib: &[32],
        sections: "[fault]\nread_error_rate = 0.002\nwrite_error_rate = 0.01\n\
                   short_write_rate = 0.005\nkill_mid_fault_rate = 0.001\n",
        workload: Workload::Text(USEMEM),
        scale: None,
    };
    let r = same_in_both_modes(&c, 8);
    assert!(r.faults.io.write_errors > 0, "{:?}", r.faults);
}

fn config_error(text: &str) -> String {
    let e = MachineConfig::from_toml(text, Path::new("/cfg/meta.toml")).unwrap_err();
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg += &format!(": {s}");
        src = s.source();
    }
    msg
}

#[test]
fn bad_combinations_name_the_field() {
    let m = |content: &str| format!("[machine]\nram_mib = 8\ncontent = \"{content}\"\n");
    let dev = |backend: &str, extra: &str| {
        format!("[[swap]]\npath = \"a\"\nsize_mib = 8\nbackend = \"{backend}\"\n{extra}")
    };
    for (text, field) in [
        (m("full") + &dev("null", ""), "swap[0].backend"),
        (m("none") + &dev("file", ""), "swap[0].backend"),
        (
            m("none") + &dev("null", "") + &dev("zram", ""),
            "swap[1].backend",
        ),
        (
            m("none") + &dev("null", "discard = true\n"),
            "swap[0].discard",
        ),
        (
            m("none") + &dev("null", "") + "[fault]\ntorn_write_rate = 0.1\n",
            "fault.torn_write_rate",
        ),
    ] {
        let msg = config_error(&text);
        assert!(
            msg.contains(field) && msg.contains("/cfg/meta.toml"),
            "{field}: {msg}"
        );
    }
    let msg = config_error(&m("partial"));
    assert!(msg.contains("content") && msg.contains("line 3"), "{msg}");
    // Good combinations load.
    for text in [m("none") + &dev("null", ""), m("full") + &dev("file", "")] {
        MachineConfig::from_toml(&text, Path::new("/cfg/meta.toml")).unwrap();
    }
}

/// `--fault` changes the faults after the config loaded: the machine
/// checks again, and refuses with the field named.
#[test]
fn a_torn_write_fault_from_the_command_line_is_refused() {
    let text = "[machine]\nram_mib = 8\ncontent = \"none\"\n\
                [[swap]]\npath = \"a\"\nsize_mib = 8\nbackend = \"null\"\n";
    let mut cfg = MachineConfig::from_toml(text, Path::new("/cfg/meta.toml")).unwrap();
    cfg.fault
        .set("torn_write_rate=0.5", Path::new("--fault"))
        .unwrap();
    let dir = tempdir();
    let wl = dir.path().join("w.toml");
    std::fs::write(&wl, USEMEM).unwrap();
    let e = Machine::new(
        cfg,
        RunOptions {
            workload: Some(wl),
            ..RunOptions::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("fault.torn_write_rate"), "{e}");
}

/// A null device creates and opens no file, whatever its `path` says.
#[test]
fn a_null_device_touches_no_file() {
    let dir = tempdir();
    let c = Case {
        name: "no-file",
        ram_mib: 8,
        machine: "",
        swap_mib: &[32],
        sections: "",
        workload: Workload::Text(USEMEM),
        scale: Some(0.5),
    };
    let (r, _) = run(dir.path(), &c, 1, true);
    assert!(r.counter(VmEvent::PswpOut) > 0);
    assert_eq!(
        r.devices[0].bytes_written,
        r.counter(VmEvent::PswpOut) * 4096
    );
    assert!(!dir.path().join("swap0.img").exists());
}

/// The fuzz harness's random machines and workloads, each run in both
/// modes: every decided figure the same. Seeds whose machine cannot be
/// metadata-only (a zram device, torn writes) are skipped and counted;
/// discard is turned off in both runs (a null device refuses it).
#[test]
fn fuzz_cases_give_the_same_counters_in_both_modes() {
    let seeds: u64 = std::env::var("SWAPVM_META_FUZZ_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let mut compared = 0;
    for seed in 0..seeds {
        let case = swapvm_machine::fuzz::derive_case(seed);
        if case.config_toml.contains("backend = \"zram\"")
            || case.config_toml.contains("torn_write_rate")
        {
            continue;
        }
        let full_toml = case
            .config_toml
            .replace("discard = true", "discard = false");
        let none_toml = full_toml
            .replace("[machine]\n", "[machine]\ncontent = \"none\"\n")
            .replace("[[swap]]\n", "[[swap]]\nbackend = \"null\"\n");
        let mut r = Vec::new();
        for toml in [&full_toml, &none_toml] {
            let dir = tempdir();
            let c = swapvm_machine::fuzz::FuzzCase {
                seed,
                config_toml: toml.clone(),
                workload_toml: case.workload_toml.clone(),
            };
            let config = c.write_to(dir.path()).unwrap();
            let cfg = MachineConfig::load(&config).unwrap();
            let opts = RunOptions {
                check_every: 1,
                ..RunOptions::default()
            };
            r.push(Machine::new(cfg, opts).unwrap().run(|_, _| {}).unwrap());
        }
        let (a, b) = (r[0].decided(), r[1].decided());
        let differ: Vec<String> = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| x != y)
            .map(|(x, y)| format!("  full: {x}\n  none: {y}"))
            .collect();
        assert!(
            differ.is_empty() && a.len() == b.len(),
            "fuzz case SEED={seed} (swapvm fuzz --seeds {seed}..{} --keep shows it): \
             metadata-only differs from full in {} figures:\n{}",
            seed + 1,
            differ.len(),
            differ.join("\n")
        );
        compared += 1;
    }
    assert!(
        compared >= seeds / 2,
        "only {compared} of {seeds} seeds compared"
    );
}
