//! Realtime mode (`machine.timing = "realtime"`): the order of the disk's
//! completions drives scheduling.
//!
//! Every process, kswapd, ksmd and swapoff is a task on the tokio runtime
//! and runs whenever it can. A process runs turns of `tick_accesses` ops;
//! a turn whose fault needs I/O has already submitted the read (with its
//! readahead) when it returns "retry after this I/O" (`VM_FAULT_RETRY`),
//! and the task then awaits a wake-up while the others run. The
//! completion reactor (the run's main future) reaps what the disks have
//! finished, delivers it to its owner (the fault's folio, reclaim's
//! writeback, which thus completes when the disk says so) and wakes the
//! tasks whose wait is over; the retried fault then maps the page. Time is
//! wall-clock time: a tick is `machine.tick_us`, the clock of everything
//! counted in ticks (the time series, PSI, `Op::Sleep`, the checker every
//! N ticks, the OOM and stall timeouts) and no longer a unit of work.
//!
//! # One thread, `machine.cpus` as a concurrency limit
//!
//! The machine is one `Rc<RefCell<Machine>>`: the layers below it (page
//! tables, the swap table, the LRU lists) keep their state in plain
//! arrays, without locks, which is what makes the resident path a few bit
//! operations. Running tasks on several worker threads would need those
//! layers to take the kernel's locks (the PTL, the cluster lock, the LRU
//! lock) for real; that is a redesign of every layer, not of the loop. So
//! the runtime is single-threaded and the emulated CPUs are a semaphore of
//! `machine.cpus` permits: a task holds one for its turn and for its think
//! time (`think_us`, a sleep on the runtime's timer), so at most `cpus`
//! tasks are on a CPU at once, while the host thread runs one turn at a
//! time. The disk works in parallel with the turns: a turn submits and
//! returns, and the reactor reaps between turns.
//!
//! # The completion reactor
//!
//! A poller, not an eventfd: between turns it reaps every completion the
//! engines hold without a system call (the inline ring's CQ is in shared
//! memory). When no task can run and I/O is in flight it sleeps in the
//! kernel for the next completion, until the next tick at most
//! (`io_uring_enter` with a timeout), so the clock goes on; when tasks
//! are only thinking it polls every [`IDLE_POLL`] so their timers still
//! fire; with nothing in flight it sleeps until the next tick or until a
//! task kicks it.
//!
//! What stays as in the deterministic mode: every swap-in is verified, the
//! contract checks and fault injection act on the same paths, and the
//! invariant checker runs at the end (and every `check_every` ticks). Only
//! the counters' exact values differ from run to run.

mod figures;

pub use figures::{Depth, ProcessFigures, ReactorFigures, RealtimeReport, RealtimeRow};

use crate::tick_loop::{ksmd_turn, kswapd_turn, shutdown, strict_error};
use crate::{series, Machine, MachineError, Report, RunStatus, Turn};
use figures::Figures;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};
use swapvm_mm::Wait;
use tokio::sync::{Notify, Semaphore};

type Shared = Rc<RefCell<Machine>>;

/// Ticks in a row with nothing done and nothing in flight before the run
/// is declared stalled (as the deterministic loop's 1000).
const STALL_TICKS: u32 = 1000;

/// Think time is slept in pieces of at least this much (the timer's
/// granularity); shorter think times accumulate.
const THINK_MIN: Duration = Duration::from_millis(1);

/// How often the reactor looks for completions while tasks only think.
const IDLE_POLL: Duration = Duration::from_micros(20);

/// A process task's scheduling state.
struct ProcSlot {
    wake: Notify,
    /// Parked since, and whether for a fault's read.
    since: Cell<Option<(Instant, bool)>>,
    /// The reactor has woken it and it has not run yet.
    woken: Cell<bool>,
}

/// What the tasks share beside the machine.
struct Sched {
    cpus: Semaphore,
    procs: RefCell<Vec<Rc<ProcSlot>>>,
    /// Each tick, to tasks waiting for the clock.
    tick: Notify,
    /// After completions were delivered, to daemons waiting on I/O.
    io_done: Notify,
    kswapd: Notify,
    /// The reactor sleeps until the next tick; a task that submitted I/O
    /// or woke up kicks it.
    kick: Notify,
    /// Tasks able to run now (not parked, not thinking).
    active: Cell<usize>,
    /// Tasks in their think time.
    thinking: Cell<usize>,
    /// A task ran since the last tick.
    ran: Cell<bool>,
    figures: RefCell<Figures>,
}

