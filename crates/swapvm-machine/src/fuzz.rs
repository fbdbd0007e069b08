//! Deterministic simulation testing: `swapvm fuzz --seeds A..B`.
//!
//! Each seed derives, "swarm" style, a random small machine (RAM, CPUs,
//! swap devices with random sizes, priorities, allocators, count maximum,
//! watermark knobs), a random workload and a random set of faults, writes
//! them as an ordinary config and workload file into a temporary folder
//! (next to the swap images), and runs them with the invariant checker
//! after every tick. A seed fails on any invariant violation, contract
//! warning, data mismatch not explained by an injected torn write, or a
//! machine error. The derivation uses only [`SimRng`] (ChaCha8), so a seed
//! means the same case on every machine; the failing case is printed with
//! the command that replays it.
//!
//! The workload side is [`random_workload`]: usemem processes (sizes,
//! patterns, passes, write ratios; they exit at different times) and
//! `kind = "random"` processes, whose ops come from swapvm-workload's one
//! random op generator (regions mapped and unmapped at random, random
//! accesses, exit with regions still mapped). New ops (fork, shmem,
//! madvise, KSM) join as arms of that generator.

use crate::{Machine, MachineError, Report, RunOptions};
use std::fmt::Write as _;
use std::path::Path;
use swapvm_core::{MachineConfig, SimRng, VmEvent};

/// One derived case: the files that reproduce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuzzCase {
    /// The seed it came from.
    pub seed: u64,
    /// `config.toml`.
    pub config_toml: String,
    /// `workload.toml`.
    pub workload_toml: String,
}

/// What running a case showed.
#[derive(Debug)]
pub struct FuzzOutcome {
    /// The seed.
    pub seed: u64,
    /// Ticks run.
    pub ticks: u64,
    /// Checker runs.
    pub checks: u64,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// A hash of the run's counters (for determinism checks).
    pub counters_hash: u64,
    /// Pages swapped out.
    pub pswpout: u64,
    /// Pages swapped in.
    pub pswpin: u64,
    /// Faults injected (I/O, kills mid-fault).
    pub faults: u64,
    /// Processes killed (faults and OOM).
    pub killed: u64,
}

/// RNG stream of the case derivation (the run itself uses other streams).
const CASE_STREAM: u64 = 0xf022;
/// The stream that picks the reclaim policy: a stream of its own, so that
/// a seed's other choices (and a classic seed's whole config) are what they
/// were before MGLRU existed.
const POLICY_STREAM: u64 = 0xf023;
/// The stream that turns zswap on, for the same reason.
const ZSWAP_STREAM: u64 = 0xf024;

fn pick<'a, T>(rng: &mut SimRng, xs: &'a [T]) -> &'a T {
    &xs[rng.below(xs.len() as u64) as usize]
}

/// Uniform in `lo..=hi`.
fn range(rng: &mut SimRng, lo: u64, hi: u64) -> u64 {
    lo + rng.below(hi - lo + 1)
}

