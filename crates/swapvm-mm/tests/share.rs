//! Sharing across address spaces: fork with swapped pages past the
//! per-slot count maximum (continuations) and back to every slot free,
//! copy-on-write after fork, a fork refused by a failed continuation, and
//! KSM merging identical pages of several processes and breaking a sharing
//! on write.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use swapvm_core::{PteKind, VmEvent, Vpn};
use swapvm_mm::{pg, FaultStop, ForkError, MmId, Wait};
use swapvm_swap::swapfile::SWAP_MAP_MAX;

/// `n` pages written with `pattern(base + i)`, then swapped out.
fn swapped_region(vm: &mut Vm, mm: MmId, n: u64, base: u8) -> Vpn {
    let r = vm.mem.mmap_anon(mm, n);
    for i in 0..n {
        vm.write_page(mm, r.add(i), base + i as u8);
    }
    for i in 0..n {
        vm.swap_out(mm, r.add(i));
    }
    r
}

#[test]
fn forks_past_the_count_maximum_use_continuations_and_every_slot_comes_back() {
    let mut vm = Vm::new(64);
    let parent = vm.mem.mm_create();
    let r = swapped_region(&mut vm, parent, 4, 10);
    let entries: Vec<_> = (0..4)
        .map(|i| vm.pte(parent, r.add(i)).swap_entry().unwrap())
        .collect();
    let children = u32::from(SWAP_MAP_MAX) + 8;
    let mut kids = Vec::new();
    for _ in 0..children {
        kids.push(vm.mem.fork(&mut vm.swap, parent).unwrap());
    }
    for &e in &entries {
        assert_eq!(
            vm.swap.swap_count(e),
            children + 1,
            "one count per swap PTE"
        );
    }
    let ty = entries[0].ty();
    assert!(
        vm.swap.device(ty).unwrap().continued_slots() >= 4,
        "counts above {SWAP_MAP_MAX} live in continuations"
    );
    // A child swaps in and reads the parent's bytes.
    let v = r.add(2);
    let Err(swapvm_mm::FaultStop::Retry(swapvm_mm::Wait::Folio(pfn))) =
        vm.access(kids[3], v, false)
    else {
        panic!("a swap fault starts a read");
    };
    vm.now += LATENCY;
    for d in vm.swap.complete_due(vm.now) {
        vm.mem.swap_read_done(pfn, Ok(d.buf.as_slice()));
    }
    assert_eq!(vm.access(kids[3], v, false), Ok(pfn));
    assert_eq!(vm.mem.ram.page(pfn), &pattern(12)[..]);
    assert_eq!(vm.swap.swap_count(entries[2]), children, "the child's put");
    for k in kids {
        vm.mem.exit_mmap(&mut vm.swap, k);
    }
    vm.mem.exit_mmap(&mut vm.swap, parent);
    assert_eq!(vm.swap.nr_swap_pages(), vm.total_swap(), "every slot free");
    assert_eq!(vm.swap.device(ty).unwrap().continued_slots(), 0);
    assert_eq!(vm.mem.nr_free(), 64, "every frame free");
    vm.assert_clean();
}

#[test]
fn a_failed_continuation_refuses_the_fork_and_leaks_nothing() {
    let mut vm = Vm::new(64);
    vm.swap.set_count_max(2);
    let parent = vm.mem.mm_create();
    let r = swapped_region(&mut vm, parent, 3, 1);
    let e = vm.pte(parent, r).swap_entry().unwrap();
    let a = vm.mem.fork(&mut vm.swap, parent).unwrap();
    assert_eq!(vm.swap.swap_count(e), 2);
    vm.swap.inject_continuation_enomem(1);
    let mms_before = vm.mem.mms.iter().flatten().count();
    assert_eq!(
        vm.mem.fork(&mut vm.swap, parent),
        Err(ForkError::NoMem { entry: e })
    );
    assert_eq!(
        vm.mem.mms.iter().flatten().count(),
        mms_before,
        "child torn down"
    );
    for i in 0..3 {
        let e = vm.pte(parent, r.add(i)).swap_entry().unwrap();
        assert_eq!(vm.swap.swap_count(e), 2, "the failed fork took nothing");
    }
    // The next fork gets its continuation.
    let b = vm.mem.fork(&mut vm.swap, parent).unwrap();
    assert_eq!(vm.swap.swap_count(e), 3);
    for m in [a, b, parent] {
        vm.mem.exit_mmap(&mut vm.swap, m);
    }
    assert_eq!(vm.swap.nr_swap_pages(), vm.total_swap());
    // The injected failure is the only warning-free refusal: no contract fired.
    vm.assert_clean();
}

