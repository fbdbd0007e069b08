//! `UringQueue`: io_uring driven from the caller's own thread, with a pool
//! of buffers the queue owns.
//!
//! The [`BlockEngine`](crate::BlockEngine)s serve a tick loop that submits
//! now and collects later, each request bringing its own buffer;
//! [`UringEngine`](crate::UringEngine) also puts every request through two
//! channels to its thread. `UringQueue` is the bare ring instead, for a
//! caller that keeps its own N requests in flight (a benchmark, a fio-like
//! loop): the caller pushes requests naming a buffer slot, submits and
//! waits in one system call, takes the completions and reuses the slots.
//! Nothing crosses a thread and nothing is allocated per request.
//!
//! # What it asks of the kernel
//!
//! Where the kernel allows, and unless [`QueueConfig`] says otherwise:
//! - registered buffers: the pool is pinned once at open instead of the
//!   pages being looked up and pinned for every request;
//! - a registered file: no file-table lookup per request;
//! - `SINGLE_ISSUER | DEFER_TASKRUN`: completions are posted when the caller
//!   waits for them, instead of interrupting it to post them;
//! - SQPOLL, only if asked: a kernel thread polls the submission ring, which
//!   saves the submit system call and burns a CPU.
//!
//! Each falls back to the plain way if the kernel refuses it;
//! [`UringQueue::features`] says what is in use.
//!
//! # Buffer ownership (the soundness argument)
//!
//! The queue owns every buffer for its whole life, and the table of iovecs
//! describing them (used both to register them and for vectored reads). A
//! slot is either idle, and the caller may read and write its bytes through
//! [`UringQueue::buf`] / [`UringQueue::buf_mut`], or in flight, from the push
//! of its SQE until its CQE is taken, when only the kernel may touch it.
//! `buf` and `buf_mut` check the state, so no Rust reference to a buffer
//! exists while the kernel uses it. `Drop` waits for every request in flight
//! before the buffers are freed; if the ring fails so that it cannot wait,
//! the buffers are leaked instead.
//!
//! The queue is neither `Send` nor `Sync` (it holds raw iovec pointers):
//! with `SINGLE_ISSUER` only the thread that created the ring may use it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use io_uring::{opcode, squeue, types, IoUring};

use crate::{duration_ns, open_device, AlignedBuf, IoError, IoKind, BLOCK_SIZE};

/// Most buffers the kernel accepts in one registration
/// (`IORING_MAX_REG_BUFFERS`); a larger pool is used unregistered.
const MAX_REGISTERED_BUFFERS: usize = 1 << 14;

/// Most iovecs in one vectored request (`UIO_MAXIOV`).
const MAX_IOVECS: usize = 1024;

/// How to open a [`UringQueue`].
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Ring entries, and the most requests in flight at once.
    pub queue_depth: u32,
    /// Open with `O_DIRECT` (only used by [`UringQueue::open`]).
    pub direct: bool,
    /// Number of buffer slots.
    pub slots: usize,
    /// Bytes per slot: a non-zero multiple of [`BLOCK_SIZE`].
    pub slot_len: usize,
    /// Register the slots with the kernel (fixed buffers).
    pub register_buffers: bool,
    /// Register the file with the kernel (fixed file).
    pub register_file: bool,
    /// Ask for `SINGLE_ISSUER | DEFER_TASKRUN` (ignored with SQPOLL, which
    /// excludes it).
    pub defer_taskrun: bool,
    /// Run an SQPOLL kernel thread that sleeps after this many idle
    /// milliseconds; `None`: no SQPOLL.
    pub sqpoll_idle_ms: Option<u32>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            queue_depth: 32,
            direct: true,
            slots: 32,
            slot_len: BLOCK_SIZE,
            register_buffers: true,
            register_file: true,
            defer_taskrun: true,
            sqpoll_idle_ms: None,
        }
    }
}

