//! The in-flight table both io_uring engines keep: every request whose SQE
//! has been pushed and whose CQE has not been reaped, indexed by the SQE's
//! `user_data`.
//!
//! # Buffer ownership (the soundness argument)
//!
//! An SQE carries a raw pointer into a request's [`AlignedBuf`]. From the
//! moment [`InFlightTable::push`] pushes the SQE until
//! [`InFlightTable::complete`] takes the request for its CQE, the request,
//! and with it the buffer, lives in `slab[user_data]`, where no Rust code
//! reads, writes, moves out or frees it. The heap bytes of an `AlignedBuf`
//! never move when the value moves, so the pointer stays valid across the
//! move into the table. A posted CQE means the kernel is done with the
//! memory. If the table is given up while requests are in it (a ring that
//! fails, a thread that unwinds), [`InFlightTable::abandon`] and `Drop` leak
//! their buffers rather than free them, so the kernel can never write into
//! memory the allocator has handed to someone else.

use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use io_uring::squeue::SubmissionQueue;

use crate::queue::{rw_entry, Target};
use crate::{duration_ns, AlignedBuf, IoCompletion, IoRequest};

/// A request whose SQE has been pushed and whose CQE has not been reaped.
struct InFlight {
    /// Owns the buffer the kernel is using. Untouched until the CQE arrives.
    req: IoRequest,
    /// When its SQE was pushed.
    started: Instant,
}

/// See the module documentation.
#[derive(Default)]
pub(crate) struct InFlightTable {
    slab: Vec<Option<InFlight>>,
    /// Unoccupied indices of `slab`.
    free: Vec<usize>,
    /// Occupied slots.
    len: usize,
}

impl InFlightTable {
    pub(crate) fn with_capacity(depth: usize) -> Self {
        InFlightTable {
            slab: Vec::with_capacity(depth),
            free: Vec::with_capacity(depth),
            len: 0,
        }
    }

    /// Requests in the kernel.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Moves `req` into a slot and pushes its SQE on `sq`. Hands the
    /// request back if the SQ is full.
    fn push(
        &mut self,
        sq: &mut SubmissionQueue<'_>,
        target: Target,
        req: IoRequest,
        started: Instant,
    ) -> Result<(), IoRequest> {
        if sq.is_full() {
            return Err(req);
        }
        let idx = self.free.pop().unwrap_or_else(|| {
            self.slab.push(None);
            self.slab.len() - 1
        });
        let slot = self.slab[idx].insert(InFlight { req, started });
        // `validate` rejected buffers longer than u32::MAX at submit.
        let len = u32::try_from(slot.req.buf.len()).unwrap_or(u32::MAX);
        let ptr = slot.req.buf.as_mut_ptr();
        let entry =
            rw_entry(target, slot.req.kind, ptr, len, slot.req.offset, None).user_data(idx as u64);
        // SAFETY: the SQE points at `slot.req.buf`, whose owner now sits in
        // `slab[idx]` and stays there, unread, unmoved and unfreed, until the
        // CQE with user_data `idx` is reaped (or is leaked if the table is
        // abandoned first); the heap bytes of an `AlignedBuf` do not move
        // with it. The length is the buffer's own. The engines keep the
        // target file open for as long as any request is in the kernel.
        match unsafe { sq.push(&entry) } {
            Ok(()) => {
                self.len += 1;
                Ok(())
            }
            // Unreachable: the SQ had room. The slot was filled above.
            Err(_) => {
                self.free.push(idx);
                self.slab[idx].take().map_or(Ok(()), |f| Err(f.req))
            }
        }
    }

    /// Pushes SQEs for requests from the front of `pending`, in order,
    /// while fewer than `depth` are in the kernel or until the SQ is full.
    /// Returns how many it pushed.
    pub(crate) fn push_from(
        &mut self,
        sq: &mut SubmissionQueue<'_>,
        target: Target,
        depth: usize,
        pending: &mut VecDeque<IoRequest>,
    ) -> usize {
        let started = Instant::now();
        let mut pushed = 0;
        while self.len < depth {
            let Some(req) = pending.pop_front() else {
                break;
            };
            if let Err(back) = self.push(sq, target, req, started) {
                pending.push_front(back);
                break;
            }
            pushed += 1;
        }
        pushed
    }

    /// The completion for the CQE (`user_data`, `res`), reaped at
    /// `reaped_at`; `None` for a `user_data` with no request.
    pub(crate) fn complete(
        &mut self,
        user_data: u64,
        res: i32,
        reaped_at: Instant,
    ) -> Option<IoCompletion> {
        let idx = usize::try_from(user_data).ok()?;
        let InFlight { req, started } = self.slab.get_mut(idx).and_then(Option::take)?;
        // The kernel is done with the buffer: its CQE is posted.
        self.free.push(idx);
        self.len -= 1;
        let result = usize::try_from(res).map_err(|_| io::Error::from_raw_os_error(-res));
        let latency_ns = duration_ns(reaped_at.saturating_duration_since(started));
        Some(IoCompletion::of(req, result, latency_ns))
    }

    /// Gives up every request in the table: the kernel may still write into
    /// their buffers, so those are leaked, and each request's completion
    /// carries `err()` with a fresh buffer of the same length.
    pub(crate) fn abandon(&mut self, err: impl Fn() -> io::Error) -> Vec<IoCompletion> {
        let mut out = Vec::with_capacity(self.len);
        for slot in &mut self.slab {
            let Some(InFlight { mut req, .. }) = slot.take() else {
                continue;
            };
            let fresh = AlignedBuf::new_zeroed(req.buf.len());
            std::mem::forget(std::mem::replace(&mut req.buf, fresh));
            out.push(IoCompletion::of(req, Err(err()), 0));
        }
        self.free.clear();
        self.free.extend(0..self.slab.len());
        self.len = 0;
        out
    }
}

impl Drop for InFlightTable {
    fn drop(&mut self) {
        // Normally empty here. If not (a panic, a failed ring), the kernel
        // may still own these buffers: leak them.
        for slot in &mut self.slab {
            if let Some(InFlight { req, .. }) = slot.take() {
                std::mem::forget(req.buf);
            }
        }
    }
}
