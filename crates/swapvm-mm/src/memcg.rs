//! Memory cgroups (mm/memcontrol.c, mm/page_counter.c): the hierarchy,
//! charging, protection and the per-memcg counters.
//!
//! Every folio is charged to one memcg when it is allocated (`folio_memcg`,
//! [`crate::Page::memcg`]) and uncharged when it is freed; the charge goes
//! up the hierarchy as `page_counter_try_charge` does, and fails where an
//! ancestor (or the memcg itself) would go over its `memory.max`. The
//! caller then reclaims from that memcg (swapvm-reclaim's
//! `try_to_free_mem_cgroup_pages`) and retries. Swap slots are charged to
//! the memcg that swapped them out (swapvm-swap keeps the `swap_cgroup`
//! map); `memory.swap.max` is checked before a slot is taken.
//!
//! The root is memcg 0, has no limits, and with no `[[cgroup]]` tables it is
//! the only one: the machine behaves as before cgroups existed.
//!
//! Simplifications: one node; no kernel memory, socket or page-table
//! charges (swapvm does not charge page tables to RAM at all); no per-CPU
//! charge stock (`memcg_stock`: the kernel charges in batches of 64 pages
//! and may overshoot `memory.max` by that much, swapvm charges exactly);
//! `memory_recursiveprot` off, as by default.

use crate::memory::Memory;
use swapvm_core::config::CgroupLimits;
use swapvm_core::{Pfn, VmEvent, VmStat};

/// A memcg id (`mem_cgroup_id`): an index into [`MemCgroups`], 0 the root.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemcgId(pub u16);

impl MemcgId {
    /// The root cgroup.
    pub const ROOT: MemcgId = MemcgId(0);
}

/// `memory.events` (`enum memcg_memory_event`) and `memory.swap.events`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemcgEvents {
    /// `low`: reclaimed despite being under `memory.low`.
    pub low: u64,
    /// `high`: over `memory.high` (throttled, reclaimed on return).
    pub high: u64,
    /// `max`: a charge hit `memory.max` (limit reclaim ran).
    pub max: u64,
    /// `oom`: the memcg reached its limit and reclaim could not free
    /// enough.
    pub oom: u64,
    /// `oom_kill`: processes killed by the memcg OOM killer.
    pub oom_kill: u64,
    /// `oom_group_kill`: times `memory.oom.group` killed the group.
    pub oom_group_kill: u64,
    /// `memory.swap.events` `max`: a swap-out refused at `memory.swap.max`.
    pub swap_max: u64,
}

impl MemcgEvents {
    fn bump(&mut self, ev: MemcgEvent) {
        match ev {
            MemcgEvent::Low => self.low += 1,
            MemcgEvent::High => self.high += 1,
            MemcgEvent::Max => self.max += 1,
            MemcgEvent::Oom => self.oom += 1,
            MemcgEvent::OomKill => self.oom_kill += 1,
            MemcgEvent::OomGroupKill => self.oom_group_kill += 1,
            MemcgEvent::SwapMax => self.swap_max += 1,
        }
    }
}

/// One `memcg_memory_event` kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemcgEvent {
    /// `MEMCG_LOW`.
    Low,
    /// `MEMCG_HIGH`.
    High,
    /// `MEMCG_MAX`.
    Max,
    /// `MEMCG_OOM`.
    Oom,
    /// `MEMCG_OOM_KILL`.
    OomKill,
    /// `MEMCG_OOM_GROUP_KILL`.
    OomGroupKill,
    /// `MEMCG_SWAP_MAX`.
    SwapMax,
}

