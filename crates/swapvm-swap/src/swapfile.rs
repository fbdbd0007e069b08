//! Swap devices and the swap-entry lifecycle (mm/swapfile.c).
//!
//! Allocation always starts from a folio: [`SwapSubsystem::folio_alloc_swap`]
//! binds fresh slots to a locked folio by adding it to the swap cache, with
//! counts at zero. Owners then take and drop references with
//! `folio_dup_swap` / `folio_put_swap` (folio locked and in the swap cache)
//! or, where there is no folio, `swap_dup_entry_direct` /
//! `swap_put_entries_direct` (caller holds the owner's lock). A slot is
//! freed when its count is zero and no folio is bound: by
//! `folio_free_swap`, by `swap_cache_del_folio`, or by a direct put that
//! drops the last reference of an uncached slot. Hibernation slots are a
//! separate, exclusive pair of routines.
//!
//! Every "Context:" rule is checked and a violation is counted in the
//! warning registry at a named [`WarnSite`]; the operation is then refused
//! rather than applied to the wrong slot.

use crate::cluster::{AllocatorKind, Clusters, NR_ORDERS, SWAPFILE_CLUSTER};
use crate::header::{self, HeaderError, SwapHeader};
use crate::page_io::PageIo;
use crate::table::{Slot, SlotBinding, SwapTable, COUNT_LIMIT};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use swapvm_core::{
    LockClass, LockGuard, Lockdep, Order, Pfn, SwapOffset, SwapType, SwpEntry, VmEvent, VmStat,
    WarnSite, Warnings,
};
use swapvm_io::{EngineConfig, FaultCounts, FaultPlan, FaultStats, FaultyEngine, IoError};

/// What the swap layer needs to see of a folio. swapvm-mm's folios
/// implement it; the swap layer never reaches further into memory.
pub trait SwapFolio {
    /// Head frame: the folio's identity in the swap cache.
    fn pfn(&self) -> Pfn;
    /// Folio order.
    fn order(&self) -> Order;
    /// `folio_test_locked`.
    fn is_locked(&self) -> bool;
    /// `folio_test_writeback`.
    fn is_writeback(&self) -> bool;
    /// `folio->swap` while the folio is in the swap cache, else `None`.
    fn swap(&self) -> Option<SwpEntry>;
    /// Sets `folio->swap` and the swap-cache flag together.
    fn set_swap(&mut self, entry: Option<SwpEntry>);
    /// The id of the memory cgroup the folio is charged to (0, the root,
    /// by default): [`SwapSubsystem::folio_alloc_swap`] records it as the
    /// owner of the slots (`swap_cgroup_record`).
    fn memcg_id(&self) -> u16 {
        0
    }
}

/// Expected failures of swap operations. Contract violations are not
/// errors: they are counted warnings (and the call is refused with
/// [`SwapError::Refused`]).
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// No device has a free run of slots for the folio's order.
    #[error("no swap space for an order-{order} folio")]
    NoSpace {
        /// The order asked for.
        order: u8,
    },
    /// Allocating a swap count continuation failed (`-ENOMEM` from
    /// `add_swap_count_continuation`); nothing was changed.
    #[error("cannot allocate a swap count continuation for {entry}")]
    NoMem {
        /// The slot.
        entry: SwpEntry,
    },
    /// The device is being swapped off and refuses new references.
    #[error("swap device {ty} is going away")]
    DeviceDying {
        /// The device.
        ty: u8,
    },
    /// The device still has users or slots in use.
    #[error("swap device {ty} is busy: {why}")]
    Busy {
        /// The device.
        ty: u8,
        /// What holds it.
        why: String,
    },
    /// The call broke a contract; the warning registry has the details.
    #[error("refused: {rule} ({func})")]
    Refused {
        /// Function.
        func: &'static str,
        /// The broken rule.
        rule: &'static str,
    },
    /// The slot is not in use (swap-in raced with a free).
    #[error("{entry} is not allocated")]
    NotAllocated {
        /// The slot.
        entry: SwpEntry,
    },
    /// Another folio is already in the swap cache for the slot.
    #[error("{entry} already has a folio in the swap cache")]
    Exists {
        /// The slot.
        entry: SwpEntry,
    },
    /// Opening the device's image failed.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The I/O engine failed.
    #[error("swap device {}: I/O engine", path.display())]
    Engine {
        /// The device.
        path: PathBuf,
        /// Cause.
        #[source]
        source: IoError,
    },
    /// All 32 swap types are in use.
    #[error("too many swap devices")]
    TooManyDevices,
    /// The device is in use elsewhere.
    #[error(transparent)]
    Claim(#[from] swapvm_io::claim::ClaimError),
}

macro_rules! site {
    ($func:literal, $rule:literal) => {
        WarnSite {
            func: $func,
            rule: $rule,
        }
    };
}

/// The contract sites of this module, public so tests can count them.
pub mod sites {
    use swapvm_core::WarnSite;
    /// `folio_alloc_swap` on an unlocked folio.
    pub const ALLOC_NOT_LOCKED: WarnSite = site!("folio_alloc_swap", "folio not locked");
    /// `folio_alloc_swap` on a folio already in the swap cache.
    pub const ALLOC_IN_CACHE: WarnSite = site!("folio_alloc_swap", "folio already in swap cache");
    /// `folio_dup_swap` / `folio_put_swap` on an unlocked folio.
    pub const FOLIO_NOT_LOCKED: WarnSite =
        site!("folio_dup_swap/folio_put_swap", "folio not locked");
    /// `folio_dup_swap` / `folio_put_swap` on a folio not in the swap cache.
    pub const FOLIO_NOT_IN_CACHE: WarnSite =
        site!("folio_dup_swap/folio_put_swap", "folio not in swap cache");
    /// The folio's entry is not aligned to its size.
    pub const ENTRY_UNALIGNED: WarnSite = site!(
        "folio_dup_swap/folio_put_swap",
        "entry not aligned to folio"
    );
    /// A slot of the folio is not bound to it.
    pub const SLOT_NOT_BOUND: WarnSite = site!(
        "folio_dup_swap/folio_put_swap",
        "slot not bound to this folio"
    );
    /// A put found the count already zero.
    pub const PUT_UNDERFLOW: WarnSite = site!(
        "folio_put_swap/swap_put_entries_direct",
        "swap count underflow"
    );
    /// A subpage index beyond the folio.
    pub const SUBPAGE_RANGE: WarnSite =
        site!("folio_dup_swap/folio_put_swap", "subpage outside folio");
    /// Direct dup on a slot with count zero.
    pub const DIRECT_DUP_ZERO: WarnSite = site!("swap_dup_entry_direct", "entry has no swap count");
    /// An entry outside any active device.
    pub const BAD_ENTRY: WarnSite = site!("swap entry", "entry outside an active device");
    /// Ordinary routine applied to a hibernation slot.
    pub const HIBERNATION_SLOT: WarnSite =
        site!("swap entry", "ordinary routine on a hibernation slot");
    /// Direct put range crosses a cluster.
    pub const PUT_CROSSES_CLUSTER: WarnSite =
        site!("swap_put_entries_direct", "range crosses a cluster");
    /// `folio_free_swap` / `swap_cache_del_folio` context violations.
    pub const FREE_NOT_LOCKED: WarnSite =
        site!("folio_free_swap/swap_cache_del_folio", "folio not locked");
    /// `swap_cache_del_folio` on a folio under writeback.
    pub const DEL_WRITEBACK: WarnSite = site!("swap_cache_del_folio", "folio under writeback");
    /// `swap_cache_add_folio` context violations.
    pub const ADD_NOT_LOCKED: WarnSite = site!("swap_cache_add_folio", "folio not locked");
    /// Freeing a hibernation slot that is not one.
    pub const HIB_FREE_NOT_HIB: WarnSite = site!(
        "swap_free_hibernation_slot",
        "slot not owned by hibernation"
    );
    /// A per-slot state read without the slot's cluster lock.
    pub const SLOT_READ_UNLOCKED: WarnSite = site!("swap_entry_swapped", "cluster lock not held");
    /// A direct dup or put without the owner's lock (page-table or mapping).
    pub const DIRECT_OWNER_UNLOCKED: WarnSite = site!(
        "swap_dup_entry_direct/swap_put_entries_direct",
        "owner's lock (page-table or mapping lock) not held"
    );
    /// A hibernation slot still swapped after its free.
    pub const HIB_FREE_STILL_SWAPPED: WarnSite = site!(
        "swap_free_hibernation_slot",
        "slot still swapped after free"
    );
}
use sites::*;

