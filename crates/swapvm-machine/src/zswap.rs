//! zswap's wiring: turning the pool on from `[zswap]`, telling it the
//! memcgs' `memory.zswap.*` files, running the shrinker while memory is
//! short, keeping the pool's frames in step, its report and its checks.
//!
//! The pool itself is swapvm-swap's (`swapvm_swap::zswap`); its frames are
//! swapvm-mm's (`Memory::zswap_sync`).

use crate::verify::{stamp_key, ContentKey};
use crate::Machine;
use swapvm_core::config::{Compressor, ContentMode, MachineConfig};
use swapvm_core::VmEvent;
use swapvm_mm::{MemcgId, Memory};
use swapvm_swap::{SwapSubsystem, ZswapParams, ZswapStats};

/// Entries the shrinker writes back per tick at most while kswapd is awake
/// (`SWAP_CLUSTER_MAX`, one shrink_slab batch).
const SHRINK_BATCH: u64 = 32;

/// Turns zswap on when `[zswap] enabled`, on a machine of `ram_pages`.
pub(crate) fn setup(cfg: &MachineConfig, mem: &Memory, swap: &mut SwapSubsystem, ram_pages: u64) {
    let z = &cfg.zswap;
    if !z.enabled {
        return;
    }
    let params = ZswapParams {
        max_pool_percent: z.max_pool_percent,
        accept_threshold_percent: z.accept_threshold_percent,
        shrinker_enabled: z.shrinker_enabled,
        compressor: match z.compressor {
            Compressor::Lz4 => swapvm_io::Compressor::Lz4,
            Compressor::Zstd => swapvm_io::Compressor::Zstd {
                level: swapvm_io::Compressor::ZSTD_LEVEL_DEFAULT,
            },
        },
    };
    swap.zswap_enable(params, ram_pages);
    if cfg.machine.content == ContentMode::None {
        if let Some(pool) = swap.zswap_mut() {
            pool.set_content_model(Box::new(content_page));
        }
    }
    for k in 0..mem.memcg.len() {
        memcg_update(mem, swap, MemcgId(k as u16));
    }
}

/// The page a metadata-only frame's content word stands for: what a full
/// machine's page holds, its key's stamp followed by zeros (see
/// [`crate::verify::stamp_key`]).
fn content_page(word: &[u8], page: &mut [u8]) {
    page.fill(0);
    let mut key = [0u8; 8];
    let n = word.len().min(8);
    key[..n].copy_from_slice(&word[..n]);
    let key = ContentKey::from_le_bytes(key);
    if key != 0 {
        let s = stamp_key(key);
        page[..s.len()].copy_from_slice(&s);
    }
}

/// Tells zswap memcg `m`'s parent and `memory.zswap.*` files (at setup and
/// after a write to one of them).
pub(crate) fn memcg_update(mem: &Memory, swap: &mut SwapSubsystem, m: MemcgId) {
    let g = mem.memcg.get(m);
    let (max, wb) = (g.limits.zswap_max, g.limits.zswap_writeback);
    let parent = g.parent.map(|p| p.0);
    if let Some(z) = swap.zswap_mut() {
        z.set_memcg(m.0, parent, max, wb);
    }
}

impl Machine {
    /// End of a tick: the shrinker's batch while kswapd is awake, then the
    /// pool's frames brought in line with its size.
    pub(crate) fn zswap_tick(&mut self) {
        if self.swap.zswap().is_none() {
            return;
        }
        if self.reclaim.kswapd_awake() {
            self.swap.zswap_shrinker_scan(SHRINK_BATCH);
        }
        self.mem.zswap_sync(&self.swap);
    }
}

