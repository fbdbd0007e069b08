//! Synthetic traces of usemem's shape, for benchmarks and tests.

use super::*;

/// What [`synth`] writes.
#[derive(Debug, Clone, Copy)]
pub struct SynthSpec {
    /// Pages of the footprint, each stored to once first; split evenly
    /// among the pids (rounded down to a multiple of `pids`).
    pub pages: u64,
    /// Processes, pids 1..=pids; records go to them in turn.
    pub pids: u32,
    /// Uniformly random accesses after that first pass.
    pub accesses: u64,
    /// Share of the random accesses that are stores, 0..=1.
    pub write_ratio: f64,
    /// Seed of the page and op choices.
    pub seed: u64,
}

/// Writes a synthetic trace to `path` as `format`: usemem's shape (every
/// page stored to in order, then uniform random 8-byte accesses), for
/// benchmarks and tests of traces of any size. With several pids, records
/// go to pid 1, 2, ... in turn, each pid over its own share of the pages.
/// Returns the records written.
///
/// # Errors
///
/// [`TraceError::Open`] or [`TraceError::Write`].
pub fn synth(
    path: &Path,
    format: TraceFormat,
    spec: SynthSpec,
    progress: impl FnMut(u64),
) -> Result<u64, TraceError> {
    synth_with(path, format, spec, compress::is_zst_name(path), progress)
}

/// [`synth`], zstd-compressed when `compress`.
///
/// # Errors
///
/// As [`synth`].
pub fn synth_with(
    path: &Path,
    format: TraceFormat,
    spec: SynthSpec,
    compress: bool,
    mut progress: impl FnMut(u64),
) -> Result<u64, TraceError> {
    const BASE: u64 = 0x7f00_0000_0000;
    let mut w = TraceWriter::create_with(path, format, compress)?;
    let mut rng = swapvm_core::SimRng::derive(spec.seed, 0);
    let pids = u64::from(spec.pids.max(1));
    let share = spec.pages / pids;
    let pages = share * pids;
    // No page, no random access: `below(0)` has nothing to pick.
    let accesses = if share == 0 { 0 } else { spec.accesses };
    let total = pages.saturating_add(accesses);
    for i in 0..total {
        let pid = i % pids;
        let (page, kind) = if i < pages {
            (i / pids, AccessKind::Store)
        } else if rng.chance(spec.write_ratio) {
            (rng.below(share), AccessKind::Store)
        } else {
            (rng.below(share), AccessKind::Load)
        };
        let rec = TraceRecord {
            pid: pid as u32 + 1,
            addr: BASE + (page << PAGE_SHIFT) + 8 * rng.below(512),
            size: 8,
            kind,
        };
        w.write(&rec, Position::Record(i))?;
        if i % 65536 == 0 {
            progress(i);
        }
    }
    w.finish()?;
    progress(total);
    Ok(total)
}
