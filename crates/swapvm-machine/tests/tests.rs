//! End-to-end runs of small machines: swap-out and swap-in on a real image
//! file in /var/tmp, data verification, the invariant checker, determinism,
//! and images made by (or recognised by) util-linux.
//!
//! Each machine is tiny (8 MiB of RAM, a 20 MiB process) so that it swaps
//! in earnest yet a run takes well under a second.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use swapvm_core::{MachineConfig, VmEvent};
use swapvm_machine::{Machine, Report, RunOptions};
use tempfile::TempDir;

mod trust;

/// A machine's files in a fresh folder under /var/tmp (a real disk: /tmp
/// may be tmpfs, which refuses O_DIRECT).
struct Tiny {
    dir: TempDir,
    config: PathBuf,
}

/// Shape of a tiny machine.
struct Shape {
    cpus: u32,
    count: u32,
    seed: u64,
    label: &'static str,
    /// `[[swap]]` lines other than `path`/`size_mib`/`label`.
    swap_extra: &'static str,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            cpus: 1,
            count: 1,
            seed: 1,
            label: "tiny",
            swap_extra: "",
        }
    }
}

fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("swapvm-machine-test-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

/// A fresh folder with `config` as config.toml and `workload` as
/// workload.toml (which `config` names with `workload = "workload.toml"`).
fn machine_folder(config: &str, workload: &str) -> Tiny {
    let dir = tempdir();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    std::fs::write(dir.path().join("workload.toml"), workload).unwrap();
    Tiny { dir, config: path }
}

/// Writes config.toml and workload.toml: 8 MiB of RAM, a 32 MiB swap file
/// `swap.img` (created by the machine unless the shape says otherwise), and
/// `count` usemem processes of 20 MiB with two random passes, half writes.
fn tiny(shape: &Shape) -> Tiny {
    machine_folder(
        &format!(
            "workload = \"workload.toml\"\n\
             [machine]\nram_mib = 8\ncpus = {}\nseed = {}\n\
             [[swap]]\npath = \"swap.img\"\nsize_mib = 32\nlabel = \"{}\"\n{}\n",
            shape.cpus, shape.seed, shape.label, shape.swap_extra
        ),
        &format!(
            "name = \"tiny\"\n[[process]]\nkind = \"usemem\"\ncount = {}\nsize_mib = 20\n\
             passes = 2\npattern = \"random\"\nwrite_ratio = 0.5\n",
            shape.count
        ),
    )
}

/// Runs with the checker after every tick; the run itself must not fail.
fn run_checked(t: &Tiny) -> Report {
    let cfg = MachineConfig::load(&t.config).unwrap();
    let m = Machine::new(
        cfg,
        RunOptions {
            check_every: 1,
            ..RunOptions::default()
        },
    )
    .unwrap();
    m.run(|_, _| {}).unwrap()
}

impl Tiny {
    fn image(&self) -> PathBuf {
        self.dir.path().join("swap.img")
    }
}

fn run_config(config: &Path, opts: RunOptions) -> Report {
    let cfg = MachineConfig::load(config).unwrap();
    let machine = Machine::new(cfg, opts).unwrap();
    let total = machine.total_accesses();
    let mut last = 0;
    let report = machine.run(|done, _| last = done).unwrap();
    let d = describe(&report);
    assert_eq!(report.accesses, total, "accesses lost: {d}");
    assert_eq!(last, total, "progress did not reach the workload's total");
    report
}

/// Every figure a failed assertion should show.
fn describe(r: &Report) -> String {
    format!(
        "seed {} ticks {} accesses {}\nmismatches {:?}\nviolations {:?}\nwarnings {:?}\nkilled {:?}\n{}",
        r.seed,
        r.ticks,
        r.accesses,
        r.mismatch_details,
        r.violations,
        r.warning_sites,
        r.killed,
        r.vmstat_text()
    )
}

/// The checks every run of a tiny machine must meet: it swapped both ways,
/// every byte read back was verified, and nothing leaked.
fn assert_swapped_and_clean(r: &Report) {
    let d = describe(r);
    assert!(r.passed(), "{d}");
    assert!(r.counter(VmEvent::PswpOut) > 0, "no swap-out: {d}");
    assert!(r.counter(VmEvent::PswpIn) > 0, "no swap-in: {d}");
    assert_eq!(r.mismatches, 0, "{d}");
    assert!(r.violations.is_empty(), "{d}");
    assert_eq!(r.warnings, 0, "{d}");
    assert!(r.killed.is_empty(), "{d}");
    assert_eq!(r.devices.len(), 1, "{d}");
    assert_eq!(r.devices[0].slots_used, 0, "slots leaked: {d}");
    assert_eq!(r.devices[0].errors, 0, "{d}");
}

// The run folder's files and their consistency (tests/tests/run_folder.rs).
#[path = "tests/run_folder.rs"]
mod run_folder;

// swapoff/swapon under load and direct-reclaim stalls (tests/tests/swapoff.rs).
#[path = "tests/swapoff.rs"]
mod swapoff;

// Hibernate cycles with real image I/O (tests/tests/hibernate.rs).
#[path = "tests/hibernate.rs"]
mod hibernate;

/// The same tiny machines under `reclaim.policy = "mglru"`.
#[path = "tests/mglru.rs"]
mod mglru;
// Realtime mode: tasks await their own I/O (tests/tests/realtime.rs).
#[path = "tests/realtime.rs"]
mod realtime;

mod runs {
    use super::*;

    #[test]
    fn quick_run_swaps_verifies_and_passes() {
        let t = tiny(&Shape::default());
        let r = run_config(&t.config, RunOptions::default());
        assert_swapped_and_clean(&r);
        let d = describe(&r);
        assert!(r.swapin_verified > 0, "{d}");
        assert_eq!(r.swapin_verified, r.counter(VmEvent::PswpIn), "{d}");
        assert!(r.stamps_verified > 0, "{d}");
        assert!(r.checks_run >= 1, "the end-of-run check did not run: {d}");
        // 32 MiB less the header page.
        assert_eq!(r.devices[0].slots, 32 * 256 - 1, "{d}");
        assert_eq!(
            r.devices[0].bytes_written,
            r.counter(VmEvent::PswpOut) * 4096,
            "{d}"
        );
        assert_eq!(
            r.devices[0].bytes_read,
            r.counter(VmEvent::PswpIn) * 4096,
            "{d}"
        );
        assert!(t.image().exists(), "the machine did not create swap.img");
        // Swap-ins from a real file are waited for, and the waits are part
        // of the run's wall time.
        let w = r.io_wait_us;
        assert!(w.read > 0, "no time waiting for reads: {w:?}");
        assert!(
            (w.read + w.write) / 1000 <= r.wall_ms,
            "waited {w:?} in a run of {} ms",
            r.wall_ms
        );
    }

    #[test]
    fn check_every_runs_the_checker() {
        let t = tiny(&Shape::default());
        let r = run_config(
            &t.config,
            RunOptions {
                check_every: 50,
                ..RunOptions::default()
            },
        );
        assert_swapped_and_clean(&r);
        assert!(r.ticks > 100, "too short to check twice: {}", describe(&r));
        assert!(r.checks_run > 1, "{}", describe(&r));
        assert!(r.checks_run >= r.ticks / 50, "{}", describe(&r));
    }

    #[test]
    fn two_processes_and_two_cpus() {
        let t = tiny(&Shape {
            cpus: 2,
            count: 2,
            ..Shape::default()
        });
        let r = run_config(&t.config, RunOptions::default());
        assert_swapped_and_clean(&r);
        assert!(r.swapin_verified > 0, "{}", describe(&r));
    }

    #[test]
    fn strict_run_without_violation_passes() {
        let t = tiny(&Shape::default());
        let r = run_config(
            &t.config,
            RunOptions {
                strict: true,
                ..RunOptions::default()
            },
        );
        assert_swapped_and_clean(&r);
    }

    #[test]
    fn shipped_quickstart_config_runs_scaled() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let shipped = root.join("configs/quickstart.toml");
        let workload = root
            .join("workloads/quickstart.toml")
            .canonicalize()
            .unwrap();
        let text = std::fs::read_to_string(&shipped).unwrap();
        // Keep every machine and reclaim knob as shipped; only send the swap
        // image to the tempdir (nothing may be created in the repository)
        // and point at the shipped workload by absolute path.
        let mut swap_rewritten = 0;
        let mut workload_rewritten = 0;
        let text: String = text
            .lines()
            .map(|line| {
                let key = line.split('=').next().unwrap_or("").trim();
                if key == "path" {
                    swap_rewritten += 1;
                    "path = \"quickstart.img\"".to_owned()
                } else if key == "workload" {
                    workload_rewritten += 1;
                    format!("workload = {:?}", workload.display().to_string())
                } else {
                    line.to_owned()
                }
            })
            .map(|line| line + "\n")
            .collect();
        assert_eq!(
            (swap_rewritten, workload_rewritten),
            (1, 1),
            "the shipped config changed shape:\n{text}"
        );
        let dir = tempdir();
        let config = dir.path().join("quickstart.toml");
        std::fs::write(&config, &text).unwrap();

        // --scale shrinks the workload, not the machine: at 0.25 the
        // 192 MiB workload (48 MiB) fits in the 64 MiB of RAM and need not
        // swap; at 0.5 (96 MiB) it must.
        for (scale, must_swap) in [(0.25, false), (0.5, true)] {
            let r = run_config(
                &config,
                RunOptions {
                    scale: Some(scale),
                    ..RunOptions::default()
                },
            );
            let d = describe(&r);
            assert_eq!(r.workload, "quickstart");
            assert!(r.passed(), "scale {scale}: {d}");
            assert_eq!(r.devices.len(), 1, "{d}");
            assert_eq!(
                Path::new(&r.devices[0].path),
                dir.path().join("quickstart.img")
            );
            assert_eq!(r.devices[0].slots_used, 0, "scale {scale}: {d}");
            if must_swap {
                assert_swapped_and_clean(&r);
            }
        }
    }
}

