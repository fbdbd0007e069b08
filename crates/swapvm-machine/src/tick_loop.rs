//! The tick loop: every process, kswapd, ksmd and swapoff is a task on a
//! single-threaded tokio runtime, and each tick the loop asks each task
//! for one turn, in a fixed order, so runs stay deterministic.
//!
//! Context: the machine is shared as `Rc<RefCell<Machine>>`; a task
//! borrows it only inside its turn, and the loop only between turns.

use crate::*;

type Shared = Rc<RefCell<Machine>>;

/// A task's turn: the tick loop sends a reply channel, the task runs one
/// turn against the machine and answers.
type TurnRequest = tokio::sync::oneshot::Sender<Turn>;

fn spawn_process_task(m: &Shared, i: usize) -> tokio::sync::mpsc::Sender<TurnRequest> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<TurnRequest>(1);
    let m = Rc::clone(m);
    tokio::task::spawn_local(async move {
        while let Some(reply) = rx.recv().await {
            let turn = m.borrow_mut().run_process(i);
            let _ = reply.send(turn);
            if turn == Turn::Exited {
                break;
            }
        }
    });
    tx
}

fn spawn_kswapd_task(m: &Shared) -> tokio::sync::mpsc::Sender<TurnRequest> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<TurnRequest>(1);
    let m = Rc::clone(m);
    tokio::task::spawn_local(async move {
        while let Some(reply) = rx.recv().await {
            let _ = reply.send(kswapd_turn(&mut m.borrow_mut()));
        }
    });
    tx
}

/// The swapoff task: one `try_to_unuse` pass a tick while a swapoff runs.
fn spawn_swapoff_task(m: &Shared) -> tokio::sync::mpsc::Sender<TurnRequest> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<TurnRequest>(1);
    let m = Rc::clone(m);
    tokio::task::spawn_local(async move {
        while let Some(reply) = rx.recv().await {
            let ran = m.borrow_mut().swapoff_tick();
            let _ = reply.send(if ran { Turn::Ran(1) } else { Turn::Blocked });
        }
    });
    tx
}

/// ksmd: every `ksm.sleep_ticks` ticks, one `ksm_do_scan` when `ksm.run`.
fn spawn_ksmd_task(m: &Shared) -> tokio::sync::mpsc::Sender<TurnRequest> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<TurnRequest>(1);
    let m = Rc::clone(m);
    tokio::task::spawn_local(async move {
        while let Some(reply) = rx.recv().await {
            let _ = reply.send(ksmd_turn(&mut m.borrow_mut()));
        }
    });
    tx
}

/// One kswapd pass (`balance_pgdat`) if it is due; `Ran` if it made
/// progress.
pub(crate) fn kswapd_turn(mm: &mut Machine) -> Turn {
    if !mm.kswapd_due() {
        return Turn::Blocked;
    }
    let p = mm
        .reclaim
        .kswapd_tick(&mut mm.mem, &mut mm.swap, 0, mm.tick);
    // balance_pgdat runs in a memstall section.
    mm.kswapd_stalled = p.scanned > 0;
    if p.made() {
        Turn::Ran(p.scanned)
    } else {
        Turn::Blocked
    }
}

/// One `ksm_do_scan` if ksmd is due; `Ran` if it merged pages.
pub(crate) fn ksmd_turn(mm: &mut Machine) -> Turn {
    let merged = if mm.ksmd_due() {
        mm.mem.ksm_do_scan(&mut mm.swap)
    } else {
        0
    };
    if merged > 0 {
        Turn::Ran(merged)
    } else {
        Turn::Blocked
    }
}

/// The first contract warning, when warnings are fatal and one fired.
pub(crate) fn strict_error(g: &Machine, tick: u64) -> Option<MachineError> {
    if !g.warn.fatal() {
        return None;
    }
    let first = g
        .warn
        .records()
        .first()
        .map(|r| format!("{}: {}: {}", r.site.func, r.site.rule, r.first))
        .unwrap_or_default();
    Some(MachineError::Strict { tick, first })
}

async fn turn(tx: &tokio::sync::mpsc::Sender<TurnRequest>) -> Turn {
    let (rtx, rrx) = tokio::sync::oneshot::channel();
    if tx.send(rtx).await.is_err() {
        return Turn::Exited;
    }
    rrx.await.unwrap_or(Turn::Exited)
}

