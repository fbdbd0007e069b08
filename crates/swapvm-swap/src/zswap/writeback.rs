//! zswap's paths that reach the swap device: the store in `swap_writeout`,
//! the load in `swap_read_folio`, and writeback (`zswap_writeback_entry`)
//! by the memcg limit, the shrink worker and the shrinker.
//!
//! Writeback is synchronous here: the entry's page is written to its slot
//! and the write waited for before the entry goes. The kernel writes from
//! a swap-cache folio that pins the slot meanwhile; waiting gives the same
//! guarantee (nothing else can write or free the slot during the write)
//! without a folio. It only costs the real disk's latency, never a
//! decision, so runs stay deterministic.

use super::{Zswap, ZswapParams};
use crate::swapfile::{SwapError, SwapSubsystem};
use swapvm_core::{SwpEntry, VmEvent};

/// `MAX_RECLAIM_RETRIES`: the shrink worker gives up after this many
/// writebacks in a row fail.
const MAX_RECLAIM_RETRIES: u32 = 16;

/// Where [`SwapSubsystem::swap_writeout`] sent a folio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOut {
    /// zswap stored it: no device write; the completion follows as for a
    /// write.
    Zswap,
    /// Written to the device (`pswpout`).
    Device,
    /// zswap refused it and its memcg forbids writeback
    /// (`memory.zswap.writeback = 0`): nothing was written, and the folio
    /// stays in memory, dirty (the kernel's `AOP_WRITEPAGE_ACTIVATE`).
    Activate,
}

impl SwapSubsystem {
    /// Turns zswap on for a machine of `totalram_pages` frames.
    pub fn zswap_enable(&mut self, params: ZswapParams, totalram_pages: u64) {
        self.zswap = Some(Zswap::new(params, totalram_pages));
    }

    /// The zswap pool, when zswap is on.
    pub fn zswap(&self) -> Option<&Zswap> {
        self.zswap.as_ref()
    }

    /// The zswap pool, when zswap is on, to set its memcgs and parameters.
    pub fn zswap_mut(&mut self) -> Option<&mut Zswap> {
        self.zswap.as_mut()
    }

    /// Pages of RAM the zswap pool takes (0 without zswap).
    pub fn zswap_pool_pages(&self) -> u64 {
        self.zswap.as_ref().map_or(0, Zswap::pool_pages)
    }

    /// `swap_writeout`: offers the folio's pages (`data`, as for
    /// [`SwapSubsystem::swap_writepage`]) at `entry` to zswap, and writes
    /// them to the device if zswap refuses them. Counts `zswpout` or
    /// `pswpout`.
    ///
    /// # Context
    /// As [`SwapSubsystem::swap_writepage`]: the folio is locked, unmapped
    /// and marked under writeback until the completion is delivered
    /// (except for [`WriteOut::Activate`], which has no completion).
    #[doc(alias = "zswap_store")]
    pub fn swap_writeout(
        &mut self,
        entry: SwpEntry,
        data: &[u8],
        cookie: u64,
        now: u64,
    ) -> Result<WriteOut, SwapError> {
        let Some(z) = self.zswap.as_ref() else {
            self.swap_writepage(entry, data, cookie, now)?;
            return Ok(WriteOut::Device);
        };
        let nr = (data.len() / self.io_page_bytes()) as u64;
        let objcg = self.lookup_swap_cgroup_id(entry);
        let memcg_ok = z.may_zswap(objcg) || self.zswap_shrink_memcg(objcg);
        let Some(z) = self.zswap.as_mut() else {
            unreachable!("zswap was on a line above");
        };
        let stored = z.store(entry, data, nr, objcg, memcg_ok);
        let writeback = z.writeback_enabled(objcg);
        if z.shrink_pending {
            self.zswap_shrink_worker();
        }
        if stored {
            self.stat.add(VmEvent::ZswpOut, nr);
            self.zswap_write_done(entry, data, cookie, now);
            return Ok(WriteOut::Zswap);
        }
        if !writeback {
            return Ok(WriteOut::Activate);
        }
        self.swap_writepage(entry, data, cookie, now)?;
        Ok(WriteOut::Device)
    }

