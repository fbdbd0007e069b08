//! Four-level page tables on a slab of 512-entry tables.
//!
//! Upper levels hold `table index + 1` (0 = empty); the last level holds raw
//! [`Pte`] words. A walk is four array loads and shifts (two, the cache slot
//! and the PTE, when its 2 MiB range was walked recently: see `LeafCache`):
//! no hashing, no locking, no allocation. Page-table pages come from this slab, not from
//! emulated RAM (a simplification: the kernel charges them to RAM).

use std::cell::Cell;
use swapvm_core::{Pfn, Pte, Vpn};

const ENTRIES: usize = 512;
const LEVEL_BITS: u32 = 9;

/// Index of a table in the slab.
pub type TableId = u32;

/// Fewest and most slots of the leaf cache. It gets one slot per 2 MiB
/// range that emulated RAM (and, once the machine has its swap devices,
/// swap) can fill, rounded up to a power of two, within these bounds
/// (16 KiB to 256 KiB of cache). A fixed 64 slots ran a random
/// walk over 1 GiB at 0.57 of a bare walk (`swapvm bench`); a fixed 1024,
/// at 0.84-1.05 up to 2 GiB and 0.70 at 16 GiB, where 8192 ranges shared
/// them.
const LEAF_SLOTS_MIN: usize = 1 << 10;
const LEAF_SLOTS_MAX: usize = 1 << 14;

/// The slab of tables shared by all address spaces.
#[derive(Debug)]
pub struct PageTables {
    tables: Vec<[u64; ENTRIES]>,
    free: Vec<TableId>,
    leaves: LeafCache,
}

impl Default for PageTables {
    /// Tables with the smallest leaf cache.
    fn default() -> Self {
        PageTables::new(0)
    }
}

/// Which leaf table maps a 2 MiB range of an address space: a
/// direct-mapped cache of completed walks, so that a walk to a recently
/// walked range is one load of the cache slot and one of the PTE instead of
/// four dependent loads (the kernel's paging-structure caches do the same
/// for the hardware walker). Sound because the upper levels only grow: a
/// walk that found leaf `t` for (`pgd`, range) finds `t` until the tree of
/// `pgd` is freed, and [`PageTables::free_tree`] empties the cache. A slot
/// is (range + 1, pgd << 32 | leaf); range + 1 = 0 is an empty slot.
/// Consecutive ranges of one address space take consecutive slots, so a
/// region of up to as many ranges as slots never collides with itself.
/// `Cell`, not `&mut`: walks take `&self`, and the tables are
/// single-threaded.
#[derive(Debug)]
struct LeafCache(Box<[Cell<(u64, u64)>]>);

impl LeafCache {
    fn new(slots: usize) -> Self {
        LeafCache((0..slots).map(|_| Cell::new((0, 0))).collect())
    }

    #[inline]
    fn slot(&self, pgd: TableId, key: u64) -> &Cell<(u64, u64)> {
        // The length is a power of two.
        let i = (key ^ (u64::from(pgd) << 7)) as usize & (self.0.len() - 1);
        &self.0[i]
    }

    fn clear(&self) {
        for slot in self.0.iter() {
            slot.set((0, 0));
        }
    }
}

/// Slots for `pages` mapped pages: one per 2 MiB range, a power of two.
fn leaf_slots(pages: u64) -> usize {
    let ranges = usize::try_from(pages.div_ceil(ENTRIES as u64)).unwrap_or(usize::MAX);
    ranges
        .clamp(LEAF_SLOTS_MIN, LEAF_SLOTS_MAX)
        .next_power_of_two()
}

#[inline]
fn idx(vpn: Vpn, level: u32) -> usize {
    ((vpn.0 >> (LEVEL_BITS * level)) & (ENTRIES as u64 - 1)) as usize
}

