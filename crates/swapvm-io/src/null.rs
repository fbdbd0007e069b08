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
//! (64 MiB for 32 GiB of swap), allocated zeroed and untouched until a
//! slot is written.

use std::collections::VecDeque;
use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::psync::complete_inline;
use crate::{BlockEngine, IoCompletion, IoError, IoKind, IoRequest, BLOCK_SIZE};

#[derive(Debug)]
struct Inner {
    /// The word of each block, by block number.
    words: Vec<u64>,
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
                words: vec![0; blocks],
                done: VecDeque::new(),
            }),
        }
    }

    /// A panic elsewhere cannot leave the state half-updated (each update
    /// is one store), so a poisoned lock is still usable.
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes of host memory the kept words take.
    pub fn word_bytes(&self) -> usize {
        self.inner().words.len() * Self::WORD
    }
}

/// Moves the words of the blocks of `buf` at block `first` between `buf`
/// and `words`. Returns the bytes "transferred": the whole request, cut
/// short at the end of the device as a file's read or write is.
fn transfer(words: &mut [u64], kind: IoKind, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    let first = (offset / BLOCK_SIZE as u64) as usize;
    let mut n = 0;
    for (i, block) in buf.chunks_exact_mut(BLOCK_SIZE).enumerate() {
        let Some(w) = words.get_mut(first + i) else {
            break;
        };
        let head: &mut [u8; NullEngine::WORD] = (&mut block[..NullEngine::WORD])
            .try_into()
            .map_err(|_| io::Error::other("block shorter than a word"))?;
        match kind {
            IoKind::Write => *w = u64::from_le_bytes(*head),
            IoKind::Read => *head = w.to_le_bytes(),
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
        assert_eq!(e.word_bytes(), 16 * 8);
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
    fn a_request_past_the_end_is_short_and_a_misaligned_one_rejected() {
        let e = NullEngine::new(4 * BLOCK_SIZE as u64);
        e.submit(req(1, IoKind::Write, 3, &[1, 2])).unwrap();
        assert_eq!(e.wait_complete().unwrap().result.unwrap(), BLOCK_SIZE);
        let mut r = req(2, IoKind::Read, 0, &[0]);
        r.offset = 512;
        assert!(matches!(e.submit(r), Err(IoError::Rejected { .. })));
    }
}