/// Derives the case of `seed`.
pub fn derive_case(seed: u64) -> FuzzCase {
    let mut r = SimRng::derive(seed, CASE_STREAM);
    let ram_mib = range(&mut r, 4, 8);
    let mut c = String::new();
    // `write!` to a String cannot fail.
    let _ = writeln!(c, "# swapvm fuzz case, seed {seed}");
    let _ = writeln!(c, "workload = \"workload.toml\"");
    let _ = writeln!(c, "[machine]");
    let _ = writeln!(c, "ram_mib = {ram_mib}");
    let _ = writeln!(c, "cpus = {}", range(&mut r, 1, 4));
    let _ = writeln!(c, "seed = {seed}");
    let _ = writeln!(c, "tick_accesses = {}", pick(&mut r, &[32, 64, 128, 256]));
    let _ = writeln!(c, "io_latency_ticks = {}", range(&mut r, 1, 4));
    let _ = writeln!(c, "max_ticks = {}", range(&mut r, 300, 600));
    let _ = writeln!(c, "swap_count_max = {}", pick(&mut r, &[1, 2, 3, 62]));
    let _ = writeln!(c, "hibernate_every = {}", pick(&mut r, &[0, 0, 0, 10, 50]));
    let _ = writeln!(c, "[reclaim]");
    let _ = writeln!(
        c,
        "watermark_scale_factor = {}",
        pick(&mut r, &[10, 100, 500, 1000])
    );
    let _ = writeln!(c, "swap_cluster_max = {}", pick(&mut r, &[8, 32, 64]));
    random_policy(seed, &mut c);
    let devices = range(&mut r, 1, 3);
    for i in 0..devices {
        let _ = writeln!(c, "[[swap]]");
        let zram = r.chance(0.2);
        let _ = writeln!(c, "path = \"swap{i}.img\"");
        let _ = writeln!(c, "size_mib = {}", range(&mut r, 1, 2 * ram_mib));
        let _ = writeln!(c, "priority = {}", range(&mut r, 0, 2) as i64 - 1);
        let _ = writeln!(c, "queue_depth = {}", pick(&mut r, &[1, 4, 64]));
        let _ = writeln!(c, "label = \"fuzz{i}\"");
        if zram {
            let _ = writeln!(c, "backend = \"zram\"");
        }
        let alloc = pick(&mut r, &["per-order", "free-clusters-only"]);
        let _ = writeln!(c, "allocator = \"{alloc}\"");
        let _ = writeln!(c, "rotational = {}", r.chance(0.3));
        let _ = writeln!(c, "discard = {}", !zram && r.chance(0.3));
    }
    if r.chance(0.5) {
        let _ = writeln!(
            c,
            "[ksm]\nrun = true\npages_to_scan = {}",
            pick(&mut r, &[16, 64, 256])
        );
    }
    if r.chance(0.5) {
        let sizes = pick(&mut r, &["[16]", "[64]", "[16, 64]", "[32, 128]", "[]"]);
        let _ = writeln!(c, "[mthp]\nenabled_kb = {sizes}");
        if r.chance(0.5) {
            let _ = writeln!(c, "[mthp.hugepages]\n256kB = \"madvise\"");
        }
    }
    random_faults(&mut r, &mut c);
    random_zswap(seed, &mut c);
    FuzzCase {
        seed,
        config_toml: c,
        workload_toml: random_workload(&mut r, ram_mib),
    }
}

/// MGLRU on half the seeds, with every `lru_gen` feature or without the
/// page-table walk; classic seeds get no `policy` line.
fn random_policy(seed: u64, c: &mut String) {
    let mut p = SimRng::derive(seed, POLICY_STREAM);
    if p.chance(0.5) {
        let enabled = pick(&mut p, &["0x7", "0x7", "0x3", "0x1"]);
        let _ = writeln!(c, "policy = \"mglru\"\nlru_gen_enabled = {enabled}");
    }
}

/// zswap on half the seeds: pools from tiny (writeback all the time) to
/// the default, either compressor, the shrinker on or off.
fn random_zswap(seed: u64, c: &mut String) {
    let mut z = SimRng::derive(seed, ZSWAP_STREAM);
    if !z.chance(0.5) {
        return;
    }
    let _ = writeln!(
        c,
        "[zswap]\nenabled = true\nmax_pool_percent = {}\ncompressor = \"{}\"\n\
         shrinker_enabled = {}\naccept_threshold_percent = {}",
        pick(&mut z, &[1, 2, 5, 20]),
        pick(&mut z, &["lz4", "zstd"]),
        z.chance(0.5),
        pick(&mut z, &[50, 90, 100]),
    );
}

/// Half the seeds run without faults; the others arm one or two kinds.
fn random_faults(r: &mut SimRng, c: &mut String) {
    if r.chance(0.5) {
        return;
    }
    let _ = writeln!(c, "[fault]");
    let kinds = range(r, 1, 2);
    let mut used = Vec::new();
    for _ in 0..kinds {
        let k = r.below(7);
        if used.contains(&k) {
            continue;
        }
        used.push(k);
        let _ = match k {
            0 => writeln!(c, "read_error_rate = {}", pick(r, &[0.005, 0.02, 0.1])),
            1 => writeln!(c, "write_error_rate = {}", pick(r, &[0.01, 0.05, 0.3])),
            2 => writeln!(c, "short_write_rate = {}", pick(r, &[0.01, 0.05])),
            3 => writeln!(c, "torn_write_rate = {}", pick(r, &[0.005, 0.02])),
            4 => writeln!(c, "device_full_after_slots = {}", range(r, 16, 1024)),
            5 => writeln!(c, "kill_mid_fault_rate = {}", pick(r, &[0.01, 0.1])),
            _ => writeln!(c, "continuation_enomem = {}", range(r, 1, 8)),
        };
    }
}