impl Sched {
    /// Awaits `f` as a parked task (not counted as able to run).
    async fn park(&self, f: impl Future<Output = ()>) {
        self.active.set(self.active.get() - 1);
        f.await;
        self.active.set(self.active.get() + 1);
    }

    /// Waits for delivered I/O or the next tick, whichever comes first.
    async fn io_or_tick(&self) {
        let (io, tick) = (self.io_done.notified(), self.tick.notified());
        self.park(async {
            tokio::select! {
                () = io => {}
                () = tick => {}
            }
        })
        .await;
    }
}

/// Runs `machine` in realtime mode; the counterpart of the tick loop.
pub(crate) async fn run(
    machine: Machine,
    mut progress: impl FnMut(&RunStatus),
) -> Result<Report, MachineError> {
    let total = machine.total_accesses();
    let cpus = machine.cfg.machine.cpus as usize;
    let tick_len = Duration::from_micros(machine.cfg.machine.tick_us);
    let m: Shared = Rc::new(RefCell::new(machine));
    let s = Rc::new(Sched {
        cpus: Semaphore::new(cpus),
        procs: RefCell::new(Vec::new()),
        tick: Notify::new(),
        io_done: Notify::new(),
        kswapd: Notify::new(),
        kick: Notify::new(),
        active: Cell::new(0),
        thinking: Cell::new(0),
        ran: Cell::new(false),
        figures: RefCell::new(Figures::new()),
    });
    spawn_daemons(&m, &s);
    let mut clock = Clock {
        next: Instant::now() + tick_len,
        len: tick_len,
        stalled: 0,
        delivered: false,
    };
    let stopped_early = loop {
        spawn_new_processes(&m, &s);
        clock.delivered |= reap(&m, &s) > 0;
        if Instant::now() >= clock.next {
            if let Some(stop) = clock.tick(&m, &s, total, &mut progress)? {
                break stop;
            }
        }
        if finished(&m.borrow()) {
            break false;
        }
        idle(&m, &s, clock.next).await;
    };
    let mut g = m.borrow_mut();
    progress(&g.status(total));
    drain(&mut g, &s, stopped_early);
    let mut report = shutdown(&mut g);
    let figures = std::mem::replace(&mut *s.figures.borrow_mut(), Figures::new());
    report.realtime = Some(figures.report(&g));
    Ok(report)
}

/// Every process has exited and nothing is left to finish.
fn finished(g: &Machine) -> bool {
    g.procs.iter().all(|p| p.exited)
        && g.swap.io_in_flight() == 0
        && g.swapoff.is_none()
        && !g.frozen()
}

/// Delivers every completion the disks have posted and wakes the tasks
/// whose wait is over; returns how many were delivered.
fn reap(m: &Shared, s: &Sched) -> usize {
    let mut g = m.borrow_mut();
    let done = g.swap.complete_ready();
    let n = done.len();
    let mut f = s.figures.borrow_mut();
    f.reactor.polls += 1;
    f.reactor.completions += n as u64;
    drop(f);
    if n == 0 {
        return 0;
    }
    g.deliver(done);
    g.unblock();
    wake_ready(&g, s);
    s.io_done.notify_waiters();
    if g.kswapd_due() {
        s.kswapd.notify_one();
    }
    n
}

/// Wakes each parked process whose wait is over (or that was killed).
fn wake_ready(g: &Machine, s: &Sched) {
    for (slot, p) in s.procs.borrow().iter().zip(&g.procs) {
        let parked = slot.since.get().is_some();
        if parked && !slot.woken.get() && (p.blocked.is_none() || p.exited) {
            slot.woken.set(true);
            slot.wake.notify_one();
        }
    }
}

