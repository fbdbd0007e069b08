//! Hibernation swap slots (kernel/power/swap.c): the extent map of the
//! slots an image occupies, filled by `alloc_swapdev_block` and released by
//! `free_all_swap_pages`.
//!
//! Hibernation slots are exclusive: they come from
//! `swap_alloc_hibernation_slot`, never carry a folio or a PTE owner, and
//! every ordinary lifecycle routine refuses them. An extent records an
//! inclusive range `[start, end]` of offsets.

use crate::swapfile::SwapSubsystem;
use crate::table::SlotBinding;
use std::collections::BTreeMap;
use swapvm_core::{SwapOffset, SwapType, SwpEntry};

/// The hibernation image's slots on one device (`swsusp_extents`).
#[derive(Debug)]
pub struct SwsuspExtents {
    ty: SwapType,
    /// start → end, inclusive.
    ext: BTreeMap<u64, u64>,
}

impl SwsuspExtents {
    /// No slots yet on device `ty`.
    pub fn new(ty: SwapType) -> Self {
        SwsuspExtents {
            ty,
            ext: BTreeMap::new(),
        }
    }

    /// The device the extents are on.
    pub fn ty(&self) -> SwapType {
        self.ty
    }

    /// The extents, `(start, end)` inclusive, in order.
    pub fn extents(&self) -> Vec<(u64, u64)> {
        self.ext.iter().map(|(&s, &e)| (s, e)).collect()
    }

    /// Slots held.
    pub fn slots(&self) -> u64 {
        self.ext.iter().map(|(&s, &e)| e - s + 1).sum()
    }

    /// True if `off` is inside an extent.
    pub fn contains(&self, off: u64) -> bool {
        self.ext
            .range(..=off)
            .next_back()
            .is_some_and(|(_, &e)| off <= e)
    }

    /// `alloc_swapdev_block`: one hibernation slot, recorded in the
    /// extents (merged with a neighbour where it touches one).
    pub fn alloc_swapdev_block(&mut self, swap: &mut SwapSubsystem) -> Option<SwpEntry> {
        let e = swap.swap_alloc_hibernation_slot(self.ty)?;
        self.insert(e.offset().0);
        Some(e)
    }

    fn insert(&mut self, off: u64) {
        let before = self.ext.range(..off).next_back().map(|(&s, &e)| (s, e));
        let after = self.ext.get(&(off + 1)).copied();
        match (before, after) {
            (Some((s, e)), Some(e2)) if e + 1 == off => {
                self.ext.remove(&(off + 1));
                self.ext.insert(s, e2);
            }
            (Some((s, e)), _) if e + 1 == off => {
                self.ext.insert(s, off);
            }
            (_, Some(e2)) => {
                self.ext.remove(&(off + 1));
                self.ext.insert(off, e2);
            }
            _ => {
                self.ext.insert(off, off);
            }
        }
    }

    /// `free_all_swap_pages`: frees every slot of every extent, the last one
    /// of each included, and empties the map.
    ///
    /// With [`crate::SeedBugs::hib_free_exclusive_end`] set it loops to the
    /// end exclusively, as the reviewed patch did, leaking one slot per
    /// extent — for regression tests of the checker.
    pub fn free_all_swap_pages(&mut self, swap: &mut SwapSubsystem) {
        let exclusive = swap.bugs.hib_free_exclusive_end;
        for (start, end) in std::mem::take(&mut self.ext) {
            let last = if exclusive { end } else { end + 1 };
            for off in start..last {
                if let Some(e) = SwpEntry::new(self.ty, SwapOffset(off)) {
                    swap.swap_free_hibernation_slot(e);
                }
            }
        }
    }

    /// Checks that the device's hibernation slots are exactly the extents'
    /// slots; one line per violation (a leaked or a lost slot).
    pub fn check(&self, swap: &SwapSubsystem) -> Vec<String> {
        check_hibernation_slots(swap, self.ty, |off| self.contains(off))
    }
}

/// Every hibernation-owned slot of device `ty` must be claimed by `owned`,
/// and every claimed slot must be hibernation-owned.
pub fn check_hibernation_slots(
    swap: &SwapSubsystem,
    ty: SwapType,
    owned: impl Fn(u64) -> bool,
) -> Vec<String> {
    let mut bad = Vec::new();
    let Some(d) = swap.device(ty) else { return bad };
    for off in 1..d.max() {
        let hib = d.slot(SwapOffset(off)).binding == SlotBinding::Hibernation;
        let own = owned(off);
        if hib && !own {
            bad.push(format!(
                "slot {ty:?}:{off:#x}: hibernation slot that no extent holds (leak)"
            ));
        } else if own && !hib {
            bad.push(format!(
                "slot {ty:?}:{off:#x}: in an extent but not a hibernation slot"
            ));
        }
    }
    bad
}