/// One memory cgroup (`struct mem_cgroup`).
#[derive(Debug)]
pub struct MemCgroup {
    /// Its settings (the interface files as written).
    pub limits: CgroupLimits,
    /// The parent (`None` for the root).
    pub parent: Option<MemcgId>,
    /// `memory.current`: pages charged here and below (`page_counter`).
    pub usage: u64,
    /// `memory.peak`.
    pub peak: u64,
    /// `memory.swap.peak` (slots, here and below).
    pub swap_peak: u64,
    /// `memory.events`: hierarchical (an event counts here and in every
    /// ancestor but the root).
    pub events: MemcgEvents,
    /// `memory.events.local`.
    pub events_local: MemcgEvents,
    /// This memcg's own event counts (`memory.stat` sums them over the
    /// subtree).
    pub stat: VmStat,
    /// Effective `memory.min` and `memory.low` as the last reclaim walk
    /// computed them (`memory.emin`, `memory.elow`).
    pub emin: u64,
    /// See [`MemCgroup::emin`].
    pub elow: u64,
    /// Swap-out writes of this memcg's folios in flight.
    pub nr_writeback: u64,
}

/// The hierarchy.
#[derive(Debug)]
pub struct MemCgroups {
    groups: Vec<MemCgroup>,
}

impl Default for MemCgroups {
    fn default() -> Self {
        MemCgroups::new(vec![CgroupLimits::root()])
    }
}

