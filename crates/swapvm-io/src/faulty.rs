//! `FaultyEngine`: a fault-injecting wrapper around a real engine.
//!
//! It sits between the swap layer and a real [`BlockEngine`] (io_uring on a
//! file, or zram) and, by a seeded plan, makes requests fail the way real
//! devices fail. Everything it does not fail goes to the real device, and
//! the faults that corrupt do so on the real device too:
//!
//! - read or write errors (`EIO`), by rate or for given blocks: the request
//!   never reaches the device and completes with the error;
//! - short writes: the device writes the request with the second half of
//!   its last block garbled and reports that many bytes fewer;
//! - torn writes: the same garbled write, reported complete. Only a
//!   checksum on read-back can catch it, which is the point;
//! - a device that fills (a thin-provisioned or memory-limited device
//!   running out of space): once `full_after_blocks` distinct blocks have
//!   been written, a write to a block never written before fails with
//!   `ENOSPC`; rewriting a block already written still works;
//! - a slow disk: a read the device has finished is held until
//!   `read_delay` after its submission, then handed back (its latency
//!   includes the wait), so a reader sees a slower device.
//!
//! The caller always gets back the buffer it submitted, with the bytes it
//! meant to write: what reached the device is the wrapper's own copy.
//!
//! # Determinism
//!
//! Decisions come from a [`SimRng`] drawn a fixed number of times per
//! request (one draw per read, three per write, whatever the outcome), in
//! submission order. The emulation submits in a deterministic order, so the
//! same seed injects the same faults into the same requests, and arming one
//! fault kind does not shift the draws of another.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use swapvm_core::SimRng;

use crate::{
    validate, AlignedBuf, BlockEngine, IoCompletion, IoError, IoKind, IoRequest, BLOCK_SIZE,
};

/// What to inject, in device blocks (a swap slot is one block).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    /// Seed of the decisions.
    pub seed: u64,
    /// Probability that a read fails with `EIO`.
    pub read_error_rate: f64,
    /// Probability that a write fails with `EIO`.
    pub write_error_rate: f64,
    /// Blocks whose reads always fail.
    pub read_error_blocks: BTreeSet<u64>,
    /// Blocks whose writes always fail.
    pub write_error_blocks: BTreeSet<u64>,
    /// Probability that a write is short.
    pub short_write_rate: f64,
    /// Probability that a write is torn.
    pub torn_write_rate: f64,
    /// Distinct blocks the device can hold before it is full.
    pub full_after_blocks: Option<u64>,
    /// Each read completes no sooner than this after its submission.
    pub read_delay: Duration,
}

impl FaultPlan {
    /// True if the plan injects anything.
    pub fn any(&self) -> bool {
        self.read_error_rate > 0.0
            || self.write_error_rate > 0.0
            || !self.read_error_blocks.is_empty()
            || !self.write_error_blocks.is_empty()
            || self.short_write_rate > 0.0
            || self.torn_write_rate > 0.0
            || self.full_after_blocks.is_some()
            || !self.read_delay.is_zero()
    }
}

/// Faults injected so far, by kind.
#[derive(Debug, Default)]
pub struct FaultStats {
    read_errors: AtomicU64,
    write_errors: AtomicU64,
    short_writes: AtomicU64,
    torn_writes: AtomicU64,
    enospc: AtomicU64,
    /// Blocks of `read_error_blocks` / `write_error_blocks` that a request
    /// reached (and so failed), to tell which listed blocks never were.
    blocks_hit: Mutex<BlocksHit>,
}

/// Listed error blocks that requests reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlocksHit {
    /// Of the plan's `read_error_blocks`, those a read reached.
    pub read: BTreeSet<u64>,
    /// Of the plan's `write_error_blocks`, those a write reached.
    pub write: BTreeSet<u64>,
}

impl BlocksHit {
    /// Adds `o`'s blocks to `self`'s.
    pub fn add(&mut self, o: &BlocksHit) {
        self.read.extend(&o.read);
        self.write.extend(&o.write);
    }
}

/// A snapshot of [`FaultStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FaultCounts {
    /// Reads failed with `EIO`.
    pub read_errors: u64,
    /// Writes failed with `EIO`.
    pub write_errors: u64,
    /// Writes reported short (and garbled on the device).
    pub short_writes: u64,
    /// Writes reported complete but garbled on the device.
    pub torn_writes: u64,
    /// Writes failed with `ENOSPC` (device full).
    pub enospc: u64,
}