mod determinism {
    use super::*;

    fn run_seed(seed: u64) -> Report {
        let t = tiny(&Shape::default());
        run_config(
            &t.config,
            RunOptions {
                seed: Some(seed),
                ..RunOptions::default()
            },
        )
    }

    #[test]
    fn same_seed_same_counters() {
        let seed = 0x5eed_0001;
        println!("SEED={seed}");
        println!(
            "replay: cargo test -p swapvm-machine --test tests determinism::same_seed_same_counters"
        );
        let a = run_seed(seed);
        let b = run_seed(seed);
        assert_eq!(a.seed, seed);
        assert_swapped_and_clean(&a);
        assert_eq!(a.vmstat, b.vmstat, "same seed, different counters");
        assert_eq!((a.ticks, a.accesses), (b.ticks, b.accesses));
        assert_eq!(a.swapin_verified, b.swapin_verified);
        assert_eq!(a.stamps_verified, b.stamps_verified);
        assert_eq!(
            (a.devices[0].reads, a.devices[0].writes),
            (b.devices[0].reads, b.devices[0].writes)
        );

        let c = run_seed(seed + 1);
        assert_swapped_and_clean(&c);
        assert_ne!(
            a.vmstat_text(),
            c.vmstat_text(),
            "seed {} and seed {} gave identical counters",
            seed,
            seed + 1
        );
    }
}

