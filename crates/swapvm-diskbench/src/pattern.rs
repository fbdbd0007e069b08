//! The request streams: swap-shaped ones, placed the way the kernel's swap
//! allocator and readahead would place them, and the fio-shaped ones the
//! comparison script runs side by side with fio.
//!
//! Swap geometry, from the kernel: page 0 of a swap device is the header
//! and is never a slot; slots are grouped in clusters of 512
//! (`SWAPFILE_CLUSTER`, 2 MiB); a folio of order n takes 2^n contiguous
//! slots aligned to 2^n inside one cluster; swap readahead reads the aligned
//! window of 2^page_cluster = 8 slots around a fault.

use std::fmt;
use std::str::FromStr;

use swapvm_core::SimRng;

use swapvm_io::{IoKind, BLOCK_SIZE};

/// Slots per swap cluster (`SWAPFILE_CLUSTER`).
pub const CLUSTER_PAGES: u64 = 512;

/// Slots in a swap readahead window: `1 << page_cluster`, default 3.
pub const READAHEAD_PAGES: usize = 8;

const PAGE: u64 = BLOCK_SIZE as u64;

/// A diskbench request pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// 4 KiB writes, each cluster filled in slot order, clusters at random.
    SwapOut4k,
    /// 64 KiB writes (order-4 large folios), placed like `SwapOut4k`.
    SwapOut64k,
    /// 2 MiB writes (PMD-size folios): one whole cluster per request.
    SwapOut2m,
    /// Random 4 KiB reads of single slots (swap-in faults).
    SwapIn4k,
    /// Random aligned 8-slot windows, each read with one vectored request
    /// into 8 separate 4 KiB buffers (swap readahead).
    Readahead,
    /// Half `SwapIn4k` reads, half `SwapOut4k` writes, interleaved at
    /// random: a machine swapping in and out at once.
    Mixed,
    /// Uniformly random 4 KiB writes over the device (fio `randwrite`).
    RandWrite4k,
    /// Uniformly random 4 KiB reads over the device (fio `randread`).
    RandRead4k,
    /// Sequential 64 KiB writes, wrapping at the end (fio `write`).
    SeqWrite64k,
}

impl Pattern {
    /// Every pattern, in the order `--help` lists them.
    pub const ALL: [Pattern; 9] = [
        Pattern::SwapOut4k,
        Pattern::SwapOut64k,
        Pattern::SwapOut2m,
        Pattern::SwapIn4k,
        Pattern::Readahead,
        Pattern::Mixed,
        Pattern::RandWrite4k,
        Pattern::RandRead4k,
        Pattern::SeqWrite64k,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::SwapOut4k => "swapout-4k",
            Pattern::SwapOut64k => "swapout-64k",
            Pattern::SwapOut2m => "swapout-2m",
            Pattern::SwapIn4k => "swapin-4k",
            Pattern::Readahead => "readahead",
            Pattern::Mixed => "mixed",
            Pattern::RandWrite4k => "randwrite-4k",
            Pattern::RandRead4k => "randread-4k",
            Pattern::SeqWrite64k => "seqwrite-64k",
        }
    }

    /// One line saying what the pattern does.
    pub fn description(self) -> &'static str {
        match self {
            Pattern::SwapOut4k => "swap-out: 4 KiB writes filling random clusters in slot order",
            Pattern::SwapOut64k => {
                "swap-out of 64 KiB large folios: one write per folio, clusters filled in order"
            }
            Pattern::SwapOut2m => "swap-out of 2 MiB folios: one write per whole cluster",
            Pattern::SwapIn4k => "swap-in: random 4 KiB slot reads",
            Pattern::Readahead => {
                "swap readahead: random aligned 8-slot windows, one vectored read each"
            }
            Pattern::Mixed => "half 4 KiB swap-in reads, half 4 KiB swap-out writes",
            Pattern::RandWrite4k => "fio randwrite: uniformly random 4 KiB writes",
            Pattern::RandRead4k => "fio randread: uniformly random 4 KiB reads",
            Pattern::SeqWrite64k => "fio write: sequential 64 KiB writes, wrapping",
        }
    }

    /// Bytes per request.
    pub fn request_bytes(self) -> usize {
        match self {
            Pattern::SwapOut64k | Pattern::SeqWrite64k => 64 << 10,
            Pattern::SwapOut2m => 2 << 20,
            Pattern::Readahead => READAHEAD_PAGES * BLOCK_SIZE,
            Pattern::SwapOut4k
            | Pattern::SwapIn4k
            | Pattern::Mixed
            | Pattern::RandWrite4k
            | Pattern::RandRead4k => BLOCK_SIZE,
        }
    }

    /// Whether the pattern writes to the device.
    pub fn writes(self) -> bool {
        !matches!(
            self,
            Pattern::SwapIn4k | Pattern::Readahead | Pattern::RandRead4k
        )
    }

    /// Buffers per request: the iovec count of a vectored read, else 1.
    pub fn buffers_per_request(self) -> usize {
        match self {
            Pattern::Readahead => READAHEAD_PAGES,
            _ => 1,
        }
    }

    /// Whether the pattern follows swap geometry (and so never touches
    /// page 0, the header, even on a device without one).
    fn swap_shaped(self) -> bool {
        !matches!(
            self,
            Pattern::RandWrite4k | Pattern::RandRead4k | Pattern::SeqWrite64k
        )
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown pattern name.
#[derive(Debug, thiserror::Error)]
#[error("unknown pattern {name:?}; one of: {}", pattern_names())]
pub struct UnknownPattern {
    /// The name given.
    pub name: String,
}

/// The pattern names, comma-separated, for messages and `--help`.
pub fn pattern_names() -> String {
    let mut names: Vec<&str> = Pattern::ALL.iter().map(|p| p.name()).collect();
    names.push("large-folio (= swapout-64k)");
    names.join(", ")
}

impl FromStr for Pattern {
    type Err = UnknownPattern;

    fn from_str(s: &str) -> Result<Pattern, UnknownPattern> {
        if s == "large-folio" {
            return Ok(Pattern::SwapOut64k);
        }
        Pattern::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPattern { name: s.to_owned() })
    }
}

