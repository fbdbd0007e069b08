//! The vocabulary a generator speaks to the machine.

/// What a process does next.
///
/// Regions are numbered from 0 per process; a page is an index inside its
/// region, never an address, so the machine chooses the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Map an anonymous region `region` of `pages` pages (regions numbered
    /// from 0 per process).
    Mmap {
        /// The region being created.
        region: u32,
        /// Its length in 4 KiB pages.
        pages: u64,
    },
    /// Touch page `page` (index inside the region) of `region`; `write` =
    /// store, else load.
    Access {
        /// A region mapped earlier by this process and not yet unmapped.
        region: u32,
        /// Page index inside the region, below its `pages`.
        page: u64,
        /// A store (true) or a load (false).
        write: bool,
    },
    /// Unmap the region.
    Munmap {
        /// A region mapped earlier by this process.
        region: u32,
    },
    /// The process exits.
    Exit,
}