/// A random workload for a machine of `ram_mib`: one to four processes
/// whose sizes together range from inside RAM to over twice it.
pub fn random_workload(r: &mut SimRng, ram_mib: u64) -> String {
    let mut w = String::new();
    let _ = writeln!(w, "name = \"fuzz\"");
    let n = range(r, 1, 4);
    // Together the processes want about 1 to 4 times the RAM (most seeds
    // swap, some fit: processes exit at different times), in tenths of a
    // MiB so sizes are exact in TOML.
    let total = ram_mib * range(r, 10, 40);
    for _ in 0..n {
        let _ = writeln!(w, "[[process]]");
        let kind = pick(r, &["usemem", "random", "phases"]);
        let _ = writeln!(w, "kind = \"{kind}\"");
        let share = total / n;
        if *kind == "phases" {
            random_program(r, &mut w, share.max(2));
            continue;
        }
        let tenths = range(r, (share * 3 / 4).max(2), (share * 5 / 4).max(2));
        let _ = writeln!(w, "size_mib = {}.{}", tenths / 10, tenths % 10);
        let _ = writeln!(w, "passes = {}", range(r, 0, 3));
        let _ = writeln!(w, "accesses_per_pass = {}", range(r, 64, 2048));
        let _ = writeln!(w, "write_ratio = {}", pick(r, &[0.0, 0.1, 0.5, 1.0]));
        match r.below(3) {
            0 => writeln!(w, "pattern = \"sequential\""),
            1 => writeln!(w, "pattern = \"random\""),
            _ => writeln!(
                w,
                "pattern = \"hotcold\"\nhot_fraction = 0.2\nhot_probability = 0.8"
            ),
        }
        .ok();
    }
    w
}

/// A random phase program of about `tenths` tenths of a MiB: private,
/// shared and tmpfs regions, touches with KSM-mergeable content, accesses,
/// every madvise, forks with child phases, munmaps, unlinks, a hibernate
/// cycle, and swapoff then swapon of the first device. No
/// truncation: an access past a truncated end is a SIGBUS, which the judge
/// would count as an unexplained kill.
fn random_program(r: &mut SimRng, w: &mut String, tenths: u64) {
    let regions = range(r, 1, 3);
    let size = |r: &mut SimRng| {
        let t = range(r, (tenths / regions / 2).max(1), (tenths / regions).max(1));
        format!("{}.{}", t / 10, t % 10)
    };
    let phase = |w: &mut String, table: &str, body: String| {
        let _ = writeln!(w, "[[process.{table}]]\n{body}");
    };
    for reg in 0..regions {
        let backing = pick(r, &["anon", "anon", "shared", "file"]);
        let mib = size(r);
        phase(
            w,
            "phase",
            format!("op = \"mmap\"\nregion = {reg}\nsize_mib = {mib}\nbacking = \"{backing}\"\nfile = {}", r.below(2)),
        );
        if r.chance(0.5) {
            phase(
                w,
                "phase",
                format!("op = \"madvise\"\nregion = {reg}\nadvice = \"mergeable\""),
            );
        }
        let share = pick(r, &[0.0, 0.3, 0.8]);
        phase(
            w,
            "phase",
            format!(
                "op = \"touch\"\nregion = {reg}\nksm_share = {share}\nksm_pool = {}",
                range(r, 1, 16)
            ),
        );
    }
    let access = |r: &mut SimRng, reg: u64| {
        let pattern = pick(
            r,
            &[
                "pattern = \"random\"",
                "pattern = \"sequential\"",
                "pattern = \"zipf\"\nalpha = 0.9",
                "pattern = \"strided\"\nstride = 3",
            ],
        );
        format!(
            "op = \"access\"\nregion = {reg}\naccesses = {}\n{pattern}\nwrite_ratio = {}",
            range(r, 64, 2048),
            pick(r, &[0.0, 0.2, 0.7])
        )
    };
    let forks = r.chance(0.6);
    for _ in 0..range(r, 2, 6) {
        let reg = r.below(regions);
        let body = match r.below(6) {
            0 => {
                let advice = pick(r, &["dontneed", "free", "cold", "pageout", "unmergeable"]);
                // Half on a range of 64 KiB steps, cutting large folios.
                let range = if *advice != "unmergeable" && r.chance(0.5) {
                    let off = r.below(8) as f64 / 16.0;
                    format!("\noffset_mib = {off}\nlength_mib = 0.0625")
                } else {
                    String::new()
                };
                format!("op = \"madvise\"\nregion = {reg}\nadvice = \"{advice}\"{range}")
            }
            1 if r.chance(0.3) => {
                let advice = pick(r, &["hugepage", "nohugepage"]);
                format!("op = \"madvise\"\nregion = {reg}\nadvice = \"{advice}\"")
            }
            _ => access(r, reg),
        };
        phase(w, "phase", body);
    }
    if forks {
        phase(
            w,
            "phase",
            format!("op = \"fork\"\nchildren = {}", range(r, 1, 3)),
        );
        for _ in 0..range(r, 1, 3) {
            let reg = r.below(regions);
            let body = access(r, reg);
            phase(w, "child", body);
        }
        phase(w, "phase", access(r, 0));
    }
    if r.chance(0.3) {
        phase(
            w,
            "phase",
            format!("op = \"munmap\"\nregion = {}", r.below(regions)),
        );
    }
    if r.chance(0.3) {
        phase(w, "phase", "op = \"unlink\"\nfile = 0".into());
    }
    if r.chance(0.15) {
        phase(w, "phase", "op = \"hibernate\"\ndevice = 0".into());
        let reg = r.below(regions);
        phase(w, "phase", access(r, reg));
    }
    if r.chance(0.25) {
        // swapoff of the first device under the other processes' load,
        // then swapon again (refused, and logged, when memory is short).
        phase(w, "phase", "op = \"swapoff\"\ndevice = 0".into());
        let reg = r.below(regions);
        phase(w, "phase", access(r, reg));
        phase(w, "phase", "op = \"swapon\"\ndevice = 0".into());
    }
}

