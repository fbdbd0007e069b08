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

/// Slots of the leaf cache (16 KiB): enough for the 512 ranges of a 1 GiB
/// working set. With 64, a random walk over 1 GiB missed seven times in
/// eight and ran at 0.57 of a bare walk (`swapvm bench`: 137 M/s against
/// 240); with 1024, 0.84-1.05, and 0.70 at 16 GiB, where no small cache
/// helps.
const LEAF_SLOTS: usize = 1024;

/// The slab of tables shared by all address spaces.
#[derive(Debug, Default)]
pub struct PageTables {
    tables: Vec<[u64; ENTRIES]>,
    free: Vec<TableId>,
    leaves: LeafCache,
}

/// Which leaf table maps a 2 MiB range of an address space: a
/// direct-mapped cache of completed walks, so that a walk to a recently
/// walked range is one load of the cache slot and one of the PTE instead of
/// four dependent loads (the kernel's paging-structure caches do the same
/// for the hardware walker). Sound because the upper levels only grow: a
/// walk that found leaf `t` for (`pgd`, range) finds `t` until the tree of
/// `pgd` is freed, and [`PageTables::free_tree`] empties the cache. A slot
/// is (range + 1, pgd, leaf); range + 1 = 0 is an empty slot. `Cell`, not
/// `&mut`: walks take `&self`, and the tables are single-threaded.
#[derive(Debug)]
struct LeafCache([Cell<(u64, TableId, TableId)>; LEAF_SLOTS]);

impl Default for LeafCache {
    fn default() -> Self {
        LeafCache(std::array::from_fn(|_| Cell::new((0, 0, 0))))
    }
}

impl LeafCache {
    #[inline]
    fn slot(&self, pgd: TableId, key: u64) -> &Cell<(u64, TableId, TableId)> {
        &self.0[((key ^ (key >> 6) ^ u64::from(pgd)) as usize) % LEAF_SLOTS]
    }
}

#[inline]
fn idx(vpn: Vpn, level: u32) -> usize {
    ((vpn.0 >> (LEVEL_BITS * level)) & (ENTRIES as u64 - 1)) as usize
}

impl PageTables {
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
        let (k, g, leaf) = slot.get();
        if k == key && g == pgd {
            return Some((leaf, idx(vpn, 0)));
        }
        let mut t = pgd;
        for level in (1..4).rev() {
            let e = self.tables[t as usize][idx(vpn, level)];
            if e == 0 {
                return None;
            }
            t = (e - 1) as TableId;
        }
        slot.set((key, pgd, t));
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

    /// Frees the whole tree under `pgd`, `pgd` included (`free_pgtables`).
    /// The caller has zapped every PTE first.
    pub fn free_tree(&mut self, pgd: TableId) {
        self.free_level(pgd, 3);
        for slot in &self.leaves.0 {
            slot.set((0, 0, 0));
        }
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
