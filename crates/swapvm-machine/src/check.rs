//! The invariant checker (DESIGN.md, "Invariants the checker proves").
//!
//! Walks every owner of every swap slot and every frame and compares with
//! the bookkeeping: swap counts against swap PTEs, cache bindings against
//! folios, `nr_swap_pages` against allocated slots, rmap against PTEs,
//! mapcounts, free + used frames against RAM, LRU membership against flags.
//! Invariant 6 (data) is checked online by [`crate::verify`].

use std::collections::HashMap;
use swapvm_core::{Pfn, PteKind, SwapOffset, SwpEntry, Vpn};
use swapvm_mm::{pg, LruList, Memory, MmId, ShmemEntry};
use swapvm_swap::{SlotBinding, SwapSubsystem};

/// Checks everything; returns one line per violation (empty: all hold).
pub fn check_invariants(mem: &mut Memory, swap: &mut SwapSubsystem) -> Vec<String> {
    let mut bad = Vec::new();
    let (swap_owners, mapped) = walk_page_tables(mem);
    check_slots(mem, swap, &swap_owners, &mut bad);
    bad.extend(swap.check_accounting());
    check_rmap(mem, &mapped, &mut bad);
    check_frames(mem, &mut bad);
    check_caches(mem, &mapped, &mut bad);
    bad
}

/// Page caches and KSM: every shmem page-cache folio is a live shmem folio
/// that names its inode and index; every KSM stable node's folio is a live
/// KSM folio that names the node; no mapped folio is a stray (neither
/// anonymous, shmem nor KSM).
fn check_caches(mem: &Memory, mapped: &Mapped, bad: &mut Vec<String>) {
    for (ino, inode) in mem.shmem.inodes() {
        for (index, e) in inode.pages.iter().enumerate() {
            if let ShmemEntry::Folio(pfn) = *e {
                let p = mem.folios.get(pfn);
                if !p.test(pg::ALLOCATED)
                    || !p.test(pg::SHMEM)
                    || p.mapping != ino
                    || p.index != index as u64
                {
                    bad.push(format!(
                        "inode {ino} index {index}: page cache holds {pfn:?}, which is {:?}",
                        p
                    ));
                }
            }
        }
    }
    for (node, n) in mem.ksm.nodes() {
        let p = mem.folios.get(n.pfn);
        if !p.test(pg::ALLOCATED) || !p.test(pg::KSM) || p.mapping != node {
            bad.push(format!(
                "KSM stable node {node}: folio {:?} is not its KSM folio ({p:?})",
                n.pfn
            ));
        }
    }
    for (&pfn, ptes) in mapped {
        let p = mem.folios.get(pfn);
        if p.test(pg::SHMEM) {
            let ok = mem
                .shmem
                .inode(p.mapping)
                .and_then(|n| n.pages.get(p.index as usize))
                .is_some_and(|e| *e == ShmemEntry::Folio(pfn));
            if !ok {
                bad.push(format!(
                    "{pfn:?} mapped by {ptes:?}: shmem folio not in its inode's page cache"
                ));
            }
        } else if !p.test(pg::ANON) {
            bad.push(format!(
                "{pfn:?} mapped by {ptes:?} is neither anonymous nor shmem (flags {:#x})",
                p.flags
            ));
        }
    }
}

type Owners = HashMap<SwpEntry, u32>;
type Mapped = HashMap<Pfn, Vec<(MmId, Vpn)>>;

/// Every swap owner (swap PTEs, shmem page-cache entries) and every
/// present mapping.
fn walk_page_tables(mem: &Memory) -> (Owners, Mapped) {
    let mut owners = Owners::new();
    let mut mapped = Mapped::new();
    for (_, inode) in mem.shmem.inodes() {
        for e in &inode.pages {
            if let ShmemEntry::Swap(e) = e {
                *owners.entry(*e).or_default() += 1;
            }
        }
    }
    for (i, mm) in mem.mms.iter().enumerate() {
        let Some(mm) = mm else { continue };
        mem.pt.for_each_pte(mm.pgd, |vpn, pte| match pte.kind() {
            PteKind::Swap(e) => *owners.entry(e).or_default() += 1,
            PteKind::Present { pfn, .. } => {
                // Keyed by folio: a large folio's pages each have a PTE.
                mapped
                    .entry(mem.folio_of(pfn))
                    .or_default()
                    .push((MmId(i as u32), vpn))
            }
            PteKind::None => {}
        });
    }
    (owners, mapped)
}

