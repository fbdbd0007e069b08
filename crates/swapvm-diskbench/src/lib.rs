//! `swapvm diskbench`: swap-shaped I/O on a real disk, measured.
//!
//! This crate owns the benchmark and nothing the emulator runs on: it sits
//! beside the swap layer, on top of the engines of `swapvm-io`, and knows
//! the swap geometry only to imitate it (where the allocator would place
//! swap-outs and readahead its reads).
//!
//! One run opens a file or block device, checks that writing to it destroys
//! nothing it should not ([`guard`]), then keeps `queue_depth` requests of
//! one [`Pattern`] in flight for a duration or a number of requests, and
//! reports IOPS, MB/s and latency percentiles per direction
//! ([`BenchReport`], serialisable to JSON).
//!
//! The default engine is [`UringQueue`]: the benchmark thread drives the
//! ring itself, refilling each buffer slot as its completion is taken, so
//! what is measured is the disk and the kernel, not channels between
//! threads. The engine the swap layer uses, [`UringEngine`], and plain
//! pread/pwrite ([`SyncEngine`]) can be measured the same way for
//! comparison.
//!
//! A file that does not exist is created at the size asked and filled with
//! data first (as fio lays out its files), so that reads hit allocated
//! blocks and writes overwrite them in place. All data written is
//! pseudo-random from the seed, scrubbed of signature bytes
//! ([`swapvm_io::signature::scrub_signatures`]).
//!
//! The offsets come from [`pattern`]: they mimic where the swap allocator
//! and readahead would place requests; nothing here uses swap slots or the
//! allocator itself.

mod device;
pub mod guard;
pub mod pattern;
mod stats;

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use swapvm_core::SimRng;

use device::{create_if_missing, fill_random, open_device_checked, Device};
use pattern::OpGen;
pub use pattern::{Pattern, UnknownPattern};
pub use stats::{
    write_bw_log, BwSample, DirStats, LatencyNs, Percentiles, BW_LOG_HEADER, PERCENTILES,
};
use swapvm_io::signature::Signature;
use swapvm_io::{
    AlignedBuf, BlockEngine, EngineConfig, InlineUringEngine, IoError, IoRequest, QueueConfig,
    QueueError, QueueFeatures, SyncEngine, UringEngine, UringQueue, BLOCK_SIZE,
};

/// How often the progress callback is called, at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Request size and depth used to fill a newly created file.
const FILL_CHUNK: usize = 1 << 20;
const FILL_DEPTH: usize = 8;

/// Which engine carries the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchEngine {
    /// [`UringQueue`] driven from the benchmark thread (the default).
    Uring,
    /// [`InlineUringEngine`] driven from the benchmark thread, as `swapvm
    /// run` uses it by default.
    UringInline,
    /// [`UringEngine`] with its own thread, as `swapvm run` uses it with
    /// `submit = "thread"`.
    UringThread,
    /// [`SyncEngine`]: pread/pwrite, one request at a time.
    Psync,
}

impl BenchEngine {
    /// Every engine.
    pub const ALL: [BenchEngine; 4] = [
        BenchEngine::Uring,
        BenchEngine::UringInline,
        BenchEngine::UringThread,
        BenchEngine::Psync,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            BenchEngine::Uring => "uring",
            BenchEngine::UringInline => "uring-inline",
            BenchEngine::UringThread => "uring-thread",
            BenchEngine::Psync => "psync",
        }
    }
}

impl std::str::FromStr for BenchEngine {
    type Err = String;

    fn from_str(s: &str) -> Result<BenchEngine, String> {
        BenchEngine::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| {
                format!("unknown engine {s:?}; one of: uring, uring-inline, uring-thread, psync")
            })
    }
}

/// One diskbench run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// File or block device.
    pub path: PathBuf,
    /// What to do.
    pub pattern: Pattern,
    /// Requests kept in flight.
    pub queue_depth: u32,
    /// Stop issuing after this long (`None`: no time limit).
    pub duration: Option<Duration>,
    /// Stop issuing after this many requests (`None`: no count limit).
    pub ops: Option<u64>,
    /// Create `path` with this many bytes if it does not exist.
    pub create_bytes: Option<u64>,
    /// Write even over a filesystem or swap signature.
    pub force: bool,
    /// Which engine.
    pub engine: BenchEngine,
    /// `O_DIRECT` (bypass the page cache).
    pub direct: bool,
    /// Registered buffers and file, `DEFER_TASKRUN` (engine `uring` only).
    pub register: bool,
    /// SQPOLL with this idle time in ms (engines `uring` and
    /// `uring-thread`).
    pub sqpoll_idle_ms: Option<u32>,
    /// Seed of the offsets and of the data written.
    pub seed: u64,
    /// Cut a bandwidth log ([`BenchReport::bw_log`]) at this interval
    /// (`None`: no log).
    pub bw_log_interval: Option<Duration>,
}