/// When no task can run: sleep in the kernel for a completion, poll while
/// tasks think, or wait for the clock or a kick.
async fn idle(m: &Shared, s: &Sched, next_tick: Instant) {
    // A task waiting for a CPU that thinkers hold cannot run either.
    if s.active.get() > 0 && s.cpus.available_permits() > 0 {
        tokio::task::yield_now().await;
        return;
    }
    let in_flight = m.borrow().swap.io_in_flight() > 0;
    if in_flight && s.thinking.get() == 0 {
        let t0 = Instant::now();
        // Until the next tick at most: the clock must go on.
        let left = next_tick.saturating_duration_since(t0);
        m.borrow_mut().swap.wait_ready(left);
        let mut f = s.figures.borrow_mut();
        f.reactor.blocking_waits += 1;
        f.reactor.blocked_us += t0.elapsed().as_micros() as u64;
        return;
    }
    if in_flight {
        std::thread::sleep(IDLE_POLL);
        tokio::task::yield_now().await;
        return;
    }
    let kick = s.kick.notified();
    tokio::select! {
        () = tokio::time::sleep_until(next_tick.into()) => {}
        () = kick => {}
    }
}

/// Drains what is in flight after the loop, so every completion is
/// delivered before the final check.
fn drain(g: &mut Machine, s: &Sched, stopped_early: bool) {
    let at_stop = g.swap.io_in_flight() as u64;
    let mut drained = 0;
    while g.swap.io_in_flight() > 0 {
        let done = g.swap.complete_ready();
        if done.is_empty() {
            g.swap.wait_ready(Duration::from_secs(1));
            continue;
        }
        drained += done.len() as u64;
        g.deliver(done);
    }
    if stopped_early {
        let mut f = s.figures.borrow_mut();
        f.in_flight_at_stop = at_stop;
        f.drained_at_stop = drained;
    }
}

/// The wall clock's ticks.
struct Clock {
    next: Instant,
    len: Duration,
    stalled: u32,
    /// Completions were delivered since the last tick.
    delivered: bool,
}

impl Clock {
    /// One tick's work: sampling, PSI, hibernation, injected swapoff, the
    /// checker, the OOM and stall clocks. `Some(early)` ends the run
    /// (`early`: `max_ticks` or an interrupt, tasks still running).
    fn tick(
        &mut self,
        m: &Shared,
        s: &Sched,
        total: u64,
        progress: &mut impl FnMut(&RunStatus),
    ) -> Result<Option<bool>, MachineError> {
        let now = Instant::now();
        // A tick late by more than one is not made up: ticks sample.
        self.next = (self.next + self.len).max(now);
        let mut g = m.borrow_mut();
        let tick = g.tick;
        if g.series.due(tick) {
            series::sample(&mut g);
            s.figures.borrow_mut().sample_row(&g);
        }
        s.figures
            .borrow_mut()
            .sample_depth(g.swap.device_in_flight());
        let hib = g.hibernation_tick();
        g.unblock();
        wake_ready(&g, s);
        let ran = s.ran.replace(false);
        let oom = !g.frozen() && g.out_of_memory_tick(ran);
        let busy = ran || hib || oom || std::mem::take(&mut self.delivered);
        if busy || g.swap.io_in_flight() > 0 || g.frozen() {
            self.stalled = 0;
        } else {
            self.stalled += 1;
            if self.stalled > STALL_TICKS {
                return Err(MachineError::Stalled { tick });
            }
        }
        if let Some(e) = strict_error(&g, tick) {
            return Err(e);
        }
        g.psi_tick();
        g.hibernate_tick();
        g.inject_swapoff();
        let check_every = g.opts.check_every;
        if check_every > 0 && tick % check_every == 0 {
            g.run_checker();
        }
        g.tick += 1;
        progress(&g.status(total));
        s.tick.notify_waiters();
        if g.kswapd_due() {
            s.kswapd.notify_one();
        }
        let max = g.cfg.machine.max_ticks;
        if max > 0 && g.tick >= max {
            return Ok(Some(true));
        }
        if g.interrupt_requested() {
            g.interrupted = true;
            return Ok(Some(true));
        }
        Ok(None)
    }
}

/// Starts a task for each process that has none yet (at the start, and
/// for children forked since).
fn spawn_new_processes(m: &Shared, s: &Rc<Sched>) {
    let n = m.borrow().procs.len();
    while s.procs.borrow().len() < n {
        let slot = Rc::new(ProcSlot {
            wake: Notify::new(),
            since: Cell::new(None),
            woken: Cell::new(false),
        });
        let i = {
            let mut v = s.procs.borrow_mut();
            v.push(Rc::clone(&slot));
            v.len() - 1
        };
        s.active.set(s.active.get() + 1);
        tokio::task::spawn_local(process_task(Rc::clone(m), Rc::clone(s), i, slot));
    }
}

