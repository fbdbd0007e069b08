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

pub mod bench;
pub mod check;
mod check_lru_gen;
pub mod compare;
mod fault;
pub mod footprint;
pub mod fuzz;
mod lru_gen;
pub mod memcg;
pub mod psi;
pub mod realtime;
pub mod replay;
pub mod report;
mod swsusp;
mod tick_loop;
// The run folder: the time series, its plots, and the writer.
pub mod plot;
pub mod plot_pressure;
pub mod run_folder;
pub mod scale;
pub mod series;
pub mod swap_event;
pub mod thp_alloc_test;
pub mod verify;
mod zram;
pub mod zswap;

use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use swap_event::{SwapEvent, SwapEventKind};
use swapvm_core::config::{
    Allocator, ConfigError, ContentMode, Rotational, SubmitMode, SwapBackend, SwapDeviceConfig,
};
use swapvm_core::SwapType;
use swapvm_core::{MachineConfig, Pfn, VmEvent, VmStat, Vpn, Warnings};
use swapvm_io::{EngineConfig, IoKind};
use swapvm_mm::ram::Ram;
use swapvm_mm::{FaultStop, MemCgroups, MemcgId, Memory, MmId, VmaKind, Wait, Watermarks};
use swapvm_reclaim::{Reclaimer, Swapoff, SwapoffStep};
use swapvm_swap::AllocatorKind;
use swapvm_swap::{header, SwapError, SwapOnOptions, SwapSubsystem};
use swapvm_workload::{Advice, MmOps, MmOpsConfig, Op, PageRange, ProcessSource, WorkloadSpec};
use verify::{pool_key, stamp_key, ContentKey, KEY_LAZY};

pub use report::{Outcome, Report};

