//! swapvm-mm: the memory of the emulated machine.
//!
//! It owns emulated RAM (one memmap2 mapping holding the pages' real
//! bytes), per-frame folio metadata, four-level page tables, VMAs and
//! address spaces, anon_vma reverse mapping, the LRU list structures, the
//! zone watermarks, and the fault paths: the resident fast path, the
//! anonymous fault, the write-protect fault, and swap-in (`do_swap_page`).
//!
//! It refuses to decide what to reclaim (swapvm-reclaim does) and to move
//! bytes to disk itself (swapvm-swap does); faults that need either return
//! "retry after this event" instead of blocking.
//!
//! Kernel counterparts: mm/memory.c, mm/rmap.c, mm/mmap.c, mm/page_alloc.c,
//! include/linux/mm_inline.h. Simplifications: folios are order 0 for now;
//! page tables are not charged to RAM; one memory node and zone.

#![warn(missing_docs)]

pub mod anon_vma;
pub mod buddy;
pub mod fault;
pub mod folio;
pub mod footprint;
pub mod fork;
pub mod ksm;
pub mod lru;
pub mod lru_gen;
pub mod madvise;
pub mod memcg;
pub mod memory;
pub mod pgtable;
pub mod ram;
pub mod rmap;
pub mod shmem;
pub mod swap_state;
pub mod swapoff;
pub mod vma_map;
pub mod workingset;
pub mod zswap;

pub use fault::{FaultStop, Wait};
pub use folio::{pg, FolioMut, Folios, Page};
pub use fork::ForkError;
pub use ksm::{KsmStats, StableNode};
pub use lru::{LruList, Lruvec, Lruvecs};
pub use lru_gen::{LruGen, TierStats, MAX_NR_GENS, MAX_NR_TIERS, MIN_NR_GENS};
pub use memcg::{MemCgroup, MemCgroups, MemcgEvent, MemcgEvents, MemcgId};
pub use memory::{vm, AnonVma, AnonVmaChain, Memory, MmId, MmStruct, Vma, VmaKind, Watermarks};
pub use shmem::{ShmemEntry, ShmemInode};
pub use swapoff::Unuse;
pub use vma_map::VmaMap;