/// Which of the optional kernel features a [`UringQueue`] got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueFeatures {
    /// The buffer slots are registered (fixed buffers).
    pub registered_buffers: bool,
    /// The file is registered (fixed file).
    pub fixed_file: bool,
    /// The ring was set up with `SINGLE_ISSUER | DEFER_TASKRUN`.
    pub defer_taskrun: bool,
    /// An SQPOLL kernel thread does the submitting.
    pub sqpoll: bool,
}

/// Why a push was refused. Nothing was queued; the slots stay as they were.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
    /// `queue_depth` requests are already in flight: take a completion first.
    #[error("queue full: every one of its {depth} entries is in flight")]
    Full {
        /// The queue depth.
        depth: usize,
    },
    /// A slot named by the request is still in flight.
    #[error("buffer slot {slot} is in flight")]
    SlotBusy {
        /// The busy slot.
        slot: usize,
    },
    /// The request breaks a rule of the queue or of `O_DIRECT`.
    #[error("request rejected: {reason}")]
    Invalid {
        /// Which rule.
        reason: &'static str,
    },
}

/// The outcome of one request of a [`UringQueue`].
#[derive(Debug)]
pub struct QueueCompletion {
    /// The request's (first) buffer slot, idle again now.
    pub slot: usize,
    /// Slots the request used: 1, or the iovec count of a vectored read.
    pub nr_slots: usize,
    /// Read or write.
    pub kind: IoKind,
    /// Byte offset on the device.
    pub offset: u64,
    /// Bytes transferred, or the error. A short transfer is `Ok(n)` with `n`
    /// less than asked.
    pub result: io::Result<usize>,
    /// Nanoseconds from the push until the completion was taken.
    pub latency_ns: u64,
}

/// State of one buffer slot.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// The caller's to fill or read.
    Idle,
    /// The first slot of a request in flight.
    Head {
        kind: IoKind,
        offset: u64,
        nr_slots: usize,
        started: Instant,
    },
    /// A later slot of a vectored request in flight; its head owns it.
    Tail,
}

/// Where SQEs point: the registered file or the raw descriptor.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    Fd(types::Fd),
    Fixed(types::Fixed),
}

/// io_uring from the caller's thread over a pool of owned buffer slots. See
/// the module documentation.
pub struct UringQueue {
    ring: IoUring,
    /// Held open for the queue's life: SQEs name its descriptor (or the
    /// registered slot referring to the same open file).
    _file: File,
    path: PathBuf,
    size_bytes: u64,
    slot_len: usize,
    /// The slots' memory. Never resized after open: `iovecs` points into it.
    bufs: Vec<AlignedBuf>,
    /// One iovec per slot, describing `bufs[i]`; contiguous slots have
    /// contiguous iovecs, which is what a vectored read hands the kernel.
    iovecs: Box<[libc::iovec]>,
    slots: Vec<Slot>,
    target: Target,
    /// Requests (not slots) pushed and not yet taken.
    in_flight: usize,
    depth: usize,
    features: QueueFeatures,
}

impl std::fmt::Debug for UringQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringQueue")
            .field("path", &self.path)
            .field("depth", &self.depth)
            .field("slots", &self.slots.len())
            .field("in_flight", &self.in_flight)
            .field("features", &self.features)
            .finish_non_exhaustive()
    }
}

impl UringQueue {
    /// Opens `path` read-write (`O_DIRECT` if `cfg.direct`; never creates or
    /// truncates) and sets up the ring and the buffer pool.
    ///
    /// # Errors
    ///
    /// [`IoError::Open`] or [`IoError::Setup`], naming the path.
    pub fn open(path: &Path, cfg: &QueueConfig) -> Result<UringQueue, IoError> {
        let (file, size_bytes) = open_device(path, cfg.direct)?;
        UringQueue::with_file(path, file, size_bytes, cfg)
    }

