//! Hibernation images (kernel/power/swap.c), so the hibernation slot
//! routines run inside a machine and the checker sees their owners.
//!
//! With `machine.hibernate_every = N`, every N ticks the machine takes a
//! hibernation image: `alloc_swapdev_block` for a share of the pages in
//! use (at most a quarter of the free slots, at most 256), held in the
//! extent map; N ticks later the image is released with
//! `free_all_swap_pages`, as a resume does. The image's bytes are not
//! written: what is modelled is the slot lifecycle, which is what the seed
//! review found bugs in. While an image is held, its extents are owners of
//! their slots for invariant 1.

use swapvm_swap::SwsuspExtents;

/// Most slots one image takes.
const IMAGE_SLOTS_MAX: u64 = 256;

impl crate::Machine {
    /// Takes or releases the hibernation image when its tick comes.
    pub(crate) fn hibernate_tick(&mut self) {
        let every = self.cfg.machine.hibernate_every;
        if every == 0 || self.tick == 0 || self.tick % every != 0 {
            return;
        }
        match self.hib.take() {
            Some(mut ext) => ext.free_all_swap_pages(&mut self.swap),
            None => self.hib = self.swsusp_write(),
        }
    }

    /// Allocates the slots of one image on the first swap device.
    fn swsusp_write(&mut self) -> Option<SwsuspExtents> {
        let &ty = self.swap.device_types().first()?;
        let in_use = self.mem.nr_frames() - self.mem.nr_free();
        let free = u64::try_from(self.swap.nr_swap_pages()).unwrap_or(0);
        let want = (in_use / 4).min(free / 4).min(IMAGE_SLOTS_MAX);
        let mut ext = SwsuspExtents::new(ty);
        for _ in 0..want {
            if ext.alloc_swapdev_block(&mut self.swap).is_none() {
                break;
            }
        }
        Some(ext)
    }

    /// Releases a held image (at the end of a run, before the last check).
    pub(crate) fn swsusp_release(&mut self) {
        if let Some(mut ext) = self.hib.take() {
            ext.free_all_swap_pages(&mut self.swap);
        }
    }
}
