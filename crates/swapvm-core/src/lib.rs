//! swapvm-core: the vocabulary every other swapvm crate speaks.
//!
//! It owns the index newtypes and units (`Pfn`, `Vpn`, `Order`, `SwapType`,
//! `SwapOffset`, `SwpEntry`), the page-table-entry encoding, the vmstat
//! counters under their kernel names, the warning registry that turns each
//! "Context:" rule into a counted, checkable contract, the deterministic RNG,
//! and the machine configuration types shared by all layers.
//!
//! It refuses to know how any of these are used: no folio, no swap slot
//! state, no I/O. Its counterparts in the kernel are
//! `include/linux/{mm_types,swapops,vmstat}.h` and `include/linux/mmdebug.h`.

#![warn(missing_docs)]

pub mod config;
pub mod fault;
pub mod ids;
pub mod list;
pub mod lockdep;
pub mod pte;
pub mod rng;
pub mod size;
pub mod timing;
pub mod vmstat;
pub mod warn;

pub use config::{ConfigError, MachineConfig};
pub use fault::FaultConfig;
pub use ids::{Order, Pfn, SwapOffset, SwapType, SwpEntry, Vpn, PAGE_SHIFT, PAGE_SIZE};
pub use lockdep::{LockClass, LockGuard, Lockdep};
pub use pte::{Pte, PteKind};
pub use rng::SimRng;
pub use vmstat::{VmEvent, VmStat};
pub use warn::{WarnSite, Warnings};