impl MemCgroups {
    /// From the resolved config: the root first, each parent before its
    /// children (`MachineConfig::cgroups`).
    pub fn new(limits: Vec<CgroupLimits>) -> Self {
        let groups = limits
            .into_iter()
            .map(|l| MemCgroup {
                parent: l.parent.map(|p| MemcgId(p as u16)),
                limits: l,
                usage: 0,
                peak: 0,
                swap_peak: 0,
                events: MemcgEvents::default(),
                events_local: MemcgEvents::default(),
                stat: VmStat::default(),
                emin: 0,
                elow: 0,
                nr_writeback: 0,
            })
            .collect();
        MemCgroups { groups }
    }
    /// Memcgs, the root included.
    pub fn len(&self) -> usize {
        self.groups.len()
    }
    /// Only the root exists.
    pub fn is_empty(&self) -> bool {
        self.groups.len() <= 1
    }
    /// Memcg `id`.
    pub fn get(&self, id: MemcgId) -> &MemCgroup {
        &self.groups[usize::from(id.0)]
    }
    /// Memcg `id`, mutably.
    pub fn get_mut(&mut self, id: MemcgId) -> &mut MemCgroup {
        &mut self.groups[usize::from(id.0)]
    }
    /// The memcg at `path`.
    pub fn by_path(&self, path: &str) -> Option<MemcgId> {
        self.groups
            .iter()
            .position(|g| g.limits.path == path)
            .map(|i| MemcgId(i as u16))
    }
    /// `id`, its parent, ..., the root.
    pub fn ancestors(&self, id: MemcgId) -> impl Iterator<Item = MemcgId> + '_ {
        std::iter::successors(Some(id), |&m| self.get(m).parent)
    }
    /// `mem_cgroup_is_descendant`: `id` is `of` or below it.
    pub fn is_descendant(&self, id: MemcgId, of: MemcgId) -> bool {
        self.ancestors(id).any(|m| m == of)
    }
    /// `mem_cgroup_iter` over `target`'s subtree: pre-order, children in
    /// creation order, `target` first.
    pub fn subtree(&self, target: MemcgId) -> Vec<MemcgId> {
        let mut out = vec![target];
        let mut i = 0;
        while i < out.len() {
            let at = out[i];
            let kids = (0..self.groups.len())
                .map(|k| MemcgId(k as u16))
                .filter(|&k| self.get(k).parent == Some(at));
            let pos = i + 1;
            let kids: Vec<MemcgId> = kids.collect();
            // Depth first: the children go right after their parent.
            out.splice(pos..pos, kids);
            i += 1;
        }
        out
    }

    /// `page_counter_try_charge` of `nr` pages to `id` and its ancestors;
    /// `Err` names the memcg whose `memory.max` refused (nothing charged).
    pub fn try_charge(&mut self, id: MemcgId, nr: u64) -> Result<(), MemcgId> {
        if let Some(over) = self.ancestors(id).find(|&m| {
            self.get(m)
                .limits
                .max
                .is_some_and(|max| self.get(m).usage + nr > max)
        }) {
            return Err(over);
        }
        let chain: Vec<MemcgId> = self.ancestors(id).collect();
        for m in chain {
            let g = self.get_mut(m);
            g.usage += nr;
            g.peak = g.peak.max(g.usage);
        }
        Ok(())
    }

    /// Charges `nr` pages to `id` and its ancestors whatever their limits
    /// (`page_counter_charge`, the kernel's `force:` path).
    pub fn force_charge(&mut self, id: MemcgId, nr: u64) {
        let chain: Vec<MemcgId> = self.ancestors(id).collect();
        for m in chain {
            let g = self.get_mut(m);
            g.usage += nr;
            g.peak = g.peak.max(g.usage);
        }
    }

    /// The highest of `id` and its ancestors over its `memory.max`, with
    /// the excess in pages.
    pub fn over_max(&self, id: MemcgId) -> Option<(MemcgId, u64)> {
        self.ancestors(id)
            .filter_map(|m| {
                let g = self.get(m);
                let max = g.limits.max?;
                (g.usage > max).then(|| (m, g.usage - max))
            })
            .last()
    }

    /// `page_counter_uncharge`.
    pub fn uncharge(&mut self, id: MemcgId, nr: u64) {
        let chain: Vec<MemcgId> = self.ancestors(id).collect();
        for m in chain {
            let g = self.get_mut(m);
            g.usage = g.usage.saturating_sub(nr);
        }
    }

    /// The first of `id` and its ancestors over `memory.high`, as
    /// `mem_cgroup_handle_over_high` looks for one.
    pub fn over_high(&self, id: MemcgId) -> Option<MemcgId> {
        self.ancestors(id).find(|&m| {
            self.get(m)
                .limits
                .high
                .is_some_and(|h| self.get(m).usage > h)
        })
    }

    /// `memcg_memory_event`: counts `ev` locally and in every ancestor
    /// below the root (the root has no `memory.events`).
    pub fn event(&mut self, id: MemcgId, ev: MemcgEvent) {
        self.get_mut(id).events_local.bump(ev);
        let chain: Vec<MemcgId> = self.ancestors(id).collect();
        for m in chain.into_iter().filter(|&m| m != MemcgId::ROOT) {
            self.get_mut(m).events.bump(ev);
        }
    }

    /// Counts a memcg event (`count_memcg_events`) on `id`'s own stats.
    pub fn count(&self, id: MemcgId, ev: VmEvent, nr: u64) {
        self.get(id).stat.add(ev, nr);
    }

    /// `memory.stat`'s value of event `ev` for `id`: its own count plus its
    /// descendants'.
    pub fn stat_recursive(&self, id: MemcgId, ev: VmEvent) -> u64 {
        self.subtree(id)
            .into_iter()
            .map(|m| self.get(m).stat.get(ev))
            .sum()
    }

    /// `memory.swap.current` of `id`: slots charged to it and below, given
    /// the slots charged to each memcg itself.
    pub fn swap_current(&self, id: MemcgId, own: impl Fn(MemcgId) -> u64) -> u64 {
        self.subtree(id).into_iter().map(own).sum()
    }

    /// `mem_cgroup_calculate_protection(target, id)`: the effective
    /// `memory.min`/`memory.low` of `id` when `target` is being reclaimed,
    /// stored in `emin`/`elow`. Context: the ancestors' below `target` were
    /// computed first (a pre-order walk).
    pub fn calculate_protection(&mut self, target: MemcgId, id: MemcgId) {
        let (emin, elow) = self.effective_protection(target, id);
        let g = self.get_mut(id);
        g.emin = emin;
        g.elow = elow;
    }

    fn effective_protection(&self, target: MemcgId, id: MemcgId) -> (u64, u64) {
        // The target of reclaim and the root are never protected from it.
        if id == target || id == MemcgId::ROOT {
            return (0, 0);
        }
        let Some(parent) = self.get(id).parent else {
            return (0, 0);
        };
        let g = self.get(id);
        if parent == target {
            return (g.limits.min, g.limits.low);
        }
        let p = self.get(parent);
        let usage = g.usage;
        let share = |setting: fn(&CgroupLimits) -> u64, parent_eff: u64| {
            let protected = usage.min(setting(&g.limits));
            // The parent's protection is shared among the children by their
            // protected usage (`children_{min,low}_usage`).
            let siblings: u64 = self
                .children(parent)
                .map(|c| self.get(c).usage.min(setting(&self.get(c).limits)))
                .sum();
            if siblings > parent_eff && siblings > 0 {
                (protected as u128 * parent_eff as u128 / siblings as u128) as u64
            } else {
                protected
            }
        };
        (share(|l| l.min, p.emin), share(|l| l.low, p.elow))
    }

    fn children(&self, id: MemcgId) -> impl Iterator<Item = MemcgId> + '_ {
        (0..self.groups.len())
            .map(|k| MemcgId(k as u16))
            .filter(move |&k| self.get(k).parent == Some(id))
    }

    /// `mem_cgroup_below_min`: `id`'s usage is within its effective min.
    pub fn below_min(&self, target: MemcgId, id: MemcgId) -> bool {
        id != target && id != MemcgId::ROOT && self.get(id).emin >= self.get(id).usage
    }
    /// `mem_cgroup_below_low`.
    pub fn below_low(&self, target: MemcgId, id: MemcgId) -> bool {
        id != target && id != MemcgId::ROOT && self.get(id).elow >= self.get(id).usage
    }
    /// `mem_cgroup_protection`: (emin, elow) for `get_scan_count`'s
    /// proportional protection; none for the target itself.
    pub fn protection(&self, target: MemcgId, id: MemcgId) -> (u64, u64) {
        if id == target || id == MemcgId::ROOT {
            return (0, 0);
        }
        let g = self.get(id);
        (g.emin, g.elow)
    }

    /// `mem_cgroup_get_nr_swap_pages`: the swap `id` may still take, the
    /// least room under `memory.swap.max` up its ancestry, and no more than
    /// the free slots (`global_free`).
    pub fn nr_swap_pages(
        &self,
        id: MemcgId,
        global_free: i64,
        own: impl Fn(MemcgId) -> u64,
    ) -> i64 {
        let mut n = global_free;
        for m in self.ancestors(id).take_while(|&m| m != MemcgId::ROOT) {
            if let Some(max) = self.get(m).limits.swap_max {
                let used = self.swap_current(m, &own);
                n = n.min(max as i64 - used as i64);
            }
        }
        n
    }

    /// The effective `memory.swappiness` of `id`: its own, else the
    /// nearest ancestor's, else `vm.swappiness`.
    pub fn swappiness(&self, id: MemcgId, global: u32) -> u32 {
        self.ancestors(id)
            .find_map(|m| self.get(m).limits.swappiness)
            .unwrap_or(global)
    }
}

