//! KSM, kernel samepage merging (mm/ksm.c).
//!
//! ksmd scans the anonymous pages of `VM_MERGEABLE` VMAs, `pages_to_scan`
//! per wake-up. A page whose checksum changed since its last scan is
//! volatile and skipped. Otherwise it is looked up in the stable tree
//! (KSM folios, one per content) and merged into an identical one; failing
//! that, in the unstable tree (candidates seen this pass): an identical
//! candidate becomes a new KSM folio and the page merges into it; failing
//! that, the page enters the unstable tree. The unstable tree is emptied
//! after every full scan (`full_scans`).
//!
//! Merging write-protects the PTE and maps the one KSM folio; a write
//! breaks the sharing (`do_wp_page` copies, never reuses, a KSM folio). A
//! KSM folio is reclaimed like an anonymous one: rmap walks its stable
//! node's rmap items, every mapping gets a swap PTE; when the folio is
//! freed its stable node goes with it, and a later swap-in makes ordinary
//! anonymous folios (copied per mapping where the swap-cache folio's rmap
//! cannot reach it, `ksm_might_need_to_copy`).
//!
//! Simplifications: the trees are keyed by a 64-bit checksum of the page
//! and confirmed by comparing bytes, where the kernel orders red-black
//! trees by `memcmp`; the outcome (which pages merge) is the same. Rmap
//! items are `(mm, vpn)` pairs, one per mapping, including mappings a fork
//! copied; the kernel finds forked mappings through the rmap item's
//! anon_vma instead. No `max_page_sharing` chains, no zero-page merging.

use crate::folio::pg;
use crate::memory::{vm, Memory, MmId, VmaKind};
use std::collections::{BTreeMap, HashMap};
use swapvm_core::{Pfn, Pte, PteKind, Vpn};
use swapvm_swap::SwapSubsystem;
use xxhash_rust::xxh3::xxh3_64;

/// A KSM folio and who maps it (`struct ksm_stable_node`).
#[derive(Debug, Clone)]
pub struct StableNode {
    /// The KSM folio.
    pub pfn: Pfn,
    /// Its content checksum (the tree key).
    pub checksum: u64,
    /// Its rmap items: every `(mm, vpn)` that maps (or mapped, before
    /// swap-out) the folio.
    pub items: Vec<(MmId, Vpn)>,
}

/// Counters of `/sys/kernel/mm/ksm`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KsmStats {
    /// KSM folios in use (`pages_shared`).
    pub pages_shared: u64,
    /// Further mappings sharing them (`pages_sharing`): the memory saved.
    pub pages_sharing: u64,
    /// Pages in the unstable tree (`pages_unshared`).
    pub pages_unshared: u64,
    /// Completed passes over every mergeable area (`full_scans`).
    pub full_scans: u64,
    /// Pages scanned in all.
    pub pages_scanned: u64,
    /// Pages merged into a KSM folio in all.
    pub pages_merged: u64,
}

/// KSM state of a machine.
#[derive(Debug, Default)]
pub struct Ksm {
    /// `pages_to_scan`: pages ksmd scans per wake-up.
    pub pages_to_scan: u32,
    /// Address spaces with mergeable VMAs (`ksm_mm_slot`s), in scan order.
    mm_slots: Vec<MmId>,
    /// Scan cursor: index into `mm_slots` and the next vpn.
    cursor: (usize, u64),
    nodes: Vec<Option<StableNode>>,
    stable: HashMap<u64, Vec<u32>>,
    unstable: HashMap<u64, (MmId, Vpn, Pfn)>,
    /// `rmap_item->oldchecksum`: the checksum seen at the last scan.
    oldchecksum: BTreeMap<(MmId, u64), u64>,
    stats: KsmStats,
}