/// Options for enabling a device (`swapon`).
#[derive(Debug, Clone, Default)]
pub struct SwapOnOptions {
    /// The image file or block device.
    pub path: PathBuf,
    /// Priority: higher first.
    pub priority: i32,
    /// io_uring engine settings.
    pub engine: EngineConfig,
    /// Allocator design.
    pub allocator: AllocatorKind,
    /// A rotational device: one global cluster instead of per-CPU ones
    /// (the kernel's `!SWP_SOLIDSTATE`).
    pub rotational: bool,
    /// Discard freed clusters (punch holes in an image file; `swapon -d`).
    pub discard: bool,
    /// Fault injection: wrap the device's engine in a
    /// [`swapvm_io::FaultyEngine`] with this plan.
    pub fault: Option<FaultPlan>,
    /// Never merge adjacent writes (the block queue's `nomerges`).
    pub nomerges: bool,
    /// Reads complete in the submitting context (`SWP_SYNCHRONOUS_IO`, as
    /// zram's do): the fault may swap a large folio in whole.
    pub synchronous_io: bool,
}

/// Per-order allocation figures (the mTHP `swpout` / `swpout_fallback`
/// sysfs counters are built on these).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderStats {
    /// Successful `folio_alloc_swap` of this order.
    pub alloc: u64,
    /// Failed ones (no aligned run on any device).
    pub alloc_fail: u64,
}

/// One active swap device (`struct swap_info_struct`).
#[derive(Debug)]
pub struct SwapInfo {
    /// Its type.
    pub ty: SwapType,
    /// Priority.
    pub priority: i32,
    /// The image.
    pub path: PathBuf,
    /// The on-disk header read at swapon.
    pub header: SwapHeader,
    table: SwapTable,
    clusters: Clusters,
    /// Usable slots (`si->pages`).
    pub pages: u64,
    /// Slots allocated (`si->inuse_pages`).
    pub inuse_pages: u64,
    /// Swap counts above the per-slot maximum (`add_swap_count_continuation`
    /// pages): slot → excess over the maximum.
    cont: BTreeMap<u64, u32>,
    /// The kernel's `swap_cgroup` map: each slot's owning memcg id, 0 for
    /// the root. Empty until a slot is first charged to another memcg, so
    /// that a machine without cgroups pays nothing.
    swap_cgroup: Vec<u16>,
    /// References taken by [`SwapSubsystem::get_swap_device`] and not put.
    pub users: u32,
    /// swapoff has begun: no new references or allocations.
    pub dying: bool,
    /// The image opened for discards (hole punching), when enabled.
    discard: Option<std::fs::File>,
    /// The exclusive claim on the image or block device (none for memory
    /// devices), held until swapoff.
    claim: Option<swapvm_io::claim::DeviceClaim>,
    /// Clusters discarded.
    pub discards: u64,
    /// Rotational (`!SWP_SOLIDSTATE`): counted in `nr_rotate_swap` while
    /// swapped on.
    pub rotational: bool,
    /// `SWP_SYNCHRONOUS_IO`.
    pub synchronous_io: bool,
}

impl SwapInfo {
    /// Slots in the table, header included (`si->max`).
    pub fn max(&self) -> u64 {
        self.table.len()
    }
    /// Decoded state of slot `off`.
    pub fn slot(&self, off: SwapOffset) -> Slot {
        self.table.get(off.0)
    }
    /// Host bytes of the device's per-slot metadata (footprint.rs).
    pub fn footprint(&self) -> crate::footprint::SwapFootprint {
        let cgroup = self.swap_cgroup.capacity() * std::mem::size_of::<u16>();
        crate::footprint::SwapFootprint {
            slots: self.table.len(),
            table_bytes: self.table.host_bytes(),
            cluster_bytes: self.clusters.host_bytes(),
            swap_cgroup_bytes: cgroup as u64,
            device_bytes: 0,
        }
    }
    /// The cluster allocator, read-only (reports).
    pub fn clusters_ref(&self) -> &Clusters {
        &self.clusters
    }
    /// The cluster allocator (for reports and checks).
    pub fn clusters(&mut self) -> &mut Clusters {
        &mut self.clusters
    }
    fn valid(&self, off: u64) -> bool {
        off > 0 && off < self.table.len()
    }
    /// Full swap count of slot `i`, continuation included.
    fn count(&self, i: u64) -> u32 {
        u32::from(self.table.count(i)) + self.cont.get(&i).copied().unwrap_or(0)
    }
    /// True if +1 on slot `i` needs a new continuation.
    fn needs_cont(&self, i: u64, max: u16) -> bool {
        self.table.count(i) >= max && !self.cont.contains_key(&i)
    }
    /// +1 on slot `i`; past `max` the excess goes to the continuation.
    fn inc(&mut self, i: u64, max: u16) {
        let c = self.table.count(i);
        if c < max {
            self.table.set_count(i, c + 1);
        } else {
            *self.cont.entry(i).or_default() += 1;
        }
    }
    /// −1 on slot `i` (the continuation first). Context: count > 0.
    fn dec(&mut self, i: u64) {
        if let Some(c) = self.cont.get_mut(&i) {
            *c -= 1;
            if *c == 0 {
                self.cont.remove(&i);
            }
        } else {
            let c = self.table.count(i);
            self.table.set_count(i, c - 1);
        }
    }
    /// Slots whose count uses a continuation.
    pub fn continued_slots(&self) -> usize {
        self.cont.len()
    }
}

/// Result of a direct put: folios whose slots dropped to count zero while
/// still in the swap cache. The caller tries to reclaim them
/// (`__try_to_reclaim_swap`); until it does, the cache pins the slots.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PutDirect {
    /// Slots freed outright.
    pub freed: u32,
    /// Swap-cache folios now unreferenced by swap owners.
    pub cached: Vec<Pfn>,
}

/// A reference on a swap device from [`SwapSubsystem::get_swap_device`];
/// give it back with [`SwapSubsystem::put_swap_device`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a swap device reference must be put with put_swap_device"]
pub struct SwapDeviceRef {
    /// The device.
    pub ty: SwapType,
}

