//! Trust: every fault kind injected under memory pressure, the bug
//! switches caught by the checks, and the deterministic fuzz harness.
//!
//! A fault test runs three usemem processes of 6 MiB on 8 MiB of RAM (so
//! they swap in earnest) against a real swap image, with the checker after
//! every tick, and asserts the machine answered as the kernel does: the
//! fault was injected, the invariants held throughout, no process ever
//! loaded content other than its own last store, and only the processes
//! the fault hit were killed.

use super::*;
use swapvm_machine::fuzz;

/// A machine of 8 MiB RAM, a 32 MiB image, three 6 MiB usemem processes,
/// and `extra` appended to the config (a `[fault]` or `[seed_bugs]` table).
fn pressured(extra: &str) -> Tiny {
    machine_folder(
        &format!(
            "workload = \"workload.toml\"\n\
             [machine]\nram_mib = 8\ncpus = 2\nseed = 7\n\
             [[swap]]\npath = \"swap.img\"\nsize_mib = 32\n{extra}\n"
        ),
        "name = \"pressure\"\n[[process]]\nkind = \"usemem\"\ncount = 3\nsize_mib = 6\n\
         passes = 3\npattern = \"random\"\nwrite_ratio = 0.5\n",
    )
}

/// What every fault run must show, whatever the fault.
fn assert_survived(r: &Report) {
    let d = describe(r);
    assert!(
        r.checks_run > r.ticks / 2,
        "checker did not run every tick: {d}"
    );
    assert!(r.violations.is_empty(), "{d}");
    assert_eq!(r.warnings, 0, "{d}");
    assert_eq!(
        r.faults.stamp_mismatches, 0,
        "a process loaded content other than its last store: {d}"
    );
    assert!(r.counter(VmEvent::PswpOut) > 0, "no pressure: {d}");
}

mod faults {
    use super::*;

    #[test]
    fn write_errors_keep_the_folio_dirty_in_memory() {
        let r = run_checked(&pressured("[fault]\nwrite_error_rate = 0.2\n"));
        assert_survived(&r);
        let d = describe(&r);
        assert!(r.faults.io.write_errors > 0, "nothing injected: {d}");
        assert_eq!(r.devices[0].errors, r.faults.io.write_errors, "{d}");
        // A failed write loses nothing: every process finishes, and every
        // swap-in matched the last write that succeeded.
        assert!(r.killed.is_empty(), "{d}");
        assert_eq!(r.mismatches, 0, "{d}");
        assert!(r.swapin_verified > 0, "{d}");
        assert_eq!(r.devices[0].slots_used, 0, "slots leaked: {d}");
    }

    #[test]
    fn swapoff_in_the_middle_of_load_keeps_every_byte() {
        // A second device takes what swapoff reads back from the first.
        let r = run_checked(&pressured(
            "[[swap]]\npath = \"swap2.img\"\nsize_mib = 32\n\
             [fault]\nswapoff_at_tick = 150\n",
        ));
        assert_survived(&r);
        let d = describe(&r);
        assert_eq!(r.faults.swapoffs, 1, "nothing injected: {d}");
        assert!(
            r.swap_events.iter().any(|e| e
                .to_string()
                .starts_with("tick 150: swapoff of swap[0] begins")),
            "{:?} {d}",
            r.swap_events
        );
        let done = r
            .swap_events
            .iter()
            .find(|e| e.to_string().contains("swapoff of swap[0] done"))
            .unwrap_or_else(|| panic!("{:?} {d}", r.swap_events));
        assert_ne!(done.entries_read_back, Some(0), "{done}");
        assert!(r.killed.is_empty(), "{d}");
        assert_eq!(r.mismatches, 0, "{d}");
    }

    #[test]
    fn a_swapoff_fault_must_name_a_device() {
        let t = pressured("[fault]\nswapoff_at_tick = 10\nswapoff_device = 3\n");
        let e = MachineConfig::load(&t.config).unwrap_err().to_string();
        assert!(
            e.contains("fault.swapoff_device") && e.contains("there are 1"),
            "{e}"
        );
    }