#[test]
fn a_write_after_fork_copies_and_the_other_side_keeps_its_bytes() {
    let mut vm = Vm::new(64);
    let parent = vm.mem.mm_create();
    let r = vm.mem.mmap_anon(parent, 2);
    let old = vm.write_page(parent, r, 0x33);
    let child = vm.mem.fork(&mut vm.swap, parent).unwrap();
    assert_eq!(vm.mem.folios.get(old).mapcount, 2);
    for m in [parent, child] {
        match vm.pte(m, r).kind() {
            PteKind::Present { pfn, writable, .. } => {
                assert_eq!(pfn, old);
                assert!(!writable, "write-protected after fork");
            }
            k => panic!("{k:?}"),
        }
    }
    let cows = vm.stat.get(VmEvent::CowFault);
    let new = vm.write_page(child, r, 0x44);
    assert_ne!(new, old, "the child got a copy");
    assert_eq!(vm.stat.get(VmEvent::CowFault), cows + 1);
    assert_eq!(vm.mem.ram.page(old), &pattern(0x33)[..], "parent's bytes");
    assert_eq!(vm.mem.folios.get(old).mapcount, 1);
    // The parent is now exclusive: its write reuses the folio.
    assert_eq!(vm.write_page(parent, r, 0x55), old);
    assert_eq!(vm.stat.get(VmEvent::CowFault), cows + 1);
    for m in [child, parent] {
        vm.mem.exit_mmap(&mut vm.swap, m);
    }
    assert_eq!(vm.mem.nr_free(), 64);
    vm.assert_clean();
}

/// Two children forked after their parent's page went to swap share its
/// entry. The first one's fault reads it into the swap cache; the other
/// one's maps that folio (same fork family, same index: no
/// `ksm_might_need_to_copy` copy), and the rmap walk reaches both
/// mappings, because a folio of a shared entry joins the family's root
/// anon_vma.
#[test]
fn a_forked_siblings_swap_in_maps_the_cached_folio_instead_of_copying() {
    let mut vm = Vm::new(64);
    let parent = vm.mem.mm_create();
    let r = swapped_region(&mut vm, parent, 1, 0x21);
    let entry = vm.pte(parent, r).swap_entry().unwrap();
    let a = vm.mem.fork(&mut vm.swap, parent).unwrap();
    let b = vm.mem.fork(&mut vm.swap, parent).unwrap();
    assert_eq!(vm.swap.swap_count(entry), 3);
    let pfn = match vm.access(a, r, false) {
        Err(FaultStop::Retry(Wait::Folio(pfn))) => pfn,
        x => panic!("expected a read to wait for, got {x:?}"),
    };
    vm.now += LATENCY;
    let done = vm.swap.complete_due(vm.now);
    assert_eq!(done.len(), 1);
    vm.mem.swap_read_done(pfn, Ok(done[0].buf.as_slice()));
    assert_eq!(vm.access(a, r, false), Ok(pfn));
    assert_eq!(vm.access(b, r, false), Ok(pfn), "b maps the cached folio");
    assert_eq!(vm.stat.get(VmEvent::KsmSwapinCopy), 0);
    assert_eq!(vm.mem.folios.get(pfn).mapcount, 2);
    assert_eq!(vm.mem.ram.page(pfn), &pattern(0x21)[..]);
    // Reclaim's unmap finds both mappings through the rmap walk.
    assert!(vm.mem.lru.del(&mut vm.mem.folios, pfn));
    vm.mem.folios.get_mut(pfn).set(pg::LOCKED);
    assert!(
        vm.mem.try_to_unmap(&mut vm.swap, pfn),
        "every mapping found"
    );
    vm.mem.folios.get_mut(pfn).clear(pg::LOCKED);
    for m in [parent, a, b] {
        assert_eq!(vm.pte(m, r).kind(), PteKind::Swap(entry));
    }
    assert_eq!(vm.mem.folios.get(pfn).mapcount, 0);
    assert_eq!(vm.swap.swap_count(entry), 3);
    vm.mem.lru.add(&mut vm.mem.folios, pfn);
    for m in [parent, a, b] {
        vm.mem.exit_mmap(&mut vm.swap, m);
    }
    assert_eq!(vm.swap.swap_count(entry), 0);
    vm.assert_clean();
}

