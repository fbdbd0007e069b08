//! Host memory of the structures that grow with swap size: what one swap
//! slot costs the host (the kernel's swap table word and `swap_map` byte,
//! its share of `swap_cluster_info`, the `swap_cgroup` record).
//!
//! Figures are capacities, as in swapvm-mm's footprint: a property of the
//! run's structures, the same for the same machine and workload.

use crate::swapfile::SwapSubsystem;

/// The per-slot structures of one device, or of all of them summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwapFootprint {
    /// Slots (`si->max`, header included).
    pub slots: u64,
    /// The swap table: one word per slot (count, zeromap bit, swap cache
    /// folio or shadow).
    pub table_bytes: u64,
    /// Per-cluster state, list links and per-CPU allocation hints.
    pub cluster_bytes: u64,
    /// The `swap_cgroup` map (empty until a slot is charged to a memcg
    /// other than the root).
    pub swap_cgroup_bytes: u64,
    /// What the device's engine keeps in host memory for the blocks
    /// themselves: a null device's content words, the stand-in for the
    /// disk's 4 KiB, so storage and not metadata; 0 for a file.
    pub device_bytes: u64,
}

impl SwapFootprint {
    /// Metadata bytes: the table, clusters and `swap_cgroup`, not the
    /// device's storage.
    pub fn metadata_bytes(&self) -> u64 {
        self.table_bytes + self.cluster_bytes + self.swap_cgroup_bytes
    }

    /// Metadata bytes per slot (0 without slots).
    pub fn bytes_per_slot(&self) -> f64 {
        per(self.metadata_bytes(), self.slots)
    }

    /// Device storage bytes per slot (0 without slots).
    pub fn device_bytes_per_slot(&self) -> f64 {
        per(self.device_bytes, self.slots)
    }

    fn add(&mut self, o: &SwapFootprint) {
        self.slots += o.slots;
        self.table_bytes += o.table_bytes;
        self.cluster_bytes += o.cluster_bytes;
        self.swap_cgroup_bytes += o.swap_cgroup_bytes;
        self.device_bytes += o.device_bytes;
    }
}

fn per(bytes: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        bytes as f64 / n as f64
    }
}

impl SwapSubsystem {
    /// The devices swapped on now, summed; see [`SwapFootprint`].
    pub fn footprint(&self) -> SwapFootprint {
        let mut sum = SwapFootprint::default();
        for &ty in self.device_types() {
            if let Some(d) = self.device(ty) {
                let mut f = d.footprint();
                f.device_bytes = self.engine_host_bytes(ty);
                sum.add(&f);
            }
        }
        sum
    }
}
