//! Lock-context checks in the manner of lockdep.
//!
//! The emulation is single-threaded, so no lock is ever contended; what the
//! kernel's contracts say about locks ("Context: caller holds the cluster
//! lock") still matters, because a real kernel following the same code
//! would race or deadlock. So the locks are modelled as held-state: a
//! caller takes a lock and gets a [`LockGuard`] whose `Drop` releases it;
//! a helper whose contract names a lock asserts it is held
//! (`lockdep_assert_held`). A helper called without its lock, and a lock
//! taken twice (the recursive-locking deadlock lockdep reports), is a
//! counted warning in the [`Warnings`] registry at the helper's site, with
//! the caller's source location in the message.
//!
//! The lock classes are the ones the swap-entry API's contracts name: the
//! swap cluster lock (`ci->lock`, per cluster of a device), the page-table
//! lock of an mm (`pte_offset_map_lock`), and an address-space mapping
//! lock (shmem's `mapping->i_pages`, for owners that are not PTEs). The
//! folio lock is `PG_locked`, a flag on the folio itself, and is checked
//! there.

use crate::warn::{WarnSite, Warnings};
use std::panic::Location;
use std::sync::{Arc, Mutex};

/// A lock, by class and instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockClass {
    /// `swap_cluster_info::lock` of cluster `cluster` of swap type `ty`.
    SwapCluster {
        /// Swap type.
        ty: u8,
        /// Cluster index.
        cluster: u64,
    },
    /// The page-table lock of mm `mm`.
    PageTable {
        /// The mm's id.
        mm: u32,
    },
    /// The mapping lock of address space `mapping` (shmem).
    Mapping {
        /// The mapping's id.
        mapping: u32,
    },
}

/// Taking a lock already held: a deadlock in the kernel.
pub const RECURSIVE_LOCK: WarnSite = WarnSite {
    func: "lockdep",
    rule: "possible recursive locking (deadlock)",
};

#[derive(Debug)]
struct Held {
    class: LockClass,
    at: &'static Location<'static>,
}

/// The held-state of every lock of one machine.
#[derive(Debug)]
pub struct Lockdep {
    held: Mutex<Vec<Held>>,
    warn: Arc<Warnings>,
}

impl Lockdep {
    /// No lock held; violations go to `warn`.
    pub fn new(warn: Arc<Warnings>) -> Arc<Self> {
        Arc::new(Lockdep {
            held: Mutex::new(Vec::new()),
            warn,
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Vec<Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `class`. Taking a lock already held is reported at
    /// [`RECURSIVE_LOCK`] with both sites (the guard is still returned, so
    /// the releases stay balanced).
    #[track_caller]
    pub fn lock(self: &Arc<Self>, class: LockClass) -> LockGuard {
        let at = Location::caller();
        let mut held = self.held();
        if let Some(h) = held.iter().find(|h| h.class == class) {
            let first = h.at;
            self.warn.warn_on(true, RECURSIVE_LOCK, || {
                format!("{class:?} taken at {at} while already held since {first}")
            });
        }
        held.push(Held { class, at });
        LockGuard {
            dep: Arc::clone(self),
            class,
        }
    }

    /// True if `class` is held.
    pub fn is_held(&self, class: LockClass) -> bool {
        self.held().iter().any(|h| h.class == class)
    }

    /// True if any held lock satisfies `f`.
    pub fn any_held(&self, f: impl Fn(&LockClass) -> bool) -> bool {
        self.held().iter().any(|h| f(&h.class))
    }

    /// `lockdep_assert_held`: if `held` is false, records a violation at
    /// `site` naming `what` and the caller's location; returns `held`.
    #[track_caller]
    pub fn assert_held(&self, held: bool, site: WarnSite, what: impl FnOnce() -> String) -> bool {
        if !held {
            let at = Location::caller();
            self.warn
                .warn_on(true, site, || format!("{} (called from {at})", what()));
        }
        held
    }

    fn release(&self, class: LockClass) {
        let mut held = self.held();
        if let Some(i) = held.iter().rposition(|h| h.class == class) {
            held.remove(i);
        }
    }
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
#[must_use = "a lock is released when its guard drops"]
pub struct LockGuard {
    dep: Arc<Lockdep>,
    class: LockClass,
}

impl LockGuard {
    /// The lock held.
    pub fn class(&self) -> LockClass {
        self.class
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.dep.release(self.class);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: WarnSite = WarnSite {
        func: "helper",
        rule: "lock not held",
    };

    #[test]
    fn guard_releases_and_assert_names_the_caller() {
        let w = Arc::new(Warnings::new(false));
        let dep = Lockdep::new(Arc::clone(&w));
        let c = LockClass::PageTable { mm: 3 };
        {
            let _g = dep.lock(c);
            assert!(dep.is_held(c));
            assert!(dep.assert_held(dep.is_held(c), SITE, || "x".into()));
        }
        assert!(!dep.is_held(c));
        assert!(!dep.assert_held(dep.is_held(c), SITE, || "pte of mm 3".into()));
        assert_eq!(w.count(SITE), 1);
        let first = &w.records()[0].first;
        assert!(
            first.contains("pte of mm 3") && first.contains("lockdep.rs"),
            "{first}"
        );
    }

    #[test]
    fn recursive_locking_is_reported_with_both_sites() {
        let w = Arc::new(Warnings::new(false));
        let dep = Lockdep::new(Arc::clone(&w));
        let c = LockClass::SwapCluster { ty: 0, cluster: 1 };
        let _a = dep.lock(c);
        let b = dep.lock(c);
        assert_eq!(w.count(RECURSIVE_LOCK), 1);
        drop(b);
        assert!(dep.is_held(c), "the outer hold survives the inner release");
        let other = dep.lock(LockClass::SwapCluster { ty: 0, cluster: 2 });
        assert_eq!(
            w.count(RECURSIVE_LOCK),
            1,
            "another cluster is another lock"
        );
        drop(other);
    }
}
