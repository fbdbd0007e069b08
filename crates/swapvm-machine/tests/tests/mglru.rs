//! Tiny machines under `reclaim.policy = "mglru"`: they swap both ways
//! with every byte verified and the checker (the generation invariants
//! included) clean after every tick; `min_ttl_ms` ends thrashing with an
//! OOM kill.

use super::{assert_swapped_and_clean, describe, run_checked, tiny, Shape};
use swapvm_core::VmEvent;

fn mglru(extra: &'static str, seed: u64) -> Shape {
    Shape {
        seed,
        swap_extra: extra,
        ..Shape::default()
    }
}

#[test]
fn tiny_machines_swap_and_check_clean() {
    let t = tiny(&mglru("[reclaim]\npolicy = \"mglru\"", 2));
    let r = run_checked(&t);
    assert_swapped_and_clean(&r);
    assert!(r.counter(VmEvent::PgScanAnon) > 0, "{}", describe(&r));
}

/// A 20 MiB process thrashes 8 MiB of RAM: with a `min_ttl_ms` longer
/// than the run, kswapd finds every generation too young to evict and the
/// OOM killer acts (without it, the machine thrashes through: the test
/// above).
#[test]
fn min_ttl_kills_instead_of_thrashing() {
    let t = tiny(&mglru(
        "[reclaim]\npolicy = \"mglru\"\nmin_ttl_ms = 100000000",
        1,
    ));
    let r = run_checked(&t);
    assert!(r.counter(VmEvent::OomKill) > 0, "{}", describe(&r));
    assert!(!r.killed.is_empty(), "{}", describe(&r));
}
