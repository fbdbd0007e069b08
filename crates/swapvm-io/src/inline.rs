//! `InlineUringEngine`: io_uring driven by whichever thread calls it, with
//! no engine thread.
//!
//! [`UringEngine`](crate::UringEngine) hands every request to its own
//! thread and every completion back through channels. On a machine with
//! few cores that hand-off is the cost of a swap I/O: two thread wake-ups
//! (futex, scheduler) per request, measured as 12.8 k QD1 4 KiB reads/s
//! against 31 k/s for the same ring driven from the caller's thread
//! (`swapvm diskbench --pattern randread-4k --qd 1`, engines `uring-thread`
//! and `uring`). The kernel does not hand a swap read to another thread
//! either: the faulting task calls `submit_bio` itself. This engine is the
//! same ring and in-flight table as the threaded one, driven inline:
//!
//! - `submit` pushes the SQE and enters the kernel once to submit it, not
//!   waiting, so the disk starts at once while the caller goes on;
//! - `try_complete` reaps whatever CQEs the kernel has posted, without a
//!   system call (the ring is not `DEFER_TASKRUN`, so completions are
//!   posted without the caller waiting for them);
//! - `wait_complete` submits and sleeps in the kernel for the next CQE, in
//!   one system call.
//!
//! Requests beyond the queue depth wait in a software queue and are pushed
//! as completions free slots, in submission order.
//!
//! # Latency
//!
//! A completion's `latency_ns` runs from the push of its SQE to the reap of
//! its CQE. The threaded engine reaps the moment the kernel posts; here a
//! CQE is reaped when the caller next calls in, so the figure is an upper
//! bound on the device's latency, tight for a caller that waits for its
//! I/O (as a fault does).
//!
//! # Threads
//!
//! The ring sits behind a mutex, so the engine is `Send` and `Sync` and any
//! thread may call it (the ring is built without `SINGLE_ISSUER` for that
//! reason; it made no difference in the measurement above). A thread in
//! `wait_complete` holds the mutex while it sleeps: a swap device has one
//! driver, the machine's tick loop, and this engine is not meant to be
//! shared between threads that each wait.
//!
//! # Buffer ownership
//!
//! As in the threaded engine: from the push of its SQE until its CQE is
//! reaped, a request and its buffer live in the in-flight table (see
//! `inflight.rs` for the argument). `Drop` waits for every request in the
//! kernel; if the ring fails so that it cannot wait, the buffers still in
//! the table are leaked, never freed.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use io_uring::IoUring;

use crate::inflight::InFlightTable;
use crate::queue::{build_ring, register_file, release_registrations, Target};
use crate::{
    open_device, validate, BlockEngine, EngineConfig, IoCompletion, IoError, IoRequest,
    QueueFeatures,
};

/// io_uring on a file or block device, driven by the caller's thread.
#[derive(Debug)]
pub struct InlineUringEngine {
    ring: Mutex<Ring>,
    /// Submitted and not yet taken by the caller.
    in_flight: AtomicUsize,
    size_bytes: u64,
}