    /// Sets up the ring and the buffer pool over a file the caller opened
    /// (with whatever flags it needs, e.g. read-only or `O_EXCL`). `path`
    /// names it in errors.
    ///
    /// # Errors
    ///
    /// [`IoError::Setup`] naming `path` if the kernel refuses io_uring.
    ///
    /// # Panics
    ///
    /// If `cfg.queue_depth` or `cfg.slots` is zero or `cfg.slot_len` is not
    /// a non-zero multiple of [`BLOCK_SIZE`]: configuration errors that the
    /// caller must catch first.
    pub fn with_file(
        path: &Path,
        file: File,
        size_bytes: u64,
        cfg: &QueueConfig,
    ) -> Result<UringQueue, IoError> {
        assert!(cfg.queue_depth > 0, "QueueConfig::queue_depth must be > 0");
        assert!(cfg.slots > 0, "QueueConfig::slots must be > 0");
        let setup_err = |source| IoError::Setup {
            path: path.to_path_buf(),
            source,
        };
        let (ring, mut features) =
            build_ring(cfg.queue_depth, cfg.sqpoll_idle_ms, cfg.defer_taskrun)
                .map_err(setup_err)?;
        let depth = (cfg.queue_depth as usize).min(ring.params().sq_entries() as usize);
        let mut bufs: Vec<AlignedBuf> = (0..cfg.slots)
            .map(|_| AlignedBuf::new_zeroed(cfg.slot_len))
            .collect();
        let iovecs: Box<[libc::iovec]> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let target = if cfg.register_file {
            register_file(&ring, &file)
        } else {
            Target::Fd(types::Fd(file.as_raw_fd()))
        };
        features.fixed_file = matches!(target, Target::Fixed(_));
        if cfg.register_buffers && iovecs.len() <= MAX_REGISTERED_BUFFERS {
            // SAFETY: every iovec describes a live allocation of `bufs`,
            // which the queue owns and does not free before the ring is
            // closed (the field order and `Drop` below see to that), and
            // whose heap bytes never move.
            features.registered_buffers = unsafe { ring.submitter().register_buffers(&iovecs) }
                .inspect_err(|e| tracing::debug!(%e, "buffer registration refused; unregistered"))
                .is_ok();
        }
        tracing::debug!(path = %path.display(), depth, ?features, "io_uring queue open");
        Ok(UringQueue {
            ring,
            _file: file,
            path: path.to_path_buf(),
            size_bytes,
            slot_len: cfg.slot_len,
            bufs,
            iovecs,
            slots: vec![Slot::Idle; cfg.slots],
            target,
            in_flight: 0,
            depth,
            features,
        })
    }

    /// The optional kernel features in use.
    pub fn features(&self) -> QueueFeatures {
        self.features
    }

    /// The path given at open.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the device or file in bytes, as given or measured at open.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The most requests in flight at once (the queue depth, clamped to the
    /// ring's size).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Number of buffer slots.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Bytes per buffer slot.
    pub fn slot_len(&self) -> usize {
        self.slot_len
    }

    /// Requests pushed and not yet taken by [`UringQueue::complete`].
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The bytes of an idle slot; `None` if the slot is in flight or out of
    /// range.
    pub fn buf(&self, slot: usize) -> Option<&[u8]> {
        match self.slots.get(slot)? {
            Slot::Idle => Some(self.bufs[slot].as_slice()),
            Slot::Head { .. } | Slot::Tail => None,
        }
    }

    /// The bytes of an idle slot, to fill before a write; `None` if the slot
    /// is in flight or out of range.
    pub fn buf_mut(&mut self, slot: usize) -> Option<&mut [u8]> {
        match self.slots.get(slot)? {
            Slot::Idle => Some(self.bufs[slot].as_mut_slice()),
            Slot::Head { .. } | Slot::Tail => None,
        }
    }