    #[test]
    fn write_errors_on_given_slots() {
        // Every seventh slot of the device, wherever the allocator goes.
        let slots: Vec<String> = (1..8192).step_by(7).map(|s| s.to_string()).collect();
        let r = run_checked(&pressured(&format!(
            "[fault]\nwrite_error_slots = [{}]\n",
            slots.join(",")
        )));
        assert_survived(&r);
        let d = describe(&r);
        assert!(r.faults.io.write_errors > 0, "nothing injected: {d}");
        assert!(r.killed.is_empty(), "{d}");
        assert_eq!(r.mismatches, 0, "{d}");
    }

    #[test]
    fn short_writes_are_write_errors() {
        let r = run_checked(&pressured("[fault]\nshort_write_rate = 0.2\n"));
        assert_survived(&r);
        let d = describe(&r);
        assert!(r.faults.io.short_writes > 0, "nothing injected: {d}");
        assert_eq!(r.devices[0].errors, r.faults.io.short_writes, "{d}");
        assert!(r.killed.is_empty(), "{d}");
        // The slot of a short write holds garbage on disk, but it is never
        // read: the folio stayed dirty in the swap cache until rewritten.
        assert_eq!(r.mismatches, 0, "{d}");
    }

    #[test]
    fn read_errors_kill_only_the_faulting_process() {
        let r = run_checked(&pressured("[fault]\nread_error_rate = 0.0005\n"));
        assert_survived(&r);
        let d = describe(&r);
        assert!(r.faults.io.read_errors > 0, "nothing injected: {d}");
        assert!(!r.killed.is_empty(), "{d}");
        assert!(
            r.killed.len() < 3,
            "every process was hit; lower the rate: {d}"
        );
        for k in &r.killed {
            assert!(k.contains("SigBus"), "killed for another reason: {k}\n{d}");
        }
        assert_eq!(r.mismatches, 0, "{d}");
    }

    #[test]
    fn read_errors_on_given_slots() {
        let slots: Vec<String> = (1..8192).step_by(401).map(|s| s.to_string()).collect();
        let r = run_checked(&pressured(&format!(
            "[fault]\nread_error_slots = [{}]\n",
            slots.join(",")
        )));
        assert_survived(&r);
        let d = describe(&r);
        assert!(r.faults.io.read_errors > 0, "nothing injected: {d}");
        assert!(r.killed.iter().all(|k| k.contains("SigBus")), "{d}");
    }

    /// A listed error slot that no request reaches injects nothing: the
    /// report names it, and only it.
    #[test]
    fn error_slots_never_reached_are_reported() {
        // Slots every 401 of a 32 MiB device (some are written, some not),
        // and two beyond any device.
        let listed: Vec<u64> = (1..8192).step_by(401).collect();
        let text: Vec<String> = listed.iter().map(u64::to_string).collect();
        let r = run_checked(&pressured(&format!(
            "[fault]\nwrite_error_slots = [{}, 900000]\nread_error_slots = [900001]\n",
            text.join(",")
        )));
        let d = describe(&r);
        assert!(
            r.faults.io.write_errors > 0,
            "no listed slot was written: {d}"
        );
        let unreached = &r.faults.write_error_slots_unreached;
        assert_eq!(unreached.last(), Some(&900000), "{unreached:?}");
        assert!(
            unreached.len() < listed.len() + 1,
            "every slot reported unreached although writes failed: {unreached:?}"
        );
        assert!(unreached.iter().all(|s| *s == 900000 || listed.contains(s)));
        assert_eq!(r.faults.read_error_slots_unreached, [900001], "{d}");
        let none = run_checked(&pressured("[fault]\nwrite_error_rate = 0.001\n"));
        assert!(none.faults.write_error_slots_unreached.is_empty());
        assert!(none.faults.read_error_slots_unreached.is_empty());
    }

    #[test]
    fn torn_writes_are_caught_by_the_read_back_checksum() {
        let r = run_checked(&pressured("[fault]\ntorn_write_rate = 0.01\n"));
        assert_survived(&r);
        let d = describe(&r);
        assert!(r.faults.io.torn_writes > 0, "nothing injected: {d}");
        // The device said every torn write succeeded: only the checksum
        // knows. Each torn slot read back is a swap-in mismatch naming the
        // slot, its read is failed, and its process killed (SIGBUS)
        // instead of loading the garbage.
        assert!(
            r.faults.swapin_mismatches > 0,
            "no torn slot was read back: {d}"
        );
        assert!(
            r.faults.swapin_mismatches <= r.faults.io.torn_writes,
            "more mismatches than torn writes: {d}"
        );
        assert!(r
            .mismatch_details
            .iter()
            .all(|m| m.contains("swap-in of") && m.contains("differ from the last write")));
        assert_eq!(r.devices[0].errors, 0, "a torn write reports success: {d}");
        assert!(!r.killed.is_empty(), "{d}");
        assert!(r.killed.iter().all(|k| k.contains("SigBus")), "{d}");
    }

