//! zswap end to end: a pool that holds the working set keeps the device
//! idle; a pool too small for it, or a memcg's `memory.zswap.max` lowered
//! mid-run, writes pages back to the real swap file, and every one of them
//! reads back verified; `memory.zswap.writeback = 0` keeps refused pages in
//! memory; the checker catches a stale entry. Small machines on image
//! files in /var/tmp.

#![allow(clippy::unwrap_used)]

use swapvm_core::{MachineConfig, VmEvent};
use swapvm_machine::memcg::CgroupReport;
use swapvm_machine::{Machine, Report, RunOptions};
use tempfile::TempDir;

fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("swapvm-zswap-test-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

/// A 16 MiB machine with a 64 MiB swap image, `[zswap]` lines `zswap`,
/// other sections `extra`, running `workload`'s `[[process]]` tables.
fn run(zswap: &str, extra: &str, workload: &str) -> Report {
    run_in("", zswap, extra, workload)
}

/// [`run`] with more `[machine]` lines.
fn run_in(machine: &str, zswap: &str, extra: &str, workload: &str) -> Report {
    let dir = tempdir();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "workload = \"w.toml\"\n[machine]\nram_mib = 16\nseed = 3\ntick_accesses = 64\n{machine}\n\
             [[swap]]\npath = \"s.img\"\nsize_mib = 64\n[zswap]\nenabled = true\n{zswap}\n{extra}"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("w.toml"),
        format!("name = \"z\"\n{workload}"),
    )
    .unwrap();
    let cfg = MachineConfig::load(&config).unwrap();
    let opts = RunOptions {
        check_every: 50,
        ..RunOptions::default()
    };
    Machine::new(cfg, opts).unwrap().run(|_, _| {}).unwrap()
}

/// One usemem process of `mib` MiB, random passes, half writes.
fn usemem(mib: u32, cgroup: &str) -> String {
    format!(
        "[[process]]\nkind = \"usemem\"\nsize_mib = {mib}\npasses = 3\npattern = \"random\"\n\
         write_ratio = 0.5\n{cgroup}"
    )
}

fn cg<'a>(r: &'a Report, path: &str) -> &'a CgroupReport {
    r.cgroups.iter().find(|c| c.path == path).unwrap()
}

/// Everything verified and every invariant held.
fn clean(r: &Report) {
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.mismatches, 0, "{:?}", r.mismatch_details);
    assert!(r.passed(), "{:?} {:?}", r.killed, r.warning_sites);
}

#[test]
fn a_working_set_that_fits_the_pool_swaps_only_to_zswap() {
    let r = run("", "", &usemem(24, ""));
    clean(&r);
    let (zout, zin) = (r.counter(VmEvent::ZswpOut), r.counter(VmEvent::ZswpIn));
    assert!(zout > 1000 && zin > 1000, "zswpout {zout}, zswpin {zin}");
    assert_eq!(r.counter(VmEvent::PswpOut), 0, "the device was written");
    assert_eq!(r.counter(VmEvent::PswpIn), 0, "the device was read");
    assert_eq!(r.devices[0].writes + r.devices[0].reads, 0);
    // The loads were checked against what was stored.
    assert!(r.swapin_verified >= zin, "{} of {zin}", r.swapin_verified);
    let z = r.zswap.as_ref().unwrap();
    assert_eq!((z.written_back_pages, z.pool_limit_hit), (0, 0), "{z:?}");
    // The process exited: every entry went with its slot.
    assert_eq!(
        (z.stored_pages, z.pool_total_size, z.pool_frames),
        (0, 0, 0)
    );
}

#[test]
fn a_full_pool_writes_back_and_every_page_reads_back_verified() {
    // 1% of 16 MiB: 40 pages of pool for a 24 MiB workload.
    let r = run("max_pool_percent = 1\n", "", &usemem(24, ""));
    clean(&r);
    let z = r.zswap.as_ref().unwrap();
    let wb = r.counter(VmEvent::ZswpWb);
    assert!(wb > 100 && z.pool_limit_hit > 0, "zswpwb {wb}, {z:?}");
    assert_eq!(z.written_back_pages, wb);
    // Written-back pages came back from the file, checked on the way.
    let pswpin = r.counter(VmEvent::PswpIn);
    assert!(pswpin > 0 && r.devices[0].reads > 0, "pswpin {pswpin}");
    assert!(r.swapin_verified >= pswpin + r.counter(VmEvent::ZswpIn));
    // Writeback is a device write (pswpout), besides the stores zswap
    // refused while full.
    assert!(r.counter(VmEvent::PswpOut) >= wb);
}

#[test]
fn the_shrinker_writes_back_while_memory_is_short() {
    let off = run("", "", &usemem(24, ""));
    let on = run("shrinker_enabled = true\n", "", &usemem(24, ""));
    clean(&on);
    assert_eq!(off.counter(VmEvent::ZswpWb), 0);
    let wb = on.counter(VmEvent::ZswpWb);
    assert!(wb > 0 && on.counter(VmEvent::PswpIn) > 0, "zswpwb {wb}");
}

