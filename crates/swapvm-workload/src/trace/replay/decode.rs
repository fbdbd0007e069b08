//! Decoding a pid's records into batches of ops, inline or on a thread.

use super::*;

/// The pages of one record still to emit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cursor {
    pub(super) next: u64,
    pub(super) last: u64,
    pub(super) write: bool,
}

/// The decoded ops of one process and the state that maps pages to
/// regions; everything of a [`TraceProcess`] but its reader, so a batch can
/// be filled while the reader is borrowed as its concrete type.
#[derive(Debug)]
pub(super) struct Batch {
    /// Decoded ops; `TraceProcess::pos` is the next to hand out.
    pub(super) ops: OpBuf,
    /// Chunk to region; looked up, never iterated, so its order cannot leak.
    pub(super) regions: ChunkMap,
    /// Recent entries of `regions`.
    pub(super) recent: ChunkCache<u64, u32>,
    /// The last two chunks and their regions.
    pub(super) last: LastTwo<u64, u32>,
    /// Pages of a record that did not fit in the last batch.
    pub(super) cursor: Option<Cursor>,
    /// Page accesses pushed into `ops` in the batches before this one
    /// ([`Decoder::decode`] adds each batch's once it is full, so the
    /// per-page loop does not count through memory).
    pub(super) emitted: u64,
    /// Mmaps pushed into `ops` in this batch.
    pub(super) mmaps: usize,
    /// Ops per batch: [`BATCH_OPS`], or [`THREAD_BATCH_OPS`] when a
    /// decoder thread fills the batches.
    pub(super) cap: usize,
}

impl Batch {
    /// Whether there is room for one more page: an access, and the Mmap of
    /// its region if the page opens a new chunk.
    #[inline]
    pub(super) fn has_room(&self) -> bool {
        self.ops.len() + 2 <= self.cap
    }

    /// Pushes the access to `page`, preceded by the Mmap of its region if
    /// the page is the first of its chunk. Past 2^32 regions it pushes
    /// nothing and fails; the caller names the record.
    #[inline(always)]
    pub(super) fn page(&mut self, page: u64, write: bool) -> Result<(), RegionsFull> {
        let chunk = chunk_of(page);
        let region = match self.last.get(chunk) {
            Some(r) => r,
            None => match self.recent.get(chunk, chunk) {
                Some(r) => {
                    self.last.put(chunk, r);
                    r
                }
                None => self.region_of(chunk)?,
            },
        };
        // Packed straight away: an `Op` built only to be packed again
        // went through the stack.
        let page = page % REGION_PAGES;
        match PackedAccess::new(region, page, write) {
            Some(a) => self.ops.packed.push(a),
            None => self.ops.push_aside(Op::Access {
                region,
                page,
                write,
            }),
        }
        Ok(())
    }

    /// The region of `chunk` when neither `last` nor `recent` has it:
    /// looked up, or numbered and its Mmap pushed on first touch.
    #[inline(never)]
    pub(super) fn region_of(&mut self, chunk: u64) -> Result<u32, RegionsFull> {
        if let Some(&r) = self.regions.get(&chunk) {
            self.recent.insert(chunk, chunk, r);
            self.last.put(chunk, r);
            return Ok(r);
        }
        let region = u32::try_from(self.regions.len()).map_err(|_| RegionsFull)?;
        self.regions.insert(chunk, region);
        self.recent.insert(chunk, chunk, region);
        self.last.put(chunk, region);
        self.ops.push_aside(Op::Mmap {
            region,
            pages: REGION_PAGES,
        });
        self.mmaps += 1;
        Ok(region)
    }

    /// Takes record `rec` into the batch if there is room: its first page
    /// now, the others (if it straddles pages) left in `cursor` for
    /// [`Self::fill`]. Refuses (`false`, nothing pushed) when the batch is
    /// full, a cursor is pending, or the pid has run out of regions.
    /// Inlined into the bulk decode loop: a call per record was a third
    /// of the decode's instructions.
    #[inline(always)]
    pub(super) fn record(&mut self, rec: TraceRecord, pid: u32) -> Result<bool, RegionsFull> {
        if self.cursor.is_some() || !self.has_room() {
            return Ok(false);
        }
        if rec.pid != pid {
            return Ok(true);
        }
        let (next, last) = rec.pages();
        let write = rec.kind.is_write();
        self.page(next, write)?;
        if next < last {
            self.cursor = Some(Cursor {
                next: next + 1,
                last,
                write,
            });
        }
        Ok(true)
    }