    /// Queues a read into, or a write from, the first `len` bytes of `slot`
    /// at byte `offset`. Nothing reaches the kernel until
    /// [`UringQueue::submit`].
    ///
    /// # Errors
    ///
    /// [`QueueError`] if the queue is full, the slot is in flight, or the
    /// request is malformed (slot out of range, `len` zero, longer than a
    /// slot or not a multiple of [`BLOCK_SIZE`], `offset` misaligned or too
    /// large). Nothing is queued then.
    pub fn push(
        &mut self,
        slot: usize,
        kind: IoKind,
        offset: u64,
        len: usize,
    ) -> Result<(), QueueError> {
        self.check(slot, 1, offset, len)?;
        if len == 0 || len > self.slot_len || len % BLOCK_SIZE != 0 {
            return Err(QueueError::Invalid {
                reason: "length must be a non-zero multiple of BLOCK_SIZE, at most one slot",
            });
        }
        let ptr = self.bufs[slot].as_mut_ptr();
        // `len <= slot_len`, and slots are allocations, so it fits in u32
        // unless the slot itself does not: checked in `check`.
        let len32 = u32::try_from(len).unwrap_or(u32::MAX);
        let index = self.features.registered_buffers.then(|| buf_index(slot));
        let entry = rw_entry(self.target, kind, ptr, len32, offset, index).user_data(slot as u64);
        self.push_entry(&entry, slot, 1, kind, offset)
    }

    /// Queues one vectored read filling slots `first .. first + nr_slots`
    /// (whole slots, in order) from byte `offset`: the shape of swap
    /// readahead, which reads adjacent slots into separate folios.
    ///
    /// # Errors
    ///
    /// As [`UringQueue::push`]; also if `nr_slots` is zero or above 1024
    /// (`UIO_MAXIOV`).
    pub fn push_readv(
        &mut self,
        first: usize,
        nr_slots: usize,
        offset: u64,
    ) -> Result<(), QueueError> {
        if nr_slots == 0 || nr_slots > MAX_IOVECS {
            return Err(QueueError::Invalid {
                reason: "a vectored read takes 1 to 1024 slots",
            });
        }
        let len = nr_slots.saturating_mul(self.slot_len);
        self.check(first, nr_slots, offset, len)?;
        let iov = self.iovecs[first..first + nr_slots].as_ptr();
        let entry = match self.target {
            Target::Fd(fd) => opcode::Readv::new(fd, iov, nr_slots as u32),
            Target::Fixed(fd) => opcode::Readv::new(fd, iov, nr_slots as u32),
        }
        .offset(offset)
        .build()
        .user_data(first as u64);
        self.push_entry(&entry, first, nr_slots, IoKind::Read, offset)
    }

    /// The checks common to every push: room in the queue, slots in range
    /// and idle, offset aligned and the end representable.
    fn check(
        &self,
        first: usize,
        nr_slots: usize,
        offset: u64,
        len: usize,
    ) -> Result<(), QueueError> {
        if self.in_flight >= self.depth {
            return Err(QueueError::Full { depth: self.depth });
        }
        let Some(range) = self.slots.get(first..first.saturating_add(nr_slots)) else {
            return Err(QueueError::Invalid {
                reason: "buffer slot out of range",
            });
        };
        if let Some(busy) = range.iter().position(|s| !matches!(s, Slot::Idle)) {
            return Err(QueueError::SlotBusy { slot: first + busy });
        }
        if offset % BLOCK_SIZE as u64 != 0 {
            return Err(QueueError::Invalid {
                reason: "offset is not a multiple of BLOCK_SIZE",
            });
        }
        if u32::try_from(len).is_err()
            || offset
                .checked_add(len as u64)
                .is_none_or(|end| end > i64::MAX as u64)
        {
            return Err(QueueError::Invalid {
                reason: "request too long, or its end beyond the largest file offset",
            });
        }
        Ok(())
    }

