//! swapvm-machine: one emulated machine, wired and run.
//!
//! It owns the wiring of the layers (memory, swap, reclaim, workload), the
//! tokio tick loop in which each process and kswapd are tasks, data
//! verification ([`verify`]), the invariant checker ([`check`]), and the
//! run report ([`report`]).
//!
//! Determinism: the tick loop hands each task its turn in a fixed order and
//! waits for it, and swap I/O is delivered at a logical tick in submission
//! order (see swapvm-swap's page_io). The same config and seed therefore
//! give the same counters on any disk; only measured latencies differ.

#![warn(missing_docs)]

pub mod check;
mod fault;
pub mod fuzz;
pub mod report;
mod swsusp;
pub mod verify;
mod zram;

use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use swapvm_core::config::{Allocator, ConfigError, SwapBackend, SwapDeviceConfig};
use swapvm_core::SwapType;
use swapvm_core::{MachineConfig, Pfn, VmStat, Vpn, Warnings};
use swapvm_io::{EngineConfig, IoKind};
use swapvm_mm::{FaultStop, Memory, MmId, Wait, Watermarks};
use swapvm_reclaim::Reclaimer;
use swapvm_swap::AllocatorKind;
use swapvm_swap::{header, SwapError, SwapOnOptions, SwapSubsystem};
use swapvm_workload::{Op, ProcessGen, WorkloadSpec};

pub use report::Report;

/// Why a machine could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// The config or workload file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Neither the config nor the command line names a workload.
    #[error("{}: no workload: set `workload = \"...\"` or pass --workload", config.display())]
    NoWorkload {
        /// The config file.
        config: PathBuf,
    },
    /// A swap device could not be created or enabled.
    // The cause names the image; saying it twice only clutters the message.
    #[error("cannot use swap device")]
    Swap {
        /// The image.
        path: PathBuf,
        /// Cause.
        #[source]
        source: SwapError,
    },
    /// Emulated RAM could not be mapped.
    #[error("cannot map {mib} MiB of emulated RAM")]
    Ram {
        /// Size.
        mib: u64,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// No task could make progress and nothing could be reclaimed.
    #[error("out of memory at tick {tick}: nothing reclaimable and no swap I/O in flight (swap full or too small?)")]
    Stalled {
        /// Tick.
        tick: u64,
    },
    /// A file of the run could not be written.
    #[error("{}: cannot write", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A contract warning fired under `--strict`.
    #[error("contract violation under --strict at tick {tick}: {first}")]
    Strict {
        /// Tick.
        tick: u64,
        /// The first warning.
        first: String,
    },
}

/// Run options from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides `machine.seed`.
    pub seed: Option<u64>,
    /// Overrides the config's workload.
    pub workload: Option<PathBuf>,
    /// Scales the workload down (tests): 0 < scale <= 1.
    pub scale: Option<f64>,
    /// Run the invariant checker every N ticks (0: only at the end).
    pub check_every: u64,
    /// Contract warnings are fatal.
    pub strict: bool,
}

#[derive(Debug)]
struct Proc {
    pid: u32,
    name: String,
    mm: Option<MmId>,
    cpu: usize,
    gen: ProcessGen,
    pending: Option<Op>,
    blocked: Option<Wait>,
    regions: Vec<Option<(Vpn, Vec<u32>)>>,
    exited: bool,
    killed: Option<String>,
}

/// Status a process task reports after its turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Turn {
    Ran(u64),
    Blocked,
    Exited,
}

