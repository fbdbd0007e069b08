//! Integration tests of the fault paths (mm/memory.c counterparts): the
//! anonymous fault, swap-out by hand through rmap and the swap cache,
//! swap-in (`do_swap_page`) with its retry, the write-protect fault, the
//! min watermark, SIGSEGV outside a VMA, and teardown releasing swap slots
//! and frames. Swap is a real image in /var/tmp on the io_uring engine.

// Tests may unwrap; clippy's allow-unwrap-in-tests does not reach the
// helpers of an integration-test crate.
#![allow(clippy::unwrap_used)]

use swapvm_core::{Pfn, Pte, PteKind, VmEvent, Vpn};
use swapvm_mm::{pg, FaultStop, LruList, Wait};
use swapvm_swap::{Slot, SlotBinding};

mod common;
use common::*;

fn present(pte: Pte) -> (Pfn, bool, bool, bool) {
    match pte.kind() {
        PteKind::Present {
            pfn,
            writable,
            accessed,
            dirty,
        } => (pfn, writable, accessed, dirty),
        k => panic!("expected a present PTE, got {k:?}"),
    }
}

#[test]
fn first_write_allocates_a_zeroed_writable_dirty_frame() {
    let mut vm = Vm::new(32);
    let mm = vm.mem.mm_create();
    // Leave garbage in a frame and free it, so the next fault reuses it.
    let old = vm.mem.mmap_anon(mm, 1);
    let dirty_pfn = vm.write_page(mm, old, 0xa5);
    vm.mem.munmap(&mut vm.swap, mm, old);
    assert_eq!(vm.mem.nr_free(), 32);

    let r = vm.mem.mmap_anon(mm, 4);
    let v = r.add(2);
    let faults = vm.stat.get(VmEvent::PgFault);
    let pfn = vm.access(mm, v, true).unwrap();
    assert_eq!(pfn, dirty_pfn, "the freed frame is reused (LIFO)");
    assert_eq!(vm.stat.get(VmEvent::PgFault), faults + 1);
    assert!(
        vm.mem.ram.page(pfn).iter().all(|&b| b == 0),
        "a new anonymous page must be zero-filled"
    );
    let (mapped, writable, accessed, dirty) = present(vm.pte(mm, v));
    assert_eq!(mapped, pfn);
    assert!(writable && accessed && dirty, "{:?}", vm.pte(mm, v));
    let p = vm.mem.folios.get(pfn);
    assert!(p.test(pg::ANON | pg::SWAPBACKED | pg::UPTODATE | pg::LRU));
    assert_eq!(p.mapcount, 1);
    assert_eq!(p.index, v.0, "rmap index is the vpn");
    assert_eq!(vm.mem.mm(mm).rss_anon, 1);
    assert_eq!(vm.mem.nr_free(), 31);
    assert_eq!(vm.mem.lru.len(LruList::InactiveAnon), 1);

    // The next access is the fast path: no fault.
    assert_eq!(vm.access(mm, v, true), Ok(pfn));
    assert_eq!(vm.stat.get(VmEvent::PgFault), faults + 1);
    vm.assert_clean();
}

#[test]
fn read_of_a_fresh_page_maps_a_zeroed_clean_page() {
    let mut vm = Vm::new(32);
    let mm = vm.mem.mm_create();
    let old = vm.mem.mmap_anon(mm, 1);
    vm.write_page(mm, old, 0x5a);
    vm.mem.munmap(&mut vm.swap, mm, old);

    let v = vm.mem.mmap_anon(mm, 1);
    let faults = vm.stat.get(VmEvent::PgFault);
    let pfn = vm.access(mm, v, false).unwrap();
    assert_eq!(vm.stat.get(VmEvent::PgFault), faults + 1);
    assert!(vm.mem.ram.page(pfn).iter().all(|&b| b == 0));
    let (mapped, _, accessed, dirty) = present(vm.pte(mm, v));
    assert_eq!(mapped, pfn);
    assert!(accessed && !dirty, "a read leaves the PTE clean");
    // A later write dirties the same page.
    assert_eq!(vm.access(mm, v, true), Ok(pfn));
    assert!(present(vm.pte(mm, v)).3, "written PTE is dirty");
    vm.assert_clean();
}

