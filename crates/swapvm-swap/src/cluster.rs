//! The cluster allocator (mm/swapfile.c: `cluster_alloc_swap_entry`).
//!
//! Slots are grouped in clusters of [`SWAPFILE_CLUSTER`]. A cluster is on
//! exactly one list: `free` (no slot in use), `nonfull[order]` (serving that
//! order, with room), `frag[order]` (serving that order, but a scan found no
//! aligned run for it), or `full`. A large folio of order `o` takes
//! `1 << o` contiguous slots aligned to `1 << o` inside one cluster, so
//! folio-based operations never cross a cluster.
//!
//! Allocation order, as in the kernel: the CPU's current cluster for the
//! order, then `nonfull[order]`, then a `free` cluster, then `frag[order]`;
//! order 0 finally steals from the frag and nonfull lists of other orders.
//!
//! Two designs, selectable per device so they can be compared on one
//! workload ([`AllocatorKind`]): the current one above, and the earlier one
//! in which a large folio takes only a wholly free cluster and order 0 uses
//! per-CPU clusters and then any cluster with room, with no per-order lists.
//!
//! Simplification: freed clusters are discarded at once (when enabled),
//! not through a discard list and worker.

use crate::table::SwapTable;
use swapvm_core::list::{Link, ListHead};

/// Slots per cluster (`SWAPFILE_CLUSTER`).
pub const SWAPFILE_CLUSTER: u64 = 512;
/// Orders the allocator serves: 0 ..= 9 (a PMD folio fills a cluster).
pub const NR_ORDERS: usize = 10;
const _: () = assert!(SWAPFILE_CLUSTER.is_power_of_two());
const _: () = assert!(1 << (NR_ORDERS - 1) == SWAPFILE_CLUSTER);

/// Which allocator design a device uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AllocatorKind {
    /// Per-order nonfull/frag lists; a cluster remembers its order
    /// (the kernel since the swap allocator rework).
    #[default]
    PerOrder,
    /// Large folios only from wholly free clusters; order 0 from per-CPU
    /// clusters, then any cluster with a free slot.
    FreeClustersOnly,
}

impl AllocatorKind {
    /// Parses a config name: `"per-order"` or `"free-clusters-only"`.
    pub fn parse(s: &str) -> Option<AllocatorKind> {
        match s {
            "per-order" => Some(AllocatorKind::PerOrder),
            "free-clusters-only" => Some(AllocatorKind::FreeClustersOnly),
            _ => None,
        }
    }
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            AllocatorKind::PerOrder => "per-order",
            AllocatorKind::FreeClustersOnly => "free-clusters-only",
        }
    }
}

/// Which list a cluster is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterList {
    /// No slot in use.
    Free,
    /// Serving `order`, room left.
    Nonfull(u8),
    /// Serving `order`, no aligned run found by the last scan.
    Frag(u8),
    /// Every slot in use.
    Full,
}

/// Per-cluster state (`struct swap_cluster_info`).
#[derive(Clone, Copy, Debug)]
pub struct ClusterInfo {
    /// Slots in use, bad slots included.
    pub count: u16,
    /// Order this cluster serves (meaningful off the free list).
    pub order: u8,
    /// The list it is on.
    pub list: ClusterList,
}

/// The clusters of one device.
#[derive(Debug)]
pub struct Clusters {
    info: Vec<ClusterInfo>,
    links: Vec<Link>,
    free: ListHead,
    nonfull: [ListHead; NR_ORDERS],
    frag: [ListHead; NR_ORDERS],
    full: ListHead,
    /// Per CPU, per order: the next offset to try (`percpu_swap_cluster`;
    /// one shared entry is the global cluster of a rotational device).
    percpu_next: Vec<[u64; NR_ORDERS]>,
    kind: AllocatorKind,
}

const NO_HINT: u64 = u64::MAX;