impl BenchConfig {
    /// A configuration with the defaults: QD 32, 10 s, engine `uring`,
    /// `O_DIRECT`, registration on, no SQPOLL, seed 1.
    pub fn new(path: impl Into<PathBuf>, pattern: Pattern) -> BenchConfig {
        BenchConfig {
            path: path.into(),
            pattern,
            queue_depth: 32,
            duration: Some(Duration::from_secs(10)),
            ops: None,
            create_bytes: None,
            force: false,
            engine: BenchEngine::Uring,
            direct: true,
            register: true,
            sqpoll_idle_ms: None,
            seed: 1,
            bw_log_interval: None,
        }
    }

    fn validate(&self) -> Result<(), DiskbenchError> {
        let reason = if self.queue_depth == 0 {
            "the queue depth must be at least 1"
        } else if self.queue_depth > 4096 {
            "the queue depth must be at most 4096"
        } else if self.duration.is_none() && self.ops.is_none() {
            "give a duration or a number of requests"
        } else if self
            .create_bytes
            .is_some_and(|b| b == 0 || b % BLOCK_SIZE as u64 != 0)
        {
            "the size must be a non-zero multiple of 4096 bytes"
        } else if self.bw_log_interval.is_some_and(|d| d.is_zero()) {
            "the bandwidth log interval must be positive"
        } else {
            return Ok(());
        };
        Err(DiskbenchError::Config { reason })
    }
}

/// Where a run stands, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Since the first request.
    pub elapsed: Duration,
    /// Requests completed successfully.
    pub ops: u64,
    /// Bytes they moved.
    pub bytes: u64,
    /// Of the whole run, 0 to 1, by whichever limit is nearer.
    pub fraction: f64,
}

/// Whether the device is a regular file or a block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// A regular file.
    File,
    /// A block device.
    BlockDevice,
}

/// The result of a run; what `--json` writes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// The path benchmarked.
    pub device: String,
    /// File or block device.
    pub device_kind: DeviceKind,
    /// Its size.
    pub device_bytes: u64,
    /// Whether this run created (and filled) it.
    pub created: bool,
    /// A swap header was found and left untouched (no write below 4096).
    pub header_preserved: bool,
    /// The pattern's name.
    pub pattern: String,
    /// What the pattern does.
    pub pattern_description: String,
    /// Bytes per request.
    pub request_bytes: usize,
    /// Requests kept in flight.
    pub queue_depth: u32,
    /// The engine's name.
    pub engine: String,
    /// Kernel features in use (engine `uring`; all false otherwise).
    pub features: QueueFeatures,
    /// `O_DIRECT`.
    pub direct: bool,
    /// First and one-past-last byte requests could touch.
    pub region_start: u64,
    /// See `region_start`.
    pub region_end: u64,
    /// Seed of offsets and data.
    pub seed: u64,
    /// From the first submission to the last completion.
    pub seconds: f64,
    /// Requests that failed or moved fewer bytes than asked.
    pub errors: u64,
    /// The first such failure.
    pub first_error: Option<String>,
    /// Reads.
    pub read: DirStats,
    /// Writes.
    pub write: DirStats,
    /// All requests.
    pub total: DirStats,
    /// User CPU time of this process during the run, percent of the run's
    /// wall time (fio's `usr_cpu`; over 100 with busy threads besides this
    /// one).
    pub usr_cpu: f64,
    /// System CPU time, likewise (fio's `sys_cpu`).
    pub sys_cpu: f64,
    /// The bandwidth log, if asked for (written as CSV, not in the JSON).
    #[serde(skip)]
    pub bw_log: Vec<BwSample>,
}

