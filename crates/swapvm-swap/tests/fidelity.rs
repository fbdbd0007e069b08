//! Kernel-fidelity tests of the swap layer: count continuation, zeromap,
//! device priorities, device references and swapoff refusal, hibernation
//! extents (and the seed review's bugs, re-introduced by switch), allocator
//! fragmentation, discard, and the plug's early flush. Real images in /var/tmp, real io_uring.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use swapvm_core::{Order, Pfn, SimRng, SwapType, SwpEntry, VmStat, Warnings, PAGE_SIZE};
use swapvm_swap::cluster::SWAPFILE_CLUSTER;
use swapvm_swap::header::mkswap;
use swapvm_swap::page_io::MERGE_MAX_PAGES;
use swapvm_swap::{
    AllocatorKind, SwapError, SwapFolio, SwapOnOptions, SwapSubsystem, SwsuspExtents,
};
use tempfile::NamedTempFile;

const MIB: u64 = 1 << 20;

#[derive(Debug)]
struct F {
    pfn: Pfn,
    order: Order,
    swap: Option<SwpEntry>,
}

impl F {
    fn new(pfn: u32, order: u8) -> F {
        F {
            pfn: Pfn(pfn),
            order: Order::new(order),
            swap: None,
        }
    }
}

impl SwapFolio for F {
    fn pfn(&self) -> Pfn {
        self.pfn
    }
    fn order(&self) -> Order {
        self.order
    }
    fn is_locked(&self) -> bool {
        true
    }
    fn is_writeback(&self) -> bool {
        false
    }
    fn swap(&self) -> Option<SwpEntry> {
        self.swap
    }
    fn set_swap(&mut self, entry: Option<SwpEntry>) {
        self.swap = entry;
    }
}

fn image(bytes: u64) -> NamedTempFile {
    let f = tempfile::Builder::new()
        .prefix("swapvm-fidelity-")
        .tempfile_in("/var/tmp")
        .unwrap();
    mkswap(f.path(), bytes, "", None).unwrap();
    f
}

fn subsystem() -> SwapSubsystem {
    SwapSubsystem::new(
        Arc::new(VmStat::new()),
        Arc::new(Warnings::new(false)),
        2,
        1,
    )
}