impl Clusters {
    /// Clusters for a table; slots already marked bad in `table` are
    /// counted as in use.
    pub fn new(table: &SwapTable, cpus: usize, kind: AllocatorKind) -> Self {
        let nr = table.len().div_ceil(SWAPFILE_CLUSTER) as usize;
        let mut c = Clusters {
            info: vec![
                ClusterInfo {
                    count: 0,
                    order: 0,
                    list: ClusterList::Free
                };
                nr
            ],
            links: vec![Link::default(); nr],
            free: ListHead::default(),
            nonfull: [ListHead::default(); NR_ORDERS],
            frag: [ListHead::default(); NR_ORDERS],
            full: ListHead::default(),
            percpu_next: vec![[NO_HINT; NR_ORDERS]; cpus.max(1)],
            kind,
        };
        for ci in 0..nr {
            let base = ci as u64 * SWAPFILE_CLUSTER;
            let bad = (base..base + SWAPFILE_CLUSTER)
                .filter(|&i| i >= table.len() || table.get(i).is_bad())
                .count() as u16;
            c.info[ci].count = bad;
            let list = if u64::from(bad) == SWAPFILE_CLUSTER {
                ClusterList::Full
            } else if bad > 0 {
                ClusterList::Frag(0)
            } else {
                ClusterList::Free
            };
            c.info[ci].list = list;
            let mut links = std::mem::take(&mut c.links);
            c.head(list).push_back(&mut links, ci as u32);
            c.links = links;
        }
        c
    }

    fn head(&mut self, l: ClusterList) -> &mut ListHead {
        match l {
            ClusterList::Free => &mut self.free,
            ClusterList::Nonfull(o) => &mut self.nonfull[o as usize],
            ClusterList::Frag(o) => &mut self.frag[o as usize],
            ClusterList::Full => &mut self.full,
        }
    }

    fn move_cluster(&mut self, ci: u32, to: ClusterList) {
        let from = self.info[ci as usize].list;
        if from == to {
            return;
        }
        let mut links = std::mem::take(&mut self.links);
        self.head(from).remove(&mut links, ci);
        self.head(to).push_back(&mut links, ci);
        self.links = links;
        self.info[ci as usize].list = to;
    }

    fn rotate(&mut self, ci: u32, l: ClusterList) {
        let mut links = std::mem::take(&mut self.links);
        self.head(l).remove(&mut links, ci);
        self.head(l).push_back(&mut links, ci);
        self.links = links;
    }

    /// Number of clusters.
    pub fn len(&self) -> usize {
        self.info.len()
    }
    /// True if the device has no cluster.
    pub fn is_empty(&self) -> bool {
        self.info.is_empty()
    }
    /// Cluster `ci`'s state.
    pub fn info(&self, ci: usize) -> ClusterInfo {
        self.info[ci]
    }
    /// Host bytes of the per-cluster state, links and per-CPU hints, by
    /// capacity.
    pub fn host_bytes(&self) -> u64 {
        let each = |cap: usize, size: usize| (cap * size) as u64;
        each(self.info.capacity(), std::mem::size_of::<ClusterInfo>())
            + each(self.links.capacity(), std::mem::size_of::<Link>())
            + each(
                self.percpu_next.capacity(),
                std::mem::size_of::<[u64; NR_ORDERS]>(),
            )
    }
    /// Clusters on the free list.
    pub fn nr_free(&self) -> u32 {
        self.free.len()
    }
    /// The members of a list, front to back (checker use).
    pub fn members(&mut self, l: ClusterList) -> Vec<u32> {
        let mut links = std::mem::take(&mut self.links);
        let v = self.head(l).collect(&mut links);
        self.links = links;
        v
    }

    /// Clusters on the free, nonfull (all orders), frag (all orders) and
    /// full lists.
    pub fn list_counts(&self) -> [u32; 4] {
        [
            self.free.len(),
            self.nonfull.iter().map(ListHead::len).sum(),
            self.frag.iter().map(ListHead::len).sum(),
            self.full.len(),
        ]
    }

    /// Checks list membership against the counts: every cluster is on the
    /// list its state names and on no other; `free` iff no slot in use,
    /// `full` iff every slot in use. One line per violation.
    pub fn check_lists(&self) -> Vec<String> {
        let mut bad = Vec::new();
        let mut links = self.links.clone();
        let mut seen = vec![0u8; self.info.len()];
        let heads = std::iter::once((ClusterList::Free, self.free))
            .chain(std::iter::once((ClusterList::Full, self.full)))
            .chain((0..NR_ORDERS).map(|o| (ClusterList::Nonfull(o as u8), self.nonfull[o])))
            .chain((0..NR_ORDERS).map(|o| (ClusterList::Frag(o as u8), self.frag[o])));
        for (l, head) in heads {
            for ci in head.collect(&mut links) {
                seen[ci as usize] += 1;
                if self.info[ci as usize].list != l {
                    bad.push(format!(
                        "cluster {ci} is on {l:?} but says {:?}",
                        self.info[ci as usize].list
                    ));
                }
            }
        }
        for (ci, info) in self.info.iter().enumerate() {
            if seen[ci] != 1 {
                bad.push(format!("cluster {ci} is on {} lists", seen[ci]));
            }
            let full = u64::from(info.count) == SWAPFILE_CLUSTER;
            let ok = match info.list {
                ClusterList::Free => info.count == 0,
                ClusterList::Full => full,
                ClusterList::Nonfull(_) | ClusterList::Frag(_) => info.count > 0 && !full,
            };
            if !ok {
                bad.push(format!(
                    "cluster {ci} on {:?} with {} slots in use",
                    info.list, info.count
                ));
            }
        }
        bad
    }