    /// Pushes a built SQE whose user_data is `first`, and marks its slots in
    /// flight.
    fn push_entry(
        &mut self,
        entry: &squeue::Entry,
        first: usize,
        nr_slots: usize,
        kind: IoKind,
        offset: u64,
    ) -> Result<(), QueueError> {
        // SAFETY: the SQE points at the buffers of slots `first ..
        // first + nr_slots` (directly, or through their entries of
        // `self.iovecs`), all idle, checked by `check`. They are marked in
        // flight below before anything else can run, so from here until
        // their CQE is taken `buf`/`buf_mut` refuse them and nothing else
        // touches them; `Drop` waits for the CQE before freeing them. The
        // lengths are within the slots. The target is `self.file`, open for
        // the queue's whole life.
        let pushed = unsafe { self.ring.submission().push(entry) };
        if pushed.is_err() {
            // `in_flight < depth <= SQ entries` makes this unreachable.
            return Err(QueueError::Full { depth: self.depth });
        }
        self.slots[first] = Slot::Head {
            kind,
            offset,
            nr_slots,
            started: Instant::now(),
        };
        for s in &mut self.slots[first + 1..first + nr_slots] {
            *s = Slot::Tail;
        }
        self.in_flight += 1;
        Ok(())
    }

    /// Hands every queued request to the kernel and waits until at least
    /// `want` completions are ready, in one system call. `want` is capped at
    /// the number in flight, so this never waits for what cannot come.
    ///
    /// # Errors
    ///
    /// What `io_uring_enter` said, other than EINTR (retried) and EAGAIN or
    /// EBUSY (the kernel wants completions taken first: `Ok(0)`, take them
    /// and call again).
    pub fn submit(&mut self, want: usize) -> io::Result<usize> {
        let want = want.min(self.in_flight);
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(n) => return Ok(n),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY)) => {
                    return Ok(0)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes one ready completion, if any, and makes its slots idle. Never
    /// blocks and makes no system call.
    pub fn complete(&mut self) -> Option<QueueCompletion> {
        loop {
            let cqe = self.ring.completion().next()?;
            let slot = cqe.user_data() as usize;
            let Some(Slot::Head {
                kind,
                offset,
                nr_slots,
                started,
            }) = self.slots.get(slot).copied()
            else {
                tracing::error!(
                    user_data = cqe.user_data(),
                    "io_uring completion for a slot not in flight; ignored"
                );
                continue;
            };
            // The kernel is done with these buffers: their CQE is posted.
            self.slots[slot..slot + nr_slots].fill(Slot::Idle);
            self.in_flight -= 1;
            let res = cqe.result();
            let result = match usize::try_from(res) {
                Ok(n) => Ok(n),
                Err(_) => Err(io::Error::from_raw_os_error(-res)),
            };
            return Some(QueueCompletion {
                slot,
                nr_slots,
                kind,
                offset,
                result,
                latency_ns: duration_ns(started.elapsed()),
            });
        }
    }

    /// Submits anything queued and waits for every request in flight,
    /// discarding the completions. Returns how many were discarded.
    ///
    /// # Errors
    ///
    /// As [`UringQueue::submit`]; requests may still be in flight then.
    pub fn drain(&mut self) -> io::Result<usize> {
        let mut discarded = 0;
        while self.in_flight > 0 {
            self.submit(1)?;
            while self.complete().is_some() {
                discarded += 1;
            }
        }
        Ok(discarded)
    }
}

impl Drop for UringQueue {
    fn drop(&mut self) {
        if let Err(err) = self.drain() {
            // The kernel may still write into the buffers in flight: leak
            // the whole pool rather than free memory it may touch.
            tracing::error!(%err, path = %self.path.display(),
                "io_uring queue could not drain; its buffers are leaked");
            std::mem::forget(std::mem::take(&mut self.bufs));
            return;
        }
        // Closing the ring releases what it registered only when the
        // kernel's asynchronous ring teardown gets to it; until then the
        // registered file keeps the device open, and an O_EXCL claim on a
        // block device with it. Unregister now, synchronously, so the claim
        // ends when our own handles close.
        release_registrations(&self.ring, self.features);
        // Then the fields drop in declaration order: the ring (closing it
        // unregisters the file and the buffers) before the file and the
        // buffers.
    }
}