/// Process `i`: turns while it can run, parked while it waits.
async fn process_task(m: Shared, s: Rc<Sched>, i: usize, slot: Rc<ProcSlot>) {
    let mut think = Duration::ZERO;
    loop {
        let Ok(cpu) = s.cpus.acquire().await else {
            break;
        };
        if let Some((t0, fault)) = slot.since.take() {
            s.figures.borrow_mut().waited(i, t0.elapsed(), fault);
        }
        slot.woken.set(false);
        let (turn, wait, sleeping, done, think_us) = {
            let mut g = m.borrow_mut();
            let a0 = g.accesses;
            let turn = g.run_process(i);
            if g.kswapd_due() {
                s.kswapd.notify_one();
            }
            let p = &g.procs[i];
            let sleeping = p.sleep_until > g.tick || g.frozen();
            (turn, p.blocked, sleeping, g.accesses - a0, p.think_us)
        };
        if turn != Turn::Blocked {
            s.ran.set(true);
        }
        think += Duration::from_micros(done.saturating_mul(u64::from(think_us)));
        if think >= THINK_MIN {
            // On its CPU: the permit is held while it thinks.
            s.thinking.set(s.thinking.get() + 1);
            s.park(tokio::time::sleep(think)).await;
            s.thinking.set(s.thinking.get() - 1);
            think = Duration::ZERO;
        }
        drop(cpu);
        match (turn, wait) {
            (Turn::Exited, _) => {
                s.figures.borrow_mut().exited(i);
                break;
            }
            (Turn::Blocked, Some(w)) => {
                if slot.since.get().is_none() {
                    slot.since
                        .set(Some((Instant::now(), matches!(w, Wait::Folio(_)))));
                }
                s.kick.notify_one();
                s.park(slot.wake.notified()).await;
            }
            (Turn::Ran(_), _) if !sleeping => tokio::task::yield_now().await,
            // Asleep (`Op::Sleep`) or frozen: the clock wakes it.
            _ => s.park(s.tick.notified()).await,
        }
    }
    s.active.set(s.active.get() - 1);
}

/// kswapd, ksmd and swapoff.
fn spawn_daemons(m: &Shared, s: &Rc<Sched>) {
    s.active.set(s.active.get() + 3);
    let (m1, s1) = (Rc::clone(m), Rc::clone(s));
    tokio::task::spawn_local(async move {
        loop {
            if !m1.borrow().kswapd_due() {
                s1.park(s1.kswapd.notified()).await;
                continue;
            }
            let turn = daemon_turn(&m1, &s1, kswapd_turn).await;
            if turn == Turn::Blocked {
                // Nothing reclaimable until writeback completes.
                s1.io_or_tick().await;
            }
        }
    });
    let (m2, s2) = (Rc::clone(m), Rc::clone(s));
    tokio::task::spawn_local(async move {
        loop {
            s2.park(s2.tick.notified()).await;
            if m2.borrow().ksmd_due() {
                daemon_turn(&m2, &s2, ksmd_turn).await;
            }
        }
    });
    let (m3, s3) = (Rc::clone(m), Rc::clone(s));
    tokio::task::spawn_local(async move {
        loop {
            if !m3.borrow().swapoff_due() {
                s3.park(s3.tick.notified()).await;
                continue;
            }
            let swapoff = |g: &mut Machine| {
                if g.swapoff_tick() {
                    Turn::Ran(1)
                } else {
                    Turn::Blocked
                }
            };
            daemon_turn(&m3, &s3, swapoff).await;
            // Its reads come back through the reactor.
            s3.io_or_tick().await;
        }
    });
}

/// One turn of a daemon on a CPU of its own.
async fn daemon_turn(m: &Shared, s: &Sched, f: impl FnOnce(&mut Machine) -> Turn) -> Turn {
    let Ok(cpu) = s.cpus.acquire().await else {
        return Turn::Exited;
    };
    let turn = f(&mut m.borrow_mut());
    drop(cpu);
    if turn != Turn::Blocked {
        s.ran.set(true);
        tokio::task::yield_now().await;
    }
    turn
}