#[test]
fn ksm_merges_identical_pages_of_several_processes_and_a_write_breaks_one() {
    const PROCS: usize = 4;
    const PAGES: u64 = 8;
    let mut vm = Vm::new(128);
    vm.mem.ksm.pages_to_scan = 64;
    let mut mms = Vec::new();
    let mut regions = Vec::new();
    for _ in 0..PROCS {
        let mm = vm.mem.mm_create();
        let r = vm.mem.mmap_anon(mm, PAGES);
        // Page i holds content i in every process.
        for i in 0..PAGES {
            vm.write_page(mm, r.add(i), i as u8);
        }
        assert!(vm.mem.ksm_madvise(&mut vm.swap, mm, r, true));
        mms.push(mm);
        regions.push(r);
    }
    let used_before = 128 - vm.mem.nr_free();
    // Three passes: checksums, then the unstable tree, then the merges.
    for _ in 0..6 {
        vm.mem.ksm_do_scan(&mut vm.swap);
    }
    let s = vm.mem.ksm.stats();
    assert_eq!(s.pages_shared, PAGES, "{s:?}");
    assert_eq!(s.pages_sharing, PAGES * (PROCS as u64 - 1), "{s:?}");
    assert!(s.full_scans >= 2, "{s:?}");
    let used_after = 128 - vm.mem.nr_free();
    assert_eq!(
        used_before - used_after,
        s.pages_sharing,
        "each sharing mapping gave back its frame"
    );
    // Every process still reads its bytes, through one KSM folio per content.
    for (k, (&mm, &r)) in mms.iter().zip(&regions).enumerate() {
        for i in 0..PAGES {
            let pfn = vm.access(mm, r.add(i), false).unwrap();
            assert!(vm.mem.folios.get(pfn).test(pg::KSM), "proc {k} page {i}");
            assert_eq!(vm.mem.ram.page(pfn), &pattern(i as u8)[..]);
        }
    }
    // A write to one copy gives that process a private copy.
    let kpfn = vm.access(mms[1], regions[1].add(5), false).unwrap();
    let mine = vm.write_page(mms[1], regions[1].add(5), 0x99);
    assert_ne!(mine, kpfn);
    assert!(!vm.mem.folios.get(mine).test(pg::KSM));
    assert_eq!(vm.mem.ram.page(mine), &pattern(0x99)[..]);
    assert_eq!(
        vm.mem.ram.page(kpfn),
        &pattern(5)[..],
        "the others keep theirs"
    );
    assert_eq!(vm.stat.get(VmEvent::CowKsm), 1);
    let s = vm.mem.ksm.stats();
    assert_eq!(s.pages_sharing, PAGES * (PROCS as u64 - 1) - 1);
    for mm in mms {
        vm.mem.exit_mmap(&mut vm.swap, mm);
    }
    assert_eq!(
        vm.mem.ksm.stats().pages_shared,
        0,
        "stable nodes go with their folios"
    );
    assert_eq!(vm.mem.nr_free(), 128);
    vm.assert_clean();
}
