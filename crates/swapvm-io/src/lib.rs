//! swapvm-io owns the block I/O engines: requests to read or write whole
//! 4 KiB-aligned blocks at byte offsets of a swap file or block device go in,
//! completions come out, in any order. [`InlineUringEngine`] drives
//! io_uring with O_DIRECT from the caller's own thread (the swap layer's
//! default); [`UringEngine`] drives the same ring from a thread of its own
//! with batched submission; [`SyncEngine`] does
//! plain pread/pwrite on the calling thread, as the reference for
//! differential tests and as a fallback; [`FaultyEngine`] wraps either
//! to inject read and write errors, short and torn writes and a filling
//! device into real requests; [`NullEngine`] is the `null` backend of
//! metadata-only machines, which completes requests without I/O and keeps
//! one content word per block; [`UringQueue`] is the bare ring and
//! a pool of buffers, driven from the caller's own thread, for a caller that
//! keeps its own requests in flight. It is the only crate in the workspace
//! with `unsafe` code, and all of it is here: the aligned buffer, the
//! device claim's `flock`, the SIGPIPE disposition, and the
//! hand-off of buffers to the kernel. The engines refuse to know about swap
//! slots, swap entries, clusters or folios: they move bytes at byte offsets,
//! and the swap layer above decides which bytes go where.
//!
//! [`signature`] tells what is already on a device (a swap header, a
//! filesystem), for the callers that must not overwrite it.
//!
//! # Ownership model
//!
//! A request owns its [`AlignedBuf`]. Submitting moves the request into the
//! engine; the matching [`IoCompletion`] hands the same buffer back, on
//! success and on error alike. A request rejected before submission comes
//! back inside [`IoError::Rejected`]. No buffer is ever borrowed by the
//! kernel while Rust code can reach it.

// This is the one crate of the workspace that opts out of `unsafe_code = "deny"`.
#![allow(unsafe_code)]
#![warn(missing_docs)]

pub mod blockdev;
mod buf;
pub mod claim;
mod codec;
mod faulty;
mod inflight;
mod inline;
mod null;
mod psync;
mod queue;
pub mod signature;
mod uring;
mod zram;

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub use buf::AlignedBuf;

/// Bytes an unprivileged user may still write on the filesystem holding
/// `path` (`statvfs`: `f_bavail * f_frsize`).
///
/// # Errors
/// If `statvfs` fails.
pub fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statvfs that
    // the call fills on success.
    let r = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// User and system CPU time of this process so far (`getrusage`), or
/// zeros if it fails.
pub fn cpu_times() -> (std::time::Duration, std::time::Duration) {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a writable rusage that the call fills on success.
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    if r != 0 {
        return (std::time::Duration::ZERO, std::time::Duration::ZERO);
    }
    // SAFETY: getrusage returned 0, so it filled `ru` (and it was zeroed).
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec.max(0) as u64)
            + std::time::Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// Allocates the blocks of `file` up to `len` bytes (`posix_fallocate`),