impl PageTables {
    /// Empty tables, with a leaf cache sized for `ram_pages` of emulated
    /// RAM (see [`LEAF_SLOTS_MAX`]).
    pub fn new(ram_pages: u64) -> Self {
        PageTables {
            tables: Vec::new(),
            free: Vec::new(),
            leaves: LeafCache::new(leaf_slots(ram_pages)),
        }
    }

    /// Resizes the leaf cache for address spaces of up to `pages` mapped
    /// pages (RAM plus swap: a swapped-out page keeps its leaf table). The
    /// cache starts empty; it only ever holds completed walks, so nothing
    /// is lost but the next walks' shortcut.
    pub fn resize_leaf_cache(&mut self, pages: u64) {
        let slots = leaf_slots(pages);
        if slots != self.leaves.0.len() {
            self.leaves = LeafCache::new(slots);
        }
    }

    /// Allocates an empty table (a PGD for a new address space, or a lower level).
    pub fn alloc_table(&mut self) -> TableId {
        match self.free.pop() {
            Some(t) => {
                self.tables[t as usize] = [0; ENTRIES];
                t
            }
            None => {
                self.tables.push([0; ENTRIES]);
                (self.tables.len() - 1) as TableId
            }
        }
    }

    /// Tables in use.
    pub fn tables_in_use(&self) -> usize {
        self.tables.len() - self.free.len()
    }

    /// The leaf table and slot for `vpn`, if all levels exist.
    #[inline(always)]
    pub fn walk(&self, pgd: TableId, vpn: Vpn) -> Option<(TableId, usize)> {
        let key = (vpn.0 >> LEVEL_BITS) + 1;
        let slot = self.leaves.slot(pgd, key);
        let (k, tag) = slot.get();
        if k == key && (tag >> 32) as TableId == pgd {
            return Some((tag as TableId, idx(vpn, 0)));
        }
        let mut t = pgd;
        for level in (1..4).rev() {
            let e = self.tables[t as usize][idx(vpn, level)];
            if e == 0 {
                return None;
            }
            t = (e - 1) as TableId;
        }
        slot.set((key, u64::from(pgd) << 32 | u64::from(t)));
        Some((t, idx(vpn, 0)))
    }

    /// A resident access to `vpn` in the tree `pgd`, as the MMU does it: if
    /// the PTE is present and allows the access (a store needs it
    /// writable), sets its accessed bit (and dirty, for a store) and
    /// returns its frame; otherwise `None`, nothing changed, and the access
    /// needs a fault (`Memory::access`). A walk on the slab and bit
    /// operations: no VMA lookup, no counter, no allocation.
    #[inline(always)]
    pub fn access_resident(&mut self, pgd: TableId, vpn: Vpn, write: bool) -> Option<Pfn> {
        let leaf = self.walk(pgd, vpn)?;
        let pte = self.pte(leaf);
        if pte.is_present() && (!write || pte.has(Pte::WRITE)) {
            let want = if write {
                Pte::ACCESSED | Pte::DIRTY
            } else {
                Pte::ACCESSED
            };
            if !pte.has(want) {
                self.set_pte(leaf, pte.with(want));
            }
            return Some(pte.pfn());
        }
        None
    }

    /// Like [`Self::walk`], creating missing levels.
    pub fn walk_alloc(&mut self, pgd: TableId, vpn: Vpn) -> (TableId, usize) {
        let mut t = pgd;
        for level in (1..4).rev() {
            let i = idx(vpn, level);
            let e = self.tables[t as usize][i];
            t = if e == 0 {
                let n = self.alloc_table();
                self.tables[t as usize][i] = u64::from(n) + 1;
                n
            } else {
                (e - 1) as TableId
            };
        }
        (t, idx(vpn, 0))
    }

    /// The PTE at a leaf slot.
    #[inline]
    pub fn pte(&self, leaf: (TableId, usize)) -> Pte {
        Pte::from_raw(self.tables[leaf.0 as usize][leaf.1])
    }

