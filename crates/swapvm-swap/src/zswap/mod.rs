//! zswap (mm/zswap.c): a compressed cache of swapped-out pages in RAM, in
//! front of the swap devices.
//!
//! A page reclaim swaps out is first offered to zswap (`zswap_store`); if
//! the pool takes it, no device write happens. Its swap slot stays
//! allocated on the device, as in the kernel: zswap is indexed by swap
//! entry, and the slot is where the page goes if zswap writes it back
//! (`zswap_writeback_entry`, by the shrinker or when the pool is full). A
//! swap-in looks in zswap first (`zswap_load`); freeing the slot drops the
//! entry (`zswap_invalidate`).
//!
//! This module owns the entries, the pool's size, the LRU, the limits and
//! the debugfs counters, and does no I/O; [`writeback`] is the part that
//! writes entries back through the device's engine, and
//! [`crate::SwapSubsystem::swap_writeout`] the store path.
//!
//! # Pool size (zsmalloc, simplified)
//!
//! A compressed page takes its length rounded up to its zsmalloc size
//! class (multiples of 16 bytes, at least 32). Each memcg's objects are
//! packed densely into whole pages of their own, so the pool holds
//! `ceil(object bytes / PAGE_SIZE)` pages per memcg, and
//! `pool_total_size` is the sum in bytes. Real zsmalloc shares its pages
//! between memcgs, groups them in zspages of up to 4 pages per size class
//! and loses a little to partly used zspages; swapvm does not model the
//! zspage chains or compaction. Same-filled pages take no pool space
//! (zswap's `same_filled_pages`, as older kernels had them; current ones
//! leave zero pages to the swap zeromap, which swapvm also has).
//!
//! The memory layer (swapvm-mm) takes each memcg's pages out of RAM as
//! frames charged to that memcg: its `memory.current` includes its pool
//! pages (the kernel charges the compressed bytes themselves).
//!
//! # Metadata-only mode
//!
//! Without page bytes a page is its content word. zswap then compresses the
//! page the word stands for, which the machine rebuilds with the function
//! given to [`Zswap::set_content_model`] (the content stamp followed by
//! zeros: exactly what a full machine's page holds), and stores only the
//! word. The compressed sizes, and so every decision, are the same as with
//! page bytes.
//!
//! # Simplifications
//!
//! - Loads do not invalidate: an entry stays until its slot is freed or
//!   rewritten (the kernel now drops the entry on a swap-cache load and
//!   dirties the folio). A clean swap-cache folio reclaimed again then
//!   needs no new store, and the pool keeps its copy meanwhile.
//! - One global LRU plus one per memcg (the kernel's `list_lru` is per
//!   memcg and node); the shrinker takes the globally coldest entry.
//! - Stores and loads complete at the next tick rather than inline.

pub mod writeback;

use std::collections::BTreeMap;
use swapvm_core::{SwpEntry, PAGE_SIZE};
use swapvm_io::{CompressedPage, Compressor, PageCodec};

/// zsmalloc's smallest object (`ZS_MIN_ALLOC_SIZE`).
pub const ZS_MIN_ALLOC_SIZE: usize = 32;
/// zsmalloc's size class step for 4 KiB pages (`ZS_SIZE_CLASS_DELTA`).
pub const ZS_SIZE_CLASS_DELTA: usize = 16;

const _: () = assert!(ZS_MIN_ALLOC_SIZE % ZS_SIZE_CLASS_DELTA == 0);

/// The zsmalloc object size an object of `len` bytes takes (0 for 0).
pub fn zs_size(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        len.div_ceil(ZS_SIZE_CLASS_DELTA)
            .max(ZS_MIN_ALLOC_SIZE / ZS_SIZE_CLASS_DELTA)
            * ZS_SIZE_CLASS_DELTA
    }
}

/// The module parameters zswap runs with (`[zswap]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZswapParams {
    /// `max_pool_percent`.
    pub max_pool_percent: u32,
    /// `accept_threshold_percent`.
    pub accept_threshold_percent: u32,
    /// `shrinker_enabled`.
    pub shrinker_enabled: bool,
    /// `compressor`.
    pub compressor: Compressor,
}