impl Ksm {
    /// The counters now.
    pub fn stats(&self) -> KsmStats {
        let mut s = self.stats;
        s.pages_shared = 0;
        s.pages_sharing = 0;
        for n in self.nodes.iter().flatten() {
            s.pages_shared += 1;
            s.pages_sharing += (n.items.len() as u64).saturating_sub(1);
        }
        s.pages_unshared = self.unstable.len() as u64;
        s
    }
    /// Stable node `node`.
    pub fn node(&self, node: u32) -> Option<&StableNode> {
        self.nodes.get(node as usize)?.as_ref()
    }
    /// Live stable nodes as `(id, node)`.
    pub fn nodes(&self) -> impl Iterator<Item = (u32, &StableNode)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i as u32, n)))
    }
    pub(crate) fn rmap_item_nth(&self, node: u32, i: usize) -> Option<(MmId, Vpn)> {
        self.node(node)?.items.get(i).copied()
    }
    /// Drops stable node `node` (its folio is being freed).
    pub(crate) fn node_freed(&mut self, node: u32) {
        let Some(n) = self.nodes.get_mut(node as usize).and_then(Option::take) else {
            return;
        };
        if let Some(v) = self.stable.get_mut(&n.checksum) {
            v.retain(|&x| x != node);
            if v.is_empty() {
                self.stable.remove(&n.checksum);
            }
        }
    }
}

impl Memory {
    /// `ksm_enter`: `id` has mergeable VMAs.
    pub fn ksm_enter(&mut self, id: MmId) {
        if !self.ksm.mm_slots.contains(&id) {
            self.ksm.mm_slots.push(id);
        }
    }

    /// `MADV_MERGEABLE` / `MADV_UNMERGEABLE` on the VMA at `start`. Making
    /// it unmergeable breaks every KSM sharing in it (`unmerge_ksm_pages`).
    /// Returns false if there is no such anonymous VMA.
    pub fn ksm_madvise(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        start: Vpn,
        mergeable: bool,
    ) -> bool {
        let Some(v) = self.mm_mut(id).vmas.get_mut(&start.0) else {
            return false;
        };
        if v.kind != VmaKind::Anon {
            return false;
        }
        let end = v.end;
        if mergeable {
            v.flags |= vm::MERGEABLE;
            self.ksm_enter(id);
            return true;
        }
        v.flags &= !vm::MERGEABLE;
        let pgd = self.mm(id).pgd;
        let mut vpn = start;
        while vpn < end {
            if let Some(leaf) = self.pt.walk(pgd, vpn) {
                if let PteKind::Present { pfn, .. } = self.pt.pte(leaf).kind() {
                    if self.folios.get(pfn).test(pg::KSM) {
                        // A failed copy (no memory) leaves the page merged,
                        // as `break_ksm` gives up on -ENOMEM.
                        let _ = self.break_ksm(swap, id, start.0, vpn, leaf);
                    }
                }
            }
            vpn = vpn.add(1);
        }
        self.ksm_forget_range(id, start, end);
        true
    }

    /// `break_ksm`: gives `vpn` a private, writable copy of its KSM page.
    fn break_ksm(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        vma_start: u64,
        vpn: Vpn,
        leaf: (u32, usize),
    ) -> Result<(), crate::FaultStop> {
        let old = self.pt.pte(leaf).pfn();
        self.cow_copy(swap, id, vma_start, vpn, leaf, old, false)
    }

    /// Records that `(id, vpn)` maps KSM folio `pfn` (fork, swap-cache hit).
    pub(crate) fn ksm_add_rmap_item(&mut self, pfn: Pfn, id: MmId, vpn: Vpn) {
        let node = self.folios.get(pfn).mapping;
        if let Some(n) = self
            .ksm
            .nodes
            .get_mut(node as usize)
            .and_then(Option::as_mut)
        {
            if !n.items.contains(&(id, vpn)) {
                n.items.push((id, vpn));
            }
        }
    }

