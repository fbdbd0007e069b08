//! Small caches and a hash in front of the chunk maps that the scan and
//! the replay look up on every page access leaving the last chunk.

/// The two chunks touched last and their values: in front of a
/// [`ChunkCache`]. A lackey trace alternates between a code chunk and a
/// data chunk, so one "last chunk" missed on about half of the accesses of
/// `sort`'s trace; the last two catch nine in ten, for two compares and no
/// hashing. A hit writes one byte (which entry was used last), not the
/// entries: swapping them on every alternation was a store-forwarding stall
/// in the scan's profile.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LastTwo<K, V> {
    entries: [Option<(K, V)>; 2],
    /// The entry used last; `put` replaces the other.
    latest: usize,
}

impl<K: Copy + Eq, V: Copy> Default for LastTwo<K, V> {
    fn default() -> Self {
        LastTwo {
            entries: [None, None],
            latest: 0,
        }
    }
}

impl<K: Copy + Eq, V: Copy> LastTwo<K, V> {
    /// The value of `key` if it is one of the two, which becomes the latest.
    #[inline(always)]
    pub(crate) fn get(&mut self, key: K) -> Option<V> {
        for (i, e) in self.entries.iter().enumerate() {
            if let Some((k, v)) = *e {
                if k == key {
                    self.latest = i;
                    return Some(v);
                }
            }
        }
        None
    }

    /// Makes `key` the latest, with `value`, in place of the older entry.
    #[inline(always)]
    pub(crate) fn put(&mut self, key: K, value: V) {
        self.latest ^= 1;
        self.entries[self.latest & 1] = Some((key, value));
    }
}

/// Slots of a [`ChunkCache`].
const CHUNK_CACHE_SLOTS: usize = 64;

/// A direct-mapped cache in front of a chunk map, for page accesses that
/// leave the last chunk: a lackey trace moves between code, heap, stack
/// and libraries every few accesses, and each move cost a hash-map lookup
/// (about a twentieth of a fits-in-RAM replay's profile). A hit is an index
/// and a compare; a miss falls back to the map, which stays the truth (the
/// cache holds copies of its entries and is never iterated).
#[derive(Debug, Clone)]
pub(crate) struct ChunkCache<K, V> {
    /// Boxed: a kilobyte inline would make every `ProcessSource` that big.
    slots: Box<[Option<(K, V)>; CHUNK_CACHE_SLOTS]>,
}

impl<K: Copy + Eq, V: Copy> Default for ChunkCache<K, V> {
    fn default() -> Self {
        ChunkCache {
            slots: Box::new([None; CHUNK_CACHE_SLOTS]),
        }
    }
}

impl<K: Copy + Eq, V: Copy> ChunkCache<K, V> {
    /// The slot of a key whose chunk number (mixed with its pid, if any)
    /// is `h`: neighbouring chunks get neighbouring slots.
    #[inline]
    fn slot(h: u64) -> usize {
        ((h ^ (h >> 6) ^ (h >> 12)) as usize) % CHUNK_CACHE_SLOTS
    }

    /// The cached value of `key`, if its slot holds it.
    #[inline]
    pub(crate) fn get(&self, h: u64, key: K) -> Option<V> {
        match self.slots[Self::slot(h)] {
            Some((k, v)) if k == key => Some(v),
            _ => None,
        }
    }

    /// Caches `key`'s value, evicting what its slot held.
    #[inline]
    pub(crate) fn insert(&mut self, h: u64, key: K, value: V) {
        self.slots[Self::slot(h)] = Some((key, value));
    }
}

/// A multiplicative (Fibonacci) hash of chunk keys (a chunk number, with
/// its pid in the scan), for the chunk maps that every page access leaving
/// the last chunk looks up: the replay's chunk-to-region map and the scan's
/// chunk bitmaps. std's SipHash there was about a tenth of a fits-in-RAM
/// replay's profile (`perf record` of `swapvm replay`, random accesses over
/// 16 chunks). Collision resistance is not needed: a trace only slows its
/// own replay, and neither map is iterated, so their order cannot leak.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ChunkHasher(u64);

impl std::hash::Hasher for ChunkHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Builds [`ChunkHasher`]s.
pub(crate) type ChunkHash = std::hash::BuildHasherDefault<ChunkHasher>;