impl Memory {
    /// `mem_cgroup_charge` of a folio just allocated: charges it to
    /// `memcg` and records the memcg in the folio. On failure the folio is
    /// freed and the memcg over its limit is returned, for the caller to
    /// reclaim from (the kernel's `try_charge` reclaims in place; swapvm's
    /// mm cannot call reclaim, so the fault returns and retries).
    ///
    /// # Context
    /// Folio freshly allocated: not mapped, not on the LRU.
    pub fn mem_cgroup_charge(&mut self, pfn: Pfn, memcg: MemcgId) -> Result<(), MemcgId> {
        let nr = 1u64 << self.folios.get(pfn).order;
        if let Err(over) = self.memcg.try_charge(memcg, nr) {
            self.memcg.event(over, MemcgEvent::Max);
            // Never charged: freed without an uncharge.
            self.release_frame(pfn);
            return Err(over);
        }
        self.folios.get_mut(pfn).memcg = memcg.0;
        Ok(())
    }

    /// Counts `nr` of event `ev` system-wide and on memcg `memcg`
    /// (`count_memcg_events` beside `count_vm_events`).
    pub fn count_event(&self, memcg: MemcgId, ev: VmEvent, nr: u64) {
        self.stat.add(ev, nr);
        self.memcg.count(memcg, ev, nr);
    }