/// zswap's debugfs figures (`/sys/kernel/debug/zswap/*`) as counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZswapStats {
    /// `pool_total_size`: bytes of RAM the pool takes (whole pages).
    pub pool_total_size: u64,
    /// `stored_pages`: entries in the pool.
    pub stored_pages: u64,
    /// `same_filled_pages`: entries stored as one repeated word.
    pub same_filled_pages: u64,
    /// `written_back_pages`: entries written back to a swap device.
    pub written_back_pages: u64,
    /// `pool_limit_hit`: stores refused because the pool was full.
    pub pool_limit_hit: u64,
    /// `reject_compress_poor`: stores refused because the page did not
    /// compress below a page.
    pub reject_compress_poor: u64,
    /// `reject_reclaim_fail`: writebacks that failed (the slot's page was
    /// in the swap cache, or the device write failed).
    pub reject_reclaim_fail: u64,
    /// `reject_alloc_fail`: zsmalloc could not allocate. swapvm's pool takes
    /// its frames after the store (see swapvm-mm), so this stays 0.
    pub reject_alloc_fail: u64,
    /// `reject_kmemcache_fail`: no memory for the entry; 0 in swapvm.
    pub reject_kmemcache_fail: u64,
    /// Stores refused at a memcg's `memory.zswap.max` whose memcg shrink
    /// wrote nothing back (swapvm's figure; the kernel has no counter).
    pub reject_memcg_max: u64,
}

/// What an entry holds.
#[derive(Debug)]
enum Stored {
    /// The page, as the codec left it (full mode).
    Page(CompressedPage),
    /// The page's content word (metadata-only mode); its compressed
    /// length is modelled.
    Word(Box<[u8]>),
}

/// One stored page (`struct zswap_entry`).
#[derive(Debug)]
struct ZswapEntry {
    data: Stored,
    /// Compressed bytes (0 for a same-filled page).
    length: u32,
    /// The memcg charged (the slot's `swap_cgroup` owner).
    objcg: u16,
    /// Its position in the LRUs (larger: more recent).
    seq: u64,
    /// Second chance: set at store, cleared (and the entry rotated) the
    /// first time the shrinker meets it.
    referenced: bool,
}

/// zswap's per-memcg state: `memory.zswap.max`, `memory.zswap.writeback`
/// and the `memory.stat` figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZswapMemcg {
    /// The parent memcg (`None` for the root).
    pub parent: Option<u16>,
    /// `memory.zswap.max` in pages (`None`: max).
    pub max_pages: Option<u64>,
    /// `memory.zswap.writeback`.
    pub writeback: bool,
    /// Compressed bytes of its own entries (`memory.stat` `zswap` sums
    /// them over the subtree).
    pub bytes: u64,
    /// Its own entries (`zswapped` sums them).
    pub pages: u64,
    /// Compressed bytes of its subtree.
    pub bytes_hier: u64,
    /// zsmalloc bytes of its own entries (sizes rounded to their class).
    pub zs_bytes: u64,
    /// Pages of RAM its entries take: `zs_bytes` rounded up.
    pub pool_pages: u64,
    /// `zswpin`, `zswpout`, `zswpwb` of its own entries.
    pub zswpin: u64,
    /// See [`ZswapMemcg::zswpin`].
    pub zswpout: u64,
    /// See [`ZswapMemcg::zswpin`].
    pub zswpwb: u64,
}

/// A function that rebuilds the whole page a content word stands for.
pub type ContentModel = Box<dyn Fn(&[u8], &mut [u8]) + Send>;

