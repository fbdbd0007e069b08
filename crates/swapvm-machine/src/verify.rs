//! Data verification: every page read back from swap must equal what was
//! last written to it, and every page a process reads must carry the stamp
//! of its own last write.
//!
//! Swap side: at each completed swap-out write the checksum (xxh3) of the
//! written bytes is recorded per slot; at each completed swap-in read the
//! bytes read are checked against it. Process side: each store writes a
//! content stamp (pid, vpn, version) at the start of the page; each load
//! checks it against the version the process last wrote.

use swapvm_core::{SwpEntry, PAGE_SIZE};
use xxhash_rust::xxh3::xxh3_64;

/// Bytes of the content stamp at the start of a page.
pub const STAMP_LEN: usize = 24;

/// The common case of [`Verifier::check_key`]: `key` is not lazily freed
/// and `page` starts with its stamp. `false` is not a mismatch; it means
/// "ask `check_key`", which also knows lazily freed pages.
#[inline(always)]
pub fn stamp_holds(key: ContentKey, page: &[u8]) -> bool {
    if key & KEY_LAZY != 0 {
        return false;
    }
    let Some(head) = page.get(..STAMP_LEN) else {
        return false;
    };
    if key == 0 {
        head == [0u8; STAMP_LEN]
    } else {
        head == stamp_key(key)
    }
}

/// The stamp a store of `version` by `pid` at `vpn` writes.
pub fn stamp(pid: u32, vpn: u64, version: u32) -> [u8; STAMP_LEN] {
    let mut s = [0u8; STAMP_LEN];
    s[0..4].copy_from_slice(&pid.to_le_bytes());
    s[4..8].copy_from_slice(&version.to_le_bytes());
    s[8..16].copy_from_slice(&vpn.to_le_bytes());
    let mix = (u64::from(pid) << 32 | u64::from(version)) ^ vpn.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    s[16..24].copy_from_slice(&mix.to_le_bytes());
    s
}

/// A content key: what a page must hold. 0 is the zero page; a store
/// writes [`stamp_key`] of a fresh key; pool contents ([`pool_key`]) are
/// the same bytes wherever they are stored, so KSM can merge them.
pub type ContentKey = u64;
/// Key bit: the page was lazily freed (`MADV_FREE`) since it held the key;
/// it may read back as the key's content or, once reclaim dropped it, as
/// zeros.
pub const KEY_LAZY: ContentKey = 1 << 63;
/// Key bit of pool contents.
const KEY_POOL: ContentKey = 1 << 62;

/// The key of pool content `pool`.
pub fn pool_key(pool: u32) -> ContentKey {
    KEY_POOL | u64::from(pool)
}

/// The bytes at the start of a page holding key `key` (the rest of the
/// page is zeros). The first 8 bytes are the key itself: a metadata-only
/// frame keeps just those (its content word), which tell pages apart and
/// zero pages exactly as the whole stamp does, since no store writes key 0.
#[inline]
pub fn stamp_key(key: ContentKey) -> [u8; STAMP_LEN] {
    let mut s = [0u8; STAMP_LEN];
    s[0..8].copy_from_slice(&key.to_le_bytes());
    s[8..16].copy_from_slice(&key.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    s[16..24].copy_from_slice(&(!key).rotate_left(17).to_le_bytes());
    s
}

/// A verification failure, with where it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Tick.
    pub tick: u64,
    /// What and where.
    pub what: String,
}

/// Per-slot checksums and the verification counts.
///
/// A disabled verifier (a metadata-only machine, `machine.content =
/// "none"`, which has no page bytes) keeps no checksums, checks nothing and
/// counts nothing: every read passes, and the report says verification was
/// off.
#[derive(Debug, Default)]
pub struct Verifier {
    enabled: bool,
    sums: Vec<Vec<u64>>,
    /// Swap-in reads checked against the checksum of their last write.
    pub swapin_verified: u64,
    /// Process loads whose stamp was checked.
    pub stamps_verified: u64,
    /// Failures (swap-in and stamp).
    pub mismatches: u64,
    /// Swap-in reads whose bytes differ from their last write.
    pub swapin_mismatches: u64,
    /// Process loads that saw content other than their last store.
    pub stamp_mismatches: u64,
    /// The first few failures.
    pub first: Vec<Mismatch>,
}

impl Verifier {
    /// A verifier that checks (`enabled`) or one that is off.
    pub fn new(enabled: bool) -> Self {
        Verifier {
            enabled,
            ..Verifier::default()
        }
    }

    /// True when it checks data (the machine has page bytes).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Room for device `ty` with `slots` slots (none when disabled).
    pub fn add_device(&mut self, ty: u8, slots: u64) {
        if !self.enabled {
            return;
        }
        let i = ty as usize;
        if self.sums.len() <= i {
            self.sums.resize_with(i + 1, Vec::new);
        }
        self.sums[i] = vec![0; slots as usize];
    }