#[test]
fn swap_out_then_write_fault_swaps_in_and_frees_the_slot() {
    let mut vm = Vm::new(32);
    let total = vm.total_swap();
    let mm = vm.mem.mm_create();
    let v = vm.mem.mmap_anon(mm, 8);
    vm.write_page(mm, v, 1);
    let free = vm.mem.nr_free();

    let entry = vm.swap_out(mm, v);
    assert_eq!(vm.mem.nr_free(), free + 1);
    assert_eq!(vm.swap.nr_swap_pages(), total - 1);
    assert_eq!(vm.mem.mm(mm).rss_anon, 0);
    assert_eq!(vm.mem.mm(mm).rss_swap, 1);
    assert_eq!(vm.stat.get(VmEvent::PswpOut), 1);
    vm.assert_clean();

    let pfn = vm.swap_in(mm, v, true);
    assert_eq!(vm.mem.ram.page(pfn), &pattern(1)[..], "original bytes");
    assert_eq!(vm.stat.get(VmEvent::PswpIn), 1);
    // Write fault: folio_put_swap dropped the PTE's reference, and the
    // folio left the swap cache, freeing the slot.
    assert_eq!(vm.mem.folios.get(pfn).swap, None);
    assert_eq!(
        vm.swap.slot(entry).unwrap(),
        Slot {
            count: 0,
            binding: SlotBinding::None
        }
    );
    assert_eq!(vm.swap.nr_swap_pages(), total);
    let (mapped, writable, _, dirty) = present(vm.pte(mm, v));
    assert_eq!(mapped, pfn);
    assert!(writable && dirty);
    assert_eq!(vm.mem.mm(mm).rss_anon, 1);
    assert_eq!(vm.mem.mm(mm).rss_swap, 0);
    vm.assert_clean();
}

#[test]
fn read_swap_in_maps_read_only_and_a_later_write_goes_through_wp() {
    let mut vm = Vm::new(32);
    let total = vm.total_swap();
    let mm = vm.mem.mm_create();
    let v = vm.mem.mmap_anon(mm, 8).add(3);
    vm.write_page(mm, v, 2);
    let entry = vm.swap_out(mm, v);

    let pfn = vm.swap_in(mm, v, false);
    assert_eq!(vm.mem.ram.page(pfn), &pattern(2)[..]);
    // Read fault: the reference is dropped, but the swap cache keeps the
    // slot (and its still-valid copy).
    assert_eq!(
        vm.swap.slot(entry).unwrap(),
        Slot {
            count: 0,
            binding: SlotBinding::Folio(pfn)
        }
    );
    assert_eq!(vm.mem.folios.get(pfn).swap, Some(entry));
    assert_eq!(vm.swap.nr_swap_pages(), total - 1);
    let (_, writable, _, dirty) = present(vm.pte(mm, v));
    assert!(!writable && !dirty, "read swap-in maps read-only");
    vm.assert_clean();

    // The write faults into do_wp_page, reuses the exclusive folio and
    // drops its now-stale swap copy.
    let faults = vm.stat.get(VmEvent::PgFault);
    assert_eq!(vm.access(mm, v, true), Ok(pfn));
    assert_eq!(vm.stat.get(VmEvent::PgFault), faults + 1);
    assert_eq!(vm.stat.get(VmEvent::CowFault), 0, "reused, not copied");
    assert_eq!(vm.mem.folios.get(pfn).swap, None);
    assert_eq!(vm.swap.swap_cache_get_folio(entry), None);
    assert!(vm.swap.slot(entry).unwrap().is_free());
    assert_eq!(vm.swap.nr_swap_pages(), total);
    let (mapped, writable, _, dirty) = present(vm.pte(mm, v));
    assert_eq!(mapped, pfn);
    assert!(writable && dirty);
    assert_eq!(vm.mem.ram.page(pfn), &pattern(2)[..]);
    vm.assert_clean();
}

