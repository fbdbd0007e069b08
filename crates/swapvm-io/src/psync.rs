//! `SyncEngine`: plain pread/pwrite on the calling thread (fio calls this
//! engine "psync").
//!
//! It is the reference the io_uring engine is tested against, and a fallback
//! where io_uring is unavailable. Each request completes inside `submit`
//! with one system call, so the same request gives the same answer,
//! including a short count at end of file, as one io_uring SQE does; the
//! completion is queued for `try_complete` / `wait_complete` so callers
//! drive both engines the same way.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::{
    duration_ns, open_device, validate, BlockEngine, EngineConfig, IoCompletion, IoError, IoKind,
    IoRequest,
};

/// Plain pread/pwrite on the calling thread. Completes synchronously inside
/// `submit`; completions are queued for `try_complete` / `wait_complete`.
#[derive(Debug)]
pub struct SyncEngine {
    file: File,
    size_bytes: u64,
    /// Completed and not yet taken. Its length is `in_flight()`.
    done: Mutex<VecDeque<IoCompletion>>,
}

impl SyncEngine {
    /// Opens `path` read-write, with `O_DIRECT` if `cfg.direct`. Does not
    /// create or truncate. `cfg.queue_depth` is ignored.
    ///
    /// # Errors
    ///
    /// [`IoError::Open`] naming `path` if it cannot be opened or sized.
    pub fn open(path: &Path, cfg: &EngineConfig) -> Result<SyncEngine, IoError> {
        let (file, size_bytes) = open_device(path, cfg.direct)?;
        Ok(SyncEngine {
            file,
            size_bytes,
            done: Mutex::new(VecDeque::new()),
        })
    }

    /// Locks the completion queue. A panic elsewhere cannot leave a
    /// `VecDeque` half-updated, so a poisoned lock is still usable.
    fn done(&self) -> MutexGuard<'_, VecDeque<IoCompletion>> {
        self.done.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One pread or pwrite, retried only when a signal interrupted it before
    /// any byte moved.
    fn transfer(&self, kind: IoKind, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let res = match kind {
                IoKind::Read => self.file.read_at(buf, offset),
                IoKind::Write => self.file.write_at(buf, offset),
            };
            match res {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

/// Carries out `req` at once with `transfer` and queues its completion:
/// the whole of `submit` for an engine that completes synchronously.
pub(crate) fn complete_inline(
    done: &mut VecDeque<IoCompletion>,
    req: IoRequest,
    transfer: impl FnOnce(IoKind, u64, &mut [u8]) -> io::Result<usize>,
) -> Result<(), IoError> {
    let mut req = validate(req)?;
    let start = Instant::now();
    let result = transfer(req.kind, req.offset, req.buf.as_mut_slice());
    let latency_ns = duration_ns(start.elapsed());
    done.push_back(IoCompletion::of(req, result, latency_ns));
    Ok(())
}

impl BlockEngine for SyncEngine {
    fn submit(&self, req: IoRequest) -> Result<(), IoError> {
        complete_inline(&mut self.done(), req, |kind, offset, buf| {
            self.transfer(kind, offset, buf)
        })
    }

    fn try_complete(&self) -> Option<IoCompletion> {
        self.done().pop_front()
    }

    fn wait_complete(&self) -> Result<IoCompletion, IoError> {
        // Everything submitted has already completed: if the queue is empty,
        // nothing can ever arrive, and blocking would hang forever.
        self.try_complete().ok_or(IoError::EngineGone)
    }

    fn in_flight(&self) -> usize {
        self.done().len()
    }

    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
}