    /// Decodes records of `pid` from `reader` until the batch is full;
    /// `Ok(true)` at the end of the trace. Generic so that each reader's
    /// decode inlines into the loop. Records come in bulk from the
    /// reader's buffer ([`RecordStream::take_buffered`]) while they can,
    /// else one at a time ([`RecordStream::next_rec`], which also reports
    /// the end and errors).
    #[inline]
    pub(super) fn fill<I: RecordStream>(
        &mut self,
        reader: &mut I,
        pid: u32,
        path: &Path,
    ) -> Result<bool, TraceError> {
        let full = |reader: &I| TraceError::Unrepresentable {
            path: path.to_owned(),
            at: reader.position(),
            reason: "more than 2^32 regions of 2 MiB in one pid".into(),
        };
        let mut err = None;
        while self.has_room() {
            if let Some(c) = self.cursor {
                self.cursor = (c.next < c.last).then_some(Cursor {
                    next: c.next + 1,
                    ..c
                });
                self.page(c.next, c.write)
                    .map_err(|RegionsFull| full(reader))?;
                continue;
            }
            if reader.take_buffered(|rec| self.record(rec, pid).unwrap_or(false)) > 0 {
                continue;
            }
            match reader.next_rec(&mut err) {
                Some(rec) => {
                    self.record(rec, pid).map_err(|RegionsFull| full(reader))?;
                }
                None => return err.map_or(Ok(true), Err),
            }
        }
        Ok(false)
    }
}

/// A pid has 2^32 regions and needs another.
#[derive(Debug)]
pub(super) struct RegionsFull;

/// A pid's reader and the state that maps its pages to regions: what
/// decodes its batches, on the replay's thread or on its own.
#[derive(Debug)]
pub(super) struct Decoder {
    pub(super) path: PathBuf,
    pub(super) pid: u32,
    pub(super) reader: TraceReader,
    pub(super) batch: Batch,
}

/// One batch as the decoder hands it over.
#[derive(Debug)]
pub(super) struct Decoded {
    pub(super) ops: OpBuf,
    /// `None`: more batches follow. `Some(Ok)`: the end of the trace, and
    /// `ops` ends with [`Op::Exit`]. `Some(Err)`: the error that ended
    /// the trace after `ops`.
    pub(super) end: Option<Result<(), TraceError>>,
    /// Page accesses decoded so far, this batch's included.
    pub(super) emitted: u64,
    /// Where the reader was after this batch.
    pub(super) position: Position,
}

impl Decoder {
    /// Decodes the next batch into `ops` (cleared first; its capacity is
    /// reused).
    pub(super) fn decode(&mut self, mut ops: OpBuf) -> Decoded {
        ops.clear();
        ops.packed.reserve(self.batch.cap);
        std::mem::swap(&mut self.batch.ops, &mut ops);
        let (b, pid, path) = (&mut self.batch, self.pid, self.path.as_path());
        let filled = match &mut self.reader {
            TraceReader::Lackey(r) => b.fill(r, pid, path),
            TraceReader::Csv(r) => b.fill(r, pid, path),
            TraceReader::OracleGeneral(r) => b.fill(r, pid, path),
            TraceReader::Native(r) => b.fill(r, pid, path),
            TraceReader::Lcs(r) => b.fill(r, pid, path),
            TraceReader::Damon(r) => b.fill(r, pid, path),
        };
        // Every op so far is an access or an Mmap.
        b.emitted += (b.ops.len() - b.mmaps) as u64;
        b.mmaps = 0;
        let end = match filled {
            Ok(false) => None,
            Ok(true) => {
                self.batch.ops.push(Op::Exit);
                Some(Ok(()))
            }
            Err(e) => Some(Err(e)),
        };
        Decoded {
            ops: std::mem::take(&mut self.batch.ops),
            end,
            emitted: self.batch.emitted,
            position: self.reader.position(),
        }
    }
}