/// so that swap writes cannot fail for want of space mid-run and the image
/// has no holes (the kernel's swapon refuses a file with holes).
///
/// # Errors
/// The error `posix_fallocate` returns (`ENOSPC` when the disk is full).
pub fn preallocate(file: &std::fs::File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let len =
        libc::off_t::try_from(len).map_err(|_| std::io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: a descriptor this caller owns; no memory is passed.
    let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Restores the default disposition of SIGPIPE (the Rust runtime ignores
/// it), so that a command whose stdout is closed ends quietly, as
/// coreutils do, instead of failing in `println!`. Call it at the start of
/// `main`, before any thread starts.
pub fn sigpipe_default() {
    // SAFETY: only changes a signal disposition to SIG_DFL; no handler runs
    // Rust code and no memory is passed.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
pub use codec::{CompressedPage, PageCodec};
pub use faulty::{BlocksHit, FaultCounts, FaultPlan, FaultStats, FaultyEngine};
pub use inline::InlineUringEngine;
pub use null::NullEngine;
pub use psync::SyncEngine;
pub use queue::{QueueCompletion, QueueConfig, QueueError, QueueFeatures, UringQueue};
pub use uring::UringEngine;
pub use zram::{Compressor, ZramEngine, ZramStats};

/// Size of one block, and the alignment of every offset, length and buffer.
pub const BLOCK_SIZE: usize = 4096;

const _: () = assert!(BLOCK_SIZE.is_power_of_two());

/// Direction of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    /// Fill the buffer from the device.
    Read,
    /// Write the whole buffer to the device.
    Write,
}

/// One block request.
///
/// `offset` must be a multiple of [`BLOCK_SIZE`]. A `Read` fills `buf`; a
/// `Write` writes `buf.len()` bytes from `buf`.
#[derive(Debug)]
pub struct IoRequest {
    /// Caller's identifier, returned unchanged in the completion.
    pub tag: u64,
    /// Read or write.
    pub kind: IoKind,
    /// Byte offset on the device; a multiple of [`BLOCK_SIZE`].
    pub offset: u64,
    /// Data to write, or room for the data read.
    pub buf: AlignedBuf,
}

/// The outcome of one [`IoRequest`].
#[derive(Debug)]
pub struct IoCompletion {
    /// The request's tag.
    pub tag: u64,
    /// The request's direction.
    pub kind: IoKind,
    /// The request's offset.
    pub offset: u64,
    /// The request's buffer, handed back always, also on error.
    pub buf: AlignedBuf,
    /// Bytes transferred. A short transfer (for example a read crossing the
    /// end of the file) is `Ok(n)` with `n < buf.len()`.
    pub result: Result<usize, io::Error>,
    /// Nanoseconds from submission to the kernel until the completion was
    /// reaped.
    pub latency_ns: u64,
}

impl IoCompletion {
    /// The completion of `req`, handing its buffer back.
    pub(crate) fn of(req: IoRequest, result: io::Result<usize>, latency_ns: u64) -> IoCompletion {
        let IoRequest {
            tag,
            kind,
            offset,
            buf,
        } = req;
        IoCompletion {
            tag,
            kind,
            offset,
            buf,
            result,
            latency_ns,
        }
    }
}

/// How to open an engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Ring entries for the io_uring engines, and the most requests they
    /// keep in the kernel at once. Ignored by [`SyncEngine`].
    pub queue_depth: u32,
    /// Open with `O_DIRECT`, bypassing the page cache.
    pub direct: bool,
    /// io_uring engines only: have an SQPOLL kernel thread take submissions,
    /// sleeping after this many idle milliseconds. It saves the submit
    /// system call and costs a CPU while busy. `None` (the default): no
    /// SQPOLL. If the kernel refuses it, the engine does without, and says
    /// so in the log.
    pub sqpoll_idle_ms: Option<u32>,
    /// Which thread drives the ring, for [`open_uring`].
    pub submitter: Submitter,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            queue_depth: 64,
            direct: true,
            sqpoll_idle_ms: None,
            submitter: Submitter::default(),
        }
    }
}

/// Which thread drives an io_uring engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Submitter {
    /// The caller's own ([`InlineUringEngine`]): no thread hand-off per
    /// request.
    #[default]
    Inline,
    /// A thread of the engine's own ([`UringEngine`]): submission never
    /// enters the kernel on the caller's thread.
    Thread,
}

/// Opens the io_uring engine `cfg.submitter` names on `path`.
///
/// # Errors
///
/// As [`InlineUringEngine::open`] and [`UringEngine::open`].
pub fn open_uring(path: &Path, cfg: &EngineConfig) -> Result<Box<dyn BlockEngine>, IoError> {
    Ok(match cfg.submitter {
        Submitter::Inline => Box::new(InlineUringEngine::open(path, cfg)?),
        Submitter::Thread => Box::new(UringEngine::open(path, cfg)?),
    })
}

/// Errors of the block I/O engines.
///
/// An I/O error on a submitted request is not an `IoError`: it arrives as
/// the completion's `result`, together with the buffer.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The device or file could not be opened (or sized).
    #[error("cannot open swap device {}", path.display())]
    Open {
        /// The path given to `open`.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// io_uring could not be set up: the kernel lacks it, it is disabled
    /// (`/proc/sys/kernel/io_uring_disabled`), or a resource limit was hit.
    #[error(
        "io_uring setup FAILED for {}: is io_uring available and enabled \
         (kernel >= 5.6, /proc/sys/kernel/io_uring_disabled = 0)?",
        path.display()
    )]
    Setup {
        /// The path given to `open`.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The engine thread is gone (shut down or panicked), or nothing is in
    /// flight, so no completion can ever arrive.
    #[error("the I/O engine has exited or has nothing in flight: no completion can arrive")]
    EngineGone,
    /// The request was rejected before submission; it is handed back.
    #[error("I/O request rejected before submission: {reason}")]
    Rejected {
        /// Which rule the request broke.
        reason: &'static str,
        /// The request, untouched.
        request: Box<IoRequest>,
    },
}

/// A block I/O engine: requests in, completions out. Completions may arrive
/// in any order.
pub trait BlockEngine: Send {
    /// Queues `req` for I/O. Never blocks for long: it only enqueues.
    ///
    /// # Errors
    ///
    /// [`IoError::Rejected`] (with the request) if the offset is not a
    /// multiple of [`BLOCK_SIZE`] or the request cannot be expressed to the
    /// kernel; [`IoError::EngineGone`] if the engine has exited.
    fn submit(&self, req: IoRequest) -> Result<(), IoError>;

