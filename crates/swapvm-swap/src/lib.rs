//! swapvm-swap: swap devices and the swap-entry lifecycle.
//!
//! It owns the on-disk swap header ([`header`], compatible with util-linux
//! `mkswap`), the per-slot swap table ([`table`]), the cluster allocator
//! ([`cluster`]), the swap cache and the folio-based lifecycle API of the
//! swap-table rework ([`swapfile`]: `folio_alloc_swap`, `folio_dup_swap`,
//! `folio_put_swap`, `swap_dup_entry_direct`, `swap_put_entries_direct`,
//! `folio_free_swap`, the hibernation slots), and swap I/O through the
//! device's io_uring engine ([`page_io`]), and zswap, the compressed cache
//! in front of the devices ([`zswap`]).
//!
//! It refuses to know about page tables, RAM or reclaim policy: a folio is
//! what the [`SwapFolio`] trait shows (head pfn, order, lock, writeback,
//! `folio->swap`), and page bytes arrive as slices.
//!
//! Kernel counterparts: mm/swapfile.c, mm/swap_state.c, mm/swap_table.h,
//! mm/page_io.c, include/linux/swap.h.

#![warn(missing_docs)]

pub mod cluster;
pub mod footprint;
pub mod header;
pub mod hibernate;
pub mod page_io;
pub mod swapfile;
pub mod table;
pub mod zswap;

pub use cluster::AllocatorKind;
pub use hibernate::SwsuspExtents;
pub use page_io::{DeviceIoStats, SwapIoDone};
pub use swapfile::{
    sites, OrderStats, PutDirect, SeedBugs, SwapDeviceRef, SwapError, SwapFolio, SwapInfo,
    SwapOnOptions, SwapSubsystem,
};
pub use table::{Slot, SlotBinding, SHADOW_MAX};
pub use zswap::writeback::WriteOut;
pub use zswap::{Zswap, ZswapMemcg, ZswapParams, ZswapStats};