    #[test]
    fn a_device_that_fills_ends_in_oom_kills_not_corruption() {
        let r = run_checked(&pressured("[fault]\ndevice_full_after_slots = 1024\n"));
        assert_survived(&r);
        let d = describe(&r);
        assert!(r.faults.io.enospc > 0, "the device never filled: {d}");
        assert!(r.counter(VmEvent::OomKill) > 0, "no OOM kill: {d}");
        assert!(
            r.killed.iter().all(|k| k.contains("oom-kill")),
            "killed for another reason: {d}"
        );
        assert!(r.killed.len() < 3, "the OOM killer took everyone: {d}");
        assert_eq!(r.mismatches, 0, "{d}");
    }

    #[test]
    fn a_swap_device_too_small_skips_anon_reclaim_and_oom_kills() {
        let t = machine_folder(
            "workload = \"workload.toml\"\n[machine]\nram_mib = 8\nseed = 3\n\
             [[swap]]\npath = \"swap.img\"\nsize_mib = 4\n",
            "name = \"big\"\n[[process]]\nkind = \"usemem\"\ncount = 1\nsize_mib = 14\n\
             passes = 1\npattern = \"sequential\"\nwrite_ratio = 0.5\n\
             [[process]]\nkind = \"usemem\"\ncount = 1\nsize_mib = 1\n\
             passes = 2\npattern = \"sequential\"\nwrite_ratio = 0.5\n",
        );
        let r = run_checked(&t);
        assert_survived(&r);
        let d = describe(&r);
        // 14 MiB cannot fit in 8 MiB of RAM and 4 MiB of swap: the device
        // fills, reclaim stops scanning anon, and the OOM killer takes the
        // big process; the small one finishes.
        assert!(
            r.counter(VmEvent::PswpOut) >= r.devices[0].slots,
            "swap never filled: {d}"
        );
        assert_eq!(r.killed.len(), 1, "{d}");
        assert!(r.killed[0].contains("usemem.0: oom-kill"), "{d}");
        assert_eq!(r.mismatches, 0, "{d}");
    }

    #[test]
    fn kill_mid_fault_leaves_no_slot_or_folio_behind() {
        let r = run_checked(&pressured("[fault]\nkill_mid_fault_rate = 0.01\n"));
        assert_survived(&r);
        let d = describe(&r);
        assert!(r.faults.kills_mid_fault > 0, "nothing injected: {d}");
        assert_eq!(r.killed.len() as u64, r.faults.kills_mid_fault, "{d}");
        assert!(r.killed.iter().all(|k| k.contains("(injected)")), "{d}");
        assert_eq!(r.mismatches, 0, "{d}");
        // A process killed while its read was in flight leaves that read's
        // folio in the swap cache, unmapped, on the LRU: reclaim frees it
        // under pressure, as in the kernel (the zap's trylock failed). At
        // most one such folio per kill may still hold its slot at the end.
        assert!(
            r.devices[0].slots_used <= r.faults.kills_mid_fault,
            "slots leaked: {d}"
        );
        assert_eq!(
            r.devices[0].slots_used, r.devices[0].slots_cache_only,
            "a slot with an owner outlived the processes: {d}"
        );
    }

    #[test]
    fn faults_are_deterministic() {
        let extra =
            "[fault]\nwrite_error_rate = 0.1\nread_error_rate = 0.005\ntorn_write_rate = 0.005\n";
        let a = run_checked(&pressured(extra));
        let b = run_checked(&pressured(extra));
        assert!(a.faults.io.total() > 0);
        assert_eq!(a.faults, b.faults);
        assert_eq!(a.vmstat, b.vmstat);
        assert_eq!(a.killed, b.killed);
    }

