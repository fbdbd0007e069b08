//! `--scale F`: a quick run of the same study, the machine shrunk with its
//! workload so that the run still swaps.
//!
//! Scaling only the workload of a machine sized to make it swap would let
//! it fit in RAM: a run that swaps nothing measures nothing. So RAM and
//! every swap device shrink by the same factor (rounded up to whole MiB),
//! and where a floor stops them (RAM is at least
//! [`MIN_RAM_MIB`](swapvm_core::config::MIN_RAM_MIB), a device at least
//! 1 MiB) the run is checked: one that would no longer swap is refused,
//! one that would need more swap than the devices have is warned about.

use swapvm_core::config::{ConfigError, MachineConfig, MIN_RAM_MIB};
use swapvm_workload::WorkloadSpec;

/// 4 KiB pages per MiB.
const PAGES_PER_MIB: u64 = 256;

/// `n` MiB scaled by `f`, rounded up, at least `floor`.
fn scaled_mib(n: u64, f: f64, floor: u64) -> u64 {
    ((n as f64 * f).ceil() as u64).max(floor)
}

/// Shrinks `cfg`'s RAM and swap devices by `f`, as `scaled` (the workload
/// already scaled by `f`) was shrunk from `unscaled`. Returns the warnings
/// to show (a run that may OOM for want of swap).
///
/// # Errors
///
/// [`ConfigError::Invalid`] on `machine.ram_mib` when the unscaled run
/// would swap (its workload maps more than RAM) and the scaled one would
/// not, because RAM stopped at its minimum; the message says the smallest
/// factor that still swaps.
pub fn scale_machine(
    cfg: &mut MachineConfig,
    unscaled: &WorkloadSpec,
    scaled: &WorkloadSpec,
    f: f64,
) -> Result<Vec<String>, ConfigError> {
    let ram_pages = cfg.ram_pages();
    let ram_mib = scaled_mib(cfg.machine.ram_mib, f, MIN_RAM_MIB);
    let (before, after) = (unscaled.pages_mapped_max(), scaled.pages_mapped_max());
    let swapped = before > ram_pages;
    if swapped && after <= ram_mib * PAGES_PER_MIB {
        // The smallest factor of two decimals at which the workload is
        // again larger than the minimum RAM.
        let fits = (MIN_RAM_MIB * PAGES_PER_MIB) as f64 / before as f64;
        let need = ((fits * 100.0).floor() + 1.0) / 100.0;
        return Err(ConfigError::Invalid {
            path: cfg.source.clone(),
            field: "machine.ram_mib".into(),
            reason: format!(
                "--scale {f} would no longer swap: the workload would map at most {:.1} MiB \
                 and RAM cannot shrink below {MIN_RAM_MIB} MiB (from {} MiB); use --scale {:.2} \
                 or more, or a smaller machine.ram_mib with --set",
                after as f64 / PAGES_PER_MIB as f64,
                cfg.machine.ram_mib,
                need
            ),
        });
    }
    cfg.machine.ram_mib = ram_mib;
    for s in &mut cfg.swap {
        s.size_mib = scaled_mib(s.size_mib, f, 1);
    }
    let swap_pages: u64 = cfg.swap.iter().map(|s| s.size_mib * PAGES_PER_MIB).sum();
    let mut warnings = Vec::new();
    if swapped && after > ram_mib * PAGES_PER_MIB + swap_pages {
        warnings.push(format!(
            "--scale {f}: the workload maps up to {:.1} MiB, more than {} MiB of RAM and \
             {:.0} MiB of swap; it may be OOM-killed",
            after as f64 / PAGES_PER_MIB as f64,
            ram_mib,
            swap_pages as f64 / PAGES_PER_MIB as f64
        ));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn machine(ram_mib: u64, swap_mib: u64) -> MachineConfig {
        let text = format!(
            "[machine]\nram_mib = {ram_mib}\n[[swap]]\npath = \"a.img\"\nsize_mib = {swap_mib}\n"
        );
        MachineConfig::from_toml(&text, Path::new("/cfg/m.toml")).expect("valid")
    }

    fn usemem(mib: u32) -> WorkloadSpec {
        let text = format!("name = \"w\"\n[[process]]\nkind = \"usemem\"\nsize_mib = {mib}\npattern = \"random\"\n");
        WorkloadSpec::from_toml(&text, Path::new("/cfg/w.toml")).expect("valid")
    }

    #[test]
    fn ram_and_swap_shrink_with_the_workload() {
        let (w, mut c) = (usemem(192), machine(64, 256));
        let warnings = scale_machine(&mut c, &w, &w.scaled(0.25), 0.25).expect("still swaps");
        assert_eq!((c.machine.ram_mib, c.swap[0].size_mib), (16, 64));
        assert!(warnings.is_empty(), "{warnings:?}");
        // Rounded up to whole MiB.
        let mut c = machine(64, 256);
        scale_machine(&mut c, &w, &w.scaled(0.3), 0.3).expect("still swaps");
        assert_eq!((c.machine.ram_mib, c.swap[0].size_mib), (20, 77));
    }

    #[test]
    fn a_scale_that_would_stop_swapping_is_refused_with_the_factor_that_works() {
        let (w, mut c) = (usemem(192), machine(64, 256));
        let e = scale_machine(&mut c, &w, &w.scaled(0.01), 0.01).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "/cfg/m.toml: field `machine.ram_mib`: --scale 0.01 would no longer swap"
            ),
            "{msg}"
        );
        assert!(msg.contains("use --scale 0.03 or more"), "{msg}");
        assert_eq!(c.machine.ram_mib, 64, "the config is left as it was");
        // 0.03 works: 5.8 MiB of workload on 4 MiB of RAM.
        scale_machine(&mut c, &w, &w.scaled(0.03), 0.03).expect("swaps");
        assert_eq!(c.machine.ram_mib, 4);
    }

    #[test]
    fn a_run_that_never_swapped_is_scaled_without_a_check() {
        let (w, mut c) = (usemem(16), machine(64, 8));
        scale_machine(&mut c, &w, &w.scaled(0.01), 0.01).expect("nothing to lose");
        assert_eq!((c.machine.ram_mib, c.swap[0].size_mib), (4, 1));
    }

    #[test]
    fn too_little_swap_after_the_floors_is_a_warning() {
        let (w, mut c) = (usemem(64), machine(32, 1));
        let warnings = scale_machine(&mut c, &w, &w.scaled(0.5), 0.5).expect("swaps");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("may be OOM-killed"), "{warnings:?}");
    }
}