/// All swap devices of a machine and the global counters.
#[derive(Debug)]
pub struct SwapSubsystem {
    devices: Vec<Option<SwapInfo>>,
    /// Device types in allocation order: priority descending.
    avail: Vec<SwapType>,
    nr_swap_pages: i64,
    total_swap_pages: u64,
    /// Rotational devices swapped on (`nr_rotate_swap`): while any is,
    /// swap-in reads ahead by swap offset, never by address.
    nr_rotate_swap: u32,
    pub(crate) stat: Arc<VmStat>,
    pub(crate) warn: Arc<Warnings>,
    pub(crate) io: PageIo,
    cpus: usize,
    /// Per-slot count maximum before a continuation (the kernel's
    /// `SWAP_MAP_MAX`, 0x3e).
    count_max: u16,
    /// Fault injection: fail this many next continuation allocations.
    fail_cont_alloc: u32,
    order_stats: [OrderStats; NR_ORDERS],
    /// Slots charged to each memcg id other than the root (the owners the
    /// devices' `swap_cgroup` maps record), for `memory.swap.current`.
    swap_cgroup_usage: Vec<u64>,
    /// Of those slots, per owner id (the root's at 0), the ones bound to a
    /// folio in the swap cache: the page is also in memory (cgroup v1's
    /// memsw counts it once, as memory).
    swap_cgroup_cached: Vec<u64>,
    /// Switches that re-introduce bugs the seed review found (off by
    /// default), for regression tests of the checker.
    pub bugs: SeedBugs,
    /// Per device type: the fault-injecting engine's counts, if it has one.
    fault_stats: Vec<Option<Arc<FaultStats>>>,
    /// Held-state of the locks the contracts name (see swapvm-core's
    /// lockdep); shared with the memory layer, which takes the page-table
    /// locks.
    locks: Arc<Lockdep>,
    /// The zswap pool, when zswap is on (see [`crate::zswap`]).
    pub(crate) zswap: Option<crate::zswap::Zswap>,
}

/// Bugs found in review of the swap-entry API patch, each re-introducible
/// so tests and users can see the checker catch it. All off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeedBugs {
    /// `free_all_swap_pages` walks each extent with an exclusive end,
    /// leaking the last slot of every extent.
    pub hib_free_exclusive_end: bool,
    /// `swap_alloc_hibernation_slot` lowers `nr_swap_pages` a second time
    /// after the allocator already did.
    pub hib_alloc_double_dec: bool,
    /// `swap_free_hibernation_slot` checks that the slot is no longer
    /// swapped (`swap_entry_swapped`) after dropping the cluster lock: a
    /// slot-state read without the lock, which the lock checks catch.
    pub slot_check_unlocked: bool,
    /// swapoff's `unuse_pte`, when `ksm_might_need_to_copy` gave it a
    /// private copy, puts the swap reference on the copy (not in the swap
    /// cache, no entry) instead of on the swap-cache folio: the put is
    /// refused and the slot keeps a count nobody owns.
    pub swapoff_put_on_ksm_copy: bool,
    /// Freeing a swap slot forgets to drop its zswap entry
    /// (`zswap_invalidate` missing from `swap_range_free`): a later owner
    /// of the slot can load the stale copy.
    pub zswap_keep_on_free: bool,
}

/// The kernel's per-slot count maximum in `swap_map` (`SWAP_MAP_MAX`).
pub const SWAP_MAP_MAX: u16 = 0x3e;

impl SwapSubsystem {
    /// A machine with no swap device yet.
    pub fn new(stat: Arc<VmStat>, warn: Arc<Warnings>, cpus: usize, io_latency_ticks: u64) -> Self {
        SwapSubsystem {
            devices: Vec::new(),
            avail: Vec::new(),
            nr_swap_pages: 0,
            total_swap_pages: 0,
            nr_rotate_swap: 0,
            stat,
            io: PageIo::new(io_latency_ticks),
            cpus: cpus.max(1),
            count_max: SWAP_MAP_MAX,
            fail_cont_alloc: 0,
            order_stats: [OrderStats::default(); NR_ORDERS],
            swap_cgroup_usage: Vec::new(),
            swap_cgroup_cached: Vec::new(),
            bugs: SeedBugs::default(),
            fault_stats: Vec::new(),
            locks: Lockdep::new(Arc::clone(&warn)),
            warn,
            zswap: None,
        }
    }

    /// Enables the swap image at `opts.path` (`swapon`): reads and checks
    /// its header and opens its io_uring engine.
    pub fn swapon(&mut self, opts: &SwapOnOptions) -> Result<SwapType, SwapError> {
        // Claimed before the header is read, so no one else writes it
        // while this machine uses it.
        let claim = swapvm_io::claim::DeviceClaim::take(&opts.path)?;
        let header = header::read_header(&opts.path)?;
        let engine = swapvm_io::open_uring(&opts.path, &opts.engine).map_err(|source| {
            SwapError::Engine {
                path: opts.path.clone(),
                source,
            }
        })?;
        let ty = self.swapon_with(opts, header, engine, true)?;
        if let Some(d) = self.devices[ty.0 as usize].as_mut() {
            d.claim = Some(claim);
        }
        Ok(ty)
    }

    /// Enables a device whose header and engine the caller provides (a
    /// memory device such as zram, which has no image file to read).
    pub fn swapon_engine(
        &mut self,
        opts: &SwapOnOptions,
        header: SwapHeader,
        engine: Box<dyn swapvm_io::BlockEngine>,
    ) -> Result<SwapType, SwapError> {
        self.swapon_with(opts, header, engine, false)
    }