#[test]
fn allocation_below_the_min_watermark_retries_for_memory() {
    let mut vm = Vm::new(32);
    let mm = vm.mem.mm_create();
    let r = vm.mem.mmap_anon(mm, 64);
    vm.write_page(mm, r, 9);
    let entry = vm.swap_out(mm, r);

    let mut mapped = 0;
    let stop = loop {
        match vm.access(mm, r.add(1 + mapped), true) {
            Ok(_) => mapped += 1,
            Err(e) => break e,
        }
        assert!(mapped < 64, "never hit the watermark");
    };
    assert_eq!(stop, FaultStop::Retry(Wait::Memory));
    assert_eq!(mapped, 32 - WMARK.min, "allocations stop at min");
    assert_eq!(vm.mem.nr_free(), WMARK.min);
    assert!(vm.pte(mm, r.add(1 + mapped)).is_none(), "nothing mapped");

    // A swap-in needs a frame too; the failed attempt changes nothing.
    let majflt = vm.stat.get(VmEvent::PgMajFault);
    assert_eq!(vm.access(mm, r, false), Err(FaultStop::Retry(Wait::Memory)));
    assert_eq!(vm.stat.get(VmEvent::PgMajFault), majflt);
    assert_eq!(vm.pte(mm, r).kind(), PteKind::Swap(entry));
    assert_eq!(
        vm.swap.slot(entry).unwrap(),
        Slot {
            count: 1,
            binding: SlotBinding::None
        }
    );
    assert_eq!(vm.mem.nr_free(), WMARK.min);

    // Freeing memory lets the same access through.
    vm.mem.zap_range(&mut vm.swap, mm, r.add(1), r.add(9));
    let pfn = vm.swap_in(mm, r, false);
    assert_eq!(vm.mem.ram.page(pfn), &pattern(9)[..]);
    vm.assert_clean();
}

#[test]
fn access_outside_a_vma_is_segv() {
    let mut vm = Vm::new(32);
    let mm = vm.mem.mm_create();
    let r = vm.mem.mmap_anon(mm, 4);
    assert_eq!(vm.access(mm, Vpn(r.0 - 1), false), Err(FaultStop::Segv));
    assert_eq!(vm.access(mm, r.add(4), true), Err(FaultStop::Segv), "guard");
    assert!(vm.access(mm, r.add(3), true).is_ok());
    vm.mem.munmap(&mut vm.swap, mm, r);
    assert_eq!(vm.access(mm, r, false), Err(FaultStop::Segv), "unmapped");
    assert_eq!(vm.mem.nr_free(), 32, "Segv allocates nothing");
    vm.assert_clean();
}

#[test]
fn munmap_and_exit_mmap_release_swap_slots_and_frames() {
    const FRAMES: u32 = 64;
    let mut vm = Vm::new(FRAMES);
    let total = vm.total_swap();
    let mm = vm.mem.mm_create();
    let a = vm.mem.mmap_anon(mm, 16);
    for i in 0..16 {
        vm.write_page(mm, a.add(i), i as u8);
    }
    // Pages 0..4 only in swap; 5..7 swapped back by a read (slot cached);
    // page 8 swapped back by a write (slot freed); the rest resident.
    for i in 0..9 {
        vm.swap_out(mm, a.add(i));
    }
    for i in 5..8 {
        vm.swap_in(mm, a.add(i), false);
    }
    vm.swap_in(mm, a.add(8), true);
    assert_eq!(vm.swap.nr_swap_pages(), total - 8);
    assert_eq!(vm.mem.nr_free(), u64::from(FRAMES) - 16 + 5);
    assert_eq!(vm.mem.mm(mm).rss_swap, 5);
    assert_eq!(vm.mem.mm(mm).rss_anon, 11);

    assert!(vm.mem.munmap(&mut vm.swap, mm, a));
    assert_eq!(vm.swap.nr_swap_pages(), total, "munmap released the slots");
    assert_eq!(vm.mem.nr_free(), u64::from(FRAMES), "and the frames");
    assert_eq!(vm.mem.lru.len(LruList::InactiveAnon), 0);
    assert_eq!(vm.mem.lru.len(LruList::ActiveAnon), 0);
    assert_eq!(vm.mem.mm(mm).rss_swap, 0);
    assert_eq!(vm.mem.mm(mm).rss_anon, 0);
    vm.assert_clean();

    // exit_mmap of a process with two regions, partly swapped.
    let mm2 = vm.mem.mm_create();
    let b = vm.mem.mmap_anon(mm2, 6);
    let c = vm.mem.mmap_anon(mm2, 6);
    for i in 0..6 {
        vm.write_page(mm2, b.add(i), 100 + i as u8);
        vm.write_page(mm2, c.add(i), 200 + i as u8);
    }
    for i in 0..3 {
        vm.swap_out(mm2, b.add(i));
        vm.swap_out(mm2, c.add(i * 2));
    }
    vm.swap_in(mm2, c.add(2), false);
    assert_eq!(vm.swap.nr_swap_pages(), total - 6);
    vm.mem.exit_mmap(&mut vm.swap, mm2);
    assert!(vm.mem.mms[mm2.0 as usize].is_none());
    assert_eq!(vm.swap.nr_swap_pages(), total, "exit released the slots");
    assert_eq!(vm.mem.nr_free(), u64::from(FRAMES), "and the frames");
    assert_eq!(vm.mem.lru.len(LruList::InactiveAnon), 0);
    vm.assert_clean();
}