fn on(
    swap: &mut SwapSubsystem,
    img: &NamedTempFile,
    priority: i32,
    allocator: AllocatorKind,
    discard: bool,
) -> SwapType {
    swap.swapon(&SwapOnOptions {
        path: img.path().to_owned(),
        priority,
        allocator,
        discard,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("swapon failed (io_uring needed): {e}"))
}

#[test]
fn counts_past_the_maximum_use_continuations_and_come_back() {
    let img = image(4 * MIB);
    let mut swap = subsystem();
    on(&mut swap, &img, 0, AllocatorKind::PerOrder, false);
    swap.set_count_max(4);
    // The forks below copy PTEs: they hold the page-table lock.
    let _ptl = swap
        .lockdep()
        .lock(swapvm_core::LockClass::PageTable { mm: 0 });
    let total = swap.nr_swap_pages();
    let mut f = F::new(1, 0);
    let e = swap.folio_alloc_swap(&mut f, 0).unwrap();
    swap.folio_dup_swap(&f, None).unwrap();
    // Fork 200 times: each child copies the swap PTE.
    for _ in 0..200 {
        swap.swap_dup_entry_direct(e).unwrap();
    }
    assert_eq!(swap.swap_count(e), 201);
    assert_eq!(
        swap.slot(e).unwrap().count,
        4,
        "the table holds the maximum"
    );
    assert_eq!(swap.device(e.ty()).unwrap().continued_slots(), 1);
    for _ in 0..201 {
        swap.swap_put_entries_direct(e, 1);
    }
    assert_eq!(swap.swap_count(e), 0);
    assert_eq!(swap.device(e.ty()).unwrap().continued_slots(), 0);
    assert!(swap.folio_free_swap(&mut f));
    assert_eq!(swap.nr_swap_pages(), total);
    assert!(
        swap.check_accounting().is_empty(),
        "{:?}",
        swap.check_accounting()
    );
}

#[test]
fn continuation_enomem_fails_the_dup_and_changes_nothing() {
    let img = image(4 * MIB);
    let mut swap = subsystem();
    on(&mut swap, &img, 0, AllocatorKind::PerOrder, false);
    swap.set_count_max(2);
    let _ptl = swap
        .lockdep()
        .lock(swapvm_core::LockClass::PageTable { mm: 0 });
    let mut f = F::new(1, 0);
    let e = swap.folio_alloc_swap(&mut f, 0).unwrap();
    swap.folio_dup_swap(&f, None).unwrap();
    swap.folio_dup_swap(&f, None).unwrap();
    swap.inject_continuation_enomem(1);
    assert!(matches!(
        swap.swap_dup_entry_direct(e),
        Err(SwapError::NoMem { .. })
    ));
    assert!(
        matches!(swap.folio_dup_swap(&f, None), Ok(())),
        "only one failure was armed"
    );
    assert_eq!(swap.swap_count(e), 3);
    swap.inject_continuation_enomem(1);
    // A slot that already has a continuation needs no new one.
    swap.swap_dup_entry_direct(e).unwrap();
    assert_eq!(swap.swap_count(e), 4);
}

#[test]
fn zeromap_bits_follow_the_slot_and_clear_on_free() {
    let img = image(4 * MIB);
    let mut swap = subsystem();
    on(&mut swap, &img, 0, AllocatorKind::PerOrder, false);
    let mut f = F::new(1, 0);
    let e = swap.folio_alloc_swap(&mut f, 0).unwrap();
    assert!(!swap.swap_zeromap_test(e, 1));
    swap.swap_zeromap_folio_set(&f, true);
    assert!(swap.swap_zeromap_test(e, 1));
    swap.folio_dup_swap(&f, None).unwrap();
    assert!(swap.swap_zeromap_test(e, 1), "a count change keeps the bit");
    swap.folio_put_swap(&f, None);
    assert!(swap.folio_free_swap(&mut f));
    let mut g = F::new(2, 0);
    let e2 = swap.folio_alloc_swap(&mut g, 0).unwrap();
    assert_eq!(e2, e, "the freed slot is reused first");
    assert!(
        !swap.swap_zeromap_test(e2, 1),
        "a freed slot forgets it held zeros"
    );
}

#[test]
fn higher_priority_first_then_round_robin_among_equals() {
    let (a, b, c) = (image(4 * MIB), image(4 * MIB), image(4 * MIB));
    let mut swap = subsystem();
    let low = on(&mut swap, &a, -1, AllocatorKind::PerOrder, false);
    let hi1 = on(&mut swap, &b, 5, AllocatorKind::PerOrder, false);
    let hi2 = on(&mut swap, &c, 5, AllocatorKind::PerOrder, false);
    let mut used = Vec::new();
    for i in 0..6 {
        let mut f = F::new(i, 0);
        used.push(swap.folio_alloc_swap(&mut f, 0).unwrap().ty());
    }
    assert!(!used.contains(&low));
    for w in used.windows(2) {
        assert_ne!(w[0], w[1], "equal priorities alternate: {used:?}");
    }
    assert!(used.contains(&hi1) && used.contains(&hi2));
    // Fill both high-priority devices; then the low one serves.
    let hi_slots: u64 = [hi1, hi2]
        .iter()
        .map(|&t| swap.device(t).unwrap().pages)
        .sum();
    for i in 6..hi_slots as u32 {
        let mut f = F::new(i, 0);
        swap.folio_alloc_swap(&mut f, 0).unwrap();
    }
    let mut f = F::new(u32::MAX - 1, 0);
    assert_eq!(swap.folio_alloc_swap(&mut f, 0).unwrap().ty(), low);
}

#[test]
fn swapoff_refuses_new_references_and_waits_for_the_last() {
    let (a, b) = (image(4 * MIB), image(4 * MIB));
    let mut swap = subsystem();
    let t0 = on(&mut swap, &a, 1, AllocatorKind::PerOrder, false);
    let t1 = on(&mut swap, &b, 0, AllocatorKind::PerOrder, false);
    let mut f = F::new(1, 0);
    let e = swap.folio_alloc_swap(&mut f, 0).unwrap();
    assert_eq!(e.ty(), t0);
    let r = swap.get_swap_device(e).unwrap();
    swap.swapoff_begin(t0).unwrap();
    assert!(
        swap.get_swap_device(e).is_none(),
        "a dying device refuses new references"
    );
    let mut g = F::new(2, 0);
    assert_eq!(
        swap.folio_alloc_swap(&mut g, 0).unwrap().ty(),
        t1,
        "and new allocations"
    );
    assert!(matches!(
        swap.swapoff_finish(t0),
        Err(SwapError::Busy { .. })
    ));
    swap.put_swap_device(r);
    assert!(
        matches!(swap.swapoff_finish(t0), Err(SwapError::Busy { .. })),
        "a slot is still in use"
    );
    assert!(swap.folio_free_swap(&mut f));
    let before = swap.total_swap_pages();
    swap.swapoff_finish(t0).unwrap();
    assert!(swap.device(t0).is_none());
    assert!(swap.total_swap_pages() < before);
    assert!(
        swap.check_accounting().is_empty(),
        "{:?}",
        swap.check_accounting()
    );
}

#[test]
fn hibernation_extents_free_inclusively_and_count_once() {
    let img = image(4 * MIB);
    let mut swap = subsystem();
    let ty = on(&mut swap, &img, 0, AllocatorKind::PerOrder, false);
    let total = swap.nr_swap_pages();
    let mut ext = SwsuspExtents::new(ty);
    for _ in 0..100 {
        ext.alloc_swapdev_block(&mut swap).unwrap();
    }
    assert_eq!(
        swap.nr_swap_pages(),
        total - 100,
        "one page per hibernation slot"
    );
    assert_eq!(ext.slots(), 100);
    assert!(ext.check(&swap).is_empty());
    ext.free_all_swap_pages(&mut swap);
    assert_eq!(swap.nr_swap_pages(), total);
    assert!(ext.check(&swap).is_empty());
    assert!(swap.check_accounting().is_empty());
}

/// The seed review: "for (offset = ext->start; offset < ext->end; offset++)"
/// leaves the last slot of every extent allocated. With the bug switched on
/// the checker must name one leaked slot per extent.
#[test]
fn exclusive_end_extent_release_is_caught_as_a_leak() {
    let img = image(4 * MIB);
    let mut swap = subsystem();
    let ty = on(&mut swap, &img, 0, AllocatorKind::PerOrder, false);
    swap.bugs.hib_free_exclusive_end = true;
    let mut ext = SwsuspExtents::new(ty);
    // Three extents: allocate, and punch gaps with ordinary folios.
    let mut folios = Vec::new();
    for i in 0..3 {
        for _ in 0..5 {
            ext.alloc_swapdev_block(&mut swap).unwrap();
        }
        let mut f = F::new(i, 0);
        swap.folio_alloc_swap(&mut f, 0).unwrap();
        folios.push(f);
    }
    assert_eq!(ext.extents().len(), 3, "{:?}", ext.extents());
    ext.free_all_swap_pages(&mut swap);
    let leaks = swapvm_swap::hibernate::check_hibernation_slots(&swap, ty, |_| false);
    assert_eq!(leaks.len(), 3, "{leaks:?}");
    assert!(leaks.iter().all(|l| l.contains("leak")));
}

/// The seed review: swap_alloc_hibernation_slot decremented nr_swap_pages
/// although swap_range_alloc already had. The accounting check names it.
#[test]
fn double_decrement_of_nr_swap_pages_is_caught() {
    let img = image(4 * MIB);
    let mut swap = subsystem();
    let ty = on(&mut swap, &img, 0, AllocatorKind::PerOrder, false);
    swap.bugs.hib_alloc_double_dec = true;
    swap.swap_alloc_hibernation_slot(ty).unwrap();
    let bad = swap.check_accounting();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("nr_swap_pages"), "{bad:?}");
}

