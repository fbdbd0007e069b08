//! Page-table entries.
//!
//! A [`Pte`] is one tagged 64-bit word, laid out like x86-64's:
//!
//! ```text
//! present:      bit 0 = 1, bit 1 writable, bit 5 accessed, bit 6 dirty,
//!               bits 12..=43 pfn
//! swap (not present): bit 0 = 0, bits 1..=63 = SwpEntry::val()
//! none:         all zero
//! ```
//!
//! The hot path (a resident access) tests and sets bits on the raw word;
//! everything else decodes through [`Pte::kind`].

use crate::ids::{Pfn, SwpEntry};

/// One page-table entry.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
#[repr(transparent)]
pub struct Pte(u64);

/// A decoded [`Pte`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PteKind {
    /// Nothing mapped (`pte_none`).
    None,
    /// A present mapping of a frame.
    Present {
        /// The mapped frame.
        pfn: Pfn,
        /// Writes are allowed without a fault.
        writable: bool,
        /// Set by the emulated MMU on any access; cleared by reclaim.
        accessed: bool,
        /// Set by the emulated MMU on a write.
        dirty: bool,
    },
    /// A swap entry: the page lives in swap (and maybe the swap cache).
    Swap(SwpEntry),
}

impl Pte {
    /// Present bit.
    pub const PRESENT: u64 = 1 << 0;
    /// Writable bit.
    pub const WRITE: u64 = 1 << 1;
    /// Accessed ("young") bit.
    pub const ACCESSED: u64 = 1 << 5;
    /// Dirty bit.
    pub const DIRTY: u64 = 1 << 6;
    const PFN_SHIFT: u32 = 12;
    const PFN_MASK: u64 = 0xffff_ffff << Self::PFN_SHIFT;

    /// The empty entry.
    pub const NONE: Pte = Pte(0);

    /// A present entry mapping `pfn`.
    #[inline]
    pub fn present(pfn: Pfn, writable: bool, accessed: bool, dirty: bool) -> Pte {
        let mut v = Self::PRESENT | (u64::from(pfn.0) << Self::PFN_SHIFT);
        if writable {
            v |= Self::WRITE;
        }
        if accessed {
            v |= Self::ACCESSED;
        }
        if dirty {
            v |= Self::DIRTY;
        }
        Pte(v)
    }
    /// A non-present entry holding swap entry `e`.
    #[inline]
    pub fn swap(e: SwpEntry) -> Pte {
        Pte(e.val() << 1)
    }
    /// The raw word.
    #[inline]
    pub fn raw(self) -> u64 {
        self.0
    }
    /// Rebuilds a PTE from its raw word (page-table storage).
    #[inline]
    pub fn from_raw(v: u64) -> Pte {
        Pte(v)
    }
    /// `pte_none`.
    #[inline]
    pub fn is_none(self) -> bool {
        self.0 == 0
    }
    /// `pte_present`.
    #[inline]
    pub fn is_present(self) -> bool {
        self.0 & Self::PRESENT != 0
    }
    /// True if all bits in `flags` are set.
    #[inline]
    pub fn has(self, flags: u64) -> bool {
        self.0 & flags == flags
    }
    /// This entry with `flags` set.
    #[inline]
    pub fn with(self, flags: u64) -> Pte {
        Pte(self.0 | flags)
    }
    /// This entry with `flags` cleared.
    #[inline]
    pub fn without(self, flags: u64) -> Pte {
        Pte(self.0 & !flags)
    }
    /// The mapped frame of a present entry.
    #[inline]
    pub fn pfn(self) -> Pfn {
        debug_assert!(self.is_present());
        Pfn(((self.0 & Self::PFN_MASK) >> Self::PFN_SHIFT) as u32)
    }
    /// The swap entry of a swap PTE, if it is one.
    #[inline]
    pub fn swap_entry(self) -> Option<SwpEntry> {
        if self.is_present() {
            None
        } else {
            SwpEntry::from_val(self.0 >> 1)
        }
    }

    /// Decodes the entry.
    ///
    /// A non-present, non-zero word that is not a valid swap entry cannot be
    /// built through this API; it decodes as [`PteKind::None`] and callers
    /// that care check [`Pte::is_none`] first.
    pub fn kind(self) -> PteKind {
        if self.is_present() {
            PteKind::Present {
                pfn: self.pfn(),
                writable: self.has(Self::WRITE),
                accessed: self.has(Self::ACCESSED),
                dirty: self.has(Self::DIRTY),
            }
        } else if let Some(e) = self.swap_entry() {
            PteKind::Swap(e)
        } else {
            PteKind::None
        }
    }
}

impl std::fmt::Debug for Pte {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SwapOffset, SwapType};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn present_roundtrip(pfn in 0u32.., w: bool, a: bool, d: bool) {
            let p = Pte::present(Pfn(pfn), w, a, d);
            prop_assert_eq!(p.kind(), PteKind::Present { pfn: Pfn(pfn), writable: w, accessed: a, dirty: d });
            prop_assert!(p.swap_entry().is_none());
        }

        #[test]
        fn swap_roundtrip(ty in 0u8..32, off in 1u64..=SwpEntry::OFFSET_MAX) {
            let e = SwpEntry::new(SwapType(ty), SwapOffset(off)).unwrap();
            let p = Pte::swap(e);
            prop_assert!(!p.is_present());
            prop_assert!(!p.is_none());
            prop_assert_eq!(p.kind(), PteKind::Swap(e));
        }

        #[test]
        fn decode_never_panics(raw: u64) {
            let _ = Pte::from_raw(raw).kind();
        }
    }

    #[test]
    fn none_is_zero() {
        assert!(Pte::NONE.is_none());
        assert_eq!(Pte::NONE.kind(), PteKind::None);
    }
}
