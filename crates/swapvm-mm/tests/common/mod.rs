//! The test rig shared by the memory-layer tests: memory and one swap
//! device on a real image in /var/tmp (io_uring), wired as the machine
//! wires them, with hand-driven swap-out and swap-in.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use swapvm_core::{Pfn, Pte, PteKind, SwpEntry, VmEvent, VmStat, Vpn, Warnings, PAGE_SIZE};
use swapvm_mm::{pg, FaultStop, Memory, MmId, Wait, Watermarks};
use swapvm_swap::header::mkswap;
use swapvm_swap::{Slot, SlotBinding, SwapOnOptions, SwapSubsystem};
use tempfile::NamedTempFile;

/// Disk-backed directory (O_DIRECT works there; /tmp may be tmpfs).
pub const TEST_DIR: &str = "/var/tmp";
pub const MIB: u64 = 1 << 20;
pub const LATENCY: u64 = 2;
pub const WMARK: Watermarks = Watermarks {
    min: 4,
    low: 8,
    high: 12,
};

/// Memory and one swap device, wired as the machine wires them.
pub struct Vm {
    pub mem: Memory,
    pub swap: SwapSubsystem,
    pub stat: Arc<VmStat>,
    pub warn: Arc<Warnings>,
    pub now: u64,
    _image: NamedTempFile,
}

impl Vm {
    pub fn new(frames: u32) -> Vm {
        let image = tempfile::Builder::new()
            .prefix("swapvm-faults-")
            .tempfile_in(TEST_DIR)
            .unwrap_or_else(|e| panic!("cannot create a temp file in {TEST_DIR}: {e}"));
        mkswap(image.path(), 4 * MIB, "faults", None).unwrap();
        let stat = Arc::new(VmStat::new());
        let warn = Arc::new(Warnings::new(false));
        let mem = Memory::new(frames, WMARK, Arc::clone(&stat), Arc::clone(&warn)).unwrap();
        let mut swap = SwapSubsystem::new(Arc::clone(&stat), Arc::clone(&warn), 1, LATENCY);
        swap.swapon(&SwapOnOptions {
            path: image.path().to_owned(),
            priority: 0,
            // io_uring with O_DIRECT.
            engine: Default::default(),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("swapon of a fresh image failed (io_uring needed): {e}"));
        Vm {
            mem,
            swap,
            stat,
            warn,
            now: 0,
            _image: image,
        }
    }

    pub fn access(&mut self, mm: MmId, vpn: Vpn, write: bool) -> Result<Pfn, FaultStop> {
        self.now += 1;
        self.mem.access(&mut self.swap, mm, vpn, write, self.now)
    }

    pub fn pte(&self, mm: MmId, vpn: Vpn) -> Pte {
        self.mem.pt.lookup(self.mem.mm(mm).pgd, vpn)
    }

    /// Writes a page through the MMU: faults it in and fills it.
    pub fn write_page(&mut self, mm: MmId, vpn: Vpn, seed: u8) -> Pfn {
        let pfn = self.access(mm, vpn, true).unwrap();
        self.mem.ram.page_mut(pfn).copy_from_slice(&pattern(seed));
        pfn
    }

    pub fn total_swap(&self) -> i64 {
        self.swap.total_swap_pages() as i64
    }

    /// Swaps the page at `vpn` out by hand, as reclaim does: isolate, lock,
    /// allocate swap, unmap through rmap, write, free the frame.
    pub fn swap_out(&mut self, mm: MmId, vpn: Vpn) -> SwpEntry {
        let pfn = self.pte(mm, vpn).pfn();
        assert!(self.mem.lru.del(&mut self.mem.folios, pfn), "on the LRU");
        self.mem.folios.get_mut(pfn).set(pg::LOCKED);
        let entry = match self.mem.folios.get(pfn).swap {
            Some(e) => e,
            None => self
                .swap
                .folio_alloc_swap(&mut self.mem.folios.folio(pfn), 0)
                .unwrap(),
        };
        assert_eq!(self.swap.swap_count(entry), 0);
        assert!(self.mem.try_to_unmap(&mut self.swap, pfn), "unmapped");
        assert_eq!(self.pte(mm, vpn).kind(), PteKind::Swap(entry));
        assert_eq!(self.swap.swap_count(entry), 1, "the swap PTE owns the slot");
        assert_eq!(self.mem.folios.get(pfn).mapcount, 0);

        self.swap
            .swap_writepage(entry, self.mem.ram.page(pfn), u64::from(pfn.0), self.now)
            .unwrap();
        let f = self.mem.folios.get_mut(pfn);
        f.clear(pg::DIRTY);
        f.set(pg::WRITEBACK);
        self.now += LATENCY;
        let done = self.swap.complete_due(self.now);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].cookie, u64::from(pfn.0));
        assert_eq!(done[0].entry, entry);
        assert!(done[0].result.is_ok(), "{:?}", done[0].result);
        self.mem.folios.get_mut(pfn).clear(pg::WRITEBACK);