/// Fills a device with a seeded mix of order-0 and order-4 allocations
/// and frees and returns the fraction of order-4 allocations that failed.
fn order4_fallback(kind: AllocatorKind, seed: u64) -> f64 {
    let img = image(32 * MIB);
    let mut swap = subsystem();
    on(&mut swap, &img, 0, kind, false);
    let mut rng = SimRng::new(seed);
    let mut live: Vec<F> = Vec::new();
    let (mut tries, mut fails) = (0u64, 0u64);
    for i in 0..60_000u32 {
        let used = 1.0 - swap.nr_swap_pages() as f64 / swap.total_swap_pages() as f64;
        if !live.is_empty() && (used > 0.8 || rng.chance(0.45)) {
            let j = rng.below(live.len() as u64) as usize;
            let mut f = live.swap_remove(j);
            assert!(swap.folio_free_swap(&mut f));
            continue;
        }
        let order = if rng.chance(0.2) { 4 } else { 0 };
        let mut f = F::new(i, order);
        match swap.folio_alloc_swap(&mut f, (i % 2) as usize) {
            Ok(_) => live.push(f),
            Err(SwapError::NoSpace { .. }) => fails += u64::from(order == 4),
            Err(e) => panic!("{e}"),
        }
        tries += u64::from(order == 4);
    }
    assert!(swap.check_accounting().is_empty());
    let s = swap.order_stats();
    assert_eq!(s[4].alloc + s[4].alloc_fail, tries);
    assert_eq!(s[4].alloc_fail, fails);
    fails as f64 / tries as f64
}

