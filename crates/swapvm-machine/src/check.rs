//! The invariant checker (DESIGN.md, "Invariants the checker proves").
//!
//! Walks every owner of every swap slot and every frame and compares with
//! the bookkeeping: swap counts against swap PTEs, cache bindings against
//! folios, `nr_swap_pages` against allocated slots, rmap against PTEs,
//! mapcounts, free + used frames against RAM, LRU membership against flags.
//! Invariant 6 (data) is checked online by [`crate::verify`].
//!
//! A violation names the invariant, the slot, folio or address, the owners
//! found and the counts expected and seen; the machine adds the tick.
//!
//! Owners of swap entries are collected by one walk per owner kind into an
//! [`Owners`] map ([`walk_page_tables`] for swap PTEs, the hibernation
//! extents); a new kind of owner (shmem mappings, KSM stable nodes) adds an
//! [`Owner`] variant and a walk, and every check sees it.

use std::collections::HashMap;
use std::fmt;
use swapvm_core::{Pfn, PteKind, SwapOffset, SwpEntry, Vpn};
use swapvm_mm::{pg, LruList, MemcgId, Memory, MmId, ShmemEntry};
use swapvm_swap::{SlotBinding, SwapSubsystem, SwsuspExtents};

/// Who holds a reference on a swap entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A swap PTE of `mm` at `vpn`.
    Pte {
        /// The address space.
        mm: MmId,
        /// The page.
        vpn: Vpn,
    },
    /// The page cache of shmem inode `ino` at page `index`.
    Shmem {
        /// The inode.
        ino: u32,
        /// The page index in the file.
        index: u64,
    },
}

/// Every owner found per swap entry.
pub type Owners = HashMap<SwpEntry, Vec<Owner>>;
type Mapped = HashMap<Pfn, Vec<(MmId, Vpn)>>;

/// What the checker needs to know beyond memory and swap.
pub struct CheckContext<'a> {
    /// The extents of the hibernation images held (none, the periodic
    /// image of `hibernate_every`, a hibernate cycle's, or both).
    pub hibernation: &'a [&'a SwsuspExtents],
    /// Names an address space for reports (e.g. "pid 3 (usemem.2)").
    pub mm_name: &'a dyn Fn(MmId) -> String,
}

