//! The warning registry: `WARN_ON_ONCE`, counted per site.
//!
//! Every "Context:" rule of the swap-entry API, and every sanity check the
//! kernel expresses as `VM_WARN_ON`, is a [`WarnSite`]. A violation is
//! recorded with its site and a message (the first message per site is kept,
//! like `WARN_ON_ONCE` prints once), counted every time, and never silently
//! ignored. Under `strict` the first violation also marks the run failed;
//! the machine checks [`Warnings::fatal`] after each step.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// A place in the code that checks a contract.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub struct WarnSite {
    /// Function (kernel name where there is one) that owns the check.
    pub func: &'static str,
    /// The rule that was broken, in a few words.
    pub rule: &'static str,
}

/// One site's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarnRecord {
    /// The site.
    pub site: WarnSite,
    /// Times it fired.
    pub count: u64,
    /// The message of its first firing.
    pub first: String,
}

/// Counted contract violations of one machine.
#[derive(Debug, Default)]
pub struct Warnings {
    sites: Mutex<BTreeMap<WarnSite, WarnRecord>>,
    total: AtomicU64,
    strict: AtomicBool,
    fatal: AtomicBool,
}

impl Warnings {
    /// An empty registry.
    pub fn new(strict: bool) -> Self {
        let w = Warnings::default();
        w.strict.store(strict, Ordering::Relaxed);
        w
    }

    /// Records a violation at `site` if `cond` holds, and returns `cond`, so
    /// callers write `if warns.warn_on(cond, SITE, || ...) { return ... }`.
    #[inline]
    pub fn warn_on(&self, cond: bool, site: WarnSite, msg: impl FnOnce() -> String) -> bool {
        if cond {
            self.record(site, msg());
        }
        cond
    }

    #[cold]
    fn record(&self, site: WarnSite, msg: String) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if self.strict.load(Ordering::Relaxed) {
            self.fatal.store(true, Ordering::Relaxed);
        }
        let mut sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        sites
            .entry(site)
            .and_modify(|r| r.count += 1)
            .or_insert_with(|| {
                tracing::warn!(func = site.func, rule = site.rule, "{msg}");
                WarnRecord {
                    site,
                    count: 1,
                    first: msg,
                }
            });
    }

    /// Violations recorded so far, all sites.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
    /// True once a violation fired under strict mode.
    pub fn fatal(&self) -> bool {
        self.fatal.load(Ordering::Relaxed)
    }
    /// Times `site` fired.
    pub fn count(&self, site: WarnSite) -> u64 {
        let sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        sites.get(&site).map_or(0, |r| r.count)
    }
    /// Every site that fired, ordered by site.
    pub fn records(&self) -> Vec<WarnRecord> {
        let sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        sites.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: WarnSite = WarnSite {
        func: "folio_dup_swap",
        rule: "folio not in swap cache",
    };

    #[test]
    fn counts_per_site_and_keeps_first_message() {
        let w = Warnings::new(false);
        assert!(!w.warn_on(false, SITE, || unreachable!()));
        assert!(w.warn_on(true, SITE, || "first".into()));
        assert!(w.warn_on(true, SITE, || "second".into()));
        assert_eq!(w.count(SITE), 2);
        assert_eq!(w.total(), 2);
        assert_eq!(w.records()[0].first, "first");
        assert!(!w.fatal());
    }

    #[test]
    fn strict_marks_fatal() {
        let w = Warnings::new(true);
        w.warn_on(true, SITE, || "x".into());
        assert!(w.fatal());
    }
}
