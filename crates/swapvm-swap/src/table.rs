//! The swap table: one packed word per slot (mm/swap_table.h).
//!
//! Word layout:
//!
//! ```text
//! bits  0..=14  swap count: owners holding the entry (PTEs, shmem
//!               mappings); COUNT_BAD marks a slot that is never allocated
//!               (the header page, bad pages, the tail of the last cluster)
//! bit  15       zeromap: the slot's page was all zeros and was not written
//! bits 16..=17  tag: 0 nothing bound, 1 folio (swap cache), 2 shadow,
//!               3 hibernation-owned
//! bits 18..=63  payload: the folio's head pfn, or the shadow value
//! ```
//!
//! A slot is free iff its count is zero and no folio is bound (and it is
//! neither bad nor hibernation-owned); a free slot's word is zero except for
//! a possible shadow left by workingset eviction.

use swapvm_core::Pfn;

/// Count value of a slot that can never be allocated.
pub const COUNT_BAD: u16 = 0x7fff;
/// Largest ordinary swap count a slot can hold.
pub const COUNT_LIMIT: u16 = COUNT_BAD - 1;

const COUNT_MASK: u64 = 0x7fff;
const ZERO_BIT: u64 = 1 << 15;
const LOW_MASK: u64 = 0xffff;
const TAG_SHIFT: u32 = 16;
const TAG_MASK: u64 = 0b11 << TAG_SHIFT;
const PAYLOAD_SHIFT: u32 = 18;
/// Largest shadow value a slot can carry.
pub const SHADOW_MAX: u64 = (1 << (64 - PAYLOAD_SHIFT)) - 1;

const TAG_NONE: u64 = 0;
const TAG_FOLIO: u64 = 1;
const TAG_SHADOW: u64 = 2;
const TAG_HIBERNATION: u64 = 3;

/// What is bound to a slot besides its count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotBinding {
    /// Nothing.
    None,
    /// A folio in the swap cache (its head pfn) (`swp_tb_is_folio`).
    Folio(Pfn),
    /// A workingset shadow left at eviction (`swp_tb_is_shadow`).
    Shadow(u64),
    /// Owned by the hibernation image; ordinary routines must not touch it.
    Hibernation,
}

/// One slot's decoded state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Swap count ([`COUNT_BAD`] for an unusable slot).
    pub count: u16,
    /// Binding.
    pub binding: SlotBinding,
}

impl Slot {
    /// Free: no owner, no cached folio, usable.
    pub fn is_free(&self) -> bool {
        self.count == 0 && matches!(self.binding, SlotBinding::None | SlotBinding::Shadow(_))
    }
    /// Never allocatable.
    pub fn is_bad(&self) -> bool {
        self.count == COUNT_BAD
    }
}

/// The per-slot words of one device.
#[derive(Debug)]
pub struct SwapTable {
    words: Vec<u64>,
}

impl SwapTable {
    /// `nr` slots, all free.
    pub fn new(nr: u64) -> Self {
        SwapTable {
            words: vec![0; nr as usize],
        }
    }
    /// Slots in the table.
    pub fn len(&self) -> u64 {
        self.words.len() as u64
    }
    /// True if the table has no slots.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
    /// Host bytes of the words, by capacity.
    pub fn host_bytes(&self) -> u64 {
        (self.words.capacity() * std::mem::size_of::<u64>()) as u64
    }

    /// Decodes slot `i`.
    #[inline]
    pub fn get(&self, i: u64) -> Slot {
        let w = self.words[i as usize];
        let count = (w & COUNT_MASK) as u16;
        let payload = w >> PAYLOAD_SHIFT;
        let binding = match (w & TAG_MASK) >> TAG_SHIFT {
            TAG_NONE => SlotBinding::None,
            TAG_FOLIO => SlotBinding::Folio(Pfn(payload as u32)),
            TAG_SHADOW => SlotBinding::Shadow(payload),
            _ => SlotBinding::Hibernation,
        };
        Slot { count, binding }
    }

    /// Swap count of slot `i`.
    #[inline]
    pub fn count(&self, i: u64) -> u16 {
        (self.words[i as usize] & COUNT_MASK) as u16
    }

    /// Sets the count of slot `i`, keeping its binding.
    #[inline]
    pub fn set_count(&mut self, i: u64, count: u16) {
        let w = &mut self.words[i as usize];
        *w = (*w & !COUNT_MASK) | u64::from(count);
    }

    /// Sets the binding of slot `i`, keeping its count.
    #[inline]
    pub fn set_binding(&mut self, i: u64, b: SlotBinding) {
        let (tag, payload) = match b {
            SlotBinding::None => (TAG_NONE, 0),
            SlotBinding::Folio(pfn) => (TAG_FOLIO, u64::from(pfn.0)),
            SlotBinding::Shadow(s) => (TAG_SHADOW, s & SHADOW_MAX),
            SlotBinding::Hibernation => (TAG_HIBERNATION, 0),
        };
        let w = &mut self.words[i as usize];
        *w = (*w & LOW_MASK) | (tag << TAG_SHIFT) | (payload << PAYLOAD_SHIFT);
    }

    /// The zeromap bit of slot `i`.
    #[inline]
    pub fn zero(&self, i: u64) -> bool {
        self.words[i as usize] & ZERO_BIT != 0
    }

    /// Sets or clears the zeromap bit of slot `i`.
    #[inline]
    pub fn set_zero(&mut self, i: u64, zero: bool) {
        let w = &mut self.words[i as usize];
        if zero {
            *w |= ZERO_BIT;
        } else {
            *w &= !ZERO_BIT;
        }
    }

    /// Marks slot `i` as never allocatable.
    pub fn set_bad(&mut self, i: u64) {
        self.words[i as usize] = u64::from(COUNT_BAD);
    }

    /// Frees slot `i` completely (count zero, nothing bound).
    #[inline]
    pub fn clear(&mut self, i: u64) {
        self.words[i as usize] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_unpack() {
        let mut t = SwapTable::new(4);
        assert!(t.get(1).is_free());
        t.set_binding(1, SlotBinding::Folio(Pfn(0xabcdef)));
        t.set_count(1, 3);
        assert_eq!(
            t.get(1),
            Slot {
                count: 3,
                binding: SlotBinding::Folio(Pfn(0xabcdef))
            }
        );
        t.set_binding(1, SlotBinding::Shadow(SHADOW_MAX));
        assert_eq!(t.get(1).binding, SlotBinding::Shadow(SHADOW_MAX));
        assert_eq!(t.count(1), 3);
        t.set_count(1, 0);
        assert!(t.get(1).is_free());
        t.set_bad(2);
        assert!(t.get(2).is_bad() && !t.get(2).is_free());
        t.set_binding(3, SlotBinding::Hibernation);
        assert!(!t.get(3).is_free());
    }
}
