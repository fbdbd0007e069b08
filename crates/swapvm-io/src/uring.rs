//! `UringEngine`: io_uring on a file or block device, driven by one thread.
//!
//! # Threads and channels
//!
//! The caller's side ([`UringEngine`]) only touches two crossbeam channels
//! and a doorbell: requests go to the `swapvm-uring` thread, completions
//! come back. The thread ([`Worker`]) creates and owns the ring, and owns
//! the file and every buffer the kernel may be using. Its loop: if nothing
//! is in flight, sleep on the request channel; otherwise take every request
//! already queued, push as many SQEs as the queue depth allows (the rest
//! wait in `pending`), submit the batch and wait for at least one
//! completion in the same system call, reap every CQE, and send the
//! completions back.
//!
//! # The doorbell
//!
//! While the thread waits in the kernel for a completion it cannot see the
//! request channel, so a request sent meanwhile would wait for an unrelated
//! completion before reaching the disk. The doorbell is an eventfd with a
//! poll request armed in the ring: a caller that finds the thread asleep in
//! the kernel writes to it, the poll completes and the thread wakes. The
//! thread only listens for it while the ring is less than half full, which
//! is when a request left in the channel leaves the disk idle. The
//! `sleeping` flag keeps that to one write per sleep, and costs a sender
//! nothing while the thread is awake: the thread sets the flag and then
//! looks at the channel; a sender sends and then swaps the flag; with a
//! SeqCst fence between the two steps on each side, either the thread sees
//! the request or the sender sees the flag (the store-load pattern of
//! Dekker's algorithm).
//!
//! # Ring set-up
//!
//! The thread builds the ring itself, so the ring can be `SINGLE_ISSUER |
//! DEFER_TASKRUN` (only that thread ever touches it; completions are posted
//! when it waits, not by interrupting it), and registers the file so SQEs
//! skip the file-table lookup. SQPOLL is used if the configuration asks.
//! Each falls back to the plain way if the kernel refuses. Buffers are not
//! registered: each request brings its own, and registering per request
//! would cost the system call it saves.
//!
//! # Buffer ownership (the soundness argument)
//!
//! From the push of its SQE until its CQE is reaped, a request and its
//! buffer live in the in-flight table, untouched by Rust code (the argument
//! is in `inflight.rs`). The worker does not exit while the table holds a
//! request; if it is torn down anyway (a panic, or a ring that stops
//! accepting submissions), the buffers still in the table are leaked, never
//! freed, so the kernel can never write into memory the allocator has
//! handed to someone else.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use io_uring::{opcode, types, IoUring};

use crate::inflight::InFlightTable;
use crate::queue::{build_ring, register_file, release_registrations, Target};
use crate::{
    open_device, validate, BlockEngine, EngineConfig, IoCompletion, IoError, IoRequest,
    QueueFeatures,
};

/// Name of the engine thread, as seen in `top -H` and panic messages.
const THREAD_NAME: &str = "swapvm-uring";

/// How often `wait_complete` re-checks that a completion can still come,
/// for the case where another thread took the last one.
const WAIT_RECHECK: Duration = Duration::from_millis(50);

/// `user_data` of the doorbell's poll request; slab indices never reach it.
const DOORBELL: u64 = u64::MAX;

/// What the caller sends to the engine thread.
enum Msg {
    Request(IoRequest),
    /// Stop taking requests, finish everything queued or in flight, exit.
    Shutdown,
}

/// io_uring on a file or block device: its own thread, batched submission,
/// `O_DIRECT`.
///
/// Dropping the engine does what [`UringEngine::shutdown`] does and discards
/// the completions.
#[derive(Debug)]
pub struct UringEngine {
    req_tx: Sender<Msg>,
    doorbell: Arc<Doorbell>,
    done_rx: Receiver<IoCompletion>,
    /// `None` once the thread has been joined.
    worker: Option<JoinHandle<()>>,
    /// Submitted and not yet taken by the caller.
    in_flight: AtomicUsize,
    size_bytes: u64,
    /// The ring's entries, as the worker set it up.
    depth: usize,
}