/// Why a run could not be done. Every variant names the device.
#[derive(Debug, thiserror::Error)]
pub enum DiskbenchError {
    /// A configuration value is out of range.
    #[error("diskbench: {reason}")]
    Config {
        /// Which rule.
        reason: &'static str,
    },
    /// The path does not exist and no size to create it was given.
    #[error("{}: does not exist; give --size to create it", path.display())]
    Missing {
        /// The device.
        path: PathBuf,
    },
    /// The path exists with another size than the one asked.
    #[error(
        "{}: exists with {actual} bytes, but --size asks for {wanted}; \
         --size only sizes a file diskbench creates",
        path.display()
    )]
    SizeMismatch {
        /// The device.
        path: PathBuf,
        /// Its size.
        actual: u64,
        /// The size asked.
        wanted: u64,
    },
    /// Neither a regular file nor a block device.
    #[error("{}: not a regular file or block device", path.display())]
    NotADevice {
        /// The device.
        path: PathBuf,
    },
    /// Creating or filling a new file failed (it was removed again).
    #[error("{}: cannot create and fill", path.display())]
    Create {
        /// The device.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// Opening, sizing or probing failed.
    #[error("{}: cannot {what}", path.display())]
    Open {
        /// The device.
        path: PathBuf,
        /// What was attempted.
        what: &'static str,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The block device is held exclusively by someone else.
    #[error(
        "{}: busy: mounted, in use as swap, or held by another program",
        path.display()
    )]
    Busy {
        /// The device.
        path: PathBuf,
    },
    /// Writing would destroy what is on the device.
    #[error(
        "refusing to write to {}: it holds {}; pass --force to overwrite it",
        path.display(),
        signature.describe()
    )]
    Refused {
        /// The device.
        path: PathBuf,
        /// What is on it.
        signature: Signature,
    },
    /// The region the pattern may use cannot hold one request.
    #[error(
        "{}: too small for pattern {pattern}: {region_bytes} usable bytes",
        path.display()
    )]
    TooSmall {
        /// The device.
        path: PathBuf,
        /// The pattern.
        pattern: Pattern,
        /// Bytes it could use.
        region_bytes: u64,
    },
    /// The engine could not be opened or went away.
    #[error("{}: I/O engine", path.display())]
    Engine {
        /// The device.
        path: PathBuf,
        /// The engine's error.
        #[source]
        source: IoError,
    },
    /// io_uring refused a submission or a push.
    #[error("{}: io_uring submission failed", path.display())]
    Submit {
        /// The device.
        path: PathBuf,
        /// What the ring said.
        #[source]
        source: io::Error,
    },
    /// Not one request succeeded.
    #[error("{}: every request failed", path.display())]
    AllFailed {
        /// The device.
        path: PathBuf,
        /// The first failure.
        #[source]
        source: io::Error,
    },
}