    #[test]
    fn bad_fault_field_names_file_and_field() {
        let t = pressured("[fault]\nwrite_error_rate = 1.5\n");
        let e = MachineConfig::load(&t.config).unwrap_err().to_string();
        assert!(e.contains("fault.write_error_rate"), "{e}");
        assert!(e.contains("config.toml"), "{e}");
        let t = pressured("[fault]\nwrite_eror_rate = 0.5\n");
        let e = MachineConfig::load(&t.config).unwrap_err();
        let msg = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(
            msg.contains("write_eror_rate") && msg.contains("config.toml"),
            "{msg}"
        );
    }
}

mod seed_bugs {
    use super::*;

    /// The pressured machine taking a hibernation image every 20 ticks,
    /// with `bug` switched on (or none).
    fn hibernating(bug: &str) -> Report {
        let bugs = if bug.is_empty() {
            String::new()
        } else {
            format!("[seed_bugs]\n{bug} = true\n")
        };
        let t = pressured(&bugs);
        let text = std::fs::read_to_string(&t.config).unwrap();
        std::fs::write(
            &t.config,
            text.replace("seed = 7\n", "seed = 7\nhibernate_every = 20\n"),
        )
        .unwrap();
        run_checked(&t)
    }

    #[test]
    fn hibernation_without_bugs_passes_every_check() {
        let r = hibernating("");
        assert_survived(&r);
        assert!(r.killed.is_empty() && r.mismatches == 0, "{}", describe(&r));
    }

    #[test]
    fn hib_free_exclusive_end_is_caught_as_a_leaked_hibernation_slot() {
        let r = hibernating("hib_free_exclusive_end");
        let d = describe(&r);
        assert!(!r.violations.is_empty(), "not caught: {d}");
        assert!(
            r.violations
                .iter()
                .all(|v| v.contains("invariant 1 (hibernation owners)")
                    && v.contains("hibernation slot that no extent holds (leak)")),
            "{d}"
        );
    }

    #[test]
    fn hib_alloc_double_dec_is_caught_by_the_free_slot_count() {
        let r = hibernating("hib_alloc_double_dec");
        let d = describe(&r);
        assert!(!r.violations.is_empty(), "not caught: {d}");
        assert!(
            r.violations
                .iter()
                .any(|v| v.contains("invariant 2 (free slot count)") && v.contains("nr_swap_pages")),
            "{d}"
        );
    }

    #[test]
    fn slot_check_unlocked_is_caught_by_the_lock_check() {
        let r = hibernating("slot_check_unlocked");
        let d = describe(&r);
        assert!(r.violations.is_empty(), "the state itself stays right: {d}");
        assert!(r.warnings > 0, "not caught: {d}");
        assert!(
            r.warning_sites.iter().any(|w| w
                .starts_with("swap_entry_swapped: cluster lock not held")
                && w.contains("swapfile.rs")),
            "{d}"
        );
    }

    /// Two unrelated processes write the same contents, which KSM merges
    /// into half of RAM; memory pressure (a usemem process) swaps the KSM
    /// folios out (they are many enough to be deactivated), so
    /// both processes' PTEs share their entries. The first one reads its
    /// pages back into its own anon_vma and holds them; then the second
    /// swaps the first device off, so swapoff's `unuse_pte` finds folios
    /// of another fork family in the swap cache and must map copies
    /// (`ksm_might_need_to_copy`). A second device takes what swapoff
    /// reads back.
    fn swapoff_meets_copies(bug: &str) -> Report {
        let t = pressured(&format!(
            "[[swap]]\npath = \"swap2.img\"\nsize_mib = 32\n\
             [ksm]\nrun = true\npages_to_scan = 512\nsleep_ticks = 1\n{bug}"
        ));
        let merged = "[[process.phase]]\nop = \"mmap\"\nregion = 0\nsize_mib = 4\n\
             [[process.phase]]\nop = \"madvise\"\nregion = 0\nadvice = \"mergeable\"\n\
             [[process.phase]]\nop = \"touch\"\nregion = 0\nksm_share = 1.0\nksm_pool = 1024\n";
        std::fs::write(
            t.dir.path().join("workload.toml"),
            format!(
                "name = \"copy-at-swapoff\"\n\
                 [[process]]\nkind = \"usemem\"\nsize_mib = 12\npasses = 3\npattern = \"random\"\n\
                 [[process]]\nkind = \"phases\"\n{merged}\
                 [[process.phase]]\nop = \"sleep\"\nticks = 400\n\
                 [[process.phase]]\nop = \"access\"\nregion = 0\naccesses = 1024\npattern = \"sequential\"\nwrite_ratio = 0.0\n\
                 [[process.phase]]\nop = \"sleep\"\nticks = 600\n\
                 [[process]]\nkind = \"phases\"\n{merged}\
                 [[process.phase]]\nop = \"sleep\"\nticks = 700\n\
                 [[process.phase]]\nop = \"swapoff\"\ndevice = 0\n\
                 [[process.phase]]\nop = \"sleep\"\nticks = 300\n"
            ),
        )
        .unwrap();
        run_checked(&t)
    }