impl UringEngine {
    /// Opens `path` read-write (`O_DIRECT` if `cfg.direct`; never creates or
    /// truncates), sets up a ring of `cfg.queue_depth` entries and starts
    /// the `swapvm-uring` thread.
    ///
    /// # Errors
    ///
    /// [`IoError::Open`] if the path cannot be opened or sized;
    /// [`IoError::Setup`] if the kernel refuses io_uring or the thread
    /// cannot be started. Both name the path.
    ///
    /// # Panics
    ///
    /// If `cfg.queue_depth` is zero: configuration must be validated before
    /// it reaches the engine.
    pub fn open(path: &Path, cfg: &EngineConfig) -> Result<UringEngine, IoError> {
        assert!(cfg.queue_depth > 0, "EngineConfig::queue_depth must be > 0");
        let (file, size_bytes) = open_device(path, cfg.direct)?;
        let setup_err = |source| IoError::Setup {
            path: path.to_path_buf(),
            source,
        };
        let doorbell = Arc::new(Doorbell::new().map_err(setup_err)?);
        let (req_tx, req_rx) = crossbeam_channel::unbounded();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let worker_cfg = cfg.clone();
        let worker_bell = Arc::clone(&doorbell);
        // The thread builds the ring (see "Ring set-up") and reports whether
        // it could before taking requests.
        let handle = thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(
                move || match Worker::new(file, &worker_cfg, req_rx, done_tx, worker_bell) {
                    Ok(worker) => {
                        let _ = ready_tx.send(Ok(worker.depth));
                        worker.run();
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                },
            )
            .map_err(setup_err)?;
        let depth = match ready_rx.recv() {
            Ok(Ok(depth)) => depth,
            Ok(Err(source)) => {
                let _ = handle.join();
                return Err(setup_err(source));
            }
            Err(_) => {
                let _ = handle.join();
                return Err(setup_err(io::Error::other(
                    "the engine thread died while setting up the ring",
                )));
            }
        };
        tracing::debug!(path = %path.display(), depth, size_bytes, direct = cfg.direct, "io_uring engine open");
        Ok(UringEngine {
            req_tx,
            doorbell,
            done_rx,
            worker: Some(handle),
            in_flight: AtomicUsize::new(0),
            size_bytes,
            depth,
        })
    }

    /// Stops accepting requests, waits for every queued and in-flight
    /// request to complete, and returns every completion not yet taken.
    pub fn shutdown(mut self) -> Vec<IoCompletion> {
        self.stop();
        let rest: Vec<IoCompletion> = self.done_rx.try_iter().collect();
        self.in_flight.fetch_sub(rest.len(), Ordering::AcqRel);
        rest
    }

    /// Tells the thread to finish and joins it. Idempotent.
    fn stop(&mut self) {
        let Some(handle) = self.worker.take() else {
            return;
        };
        // A send error means the thread has already exited; join reports why.
        let _ = self.req_tx.send(Msg::Shutdown);
        self.doorbell.ring();
        if handle.join().is_err() {
            tracing::error!(
                "{THREAD_NAME} thread panicked; buffers it held were leaked, \
                 their completions are lost"
            );
        }
    }

    /// Bookkeeping for a completion handed to the caller.
    fn taken(&self, c: IoCompletion) -> IoCompletion {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        c
    }
}

impl Drop for UringEngine {
    fn drop(&mut self) {
        // Joining waits until the kernel has finished with every buffer; the
        // completions are then dropped with `done_rx`.
        self.stop();
    }
}

impl BlockEngine for UringEngine {
    fn submit(&self, req: IoRequest) -> Result<(), IoError> {
        let req = validate(req)?;
        // Count before sending, so the completion can never be taken (and
        // the count decremented) before it was incremented.
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if self.req_tx.send(Msg::Request(req)).is_err() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(IoError::EngineGone);
        }
        self.doorbell.ring();
        Ok(())
    }

    fn try_complete(&self) -> Option<IoCompletion> {
        self.done_rx.try_recv().ok().map(|c| self.taken(c))
    }

    fn wait_complete(&self) -> Result<IoCompletion, IoError> {
        loop {
            if self.in_flight() == 0 {
                return Err(IoError::EngineGone);
            }
            // The timeout only matters if another thread shares this engine
            // and takes the completion we were waiting for; a single caller
            // gets its completion the moment it is sent.
            match self.done_rx.recv_timeout(WAIT_RECHECK) {
                Ok(c) => return Ok(self.taken(c)),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Err(IoError::EngineGone),
            }
        }
    }

    fn wait_complete_timeout(&self, timeout: Duration) -> Result<Option<IoCompletion>, IoError> {
        if self.in_flight() == 0 {
            return Err(IoError::EngineGone);
        }
        match self.done_rx.recv_timeout(timeout) {
            Ok(c) => Ok(Some(self.taken(c))),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(IoError::EngineGone),
        }
    }

