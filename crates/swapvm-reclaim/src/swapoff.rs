//! swapoff as a task of the tick loop (mm/swapfile.c: the `swapoff`
//! syscall around `try_to_unuse`).
//!
//! Swap reads complete at a later tick, so swapoff cannot loop until the
//! device is empty the way the kernel's syscall does: [`Swapoff::begin`]
//! checks that what the device holds can come back into memory and marks
//! the device dying; each [`Swapoff::tick`] runs one pass of
//! `try_to_unuse` (swapvm-mm's swapoff.rs), enters direct reclaim when the
//! pass found no free frame, and finishes the swapoff once no slot of the
//! device is in use. When memory stays too short, or a read fails, the
//! device is put back in service (`swapoff_abort`), as the kernel's
//! `-ENOMEM` path re-inserts it; whatever was read in stays in memory.

use crate::Reclaimer;
use swapvm_core::{SwapOffset, SwapType};
use swapvm_mm::Memory;
use swapvm_swap::{SlotBinding, SwapError, SwapSubsystem};

/// Reads one pass may start (the kernel reads with readahead as it
/// walks; this bounds a tick's I/O).
pub const SWAPOFF_READS_PER_TICK: u64 = 256;

/// Ticks in a row in which a pass found no frame and reclaim freed none
/// before swapoff gives up with [`SwapoffError::NoMem`].
pub const SWAPOFF_NOMEM_TICKS: u32 = 64;

/// Passes in a row that found slots in use yet nothing to bring back, with
/// no I/O in flight, before swapoff gives up with [`SwapoffError::Stuck`].
pub const SWAPOFF_STUCK_PASSES: u32 = 8;

/// Why swapoff failed. The device is back in service unless said otherwise.
#[derive(Debug, thiserror::Error)]
pub enum SwapoffError {
    /// What the device holds does not fit in memory (`-ENOMEM`).
    #[error("swapoff of device {ty}: not enough memory for {inuse} slots in use")]
    NoMem {
        /// The device.
        ty: u8,
        /// Slots still in use.
        inuse: u64,
    },
    /// A read from the device failed: its data cannot come back (`-EIO`).
    #[error("swapoff of device {ty}: {errors} swap reads failed")]
    Io {
        /// The device.
        ty: u8,
        /// Failed entries.
        errors: u64,
    },
    /// Slots stay in use that no page table, page cache or hibernation
    /// image owns: a leaked swap count. The kernel's `try_to_unuse` would
    /// loop on them until signalled; swapvm stops and names them.
    #[error(
        "swapoff of device {ty}: {inuse} slots in use have no owner the walk can find \
         (leaked swap counts), first {first:?} as (offset, count)"
    )]
    Stuck {
        /// The device.
        ty: u8,
        /// Slots still in use.
        inuse: u64,
        /// The first orphaned slots, as (offset, swap count).
        first: Vec<(u64, u16)>,
    },
    /// The swap layer refused (no such device, or already going away).
    #[error("swapoff of device {ty}")]
    Swap {
        /// The device.
        ty: u8,
        /// Cause.
        #[source]
        source: SwapError,
    },
}

/// Where a swapoff stands after a tick.
#[derive(Debug)]
pub enum SwapoffStep {
    /// Still reading the device back.
    Running,
    /// The device is gone.
    Done,
    /// Swapoff failed and the device is back in service.
    Failed(SwapoffError),
}

/// A swapoff in progress.
#[derive(Debug, Clone)]
pub struct Swapoff {
    /// The device.
    pub ty: SwapType,
    /// Tick it began.
    pub started: u64,
    /// Passes run.
    pub passes: u64,
    /// Entries brought back so far.
    pub unused: u64,
    nomem_ticks: u32,
    stuck_passes: u32,
}