    #[test]
    fn swapoff_maps_copies_without_bugs_and_passes_every_check() {
        let r = swapoff_meets_copies("");
        let d = describe(&r);
        assert!(
            r.counter(VmEvent::KsmSwapinCopy) > 0,
            "no copy made: {:?} {d}",
            r.ksm
        );
        assert!(
            r.swap_events
                .iter()
                .any(|e| e.to_string().contains("swapoff of swap[0] done")),
            "{:?} {d}",
            r.swap_events
        );
        assert!(r.violations.is_empty() && r.warnings == 0, "{d}");
        assert_eq!(r.mismatches, 0, "{d}");
    }

    #[test]
    fn swapoff_put_on_ksm_copy_is_caught_by_the_swap_count_check() {
        let r = swapoff_meets_copies("[seed_bugs]\nswapoff_put_on_ksm_copy = true\n");
        let d = describe(&r);
        assert!(
            r.warning_sites
                .iter()
                .any(|w| w.contains("folio not in swap cache") && w.contains("fault.rs")),
            "not caught by the contract check: {d}"
        );
        assert!(
            r.violations
                .iter()
                .any(|v| v.contains("invariant 1 (swap counts)") && v.contains("expected 0")),
            "not caught by the checker: {d}"
        );
        assert!(
            r.swap_events
                .iter()
                .any(|e| e.to_string().contains("swapoff of swap[0] failed")
                    && e.to_string().contains("leaked swap counts")),
            "{:?} {d}",
            r.swap_events
        );
    }

    #[test]
    fn strict_makes_the_lock_warning_fatal() {
        let t = pressured("[seed_bugs]\nslot_check_unlocked = true\n");
        let text = std::fs::read_to_string(&t.config).unwrap();
        std::fs::write(
            &t.config,
            text.replace("seed = 7\n", "seed = 7\nhibernate_every = 20\n"),
        )
        .unwrap();
        let cfg = MachineConfig::load(&t.config).unwrap();
        let m = Machine::new(
            cfg,
            RunOptions {
                strict: true,
                ..RunOptions::default()
            },
        )
        .unwrap();
        let e = m.run(|_, _| {}).unwrap_err().to_string();
        assert!(
            e.contains("--strict") && e.contains("swap_entry_swapped"),
            "{e}"
        );
    }
}

mod fuzzing {
    use super::*;

    /// The CI run of the harness: 200 seeds, each checked after every
    /// tick, every tenth also run twice for determinism. A failure prints
    /// the seed and the command that replays it.
    #[test]
    fn two_hundred_seeds_find_nothing() {
        let parent = tempdir();
        let started = std::time::Instant::now();
        let mut faults = 0;
        let mut swapped = 0;
        for seed in 0..200 {
            let out =
                fuzz::run_seed(seed, parent.path(), false, seed % 10 == 0).unwrap_or_else(|e| {
                    panic!(
                        "SEED={seed}: {e}: replay with {}",
                        fuzz::repro_command(seed)
                    )
                });
            if let Some(why) = out.failure {
                let case = fuzz::derive_case(seed);
                panic!(
                    "SEED={seed} failed:\n{why}\nreplay: {}\n--- config.toml\n{}--- workload.toml\n{}",
                    fuzz::repro_command(seed),
                    case.config_toml,
                    case.workload_toml
                );
            }
            if std::env::var_os("SWAPVM_FUZZ_VERBOSE").is_some() {
                eprintln!(
                    "SEED={seed} ticks {} pswpout {} faults {}",
                    out.ticks, out.pswpout, out.faults
                );
            }
            faults += out.faults;
            swapped += u64::from(out.pswpout > 0);
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "200 seeds in {secs:.1} s ({:.0} seeds/min)",
            200.0 * 60.0 / secs
        );
        // The harness must exercise what it claims to.
        assert!(swapped >= 120, "only {swapped} of 200 seeds swapped");
        assert!(faults > 0, "no fault was injected in 200 seeds");
    }

