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
//!
//! A `hibernate` phase runs a whole hibernate cycle with real bytes
//! ([`HibCycle`]): every task is frozen (processes, kswapd, ksmd, the
//! swapoff task); once the swap I/O in flight has drained, every frame in
//! use gets a hibernation slot on the chosen device (`swsusp_write`'s
//! `alloc_swapdev_block`, refused as a whole when the device has too few
//! free slots, as `enough_swap` refuses); the frames' bytes are written to
//! their slots through the device's engine (`hib_submit_io`), read back and
//! compared with the checksums taken when they were written, and the slots
//! are released (`free_all_swap_pages`) before the tasks thaw. Divergence:
//! the kernel first shrinks memory to the image size and copies the pages
//! in memory (`swsusp_save`); with every task frozen the frames cannot
//! change, so swapvm writes them as they are. No swsusp header or swap-map
//! pages are written.

use crate::swap_event::{SwapEvent, SwapEventKind};
use swapvm_core::{Pfn, SwpEntry};
use swapvm_io::IoKind;
use swapvm_swap::SwsuspExtents;
use xxhash_rust::xxh3::xxh3_64;

/// Marks the cookie of hibernation image I/O (swap I/O cookies are pfns).
pub(crate) const HIB_COOKIE: u64 = 1 << 63;

/// Image pages submitted per tick, for the write and the read-back.
const HIB_IO_PER_TICK: usize = 256;

/// Where a hibernate cycle stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Tasks frozen; waiting for the swap I/O in flight to drain.
    Quiesce,
    /// Writing the image.
    Write,
    /// Reading it back.
    Verify,
}

/// One hibernate cycle in progress.
#[derive(Debug)]
pub(crate) struct HibCycle {
    device: usize,
    started: u64,
    stage: Stage,
    ext: SwsuspExtents,
    /// Per image page: its frame, its slot and the checksum of the bytes
    /// written.
    image: Vec<(Pfn, SwpEntry, u64)>,
    /// Next image page to submit in this stage.
    next: usize,
    /// Image pages whose I/O of this stage completed.
    done: usize,
    errors: u64,
    mismatches: u64,
}