    fn fail(&mut self, tick: u64, what: String) {
        self.mismatches += 1;
        if self.first.len() < 16 {
            tracing::error!(tick, "{what}");
            self.first.push(Mismatch { tick, what });
        }
    }

    /// Records the bytes written to the slots from `entry`.
    pub fn written(&mut self, entry: SwpEntry, data: &[u8]) {
        if !self.enabled {
            return;
        }
        for (i, page) in data.chunks_exact(PAGE_SIZE).enumerate() {
            let off = entry.offset().idx() + i;
            if let Some(s) = self
                .sums
                .get_mut(entry.ty().0 as usize)
                .and_then(|v| v.get_mut(off))
            {
                // 0 means "never written"; a page that hashes to 0 is
                // recorded as 1 and checked the same way.
                *s = xxh3_64(page).max(1);
            }
        }
    }

    /// Checks the bytes read from the slots from `entry`; false if any page
    /// differs from its last write (or its slot was never written). True,
    /// checking nothing, when disabled.
    pub fn read(&mut self, tick: u64, entry: SwpEntry, data: &[u8]) -> bool {
        if !self.enabled {
            return true;
        }
        let mut all_ok = true;
        for (i, page) in data.chunks_exact(PAGE_SIZE).enumerate() {
            let e = entry.add(i as u64);
            let want = self
                .sums
                .get(e.ty().0 as usize)
                .and_then(|v| v.get(e.offset().idx()))
                .copied();
            match want {
                Some(w) if w == xxh3_64(page).max(1) => {
                    self.swapin_verified += 1;
                    continue;
                }
                Some(0) | None => {
                    self.fail(tick, format!("swap-in of {e:?}: slot was never written"))
                }
                Some(_) => self.fail(
                    tick,
                    format!("swap-in of {e:?}: bytes differ from the last write (torn write?)"),
                ),
            }
            self.swapin_mismatches += 1;
            all_ok = false;
        }
        all_ok
    }

    /// Checks a loaded page against the key it must hold. A lazily freed
    /// page may read its old content until reclaim drops it (a load does
    /// not cancel `MADV_FREE`; only a store does), then zeros for good.
    ///
    /// Every load is checked; the common case (not lazily freed, and the
    /// page holds its key) is three word compares inlined into the access
    /// loop, and everything else goes to [`Self::check_key_slow`].
    #[inline]
    pub fn check_key(&mut self, tick: u64, pid: u32, vpn: u64, key: &mut ContentKey, page: &[u8]) {
        if stamp_holds(*key, page) {
            self.stamps_verified += 1;
            return;
        }
        self.check_key_slow(tick, pid, vpn, key, page);
    }

    /// Counts `n` loads whose stamps [`stamp_holds`] found right, as `n`
    /// passing [`Self::check_key`]s would (a loop that checks many loads
    /// counts them once, not through memory per load).
    #[inline]
    pub fn note_verified(&mut self, n: u64) {
        self.stamps_verified += n;
    }

    /// [`Self::check_key`] for a lazily freed page or a mismatch.
    #[cold]
    #[inline(never)]
    fn check_key_slow(&mut self, tick: u64, pid: u32, vpn: u64, key: &mut ContentKey, page: &[u8]) {
        let head = &page[..STAMP_LEN];
        let is = |k: ContentKey| {
            if k == 0 {
                head.iter().all(|&b| b == 0)
            } else {
                head == stamp_key(k)
            }
        };
        let want = *key & !KEY_LAZY;
        let ok = if *key & KEY_LAZY != 0 {
            if is(want) {
                true
            } else if is(0) {
                *key = 0;
                true
            } else {
                false
            }
        } else {
            is(want)
        };
        if ok {
            self.stamps_verified += 1;
        } else {
            self.fail(
                tick,
                format!(
                    "pid {pid} load at {:#x}: content is not key {:#x}{}",
                    vpn << 12,
                    want,
                    if *key & KEY_LAZY != 0 {
                        " (or zeros, lazily freed)"
                    } else {
                        ""
                    }
                ),
            );
        }
    }

    /// Checks a loaded page's stamp against the process's last store.
    pub fn check_stamp(&mut self, tick: u64, pid: u32, vpn: u64, version: u32, page: &[u8]) {
        let ok = if version == 0 {
            page[..STAMP_LEN].iter().all(|&b| b == 0)
        } else {
            page[..STAMP_LEN] == stamp(pid, vpn, version)
        };
        if ok {
            self.stamps_verified += 1;
        } else {
            self.stamp_mismatches += 1;
            self.fail(
                tick,
                format!(
                    "pid {pid} load at {:#x}: content is not version {version}",
                    vpn << 12
                ),
            );
        }
    }
}