/// One request to issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Op {
    pub kind: IoKind,
    pub offset: u64,
    /// A vectored read into `buffers_per_request` separate 4 KiB buffers.
    pub vectored: bool,
}

/// Where requests may go: byte range `[start, end)`, both multiples of
/// [`BLOCK_SIZE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Region {
    pub start: u64,
    pub end: u64,
}

/// The generator of a pattern's requests, deterministic for a seed.
#[derive(Debug)]
pub(crate) struct OpGen {
    pattern: Pattern,
    rng: SimRng,
    /// First and one-past-last page requests may touch.
    first_page: u64,
    end_page: u64,
    /// The swap-out cluster being filled, and the next folio index in it.
    cluster: Option<(u64, u64)>,
    /// Next offset of `SeqWrite64k`.
    cursor: u64,
}

impl OpGen {
    /// A generator for `pattern` over `region`, or `None` if the region
    /// cannot hold a single request of it.
    pub fn new(pattern: Pattern, region: Region, seed: u64) -> Option<OpGen> {
        let min_first = if pattern.swap_shaped() { 1 } else { 0 };
        let first_page = (region.start / PAGE).max(min_first);
        let end_page = region.end / PAGE;
        let gen = OpGen {
            pattern,
            rng: SimRng::new(seed),
            first_page,
            end_page,
            cluster: None,
            cursor: first_page * PAGE,
        };
        gen.fits().then_some(gen)
    }

    /// Whether at least one request of the pattern fits in the region.
    fn fits(&self) -> bool {
        let pages = self.pattern.request_bytes() as u64 / PAGE;
        // Swap-out folios and readahead windows are aligned to their size.
        let first = match self.pattern {
            Pattern::RandWrite4k | Pattern::RandRead4k | Pattern::SeqWrite64k => self.first_page,
            _ => self.first_page.div_ceil(pages) * pages,
        };
        first + pages <= self.end_page
    }

    /// The next request.
    pub fn next_op(&mut self) -> Op {
        match self.pattern {
            Pattern::SwapOut4k => self.swap_out(1),
            Pattern::SwapOut64k => self.swap_out(16),
            Pattern::SwapOut2m => self.swap_out(CLUSTER_PAGES),
            Pattern::SwapIn4k | Pattern::RandRead4k => self.random_page(IoKind::Read),
            Pattern::RandWrite4k => self.random_page(IoKind::Write),
            Pattern::Readahead => self.readahead(),
            Pattern::Mixed => {
                if self.rng.below(2) == 0 {
                    self.random_page(IoKind::Read)
                } else {
                    self.swap_out(1)
                }
            }
            Pattern::SeqWrite64k => self.sequential(),
        }
    }

    fn op(kind: IoKind, page: u64) -> Op {
        Op {
            kind,
            offset: page * PAGE,
            vectored: false,
        }
    }

    fn random_page(&mut self, kind: IoKind) -> Op {
        let page = self.first_page + self.rng.below(self.end_page - self.first_page);
        OpGen::op(kind, page)
    }

    /// The next folio of `folio_pages` slots in the cluster being filled;
    /// a new random cluster when it is full. Folio positions before
    /// `first_page` or crossing `end_page` are skipped, as the allocator
    /// never hands out slot 0 or slots past the end.
    fn swap_out(&mut self, folio_pages: u64) -> Op {
        let clusters = self.end_page.div_ceil(CLUSTER_PAGES);
        let per_cluster = CLUSTER_PAGES / folio_pages;
        loop {
            let (cluster, idx) = match self.cluster {
                Some((c, i)) if i < per_cluster => (c, i),
                _ => (self.rng.below(clusters), 0),
            };
            self.cluster = Some((cluster, idx + 1));
            let page = cluster * CLUSTER_PAGES + idx * folio_pages;
            if page >= self.first_page && page + folio_pages <= self.end_page {
                return OpGen::op(IoKind::Write, page);
            }
        }
    }