/// Runs one benchmark, calling `progress` about ten times a second.
///
/// # Errors
///
/// [`DiskbenchError`], naming the device: bad configuration, a missing or
/// unsuitable device, a refusal (a signature and no `force`), an engine or
/// ring failure, or every request failing. Individual request errors are
/// counted in the report instead.
pub fn run(
    cfg: &BenchConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<BenchReport, DiskbenchError> {
    cfg.validate()?;
    let created = create_if_missing(cfg)?;
    let dev = open_device_checked(cfg)?;
    let gen =
        OpGen::new(cfg.pattern, dev.region, cfg.seed).ok_or_else(|| DiskbenchError::TooSmall {
            path: cfg.path.clone(),
            pattern: cfg.pattern,
            region_bytes: dev.region.end - dev.region.start,
        })?;
    let mut run = Run {
        cfg,
        gen,
        rec: stats::Recorder::new(cfg.bw_log_interval),
        progress,
    };
    let cpu_before = swapvm_io::cpu_times();
    let (elapsed, features) = match cfg.engine {
        BenchEngine::Uring => run.with_queue(&dev)?,
        BenchEngine::UringInline => {
            let engine = InlineUringEngine::open(&cfg.path, &uring_cfg(cfg))
                .map_err(|e| cfg.engine_err(e))?;
            (run.with_engine(&engine)?, QueueFeatures::default())
        }
        BenchEngine::UringThread => {
            let engine =
                UringEngine::open(&cfg.path, &uring_cfg(cfg)).map_err(|e| cfg.engine_err(e))?;
            (run.with_engine(&engine)?, QueueFeatures::default())
        }
        BenchEngine::Psync => {
            let ecfg = EngineConfig {
                direct: cfg.direct,
                ..EngineConfig::default()
            };
            let engine = SyncEngine::open(&cfg.path, &ecfg).map_err(|e| cfg.engine_err(e))?;
            (run.with_engine(&engine)?, QueueFeatures::default())
        }
    };
    let (usr, sys) = cpu_percent(cpu_before, swapvm_io::cpu_times(), elapsed);
    // The exclusive handle is held until every request is done.
    drop(dev.file);
    let Run { mut rec, .. } = run;
    rec.finish(elapsed);
    let bw_log = rec.take_log();
    if rec.ops() == 0 {
        if let Some(source) = rec.first_error {
            return Err(DiskbenchError::AllFailed {
                path: cfg.path.clone(),
                source,
            });
        }
    }
    let (read, write, total) = rec.stats(elapsed);
    Ok(BenchReport {
        device: cfg.path.display().to_string(),
        device_kind: dev.kind,
        device_bytes: dev.size_bytes,
        created,
        header_preserved: dev.header_preserved,
        pattern: cfg.pattern.name().to_owned(),
        pattern_description: cfg.pattern.description().to_owned(),
        request_bytes: cfg.pattern.request_bytes(),
        queue_depth: cfg.queue_depth,
        engine: cfg.engine.name().to_owned(),
        features,
        direct: cfg.direct,
        region_start: dev.region.start,
        region_end: dev.region.end,
        seed: cfg.seed,
        seconds: elapsed.as_secs_f64(),
        errors: rec.errors,
        first_error: rec.first_error.map(|e| e.to_string()),
        read,
        write,
        total,
        usr_cpu: usr,
        sys_cpu: sys,
        bw_log,
    })
}

/// CPU time between two [`swapvm_io::cpu_times`] as percentages of `wall`.
fn cpu_percent(
    before: (Duration, Duration),
    after: (Duration, Duration),
    wall: Duration,
) -> (f64, f64) {
    let wall = wall.as_secs_f64().max(1e-9);
    let pct = |a: Duration, b: Duration| a.saturating_sub(b).as_secs_f64() * 100.0 / wall;
    (pct(after.0, before.0), pct(after.1, before.1))
}

/// The engine settings of the io_uring engines for `cfg`.
fn uring_cfg(cfg: &BenchConfig) -> EngineConfig {
    EngineConfig {
        queue_depth: cfg.queue_depth,
        direct: cfg.direct,
        sqpoll_idle_ms: cfg.sqpoll_idle_ms,
        ..EngineConfig::default()
    }
}

impl BenchConfig {
    fn engine_err(&self, source: IoError) -> DiskbenchError {
        DiskbenchError::Engine {
            path: self.path.clone(),
            source,
        }
    }

    fn open_err(&self, what: &'static str) -> impl FnOnce(io::Error) -> DiskbenchError + '_ {
        move |source| DiskbenchError::Open {
            path: self.path.clone(),
            what,
            source,
        }
    }
}

/// The state of a run in progress.
struct Run<'a> {
    cfg: &'a BenchConfig,
    gen: OpGen,
    rec: stats::Recorder,
    progress: &'a mut dyn FnMut(Progress),
}

impl Run<'_> {
    /// Whether another request may be issued, `issued` having been.
    fn may_issue(&self, issued: u64, start: Instant, now: Instant) -> bool {
        self.cfg.ops.is_none_or(|n| issued < n) && self.cfg.duration.is_none_or(|d| now - start < d)
    }

    fn report_progress(&mut self, start: Instant, now: Instant) {
        let elapsed = now - start;
        let ops = self.rec.ops();
        let bytes = self.rec.bytes();
        let by_time = self
            .cfg
            .duration
            .map_or(0.0, |d| elapsed.as_secs_f64() / d.as_secs_f64().max(1e-9));
        let by_ops = self.cfg.ops.map_or(0.0, |n| ops as f64 / n.max(1) as f64);
        (self.progress)(Progress {
            elapsed,
            ops,
            bytes,
            fraction: by_time.max(by_ops).min(1.0),
        });
    }

    /// The run on [`UringQueue`]: one thread, `queue_depth` requests in
    /// flight, each slot group refilled as soon as its completion is taken.
    fn with_queue(&mut self, dev: &Device) -> Result<(Duration, QueueFeatures), DiskbenchError> {
        let cfg = self.cfg;
        let per = cfg.pattern.buffers_per_request();
        let depth = cfg.queue_depth as usize;
        let file = dev.file.try_clone().map_err(cfg.open_err("duplicate"))?;
        let qcfg = QueueConfig {
            queue_depth: cfg.queue_depth,
            direct: cfg.direct,
            slots: depth * per,
            slot_len: cfg.pattern.request_bytes() / per,
            register_buffers: cfg.register,
            register_file: cfg.register,
            defer_taskrun: cfg.register,
            sqpoll_idle_ms: cfg.sqpoll_idle_ms,
        };
        let mut q = UringQueue::with_file(&cfg.path, file, dev.size_bytes, &qcfg)
            .map_err(|e| cfg.engine_err(e))?;
        let mut rng = SimRng::new(cfg.seed ^ 0xda7a);
        for slot in 0..q.slots() {
            if let Some(buf) = q.buf_mut(slot) {
                fill_random(buf, &mut rng);
            }
        }
        let submit_err = |source| DiskbenchError::Submit {
            path: cfg.path.clone(),
            source,
        };
        let push_err = |e: QueueError| submit_err(io::Error::other(e));
        let len = cfg.pattern.request_bytes();
        // Free slot groups: group g is slots g*per .. (g+1)*per.
        let mut free: Vec<usize> = (0..depth).rev().collect();
        let mut issued = 0u64;
        let start = Instant::now();
        let mut now = start;
        let mut last_progress = start;
        loop {
            while self.may_issue(issued, start, now) {
                let Some(group) = free.pop() else { break };
                let op = self.gen.next_op();
                let slot = group * per;
                if op.vectored {
                    q.push_readv(slot, per, op.offset)
                } else {
                    q.push(slot, op.kind, op.offset, len)
                }
                .map_err(push_err)?;
                issued += 1;
            }
            if q.in_flight() == 0 {
                break;
            }
            q.submit(1).map_err(submit_err)?;
            while let Some(c) = q.complete() {
                self.rec
                    .record(c.kind, c.nr_slots * q.slot_len(), c.result, c.latency_ns);
                free.push(c.slot / per);
            }
            now = Instant::now();
            self.rec.tick(now - start);
            if now - last_progress >= PROGRESS_EVERY {
                self.report_progress(start, now);
                last_progress = now;
            }
        }
        let elapsed = start.elapsed();
        self.report_progress(start, Instant::now());
        Ok((elapsed, q.features()))
    }

    /// The run on a [`BlockEngine`]: `queue_depth` requests submitted, and
    /// each completion's buffer sent out again with the next request.
    fn with_engine(&mut self, engine: &dyn BlockEngine) -> Result<Duration, DiskbenchError> {
        let cfg = self.cfg;
        let len = cfg.pattern.request_bytes();
        let mut rng = SimRng::new(cfg.seed ^ 0xda7a);
        let mut free: Vec<AlignedBuf> = (0..cfg.queue_depth)
            .map(|_| {
                let mut buf = AlignedBuf::new_zeroed(len);
                fill_random(buf.as_mut_slice(), &mut rng);
                buf
            })
            .collect();
        let mut issued = 0u64;
        let start = Instant::now();
        let mut now = start;
        let mut last_progress = start;
        loop {
            while self.may_issue(issued, start, now) {
                let Some(buf) = free.pop() else { break };
                // A vectored read goes to these engines as one plain read.
                let op = self.gen.next_op();
                let req = IoRequest {
                    tag: issued,
                    kind: op.kind,
                    offset: op.offset,
                    buf,
                };
                engine.submit(req).map_err(|e| cfg.engine_err(e))?;
                issued += 1;
            }
            if engine.in_flight() == 0 {
                break;
            }
            let first = engine.wait_complete().map_err(|e| cfg.engine_err(e))?;
            for c in std::iter::once(first).chain(std::iter::from_fn(|| engine.try_complete())) {
                self.rec.record(c.kind, len, c.result, c.latency_ns);
                free.push(c.buf);
            }
            now = Instant::now();
            self.rec.tick(now - start);
            if now - last_progress >= PROGRESS_EVERY {
                self.report_progress(start, now);
                last_progress = now;
            }
        }
        let elapsed = start.elapsed();
        self.report_progress(start, Instant::now());
        Ok(elapsed)
    }
}