/// Two processes that reach swapoff's copy branch on a machine of
/// `ram_mib`: they write the same contents into half of RAM between
/// them, which KSM merges; the case's own processes press the KSM folios
/// out to swap, whose entries the two then share. The first reads its
/// pages back into its own anon_vma and holds them; the second swaps the
/// first device off while they are cached, so `unuse_pte` meets folios of
/// another fork family and must map copies (`ksm_might_need_to_copy`).
fn copy_at_swapoff(ram_mib: u64) -> String {
    let pages = ram_mib * 256 / 4;
    let merged = format!(
        "[[process]]\nkind = \"phases\"\n\
         [[process.phase]]\nop = \"mmap\"\nregion = 0\nsize_mib = {}\n\
         [[process.phase]]\nop = \"madvise\"\nregion = 0\nadvice = \"mergeable\"\n\
         [[process.phase]]\nop = \"touch\"\nregion = 0\nksm_share = 1.0\nksm_pool = {pages}\n",
        ram_mib as f64 / 4.0
    );
    format!(
        "{merged}\
         [[process.phase]]\nop = \"sleep\"\nticks = 200\n\
         [[process.phase]]\nop = \"access\"\nregion = 0\naccesses = {pages}\npattern = \"sequential\"\nwrite_ratio = 0.0\n\
         [[process.phase]]\nop = \"sleep\"\nticks = 400\n\
         {merged}\
         [[process.phase]]\nop = \"sleep\"\nticks = 300\n\
         [[process.phase]]\nop = \"swapoff\"\ndevice = 0\n\
         [[process.phase]]\nop = \"sleep\"\nticks = 200\n\
         [[process.phase]]\nop = \"swapon\"\ndevice = 0\n"
    )
}