    fn readahead(&mut self) -> Op {
        let win = READAHEAD_PAGES as u64;
        let first_win = self.first_page.div_ceil(win);
        let end_win = self.end_page / win;
        let page = (first_win + self.rng.below(end_win - first_win)) * win;
        Op {
            kind: IoKind::Read,
            offset: page * PAGE,
            vectored: true,
        }
    }

    fn sequential(&mut self) -> Op {
        let len = self.pattern.request_bytes() as u64;
        if self.cursor + len > self.end_page * PAGE {
            self.cursor = self.first_page * PAGE;
        }
        let offset = self.cursor;
        self.cursor += len;
        Op {
            kind: IoKind::Write,
            offset,
            vectored: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn ops(pattern: Pattern, region: Region, n: usize) -> Vec<Op> {
        let mut gen = OpGen::new(pattern, region, 7).unwrap();
        (0..n).map(|_| gen.next_op()).collect()
    }

    fn whole(bytes: u64) -> Region {
        Region {
            start: 0,
            end: bytes,
        }
    }

    #[test]
    fn names_round_trip() {
        for p in Pattern::ALL {
            assert_eq!(p.name().parse::<Pattern>().unwrap(), p);
        }
        assert_eq!(
            "large-folio".parse::<Pattern>().unwrap(),
            Pattern::SwapOut64k
        );
        let err = "bogus".parse::<Pattern>().unwrap_err().to_string();
        assert!(err.contains("bogus") && err.contains("swapout-4k"), "{err}");
    }

    #[test]
    fn every_op_is_aligned_inside_the_region() {
        let region = Region {
            start: PAGE,
            end: 9 * MIB,
        };
        for p in Pattern::ALL {
            for op in ops(p, region, 2000) {
                let len = p.request_bytes() as u64;
                assert_eq!(op.offset % PAGE, 0, "{p}");
                assert!(op.offset >= region.start, "{p} at {}", op.offset);
                assert!(op.offset + len <= region.end, "{p} at {}", op.offset);
                if !p.writes() {
                    assert_eq!(op.kind, IoKind::Read, "{p}");
                }
            }
        }
    }

    #[test]
    fn swap_shaped_patterns_never_touch_the_header_page() {
        for p in Pattern::ALL.into_iter().filter(|p| p.swap_shaped()) {
            assert!(
                ops(p, whole(8 * MIB), 5000).iter().all(|op| op.offset > 0),
                "{p}"
            );
        }
    }

    #[test]
    fn swap_out_fills_a_cluster_in_slot_order() {
        let got = ops(Pattern::SwapOut64k, whole(64 * MIB), 32);
        let cluster = got[0].offset / (CLUSTER_PAGES * PAGE);
        for (i, op) in got.iter().enumerate() {
            let want = cluster * CLUSTER_PAGES * PAGE + i as u64 * (64 << 10);
            assert_eq!(op.offset, want, "folio {i}");
        }
    }

    #[test]
    fn swap_out_2m_is_whole_clusters_never_cluster_zero() {
        for op in ops(Pattern::SwapOut2m, whole(16 * MIB), 200) {
            assert_eq!(op.offset % (2 * MIB), 0);
            assert_ne!(op.offset, 0);
        }
    }

    #[test]
    fn sequential_wraps_to_the_region_start() {
        let got = ops(Pattern::SeqWrite64k, whole(256 << 10), 6);
        let offsets: Vec<u64> = got.iter().map(|o| o.offset >> 10).collect();
        assert_eq!(offsets, [0, 64, 128, 192, 0, 64]);
    }

    #[test]
    fn readahead_windows_are_aligned_and_vectored() {
        for op in ops(Pattern::Readahead, whole(4 * MIB), 500) {
            assert!(op.vectored);
            assert_eq!(op.offset % (READAHEAD_PAGES as u64 * PAGE), 0);
            assert_ne!(op.offset, 0);
        }
    }

    #[test]
    fn too_small_regions_are_refused() {
        assert!(OpGen::new(Pattern::SwapOut2m, whole(2 * MIB), 1).is_none());
        assert!(OpGen::new(Pattern::SwapOut2m, whole(4 * MIB), 1).is_some());
        assert!(OpGen::new(Pattern::SwapIn4k, whole(PAGE), 1).is_none());
        assert!(OpGen::new(Pattern::RandRead4k, whole(PAGE), 1).is_some());
        assert!(OpGen::new(Pattern::Readahead, whole(8 * PAGE), 1).is_none());
    }

    #[test]
    fn same_seed_same_stream() {
        let r = whole(32 * MIB);
        assert_eq!(ops(Pattern::Mixed, r, 300), ops(Pattern::Mixed, r, 300));
    }
}