/// `n` pages written with `pattern(i)`, then swapped out in order.
fn swapped_pages(vm: &mut Vm, n: u64) -> (swapvm_mm::MmId, Vpn) {
    let mm = vm.mem.mm_create();
    let r = vm.mem.mmap_anon(mm, n);
    for i in 0..n {
        vm.write_page(mm, r.add(i), i as u8);
    }
    for i in 0..n {
        vm.swap_out(mm, r.add(i));
    }
    (mm, r)
}

/// With VMA readahead, each swap-cache hit records its address, so the
/// next miss of a sequential scan is adjacent to it and the window grows
/// to the maximum, `2^page_cluster` pages (the kernel's `SWAP_RA_VAL`).
#[test]
fn sequential_swap_faults_grow_the_vma_window_to_the_maximum() {
    let mut vm = Vm::new(160);
    vm.mem.swap_ra.page_cluster = 3;
    vm.mem.swap_ra.vma_ra_enabled = true;
    let (mm, r) = swapped_pages(&mut vm, 64);
    assert!(vm.mem.swap_use_vma_readahead(&vm.swap));
    let mut ahead = Vec::new();
    for i in 0..64 {
        let (maj, ra) = (
            vm.stat.get(VmEvent::PgMajFault),
            vm.stat.get(VmEvent::SwapRa),
        );
        let pfn = vm.fault_in(mm, r.add(i));
        assert_eq!(vm.mem.ram.page(pfn), &pattern(i as u8)[..], "page {i}");
        if vm.stat.get(VmEvent::PgMajFault) > maj {
            ahead.push(vm.stat.get(VmEvent::SwapRa) - ra);
        }
    }
    // Misses at 0 (nothing ahead), 1 (adjacent: 2 pages), 3 (4 pages),
    // then 8-page windows at 7, 15, ..., 55 (the faulting page and 7
    // ahead); the miss at 63 is the VMA's last page, with nothing after it.
    let (last, full) = (ahead.len() - 1, 3..ahead.len() - 1);
    assert_eq!(&ahead[..4], &[0, 1, 3, 7], "windows {ahead:?}");
    assert!(ahead[full].iter().all(|&n| n == 7), "windows {ahead:?}");
    assert_eq!((ahead.len(), ahead[last]), (11, 0), "windows {ahead:?}");
    assert_eq!(
        vm.stat.get(VmEvent::SwapRaHit),
        vm.stat.get(VmEvent::SwapRa),
        "every page read ahead was used"
    );
    vm.assert_clean();
}

/// While a rotational device is swapped on (`nr_rotate_swap`), swap-in
/// reads ahead by swap offset even with `vma_ra_enabled`; a failed
/// swapoff keeps it counted, a finished one gives VMA readahead back.
#[test]
fn a_rotational_device_switches_readahead_to_swap_offsets_until_its_swapoff() {
    let mut vm = Vm::new(64);
    vm.mem.swap_ra.vma_ra_enabled = true;
    assert!(vm.mem.swap_use_vma_readahead(&vm.swap));
    let image = tempfile::Builder::new()
        .prefix("swapvm-rot-")
        .tempfile_in(TEST_DIR)
        .unwrap();
    swapvm_swap::header::mkswap(image.path(), 4 * MIB, "rot", None).unwrap();
    let ty = vm
        .swap
        .swapon(&swapvm_swap::SwapOnOptions {
            path: image.path().to_owned(),
            priority: -1,
            rotational: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(vm.swap.nr_rotate_swap(), 1);
    assert!(!vm.mem.swap_use_vma_readahead(&vm.swap));
    vm.swap.swapoff_begin(ty).unwrap();
    vm.swap.swapoff_abort(ty);
    assert!(!vm.mem.swap_use_vma_readahead(&vm.swap), "swapoff failed");
    vm.swap.swapoff_begin(ty).unwrap();
    vm.swap.swapoff_finish(ty).unwrap();
    assert_eq!(vm.swap.nr_rotate_swap(), 0);
    assert!(vm.mem.swap_use_vma_readahead(&vm.swap));
    vm.mem.swap_ra.vma_ra_enabled = false;
    assert!(
        !vm.mem.swap_use_vma_readahead(&vm.swap),
        "the knob still rules"
    );
}