mod plugging {
    use super::*;

    fn run_with(extra: &'static str, machine: &str) -> Report {
        let t = tiny(&Shape {
            swap_extra: extra,
            ..Shape::default()
        });
        let text = std::fs::read_to_string(&t.config).unwrap();
        std::fs::write(
            &t.config,
            text.replace("[machine]\n", &format!("[machine]\n{machine}")),
        )
        .unwrap();
        run_config(&t.config, RunOptions::default())
    }

    /// Merging adjacent writes changes the requests the disk gets and
    /// nothing the emulation sees: same counters, every byte verified.
    #[test]
    fn merged_writes_change_the_disk_requests_not_the_emulation() {
        let merged = run_with("", "");
        let single = run_with("nomerges = true", "");
        assert_swapped_and_clean(&merged);
        assert_swapped_and_clean(&single);
        assert!(merged.devices[0].writes_merged > 0, "{}", describe(&merged));
        assert_eq!(single.devices[0].writes_merged, 0);
        assert_eq!(merged.vmstat, single.vmstat);
        assert_eq!(merged.ticks, single.ticks);
        assert_eq!(merged.swapin_verified, single.swapin_verified);
        assert_eq!(
            merged.devices[0].bytes_written,
            single.devices[0].bytes_written
        );
    }

    /// Which thread drives the ring changes how requests reach the disk,
    /// not what the emulation sees: the same counters and bytes either
    /// way, inline (the default) and from an engine thread.
    #[test]
    fn the_submitting_thread_changes_nothing_the_emulation_sees() {
        let inline = run_with("", "");
        let thread = run_with("submit = \"thread\"", "");
        assert_swapped_and_clean(&inline);
        assert_swapped_and_clean(&thread);
        assert_eq!(inline.vmstat, thread.vmstat);
        assert_eq!(inline.ticks, thread.ticks);
        assert_eq!(inline.swapin_verified, thread.swapin_verified);
        let io = |r: &Report| {
            let d = &r.devices[0];
            (
                d.reads,
                d.writes,
                d.bytes_read,
                d.bytes_written,
                d.writes_merged,
            )
        };
        assert_eq!(io(&inline), io(&thread));
    }

