//! Machine configuration (TOML) shared by every layer.
//!
//! A machine config says what the emulated hardware is (RAM, CPUs, swap
//! devices) and how the kernel knobs are set; what runs on it is a separate
//! workload file, named by `workload` or given on the command line.
//! Relative paths inside a config are relative to the config file's folder,
//! as in Cargo manifests, so a config works from any current directory.
//!
//! Every error names the file, and the field or line (TOML errors carry the
//! line and column). A field changed on the command line (`--set`, an
//! [`Override`]) is checked as the file is, and its errors name `--set KEY`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub mod cgroup;
pub mod lru_gen;
mod overrides;
pub mod zswap;
pub use cgroup::{CgroupConfig, CgroupLimits};
pub use lru_gen::ReclaimPolicy;
pub use overrides::Override;
pub use zswap::ZswapConfig;

/// Smallest emulated RAM swapvm accepts: below this the watermarks leave
/// nothing to run in.
pub const MIN_RAM_MIB: u64 = 4;
/// Largest emulated RAM swapvm accepts.
pub const MAX_RAM_MIB: u64 = 1 << 20;
/// Most swap devices a machine can have (the kernel's MAX_SWAPFILES).
pub const MAX_SWAP_DEVICES: usize = 32;

/// Bytes in the unit of a `*_kb`/`*_kbytes` field.
const KIB: u64 = 1 << 10;
/// Bytes in the unit of a `*_mib` field.
const MIB: u64 = 1 << 20;

// The size fields: each takes its integer or a size with a unit, through
// the one helper in `size::de`; a wrapper per field names it in errors.

fn de_ram_mib<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    crate::size::de::size_in::<_, _, MIB>(d, "machine.ram_mib")
}
fn de_swap_size_mib<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    crate::size::de::size_in::<_, _, MIB>(d, "swap.size_mib")
}
fn de_min_free_kbytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    crate::size::de::opt_size_in::<_, _, KIB>(d, "reclaim.min_free_kbytes")
}
fn de_enabled_kb<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    crate::size::de::vec_size_in::<_, _, KIB>(d, "mthp.enabled_kb")
}

/// A configuration or definition file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this type (syntax, unknown field, wrong
    /// type); the cause names the line, column and field.
    #[error("{}: invalid", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error, with line and field.
        #[source]
        source: toml::de::Error,
    },
    /// A field has a value swapvm cannot use.
    #[error("{}: field `{field}`: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted path of the field, e.g. `machine.ram_mib`.
        field: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// A `--set` override that cannot be applied: no such field, an index
    /// out of range, a value of the wrong type or out of range.
    #[error("--set {arg}: {reason}")]
    Override {
        /// `KEY`, or `KEY=VALUE` when the value is what is wrong.
        arg: String,
        /// What is wrong.
        reason: String,
    },
}

/// Reads and deserialises a TOML file, naming the file in any error.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_toml(&text, path)
}

/// Deserialises TOML `text` that came from `path`.
pub fn parse_toml<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Checks `ok`, else builds [`ConfigError::Invalid`].
pub fn ensure(
    ok: bool,
    path: &Path,
    field: &str,
    reason: impl FnOnce() -> String,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            path: path.to_owned(),
            field: field.to_owned(),
            reason: reason(),
        })
    }
}

/// A whole machine.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    /// The hardware and the run.
    pub machine: MachineSection,
    /// Swap devices, in the order they are enabled.
    #[serde(default)]
    pub swap: Vec<SwapDeviceConfig>,
    /// Reclaim knobs.
    #[serde(default)]
    pub reclaim: ReclaimConfig,
    /// KSM (`/sys/kernel/mm/ksm`).
    #[serde(default)]
    pub ksm: KsmConfig,
    /// Large anonymous folios (`/sys/kernel/mm/transparent_hugepage`).
    #[serde(default)]
    pub mthp: MthpConfig,
    /// zswap, the compressed cache in front of the swap devices (off by
    /// default).
    #[serde(default, skip_serializing_if = "ZswapConfig::is_default")]
    pub zswap: ZswapConfig,
    /// Default workload file, relative to this config's folder.
    #[serde(default)]
    pub workload: Option<PathBuf>,
    /// Fault injection (all off by default).
    #[serde(default)]
    pub fault: crate::fault::FaultConfig,
    /// Switches that re-introduce the seed review's bugs (all off).
    #[serde(default)]
    pub seed_bugs: crate::fault::SeedBugsConfig,
    /// Memory cgroups below the root (`[[cgroup]]`, see [`cgroup`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroup: Vec<CgroupConfig>,
    /// Folder of the config file; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The config file itself (for error messages and reports).
    #[serde(skip)]
    pub source: PathBuf,
}

/// `[machine]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MachineSection {
    /// Emulated RAM in MiB (or a size with a unit: `"1G"`).
    #[serde(deserialize_with = "de_ram_mib")]
    pub ram_mib: u64,
    /// Emulated CPUs; processes are spread over them.
    #[serde(default = "one_u32")]
    pub cpus: u32,
    /// The run's seed: the same config and seed give the same counters.
    #[serde(default = "one_u64")]
    pub seed: u64,
    /// Memory accesses each runnable process makes per tick.
    #[serde(default = "default_tick_accesses")]
    pub tick_accesses: u32,
    /// Ticks after submission at which an I/O is delivered to the emulation
    /// (deterministic mode waits for the real completion if it is late).
    #[serde(default = "one_u32")]
    pub io_latency_ticks: u32,
    /// The same for writes; absent: `io_latency_ticks`. Real devices write
    /// slower than they read, and a write due later lets the disk finish
    /// it while the emulation goes on.
    #[serde(default)]
    pub io_write_latency_ticks: Option<u32>,
    /// Stop after this many ticks (0: run until every process exits).
    #[serde(default)]
    pub max_ticks: u64,
    /// Per-slot swap count maximum before a continuation is needed (the
    /// kernel's `SWAP_MAP_MAX`, 0x3e = 62). Lower it to exercise
    /// continuations.
    #[serde(default = "default_count_max")]
    pub swap_count_max: u16,
    /// Take a hibernation image every this many ticks and release it as
    /// many ticks later (0: never), exercising the hibernation slots.
    #[serde(default)]
    pub hibernate_every: u64,
    /// Ticks between two rows of the run's time series (`timeseries.csv`
    /// and the plots); a final row is always taken when the run ends.
    #[serde(default = "default_sample_every_ticks")]
    pub sample_every_ticks: u64,
    /// What the emulated RAM holds: `full` (every page's 4 KiB of bytes,
    /// verified on every swap-in and load) or `none` (metadata only, for
    /// what-if studies at scale: no page bytes, swap on `null` devices,
    /// verification off). Every other mechanism runs the same in both, and
    /// a deterministic run gives the same counters in both.
    #[serde(default)]
    pub content: ContentMode,
    /// How the tasks are scheduled: `deterministic` (fixed turns, I/O
    /// delivered at a logical tick) or `realtime` (tasks await their own
    /// completions; see [`crate::timing`]).
    #[serde(default, skip_serializing_if = "Timing::is_deterministic")]
    pub timing: Timing,
    /// Realtime mode: wall-clock µs per tick, the sampling interval of
    /// the time series and the clock of everything counted in ticks.
    #[serde(
        default = "crate::timing::default_tick_us",
        skip_serializing_if = "crate::timing::is_default_tick_us"
    )]
    pub tick_us: u64,
}

