//! The figures `swapvm bench` prints: resident accesses per second through
//! [`Memory::access`] beside a minimal four-level array walk on the same
//! address stream, faults per second under memory pressure on a real swap
//! file, replay throughput, metadata bytes per emulated page, the host
//! memory a machine takes with page bytes and without (metadata-only
//! mode), and peak RSS.
//!
//! Everything here is measured with a wall clock, so nothing in it may feed
//! back into an emulation's decisions: the machines it runs are ordinary
//! deterministic machines, and the clock only reads how long they took.
//! Seeds are fixed, so two runs make the same accesses in the same order.

use crate::{Machine, MachineError, Report, RunOptions};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use swapvm_core::config::ContentMode;
use swapvm_core::{MachineConfig, SimRng, VmEvent, VmStat, Vpn, Warnings};
use swapvm_mm::{Memory, Page, Watermarks};
use swapvm_swap::SwapSubsystem;
use swapvm_workload::trace::{self, SynthSpec, TraceStats};
use swapvm_workload::{TraceFormat, TracePlan};

/// Accesses per second of one address pattern, swapvm beside the baseline.
#[derive(Debug, Clone, Copy)]
pub struct AccessRate {
    /// Through `Memory::access` (a resident PTE hit).
    pub swapvm_per_s: f64,
    /// Through the bench's own four-level array walk.
    pub baseline_per_s: f64,
}

impl AccessRate {
    /// swapvm's rate over the baseline's (1.0: as fast as a bare walk).
    pub fn ratio(&self) -> f64 {
        self.swapvm_per_s / self.baseline_per_s
    }
}

/// Resident-access figures over one region.
#[derive(Debug, Clone, Copy)]
pub struct ResidentFigures {
    /// Emulated RAM (MiB).
    pub ram_mib: u64,
    /// Pages of the region, all resident.
    pub region_pages: u64,
    /// Accesses per measured stream.
    pub accesses: u64,
    /// Sequential addresses (wrapping over the region).
    pub sequential: AccessRate,
    /// Uniform random addresses in the region.
    pub random: AccessRate,
    /// Page-table bytes per mapped page (every table in use, upper levels
    /// included, over the region's pages).
    pub pgtable_bytes_per_page: f64,
}

/// A minimal page table: four levels of 512-entry arrays in one slab,
/// upper entries `table + 1`, leaves `pfn << 12 | present`. What a resident
/// access would cost with nothing but the walk.
struct BaselinePt {
    tables: Vec<[u64; 512]>,
}

impl BaselinePt {
    fn new() -> Self {
        BaselinePt {
            tables: vec![[0; 512]],
        }
    }

    fn map(&mut self, vpn: u64, pfn: u64) {
        let mut t = 0usize;
        for level in (1..4).rev() {
            let i = ((vpn >> (9 * level)) & 511) as usize;
            if self.tables[t][i] == 0 {
                self.tables.push([0; 512]);
                self.tables[t][i] = self.tables.len() as u64;
            }
            t = (self.tables[t][i] - 1) as usize;
        }
        self.tables[t][(vpn & 511) as usize] = (pfn << 12) | 1;
    }

    #[inline]
    fn walk(&self, vpn: u64) -> Option<u64> {
        let mut t = 0usize;
        for level in (1..4).rev() {
            let e = self.tables[t][((vpn >> (9 * level)) & 511) as usize];
            if e == 0 {
                return None;
            }
            t = (e - 1) as usize;
        }
        let pte = self.tables[t][(vpn & 511) as usize];
        (pte & 1 != 0).then_some(pte >> 12)
    }
}

