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
    /// Map a shared anonymous region (`MAP_SHARED|MAP_ANONYMOUS`): shmem
    /// backed, shared with children forked later.
    MmapShared {
        /// The region being created.
        region: u32,
        /// Its length in 4 KiB pages.
        pages: u64,
    },
    /// Map `pages` pages of tmpfs file `file` shared, creating the file (or
    /// growing it with holes) to at least that size. File numbers are
    /// global to the workload, so processes share files by number.
    ShmemMap {
        /// The region being created.
        region: u32,
        /// The file.
        file: u32,
        /// Pages mapped from the file's start.
        pages: u64,
    },
    /// Truncate tmpfs file `file` to `pages` pages.
    ShmemTruncate {
        /// The file.
        file: u32,
        /// The new size.
        pages: u64,
    },
    /// Unlink tmpfs file `file`: it goes once nothing maps it.
    ShmemUnlink {
        /// The file.
        file: u32,
    },
    /// Store content `pool` of a small pool of identical contents to a page
    /// (KSM-mergeable data: every page filled from the same pool entry has
    /// the same bytes).
    Fill {
        /// A region mapped earlier.
        region: u32,
        /// Page index inside the region.
        page: u64,
        /// Which pool content.
        pool: u32,
    },
    /// `madvise` over the whole region, or over a range of it as
    /// `madvise(2)` takes an address range.
    Madvise {
        /// A region mapped earlier.
        region: u32,
        /// The advice.
        advice: Advice,
        /// `[first, end)` page offsets inside the region (`None`: all of
        /// it); clipped to the region's size.
        pages: Option<PageRange>,
    },
    /// A mark: the machine records every vmstat counter at this point of
    /// the process's stream under `id` (report.json `marks`), so a tool can
    /// read counters per step of one run.
    Mark {
        /// The caller's label.
        id: u32,
    },
    /// `fork`: the child starts with a copy of the address space and runs
    /// the generator's child stream.
    Fork,
    /// Sleep for `ticks` ticks.
    Sleep {
        /// How long.
        ticks: u64,
    },
    /// `swapoff` of swap device `device` (its index among the config's
    /// `[[swap]]` entries). It starts the machine's swapoff task and
    /// returns at once (like `swapoff &`): the process goes on while the
    /// device is read back over later ticks.
    Swapoff {
        /// Index of the `[[swap]]` entry.
        device: u32,
    },
    /// `swapon` of swap device `device` again after a swapoff.
    Swapon {
        /// Index of the `[[swap]]` entry.
        device: u32,
    },
    /// A hibernate cycle to swap device `device`: the machine freezes every
    /// task, writes a snapshot of the RAM in use to hibernation slots,
    /// reads it back and verifies it, releases the slots and thaws (as a
    /// hibernation whose resume finds the image intact). The process goes
    /// on after the thaw.
    Hibernate {
        /// Index of the `[[swap]]` entry.
        device: u32,
    },
    /// A cgroup interface file write; the machine takes its contents from
    /// the source ([`crate::ProcessSource::take_cgroup_write`]).
    CgroupWrite,
    /// A command written to `/sys/kernel/debug/lru_gen`.
    LruGen(swapvm_core::config::lru_gen::LruGenCmd),
}

/// Page offsets `[start, end)` inside a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRange {
    /// First page.
    pub start: u64,
    /// One past the last page.
    pub end: u64,
}

/// `madvise` advice swapvm models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advice {
    /// `MADV_DONTNEED`.
    DontNeed,
    /// `MADV_FREE`.
    Free,
    /// `MADV_COLD`.
    Cold,
    /// `MADV_PAGEOUT`.
    PageOut,
    /// `MADV_MERGEABLE`.
    Mergeable,
    /// `MADV_UNMERGEABLE`.
    Unmergeable,
    /// `MADV_HUGEPAGE`.
    HugePage,
    /// `MADV_NOHUGEPAGE`.
    NoHugePage,
}

impl Advice {
    /// Whether the advice sets a VMA flag (it then applies to the whole
    /// region: swapvm does not split VMAs) rather than acting on pages.
    pub fn is_vma_flag(self) -> bool {
        matches!(
            self,
            Advice::Mergeable | Advice::Unmergeable | Advice::HugePage | Advice::NoHugePage
        )
    }
}
