//! Index newtypes and units.
//!
//! Every index is a `Copy` newtype with explicit conversions and no blanket
//! arithmetic, so a page frame number cannot be added to a swap offset by
//! accident.

use std::fmt;
use std::num::NonZeroU64;

/// Bytes in one emulated page (and one swap slot).
pub const PAGE_SIZE: usize = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;
const _: () = assert!(1usize << PAGE_SHIFT == PAGE_SIZE);

/// Page frame number: index of a 4 KiB frame in emulated RAM.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pfn(pub u32);

impl Pfn {
    /// The frame as an index into per-frame arrays.
    #[inline]
    pub fn idx(self) -> usize {
        self.0 as usize
    }
    /// The frame `n` pages after this one (tail pages of a folio).
    #[inline]
    #[allow(clippy::should_implement_trait)] // explicit arithmetic, no operators by design
    pub fn add(self, n: u32) -> Pfn {
        Pfn(self.0 + n)
    }
}

impl fmt::Debug for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pfn:{:#x}", self.0)
    }
}

/// Virtual page number: a user virtual address shifted right by [`PAGE_SHIFT`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Vpn(pub u64);

impl Vpn {
    /// Number of virtual-address bits the emulated MMU translates (4 levels).
    pub const VA_BITS: u32 = 48;
    /// One past the highest valid virtual page number.
    pub const END: u64 = 1 << (Self::VA_BITS - PAGE_SHIFT);

    /// The page containing byte address `addr`.
    #[inline]
    pub fn from_addr(addr: u64) -> Vpn {
        Vpn(addr >> PAGE_SHIFT)
    }
    /// First byte address of this page.
    #[inline]
    pub fn addr(self) -> u64 {
        self.0 << PAGE_SHIFT
    }
    /// The page `n` pages after this one.
    #[inline]
    #[allow(clippy::should_implement_trait)] // explicit arithmetic, no operators by design
    pub fn add(self, n: u64) -> Vpn {
        Vpn(self.0 + n)
    }
}

impl fmt::Debug for Vpn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "va:{:#x}", self.addr())
    }
}

/// Folio order: a folio spans `1 << order` pages.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Order(u8);

impl Order {
    /// Largest order swapvm models: a PMD-sized (2 MiB) folio.
    pub const MAX: u8 = 9;
    /// A single page.
    pub const ZERO: Order = Order(0);

    /// Checked constructor.
    ///
    /// # Panics
    /// If `order > Order::MAX`; orders come from code, not from input.
    pub fn new(order: u8) -> Order {
        assert!(
            order <= Self::MAX,
            "folio order {order} beyond {}",
            Self::MAX
        );
        Order(order)
    }
    /// The raw order.
    #[inline]
    pub fn get(self) -> u8 {
        self.0
    }
    /// Pages in a folio of this order.
    #[inline]
    pub fn nr_pages(self) -> u32 {
        1 << self.0
    }
}

/// Index of a swap device (the kernel's swap type, at most 32 of them).
/// Printed `swp:N`, so that a type and an offset read `swp:0:0x200` as an
/// entry does.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SwapType(pub u8);

impl fmt::Debug for SwapType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "swp:{}", self.0)
    }
}

impl SwapType {
    /// The kernel's MAX_SWAPFILES (without the special types).
    pub const MAX: u8 = 32;
}

/// Slot index inside one swap device. Slot 0 holds the swap header and is
/// never allocated.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct SwapOffset(pub u64);

impl SwapOffset {
    /// The offset as an index into per-slot arrays.
    #[inline]
    pub fn idx(self) -> usize {
        self.0 as usize
    }
    /// The slot `n` after this one.
    #[inline]
    #[allow(clippy::should_implement_trait)] // explicit arithmetic, no operators by design
    pub fn add(self, n: u64) -> SwapOffset {
        SwapOffset(self.0 + n)
    }
}

