//! The run's own host-memory footprint: report.json's `metadata`.
//!
//! Two kinds of figure, kept apart. The structure sizes (swapvm-mm's and
//! swapvm-swap's footprints) are capacities, decided by the machine and
//! its workload: they say what an emulated page and a swap slot cost,
//! and a test can hold them to a budget. The peak RSS is measured
//! (`VmHWM` of `/proc/self/status`, the high-water mark `getrusage`
//! reports as `ru_maxrss`), like the wall time, and is not one of the
//! decided figures.
//!
//! The per-page figure counts what the kernel's `struct page` stands for
//! (frame metadata, the content word of a metadata-only frame, LRU links)
//! plus the page tables and the buddy bitmaps, divided by the frames. The
//! per-slot figure counts the swap table, clusters and `swap_cgroup`; a
//! null device's content words are the stand-in for the disk's 4 KiB per
//! slot, so they are storage, reported beside it (`device_bytes`).

use serde::{Deserialize, Serialize};
use swapvm_mm::footprint::MmFootprint;
use swapvm_swap::footprint::SwapFootprint;

/// Bytes per emulated 4 KiB page the metadata may take (the kernel's 64 B
/// `struct page`; issue 22's budget for frame + page table + LRU).
pub const BYTES_PER_PAGE_MAX: f64 = 64.0;
/// Bytes per swap slot the metadata may take (the kernel's swap table word
/// and `swap_map` byte).
pub const BYTES_PER_SLOT_MAX: f64 = 9.0;

/// Host memory of the emulated machine's structures, and the process's
/// peak RSS.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MetadataReport {
    /// Emulated frames.
    pub frames: u64,
    /// Swap slots, all devices swapped on at the end.
    pub swap_slots: u64,
    /// The `struct Page` array.
    pub page_bytes: u64,
    /// LRU links.
    pub lru_bytes: u64,
    /// Content words of a metadata-only machine's frames.
    pub content_bytes: u64,
    /// Page-table slab, free list and leaf cache.
    pub page_table_bytes: u64,
    /// Buddy free-area bitmaps.
    pub buddy_bytes: u64,
    /// Swap tables.
    pub swap_table_bytes: u64,
    /// Swap cluster state.
    pub swap_cluster_bytes: u64,
    /// `swap_cgroup` maps.
    pub swap_cgroup_bytes: u64,
    /// Null devices' kept content words (storage, not metadata).
    pub device_bytes: u64,
    /// The emulated RAM's page bytes on a full machine (not metadata).
    pub ram_bytes: u64,
    /// Frame, content word, LRU, page-table and buddy bytes per frame.
    pub bytes_per_page: f64,
    /// Swap table, cluster and `swap_cgroup` bytes per slot.
    pub bytes_per_slot: f64,
    /// `device_bytes` per slot.
    pub device_bytes_per_slot: f64,
    /// Peak resident set size of the process (measured; `None` where
    /// `/proc/self/status` cannot be read).
    pub peak_rss_bytes: Option<u64>,
}

impl MetadataReport {
    /// The report of these footprints, with the peak RSS read now.
    pub fn new(mm: &MmFootprint, swap: &SwapFootprint) -> Self {
        MetadataReport {
            frames: mm.frames,
            swap_slots: swap.slots,
            page_bytes: mm.page_bytes,
            lru_bytes: mm.lru_bytes,
            content_bytes: mm.content_bytes,
            page_table_bytes: mm.page_table_bytes,
            buddy_bytes: mm.buddy_bytes,
            swap_table_bytes: swap.table_bytes,
            swap_cluster_bytes: swap.cluster_bytes,
            swap_cgroup_bytes: swap.swap_cgroup_bytes,
            device_bytes: swap.device_bytes,
            ram_bytes: mm.ram_bytes,
            bytes_per_page: mm.bytes_per_page(),
            bytes_per_slot: swap.bytes_per_slot(),
            device_bytes_per_slot: swap.device_bytes_per_slot(),
            peak_rss_bytes: peak_rss_bytes(),
        }
    }

    /// Within issue 22's budgets ([`BYTES_PER_PAGE_MAX`],
    /// [`BYTES_PER_SLOT_MAX`]).
    pub fn within_budget(&self) -> bool {
        self.bytes_per_page <= BYTES_PER_PAGE_MAX && self.bytes_per_slot <= BYTES_PER_SLOT_MAX
    }

    /// The summary's line.
    pub fn summary(&self) -> String {
        let rss = match self.peak_rss_bytes {
            Some(b) => format!("peak RSS {:.2} GiB", b as f64 / (1u64 << 30) as f64),
            None => "peak RSS unknown".to_owned(),
        };
        let words = if self.device_bytes > 0 {
            format!(
                " (+ {:.2} B of null-device words)",
                self.device_bytes_per_slot
            )
        } else {
            String::new()
        };
        format!(
            "host memory: {rss}; metadata {:.1} B per emulated page, {:.2} B per swap slot{words}",
            self.bytes_per_page, self.bytes_per_slot
        )
    }
}

/// The process's peak RSS in bytes: `VmHWM` of `/proc/self/status`.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

/// `VmHWM:  1234 kB` in a `/proc/<pid>/status` text, in bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_high_water_mark_in_bytes() {
        let status = "Name:\tswapvm\nVmPeak:\t  999 kB\nVmHWM:\t   1234 kB\nVmRSS:\t 10 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(1234 * 1024));
        assert_eq!(parse_vm_hwm("VmRSS: 10 kB\n"), None);
        assert!(peak_rss_bytes().is_some_and(|b| b > 0));
    }

    #[test]
    fn the_summary_names_the_null_device_words_only_when_there_are_some() {
        let mut m = MetadataReport {
            bytes_per_page: 58.3,
            bytes_per_slot: 8.03,
            peak_rss_bytes: Some(3 << 29),
            ..MetadataReport::default()
        };
        let line = m.summary();
        assert!(line.contains("peak RSS 1.50 GiB"), "{line}");
        assert!(
            line.contains("58.3 B per emulated page, 8.03 B per swap slot"),
            "{line}"
        );
        assert!(!line.contains("null-device"), "{line}");
        assert!(m.within_budget());
        (m.device_bytes, m.device_bytes_per_slot) = (4096, 0.5);
        assert!(m.summary().contains("(+ 0.50 B of null-device words)"));
        m.bytes_per_slot = 9.5;
        assert!(!m.within_budget());
    }
}