/// A process in `/a` that writes `mib` MiB, writes `memory.zswap.max`
/// (when `write` is given), then makes random passes over it.
fn zswap_max_run(write: Option<&str>) -> Report {
    let w = write.map_or_else(String::new, |v| {
        format!("[[process.phase]]\nop = \"cgroup_write\"\nfile = \"memory.zswap.max\"\nvalue = \"{v}\"\n")
    });
    let work = format!(
        "[[process]]\nkind = \"phases\"\ncgroup = \"/a\"\n\
         [[process.phase]]\nop = \"mmap\"\nregion = 0\nsize_mib = 12\n\
         [[process.phase]]\nop = \"touch\"\nregion = 0\n{w}\
         [[process.phase]]\nop = \"access\"\nregion = 0\naccesses = 8192\npattern = \"random\"\nwrite_ratio = 0.5\n"
    );
    run(
        "",
        "[[cgroup]]\npath = \"/a\"\nmemory.max = \"6M\"\n",
        &work,
    )
}

#[test]
fn lowering_memory_zswap_max_mid_run_writes_the_memcg_back() {
    let before = zswap_max_run(None);
    clean(&before);
    assert!(cg(&before, "/a").stat("zswpout") > 0);
    assert_eq!(before.counter(VmEvent::ZswpWb), 0, "no limit, no writeback");
    let r = zswap_max_run(Some("0"));
    clean(&r);
    assert_eq!(r.cgroup_writes[0].result, "ok", "{:?}", r.cgroup_writes);
    let a = cg(&r, "/a");
    let wb = r.counter(VmEvent::ZswpWb);
    assert!(wb > 0 && a.stat("zswpwb") == wb, "zswpwb {wb}, {a:?}");
    assert!(
        r.counter(VmEvent::PswpIn) > 0,
        "written-back pages never read"
    );
    // memory.stat's zswap figures are there and add up.
    assert!(a.stat("zswpin") > 0);
    assert_eq!(cg(&r, "/").stat("zswpwb"), wb);
}

#[test]
fn memory_zswap_writeback_off_keeps_refused_pages_off_the_device() {
    // A memcg that can neither swap nor write back ends in its OOM
    // killer's long fight; the first ticks show all there is to see.
    let r = run_in(
        "max_ticks = 1500",
        "max_pool_percent = 1\n",
        "[[cgroup]]\npath = \"/a\"\nmemory.max = \"6M\"\nmemory.zswap.writeback = 0\n",
        &usemem(24, "cgroup = \"/a\"\n"),
    );
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.mismatches, 0);
    let a = cg(&r, "/a");
    assert!(a.stat("zswpout") > 0, "{a:?}");
    assert_eq!(a.stat("pswpout"), 0, "a page of /a reached the device");
    assert_eq!(a.stat("zswpwb"), 0, "an entry of /a was written back");
}

#[test]
fn pool_frames_are_charged_to_the_memcg() {
    // The run stops while the process sleeps: the pool is full then.
    let work = "[[process]]\nkind = \"phases\"\ncgroup = \"/a\"\n\
         [[process.phase]]\nop = \"mmap\"\nregion = 0\nsize_mib = 12\n\
         [[process.phase]]\nop = \"touch\"\nregion = 0\n\
         [[process.phase]]\nop = \"sleep\"\nticks = 100000\n";
    let opts = "[[cgroup]]\npath = \"/a\"\nmemory.max = \"6M\"\n";
    let r = run_in("max_ticks = 2000", "", opts, work);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.mismatches, 0);
    let z = r.zswap.as_ref().unwrap();
    let a = cg(&r, "/a");
    assert!(a.stat("zswapped") > 0 && a.stat("zswap") > 0, "{a:?}");
    assert!(
        a.stat("zswap") < a.stat("zswapped") / 10,
        "stamped pages compress tenfold at least: {a:?}"
    );
    assert_eq!(z.pool_frames * 4096, z.pool_total_size, "{z:?}");
}

#[test]
fn a_stale_entry_after_swap_free_is_caught() {
    let r = run(
        "",
        "[seed_bugs]\nzswap_keep_on_free = true\n",
        &usemem(24, ""),
    );
    assert!(
        r.violations.iter().any(|v| v.contains("its slot is free")),
        "{:?}",
        r.violations
    );
}

/// Realtime mode delivers zswap's loads and stores, which finish without
/// the disk, beside the device's reads: a run whose pool overflows (so
/// both kinds are in flight) ends with every swap-in verified.
#[test]
fn realtime_runs_deliver_zswap_completions() {
    let r = run_in(
        "timing = \"realtime\"\ncpus = 2\n",
        "max_pool_percent = 1\n",
        "",
        &usemem(24, ""),
    );
    clean(&r);
    let (zin, pswpin) = (r.counter(VmEvent::ZswpIn), r.counter(VmEvent::PswpIn));
    assert!(zin > 0 && pswpin > 0, "zswpin {zin}, pswpin {pswpin}");
    assert!(r.swapin_verified >= zin + pswpin, "{}", r.swapin_verified);
    let z = r.zswap.as_ref().unwrap();
    assert_eq!((z.stored_pages, z.pool_frames), (0, 0), "{z:?}");
}
