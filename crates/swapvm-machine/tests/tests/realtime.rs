//! Realtime mode (`machine.timing = "realtime"`): behaviour, not speed.
//! Every assertion here holds however fast the disk and the host are;
//! none compares a rate or a latency with a number.

use super::*;
use swapvm_workload::{Advice, Op, ProcessSource, Script};

/// A realtime config in `dir`: `ram_mib` of RAM, a 64 MiB swap file on
/// a real disk, and `extra` lines after `[machine]`'s.
fn realtime_config(dir: &Path, ram_mib: u32, extra: &str) -> MachineConfig {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[machine]\nram_mib = {ram_mib}\ncpus = 4\nseed = 5\ntiming = \"realtime\"\n\
             tick_us = 1000\nsample_every_ticks = 5\n{extra}\n\
             [[swap]]\npath = \"swap.img\"\nsize_mib = 64\n"
        ),
    )
    .unwrap();
    MachineConfig::load(&config).unwrap()
}

/// Maps and writes `pages` pages of region 0, pages them all out
/// (`MADV_PAGEOUT`), sleeps 5 ticks (their writeback completes and the
/// folios are freed), then loads every `stride`-th page back: each load
/// faults on a swapped-out page and waits for its read.
fn swapper(name: &str, pages: u64, stride: u64) -> ProcessSource {
    let mut ops = vec![Op::Mmap { region: 0, pages }];
    ops.extend((0..pages).map(|page| Op::Access {
        region: 0,
        page,
        write: true,
    }));
    ops.push(Op::Madvise {
        region: 0,
        advice: Advice::PageOut,
        pages: None,
    });
    ops.push(Op::Sleep { ticks: 5 });
    ops.extend((0..pages).step_by(stride as usize).map(|page| Op::Access {
        region: 0,
        page,
        write: false,
    }));
    ProcessSource::Script(Script::new(name, ops))
}

/// Maps and writes 16 pages, then loads them `rounds` times: it never
/// needs the disk.
fn resident(name: &str, rounds: u32) -> ProcessSource {
    let mut ops = vec![Op::Mmap {
        region: 0,
        pages: 16,
    }];
    for r in 0..=rounds {
        ops.extend((0..16).map(|page| Op::Access {
            region: 0,
            page,
            write: r == 0,
        }));
    }
    ProcessSource::Script(Script::new(name, ops))
}

fn figures(r: &Report) -> &swapvm_machine::realtime::RealtimeReport {
    r.realtime
        .as_ref()
        .expect("a realtime run reports its realtime figures")
}

/// Eight usemem processes thrashing a file swap device in realtime mode:
/// every swap-in is verified against its last write, the checker (every
/// 20 ticks and at the end) finds nothing, and the figures cover them all.
#[test]
fn eight_processes_verify_every_swapin_and_pass_the_checker() {
    let dir = tempdir();
    let cfg = realtime_config(dir.path(), 16, "");
    std::fs::write(
        dir.path().join("w.toml"),
        "name = \"eight\"\n[[process]]\nkind = \"usemem\"\ncount = 8\nsize_mib = 3\n\
         passes = 2\npattern = \"random\"\nwrite_ratio = 0.5\n",
    )
    .unwrap();
    let opts = RunOptions {
        workload: Some(dir.path().join("w.toml")),
        check_every: 20,
        ..RunOptions::default()
    };
    let m = Machine::new(cfg, opts).unwrap();
    let total = m.total_accesses();
    let r = m.run(|_, _| {}).unwrap();
    let d = describe(&r);
    assert_eq!(r.accesses, total, "{d}");
    assert_swapped_and_clean(&r);
    assert_eq!(r.swapin_verified, r.counter(VmEvent::PswpIn), "{d}");
    let f = figures(&r);
    assert_eq!(f.processes.len(), 8, "{d}");
    assert!(f.processes.iter().all(|p| p.exit_ms.is_some()), "{f:?}");
    assert!(f.fault_latency.count > 0, "no fault waited for I/O: {f:?}");
    assert_eq!(
        f.fault_latency.count,
        f.processes.iter().map(|p| p.faults_waited).sum::<u64>()
    );
    assert!(!f.series.is_empty() && f.queue_depth.samples > 0, "{f:?}");
    assert!(r.checks_run > 1, "{d}");
}

/// One process's reads are slowed (`fault.read_delay_us`); while it waits
/// the other runs, and finishes first although it makes many more
/// accesses. In the deterministic loop the resident process would get one
/// turn a tick and wait out every tick of the slow one.
#[test]
fn a_task_waiting_for_io_lets_another_finish_first() {
    let dir = tempdir();
    let cfg = realtime_config(dir.path(), 32, "[fault]\nread_delay_us = 20000");
    let sources = vec![swapper("slow", 64, 16), resident("fast", 2000)];
    let m = Machine::with_sources(cfg, RunOptions::default(), "rt", sources).unwrap();
    let r = m.run(|_, _| {}).unwrap();
    let d = describe(&r);
    assert!(r.passed() && r.violations.is_empty(), "{d}");
    assert!(r.counter(VmEvent::PswpIn) > 0, "{d}");
    let f = figures(&r);
    let (slow, fast) = (&f.processes[0], &f.processes[1]);
    assert!(slow.faults_waited > 0, "{f:?}");
    assert_eq!(fast.faults_waited, 0, "{f:?}");
    let (s, q) = (slow.exit_ms.unwrap(), fast.exit_ms.unwrap());
    assert!(
        q < s,
        "the resident process exited at {q} ms, after the slow one at {s} ms"
    );
    // The slow one waited out its delays: that is what its stall says.
    assert!(slow.stall_us >= 20_000 * slow.faults_waited, "{f:?}");
}

/// A run stopped (`max_ticks`) while slowed reads are in flight drains
/// every one of them: each is delivered and verified before the final
/// check, which finds nothing amiss.
#[test]
fn stopping_with_io_in_flight_loses_no_completion() {
    let dir = tempdir();
    let cfg = realtime_config(
        dir.path(),
        32,
        "max_ticks = 15\n[fault]\nread_delay_us = 60000",
    );
    let sources = (0..4).map(|i| swapper(&format!("s{i}"), 64, 8)).collect();
    let m = Machine::with_sources(cfg, RunOptions::default(), "rt", sources).unwrap();
    let r = m.run(|_, _| {}).unwrap();
    let d = describe(&r);
    let f = figures(&r);
    assert!(
        f.in_flight_at_stop > 0,
        "nothing was in flight at the stop: {f:?}"
    );
    assert_eq!(f.drained_at_stop, f.in_flight_at_stop, "{f:?}");
    assert!(r.violations.is_empty() && r.mismatches == 0, "{d}");
    assert_eq!(r.swapin_verified, r.counter(VmEvent::PswpIn), "{d}");
    assert!(
        r.processes == 4 && f.processes.iter().all(|p| p.exit_ms.is_none()),
        "{f:?}"
    );
}