/// The zswap pool.
pub struct Zswap {
    params: ZswapParams,
    codec: PageCodec,
    /// The tree (the kernel's xarray per swap type).
    tree: BTreeMap<SwpEntry, ZswapEntry>,
    /// Entries from coldest to most recent.
    lru: BTreeMap<u64, SwpEntry>,
    /// The same, per memcg.
    memcg_lru: BTreeMap<(u16, u64), SwpEntry>,
    next_seq: u64,
    /// The memcgs' `pool_pages`, summed.
    pool_pages: u64,
    /// RAM, in pages (`totalram_pages`).
    totalram_pages: u64,
    /// `zswap_pool_reached_full`: set when a store found the pool full,
    /// cleared once it is below the accept threshold.
    reached_full: bool,
    /// A full pool asks for the shrink worker (`queue_work(shrink_wq)`).
    pub(crate) shrink_pending: bool,
    stats: ZswapStats,
    memcgs: Vec<ZswapMemcg>,
    /// Set on a metadata-only machine: pages are content words.
    content_model: Option<ContentModel>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Zswap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zswap")
            .field("params", &self.params)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Zswap {
    /// An empty pool on a machine of `totalram_pages`.
    pub fn new(params: ZswapParams, totalram_pages: u64) -> Zswap {
        Zswap {
            params,
            codec: PageCodec::new(params.compressor),
            tree: BTreeMap::new(),
            lru: BTreeMap::new(),
            memcg_lru: BTreeMap::new(),
            next_seq: 0,
            pool_pages: 0,
            totalram_pages,
            reached_full: false,
            shrink_pending: false,
            stats: ZswapStats::default(),
            memcgs: vec![ZswapMemcg {
                writeback: true,
                ..ZswapMemcg::default()
            }],
            content_model: None,
            scratch: vec![0; PAGE_SIZE],
        }
    }

    /// Pages are content words (a metadata-only machine); `model` rebuilds
    /// the page a word stands for, to compress it.
    pub fn set_content_model(&mut self, model: ContentModel) {
        self.content_model = Some(model);
    }

    /// The parameters.
    pub fn params(&self) -> ZswapParams {
        self.params
    }

    /// Changes `max_pool_percent` (as writing the module parameter does);
    /// the next store sees the new limit.
    pub fn set_max_pool_percent(&mut self, pct: u32) {
        self.params.max_pool_percent = pct.min(100);
    }

    /// Sets memcg `id`'s parent and zswap files (at setup and after a
    /// write to `memory.zswap.*`).
    pub fn set_memcg(
        &mut self,
        id: u16,
        parent: Option<u16>,
        max_pages: Option<u64>,
        writeback: bool,
    ) {
        let m = self.memcg_mut(id);
        m.parent = parent;
        m.max_pages = max_pages;
        m.writeback = writeback;
    }

    fn memcg_mut(&mut self, id: u16) -> &mut ZswapMemcg {
        let i = usize::from(id);
        if self.memcgs.len() <= i {
            self.memcgs.resize(
                i + 1,
                ZswapMemcg {
                    writeback: true,
                    ..ZswapMemcg::default()
                },
            );
        }
        &mut self.memcgs[i]
    }

    /// Memcg `id`'s figures (zeros for one zswap never saw).
    pub fn memcg(&self, id: u16) -> ZswapMemcg {
        self.memcgs
            .get(usize::from(id))
            .copied()
            .unwrap_or_default()
    }

    /// `id` and its ancestors, nearest first.
    fn ancestors(&self, id: u16) -> impl Iterator<Item = u16> + '_ {
        std::iter::successors(Some(id), |&i| self.memcg(i).parent)
    }

    /// `mem_cgroup_zswap_writeback_enabled`: `id` and every ancestor allow
    /// writeback.
    pub fn writeback_enabled(&self, id: u16) -> bool {
        self.ancestors(id).all(|i| self.memcg(i).writeback)
    }

    /// `obj_cgroup_may_zswap`: no memcg from `id` up is at its
    /// `memory.zswap.max` (whole pages of its subtree's compressed bytes).
    pub fn may_zswap(&self, id: u16) -> bool {
        self.ancestors(id).all(|i| {
            let m = self.memcg(i);
            m.max_pages
                .is_none_or(|max| (m.bytes_hier / PAGE_SIZE as u64) < max)
        })
    }

    /// The debugfs figures now.
    pub fn stats(&self) -> ZswapStats {
        ZswapStats {
            pool_total_size: self.pool_pages * PAGE_SIZE as u64,
            stored_pages: self.tree.len() as u64,
            ..self.stats
        }
    }

    /// Pages of RAM the pool takes (`zswap_total_pages`).
    pub fn pool_pages(&self) -> u64 {
        self.pool_pages
    }

