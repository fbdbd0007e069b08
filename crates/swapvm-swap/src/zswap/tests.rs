//! The pool alone: stores, loads, rejects, limits and the LRU, checked
//! against the pool's own invariant check after every step.

use super::*;
use swapvm_core::{SwapOffset, SwapType};

fn params(max_pool_percent: u32) -> ZswapParams {
    ZswapParams {
        max_pool_percent,
        accept_threshold_percent: 50,
        shrinker_enabled: false,
        compressor: Compressor::Lz4,
    }
}

fn at(off: u64) -> SwpEntry {
    SwpEntry::new(SwapType(0), SwapOffset(off)).unwrap()
}

/// A page like a stamped page of the machine: a 24-byte head, zeros.
fn stamped(key: u64) -> Vec<u8> {
    let mut p = vec![0u8; PAGE_SIZE];
    p[..8].copy_from_slice(&key.to_le_bytes());
    p[8..16].copy_from_slice(&key.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    p[16..24].copy_from_slice(&(!key).rotate_left(17).to_le_bytes());
    p
}

fn noise(seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..PAGE_SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn ok(z: &Zswap) {
    let bad = z.check_invariants();
    assert!(bad.is_empty(), "{bad:?}");
}

#[test]
fn zs_size_rounds_to_classes() {
    assert_eq!(zs_size(0), 0);
    assert_eq!(zs_size(1), 32);
    assert_eq!(zs_size(32), 32);
    assert_eq!(zs_size(33), 48);
    assert_eq!(zs_size(4000), 4000);
    assert_eq!(zs_size(4001), 4016);
}

#[test]
fn store_load_invalidate_round_trip() {
    let mut z = Zswap::new(params(100), 1000);
    for i in 1..=10 {
        assert!(z.store(at(i), &stamped(i), 1, 0, true));
        ok(&z);
    }
    let st = z.stats();
    assert_eq!(st.stored_pages, 10);
    // Ten small objects share one page.
    assert_eq!(z.pool_pages(), 1);
    assert_eq!(st.pool_total_size, PAGE_SIZE as u64);
    let mut out = vec![0u8; PAGE_SIZE];
    assert!(matches!(z.load(at(3), &mut out), Some(Ok(()))));
    assert_eq!(out, stamped(3));
    assert!(z.load(at(11), &mut out).is_none());
    assert!(z.invalidate(at(3)));
    assert!(!z.invalidate(at(3)));
    ok(&z);
    assert_eq!(z.stats().stored_pages, 9);
    for i in 1..=10 {
        z.invalidate(at(i));
    }
    ok(&z);
    assert_eq!(z.pool_pages(), 0);
}

#[test]
fn same_filled_takes_no_space_and_incompressible_is_rejected() {
    let mut z = Zswap::new(params(100), 1000);
    assert!(z.store(at(1), &[0xab; PAGE_SIZE], 1, 0, true));
    assert_eq!(z.stats().same_filled_pages, 1);
    assert_eq!(z.pool_pages(), 0);
    let mut out = vec![0u8; PAGE_SIZE];
    assert!(matches!(z.load(at(1), &mut out), Some(Ok(()))));
    assert!(out.iter().all(|&b| b == 0xab));
    assert!(!z.store(at(2), &noise(7), 1, 0, true));
    assert_eq!(z.stats().reject_compress_poor, 1);
    assert!(!z.contains(at(2)));
    ok(&z);
}

#[test]
fn a_refused_store_drops_the_stale_copy() {
    let mut z = Zswap::new(params(100), 1000);
    assert!(z.store(at(5), &stamped(5), 1, 0, true));
    assert!(!z.store(at(5), &noise(5), 1, 0, true));
    assert!(
        !z.contains(at(5)),
        "the old copy would be loaded instead of the device's"
    );
    ok(&z);
}

#[test]
fn a_large_folio_is_stored_whole_or_not_at_all() {
    let mut z = Zswap::new(params(100), 1000);
    let mut data = stamped(1);
    data.extend(noise(2));
    assert!(!z.store(at(8), &data, 2, 0, true));
    assert!(!z.contains(at(8)) && !z.contains(at(9)));
    let mut data = stamped(1);
    data.extend(stamped(2));
    assert!(z.store(at(8), &data, 2, 0, true));
    assert!(z.contains(at(8)) && z.contains(at(9)));
    ok(&z);
}

#[test]
fn a_full_pool_refuses_until_below_the_accept_threshold() {
    // 100 frames, 2% = 2 pages; accept at 50% of that = 1 page.
    let mut z = Zswap::new(params(2), 100);
    let mut i = 0;
    while z.pool_pages() < 2 {
        i += 1;
        // Noise with a compressible tail: a few objects fill a page.
        let mut p = noise(i);
        p[(i as usize * 64) % 2048 + 1024..].fill(0);
        assert!(z.store(at(i), &p, 1, 0, true), "store {i}");
    }
    assert!(!z.store(at(100), &stamped(100), 1, 0, true));
    assert_eq!(z.stats().pool_limit_hit, 1);
    assert!(z.shrink_pending);
    // Drop one entry: under the maximum but above the threshold: refused.
    let first = z.entries().next().unwrap();
    z.invalidate(first);
    if z.pool_pages() > z.accept_thr_pages() {
        assert!(!z.store(at(101), &stamped(101), 1, 0, true));
        assert_eq!(z.stats().pool_limit_hit, 2);
    }
    while z.pool_pages() > z.accept_thr_pages() {
        let e = z.entries().next().unwrap();
        z.invalidate(e);
    }
    assert!(z.store(at(102), &stamped(102), 1, 0, true));
    ok(&z);
}

#[test]
fn memcg_limits_go_up_the_tree() {
    let mut z = Zswap::new(params(100), 10_000);
    z.set_memcg(1, Some(0), Some(1), true);
    z.set_memcg(2, Some(1), None, false);
    assert!(z.may_zswap(2));
    assert!(!z.writeback_enabled(2) && z.writeback_enabled(1));
    let mut i = 0;
    while z.may_zswap(2) {
        i += 1;
        assert!(z.store(at(i), &noise(i)[..PAGE_SIZE / 2].repeat(2), 1, 2, true));
    }
    assert!(
        z.memcg(1).bytes_hier >= PAGE_SIZE as u64,
        "the parent's limit stopped it"
    );
    assert_eq!(z.memcg(1).bytes, 0);
    assert!(!z.store(at(999), &stamped(1), 1, 2, false));
    assert_eq!(z.stats().reject_memcg_max, 1);
    ok(&z);
}

#[test]
fn the_shrinker_gives_a_second_chance_and_skips_memcgs_without_writeback() {
    let mut z = Zswap::new(params(100), 1000);
    z.set_memcg(1, Some(0), None, false);
    assert!(z.store(at(1), &stamped(1), 1, 1, true));
    assert!(z.store(at(2), &stamped(2), 1, 0, true));
    assert!(z.store(at(3), &stamped(3), 1, 0, true));
    // All referenced: each is rotated once, then the coldest of memcg 0.
    assert_eq!(z.pick_victim(None), Some(at(2)));
    assert_eq!(z.pick_victim(Some(1)), None);
    z.written_back(at(2));
    assert_eq!(z.stats().written_back_pages, 1);
    assert_eq!(z.memcg(0).zswpwb, 1);
    assert_eq!(z.pick_victim(None), Some(at(3)));
    ok(&z);
}

#[test]
fn metadata_only_pages_compress_as_the_page_they_stand_for() {
    let mut full = Zswap::new(params(100), 1000);
    let mut meta = Zswap::new(params(100), 1000);
    meta.set_content_model(Box::new(|word: &[u8], page: &mut [u8]| {
        let key = u64::from_le_bytes(word.try_into().unwrap());
        page.copy_from_slice(&stamped(key));
    }));
    for i in 1..=300u64 {
        assert!(full.store(at(i), &stamped(i), 1, 0, true));
        assert!(meta.store(at(i), &i.to_le_bytes(), 1, 0, true));
    }
    assert_eq!(full.stats(), meta.stats());
    assert_eq!(full.pool_pages(), meta.pool_pages());
    let mut word = [0u8; 8];
    assert!(matches!(meta.load(at(7), &mut word), Some(Ok(()))));
    assert_eq!(u64::from_le_bytes(word), 7);
    ok(&meta);
}
