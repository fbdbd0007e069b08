//! swapoff and swapon while processes run, through the tick loop, and the
//! per-process direct-reclaim stall report.

use super::*;
use swapvm_machine::report::SwapEventKind;
use swapvm_workload::{Op, ProcessSource, Script, WorkloadSpec};

/// 8 MiB of RAM, two 32 MiB swap files; swap[0] has the higher priority,
/// so it fills first.
fn two_device_config(dir: &Path) -> MachineConfig {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[machine]\nram_mib = 8\nseed = 3\n\
         [[swap]]\npath = \"a.img\"\nsize_mib = 32\npriority = 10\n\
         [[swap]]\npath = \"b.img\"\nsize_mib = 32\npriority = 0\n",
    )
    .unwrap();
    MachineConfig::load(&config).unwrap()
}

/// A 20 MiB usemem process with random passes, plus an admin process that
/// keeps 16 pages of its own busy and runs `admin` ops at its turn.
fn sources(dir: &Path, admin: Vec<Op>) -> Vec<ProcessSource> {
    let wl = WorkloadSpec::from_toml(
        "name = \"load\"\n[[process]]\nkind = \"usemem\"\nsize_mib = 20\n\
         passes = 3\npattern = \"random\"\nwrite_ratio = 0.5\n",
        &dir.join("w.toml"),
    )
    .unwrap();
    let mut v: Vec<ProcessSource> = wl.instantiate(3);
    v.push(ProcessSource::Script(Script::new("admin", admin)));
    v
}

/// The admin's op list: map and write 16 pages, `busy` rounds of reads
/// and writes over them, then `op`, and so on for each op.
fn admin_ops(busy: u32, ops: &[Op]) -> Vec<Op> {
    let mut v = vec![Op::Mmap {
        region: 0,
        pages: 16,
    }];
    let round = |v: &mut Vec<Op>| {
        for page in 0..16 {
            v.push(Op::Access {
                region: 0,
                page,
                write: page % 4 == 0,
            });
        }
    };
    round(&mut v);
    for &op in ops {
        for _ in 0..busy {
            round(&mut v);
        }
        v.push(op);
    }
    for _ in 0..busy {
        round(&mut v);
    }
    v
}

#[test]
fn swapoff_under_load_moves_everything_and_swapon_returns_the_device() {
    let dir = tempdir();
    let cfg = two_device_config(dir.path());
    // About 200 ticks of the admin's own work between its ops (256
    // accesses a tick, nearly all resident), so swap[0] is well used when
    // swapoff begins.
    let admin = admin_ops(3200, &[Op::Swapoff { device: 0 }, Op::Swapon { device: 0 }]);
    let opts = RunOptions {
        check_every: 64,
        ..RunOptions::default()
    };
    let m = Machine::with_sources(cfg, opts, "swapoff", sources(dir.path(), admin)).unwrap();
    let r = m.run(|_, _| {}).unwrap();
    let d = format!("{}\nevents {:#?}", describe(&r), r.swap_events);
    assert!(r.passed(), "{d}");
    assert!(
        r.violations.is_empty() && r.mismatches == 0 && r.warnings == 0,
        "{d}"
    );
    assert!(r.killed.is_empty(), "{d}");
    assert_eq!(r.swap_events.len(), 3, "{d}");
    let kinds: Vec<SwapEventKind> = r.swap_events.iter().map(|e| e.kind).collect();
    use SwapEventKind::*;
    assert_eq!(kinds, [SwapoffBegin, SwapoffDone, Swapon], "{d}");
    assert!(r.swap_events.iter().all(|e| e.device == Some(0)), "{d}");
    let begins = r.swap_events[0].slots_in_use.unwrap();
    assert!(begins > 256, "swap[0] held little when swapoff began: {d}");
    assert!(r.swap_events[1].entries_read_back.is_some(), "{d}");
    assert_eq!(r.devices.len(), 2, "{d}");
    // Every slot came back free at the end, on both devices.
    for dev in &r.devices {
        assert_eq!(dev.slots_used, 0, "{d}");
    }
    assert!(r.swapin_verified > 0, "{d}");
}

#[test]
fn swapoff_refused_for_want_of_memory_leaves_the_device_on() {
    // One device, most of a 20 MiB process in it: RAM cannot take it back.
    let dir = tempdir();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[machine]\nram_mib = 8\nseed = 3\n[[swap]]\npath = \"a.img\"\nsize_mib = 32\n",
    )
    .unwrap();
    let cfg = MachineConfig::load(&config).unwrap();
    let admin = admin_ops(3200, &[Op::Swapoff { device: 0 }]);
    let m = Machine::with_sources(
        cfg,
        RunOptions::default(),
        "nomem",
        sources(dir.path(), admin),
    )
    .unwrap();
    let r = m.run(|_, _| {}).unwrap();
    let d = format!("{}\nevents {:#?}", describe(&r), r.swap_events);
    assert!(r.passed(), "{d}");
    assert_eq!(r.swap_events.len(), 1, "{d}");
    let e = &r.swap_events[0];
    assert_eq!(e.kind, SwapEventKind::SwapoffRefused, "{d}");
    assert!(
        e.reason
            .as_deref()
            .unwrap_or("")
            .contains("not enough memory"),
        "{d}"
    );
    assert_eq!(r.devices.len(), 1, "{d}");
}

#[test]
fn direct_reclaim_stalls_are_charged_to_the_processes_that_stalled() {
    let t = tiny(&Shape {
        count: 2,
        ..Shape::default()
    });
    let r = run_config(&t.config, RunOptions::default());
    let d = describe(&r);
    let allocstall = r.counter(VmEvent::AllocStall);
    assert!(allocstall > 0, "the run never entered direct reclaim: {d}");
    let charged: u64 = r.direct_reclaim.iter().map(|p| p.allocstall).sum();
    assert_eq!(charged, allocstall, "{d}\n{:#?}", r.direct_reclaim);
    for p in &r.direct_reclaim {
        assert!(p.stall_ticks > 0, "{p:?}");
        assert!(p.name.starts_with("usemem"), "{p:?}");
    }
}

#[test]
fn a_run_with_swapoff_readahead_and_workingset_is_deterministic() {
    let run = || {
        let dir = tempdir();
        let cfg = two_device_config(dir.path());
        let admin = admin_ops(3200, &[Op::Swapoff { device: 0 }]);
        let m = Machine::with_sources(
            cfg,
            RunOptions::default(),
            "det",
            sources(dir.path(), admin),
        )
        .unwrap();
        m.run(|_, _| {}).unwrap()
    };
    let (a, b) = (run(), run());
    assert!(a.passed(), "{}", describe(&a));
    for ev in [
        VmEvent::SwapRa,
        VmEvent::SwapRaHit,
        VmEvent::WorkingsetRefaultAnon,
        VmEvent::WorkingsetActivateAnon,
    ] {
        assert!(a.counter(ev) > 0, "{ev:?} never counted: {}", describe(&a));
    }
    assert_eq!(a.vmstat, b.vmstat, "same seed, different counters");
    assert_eq!(a.swap_events, b.swap_events);
    assert_eq!(a.direct_reclaim, b.direct_reclaim);
    assert_eq!(a.ticks, b.ticks);
}
