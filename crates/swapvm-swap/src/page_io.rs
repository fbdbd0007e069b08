//! Swap I/O (mm/page_io.c): `swap_writepage` and `swap_read_folio` as real
//! block requests to the device's engine, and their delivery back to the
//! emulation.
//!
//! Determinism: each read is due `io_latency_ticks` after the tick it was
//! submitted in, each write `io_write_latency_ticks` after (real devices
//! take longer to write than to read, and a write due later lets the disk
//! finish it while the emulation goes on). [`SwapSubsystem::complete_due`]
//! hands back every request due by `now`, in submission order, waiting for the real completion if the
//! disk is slower than the emulated latency. The real latency is measured
//! and reported, but never reorders the emulation, so the same seed gives
//! the same counters on any disk.
//!
//! Plugging (`blk_start_plug` around reclaim, the block layer's merging):
//! on an image file without fault injection, writes are held in a plug
//! until [`SwapSubsystem::blk_finish_plug`] (the machine calls it after
//! every tick's tasks) or until something waits for one; then writes to
//! adjacent slots go to the disk as one request of up to
//! [`MERGE_MAX_PAGES`] pages (`writes_merged` counts the ones folded in,
//! as `/proc/diskstats` does). Each folio still gets its own completion at
//! its own due tick, so plugging changes the disk's work, never the
//! emulation. Fault injection acts per request, so a device with a fault
//! plan is never merged, keeping injected faults per folio.

use crate::swapfile::{SwapError, SwapSubsystem};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use swapvm_core::{SwapType, SwpEntry, VmEvent, PAGE_SIZE};
use swapvm_io::{AlignedBuf, BlockEngine, IoCompletion, IoKind, IoRequest};

/// A finished swap I/O, as the emulation sees it.
#[derive(Debug)]
pub struct SwapIoDone {
    /// The caller's cookie (the folio's head pfn, for swapvm-mm).
    pub cookie: u64,
    /// Read or write.
    pub kind: IoKind,
    /// First slot.
    pub entry: SwpEntry,
    /// Slots.
    pub nr: u32,
    /// The data read (for reads), or the buffer written.
    pub buf: AlignedBuf,
    /// The engine's result; a short transfer is reported as an error here.
    pub result: io::Result<()>,
    /// Real latency.
    pub latency_ns: u64,
    /// zswap served it whole (a store or a load): no device I/O, and its
    /// latency is the codec's, not the device's.
    pub zswap: bool,
}

/// Most pages one merged write request carries (256 KiB, well under the
/// `max_sectors_kb` of common disks).
pub const MERGE_MAX_PAGES: u64 = 64;

/// A write held in the plug.
#[derive(Debug)]
struct Plugged {
    tag: u64,
    ty: SwapType,
    offset: u64,
    buf: AlignedBuf,
}

/// The parts of a merged request: each one's own tag, byte offset in the
/// request and length.
type MergedParts = Vec<(u64, usize, usize)>;

#[derive(Debug)]
struct Pending {
    tag: u64,
    due: u64,
    cookie: u64,
    kind: IoKind,
    entry: SwpEntry,
    nr: u32,
    /// Pages zswap holds within a device read (by index in the request),
    /// decompressed when it was submitted: they replace what the device
    /// returns for them.
    overlay: Vec<(usize, Vec<u8>)>,
}

/// Per-device I/O figures.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeviceIoStats {
    /// Reads submitted.
    pub reads: u64,
    /// Writes submitted.
    pub writes: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Most requests in flight at once, as the emulation queues them: in
    /// the ring, waiting in the engine for a ring entry, or plugged.
    pub max_in_flight: u64,
    /// Writes merged into an adjacent one before reaching the disk.
    pub writes_merged: u64,
}