impl fmt::Debug for CheckContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckContext")
            .field(
                "hibernation",
                &self
                    .hibernation
                    .iter()
                    .map(|h| h.extents())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn default_name(mm: MmId) -> String {
    format!("mm {}", mm.0)
}

/// Checks everything; returns one line per violation (empty: all hold).
pub fn check_invariants(mem: &mut Memory, swap: &mut SwapSubsystem) -> Vec<String> {
    check_invariants_with(
        mem,
        swap,
        &CheckContext {
            hibernation: &[],
            mm_name: &default_name,
        },
    )
}

/// [`check_invariants`] with the hibernation extents as owners and
/// address spaces named by `cx`.
pub fn check_invariants_with(
    mem: &mut Memory,
    swap: &mut SwapSubsystem,
    cx: &CheckContext<'_>,
) -> Vec<String> {
    let mut bad = Vec::new();
    let (swap_owners, mapped) = walk_page_tables(mem);
    check_slots(mem, swap, &swap_owners, cx, &mut bad);
    check_hibernation(swap, cx, &mut bad);
    bad.extend(
        swap.check_accounting()
            .into_iter()
            .map(|l| format!("invariant 2 (free slot count): {l}")),
    );
    check_rmap(mem, &mapped, cx, &mut bad);
    check_frames(mem, &mut bad);
    check_caches(mem, &mapped, &mut bad);
    if !mem.memcg.is_empty() {
        check_memcg(mem, swap, &mut bad);
    }
    bad
}

/// Invariant 7 (memory cgroups): each memcg's charge (`memory.current`)
/// is the folios charged to it and below, the root's every allocated frame;
/// each folio is on its own memcg's lruvec; each swap-cache folio's slots
/// are owned by the folio's memcg (`swap_cgroup`), and the slots counted
/// per owner are the slots recorded; no memcg is over `memory.max` unless
/// swap-out writes of its are in flight (reclaim under way).
fn check_memcg(mem: &mut Memory, swap: &SwapSubsystem, bad: &mut Vec<String>) {
    let n = mem.memcg.len();
    let mut own = vec![0u64; n];
    for i in 0..mem.nr_frames() as u32 {
        let p = mem.folios.get(Pfn(i));
        if p.test(pg::ALLOCATED) && !p.test(pg::TAIL) {
            own[usize::from(p.memcg)] += 1 << p.order;
        }
    }
    for k in 0..n {
        let id = MemcgId(k as u16);
        let sub = mem.memcg.subtree(id);
        let want: u64 = sub.iter().map(|m| own[usize::from(m.0)]).sum();
        let g = mem.memcg.get(id);
        if g.usage != want {
            bad.push(format!(
                "invariant 7 (memcg charge): {} charged {} pages, {want} folios' pages are its",
                g.limits.path, g.usage
            ));
        }
        let wb: u64 = sub.iter().map(|m| mem.memcg.get(*m).nr_writeback).sum();
        if g.limits.max.is_some_and(|max| g.usage > max) && wb == 0 {
            bad.push(format!(
                "invariant 7 (memory.max): {} at {} pages over its max {:?} with no reclaim writeback in flight",
                g.limits.path, g.usage, g.limits.max
            ));
        }
        for l in [LruList::InactiveAnon, LruList::ActiveAnon] {
            for i in mem.lru.vec(id).members(&mut mem.folios, l) {
                let m = mem.folios.get(Pfn(i)).memcg;
                if m != id.0 {
                    bad.push(format!(
                        "invariant 7 (lruvec): {:?} of memcg {m} on memcg {}'s {l:?}",
                        Pfn(i),
                        id.0
                    ));
                }
            }
        }
    }
    check_swap_cgroup(mem, swap, bad);
}

/// The `swap_cgroup` half of invariant 7.
fn check_swap_cgroup(mem: &Memory, swap: &SwapSubsystem, bad: &mut Vec<String>) {
    let mut counted = vec![0u64; mem.memcg.len()];
    let mut cached = vec![0u64; mem.memcg.len()];
    for &ty in swap.device_types() {
        let Some(d) = swap.device(ty) else { continue };
        for off in 1..d.max() {
            let Some(e) = SwpEntry::new(ty, SwapOffset(off)) else {
                continue;
            };
            let owner = swap.lookup_swap_cgroup_id(e);
            let slot = d.slot(SwapOffset(off));
            if slot.is_free() {
                if owner != 0 {
                    bad.push(format!(
                        "invariant 7 (swap_cgroup): free {e:?} owned by memcg {owner}"
                    ));
                }
                continue;
            }
            if let Some(c) = counted.get_mut(usize::from(owner)) {
                *c += 1;
            }
            if let SlotBinding::Folio(pfn) = slot.binding {
                if let Some(c) = cached.get_mut(usize::from(owner)) {
                    *c += 1;
                }
                let m = mem.folios.get(pfn).memcg;
                if m != owner {
                    bad.push(format!(
                        "invariant 7 (swap_cgroup): {e:?} owned by memcg {owner}, its swap-cache folio {pfn:?} charged to {m}"
                    ));
                }
            }
        }
    }
    for (k, &c) in counted.iter().enumerate().skip(1) {
        let u = swap.swap_cgroup_usage(k as u16);
        if u != c {
            bad.push(format!(
                "invariant 7 (swap_cgroup): memcg {k} counted {u} slots, {c} recorded"
            ));
        }
    }
    for (k, &c) in cached.iter().enumerate() {
        let u = swap.swap_cgroup_cached(k as u16);
        if u != c {
            bad.push(format!(
                "invariant 7 (swap_cgroup): memcg {k} counted {u} swap-cached slots, {c} bound to folios"
            ));
        }
    }
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
                        "invariant 1 (page cache): inode {ino} page {index} holds {pfn:?}, \
                         which is not its shmem folio ({p:?})"
                    ));
                }
            }
        }
    }
    for (node, n) in mem.ksm.nodes() {
        let p = mem.folios.get(n.pfn);
        if !p.test(pg::ALLOCATED) || !p.test(pg::KSM) || p.mapping != node {
            bad.push(format!(
                "invariant 4 (KSM rmap): stable node {node}: folio {:?} is not its KSM folio ({p:?})",
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
                    "invariant 4 (rmap): {pfn:?} mapped at {ptes:?} is a shmem folio not in its inode's page cache"
                ));
            }
        } else if !p.test(pg::ANON) {
            bad.push(format!(
                "invariant 4 (rmap): {pfn:?} mapped at {ptes:?} is neither anonymous nor shmem (flags {:#x})",
                p.flags
            ));
        }
    }
}