impl FaultCounts {
    /// Sum of every kind.
    pub fn total(&self) -> u64 {
        self.read_errors + self.write_errors + self.short_writes + self.torn_writes + self.enospc
    }
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: FaultCounts) {
        self.read_errors += o.read_errors;
        self.write_errors += o.write_errors;
        self.short_writes += o.short_writes;
        self.torn_writes += o.torn_writes;
        self.enospc += o.enospc;
    }
}

impl FaultStats {
    /// The counts now.
    pub fn snapshot(&self) -> FaultCounts {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FaultCounts {
            read_errors: l(&self.read_errors),
            write_errors: l(&self.write_errors),
            short_writes: l(&self.short_writes),
            torn_writes: l(&self.torn_writes),
            enospc: l(&self.enospc),
        }
    }

    /// The listed error blocks reached so far.
    pub fn blocks_hit(&self) -> BlocksHit {
        self.hits().clone()
    }

    fn hits(&self) -> std::sync::MutexGuard<'_, BlocksHit> {
        self.blocks_hit.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A write whose device copy differs from the caller's buffer.
#[derive(Debug)]
struct Substituted {
    /// The caller's buffer, handed back at completion.
    original: AlignedBuf,
    /// Bytes to report at most (a short write), or `None` (torn: report
    /// what the device said).
    report_at_most: Option<usize>,
}

#[derive(Debug)]
struct State {
    rng: SimRng,
    /// Completions of requests failed here, never sent to the device.
    injected: VecDeque<IoCompletion>,
    /// Writes sent to the device with a garbled copy, by tag.
    substituted: HashMap<u64, Substituted>,
    /// Blocks written at least once (for `full_after_blocks`). Only ever
    /// tested for membership, so its iteration order cannot leak.
    written: HashSet<u64>,
    /// Submission times of reads to be delayed, by tag.
    read_submitted: HashMap<u64, Instant>,
    /// Delayed reads the device has finished, with their submission
    /// times, in the order the device finished them.
    held: VecDeque<(Instant, IoCompletion)>,
}

/// A [`BlockEngine`] that injects the faults of a [`FaultPlan`] into the
/// requests of a real engine.
pub struct FaultyEngine {
    inner: Box<dyn BlockEngine>,
    plan: FaultPlan,
    state: Mutex<State>,
    stats: Arc<FaultStats>,
}

impl std::fmt::Debug for FaultyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyEngine")
            .field("plan", &self.plan)
            .field("stats", &self.stats.snapshot())
            .finish_non_exhaustive()
    }
}

/// The byte pattern a garbled half block is filled with: not zero, so a
/// zero page cannot hide it, and not a byte swapvm's stamps produce often.
const GARBAGE: u8 = 0xa5;

impl FaultyEngine {
    /// Wraps `inner`, injecting by `plan`.
    pub fn new(inner: Box<dyn BlockEngine>, plan: FaultPlan) -> Self {
        let rng = SimRng::new(plan.seed);
        FaultyEngine {
            inner,
            plan,
            state: Mutex::new(State {
                rng,
                injected: VecDeque::new(),
                substituted: HashMap::new(),
                written: HashSet::new(),
                read_submitted: HashMap::new(),
                held: VecDeque::new(),
            }),
            stats: Arc::new(FaultStats::default()),
        }
    }