    /// `mem_cgroup_swapin_charge_folio`: a folio for swap-in of `entry` is
    /// charged to the memcg recorded as the slot's owner (which may not be
    /// the faulting task's; `mm` is the kernel's fallback for an owner
    /// that is gone, and swapvm's memcgs never go).
    pub fn mem_cgroup_swapin_charge_folio(
        &mut self,
        swap: &swapvm_swap::SwapSubsystem,
        pfn: Pfn,
        mm: crate::MmId,
        entry: swapvm_core::SwpEntry,
    ) -> Result<(), MemcgId> {
        let _ = mm;
        let owner = MemcgId(swap.lookup_swap_cgroup_id(entry));
        self.mem_cgroup_charge(pfn, owner)
    }

    /// A charge that reclaim will make room for after the fact: a folio
    /// read ahead is charged even over `memory.max`, and the machine runs
    /// limit reclaim for the excess before the task's turn ends (the
    /// kernel's readahead charge reclaims in place, before the folio is on
    /// the LRU; swapvm's reclaim scans from the inactive tail, so the new
    /// folio is among the last it would take).
    pub fn mem_cgroup_charge_deferred(&mut self, pfn: Pfn, memcg: MemcgId) {
        let nr = 1u64 << self.folios.get(pfn).order;
        if let Err(over) = self.memcg.try_charge(memcg, nr) {
            self.memcg.event(over, MemcgEvent::Max);
            self.memcg.force_charge(memcg, nr);
        }
        self.folios.get_mut(pfn).memcg = memcg.0;
    }

    /// The memcg folio `pfn` is charged to.
    pub fn folio_memcg(&self, pfn: Pfn) -> MemcgId {
        MemcgId(self.folios.get(pfn).memcg)
    }

    /// The memcg of address space `mm` (`get_mem_cgroup_from_mm`).
    pub fn mm_memcg(&self, mm: crate::MmId) -> MemcgId {
        self.mm(mm).memcg
    }

    /// `mem_cgroup_try_charge_swap`'s limit check for a folio about to get
    /// swap slots: false (and a `memory.swap.events` `max`) when its memcg
    /// or an ancestor is at `memory.swap.max`.
    ///
    /// swapvm checks before allocating the slots; the kernel allocates,
    /// then charges and gives the slots back on failure: the outcome (no
    /// slot, the folio stays resident) is the same, the allocator's
    /// position is not disturbed here.
    pub fn mem_cgroup_may_swap(&mut self, swap: &swapvm_swap::SwapSubsystem, pfn: Pfn) -> bool {
        let id = self.folio_memcg(pfn);
        if self.memcg.is_empty() {
            return true;
        }
        let nr = 1i64 << self.folios.get(pfn).order;
        let room = self
            .memcg
            .nr_swap_pages(id, i64::MAX, |m| swap.swap_cgroup_usage(m.0));
        if room < nr {
            let over = self
                .memcg
                .ancestors(id)
                .find(|&m| {
                    self.memcg.get(m).limits.swap_max.is_some_and(|max| {
                        self.memcg.swap_current(m, |k| swap.swap_cgroup_usage(k.0)) as i64 + nr
                            > max as i64
                    })
                })
                .unwrap_or(id);
            self.memcg.event(over, MemcgEvent::SwapMax);
            return false;
        }
        true
    }

    /// `mem_cgroup_swap_full`: the folio's memcg or an ancestor has used
    /// half its `memory.swap.max` (swap-in then frees the slot, as when all
    /// swap is half full).
    pub fn mem_cgroup_swap_full(&self, swap: &swapvm_swap::SwapSubsystem, pfn: Pfn) -> bool {
        if self.memcg.is_empty() {
            return false;
        }
        let id = self.folio_memcg(pfn);
        self.memcg
            .ancestors(id)
            .take_while(|&m| m != MemcgId::ROOT)
            .any(|m| {
                self.memcg.get(m).limits.swap_max.is_some_and(|max| {
                    2 * self.memcg.swap_current(m, |k| swap.swap_cgroup_usage(k.0)) >= max
                })
            })
    }