impl FuzzCase {
    /// The case with seed-bug switches on (`[seed_bugs]` names, snake or
    /// kebab case). The hibernation bugs need hibernation, so a case with
    /// a switch on always takes images; the swapoff bug needs swapoff to
    /// meet a cached folio it cannot map, so that switch adds a process
    /// that sets this up.
    ///
    /// # Errors
    /// An unknown name (the error lists the known ones).
    pub fn with_seed_bugs(mut self, bugs: &[String]) -> Result<FuzzCase, swapvm_core::ConfigError> {
        if bugs.is_empty() {
            return Ok(self);
        }
        let mut sb = swapvm_core::fault::SeedBugsConfig::default();
        for b in bugs {
            sb.set(b, Path::new("--seed-bug"))?;
        }
        self.config_toml = self
            .config_toml
            .replace("hibernate_every = 0\n", "hibernate_every = 10\n");
        if sb.swapoff_put_on_ksm_copy {
            self.with_copy_at_swapoff();
        }
        let _ = writeln!(self.config_toml, "[seed_bugs]");
        for (on, name) in [
            (sb.hib_free_exclusive_end, "hib_free_exclusive_end"),
            (sb.hib_alloc_double_dec, "hib_alloc_double_dec"),
            (sb.slot_check_unlocked, "slot_check_unlocked"),
            (sb.swapoff_put_on_ksm_copy, "swapoff_put_on_ksm_copy"),
        ] {
            if on {
                let _ = writeln!(self.config_toml, "{name} = true");
            }
        }
        Ok(self)
    }

    /// Adds [`copy_at_swapoff`]'s processes, with KSM running fast enough
    /// to merge their pages and ticks enough for their program.
    fn with_copy_at_swapoff(&mut self) {
        let mut ram_mib = 4;
        let mut ksm = false;
        let lines: Vec<String> = self
            .config_toml
            .lines()
            .map(|l| {
                if let Some(v) = l.strip_prefix("ram_mib = ") {
                    ram_mib = v.parse().unwrap_or(ram_mib);
                }
                ksm |= l == "[ksm]";
                if l.starts_with("max_ticks = ") {
                    "max_ticks = 1500".to_owned()
                } else if l.starts_with("pages_to_scan = ") {
                    "pages_to_scan = 512\nsleep_ticks = 1".to_owned()
                } else {
                    l.to_owned()
                }
            })
            .collect();
        self.config_toml = lines.join("\n") + "\n";
        if !ksm {
            self.config_toml += "[ksm]\nrun = true\npages_to_scan = 512\nsleep_ticks = 1\n";
        }
        self.workload_toml.push_str(&copy_at_swapoff(ram_mib));
    }

    /// Writes the case's files into `dir`; returns the config's path.
    ///
    /// # Errors
    /// The folder cannot be written.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<std::path::PathBuf> {
        std::fs::write(dir.join("workload.toml"), &self.workload_toml)?;
        let config = dir.join("config.toml");
        std::fs::write(&config, &self.config_toml)?;
        Ok(config)
    }

    /// Runs the case in `dir` (swap images are created there) with the
    /// checker after every tick.
    ///
    /// # Errors
    /// The case's files cannot be written or loaded, or the machine cannot
    /// be built (a derivation bug: every derived case must be valid).
    pub fn run(&self, dir: &Path) -> Result<FuzzOutcome, MachineError> {
        let config = self.write_to(dir).map_err(|source| MachineError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let cfg = MachineConfig::load(&config)?;
        let faults = cfg.fault.clone();
        let opts = RunOptions {
            check_every: 1,
            ..RunOptions::default()
        };
        let machine = Machine::new(cfg, opts)?;
        match machine.run(|_, _| {}) {
            Ok(report) => Ok(self.judge(&report, &faults)),
            Err(e) => Ok(FuzzOutcome {
                seed: self.seed,
                ticks: 0,
                checks: 0,
                failure: Some(format!("machine error: {}", error_chain(&e))),
                counters_hash: 0,
                pswpout: 0,
                pswpin: 0,
                faults: 0,
                killed: 0,
            }),
        }
    }

    fn judge(&self, r: &Report, faults: &swapvm_core::FaultConfig) -> FuzzOutcome {
        let mut why = Vec::new();
        if !r.violations.is_empty() {
            let first: Vec<&str> = r.violations.iter().take(5).map(String::as_str).collect();
            why.push(format!(
                "{} invariant violations (the machine keeps the first 64); the first:\n  {}",
                r.violations.len(),
                first.join("\n  ")
            ));
        }
        if r.warnings > 0 {
            why.push(format!(
                "{} contract warnings: {}",
                r.warnings,
                r.warning_sites.join("; ")
            ));
        }
        if r.faults.stamp_mismatches > 0 {
            why.push(format!(
                "{} loads saw wrong content: {}",
                r.faults.stamp_mismatches,
                r.mismatch_details.join("; ")
            ));
        }
        // A swap-in that differs from its last write is expected exactly
        // when a torn write was injected; otherwise it is lost data.
        if r.faults.swapin_mismatches > 0 && r.faults.io.torn_writes == 0 {
            why.push(format!(
                "{} swap-ins differ from their last write with no torn write injected: {}",
                r.faults.swapin_mismatches,
                r.mismatch_details.join("; ")
            ));
        }
        // The same for a hibernation image read back different.
        if r.hibernation.mismatches > 0 && r.faults.io.torn_writes == 0 {
            why.push(format!(
                "{} hibernation image pages read back different with no torn write injected",
                r.hibernation.mismatches
            ));
        }
        // Kills need a cause: an injected fault, or the OOM killer.
        let oom = r.counter(VmEvent::OomKill);
        let unexplained = r
            .killed
            .iter()
            .filter(|k| !k.contains("oom-kill") && !k.contains("(injected)"))
            .count();
        let io_read_faults = faults.read_error_rate > 0.0
            || !faults.read_error_slots.is_empty()
            || r.faults.io.torn_writes > 0;
        if unexplained > 0 && !io_read_faults {
            why.push(format!(
                "{unexplained} processes killed without an injected fault (oom kills: {oom}): {}",
                r.killed.join("; ")
            ));
        }
        FuzzOutcome {
            seed: self.seed,
            ticks: r.ticks,
            checks: r.checks_run,
            failure: (!why.is_empty()).then(|| why.join("\n")),
            counters_hash: counters_hash(r),
            pswpout: r.counter(VmEvent::PswpOut),
            pswpin: r.counter(VmEvent::PswpIn),
            faults: r.faults.io.total() + r.faults.kills_mid_fault,
            killed: r.killed.len() as u64,
        }
    }
}