pub use crate::timing::Timing;

/// `machine.content`: whether pages have bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContentMode {
    /// Every frame has its 4 KiB of bytes in one memory map; swap devices
    /// store them; every swap-in and every load is verified.
    #[default]
    Full,
    /// Metadata only: a frame holds only its [`CONTENT_WORD_BYTES`]-byte
    /// content word (which content it has, as the machine's content keys
    /// name it; 0 is the zero page), a swap device is `null`, and nothing
    /// is verified. Decisions that look at bytes (the zeromap, KSM) look
    /// at the word, which tells equal pages and zero pages exactly as the
    /// bytes do.
    None,
}

/// Bytes a frame keeps in `machine.content = "none"`: its content word.
pub const CONTENT_WORD_BYTES: usize = 8;

impl ContentMode {
    /// Bytes of content each 4 KiB page carries in this mode: the whole
    /// page, or its content word.
    pub fn page_bytes(self) -> usize {
        match self {
            ContentMode::Full => crate::PAGE_SIZE,
            ContentMode::None => CONTENT_WORD_BYTES,
        }
    }
    /// The config spelling (`"full"`, `"none"`).
    pub fn name(self) -> &'static str {
        match self {
            ContentMode::Full => "full",
            ContentMode::None => "none",
        }
    }
}

/// Default of `machine.sample_every_ticks`: the quickstart run (about
/// 67,000 ticks) gives about 700 rows.
pub const DEFAULT_SAMPLE_EVERY_TICKS: u64 = 100;

fn default_sample_every_ticks() -> u64 {
    DEFAULT_SAMPLE_EVERY_TICKS
}

fn default_count_max() -> u16 {
    0x3e
}

/// One `[[swap]]` device.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SwapDeviceConfig {
    /// Swap image file (or block device), relative to the config's folder.
    pub path: PathBuf,
    /// Size in MiB used when swapvm creates the image (or a size with a
    /// unit: `"256MiB"`, `"1G"`).
    #[serde(deserialize_with = "de_swap_size_mib")]
    pub size_mib: u64,
    /// Higher priority devices are used first (`swapon -p`).
    #[serde(default)]
    pub priority: i32,
    /// io_uring queue depth.
    #[serde(default = "default_queue_depth")]
    pub queue_depth: u32,
    /// Which thread drives the device's io_uring ring: `inline` (the tick
    /// loop's own, as the kernel's faulting task submits its own bio) or
    /// `thread` (an engine thread; the tick loop hands requests over).
    #[serde(default)]
    pub submit: SubmitMode,
    /// Create (mkswap) the image if it does not exist.
    #[serde(default = "yes")]
    pub create: bool,
    /// Open with O_DIRECT.
    #[serde(default = "yes")]
    pub direct: bool,
    /// Label written when swapvm creates the image.
    #[serde(default)]
    pub label: String,
    /// `file` (an image on disk through io_uring), `zram` (compressed in
    /// memory; `path` is then only a name) or `null` (metadata-only
    /// machines: I/O counted, not done; `path` is only a name).
    #[serde(default)]
    pub backend: SwapBackend,
    /// zram compressor.
    #[serde(default)]
    pub compressor: Compressor,
    /// Slot allocator design.
    #[serde(default)]
    pub allocator: Allocator,
    /// Rotational device (`/sys/block/*/queue/rotational`): `false` (the
    /// default, as for SSD and NVMe, so that counters do not depend on the
    /// host's disk), `true`, or `"auto"` (from the device itself: the block
    /// device, or the one holding the image file; zram and null devices
    /// are non-rotational). A rotational device allocates from one global
    /// cluster instead of per-CPU ones, and while one is swapped on,
    /// swap-in reads ahead by swap offset, not by address
    /// (`swap_use_vma_readahead`).
    #[serde(default)]
    pub rotational: Rotational,
    /// Discard (punch holes in) clusters that become free.
    #[serde(default)]
    pub discard: bool,
    /// Send every swap write to the disk on its own, never merged with an
    /// adjacent one (the block queue's `nomerges`; merging never changes
    /// what the emulation sees, only the requests the disk gets).
    #[serde(default)]
    pub nomerges: bool,
}

/// Where a swap device keeps its pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwapBackend {
    /// An image file or block device, through io_uring.
    #[default]
    File,
    /// A compressed memory device (drivers/block/zram).
    Zram,
    /// No device: requests complete as a file's would, in the same tick
    /// and order, and are counted; only each slot's content word is kept
    /// (so a page read back is the page written). Needs
    /// `machine.content = "none"`.
    Null,
}

/// Which thread submits a file device's I/O (`[[swap]] submit`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubmitMode {
    /// The tick loop's own thread submits and reaps.
    #[default]
    Inline,
    /// An engine thread of the device's own.
    Thread,
}

/// zram's compression algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compressor {
    /// LZ4 (zram's default).
    #[default]
    Lz4,
    /// Zstandard.
    Zstd,
}

/// The swap slot allocator design.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Allocator {
    /// Per-order nonfull/frag cluster lists (the current kernel).
    #[default]
    PerOrder,
    /// Large folios only from wholly free clusters (the earlier kernel).
    FreeClustersOnly,
}

/// A device's `rotational`: a model parameter, or `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotational {
    /// Given in the config.
    Fixed(bool),
    /// Taken from the device when it is swapped on.
    Auto,
}

impl Default for Rotational {
    fn default() -> Self {
        Rotational::Fixed(false)
    }
}