    /// Sets the PTE at a leaf slot.
    #[inline]
    pub fn set_pte(&mut self, leaf: (TableId, usize), pte: Pte) {
        self.tables[leaf.0 as usize][leaf.1] = pte.raw();
    }

    /// Touches the swap slots of the swap PTEs in the `n` slots of a leaf
    /// table from `leaf`, so that a zap's `swap_put_entries_direct` per
    /// PTE does not wait on each slot's cache miss in turn (the slots of
    /// neighbouring pages are scattered over the swap table). Reads only.
    pub fn swap_prefetch_leaf(
        &self,
        swap: &swapvm_swap::SwapSubsystem,
        leaf: (TableId, usize),
        n: usize,
    ) {
        let ptes = &self.tables[leaf.0 as usize][leaf.1..(leaf.1 + n).min(ENTRIES)];
        let mut sum = 0u64;
        for &raw in ptes {
            if let Some(e) = Pte::from_raw(raw).swap_entry() {
                sum += u64::from(swap.slot(e).is_some_and(|s| s.count > 0));
            }
        }
        std::hint::black_box(sum);
    }

    /// The PTE for `vpn`, `Pte::NONE` if unmapped.
    #[inline]
    pub fn lookup(&self, pgd: TableId, vpn: Vpn) -> Pte {
        self.walk(pgd, vpn).map_or(Pte::NONE, |l| self.pte(l))
    }

    /// Calls `f(vpn, pte)` for every non-empty PTE of the tree (checker and
    /// teardown use; cost is proportional to the tables in use).
    pub fn for_each_pte(&self, pgd: TableId, mut f: impl FnMut(Vpn, Pte)) {
        self.visit(pgd, 3, 0, &mut f);
    }

    fn visit(&self, t: TableId, level: u32, base: u64, f: &mut impl FnMut(Vpn, Pte)) {
        for (i, &e) in self.tables[t as usize].iter().enumerate() {
            if e == 0 {
                continue;
            }
            let vpn = base | ((i as u64) << (LEVEL_BITS * level));
            if level == 0 {
                f(Vpn(vpn), Pte::from_raw(e));
            } else {
                self.visit((e - 1) as TableId, level - 1, vpn, f);
            }
        }
    }

    /// Calls `f(vpn, pte)` for every non-empty PTE of the tree; a `Some`
    /// it returns replaces the PTE (MGLRU's aging walk clearing accessed
    /// bits). Upper levels are not changed.
    pub fn for_each_pte_mut(&mut self, pgd: TableId, mut f: impl FnMut(Vpn, Pte) -> Option<Pte>) {
        self.visit_mut(pgd, 3, 0, &mut f);
    }

    fn visit_mut(
        &mut self,
        t: TableId,
        level: u32,
        base: u64,
        f: &mut impl FnMut(Vpn, Pte) -> Option<Pte>,
    ) {
        for i in 0..ENTRIES {
            let e = self.tables[t as usize][i];
            if e == 0 {
                continue;
            }
            let vpn = base | ((i as u64) << (LEVEL_BITS * level));
            if level > 0 {
                self.visit_mut((e - 1) as TableId, level - 1, vpn, f);
            } else if let Some(new) = f(Vpn(vpn), Pte::from_raw(e)) {
                self.tables[t as usize][i] = new.raw();
            }
        }
    }

    /// Frees the whole tree under `pgd`, `pgd` included (`free_pgtables`).
    /// The caller has zapped every PTE first.
    pub fn free_tree(&mut self, pgd: TableId) {
        self.free_level(pgd, 3);
        self.leaves.clear();
    }