    /// `(id, vpn)` no longer maps KSM folio `pfn` (zap, COW break).
    pub(crate) fn ksm_remove_rmap_item(
        &mut self,
        _swap: &mut SwapSubsystem,
        pfn: Pfn,
        id: MmId,
        vpn: Vpn,
    ) {
        let node = self.folios.get(pfn).mapping;
        if let Some(n) = self
            .ksm
            .nodes
            .get_mut(node as usize)
            .and_then(Option::as_mut)
        {
            n.items.retain(|&x| x != (id, vpn));
        }
    }

    /// Forgets scan state of `[start, end)` of `id` (munmap, unmerge).
    pub(crate) fn ksm_forget_range(&mut self, id: MmId, start: Vpn, end: Vpn) {
        let keys: Vec<_> = self
            .ksm
            .oldchecksum
            .range((id, start.0)..(id, end.0))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.ksm.oldchecksum.remove(&k);
        }
    }

    /// `ksm_exit`: `id` is going away.
    pub fn ksm_exit(&mut self, id: MmId) {
        if let Some(i) = self.ksm.mm_slots.iter().position(|&m| m == id) {
            self.ksm.mm_slots.remove(i);
            if self.ksm.cursor.0 > i {
                self.ksm.cursor.0 -= 1;
            } else if self.ksm.cursor.0 == i {
                self.ksm.cursor.1 = 0;
            }
        }
        self.ksm_forget_range(id, Vpn(0), Vpn(u64::MAX));
    }

    /// The next mergeable `(mm, vpn)` with a present anonymous PTE, moving
    /// the cursor past it; examines at most `budget` pages. Counts a full
    /// scan when the cursor wraps.
    fn scan_get_next(&mut self, budget: &mut u64) -> Option<(MmId, Vpn, (u32, usize))> {
        while *budget > 0 && !self.ksm.mm_slots.is_empty() {
            let (si, next) = self.ksm.cursor;
            if si >= self.ksm.mm_slots.len() {
                self.ksm.cursor = (0, 0);
                self.ksm.stats.full_scans += 1;
                self.ksm.unstable.clear();
                *budget -= 1;
                continue;
            }
            let id = self.ksm.mm_slots[si];
            let Some(m) = self.mms.get(id.0 as usize).and_then(Option::as_ref) else {
                self.ksm.cursor = (si + 1, 0);
                *budget -= 1;
                continue;
            };
            // The first mergeable anonymous VMA that ends past the cursor.
            let found = m
                .vmas
                .values()
                .find(|v| v.end.0 > next && v.flags & vm::MERGEABLE != 0 && v.kind == VmaKind::Anon)
                .map(|v| (v.start.0, v.end.0));
            let Some(v) = found else {
                self.ksm.cursor = (si + 1, 0);
                *budget -= 1;
                continue;
            };
            let vpn = Vpn(next.max(v.0));
            self.ksm.cursor = (si, vpn.0 + 1);
            *budget -= 1;
            let pgd = m.pgd;
            if let Some(leaf) = self.pt.walk(pgd, vpn) {
                if self.pt.pte(leaf).is_present() {
                    return Some((id, vpn, leaf));
                }
            }
        }
        None
    }

    /// One ksmd wake-up (`ksm_do_scan`): scans `pages_to_scan` pages.
    /// Returns pages merged.
    pub fn ksm_do_scan(&mut self, swap: &mut SwapSubsystem) -> u64 {
        let mut merged = 0;
        let mut budget = u64::from(self.ksm.pages_to_scan) * 16;
        for _ in 0..self.ksm.pages_to_scan {
            let Some((id, vpn, leaf)) = self.scan_get_next(&mut budget) else {
                break;
            };
            self.ksm.stats.pages_scanned += 1;
            if self.cmp_and_merge_page(swap, id, vpn, leaf) {
                merged += 1;
                self.ksm.stats.pages_merged += 1;
            }
        }
        merged
    }

    /// `cmp_and_merge_page`.
    fn cmp_and_merge_page(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        vpn: Vpn,
        leaf: (u32, usize),
    ) -> bool {
        let pfn = self.pt.pte(leaf).pfn();
        let p = *self.folios.get(pfn);
        if p.test(pg::KSM) || !mergeable_folio(&p) {
            return false;
        }
        let checksum = xxh3_64(self.ram.page(pfn));
        let old = self.ksm.oldchecksum.insert((id, vpn.0), checksum);
        if old != Some(checksum) {
            // Volatile: changed since the last look.
            return false;
        }
        // The stable tree.
        let candidates = self.ksm.stable.get(&checksum).cloned().unwrap_or_default();
        for node in candidates {
            let Some(kpfn) = self.ksm.node(node).map(|n| n.pfn) else {
                continue;
            };
            if self.ram.page(kpfn) == self.ram.page(pfn) {
                self.replace_page(swap, id, vpn, leaf, kpfn);
                return true;
            }
        }
        // The unstable tree.
        if let Some(&(tid, tvpn, tpfn)) = self.ksm.unstable.get(&checksum) {
            let tleaf = self
                .mms
                .get(tid.0 as usize)
                .and_then(Option::as_ref)
                .and_then(|m| self.pt.walk(m.pgd, tvpn));
            let still = tleaf.filter(|&l| {
                let t = self.pt.pte(l);
                t.is_present() && t.pfn() == tpfn
            });
            match still {
                Some(tleaf)
                    if tpfn != pfn
                        && mergeable_folio(self.folios.get(tpfn))
                        && self.ram.page(tpfn) == self.ram.page(pfn) =>
                {
                    self.ksm.unstable.remove(&checksum);
                    self.make_ksm_folio(tid, tvpn, tleaf, tpfn, checksum);
                    self.replace_page(swap, id, vpn, leaf, tpfn);
                    return true;
                }
                Some(_) => return false,
                None => {
                    self.ksm.unstable.remove(&checksum);
                }
            }
        }
        self.ksm.unstable.insert(checksum, (id, vpn, pfn));
        false
    }

    /// `try_to_merge_with_ksm_page` on a fresh node: the unstable-tree page
    /// becomes the KSM folio of a new stable node, write-protected.
    fn make_ksm_folio(&mut self, id: MmId, vpn: Vpn, leaf: (u32, usize), pfn: Pfn, checksum: u64) {
        let node = self.ksm.nodes.len() as u32;
        self.ksm.nodes.push(Some(StableNode {
            pfn,
            checksum,
            items: vec![(id, vpn)],
        }));
        self.ksm.stable.entry(checksum).or_default().push(node);
        let pte = self.pt.pte(leaf);
        if pte.has(Pte::DIRTY) {
            self.folios.get_mut(pfn).set(pg::DIRTY);
        }
        self.pt.set_pte(leaf, pte.without(Pte::WRITE | Pte::DIRTY));
        let p = self.folios.get_mut(pfn);
        p.set(pg::KSM);
        p.mapping = node;
    }

    /// `replace_page`: maps KSM folio `kpfn` read-only at `vpn` in place of
    /// its own page, which is released.
    fn replace_page(
        &mut self,
        swap: &mut SwapSubsystem,
        id: MmId,
        vpn: Vpn,
        leaf: (u32, usize),
        kpfn: Pfn,
    ) {
        let pte = self.pt.pte(leaf);
        let old = pte.pfn();
        self.pt.set_pte(
            leaf,
            Pte::present(kpfn, false, pte.has(Pte::ACCESSED), false),
        );
        self.folios.get_mut(kpfn).mapcount += 1;
        self.ksm_add_rmap_item(kpfn, id, vpn);
        self.folios.get_mut(old).mapcount -= 1;
        self.try_free_folio(swap, old);
    }
}

/// A folio ksmd may merge: an exclusive, idle, swap-backed anonymous folio.
fn mergeable_folio(p: &crate::folio::Page) -> bool {
    p.order == 0
        && p.test(pg::ANON)
        && p.test(pg::SWAPBACKED)
        && p.mapcount == 1
        && !p.test(pg::LOCKED | pg::WRITEBACK)
}