    /// Finds `1 << order` free, aligned slots, marks them in use in the
    /// cluster counts, and returns the first offset. The caller binds the
    /// slots in the table before anything else looks at it.
    pub fn alloc(&mut self, table: &SwapTable, order: u8, cpu: usize) -> Option<u64> {
        let cpu = cpu % self.percpu_next.len();
        let o = order as usize;
        let hint = self.percpu_next[cpu][o];
        // The hint is one past the last run handed out, so after the last
        // slot of the device it names a cluster that does not exist.
        if hint != NO_HINT && hint < table.len() {
            let ci = (hint / SWAPFILE_CLUSTER) as u32;
            if matches!(self.info[ci as usize].list, ClusterList::Nonfull(x) if x == order) {
                if let Some(off) = self.scan(table, ci, order, hint, cpu) {
                    return Some(off);
                }
            }
        }
        if self.kind == AllocatorKind::FreeClustersOnly {
            return self.alloc_free_clusters_only(table, order, cpu);
        }
        if let Some(off) = self.alloc_from_list(table, ClusterList::Nonfull(order), order, cpu) {
            return Some(off);
        }
        if let Some(ci) = self.free.first() {
            self.info[ci as usize].order = order;
            self.move_cluster(ci, ClusterList::Nonfull(order));
            if let Some(off) = self.scan(table, ci, order, ci as u64 * SWAPFILE_CLUSTER, cpu) {
                return Some(off);
            }
        }
        if let Some(off) = self.alloc_from_list(table, ClusterList::Frag(order), order, cpu) {
            return Some(off);
        }
        if order == 0 {
            for other in 1..NR_ORDERS as u8 {
                for l in [ClusterList::Frag(other), ClusterList::Nonfull(other)] {
                    if let Some(off) = self.alloc_from_list(table, l, 0, cpu) {
                        return Some(off);
                    }
                }
            }
        }
        None
    }

    /// The earlier design: a fresh free cluster, and for order 0 any
    /// cluster with room (`scan_swap_map_slots`), lowest first.
    fn alloc_free_clusters_only(
        &mut self,
        table: &SwapTable,
        order: u8,
        cpu: usize,
    ) -> Option<u64> {
        if let Some(ci) = self.free.first() {
            self.info[ci as usize].order = order;
            self.move_cluster(ci, ClusterList::Nonfull(order));
            if let Some(off) = self.scan(table, ci, order, u64::from(ci) * SWAPFILE_CLUSTER, cpu) {
                return Some(off);
            }
        }
        if order > 0 {
            return None;
        }
        for ci in 0..self.info.len() as u32 {
            if matches!(
                self.info[ci as usize].list,
                ClusterList::Nonfull(_) | ClusterList::Frag(_)
            ) {
                if let Some(off) = self.scan(table, ci, 0, u64::from(ci) * SWAPFILE_CLUSTER, cpu) {
                    return Some(off);
                }
            }
        }
        None
    }

    fn alloc_from_list(
        &mut self,
        table: &SwapTable,
        l: ClusterList,
        order: u8,
        cpu: usize,
    ) -> Option<u64> {
        // Each failed scan moves the cluster off `l` (to frag or full), so
        // this loop visits every cluster on the list at most once.
        let mut budget = self.head(l).len();
        while budget > 0 {
            budget -= 1;
            let ci = self.head(l).first()?;
            if let Some(off) = self.scan(table, ci, order, ci as u64 * SWAPFILE_CLUSTER, cpu) {
                return Some(off);
            }
            if self.info[ci as usize].list == l {
                // A frag cluster that failed stays frag; rotate it so the
                // next attempt starts elsewhere.
                self.rotate(ci, l);
            }
        }
        None
    }