/// The engines and the in-flight queue.
pub(crate) struct PageIo {
    engines: Vec<Option<Box<dyn BlockEngine>>>,
    stats: Vec<DeviceIoStats>,
    pending: VecDeque<Pending>,
    arrived: BTreeMap<u64, IoCompletion>,
    next_tag: u64,
    latency_ticks: u64,
    write_latency_ticks: u64,
    /// Free buffers by length in blocks (`pool[n - 1]` holds `n`-block
    /// buffers, `n` up to [`MERGE_MAX_PAGES`]): a merged write or a
    /// readahead read reuses one instead of allocating and zeroing it,
    /// which the allocator serves with fresh, faulted-in pages at these
    /// sizes.
    pool: Vec<Vec<AlignedBuf>>,
    /// Per device: writes may be plugged and merged.
    mergeable: Vec<bool>,
    plug: Vec<Plugged>,
    /// Merged requests in flight, by their tag.
    merged: BTreeMap<u64, MergedParts>,
    /// Wall time blocked waiting for due reads and writes (ns): how much
    /// of a run the disk, not the emulation, took.
    wait_ns: [u64; 2],
    /// Content bytes of each page handed to `swap_writepage` (and put at
    /// the start of its block): `PAGE_SIZE`, or the content word of a
    /// metadata-only machine.
    page_bytes: usize,
    /// zswap stores and loads, complete already, by the tick they are
    /// delivered at.
    zswap_done: VecDeque<(u64, SwapIoDone)>,
}

impl std::fmt::Debug for PageIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageIo")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl PageIo {
    pub(crate) fn new(latency_ticks: u64) -> Self {
        PageIo {
            engines: Vec::new(),
            stats: Vec::new(),
            pending: VecDeque::new(),
            arrived: BTreeMap::new(),
            next_tag: 1,
            latency_ticks: latency_ticks.max(1),
            write_latency_ticks: latency_ticks.max(1),
            pool: (0..MERGE_MAX_PAGES).map(|_| Vec::new()).collect(),
            mergeable: Vec::new(),
            plug: Vec::new(),
            merged: BTreeMap::new(),
            wait_ns: [0; 2],
            page_bytes: PAGE_SIZE,
            zswap_done: VecDeque::new(),
        }
    }

    /// `mergeable`: writes to the device may be plugged and merged.
    pub(crate) fn attach(&mut self, ty: SwapType, engine: Box<dyn BlockEngine>, mergeable: bool) {
        let i = ty.0 as usize;
        if self.engines.len() <= i {
            self.engines.resize_with(i + 1, || None);
            self.stats.resize(i + 1, DeviceIoStats::default());
            self.mergeable.resize(i + 1, false);
        }
        self.engines[i] = Some(engine);
        self.stats[i] = DeviceIoStats::default();
        self.mergeable[i] = mergeable;
    }

    /// Drops the engine of a device being removed (swapoff).
    pub(crate) fn detach(&mut self, ty: SwapType) {
        if let Some(e) = self.engines.get_mut(ty.0 as usize) {
            *e = None;
        }
    }

    /// The blocks that carry `data`, pages of `page_bytes` each, every
    /// page at the start of its block; and how many pages that is.
    fn write_buf(&mut self, data: &[u8]) -> (u32, AlignedBuf) {
        let pb = self.page_bytes;
        let nr = data.len() / pb;
        let mut buf = self.buf(nr * PAGE_SIZE);
        if pb == PAGE_SIZE {
            buf.as_mut_slice().copy_from_slice(data);
        } else {
            // Only the head of each block carries content; the rest is
            // whatever the pooled buffer held, and no reader looks there.
            for (block, page) in buf
                .as_mut_slice()
                .chunks_exact_mut(PAGE_SIZE)
                .zip(data.chunks_exact(pb))
            {
                block[..pb].copy_from_slice(page);
            }
        }
        (nr as u32, buf)
    }

    /// A buffer of `len` bytes, pooled if one is free. Its bytes are
    /// whatever it held last: every caller overwrites all it reads back.
    fn buf(&mut self, len: usize) -> AlignedBuf {
        let class = (len / PAGE_SIZE).wrapping_sub(1);
        if len % PAGE_SIZE == 0 {
            if let Some(b) = self.pool.get_mut(class).and_then(Vec::pop) {
                return b;
            }
        }
        AlignedBuf::new_zeroed(len)
    }

    /// Keeps `buf` for reuse: up to 1024 single blocks, fewer of the
    /// larger sizes (at most 64 blocks' worth of each; 20 MiB in all).
    fn recycle(&mut self, buf: AlignedBuf) {
        let blocks = buf.len() / PAGE_SIZE;
        if buf.len() % PAGE_SIZE != 0 {
            return;
        }
        let cap = if blocks == 1 {
            1024
        } else {
            (64 / blocks.max(1)).max(1)
        };
        if let Some(free) = self.pool.get_mut(blocks.wrapping_sub(1)) {
            if free.len() < cap {
                free.push(buf);
            }
        }
    }
}

