//! report.json's `metadata`: the host bytes a metadata-only machine spends
//! per emulated page and per swap slot, held to issue 22's budgets (64 B
//! per page for frame + page table + LRU, 9 B per slot) on a small
//! machine that swaps, and checked against what the structures must at
//! least hold, so that an accounting that forgot a structure fails.

#![allow(clippy::unwrap_used)]

use swapvm_core::{MachineConfig, VmEvent};
use swapvm_machine::footprint::{MetadataReport, BYTES_PER_PAGE_MAX, BYTES_PER_SLOT_MAX};
use swapvm_machine::{Machine, Report, RunOptions};
use tempfile::TempDir;

/// A usemem process of `mib` MiB, one sequential pass after its touch.
fn usemem(mib: u64) -> String {
    format!(
        "name = \"fp\"\n[[process]]\nkind = \"usemem\"\nsize_mib = {mib}\npasses = 1\n\
         pattern = \"sequential\"\nwrite_ratio = 0.25\n"
    )
}

/// Runs `usemem(work_mib)` on a metadata-only machine of `ram_mib` with
/// one null device of `swap_mib`.
fn run(ram_mib: u64, swap_mib: u64, work_mib: u64) -> Report {
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("m.toml");
    let workload = dir.path().join("w.toml");
    std::fs::write(
        &config,
        format!(
            "[machine]\nram_mib = {ram_mib}\nseed = 3\ncontent = \"none\"\n\
             [[swap]]\npath = \"n\"\nsize_mib = {swap_mib}\nbackend = \"null\"\nlabel = \"fp\"\n"
        ),
    )
    .unwrap();
    std::fs::write(&workload, usemem(work_mib)).unwrap();
    let cfg = MachineConfig::load(&config).unwrap();
    let opts = RunOptions {
        workload: Some(workload),
        ..RunOptions::default()
    };
    let r = Machine::new(cfg, opts).unwrap().run(|_, _| {}).unwrap();
    assert!(r.counter(VmEvent::PswpOut) > 0, "the machine must swap");
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    r
}

/// The figures a run decides (all but the measured peak RSS).
fn decided(m: &MetadataReport) -> MetadataReport {
    MetadataReport {
        peak_rss_bytes: None,
        ..m.clone()
    }
}

// The workloads map 75 MiB on 64 MiB of RAM: the ratio of
// configs/whatif-256g.toml (300 GiB on 256 GiB), since page tables grow with
// the pages mapped, not with RAM.

#[test]
fn a_small_swapping_machine_is_within_the_per_page_and_per_slot_budgets() {
    let r = run(64, 256, 75);
    let m = &r.metadata;
    println!("{m:#?}");
    let frames = 64 * 256;
    assert_eq!(m.frames, frames);
    assert_eq!(m.swap_slots, 256 * 256);
    // What the structures must at least hold: a 32-byte struct Page and an
    // 8-byte LRU link pair per frame, a content word per frame, one PTE
    // per page of the 75 MiB region, a table word per slot.
    assert!(m.page_bytes >= frames * 32, "{m:?}");
    assert!(m.lru_bytes >= frames * 8, "{m:?}");
    assert_eq!(m.content_bytes, frames * 8);
    assert_eq!(m.ram_bytes, 0, "no page bytes on a metadata-only machine");
    assert!(m.page_table_bytes >= 75 * 256 * 8, "{m:?}");
    assert!(m.buddy_bytes > 0 && m.swap_cluster_bytes > 0, "{m:?}");
    assert!(m.swap_table_bytes >= m.swap_slots * 8, "{m:?}");
    let page_sum =
        m.page_bytes + m.lru_bytes + m.content_bytes + m.page_table_bytes + m.buddy_bytes;
    assert_eq!(m.bytes_per_page, page_sum as f64 / frames as f64);
    let slot_sum = m.swap_table_bytes + m.swap_cluster_bytes + m.swap_cgroup_bytes;
    assert_eq!(m.bytes_per_slot, slot_sum as f64 / m.swap_slots as f64);
    assert!(m.bytes_per_page <= BYTES_PER_PAGE_MAX, "{m:?}");
    assert!(m.bytes_per_slot <= BYTES_PER_SLOT_MAX, "{m:?}");
    assert!(m.within_budget());
    // The null device keeps words only for the chunks written: the run
    // used well under half of its 256 MiB.
    assert!(m.device_bytes > 0, "{m:?}");
    assert!(m.device_bytes < m.swap_slots * 8 / 2, "{m:?}");
    assert!(m.peak_rss_bytes.is_some_and(|b| b > 0));
}

#[test]
fn the_figures_are_decided_by_the_machine_and_the_swap_cost_by_its_size() {
    let a = run(64, 256, 75);
    let b = run(64, 256, 75);
    assert_eq!(
        decided(&a.metadata),
        decided(&b.metadata),
        "same run, same figures"
    );
    // Four times the swap: the per-page figure is the same, the per-slot
    // one stays in budget, and the swap tables grow with the slots.
    let big = run(64, 1024, 75);
    let (m, g) = (&a.metadata, &big.metadata);
    assert_eq!(g.swap_slots, 4 * m.swap_slots);
    assert_eq!(g.bytes_per_page, m.bytes_per_page);
    assert!(g.bytes_per_slot <= BYTES_PER_SLOT_MAX, "{g:?}");
    assert!(g.swap_table_bytes >= g.swap_slots * 8, "{g:?}");
}