pub(crate) async fn tick_loop(
    machine: Machine,
    mut progress: impl FnMut(&RunStatus),
) -> Result<Report, MachineError> {
    let total = machine.total_accesses();
    let nprocs = machine.procs.len();
    let m: Shared = Rc::new(RefCell::new(machine));
    let mut tasks: Vec<_> = (0..nprocs).map(|i| spawn_process_task(&m, i)).collect();
    let kswapd = spawn_kswapd_task(&m);
    let ksmd = spawn_ksmd_task(&m);
    let swapoffd = spawn_swapoff_task(&m);
    let mut stalled = 0u32;
    loop {
        let (delivered, max_ticks, check_every, tick) = {
            let mut g = m.borrow_mut();
            if g.series.due(g.tick) {
                series::sample(&mut g);
            }
            let mut n = g.deliver_io();
            if g.hibernation_tick() {
                n += 1;
            }
            g.unblock();
            (n, g.cfg.machine.max_ticks, g.opts.check_every, g.tick)
        };
        // Children forked last tick get their tasks.
        while tasks.len() < m.borrow().procs.len() {
            let i = tasks.len();
            tasks.push(spawn_process_task(&m, i));
        }
        let mut ran = false;
        let mut live = 0;
        for (i, t) in tasks.iter().enumerate() {
            if m.borrow().procs[i].exited {
                continue;
            }
            match turn(t).await {
                Turn::Ran(_) => {
                    ran = true;
                    live += 1;
                }
                Turn::Blocked => live += 1,
                Turn::Exited => {}
            }
        }
        // A daemon with nothing due this tick answers Blocked and changes
        // nothing, so it is not woken for it: two channel round trips and
        // task polls per daemon per tick were most of the loop's cost in
        // a replay that never reclaims. Each check is taken right before
        // the daemon's turn, as the task itself would take it.
        let k = if m.borrow().kswapd_due() {
            turn(&kswapd).await
        } else {
            Turn::Blocked
        };
        if m.borrow().ksmd_due() {
            let _ = turn(&ksmd).await;
        }
        let so = if m.borrow().swapoff_due() {
            turn(&swapoffd).await
        } else {
            Turn::Blocked
        };
        let mut g = m.borrow_mut();
        if live == 0 && g.swap.io_in_flight() == 0 && g.swapoff.is_none() && !g.frozen() {
            break;
        }
        // An OOM kill frees memory: that is progress too. Frozen tasks
        // allocate nothing, so the OOM clock stops while they are.
        let oom_killed = !g.frozen() && g.out_of_memory_tick(ran);
        if oom_killed
            || ran
            || delivered > 0
            || matches!(k, Turn::Ran(_))
            || matches!(so, Turn::Ran(_))
            || g.swap.io_in_flight() > 0
        {
            stalled = 0;
        } else {
            stalled += 1;
            if stalled > 1000 {
                return Err(MachineError::Stalled { tick });
            }
        }
        if let Some(e) = strict_error(&g, tick) {
            return Err(e);
        }
        g.zswap_tick();
        g.psi_tick();
        g.hibernate_tick();
        g.inject_swapoff();
        if check_every > 0 && tick % check_every == 0 {
            g.run_checker();
        }
        g.tick += 1;
        progress(&g.status(total));
        if max_ticks > 0 && g.tick >= max_ticks {
            break;
        }
        if g.interrupt_requested() {
            g.interrupted = true;
            break;
        }
    }
    drop(tasks);
    drop(kswapd);
    drop(ksmd);
    drop(swapoffd);
    let mut g = m.borrow_mut();
    // The tick in which the last process exits breaks out of the loop
    // before its progress call; report that tick's accesses too, so the
    // caller sees the run reach its total.
    progress(&g.status(total));
    // Drain what is still in flight so every byte is accounted for.
    while g.swap.io_in_flight() > 0 {
        g.tick += 1;
        g.deliver_io();
    }
    Ok(shutdown(&mut g))
}

/// The end of a run, nothing in flight any more: unmounts tmpfs, releases
/// hibernation slots, runs the checker, takes the last sample and builds
/// the report.
pub(crate) fn shutdown(g: &mut Machine) -> Report {
    // Shutdown unmounts tmpfs: files outlive their processes, not the
    // machine. Every slot must then be free again.
    let files: Vec<u32> = {
        let mut v: Vec<u32> = g.files.values().copied().collect();
        v.sort_unstable();
        v
    };
    g.files.clear();
    for ino in files {
        let mm = &mut *g;
        mm.mem.shmem_unlink(&mut mm.swap, ino);
    }
    g.swsusp_release();
    if g.io_errors > IO_ERRORS_LOGGED {
        tracing::error!(
            "{} more swap I/O errors were not logged (report.json counts them per device)",
            g.io_errors - IO_ERRORS_LOGGED
        );
    }
    g.run_checker();
    g.psi.flush();
    // The last row: every delta column now sums to its counter.
    series::sample(g);
    report::build(g)
}