    fn ring_depth(&self) -> Option<usize> {
        Some(self.depth)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
}

/// An eventfd the worker polls in its ring, and whether it is asleep in the
/// kernel. See "The doorbell" in the module documentation.
#[derive(Debug)]
struct Doorbell {
    fd: OwnedFd,
    /// The worker is (about to be) waiting in the kernel and has not been
    /// rung since it said so.
    sleeping: AtomicBool,
}

impl Doorbell {
    fn new() -> io::Result<Doorbell> {
        // SAFETY: eventfd takes no pointers; it returns a new descriptor or
        // -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor just returned by eventfd, owned by
        // nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Doorbell {
            fd,
            sleeping: AtomicBool::new(false),
        })
    }

    /// Sender side, after sending: wakes the worker if it sleeps in the
    /// kernel.
    fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.swap(false, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
            // A failure (EAGAIN: the counter is saturated) means the
            // doorbell is already ringing.
            let _ = unsafe {
                libc::write(
                    self.fd.as_raw_fd(),
                    std::ptr::from_ref(&one).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
        }
    }

    /// Worker side, after its poll fired: resets the counter, so the next
    /// poll waits for the next ring.
    fn reset(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64. The descriptor is
        // non-blocking; EAGAIN (nothing to reset) is fine.
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                std::ptr::from_mut(&mut count).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

/// The `swapvm-uring` thread's state.
struct Worker {
    // Field order matters for drop: the ring goes before the file it
    // refers to. (The kernel holds its own file references, but there is no
    // reason to lean on that.)
    ring: IoUring,
    /// Held open: SQEs name its descriptor, or the registered slot that
    /// refers to it.
    _file: File,
    target: Target,
    doorbell: Arc<Doorbell>,
    /// The doorbell's poll request is in the ring.
    doorbell_armed: bool,
    req_rx: Receiver<Msg>,
    done_tx: Sender<IoCompletion>,
    /// Most requests in the kernel at once.
    depth: usize,
    /// Requests in the kernel, by SQE `user_data`. See the module comment
    /// for why it owns the buffers.
    table: InFlightTable,
    /// Received, not yet pushed to the SQ.
    pending: VecDeque<IoRequest>,
    /// False once `Shutdown` arrived or every sender is gone.
    accepting: bool,
}

impl Worker {
    /// Builds the ring (on the calling thread, which becomes its only
    /// issuer) and registers the file.
    fn new(
        file: File,
        cfg: &EngineConfig,
        req_rx: Receiver<Msg>,
        done_tx: Sender<IoCompletion>,
        doorbell: Arc<Doorbell>,
    ) -> io::Result<Worker> {
        // One entry more than the depth, for the doorbell's poll request.
        let entries = cfg.queue_depth.saturating_add(1);
        let (ring, features) = build_ring(entries, cfg.sqpoll_idle_ms, true)?;
        // CLAMP may have made the ring smaller than asked. The CQ has at
        // least as many entries as the SQ, so keeping at most `depth + 1`
        // requests in the kernel can never overflow it.
        let sq_entries = ring.params().sq_entries() as usize;
        let depth = (cfg.queue_depth as usize).min(sq_entries.saturating_sub(1).max(1));
        let target = register_file(&ring, &file);
        tracing::debug!(
            ?features,
            fixed_file = matches!(target, Target::Fixed(_)),
            "io_uring engine ring"
        );
        Ok(Worker {
            ring,
            _file: file,
            target,
            doorbell,
            doorbell_armed: false,
            req_rx,
            done_tx,
            depth,
            table: InFlightTable::with_capacity(depth),
            pending: VecDeque::new(),
            accepting: true,
        })
    }

    /// The thread's body.
    fn run(mut self) {
        if let Err(err) = self.serve() {
            tracing::error!(%err, "io_uring submission failed; failing every request from now on");
            self.fail_all(&err);
        }
    }

    /// The normal loop. Returns when shut down and drained, or on a ring
    /// error that retrying cannot cure.
    fn serve(&mut self) -> io::Result<()> {
        loop {
            self.take_requests();
            if self.table.len() == 0 && self.pending.is_empty() {
                if self.accepting {
                    continue;
                }
                return Ok(());
            }
            self.push_sqes();
            self.submit_and_reap()?;
        }
    }

    /// Moves requests from the channel into `pending`: blocking if there is
    /// nothing else to do, otherwise only those already queued.
    fn take_requests(&mut self) {
        if !self.accepting {
            return;
        }
        if self.table.len() == 0 && self.pending.is_empty() {
            let msg = self.req_rx.recv().ok();
            self.accept(msg);
        }
        while self.accepting {
            match self.req_rx.try_recv() {
                Ok(msg) => self.accept(Some(msg)),
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => self.accept(None),
            }
        }
    }

    /// `None` means every sender is gone, which is a shutdown too.
    fn accept(&mut self, msg: Option<Msg>) {
        match msg {
            Some(Msg::Request(req)) => self.pending.push_back(req),
            Some(Msg::Shutdown) | None => self.accepting = false,
        }
    }

    /// Pushes SQEs for pending requests, in order, while fewer than
    /// `depth` are in the kernel.
    fn push_sqes(&mut self) {
        let mut sq = self.ring.submission();
        // Short of `depth` only if the SQ is full, which cannot happen while
        // depth <= SQ entries; the rest would wait for the next round.
        self.table
            .push_from(&mut sq, self.target, self.depth, &mut self.pending);
        drop(sq);
        // Dropping `sq` published the new tail to the kernel.
        if self.accepting && !self.doorbell_armed {
            self.arm_doorbell();
        }
    }

    /// Puts the doorbell's poll request in the ring. It has one SQ entry of
    /// its own (the ring has `depth + 1`).
    fn arm_doorbell(&mut self) {
        let fd = types::Fd(self.doorbell.fd.as_raw_fd());
        let entry = opcode::PollAdd::new(fd, libc::POLLIN as u32)
            .build()
            .user_data(DOORBELL);
        // SAFETY: a poll request points at no memory; the eventfd is kept
        // open by `self.doorbell` for as long as the ring exists (the ring
        // is dropped first, cancelling the poll).
        self.doorbell_armed = unsafe { self.ring.submission().push(&entry) }.is_ok();
    }

    /// Submits the pushed SQEs and waits for at least one completion in the
    /// same system call, then reaps every CQE.
    ///
    /// # Errors
    ///
    /// A ring error other than EINTR, EAGAIN or EBUSY: the ring is unusable.
    fn submit_and_reap(&mut self) -> io::Result<()> {
        let mut want = usize::from(self.table.len() > 0);
        // Only worth a wake-up while the ring is less than half full: with
        // more in flight the next completion comes soon anyway, and waking
        // for every single request would cost more than it saves.
        let underfilled = self.table.len() * 2 < self.depth;
        if want > 0 && underfilled && self.accepting && self.doorbell_armed {
            // Announce the sleep, then look at the channel once more: see
            // "The doorbell".
            self.doorbell.sleeping.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if !self.req_rx.is_empty() {
                want = 0;
            }
        }
        let res = self.enter(want);
        self.doorbell.sleeping.store(false, Ordering::SeqCst);
        res
    }

    fn enter(&mut self, want: usize) -> io::Result<()> {
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY)) => {
                    // Out of kernel resources, or completions must be reaped
                    // first. Reap what is there; the unsubmitted SQEs stay in
                    // the ring and go with the next call.
                    if self.reap() == 0 {
                        thread::yield_now();
                    }
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        self.reap();
        Ok(())
    }

    /// Reaps every CQE, returning each request with its result. Returns how
    /// many were reaped.
    fn reap(&mut self) -> usize {
        let reaped_at = Instant::now();
        let mut reaped = 0;
        for cqe in self.ring.completion() {
            if cqe.user_data() == DOORBELL {
                self.doorbell.reset();
                self.doorbell_armed = false;
                continue;
            }
            reaped += 1;
            match self
                .table
                .complete(cqe.user_data(), cqe.result(), reaped_at)
            {
                Some(c) => {
                    let _ = self.done_tx.send(c);
                }
                None => tracing::error!(
                    user_data = cqe.user_data(),
                    "io_uring completion for an empty in-flight slot; ignored"
                ),
            }
        }
        reaped
    }

    /// After a ring failure: every request still owed a completion gets one
    /// carrying the error, then the thread keeps answering new requests the
    /// same way until shutdown, so no tag is ever lost.
    fn fail_all(&mut self, err: &io::Error) {
        for c in self.table.abandon(|| copy_error(err)) {
            let _ = self.done_tx.send(c);
        }
        loop {
            while let Some(req) = self.pending.pop_front() {
                send_completion(&self.done_tx, req, Err(copy_error(err)), 0);
            }
            if !self.accepting {
                return;
            }
            self.take_requests();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // The table leaks what is still in it when it drops (the thread is
        // unwinding from a panic): the kernel may still own those buffers.
        // Release the registered file now rather than in the kernel's
        // asynchronous ring teardown (see `UringQueue`'s `Drop`). A request
        // still in flight keeps its own reference to the file.
        let features = QueueFeatures {
            fixed_file: matches!(self.target, Target::Fixed(_)),
            ..QueueFeatures::default()
        };
        release_registrations(&self.ring, features);
    }
}

/// Sends a completion. The receiver lives until the engine has joined this
/// thread, so a send cannot fail while anyone could take the completion.
fn send_completion(
    done_tx: &Sender<IoCompletion>,
    req: IoRequest,
    result: io::Result<usize>,
    latency_ns: u64,
) {
    let _ = done_tx.send(IoCompletion::of(req, result, latency_ns));
}

/// `io::Error` is not `Clone`; make an equivalent one per failed request.
fn copy_error(err: &io::Error) -> io::Error {
    match err.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(err.kind(), err.to_string()),
    }
}
