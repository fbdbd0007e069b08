//! `UringEngine`: io_uring on a file or block device, driven by one thread.
//!
//! # Threads and channels
//!
//! The caller's side ([`UringEngine`]) only touches two crossbeam channels:
//! requests go to the `swapvm-uring` thread, completions come back. The
//! thread ([`Worker`]) owns the ring, the file and every buffer the kernel
//! may be using. Its loop: if nothing is in flight, sleep on the request
//! channel; otherwise take every request already queued, push as many SQEs
//! as the queue depth allows (the rest wait in `pending`), submit the batch
//! and wait for at least one completion in the same system call, reap every
//! CQE, and send the completions back.
//!
//! # Buffer ownership (the soundness argument)
//!
//! An SQE carries a raw pointer into a request's [`AlignedBuf`]. From the
//! moment the SQE is pushed until its CQE is reaped, the request, and with it
//! the buffer, lives in the in-flight table `slab[user_data]`, where no Rust
//! code reads, writes, moves out or frees it. The heap bytes of an
//! `AlignedBuf` never move when the value moves, so the pointer stays valid
//! across the move into the table. Only the CQE for that slot takes the
//! request out again, and a posted CQE means the kernel is done with the
//! memory. The worker does not exit while any slot is occupied; if it is
//! torn down anyway (a panic, or a ring that stops accepting submissions),
//! the buffers still in the table are leaked, never freed, so the kernel can
//! never write into memory the allocator has handed to someone else.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use io_uring::{opcode, squeue, types, IoUring};

use crate::{
    duration_ns, open_device, validate, AlignedBuf, BlockEngine, EngineConfig, IoCompletion,
    IoError, IoKind, IoRequest,
};

/// Name of the engine thread, as seen in `top -H` and panic messages.
const THREAD_NAME: &str = "swapvm-uring";