/// Measures resident accesses on `ram_mib` of emulated RAM over a region
/// of `region_pages` (faulted in first, so every measured access is a PTE
/// hit), `accesses` loads per stream. Each stream runs `rounds` times,
/// swapvm and baseline alternating; the best round of each is kept (the
/// least disturbed by other work on a shared machine).
///
/// # Errors
/// If emulated RAM cannot be mapped.
///
/// # Panics
/// If the region does not fit in RAM above the min watermark, or an access
/// faults: both are bugs of the bench.
pub fn resident(
    ram_mib: u64,
    region_pages: u64,
    accesses: u64,
    rounds: u32,
    seed: u64,
) -> std::io::Result<ResidentFigures> {
    let ram_pages = ram_mib * 256;
    let stat = Arc::new(VmStat::new());
    let warn = Arc::new(Warnings::new(false));
    let wm = Watermarks::derive(ram_pages, None, 10);
    let mut mem = Memory::new(ram_pages as u32, wm, Arc::clone(&stat), Arc::clone(&warn))?;
    let mut swap = SwapSubsystem::new(stat, warn, 1, 1);
    let id = mem.mm_create();
    let start = mem.mmap_anon(id, region_pages);
    let mut base = BaselinePt::new();
    for i in 0..region_pages {
        let vpn = start.add(i);
        let pfn = mem
            .access(&mut swap, id, vpn, true, 0)
            .expect("the bench region fits in RAM");
        base.map(vpn.0, u64::from(pfn.0));
    }
    let pgtable_bytes_per_page = (mem.pt.tables_in_use() * 4096) as f64 / region_pages as f64;
    let seq: Vec<u64> = (0..accesses).map(|i| start.0 + i % region_pages).collect();
    let mut rng = SimRng::new(seed);
    let rand: Vec<u64> = (0..accesses)
        .map(|_| start.0 + rng.below(region_pages))
        .collect();
    let mut rate = |stream: &[u64]| {
        let (mut best_s, mut best_b) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..rounds {
            let t = Instant::now();
            let mut sum = 0u64;
            for &v in stream {
                let pfn = mem.access(&mut swap, id, Vpn(v), false, 0);
                sum = sum.wrapping_add(u64::from(pfn.expect("resident").0));
            }
            black_box(sum);
            best_s = best_s.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let mut sum = 0u64;
            for &v in stream {
                sum = sum.wrapping_add(base.walk(v).expect("mapped"));
            }
            black_box(sum);
            best_b = best_b.min(t.elapsed().as_secs_f64());
        }
        AccessRate {
            swapvm_per_s: stream.len() as f64 / best_s,
            baseline_per_s: stream.len() as f64 / best_b,
        }
    };
    let sequential = rate(&seq);
    let random = rate(&rand);
    Ok(ResidentFigures {
        ram_mib,
        region_pages,
        accesses,
        sequential,
        random,
        pgtable_bytes_per_page,
    })
}

/// A finished machine run's throughput.
#[derive(Debug, Clone)]
pub struct RunFigures {
    /// Page accesses completed.
    pub accesses: u64,
    /// Wall time (s).
    pub secs: f64,
    /// `pgfault`.
    pub faults: u64,
    /// `pgmajfault` (faults that waited for a swap-in).
    pub major_faults: u64,
    /// `pswpout`.
    pub pswpout: u64,
    /// Verification and checker passed.
    pub passed: bool,
}

impl RunFigures {
    fn of(r: &Report) -> Self {
        RunFigures {
            accesses: r.accesses,
            secs: (r.wall_ms as f64 / 1e3).max(1e-3),
            faults: r.counter(VmEvent::PgFault),
            major_faults: r.counter(VmEvent::PgMajFault),
            pswpout: r.counter(VmEvent::PswpOut),
            passed: r.passed(),
        }
    }
    /// Accesses per second.
    pub fn accesses_per_s(&self) -> f64 {
        self.accesses as f64 / self.secs
    }
    /// Faults per second.
    pub fn faults_per_s(&self) -> f64 {
        self.faults as f64 / self.secs
    }
}