    /// The counts of faults injected, shared (they keep counting).
    pub fn stats(&self) -> Arc<FaultStats> {
        Arc::clone(&self.stats)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides the fate of a write: `None` to send it as is, `Some(Err)` to
    /// fail it with that errno, `Some(Ok(report))` to send a garbled copy.
    fn decide_write(
        &self,
        st: &mut State,
        first: u64,
        nr: u64,
    ) -> Option<Result<Option<usize>, i32>> {
        let (e, t, s) = (st.rng.unit(), st.rng.unit(), st.rng.unit());
        let p = &self.plan;
        let blocks = first..first + nr;
        let listed: Vec<u64> = blocks
            .clone()
            .filter(|b| p.write_error_blocks.contains(b))
            .collect();
        self.stats.hits().write.extend(&listed);
        if e < p.write_error_rate || !listed.is_empty() {
            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
            return Some(Err(libc::EIO));
        }
        if let Some(limit) = p.full_after_blocks {
            let new = blocks.clone().filter(|b| !st.written.contains(b)).count() as u64;
            if new > 0 && st.written.len() as u64 + new > limit {
                self.stats.enospc.fetch_add(1, Ordering::Relaxed);
                return Some(Err(libc::ENOSPC));
            }
            st.written.extend(blocks);
        }
        let len = nr as usize * BLOCK_SIZE;
        if t < p.torn_write_rate {
            self.stats.torn_writes.fetch_add(1, Ordering::Relaxed);
            return Some(Ok(None));
        }
        if s < p.short_write_rate {
            self.stats.short_writes.fetch_add(1, Ordering::Relaxed);
            return Some(Ok(Some(len - BLOCK_SIZE / 2)));
        }
        None
    }

    /// A completion for a request failed before reaching the device.
    fn fail(req: IoRequest, errno: i32) -> IoCompletion {
        IoCompletion {
            tag: req.tag,
            kind: req.kind,
            offset: req.offset,
            buf: req.buf,
            result: Err(io::Error::from_raw_os_error(errno)),
            latency_ns: 0,
        }
    }

    /// A completion of the device: handed on, or held if it is a delayed
    /// read whose time has not come (then `None`).
    fn arrive(&self, c: IoCompletion) -> Option<IoCompletion> {
        let c = self.restore(c);
        let mut st = self.state();
        let Some(t0) = st.read_submitted.remove(&c.tag) else {
            return Some(c);
        };
        st.held.push_back((t0, c));
        None
    }

    /// The first held read whose delay has passed, its latency counted
    /// from submission (so it includes the delay).
    fn release(&self) -> Option<IoCompletion> {
        let mut st = self.state();
        let now = Instant::now();
        let delay = self.plan.read_delay;
        let i = st.held.iter().position(|(t0, _)| *t0 + delay <= now)?;
        let (t0, mut c) = st.held.remove(i)?;
        c.latency_ns = c.latency_ns.max(now.duration_since(t0).as_nanos() as u64);
        Some(c)
    }

    /// Gives a substituted write its caller's buffer back, and shortens
    /// the reported length of a short write.
    fn restore(&self, mut c: IoCompletion) -> IoCompletion {
        if c.kind != IoKind::Write {
            return c;
        }
        if let Some(sub) = self.state().substituted.remove(&c.tag) {
            c.buf = sub.original;
            if let (Some(at_most), Ok(n)) = (sub.report_at_most, &c.result) {
                c.result = Ok((*n).min(at_most));
            }
        }
        c
    }
}

impl BlockEngine for FaultyEngine {
    fn submit(&self, req: IoRequest) -> Result<(), IoError> {
        let req = validate(req)?;
        let first = req.offset / BLOCK_SIZE as u64;
        let nr = (req.buf.len() / BLOCK_SIZE) as u64;
        let mut st = self.state();
        match req.kind {
            IoKind::Read => {
                let r = st.rng.unit();
                let p = &self.plan;
                let listed: Vec<u64> = (first..first + nr)
                    .filter(|b| p.read_error_blocks.contains(b))
                    .collect();
                self.stats.hits().read.extend(&listed);
                if r < p.read_error_rate || !listed.is_empty() {
                    self.stats.read_errors.fetch_add(1, Ordering::Relaxed);
                    st.injected.push_back(Self::fail(req, libc::EIO));
                    return Ok(());
                }
                if !p.read_delay.is_zero() {
                    st.read_submitted.insert(req.tag, Instant::now());
                }
                drop(st);
                self.inner.submit(req)
            }
            IoKind::Write => match self.decide_write(&mut st, first, nr) {
                None => {
                    drop(st);
                    self.inner.submit(req)
                }
                Some(Err(errno)) => {
                    st.injected.push_back(Self::fail(req, errno));
                    Ok(())
                }
                Some(Ok(report_at_most)) => {
                    let mut copy = AlignedBuf::new_zeroed(req.buf.len());
                    copy.as_mut_slice().copy_from_slice(req.buf.as_slice());
                    let len = copy.len();
                    copy.as_mut_slice()[len - BLOCK_SIZE / 2..].fill(GARBAGE);
                    let tag = req.tag;
                    let garbled = IoRequest {
                        tag,
                        kind: req.kind,
                        offset: req.offset,
                        buf: copy,
                    };
                    st.substituted.insert(
                        tag,
                        Substituted {
                            original: req.buf,
                            report_at_most,
                        },
                    );
                    drop(st);
                    match self.inner.submit(garbled) {
                        Ok(()) => Ok(()),
                        Err(e) => {
                            // Hand the caller its own request back, not the copy.
                            let sub = self.state().substituted.remove(&tag);
                            match (e, sub) {
                                (IoError::Rejected { reason, request }, Some(sub)) => {
                                    Err(IoError::Rejected {
                                        reason,
                                        request: Box::new(IoRequest {
                                            buf: sub.original,
                                            ..*request
                                        }),
                                    })
                                }
                                (e, _) => Err(e),
                            }
                        }
                    }
                }
            },
        }
    }