/// One machine.
pub struct Machine {
    cfg: MachineConfig,
    seed: u64,
    workload: WorkloadSpec,
    mem: Memory,
    swap: SwapSubsystem,
    reclaim: Reclaimer,
    procs: Vec<Proc>,
    tick: u64,
    stat: Arc<VmStat>,
    warn: Arc<Warnings>,
    verify: verify::Verifier,
    /// Swap I/O latency in µs, [read, write]: all devices, then per device
    /// type.
    latency_us: [Histogram<u64>; 2],
    dev_latency_us: Vec<[Histogram<u64>; 2]>,
    opts: RunOptions,
    checks_run: u64,
    violations: Vec<String>,
    accesses: u64,
    started: std::time::Instant,
    zram: zram::ZramDevices,
    injector: fault::Injector,
    /// Consecutive ticks in which no access completed and no frame was
    /// freed while some process waited for memory (the OOM trigger).
    no_progress_ticks: u64,
    last_free: u64,
    /// The hibernation image held, if any (`machine.hibernate_every`).
    hib: Option<swapvm_swap::SwsuspExtents>,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

/// Creates the swap image of a `[[swap]]` entry if it is missing (and the
/// entry allows it).
fn ensure_image(path: &Path, size_mib: u64, label: &str, create: bool) -> Result<(), MachineError> {
    if path.exists() || !create {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| MachineError::Swap {
            path: path.to_owned(),
            source: SwapError::Header(header::HeaderError::Io {
                path: dir.to_owned(),
                op: "cannot create the folder for the swap image",
                source,
            }),
        })?;
    }
    header::mkswap(path, size_mib << 20, label, None).map_err(|e| MachineError::Swap {
        path: path.to_owned(),
        source: e.into(),
    })?;
    tracing::info!(path = %path.display(), size_mib, "created swap image");
    Ok(())
}

/// Enables one `[[swap]]` device: an image file through io_uring (created
/// if missing and allowed), or a zram device in memory.
fn swapon_device(
    cfg: &MachineConfig,
    s: &SwapDeviceConfig,
    fault: Option<swapvm_io::FaultPlan>,
    swap: &mut SwapSubsystem,
    zram_devices: &mut zram::ZramDevices,
) -> Result<SwapType, MachineError> {
    let path = cfg.resolve(&s.path);
    let o = SwapOnOptions {
        path: path.clone(),
        priority: s.priority,
        engine: EngineConfig {
            queue_depth: s.queue_depth,
            direct: s.direct,
            ..EngineConfig::default()
        },
        allocator: match s.allocator {
            Allocator::PerOrder => AllocatorKind::PerOrder,
            Allocator::FreeClustersOnly => AllocatorKind::FreeClustersOnly,
        },
        rotational: s.rotational,
        discard: s.discard,
        fault,
    };
    let swap_err = |source| MachineError::Swap {
        path: path.clone(),
        source,
    };
    match s.backend {
        SwapBackend::File => {
            ensure_image(&path, s.size_mib, &s.label, s.create)?;
            swap.swapon(&o).map_err(swap_err)
        }
        SwapBackend::Zram => zram::swapon_zram(s, &o, swap, zram_devices).map_err(swap_err),
    }
}

/// A latency histogram in µs, 1 µs to 60 s, 3 significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("static bounds are valid")
}

impl Machine {
    /// Builds a machine from a loaded config: maps RAM, creates and enables
    /// the swap devices, and starts the workload's processes.
    pub fn new(cfg: MachineConfig, opts: RunOptions) -> Result<Machine, MachineError> {
        let seed = opts.seed.unwrap_or(cfg.machine.seed);
        let wl_path = match (&opts.workload, &cfg.workload) {
            (Some(p), _) => p.clone(),
            (None, Some(p)) => cfg.resolve(p),
            (None, None) => {
                return Err(MachineError::NoWorkload {
                    config: cfg.source.clone(),
                })
            }
        };
        let mut workload = WorkloadSpec::load(&wl_path)?;
        if let Some(f) = opts.scale {
            workload = workload.scaled(f);
        }
        let stat = Arc::new(VmStat::new());
        let warn = Arc::new(Warnings::new(opts.strict));
        let ram_pages = cfg.ram_pages();
        let wm = Watermarks::derive(
            ram_pages,
            cfg.reclaim.min_free_kbytes,
            cfg.reclaim.watermark_scale_factor,
        );
        let mem = Memory::new(ram_pages as u32, wm, Arc::clone(&stat), Arc::clone(&warn)).map_err(
            |source| MachineError::Ram {
                mib: cfg.machine.ram_mib,
                source,
            },
        )?;
        let cpus = cfg.machine.cpus as usize;
        let mut swap = SwapSubsystem::new(
            Arc::clone(&stat),
            Arc::clone(&warn),
            cpus,
            u64::from(cfg.machine.io_latency_ticks),
        );
        swap.set_count_max(cfg.machine.swap_count_max);
        swap.inject_continuation_enomem(cfg.fault.continuation_enomem);
        swap.bugs = swapvm_swap::SeedBugs {
            hib_free_exclusive_end: cfg.seed_bugs.hib_free_exclusive_end,
            hib_alloc_double_dec: cfg.seed_bugs.hib_alloc_double_dec,
            slot_check_unlocked: cfg.seed_bugs.slot_check_unlocked,
        };
        let mut verify = verify::Verifier::default();
        let mut zram = zram::ZramDevices::new();
        for (i, s) in cfg.swap.iter().enumerate() {
            let plan = fault::io_plan(&cfg.fault, seed, i);
            let ty = swapon_device(&cfg, s, plan, &mut swap, &mut zram)?;
            let slots = swap.device(ty).map_or(0, |d| d.max());
            verify.add_device(ty.0, slots);
        }
        let reclaim = Reclaimer::new(cfg.reclaim.clone(), ram_pages);
        let procs = workload
            .instantiate(seed)
            .into_iter()
            .enumerate()
            .map(|(i, gen)| Proc {
                pid: i as u32 + 1,
                name: gen.name().to_owned(),
                mm: None,
                cpu: i % cpus,
                gen,
                pending: None,
                blocked: None,
                regions: Vec::new(),
                exited: false,
                killed: None,
            })
            .collect();
        let hist = new_histogram;
        let injector = fault::Injector::new(&cfg.fault, seed);
        Ok(Machine {
            cfg,
            seed,
            workload,
            mem,
            swap,
            reclaim,
            procs,
            tick: 0,
            stat,
            warn,
            verify,
            latency_us: [hist(), hist()],
            dev_latency_us: Vec::new(),
            opts,
            checks_run: 0,
            violations: Vec::new(),
            accesses: 0,
            started: std::time::Instant::now(),
            zram,
            injector,
            no_progress_ticks: 0,
            last_free: 0,
            hib: None,
        })
    }