    /// The harness must find each re-introduced seed-review bug, and say
    /// what it is, within a handful of seeds.
    #[test]
    fn the_harness_finds_every_seed_bug() {
        let parent = tempdir();
        for (bug, cause) in [
            (
                "hib-free-exclusive-end",
                "hibernation slot that no extent holds (leak)",
            ),
            (
                "hib-alloc-double-dec",
                "invariant 2 (free slot count): nr_swap_pages",
            ),
            (
                "slot-check-unlocked",
                "swap_entry_swapped: cluster lock not held",
            ),
            ("swapoff-put-on-ksm-copy", "folio not in swap cache"),
        ] {
            let bugs = [bug.to_owned()];
            let found = (0..10).find_map(|seed| {
                fuzz::run_seed_with(seed, parent.path(), false, false, &bugs)
                    .unwrap()
                    .failure
            });
            let why = found.unwrap_or_else(|| panic!("{bug}: not found in 10 seeds"));
            assert!(why.contains(cause), "{bug}: {why}");
        }
        let e = fuzz::run_seed_with(0, parent.path(), false, false, &["no-such-bug".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("seed_bugs.no-such-bug"), "{e}");
    }

    #[test]
    fn cases_are_derived_from_the_seed_alone() {
        assert_eq!(fuzz::derive_case(42), fuzz::derive_case(42));
        assert_ne!(fuzz::derive_case(42), fuzz::derive_case(43));
        // Every derived case is a valid config.
        for seed in 0..500 {
            let case = fuzz::derive_case(seed);
            let dir = tempdir();
            let p = case.write_to(dir.path()).unwrap();
            MachineConfig::load(&p).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
    }
}

mod checker_reports {
    use super::*;
    use std::sync::Arc;
    use swapvm_core::{LockClass, VmStat, Vpn, Warnings};
    use swapvm_machine::check::check_invariants;
    use swapvm_mm::{pg, Memory, Watermarks};
    use swapvm_swap::{SwapOnOptions, SwapSubsystem};

    /// One page swapped out by hand: its PTE becomes a swap PTE holding a
    /// count of one. Then the count is corrupted, and the checker must name
    /// the slot, the owner it found, and the counts expected and seen.
    #[test]
    fn a_wrong_swap_count_is_reported_with_its_owner_and_both_counts() {
        let dir = tempdir();
        let img = dir.path().join("swap.img");
        swapvm_swap::header::mkswap(&img, 4 << 20, "", None).unwrap();
        let stat = Arc::new(VmStat::new());
        let warn = Arc::new(Warnings::new(false));
        let wm = Watermarks {
            min: 4,
            low: 8,
            high: 12,
        };
        let mut mem = Memory::new(64, wm, Arc::clone(&stat), Arc::clone(&warn)).unwrap();
        let mut swap = SwapSubsystem::new(stat, Arc::clone(&warn), 1, 1);
        swap.swapon(&SwapOnOptions {
            path: img,
            ..SwapOnOptions::default()
        })
        .unwrap();
        let mm = mem.mm_create();
        let start = mem.mmap_anon(mm, 4);
        let vpn: Vpn = start.add(2);
        let pfn = mem.access(&mut swap, mm, vpn, true, 1).unwrap();
        mem.folios.get_mut(pfn).set(pg::LOCKED);
        let e = swap
            .folio_alloc_swap(&mut mem.folios.folio(pfn), 0)
            .unwrap();
        assert!(mem.try_to_unmap(&mut swap, pfn));
        mem.folios.get_mut(pfn).clear(pg::LOCKED);
        assert!(check_invariants(&mut mem, &mut swap).is_empty());
        // The corruption: a reference no owner holds.
        {
            let _ptl = swap.lockdep().lock(LockClass::PageTable { mm: 99 });
            swap.swap_dup_entry_direct(e).unwrap();
        }
        let v = check_invariants(&mut mem, &mut swap);
        assert_eq!(v.len(), 1, "{v:?}");
        let want = format!(
            "invariant 1 (swap counts): slot {e:?}: swap count 2, expected 1 (owners found: \
             swap PTE of mm {} at {:#x}",
            mm.0,
            vpn.0 << 12
        );
        assert!(v[0].starts_with(&want), "{}\nwanted {want}", v[0]);
        assert_eq!(warn.total(), 0, "{:?}", warn.records());
    }
}

mod write_error_semantics {
    use super::*;
    use std::sync::Arc;
    use swapvm_core::{config::ReclaimConfig, VmStat, Vpn, Warnings};
    use swapvm_io::{FaultPlan, IoKind};
    use swapvm_machine::check::check_invariants;
    use swapvm_mm::{pg, Memory, Watermarks};
    use swapvm_reclaim::Reclaimer;
    use swapvm_swap::{SwapOnOptions, SwapSubsystem};

    /// Every write fails: the folios reclaim tried to write must come back
    /// in memory, dirty, on the (active) LRU, their slots still bound in the
    /// swap cache and their bytes untouched (folio_end_writeback with an
    /// error redirties the folio; `mapping_set_error` aside, nothing is
    /// lost), and the checker must pass.
    #[test]
    fn a_failed_write_redirties_the_folio_and_keeps_it_on_the_lru() {
        let dir = tempdir();
        let img = dir.path().join("swap.img");
        swapvm_swap::header::mkswap(&img, 4 << 20, "", None).unwrap();
        let stat = Arc::new(VmStat::new());
        let warn = Arc::new(Warnings::new(false));
        let wm = Watermarks {
            min: 4,
            low: 8,
            high: 12,
        };
        let mut mem = Memory::new(64, wm, Arc::clone(&stat), Arc::clone(&warn)).unwrap();
        let mut swap = SwapSubsystem::new(stat, Arc::clone(&warn), 1, 1);
        swap.swapon(&SwapOnOptions {
            path: img,
            fault: Some(FaultPlan {
                write_error_rate: 1.0,
                ..FaultPlan::default()
            }),
            ..SwapOnOptions::default()
        })
        .unwrap();
        let mut reclaim = Reclaimer::new(ReclaimConfig::default(), 64);
        let mm = mem.mm_create();
        let start = mem.mmap_anon(mm, 40);
        for i in 0..40u64 {
            let vpn: Vpn = start.add(i);
            let pfn = mem.access(&mut swap, mm, vpn, true, 1).unwrap();
            mem.ram.page_mut(pfn)[..8].copy_from_slice(&(i + 1).to_le_bytes());
        }
        let mut failed = Vec::new();
        for now in 2..20 {
            reclaim.direct_reclaim(&mut mem, &mut swap, 0, now);
            for d in swap.complete_due(now + 1) {
                assert_eq!(d.kind, IoKind::Write);
                assert!(d.result.is_err(), "every write must fail");
                let pfn = swapvm_core::Pfn(d.cookie as u32);
                reclaim.writeback_done(&mut mem, &mut swap, pfn, false);
                failed.push((pfn, d.entry));
                swap.recycle(d.buf);
            }
        }
        assert!(!failed.is_empty(), "reclaim never wrote");
        for &(pfn, entry) in &failed {
            let p = mem.folios.get(pfn);
            for (flag, name) in [
                (pg::ALLOCATED, "allocated"),
                (pg::DIRTY, "dirty"),
                (pg::LRU, "on the LRU"),
            ] {
                assert!(p.test(flag), "{pfn:?} not {name}: flags {:#x}", p.flags);
            }
            assert_eq!(p.mapcount, 0, "{pfn:?} was unmapped before the write");
            assert!(
                !p.test(pg::WRITEBACK | pg::LOCKED),
                "{pfn:?} flags {:#x}",
                p.flags
            );
            assert_eq!(swap.swap_cache_get_folio(entry), Some(pfn), "slot unbound");
        }
        assert!(check_invariants(&mut mem, &mut swap).is_empty());
        // Every page still reads back its own bytes, from memory.
        for i in 0..40u64 {
            let pfn = mem.access(&mut swap, mm, start.add(i), false, 30).unwrap();
            assert_eq!(mem.ram.page(pfn)[..8], (i + 1).to_le_bytes(), "page {i}");
        }
        assert_eq!(warn.total(), 0, "{:?}", warn.records());
    }
}
