//! The mTHP swap allocator harness (`thp_swap_allocator_test`'s shape) at
//! a quarter of the selftest's sizes: once the device is fragmented, the
//! earlier allocator (large folios only from wholly free clusters) falls
//! back to splitting most 64 KiB folios, and the per-order allocator,
//! which keeps nonfull clusters per order, almost never does.

#![allow(clippy::unwrap_used)]

use swapvm_core::config::Allocator;
use swapvm_machine::thp_alloc_test::ThpAllocTest;

/// The mean fallback share of the second half of the iterations.
fn fragmented_fallback(allocator: Allocator, aligned_swapin: bool) -> f64 {
    let dir = tempfile::Builder::new()
        .prefix("swapvm-thp-alloc-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let t = ThpAllocTest {
        small: true,
        aligned_swapin,
        allocator,
        iterations: 40,
        scale: 4,
        seed: 1,
    };
    let its = t.run(dir.path()).unwrap();
    assert_eq!(its.len(), 40);
    assert!(its.iter().all(|i| i.swpout + i.fallback > 0), "{its:?}");
    let late = &its[20..];
    late.iter().map(|i| i.fallback_pct()).sum::<f64>() / late.len() as f64
}

#[test]
fn the_earlier_allocator_falls_back_once_fragmented_and_per_order_does_not() {
    for aligned in [false, true] {
        let old = fragmented_fallback(Allocator::FreeClustersOnly, aligned);
        let new = fragmented_fallback(Allocator::PerOrder, aligned);
        let mode = if aligned { "-a -s" } else { "-s" };
        assert!(old >= 80.0, "{mode}: free-clusters-only fallback {old:.1}%");
        assert!(new <= 5.0, "{mode}: per-order fallback {new:.1}%");
    }
}