impl SwapSubsystem {
    /// Sets how many content bytes each page given to
    /// [`SwapSubsystem::swap_writepage`] has: `PAGE_SIZE` (the default,
    /// whole pages) or, on a metadata-only machine, its content word
    /// (`CONTENT_WORD_BYTES`), which goes at the start of the page's block.
    /// Requests are whole blocks either way, so counts, offsets and
    /// completions do not depend on it.
    ///
    /// # Panics
    /// If `n` is zero or above `PAGE_SIZE`: a wiring bug.
    pub fn set_page_bytes(&mut self, n: usize) {
        assert!(
            (1..=PAGE_SIZE).contains(&n),
            "page content of {n} bytes: must be 1..=PAGE_SIZE"
        );
        self.io.page_bytes = n;
    }

    fn submit(
        &mut self,
        kind: IoKind,
        entry: SwpEntry,
        nr: u32,
        buf: AlignedBuf,
        cookie: u64,
        now: u64,
    ) -> Result<(), SwapError> {
        let ty = entry.ty();
        let io = &mut self.io;
        let Some(engine) = io.engines.get(ty.0 as usize).and_then(Option::as_ref) else {
            return Err(self.engine_error(ty, swapvm_io::IoError::EngineGone));
        };
        let tag = io.next_tag;
        let offset = entry.offset().0 * PAGE_SIZE as u64;
        let in_flight = if kind == IoKind::Write && io.mergeable[ty.0 as usize] {
            io.plug.push(Plugged {
                tag,
                ty,
                offset,
                buf,
            });
            (engine.in_flight() + io.plug.len()) as u64
        } else {
            let req = IoRequest {
                tag,
                kind,
                offset,
                buf,
            };
            if let Err(source) = engine.submit(req) {
                return Err(self.engine_error(ty, source));
            }
            engine.in_flight() as u64
        };
        // As a plug is flushed once it holds a big enough request: the
        // first full merged request goes to the disk while reclaim goes on
        // filling the next, instead of all of them waiting for the tick's
        // end. Only the disk's requests change, never a completion's tick.
        let flush = kind == IoKind::Write && io.plug.len() >= MERGE_MAX_PAGES as usize;
        io.next_tag += 1;
        io.pending.push_back(Pending {
            tag,
            due: now
                + match kind {
                    IoKind::Read => io.latency_ticks,
                    IoKind::Write => io.write_latency_ticks,
                },
            cookie,
            kind,
            entry,
            nr,
            overlay: Vec::new(),
        });
        let st = &mut io.stats[ty.0 as usize];
        let bytes = u64::from(nr) * PAGE_SIZE as u64;
        match kind {
            IoKind::Read => {
                st.reads += 1;
                st.bytes_read += bytes;
            }
            IoKind::Write => {
                st.writes += 1;
                st.bytes_written += bytes;
            }
        }
        st.max_in_flight = st.max_in_flight.max(in_flight);
        if flush {
            self.blk_finish_plug();
        }
        Ok(())
    }

    /// The error of an engine of device `ty` refusing a request.
    fn engine_error(&self, ty: SwapType, source: swapvm_io::IoError) -> SwapError {
        let path = self
            .device_path(ty)
            .map(|p| p.to_owned())
            .unwrap_or_default();
        SwapError::Engine { path, source }
    }

    /// `swap_writepage`: writes `data` (pages of the content size set by
    /// [`SwapSubsystem::set_page_bytes`], whole pages by default) to the
    /// slots from `entry`, each page at the start of its slot's block.
    /// Counts `pswpout`.
    ///
    /// # Context
    /// The folio is locked, unmapped and marked under writeback by the
    /// caller until the completion is delivered.
    pub fn swap_writepage(
        &mut self,
        entry: SwpEntry,
        data: &[u8],
        cookie: u64,
        now: u64,
    ) -> Result<(), SwapError> {
        let (nr, buf) = self.io.write_buf(data);
        self.submit(IoKind::Write, entry, nr, buf, cookie, now)?;
        self.stat.add(VmEvent::PswpOut, u64::from(nr));
        Ok(())
    }