    fn try_complete(&self) -> Option<IoCompletion> {
        if let Some(c) = self.state().injected.pop_front() {
            return Some(c);
        }
        while let Some(c) = self.inner.try_complete() {
            if let Some(c) = self.arrive(c) {
                return Some(c);
            }
        }
        self.release()
    }

    fn wait_complete(&self) -> Result<IoCompletion, IoError> {
        if let Some(c) = self.state().injected.pop_front() {
            return Ok(c);
        }
        loop {
            if let Some(c) = self.try_complete() {
                return Ok(c);
            }
            // A held read is due before anything the device may still
            // finish would need to wait for: sleep until it is released.
            let next = self.state().held.iter().map(|(t0, _)| *t0).min();
            match next {
                Some(t0) => {
                    let release = t0 + self.plan.read_delay;
                    std::thread::sleep(release.saturating_duration_since(Instant::now()));
                }
                None => {
                    let c = self.inner.wait_complete()?;
                    if let Some(c) = self.arrive(c) {
                        return Ok(c);
                    }
                }
            }
        }
    }

    fn wait_complete_timeout(&self, timeout: Duration) -> Result<Option<IoCompletion>, IoError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.try_complete() {
                return Ok(Some(c));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let next = self.state().held.iter().map(|(t0, _)| *t0).min();
            match next {
                Some(t0) => {
                    let until = (t0 + self.plan.read_delay).min(deadline);
                    std::thread::sleep(until.saturating_duration_since(now));
                }
                None => match self.inner.wait_complete_timeout(deadline - now)? {
                    Some(c) => {
                        if let Some(c) = self.arrive(c) {
                            return Ok(Some(c));
                        }
                    }
                    None => return Ok(None),
                },
            }
        }
    }

