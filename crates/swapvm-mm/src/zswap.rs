//! The zswap pool's frames (zsmalloc's pages): the pool lives in the swap
//! layer, which knows no RAM; this is where its size becomes frames taken
//! out of RAM and charged to memcgs.
//!
//! [`Memory::zswap_sync`] makes the frames match what the pool needs, per
//! memcg: frames are taken right after a store (from the reserves, as
//! zsmalloc allocates under reclaim's `PF_MEMALLOC`) and given back at the
//! tick's end once entries went (loads, frees, writeback). Each frame is
//! charged to its memcg whatever `memory.max` says (the kernel's
//! `obj_cgroup_charge_zswap` charges after the fact too); reclaim then
//! sees the memcg over its limit as usual.

use crate::folio::pg;
use crate::memcg::MemcgId;
use crate::memory::Memory;
use swapvm_core::Pfn;
use swapvm_swap::SwapSubsystem;

/// The pool's frames, by the memcg they are charged to.
#[derive(Debug, Default)]
pub struct ZswapFrames {
    by_memcg: Vec<Vec<Pfn>>,
}

impl ZswapFrames {
    /// Frames held, all memcgs.
    pub fn len(&self) -> u64 {
        self.by_memcg.iter().map(|v| v.len() as u64).sum()
    }

    /// No frame held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frames held for memcg `id`.
    pub fn memcg(&self, id: u16) -> u64 {
        self.by_memcg
            .get(usize::from(id))
            .map_or(0, |v| v.len() as u64)
    }
}

impl Memory {
    /// Takes or gives back frames until each memcg holds the pool pages
    /// its entries need. A frame that cannot be had even from the reserves
    /// is taken at a later call.
    pub fn zswap_sync(&mut self, swap: &SwapSubsystem) {
        let Some(z) = swap.zswap() else {
            return;
        };
        let n = self.memcg.len();
        if self.zswap_frames.by_memcg.len() < n {
            self.zswap_frames.by_memcg.resize_with(n, Vec::new);
        }
        for id in 0..n {
            let want = z.memcg(id as u16).pool_pages;
            while self.zswap_frames.memcg(id as u16) > want {
                let Some(pfn) = self.zswap_frames.by_memcg[id].pop() else {
                    break;
                };
                self.folios.get_mut(pfn).clear(pg::ZSMALLOC);
                self.free_frame(pfn);
            }
            while self.zswap_frames.memcg(id as u16) < want {
                let Some(pfn) = self.alloc_frame(true) else {
                    return;
                };
                let memcg = MemcgId(id as u16);
                self.memcg.force_charge(memcg, 1);
                let p = self.folios.get_mut(pfn);
                p.memcg = memcg.0;
                p.set(pg::ZSMALLOC);
                self.zswap_frames.by_memcg[id].push(pfn);
            }
        }
    }
}