/// Sets up a ring of `entries`, with SQPOLL if `sqpoll_idle_ms` is given,
/// else with `SINGLE_ISSUER | DEFER_TASKRUN` if `defer_taskrun`, falling
/// back to a plain ring when the kernel refuses either. Returns which
/// features it got.
///
/// # Context
///
/// With `DEFER_TASKRUN` only the calling thread may submit to and wait on
/// the ring.
pub(crate) fn build_ring(
    entries: u32,
    sqpoll_idle_ms: Option<u32>,
    defer_taskrun: bool,
) -> io::Result<(IoUring, QueueFeatures)> {
    let mut features = QueueFeatures::default();
    if let Some(idle) = sqpoll_idle_ms {
        match IoUring::builder()
            .setup_clamp()
            .setup_sqpoll(idle)
            .build(entries)
        {
            Ok(ring) => {
                features.sqpoll = true;
                return Ok((ring, features));
            }
            Err(e) => tracing::warn!(%e, "SQPOLL refused; submitting with system calls"),
        }
    } else if defer_taskrun {
        if let Ok(ring) = IoUring::builder()
            .setup_clamp()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries)
        {
            features.defer_taskrun = true;
            return Ok((ring, features));
        }
    }
    let ring = IoUring::builder().setup_clamp().build(entries)?;
    Ok((ring, features))
}

/// Registers `file` as the ring's fixed file 0 and returns it as the
/// target of SQEs; the raw descriptor if the kernel refuses.
pub(crate) fn register_file(ring: &IoUring, file: &File) -> Target {
    match ring.submitter().register_files(&[file.as_raw_fd()]) {
        Ok(()) => Target::Fixed(types::Fixed(0)),
        Err(e) => {
            tracing::debug!(%e, "file registration refused; using the descriptor");
            Target::Fd(types::Fd(file.as_raw_fd()))
        }
    }
}

/// Unregisters the file and buffers `features` says are registered. Nothing
/// may be in flight.
pub(crate) fn release_registrations(ring: &IoUring, features: QueueFeatures) {
    let submitter = ring.submitter();
    if features.fixed_file {
        if let Err(e) = submitter.unregister_files() {
            tracing::debug!(%e, "unregistering the file failed; the ring's teardown will");
        }
    }
    if features.registered_buffers {
        if let Err(e) = submitter.unregister_buffers() {
            tracing::debug!(%e, "unregistering buffers failed; the ring's teardown will");
        }
    }
}

/// The registered-buffer index of `slot`; registration is only attempted
/// for at most `MAX_REGISTERED_BUFFERS` slots, which fit in a u16.
fn buf_index(slot: usize) -> u16 {
    const _: () = assert!(MAX_REGISTERED_BUFFERS <= u16::MAX as usize + 1);
    u16::try_from(slot).unwrap_or(u16::MAX)
}

/// Builds a read or write SQE, with a fixed buffer if `index` is given.
pub(crate) fn rw_entry(
    target: Target,
    kind: IoKind,
    ptr: *mut u8,
    len: u32,
    offset: u64,
    index: Option<u16>,
) -> squeue::Entry {
    macro_rules! build {
        ($fd:expr) => {
            match (kind, index) {
                (IoKind::Read, Some(i)) => opcode::ReadFixed::new($fd, ptr, len, i)
                    .offset(offset)
                    .build(),
                (IoKind::Write, Some(i)) => opcode::WriteFixed::new($fd, ptr.cast_const(), len, i)
                    .offset(offset)
                    .build(),
                (IoKind::Read, None) => opcode::Read::new($fd, ptr, len).offset(offset).build(),
                (IoKind::Write, None) => opcode::Write::new($fd, ptr.cast_const(), len)
                    .offset(offset)
                    .build(),
            }
        };
    }
    match target {
        Target::Fd(fd) => build!(fd),
        Target::Fixed(fd) => build!(fd),
    }
}