impl Swapoff {
    /// Starts swapoff of `ty`: refuses with [`SwapoffError::NoMem`] (the
    /// device untouched) when what it holds cannot fit in memory, else
    /// marks the device dying (`swapoff_begin`).
    pub fn begin(
        mem: &Memory,
        swap: &mut SwapSubsystem,
        ty: SwapType,
        now: u64,
    ) -> Result<Swapoff, SwapoffError> {
        let Some(d) = swap.device(ty) else {
            return Err(SwapoffError::Swap {
                ty: ty.0,
                source: SwapError::DeviceDying { ty: ty.0 },
            });
        };
        if d.dying {
            return Err(SwapoffError::Swap {
                ty: ty.0,
                source: SwapError::DeviceDying { ty: ty.0 },
            });
        }
        if !mem.swapoff_enough_memory(swap, ty) {
            return Err(SwapoffError::NoMem {
                ty: ty.0,
                inuse: d.inuse_pages,
            });
        }
        swap.swapoff_begin(ty)
            .map_err(|source| SwapoffError::Swap { ty: ty.0, source })?;
        Ok(Swapoff {
            ty,
            started: now,
            passes: 0,
            unused: 0,
            nomem_ticks: 0,
            stuck_passes: 0,
        })
    }

    /// One tick of the swapoff task.
    pub fn tick(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        reclaim: &mut Reclaimer,
        cpu: usize,
        now: u64,
    ) -> SwapoffStep {
        let u = mem.try_to_unuse(swap, self.ty, now, SWAPOFF_READS_PER_TICK);
        self.passes += 1;
        self.unused += u.unused;
        if u.errors > 0 {
            swap.swapoff_abort(self.ty);
            return SwapoffStep::Failed(SwapoffError::Io {
                ty: self.ty.0,
                errors: u.errors,
            });
        }
        if u.inuse == 0 {
            return match swap.swapoff_finish(self.ty) {
                Ok(()) => SwapoffStep::Done,
                // A reference is still held (a fault in progress): retry.
                Err(SwapError::Busy { .. }) => SwapoffStep::Running,
                Err(source) => SwapoffStep::Failed(SwapoffError::Swap {
                    ty: self.ty.0,
                    source,
                }),
            };
        }
        let idle = !u.progress() && u.waiting == 0 && u.nomem == 0 && swap.io_in_flight() == 0;
        let orphans = if idle {
            orphan_slots(swap, self.ty)
        } else {
            Vec::new()
        };
        if orphans.is_empty() {
            self.stuck_passes = 0;
        } else {
            self.stuck_passes += 1;
            if self.stuck_passes >= SWAPOFF_STUCK_PASSES {
                swap.swapoff_abort(self.ty);
                return SwapoffStep::Failed(SwapoffError::Stuck {
                    ty: self.ty.0,
                    inuse: u.inuse,
                    first: orphans,
                });
            }
        }
        if u.nomem > 0 {
            // The swapoff task allocates like any task: below min it
            // reclaims for itself (to the other devices).
            let p = reclaim.direct_reclaim(mem, swap, cpu, now);
            if !u.progress() && !p.made() && reclaim.nr_writeback() == 0 {
                self.nomem_ticks += 1;
            } else {
                self.nomem_ticks = 0;
            }
            if self.nomem_ticks >= SWAPOFF_NOMEM_TICKS {
                swap.swapoff_abort(self.ty);
                return SwapoffStep::Failed(SwapoffError::NoMem {
                    ty: self.ty.0,
                    inuse: u.inuse,
                });
            }
        } else {
            self.nomem_ticks = 0;
        }
        SwapoffStep::Running
    }
}

/// Up to four slots of device `ty` with a swap count and no hibernation
/// binding. Context: a pass of `try_to_unuse` just visited every owner
/// and found none of them, so these counts are owned by nobody.
fn orphan_slots(swap: &SwapSubsystem, ty: SwapType) -> Vec<(u64, u16)> {
    let Some(d) = swap.device(ty) else {
        return Vec::new();
    };
    (1..d.max())
        .map(|off| (off, d.slot(SwapOffset(off))))
        .filter(|(_, s)| s.count > 0 && !s.is_bad() && s.binding != SlotBinding::Hibernation)
        .take(4)
        .map(|(off, s)| (off, s.count))
        .collect()
}