impl Serialize for Rotational {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Rotational::Fixed(b) => s.serialize_bool(*b),
            Rotational::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Rotational {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Rotational;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false or \"auto\"")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Rotational, E> {
                Ok(Rotational::Fixed(b))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Rotational, E> {
                match v {
                    "auto" => Ok(Rotational::Auto),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `[reclaim]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReclaimConfig {
    /// `vm.watermark_scale_factor`, in 1/10000 of RAM.
    #[serde(default = "default_wsf")]
    pub watermark_scale_factor: u32,
    /// `vm.min_free_kbytes`; derived from RAM size as the kernel does when absent.
    /// A size with a unit (`"8M"`) is taken too.
    #[serde(default, deserialize_with = "de_min_free_kbytes")]
    pub min_free_kbytes: Option<u64>,
    /// `SWAP_CLUSTER_MAX`: folios isolated per scan batch.
    #[serde(default = "default_cluster_max")]
    pub swap_cluster_max: u32,
    /// `vm.swappiness`, 0..=200 (default 60): the relative cost of
    /// reclaiming anon against file pages in `get_scan_count`. swapvm has
    /// only swap-backed (anon and shmem) LRU lists, so there is nothing to
    /// balance against; what remains of the kernel's rule is that
    /// swappiness 0 scans anon only while free memory is below the high
    /// watermark (the kernel's `SCAN_ANON` fallback when file pages are
    /// exhausted), so kswapd honours it and direct reclaim (always below
    /// min) does not.
    #[serde(default = "default_swappiness")]
    pub swappiness: u32,
    /// `vm.page-cluster`: swap-in readahead reads up to `2^page_cluster`
    /// slots around a faulting entry (default 3; 0 turns readahead off).
    /// VMA readahead caps it at 2^5 (`SWAP_RA_ORDER_CEILING`).
    #[serde(default = "default_page_cluster")]
    pub page_cluster: u32,
    /// `/sys/kernel/mm/swap/vma_ra_enabled` (default true): read ahead by
    /// virtual address in the faulting VMA; false reads ahead by swap
    /// offset (cluster readahead).
    #[serde(default = "yes")]
    pub vma_ra_enabled: bool,
    /// Which LRU picks reclaim's victims: `"classic"` (default) or
    /// `"mglru"` (see config/lru_gen.rs).
    #[serde(default)]
    pub policy: ReclaimPolicy,
    /// `/sys/kernel/mm/lru_gen/enabled` feature bits under `"mglru"`
    /// (default 0x7; 0x2 off: aging walks no page tables).
    #[serde(default = "lru_gen::default_lru_gen_enabled")]
    pub lru_gen_enabled: u32,
    /// `/sys/kernel/mm/lru_gen/min_ttl_ms`: under `"mglru"`, kswapd OOM-kills
    /// rather than evict a generation younger than this (emulated time,
    /// 1 tick = 1 ms; 0, the default, never).
    #[serde(default)]
    pub min_ttl_ms: u64,
}

/// `[mthp]`: which large anonymous folio sizes faults may allocate, as
/// `/sys/kernel/mm/transparent_hugepage/` sets them. Nothing set: order 0
/// only (every size `never`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MthpConfig {
    /// Sizes in KiB set to `always`: powers of two from 16 to 2048 (a
    /// shorthand for `hugepages.<size>kB = "always"`); sizes with a unit
    /// (`"64K"`, `"2M"`) are taken too.
    #[serde(default, deserialize_with = "de_enabled_kb")]
    pub enabled_kb: Vec<u32>,
    /// The top-level `transparent_hugepage/enabled`: what a size set to
    /// `inherit` follows (default `never`).
    #[serde(default)]
    pub enabled: ThpPolicy,
    /// Per size, `hugepages-<size>kB/enabled`: keys `16kB` to `2048kB`.
    #[serde(default)]
    pub hugepages: std::collections::BTreeMap<String, ThpPolicy>,
    /// Swap a large folio in whole from every device (default false).
    /// Kernel 6.18 does so only from a device with synchronous I/O
    /// (`SWP_SYNCHRONOUS_IO`: zram here) and brings order-0 folios back
    /// from a block device or file; `true` is what later kernels may do.
    #[serde(default)]
    pub swapin_any_device: bool,
}

/// A THP `enabled` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ThpPolicy {
    /// Every VMA without `MADV_NOHUGEPAGE`.
    Always,
    /// Only VMAs with `MADV_HUGEPAGE`.
    Madvise,
    /// None.
    #[default]
    Never,
    /// As the top-level setting (per-size settings only).
    Inherit,
}

impl MthpConfig {
    /// The folio orders of sizes whose policy resolves to `want` (after
    /// `inherit`), largest first (valid after validation).
    fn orders_where(&self, want: ThpPolicy) -> Vec<u8> {
        let mut kbs: Vec<u32> = Vec::new();
        if want == ThpPolicy::Always {
            kbs.extend(&self.enabled_kb);
        }
        for (key, &pol) in &self.hugepages {
            let pol = if pol == ThpPolicy::Inherit {
                self.enabled
            } else {
                pol
            };
            if pol == want {
                kbs.extend(hugepages_kb(key));
            }
        }
        let mut o: Vec<u8> = kbs
            .iter()
            .filter(|kb| kb.is_power_of_two() && **kb >= 16)
            .map(|kb| (kb / 4).trailing_zeros() as u8)
            .collect();
        o.sort_unstable_by(|a, b| b.cmp(a));
        o.dedup();
        o
    }

    /// Orders every anonymous VMA may allocate (`always`), largest first.
    pub fn orders(&self) -> Vec<u8> {
        self.orders_where(ThpPolicy::Always)
    }

    /// Orders only `MADV_HUGEPAGE` VMAs may allocate (`madvise`).
    pub fn orders_madvise(&self) -> Vec<u8> {
        self.orders_where(ThpPolicy::Madvise)
    }
}

/// Which file a path names: its device and inode if it exists, else the
/// path with its existing parent resolved (`..`, symlinks).
#[derive(Debug, PartialEq, Eq)]
enum FileId {
    Inode(u64, u64),
    Path(PathBuf),
}

impl FileId {
    fn of(path: &Path) -> FileId {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(path) {
            return FileId::Inode(m.dev(), m.ino());
        }
        let parent = path.parent().and_then(|d| std::fs::canonicalize(d).ok());
        match (parent, path.file_name()) {
            (Some(d), Some(name)) => FileId::Path(d.join(name)),
            _ => FileId::Path(path.to_owned()),
        }
    }
}

/// The size in KiB of a `hugepages` key such as `64kB`.
fn hugepages_kb(key: &str) -> Option<u32> {
    key.strip_suffix("kB")?.parse().ok()
}

/// `[ksm]`: the knobs of `/sys/kernel/mm/ksm`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KsmConfig {
    /// `run`: ksmd scans.
    #[serde(default)]
    pub run: bool,
    /// `pages_to_scan`: pages per wake-up.
    #[serde(default = "default_pages_to_scan")]
    pub pages_to_scan: u32,
    /// `sleep_millisecs`, in ticks: ksmd wakes every this many ticks.
    #[serde(default = "one_u32")]
    pub sleep_ticks: u32,
}

impl Default for KsmConfig {
    fn default() -> Self {
        KsmConfig {
            run: false,
            pages_to_scan: default_pages_to_scan(),
            sleep_ticks: 1,
        }
    }
}

fn default_pages_to_scan() -> u32 {
    100
}

impl Default for ReclaimConfig {
    fn default() -> Self {
        ReclaimConfig {
            watermark_scale_factor: default_wsf(),
            min_free_kbytes: None,
            swap_cluster_max: default_cluster_max(),
            swappiness: default_swappiness(),
            page_cluster: default_page_cluster(),
            vma_ra_enabled: true,
            policy: ReclaimPolicy::Classic,
            lru_gen_enabled: lru_gen::default_lru_gen_enabled(),
            min_ttl_ms: 0,
        }
    }
}

fn one_u32() -> u32 {
    1
}
fn one_u64() -> u64 {
    1
}
fn yes() -> bool {
    true
}
fn default_tick_accesses() -> u32 {
    256
}
fn default_queue_depth() -> u32 {
    64
}
fn default_wsf() -> u32 {
    10
}
fn default_cluster_max() -> u32 {
    32
}
fn default_swappiness() -> u32 {
    60
}
fn default_page_cluster() -> u32 {
    3
}

/// A validation error on a field an override set (or on a field inside a
/// table or array it set) is the override's: the last such one is named.
/// One on another field, which an override may have made wrong (two fields
/// that must agree), keeps the file's name and lists the overrides.
fn blame_override(e: ConfigError, overrides: &[Override], fields: &[String]) -> ConfigError {
    let ConfigError::Invalid {
        path,
        field,
        reason,
    } = e
    else {
        return e;
    };
    let set_it = |f: &String| {
        field == *f
            || field
                .strip_prefix(f.as_str())
                .is_some_and(|rest| rest.starts_with(['.', '[']))
    };
    match fields.iter().rposition(set_it) {
        Some(i) if field == fields[i] => overrides[i].value_error(reason),
        Some(i) => overrides[i].value_error(format!("field `{field}`: {reason}")),
        None if overrides.is_empty() => ConfigError::Invalid {
            path,
            field,
            reason,
        },
        None => {
            let sets: Vec<String> = overrides
                .iter()
                .map(|o| format!("--set {}={}", o.key, o.raw))
                .collect();
            ConfigError::Invalid {
                path,
                field,
                reason: format!("{reason} (with {})", sets.join(" ")),
            }
        }
    }
}

impl MachineConfig {
    /// Loads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, &[])
    }

    /// Loads a config file, applies `overrides` in order (a later one wins)
    /// and validates the result.
    ///
    /// # Errors
    ///
    /// The file's own errors as [`MachineConfig::load`] gives them;
    /// [`ConfigError::Override`] naming the first override that cannot be
    /// applied or deserialised, or whose field fails validation.
    pub fn load_with(path: &Path, overrides: &[Override]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_with(&text, path, overrides)
    }

    /// Parses and validates `text`, which came from `path`.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::from_toml_with(text, path, &[])
    }

    /// [`MachineConfig::from_toml`] with `overrides` applied to the parsed
    /// document before it is deserialised, so they are type-checked as the
    /// file is. Relative paths they set resolve against the file's folder.
    pub fn from_toml_with(
        text: &str,
        path: &Path,
        overrides: &[Override],
    ) -> Result<Self, ConfigError> {
        // The file alone first, so that its own errors name its lines.
        let mut cfg: MachineConfig = parse_toml(text, path)?;
        let mut fields = Vec::with_capacity(overrides.len());
        if !overrides.is_empty() {
            let mut doc: toml::Value = parse_toml(text, path)?;
            // One at a time, so a type error names the override that made it.
            for o in overrides {
                fields.push(o.apply(&mut doc)?);
                cfg = MachineConfig::deserialize(doc.clone())
                    .map_err(|e| o.value_error(e.message().trim_end().to_owned()))?;
            }
        }
        cfg.source = path.to_owned();
        cfg.base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        cfg.validate()
            .map_err(|e| blame_override(e, overrides, &fields))?;
        Ok(cfg)
    }

    /// Resolves a path from this config against its folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    /// RAM in 4 KiB pages.
    pub fn ram_pages(&self) -> u64 {
        self.machine.ram_mib * 256
    }

    /// Checks every field's range; errors name the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = &self.source;
        let m = &self.machine;
        ensure(m.ram_mib >= MIN_RAM_MIB, p, "machine.ram_mib", || {
            format!(
                "{} MiB is below the minimum of {MIN_RAM_MIB} MiB",
                m.ram_mib
            )
        })?;
        ensure(m.ram_mib <= MAX_RAM_MIB, p, "machine.ram_mib", || {
            format!(
                "{} MiB is above the maximum of {MAX_RAM_MIB} MiB",
                m.ram_mib
            )
        })?;
        ensure((1..=256).contains(&m.cpus), p, "machine.cpus", || {
            format!("{} is outside 1..=256", m.cpus)
        })?;
        ensure(m.tick_accesses >= 1, p, "machine.tick_accesses", || {
            "must be at least 1".into()
        })?;
        crate::timing::validate_tick_us(m.tick_us, p)?;
        ensure(
            (1..=0x7ffe).contains(&m.swap_count_max),
            p,
            "machine.swap_count_max",
            || format!("{} is outside 1..=32766", m.swap_count_max),
        )?;
        ensure(
            (1..=1000).contains(&m.io_latency_ticks),
            p,
            "machine.io_latency_ticks",
            || format!("{} is outside 1..=1000", m.io_latency_ticks),
        )?;
        if let Some(w) = m.io_write_latency_ticks {
            ensure(
                (1..=1000).contains(&w),
                p,
                "machine.io_write_latency_ticks",
                || format!("{w} is outside 1..=1000"),
            )?;
        }
        ensure(
            m.sample_every_ticks >= 1,
            p,
            "machine.sample_every_ticks",
            || "must be at least 1 (a row of the time series every N ticks)".into(),
        )?;
        ensure(self.swap.len() <= MAX_SWAP_DEVICES, p, "swap", || {
            format!("{} devices; at most {MAX_SWAP_DEVICES}", self.swap.len())
        })?;
        for (i, s) in self.swap.iter().enumerate() {
            ensure(s.size_mib >= 1, p, &format!("swap[{i}].size_mib"), || {
                "must be at least 1 MiB".into()
            })?;
            ensure(
                s.size_mib <= 1 << 24,
                p,
                &format!("swap[{i}].size_mib"),
                || format!("{} MiB is above 16 TiB", s.size_mib),
            )?;
            ensure(
                (1..=4096).contains(&s.queue_depth),
                p,
                &format!("swap[{i}].queue_depth"),
                || format!("{} is outside 1..=4096", s.queue_depth),
            )?;
            ensure(s.label.len() <= 15, p, &format!("swap[{i}].label"), || {
                format!("{} bytes; a swap label holds at most 15", s.label.len())
            })?;
        }
        self.validate_mthp(p)?;
        self.validate_distinct_images(p)?;
        let k = &self.ksm;
        ensure(
            (1..=1 << 20).contains(&k.pages_to_scan),
            p,
            "ksm.pages_to_scan",
            || format!("{} is outside 1..=1048576", k.pages_to_scan),
        )?;
        ensure(
            (1..=1_000_000).contains(&k.sleep_ticks),
            p,
            "ksm.sleep_ticks",
            || format!("{} is outside 1..=1000000", k.sleep_ticks),
        )?;
        let r = &self.reclaim;
        ensure(
            (1..=3000).contains(&r.watermark_scale_factor),
            p,
            "reclaim.watermark_scale_factor",
            || {
                format!(
                    "{} is outside 1..=3000 (the kernel's range)",
                    r.watermark_scale_factor
                )
            },
        )?;
        ensure(
            (1..=4096).contains(&r.swap_cluster_max),
            p,
            "reclaim.swap_cluster_max",
            || format!("{} is outside 1..=4096", r.swap_cluster_max),
        )?;
        ensure(r.swappiness <= 200, p, "reclaim.swappiness", || {
            format!("{} is outside 0..=200 (the kernel's range)", r.swappiness)
        })?;
        ensure(r.page_cluster <= 10, p, "reclaim.page_cluster", || {
            format!("{} is outside 0..=10 (at most 1024 pages)", r.page_cluster)
        })?;
        lru_gen::validate(p, r.policy, r.lru_gen_enabled, r.min_ttl_ms)?;
        self.fault.validate(p)?;
        self.zswap.validate(p)?;
        self.validate_fault_device()?;
        self.cgroups()?;
        self.validate_content()
    }

    /// The memory cgroup hierarchy: the root (index 0, no limits), then each
    /// `[[cgroup]]` in file order, checked.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `cgroup[i].<file>`.
    pub fn cgroups(&self) -> Result<Vec<CgroupLimits>, ConfigError> {
        cgroup::resolve(&self.cgroup, &self.source)
    }

    /// No two image-backed `[[swap]]` entries name the same file, however
    /// spelt (`dir/../x.img` and `./x.img`, or a hard link): they would
    /// overwrite each other's slots. Existing files are compared by device
    /// and inode, missing ones by their resolved path.
    fn validate_distinct_images(&self, p: &Path) -> Result<(), ConfigError> {
        let mut seen: Vec<(usize, FileId)> = Vec::new();
        for (i, s) in self.swap.iter().enumerate() {
            if s.backend != SwapBackend::File {
                continue;
            }
            let field = format!("swap[{i}].path");
            ensure(!s.path.as_os_str().is_empty(), p, &field, || {
                "empty: name the swap image or block device".into()
            })?;
            let resolved = self.resolve(&s.path);
            ensure(!resolved.is_dir(), p, &field, || {
                format!(
                    "{} is a directory, not a swap image or block device",
                    resolved.display()
                )
            })?;
            let id = FileId::of(&resolved);
            if let Some((j, _)) = seen.iter().find(|(_, other)| *other == id) {
                return Err(ConfigError::Invalid {
                    path: p.to_owned(),
                    field: format!("swap[{i}].path"),
                    reason: format!(
                        "{} is the same file as swap[{j}].path ({})",
                        s.path.display(),
                        self.swap[*j].path.display()
                    ),
                });
            }
            seen.push((i, id));
        }
        Ok(())
    }

    /// `[mthp]`: sizes are powers of two from 16 to 2048 KiB, `inherit`
    /// only per size, and no size both in `enabled_kb` and `hugepages`.
    fn validate_mthp(&self, p: &Path) -> Result<(), ConfigError> {
        let m = &self.mthp;
        let size_ok = |kb: u32| kb.is_power_of_two() && (16..=2048).contains(&kb);
        for (i, &kb) in m.enabled_kb.iter().enumerate() {
            ensure(size_ok(kb), p, &format!("mthp.enabled_kb[{i}]"), || {
                format!("{kb} KiB is not a power of two from 16 to 2048")
            })?;
        }
        ensure(m.enabled != ThpPolicy::Inherit, p, "mthp.enabled", || {
            "`inherit` is for a size's own setting; the top level is always, madvise or never"
                .into()
        })?;
        for key in m.hugepages.keys() {
            let field = format!("mthp.hugepages.{key}");
            let kb = hugepages_kb(key).filter(|&kb| size_ok(kb));
            ensure(kb.is_some(), p, &field, || {
                "not a size: keys are 16kB, 32kB, ... 2048kB".into()
            })?;
            ensure(
                !kb.is_some_and(|kb| m.enabled_kb.contains(&kb)),
                p,
                &field,
                || "this size is also in mthp.enabled_kb; set it in one place".into(),
            )?;
        }
        Ok(())
    }

    /// Checks that `fault.swapoff_device` names a `[[swap]]` entry when
    /// `fault.swapoff_at_tick` is set. Call it again after `--fault`.
    pub fn validate_fault_device(&self) -> Result<(), ConfigError> {
        let f = &self.fault;
        let n = self.swap.len();
        ensure(
            f.swapoff_at_tick.is_none() || (f.swapoff_device as usize) < n,
            &self.source,
            "fault.swapoff_device",
            || {
                format!(
                    "{} is not a [[swap]] entry (there are {n})",
                    f.swapoff_device
                )
            },
        )
    }

    /// Checks that `machine.content`, the swap backends and the faults go
    /// together: `content = "none"` has no page bytes, so it needs `null`
    /// devices (a file or zram device stores bytes) and no fault that only
    /// the bytes can reveal; a `null` device keeps no bytes, so it needs
    /// `content = "none"`. Errors name the field. [`MachineConfig::validate`]
    /// calls it; call it again after changing `fault` (`--fault`).
    pub fn validate_content(&self) -> Result<(), ConfigError> {
        let p = &self.source;
        let none = self.machine.content == ContentMode::None;
        for (i, s) in self.swap.iter().enumerate() {
            let field = format!("swap[{i}].backend");
            match s.backend {
                SwapBackend::Null => {
                    ensure(none, p, &field, || {
                        "\"null\" keeps no page bytes, so it needs machine.content = \"none\" \
                         (a full machine's pages must come back from a \"file\" or \"zram\" device)"
                            .into()
                    })?;
                    ensure(!s.discard, p, &format!("swap[{i}].discard"), || {
                        "a \"null\" device has no blocks to discard; set discard = false".into()
                    })?;
                }
                SwapBackend::File | SwapBackend::Zram => {
                    let b = if s.backend == SwapBackend::File {
                        "file"
                    } else {
                        "zram"
                    };
                    ensure(!none, p, &field, || {
                        format!(
                            "\"{b}\" stores page bytes, and machine.content = \"none\" has none: \
                             use backend = \"null\" (or machine.content = \"full\")"
                        )
                    })?;
                }
            }
        }
        ensure(
            !(none && self.fault.torn_write_rate > 0.0),
            p,
            "fault.torn_write_rate",
            || {
                "a torn write is caught only by the read-back checksum of the page bytes, \
                 and machine.content = \"none\" has no bytes (use machine.content = \"full\")"
                    .into()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MachineConfig, ConfigError> {
        MachineConfig::from_toml(text, Path::new("/cfg/test.toml"))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse("[machine]\nram_mib = 64\n").unwrap();
        assert_eq!(c.machine.cpus, 1);
        assert_eq!(c.ram_pages(), 64 * 256);
        assert_eq!(c.reclaim.watermark_scale_factor, 10);
        assert_eq!(c.resolve(Path::new("a.img")), Path::new("/cfg/a.img"));
    }

    #[test]
    fn two_swap_entries_naming_one_file_are_refused() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let cfg = dir.path().join("c.toml");
        let two = |a: &str, b: &str| {
            let text = format!(
                "[machine]\nram_mib = 64\n[[swap]]\npath = \"{a}\"\nsize_mib = 8\n\
                 [[swap]]\npath = \"{b}\"\nsize_mib = 8\n"
            );
            MachineConfig::from_toml(&text, &cfg)
        };
        // Missing files: compared by resolved path.
        for (a, b) in [("x.img", "x.img"), ("sub/../x.img", "./x.img")] {
            let e = two(a, b).unwrap_err();
            assert!(e.to_string().contains("swap[1].path"), "{a} {b}: {e}");
        }
        two("x.img", "y.img").unwrap();
        // Existing files: by inode, so a hard link is the same file.
        std::fs::write(dir.path().join("x.img"), b"").unwrap();
        std::fs::hard_link(dir.path().join("x.img"), dir.path().join("sub/link.img")).unwrap();
        let e = two("x.img", "sub/link.img").unwrap_err();
        assert!(e.to_string().contains("swap[1].path"), "{e}");
        let e = two("x.img", "").unwrap_err();
        assert!(
            e.to_string().contains("swap[1].path") && e.to_string().contains("empty"),
            "{e}"
        );
        let e = two("sub", "y.img").unwrap_err();
        assert!(
            e.to_string().contains("swap[0].path") && e.to_string().contains("directory"),
            "{e}"
        );
    }

    #[test]
    fn mthp_sizes_resolve_per_size_policy_and_inherit() {
        let c = parse(
            "[machine]\nram_mib = 64\n[mthp]\nenabled_kb = [16]\nenabled = \"madvise\"\n\
             [mthp.hugepages]\n64kB = \"madvise\"\n2048kB = \"inherit\"\n32kB = \"always\"\n\
             128kB = \"never\"\n",
        )
        .unwrap();
        assert_eq!(c.mthp.orders(), vec![3, 2], "32K and 16K always");
        assert_eq!(c.mthp.orders_madvise(), vec![9, 4], "2M inherits madvise");
        let c = parse("[machine]\nram_mib = 64\n").unwrap();
        assert!(c.mthp.orders().is_empty() && c.mthp.orders_madvise().is_empty());
    }

    #[test]
    fn bad_mthp_sizes_name_the_field() {
        let bad = [
            ("[mthp.hugepages]\n48kB = \"always\"", "mthp.hugepages.48kB"),
            ("[mthp.hugepages]\n64 = \"always\"", "mthp.hugepages.64"),
            (
                "[mthp]\nenabled_kb = [64]\n[mthp.hugepages]\n64kB = \"never\"",
                "mthp.hugepages.64kB",
            ),
            ("[mthp]\nenabled = \"inherit\"", "mthp.enabled"),
            ("[mthp]\nenabled_kb = [8]", "mthp.enabled_kb[0]"),
        ];
        for (text, field) in bad {
            let e = parse(&format!("[machine]\nram_mib = 64\n{text}\n")).unwrap_err();
            assert!(e.to_string().contains(field), "{text}: {e}");
        }
        let e =
            parse("[machine]\nram_mib = 64\n[mthp.hugepages]\n64kB = \"sometimes\"\n").unwrap_err();
        let msg = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(msg.contains("line 4") && msg.contains("sometimes"), "{msg}");
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let e = parse("[machine]\nram_mib = 64\nbogus = 1\n").unwrap_err();
        let msg = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(msg.contains("/cfg/test.toml"), "{msg}");
        assert!(msg.contains("bogus"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn ram_below_minimum_names_field() {
        let e = parse("[machine]\nram_mib = 1\n").unwrap_err();
        assert!(e.to_string().contains("machine.ram_mib"), "{e}");
        assert!(e.to_string().contains("/cfg/test.toml"), "{e}");
    }

    #[test]
    fn sample_interval_defaults_and_zero_names_file_and_field() {
        let c = parse("[machine]\nram_mib = 64\n").unwrap();
        assert_eq!(c.machine.sample_every_ticks, DEFAULT_SAMPLE_EVERY_TICKS);
        let c = parse("[machine]\nram_mib = 64\nsample_every_ticks = 3\n").unwrap();
        assert_eq!(c.machine.sample_every_ticks, 3);
        let e = parse("[machine]\nram_mib = 64\nsample_every_ticks = 0\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/cfg/test.toml"), "{msg}");
        assert!(msg.contains("machine.sample_every_ticks"), "{msg}");
        // A negative or non-integer interval is a TOML type error that names
        // the field and line.
        let e = parse("[machine]\nram_mib = 64\nsample_every_ticks = -5\n").unwrap_err();
        let msg = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(
            msg.contains("/cfg/test.toml") && msg.contains("line 3"),
            "{msg}"
        );
    }

    #[test]
    fn config_serialises_with_defaults_filled_in() {
        let c =
            parse("[machine]\nram_mib = 64\n[[swap]]\npath = \"a.img\"\nsize_mib = 8\n").unwrap();
        let v = toml::Value::try_from(&c).unwrap();
        assert_eq!(
            v["machine"]["sample_every_ticks"].as_integer(),
            Some(DEFAULT_SAMPLE_EVERY_TICKS as i64)
        );
        assert_eq!(v["swap"][0]["backend"].as_str(), Some("file"));
        assert_eq!(v["machine"]["content"].as_str(), Some("full"));
        assert_eq!(v["reclaim"]["swap_cluster_max"].as_integer(), Some(32));
    }

    #[test]
    fn submit_defaults_to_inline_and_a_bad_one_names_file_line_and_choices() {
        let swap = "[machine]\nram_mib = 64\n[[swap]]\npath = \"a\"\nsize_mib = 8\n";
        assert_eq!(parse(swap).unwrap().swap[0].submit, SubmitMode::Inline);
        let c = parse(&format!("{swap}submit = \"thread\"\n")).unwrap();
        assert_eq!(c.swap[0].submit, SubmitMode::Thread);
        let e = parse(&format!("{swap}submit = \"threaded\"\n")).unwrap_err();
        let msg = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(
            msg.contains("/cfg/test.toml") && msg.contains("line 6"),
            "{msg}"
        );
        assert!(msg.contains("inline") && msg.contains("thread"), "{msg}");
    }

    #[test]
    fn swap_field_errors_name_the_device() {
        let e =
            parse("[machine]\nram_mib = 64\n[[swap]]\npath = \"a\"\nsize_mib = 0\n").unwrap_err();
        assert!(e.to_string().contains("swap[0].size_mib"), "{e}");
    }

    #[test]
    fn swappiness_and_page_cluster_default_and_out_of_range_name_file_and_field() {
        let c = parse("[machine]\nram_mib = 64\n").unwrap();
        assert_eq!(
            (
                c.reclaim.swappiness,
                c.reclaim.page_cluster,
                c.reclaim.vma_ra_enabled
            ),
            (60, 3, true)
        );
        let c = parse("[machine]\nram_mib = 64\n[reclaim]\nswappiness = 200\n").unwrap();
        assert_eq!(c.reclaim.swappiness, 200);
        let e = parse("[machine]\nram_mib = 64\n[reclaim]\nswappiness = 201\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/cfg/test.toml"), "{msg}");
        assert!(msg.contains("reclaim.swappiness"), "{msg}");
        let e = parse("[machine]\nram_mib = 64\n[reclaim]\npage_cluster = 11\n").unwrap_err();
        assert!(e.to_string().contains("reclaim.page_cluster"), "{e}");
    }

    #[test]
    fn rotational_is_a_bool_or_auto_and_a_bad_value_names_the_field() {
        let dev = |v: &str| {
            format!("[machine]\nram_mib = 64\n[[swap]]\npath = \"a.img\"\nsize_mib = 8\n{v}")
        };
        let r = |c: MachineConfig| c.swap[0].rotational;
        assert_eq!(r(parse(&dev("")).unwrap()), Rotational::Fixed(false));
        assert_eq!(
            r(parse(&dev("rotational = true\n")).unwrap()),
            Rotational::Fixed(true)
        );
        assert_eq!(
            r(parse(&dev("rotational = \"auto\"\n")).unwrap()),
            Rotational::Auto
        );
        let e = parse(&dev("rotational = \"yes\"\n")).unwrap_err();
        let msg = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(
            msg.contains("rotational") && msg.contains("\"auto\""),
            "{msg}"
        );
        assert!(msg.contains("line 6"), "{msg}");
    }

    #[test]
    fn size_fields_take_units_or_their_own_integer() {
        let c = parse(
            "[machine]\nram_mib = \"1G\"\n[[swap]]\npath = \"a.img\"\nsize_mib = \"512M\"\n\
             [reclaim]\nmin_free_kbytes = \"8MiB\"\n[mthp]\nenabled_kb = [\"64k\", 16, \"2M\"]\n",
        )
        .unwrap();
        assert_eq!(c.machine.ram_mib, 1024);
        assert_eq!(c.swap[0].size_mib, 512);
        assert_eq!(c.reclaim.min_free_kbytes, Some(8192));
        assert_eq!(c.mthp.enabled_kb, vec![64, 16, 2048]);
        // A bare integer keeps the field's own unit; a string without a
        // unit too (as `--set machine.ram_mib=128` gives an integer).
        let c = parse("[machine]\nram_mib = 128\n[reclaim]\nmin_free_kbytes = 4096\n").unwrap();
        assert_eq!(
            (c.machine.ram_mib, c.reclaim.min_free_kbytes),
            (128, Some(4096))
        );
        // Serialised (report.json's config) as the integer in the unit.
        let v = toml::Value::try_from(parse("[machine]\nram_mib = \"2G\"\n").unwrap()).unwrap();
        assert_eq!(v["machine"]["ram_mib"].as_integer(), Some(2048));
        // And through --set, which hands the deserialiser a toml::Value.
        let c = with(
            ONE_SWAP,
            &[
                ("reclaim.min_free_kbytes", "8M"),
                ("mthp.enabled_kb", "[\"64K\"]"),
                ("swap.0.size_mib", "1G"),
            ],
        )
        .unwrap();
        assert_eq!(c.reclaim.min_free_kbytes, Some(8192));
        assert_eq!(
            (c.mthp.enabled_kb.clone(), c.swap[0].size_mib),
            (vec![64], 1024)
        );
    }

    #[test]
    fn a_size_with_a_bad_unit_or_a_fraction_of_the_unit_names_file_line_and_field() {
        for (text, line, what) in [
            (
                "[machine]\nram_mib = \"1000KiB\"\n",
                "line 2",
                "machine.ram_mib: \"1000KiB\" is not a whole number of MiB",
            ),
            (
                "[machine]\nram_mib = \"12 parsecs\"\n",
                "line 2",
                "not a size",
            ),
            ("[machine]\nram_mib = -4\n", "line 2", "negative"),
            (
                "[machine]\nram_mib = 64\n[[swap]]\npath = \"a\"\nsize_mib = \"1.5K\"\n",
                "line 5",
                "swap.size_mib: \"1.5K\" is not a whole number of MiB",
            ),
            (
                "[machine]\nram_mib = 64\n[mthp]\nenabled_kb = [\"64K\", \"100B\"]\n",
                "line 4",
                "whole number of KiB",
            ),
            (
                "[machine]\nram_mib = 64\n[mthp]\nenabled_kb = [\"8T\"]\n",
                "line 4",
                "out of range",
            ),
        ] {
            let e = parse(text).unwrap_err();
            let source = std::error::Error::source(&e);
            let msg = format!("{e}: {}", source.unwrap_or_else(|| panic!("{text}: {e}")));
            assert!(msg.starts_with("/cfg/test.toml: invalid: "), "{msg}");
            assert!(msg.contains(line) && msg.contains(what), "{text}: {msg}");
        }
        // A whole size of the wrong kind of value is refused as a type.
        let e = parse("[machine]\nram_mib = true\n").unwrap_err();
        let msg = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(msg.contains("an integer in MiB"), "{msg}");
    }

    fn with(text: &str, sets: &[(&str, &str)]) -> Result<MachineConfig, ConfigError> {
        let sets: Vec<Override> = sets.iter().map(|(k, v)| Override::new(k, v)).collect();
        MachineConfig::from_toml_with(text, Path::new("/cfg/test.toml"), &sets)
    }

    const ONE_SWAP: &str = "[machine]\nram_mib = 64\n[[swap]]\npath = \"a.img\"\nsize_mib = 8\n";

    #[test]
    fn set_values_parse_as_toml_else_as_strings() {
        let v = |raw: &str| Override::new("k", raw).value;
        assert_eq!(v("128"), toml::Value::Integer(128));
        assert_eq!(v("0.5"), toml::Value::Float(0.5));
        assert_eq!(v("true"), toml::Value::Boolean(true));
        assert_eq!(v("\"a b\""), toml::Value::String("a b".into()));
        assert_eq!(
            v("free-clusters-only"),
            toml::Value::String("free-clusters-only".into())
        );
        assert_eq!(v("1G"), toml::Value::String("1G".into()));
        assert_eq!(v("1\nw = 2"), toml::Value::String("1\nw = 2".into()));
        assert_eq!(v("[16, 32]").as_array().map(Vec::len), Some(2));
        assert_eq!(v("{ a = 1 }")["a"].as_integer(), Some(1));
        assert_eq!(Override::new(" machine.seed ", " 7 ").key, "machine.seed");
    }

    #[test]
    fn set_changes_nested_fields_and_creates_missing_tables() {
        let c = with(
            "[machine]\nram_mib = 64\n",
            &[
                ("machine.ram_mib", "128"),
                ("reclaim.page_cluster", "0"),
                ("mthp.hugepages.64kB", "madvise"),
                ("machine.ram_mib", "96"),
            ],
        )
        .unwrap();
        assert_eq!(c.machine.ram_mib, 96, "the later override wins");
        assert_eq!(c.reclaim.page_cluster, 0);
        assert_eq!(c.mthp.orders_madvise(), vec![4]);
        // The override shows when the config is serialised (report.json).
        let v = toml::Value::try_from(&c).unwrap();
        assert_eq!(v["machine"]["ram_mib"].as_integer(), Some(96));
    }

    #[test]
    fn set_adds_a_key_to_an_existing_table() {
        let c = with(
            "[machine]\nram_mib = 64\n[reclaim]\nswappiness = 10\n",
            &[
                ("machine.io_write_latency_ticks", "5"),
                ("reclaim.vma_ra_enabled", "false"),
            ],
        )
        .unwrap();
        assert_eq!(c.machine.io_write_latency_ticks, Some(5));
        assert!(!c.reclaim.vma_ra_enabled);
        assert_eq!(c.reclaim.swappiness, 10, "the file's fields stay");
    }

    #[test]
    fn set_indexes_an_array_of_tables() {
        let c = with(
            ONE_SWAP,
            &[
                ("swap.0.allocator", "free-clusters-only"),
                ("swap.0.rotational", "auto"),
            ],
        )
        .unwrap();
        assert_eq!(c.swap[0].allocator, Allocator::FreeClustersOnly);
        assert_eq!(c.swap[0].rotational, Rotational::Auto);
        assert_eq!(c.swap[0].size_mib, 8);
        let c = with(
            ONE_SWAP,
            &[("swap.0", "{ path = \"b.img\", size_mib = 16 }")],
        )
        .unwrap();
        assert_eq!(
            (c.swap[0].path.as_path(), c.swap[0].size_mib),
            (Path::new("b.img"), 16)
        );
        let c = with(ONE_SWAP, &[("mthp.enabled_kb", "[16, 64]")]).unwrap();
        assert_eq!(c.mthp.enabled_kb, vec![16, 64]);
    }

    #[test]
    fn set_takes_every_field_type() {
        let c = with(
            ONE_SWAP,
            &[
                ("machine.cpus", "4"),               // integer
                ("fault.read_error_rate", "0.25"),   // float
                ("swap.0.discard", "true"),          // bool
                ("swap.0.label", "fast"),            // string, unquoted
                ("workload", "\"w x.toml\""),        // string, quoted
                ("swap.0.backend", "zram"),          // enum
                ("machine.ram_mib", "256MiB"),       // size with a unit
                ("reclaim.min_free_kbytes", "2048"), // optional size, integer
            ],
        )
        .unwrap();
        assert_eq!(c.machine.cpus, 4);
        assert_eq!(c.fault.read_error_rate, 0.25);
        assert!(c.swap[0].discard);
        assert_eq!(c.swap[0].label, "fast");
        assert_eq!(c.workload.as_deref(), Some(Path::new("w x.toml")));
        assert_eq!(c.swap[0].backend, SwapBackend::Zram);
        assert_eq!(c.machine.ram_mib, 256);
        assert_eq!(c.reclaim.min_free_kbytes, Some(2048));
        // The wrong type for each kind names the key.
        for (k, v) in [
            ("machine.cpus", "four"),
            ("fault.read_error_rate", "often"),
            ("swap.0.discard", "yes"),
            ("swap.0.label", "[1]"),
            ("swap.0.backend", "tape"),
            ("machine.ram_mib", "2 furlongs"),
        ] {
            let e = with(ONE_SWAP, &[(k, v)]).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("--set {k}={v}: ")),
                "{e}"
            );
        }
    }

    const TWO_CGROUPS: &str = "[machine]\nram_mib = 64\n[[cgroup]]\npath = \"/batch\"\n\
                               \"memory.max\" = \"1G\"\n[[cgroup]]\npath = \"/web\"\n\
                               memory.high = \"256M\"\n";

    #[test]
    fn set_picks_a_cgroup_by_path_and_sets_a_dotted_file() {
        let pages = |mib: u64| mib * 256;
        for key in [
            "cgroup.\"/batch\".memory.max",
            "cgroup./batch.memory.max",
            "cgroup.\"/batch\".\"memory.max\"",
            "cgroup.0.memory.max",
        ] {
            let c = with(TWO_CGROUPS, &[(key, "512M")]).unwrap();
            let cg = c.cgroups().unwrap();
            assert_eq!(cg[1].max, Some(pages(512)), "{key}");
            assert_eq!(
                c.cgroup[0].files.len(),
                1,
                "{key}: one spelling of the file"
            );
            assert_eq!(cg[2].high, Some(pages(256)), "{key}: /web untouched");
        }
        // A file the table spells nested is set nested, and a new one added.
        let c = with(
            TWO_CGROUPS,
            &[
                ("cgroup./web.memory.high", "128M"),
                ("cgroup./web.memory.swap.max", "0"),
            ],
        )
        .unwrap();
        let cg = c.cgroups().unwrap();
        assert_eq!((cg[2].high, cg[2].swap_max), (Some(pages(128)), Some(0)));
        // A quoted part keeps its dots: a swap device picked by its image.
        let c = with(ONE_SWAP, &[("swap.\"a.img\".priority", "5")]).unwrap();
        assert_eq!(c.swap[0].priority, 5);
    }

    #[test]
    fn set_cgroup_errors_name_the_key() {
        let e = with(TWO_CGROUPS, &[("cgroup./db.memory.max", "1G")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--set cgroup./db.memory.max: no [[cgroup]] entry with path = \"/db\" \
             (there are \"/batch\", \"/web\")"
        );
        let e = with(TWO_CGROUPS, &[("cgroup./batch.memory.maxx", "1G")]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("--set cgroup./batch.memory.maxx=1G: ")
                && msg.contains("no interface file"),
            "{msg}"
        );
        let e = with(TWO_CGROUPS, &[("cgroup./batch.memory.max", "1.5G")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--set cgroup./batch.memory.max=1.5G: "),
            "{e}"
        );
        for bad in [
            "cgroup.\"/batch.memory.max",
            "cgroup.\"/batch\"x.memory.max",
            "cgroup./ba\"tch.x",
        ] {
            let e = with(TWO_CGROUPS, &[(bad, "1G")]).unwrap_err();
            assert!(e.to_string().starts_with(&format!("--set {bad}: ")), "{e}");
            assert!(e.to_string().contains("quote"), "{e}");
        }
    }

    #[test]
    fn set_index_out_of_range_names_the_key_and_the_count() {
        let e = with(ONE_SWAP, &[("swap.3.path", "x.img")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--set swap.3.path: no [[swap]] entry 3 (the config has 1)"
        );
        let e = with("[machine]\nram_mib = 64\n", &[("swap.0.size_mib", "8")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--set swap.0.size_mib: no [[swap]] entry 0 (the config has 0)"
        );
        let e = with(ONE_SWAP, &[("swap.first.path", "x")]).unwrap_err();
        assert!(e.to_string().starts_with("--set swap.first.path: "), "{e}");
        let e = with(
            ONE_SWAP,
            &[("mthp.enabled_kb", "[16]"), ("mthp.enabled_kb.1", "32")],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("no element 1 in `mthp.enabled_kb`"),
            "{e}"
        );
        let e = with(ONE_SWAP, &[("machine.ram_mib.x", "1")]).unwrap_err();
        assert!(
            e.to_string().contains("`machine.ram_mib` is an integer"),
            "{e}"
        );
        let e = with(ONE_SWAP, &[("machine..seed", "1")]).unwrap_err();
        assert!(
            e.to_string().starts_with("--set machine..seed: empty part"),
            "{e}"
        );
    }

    #[test]
    fn set_unknown_key_is_named() {
        for key in ["machine.bogus", "bogus.ram_mib", "swap.0.bogus"] {
            let e = with(ONE_SWAP, &[(key, "1")]).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("--set {key}=1: unknown field `bogus`")),
                "{msg}"
            );
            assert!(!msg.contains("line"), "{msg}");
        }
    }

    #[test]
    fn set_wrong_type_names_the_key_and_the_expected_type() {
        let e = with(ONE_SWAP, &[("machine.cpus", "abc")]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("--set machine.cpus=abc: "), "{msg}");
        assert!(msg.contains("u32"), "{msg}");
        // A size field says what a size is.
        let e = with(ONE_SWAP, &[("machine.ram_mib", "abc")]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("--set machine.ram_mib=abc: "), "{msg}");
        assert!(msg.contains("is not a size"), "{msg}");
        let e = with(ONE_SWAP, &[("swap.0.allocator", "best-fit")]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("--set swap.0.allocator=best-fit: "),
            "{msg}"
        );
        assert!(msg.contains("per-order"), "{msg}");
        let e = with(ONE_SWAP, &[("machine.cpus", "-1")]).unwrap_err();
        assert!(e.to_string().starts_with("--set machine.cpus=-1: "), "{e}");
    }

    #[test]
    fn set_out_of_range_is_validated_like_the_file_and_names_the_key() {
        let e = with(ONE_SWAP, &[("reclaim.page_cluster", "11")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--set reclaim.page_cluster=11: 11 is outside 0..=10 (at most 1024 pages)"
        );
        let e = with(
            ONE_SWAP,
            &[("swap.0", "{ path = \"a.img\", size_mib = 0 }")],
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("--set swap.0=") && msg.contains("field `swap[0].size_mib`"),
            "{msg}"
        );
        // A field the override did not set keeps the file's name, and the
        // overrides are listed.
        let e = with(ONE_SWAP, &[("machine.content", "none")]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("/cfg/test.toml: field `swap[0].backend`"),
            "{msg}"
        );
        assert!(msg.ends_with("(with --set machine.content=none)"), "{msg}");
        // An override can mend a file that would not validate on its own.
        let c = with("[machine]\nram_mib = 1\n", &[("machine.ram_mib", "8")]).unwrap();
        assert_eq!(c.machine.ram_mib, 8);
        // The file's own errors still name the file and line.
        let e = with(
            "[machine]\nram_mib = 64\nbogus = 1\n",
            &[("machine.seed", "2")],
        )
        .unwrap_err();
        let msg = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(
            msg.contains("/cfg/test.toml") && msg.contains("line 3"),
            "{msg}"
        );
    }
}