/// FNV-1a over the vmstat counters and the verification counts: wall time
/// and latencies are left out, everything the emulation decided is in.
pub fn counters_hash(r: &Report) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    };
    for (n, v) in &r.vmstat {
        eat(n.as_bytes());
        eat(&v.to_le_bytes());
    }
    for x in [
        r.ticks,
        r.accesses,
        r.swapin_verified,
        r.stamps_verified,
        r.mismatches,
    ] {
        eat(&x.to_le_bytes());
    }
    for k in &r.killed {
        eat(k.as_bytes());
    }
    h
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let _ = write!(s, ": {c}");
        cur = c.source();
    }
    s
}

/// The command that replays `seed`.
pub fn repro_command(seed: u64) -> String {
    format!("swapvm fuzz --seeds {seed}..{}", seed + 1)
}

/// The command that replays `seed` with seed-bug switches on.
pub fn repro_command_with(seed: u64, bugs: &[String]) -> String {
    let mut c = repro_command(seed);
    for b in bugs {
        let _ = write!(c, " --seed-bug {b}");
    }
    c
}

/// Runs seed `seed` in a fresh temporary folder under `parent` (which must
/// be on a real disk: tmpfs refuses O_DIRECT), removed afterwards unless
/// `keep`. With `twice`, runs it a second time and fails the seed if the
/// counters differ (a determinism check).
///
/// # Errors
/// The folder cannot be made, or the case cannot be built.
pub fn run_seed(
    seed: u64,
    parent: &Path,
    keep: bool,
    twice: bool,
) -> Result<FuzzOutcome, MachineError> {
    run_seed_with(seed, parent, keep, twice, &[])
}

/// [`run_seed`] with seed-bug switches on ([`FuzzCase::with_seed_bugs`]).
///
/// # Errors
/// As [`run_seed`], and an unknown bug name.
pub fn run_seed_with(
    seed: u64,
    parent: &Path,
    keep: bool,
    twice: bool,
    bugs: &[String],
) -> Result<FuzzOutcome, MachineError> {
    let case = derive_case(seed).with_seed_bugs(bugs)?;
    let once = || -> Result<FuzzOutcome, MachineError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("swapvm-fuzz-{seed}-"))
            .tempdir_in(parent)
            .map_err(|source| MachineError::Io {
                path: parent.to_owned(),
                source,
            })?;
        let out = case.run(dir.path());
        if keep {
            let _ = dir.keep();
        }
        out
    };
    let mut first = once()?;
    if twice && first.failure.is_none() {
        let second = once()?;
        if second.counters_hash != first.counters_hash {
            first.failure = Some(format!(
                "not deterministic: counters hash {:#x} then {:#x}",
                first.counters_hash, second.counters_hash
            ));
        }
    }
    Ok(first)
}