/// The per-order design keeps order-4 runs in clusters that serve order 4,
/// so under churn far fewer order-4 allocations fail than in the design
/// that only hands large folios wholly free clusters.
#[test]
fn per_order_lists_fragment_less_for_large_folios() {
    let per_order = order4_fallback(AllocatorKind::PerOrder, 7);
    let legacy = order4_fallback(AllocatorKind::FreeClustersOnly, 7);
    println!("order-4 fallback: per-order {per_order:.3}, free-clusters-only {legacy:.3}");
    assert!(
        legacy > 0.0,
        "churn at 80% use must fragment the legacy design"
    );
    assert!(
        per_order < legacy,
        "per-order {per_order} vs free-clusters-only {legacy}"
    );
}

#[test]
fn discard_punches_holes_in_freed_clusters() {
    let img = image(8 * MIB);
    let mut swap = subsystem();
    on(&mut swap, &img, 0, AllocatorKind::PerOrder, true);
    let page = vec![0x5a; PAGE_SIZE];
    let mut live = Vec::new();
    // Fill one whole cluster past the header cluster with written pages.
    for i in 0..(2 * SWAPFILE_CLUSTER) as u32 {
        let mut f = F::new(i, 0);
        let e = swap.folio_alloc_swap(&mut f, 0).unwrap();
        swap.swap_writepage(e, &page, 0, 0).unwrap();
        live.push(f);
    }
    for d in swap.complete_due(10) {
        assert!(d.result.is_ok());
    }
    let blocks_before = std::fs::metadata(img.path()).unwrap().blocks();
    for f in &mut live {
        assert!(swap.folio_free_swap(f));
    }
    let d = swap.device(SwapType(0)).unwrap();
    assert!(d.discards >= 1, "a wholly free cluster is discarded");
    let blocks_after = std::fs::metadata(img.path()).unwrap().blocks();
    assert!(
        blocks_after < blocks_before,
        "{blocks_after} < {blocks_before}"
    );
}

/// A plug that holds a full merged request goes to the disk at once, as
/// the block layer flushes a plug with a big request: within one tick the
/// first `MERGE_MAX_PAGES` adjacent writes are already one request, and
/// every folio still completes on its own, with its own bytes.
#[test]
fn a_full_plug_goes_to_the_disk_before_its_tick_ends() {
    let img = image(8 * MIB);
    let mut swap = subsystem();
    let ty = on(&mut swap, &img, 0, AllocatorKind::PerOrder, false);
    let mut live = Vec::new();
    for i in 0..MERGE_MAX_PAGES as u32 {
        assert_eq!(
            swap.io_stats(ty).writes_merged,
            0,
            "write {i}: still held in the plug"
        );
        let mut f = F::new(i, 0);
        let e = swap.folio_alloc_swap(&mut f, 0).unwrap();
        swap.swap_writepage(e, &[i as u8; PAGE_SIZE], u64::from(i), 0)
            .unwrap();
        live.push((f, e));
    }
    assert_eq!(
        swap.io_stats(ty).writes_merged,
        MERGE_MAX_PAGES - 1,
        "the full plug went out as one request"
    );
    let done = swap.complete_due(1);
    assert_eq!(done.len(), live.len());
    for d in &done {
        assert!(d.result.is_ok(), "{:?}", d.result);
        let (_, e) = &live[d.cookie as usize];
        assert_eq!(d.entry, *e);
        assert!(d.buf.as_slice().iter().all(|&b| b == d.cookie as u8));
    }
    for (f, _) in &mut live {
        assert!(swap.folio_free_swap(f));
    }
}

