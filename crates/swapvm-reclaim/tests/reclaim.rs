//! Integration tests of the reclaim policy (mm/vmscan.c counterparts) on a
//! small machine assembled by hand: 256 frames, a real swap image in
//! /var/tmp on the io_uring engine, and a [`Reclaimer`]. They check that
//! kswapd reclaims to the high watermark and frees folios when their
//! writes complete, that referenced pages survive while cold ones go,
//! direct reclaim's counters, and the write-error path.

// Tests may unwrap; clippy's allow-unwrap-in-tests does not reach the
// helpers of an integration-test crate.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use swapvm_core::config::ReclaimConfig;
use swapvm_core::{Pfn, PteKind, SwpEntry, VmEvent, VmStat, Vpn, Warnings, PAGE_SIZE};
use swapvm_mm::{pg, FaultStop, LruList, Memory, MmId, Wait, Watermarks};
use swapvm_reclaim::{Progress, Reclaimer};
use swapvm_swap::header::mkswap;
use swapvm_swap::{SwapOnOptions, SwapSubsystem};
use tempfile::NamedTempFile;

/// Disk-backed directory (O_DIRECT works there; /tmp may be tmpfs).
const TEST_DIR: &str = "/var/tmp";
const MIB: u64 = 1 << 20;
const FRAMES: u32 = 256;
const LATENCY: u64 = 1;
const WMARK: Watermarks = Watermarks {
    min: 16,
    low: 32,
    high: 48,
};
/// `SWAP_CLUSTER_MAX` of the default config: folios per scan batch.
const BATCH: u64 = 32;

/// The machine's memory, swap and reclaim, driven by the test.
struct Rig {
    mem: Memory,
    swap: SwapSubsystem,
    reclaim: Reclaimer,
    stat: Arc<VmStat>,
    warn: Arc<Warnings>,
    mm: MmId,
    now: u64,
    _image: NamedTempFile,
}

impl Rig {
    fn new() -> Rig {
        Rig::with_device(false)
    }