/// Writes a machine config with `ram_mib` of RAM and one O_DIRECT swap
/// file of `swap_mib` in `dir`, naming `workload` if given.
fn write_config(
    dir: &Path,
    ram_mib: u64,
    swap_mib: u64,
    workload: Option<&str>,
) -> std::io::Result<std::path::PathBuf> {
    let wl = workload.map_or(String::new(), |w| format!("workload = \"{w}\"\n"));
    let text = format!(
        "{wl}[machine]\nram_mib = {ram_mib}\ncpus = 2\nseed = 1\n\n\
         [[swap]]\npath = \"swap.img\"\nsize_mib = {swap_mib}\ndirect = true\ncreate = true\n"
    );
    let path = dir.join("machine.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Why a bench run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A bench file could not be written.
    #[error("cannot write a bench file in {}", dir.display())]
    Io {
        /// The bench folder.
        dir: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The machine failed.
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// The config did not load.
    #[error(transparent)]
    Config(#[from] swapvm_core::ConfigError),
    /// The trace could not be written or read.
    #[error(transparent)]
    Trace(#[from] swapvm_workload::TraceError),
}

/// A usemem run under pressure: `procs` processes of `mib_each`, each
/// writing its pages once then making one uniform-random pass with half
/// stores, on `ram_mib` of RAM and a swap file in `dir` (O_DIRECT).
///
/// # Errors
/// If the files cannot be written or the machine fails.
pub fn usemem(
    dir: &Path,
    ram_mib: u64,
    procs: u32,
    mib_each: u64,
) -> Result<RunFigures, BenchError> {
    let io = |source| BenchError::Io {
        dir: dir.to_owned(),
        source,
    };
    let wl = format!(
        "name = \"bench-usemem\"\ndescription = \"usemem under pressure\"\n\
         [[process]]\nkind = \"usemem\"\ncount = {procs}\nsize_mib = {mib_each}\n\
         passes = 1\npattern = \"random\"\nwrite_ratio = 0.5\n"
    );
    std::fs::write(dir.join("usemem.toml"), wl).map_err(io)?;
    let swap_mib = u64::from(procs) * mib_each * 2 + 16;
    let cfg = write_config(dir, ram_mib, swap_mib, Some("usemem.toml")).map_err(io)?;
    let cfg = MachineConfig::load(&cfg)?;
    let report = Machine::new(cfg, RunOptions::default())?.run(|_, _| {})?;
    Ok(RunFigures::of(&report))
}

/// Replays a synthetic native trace (`trace synth`: every page stored to,
/// then `accesses` uniform random accesses, half stores) of `pages` pages on
/// `ram_mib` of RAM with a swap file in `dir`.
///
/// # Errors
/// If the trace or config cannot be written or the machine fails.
pub fn replay(
    dir: &Path,
    ram_mib: u64,
    pages: u64,
    accesses: u64,
    seed: u64,
) -> Result<RunFigures, BenchError> {
    let io = |source| BenchError::Io {
        dir: dir.to_owned(),
        source,
    };
    let path = dir.join(format!("synth-{pages}.swvmtrace"));
    let spec = SynthSpec {
        pages,
        pids: 1,
        accesses,
        write_ratio: 0.5,
        seed,
    };
    trace::synth(&path, TraceFormat::Native, spec, |_| {})?;
    let swap_mib = pages / 256 * 2 + 16;
    let cfg = write_config(dir, ram_mib, swap_mib, None).map_err(io)?;
    let cfg = MachineConfig::load(&cfg)?;
    let plan = TracePlan {
        stats: TraceStats::scan(&path, Some(TraceFormat::Native), |_| {})?,
    };
    let report = Machine::from_trace(cfg, &plan, RunOptions::default())?.run(|_, _| {})?;
    Ok(RunFigures::of(&report))
}

/// Metadata bytes per emulated 4 KiB page, from the real structures.
#[derive(Debug, Clone, Copy)]
pub struct Metadata {
    /// `size_of::<Page>()`: the `struct page` of every frame.
    pub page: usize,
    /// The LRU links of every frame, kept in an array beside the pages
    /// (in the kernel's `struct page`).
    pub lru_link: usize,
    /// Page-table bytes per mapped page (measured, see
    /// [`ResidentFigures::pgtable_bytes_per_page`]).
    pub pgtable: f64,
    /// Swap-table bytes per slot: the packed slot word plus the
    /// cluster's `ClusterInfo` and list link shared by its 512 slots.
    pub swap_slot: f64,
    /// The machine's verification checksum per slot (swapvm's own, not
    /// kernel metadata).
    pub verify_slot: usize,
}

/// The metadata figures, `pgtable` taken from a resident measurement.
pub fn metadata(pgtable: f64) -> Metadata {
    use std::mem::size_of;
    let cluster =
        size_of::<swapvm_swap::cluster::ClusterInfo>() + size_of::<swapvm_core::list::Link>();
    Metadata {
        page: size_of::<Page>(),
        lru_link: size_of::<swapvm_core::list::Link>(),
        pgtable,
        swap_slot: size_of::<u64>() as f64 + cluster as f64 / 512.0,
        verify_slot: size_of::<u64>(),
    }
}

/// A usemem run of [`footprint`].
#[derive(Debug, Clone)]
pub struct Footprint {
    /// Emulated RAM (MiB).
    pub ram_mib: u64,
    /// Swap (MiB).
    pub swap_mib: u64,
    /// `machine.content`.
    pub content: ContentMode,
    /// Bytes mapped for page content (the arena, or the content words).
    pub ram_mapped_bytes: usize,
    /// The run's throughput.
    pub run: RunFigures,
}

/// usemem at 1.25x RAM (4 processes, every page written once, then one
/// uniform-random pass with half stores) on `ram_mib` of RAM in `content`
/// mode, with a swap of twice RAM: a null device for `content = "none"`,
/// an O_DIRECT swap file in `dir` for `"full"` (removed afterwards). Run
/// it alone in a process and read [`peak_rss_kib`] after it for the host
/// memory the machine needs (`swapvm bench` does).
///
/// # Errors
/// If the files cannot be written or the machine fails.
pub fn footprint(dir: &Path, ram_mib: u64, content: ContentMode) -> Result<Footprint, BenchError> {
    let io = |source| BenchError::Io {
        dir: dir.to_owned(),
        source,
    };
    let each = (ram_mib * 5 / 16).max(1);
    let wl = format!(
        "name = \"bench-footprint\"\ndescription = \"usemem at 1.25x RAM\"\n\
         [[process]]\nkind = \"usemem\"\ncount = 4\nsize_mib = {each}\n\
         passes = 1\npattern = \"random\"\nwrite_ratio = 0.5\n"
    );
    std::fs::write(dir.join("footprint.toml"), wl).map_err(io)?;
    let swap_mib = ram_mib * 2;
    let swap = match content {
        ContentMode::Full => {
            format!("path = \"footprint.img\"\nsize_mib = {swap_mib}\ndirect = true\n")
        }
        ContentMode::None => {
            format!("path = \"footprint-null\"\nsize_mib = {swap_mib}\nbackend = \"null\"\n")
        }
    };
    let text = format!(
        "workload = \"footprint.toml\"\n[machine]\nram_mib = {ram_mib}\ncpus = 2\nseed = 1\n\
         content = \"{}\"\n\n[[swap]]\n{swap}",
        content.name()
    );
    let path = dir.join("footprint-machine.toml");
    std::fs::write(&path, text).map_err(io)?;
    let cfg = MachineConfig::load(&path)?;
    let m = Machine::new(cfg, RunOptions::default())?;
    let ram_mapped_bytes = m.ram_mapped_bytes();
    let report = m.run(|_, _| {});
    // The image is twice RAM: do not leave it until the bench's end.
    let _ = std::fs::remove_file(dir.join("footprint.img"));
    Ok(Footprint {
        ram_mib,
        swap_mib,
        content,
        ram_mapped_bytes,
        run: RunFigures::of(&report?),
    })
}

fn status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Peak resident set of this process (`VmHWM` of /proc/self/status), KiB.
pub fn peak_rss_kib() -> Option<u64> {
    status_kib("VmHWM:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_walk_matches_the_mapping() {
        let mut b = BaselinePt::new();
        b.map(0x7_f000_0000, 5);
        b.map(0x7_f000_0001, 9);
        assert_eq!(b.walk(0x7_f000_0000), Some(5));
        assert_eq!(b.walk(0x7_f000_0001), Some(9));
        assert_eq!(b.walk(0x7_f000_0002), None);
        assert_eq!(b.walk(0x1234), None);
    }

    #[test]
    fn resident_runs_and_counts_tables() {
        let f = resident(8, 1024, 4096, 1, 1).expect("8 MiB maps");
        assert!(f.sequential.swapvm_per_s > 0.0 && f.random.baseline_per_s > 0.0);
        // 1024 pages: two leaf tables at least, four levels.
        assert!(f.pgtable_bytes_per_page >= 8.0);
    }
}