// ---- lock-context checks (lockdep) -------------------------------------

/// A direct put is a page-table owner dropping its entry: without the
/// page-table (or mapping) lock it is a counted warning naming the caller.
#[test]
fn direct_put_without_the_page_table_lock_is_caught() {
    let img = image(4 * MIB);
    let mut swap = subsystem();
    on(&mut swap, &img, 0, AllocatorKind::PerOrder, false);
    let mut f = F::new(1, 0);
    let e = swap.folio_alloc_swap(&mut f, 0).unwrap();
    swap.folio_dup_swap(&f, None).unwrap();
    swap.folio_dup_swap(&f, None).unwrap();
    let site = swapvm_swap::sites::DIRECT_OWNER_UNLOCKED;
    {
        let _ptl = swap
            .lockdep()
            .lock(swapvm_core::LockClass::PageTable { mm: 7 });
        swap.swap_put_entries_direct(e, 1);
    }
    assert_eq!(swap.warnings().count(site), 0, "put under the lock");
    swap.swap_put_entries_direct(e, 1);
    assert_eq!(swap.warnings().count(site), 1);
    let first = swap.warnings().records()[0].first.clone();
    assert!(first.contains("swap_put_entries_direct"), "{first}");
    assert!(
        first.contains("fidelity.rs"),
        "the caller is named: {first}"
    );
    assert_eq!(swap.swap_count(e), 0, "the put itself still applied");
}

/// "Is this slot still swapped" reads the slot's count: under its cluster
/// lock it is silent, without it a counted warning.
#[test]
fn slot_state_read_without_the_cluster_lock_is_caught() {
    let img = image(4 * MIB);
    let mut swap = subsystem();
    on(&mut swap, &img, 0, AllocatorKind::PerOrder, false);
    let mut f = F::new(1, 0);
    let e = swap.folio_alloc_swap(&mut f, 0).unwrap();
    swap.folio_dup_swap(&f, None).unwrap();
    let site = swapvm_swap::sites::SLOT_READ_UNLOCKED;
    {
        let _ci = swap.swap_cluster_lock(e);
        assert!(swap.swap_entry_swapped(e));
    }
    assert_eq!(swap.warnings().total(), 0);
    assert!(swap.swap_entry_swapped(e));
    assert_eq!(swap.warnings().count(site), 1);
    // Taking the same cluster lock twice is the deadlock lockdep reports.
    let _a = swap.swap_cluster_lock(e);
    let _b = swap.swap_cluster_lock(e);
    assert_eq!(
        swap.warnings().count(swapvm_core::lockdep::RECURSIVE_LOCK),
        1
    );
}

/// The seed review's lockdep splat: swap_free_hibernation_slot's sanity
/// check of the slot's state. Done inside the cluster lock it is silent;
/// with the bug switched on it runs after the unlock and the lock check
/// names the helper, the rule and the slot.
#[test]
fn seed_bug_slot_check_unlocked_is_caught_by_the_lock_check() {
    let img = image(4 * MIB);
    let mut swap = subsystem();
    let ty = on(&mut swap, &img, 0, AllocatorKind::PerOrder, false);
    let h = swap.swap_alloc_hibernation_slot(ty).unwrap();
    swap.swap_free_hibernation_slot(h);
    assert_eq!(
        swap.warnings().total(),
        0,
        "{:?}",
        swap.warnings().records()
    );
    swap.bugs.slot_check_unlocked = true;
    let h = swap.swap_alloc_hibernation_slot(ty).unwrap();
    swap.swap_free_hibernation_slot(h);
    let site = swapvm_swap::sites::SLOT_READ_UNLOCKED;
    assert_eq!(swap.warnings().count(site), 1);
    let r = &swap.warnings().records()[0];
    assert_eq!(r.site.func, "swap_entry_swapped");
    assert!(
        r.first.contains("SwapCluster") && r.first.contains("swapfile.rs"),
        "{}",
        r.first
    );
    assert!(
        swap.check_accounting().is_empty(),
        "the free itself was right"
    );
}