    /// zram figures of device `ty`, if it is a zram device.
    fn zram_stats(&self, ty: SwapType) -> Option<report::ZramReport> {
        zram::stats(&self.zram, ty)
    }

    /// Accesses the workload will make in all.
    pub fn total_accesses(&self) -> u64 {
        self.workload.total_accesses()
    }
    /// Accesses made so far.
    pub fn accesses_done(&self) -> u64 {
        self.accesses
    }
    /// Current tick.
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// Delivers every swap I/O due by now.
    fn deliver_io(&mut self) -> usize {
        let done = self.swap.complete_due(self.tick);
        let n = done.len();
        for d in done {
            let pfn = Pfn(d.cookie as u32);
            let us = (d.latency_ns / 1000).max(1);
            let k = if d.kind == IoKind::Read { 0 } else { 1 };
            let ty = d.entry.ty().0 as usize;
            if self.dev_latency_us.len() <= ty {
                self.dev_latency_us
                    .resize_with(ty + 1, || [new_histogram(), new_histogram()]);
            }
            let _ = self.dev_latency_us[ty][k].record(us);
            let h = &mut self.latency_us[k];
            let _ = h.record(us);
            let ok = d.result.is_ok();
            if let Err(e) = &d.result {
                tracing::error!("swap {:?} of {:?} failed: {e}", d.kind, d.entry);
            }
            match d.kind {
                IoKind::Read => {
                    // A read whose bytes fail the checksum of their last
                    // write (a torn write) is failed like a read error, as
                    // a device with integrity protection fails it: the
                    // process gets SIGBUS instead of wrong data.
                    if ok && self.verify.read(self.tick, d.entry, d.buf.as_slice()) {
                        self.mem.swap_read_done(pfn, Ok(d.buf.as_slice()));
                    } else {
                        self.mem.swap_read_done(pfn, Err(()));
                    }
                }
                IoKind::Write => {
                    if ok {
                        self.verify.written(d.entry, d.buf.as_slice());
                    }
                    self.reclaim
                        .writeback_done(&mut self.mem, &mut self.swap, pfn, ok);
                }
            }
            self.swap.recycle(d.buf);
        }
        n
    }

    fn unblock(&mut self) {
        let min = self.mem.wmark.min;
        let free = self.mem.nr_free();
        let wb = self.reclaim.nr_writeback();
        for p in &mut self.procs {
            p.blocked = match p.blocked {
                Some(Wait::Folio(pfn)) if !self.mem.folios.get(pfn).test(swapvm_mm::pg::LOCKED) => {
                    None
                }
                Some(Wait::Memory) if free > min || wb == 0 => None,
                b => b,
            };
        }
    }