    fn in_flight(&self) -> usize {
        let st = self.state();
        self.inner.in_flight() + st.injected.len() + st.held.len()
    }

    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }

    fn ring_depth(&self) -> Option<usize> {
        self.inner.ring_depth()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EngineConfig, UringEngine};
    use std::io::Read;

    /// A 64-block file on a real disk, and a faulty io_uring engine on it.
    fn engine(plan: FaultPlan) -> (tempfile::NamedTempFile, FaultyEngine) {
        let f = tempfile::Builder::new()
            .prefix("swapvm-faulty-")
            .tempfile_in("/var/tmp")
            .expect("temp file in /var/tmp");
        f.as_file()
            .set_len(64 * BLOCK_SIZE as u64)
            .expect("size the file");
        let inner = UringEngine::open(f.path(), &EngineConfig::default())
            .expect("io_uring engine (is io_uring available?)");
        (f, FaultyEngine::new(Box::new(inner), plan))
    }

    fn write(e: &FaultyEngine, tag: u64, block: u64, byte: u8) -> IoCompletion {
        let mut buf = AlignedBuf::new_zeroed(BLOCK_SIZE);
        buf.as_mut_slice().fill(byte);
        e.submit(IoRequest {
            tag,
            kind: IoKind::Write,
            offset: block * BLOCK_SIZE as u64,
            buf,
        })
        .expect("submit");
        e.wait_complete().expect("completion")
    }

    fn on_disk(f: &tempfile::NamedTempFile, block: u64) -> Vec<u8> {
        let mut all = Vec::new();
        std::fs::File::open(f.path())
            .and_then(|mut h| h.read_to_end(&mut all))
            .expect("read back");
        let s = block as usize * BLOCK_SIZE;
        all[s..s + BLOCK_SIZE].to_vec()
    }

    #[test]
    fn torn_write_reports_success_returns_the_callers_bytes_and_garbles_the_disk() {
        let (f, e) = engine(FaultPlan {
            torn_write_rate: 1.0,
            ..FaultPlan::default()
        });
        let c = write(&e, 1, 3, 0x11);
        assert_eq!(c.result.as_ref().ok(), Some(&BLOCK_SIZE));
        assert!(
            c.buf.as_slice().iter().all(|&b| b == 0x11),
            "caller's buffer changed"
        );
        let disk = on_disk(&f, 3);
        assert!(disk[..BLOCK_SIZE / 2].iter().all(|&b| b == 0x11));
        assert!(disk[BLOCK_SIZE / 2..].iter().all(|&b| b == GARBAGE));
        assert_eq!(e.stats().snapshot().torn_writes, 1);
    }

    /// A delayed read is not handed back before its delay, by either call,
    /// and its latency counts the delay; a write is not delayed.
    #[test]
    fn read_delay_holds_reads_only() {
        let delay = Duration::from_millis(30);
        let (_f, e) = engine(FaultPlan {
            read_delay: delay,
            ..FaultPlan::default()
        });
        let w = write(&e, 1, 2, 0x33);
        assert!(w.result.is_ok());
        let read = |tag| {
            e.submit(IoRequest {
                tag,
                kind: IoKind::Read,
                offset: 2 * BLOCK_SIZE as u64,
                buf: AlignedBuf::new_zeroed(BLOCK_SIZE),
            })
            .expect("submit")
        };
        let t0 = Instant::now();
        read(2);
        while t0.elapsed() < delay / 2 {
            assert!(e.try_complete().is_none(), "a delayed read came back early");
        }
        assert_eq!(e.in_flight(), 1);
        let none = e.wait_complete_timeout(Duration::from_millis(1));
        assert!(matches!(none, Ok(None)), "a bounded wait returned {none:?}");
        let c = e.wait_complete().expect("completion");
        assert!(t0.elapsed() >= delay);
        assert!(c.latency_ns >= delay.as_nanos() as u64);
        assert!(c.buf.as_slice().iter().all(|&b| b == 0x33));
        assert_eq!(e.in_flight(), 0);
    }

    #[test]
    fn short_write_reports_fewer_bytes() {
        let (_f, e) = engine(FaultPlan {
            short_write_rate: 1.0,
            ..FaultPlan::default()
        });
        let c = write(&e, 1, 0, 0x22);
        assert_eq!(c.result.as_ref().ok(), Some(&(BLOCK_SIZE / 2)));
        assert!(c.buf.as_slice().iter().all(|&b| b == 0x22));
    }

    #[test]
    fn errors_by_block_never_reach_the_disk() {
        let (f, e) = engine(FaultPlan {
            write_error_blocks: [5].into(),
            read_error_blocks: [6].into(),
            ..FaultPlan::default()
        });
        let c = write(&e, 1, 5, 0x33);
        assert_eq!(c.result.unwrap_err().raw_os_error(), Some(libc::EIO));
        assert!(
            on_disk(&f, 5).iter().all(|&b| b == 0),
            "a failed write wrote"
        );
        assert!(write(&e, 2, 4, 0x33).result.is_ok(), "other blocks work");
        e.submit(IoRequest {
            tag: 3,
            kind: IoKind::Read,
            offset: 6 * BLOCK_SIZE as u64,
            buf: AlignedBuf::new_zeroed(BLOCK_SIZE),
        })
        .unwrap();
        let c = e.wait_complete().unwrap();
        assert_eq!((c.tag, c.kind), (3, IoKind::Read));
        assert_eq!(c.result.unwrap_err().raw_os_error(), Some(libc::EIO));
        assert_eq!(e.in_flight(), 0);
    }

    #[test]
    fn a_full_device_refuses_new_blocks_but_rewrites_old_ones() {
        let (_f, e) = engine(FaultPlan {
            full_after_blocks: Some(2),
            ..FaultPlan::default()
        });
        assert!(write(&e, 1, 10, 1).result.is_ok());
        assert!(write(&e, 2, 11, 1).result.is_ok());
        let c = write(&e, 3, 12, 1);
        assert_eq!(c.result.unwrap_err().raw_os_error(), Some(libc::ENOSPC));
        assert!(
            write(&e, 4, 10, 2).result.is_ok(),
            "rewrite of a held block"
        );
        assert_eq!(e.stats().snapshot().enospc, 1);
    }

    #[test]
    fn the_same_seed_injects_into_the_same_requests() {
        let run = |seed| {
            let (_f, e) = engine(FaultPlan {
                seed,
                write_error_rate: 0.3,
                ..FaultPlan::default()
            });
            (0..64)
                .map(|i| write(&e, i, i % 64, 7).result.is_ok())
                .collect::<Vec<_>>()
        };
        let a = run(9);
        assert_eq!(a, run(9));
        assert_ne!(a, run(10));
        assert!(a.iter().any(|&ok| ok) && a.iter().any(|&ok| !ok));
    }
}