    /// Writes due later than reads: the in-flight queue is then out of due
    /// order across kinds, and every completion must still come at its
    /// tick. The run verifies and is deterministic.
    #[test]
    fn a_longer_write_latency_keeps_every_byte_and_the_same_counters() {
        let a = run_with("", "io_write_latency_ticks = 6\n");
        let b = run_with("nomerges = true", "io_write_latency_ticks = 6\n");
        assert_swapped_and_clean(&a);
        assert_eq!(a.vmstat, b.vmstat);
        let base = run_with("", "");
        assert_ne!(
            a.vmstat_text(),
            base.vmstat_text(),
            "the write latency changed no decision"
        );
    }
}

mod images {
    use super::*;

    /// The path of a util-linux tool; fails (never skips) if it is missing.
    fn util_linux(tool: &str) -> PathBuf {
        for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
            let p = Path::new(dir).join(tool);
            if p.exists() {
                return p;
            }
        }
        panic!(
            "{tool} not found: install util-linux (apt-get install util-linux) to run this test"
        );
    }

    /// `blkid -p -o export` of `image`, as key/value pairs.
    fn blkid(image: &Path) -> Vec<(String, String)> {
        let out = Command::new(util_linux("blkid"))
            .args(["-p", "-o", "export"])
            .arg(image)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "blkid -p {} failed ({}): {stdout}{}",
            image.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn mkswap_made_image_is_accepted() {
        let t = tiny(&Shape {
            label: "",
            swap_extra: "create = false",
            ..Shape::default()
        });
        let image = t.image();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        let out = Command::new(util_linux("mkswap"))
            .args(["-L", "by-mkswap"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mkswap failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = run_config(&t.config, RunOptions::default());
        assert_swapped_and_clean(&r);
        assert_eq!(r.devices[0].slots, 32 * 256 - 1, "{}", describe(&r));
        // The machine must not have rewritten the header it was given.
        let tags = blkid(&image);
        assert!(
            tags.contains(&("LABEL".into(), "by-mkswap".into())),
            "{tags:?}"
        );
    }

    #[test]
    fn swapvm_image_is_recognised_by_blkid() {
        let t = tiny(&Shape {
            label: "swapvm-lbl",
            ..Shape::default()
        });
        let r = run_config(&t.config, RunOptions::default());
        assert_swapped_and_clean(&r);
        let tags = blkid(&t.image());
        assert!(tags.contains(&("TYPE".into(), "swap".into())), "{tags:?}");
        assert!(
            tags.contains(&("LABEL".into(), "swapvm-lbl".into())),
            "{tags:?}"
        );
        assert!(tags.iter().any(|(k, _)| k == "UUID"), "{tags:?}");
    }
}

mod backends {
    use super::*;

    fn run_extra(extra: &'static str) -> (Tiny, Report) {
        let t = tiny(&Shape {
            swap_extra: extra,
            ..Shape::default()
        });
        let r = run_config(&t.config, RunOptions::default());
        (t, r)
    }

    #[test]
    fn zram_lz4_swaps_verifies_and_reports_compression() {
        let (t, r) = run_extra("backend = \"zram\"\ncompressor = \"lz4\"");
        assert_swapped_and_clean(&r);
        assert!(!t.image().exists(), "a zram device touches no file");
        let z = r.devices[0].zram.as_ref().expect("zram figures");
        // Pages hold a 24-byte stamp and zeros: far better than 2:1.
        assert!(z.compression_ratio > 2.0, "{z:?}");
    }

    #[test]
    fn zram_zstd_swaps_and_verifies() {
        let (_t, r) = run_extra("backend = \"zram\"\ncompressor = \"zstd\"");
        assert_swapped_and_clean(&r);
        assert!(r.devices[0]
            .zram
            .as_ref()
            .is_some_and(|z| z.compression_ratio > 2.0));
    }

    #[test]
    fn earlier_allocator_rotational_and_discard_run_clean() {
        let (_t, r) =
            run_extra("allocator = \"free-clusters-only\"\nrotational = true\ndiscard = true");
        assert_swapped_and_clean(&r);
        assert!(
            r.devices[0].discards > 0,
            "every cluster is free at the end, so some were discarded"
        );
        assert!(!r.swap_orders.is_empty() && r.swap_orders[0].swpout_alloc > 0);
    }

    #[test]
    fn unknown_allocator_is_an_error_naming_the_field() {
        let t = tiny(&Shape {
            swap_extra: "allocator = \"buddy\"",
            ..Shape::default()
        });
        let e = MachineConfig::load(&t.config).unwrap_err();
        let msg = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(
            msg.contains("allocator") && msg.contains("per-order"),
            "{msg}"
        );
    }
}

mod devices {
    use super::*;

    /// Two devices of equal priority share the swap-outs round robin, and
    /// each device's figures (requests, bytes, latency samples) add up to
    /// the machine's.
    #[test]
    fn equal_priority_devices_share_and_per_device_figures_add_up() {
        let t = tiny(&Shape {
            swap_extra: "[[swap]]\npath = \"swap2.img\"\nsize_mib = 32\nlabel = \"second\"",
            ..Shape::default()
        });
        let r = run_config(&t.config, RunOptions::default());
        let d = describe(&r);
        assert!(r.passed(), "{d}");
        assert_eq!(r.devices.len(), 2, "{d}");
        let (a, b) = (&r.devices[0], &r.devices[1]);
        assert!(a.writes > 0 && b.writes > 0, "both devices used: {d}");
        let diff = a.writes.abs_diff(b.writes);
        assert!(
            diff * 10 <= a.writes + b.writes,
            "round robin is even: {} vs {}",
            a.writes,
            b.writes
        );
        assert_eq!(a.writes + b.writes, r.counter(VmEvent::PswpOut));
        assert_eq!(a.reads + b.reads, r.counter(VmEvent::PswpIn));
        for dev in &r.devices {
            assert_eq!(dev.read_latency.count, dev.reads);
            assert_eq!(dev.write_latency.count, dev.writes);
            assert_eq!(dev.slots_used, 0);
        }
        assert_eq!(r.read_latency.count, a.reads + b.reads);
        assert_eq!(r.write_latency.count, a.writes + b.writes);
    }
}

mod mthp {
    use super::*;

    /// 8 MiB of RAM, a 20 MiB usemem process with 64K folios enabled, and a
    /// swap device of `swap_mib`.
    fn run_mthp(swap_mib: u64) -> Report {
        let t = machine_folder(
            &format!(
                "workload = \"workload.toml\"\n[machine]\nram_mib = 8\n\
                 [[swap]]\npath = \"swap.img\"\nsize_mib = {swap_mib}\n\
                 [mthp]\nenabled_kb = [64]\n"
            ),
            "name = \"mthp\"\n[[process]]\nkind = \"usemem\"\nsize_mib = 20\npasses = 2\n\
             pattern = \"random\"\nwrite_ratio = 0.5\n",
        );
        run_config(&t.config, RunOptions::default())
    }

    #[test]
    fn large_folios_swap_out_whole_on_an_empty_device() {
        let r = run_mthp(64);
        let d = describe(&r);
        assert_swapped_and_clean(&r);
        assert!(r.counter(VmEvent::AnonFaultAlloc) > 0, "{d}");
        assert!(r.counter(VmEvent::ThpSwpout) > 0, "{d}");
        assert_eq!(r.counter(VmEvent::ThpSwpoutFallback), 0, "{d}");
        // Every 64K folio written whole is 16 pages of pswpout.
        assert!(
            r.counter(VmEvent::PswpOut) >= 16 * r.counter(VmEvent::ThpSwpout),
            "{d}"
        );
        let o4 = r
            .swap_orders
            .iter()
            .find(|o| o.order == 4)
            .expect("order-4 figures");
        assert!(o4.swpout_alloc > 0 && o4.swpout_alloc_fail == 0, "{d}");
    }

    #[test]
    fn a_fragmented_device_splits_large_folios_and_data_still_verifies() {
        // Barely more swap than the workload needs: clusters fill with
        // order-0 slots and order-4 allocations start failing.
        let r = run_mthp(14);
        let d = describe(&r);
        assert_swapped_and_clean(&r);
        assert!(r.counter(VmEvent::ThpSwpoutFallback) > 0, "{d}");
        assert!(r.counter(VmEvent::ThpSplitPage) > 0, "{d}");
        assert!(r.swapin_verified > 0, "{d}");
    }
}

mod shipped {
    use super::*;

    /// The shipped config at `name`, rewritten into `dir` with its swap
    /// images there (nothing may be created in the repository).
    fn config_in(dir: &Path, name: &str) -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let text = std::fs::read_to_string(root.join("configs").join(name)).unwrap();
        let mut n = 0;
        let mut section = String::new();
        let text: String = text
            .lines()
            .map(|line| {
                if line.trim_start().starts_with('[') {
                    section = line.trim().to_owned();
                }
                let key = line.split('=').next().unwrap_or("").trim();
                match key {
                    // Swap images go in the test's folder; a cgroup's path
                    // is not a file.
                    "path" if section == "[[swap]]" => {
                        n += 1;
                        format!("path = \"swap{n}.img\"")
                    }
                    // The workload comes from the command line.
                    "workload" => String::new(),
                    _ => line.to_owned(),
                }
            })
            .map(|l| l + "\n")
            .collect();
        let out = dir.join(name);
        std::fs::write(&out, text).unwrap();
        out
    }

    /// A device swapped off and on again keeps its place and its figures:
    /// the report lists devices in config order, each with its I/O summed
    /// over every period it was on, so the devices' bytes add up to the
    /// machine's pswpin and pswpout.
    #[test]
    fn a_device_keeps_its_figures_across_swapoff_and_swapon() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = tempdir();
        let cfg = config_in(dir.path(), "two-devices.toml");
        let r = run_config(
            &cfg,
            RunOptions {
                workload: Some(root.join("workloads/swapoff-under-load.toml")),
                scale: Some(0.25),
                ..RunOptions::default()
            },
        );
        let d = describe(&r);
        assert!(
            r.swap_events
                .iter()
                .any(|e| e.to_string().contains("swapoff of swap[0] done")),
            "{d}"
        );
        assert_eq!(r.devices.len(), 2, "{d}");
        assert!(r.devices[0].path.ends_with("swap1.img"), "{d}");
        assert!(r.devices[1].path.ends_with("swap2.img"), "{d}");
        let read: u64 = r.devices.iter().map(|x| x.bytes_read).sum();
        let written: u64 = r.devices.iter().map(|x| x.bytes_written).sum();
        assert_eq!(read / 4096, r.counter(VmEvent::PswpIn), "{d}");
        assert_eq!(written / 4096, r.counter(VmEvent::PswpOut), "{d}");
    }

    /// Every shipped workload on every shipped config, scaled down, runs
    /// to completion with data verified, every invariant held and no slot
    /// left in use.
    #[test]
    fn every_shipped_workload_runs_on_every_shipped_config() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut names: Vec<PathBuf> = std::fs::read_dir(root.join("workloads"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        names.sort();
        let mut configs: Vec<String> = std::fs::read_dir(root.join("configs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        configs.sort();
        assert!(
            names.len() >= 7 && configs.len() >= 3,
            "{names:?} {configs:?}"
        );
        // The metadata-only config (whatif-16g.toml) runs at its full size:
        // without page bytes a 16 GiB machine builds in a fraction of a
        // second.
        let mut metadata_only = 0;
        for c in &configs {
            for w in &names {
                let dir = tempdir();
                let config = config_in(dir.path(), c);
                let loaded = MachineConfig::load(&config).unwrap();
                let none = loaded.machine.content == swapvm_core::config::ContentMode::None;
                // A workload that runs in a cgroup needs a config that has
                // it: elsewhere it is refused, naming the field.
                let spec = swapvm_workload::WorkloadSpec::load(w).unwrap();
                let cgroups = loaded.cgroups().unwrap();
                let missing = spec
                    .cgroups()
                    .iter()
                    .any(|(p, _)| p.is_some_and(|p| !cgroups.iter().any(|c| c.path == p)));
                if missing {
                    let opts = RunOptions {
                        workload: Some(w.canonicalize().unwrap()),
                        ..RunOptions::default()
                    };
                    let e = Machine::new(loaded, opts).err().unwrap().to_string();
                    assert!(e.contains(".cgroup"), "{}: {e}", w.display());
                    continue;
                }
                let r = run_config(
                    &config,
                    RunOptions {
                        workload: Some(w.canonicalize().unwrap()),
                        scale: Some(0.05),
                        ..RunOptions::default()
                    },
                );
                let d = describe(&r);
                let what = format!("{} on {c}", w.display());
                assert!(r.passed(), "{what}: {d}");
                assert!(r.killed.is_empty(), "{what}: {d}");
                assert!(
                    r.devices.iter().all(|x| x.slots_used == 0),
                    "{what}: slots left: {d}"
                );
                if none {
                    metadata_only += 1;
                    assert_eq!((r.content.as_str(), r.verify.as_str()), ("none", "off"));
                }
            }
        }
        assert!(metadata_only > 0, "no shipped metadata-only config");
    }
}

/// Two machines on one image: the second is refused at swapon, naming the
/// process that holds it, and the first runs on untouched; once the first
/// is gone the image is free again.
#[test]
fn a_second_machine_on_an_image_in_use_is_refused() {
    let t = tiny(&Shape::default());
    let first = Machine::new(
        MachineConfig::load(&t.config).unwrap(),
        RunOptions::default(),
    )
    .unwrap();
    let second = Machine::new(
        MachineConfig::load(&t.config).unwrap(),
        RunOptions::default(),
    );
    let Err(e) = second else {
        panic!("a second machine on the same image was accepted");
    };
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        msg.push_str(&format!(": {c}"));
        cause = c.source();
    }
    let pid = format!("in use by process {}", std::process::id());
    assert!(msg.contains(&pid) && msg.contains("swap.img"), "{msg}");
    let report = first.run(|_, _| {}).unwrap();
    assert!(report.passed(), "{}", describe(&report));
    assert!(report.counter(VmEvent::PswpOut) > 0);
    Machine::new(
        MachineConfig::load(&t.config).unwrap(),
        RunOptions::default(),
    )
    .expect("the image is free once the first machine is done");
}

/// A process killed while its fault waits for a swap-in read leaves that
/// read's folio in the swap cache, mapped by nobody: its slot stays in use
/// with swap count 0, as in the kernel, whose `free_swap_and_cache` skips
/// a folio locked for I/O; reclaim would free it later. The report names
/// those slots (`slots_cache_only`), and they are all that is left: no slot
/// with an owner outlives the processes.
#[test]
fn a_kill_mid_fault_leaves_only_swap_cache_slots() {
    let t = tiny(&Shape {
        seed: 3,
        swap_extra: "[fault]\nkill_mid_fault_rate = 0.5",
        ..Shape::default()
    });
    let r = run_checked(&t);
    let d = describe(&r);
    assert!(r.violations.is_empty(), "{d}");
    assert!(!r.killed.is_empty(), "no kill injected: {d}");
    let dev = &r.devices[0];
    assert!(dev.slots_cache_only > 0, "the killed fault's slot: {dev:?}");
    assert_eq!(dev.slots_used, dev.slots_cache_only, "{dev:?}\n{d}");
}