    /// `zswap_load` for the `nr` slots from `entry`: each page zswap holds,
    /// decompressed (`page_bytes` of content), by its index; `None` for
    /// those on the device. Counts `zswpin`.
    pub(crate) fn zswap_load(&mut self, entry: SwpEntry, nr: u32) -> Vec<Option<Vec<u8>>> {
        let pb = self.io_page_bytes();
        let Some(z) = self.zswap.as_mut() else {
            return Vec::new();
        };
        let mut hits = 0;
        let pages = (0..u64::from(nr))
            .map(|i| {
                let mut out = vec![0u8; pb];
                // A page that does not decompress is left to the device
                // read, whose bytes the verifier then checks: a broken
                // codec shows as a mismatch, not as silent zeros.
                let page = matches!(z.load(entry.add(i), &mut out), Some(Ok(()))).then_some(out);
                hits += u64::from(page.is_some());
                page
            })
            .collect();
        self.stat.add(VmEvent::ZswpIn, hits);
        pages
    }

    /// `shrink_memcg`: writes back one entry of memcg `objcg`, if its
    /// writeback is allowed. True when one was written back.
    fn zswap_shrink_memcg(&mut self, objcg: u16) -> bool {
        let Some(z) = self.zswap.as_mut() else {
            return false;
        };
        if !z.writeback_enabled(objcg) {
            return false;
        }
        match z.pick_victim(Some(objcg)) {
            Some(at) => self.zswap_writeback_entry(at),
            None => false,
        }
    }

    /// `shrink_worker`: after the pool was found full, writes back the
    /// coldest entries until the pool is under the accept threshold, or
    /// [`MAX_RECLAIM_RETRIES`] writebacks in a row failed. (The kernel runs
    /// it from a workqueue; swapvm right after the store that asked.)
    #[doc(alias = "shrink_worker")]
    fn zswap_shrink_worker(&mut self) {
        let mut failures = 0;
        loop {
            let Some(z) = self.zswap.as_mut() else {
                return;
            };
            z.shrink_pending = false;
            if z.pool_pages() <= z.accept_thr_pages() || failures >= MAX_RECLAIM_RETRIES {
                return;
            }
            let Some(at) = z.pick_victim(None) else {
                return;
            };
            if !self.zswap_writeback_entry(at) {
                failures += 1;
            }
        }
    }

    /// The zswap shrinker (`zswap_shrinker_scan`), when `shrinker_enabled`:
    /// writes back up to `nr_to_scan` of the coldest entries. Returns how
    /// many were written back. swapvm runs it while memory is short (see
    /// the machine); the kernel's shrinker also protects recently stored
    /// entries by `nr_zswap_protected`, which swapvm leaves to the second
    /// chance of the LRU.
    pub fn zswap_shrinker_scan(&mut self, nr_to_scan: u64) -> u64 {
        let mut written = 0;
        for _ in 0..nr_to_scan {
            let Some(z) = self.zswap.as_mut().filter(|z| z.params().shrinker_enabled) else {
                break;
            };
            let Some(at) = z.pick_victim(None) else {
                break;
            };
            written += u64::from(self.zswap_writeback_entry(at));
        }
        written
    }

    /// `zswap_writeback_entry`: writes the page of entry `at` to its slot
    /// and drops the entry. Refused (`-EEXIST` in the kernel) when the
    /// slot's page is in the swap cache: it is in memory, and its owner
    /// decides. A refused or failed writeback counts `reject_reclaim_fail`
    /// and rotates the entry on the LRU.
    fn zswap_writeback_entry(&mut self, at: SwpEntry) -> bool {
        let pb = self.io_page_bytes();
        let cached = self.swap_cache_get_folio(at).is_some();
        let Some(z) = self.zswap.as_mut() else {
            return false;
        };
        let content = if cached { None } else { z.content(at, pb) };
        let ok = match content {
            Some(page) => self.write_sync(at, &page).is_ok(),
            None => false,
        };
        let Some(z) = self.zswap.as_mut() else {
            return false;
        };
        if ok {
            z.written_back(at);
            self.stat.inc(VmEvent::ZswpWb);
        } else {
            z.reclaim_failed();
            z.rotate(at);
        }
        ok
    }
}