    /// Updates `memory.swap.peak` up `id`'s ancestry after a swap-out.
    pub fn memcg_swap_peak(&mut self, swap: &swapvm_swap::SwapSubsystem, id: MemcgId) {
        let chain: Vec<MemcgId> = self.memcg.ancestors(id).collect();
        for m in chain {
            let cur = self.memcg.swap_current(m, |k| swap.swap_cgroup_usage(k.0));
            let g = self.memcg.get_mut(m);
            g.swap_peak = g.swap_peak.max(cur);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(path: &str, parent: usize, max: Option<u64>, low: u64) -> CgroupLimits {
        CgroupLimits {
            path: path.into(),
            parent: Some(parent),
            max,
            low,
            ..CgroupLimits::root()
        }
    }

    #[test]
    fn charges_go_up_the_tree_and_stop_at_a_limit() {
        let mut c = MemCgroups::new(vec![
            CgroupLimits::root(),
            limits("/a", 0, Some(10), 0),
            limits("/a/b", 1, None, 0),
        ]);
        let b = MemcgId(2);
        assert_eq!(c.try_charge(b, 8), Ok(()));
        assert_eq!(
            (c.get(MemcgId(1)).usage, c.get(MemcgId::ROOT).usage),
            (8, 8)
        );
        assert_eq!(c.try_charge(b, 3), Err(MemcgId(1)));
        assert_eq!(c.get(b).usage, 8, "a refused charge charges nothing");
        c.uncharge(b, 8);
        assert_eq!(c.get(MemcgId(1)).peak, 8);
        assert_eq!(c.get(MemcgId(1)).usage, 0);
    }

    #[test]
    fn subtree_is_pre_order() {
        let c = MemCgroups::new(vec![
            CgroupLimits::root(),
            limits("/a", 0, None, 0),
            limits("/b", 0, None, 0),
            limits("/a/c", 1, None, 0),
        ]);
        let ids: Vec<u16> = c.subtree(MemcgId::ROOT).iter().map(|m| m.0).collect();
        assert_eq!(ids, [0, 1, 3, 2]);
    }

    #[test]
    fn nested_low_is_shared_by_protected_usage() {
        let mut c = MemCgroups::new(vec![
            CgroupLimits::root(),
            limits("/p", 0, None, 100),
            limits("/p/x", 1, None, 300),
            limits("/p/y", 1, None, 100),
        ]);
        c.try_charge(MemcgId(2), 300).expect("no max");
        c.try_charge(MemcgId(3), 100).expect("no max");
        for id in c.subtree(MemcgId::ROOT) {
            c.calculate_protection(MemcgId::ROOT, id);
        }
        assert_eq!(c.get(MemcgId(1)).elow, 100);
        // 100 of the parent's protection over 400 protected pages.
        assert_eq!((c.get(MemcgId(2)).elow, c.get(MemcgId(3)).elow), (75, 25));
        assert!(!c.below_low(MemcgId::ROOT, MemcgId(2)));
        assert!(c.below_low(MemcgId::ROOT, MemcgId(1)) == (100 >= 400));
    }

    #[test]
    fn events_count_up_to_but_not_in_the_root() {
        let mut c = MemCgroups::new(vec![
            CgroupLimits::root(),
            limits("/a", 0, None, 0),
            limits("/a/b", 1, None, 0),
        ]);
        c.event(MemcgId(2), MemcgEvent::Max);
        assert_eq!(c.get(MemcgId(2)).events_local.max, 1);
        assert_eq!(c.get(MemcgId(1)).events.max, 1);
        assert_eq!(c.get(MemcgId(1)).events_local.max, 0);
        assert_eq!(c.get(MemcgId::ROOT).events.max, 0);
    }
}