/// How often `wait_complete` re-checks that a completion can still come,
/// for the case where another thread took the last one.
const WAIT_RECHECK: Duration = Duration::from_millis(50);

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
    done_rx: Receiver<IoCompletion>,
    /// `None` once the thread has been joined.
    worker: Option<JoinHandle<()>>,
    /// Submitted and not yet taken by the caller.
    in_flight: AtomicUsize,
    size_bytes: u64,
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
        // CLAMP: a depth above the kernel's maximum becomes the maximum
        // instead of EINVAL.
        let ring = IoUring::builder()
            .setup_clamp()
            .build(cfg.queue_depth)
            .map_err(setup_err)?;
        // The CQ has at least as many entries as the SQ, so keeping at most
        // `depth` requests in the kernel can never overflow it.
        let depth = (cfg.queue_depth as usize).min(ring.params().sq_entries() as usize);
        let (req_tx, req_rx) = crossbeam_channel::unbounded();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let worker = Worker::new(ring, file, req_rx, done_tx, depth);
        let handle = thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || worker.run())
            .map_err(setup_err)?;
        tracing::debug!(path = %path.display(), depth, size_bytes, direct = cfg.direct, "io_uring engine open");
        Ok(UringEngine {
            req_tx,
            done_rx,
            worker: Some(handle),
            in_flight: AtomicUsize::new(0),
            size_bytes,
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

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
}

/// A request whose SQE has been pushed and whose CQE has not been reaped.
struct InFlight {
    /// Owns the buffer the kernel is using. Untouched until the CQE arrives.
    req: IoRequest,
    /// Just before the batch carrying this SQE was pushed and submitted.
    started: Instant,
}

/// The `swapvm-uring` thread's state.
struct Worker {
    // Field order matters for drop: the ring goes before the file it
    // refers to. (The kernel holds its own file references, but there is no
    // reason to lean on that.)
    ring: IoUring,
    file: File,
    req_rx: Receiver<Msg>,
    done_tx: Sender<IoCompletion>,
    /// Most requests in the kernel at once.
    depth: usize,
    /// The in-flight table, indexed by SQE `user_data`. See the module
    /// comment for why it owns the buffers.
    slab: Vec<Option<InFlight>>,
    /// Unoccupied indices of `slab`.
    slab_free: Vec<usize>,
    /// Received, not yet pushed to the SQ.
    pending: VecDeque<IoRequest>,
    /// Occupied slots of `slab`: SQEs pushed and CQEs not yet reaped.
    in_kernel: usize,
    /// False once `Shutdown` arrived or every sender is gone.
    accepting: bool,
}

impl Worker {
    fn new(
        ring: IoUring,
        file: File,
        req_rx: Receiver<Msg>,
        done_tx: Sender<IoCompletion>,
        depth: usize,
    ) -> Worker {
        Worker {
            ring,
            file,
            req_rx,
            done_tx,
            depth,
            slab: Vec::with_capacity(depth),
            slab_free: Vec::with_capacity(depth),
            pending: VecDeque::new(),
            in_kernel: 0,
            accepting: true,
        }
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
            if self.in_kernel == 0 && self.pending.is_empty() {
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
        if self.in_kernel == 0 && self.pending.is_empty() {
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

    /// Pushes SQEs for pending requests while fewer than `depth` are in the
    /// kernel. Each request moves into its slab slot before its SQE is
    /// pushed.
    fn push_sqes(&mut self) {
        let started = Instant::now();
        let fd = types::Fd(self.file.as_raw_fd());
        let mut sq = self.ring.submission();
        while self.in_kernel < self.depth {
            let Some(req) = self.pending.pop_front() else {
                break;
            };
            let idx = self.slab_free.pop().unwrap_or_else(|| {
                self.slab.push(None);
                self.slab.len() - 1
            });
            let slot = self.slab[idx].insert(InFlight { req, started });
            let entry = sqe(fd, &mut slot.req, idx);
            // SAFETY: the SQE points at `slot.req.buf`, whose owner now sits
            // in `slab[idx]` and stays there, unread, unmoved and unfreed,
            // until the CQE with user_data `idx` is reaped (or is leaked if
            // the worker dies first); the heap bytes of an `AlignedBuf` do
            // not move with it. The length is the buffer's own. `fd` belongs
            // to `self.file`, which outlives every in-flight request because
            // the worker does not exit while any is in the kernel.
            let pushed = unsafe { sq.push(&entry) };
            if pushed.is_err() {
                // Unreachable while depth <= SQ entries, but if the SQ is
                // full the request simply waits for the next round.
                if let Some(back) = self.slab[idx].take() {
                    self.pending.push_front(back.req);
                }
                self.slab_free.push(idx);
                break;
            }
            self.in_kernel += 1;
        }
        // Dropping `sq` publishes the new tail to the kernel.
    }

    /// Submits the pushed SQEs and waits for at least one completion in the
    /// same system call, then reaps every CQE.
    ///
    /// # Errors
    ///
    /// A ring error other than EINTR, EAGAIN or EBUSY: the ring is unusable.
    fn submit_and_reap(&mut self) -> io::Result<()> {
        let want = usize::from(self.in_kernel > 0);
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
            reaped += 1;
            let idx = cqe.user_data() as usize;
            let Some(InFlight { req, started }) = self.slab.get_mut(idx).and_then(Option::take)
            else {
                tracing::error!(
                    user_data = cqe.user_data(),
                    "io_uring completion for an empty in-flight slot; ignored"
                );
                continue;
            };
            // The kernel is done with the buffer: its CQE is posted.
            self.slab_free.push(idx);
            self.in_kernel -= 1;
            let res = cqe.result();
            let result = match usize::try_from(res) {
                Ok(n) => Ok(n),
                Err(_) => Err(io::Error::from_raw_os_error(-res)),
            };
            let latency_ns = duration_ns(reaped_at.saturating_duration_since(started));
            send_completion(&self.done_tx, req, result, latency_ns);
        }
        reaped
    }

    /// After a ring failure: every request still owed a completion gets one
    /// carrying the error, then the thread keeps answering new requests the
    /// same way until shutdown, so no tag is ever lost.
    fn fail_all(&mut self, err: &io::Error) {
        for slot in self.slab.iter_mut() {
            let Some(InFlight { req, .. }) = slot.take() else {
                continue;
            };
            // The kernel may still write into this buffer: leak it and hand
            // back a fresh one of the same length instead.
            let IoRequest {
                tag,
                kind,
                offset,
                buf,
            } = req;
            let len = buf.len();
            std::mem::forget(buf);
            let req = IoRequest {
                tag,
                kind,
                offset,
                buf: AlignedBuf::new_zeroed(len),
            };
            send_completion(&self.done_tx, req, Err(copy_error(err)), 0);
        }
        self.in_kernel = 0;
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
        // Normally the table is empty here. If not (the thread is unwinding
        // from a panic), the kernel may still own these buffers: leak them.
        for slot in self.slab.iter_mut() {
            if let Some(InFlight { req, .. }) = slot.take() {
                std::mem::forget(req.buf);
            }
        }
    }
}

/// Builds the SQE for `req`, tagged with its slab index.
fn sqe(fd: types::Fd, req: &mut IoRequest, idx: usize) -> squeue::Entry {
    // `validate` rejected buffers longer than u32::MAX at submit.
    let len = u32::try_from(req.buf.len()).unwrap_or(u32::MAX);
    let ptr = req.buf.as_mut_ptr();
    let entry = match req.kind {
        IoKind::Read => opcode::Read::new(fd, ptr, len).offset(req.offset).build(),
        IoKind::Write => opcode::Write::new(fd, ptr.cast_const(), len)
            .offset(req.offset)
            .build(),
    };
    entry.user_data(idx as u64)
}

/// Sends a completion. The receiver lives until the engine has joined this
/// thread, so a send cannot fail while anyone could take the completion.
fn send_completion(
    done_tx: &Sender<IoCompletion>,
    req: IoRequest,
    result: io::Result<usize>,
    latency_ns: u64,
) {
    let IoRequest {
        tag,
        kind,
        offset,
        buf,
    } = req;
    let _ = done_tx.send(IoCompletion {
        tag,
        kind,
        offset,
        buf,
        result,
        latency_ns,
    });
}

/// `io::Error` is not `Clone`; make an equivalent one per failed request.
fn copy_error(err: &io::Error) -> io::Error {
    match err.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(err.kind(), err.to_string()),
    }
}
