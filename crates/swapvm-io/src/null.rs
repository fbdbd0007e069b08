//! `NullEngine`: the `null` swap backend of metadata-only machines
//! (`machine.content = "none"`). No file is opened and no block is moved:
//! a request completes inside `submit`, like [`crate::SyncEngine`]'s, and is
//! queued for `try_complete` / `wait_complete`, so the swap layer delivers
//! it at the same logical tick and in the same order as a file's.
//!
//! What it keeps: the first [`NullEngine::WORD`] bytes of every block
//! written, nothing else. A metadata-only machine puts a page's content
//! word there (which content the page holds), so a page read back is the
//! page that was written and every decision that looks at content (the
//! zeromap, KSM) decides as it would on the bytes. A read puts each
//! block's word back at the start of the block and leaves the rest of the
//! buffer as it was: no reader looks there. That is 8 bytes per slot
//! written, kept in chunks of [`CHUNK_WORDS`] allocated when a block of
//! theirs is first written (a block never written reads as zero), so a
//! device's host memory follows the slots the run used, not its size: a
//! 1 TiB device whose run used 80 GiB of it keeps 160 MiB of words, not
//! 2 GiB. Chunks are never freed: a device keeps what was written to it.

use std::collections::VecDeque;
use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::psync::complete_inline;
use crate::{BlockEngine, IoCompletion, IoError, IoKind, IoRequest, BLOCK_SIZE};

/// Words per chunk: one 4 KiB host page, the slots of one swap cluster.
pub const CHUNK_WORDS: usize = 512;

/// The kept words of a device, by block number, in chunks allocated on
/// first write.
#[derive(Debug)]
struct Words {
    chunks: Vec<Option<Box<[u64; CHUNK_WORDS]>>>,
    blocks: usize,
}

impl Words {
    fn new(blocks: usize) -> Self {
        Words {
            chunks: (0..blocks.div_ceil(CHUNK_WORDS)).map(|_| None).collect(),
            blocks,
        }
    }

    /// Block `b`'s word, 0 if never written; `None` past the end.
    fn get(&self, b: usize) -> Option<u64> {
        if b >= self.blocks {
            return None;
        }
        Some(
            self.chunks[b / CHUNK_WORDS]
                .as_ref()
                .map_or(0, |c| c[b % CHUNK_WORDS]),
        )
    }

    /// Sets block `b`'s word; false past the end.
    fn set(&mut self, b: usize, w: u64) -> bool {
        if b >= self.blocks {
            return false;
        }
        let chunk = self.chunks[b / CHUNK_WORDS].get_or_insert_with(|| Box::new([0; CHUNK_WORDS]));
        chunk[b % CHUNK_WORDS] = w;
        true
    }

    /// Host bytes: the chunks allocated and the chunk index.
    fn host_bytes(&self) -> usize {
        let allocated = self.chunks.iter().filter(|c| c.is_some()).count();
        allocated * std::mem::size_of::<[u64; CHUNK_WORDS]>()
            + self.chunks.capacity() * std::mem::size_of::<Option<Box<[u64; CHUNK_WORDS]>>>()
    }
}

#[derive(Debug)]
struct Inner {
    /// The word of each block written.
    words: Words,
    /// Completed and not yet taken. Its length is `in_flight()`.
    done: VecDeque<IoCompletion>,
}

/// A device of `size_bytes` that keeps one word per block; see the module
/// documentation.
#[derive(Debug)]
pub struct NullEngine {
    size_bytes: u64,
    inner: Mutex<Inner>,
}

impl NullEngine {
    /// Bytes kept per block: the content word at the block's start.
    pub const WORD: usize = 8;

    /// A null device of `size_bytes` (rounded down to whole blocks), every
    /// word zero.
    pub fn new(size_bytes: u64) -> NullEngine {
        let blocks = (size_bytes / BLOCK_SIZE as u64) as usize;
        NullEngine {
            size_bytes,
            inner: Mutex::new(Inner {
                words: Words::new(blocks),
                done: VecDeque::new(),
            }),
        }
    }

    /// A panic elsewhere cannot leave the state half-updated (each update
    /// is one store), so a poisoned lock is still usable.
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes of host memory the kept words take: the chunks written and
    /// their index.
    pub fn word_bytes(&self) -> usize {
        self.inner().words.host_bytes()
    }
}

/// Moves the words of the blocks of `buf` at block `first` between `buf`
/// and `words`. Returns the bytes "transferred": the whole request, cut
/// short at the end of the device as a file's read or write is.
fn transfer(words: &mut Words, kind: IoKind, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    let first = (offset / BLOCK_SIZE as u64) as usize;
    let mut n = 0;
    for (i, block) in buf.chunks_exact_mut(BLOCK_SIZE).enumerate() {
        let head: &mut [u8; NullEngine::WORD] = (&mut block[..NullEngine::WORD])
            .try_into()
            .map_err(|_| io::Error::other("block shorter than a word"))?;
        let within = match kind {
            IoKind::Write => words.set(first + i, u64::from_le_bytes(*head)),
            IoKind::Read => words
                .get(first + i)
                .map(|w| *head = w.to_le_bytes())
                .is_some(),
        };
        if !within {
            break;
        }
        n += BLOCK_SIZE;
    }
    Ok(n)
}