/// Why a machine could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// The config or workload file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A trace to replay could not be read.
    #[error(transparent)]
    Trace(#[from] swapvm_workload::TraceError),
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
    /// `rotational = "auto"` could not tell from the device.
    #[error("swap[{index}].rotational = \"auto\"")]
    Rotational {
        /// The device's index in the config.
        index: usize,
        /// Cause.
        #[source]
        source: swapvm_io::blockdev::RotationalError,
    },
    /// Emulated RAM could not be mapped.
    #[error(
        "{}: machine.ram_mib = {mib}: cannot map {mib} MiB of emulated RAM \
         (content = \"full\" maps all of it in host memory; content = \"none\" does not)",
        config.display()
    )]
    Ram {
        /// The config.
        config: PathBuf,
        /// Size.
        mib: u64,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The tokio runtime of the tick loop could not be built.
    #[error("cannot start the tick loop's runtime")]
    Runtime(#[source] std::io::Error),
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

/// Failed swap I/Os logged one by one before only a count is.
const IO_ERRORS_LOGGED: u64 = 20;

/// Run options from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides `machine.seed`.
    pub seed: Option<u64>,
    /// Overrides the config's workload.
    pub workload: Option<PathBuf>,
    /// Scales the workload down (tests): 0 < scale <= 1.
    pub scale: Option<f64>,
    /// With `scale`, shrink RAM and swap by the same factor and refuse a
    /// scale at which the run would no longer swap ([`scale::scale_machine`];
    /// `swapvm run --scale`). Off, only the workload shrinks.
    pub scale_machine: bool,
    /// Run the invariant checker every N ticks (0: only at the end).
    pub check_every: u64,
    /// Contract warnings are fatal.
    pub strict: bool,
    /// Run random mm-op processes instead of a workload.
    pub mmops: Option<MmOpsRun>,
    /// Set (by a SIGINT/SIGTERM handler) to stop the run at the next tick
    /// boundary: in-flight I/O is drained, the checker runs and the report
    /// is marked interrupted.
    pub interrupt: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// One mapped region of a process and the content each page must hold.
#[derive(Debug, Clone)]
struct Region {
    start: Vpn,
    backing: Backing,
}

#[derive(Debug, Clone)]
enum Backing {
    /// Private anonymous: the process's own keys (a fork copies them).
    Anon(Vec<ContentKey>),
    /// Shared: the keys live with the inode (`Machine::file_keys`).
    File { ino: u32, pgoff: u64 },
}

#[derive(Debug)]
struct Proc {
    pid: u32,
    name: String,
    mm: Option<MmId>,
    cpu: usize,
    gen: ProcessSource,
    pending: Option<Op>,
    blocked: Option<Wait>,
    regions: Vec<Option<Region>>,
    exited: bool,
    killed: Option<String>,
    children: u32,
    /// Asleep until this tick (`Op::Sleep`).
    sleep_until: u64,
    /// Direct reclaim: entries (allocstall charged to this process), the
    /// tick the current stall began, and ticks stalled in all.
    reclaim_stall: ReclaimStall,
    /// The memory cgroup it runs in.
    memcg: MemcgId,
    /// `try_charge`'s `nr_retries`: limit reclaims in a row that made no
    /// progress for the charge it waits on.
    memcg_retries: u32,
    /// Ticks slept as the `memory.high` penalty.
    high_throttled_ticks: u64,
    /// The `memory.high` penalty sleep lasts until this tick (a memory
    /// stall, unlike `Op::Sleep`).
    throttled_until: u64,
    /// What it did this tick, for PSI.
    psi: psi::TaskTick,
    /// Its Senpai-like controller's `some` stall total at the last round.
    senpai_last_us: Option<u64>,
    /// CPU time after each access, µs (realtime runs; `think_us`).
    think_us: u32,
}

/// A process's direct-reclaim stalls.
#[derive(Debug, Clone, Copy, Default)]
struct ReclaimStall {
    allocstall: u64,
    since: Option<u64>,
    ticks: u64,
}

/// Random mm-op processes instead of a workload file (simulation tests and
/// `swapvm fuzz`).
#[derive(Debug, Clone, Copy)]
pub struct MmOpsRun {
    /// Processes started.
    pub procs: u32,
    /// The shape of their op sequences.
    pub ops: MmOpsConfig,
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
    /// Accesses all processes make (for progress).
    total_accesses: u64,
    mem: Memory,
    swap: SwapSubsystem,
    reclaim: Reclaimer,
    procs: Vec<Proc>,
    tick: u64,
    stat: Arc<VmStat>,
    warn: Arc<Warnings>,
    verify: verify::Verifier,
    series: series::Series,
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
    /// tmpfs names (workload file numbers) to inodes.
    files: HashMap<u32, u32>,
    /// The content keys of each shmem inode's pages.
    file_keys: HashMap<u32, Vec<ContentKey>>,
    next_key: ContentKey,
    next_pid: u32,
    /// Forks refused for want of memory (`-ENOMEM`).
    pub forks_failed: u64,
    injector: fault::Injector,
    /// Consecutive ticks in which no access completed and no frame was
    /// freed while some process waited for memory (the OOM trigger).
    no_progress_ticks: u64,
    last_free: u64,
    /// The hibernation image held, if any (`machine.hibernate_every`).
    hib: Option<swapvm_swap::SwsuspExtents>,
    /// The hibernate cycle in progress (a `hibernate` phase): every task
    /// is frozen while it runs.
    hib_cycle: Option<swsusp::HibCycle>,
    /// What the hibernate cycles did, for the report.
    hib_report: report::HibernationReport,
    /// Swapoffs started by `fault.swapoff_at_tick`.
    faults_swapoff: u64,
    /// The swap type of each `[[swap]]` entry while it is on.
    swap_types: Vec<Option<SwapType>>,
    /// The swapoff in progress, a task of the tick loop.
    swapoff: Option<Swapoff>,
    /// What swapoff and swapon did, one line each, for the report.
    swap_events: Vec<swap_event::SwapEvent>,
    /// The workload file's text (empty without one), for the report.
    workload_text: String,
    /// Counters recorded at `Op::Mark`s, in order.
    marks: Vec<report::Mark>,
    /// Cgroup interface file writes the workload made, in order.
    cgroup_writes: Vec<memcg::CgroupWriteReport>,
    /// The run stopped early on `RunOptions::interrupt`.
    interrupted: bool,
    /// Swap I/O errors seen (the first few are logged).
    io_errors: u64,
    /// Per `[[swap]]` entry, the figures and injected faults of its earlier
    /// swapon periods (summed), kept when a swapoff removes the device.
    retired: Vec<Option<(report::DeviceReport, swapvm_io::FaultCounts)>>,
    /// Listed error slots reached on devices before their swapoff.
    retired_blocks_hit: swapvm_io::BlocksHit,
    /// The device report taken when the running swapoff began (its static
    /// fields; the I/O figures are read again when it ends).
    swapoff_snapshot: Option<report::DeviceReport>,
    /// The swap-in readahead mode with every configured device on
    /// (`swap_use_vma_readahead`): `"vma"` or `"cluster"`.
    swap_readahead: &'static str,
    /// Memory pressure stall accounting, per memcg (the root is the
    /// system).
    psi: psi::Psi,
    /// kswapd reclaimed this tick (a memory stall of the root).
    kswapd_stalled: bool,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

/// The kernel's swap-in readahead mode for the devices now on: by address
/// (`"vma"`) when `vma_ra_enabled` is set and none is rotational, else by
/// swap offset (`"cluster"`).
fn readahead_mode(mem: &Memory, swap: &SwapSubsystem) -> &'static str {
    if mem.swap_use_vma_readahead(swap) {
        "vma"
    } else {
        "cluster"
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

/// Warns when an existing image's size or label is not what its
/// `[[swap]]` entry says: those fields only shape an image swapvm creates,
/// so the image's own win, and the user should know. An image that cannot
/// be read is left for swapon to report.
fn warn_image_disagrees(path: &Path, index: usize, s: &SwapDeviceConfig) {
    let Ok(h) = header::read_header(path) else {
        return;
    };
    let pages = u64::from(h.last_page) + 1;
    if pages != s.size_mib.saturating_mul(256) {
        let holds = if pages % 256 == 0 {
            format!("{} MiB", pages / 256)
        } else {
            format!("{} KiB", pages * 4)
        };
        tracing::warn!(
            "{}: swap[{index}].size_mib = {} but the existing image holds {holds} ({} slots); \
             the image's size is used (delete the image to have it made at {} MiB)",
            path.display(),
            s.size_mib,
            h.last_page,
            s.size_mib
        );
    }
    if !s.label.is_empty() && h.label != s.label {
        tracing::warn!(
            "{}: swap[{index}].label = {:?} but the existing image's label is {:?}; the image's is kept",
            path.display(),
            s.label,
            h.label
        );
    }
}

/// Enables one `[[swap]]` device: an image file through io_uring (created
/// if missing and allowed), a zram device in memory, or a null device
/// (metadata-only machines; no file is created or opened).
fn swapon_device(
    cfg: &MachineConfig,
    index: usize,
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
            submitter: match s.submit {
                SubmitMode::Inline => swapvm_io::Submitter::Inline,
                SubmitMode::Thread => swapvm_io::Submitter::Thread,
            },
            ..EngineConfig::default()
        },
        allocator: match s.allocator {
            Allocator::PerOrder => AllocatorKind::PerOrder,
            Allocator::FreeClustersOnly => AllocatorKind::FreeClustersOnly,
        },
        rotational: matches!(s.rotational, Rotational::Fixed(true)),
        discard: s.discard,
        fault,
        nomerges: s.nomerges,
        // zram completes a read in the submitting context.
        synchronous_io: s.backend == SwapBackend::Zram,
    };
    let swap_err = |source| MachineError::Swap {
        path: path.clone(),
        source,
    };
    match s.backend {
        SwapBackend::File => {
            if path.exists() {
                warn_image_disagrees(&path, index, s);
            }
            ensure_image(&path, s.size_mib, &s.label, s.create)?;
            let rotational = match s.rotational {
                Rotational::Fixed(r) => r,
                Rotational::Auto => swapvm_io::blockdev::rotational(&path)
                    .map_err(|source| MachineError::Rotational { index, source })?,
            };
            swap.swapon(&SwapOnOptions { rotational, ..o })
                .map_err(swap_err)
        }
        SwapBackend::Zram => zram::swapon_zram(s, &o, swap, zram_devices).map_err(swap_err),
        SwapBackend::Null => swapon_null(s, &o, swap).map_err(swap_err),
    }
}

/// Enables a null device of `s.size_mib` MiB: the header is built in
/// memory (as zram's is, so the slot count is a file image's) and the
/// engine completes every request without I/O, keeping each slot's content
/// word (see swapvm-io's `NullEngine`).
fn swapon_null(
    s: &SwapDeviceConfig,
    o: &SwapOnOptions,
    swap: &mut SwapSubsystem,
) -> Result<SwapType, SwapError> {
    let pages = s.size_mib * 256;
    let header = header::SwapHeader::new(pages, [0; 16], &s.label)?;
    let engine = swapvm_io::NullEngine::new(pages * swapvm_core::PAGE_SIZE as u64);
    swap.swapon_engine(o, header, Box::new(engine))
}

/// An error and its causes, `: `-separated.
/// The memcg of each process, from the cgroup paths its workload named
/// (with the field that named each, for the error).
fn resolve_cgroups(
    mem: &Memory,
    workload: &Path,
    paths: Vec<(Option<String>, String)>,
) -> Result<Vec<MemcgId>, ConfigError> {
    paths
        .into_iter()
        .map(|(path, field)| match path {
            None => Ok(MemcgId::ROOT),
            Some(p) => mem.memcg.by_path(&p).ok_or_else(|| ConfigError::Invalid {
                path: workload.to_owned(),
                field,
                reason: format!(
                    "no cgroup {p:?} in the machine config (add a [[cgroup]] table with path = {p:?})"
                ),
            }),
        })
        .collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    msg
}

/// A latency histogram in µs, 1 µs to 60 s, 3 significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("static bounds are valid")
}

impl Machine {
    /// Builds a machine from a loaded config: maps RAM, creates and enables
    /// the swap devices, and starts the workload's processes.
    pub fn new(mut cfg: MachineConfig, opts: RunOptions) -> Result<Machine, MachineError> {
        let seed = opts.seed.unwrap_or(cfg.machine.seed);
        let mut text = String::new();
        let mut workload = if opts.mmops.is_some() {
            WorkloadSpec {
                name: "mmops".into(),
                description: "random memory-management op sequences".into(),
                processes: Vec::new(),
                source: PathBuf::from("<mmops>"),
            }
        } else {
            let wl_path = match (&opts.workload, &cfg.workload) {
                (Some(p), _) => p.clone(),
                (None, Some(p)) => cfg.resolve(p),
                (None, None) => {
                    return Err(MachineError::NoWorkload {
                        config: cfg.source.clone(),
                    })
                }
            };
            text = std::fs::read_to_string(&wl_path).map_err(|source| {
                swapvm_core::config::ConfigError::Read {
                    path: wl_path.clone(),
                    source,
                }
            })?;
            WorkloadSpec::from_toml(&text, &wl_path)?
        };
        if let Some(f) = opts.scale {
            let scaled = workload.scaled(f);
            if opts.scale_machine {
                for w in scale::scale_machine(&mut cfg, &workload, &scaled, f)? {
                    tracing::warn!("{w}");
                }
            }
            workload = scaled;
        }
        let total = workload.total_accesses();
        let cgroups = workload
            .cgroups()
            .into_iter()
            .map(|(c, f)| (c.map(str::to_owned), f))
            .collect();
        let sources = match opts.mmops {
            Some(r) => (0..r.procs)
                .map(|i| {
                    let rng = swapvm_core::SimRng::derive(seed, u64::from(i) + 1);
                    ProcessSource::MmOps(MmOps::new(r.ops, rng))
                })
                .collect(),
            None => workload.instantiate(seed),
        };
        let think = workload.think_us();
        let mut m = Self::build(cfg, opts, seed, workload, sources, cgroups, total)?;
        for (p, t) in m.procs.iter_mut().zip(think) {
            p.think_us = t;
        }
        m.workload_text = text;
        Ok(m)
    }

    /// A machine running `sources` (one process each, pids from 1) instead
    /// of a workload file: for tests and tools that script processes
    /// ([`swapvm_workload::Script`]) or mix them with generators.
    pub fn with_sources(
        cfg: MachineConfig,
        opts: RunOptions,
        name: &str,
        sources: Vec<ProcessSource>,
    ) -> Result<Machine, MachineError> {
        let in_root = sources.into_iter().map(|s| ("/".to_owned(), s)).collect();
        Self::with_sources_in(cfg, opts, name, in_root)
    }

    /// [`Machine::with_sources`] with each process in the memory cgroup
    /// named beside it (a path of the config's `[[cgroup]]` tables).
    pub fn with_sources_in(
        cfg: MachineConfig,
        opts: RunOptions,
        name: &str,
        sources: Vec<(String, ProcessSource)>,
    ) -> Result<Machine, MachineError> {
        let seed = opts.seed.unwrap_or(cfg.machine.seed);
        let workload = WorkloadSpec {
            name: name.into(),
            description: "processes given by the caller".into(),
            processes: Vec::new(),
            source: PathBuf::from(format!("<{name}>")),
        };
        let total = sources.iter().map(|(_, s)| s.accesses_total()).sum();
        let (cgroups, sources): (Vec<_>, Vec<_>) = sources
            .into_iter()
            .enumerate()
            .map(|(i, (c, s))| ((Some(c), format!("process[{i}].cgroup")), s))
            .unzip();
        Self::build(cfg, opts, seed, workload, sources, cgroups, total)
    }

    /// Wires a machine around `sources`, one process each (pids from 1, in
    /// order), `workload` naming them in the report.
    fn build(
        cfg: MachineConfig,
        opts: RunOptions,
        seed: u64,
        workload: WorkloadSpec,
        sources: Vec<ProcessSource>,
        cgroups: Vec<(Option<String>, String)>,
        total_accesses: u64,
    ) -> Result<Machine, MachineError> {
        // `--fault` may have changed the faults since the config loaded.
        cfg.validate_content()?;
        cfg.validate_fault_device()?;
        let stat = Arc::new(VmStat::new());
        let warn = Arc::new(Warnings::new(opts.strict));
        let ram_pages = cfg.ram_pages();
        let wm = Watermarks::derive(
            ram_pages,
            cfg.reclaim.min_free_kbytes,
            cfg.reclaim.watermark_scale_factor,
        );
        let content = cfg.machine.content;
        let ram = match content {
            ContentMode::Full => Ram::new(ram_pages as u32),
            ContentMode::None => Ram::metadata_only(ram_pages as u32),
        }
        .map_err(|source| MachineError::Ram {
            config: cfg.source.clone(),
            mib: cfg.machine.ram_mib,
            source,
        })?;
        let mut mem = Memory::with_ram(ram, wm, Arc::clone(&stat), Arc::clone(&warn));
        mem.ksm.pages_to_scan = cfg.ksm.pages_to_scan;
        mem.anon_orders = cfg.mthp.orders();
        mem.anon_orders_madvise = cfg.mthp.orders_madvise();
        mem.swapin_any_device = cfg.mthp.swapin_any_device;
        mem.swap_ra.page_cluster = cfg.reclaim.page_cluster;
        mem.swap_ra.vma_ra_enabled = cfg.reclaim.vma_ra_enabled;
        mem.set_memcgs(MemCgroups::new(cfg.cgroups()?));
        mem.lru
            .set_lru_gen(cfg.reclaim.policy == swapvm_core::config::ReclaimPolicy::Mglru);
        let proc_memcgs = resolve_cgroups(&mem, &workload.source, cgroups)?;
        let cpus = cfg.machine.cpus as usize;
        let mut swap = SwapSubsystem::new(
            Arc::clone(&stat),
            Arc::clone(&warn),
            cpus,
            u64::from(cfg.machine.io_latency_ticks),
        );
        swap.set_count_max(cfg.machine.swap_count_max);
        swap.set_write_latency_ticks(u64::from(
            cfg.machine
                .io_write_latency_ticks
                .unwrap_or(cfg.machine.io_latency_ticks),
        ));
        swap.set_page_bytes(mem.ram.page_bytes());
        swap.inject_continuation_enomem(cfg.fault.continuation_enomem);
        swap.bugs = swapvm_swap::SeedBugs {
            hib_free_exclusive_end: cfg.seed_bugs.hib_free_exclusive_end,
            hib_alloc_double_dec: cfg.seed_bugs.hib_alloc_double_dec,
            slot_check_unlocked: cfg.seed_bugs.slot_check_unlocked,
            swapoff_put_on_ksm_copy: cfg.seed_bugs.swapoff_put_on_ksm_copy,
            zswap_keep_on_free: cfg.seed_bugs.zswap_keep_on_free,
        };
        let mut verify = verify::Verifier::new(content == ContentMode::Full);
        let mut zram = zram::ZramDevices::new();
        let mut swap_types = Vec::with_capacity(cfg.swap.len());
        for (i, s) in cfg.swap.iter().enumerate() {
            let plan = fault::io_plan(&cfg.fault, seed, i);
            let ty = swapon_device(&cfg, i, s, plan, &mut swap, &mut zram)?;
            let slots = swap.device(ty).map_or(0, |d| d.max());
            verify.add_device(ty.0, slots);
            swap_types.push(Some(ty));
        }
        zswap::setup(&cfg, &mem, &mut swap, ram_pages);
        let swap_readahead = readahead_mode(&mem, &swap);
        // A process can map as many pages as RAM and swap hold together,
        // and under pressure it does: the walk cache is sized for that.
        mem.pt
            .resize_leaf_cache(ram_pages + swap.total_swap_pages());
        let reclaim = Reclaimer::new(cfg.reclaim.clone(), ram_pages);
        let series = series::Series::new(cfg.machine.sample_every_ticks);
        let sources: Vec<(String, ProcessSource)> = sources
            .into_iter()
            .map(|g| (g.name().to_owned(), g))
            .collect();
        let procs: Vec<Proc> = sources
            .into_iter()
            .enumerate()
            .map(|(i, (name, gen))| Proc {
                pid: i as u32 + 1,
                name,
                mm: None,
                cpu: i % cpus,
                gen,
                pending: None,
                blocked: None,
                regions: Vec::new(),
                exited: false,
                killed: None,
                children: 0,
                sleep_until: 0,
                reclaim_stall: ReclaimStall::default(),
                memcg: proc_memcgs.get(i).copied().unwrap_or(MemcgId::ROOT),
                memcg_retries: 0,
                high_throttled_ticks: 0,
                throttled_until: 0,
                psi: psi::TaskTick::default(),
                senpai_last_us: None,
                think_us: 0,
            })
            .collect();
        let next_pid = procs.len() as u32 + 1;
        let psi = psi::Psi::new(mem.memcg.len(), cpus, cfg.machine.tick_accesses);
        let hist = new_histogram;
        let injector = fault::Injector::new(&cfg.fault, seed);
        Ok(Machine {
            cfg,
            seed,
            workload,
            total_accesses,
            mem,
            swap,
            reclaim,
            procs,
            tick: 0,
            stat,
            warn,
            verify,
            series,
            latency_us: [hist(), hist()],
            dev_latency_us: Vec::new(),
            opts,
            checks_run: 0,
            violations: Vec::new(),
            accesses: 0,
            started: std::time::Instant::now(),
            zram,
            files: HashMap::new(),
            file_keys: HashMap::new(),
            next_key: 1,
            next_pid,
            forks_failed: 0,
            injector,
            no_progress_ticks: 0,
            last_free: 0,
            hib: None,
            hib_cycle: None,
            hib_report: report::HibernationReport::default(),
            faults_swapoff: 0,
            swap_types,
            swapoff: None,
            swap_events: Vec::new(),
            workload_text: String::new(),
            marks: Vec::new(),
            cgroup_writes: Vec::new(),
            interrupted: false,
            io_errors: 0,
            retired: Vec::new(),
            retired_blocks_hit: swapvm_io::BlocksHit::default(),
            swapoff_snapshot: None,
            swap_readahead,
            psi,
            kswapd_stalled: false,
        })
    }

    /// zram figures of device `ty`, if it is a zram device.
    fn zram_stats(&self, ty: SwapType) -> Option<report::ZramReport> {
        zram::stats(&self.zram, ty)
    }

    /// Bytes of host memory mapped for page content: RAM's size in full
    /// mode, one content word per frame in metadata-only mode (no arena).
    pub fn ram_mapped_bytes(&self) -> usize {
        self.mem.ram.mapped_bytes()
    }

    /// Accesses the workload will make in all.
    pub fn total_accesses(&self) -> u64 {
        self.total_accesses
    }
    /// Accesses made so far.
    pub fn accesses_done(&self) -> u64 {
        self.accesses
    }
    /// Current tick.
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// Whether to log one more failed swap I/O: the first
    /// [`IO_ERRORS_LOGGED`], then only a count at the end of the run, so a
    /// failing disk does not bury the summary under thousands of lines.
    fn io_error_log(&mut self) -> bool {
        self.io_errors += 1;
        self.io_errors <= IO_ERRORS_LOGGED
    }

    /// Delivers every swap I/O due by now.
    fn deliver_io(&mut self) -> usize {
        let done = self.swap.complete_due(self.tick);
        self.deliver(done)
    }

    /// Hands finished swap I/Os to their owners (a fault's read, reclaim's
    /// writeback, a hibernation image), recording their latencies.
    fn deliver(&mut self, done: Vec<swapvm_swap::SwapIoDone>) -> usize {
        let n = done.len();
        for d in done {
            if d.cookie & swsusp::HIB_COOKIE != 0 {
                let ok = d.result.is_ok();
                if let Err(e) = &d.result {
                    if self.io_error_log() {
                        tracing::error!("hibernation {:?} of {:?} failed: {e}", d.kind, d.entry);
                    }
                }
                self.hib_io_done(d.cookie, d.kind, ok, d.buf.as_slice());
                self.swap.recycle(d.buf);
                continue;
            }
            let pfn = Pfn(d.cookie as u32);
            let us = (d.latency_ns / 1000).max(1);
            let k = if d.kind == IoKind::Read { 0 } else { 1 };
            let ty = d.entry.ty().0 as usize;
            if self.dev_latency_us.len() <= ty {
                self.dev_latency_us
                    .resize_with(ty + 1, || [new_histogram(), new_histogram()]);
            }
            // zswap's completions never reached the device: its latency
            // figures are the device's alone.
            if !d.zswap {
                let _ = self.dev_latency_us[ty][k].record(us);
                let h = &mut self.latency_us[k];
                let _ = h.record(us);
            }
            let ok = d.result.is_ok();
            if let Err(e) = &d.result {
                if self.io_error_log() {
                    tracing::error!("swap {:?} of {:?} failed: {e}", d.kind, d.entry);
                }
            }
            match d.kind {
                IoKind::Read => {
                    // A read whose bytes fail the checksum of their last
                    // write (a torn write) is failed like a read error, as
                    // a device with integrity protection fails it: the
                    // process gets SIGBUS instead of wrong data.
                    // (Without page bytes nothing is checked: `read` passes.)
                    if ok && self.verify.read(self.tick, d.entry, d.buf.as_slice()) {
                        self.mem.swap_read_done(pfn, Ok(d.buf.as_slice()));
                    } else {
                        self.mem.swap_read_done(pfn, Err(()));
                    }
                    // A folio read ahead whose last swap owner went while
                    // it was locked for the read: nothing else will free
                    // it (the kernel leaves it to reclaim).
                    if swapvm_mm::swap_state::folio_unclaimed(self.mem.folios.get(pfn)) {
                        self.mem.try_free_folio(&mut self.swap, pfn);
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
        let tick = self.tick;
        for p in &mut self.procs {
            if p.blocked == Some(Wait::Memory) && (free > min || wb == 0) {
                let s = &mut p.reclaim_stall;
                if let Some(since) = s.since.take() {
                    s.ticks += tick - since;
                }
            }
            p.blocked = match p.blocked {
                Some(Wait::Folio(pfn))
                    if !self
                        .mem
                        .folios
                        .get(pfn)
                        .test(swapvm_mm::pg::LOCKED | swapvm_mm::pg::WRITEBACK) =>
                {
                    None
                }
                Some(Wait::Memory) if free > min || wb == 0 => None,
                b => b,
            };
        }
        if !self.mem.memcg.is_empty() {
            self.memcg_unblock();
        }
    }

    /// One process's turn: up to `tick_accesses` ops. Records what the
    /// turn was for PSI (`Proc::psi`).
    fn run_process(&mut self, i: usize) -> Turn {
        if self.procs[i].exited {
            return Turn::Exited;
        }
        if self.procs[i].blocked.is_some() || self.frozen() {
            self.procs[i].psi = self.psi_waiting(i);
            return Turn::Blocked;
        }
        if self.procs[i].sleep_until > self.tick {
            let slots = self.cfg.machine.tick_accesses;
            if self.procs[i].throttled_until > self.tick {
                self.procs[i].psi = psi::TaskTick::stalled(slots);
            }
            // Sleeping is progress: time passing is what it waits for.
            return Turn::Ran(0);
        }
        let slots = self.cfg.machine.tick_accesses as usize;
        let mut budget = slots;
        let mut stall = 0;
        let turn = self.run_turn(i, &mut budget, &mut stall);
        self.procs[i].psi = self.psi_after_turn(i, slots - budget, stall);
        turn
    }

    /// The ops of a runnable process's turn. `budget` is the op slots left
    /// in the tick (each op takes one, whether `run_resident` or the
    /// general path runs it); `stall` counts slots spent in memcg reclaim
    /// that made room at once.
    fn run_turn(&mut self, i: usize, budget: &mut usize, stall: &mut u32) -> Turn {
        let mut n = 0;
        let usage0 = self.mem.memcg.get(self.procs[i].memcg).usage;
        while *budget > 0 {
            if self.procs[i].pending.is_none() {
                let k = self.run_resident(i, *budget);
                n += k as u64;
                *budget -= k;
                if *budget == 0 {
                    break;
                }
            }
            *budget -= 1;
            let next = match self.procs[i].pending.take() {
                Some(op) => Ok(Some(op)),
                None => self.procs[i].gen.next_op(),
            };
            let op = match next {
                Ok(Some(op)) => op,
                Ok(None) => {
                    self.exit_process(i, None);
                    return Turn::Exited;
                }
                // Only a trace fails here (the file changed after the scan):
                // the process ends, and the report says why.
                Err(e) => {
                    self.exit_process(i, Some(error_chain(&e)));
                    return Turn::Exited;
                }
            };
            match self.do_op(i, op) {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(FaultStop::Retry(Wait::Memcg(over))) if self.memcg_charge_failed(i, over) => {
                    // Reclaim made room: the charge is retried in place.
                    *stall += 1;
                    self.procs[i].pending = Some(op);
                    continue;
                }
                Err(FaultStop::Retry(w)) => {
                    if !self.mem.memcg.is_empty() {
                        self.memcg_reclaim_excess(i);
                    }
                    if matches!(w, Wait::Folio(_)) && self.injector.kill_mid_fault() {
                        let why = format!("SIGKILL (injected) while its fault on {op:?} waited for a swap-in read");
                        self.exit_process(i, Some(why));
                        return Turn::Exited;
                    }
                    self.procs[i].pending = Some(op);
                    self.procs[i].blocked = Some(w);
                    if w == Wait::Memory {
                        let s = &mut self.procs[i].reclaim_stall;
                        s.allocstall += 1;
                        s.since.get_or_insert(self.tick);
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
            if self.procs[i].sleep_until > self.tick || self.frozen() {
                return Turn::Ran(n);
            }
        }
        if !self.mem.memcg.is_empty() {
            let charged = self
                .mem
                .memcg
                .get(self.procs[i].memcg)
                .usage
                .saturating_sub(usage0);
            self.memcg_handle_over_high(i, charged);
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
                self.mem.mm_mut(m).memcg = self.procs[i].memcg;
                self.procs[i].mm = Some(m);
                m
            }
        };
        match op {
            Op::Mmap { region, pages } => {
                let start = self.mem.mmap_anon(mm, pages);
                let backing = Backing::Anon(vec![0; pages as usize]);
                self.set_region(i, region, Region { start, backing });
                Ok(false)
            }
            Op::MmapShared { region, pages } => {
                let start = self.mem.mmap_shared_anon(mm, pages);
                let ino = match self.mem.find_vma(mm, start).map(|v| v.kind) {
                    Some(VmaKind::Shmem { inode, .. }) => inode,
                    _ => return Ok(false),
                };
                self.file_keys.insert(ino, vec![0; pages as usize]);
                let backing = Backing::File { ino, pgoff: 0 };
                self.set_region(i, region, Region { start, backing });
                Ok(false)
            }
            Op::ShmemMap {
                region,
                file,
                pages,
            } => {
                let ino = self.open_file(file, pages);
                let Some(start) = self.mem.mmap_shmem(mm, ino, 0, pages) else {
                    return Ok(false);
                };
                let backing = Backing::File { ino, pgoff: 0 };
                self.set_region(i, region, Region { start, backing });
                Ok(false)
            }
            Op::ShmemTruncate { file, pages } => {
                if let Some(&ino) = self.files.get(&file) {
                    self.mem.shmem_truncate(&mut self.swap, ino, pages);
                    self.mem.shmem_grow(ino, pages);
                    if let Some(k) = self.file_keys.get_mut(&ino) {
                        k.resize(pages as usize, 0);
                    }
                }
                Ok(false)
            }
            Op::ShmemUnlink { file } => {
                if let Some(ino) = self.files.remove(&file) {
                    self.mem.shmem_unlink(&mut self.swap, ino);
                    if self.mem.shmem.inode(ino).is_none() {
                        self.file_keys.remove(&ino);
                    }
                }
                Ok(false)
            }
            Op::Access {
                region,
                page,
                write,
            } => {
                let store = write.then(|| {
                    self.next_key += 1;
                    self.next_key
                });
                self.access(i, mm, region, page, store)
            }
            Op::Fill { region, page, pool } => {
                self.access(i, mm, region, page, Some(pool_key(pool)))
            }
            Op::Madvise {
                region,
                advice,
                pages,
            } => {
                self.madvise(i, mm, region, advice, pages);
                Ok(false)
            }
            Op::Fork => {
                self.fork(i, mm);
                Ok(false)
            }
            Op::CgroupWrite => {
                self.cgroup_write(i);
                Ok(false)
            }
            Op::LruGen(cmd) => {
                self.lru_gen_write(i, cmd);
                Ok(false)
            }
            Op::Mark { id } => {
                let pid = self.procs[i].pid;
                self.marks
                    .push(report::Mark::now(id, pid, self.tick, &self.stat));
                Ok(false)
            }
            Op::Sleep { ticks } => {
                self.procs[i].sleep_until = self.tick + ticks;
                Ok(false)
            }
            Op::Munmap { region } => {
                if let Some(Some(r)) = self.procs[i]
                    .regions
                    .get_mut(region as usize)
                    .map(Option::take)
                {
                    self.mem.munmap(&mut self.swap, mm, r.start);
                    self.forget_dead_inodes();
                }
                Ok(false)
            }
            Op::Exit => {
                self.exit_process(i, None);
                Ok(false)
            }
            Op::Swapoff { device } | Op::Swapon { device } | Op::Hibernate { device } => {
                let pid = self.procs[i].pid;
                let d = device as usize;
                let (refused, r) = match op {
                    Op::Swapoff { .. } => (SwapEventKind::SwapoffRefused, self.swapoff(d)),
                    Op::Swapon { .. } => (SwapEventKind::SwaponRefused, self.swapon(d)),
                    _ => (SwapEventKind::HibernateRefused, self.hibernate(d)),
                };
                if let Err(why) = r {
                    let mut e = SwapEvent::new(self.tick, refused, Some(device)).because(why);
                    e.pid = Some(pid);
                    self.swap_event(e);
                }
                Ok(false)
            }
        }
    }

    /// Logs `e` and keeps it for the report (the first 256).
    fn swap_event(&mut self, e: SwapEvent) {
        tracing::info!("{e}");
        if self.swap_events.len() < 256 {
            self.swap_events.push(e);
        }
    }

    /// Starts swapoff of the `[[swap]]` entry `device`: checks that what it
    /// holds fits in memory, marks it dying, and leaves the rest to the
    /// swapoff task, which reads the device back over the next ticks
    /// (its outcome goes to the report's `swap_events`).
    ///
    /// # Errors
    /// A message when the device is not on, a swapoff is already running,
    /// or memory cannot hold what the device holds (the device stays on).
    pub fn swapoff(&mut self, device: usize) -> Result<(), String> {
        let Some(Some(ty)) = self.swap_types.get(device).copied() else {
            return Err("no such device, or it is off".into());
        };
        if let Some(so) = &self.swapoff {
            return Err(format!("swapoff of type {} is running", so.ty.0));
        }
        let so = Swapoff::begin(&self.mem, &mut self.swap, ty, self.tick)
            .map_err(|e| error_chain(&e))?;
        let inuse = self.swap.device(ty).map_or(0, |d| d.inuse_pages);
        let mut e = SwapEvent::new(self.tick, SwapEventKind::SwapoffBegin, Some(device as u32));
        e.slots_in_use = Some(inuse);
        self.swap_event(e);
        self.swapoff_snapshot = report::device_report(self, ty);
        self.swapoff = Some(so);
        Ok(())
    }

    /// `swapon` of the `[[swap]]` entry `device` after a swapoff.
    ///
    /// # Errors
    /// A message when it is on already or cannot be enabled.
    pub fn swapon(&mut self, device: usize) -> Result<(), String> {
        match self.swap_types.get(device) {
            None => return Err("no such device".into()),
            Some(Some(_)) => return Err("it is on".into()),
            Some(None) => {}
        }
        let s = self.cfg.swap[device].clone();
        // The device gets the same fault plan as at boot.
        let plan = fault::io_plan(&self.cfg.fault, self.seed, device);
        let ty = swapon_device(&self.cfg, device, &s, plan, &mut self.swap, &mut self.zram)
            .map_err(|e| error_chain(&e))?;
        let slots = self.swap.device(ty).map_or(0, |d| d.max());
        self.verify.add_device(ty.0, slots);
        self.swap_types[device] = Some(ty);
        let e = SwapEvent::new(self.tick, SwapEventKind::Swapon, Some(device as u32));
        self.swap_event(e);
        Ok(())
    }

    /// `fault.swapoff_at_tick`: starts the swapoff of `fault.swapoff_device`
    /// when its tick comes, as an administrator's `swapoff` under load.
    fn inject_swapoff(&mut self) {
        let f = &self.cfg.fault;
        if f.swapoff_at_tick != Some(self.tick) {
            return;
        }
        let device = f.swapoff_device as usize;
        self.faults_swapoff += 1;
        if let Err(why) = self.swapoff(device) {
            let kind = SwapEventKind::SwapoffRefused;
            let mut e = SwapEvent::new(self.tick, kind, Some(device as u32)).because(why);
            e.injected = true;
            self.swap_event(e);
        }
    }

    /// One tick of the swapoff task; true if it did anything.
    /// Whether kswapd has work this tick: it is awake (woken by an
    /// allocation below the low watermark) and the tasks are not frozen.
    /// When not, its turn is a no-op.
    fn kswapd_due(&self) -> bool {
        self.reclaim.kswapd_awake() && !self.frozen()
    }

    /// Whether ksmd scans this tick: `ksm.run`, not frozen, and a tick
    /// of its `ksm.sleep_ticks` period.
    fn ksmd_due(&self) -> bool {
        let k = &self.cfg.ksm;
        k.run && !self.frozen() && self.tick % u64::from(k.sleep_ticks.max(1)) == 0
    }

    /// Whether a swapoff runs and may make a step this tick.
    fn swapoff_due(&self) -> bool {
        self.swapoff.is_some() && !self.frozen()
    }

    /// Keeps the figures of `[[swap]]` entry `d` (type `ty`), just swapped
    /// off, for the report: I/O and faults as they ended, summed with its
    /// earlier periods; every slot and cluster free.
    fn retire(&mut self, d: usize, ty: SwapType) {
        let Some(mut r) = self.swapoff_snapshot.take() else {
            return;
        };
        let io = self.swap.io_stats(ty);
        r.on = false;
        r.slots_used = 0;
        r.slots_cache_only = 0;
        r.reads = io.reads;
        r.writes = io.writes;
        r.bytes_read = io.bytes_read;
        r.bytes_written = io.bytes_written;
        r.errors = io.errors;
        r.writes_merged = io.writes_merged;
        r.max_in_flight = io.max_in_flight;
        let clusters = r.cluster_usage.len() as u32;
        r.clusters_free_nonfull_frag_full = [clusters, 0, 0, 0];
        r.cluster_usage.iter_mut().for_each(|c| *c = 0);
        let mut faults = self.swap.fault_counts(ty);
        self.retired_blocks_hit.add(&self.swap.fault_blocks_hit(ty));
        if self.retired.len() <= d {
            self.retired.resize(d + 1, None);
        }
        if let Some((e, f)) = self.retired[d].take() {
            r = r.with_earlier(&e);
            faults.add(f);
        }
        self.retired[d] = Some((r, faults));
    }

    fn swapoff_tick(&mut self) -> bool {
        if !self.swapoff_due() {
            return false;
        }
        let Some(so) = self.swapoff.as_mut() else {
            return false;
        };
        let ty = so.ty;
        let step = so.tick(
            &mut self.mem,
            &mut self.swap,
            &mut self.reclaim,
            0,
            self.tick,
        );
        let device = self.swap_types.iter().position(|t| *t == Some(ty));
        let tick = self.tick;
        let event = |kind| SwapEvent {
            swap_type: device.is_none().then_some(u32::from(ty.0)),
            ..SwapEvent::new(tick, kind, device.map(|d| d as u32))
        };
        match step {
            SwapoffStep::Running => return true,
            SwapoffStep::Done => {
                let (started, unused) = (so.started, so.unused);
                if let Some(d) = device {
                    self.swap_types[d] = None;
                    self.retire(d, ty);
                }
                let mut e = event(SwapEventKind::SwapoffDone);
                e.ticks = Some(self.tick - started);
                e.entries_read_back = Some(unused);
                self.swap_event(e);
            }
            SwapoffStep::Failed(err) => {
                let e = event(SwapEventKind::SwapoffFailed).because(error_chain(&err));
                self.swap_event(e);
            }
        }
        self.swapoff = None;
        true
    }

    fn set_region(&mut self, i: usize, region: u32, r: Region) {
        let rs = &mut self.procs[i].regions;
        if rs.len() <= region as usize {
            rs.resize_with(region as usize + 1, || None);
        }
        rs[region as usize] = Some(r);
    }

    /// The inode of tmpfs file `file`, created (or grown) to `pages`.
    fn open_file(&mut self, file: u32, pages: u64) -> u32 {
        let ino = match self.files.get(&file) {
            Some(&ino) => ino,
            None => {
                let ino = self.mem.shmem_create(pages);
                self.files.insert(file, ino);
                ino
            }
        };
        self.mem.shmem_grow(ino, pages);
        let keys = self.file_keys.entry(ino).or_default();
        if (keys.len() as u64) < pages {
            keys.resize(pages as usize, 0);
        }
        ino
    }

    /// Drops the keys of inodes that were evicted.
    fn forget_dead_inodes(&mut self) {
        let mem = &self.mem;
        self.file_keys
            .retain(|&ino, _| mem.shmem.inode(ino).is_some());
    }

    fn fork(&mut self, i: usize, mm: MmId) {
        let Some(gen) = self.procs[i].gen.fork_child() else {
            return;
        };
        match self.mem.fork(&mut self.swap, mm) {
            Ok(child) => {
                let p = &mut self.procs[i];
                p.children += 1;
                let name = format!("{}.{}", p.name, p.children);
                let regions = p.regions.clone();
                let pid = self.next_pid;
                self.next_pid += 1;
                let cpus = self.cfg.machine.cpus as usize;
                let memcg = p.memcg;
                self.procs.push(Proc {
                    pid,
                    name,
                    mm: Some(child),
                    cpu: pid as usize % cpus,
                    gen,
                    pending: None,
                    blocked: None,
                    regions,
                    exited: false,
                    killed: None,
                    children: 0,
                    sleep_until: 0,
                    reclaim_stall: ReclaimStall::default(),
                    memcg,
                    memcg_retries: 0,
                    high_throttled_ticks: 0,
                    throttled_until: 0,
                    psi: psi::TaskTick::default(),
                    senpai_last_us: None,
                    think_us: self.procs[i].think_us,
                });
            }
            Err(e) => {
                tracing::debug!("pid {}: {e}", self.procs[i].pid);
                self.forks_failed += 1;
            }
        }
    }

    fn madvise(
        &mut self,
        i: usize,
        mm: MmId,
        region: u32,
        advice: Advice,
        range: Option<PageRange>,
    ) {
        let Some(Some(r)) = self.procs[i].regions.get(region as usize) else {
            return;
        };
        let start = r.start;
        let anon = matches!(r.backing, Backing::Anon(_));
        let pages = range.map(|r| r.start..r.end);
        match advice {
            Advice::DontNeed => {
                let zapped = pages.clone();
                self.mem.madvise_dontneed(&mut self.swap, mm, start, pages);
                if let Some(keys) = self.anon_keys(i, region) {
                    let n = keys.len() as u64;
                    let z = zapped.unwrap_or(0..n);
                    for k in &mut keys[z.start.min(n) as usize..z.end.min(n) as usize] {
                        *k = 0;
                    }
                }
            }
            Advice::Free => {
                let (zeroed, lazy) = self.mem.madvise_free(&mut self.swap, mm, start, pages);
                if let Some(keys) = self.anon_keys(i, region) {
                    for v in zeroed {
                        keys[(v.0 - start.0) as usize] = 0;
                    }
                    for v in lazy {
                        let k = &mut keys[(v.0 - start.0) as usize];
                        if *k != 0 {
                            *k |= KEY_LAZY;
                        }
                    }
                }
            }
            Advice::Cold => {
                self.mem.madvise_cold(mm, start, pages);
            }
            Advice::PageOut => {
                let pfns = self.mem.madvise_pageout_isolate(mm, start, pages);
                let cpu = self.procs[i].cpu;
                self.reclaim
                    .reclaim_pages(&mut self.mem, &mut self.swap, &pfns, cpu, self.tick);
            }
            Advice::HugePage | Advice::NoHugePage => {
                let huge = advice == Advice::HugePage;
                self.mem.madvise_hugepage(mm, start, huge);
            }
            Advice::Mergeable | Advice::Unmergeable if anon => {
                let on = advice == Advice::Mergeable;
                self.mem.ksm_madvise(&mut self.swap, mm, start, on);
            }
            Advice::Mergeable | Advice::Unmergeable => {}
        }
    }

    /// The content keys of private anonymous `region` of process `i`.
    fn anon_keys(&mut self, i: usize, region: u32) -> Option<&mut [ContentKey]> {
        match self.procs[i].regions.get_mut(region as usize) {
            Some(Some(Region {
                backing: Backing::Anon(keys),
                ..
            })) => Some(keys),
            _ => None,
        }
    }

    /// One load, or a store of content `store`, at `page` of `region`.
    ///
    /// Hot: a replayed trace comes here once per page access. The fields
    /// are borrowed apart so the region is looked up once and a private
    /// page's key is found before the access (it cannot move: the access
    /// changes memory, not the process's regions); a shared page's key is
    /// looked up after the access, as the fault may have changed the file.
    #[inline]
    fn access(
        &mut self,
        i: usize,
        mm: MmId,
        region: u32,
        page: u64,
        store: Option<ContentKey>,
    ) -> Result<bool, FaultStop> {
        let Machine {
            procs,
            mem,
            swap,
            verify,
            file_keys,
            tick,
            accesses,
            ..
        } = self;
        let p = &mut procs[i];
        let pid = p.pid;
        let Some(Some(r)) = p.regions.get_mut(region as usize) else {
            return Err(FaultStop::Segv);
        };
        let vpn = r.start.add(page);
        let key = match &mut r.backing {
            Backing::Anon(keys) => {
                let Some(key) = keys.get_mut(page as usize) else {
                    return Err(FaultStop::Segv);
                };
                mem.access(swap, mm, vpn, store.is_some(), *tick)
                    .map(|pfn| (pfn, key))?
            }
            Backing::File { ino, pgoff } => {
                let (ino, index) = (*ino, *pgoff + page);
                let pfn = mem.access(swap, mm, vpn, store.is_some(), *tick)?;
                let key = file_keys
                    .get_mut(&ino)
                    .and_then(|k| k.get_mut(index as usize));
                let Some(key) = key else {
                    return Err(FaultStop::SigBus);
                };
                (pfn, key)
            }
        };
        let (pfn, key) = key;
        settle_access(mem, verify, *tick, pid, vpn, pfn, key, store);
        *accesses += 1;
        Ok(true)
    }

    /// Runs the leading ops of process `i`'s decoded batch
    /// ([`ProcessSource::ready`]) that are resident accesses to private
    /// pages, at most `budget` of them; returns how many it ran (each one
    /// op of the turn and one completed access).
    ///
    /// This is [`Self::do_op`] on [`Op::Access`] with everything that
    /// cannot happen on a PTE hit left out: no fault, so no reclaim, no
    /// retry, no injected kill, and nothing that [`Self::run_process`]
    /// checks between ops (exit, sleep, freeze) changes. The ready slice
    /// holds only accesses (packed, up to the next other op); the first
    /// that is not such an access (a shared region, a PTE that needs a
    /// fault) stops the run, untouched, for the general path. Per op it
    /// costs the region's bounds check, a page-table walk and the content
    /// stamp: no call, no `Result`, no `Op` copied out.
    #[inline(never)]
    fn run_resident(&mut self, i: usize, budget: usize) -> usize {
        let Machine {
            procs,
            mem,
            verify,
            tick,
            accesses,
            next_key,
            ..
        } = self;
        let p = &mut procs[i];
        let Some(mm) = p.mm else {
            return 0;
        };
        let pgd = mem.mm(mm).pgd;
        let Memory { pt, ram, .. } = mem;
        let (pid, tick) = (p.pid, *tick);
        let verify_on = verify.enabled();
        let ready = p.gen.ready();
        let ready = &ready[..ready.len().min(budget)];
        let mut done = 0;
        let mut verified = 0;
        // The (region, page) of the last op when it was a load that hit
        // and whose stamp held (or verification is off). A load of the
        // same page right after it is a hit on the same frame with the same
        // content, its PTE already accessed: it only counts. Nothing in
        // between can change that (no store, fault or reclaim runs here).
        // Two records in five of a lackey trace repeat the last page.
        // Kept as the packed access's bits: equal bits are the same
        // region, page and kind, and `again` only holds a load's.
        let mut again = None;
        for &op in ready {
            let (region, page, write) = (op.region(), op.page(), op.write());
            if again == Some(op.bits()) {
                done += 1;
                verified += u64::from(verify_on);
                continue;
            }
            again = None;
            let Some(Some(r)) = p.regions.get_mut(region as usize) else {
                break;
            };
            let Backing::Anon(keys) = &mut r.backing else {
                break;
            };
            let Some(key) = keys.get_mut(page as usize) else {
                break;
            };
            let vpn = r.start.add(page);
            let Some(pfn) = pt.access_resident(pgd, vpn, write) else {
                break;
            };
            done += 1;
            if write {
                *next_key += 1;
                stamp_store(ram, pfn, key, *next_key);
            } else if verify_on {
                let bytes = ram.page(pfn);
                if verify::stamp_holds(*key, bytes) {
                    verified += 1;
                    again = Some(op.bits());
                } else {
                    verify.check_key(tick, pid, vpn.0, key, bytes);
                }
            } else {
                again = Some(op.bits());
            }
        }
        verify.note_verified(verified);
        p.gen.take_ready(done);
        *accesses += done as u64;
        done
    }

    fn exit_process(&mut self, i: usize, killed: Option<String>) {
        if let Some(mm) = self.procs[i].mm.take() {
            self.mem.exit_mmap(&mut self.swap, mm);
            self.forget_dead_inodes();
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
        // Entries freed since the tick's end give their frames back first.
        self.mem.zswap_sync(&self.swap);
        let procs = &self.procs;
        let mm_name = |mm: swapvm_mm::MmId| {
            procs.iter().find(|p| p.mm == Some(mm)).map_or_else(
                || format!("mm {}", mm.0),
                |p| format!("pid {} ({})", p.pid, p.name),
            )
        };
        let images: Vec<&swapvm_swap::SwsuspExtents> = self
            .hib
            .iter()
            .chain(self.hib_cycle.as_ref().map(|c| c.extents()))
            .collect();
        let cx = check::CheckContext {
            hibernation: &images,
            mm_name: &mm_name,
        };
        let mut v = check::check_invariants_with(&mut self.mem, &mut self.swap, &cx);
        zswap::check(&self.mem, &self.swap, &mut v);
        for line in v {
            if self.violations.len() < 64 {
                self.violations.push(format!("tick {}: {line}", self.tick));
            }
        }
    }

    /// Whether `RunOptions::interrupt` has been set.
    fn interrupt_requested(&self) -> bool {
        self.opts
            .interrupt
            .as_ref()
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Runs the machine to completion in the tokio tick loop, calling
    /// `progress(done, total)` every tick.
    pub fn run(self, mut progress: impl FnMut(u64, u64)) -> Result<Report, MachineError> {
        self.run_status(|st| progress(st.accesses, st.total))
    }

    /// Runs the machine as [`Machine::run`] does, calling `progress` every
    /// tick with the figures a progress display shows.
    pub fn run_status(self, progress: impl FnMut(&RunStatus)) -> Result<Report, MachineError> {
        let realtime = self.cfg.machine.timing == swapvm_core::timing::Timing::Realtime;
        let mut b = tokio::runtime::Builder::new_current_thread();
        if realtime {
            // Think time sleeps on the runtime's timers.
            b.enable_time();
        }
        let rt = b.build().map_err(MachineError::Runtime)?;
        let local = tokio::task::LocalSet::new();
        let mut this = self;
        this.started = std::time::Instant::now();
        let machine = this;
        if realtime {
            return local.block_on(&rt, realtime::run(machine, progress));
        }
        local.block_on(&rt, tick_loop::tick_loop(machine, progress))
    }
}

impl Machine {
    fn status(&self, total: u64) -> RunStatus {
        RunStatus {
            accesses: self.accesses,
            total,
            tick: self.tick,
            pswpin: self.stat.get(VmEvent::PswpIn),
            pswpout: self.stat.get(VmEvent::PswpOut),
            swap_used_pages: self
                .swap
                .total_swap_pages()
                .saturating_sub(u64::try_from(self.swap.nr_swap_pages()).unwrap_or(0)),
            swap_total_pages: self.swap.total_swap_pages(),
        }
    }
}

/// What a run's progress display shows, every tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStatus {
    /// Memory accesses completed.
    pub accesses: u64,
    /// Accesses the workload makes in all.
    pub total: u64,
    /// Ticks run.
    pub tick: u64,
    /// Pages swapped in so far (`pswpin`).
    pub pswpin: u64,
    /// Pages swapped out so far (`pswpout`).
    pub pswpout: u64,
    /// Swap slots in use now, all devices.
    pub swap_used_pages: u64,
    /// Usable swap slots, all devices on.
    pub swap_total_pages: u64,
}

/// The content side of a completed access to frame `pfn` whose key is
/// `key`: a store of `store` stamps the page and sets the key; a load has
/// its stamp checked when verification is on.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn settle_access(
    mem: &mut Memory,
    verify: &mut verify::Verifier,
    tick: u64,
    pid: u32,
    vpn: Vpn,
    pfn: Pfn,
    key: &mut ContentKey,
    store: Option<ContentKey>,
) {
    match store {
        Some(k) => stamp_store(&mut mem.ram, pfn, key, k),
        None if verify.enabled() => verify.check_key(tick, pid, vpn.0, key, mem.ram.page(pfn)),
        None => {}
    }
}

/// A store of content `k` to frame `pfn` whose key is `key`.
#[inline(always)]
fn stamp_store(ram: &mut Ram, pfn: Pfn, key: &mut ContentKey, k: ContentKey) {
    *key = k;
    // The stamp's head is the key itself, so a metadata-only frame (one
    // content word) takes the key: equal and zero exactly when full
    // pages' bytes are.
    let page = ram.page_mut(pfn);
    let n = page.len().min(verify::STAMP_LEN);
    page[..n].copy_from_slice(&stamp_key(k)[..n]);
}