    /// One process's turn: up to `tick_accesses` ops.
    fn run_process(&mut self, i: usize) -> Turn {
        if self.procs[i].exited {
            return Turn::Exited;
        }
        if self.procs[i].blocked.is_some() {
            return Turn::Blocked;
        }
        let mut n = 0;
        for _ in 0..self.cfg.machine.tick_accesses {
            let op = match self.procs[i]
                .pending
                .take()
                .or_else(|| self.procs[i].gen.next_op())
            {
                Some(op) => op,
                None => {
                    self.exit_process(i, None);
                    return Turn::Exited;
                }
            };
            match self.do_op(i, op) {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(FaultStop::Retry(w)) => {
                    if matches!(w, Wait::Folio(_)) && self.injector.kill_mid_fault() {
                        let why = format!("SIGKILL (injected) while its fault on {op:?} waited for a swap-in read");
                        self.exit_process(i, Some(why));
                        return Turn::Exited;
                    }
                    self.procs[i].pending = Some(op);
                    self.procs[i].blocked = Some(w);
                    if w == Wait::Memory {
                        let cpu = self.procs[i].cpu;
                        self.reclaim
                            .direct_reclaim(&mut self.mem, &mut self.swap, cpu, self.tick);
                    }
                    break;
                }
                Err(stop) => {
                    let why = format!("{stop:?} on {op:?}");
                    self.exit_process(i, Some(why));
                    return Turn::Exited;
                }
            }
            if self.procs[i].exited {
                return Turn::Exited;
            }
        }
        self.reclaim.maybe_wake_kswapd(&self.mem);
        if n > 0 {
            Turn::Ran(n)
        } else {
            Turn::Blocked
        }
    }

    /// Applies one op; `Ok(true)` for a completed access.
    fn do_op(&mut self, i: usize, op: Op) -> Result<bool, FaultStop> {
        let mm = match self.procs[i].mm {
            Some(m) => m,
            None => {
                let m = self.mem.mm_create();
                self.procs[i].mm = Some(m);
                m
            }
        };
        match op {
            Op::Mmap { region, pages } => {
                let start = self.mem.mmap_anon(mm, pages);
                let r = &mut self.procs[i].regions;
                if r.len() <= region as usize {
                    r.resize_with(region as usize + 1, || None);
                }
                r[region as usize] = Some((start, vec![0; pages as usize]));
                Ok(false)
            }
            Op::Access {
                region,
                page,
                write,
            } => self.access(i, mm, region, page, write),
            Op::Munmap { region } => {
                if let Some(Some((start, _))) = self.procs[i]
                    .regions
                    .get_mut(region as usize)
                    .map(Option::take)
                {
                    self.mem.munmap(&mut self.swap, mm, start);
                }
                Ok(false)
            }
            Op::Exit => {
                self.exit_process(i, None);
                Ok(false)
            }
        }
    }

    fn access(
        &mut self,
        i: usize,
        mm: MmId,
        region: u32,
        page: u64,
        write: bool,
    ) -> Result<bool, FaultStop> {
        let p = &self.procs[i];
        let Some(Some((start, versions))) = p.regions.get(region as usize) else {
            return Err(FaultStop::Segv);
        };
        let Some(&version) = versions.get(page as usize) else {
            return Err(FaultStop::Segv);
        };
        let vpn = start.add(page);
        let pid = p.pid;
        let pfn = self.mem.access(&mut self.swap, mm, vpn, write, self.tick)?;
        if write {
            let v = version + 1;
            if let Some(Some((_, versions))) = self.procs[i].regions.get_mut(region as usize) {
                versions[page as usize] = v;
            }
            self.mem.ram.page_mut(pfn)[..verify::STAMP_LEN]
                .copy_from_slice(&verify::stamp(pid, vpn.0, v));
        } else {
            self.verify
                .check_stamp(self.tick, pid, vpn.0, version, self.mem.ram.page(pfn));
        }
        self.accesses += 1;
        Ok(true)
    }

    fn exit_process(&mut self, i: usize, killed: Option<String>) {
        if let Some(mm) = self.procs[i].mm.take() {
            self.mem.exit_mmap(&mut self.swap, mm);
        }
        let p = &mut self.procs[i];
        if let Some(why) = &killed {
            tracing::error!("process {} ({}) killed: {why}", p.pid, p.name);
        }
        p.exited = true;
        p.killed = killed;
        p.regions.clear();
    }