/// A swap entry: device and slot, packed in one non-zero word.
///
/// Bit layout of the word: bits 0..=49 offset, bits 50..=54 type. Entry 0
/// (type 0, offset 0: the header slot of the first device) is the kernel's
/// "no entry" and is unrepresentable here, so `Option<SwpEntry>` is one word
/// and a put on entry 0 cannot be expressed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SwpEntry(NonZeroU64);

impl SwpEntry {
    /// Bits of the word holding the offset.
    pub const OFFSET_BITS: u32 = 50;
    /// Largest offset an entry can carry.
    pub const OFFSET_MAX: u64 = (1 << Self::OFFSET_BITS) - 1;

    /// Packs `ty` and `offset`; `None` for the unrepresentable entry 0 or
    /// out-of-range fields.
    pub fn new(ty: SwapType, offset: SwapOffset) -> Option<SwpEntry> {
        if ty.0 >= SwapType::MAX || offset.0 > Self::OFFSET_MAX {
            return None;
        }
        NonZeroU64::new((u64::from(ty.0) << Self::OFFSET_BITS) | offset.0).map(SwpEntry)
    }
    /// Rebuilds an entry from [`SwpEntry::val`].
    pub fn from_val(val: u64) -> Option<SwpEntry> {
        let e = SwpEntry(NonZeroU64::new(val)?);
        (e.ty().0 < SwapType::MAX && val >> (Self::OFFSET_BITS + 5) == 0).then_some(e)
    }
    /// The packed word.
    #[inline]
    pub fn val(self) -> u64 {
        self.0.get()
    }
    /// The device (`swp_type`).
    #[inline]
    pub fn ty(self) -> SwapType {
        SwapType((self.0.get() >> Self::OFFSET_BITS) as u8)
    }
    /// The slot (`swp_offset`).
    #[inline]
    pub fn offset(self) -> SwapOffset {
        SwapOffset(self.0.get() & Self::OFFSET_MAX)
    }
    /// The entry `n` slots further on the same device.
    ///
    /// # Panics
    /// If the offset overflows; callers stay within one cluster.
    #[inline]
    #[allow(clippy::should_implement_trait)] // explicit arithmetic, no operators by design
    pub fn add(self, n: u64) -> SwpEntry {
        let off = self.offset().0 + n;
        assert!(off <= Self::OFFSET_MAX);
        SwpEntry(NonZeroU64::new(self.0.get() + n).expect("non-zero plus n is non-zero"))
    }
}

impl fmt::Debug for SwpEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "swp:{}:{:#x}", self.ty().0, self.offset().0)
    }
}

impl fmt::Display for SwpEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_entries_print_as_swp_type_offset() {
        let e = SwpEntry::new(SwapType(0), SwapOffset(0x200)).unwrap();
        assert_eq!(format!("{e}"), "swp:0:0x200");
        assert_eq!(format!("{e:?}"), "swp:0:0x200");
        assert_eq!(format!("{:?}:{:#x}", e.ty(), e.offset().0), "swp:0:0x200");
    }
    use proptest::prelude::*;

    #[test]
    fn entry_zero_is_unrepresentable() {
        assert!(SwpEntry::new(SwapType(0), SwapOffset(0)).is_none());
        assert!(SwpEntry::from_val(0).is_none());
        assert_eq!(std::mem::size_of::<Option<SwpEntry>>(), 8);
    }

    #[test]
    fn entry_rejects_out_of_range() {
        assert!(SwpEntry::new(SwapType(32), SwapOffset(1)).is_none());
        assert!(SwpEntry::new(SwapType(0), SwapOffset(SwpEntry::OFFSET_MAX + 1)).is_none());
        assert!(SwpEntry::from_val(u64::MAX).is_none());
    }

    proptest! {
        #[test]
        fn entry_roundtrip(ty in 0u8..32, off in 1u64..=SwpEntry::OFFSET_MAX) {
            let e = SwpEntry::new(SwapType(ty), SwapOffset(off)).unwrap();
            prop_assert_eq!(e.ty(), SwapType(ty));
            prop_assert_eq!(e.offset(), SwapOffset(off));
            prop_assert_eq!(SwpEntry::from_val(e.val()), Some(e));
        }
    }
}