/// The swap owners (swap PTEs, shmem page-cache entries) and the present
/// mappings of every address space, keyed by folio (a large folio's pages
/// each have a PTE).
pub fn walk_page_tables(mem: &Memory) -> (Owners, Mapped) {
    let mut owners = Owners::new();
    let mut mapped = Mapped::new();
    for (ino, inode) in mem.shmem.inodes() {
        for (index, e) in inode.pages.iter().enumerate() {
            if let ShmemEntry::Swap(e) = *e {
                owners.entry(e).or_default().push(Owner::Shmem {
                    ino,
                    index: index as u64,
                });
            }
        }
    }
    for (i, mm) in mem.mms.iter().enumerate() {
        let Some(mm) = mm else { continue };
        let id = MmId(i as u32);
        mem.pt.for_each_pte(mm.pgd, |vpn, pte| match pte.kind() {
            PteKind::Swap(e) => owners
                .entry(e)
                .or_default()
                .push(Owner::Pte { mm: id, vpn }),
            PteKind::Present { pfn, .. } => {
                mapped.entry(mem.folio_of(pfn)).or_default().push((id, vpn))
            }
            PteKind::None => {}
        });
    }
    (owners, mapped)
}

/// Lists owners for a report: at most eight, then how many more.
fn list_owners(owners: &[Owner], cx: &CheckContext<'_>) -> String {
    let mut v: Vec<String> = owners
        .iter()
        .take(8)
        .map(|o| match *o {
            Owner::Pte { mm, vpn } => {
                format!("swap PTE of {} at {:#x}", (cx.mm_name)(mm), vpn.0 << 12)
            }
            Owner::Shmem { ino, index } => format!("shmem inode {ino} page {index}"),
        })
        .collect();
    if owners.len() > 8 {
        v.push(format!("and {} more", owners.len() - 8));
    }
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Invariant 1 for hibernation: the hibernation-owned slots are exactly
/// the extents' slots.
fn check_hibernation(swap: &SwapSubsystem, cx: &CheckContext<'_>, bad: &mut Vec<String>) {
    for &ty in swap.device_types() {
        let held = |off: u64| {
            cx.hibernation
                .iter()
                .any(|h| h.ty() == ty && h.contains(off))
        };
        bad.extend(
            swapvm_swap::hibernate::check_hibernation_slots(swap, ty, held)
                .into_iter()
                .map(|l| format!("invariant 1 (hibernation owners): {l}")),
        );
    }
}

/// Invariants 1 and 3: counts equal owners; bindings equal folios; no slot
/// pinned by a folio that no longer holds it.
fn check_slots(
    mem: &Memory,
    swap: &SwapSubsystem,
    owners: &Owners,
    cx: &CheckContext<'_>,
    bad: &mut Vec<String>,
) {
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
            let found = owners.get(&e).map_or(&[][..], Vec::as_slice);
            let want = found.len() as u32;
            let count = swap.swap_count(e);
            if s.binding != SlotBinding::Hibernation && count != want {
                bad.push(format!(
                    "invariant 1 (swap counts): slot {e:?}: swap count {count}, expected {want} \
                     (owners found: {}; cache binding {:?})",
                    list_owners(found, cx),
                    s.binding
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
                        "invariant 3 (leak): slot {e:?}: cache binding to {pfn:?}, which does not \
                         hold it (its flags {:#x}, folio->swap {:?}); swap count {count}, owners \
                         found: {}",
                        p.flags,
                        p.swap,
                        list_owners(found, cx)
                    ));
                }
            }
        }
    }
    let mut outside: Vec<_> = owners
        .iter()
        .filter(|(e, _)| swap.slot(**e).is_none())
        .collect();
    outside.sort_unstable_by_key(|(e, _)| **e);
    for (e, found) in outside {
        bad.push(format!(
            "invariant 1 (swap counts): {e:?} is outside every device, yet {} owners hold it: {}",
            found.len(),
            list_owners(found, cx)
        ));
    }
    for i in 0..mem.nr_frames() {
        let pfn = Pfn(i as u32);
        let p = mem.folios.get(pfn);
        if let Some(e) = p.swap {
            if swap.swap_cache_get_folio(e) != Some(pfn) {
                bad.push(format!(
                    "invariant 1 (cache binding): {pfn:?} says it caches {e:?}, but the swap \
                     cache has {:?} there",
                    swap.swap_cache_get_folio(e)
                ));
            }
        }
    }
}