impl HibCycle {
    /// The image's slots (owners for the checker).
    pub(crate) fn extents(&self) -> &SwsuspExtents {
        &self.ext
    }
}

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

    /// Releases a held image (at the end of a run, before the last check),
    /// and the slots of a hibernate cycle cut short by `max_ticks`.
    pub(crate) fn swsusp_release(&mut self) {
        if let Some(mut ext) = self.hib.take() {
            ext.free_all_swap_pages(&mut self.swap);
        }
        if self.hib_cycle.is_some() {
            self.hib_finish(Some("the run ended first".into()));
        }
    }

    /// True while a hibernate cycle has the tasks frozen.
    pub(crate) fn frozen(&self) -> bool {
        self.hib_cycle.is_some()
    }

    /// Starts a hibernate cycle to the `[[swap]]` entry `device` (the
    /// `hibernate` phase); the tasks freeze from the next turn.
    ///
    /// # Errors
    /// A message when the device is not on or a cycle is running.
    pub(crate) fn hibernate(&mut self, device: usize) -> Result<(), String> {
        if self.hib_cycle.is_some() {
            return Err("a hibernate cycle is running".into());
        }
        let ty = self
            .swap_types
            .get(device)
            .copied()
            .flatten()
            .ok_or_else(|| format!("swap[{device}] is not on"))?;
        let kind = SwapEventKind::HibernateBegin;
        self.swap_event(SwapEvent::new(self.tick, kind, Some(device as u32)));
        self.hib_cycle = Some(HibCycle {
            device,
            started: self.tick,
            stage: Stage::Quiesce,
            ext: SwsuspExtents::new(ty),
            image: Vec::new(),
            next: 0,
            done: 0,
            errors: 0,
            mismatches: 0,
        });
        Ok(())
    }

    /// One tick of the hibernate cycle; true if it did anything.
    pub(crate) fn hibernation_tick(&mut self) -> bool {
        let Some(c) = self.hib_cycle.as_ref() else {
            return false;
        };
        match c.stage {
            Stage::Quiesce => {
                if self.swap.io_in_flight() == 0 {
                    self.hib_snapshot();
                }
            }
            Stage::Write | Stage::Verify => self.hib_submit(),
        }
        true
    }

    /// Takes a slot for every frame in use and starts the write.
    fn hib_snapshot(&mut self) {
        let frames: Vec<Pfn> = (0..self.mem.nr_frames() as u32)
            .map(Pfn)
            .filter(|&p| self.mem.folios.get(p).test(swapvm_mm::folio::pg::ALLOCATED))
            .collect();
        let Some(ty) = self.hib_cycle.as_ref().map(|c| c.ext.ty()) else {
            return;
        };
        let free = u64::try_from(self.swap.nr_swap_pages()).unwrap_or(0);
        let dev_free = self
            .swap
            .device(ty)
            .map_or(0, |d| d.pages.saturating_sub(d.inuse_pages))
            .min(free);
        if (frames.len() as u64) > dev_free {
            let why = format!(
                "not enough swap for the image: {} pages, {dev_free} free slots",
                frames.len()
            );
            self.hib_finish(Some(why));
            return;
        }
        let Some(c) = self.hib_cycle.as_mut() else {
            return;
        };
        for pfn in frames {
            let Some(e) = c.ext.alloc_swapdev_block(&mut self.swap) else {
                break;
            };
            c.image.push((pfn, e, 0));
        }
        c.stage = Stage::Write;
        self.hib_submit();
    }

    /// Submits the next batch of the stage's I/O.
    fn hib_submit(&mut self) {
        let Some(c) = self.hib_cycle.as_mut() else {
            return;
        };
        let end = (c.next + HIB_IO_PER_TICK).min(c.image.len());
        for k in c.next..end {
            let (pfn, entry, _) = c.image[k];
            let cookie = HIB_COOKIE | k as u64;
            let r = if c.stage == Stage::Write {
                let page = self.mem.ram.page(pfn);
                c.image[k].2 = xxh3_64(page);
                self.swap.hib_write_page(entry, page, cookie, self.tick)
            } else {
                self.swap.hib_read_page(entry, cookie, self.tick)
            };
            if let Err(e) = r {
                tracing::error!("hibernation I/O to {entry:?} failed: {e}");
                c.errors += 1;
                c.done += 1;
            }
        }
        c.next = end;
        self.hib_stage_done();
    }

    /// A completion of the image's I/O (cookie with [`HIB_COOKIE`]). The
    /// read-back is compared with the frame's content as written: a
    /// block's start, its whole 4 KiB with page bytes, its content word
    /// on a metadata-only machine.
    pub(crate) fn hib_io_done(&mut self, cookie: u64, kind: IoKind, ok: bool, data: &[u8]) {
        let Some(c) = self.hib_cycle.as_mut() else {
            return;
        };
        let Some(&(_, _, sum)) = c.image.get((cookie & !HIB_COOKIE) as usize) else {
            return;
        };
        c.done += 1;
        if !ok {
            c.errors += 1;
        } else if kind == IoKind::Read && xxh3_64(&data[..self.mem.ram.page_bytes()]) != sum {
            c.mismatches += 1;
        }
        self.hib_stage_done();
    }

    /// Moves to the next stage once every page of this one completed.
    fn hib_stage_done(&mut self) {
        let Some(c) = self.hib_cycle.as_mut() else {
            return;
        };
        if c.done < c.image.len() {
            return;
        }
        let what = match c.stage {
            Stage::Write => "writes",
            _ => "reads",
        };
        if c.errors > 0 {
            let why = format!("{} image {what} failed", c.errors);
            self.hib_finish(Some(why));
        } else if c.stage == Stage::Write {
            c.stage = Stage::Verify;
            c.next = 0;
            c.done = 0;
        } else {
            self.hib_finish(None);
        }
    }

    /// Releases the image's slots, thaws the tasks and reports the cycle,
    /// `failed` saying why it did not complete.
    fn hib_finish(&mut self, failed: Option<String>) {
        let Some(mut c) = self.hib_cycle.take() else {
            return;
        };
        c.ext.free_all_swap_pages(&mut self.swap);
        let ticks = self.tick - c.started;
        let r = &mut self.hib_report;
        r.cycles += 1;
        r.ticks_frozen += ticks;
        r.mismatches += c.mismatches;
        let pages = c.image.len() as u64;
        let dev = Some(c.device as u32);
        let e = match failed {
            Some(why) => {
                r.failed += 1;
                SwapEvent::new(self.tick, SwapEventKind::HibernateFailed, dev).because(why)
            }
            None => {
                r.pages_written += pages;
                r.pages_verified += pages - c.mismatches;
                SwapEvent {
                    pages: Some(pages),
                    ticks: Some(ticks),
                    mismatches: Some(c.mismatches),
                    ..SwapEvent::new(self.tick, SwapEventKind::HibernateDone, dev)
                }
            }
        };
        self.swap_event(e);
    }
}
