//! A batch's ops, an access packed in 4 bytes.

use super::*;

/// An [`Op::Access`] in 4 bytes: `region << 10 | page << 1 | write`, for
/// a region below [`Self::REGIONS`] (page below [`REGION_PAGES`], 512).
/// What [`TraceProcess::ready`] hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct PackedAccess(u32);

pub(super) const PAGE_BITS: u32 = REGION_PAGES.trailing_zeros();
const _: () = assert!(1 << PAGE_BITS == REGION_PAGES && PAGE_BITS == 9);

impl PackedAccess {
    /// Regions a packed access can name: 2^22 (8 TiB of 2 MiB chunks); an
    /// access of a later region is kept as an [`Op`] (see the module
    /// documentation).
    pub const REGIONS: u32 = 1 << (32 - 1 - PAGE_BITS);

    /// Packs an access; `None` if `region` is not below [`Self::REGIONS`].
    /// `page` must be below [`REGION_PAGES`].
    #[inline(always)]
    pub(super) fn new(region: u32, page: u64, write: bool) -> Option<PackedAccess> {
        debug_assert!(page < REGION_PAGES);
        (region < Self::REGIONS).then_some(PackedAccess(
            region << (PAGE_BITS + 1) | (page as u32) << 1 | u32::from(write),
        ))
    }

    /// The slot of an op kept aside: never handed out.
    pub(super) const PLACEHOLDER: PackedAccess = PackedAccess(u32::MAX);

    /// The region.
    #[inline(always)]
    pub fn region(self) -> u32 {
        self.0 >> (PAGE_BITS + 1)
    }

    /// The page inside the region, below [`REGION_PAGES`].
    #[inline(always)]
    pub fn page(self) -> u64 {
        u64::from((self.0 >> 1) & (REGION_PAGES as u32 - 1))
    }

    /// A store (true) or a load.
    #[inline(always)]
    pub fn write(self) -> bool {
        self.0 & 1 != 0
    }

    /// The bits: equal for two accesses iff region, page and write are.
    #[inline(always)]
    pub fn bits(self) -> u32 {
        self.0
    }

    /// The access as an [`Op`].
    #[inline]
    pub fn op(self) -> Op {
        Op::Access {
            region: self.region(),
            page: self.page(),
            write: self.write(),
        }
    }
}

/// The ops of one batch: packed accesses, and the other ops by their
/// index in `packed` (in order; their slots hold a placeholder).
#[derive(Debug, Default)]
pub(super) struct OpBuf {
    pub(super) packed: Vec<PackedAccess>,
    pub(super) aside: Vec<(usize, Op)>,
}

impl OpBuf {
    /// Ops in the buffer.
    #[inline(always)]
    pub(super) fn len(&self) -> usize {
        self.packed.len()
    }

    /// Appends `op`.
    #[inline(always)]
    pub(super) fn push(&mut self, op: Op) {
        if let Op::Access {
            region,
            page,
            write,
        } = op
        {
            if let Some(a) = PackedAccess::new(region, page, write) {
                self.packed.push(a);
                return;
            }
        }
        self.push_aside(op);
    }

    #[inline(never)]
    pub(super) fn push_aside(&mut self, op: Op) {
        self.aside.push((self.packed.len(), op));
        self.packed.push(PackedAccess::PLACEHOLDER);
    }

    pub(super) fn clear(&mut self) {
        self.packed.clear();
        self.aside.clear();
    }

    pub(super) fn with_capacity(cap: usize) -> OpBuf {
        OpBuf {
            packed: Vec::with_capacity(cap),
            aside: Vec::new(),
        }
    }
}