    /// A rig whose device reads synchronously (`SWP_SYNCHRONOUS_IO`, as
    /// zram's do) when `synchronous_io`.
    fn with_device(synchronous_io: bool) -> Rig {
        let image = tempfile::Builder::new()
            .prefix("swapvm-reclaim-")
            .tempfile_in(TEST_DIR)
            .unwrap_or_else(|e| panic!("cannot create a temp file in {TEST_DIR}: {e}"));
        mkswap(image.path(), 16 * MIB, "reclaim", None).unwrap();
        let stat = Arc::new(VmStat::new());
        let warn = Arc::new(Warnings::new(false));
        let mut mem = Memory::new(FRAMES, WMARK, Arc::clone(&stat), Arc::clone(&warn)).unwrap();
        let mut swap = SwapSubsystem::new(Arc::clone(&stat), Arc::clone(&warn), 1, LATENCY);
        swap.swapon(&SwapOnOptions {
            path: image.path().to_owned(),
            priority: 0,
            // io_uring with O_DIRECT.
            engine: Default::default(),
            synchronous_io,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("swapon of a fresh image failed (io_uring needed): {e}"));
        let reclaim = Reclaimer::new(ReclaimConfig::default(), u64::from(FRAMES));
        let mm = mem.mm_create();
        Rig {
            mem,
            swap,
            reclaim,
            stat,
            warn,
            mm,
            now: 0,
            _image: image,
        }
    }

    fn access(&mut self, vpn: Vpn, write: bool) -> Result<Pfn, FaultStop> {
        self.mem
            .access(&mut self.swap, self.mm, vpn, write, self.now)
    }

    /// Maps `pages` and writes each one with a recognisable pattern.
    fn fill(&mut self, pages: u64, tag: u8) -> Vpn {
        let r = self.mem.mmap_anon(self.mm, pages);
        for i in 0..pages {
            let pfn = self.access(r.add(i), true).unwrap();
            self.mem.ram.page_mut(pfn).copy_from_slice(&pattern(tag, i));
        }
        r
    }

    fn pte(&self, vpn: Vpn) -> PteKind {
        self.mem.pt.lookup(self.mem.mm(self.mm).pgd, vpn).kind()
    }

    /// Delivers the swap I/O due now, as the machine does: reads complete
    /// the swap-in, writes end writeback through reclaim. `ok` decides a
    /// write's outcome by frame. Returns the frames whose writes ended.
    fn deliver(&mut self, mut ok: impl FnMut(Pfn) -> bool) -> Vec<Pfn> {
        let mut written = Vec::new();
        for d in self.swap.complete_due(self.now) {
            assert!(
                d.result.is_ok(),
                "{:?} of {:?}: {:?}",
                d.kind,
                d.entry,
                d.result
            );
            let pfn = Pfn(d.cookie as u32);
            if self.mem.folios.get(pfn).test(pg::WRITEBACK) {
                let ok = ok(pfn);
                self.reclaim
                    .writeback_done(&mut self.mem, &mut self.swap, pfn, ok);
                written.push(pfn);
            } else {
                self.mem.swap_read_done(pfn, Ok(d.buf.as_slice()));
            }
            self.swap.recycle(d.buf);
        }
        written
    }

    /// Advances time past the I/O latency and delivers everything.
    fn settle(&mut self) -> Vec<Pfn> {
        self.now += LATENCY;
        self.deliver(|_| true)
    }

    /// One machine tick: deliver due I/O, wake kswapd if needed, run it.
    fn tick(&mut self) -> Progress {
        self.now += 1;
        self.deliver(|_| true);
        self.reclaim.maybe_wake_kswapd(&self.mem);
        self.reclaim
            .kswapd_tick(&mut self.mem, &mut self.swap, 0, self.now)
    }

    /// Reads `vpn` back, through swap-in if it was evicted.
    fn read_back(&mut self, vpn: Vpn) -> Vec<u8> {
        for _ in 0..64 {
            match self.access(vpn, false) {
                Ok(pfn) => return self.mem.ram.page(pfn).to_vec(),
                Err(FaultStop::Retry(Wait::Folio(_))) => {
                    self.settle();
                }
                // Memory is short: let kswapd make room, as a tick would.
                Err(FaultStop::Retry(Wait::Memory)) => {
                    self.tick();
                }
                Err(e) => panic!("reading {vpn:?}: {e:?}"),
            }
        }
        panic!("{vpn:?} never became readable");
    }

    fn assert_clean(&self) {
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

fn pattern(tag: u8, i: u64) -> Vec<u8> {
    let mut p = vec![tag; PAGE_SIZE];
    p[..8].copy_from_slice(&i.to_le_bytes());
    p
}

fn swap_entry(k: PteKind) -> Option<SwpEntry> {
    match k {
        PteKind::Swap(e) => Some(e),
        _ => None,
    }
}

#[test]
fn kswapd_reclaims_to_high_then_frees_on_write_completion() {
    let mut rig = Rig::new();
    let pages = u64::from(FRAMES) - WMARK.low + 4;
    let r = rig.fill(pages, 0x11);
    let free = rig.mem.nr_free();
    assert!(free < WMARK.low && free > WMARK.min);
    rig.reclaim.maybe_wake_kswapd(&rig.mem);
    assert!(rig.reclaim.kswapd_awake());
    assert_eq!(rig.stat.get(VmEvent::KswapdWake), 1);

    // kswapd runs without I/O being delivered: it stops once free memory
    // plus writes in flight reach high.
    let mut scanned = 0;
    for _ in 0..64 {
        if rig.mem.nr_free() + rig.reclaim.nr_writeback() >= WMARK.high {
            break;
        }
        rig.now += 1;
        scanned += rig
            .reclaim
            .kswapd_tick(&mut rig.mem, &mut rig.swap, 0, rig.now)
            .scanned;
    }
    let wb = rig.reclaim.nr_writeback();
    let reached = rig.mem.nr_free() + wb;
    assert!(reached >= WMARK.high, "kswapd stopped short: {reached}");
    assert!(
        reached < WMARK.high + BATCH,
        "kswapd overshot by more than a batch: {reached}"
    );
    assert!(scanned > 0);
    assert_eq!(rig.stat.get(VmEvent::PgScanKswapd), scanned);
    assert_eq!(rig.stat.get(VmEvent::PgScanDirect), 0);
    assert_eq!(rig.mem.nr_free(), free, "dirty pages wait for their writes");
    assert!(wb > 0);
    assert_eq!(rig.swap.io_in_flight() as u64, wb, "writes submitted");
    assert_eq!(rig.stat.get(VmEvent::PswpOut), wb);
    assert_eq!(rig.stat.get(VmEvent::PgStealKswapd), 0);

    let evicted: Vec<u64> = (0..pages)
        .filter(|&i| swap_entry(rig.pte(r.add(i))).is_some())
        .collect();
    assert_eq!(evicted.len() as u64, wb);
    for &i in &evicted {
        let e = swap_entry(rig.pte(r.add(i))).unwrap();
        assert_eq!(rig.swap.swap_count(e), 1);
        let pfn = rig.swap.swap_cache_get_folio(e).unwrap();
        assert!(rig.mem.folios.get(pfn).test(pg::WRITEBACK));
    }

    // The writes complete: their folios are freed.
    let written = rig.settle();
    assert_eq!(written.len() as u64, wb);
    assert_eq!(rig.reclaim.nr_writeback(), 0);
    assert_eq!(rig.mem.nr_free(), free + wb);
    assert_eq!(rig.stat.get(VmEvent::PgStealKswapd), wb);
    assert_eq!(rig.stat.get(VmEvent::PgStealDirect), 0);
    for pfn in written {
        assert!(!rig.mem.folios.get(pfn).test(pg::ALLOCATED), "{pfn:?}");
    }
    for &i in &evicted {
        let e = swap_entry(rig.pte(r.add(i))).unwrap();
        assert_eq!(rig.swap.swap_cache_get_folio(e), None);
        assert_eq!(rig.swap.swap_count(e), 1);
    }
    rig.assert_clean();

    // Free memory is at high: the next tick puts kswapd to sleep.
    assert!(rig.mem.nr_free() >= WMARK.high);
    assert_eq!(rig.tick().scanned, 0);
    assert!(!rig.reclaim.kswapd_awake());

    // What was written is what comes back.
    for &i in evicted.iter().take(4) {
        assert_eq!(rig.read_back(r.add(i)), pattern(0x11, i), "page {i}");
    }
    rig.assert_clean();
}

#[test]
fn referenced_hot_set_survives_while_the_cold_set_is_evicted() {
    const HOT: u64 = 16;
    const COLD: u64 = 64;
    const STREAM: u64 = 512;
    let mut rig = Rig::new();
    // One scan batch per tick, so the hot set can be touched between scans.
    rig.reclaim.kswapd_batches_per_tick = 1;
    // The hot set is the oldest: left alone, it would go first.
    let hot = rig.fill(HOT, 0x48);
    let cold = rig.fill(COLD, 0x43);

    let touch_hot = |rig: &mut Rig| {
        for i in 0..HOT {
            assert!(
                matches!(rig.pte(hot.add(i)), PteKind::Present { .. }),
                "hot page {i} was evicted (tick {})",
                rig.now
            );
            rig.access(hot.add(i), false).unwrap();
        }
    };

    let stream = rig.mem.mmap_anon(rig.mm, STREAM);
    for i in 0..STREAM {
        let mut tries = 0;
        while let Err(e) = rig.access(stream.add(i), true) {
            assert_eq!(e, FaultStop::Retry(Wait::Memory));
            tries += 1;
            assert!(tries < 100, "reclaim makes no progress");
            touch_hot(&mut rig);
            rig.tick();
        }
        touch_hot(&mut rig);
        rig.tick();
    }
    while rig.swap.io_in_flight() > 0 {
        rig.settle();
    }
    assert_eq!(rig.stat.get(VmEvent::AllocStall), 0, "kswapd kept up");

    for i in 0..HOT {
        assert!(
            matches!(rig.pte(hot.add(i)), PteKind::Present { .. }),
            "hot page {i} evicted"
        );
    }
    for i in 0..COLD {
        assert!(
            swap_entry(rig.pte(cold.add(i))).is_some(),
            "cold page {i} still resident: {:?}",
            rig.pte(cold.add(i))
        );
    }
    let hot_active = (0..HOT)
        .filter(|&i| match rig.pte(hot.add(i)) {
            PteKind::Present { pfn, .. } => rig.mem.folios.get(pfn).test(pg::ACTIVE),
            _ => false,
        })
        .count();
    assert_eq!(hot_active as u64, HOT, "the hot set was activated");
    assert!(rig.stat.get(VmEvent::PgActivate) >= HOT);
    assert!(rig.stat.get(VmEvent::PgStealKswapd) >= COLD);
    for i in [0, COLD / 2, COLD - 1] {
        assert_eq!(rig.read_back(cold.add(i)), pattern(0x43, i), "cold {i}");
    }
    for i in 0..HOT {
        assert_eq!(rig.read_back(hot.add(i)), pattern(0x48, i), "hot {i}");
    }
    rig.assert_clean();
}

#[test]
fn direct_reclaim_counts_allocstall_and_pgscan_direct() {
    let mut rig = Rig::new();
    let r = rig.mem.mmap_anon(rig.mm, u64::from(FRAMES));
    let mut n = 0;
    let stop = loop {
        match rig.access(r.add(n), true) {
            Ok(pfn) => {
                rig.mem.ram.page_mut(pfn).copy_from_slice(&pattern(0x44, n));
                n += 1;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(stop, FaultStop::Retry(Wait::Memory));
    assert_eq!(rig.mem.nr_free(), WMARK.min);

    // The first pass only finds every page referenced once.
    let mut calls = 0;
    let mut writeback = 0;
    let mut scanned = 0;
    while writeback == 0 {
        let p = rig
            .reclaim
            .direct_reclaim(&mut rig.mem, &mut rig.swap, 0, rig.now);
        calls += 1;
        scanned += p.scanned;
        writeback += p.writeback;
        assert_eq!(rig.stat.get(VmEvent::AllocStall), calls);
        assert!(calls < 32, "direct reclaim makes no progress");
    }
    assert!(rig.reclaim.kswapd_awake(), "direct reclaim wakes kswapd");
    assert!(scanned > 0);
    assert_eq!(rig.stat.get(VmEvent::PgScanDirect), scanned);
    assert_eq!(rig.stat.get(VmEvent::PgScanKswapd), 0);
    assert!(
        writeback < 2 * BATCH,
        "one call stops after a batch's worth"
    );
    assert_eq!(rig.reclaim.nr_writeback(), writeback);

    let written = rig.settle();
    assert_eq!(written.len() as u64, writeback);
    assert_eq!(rig.mem.nr_free(), WMARK.min + writeback);
    assert_eq!(rig.stat.get(VmEvent::PgStealDirect), writeback);
    assert_eq!(rig.stat.get(VmEvent::PgStealKswapd), 0);

    // The allocation that failed now succeeds.
    let pfn = rig.access(r.add(n), true).unwrap();
    assert!(rig.mem.ram.page(pfn).iter().all(|&b| b == 0));
    let evicted = (0..n)
        .find(|&i| swap_entry(rig.pte(r.add(i))).is_some())
        .unwrap();
    assert_eq!(rig.read_back(r.add(evicted)), pattern(0x44, evicted));
    rig.assert_clean();
}

#[test]
fn a_write_error_keeps_the_folio_in_memory_dirty_on_the_lru() {
    let mut rig = Rig::new();
    let pages = u64::from(FRAMES) - WMARK.low + 4;
    let r = rig.fill(pages, 0x45);
    for _ in 0..64 {
        if rig.reclaim.nr_writeback() > 0 {
            break;
        }
        rig.tick();
    }
    let wb = rig.reclaim.nr_writeback();
    assert!(wb >= 2, "kswapd started writes");
    let free = rig.mem.nr_free();

    // The first write fails; the others succeed.
    rig.now += LATENCY;
    let mut failed = None;
    let written = rig.deliver(|pfn| {
        if failed.is_none() {
            failed = Some(pfn);
            false
        } else {
            true
        }
    });
    assert_eq!(written.len() as u64, wb);
    let bad = failed.unwrap();
    assert_eq!(rig.reclaim.nr_writeback(), 0);
    assert_eq!(rig.mem.nr_free(), free + wb - 1, "the failed folio stays");
    assert_eq!(rig.stat.get(VmEvent::PgStealKswapd), wb - 1);

    let p = *rig.mem.folios.get(bad);
    assert!(p.test(pg::ALLOCATED | pg::UPTODATE), "{p:?}");
    assert!(p.test(pg::DIRTY), "dirty: its swap copy is not valid");
    assert!(!p.test(pg::WRITEBACK | pg::LOCKED), "{p:?}");
    assert!(p.test(pg::LRU | pg::ACTIVE), "back on the (active) LRU");
    let on_lru = rig
        .mem
        .lru
        .members(&mut rig.mem.folios, LruList::ActiveAnon);
    assert!(on_lru.contains(&bad.0));
    let e = p.swap.unwrap();
    assert_eq!(rig.swap.swap_cache_get_folio(e), Some(bad));
    let i = p.index - r.0;
    assert_eq!(rig.pte(r.add(i)), PteKind::Swap(e));
    assert_eq!(rig.swap.swap_count(e), 1);
    rig.assert_clean();

    // The data is still in memory: the fault is a swap-cache hit.
    let majflt = rig.stat.get(VmEvent::PgMajFault);
    let hits = rig.stat.get(VmEvent::SwapCacheHit);
    assert_eq!(rig.access(r.add(i), false), Ok(bad));
    assert_eq!(rig.stat.get(VmEvent::PgMajFault), majflt);
    assert_eq!(rig.stat.get(VmEvent::SwapCacheHit), hits + 1);
    assert_eq!(rig.mem.ram.page(bad), &pattern(0x45, i)[..]);
    rig.assert_clean();
}

#[test]
fn a_clean_swap_cache_folio_is_dropped_without_a_second_write() {
    const READ_BACK: u64 = 8;
    const STREAM: u64 = 600;
    let mut rig = Rig::new();
    let pages = u64::from(FRAMES) - WMARK.low + 4;
    let r = rig.fill(pages, 0x46);
    for _ in 0..64 {
        if rig.reclaim.nr_writeback() > 0 {
            break;
        }
        rig.tick();
    }
    rig.settle();
    let evicted: Vec<(u64, SwpEntry)> = (0..pages)
        .filter_map(|i| swap_entry(rig.pte(r.add(i))).map(|e| (i, e)))
        .take(READ_BACK as usize)
        .collect();
    assert_eq!(evicted.len() as u64, READ_BACK);

    // Read faults bring them back clean, still backed by their slots.
    for &(i, e) in &evicted {
        assert_eq!(rig.read_back(r.add(i)), pattern(0x46, i));
        let pfn = rig.swap.swap_cache_get_folio(e).unwrap();
        assert_eq!(rig.swap.swap_count(e), 0);
        assert!(!rig.mem.folios.get(pfn).test(pg::DIRTY));
    }

    // Memory pressure evicts them again.
    let stream = rig.mem.mmap_anon(rig.mm, STREAM);
    for i in 0..STREAM {
        let mut tries = 0;
        while let Err(e) = rig.access(stream.add(i), true) {
            assert_eq!(e, FaultStop::Retry(Wait::Memory));
            tries += 1;
            assert!(tries < 100, "reclaim makes no progress");
            rig.tick();
        }
        rig.tick();
    }
    while rig.swap.io_in_flight() > 0 {
        rig.settle();
    }

    // Same slots (no new allocation), and dropped rather than rewritten:
    // kswapd freed more folios than it wrote.
    for &(i, e) in &evicted {
        assert_eq!(rig.pte(r.add(i)), PteKind::Swap(e), "page {i}");
        assert_eq!(rig.swap.swap_cache_get_folio(e), None);
        assert_eq!(rig.swap.swap_count(e), 1);
    }
    let steal = rig.stat.get(VmEvent::PgStealKswapd);
    let written = rig.stat.get(VmEvent::PswpOut);
    assert!(
        steal >= written + READ_BACK,
        "pgsteal_kswapd {steal}, pswpout {written}"
    );
    for &(i, _) in &evicted {
        assert_eq!(rig.read_back(r.add(i)), pattern(0x46, i), "page {i}");
    }
    rig.assert_clean();
}

/// Zero-filled pages are recorded in the zeromap instead of written, and
/// swap back in as zeros without I/O (`swpout_zero`, `swpin_zero`).
#[test]
fn zero_pages_swap_out_and_in_without_io() {
    let mut rig = Rig::new();
    let pages = u64::from(FRAMES) - WMARK.low + 4;
    let r = rig.mem.mmap_anon(rig.mm, pages);
    for i in 0..pages {
        // Written (so dirty), but with zeros.
        let pfn = rig.access(r.add(i), true).unwrap();
        rig.mem.ram.page_mut(pfn).fill(0);
    }
    for _ in 0..64 {
        rig.tick();
        if rig.stat.get(VmEvent::SwpoutZero) > 0 && rig.mem.nr_free() >= WMARK.high {
            break;
        }
    }
    let zero_out = rig.stat.get(VmEvent::SwpoutZero);
    assert!(zero_out > 0, "zero pages were reclaimed");
    assert_eq!(rig.stat.get(VmEvent::PswpOut), 0, "nothing was written");
    let evicted: Vec<u64> = (0..pages)
        .filter(|&i| swap_entry(rig.pte(r.add(i))).is_some())
        .collect();
    assert_eq!(evicted.len() as u64, zero_out);
    let i = evicted[0];
    let pfn = rig
        .access(r.add(i), false)
        .expect("a zero swap-in needs no I/O, so no retry");
    assert!(rig.mem.ram.page(pfn).iter().all(|&b| b == 0));
    assert_eq!(rig.stat.get(VmEvent::SwpinZero), 1);
    assert_eq!(rig.stat.get(VmEvent::PswpIn), 0);
    assert_eq!(rig.stat.get(VmEvent::PgMajFault), 1);
    rig.assert_clean();
}

impl Rig {
    /// Like `fill`, but lets kswapd make room as a machine tick would.
    fn fill_ticking(&mut self, pages: u64, tag: u8) -> Vpn {
        let r = self.mem.mmap_anon(self.mm, pages);
        for i in 0..pages {
            let pfn = loop {
                match self.access(r.add(i), true) {
                    Ok(pfn) => break pfn,
                    Err(_) => {
                        self.tick();
                    }
                }
            };
            self.mem.ram.page_mut(pfn).copy_from_slice(&pattern(tag, i));
        }
        r
    }

    /// Streams writes through a fresh region while touching `hot` every
    /// tick, until `want` pages of `hot` are on the active list at once
    /// (the policy's own way of activating: referenced on two scans).
    fn activate_by_use(&mut self, hot: Vpn, n: u64, want: u64) {
        let stream = self.mem.mmap_anon(self.mm, 4 * u64::from(FRAMES));
        for i in 0..4 * u64::from(FRAMES) {
            let active = (0..n)
                .filter(|&j| match self.pte(hot.add(j)) {
                    PteKind::Present { pfn, .. } => self.mem.folios.get(pfn).test(pg::ACTIVE),
                    _ => false,
                })
                .count() as u64;
            if active >= want {
                return;
            }
            while self.access(stream.add(i), true).is_err() {
                self.tick();
            }
            for j in 0..n {
                self.access(hot.add(j), false).unwrap();
            }
            self.tick();
        }
        panic!("the hot set never became active");
    }

    /// `MADV_PAGEOUT` of the region at `r`, writes delivered: every page is
    /// evicted and leaves a shadow.
    /// A load of `vpn` by address space `mm`, waiting out its swap-in.
    fn read_as(&mut self, mm: swapvm_mm::MmId, vpn: Vpn) -> Pfn {
        loop {
            self.now += 1;
            match self.mem.access(&mut self.swap, mm, vpn, false, self.now) {
                Ok(pfn) => return pfn,
                Err(FaultStop::Retry(Wait::Folio(_))) => {
                    self.settle();
                }
                Err(x) => panic!("{x:?}"),
            }
        }
    }

    fn pageout(&mut self, r: Vpn) {
        let pfns = self.mem.madvise_pageout_isolate(self.mm, r, None);
        self.reclaim
            .reclaim_pages(&mut self.mem, &mut self.swap, &pfns, 0, self.now);
        while self.swap.io_in_flight() > 0 {
            self.settle();
        }
    }

    fn is_active(&self, vpn: Vpn) -> bool {
        match self.pte(vpn) {
            PteKind::Present { pfn, .. } => self.mem.folios.get(pfn).test(pg::ACTIVE),
            _ => false,
        }
    }
}

#[test]
fn a_refault_within_the_workingset_size_is_activated_and_a_distant_one_is_not() {
    const HOT: u64 = 48;
    const EVICT: u64 = 16;
    let mut rig = Rig::new();
    rig.reclaim.kswapd_batches_per_tick = 1;
    let hot = rig.fill(HOT, 0x57);
    rig.activate_by_use(hot, HOT, HOT);
    let active = u64::from(rig.mem.lru.len(LruList::ActiveAnon));
    assert!(active >= HOT);
    let refaults0 = rig.stat.get(VmEvent::WorkingsetRefaultAnon);
    let activate0 = rig.stat.get(VmEvent::WorkingsetActivateAnon);

    // Evicted and read straight back: the refault distance (at most EVICT
    // evictions plus the activations since) is within the active list.
    let e = rig.fill_ticking(EVICT, 0x45);
    rig.pageout(e);
    for i in 0..EVICT {
        let entry = swap_entry(rig.pte(e.add(i))).expect("evicted");
        assert!(
            matches!(
                rig.swap.slot(entry).unwrap().binding,
                swapvm_swap::SlotBinding::Shadow(_)
            ),
            "page {i}: eviction leaves a shadow in the swap table"
        );
    }
    for i in 0..EVICT {
        assert_eq!(rig.read_back(e.add(i)), pattern(0x45, i));
        assert!(rig.is_active(e.add(i)), "recent refault {i} starts active");
    }
    assert_eq!(
        rig.stat.get(VmEvent::WorkingsetRefaultAnon) - refaults0,
        EVICT
    );
    assert_eq!(
        rig.stat.get(VmEvent::WorkingsetActivateAnon) - activate0,
        EVICT
    );
    // These were never deactivated from the active list: no restore.
    assert_eq!(rig.stat.get(VmEvent::WorkingsetRestoreAnon), 0);

    // Evicted again, then many more evictions before the refault: the
    // distance exceeds the workingset and the folio starts inactive.
    rig.pageout(e);
    let far = rig.fill_ticking(2 * active + EVICT, 0x46);
    rig.pageout(far);
    let activate1 = rig.stat.get(VmEvent::WorkingsetActivateAnon);
    let refaults1 = rig.stat.get(VmEvent::WorkingsetRefaultAnon);
    for i in 0..EVICT {
        assert_eq!(rig.read_back(e.add(i)), pattern(0x45, i));
        assert!(!rig.is_active(e.add(i)), "distant refault {i} is inactive");
    }
    assert_eq!(
        rig.stat.get(VmEvent::WorkingsetRefaultAnon) - refaults1,
        EVICT
    );
    assert_eq!(rig.stat.get(VmEvent::WorkingsetActivateAnon), activate1);
    rig.assert_clean();
}

#[test]
fn a_deactivated_workingset_page_refaulted_soon_is_restored() {
    // More than half of RAM, so the active list outgrows the inactive one
    // (inactive_ratio 1) and shrink_active_list deactivates it.
    const HOT: u64 = 150;
    let mut rig = Rig::new();
    rig.reclaim.kswapd_batches_per_tick = 1;
    let hot = rig.fill(HOT, 0x52);
    // The active list outgrows the inactive one while the set is in use,
    // so part of it cycles through deactivation (PG_workingset) already.
    rig.activate_by_use(hot, HOT, 120);
    // Pressure without touching the hot set: shrink_active_list
    // deactivates it (PG_workingset) and reclaim evicts it. Each hot page
    // is read back as soon as its eviction completes.
    let stream = rig.mem.mmap_anon(rig.mm, 2 * u64::from(FRAMES));
    let mut refaulted = 0;
    for i in 0..2 * u64::from(FRAMES) {
        while rig.access(stream.add(i), true).is_err() {
            rig.tick();
        }
        rig.tick();
        for j in 0..HOT {
            let Some(entry) = swap_entry(rig.pte(hot.add(j))) else {
                continue;
            };
            if rig.swap.swap_cache_get_folio(entry).is_some() {
                continue; // still under writeback
            }
            assert_eq!(rig.read_back(hot.add(j)), pattern(0x52, j));
            refaulted += 1;
        }
    }
    while rig.swap.io_in_flight() > 0 {
        rig.settle();
    }
    let refault = rig.stat.get(VmEvent::WorkingsetRefaultAnon);
    let activate = rig.stat.get(VmEvent::WorkingsetActivateAnon);
    let restore = rig.stat.get(VmEvent::WorkingsetRestoreAnon);
    assert!(refaulted > 0, "the hot set was never evicted");
    assert_eq!(refault, refaulted);
    assert!(
        restore > 0,
        "refault {refault} activate {activate} restore 0"
    );
    assert!(restore <= activate && activate <= refault);
    let restored_active = (0..HOT)
        .filter(|&j| match rig.pte(hot.add(j)) {
            PteKind::Present { pfn, .. } => {
                let p = rig.mem.folios.get(pfn);
                p.test(pg::ACTIVE) && p.test(pg::WORKINGSET)
            }
            _ => false,
        })
        .count();
    assert!(restored_active > 0);
    rig.assert_clean();
}

// ---- swapoff -------------------------------------------------------------

impl Rig {
    /// Runs a swapoff to its end, one pass per tick, calling `load` each
    /// tick (a process running meanwhile). Returns the last step.
    fn swapoff(
        &mut self,
        mut load: impl FnMut(&mut Rig),
    ) -> Result<swapvm_reclaim::Swapoff, swapvm_reclaim::SwapoffError> {
        let ty = self.swap.device_types()[0];
        let mut so = swapvm_reclaim::Swapoff::begin(&self.mem, &mut self.swap, ty, self.now)?;
        for _ in 0..10_000 {
            self.now += 1;
            self.deliver(|_| true);
            match so.tick(
                &mut self.mem,
                &mut self.swap,
                &mut self.reclaim,
                0,
                self.now,
            ) {
                swapvm_reclaim::SwapoffStep::Running => {}
                swapvm_reclaim::SwapoffStep::Done => return Ok(so),
                swapvm_reclaim::SwapoffStep::Failed(e) => return Err(e),
            }
            load(self);
        }
        panic!("swapoff never ended");
    }
}

#[test]
fn swapoff_under_load_returns_every_slot_and_keeps_every_byte() {
    const ANON: u64 = 120;
    const SHARED: u64 = 24;
    let mut rig = Rig::new();
    let ty = rig.swap.device_types()[0];
    let a = rig.fill(ANON, 0x61);
    // A shared anonymous (shmem) region, its pages paged out too.
    let s = rig.mem.mmap_shared_anon(rig.mm, SHARED);
    for i in 0..SHARED {
        let pfn = rig.access(s.add(i), true).unwrap();
        rig.mem.ram.page_mut(pfn).copy_from_slice(&pattern(0x73, i));
    }
    rig.pageout(a);
    rig.pageout(s);
    // A child shares the swapped anon pages (counts of 2).
    let child = rig.mem.fork(&mut rig.swap, rig.mm).unwrap();
    let inuse = rig.swap.device(ty).unwrap().inuse_pages;
    assert_eq!(inuse, ANON + SHARED, "everything is in swap");
    let e0 = swap_entry(rig.pte(a)).unwrap();
    assert_eq!(rig.swap.swap_count(e0), 2);
    let pswpin0 = rig.stat.get(VmEvent::PswpIn);

    // Meanwhile the parent keeps reading and writing its pages.
    let mut turn = 0u64;
    let so = rig
        .swapoff(|rig| {
            for _ in 0..4 {
                let i = turn % ANON;
                turn += 7;
                match rig.access(a.add(i), i % 3 == 0) {
                    Ok(pfn) if i % 3 == 0 => {
                        rig.mem.ram.page_mut(pfn).copy_from_slice(&pattern(0x61, i));
                    }
                    Ok(_) | Err(FaultStop::Retry(_)) => {}
                    Err(e) => panic!("access during swapoff: {e:?}"),
                }
            }
        })
        .unwrap();
    assert!(so.passes > 1, "the reads complete at later ticks");
    assert!(rig.swap.device(ty).is_none(), "the device is gone");
    assert_eq!(rig.swap.total_swap_pages(), 0);
    assert_eq!(rig.swap.nr_swap_pages(), 0);
    // Each slot was read once (the child's references use the same folio).
    assert_eq!(rig.stat.get(VmEvent::PswpIn) - pswpin0, ANON + SHARED);
    for i in 0..ANON {
        assert!(matches!(rig.pte(a.add(i)), PteKind::Present { .. }), "{i}");
        assert_eq!(rig.read_back(a.add(i)), pattern(0x61, i), "anon page {i}");
        let pte = rig.mem.pt.lookup(rig.mem.mm(child).pgd, a.add(i)).kind();
        let PteKind::Present { pfn, .. } = pte else {
            panic!("child page {i} not mapped: {pte:?}");
        };
        assert_eq!(&rig.mem.ram.page(pfn)[..8], &pattern(0x61, i)[..8]);
        assert_eq!(rig.mem.folios.get(pfn).swap, None);
    }
    for i in 0..SHARED {
        assert_eq!(rig.read_back(s.add(i)), pattern(0x73, i), "shmem page {i}");
    }
    rig.assert_clean();
}

/// A page of the rig's process and one of a second, unrelated process
/// with the same bytes, merged by KSM into one folio, which reclaim swaps
/// out: both PTEs hold one entry, in two fork families (the kernel's case
/// for `ksm_might_need_to_copy`'s copy). Returns the rig process's page,
/// the other process and its page.
fn ksm_shared_swapped(rig: &mut Rig, tag: u8) -> (Vpn, MmId, Vpn) {
    let a = rig.fill(1, tag);
    let other = rig.mem.mm_create();
    let b = rig.mem.mmap_anon(other, 1);
    let pfn = rig
        .mem
        .access(&mut rig.swap, other, b, true, rig.now)
        .unwrap();
    rig.mem.ram.page_mut(pfn).copy_from_slice(&pattern(tag, 0));
    for (mm, v) in [(rig.mm, a), (other, b)] {
        assert!(rig.mem.ksm_madvise(&mut rig.swap, mm, v, true));
    }
    rig.mem.ksm.pages_to_scan = 16;
    // Three passes: checksums, the unstable tree, the merge.
    for _ in 0..6 {
        rig.mem.ksm_do_scan(&mut rig.swap);
    }
    let PteKind::Present { pfn: kpfn, .. } = rig.pte(a) else {
        panic!("not mapped");
    };
    assert!(rig.mem.folios.get(kpfn).test(pg::KSM), "not merged");
    assert!(rig.mem.lru.del(&mut rig.mem.folios, kpfn));
    rig.reclaim
        .reclaim_pages(&mut rig.mem, &mut rig.swap, &[kpfn], 0, rig.now);
    while rig.swap.io_in_flight() > 0 {
        rig.settle();
    }
    let e = swap_entry(rig.pte(a)).expect("swapped out");
    let theirs = rig.mem.pt.lookup(rig.mem.mm(other).pgd, b).kind();
    assert_eq!(theirs, PteKind::Swap(e), "one entry for both");
    (a, other, b)
}

#[test]
fn swapoff_maps_a_copy_where_the_cached_folio_cannot_be_mapped() {
    // A KSM page of two unrelated processes is swapped out; the other
    // process swaps it in first, into its own anon_vma: the rig process's
    // rmap would not find that folio, so swapoff (through do_swap_page)
    // maps it a copy and puts its swap reference on the cached folio.
    let mut rig = Rig::new();
    let ty = rig.swap.device_types()[0];
    let (a, other, b) = ksm_shared_swapped(&mut rig, 0x6b);
    let e = swap_entry(rig.pte(a)).unwrap();
    assert_eq!(rig.swap.swap_count(e), 2);
    let cpfn = rig.read_as(other, b);
    assert_eq!(rig.swap.swap_count(e), 1, "the parent's reference is left");
    assert_eq!(rig.swap.swap_cache_get_folio(e), Some(cpfn));
    rig.swapoff(|_| {}).unwrap();
    assert_eq!(
        rig.stat.get(VmEvent::KsmSwapinCopy),
        1,
        "the copy branch ran"
    );
    assert!(rig.swap.device(ty).is_none());
    let PteKind::Present { pfn: ppfn, .. } = rig.pte(a) else {
        panic!("parent not mapped");
    };
    assert_ne!(ppfn, cpfn, "the parent has its own copy");
    assert_eq!(rig.mem.ram.page(ppfn), &pattern(0x6b, 0)[..]);
    assert_eq!(rig.mem.ram.page(cpfn), &pattern(0x6b, 0)[..]);
    assert_eq!(rig.mem.folios.get(cpfn).swap, None);
    rig.assert_clean();
}

/// A large folio brought back for one PTE maps its neighbours too and
/// frees its slots; the entries swapoff collected for those neighbours
/// are then stale and must be skipped (`pte_same_as_swp`), not read.
#[test]
fn swapoff_of_large_folios_skips_the_entries_a_whole_swapin_mapped() {
    let mut rig = Rig::new();
    rig.mem.anon_orders = vec![2];
    rig.mem.swapin_any_device = true;
    let ty = rig.swap.device_types()[0];
    let a = rig.fill(16, 0x6d);
    rig.pageout(a);
    assert!(rig.stat.get(VmEvent::AnonFaultAlloc) > 0, "no large folio");
    assert!(
        rig.stat.get(VmEvent::ThpSwpout) > 0,
        "no large folio swapped"
    );
    assert!((0..16).all(|i| swap_entry(rig.pte(a.add(i))).is_some()));
    rig.swapoff(|_| {}).unwrap();
    assert!(rig.stat.get(VmEvent::ThpSwpin) > 0, "no whole swap-in");
    assert!(rig.swap.device(ty).is_none());
    for i in 0..16 {
        assert_eq!(rig.read_back(a.add(i)), pattern(0x6d, i), "page {i}");
    }
    rig.assert_clean();
}

/// A large folio swapped out comes back whole only from a device with
/// synchronous I/O (kernel 6.18's rule) or where `swapin_any_device` says
/// so; from a file it comes back as order-0 folios. Its bytes are right
/// either way.
#[test]
fn mthp_swap_in_is_whole_only_from_a_synchronous_device() {
    for (sync, any, whole) in [
        (true, false, true),
        (false, false, false),
        (false, true, true),
    ] {
        let why = format!("synchronous_io {sync}, swapin_any_device {any}");
        let mut rig = Rig::with_device(sync);
        rig.mem.anon_orders = vec![2];
        rig.mem.swapin_any_device = any;
        let a = rig.fill(4, 0x5a);
        rig.pageout(a);
        assert_eq!(rig.stat.get(VmEvent::ThpSwpout), 1, "{why}");
        assert_eq!(rig.read_back(a.add(1)), pattern(0x5a, 1), "{why}");
        assert_eq!(rig.stat.get(VmEvent::ThpSwpin), u64::from(whole), "{why}");
        let resident = (0..4)
            .filter(|&i| matches!(rig.pte(a.add(i)), PteKind::Present { .. }))
            .count();
        assert_eq!(resident, if whole { 4 } else { 1 }, "{why}");
        for i in 0..4 {
            assert_eq!(rig.read_back(a.add(i)), pattern(0x5a, i), "{why}: page {i}");
        }
        rig.assert_clean();
    }
}

/// The seed review of `unuse_pte`: with `ksm_might_need_to_copy`'s copy,
/// the swap reference went on the copy, which is not in the swap cache.
/// The put is refused with a warning that names the copy and the call
/// site, the slot keeps a count nobody owns, and swapoff stops with
/// `Stuck` naming that slot instead of looping on it.
#[test]
fn seed_bug_swapoff_put_on_ksm_copy_is_caught() {
    let mut rig = Rig::new();
    rig.swap.bugs.swapoff_put_on_ksm_copy = true;
    let ty = rig.swap.device_types()[0];
    let (a, other, b) = ksm_shared_swapped(&mut rig, 0x6c);
    let e = swap_entry(rig.pte(a)).unwrap();
    let cpfn = rig.read_as(other, b);
    assert_eq!(rig.warn.total(), 0, "a fault's copy is not swapoff's");
    let err = rig.swapoff(|_| {}).unwrap_err();
    assert_eq!(rig.stat.get(VmEvent::KsmSwapinCopy), 1);
    let site = swapvm_swap::sites::FOLIO_NOT_IN_CACHE;
    assert_eq!(rig.warn.count(site), 1, "{:#?}", rig.warn.records());
    let PteKind::Present { pfn: copy, .. } = rig.pte(a) else {
        panic!("parent not mapped");
    };
    let r = &rig.warn.records()[0];
    assert!(
        r.first.contains(&format!("{copy:?}")) && r.first.contains("fault.rs"),
        "the warning names the copy and the call site: {}",
        r.first
    );
    match err {
        swapvm_reclaim::SwapoffError::Stuck {
            ty: t,
            inuse,
            first,
        } => {
            assert_eq!((t, inuse), (ty.0, 1));
            assert_eq!(first, vec![(e.offset().0, 1)], "the leaked slot");
        }
        other => panic!("{other}"),
    }
    assert_eq!(rig.swap.swap_count(e), 1, "the count nobody owns");
    assert_eq!(rig.swap.swap_cache_get_folio(e), Some(cpfn));
    assert!(!rig.swap.device(ty).unwrap().dying, "back in service");
}

#[test]
fn swapoff_without_room_in_memory_fails_and_leaves_the_device_in_service() {
    let mut rig = Rig::new();
    let ty = rig.swap.device_types()[0];
    let pages = 2 * u64::from(FRAMES);
    let r = rig.fill_ticking(pages, 0x4e);
    while rig.swap.io_in_flight() > 0 {
        rig.settle();
    }
    let inuse = rig.swap.device(ty).unwrap().inuse_pages;
    assert!(inuse > u64::from(FRAMES) / 2);
    let e = rig.swapoff(|_| {}).unwrap_err();
    assert!(
        matches!(e, swapvm_reclaim::SwapoffError::NoMem { inuse: n, .. } if n == inuse),
        "{e}"
    );
    let d = rig.swap.device(ty).unwrap();
    assert!(!d.dying, "the device stays in service");
    assert_eq!(d.inuse_pages, inuse, "nothing was read in");
    // Still usable: reclaim writes to it and every page reads back.
    for i in (0..pages).step_by(17) {
        assert_eq!(rig.read_back(r.add(i)), pattern(0x4e, i), "page {i}");
    }
    rig.assert_clean();
}

#[test]
fn swapoff_that_runs_out_of_memory_midway_aborts_cleanly() {
    // Enough room when swapoff begins; then a process takes the memory,
    // and with no other device reclaim cannot make room again.
    let mut rig = Rig::new();
    let ty = rig.swap.device_types()[0];
    let a = rig.fill(64, 0x4f);
    rig.pageout(a);
    let so = swapvm_reclaim::Swapoff::begin(&rig.mem, &mut rig.swap, ty, rig.now).unwrap();
    let mut so = so;
    let hog = rig.mem.mmap_anon(rig.mm, u64::from(FRAMES));
    let mut i = 0;
    while rig.access(hog.add(i), true).is_ok() {
        i += 1;
    }
    let mut last = None;
    for _ in 0..1000 {
        rig.now += 1;
        rig.deliver(|_| true);
        match so.tick(&mut rig.mem, &mut rig.swap, &mut rig.reclaim, 0, rig.now) {
            swapvm_reclaim::SwapoffStep::Running => {}
            step => {
                last = Some(step);
                break;
            }
        }
    }
    let Some(swapvm_reclaim::SwapoffStep::Failed(swapvm_reclaim::SwapoffError::NoMem { .. })) =
        last
    else {
        panic!("expected a NoMem failure, got {last:?}");
    };
    let d = rig.swap.device(ty).unwrap();
    assert!(!d.dying, "swapoff_abort put the device back");
    assert!(d.inuse_pages > 0);
    // Free the hog: the rest comes back through ordinary faults.
    rig.mem.munmap(&mut rig.swap, rig.mm, hog);
    for j in 0..64 {
        assert_eq!(rig.read_back(a.add(j)), pattern(0x4f, j), "page {j}");
    }
    rig.assert_clean();
}

// ---- swap readahead --------------------------------------------------------

/// Evicts a 64-page region, then reads it back in `order` with readahead
/// of `page_cluster` by address (`vma`) or by offset. Returns (swap_ra,
/// swap_ra_hit, pgmajfault) of the read-back.
fn readahead_run(page_cluster: u32, vma: bool, order: &[u64]) -> (u64, u64, u64) {
    let mut rig = Rig::new();
    rig.mem.swap_ra.page_cluster = page_cluster;
    rig.mem.swap_ra.vma_ra_enabled = vma;
    let r = rig.fill(64, 0x52);
    rig.pageout(r);
    let before = |rig: &Rig| {
        (
            rig.stat.get(VmEvent::SwapRa),
            rig.stat.get(VmEvent::SwapRaHit),
            rig.stat.get(VmEvent::PgMajFault),
        )
    };
    let b = before(&rig);
    for &i in order {
        assert_eq!(rig.read_back(r.add(i)), pattern(0x52, i), "page {i}");
        assert!(
            rig.mem
                .folios
                .get(match rig.pte(r.add(i)) {
                    PteKind::Present { pfn, .. } => pfn,
                    k => panic!("{k:?}"),
                })
                .test(pg::ANON),
            "the fault claimed the folio"
        );
    }
    while rig.swap.io_in_flight() > 0 {
        rig.settle();
    }
    let a = before(&rig);
    // Folios read ahead and never used are evictable swap-cache folios;
    // nothing leaked.
    rig.assert_clean();
    (a.0 - b.0, a.1 - b.1, a.2 - b.2)
}

#[test]
fn sequential_swapin_hits_readahead_by_address_and_by_offset() {
    let seq: Vec<u64> = (0..64).collect();
    for vma in [true, false] {
        let (ra, hit, maj) = readahead_run(3, vma, &seq);
        assert!(ra > 0, "vma {vma}: nothing read ahead");
        assert!(hit > 32, "vma {vma}: {hit} hits of {ra} read ahead");
        assert!(hit <= ra);
        // Every page came in by a fault of its own or by readahead.
        assert_eq!(maj + hit, 64, "vma {vma}: majfault {maj} hits {hit}");
        assert!(maj < 32, "vma {vma}: readahead saved few faults: {maj}");
    }
}

#[test]
fn readahead_is_off_with_page_cluster_zero_and_shrinks_on_random_swapin() {
    let seq: Vec<u64> = (0..64).collect();
    assert_eq!(readahead_run(0, true, &seq), (0, 0, 64));
    assert_eq!(readahead_run(0, false, &seq), (0, 0, 64));
    // A stride of 7 pages (mod 64): no fault is next to the last one, so the
    // window stays at one page.
    let random: Vec<u64> = (0..64).map(|i| (i * 7 + 3) % 64).collect();
    let (ra, hit, maj) = readahead_run(3, true, &random);
    assert!(
        maj > 48,
        "random swap-in still faults: ra {ra} hit {hit} maj {maj}"
    );
    assert_eq!(maj + hit, 64);
}

#[test]
fn swappiness_zero_still_reclaims_anon_below_the_high_watermark() {
    // With no file pages, the kernel's get_scan_count finds file "tiny"
    // whenever free memory is at or below high and scans anon whatever the
    // swappiness; kswapd and direct reclaim only run there.
    for swappiness in [0, 200] {
        let mut rig = Rig::new();
        rig.reclaim = Reclaimer::new(
            ReclaimConfig {
                swappiness,
                ..ReclaimConfig::default()
            },
            u64::from(FRAMES),
        );
        let pages = u64::from(FRAMES) - WMARK.low + 4;
        rig.fill(pages, 0x30);
        rig.reclaim.maybe_wake_kswapd(&rig.mem);
        let mut made = 0;
        for _ in 0..64 {
            made += rig.tick().writeback;
        }
        while rig.swap.io_in_flight() > 0 {
            rig.settle();
        }
        assert!(
            made > 0,
            "swappiness {swappiness}: kswapd reclaimed nothing"
        );
        assert!(rig.mem.nr_free() >= WMARK.high, "swappiness {swappiness}");
        assert_eq!(rig.stat.get(VmEvent::PgStealKswapd), made);
        rig.assert_clean();
    }
}

/// `madvise(2)` on a range cutting 16 KiB folios: DONTNEED and FREE split
/// the partly covered folios and act on the range only; PAGEOUT and COLD
/// leave a partly covered folio alone and take the folios wholly inside.
#[test]
fn a_madvise_range_splits_or_skips_the_partly_covered_large_folios() {
    let mut rig = Rig::new();
    rig.mem.anon_orders = vec![2];
    let a = rig.fill(32, 0x4e);
    assert_eq!(
        rig.stat.get(VmEvent::AnonFaultAlloc),
        8,
        "8 folios of 4 pages"
    );
    let order = |rig: &Rig, i: u64| match rig.pte(a.add(i)) {
        PteKind::Present { pfn, .. } => {
            let head = rig.mem.folio_of(pfn);
            Some(rig.mem.folios.get(head).order)
        }
        _ => None,
    };
    // DONTNEED of pages 2..6 cuts the folios at 0..4 and 4..8.
    rig.mem
        .madvise_dontneed(&mut rig.swap, rig.mm, a, Some(2..6));
    assert_eq!(rig.stat.get(VmEvent::ThpSplitPage), 2);
    for i in 2..6 {
        assert_eq!(rig.pte(a.add(i)), PteKind::None, "page {i} zapped");
    }
    for i in [0, 1, 6, 7] {
        assert_eq!(order(&rig, i), Some(0), "page {i} split, still mapped");
        assert_eq!(rig.read_back(a.add(i)), pattern(0x4e, i), "page {i}");
    }
    assert_eq!(
        order(&rig, 8),
        Some(2),
        "a folio outside the range is whole"
    );
    // FREE of pages 9..12 cuts the folio at 8..12.
    let (_, lazy) = rig.mem.madvise_free(&mut rig.swap, rig.mm, a, Some(9..12));
    assert_eq!(lazy, (9..12).map(|i| a.add(i)).collect::<Vec<_>>());
    assert_eq!(rig.stat.get(VmEvent::ThpSplitPage), 3);
    assert_eq!(order(&rig, 8), Some(0));
    // PAGEOUT of pages 14..24 takes the folios at 16..20 and 20..24 whole
    // and leaves the one at 12..16 mapped and whole.
    let pfns = rig.mem.madvise_pageout_isolate(rig.mm, a, Some(14..24));
    assert_eq!(pfns.len(), 2, "two whole folios isolated");
    rig.reclaim
        .reclaim_pages(&mut rig.mem, &mut rig.swap, &pfns, 0, rig.now);
    while rig.swap.io_in_flight() > 0 {
        rig.settle();
    }
    assert_eq!(rig.stat.get(VmEvent::ThpSwpout), 2);
    assert_eq!(rig.stat.get(VmEvent::ThpSplitPage), 3, "no split");
    assert!((16..24).all(|i| swap_entry(rig.pte(a.add(i))).is_some()));
    assert!((12..16).all(|i| order(&rig, i) == Some(2)));
    // COLD of pages 26..32 deactivates the folios at 28..32 only.
    let before = rig.stat.get(VmEvent::PgDeactivate);
    let n = rig.mem.madvise_cold(rig.mm, a, Some(26..32));
    assert_eq!(n, 4, "one PTE per page of the whole folio");
    assert!(rig.stat.get(VmEvent::PgDeactivate) > before);
    for i in (0..2).chain(6..9).chain(12..16).chain(24..32) {
        assert_eq!(rig.read_back(a.add(i)), pattern(0x4e, i), "page {i}");
    }
    for i in 16..24 {
        assert_eq!(rig.read_back(a.add(i)), pattern(0x4e, i), "page {i}");
    }
    rig.assert_clean();
}

/// Per-size THP policy: a size set to `madvise` is allocated only in a VMA
/// with `MADV_HUGEPAGE`; `MADV_NOHUGEPAGE` turns off even `always` sizes.
#[test]
fn thp_policy_follows_the_vma_advice() {
    let mut rig = Rig::new();
    rig.mem.anon_orders_madvise = vec![4];
    let plain = rig.fill(16, 0x31);
    assert_eq!(
        rig.stat.get(VmEvent::AnonFaultAlloc),
        0,
        "no advice: order 0"
    );
    let r = rig.mem.mmap_anon(rig.mm, 48);
    assert!(rig.mem.madvise_hugepage(rig.mm, r, true));
    for i in 0..48 {
        rig.access(r.add(i), true).unwrap();
    }
    // The 64 KiB-aligned blocks inside the VMA each got one folio.
    let blocks = (r.0 + 48 - r.0.next_multiple_of(16)) / 16;
    assert!(blocks >= 2);
    assert_eq!(rig.stat.get(VmEvent::AnonFaultAlloc), blocks, "64K folios");
    rig.mem.anon_orders = vec![2];
    let r2 = rig.mem.mmap_anon(rig.mm, 16);
    assert!(rig.mem.madvise_hugepage(rig.mm, r2, false));
    for i in 0..16 {
        rig.access(r2.add(i), true).unwrap();
    }
    let n = rig.stat.get(VmEvent::AnonFaultAlloc);
    assert_eq!(n, blocks, "NOHUGEPAGE: order 0");
    rig.access(plain.add(0), true).unwrap();
    rig.assert_clean();
}

#[test]
fn refault_activations_since_the_last_invocation_let_reclaim_deactivate() {
    // prepare_scan_control: with the inactive list not low, a reclaim
    // invocation deactivates active folios only if refaults activated
    // folios since the previous invocation's snapshot_refaults.
    const HOT: u64 = 48;
    const EVICT: u64 = 16;
    let mut rig = Rig::new();
    rig.reclaim.kswapd_batches_per_tick = 1;
    let hot = rig.fill(HOT, 0x61);
    rig.activate_by_use(hot, HOT, HOT);
    while rig.swap.io_in_flight() > 0 {
        rig.settle();
    }
    let inactive_not_low = |rig: &Rig| {
        let inactive = u64::from(rig.mem.lru.len(LruList::InactiveAnon));
        let active = u64::from(rig.mem.lru.len(LruList::ActiveAnon));
        assert!(
            inactive >= active + BATCH,
            "inactive {inactive} active {active}: the test wants it not low"
        );
    };
    // One direct reclaim invocation per call; its I/O completes before the
    // next. Returns the folios it deactivated.
    let direct = |rig: &mut Rig| {
        let before = rig.stat.get(VmEvent::PgDeactivate);
        rig.reclaim
            .direct_reclaim(&mut rig.mem, &mut rig.swap, 0, rig.now);
        while rig.swap.io_in_flight() > 0 {
            rig.settle();
        }
        rig.stat.get(VmEvent::PgDeactivate) - before
    };
    // The first invocation takes the snapshot. Cold pages then fill memory
    // up to the high watermark, so the inactive list outgrows the active
    // one; the second invocation sees no refault since the snapshot.
    direct(&mut rig);
    rig.fill(rig.mem.nr_free().saturating_sub(WMARK.high), 0x60);
    inactive_not_low(&rig);
    assert_eq!(direct(&mut rig), 0, "no refaults: the active list is kept");

    // Pages evicted and read straight back refault within the workingset
    // and start active (workingset_activate_anon).
    let e = rig.fill(EVICT, 0x62);
    rig.pageout(e);
    let activate0 = rig.stat.get(VmEvent::WorkingsetActivateAnon);
    for i in 0..EVICT {
        assert_eq!(rig.read_back(e.add(i)), pattern(0x62, i));
    }
    assert_eq!(
        rig.stat.get(VmEvent::WorkingsetActivateAnon) - activate0,
        EVICT
    );
    inactive_not_low(&rig);
    let deactivated = direct(&mut rig);
    assert!(deactivated > 0, "refaults since the snapshot: deactivate");
    assert!(rig.stat.get(VmEvent::PgRefill) >= deactivated);

    // That invocation took a new snapshot: without refaults, none again.
    inactive_not_low(&rig);
    assert_eq!(direct(&mut rig), 0, "snapshot taken: no deactivation");
    rig.assert_clean();
}

/// The multi-generational LRU on the same rig.
#[path = "reclaim/mglru.rs"]
mod mglru;