    /// Takes one completion if one is ready. Never blocks.
    fn try_complete(&self) -> Option<IoCompletion>;

    /// Blocks until one completion is ready and takes it.
    ///
    /// # Errors
    ///
    /// [`IoError::EngineGone`] if no completion can ever come: nothing is in
    /// flight, or the engine thread has exited.
    fn wait_complete(&self) -> Result<IoCompletion, IoError>;

    /// As [`wait_complete`](Self::wait_complete), but gives up after
    /// `timeout` and returns `Ok(None)`. An engine that cannot bound its
    /// wait (the default; engines that complete in the submitting context
    /// never need to) blocks as `wait_complete` does.
    ///
    /// # Errors
    ///
    /// As [`wait_complete`](Self::wait_complete).
    fn wait_complete_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Option<IoCompletion>, IoError> {
        let _ = timeout;
        self.wait_complete().map(Some)
    }

    /// Requests submitted and not yet returned by `try_complete` or
    /// `wait_complete`.
    fn in_flight(&self) -> usize;

    /// Size of the device or file in bytes, as measured at open.
    fn size_bytes(&self) -> u64;

    /// Entries of the io_uring ring that carries the requests (the
    /// `queue_depth` asked, or less if the kernel clamped it), `None` for
    /// an engine without a ring. Requests beyond it wait in the engine's
    /// own queue, so [`in_flight`](Self::in_flight) may exceed it.
    fn ring_depth(&self) -> Option<usize> {
        None
    }

    /// Host memory the engine keeps for the blocks themselves (a null
    /// device's content words), by capacity; 0 for an engine whose blocks
    /// live in a file or device.
    fn host_bytes(&self) -> u64 {
        0
    }
}

/// Checks what the kernel would otherwise reject or misinterpret, and hands
/// the request back if it is wrong.
///
/// The buffer's own alignment and length are guaranteed by [`AlignedBuf`].
fn validate(req: IoRequest) -> Result<IoRequest, IoError> {
    let reason = if req.offset % BLOCK_SIZE as u64 != 0 {
        Some("offset is not a multiple of BLOCK_SIZE")
    } else if u32::try_from(req.buf.len()).is_err() {
        Some("buffer longer than one io_uring request can carry (u32::MAX bytes)")
    } else if req
        .offset
        .checked_add(req.buf.len() as u64)
        .is_none_or(|end| end > i64::MAX as u64)
    {
        Some("offset + length beyond the largest file offset (i64::MAX)")
    } else {
        None
    };
    match reason {
        None => Ok(req),
        Some(reason) => Err(IoError::Rejected {
            reason,
            request: Box::new(req),
        }),
    }
}

/// Opens `path` read-write (with `O_DIRECT` if asked), without creating or
/// truncating it, and measures its size.
///
/// Seeking to the end gives the size of a regular file and of a block device
/// alike, with no ioctl.
fn open_device(path: &Path, direct: bool) -> Result<(File, u64), IoError> {
    let open_err = |source| IoError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = OpenOptions::new();
    opts.read(true).write(true);
    if direct {
        opts.custom_flags(libc::O_DIRECT);
    }
    let mut file = opts.open(path).map_err(open_err)?;
    let size_bytes = file.seek(SeekFrom::End(0)).map_err(open_err)?;
    Ok((file, size_bytes))
}

/// Converts an elapsed duration to whole nanoseconds, saturating.
fn duration_ns(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(offset: u64) -> IoRequest {
        IoRequest {
            tag: 9,
            kind: IoKind::Read,
            offset,
            buf: AlignedBuf::new_zeroed(BLOCK_SIZE),
        }
    }

    #[test]
    fn validate_accepts_aligned() {
        assert!(validate(req(0)).is_ok());
        assert!(validate(req(BLOCK_SIZE as u64 * 1000)).is_ok());
    }

    #[test]
    fn validate_rejects_misaligned_and_hands_back() {
        match validate(req(512)) {
            Err(IoError::Rejected { request, reason }) => {
                assert_eq!(request.tag, 9);
                assert_eq!(request.offset, 512);
                assert!(reason.contains("offset"));
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
    }

    #[test]
    fn validate_rejects_offset_overflow() {
        let off = (i64::MAX as u64) & !(BLOCK_SIZE as u64 - 1);
        assert!(matches!(validate(req(off)), Err(IoError::Rejected { .. })));
    }

    #[test]
    fn error_is_send_sync_static() {
        fn check<T: std::error::Error + Send + Sync + 'static>() {}
        check::<IoError>();
    }

    #[test]
    fn default_config() {
        let cfg = EngineConfig::default();
        assert_eq!(cfg.queue_depth, 64);
        assert!(cfg.direct);
        assert_eq!(cfg.sqpoll_idle_ms, None);
    }
}