    /// `zswap_max_pages`.
    pub fn max_pages(&self) -> u64 {
        self.totalram_pages * u64::from(self.params.max_pool_percent) / 100
    }

    /// `zswap_accept_thr_pages`.
    pub fn accept_thr_pages(&self) -> u64 {
        self.max_pages() * u64::from(self.params.accept_threshold_percent) / 100
    }

    /// True when `entry` is in the pool.
    pub fn contains(&self, entry: SwpEntry) -> bool {
        self.tree.contains_key(&entry)
    }

    /// Every stored entry, in order.
    pub fn entries(&self) -> impl Iterator<Item = SwpEntry> + '_ {
        self.tree.keys().copied()
    }

    /// `zswap_check_limits`: the pool may grow, with the accept-threshold
    /// hysteresis once it was full. A refusal counts `pool_limit_hit` and
    /// asks for the shrink worker.
    pub(crate) fn check_limits(&mut self) -> bool {
        let cur = self.pool_pages;
        let ok = if cur >= self.max_pages() {
            self.reached_full = true;
            false
        } else if self.reached_full && cur > self.accept_thr_pages() {
            false
        } else {
            self.reached_full = false;
            true
        };
        if !ok {
            self.stats.pool_limit_hit += 1;
            self.shrink_pending = true;
        }
        ok
    }

    /// Compresses one page (`page_bytes` of content) into an entry for
    /// memcg `objcg`, or `None` (counted as `reject_compress_poor`) when it
    /// does not compress below a page. A codec failure is treated the same
    /// way: the page goes to the device.
    fn compress(&mut self, page: &[u8], objcg: u16) -> Option<ZswapEntry> {
        let (data, length) = match &self.content_model {
            Some(model) => {
                model(page, &mut self.scratch);
                let c = self.codec.compress(&self.scratch).ok()?;
                let len = c.compressed_len();
                (Stored::Word(page.into()), len)
            }
            None => {
                let c = self.codec.compress(page).ok()?;
                let len = c.compressed_len();
                (Stored::Page(c), len)
            }
        };
        let Some(length) = length else {
            self.stats.reject_compress_poor += 1;
            return None;
        };
        Some(ZswapEntry {
            data,
            length: length as u32,
            objcg,
            seq: 0,
            referenced: true,
        })
    }

    /// Stores the pages of one folio at `entry` (`zswap_store`): every page
    /// or none. `data` holds `nr` pages of content. Any entry the slots
    /// held before is dropped either way, so a refused store leaves no
    /// stale copy.
    ///
    /// The limit checks come first: `memcg_ok` is the caller's verdict on
    /// the memcg limit (it was under `memory.zswap.max`, or the memcg
    /// shrink wrote one of its entries back, after which the kernel stores
    /// without looking again), then the pool's.
    pub(crate) fn store(
        &mut self,
        entry: SwpEntry,
        data: &[u8],
        nr: u64,
        objcg: u16,
        memcg_ok: bool,
    ) -> bool {
        let pb = data.len() / nr as usize;
        let mut new = Vec::with_capacity(nr as usize);
        if !memcg_ok {
            self.stats.reject_memcg_max += 1;
        }
        let mut ok = memcg_ok && self.check_limits();
        if ok {
            for page in data.chunks_exact(pb) {
                match self.compress(page, objcg) {
                    Some(e) => new.push(e),
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
        }
        for i in 0..nr {
            self.invalidate(entry.add(i));
        }
        if !ok {
            return false;
        }
        for (i, e) in new.into_iter().enumerate() {
            self.insert(entry.add(i as u64), e);
        }
        true
    }

    fn insert(&mut self, at: SwpEntry, mut e: ZswapEntry) {
        e.seq = self.next_seq;
        self.next_seq += 1;
        self.lru.insert(e.seq, at);
        self.memcg_lru.insert((e.objcg, e.seq), at);
        self.account(e.length, e.objcg, true);
        let m = self.memcg_mut(e.objcg);
        m.zswpout += 1;
        self.tree.insert(at, e);
    }

    /// Adds (`add`) or takes away one entry of `length` bytes charged to
    /// `objcg`: the memcg's figures and pages, the pool's pages.
    fn account(&mut self, length: u32, objcg: u16, add: bool) {
        let size = zs_size(length as usize) as u64;
        if length == 0 {
            if add {
                self.stats.same_filled_pages += 1;
            } else {
                self.stats.same_filled_pages -= 1;
            }
        }
        let bytes = u64::from(length);
        let m = self.memcg_mut(objcg);
        let before = m.pool_pages;
        if add {
            m.bytes += bytes;
            m.zs_bytes += size;
            m.pages += 1;
        } else {
            m.bytes -= bytes;
            m.zs_bytes -= size;
            m.pages -= 1;
        }
        m.pool_pages = m.zs_bytes.div_ceil(PAGE_SIZE as u64);
        let after = m.pool_pages;
        self.pool_pages = self.pool_pages + after - before;
        let ids: Vec<u16> = self.ancestors(objcg).collect();
        for i in ids {
            let m = self.memcg_mut(i);
            if add {
                m.bytes_hier += bytes;
            } else {
                m.bytes_hier -= bytes;
            }
        }
    }

    /// `zswap_invalidate`: drops the entry at `at`, if any. Returns whether
    /// there was one.
    pub fn invalidate(&mut self, at: SwpEntry) -> bool {
        let Some(e) = self.tree.remove(&at) else {
            return false;
        };
        self.lru.remove(&e.seq);
        self.memcg_lru.remove(&(e.objcg, e.seq));
        self.account(e.length, e.objcg, false);
        true
    }

    /// `zswap_load`: the content of the page at `at` (`page_bytes` of it:
    /// the whole page, or the content word) into `out`, if zswap holds it.
    /// Counts the memcg's `zswpin`; the caller counts the vmstat event.
    ///
    /// # Errors
    /// A stored page that does not decompress (a broken codec).
    pub(crate) fn load(&mut self, at: SwpEntry, out: &mut [u8]) -> Option<std::io::Result<()>> {
        let e = self.tree.get(&at)?;
        let objcg = e.objcg;
        let r = match &e.data {
            Stored::Word(w) => {
                out.copy_from_slice(w);
                Ok(())
            }
            Stored::Page(c) => self.codec.decompress(c, out),
        };
        self.memcg_mut(objcg).zswpin += 1;
        Some(r)
    }

    /// The next entry the shrinker should consider, coldest first, of
    /// memcg `only` if given: rotates referenced entries once (second
    /// chance) and skips memcgs whose writeback is off. `None` when nothing
    /// can be written back.
    pub(crate) fn pick_victim(&mut self, only: Option<u16>) -> Option<SwpEntry> {
        // Each entry is met at most twice: once referenced, once not.
        let budget = 2 * self.tree.len();
        // Entries below `from` were skipped (writeback off) and
        // stay where they are; a rotated entry moves past them all.
        // Resuming at `from` keeps the walk linear in the pool.
        let mut from = 0u64;
        for _ in 0..budget {
            let (seq, at) = match only {
                Some(m) => self
                    .memcg_lru
                    .range((m, from)..=(m, u64::MAX))
                    .next()
                    .map(|(&(_, s), &a)| (s, a))?,
                None => self.lru.range(from..).next().map(|(&s, &a)| (s, a))?,
            };
            let e = self.tree.get_mut(&at)?;
            debug_assert_eq!(e.seq, seq);
            if !e.referenced {
                let objcg = e.objcg;
                if self.writeback_enabled(objcg) {
                    return Some(at);
                }
                from = seq + 1;
                continue;
            }
            e.referenced = false;
            let objcg = e.objcg;
            let new = self.next_seq;
            self.next_seq += 1;
            e.seq = new;
            self.lru.remove(&seq);
            self.memcg_lru.remove(&(objcg, seq));
            self.lru.insert(new, at);
            self.memcg_lru.insert((objcg, new), at);
        }
        None
    }

    /// The content of the entry at `at` for its writeback, and drops
    /// nothing yet.
    pub(crate) fn content(&mut self, at: SwpEntry, page_bytes: usize) -> Option<Vec<u8>> {
        let mut out = vec![0u8; page_bytes];
        match self.load_quiet(at, &mut out)? {
            Ok(()) => Some(out),
            Err(_) => None,
        }
    }

    /// [`Zswap::load`] without counting.
    fn load_quiet(&mut self, at: SwpEntry, out: &mut [u8]) -> Option<std::io::Result<()>> {
        let e = self.tree.get(&at)?;
        Some(match &e.data {
            Stored::Word(w) => {
                out.copy_from_slice(w);
                Ok(())
            }
            Stored::Page(c) => self.codec.decompress(c, out),
        })
    }

    /// Moves the entry at `at` to the most recent end of the LRUs (a
    /// writeback that failed: the kernel rotates it).
    pub(crate) fn rotate(&mut self, at: SwpEntry) {
        let new = self.next_seq;
        let Some(e) = self.tree.get_mut(&at) else {
            return;
        };
        self.next_seq += 1;
        self.lru.remove(&e.seq);
        self.memcg_lru.remove(&(e.objcg, e.seq));
        e.seq = new;
        self.lru.insert(new, at);
        self.memcg_lru.insert((e.objcg, new), at);
    }

    /// The end of a successful writeback of `at`: the entry goes, counted
    /// as `written_back_pages` and the memcg's `zswpwb`.
    pub(crate) fn written_back(&mut self, at: SwpEntry) {
        if let Some(objcg) = self.tree.get(&at).map(|e| e.objcg) {
            self.invalidate(at);
            self.memcg_mut(objcg).zswpwb += 1;
            self.stats.written_back_pages += 1;
        }
    }

    /// Counts a failed writeback (`reject_reclaim_fail`).
    pub(crate) fn reclaim_failed(&mut self) {
        self.stats.reject_reclaim_fail += 1;
    }

    /// Checks the pool's own accounting: stored pages equal entries, the
    /// pool's pages and memcg figures equal what the entries add up to,
    /// the LRUs hold every entry once. Returns what is wrong.
    pub fn check_invariants(&self) -> Vec<String> {
        let mut bad = Vec::new();
        let mut same = 0;
        // Per memcg: compressed bytes, entries, zsmalloc bytes.
        let mut own: BTreeMap<u16, (u64, u64, u64)> = BTreeMap::new();
        for (at, e) in &self.tree {
            same += u64::from(e.length == 0);
            let o = own.entry(e.objcg).or_default();
            o.0 += u64::from(e.length);
            o.1 += 1;
            o.2 += zs_size(e.length as usize) as u64;
            if self.lru.get(&e.seq) != Some(at) || self.memcg_lru.get(&(e.objcg, e.seq)) != Some(at)
            {
                bad.push(format!("zswap: {at:?} is not on the LRU at its place"));
            }
        }
        let pages: u64 = own.values().map(|o| o.2.div_ceil(PAGE_SIZE as u64)).sum();
        if pages != self.pool_pages {
            bad.push(format!(
                "zswap: pool of {} pages, the entries' compressed sizes make {pages}",
                self.pool_pages
            ));
        }
        if same != self.stats.same_filled_pages {
            bad.push(format!(
                "zswap: same_filled_pages {}, entries {same}",
                self.stats.same_filled_pages
            ));
        }
        if self.lru.len() != self.tree.len() || self.memcg_lru.len() != self.tree.len() {
            bad.push(format!(
                "zswap: stored_pages {} but the LRUs hold {} and {}",
                self.tree.len(),
                self.lru.len(),
                self.memcg_lru.len()
            ));
        }
        for (i, m) in self.memcgs.iter().enumerate() {
            let (bytes, n, zs) = own.get(&(i as u16)).copied().unwrap_or_default();
            if (m.bytes, m.pages, m.zs_bytes) != (bytes, n, zs)
                || m.pool_pages != zs.div_ceil(PAGE_SIZE as u64)
            {
                bad.push(format!(
                    "zswap: memcg {i} charged {} bytes in {} pages, its entries {bytes} in {n}",
                    m.bytes, m.pages
                ));
            }
        }
        bad
    }
}

#[cfg(test)]
mod tests;