impl BlockEngine for NullEngine {
    fn submit(&self, req: IoRequest) -> Result<(), IoError> {
        let mut g = self.inner();
        let Inner { words, done } = &mut *g;
        complete_inline(done, req, |kind, offset, buf| {
            transfer(words, kind, offset, buf)
        })
    }

    fn try_complete(&self) -> Option<IoCompletion> {
        self.inner().done.pop_front()
    }

    fn wait_complete(&self) -> Result<IoCompletion, IoError> {
        // Everything submitted has completed: an empty queue can never fill.
        self.try_complete().ok_or(IoError::EngineGone)
    }

    fn in_flight(&self) -> usize {
        self.inner().done.len()
    }

    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn host_bytes(&self) -> u64 {
        self.word_bytes() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AlignedBuf;

    fn req(tag: u64, kind: IoKind, block: u64, words: &[u64]) -> IoRequest {
        let mut buf = AlignedBuf::new_zeroed(words.len() * BLOCK_SIZE);
        for (b, w) in buf.as_mut_slice().chunks_exact_mut(BLOCK_SIZE).zip(words) {
            b[..8].copy_from_slice(&w.to_le_bytes());
        }
        IoRequest {
            tag,
            kind,
            offset: block * BLOCK_SIZE as u64,
            buf,
        }
    }

    #[test]
    fn keeps_each_blocks_word_and_reads_it_back() {
        let e = NullEngine::new(16 * BLOCK_SIZE as u64);
        // One chunk's index entry, no chunk until a write.
        assert_eq!(e.word_bytes(), 8);
        e.submit(req(1, IoKind::Write, 3, &[7, 9])).unwrap();
        assert_eq!(e.in_flight(), 1);
        let c = e.wait_complete().unwrap();
        assert_eq!((c.tag, c.kind, c.offset), (1, IoKind::Write, 3 * 4096));
        assert_eq!(c.result.unwrap(), 2 * BLOCK_SIZE);
        e.submit(req(2, IoKind::Read, 3, &[0, 0, 0])).unwrap();
        let c = e.try_complete().unwrap();
        assert_eq!(c.result.unwrap(), 3 * BLOCK_SIZE);
        let words: Vec<u64> = c
            .buf
            .as_slice()
            .chunks_exact(BLOCK_SIZE)
            .map(|b| u64::from_le_bytes(b[..8].try_into().unwrap()))
            .collect();
        assert_eq!(words, [7, 9, 0]);
        assert!(matches!(e.wait_complete(), Err(IoError::EngineGone)));
    }

    #[test]
    fn words_are_kept_in_chunks_allocated_on_first_write() {
        let blocks = 4 * CHUNK_WORDS as u64 + 3;
        let e = NullEngine::new(blocks * BLOCK_SIZE as u64);
        let index = 5 * 8;
        assert_eq!(e.word_bytes(), index);
        // A read of never-written blocks allocates nothing and reads zero.
        e.submit(req(1, IoKind::Read, 700, &[5])).unwrap();
        let c = e.wait_complete().unwrap();
        assert_eq!(&c.buf.as_slice()[..8], &[0; 8]);
        assert_eq!(e.word_bytes(), index);
        // A write across a chunk boundary allocates both chunks.
        let last = CHUNK_WORDS as u64 - 1;
        e.submit(req(2, IoKind::Write, last, &[11, 12])).unwrap();
        e.wait_complete().unwrap();
        assert_eq!(e.word_bytes(), index + 2 * CHUNK_WORDS * 8);
        e.submit(req(3, IoKind::Write, blocks - 1, &[13, 14]))
            .unwrap();
        assert_eq!(e.wait_complete().unwrap().result.unwrap(), BLOCK_SIZE);
        assert_eq!(e.word_bytes(), index + 3 * CHUNK_WORDS * 8);
        e.submit(req(4, IoKind::Read, last, &[0, 0])).unwrap();
        let c = e.wait_complete().unwrap();
        let got: Vec<u8> = c
            .buf
            .as_slice()
            .chunks_exact(BLOCK_SIZE)
            .map(|b| b[0])
            .collect();
        assert_eq!(got, [11, 12]);
    }

    #[test]
    fn a_request_past_the_end_is_short_and_a_misaligned_one_rejected() {
        let e = NullEngine::new(4 * BLOCK_SIZE as u64);
        e.submit(req(1, IoKind::Write, 3, &[1, 2])).unwrap();
        assert_eq!(e.wait_complete().unwrap().result.unwrap(), BLOCK_SIZE);
        let mut r = req(2, IoKind::Read, 0, &[0]);
        r.offset = 512;
        assert!(matches!(e.submit(r), Err(IoError::Rejected { .. })));
    }
}