    /// `swap_read_folio`: reads `nr` slots from `entry`, each from zswap
    /// if it holds the page (`zswpin`), else from the device (`pswpin`).
    /// Returns the pages read from the device.
    ///
    /// # Context
    /// The target folio is locked and in the swap cache until the
    /// completion is delivered.
    pub fn swap_read_folio(
        &mut self,
        entry: SwpEntry,
        nr: u32,
        cookie: u64,
        now: u64,
    ) -> Result<u32, SwapError> {
        let t0 = std::time::Instant::now();
        let pages = self.zswap_load(entry, nr);
        let mut buf = self.io.buf(nr as usize * PAGE_SIZE);
        let hits = pages.iter().flatten().count() as u32;
        if hits == nr {
            for (block, page) in buf
                .as_mut_slice()
                .chunks_exact_mut(PAGE_SIZE)
                .zip(pages.iter().flatten())
            {
                block[..page.len()].copy_from_slice(page);
            }
            let latency_ns = t0.elapsed().as_nanos() as u64;
            self.zswap_done(IoKind::Read, entry, nr, buf, cookie, now, latency_ns);
            return Ok(0);
        }
        self.submit(IoKind::Read, entry, nr, buf, cookie, now)?;
        if hits > 0 {
            if let Some(p) = self.io.pending.back_mut() {
                p.overlay = pages
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, page)| page.map(|page| (i, page)))
                    .collect();
            }
        }
        self.stat.add(VmEvent::PswpIn, u64::from(nr - hits));
        Ok(nr - hits)
    }

    /// Queues the completion of a request zswap served whole, for delivery
    /// at the next tick.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn zswap_done(
        &mut self,
        kind: IoKind,
        entry: SwpEntry,
        nr: u32,
        buf: AlignedBuf,
        cookie: u64,
        now: u64,
        latency_ns: u64,
    ) {
        let done = SwapIoDone {
            cookie,
            kind,
            entry,
            nr,
            buf,
            result: Ok(()),
            latency_ns,
            zswap: true,
        };
        self.io.zswap_done.push_back((now + 1, done));
    }

    /// The completion of a store zswap took: the buffer carries the bytes
    /// stored, as a device write's does, for the verifier.
    pub(crate) fn zswap_write_done(&mut self, entry: SwpEntry, data: &[u8], cookie: u64, now: u64) {
        let (nr, buf) = self.io.write_buf(data);
        self.zswap_done(IoKind::Write, entry, nr, buf, cookie, now, 0);
    }

    /// Content bytes per page (see [`SwapSubsystem::set_page_bytes`]).
    pub(crate) fn io_page_bytes(&self) -> usize {
        self.io.page_bytes
    }

    /// Writes `data` (pages of content) to the slots from `entry` now and
    /// waits for the write: zswap's writeback. Counts `pswpout` and the
    /// device's write figures.
    pub(crate) fn write_sync(&mut self, entry: SwpEntry, data: &[u8]) -> io::Result<()> {
        let (nr, buf) = self.io.write_buf(data);
        let ty = entry.ty();
        let tag = self.io.next_tag;
        self.io.next_tag += 1;
        let Some(engine) = self.io.engines.get(ty.0 as usize).and_then(Option::as_ref) else {
            return Err(io::Error::other("swap device engine gone"));
        };
        let req = IoRequest {
            tag,
            kind: IoKind::Write,
            offset: entry.offset().0 * PAGE_SIZE as u64,
            buf,
        };
        engine
            .submit(req)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let want = nr as usize * PAGE_SIZE;
        if let Some(st) = self.io.stats.get_mut(ty.0 as usize) {
            st.writes += 1;
            st.bytes_written += want as u64;
        }
        self.stat.add(VmEvent::PswpOut, u64::from(nr));
        let c = self.wait_tag(ty, tag, IoKind::Write)?;
        let r = match c.result {
            Ok(n) if n == want => Ok(()),
            Ok(n) => Err(io::Error::other(format!(
                "short write: {n} of {want} bytes"
            ))),
            Err(e) => Err(e),
        };
        if r.is_err() {
            if let Some(st) = self.io.stats.get_mut(ty.0 as usize) {
                st.errors += 1;
            }
        }
        self.io.recycle(c.buf);
        r
    }

    /// `hib_submit_io` (kernel/power/swap.c) writing one page of a
    /// hibernation image to the slot `entry`. Not `pswpout`: the image is
    /// not swap.
    ///
    /// # Context
    /// `entry` is a hibernation slot of the image being written; `data`
    /// is the frame's content (`PAGE_SIZE` bytes, or its content word, see
    /// [`SwapSubsystem::set_page_bytes`]).
    pub fn hib_write_page(
        &mut self,
        entry: SwpEntry,
        data: &[u8],
        cookie: u64,
        now: u64,
    ) -> Result<(), SwapError> {
        let pb = self.io.page_bytes;
        let (_, buf) = self.io.write_buf(&data[..pb]);
        self.submit(IoKind::Write, entry, 1, buf, cookie, now)
    }

    /// `hib_submit_io` reading one page of a hibernation image back from
    /// the slot `entry`. Not `pswpin`.
    ///
    /// # Context
    /// `entry` is a hibernation slot of an image written before.
    pub fn hib_read_page(
        &mut self,
        entry: SwpEntry,
        cookie: u64,
        now: u64,
    ) -> Result<(), SwapError> {
        let buf = self.io.buf(PAGE_SIZE);
        self.submit(IoKind::Read, entry, 1, buf, cookie, now)
    }

    /// Swap I/Os submitted and not yet delivered.
    pub fn io_in_flight(&self) -> usize {
        self.io.pending.len() + self.io.zswap_done.len()
    }

    /// Ticks after submission at which a write is due (at least 1;
    /// `io_write_latency_ticks`, by default the read latency).
    pub fn set_write_latency_ticks(&mut self, ticks: u64) {
        self.io.write_latency_ticks = ticks.max(1);
    }

    /// Tick at which the next in-flight I/O is due.
    pub fn next_io_due(&self) -> Option<u64> {
        let zswap = self.io.zswap_done.front().map(|(due, _)| *due);
        self.io.pending.iter().map(|p| p.due).chain(zswap).min()
    }

    /// Every I/O due by tick `now`, in submission order; blocks for real
    /// completions that have not arrived yet.
    pub fn complete_due(&mut self, now: u64) -> Vec<SwapIoDone> {
        // The writes of the last tick reach the disk now, merged.
        self.blk_finish_plug();
        let mut out = Vec::new();
        // zswap's completions first: they were done before any device's.
        while self
            .io
            .zswap_done
            .front()
            .is_some_and(|(due, _)| *due <= now)
        {
            out.extend(self.io.zswap_done.pop_front().map(|(_, d)| d));
        }
        // Reads and writes have their own latencies, so the queue (in
        // submission order) is sorted by due tick only within a kind.
        let mut due = VecDeque::new();
        if self.io.latency_ticks == self.io.write_latency_ticks {
            while self.io.pending.front().is_some_and(|p| p.due <= now) {
                due.extend(self.io.pending.pop_front());
            }
        } else if self.io.pending.iter().any(|p| p.due <= now) {
            let (d, rest) = std::mem::take(&mut self.io.pending)
                .into_iter()
                .partition(|p| p.due <= now);
            due = d;
            self.io.pending = rest;
        }
        for p in due {
            let c = self.wait_tag(p.entry.ty(), p.tag, p.kind);
            out.push(self.done_of(p, c));
        }
        out
    }

    /// The emulation's view of pending request `p` finished as `c`.
    fn done_of(&mut self, p: Pending, c: io::Result<IoCompletion>) -> SwapIoDone {
        let want = p.nr as usize * PAGE_SIZE;
        let (result, mut buf, latency_ns) = match c {
            Ok(c) => {
                let r = match c.result {
                    Ok(n) if n == want => Ok(()),
                    Ok(n) => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("short transfer: {n} of {want} bytes"),
                    )),
                    Err(e) => Err(e),
                };
                (r, c.buf, c.latency_ns)
            }
            Err(e) => (Err(e), AlignedBuf::new_zeroed(want), 0),
        };
        // Pages of the batch that zswap held are laid over the read.
        for (i, page) in &p.overlay {
            let at = i * PAGE_SIZE;
            buf.as_mut_slice()[at..at + page.len()].copy_from_slice(page);
        }
        if result.is_err() {
            if let Some(st) = self.io.stats.get_mut(p.entry.ty().0 as usize) {
                st.errors += 1;
            }
        }
        SwapIoDone {
            cookie: p.cookie,
            kind: p.kind,
            entry: p.entry,
            nr: p.nr,
            buf,
            result,
            latency_ns,
            zswap: false,
        }
    }

    /// Realtime delivery: every I/O the disk has finished by now, in
    /// submission order among themselves, whatever its due tick; never
    /// blocks. Plugged writes go to the disk first.
    pub fn complete_ready(&mut self) -> Vec<SwapIoDone> {
        self.blk_finish_plug();
        self.reap_ready();
        // zswap finished its loads and stores when they were made.
        let mut out: Vec<SwapIoDone> = self.io.zswap_done.drain(..).map(|(_, d)| d).collect();
        if self.io.arrived.is_empty() {
            return out;
        }
        for p in std::mem::take(&mut self.io.pending) {
            match self.io.arrived.remove(&p.tag) {
                Some(c) => out.push(self.done_of(p, Ok(c))),
                None => self.io.pending.push_back(p),
            }
        }
        out
    }

    /// Takes every completion the engines hold now, without waiting.
    fn reap_ready(&mut self) {
        let mut got = Vec::new();
        for e in self.io.engines.iter().flatten() {
            while let Some(c) = e.try_complete() {
                got.push(c);
            }
        }
        for c in got {
            self.arrive(c);
        }
    }

    /// A completion from an engine: split if it was a merged request.
    fn arrive(&mut self, c: IoCompletion) {
        match self.io.merged.remove(&c.tag) {
            Some(parts) => self.split_merged(c, &parts),
            None => {
                self.io.arrived.insert(c.tag, c);
            }
        }
    }

    /// Realtime: blocks until the disk finishes a request of the device of
    /// the oldest request not yet finished, or `timeout` passes, for a
    /// caller with nothing else to run. False if nothing is in flight. An
    /// engine that fails the wait fails that request.
    pub fn wait_ready(&mut self, timeout: std::time::Duration) -> bool {
        self.blk_finish_plug();
        if !self.io.zswap_done.is_empty() {
            return true; // zswap's completions are ready now
        }
        let Some((ty, tag, kind)) = self
            .io
            .pending
            .iter()
            .find(|p| !self.io.arrived.contains_key(&p.tag))
            .map(|p| (p.entry.ty(), p.tag, p.kind))
        else {
            return !self.io.pending.is_empty();
        };
        let Some(engine) = self.io.engines.get(ty.0 as usize).and_then(Option::as_ref) else {
            let e = io::Error::other("swap device engine gone");
            self.fail_pending(tag, kind, e);
            return true;
        };
        let t0 = std::time::Instant::now();
        let r = engine.wait_complete_timeout(timeout);
        self.io.wait_ns[usize::from(kind == IoKind::Write)] += t0.elapsed().as_nanos() as u64;
        match r {
            Ok(Some(c)) => self.arrive(c),
            Ok(None) => {}
            Err(e) => self.fail_pending(tag, kind, io::Error::other(e.to_string())),
        }
        true
    }

    /// Completes pending request `tag` with error `e`.
    fn fail_pending(&mut self, tag: u64, kind: IoKind, e: io::Error) {
        let len = self
            .io
            .pending
            .iter()
            .find(|p| p.tag == tag)
            .map_or(PAGE_SIZE, |p| p.nr as usize * PAGE_SIZE);
        let c = IoCompletion {
            tag,
            kind,
            offset: 0,
            buf: AlignedBuf::new_zeroed(len),
            result: Err(e),
            latency_ns: 0,
        };
        self.io.arrived.insert(tag, c);
    }

    /// Host bytes device `ty`'s engine keeps for its blocks (see
    /// `BlockEngine::host_bytes`); 0 for a device not swapped on.
    pub fn engine_host_bytes(&self, ty: SwapType) -> u64 {
        let engine = self.io.engines.get(ty.0 as usize).and_then(Option::as_ref);
        engine.map_or(0, |e| e.host_bytes())
    }

    /// Requests the engines hold (in their rings or their own queues, and
    /// plugged): the queue depth the devices see.
    pub fn device_in_flight(&self) -> usize {
        let engines: usize = self
            .io
            .engines
            .iter()
            .flatten()
            .map(|e| e.in_flight())
            .sum();
        engines + self.io.plug.len()
    }

    /// The completion of request `tag` (a `kind`) on device `ty`, waiting
    /// for it if the disk has not finished it. Only the time blocked in the
    /// engine counts as waiting (`io_wait_ns`): a completion already there
    /// is taken without reading the clock.
    fn wait_tag(&mut self, ty: SwapType, tag: u64, kind: IoKind) -> io::Result<IoCompletion> {
        if self.io.plug.iter().any(|p| p.tag == tag) {
            self.blk_finish_plug();
        }
        loop {
            if let Some(c) = self.io.arrived.remove(&tag) {
                return Ok(c);
            }
            let Some(engine) = self.io.engines.get(ty.0 as usize).and_then(Option::as_ref) else {
                return Err(io::Error::other("swap device engine gone"));
            };
            let next = match engine.try_complete() {
                Some(c) => Ok(c),
                None => {
                    let t0 = std::time::Instant::now();
                    let r = engine.wait_complete();
                    self.io.wait_ns[usize::from(kind == IoKind::Write)] +=
                        t0.elapsed().as_nanos() as u64;
                    r
                }
            };
            match next {
                Ok(c) => self.arrive(c),
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
    }

    /// Hands each part of a merged request its own completion: its slice
    /// of the buffer, and the bytes of the transfer that fell in it.
    fn split_merged(&mut self, c: IoCompletion, parts: &MergedParts) {
        for &(tag, off, len) in parts {
            let mut buf = self.io.buf(len);
            buf.as_mut_slice()
                .copy_from_slice(&c.buf.as_slice()[off..off + len]);
            let result = match &c.result {
                Ok(n) => Ok(n.saturating_sub(off).min(len)),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            self.io.arrived.insert(
                tag,
                IoCompletion {
                    tag,
                    kind: c.kind,
                    offset: c.offset + off as u64,
                    buf,
                    result,
                    latency_ns: c.latency_ns,
                },
            );
        }
        self.recycle(c.buf);
    }

    /// `blk_finish_plug`: sends the plugged writes to their disks, adjacent
    /// slots of one device merged into one request.
    pub fn blk_finish_plug(&mut self) {
        if self.io.plug.is_empty() {
            return;
        }
        let mut plug = std::mem::take(&mut self.io.plug);
        // As the plug list is sorted before it is issued: by device, then
        // by offset, so runs of adjacent slots line up.
        plug.sort_by_key(|p| (p.ty.0, p.offset));
        let max = MERGE_MAX_PAGES as usize * PAGE_SIZE;
        let mut runs: Vec<(usize, usize)> = Vec::new(); // (parts, bytes)
        let mut prev: Option<(SwapType, u64)> = None;
        for p in &plug {
            let len = p.buf.len();
            match runs.last_mut() {
                Some((n, bytes)) if prev == Some((p.ty, p.offset)) && *bytes + len <= max => {
                    *n += 1;
                    *bytes += len;
                }
                _ => runs.push((1, len)),
            }
            prev = Some((p.ty, p.offset + len as u64));
        }
        let mut it = plug.into_iter();
        for (n, bytes) in runs {
            let run: Vec<Plugged> = it.by_ref().take(n).collect();
            let (ty, offset) = (run[0].ty, run[0].offset);
            let mut parts: MergedParts = Vec::with_capacity(n);
            let (tag, buf) = if n == 1 {
                let p = run.into_iter().next().map(|p| (p.tag, p.buf));
                let Some((tag, buf)) = p else { continue };
                parts.push((tag, 0, bytes));
                (tag, buf)
            } else {
                // Every byte is overwritten by the parts below.
                let mut buf = self.io.buf(bytes);
                let mut off = 0;
                for p in &run {
                    let len = p.buf.len();
                    buf.as_mut_slice()[off..off + len].copy_from_slice(p.buf.as_slice());
                    parts.push((p.tag, off, len));
                    off += len;
                }
                for p in run {
                    self.recycle(p.buf);
                }
                let tag = self.io.next_tag;
                self.io.next_tag += 1;
                if let Some(st) = self.io.stats.get_mut(ty.0 as usize) {
                    st.writes_merged += (n - 1) as u64;
                }
                (tag, buf)
            };
            let req = IoRequest {
                tag,
                kind: IoKind::Write,
                offset,
                buf,
            };
            let sent = match self.io.engines.get(ty.0 as usize).and_then(Option::as_ref) {
                Some(engine) => engine.submit(req).map_err(|e| e.to_string()),
                None => Err("swap device engine gone".to_owned()),
            };
            match sent {
                Ok(()) if n > 1 => {
                    self.io.merged.insert(tag, parts);
                }
                Ok(()) => {}
                Err(why) => {
                    // Each part completes with the error at its due tick.
                    for (t, off, len) in parts {
                        let c = IoCompletion {
                            tag: t,
                            kind: IoKind::Write,
                            offset: offset + off as u64,
                            buf: AlignedBuf::new_zeroed(len),
                            result: Err(io::Error::other(why.clone())),
                            latency_ns: 0,
                        };
                        self.io.arrived.insert(t, c);
                    }
                }
            }
        }
    }

    /// Returns a buffer from a delivered I/O for reuse.
    pub fn recycle(&mut self, buf: AlignedBuf) {
        self.io.recycle(buf);
    }

    /// Wall time the emulation has waited for reads and for writes that
    /// were due but not yet complete, in ns (measured, never fed back).
    pub fn io_wait_ns(&self) -> (u64, u64) {
        (self.io.wait_ns[0], self.io.wait_ns[1])
    }

    /// Entries of the io_uring ring of device `ty`'s engine, `None` for
    /// an engine without one (zram, null, plain pread/pwrite).
    pub fn ring_depth(&self, ty: SwapType) -> Option<usize> {
        self.io
            .engines
            .get(ty.0 as usize)
            .and_then(Option::as_ref)
            .and_then(|e| e.ring_depth())
    }

    /// I/O figures of device `ty` (zero for a device never on).
    pub fn io_stats(&self, ty: SwapType) -> DeviceIoStats {
        self.io
            .stats
            .get(ty.0 as usize)
            .copied()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recycled buffer comes back for a request of its own length and
    /// no other; lengths outside the pooled sizes are never kept.
    #[test]
    fn pool_reuses_buffers_by_length() {
        let mut io = PageIo::new(1);
        let mut eight = io.buf(8 * PAGE_SIZE);
        eight.as_mut_slice()[0] = 7;
        let at = eight.as_slice().as_ptr();
        io.recycle(eight);
        let one = io.buf(PAGE_SIZE);
        assert_eq!(one.len(), PAGE_SIZE);
        assert_ne!(
            one.as_slice().as_ptr(),
            at,
            "a one-block request took the 8-block buffer"
        );
        let again = io.buf(8 * PAGE_SIZE);
        assert_eq!(
            again.as_slice().as_ptr(),
            at,
            "the 8-block buffer was not reused"
        );
        assert_eq!(again.as_slice()[0], 7);
        let big = (MERGE_MAX_PAGES as usize + 1) * PAGE_SIZE;
        io.recycle(AlignedBuf::new_zeroed(big));
        assert!(
            io.pool.iter().all(Vec::is_empty),
            "a {big}-byte buffer was pooled"
        );
        // At most 64 blocks' worth of one size is kept.
        for _ in 0..20 {
            io.recycle(AlignedBuf::new_zeroed(8 * PAGE_SIZE));
        }
        assert_eq!(io.pool[7].len(), 8);
    }
}