    fn run_checker(&mut self) {
        self.checks_run += 1;
        let procs = &self.procs;
        let mm_name = |mm: swapvm_mm::MmId| {
            procs.iter().find(|p| p.mm == Some(mm)).map_or_else(
                || format!("mm {}", mm.0),
                |p| format!("pid {} ({})", p.pid, p.name),
            )
        };
        let cx = check::CheckContext {
            hibernation: self.hib.as_ref(),
            mm_name: &mm_name,
        };
        let v = check::check_invariants_with(&mut self.mem, &mut self.swap, &cx);
        for line in v {
            if self.violations.len() < 64 {
                self.violations.push(format!("tick {}: {line}", self.tick));
            }
        }
    }

    /// Runs the machine to completion in the tokio tick loop, calling
    /// `progress(done, total)` every tick.
    pub fn run(self, progress: impl FnMut(u64, u64)) -> Result<Report, MachineError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|source| MachineError::Ram { mib: 0, source })?;
        let local = tokio::task::LocalSet::new();
        let mut this = self;
        this.started = std::time::Instant::now();
        let machine = this;
        local.block_on(&rt, tick_loop(machine, progress))
    }
}

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
            let mut g = m.borrow_mut();
            let mm = &mut *g;
            let p = mm
                .reclaim
                .kswapd_tick(&mut mm.mem, &mut mm.swap, 0, mm.tick);
            let _ = reply.send(if p.made() {
                Turn::Ran(p.scanned)
            } else {
                Turn::Blocked
            });
        }
    });
    tx
}

async fn turn(tx: &tokio::sync::mpsc::Sender<TurnRequest>) -> Turn {
    let (rtx, rrx) = tokio::sync::oneshot::channel();
    if tx.send(rtx).await.is_err() {
        return Turn::Exited;
    }
    rrx.await.unwrap_or(Turn::Exited)
}

async fn tick_loop(
    machine: Machine,
    mut progress: impl FnMut(u64, u64),
) -> Result<Report, MachineError> {
    let total = machine.total_accesses();
    let nprocs = machine.procs.len();
    let m: Shared = Rc::new(RefCell::new(machine));
    let tasks: Vec<_> = (0..nprocs).map(|i| spawn_process_task(&m, i)).collect();
    let kswapd = spawn_kswapd_task(&m);
    let mut stalled = 0u32;
    loop {
        let (delivered, max_ticks, check_every, tick) = {
            let mut g = m.borrow_mut();
            let n = g.deliver_io();
            g.unblock();
            (n, g.cfg.machine.max_ticks, g.opts.check_every, g.tick)
        };
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
        let k = turn(&kswapd).await;
        let mut g = m.borrow_mut();
        if live == 0 && g.swap.io_in_flight() == 0 {
            break;
        }
        // An OOM kill frees memory: that is progress too.
        let oom_killed = g.out_of_memory_tick(ran);
        if oom_killed
            || ran
            || delivered > 0
            || matches!(k, Turn::Ran(_))
            || g.swap.io_in_flight() > 0
        {
            stalled = 0;
        } else {
            stalled += 1;
            if stalled > 1000 {
                return Err(MachineError::Stalled { tick });
            }
        }
        if g.warn.fatal() {
            let first = g
                .warn
                .records()
                .first()
                .map(|r| format!("{}: {}: {}", r.site.func, r.site.rule, r.first))
                .unwrap_or_default();
            return Err(MachineError::Strict { tick, first });
        }
        g.hibernate_tick();
        if check_every > 0 && tick % check_every == 0 {
            g.run_checker();
        }
        g.tick += 1;
        progress(g.accesses, total);
        if max_ticks > 0 && g.tick >= max_ticks {
            break;
        }
    }
    drop(tasks);
    drop(kswapd);
    let mut g = m.borrow_mut();
    // The tick in which the last process exits breaks out of the loop
    // before its progress call; report that tick's accesses too, so the
    // caller sees the run reach its total.
    progress(g.accesses, total);
    // Drain what is still in flight so every byte is accounted for.
    while g.swap.io_in_flight() > 0 {
        g.tick += 1;
        g.deliver_io();
    }
    g.swsusp_release();
    g.run_checker();
    Ok(report::build(&mut g))
}