    /// Scans cluster `ci` from `start` (wrapping) for an aligned free run.
    fn scan(
        &mut self,
        table: &SwapTable,
        ci: u32,
        order: u8,
        start: u64,
        cpu: usize,
    ) -> Option<u64> {
        let nr = 1u64 << order;
        let base = ci as u64 * SWAPFILE_CLUSTER;
        let end = (base + SWAPFILE_CLUSTER).min(table.len());
        let first = (start.max(base) & !(nr - 1)).min(end);
        let candidates = (first..end)
            .step_by(nr as usize)
            .chain((base..first).step_by(nr as usize));
        for off in candidates {
            if off + nr <= end && (off..off + nr).all(|i| table.get(i).is_free()) {
                let info = &mut self.info[ci as usize];
                info.count += nr as u16;
                let full = u64::from(info.count) == SWAPFILE_CLUSTER;
                let serving = info.order;
                if full {
                    self.move_cluster(ci, ClusterList::Full);
                    self.percpu_next[cpu][order as usize] = NO_HINT;
                } else {
                    if self.info[ci as usize].list == ClusterList::Free {
                        self.move_cluster(ci, ClusterList::Nonfull(serving));
                    }
                    self.percpu_next[cpu][order as usize] = off + nr;
                }
                return Some(off);
            }
        }
        // Nothing aligned fits: the kernel moves such a cluster to frag.
        let info = self.info[ci as usize];
        if let ClusterList::Nonfull(o) = info.list {
            self.move_cluster(ci, ClusterList::Frag(o));
        }
        if self.percpu_next[cpu][order as usize] / SWAPFILE_CLUSTER == u64::from(ci) {
            self.percpu_next[cpu][order as usize] = NO_HINT;
        }
        None
    }

    /// Returns `nr` slots starting at `off` (all in one cluster) to the
    /// cluster counts (`swap_entries_free` → `partial_free_cluster` /
    /// `free_cluster`).
    pub fn free(&mut self, off: u64, nr: u64) {
        let ci = (off / SWAPFILE_CLUSTER) as u32;
        debug_assert_eq!(ci as u64, (off + nr - 1) / SWAPFILE_CLUSTER);
        let info = &mut self.info[ci as usize];
        assert!(u64::from(info.count) >= nr, "cluster {ci} count underflow");
        info.count -= nr as u16;
        let (count, order, list) = (info.count, info.order, info.list);
        if count == 0 {
            self.info[ci as usize].order = 0;
            self.move_cluster(ci, ClusterList::Free);
        } else if !matches!(list, ClusterList::Nonfull(_)) {
            self.move_cluster(ci, ClusterList::Nonfull(order));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::SlotBinding;
    use swapvm_core::Pfn;

    fn table(n: u64) -> SwapTable {
        let mut t = SwapTable::new(n);
        t.set_bad(0);
        t
    }

    fn take(t: &mut SwapTable, off: u64, order: u8) {
        for i in off..off + (1 << order) {
            t.set_binding(i, SlotBinding::Folio(Pfn(1)));
        }
    }

    #[test]
    fn header_slot_is_never_allocated_and_runs_are_aligned() {
        let mut t = table(4 * SWAPFILE_CLUSTER);
        let mut c = Clusters::new(&t, 1, AllocatorKind::PerOrder);
        let a = c.alloc(&t, 0, 0).unwrap();
        assert_ne!(a, 0);
        take(&mut t, a, 0);
        let b = c.alloc(&t, 4, 0).unwrap();
        assert_eq!(b % 16, 0);
        take(&mut t, b, 4);
        assert_ne!(
            a / SWAPFILE_CLUSTER,
            b / SWAPFILE_CLUSTER,
            "a cluster serves one order"
        );
    }

    #[test]
    fn fill_then_free_returns_cluster_to_free_list() {
        let mut t = table(2 * SWAPFILE_CLUSTER);
        let mut c = Clusters::new(&t, 2, AllocatorKind::PerOrder);
        let mut got = vec![];
        while let Some(off) = c.alloc(&t, 0, 0) {
            take(&mut t, off, 0);
            got.push(off);
        }
        assert_eq!(got.len() as u64, 2 * SWAPFILE_CLUSTER - 1);
        assert_eq!(c.members(ClusterList::Full).len(), 2);
        for off in got.iter().copied().filter(|&o| o >= SWAPFILE_CLUSTER) {
            t.clear(off);
            c.free(off, 1);
        }
        assert_eq!(c.info(1).list, ClusterList::Free);
        assert_eq!(c.info(0).list, ClusterList::Full);
    }
}