/// The ring and everything it may be using.
struct Ring {
    // Field order matters for drop: the ring goes before the file it
    // refers to.
    ring: IoUring,
    _file: File,
    target: Target,
    /// Most requests in the kernel at once.
    depth: usize,
    /// Requests in the kernel, by SQE `user_data`.
    table: InFlightTable,
    /// Submitted by the caller, not yet pushed (the ring was full).
    pending: VecDeque<IoRequest>,
    /// SQEs pushed since the last successful enter.
    unsubmitted: usize,
    /// Reaped, not yet taken.
    done: VecDeque<IoCompletion>,
    /// Set once the ring has failed: every request from then on completes
    /// with this error (its raw OS code).
    broken: Option<i32>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("depth", &self.depth)
            .field("in_kernel", &self.table.len())
            .field("pending", &self.pending.len())
            .field("done", &self.done.len())
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl InlineUringEngine {
    /// Opens `path` read-write (`O_DIRECT` if `cfg.direct`; never creates or
    /// truncates) and sets up a ring of `cfg.queue_depth` entries.
    ///
    /// # Errors
    ///
    /// [`IoError::Open`] if the path cannot be opened or sized;
    /// [`IoError::Setup`] if the kernel refuses io_uring. Both name the
    /// path.
    ///
    /// # Panics
    ///
    /// If `cfg.queue_depth` is zero: configuration must be validated before
    /// it reaches the engine.
    pub fn open(path: &Path, cfg: &EngineConfig) -> Result<InlineUringEngine, IoError> {
        assert!(cfg.queue_depth > 0, "EngineConfig::queue_depth must be > 0");
        let (file, size_bytes) = open_device(path, cfg.direct)?;
        let (ring, features) =
            build_ring(cfg.queue_depth, cfg.sqpoll_idle_ms, false).map_err(|source| {
                IoError::Setup {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        // CLAMP may have made the ring smaller than asked; the CQ is at
        // least as big as the SQ, so `depth` in the kernel never overflows.
        let depth = (cfg.queue_depth as usize).min(ring.params().sq_entries() as usize);
        let target = register_file(&ring, &file);
        tracing::debug!(
            path = %path.display(),
            depth,
            size_bytes,
            direct = cfg.direct,
            ?features,
            fixed_file = matches!(target, Target::Fixed(_)),
            "inline io_uring engine open"
        );
        Ok(InlineUringEngine {
            ring: Mutex::new(Ring {
                ring,
                _file: file,
                target,
                depth,
                table: InFlightTable::with_capacity(depth),
                pending: VecDeque::new(),
                unsubmitted: 0,
                done: VecDeque::new(),
                broken: None,
            }),
            in_flight: AtomicUsize::new(0),
            size_bytes,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding the lock leaves the table consistent (every
        // step that changes it is a single push or take), so go on.
        self.ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn taken(&self, c: IoCompletion) -> IoCompletion {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        c
    }
}

impl BlockEngine for InlineUringEngine {
    fn submit(&self, req: IoRequest) -> Result<(), IoError> {
        let req = validate(req)?;
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let mut r = self.lock();
        r.pending.push_back(req);
        r.push_sqes();
        r.enter(0);
        // Reap what has come in meanwhile, so latencies stay close.
        r.reap();
        Ok(())
    }

    fn try_complete(&self) -> Option<IoCompletion> {
        let mut r = self.lock();
        if r.done.is_empty() {
            r.reap();
        }
        r.done.pop_front().map(|c| self.taken(c))
    }

    fn wait_complete(&self) -> Result<IoCompletion, IoError> {
        let mut r = self.lock();
        loop {
            if let Some(c) = r.done.pop_front() {
                return Ok(self.taken(c));
            }
            if r.table.len() == 0 && r.pending.is_empty() {
                return Err(IoError::EngineGone);
            }
            r.push_sqes();
            r.enter(1);
            r.reap();
        }
    }

    fn wait_complete_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Option<IoCompletion>, IoError> {
        let deadline = Instant::now() + timeout;
        let mut r = self.lock();
        loop {
            if let Some(c) = r.done.pop_front() {
                return Ok(Some(self.taken(c)));
            }
            if r.table.len() == 0 && r.pending.is_empty() {
                return Err(IoError::EngineGone);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            r.push_sqes();
            r.enter_timeout(left);
            r.reap();
        }
    }

    fn ring_depth(&self) -> Option<usize> {
        Some(self.lock().depth)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
}

impl Ring {
    /// Pushes SQEs for pending requests, in order, while fewer than
    /// `depth` are in the kernel.
    fn push_sqes(&mut self) {
        if self.broken.is_some() {
            self.fail_pending();
            return;
        }
        let mut sq = self.ring.submission();
        self.unsubmitted +=
            self.table
                .push_from(&mut sq, self.target, self.depth, &mut self.pending);
    }

    /// Submits the pushed SQEs and, with `want` = 1, sleeps until a CQE is
    /// posted. A ring error other than EINTR, EAGAIN or EBUSY breaks the
    /// ring: everything in it and everything after completes with the
    /// error.
    fn enter(&mut self, want: usize) {
        if self.broken.is_some() || (self.unsubmitted == 0 && want == 0) {
            return;
        }
        let want = if self.table.len() == 0 { 0 } else { want };
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(n) => {
                    self.unsubmitted = self.unsubmitted.saturating_sub(n);
                    return;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // Out of kernel resources, or completions must be reaped
                // first: the unsubmitted SQEs stay in the ring for the next
                // call, after the caller reaps.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY)) => {
                    if want > 0 && self.ring.completion().is_empty() {
                        std::thread::yield_now();
                    }
                    return;
                }
                Err(e) => {
                    tracing::error!(%e, "io_uring submission failed; failing every request from now on");
                    self.break_ring(e.raw_os_error().unwrap_or(libc::EIO));
                    return;
                }
            }
        }
    }

    /// As `enter(1)`, but returns after `timeout` without a completion
    /// (`IORING_ENTER_EXT_ARG`, Linux 5.11). A kernel without it gets a
    /// short sleep instead, so the caller's deadline still holds.
    fn enter_timeout(&mut self, timeout: std::time::Duration) {
        if self.broken.is_some() {
            return;
        }
        if self.table.len() == 0 {
            self.enter(0);
            return;
        }
        let ts = io_uring::types::Timespec::from(timeout);
        let args = io_uring::types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(n) => self.unsubmitted = self.unsubmitted.saturating_sub(n),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.enter(0);
                std::thread::sleep(timeout.min(std::time::Duration::from_micros(50)));
            }
            // EAGAIN, EBUSY and real failures: `enter` handles them as ever.
            Err(_) => self.enter(1),
        }
    }

    /// Moves every posted CQE's request, with its result, to `done`, then
    /// pushes pending requests into the slots freed.
    fn reap(&mut self) {
        let reaped_at = Instant::now();
        let mut reaped = 0;
        for cqe in self.ring.completion() {
            match self
                .table
                .complete(cqe.user_data(), cqe.result(), reaped_at)
            {
                Some(c) => {
                    self.done.push_back(c);
                    reaped += 1;
                }
                None => tracing::error!(
                    user_data = cqe.user_data(),
                    "io_uring completion for an empty in-flight slot; ignored"
                ),
            }
        }
        if reaped > 0 && !self.pending.is_empty() {
            self.push_sqes();
            self.enter(0);
        }
    }

    /// The ring is unusable: requests still in the kernel may yet be
    /// written into, so their buffers are leaked and their completions
    /// carry the error with a fresh buffer; pending ones fail too.
    fn break_ring(&mut self, code: i32) {
        self.broken = Some(code);
        let lost = self.table.abandon(|| io::Error::from_raw_os_error(code));
        self.done.extend(lost);
        self.unsubmitted = 0;
        self.fail_pending();
    }

    fn fail_pending(&mut self) {
        let code = self.broken.unwrap_or(libc::EIO);
        while let Some(req) = self.pending.pop_front() {
            self.done.push_back(IoCompletion::of(
                req,
                Err(io::Error::from_raw_os_error(code)),
                0,
            ));
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Wait until the kernel is done with every buffer in the table.
        while self.table.len() > 0 && self.broken.is_none() {
            self.enter(1);
            self.reap();
        }
        // If the ring broke, `break_ring` already leaked what the kernel
        // might still touch. Release the registered file now rather than in
        // the kernel's asynchronous ring teardown.
        let features = QueueFeatures {
            fixed_file: matches!(self.target, Target::Fixed(_)),
            ..QueueFeatures::default()
        };
        release_registrations(&self.ring, features);
    }
}
