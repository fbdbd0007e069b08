//! Event counters under the kernel's `/proc/vmstat` names.
//!
//! One [`VmStat`] is shared by every layer of a machine. Counters are relaxed
//! atomics: the emulation runs on one thread, but the handle is `Send` so
//! reports can be read from elsewhere.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! vm_events {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )*) => {
        /// A counted event; [`VmEvent::name`] is its `/proc/vmstat` name.
        #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
        #[repr(usize)]
        pub enum VmEvent { $( $(#[$doc])* $variant, )* }

        impl VmEvent {
            /// Every event, in report order.
            pub const ALL: &'static [VmEvent] = &[ $( VmEvent::$variant, )* ];
            /// The kernel's name for the event.
            pub const fn name(self) -> &'static str {
                match self { $( VmEvent::$variant => $name, )* }
            }
        }
    };
}

vm_events! {
    /// Any page fault handled.
    PgFault => "pgfault",
    /// A fault that needed I/O (swap-in from the device).
    PgMajFault => "pgmajfault",
    /// Pages read from swap.
    PswpIn => "pswpin",
    /// Pages written to swap.
    PswpOut => "pswpout",
    /// Frames allocated.
    PgAlloc => "pgalloc_normal",
    /// Frames freed.
    PgFree => "pgfree",
    /// Folios moved to the active list.
    PgActivate => "pgactivate",
    /// Folios moved to the inactive list.
    PgDeactivate => "pgdeactivate",
    /// Active-list folios scanned by the refill of the inactive list.
    PgRefill => "pgrefill",
    /// Inactive folios scanned by kswapd.
    PgScanKswapd => "pgscan_kswapd",
    /// Inactive folios scanned by direct reclaim.
    PgScanDirect => "pgscan_direct",
    /// Folios reclaimed by kswapd.
    PgStealKswapd => "pgsteal_kswapd",
    /// Folios reclaimed by direct reclaim.
    PgStealDirect => "pgsteal_direct",
    /// Anonymous folios scanned.
    PgScanAnon => "pgscan_anon",
    /// Anonymous folios reclaimed.
    PgStealAnon => "pgsteal_anon",
    /// Times a task entered direct reclaim.
    AllocStall => "allocstall_normal",
    /// Times kswapd was woken (the kernel's pageoutrun counts its loops).
    KswapdWake => "pageoutrun",
    /// Copy-on-write faults that copied.
    CowFault => "cow_fault",
    /// Swap cache hits on a swap fault.
    SwapCacheHit => "swap_cache_hit",
    /// Pages read by swap readahead.
    SwapRa => "swap_ra",
    /// Readahead pages that were used.
    SwapRaHit => "swap_ra_hit",
    /// Refaults of evicted anonymous pages.
    WorkingsetRefaultAnon => "workingset_refault_anon",
    /// Refaulted anonymous pages activated.
    WorkingsetActivateAnon => "workingset_activate_anon",
    /// Refaulted anonymous pages that were in the workingset when evicted.
    WorkingsetRestoreAnon => "workingset_restore_anon",
    /// Large folios swapped out whole.
    ThpSwpout => "thp_swpout",
    /// Large folios split because no contiguous slots existed.
    ThpSwpoutFallback => "thp_swpout_fallback",
    /// Zero-filled pages recorded without I/O.
    SwpoutZero => "swpout_zero",
    /// Zero-filled pages restored without I/O.
    SwpinZero => "swpin_zero",
    /// Swap slot allocation failures (device full).
    SwapAllocFail => "swap_alloc_fail",
    /// Processes killed by the OOM killer.
    OomKill => "oom_kill",
    /// Pages marked lazily freeable by `MADV_FREE`.
    PgLazyFree => "pglazyfree",
    /// Lazily freeable pages that reclaim dropped without swap.
    PgLazyFreed => "pglazyfreed",
    /// Copy-on-write faults that broke a KSM sharing.
    CowKsm => "cow_ksm",
    /// Anonymous faults that allocated a large folio (the sum of the
    /// per-size `hugepages-*kB/stats/anon_fault_alloc`).
    AnonFaultAlloc => "anon_fault_alloc",
    /// Anonymous faults that wanted a large folio and fell back to a
    /// smaller one (the sum of `anon_fault_fallback`).
    AnonFaultFallback => "anon_fault_fallback",
    /// Large folios split (`thp_split_page`).
    ThpSplitPage => "thp_split_page",
    /// Large folios read back whole from swap (the sum of the per-size
    /// `swpin` stats; not a /proc/vmstat name).
    ThpSwpin => "thp_swpin",
    /// Swap-ins that had to copy a swap-cache folio its rmap could not
    /// reach from this mapping (`ksm_might_need_to_copy`).
    KsmSwapinCopy => "ksm_swpin_copy",
    /// Pages loaded from the zswap pool on a swap-in (no device read).
    ZswpIn => "zswpin",
    /// Pages stored in the zswap pool on a swap-out (no device write).
    ZswpOut => "zswpout",
    /// Pages written back from the zswap pool to the swap device.
    ZswpWb => "zswpwb",
}

impl VmEvent {
    /// zswap's counters: left out of the decided figures of a run without
    /// zswap, which cannot move them.
    pub const ZSWAP: &'static [VmEvent] = &[VmEvent::ZswpIn, VmEvent::ZswpOut, VmEvent::ZswpWb];
}

/// The counters of one machine.
#[derive(Debug)]
pub struct VmStat {
    counts: Vec<AtomicU64>,
}

impl Default for VmStat {
    fn default() -> Self {
        VmStat {
            counts: VmEvent::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl VmStat {
    /// A set of zero counters.
    pub fn new() -> Self {
        Self::default()
    }
    /// `count_vm_event`.
    #[inline]
    pub fn inc(&self, ev: VmEvent) {
        self.add(ev, 1);
    }
    /// `count_vm_events`.
    #[inline]
    pub fn add(&self, ev: VmEvent, n: u64) {
        self.counts[ev as usize].fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    #[inline]
    pub fn get(&self, ev: VmEvent) -> u64 {
        self.counts[ev as usize].load(Ordering::Relaxed)
    }
    /// `(name, value)` for every event, in report order.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        VmEvent::ALL
            .iter()
            .map(|&e| (e.name(), self.get(e)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indexed_in_order() {
        let mut names: Vec<_> = VmEvent::ALL.iter().map(|e| e.name()).collect();
        for (i, e) in VmEvent::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i);
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), VmEvent::ALL.len());
    }

    #[test]
    fn counts() {
        let s = VmStat::new();
        s.inc(VmEvent::PswpOut);
        s.add(VmEvent::PswpOut, 4);
        assert_eq!(s.get(VmEvent::PswpOut), 5);
        assert_eq!(s.get(VmEvent::PswpIn), 0);
    }
}