    /// `merge`: the engine is an image file's, whose adjacent writes may be
    /// plugged and merged (never with a fault plan: faults act per request).
    fn swapon_with(
        &mut self,
        opts: &SwapOnOptions,
        header: SwapHeader,
        engine: Box<dyn swapvm_io::BlockEngine>,
        merge: bool,
    ) -> Result<SwapType, SwapError> {
        let ty_idx = match self.devices.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.devices.len() < SwapType::MAX as usize => {
                self.devices.push(None);
                self.devices.len() - 1
            }
            None => return Err(SwapError::TooManyDevices),
        };
        let ty = SwapType(ty_idx as u8);
        let engine = self.wrap_faulty(ty, opts, engine);
        let mut info = Self::make_info(ty, opts, header, self.cpus);
        if opts.discard && std::fs::metadata(&opts.path).is_ok_and(|m| m.is_file()) {
            info.discard = std::fs::OpenOptions::new()
                .write(true)
                .open(&opts.path)
                .ok();
        }
        self.nr_swap_pages += info.pages as i64;
        self.total_swap_pages += info.pages;
        self.nr_rotate_swap += u32::from(info.rotational);
        self.devices[ty_idx] = Some(info);
        let faulty = opts.fault.as_ref().is_some_and(|p| p.any());
        self.io
            .attach(ty, engine, merge && !faulty && !opts.nomerges);
        self.avail.push(ty);
        let devices = &self.devices;
        self.avail.sort_by_key(|t| {
            std::cmp::Reverse(
                devices[t.0 as usize]
                    .as_ref()
                    .map_or(i32::MIN, |d| d.priority),
            )
        });
        tracing::info!(path = %opts.path.display(), ty = ty.0, "swapon");
        Ok(ty)
    }

    /// The lock held-state (lockdep) of this machine.
    pub fn lockdep(&self) -> &Arc<Lockdep> {
        &self.locks
    }

    /// `swap_cluster_lock`: takes the lock of the cluster holding `entry`;
    /// dropping the guard is `swap_cluster_unlock`.
    #[track_caller]
    pub fn swap_cluster_lock(&self, entry: SwpEntry) -> LockGuard {
        self.locks.lock(LockClass::SwapCluster {
            ty: entry.ty().0,
            cluster: entry.offset().0 / SWAPFILE_CLUSTER,
        })
    }

    /// `swap_entry_swapped`: true if `entry` still has a swap count (an
    /// owner holds it), the "is this slot still swapped" check.
    ///
    /// # Context
    /// Caller holds the cluster lock of `entry` ([`Self::swap_cluster_lock`]):
    /// without it the count may change under the reader. A call without it
    /// is counted at [`sites::SLOT_READ_UNLOCKED`] with the caller's
    /// location, and still answers.
    #[track_caller]
    pub fn swap_entry_swapped(&self, entry: SwpEntry) -> bool {
        let class = LockClass::SwapCluster {
            ty: entry.ty().0,
            cluster: entry.offset().0 / SWAPFILE_CLUSTER,
        };
        self.locks
            .assert_held(self.locks.is_held(class), SLOT_READ_UNLOCKED, || {
                format!("{entry:?} read without {class:?}")
            });
        self.swap_count(entry) > 0
    }

    /// Checks the owner's-lock context of the direct helpers.
    #[track_caller]
    fn assert_owner_locked(&self, entry: SwpEntry, func: &str) {
        let held = self
            .locks
            .any_held(|c| matches!(c, LockClass::PageTable { .. } | LockClass::Mapping { .. }));
        self.locks.assert_held(held, DIRECT_OWNER_UNLOCKED, || {
            format!("{func}({entry:?}) without a page-table or mapping lock")
        });
    }

    /// Wraps `engine` in a fault-injecting engine if `opts` asks for one,
    /// and keeps its counts for [`Self::fault_counts`].
    fn wrap_faulty(
        &mut self,
        ty: SwapType,
        opts: &SwapOnOptions,
        engine: Box<dyn swapvm_io::BlockEngine>,
    ) -> Box<dyn swapvm_io::BlockEngine> {
        let i = ty.0 as usize;
        if self.fault_stats.len() <= i {
            self.fault_stats.resize(i + 1, None);
        }
        match &opts.fault {
            Some(plan) if plan.any() => {
                let f = FaultyEngine::new(engine, plan.clone());
                self.fault_stats[i] = Some(f.stats());
                Box::new(f)
            }
            _ => {
                self.fault_stats[i] = None;
                engine
            }
        }
    }

    /// The listed error slots of device `ty`'s fault plan that a request
    /// reached so far (none without a plan).
    pub fn fault_blocks_hit(&self, ty: SwapType) -> swapvm_io::BlocksHit {
        self.fault_stats
            .get(ty.0 as usize)
            .and_then(Option::as_ref)
            .map_or_else(swapvm_io::BlocksHit::default, |s| s.blocks_hit())
    }

    /// Faults injected on device `ty` so far (zero without a fault plan).
    pub fn fault_counts(&self, ty: SwapType) -> FaultCounts {
        self.fault_stats
            .get(ty.0 as usize)
            .and_then(Option::as_ref)
            .map_or_else(FaultCounts::default, |s| s.snapshot())
    }

    fn make_info(ty: SwapType, opts: &SwapOnOptions, header: SwapHeader, cpus: usize) -> SwapInfo {
        let nr = header.nr_slots();
        let mut table = SwapTable::new(nr);
        table.set_bad(0);
        let mut bad = 1;
        for &b in &header.badpages {
            if u64::from(b) < nr && !table.get(u64::from(b)).is_bad() {
                table.set_bad(u64::from(b));
                bad += 1;
            }
        }
        let cpus = if opts.rotational { 1 } else { cpus };
        let clusters = Clusters::new(&table, cpus, opts.allocator);
        SwapInfo {
            ty,
            priority: opts.priority,
            path: opts.path.clone(),
            header,
            table,
            clusters,
            pages: nr - bad,
            inuse_pages: 0,
            cont: BTreeMap::new(),
            swap_cgroup: Vec::new(),
            users: 0,
            dying: false,
            discard: None,
            claim: None,
            discards: 0,
            rotational: opts.rotational,
            synchronous_io: opts.synchronous_io,
        }
    }

    /// Sets the per-slot count maximum (1 ..= [`COUNT_LIMIT`]); counts above
    /// it live in continuations. Lower it to exercise the continuation path.
    pub fn set_count_max(&mut self, max: u16) {
        self.count_max = max.clamp(1, COUNT_LIMIT);
    }
    /// The per-slot count maximum.
    pub fn count_max(&self) -> u16 {
        self.count_max
    }
    /// Fault injection: the next `n` continuation allocations fail with
    /// `-ENOMEM` ([`SwapError::NoMem`]).
    pub fn inject_continuation_enomem(&mut self, n: u32) {
        self.fail_cont_alloc = n;
    }
    /// Takes one injected continuation failure, if any is armed.
    fn cont_alloc_fails(&mut self) -> bool {
        if self.fail_cont_alloc > 0 {
            self.fail_cont_alloc -= 1;
            true
        } else {
            false
        }
    }

    /// Free slots, all devices (`get_nr_swap_pages`).
    pub fn nr_swap_pages(&self) -> i64 {
        self.nr_swap_pages
    }
    /// Usable slots, all devices.
    pub fn total_swap_pages(&self) -> u64 {
        self.total_swap_pages
    }
    /// Rotational devices swapped on (`nr_rotate_swap`).
    pub fn nr_rotate_swap(&self) -> u32 {
        self.nr_rotate_swap
    }
    /// True when more than half of swap is in use (`vm_swap_full`).
    pub fn vm_swap_full(&self) -> bool {
        self.nr_swap_pages * 2 < self.total_swap_pages as i64
    }
    /// The device of type `ty`, if active.
    pub fn device(&self, ty: SwapType) -> Option<&SwapInfo> {
        self.devices.get(ty.0 as usize)?.as_ref()
    }
    /// The device of type `ty`, if active, mutably (reports, checker).
    pub fn device_mut(&mut self, ty: SwapType) -> Option<&mut SwapInfo> {
        self.devices.get_mut(ty.0 as usize)?.as_mut()
    }
    /// Active device types in allocation order.
    pub fn device_types(&self) -> &[SwapType] {
        &self.avail
    }
    /// The shared counters.
    pub fn stat(&self) -> &Arc<VmStat> {
        &self.stat
    }
    /// The shared warning registry.
    pub fn warnings(&self) -> &Arc<Warnings> {
        &self.warn
    }

    /// Decoded slot of `entry`, if it names a slot of an active device.
    pub fn slot(&self, entry: SwpEntry) -> Option<Slot> {
        let d = self.device(entry.ty())?;
        d.valid(entry.offset().0)
            .then(|| d.table.get(entry.offset().0))
    }

    /// Swap count of `entry` (`swp_swapcount`), continuation included; 0
    /// for an invalid entry or a bad slot.
    pub fn swap_count(&self, entry: SwpEntry) -> u32 {
        let Some(d) = self.device(entry.ty()) else {
            return 0;
        };
        let off = entry.offset().0;
        if !d.valid(off) || d.table.get(off).is_bad() {
            return 0;
        }
        d.count(off)
    }

    fn dev_for(&mut self, entry: SwpEntry, nr: u64) -> Option<&mut SwapInfo> {
        let ok = self
            .device(entry.ty())
            .is_some_and(|d| d.valid(entry.offset().0) && d.valid(entry.offset().0 + nr - 1));
        if self
            .warn
            .warn_on(!ok, BAD_ENTRY, || format!("{entry:?} (+{nr})"))
        {
            return None;
        }
        self.device_mut(entry.ty())
    }

    /// Frees `nr` slots at `off`: count zero, nothing bound
    /// (`swap_entries_free` → `swap_range_free`).
    fn free_slots(&mut self, ty: SwapType, off: u64, nr: u64) {
        let Some(d) = self.devices.get_mut(ty.0 as usize).and_then(Option::as_mut) else {
            return;
        };
        for i in off..off + nr {
            d.table.clear(i);
        }
        // zswap_invalidate: a freed slot's compressed copy goes with it.
        let keep = self.bugs.zswap_keep_on_free;
        if let Some(z) = self.zswap.as_mut().filter(|_| !keep) {
            for e in (off..off + nr).filter_map(|i| SwpEntry::new(ty, SwapOffset(i))) {
                z.invalidate(e);
            }
        }
        // mem_cgroup_uncharge_swap: the owner's swap charge ends with the slot.
        if let Some(ids) = d.swap_cgroup.get_mut(off as usize..(off + nr) as usize) {
            for id in ids.iter_mut().filter(|id| **id != 0) {
                if let Some(u) = self.swap_cgroup_usage.get_mut(usize::from(*id)) {
                    *u -= 1;
                }
                *id = 0;
            }
        }
        d.clusters.free(off, nr);
        d.inuse_pages -= nr;
        let ci = (off / SWAPFILE_CLUSTER) as usize;
        if d.clusters.info(ci).count == 0 {
            if let Some(f) = &d.discard {
                // A wholly free cluster has no I/O in flight: every slot
                // left the swap cache, and writeback holds the cache.
                let len = SWAPFILE_CLUSTER * swapvm_core::PAGE_SIZE as u64;
                let flags =
                    rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
                if rustix::fs::fallocate(f, flags, ci as u64 * len, len).is_ok() {
                    d.discards += 1;
                }
            }
        }
        self.nr_swap_pages += nr as i64;
    }

    /// Records a violation of `site` when `cond` holds, and refuses the call.
    fn refuse_if(
        &self,
        cond: bool,
        site: WarnSite,
        msg: impl FnOnce() -> String,
    ) -> Result<(), SwapError> {
        if self.warn.warn_on(cond, site, msg) {
            return Err(SwapError::Refused {
                func: site.func,
                rule: site.rule,
            });
        }
        Ok(())
    }

    /// Context of the routines that put a folio into the swap cache: it is
    /// locked (else `not_locked` fires) and not in the swap cache yet.
    #[track_caller]
    fn check_new_cache_folio(
        &self,
        folio: &impl SwapFolio,
        not_locked: WarnSite,
    ) -> Result<(), SwapError> {
        let pfn = folio.pfn();
        let at = std::panic::Location::caller();
        self.refuse_if(!folio.is_locked(), not_locked, || {
            format!("{pfn:?} (called from {at})")
        })?;
        self.refuse_if(folio.swap().is_some(), ALLOC_IN_CACHE, || {
            format!("{pfn:?}")
        })
    }

    // ---- folio-based lifecycle -------------------------------------------

    /// `folio_alloc_swap`: allocates `1 << order` contiguous, aligned slots
    /// in one cluster and binds them to `folio` by adding it to the swap
    /// cache. Counts start at zero.
    ///
    /// # Context
    /// Folio locked and not in the swap cache.
    ///
    /// # Errors
    /// [`SwapError::NoSpace`] when no device has room for the order (the
    /// caller splits a large folio and retries, or keeps it in memory).
    #[track_caller]
    pub fn folio_alloc_swap(
        &mut self,
        folio: &mut impl SwapFolio,
        cpu: usize,
    ) -> Result<SwpEntry, SwapError> {
        let pfn = folio.pfn();
        self.check_new_cache_folio(folio, ALLOC_NOT_LOCKED)?;
        let order = folio.order().get();
        let nr = 1u64 << order;
        for i in 0..self.avail.len() {
            let ty = self.avail[i];
            let Some(d) = self.devices[ty.0 as usize].as_mut() else {
                continue;
            };
            if d.dying {
                continue;
            }
            let Some(off) = d.clusters.alloc(&d.table, order, cpu) else {
                continue;
            };
            self.rotate_same_priority(i);
            self.order_stats[order as usize].alloc += 1;
            let Some(d) = self.devices[ty.0 as usize].as_mut() else {
                continue;
            };
            for s in off..off + nr {
                debug_assert!(d.table.get(s).is_free());
                d.table.clear(s);
                d.table.set_binding(s, SlotBinding::Folio(pfn));
            }
            d.inuse_pages += nr;
            self.nr_swap_pages -= nr as i64;
            let id = folio.memcg_id();
            if id != 0 {
                Self::swap_cgroup_record(d, &mut self.swap_cgroup_usage, off, nr, id);
            }
            let entry = SwpEntry::new(ty, SwapOffset(off)).expect("allocated offsets are non-zero");
            folio.set_swap(Some(entry));
            self.swap_cgroup_cache(entry, nr, true);
            return Ok(entry);
        }
        self.stat.inc(VmEvent::SwapAllocFail);
        self.order_stats[order as usize].alloc_fail += 1;
        Err(SwapError::NoSpace { order })
    }

    /// `swap_cgroup_record`: slots `off..off + nr` of `d` are charged to
    /// memcg `id` (not the root).
    fn swap_cgroup_record(d: &mut SwapInfo, usage: &mut Vec<u64>, off: u64, nr: u64, id: u16) {
        if d.swap_cgroup.is_empty() {
            d.swap_cgroup = vec![0; d.table.len() as usize];
        }
        if usage.len() <= usize::from(id) {
            usage.resize(usize::from(id) + 1, 0);
        }
        for s in &mut d.swap_cgroup[off as usize..(off + nr) as usize] {
            *s = id;
        }
        usage[usize::from(id)] += nr;
    }

    /// `lookup_swap_cgroup_id`: the memcg id that owns `entry`'s slot (0,
    /// the root, for a slot no other memcg was charged for).
    pub fn lookup_swap_cgroup_id(&self, entry: SwpEntry) -> u16 {
        self.device(entry.ty())
            .and_then(|d| d.swap_cgroup.get(entry.offset().0 as usize))
            .copied()
            .unwrap_or(0)
    }

    /// Slots charged to memcg `id` itself (not its descendants); for the
    /// root, the slots no other memcg owns.
    pub fn swap_cgroup_usage(&self, id: u16) -> u64 {
        if id != 0 {
            return self
                .swap_cgroup_usage
                .get(usize::from(id))
                .copied()
                .unwrap_or(0);
        }
        let others: u64 = self.swap_cgroup_usage.iter().sum();
        let used = self.total_swap_pages as i64 - self.nr_swap_pages;
        (used.max(0) as u64).saturating_sub(others)
    }

    /// Slots charged to memcg `id` itself (the root: no other memcg) whose
    /// page is in the swap cache too.
    pub fn swap_cgroup_cached(&self, id: u16) -> u64 {
        self.swap_cgroup_cached
            .get(usize::from(id))
            .copied()
            .unwrap_or(0)
    }

    /// Counts the `nr` slots at `entry` in (`bind`) or out of the swap
    /// cache, each for the memcg that owns it.
    /// Context: the slots' owners are recorded and not yet cleared.
    fn swap_cgroup_cache(&mut self, entry: SwpEntry, nr: u64, bind: bool) {
        for i in 0..nr {
            let id = usize::from(self.lookup_swap_cgroup_id(entry.add(i)));
            if self.swap_cgroup_cached.len() <= id {
                self.swap_cgroup_cached.resize(id + 1, 0);
            }
            let c = &mut self.swap_cgroup_cached[id];
            *c = if bind { *c + 1 } else { c.saturating_sub(1) };
        }
    }

    /// Moves the device at `avail[i]` behind the others of its priority,
    /// so equal priorities share allocations round robin (the kernel
    /// requeues on `swap_avail_head`).
    fn rotate_same_priority(&mut self, i: usize) {
        let prio = |t: SwapType, devs: &Vec<Option<SwapInfo>>| {
            devs[t.0 as usize].as_ref().map_or(i32::MIN, |d| d.priority)
        };
        let p = prio(self.avail[i], &self.devices);
        let end = (i..self.avail.len())
            .take_while(|&j| prio(self.avail[j], &self.devices) == p)
            .last()
            .map_or(i, |j| j + 1);
        if end > i + 1 {
            self.avail[i..end].rotate_left(1);
        }
    }

    /// Per-order allocation figures.
    pub fn order_stats(&self) -> &[OrderStats; NR_ORDERS] {
        &self.order_stats
    }

    // ---- device references (get_swap_device / put_swap_device) -------------

    /// `get_swap_device`: pins the device of `entry` against swapoff.
    /// `None` for an invalid entry or a device being swapped off.
    #[must_use]
    pub fn get_swap_device(&mut self, entry: SwpEntry) -> Option<SwapDeviceRef> {
        let d = self.device_mut(entry.ty())?;
        if d.dying || !d.valid(entry.offset().0) {
            return None;
        }
        d.users += 1;
        Some(SwapDeviceRef { ty: entry.ty() })
    }

    /// `put_swap_device`: drops a reference from [`Self::get_swap_device`].
    pub fn put_swap_device(&mut self, r: SwapDeviceRef) {
        if let Some(d) = self.device_mut(r.ty) {
            d.users = d.users.saturating_sub(1);
        }
    }

    /// Starts swapoff of `ty`: the device takes no new references or
    /// allocations from now on. Slots in use stay valid until
    /// [`Self::swapoff_finish`].
    pub fn swapoff_begin(&mut self, ty: SwapType) -> Result<(), SwapError> {
        let d = self
            .device_mut(ty)
            .ok_or(SwapError::DeviceDying { ty: ty.0 })?;
        d.dying = true;
        Ok(())
    }

    /// Finishes swapoff: removes the device once no slot is in use and no
    /// reference is held. On `Busy` the device stays, still dying; call
    /// [`Self::swapoff_abort`] to put it back in service.
    pub fn swapoff_finish(&mut self, ty: SwapType) -> Result<(), SwapError> {
        let d = self.device(ty).ok_or(SwapError::DeviceDying { ty: ty.0 })?;
        if d.users > 0 || d.inuse_pages > 0 {
            return Err(SwapError::Busy {
                ty: ty.0,
                why: format!(
                    "{} references held, {} slots in use",
                    d.users, d.inuse_pages
                ),
            });
        }
        let pages = d.pages;
        // Only a finished swapoff drops the count (a failed one keeps the
        // device, rotational still), as the kernel's does after unuse.
        self.nr_rotate_swap -= u32::from(d.rotational);
        self.devices[ty.0 as usize] = None;
        self.avail.retain(|&t| t != ty);
        self.io.detach(ty);
        self.nr_swap_pages -= pages as i64;
        self.total_swap_pages -= pages;
        Ok(())
    }

    /// Puts a dying device back in service (swapoff failed).
    pub fn swapoff_abort(&mut self, ty: SwapType) {
        if let Some(d) = self.device_mut(ty) {
            d.dying = false;
        }
    }

    /// Checks the folio-helper context and returns the slot range.
    #[track_caller]
    fn folio_range(
        &self,
        folio: &impl SwapFolio,
        subpage: Option<u32>,
    ) -> Result<(SwpEntry, u64), SwapError> {
        let pfn = folio.pfn();
        let w = &self.warn;
        let refuse = |s: WarnSite| {
            Err(SwapError::Refused {
                func: s.func,
                rule: s.rule,
            })
        };
        let at = std::panic::Location::caller();
        if w.warn_on(!folio.is_locked(), FOLIO_NOT_LOCKED, || {
            format!("{pfn:?} (called from {at})")
        }) {
            return refuse(FOLIO_NOT_LOCKED);
        }
        let Some(entry) = folio.swap() else {
            w.warn_on(true, FOLIO_NOT_IN_CACHE, || {
                format!("{pfn:?} (called from {at})")
            });
            return refuse(FOLIO_NOT_IN_CACHE);
        };
        let nr = u64::from(folio.order().nr_pages());
        if w.warn_on(entry.offset().0 % nr != 0, ENTRY_UNALIGNED, || {
            format!("{pfn:?} {entry:?} nr {nr}")
        }) {
            return refuse(ENTRY_UNALIGNED);
        }
        match subpage {
            Some(i) if u64::from(i) >= nr => {
                w.warn_on(true, SUBPAGE_RANGE, || {
                    format!("{pfn:?} subpage {i} of {nr}")
                });
                refuse(SUBPAGE_RANGE)
            }
            Some(i) => Ok((entry.add(u64::from(i)), 1)),
            None => Ok((entry, nr)),
        }
    }

    fn check_bound(&self, entry: SwpEntry, nr: u64, pfn: Pfn) -> Result<(), SwapError> {
        let bound = (0..nr).all(|i| {
            self.slot(entry.add(i))
                .is_some_and(|s| s.binding == SlotBinding::Folio(pfn))
        });
        if self.warn.warn_on(!bound, SLOT_NOT_BOUND, || {
            format!("{pfn:?} {entry:?} nr {nr}")
        }) {
            return Err(SwapError::Refused {
                func: SLOT_NOT_BOUND.func,
                rule: SLOT_NOT_BOUND.rule,
            });
        }
        Ok(())
    }

    /// `folio_dup_swap`: +1 on the folio's slots, or on one subpage's slot.
    ///
    /// # Context
    /// Folio locked and in the swap cache; the caller holds the lock of the
    /// new owner (the page-table lock for a swap PTE).
    ///
    /// # Errors
    /// [`SwapError::NoMem`] if a count needed a continuation and its
    /// allocation failed (nothing is changed); [`SwapError::Refused`] on a
    /// contract violation.
    #[track_caller]
    pub fn folio_dup_swap(
        &mut self,
        folio: &impl SwapFolio,
        subpage: Option<u32>,
    ) -> Result<(), SwapError> {
        let (entry, nr) = self.folio_range(folio, subpage)?;
        self.check_bound(entry, nr, folio.pfn())?;
        let off = entry.offset().0;
        let max = self.count_max;
        let needs = (off..off + nr).find(|&i| {
            self.device(entry.ty())
                .is_some_and(|d| d.needs_cont(i, max))
        });
        if let Some(i) = needs {
            if self.cont_alloc_fails() {
                return Err(SwapError::NoMem {
                    entry: entry.add(i - off),
                });
            }
        }
        let Some(d) = self.device_mut(entry.ty()) else {
            return Err(SwapError::Refused {
                func: BAD_ENTRY.func,
                rule: BAD_ENTRY.rule,
            });
        };
        for i in off..off + nr {
            d.inc(i, max);
        }
        Ok(())
    }

    /// `folio_put_swap`: −1 on the folio's slots, or on one subpage's slot.
    /// Never frees: the swap cache still pins the slots (lazy freeing saves
    /// a write if the folio is reclaimed again).
    ///
    /// # Context
    /// Folio locked and in the swap cache; the caller holds the lock of the
    /// owner that drops its entry.
    #[track_caller]
    pub fn folio_put_swap(&mut self, folio: &impl SwapFolio, subpage: Option<u32>) {
        let Ok((entry, nr)) = self.folio_range(folio, subpage) else {
            return;
        };
        if self.check_bound(entry, nr, folio.pfn()).is_err() {
            return;
        }
        let warn = Arc::clone(&self.warn);
        let Some(d) = self.dev_for(entry, nr) else {
            return;
        };
        let off = entry.offset().0;
        for i in off..off + nr {
            let c = d.count(i);
            if !warn.warn_on(c == 0, PUT_UNDERFLOW, || {
                format!("{:?}", entry.add(i - off))
            }) {
                d.dec(i);
            }
        }
    }

    /// `folio_free_swap`: if no slot of the folio has a count left, drops
    /// the cache binding and frees the slots. Returns whether it did.
    ///
    /// # Context
    /// Folio locked, not under writeback.
    #[track_caller]
    pub fn folio_free_swap(&mut self, folio: &mut impl SwapFolio) -> bool {
        let pfn = folio.pfn();
        let at = std::panic::Location::caller();
        if self.warn.warn_on(!folio.is_locked(), FREE_NOT_LOCKED, || {
            format!("{pfn:?} (called from {at})")
        }) {
            return false;
        }
        let Some(entry) = folio.swap() else {
            return false;
        };
        if folio.is_writeback() {
            return false;
        }
        let nr = u64::from(folio.order().nr_pages());
        if (0..nr).any(|i| self.swap_count(entry.add(i)) > 0) {
            return false;
        }
        if self.check_bound(entry, nr, pfn).is_err() {
            return false;
        }
        self.swap_cgroup_cache(entry, nr, false);
        self.free_slots(entry.ty(), entry.offset().0, nr);
        folio.set_swap(None);
        true
    }

    // ---- the swap cache (mm/swap_state.c) --------------------------------

    /// `swap_cache_get_folio`: the folio cached for `entry`, if any.
    pub fn swap_cache_get_folio(&self, entry: SwpEntry) -> Option<Pfn> {
        match self.slot(entry)?.binding {
            SlotBinding::Folio(pfn) => Some(pfn),
            _ => None,
        }
    }

    /// `swap_cache_add_folio` for swap-in: binds `folio` to the in-use slots
    /// at `entry`. Returns the shadow the first slot held, if any.
    ///
    /// # Context
    /// Folio locked, not in the swap cache; `entry` aligned to its size.
    ///
    /// # Errors
    /// [`SwapError::NotAllocated`] if a slot has no owner left (the entry
    /// was freed: the caller retries the fault); [`SwapError::Exists`] if
    /// another folio is cached there.
    #[track_caller]
    pub fn swap_cache_add_folio(
        &mut self,
        folio: &mut impl SwapFolio,
        entry: SwpEntry,
    ) -> Result<Option<u64>, SwapError> {
        let pfn = folio.pfn();
        self.check_new_cache_folio(folio, ADD_NOT_LOCKED)?;
        let nr = u64::from(folio.order().nr_pages());
        if self
            .warn
            .warn_on(entry.offset().0 % nr != 0, ENTRY_UNALIGNED, || {
                format!("{entry:?} nr {nr}")
            })
        {
            return Err(SwapError::Refused {
                func: ENTRY_UNALIGNED.func,
                rule: ENTRY_UNALIGNED.rule,
            });
        }
        let Some(d) = self.dev_for(entry, nr) else {
            return Err(SwapError::Refused {
                func: BAD_ENTRY.func,
                rule: BAD_ENTRY.rule,
            });
        };
        let off = entry.offset().0;
        let mut shadow = None;
        for i in off..off + nr {
            let s = d.table.get(i);
            match s.binding {
                SlotBinding::Folio(_) => {
                    return Err(SwapError::Exists {
                        entry: entry.add(i - off),
                    })
                }
                SlotBinding::Hibernation => {
                    return Err(SwapError::NotAllocated {
                        entry: entry.add(i - off),
                    })
                }
                SlotBinding::Shadow(v) if i == off => shadow = Some(v),
                _ => {}
            }
            if s.count == 0 || s.is_bad() {
                return Err(SwapError::NotAllocated {
                    entry: entry.add(i - off),
                });
            }
        }
        for i in off..off + nr {
            d.table.set_binding(i, SlotBinding::Folio(pfn));
        }
        folio.set_swap(Some(entry));
        self.swap_cgroup_cache(entry, nr, true);
        Ok(shadow)
    }

    /// `swap_cache_del_folio`: removes the folio from the swap cache. Slots
    /// still referenced keep `shadow` (for workingset refault detection);
    /// slots with no owner left are freed.
    ///
    /// # Context
    /// Folio locked, in the swap cache, not under writeback.
    #[track_caller]
    pub fn swap_cache_del_folio(&mut self, folio: &mut impl SwapFolio, shadow: Option<u64>) {
        let pfn = folio.pfn();
        let at = std::panic::Location::caller();
        if self.warn.warn_on(!folio.is_locked(), FREE_NOT_LOCKED, || {
            format!("{pfn:?} (called from {at})")
        }) {
            return;
        }
        if self
            .warn
            .warn_on(folio.is_writeback(), DEL_WRITEBACK, || format!("{pfn:?}"))
        {
            return;
        }
        let Some(entry) = folio.swap() else {
            self.warn.warn_on(true, FOLIO_NOT_IN_CACHE, || {
                format!("{pfn:?} (swap_cache_del_folio)")
            });
            return;
        };
        let nr = u64::from(folio.order().nr_pages());
        if self.check_bound(entry, nr, pfn).is_err() {
            return;
        }
        self.swap_cgroup_cache(entry, nr, false);
        let off = entry.offset().0;
        let ty = entry.ty();
        for i in off..off + nr {
            let Some(d) = self.device_mut(ty) else { return };
            if d.table.count(i) == 0 {
                self.free_slots(ty, i, 1);
            } else {
                let b = shadow.map_or(SlotBinding::None, SlotBinding::Shadow);
                d.table.set_binding(i, b);
            }
        }
        folio.set_swap(None);
    }

    // ---- zeromap -------------------------------------------------------------

    /// Marks (or unmarks) the folio's slots as holding an all-zero page
    /// that was not written (`swap_zeromap_folio_set` / `_clear`).
    ///
    /// # Context
    /// Folio locked and in the swap cache.
    pub fn swap_zeromap_folio_set(&mut self, folio: &impl SwapFolio, zero: bool) {
        let Ok((entry, nr)) = self.folio_range(folio, None) else {
            return;
        };
        if self.check_bound(entry, nr, folio.pfn()).is_err() {
            return;
        }
        if let Some(d) = self.device_mut(entry.ty()) {
            for i in entry.offset().0..entry.offset().0 + nr {
                d.table.set_zero(i, zero);
            }
        }
        // A zero page is not stored in zswap (the zeromap has it): a copy
        // from an earlier store of these slots is stale now.
        if let Some(z) = self.zswap.as_mut().filter(|_| zero) {
            for i in 0..nr {
                z.invalidate(entry.add(i));
            }
        }
    }

    /// True if every slot from `entry` for `nr` pages holds a zero page
    /// that reads back without I/O.
    pub fn swap_zeromap_test(&self, entry: SwpEntry, nr: u64) -> bool {
        let Some(d) = self.device(entry.ty()) else {
            return false;
        };
        let off = entry.offset().0;
        d.valid(off) && d.valid(off + nr - 1) && (off..off + nr).all(|i| d.table.zero(i))
    }

    // ---- direct helpers (no folio) ----------------------------------------

    /// `swap_dup_entry_direct`: +1 on an entry held by an owner with no
    /// folio at hand (fork copying a swap PTE).
    ///
    /// # Context
    /// Caller holds the lock of whatever references the entry, and the entry
    /// already has a swap count (it cannot be freed under the caller).
    #[track_caller]
    pub fn swap_dup_entry_direct(&mut self, entry: SwpEntry) -> Result<(), SwapError> {
        self.assert_owner_locked(entry, "swap_dup_entry_direct");
        let warn = Arc::clone(&self.warn);
        let Some(d) = self.dev_for(entry, 1) else {
            return Err(SwapError::Refused {
                func: BAD_ENTRY.func,
                rule: BAD_ENTRY.rule,
            });
        };
        let off = entry.offset().0;
        let s = d.table.get(off);
        if warn.warn_on(
            s.binding == SlotBinding::Hibernation,
            HIBERNATION_SLOT,
            || format!("{entry:?} dup"),
        ) {
            return Err(SwapError::Refused {
                func: HIBERNATION_SLOT.func,
                rule: HIBERNATION_SLOT.rule,
            });
        }
        if warn.warn_on(s.count == 0 || s.is_bad(), DIRECT_DUP_ZERO, || {
            format!("{entry:?}")
        }) {
            return Err(SwapError::Refused {
                func: DIRECT_DUP_ZERO.func,
                rule: DIRECT_DUP_ZERO.rule,
            });
        }
        let max = self.count_max;
        if self
            .device(entry.ty())
            .is_some_and(|d| d.needs_cont(off, max))
            && self.cont_alloc_fails()
        {
            return Err(SwapError::NoMem { entry });
        }
        if let Some(d) = self.device_mut(entry.ty()) {
            d.inc(off, max);
        }
        Ok(())
    }

    /// `swap_put_entries_direct`: −1 on `nr` entries from `entry` (one
    /// cluster at most). An uncached slot reaching zero is freed; a cached
    /// one is reported in [`PutDirect::cached`] for the caller to reclaim.
    ///
    /// # Context
    /// Caller holds the lock of whatever references the entries (the
    /// page-table lock when zapping, the mapping lock for shmem truncate).
    #[track_caller]
    pub fn swap_put_entries_direct(&mut self, entry: SwpEntry, nr: u64) -> PutDirect {
        self.assert_owner_locked(entry, "swap_put_entries_direct");
        let mut out = PutDirect::default();
        let off = entry.offset().0;
        let crosses = off / SWAPFILE_CLUSTER != (off + nr.max(1) - 1) / SWAPFILE_CLUSTER;
        if self.warn.warn_on(crosses, PUT_CROSSES_CLUSTER, || {
            format!("{entry:?} nr {nr}")
        }) {
            return out;
        }
        let warn = Arc::clone(&self.warn);
        let ty = entry.ty();
        if self.dev_for(entry, nr.max(1)).is_none() {
            return out;
        }
        for i in off..off + nr {
            let Some(d) = self.device_mut(ty) else { break };
            let s = d.table.get(i);
            let e = entry.add(i - off);
            if warn.warn_on(
                s.binding == SlotBinding::Hibernation,
                HIBERNATION_SLOT,
                || format!("{e:?} put"),
            ) {
                continue;
            }
            if warn.warn_on(s.count == 0 || s.is_bad(), PUT_UNDERFLOW, || {
                format!("{e:?} direct")
            }) {
                continue;
            }
            d.dec(i);
            if d.count(i) == 0 {
                match s.binding {
                    SlotBinding::Folio(pfn) => {
                        if out.cached.last() != Some(&pfn) {
                            out.cached.push(pfn);
                        }
                    }
                    _ => {
                        self.free_slots(ty, i, 1);
                        out.freed += 1;
                    }
                }
            }
        }
        out
    }

    // ---- hibernation --------------------------------------------------------

    /// `swap_alloc_hibernation_slot`: one exclusive slot of device `ty`,
    /// never touched by the routines above. `nr_swap_pages` drops by one.
    pub fn swap_alloc_hibernation_slot(&mut self, ty: SwapType) -> Option<SwpEntry> {
        let d = self.devices.get_mut(ty.0 as usize)?.as_mut()?;
        if d.dying {
            return None;
        }
        let off = d.clusters.alloc(&d.table, 0, 0)?;
        d.table.clear(off);
        d.table.set_count(off, 1);
        d.table.set_binding(off, SlotBinding::Hibernation);
        d.inuse_pages += 1;
        self.nr_swap_pages -= 1;
        if self.bugs.hib_alloc_double_dec {
            self.nr_swap_pages -= 1;
        }
        SwpEntry::new(ty, SwapOffset(off))
    }

    /// `swap_free_hibernation_slot`: frees a slot from
    /// [`Self::swap_alloc_hibernation_slot`].
    pub fn swap_free_hibernation_slot(&mut self, entry: SwpEntry) {
        let Some(s) = self.slot(entry) else {
            self.warn
                .warn_on(true, BAD_ENTRY, || format!("{entry:?} hibernation free"));
            return;
        };
        if self.warn.warn_on(
            s.binding != SlotBinding::Hibernation,
            HIB_FREE_NOT_HIB,
            || format!("{entry:?}"),
        ) {
            return;
        }
        let ci = self.swap_cluster_lock(entry);
        self.free_slots(entry.ty(), entry.offset().0, 1);
        if !self.bugs.slot_check_unlocked {
            let swapped = self.swap_entry_swapped(entry);
            self.warn
                .warn_on(swapped, HIB_FREE_STILL_SWAPPED, || format!("{entry:?}"));
        }
        drop(ci);
        if self.bugs.slot_check_unlocked {
            // The bug: the sanity check reads the slot's state after the
            // cluster lock is dropped (another CPU may have reallocated it).
            let swapped = self.swap_entry_swapped(entry);
            self.warn
                .warn_on(swapped, HIB_FREE_STILL_SWAPPED, || format!("{entry:?}"));
        }
    }

    // ---- self-check -----------------------------------------------------------

    /// Checks the swap layer's own bookkeeping: per device, `inuse_pages`
    /// equals the slots in use and the cluster counts; globally,
    /// `nr_swap_pages == total − allocated`. Returns one line per violation.
    pub fn check_accounting(&self) -> Vec<String> {
        let mut bad = Vec::new();
        let mut inuse_total = 0u64;
        for d in self.devices.iter().flatten() {
            let mut inuse = 0u64;
            for ci in 0..d.clusters.len() {
                let base = ci as u64 * SWAPFILE_CLUSTER;
                let end = (base + SWAPFILE_CLUSTER).min(d.table.len());
                let used = (base..end).filter(|&i| !d.table.get(i).is_free()).count() as u64;
                let bad_slots = (base..end).filter(|&i| d.table.get(i).is_bad()).count() as u64;
                let beyond = base + SWAPFILE_CLUSTER - end;
                let want = u64::from(d.clusters.info(ci).count);
                if used + beyond != want {
                    bad.push(format!(
                        "swap type {} cluster {ci}: count {want}, slots in use {}",
                        d.ty.0,
                        used + beyond
                    ));
                }
                inuse += used - bad_slots;
            }
            bad.extend(
                d.clusters
                    .check_lists()
                    .into_iter()
                    .map(|l| format!("swap type {}: {l}", d.ty.0)),
            );
            if inuse != d.inuse_pages {
                bad.push(format!(
                    "swap type {}: inuse_pages {} but {inuse} slots in use",
                    d.ty.0, d.inuse_pages
                ));
            }
            inuse_total += inuse;
        }
        let want = self.total_swap_pages as i64 - inuse_total as i64;
        if self.nr_swap_pages != want {
            bad.push(format!(
                "nr_swap_pages {} but total {} − allocated {inuse_total} = {want}",
                self.nr_swap_pages, self.total_swap_pages
            ));
        }
        bad
    }

    /// The path of device `ty`.
    pub fn device_path(&self, ty: SwapType) -> Option<&Path> {
        self.device(ty).map(|d| d.path.as_path())
    }
}