/// Invariants 1 and 3: counts equal owners; bindings equal folios; no slot
/// pinned by a folio that no longer holds it.
fn check_slots(mem: &Memory, swap: &SwapSubsystem, owners: &Owners, bad: &mut Vec<String>) {
    for &ty in swap.device_types() {
        let Some(d) = swap.device(ty) else { continue };
        for off in 1..d.max() {
            let s = d.slot(SwapOffset(off));
            if s.is_bad() {
                continue;
            }
            let Some(e) = SwpEntry::new(ty, SwapOffset(off)) else {
                continue;
            };
            let want = owners.get(&e).copied().unwrap_or(0);
            let count = swap.swap_count(e);
            if s.binding != SlotBinding::Hibernation && count != want {
                bad.push(format!(
                    "slot {e:?}: count {count} but {want} owners (swap PTEs and shmem entries) found"
                ));
            }
            if let SlotBinding::Folio(pfn) = s.binding {
                let p = mem.folios.get(pfn);
                let holds = p.test(pg::ALLOCATED)
                    && p.swap.is_some_and(|fe| {
                        fe.ty() == ty
                            && fe.offset().0 <= off
                            && off < fe.offset().0 + (1 << p.order)
                    });
                if !holds {
                    bad.push(format!(
                        "slot {e:?}: bound to {pfn:?}, which does not hold it (leak)"
                    ));
                }
            }
        }
    }
    for (&e, &n) in owners {
        if swap.slot(e).is_none() {
            bad.push(format!(
                "{n} swap PTEs hold {e:?}, which is outside every device"
            ));
        }
    }
    for i in 0..mem.nr_frames() {
        let pfn = Pfn(i as u32);
        let p = mem.folios.get(pfn);
        if let Some(e) = p.swap {
            if swap.swap_cache_get_folio(e) != Some(pfn) {
                bad.push(format!(
                    "{pfn:?} says it caches {e:?}, but the swap cache has {:?}",
                    swap.swap_cache_get_folio(e)
                ));
            }
        }
    }
}

/// Invariant 4: every present PTE's folio is allocated, finds the
/// PTE by rmap, and its mapcount equals the PTEs mapping it.
fn check_rmap(mem: &mut Memory, mapped: &Mapped, bad: &mut Vec<String>) {
    let mut pfns: Vec<_> = mapped.keys().copied().collect();
    pfns.sort_unstable();
    for pfn in pfns {
        let ptes = &mapped[&pfn];
        let p = *mem.folios.get(pfn);
        if !p.test(pg::ALLOCATED) {
            bad.push(format!("{pfn:?} is mapped by {ptes:?} but free"));
            continue;
        }
        if p.mapcount as usize != ptes.len() {
            bad.push(format!(
                "{pfn:?}: mapcount {} but {} PTEs map it",
                p.mapcount,
                ptes.len()
            ));
        }
        let mut found = Vec::new();
        mem.rmap_walk(pfn, |_, mm, vpn, _| {
            found.push((mm, vpn));
            true
        });
        for pte in ptes {
            if !found.contains(pte) {
                bad.push(format!(
                    "{pfn:?}: PTE at {pte:?} not found by rmap walk (found {found:?})"
                ));
            }
        }
    }
}

/// Invariant 5: free + in use == RAM; LRU membership matches the flags.
fn check_frames(mem: &mut Memory, bad: &mut Vec<String>) {
    let n = mem.nr_frames();
    let used = (0..n)
        .filter(|&i| mem.folios.get(Pfn(i as u32)).test(pg::ALLOCATED))
        .count() as u64;
    if used + mem.nr_free() != n {
        bad.push(format!(
            "frames: {used} in use + {} free != {n}",
            mem.nr_free()
        ));
    }
    let mut on = vec![0u8; n as usize];
    for (l, active) in [(LruList::InactiveAnon, false), (LruList::ActiveAnon, true)] {
        for i in mem.lru.members(&mut mem.folios, l) {
            on[i as usize] += 1;
            let p = mem.folios.get(Pfn(i));
            if !p.test(pg::LRU) || p.test(pg::ACTIVE) != active || !p.test(pg::ALLOCATED) {
                bad.push(format!("{:?} on {l:?} with flags {:#x}", Pfn(i), p.flags));
            }
        }
    }
    for (i, &lists) in on.iter().enumerate() {
        let p = mem.folios.get(Pfn(i as u32));
        if p.test(pg::LRU) != (lists == 1) || lists > 1 {
            bad.push(format!(
                "{:?}: PG_lru {} but on {lists} lists",
                Pfn(i as u32),
                p.test(pg::LRU),
            ));
        }
        // An allocated folio off the LRU must be under I/O (isolated by
        // reclaim or being read in).
        if p.test(pg::ALLOCATED)
            && !p.test(pg::LRU | pg::TAIL)
            && !p.test(pg::WRITEBACK | pg::LOCKED)
        {
            bad.push(format!(
                "{:?}: in use, off the LRU, no I/O (lost folio)",
                Pfn(i as u32)
            ));
        }
    }
}