        let free = self.mem.nr_free();
        self.mem.remove_mapping(&mut self.swap, pfn, None);
        assert_eq!(self.mem.nr_free(), free + 1, "frame freed");
        assert_eq!(
            self.swap.slot(entry),
            Some(Slot {
                count: 1,
                binding: SlotBinding::None
            }),
            "only the swap PTE holds the slot now"
        );
        entry
    }

    /// A swap fault at `vpn`: starts the read (major fault), retries while
    /// it is in flight, delivers it, and retries to completion.
    pub fn swap_in(&mut self, mm: MmId, vpn: Vpn, write: bool) -> Pfn {
        let entry = self.pte(mm, vpn).swap_entry().unwrap();
        let majflt = self.stat.get(VmEvent::PgMajFault);
        let pfn = match self.access(mm, vpn, write) {
            Err(FaultStop::Retry(Wait::Folio(pfn))) => pfn,
            r => panic!("swap fault: expected Retry(Folio), got {r:?}"),
        };
        assert_eq!(self.stat.get(VmEvent::PgMajFault), majflt + 1);
        let p = self.mem.folios.get(pfn);
        assert!(p.test(pg::LOCKED), "locked for the read");
        assert_eq!(p.swap, Some(entry), "in the swap cache");
        assert_eq!(self.swap.swap_cache_get_folio(entry), Some(pfn));
        assert_eq!(self.swap.swap_count(entry), 1, "not mapped yet");

        // The read is not done: the retry waits on the same folio, and it
        // is not another major fault.
        assert_eq!(
            self.access(mm, vpn, write),
            Err(FaultStop::Retry(Wait::Folio(pfn)))
        );
        assert_eq!(self.stat.get(VmEvent::PgMajFault), majflt + 1);

        self.now += LATENCY;
        let done = self.swap.complete_due(self.now);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].cookie, u64::from(pfn.0));
        assert_eq!(done[0].entry, entry);
        assert!(done[0].result.is_ok(), "{:?}", done[0].result);
        self.mem.swap_read_done(pfn, Ok(done[0].buf.as_slice()));

        assert_eq!(self.access(mm, vpn, write), Ok(pfn));
        assert_eq!(self.mem.folios.get(pfn).mapcount, 1);
        assert!(!self.mem.folios.get(pfn).test(pg::LOCKED));
        pfn
    }

    /// Faults `vpn` in for reading, completing every swap read (the
    /// fault's and readahead's) as it falls due.
    pub fn fault_in(&mut self, mm: MmId, vpn: Vpn) -> Pfn {
        loop {
            match self.access(mm, vpn, false) {
                Ok(pfn) => return pfn,
                Err(FaultStop::Retry(Wait::Folio(_))) => {
                    self.now += LATENCY;
                    for d in self.swap.complete_due(self.now) {
                        assert!(d.result.is_ok(), "{:?}", d.result);
                        self.mem
                            .swap_read_done(Pfn(d.cookie as u32), Ok(d.buf.as_slice()));
                        self.swap.recycle(d.buf);
                    }
                }
                r => panic!("fault at {vpn:?}: {r:?}"),
            }
        }
    }

    pub fn assert_clean(&self) {
        let bad = self.swap.check_accounting();
        assert!(bad.is_empty(), "swap accounting: {bad:#?}");
        assert_eq!(
            self.warn.total(),
            0,
            "contract warnings: {:#?}",
            self.warn.records()
        );
    }
}

/// Distinct, recognisable page contents.
pub fn pattern(seed: u8) -> Vec<u8> {
    (0..PAGE_SIZE)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}