/// `[zswap]` in the report: the parameters it ran with and the debugfs
/// figures at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ZswapReport {
    /// `compressor`.
    pub compressor: String,
    /// `max_pool_percent`.
    pub max_pool_percent: u32,
    /// `accept_threshold_percent`.
    pub accept_threshold_percent: u32,
    /// `shrinker_enabled`.
    pub shrinker_enabled: bool,
    /// `pool_total_size` (bytes).
    pub pool_total_size: u64,
    /// `stored_pages`.
    pub stored_pages: u64,
    /// `same_filled_pages`.
    pub same_filled_pages: u64,
    /// `written_back_pages`.
    pub written_back_pages: u64,
    /// `pool_limit_hit`.
    pub pool_limit_hit: u64,
    /// `reject_compress_poor`.
    pub reject_compress_poor: u64,
    /// `reject_reclaim_fail`.
    pub reject_reclaim_fail: u64,
    /// `reject_alloc_fail` (0: see the README).
    pub reject_alloc_fail: u64,
    /// `reject_kmemcache_fail` (0: see the README).
    pub reject_kmemcache_fail: u64,
    /// Stores refused at a memcg's `memory.zswap.max` (swapvm's figure).
    pub reject_memcg_max: u64,
    /// Frames of RAM the pool holds now (equals `pool_total_size` in
    /// pages once the tick's end synced them).
    pub pool_frames: u64,
}

/// The report's `zswap`, `None` without zswap.
pub(crate) fn report(mem: &Memory, swap: &SwapSubsystem) -> Option<ZswapReport> {
    let z = swap.zswap()?;
    let p = z.params();
    let ZswapStats {
        pool_total_size,
        stored_pages,
        same_filled_pages,
        written_back_pages,
        pool_limit_hit,
        reject_compress_poor,
        reject_reclaim_fail,
        reject_alloc_fail,
        reject_kmemcache_fail,
        reject_memcg_max,
    } = z.stats();
    Some(ZswapReport {
        compressor: p.compressor.name().to_owned(),
        max_pool_percent: p.max_pool_percent,
        accept_threshold_percent: p.accept_threshold_percent,
        shrinker_enabled: p.shrinker_enabled,
        pool_total_size,
        stored_pages,
        same_filled_pages,
        written_back_pages,
        pool_limit_hit,
        reject_compress_poor,
        reject_reclaim_fail,
        reject_alloc_fail,
        reject_kmemcache_fail,
        reject_memcg_max,
        pool_frames: mem.zswap_frames.len(),
    })
}

/// memory.stat's zswap keys for memcg `id`'s subtree `sub` (`zswap` in
/// bytes, `zswapped` in pages, then the events), or nothing without zswap.
pub(crate) fn memcg_stat(swap: &SwapSubsystem, sub: &[MemcgId]) -> Vec<(String, u64)> {
    let Some(z) = swap.zswap() else {
        return Vec::new();
    };
    let sum = |f: fn(&swapvm_swap::ZswapMemcg) -> u64| -> u64 {
        sub.iter().map(|m| f(&z.memcg(m.0))).sum()
    };
    vec![
        ("zswap".to_owned(), sum(|m| m.bytes)),
        (
            "zswapped".to_owned(),
            sum(|m| m.pages) * swapvm_core::PAGE_SIZE as u64,
        ),
        ("zswpin".to_owned(), sum(|m| m.zswpin)),
        ("zswpout".to_owned(), sum(|m| m.zswpout)),
        ("zswpwb".to_owned(), sum(|m| m.zswpwb)),
    ]
}

/// The counters a run without zswap leaves out of its decided figures.
pub(crate) fn is_zswap_counter(name: &str) -> bool {
    VmEvent::ZSWAP.iter().any(|e| e.name() == name)
}

/// zswap's invariants: the pool's own accounting (stored pages equal
/// entries, pool size equals the sum of the entries' compressed sizes),
/// every entry's slot allocated (owned or in the swap cache), and the
/// frames held equal to the pool's pages.
pub(crate) fn check(mem: &Memory, swap: &SwapSubsystem, bad: &mut Vec<String>) {
    let Some(z) = swap.zswap() else {
        return;
    };
    bad.extend(
        z.check_invariants()
            .into_iter()
            .map(|l| format!("invariant 8 (zswap pool): {l}")),
    );
    for e in z.entries() {
        let allocated = swap.slot(e).is_some_and(|s| !s.is_free());
        if !allocated {
            bad.push(format!(
                "invariant 8 (zswap): {e:?} is stored but its slot is free (a stale entry)"
            ));
            break;
        }
    }
    if mem.zswap_frames.len() != z.pool_pages() {
        bad.push(format!(
            "invariant 8 (zswap frames): {} frames held for a pool of {} pages",
            mem.zswap_frames.len(),
            z.pool_pages()
        ));
    }
}