    fn free_level(&mut self, t: TableId, level: u32) {
        if level > 0 {
            for i in 0..ENTRIES {
                let e = self.tables[t as usize][i];
                if e != 0 {
                    self.free_level((e - 1) as TableId, level - 1);
                }
            }
        }
        self.free.push(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_alloc_set_lookup() {
        let mut pt = PageTables::default();
        let pgd = pt.alloc_table();
        let v = Vpn::from_addr(0x7f12_3456_7000);
        assert!(pt.walk(pgd, v).is_none());
        let leaf = pt.walk_alloc(pgd, v);
        pt.set_pte(leaf, Pte::present(Pfn(7), true, false, false));
        assert_eq!(pt.lookup(pgd, v).pfn(), Pfn(7));
        assert!(pt.lookup(pgd, v.add(1)).is_none());
        let mut seen = vec![];
        pt.for_each_pte(pgd, |vpn, _| seen.push(vpn));
        assert_eq!(seen, vec![v]);
        assert_eq!(pt.tables_in_use(), 4);
        pt.free_tree(pgd);
        assert_eq!(pt.tables_in_use(), 0);
    }

    #[test]
    fn leaf_cache_has_a_slot_per_range_ram_can_fill_within_bounds() {
        let slots = |ram_mib: u64| PageTables::new(ram_mib * 256).leaves.0.len();
        assert_eq!(slots(0), LEAF_SLOTS_MIN);
        assert_eq!(slots(256), LEAF_SLOTS_MIN);
        assert_eq!(slots(4 << 10), 2048);
        assert_eq!(slots(16 << 10), 8192);
        assert_eq!(slots(5 << 10), 4096, "rounded up to a power of two");
        assert_eq!(slots(1 << 20), LEAF_SLOTS_MAX);
        let mut pt = PageTables::new(256 * 256);
        pt.resize_leaf_cache((256 + 4096) * 256);
        assert_eq!(pt.leaves.0.len(), 4096, "RAM and swap");
        // A region of as many ranges as slots takes every slot once.
        let mut pt = PageTables::new(4 << 18);
        let pgd = pt.alloc_table();
        let n = pt.leaves.0.len() as u64;
        let leaves: Vec<_> = (0..n)
            .map(|r| pt.walk_alloc(pgd, Vpn((7 + r) << 9)))
            .collect();
        for (r, l) in leaves.iter().enumerate() {
            assert_eq!(pt.walk(pgd, Vpn((7 + r as u64) << 9)), Some(*l));
        }
        let cached = pt.leaves.0.iter().filter(|s| s.get().0 != 0).count();
        assert_eq!(cached as u64, n, "ranges of one region collided");
    }

    #[test]
    fn leaf_cache_follows_trees_freed_and_reused() {
        let mut pt = PageTables::default();
        let a = pt.alloc_table();
        let b = pt.alloc_table();
        // Same range in two address spaces: the cache keys on the pgd too.
        let la = pt.walk_alloc(a, Vpn(0x1234));
        let lb = pt.walk_alloc(b, Vpn(0x1234));
        assert_ne!(la.0, lb.0);
        for _ in 0..2 {
            assert_eq!(pt.walk(a, Vpn(0x1234)), Some(la));
            assert_eq!(pt.walk(b, Vpn(0x1235)), Some((lb.0, lb.1 + 1)));
        }
        // Slots that collide: many ranges, each walked twice.
        let leaves: Vec<_> = (0..200u64).map(|r| pt.walk_alloc(a, Vpn(r << 9))).collect();
        for _ in 0..2 {
            for (r, l) in leaves.iter().enumerate() {
                assert_eq!(pt.walk(a, Vpn((r as u64) << 9)), Some(*l));
            }
        }
        // A freed tree's tables are reused for another: no stale leaf.
        pt.free_tree(a);
        let c = pt.alloc_table();
        assert_eq!(pt.walk(c, Vpn(0x1234)), None);
        let lc = pt.walk_alloc(c, Vpn(0x99 << 9));
        assert_eq!(pt.walk(c, Vpn(0x99 << 9)), Some(lc));
        assert_eq!(pt.walk(c, Vpn(0x1234)), None);
        assert_eq!(pt.walk(b, Vpn(0x1234)), Some(lb));
    }
}