/// Invariant 4: every present PTE's folio is anon, allocated, finds the
/// PTE by rmap, and its mapcount equals the PTEs mapping it.
fn check_rmap(mem: &mut Memory, mapped: &Mapped, cx: &CheckContext<'_>, bad: &mut Vec<String>) {
    let name = |ptes: &[(MmId, Vpn)]| {
        ptes.iter()
            .take(8)
            .map(|&(mm, vpn)| format!("{} at {:#x}", (cx.mm_name)(mm), vpn.0 << 12))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut pfns: Vec<_> = mapped.keys().copied().collect();
    pfns.sort_unstable();
    for pfn in pfns {
        let ptes = &mapped[&pfn];
        let p = *mem.folios.get(pfn);
        if !p.test(pg::ALLOCATED) {
            bad.push(format!(
                "invariant 4 (rmap): {pfn:?} is free but mapped by {}",
                name(ptes)
            ));
            continue;
        }
        if p.mapcount as usize != ptes.len() {
            bad.push(format!(
                "invariant 4 (mapcount): {pfn:?}: mapcount {}, expected {} (PTEs found: {})",
                p.mapcount,
                ptes.len(),
                name(ptes)
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
                    "invariant 4 (rmap): {pfn:?}: the PTE of {} is not found by its rmap walk \
                     (the walk found {})",
                    name(std::slice::from_ref(pte)),
                    name(&found)
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
            "invariant 5 (frames): {used} in use + {} free, expected {n} (RAM)",
            mem.nr_free()
        ));
    }
    let mut on = vec![0u8; n as usize];
    if mem.lru.lru_gen_enabled() {
        crate::check_lru_gen::check_lru_gen(mem, &mut on, bad);
    }
    for (l, active) in [(LruList::InactiveAnon, false), (LruList::ActiveAnon, true)] {
        for i in mem.lru.members(&mut mem.folios, l) {
            on[i as usize] += 1;
            let p = mem.folios.get(Pfn(i));
            if !p.test(pg::LRU) || p.test(pg::ACTIVE) != active || !p.test(pg::ALLOCATED) {
                bad.push(format!(
                    "invariant 5 (LRU): {:?} on {l:?} with flags {:#x}",
                    Pfn(i),
                    p.flags
                ));
            }
        }
    }
    for (i, &lists) in on.iter().enumerate() {
        let p = mem.folios.get(Pfn(i as u32));
        if p.test(pg::LRU) != (lists == 1) || lists > 1 {
            bad.push(format!(
                "invariant 5 (LRU): {:?}: PG_lru {}, on {lists} lists (expected 1 if PG_lru)",
                Pfn(i as u32),
                p.test(pg::LRU),
            ));
        }
        // An allocated folio off the LRU must be under I/O (isolated by
        // reclaim or being read in); zswap's pool frames are no folios.
        if p.test(pg::ALLOCATED)
            && !p.test(pg::LRU | pg::TAIL | pg::ZSMALLOC)
            && !p.test(pg::WRITEBACK | pg::LOCKED)
        {
            bad.push(format!(
                "invariant 5 (LRU): {:?}: in use, off the LRU, no I/O (lost folio)",
                Pfn(i as u32)
            ));
        }
    }
}
