//! Hibernate cycles (`hibernate` phases): the RAM in use written to
//! hibernation slots on a real swap image, read back, verified and
//! released, with every task frozen meanwhile and the checker after every
//! tick.

use super::*;

/// 8 MiB of RAM and one swap image of `swap_mib`; the workload is a phase
/// program that fills 4 MiB and hibernates twice, plus (`pressure`) a
/// 12 MiB usemem process so the machine also swaps around the cycles.
fn hibernating(swap_mib: u64, pressure: bool, extra: &str) -> Tiny {
    let mut w = String::from(
        "name = \"hib\"\n[[process]]\nkind = \"phases\"\n\
         [[process.phase]]\nop = \"mmap\"\nregion = 0\nsize_mib = 4\n\
         [[process.phase]]\nop = \"touch\"\nregion = 0\n\
         [[process.phase]]\nop = \"sleep\"\nticks = 40\n\
         [[process.phase]]\nop = \"hibernate\"\n\
         [[process.phase]]\nop = \"access\"\nregion = 0\naccesses = 2000\npattern = \"random\"\nwrite_ratio = 0.5\n\
         [[process.phase]]\nop = \"hibernate\"\ndevice = 0\n\
         [[process.phase]]\nop = \"access\"\nregion = 0\naccesses = 2000\npattern = \"random\"\nwrite_ratio = 0.5\n",
    );
    if pressure {
        w.push_str(
            "[[process]]\nkind = \"usemem\"\nsize_mib = 12\npasses = 2\n\
             pattern = \"random\"\nwrite_ratio = 0.5\n",
        );
    }
    machine_folder(
        &format!(
            "workload = \"workload.toml\"\n\
             [machine]\nram_mib = 8\ncpus = 2\nseed = 11\n\
             [[swap]]\npath = \"swap.img\"\nsize_mib = {swap_mib}\n{extra}\n"
        ),
        &w,
    )
}

fn describe_hib(r: &Report) -> String {
    format!("{:?}\n{:?}\n{}", r.hibernation, r.swap_events, describe(r))
}

#[test]
fn hibernate_cycles_write_verify_and_release_the_image_under_pressure() {
    let r = run_checked(&hibernating(32, true, ""));
    let d = describe_hib(&r);
    let h = &r.hibernation;
    assert!(r.passed(), "{d}");
    assert_eq!((h.cycles, h.failed, h.mismatches), (2, 0, 0), "{d}");
    // Most of the 2048 frames are in use when the image is taken.
    assert!(h.pages_written > 1024, "{d}");
    assert_eq!(h.pages_verified, h.pages_written, "{d}");
    assert!(h.ticks_frozen > 0, "{d}");
    assert!(r.counter(VmEvent::PswpOut) > 0, "no pressure: {d}");
    let dev = &r.devices[0];
    assert!(
        dev.bytes_written >= h.pages_written * 4096 && dev.bytes_read >= h.pages_written * 4096,
        "the image went through the device: {d}"
    );
    assert_eq!(dev.slots_used, 0, "image slots left behind: {d}");
    assert_eq!(
        r.swap_events
            .iter()
            .filter(|e| e.to_string().contains("written and read back") && e.mismatches == Some(0))
            .count(),
        2,
        "{d}"
    );
}

#[test]
fn a_torn_image_write_is_caught_by_the_read_back() {
    let r = run_checked(&hibernating(32, false, "[fault]\ntorn_write_rate = 0.05\n"));
    let d = describe_hib(&r);
    let h = &r.hibernation;
    assert!(r.faults.io.torn_writes > 0, "nothing injected: {d}");
    assert!(h.mismatches > 0, "torn pages read back as good: {d}");
    assert_eq!(h.pages_verified + h.mismatches, h.pages_written, "{d}");
    assert!(!r.passed(), "a corrupt image fails the run: {d}");
    assert!(r.violations.is_empty(), "{d}");
    assert_eq!(r.devices[0].slots_used, 0, "{d}");
}

#[test]
fn an_image_write_error_fails_the_cycle_and_releases_its_slots() {
    let r = run_checked(&hibernating(
        32,
        false,
        "[fault]\nwrite_error_rate = 0.05\n",
    ));
    let d = describe_hib(&r);
    let h = &r.hibernation;
    assert!(r.faults.io.write_errors > 0, "nothing injected: {d}");
    assert_eq!((h.cycles, h.failed), (2, 2), "{d}");
    assert_eq!(h.pages_written, 0, "{d}");
    assert!(
        r.swap_events
            .iter()
            .any(|e| e.to_string().contains("image writes failed")),
        "{d}"
    );
    assert!(r.violations.is_empty() && r.warnings == 0, "{d}");
    assert!(
        r.killed.is_empty(),
        "a failed hibernation kills nobody: {d}"
    );
    assert_eq!(r.devices[0].slots_used, 0, "{d}");
}

#[test]
fn a_device_too_small_for_the_image_refuses_the_cycle() {
    let r = run_checked(&hibernating(2, false, ""));
    let d = describe_hib(&r);
    let h = &r.hibernation;
    assert_eq!((h.cycles, h.failed, h.pages_written), (2, 2, 0), "{d}");
    assert!(
        r.swap_events
            .iter()
            .any(|e| e.to_string().contains("not enough swap for the image")),
        "{d}"
    );
    assert!(r.passed(), "{d}");
    assert_eq!(r.devices[0].slots_used, 0, "{d}");
}