/// Where a [`TraceProcess`]'s batches come from.
#[derive(Debug)]
pub(super) enum Feed {
    /// Decoded on the caller's thread, when the batch is used up.
    Inline(Box<Decoder>),
    /// To be decoded by a thread, started at the first batch: like a
    /// reader's buffer, the thread reads the file only once the replay
    /// runs, not while the machine is being built.
    Unstarted(Box<Decoder>),
    /// Decoded ahead by a thread of the process's own.
    Thread(DecodeThread),
}

/// A decoder thread: it fills the buffers it receives on `free` and
/// sends them back on `full`, [`DECODE_DEPTH`] ahead of the consumer, and
/// stops after the last batch or when the consumer goes away. Memory
/// stays constant: `DECODE_DEPTH + 1` buffers of [`THREAD_BATCH_OPS`] ops
/// circulate. The ops are those the inline decoder makes, in the same
/// order, so a replay is deterministic whichever feed it has.
#[derive(Debug)]
pub(super) struct DecodeThread {
    /// `None` only while dropping.
    pub(super) full: Option<mpsc::Receiver<Decoded>>,
    pub(super) free: Option<mpsc::SyncSender<OpBuf>>,
    pub(super) handle: Option<std::thread::JoinHandle<()>>,
}

impl Feed {
    /// Starts the thread of an [`Feed::Unstarted`] feed; if no thread can
    /// be started, the feed decodes inline (with the larger batches).
    pub(super) fn start(&mut self, name: &str) {
        if !matches!(self, Feed::Unstarted(_)) {
            return;
        }
        let Feed::Unstarted(dec) = std::mem::replace(self, Feed::Thread(DecodeThread::none()))
        else {
            return;
        };
        *self = match Feed::spawn(name, *dec) {
            Ok(f) => f,
            Err(dec) => Feed::Inline(dec),
        };
    }

    /// Starts a decoder thread over `dec`; `dec` back if the thread cannot
    /// be started.
    pub(super) fn spawn(name: &str, dec: Decoder) -> Result<Feed, Box<Decoder>> {
        let (full_tx, full) = mpsc::sync_channel::<Decoded>(DECODE_DEPTH);
        let (free, free_rx) = mpsc::sync_channel::<OpBuf>(DECODE_DEPTH + 1);
        for _ in 0..DECODE_DEPTH {
            // The receiver is alive and the channel has room.
            let _ = free.send(OpBuf::with_capacity(THREAD_BATCH_OPS));
        }
        // The decoder comes back out of the closure if the thread cannot
        // be started: `spawn` drops the closure then, so it is handed over
        // through a slot the closure takes it from.
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(dec)));
        let theirs = std::sync::Arc::clone(&slot);
        let spawned = std::thread::Builder::new()
            .name(format!("decode {name}"))
            .spawn(move || {
                let Some(mut dec) = theirs.lock().ok().and_then(|mut d| d.take()) else {
                    return;
                };
                drop(theirs);
                while let Ok(ops) = free_rx.recv() {
                    let d = dec.decode(ops);
                    let last = d.end.is_some();
                    if full_tx.send(d).is_err() || last {
                        break;
                    }
                }
            });
        match spawned {
            Ok(handle) => Ok(Feed::Thread(DecodeThread {
                full: Some(full),
                free: Some(free),
                handle: Some(handle),
            })),
            Err(_) => match slot.lock().ok().and_then(|mut d| d.take()) {
                Some(dec) => Err(Box::new(dec)),
                // Unreachable: only a started thread takes the decoder.
                None => Ok(Feed::Thread(DecodeThread::none())),
            },
        }
    }
}

impl DecodeThread {
    /// A feed with no thread: it reports the decoder stopped.
    pub(super) fn none() -> DecodeThread {
        DecodeThread {
            full: None,
            free: None,
            handle: None,
        }
    }
}

impl Drop for DecodeThread {
    /// Closes both channels, which ends the thread (blocked on either, or
    /// at its next send), then waits for it, so no thread outlives its
    /// process.
    fn drop(&mut self) {
        self.full.take();
        self.free.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
