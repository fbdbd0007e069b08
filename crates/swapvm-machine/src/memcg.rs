//! The machine's side of memory cgroups: what a task does when a charge is
//! refused (`try_charge`'s reclaim, retry and memcg OOM), what it does on
//! its way back to user space over `memory.high`
//! (`mem_cgroup_handle_over_high`), and when a task waiting on its memcg
//! may run again.
//!
//! Time: swapvm counts the kernel's `memory.high` penalty in ticks, one
//! tick standing for one millisecond of emulated time ([`TICK_MS`]).

use crate::Machine;
use swapvm_core::VmEvent;
use swapvm_mm::{MemcgEvent, MemcgId, Wait};

/// `MAX_RECLAIM_RETRIES`.
pub(crate) const MAX_RECLAIM_RETRIES: u32 = 16;
/// Emulated milliseconds per tick, for the `memory.high` penalty.
pub const TICK_MS: u64 = 1;
/// `MEMCG_MAX_HIGH_DELAY_JIFFIES`: at most 2 s of penalty per return.
const MAX_HIGH_DELAY_MS: u64 = 2000;
/// `MEMCG_DELAY_PRECISION_SHIFT`.
const DELAY_PRECISION_SHIFT: u32 = 20;
/// `MEMCG_DELAY_SCALING_SHIFT`.
const DELAY_SCALING_SHIFT: u32 = 14;

/// `calculate_overage`: how far `usage` is over `high`, as a fixed-point
/// fraction of `high`.
fn calculate_overage(usage: u64, high: u64) -> u64 {
    if usage <= high {
        return 0;
    }
    // The kernel treats a high of 0 as 1 to avoid dividing by zero.
    let high = high.max(1);
    (((usage - high) as u128) << DELAY_PRECISION_SHIFT) as u64 / high
}

/// `calculate_high_delay` in milliseconds (HZ = 1000): quadratic in the
/// overage, so that small overshoots are barely slowed and large ones
/// are stopped, scaled by the pages charged since the last return
/// (`nr_pages`, at least a batch as `MEMCG_CHARGE_BATCH`).
fn calculate_high_delay(overage: u64, nr_pages: u64) -> u64 {
    if overage == 0 {
        return 0;
    }
    let mut penalty = ((overage as u128 * overage as u128 * 1000)
        >> DELAY_PRECISION_SHIFT
        >> DELAY_SCALING_SHIFT)
        .min(u128::from(u64::MAX)) as u64;
    // Spread over a batch of charges (MEMCG_CHARGE_BATCH = 64).
    penalty = penalty.saturating_mul(nr_pages.max(1)) / 64;
    penalty.min(MAX_HIGH_DELAY_MS)
}

impl Machine {
    /// A charge of process `i` was refused at `over`'s `memory.max`: limit
    /// reclaim there (`try_to_free_mem_cgroup_pages`), and when reclaim
    /// has made no progress [`MAX_RECLAIM_RETRIES`] times in a row with no
    /// writeback of that memcg in flight, the memcg OOM killer.
    ///
    /// Returns true when the reclaim made room at once (clean folios
    /// freed): the charge is retried in the same turn, as the kernel's
    /// `try_charge` retries in place.
    pub(crate) fn memcg_charge_failed(&mut self, i: usize, over: MemcgId) -> bool {
        let cpu = self.procs[i].cpu;
        let p = self.reclaim.try_to_free_mem_cgroup_pages(
            &mut self.mem,
            &mut self.swap,
            over,
            1,
            cpu,
            self.tick,
        );
        if self.memcg_margin(over) > 0 {
            self.procs[i].memcg_retries = 0;
            return true;
        }
        if p.made() || self.memcg_writeback(over) > 0 {
            self.procs[i].memcg_retries = 0;
            return false;
        }
        self.procs[i].memcg_retries += 1;
        if self.procs[i].memcg_retries >= MAX_RECLAIM_RETRIES {
            self.procs[i].memcg_retries = 0;
            self.mem_cgroup_out_of_memory(over);
        }
        false
    }

    /// Limit reclaim for charges made over `memory.max` during process
    /// `i`'s op (readahead's deferred charges), so that no memcg stays over
    /// its limit past the turn while reclaim can bring it back.
    pub(crate) fn memcg_reclaim_excess(&mut self, i: usize) {
        let Some((over, excess)) = self.mem.memcg.over_max(self.procs[i].memcg) else {
            return;
        };
        let cpu = self.procs[i].cpu;
        self.reclaim.try_to_free_mem_cgroup_pages(
            &mut self.mem,
            &mut self.swap,
            over,
            excess,
            cpu,
            self.tick,
        );
    }

    /// Swap-out writes in flight of `memcg`'s subtree.
    fn memcg_writeback(&self, memcg: MemcgId) -> u64 {
        let c = &self.mem.memcg;
        c.subtree(memcg)
            .into_iter()
            .map(|m| c.get(m).nr_writeback)
            .sum()
    }

    /// `mem_cgroup_margin`: pages `memcg` may still charge before its own
    /// or an ancestor's `memory.max`.
    fn memcg_margin(&self, memcg: MemcgId) -> u64 {
        let c = &self.mem.memcg;
        c.ancestors(memcg)
            .filter_map(|m| {
                c.get(m)
                    .limits
                    .max
                    .map(|max| max.saturating_sub(c.get(m).usage))
            })
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Whether a process blocked on a charge to `over` may retry: the memcg
    /// has room again, or no write of its is in flight any more (the retry
    /// reclaims again).
    pub(crate) fn memcg_may_retry(&self, over: MemcgId) -> bool {
        self.memcg_margin(over) > 0 || self.memcg_writeback(over) == 0
    }

    /// `mem_cgroup_out_of_memory`: kills the process with the highest
    /// badness inside `memcg`'s subtree, or, where `memory.oom.group` is set
    /// on the victim's memcg or an ancestor up to `memcg`, every process of
    /// the highest such group (`mem_cgroup_get_oom_group`).
    pub(crate) fn mem_cgroup_out_of_memory(&mut self, memcg: MemcgId) {
        self.mem.memcg.event(memcg, MemcgEvent::Oom);
        let c = &self.mem.memcg;
        let inside: Vec<bool> = self
            .procs
            .iter()
            .map(|p| c.is_descendant(p.memcg, memcg))
            .collect();
        let candidates: Vec<_> = self
            .procs
            .iter()
            .zip(&inside)
            .map(|(p, &ins)| ins.then_some(p))
            .collect();
        let Some((victim, points)) = crate::fault::select_bad_process_among(&self.mem, &candidates)
        else {
            return;
        };
        let vm = self.procs[victim].memcg;
        let group = self
            .mem
            .memcg
            .ancestors(vm)
            .take_while(|&m| self.mem.memcg.is_descendant(m, memcg))
            .filter(|&m| self.mem.memcg.get(m).limits.oom_group)
            .last();
        let path = self.mem.memcg.get(memcg).limits.path.clone();
        let why = |points| {
            format!(
                "{}: memory cgroup {path} out of memory at tick {} (badness {points} pages: resident + swap entries)",
                crate::report::OOM_KILL,
                self.tick
            )
        };
        let mut kill = vec![(victim, why(points))];
        if let Some(g) = group {
            self.mem.memcg.event(g, MemcgEvent::OomGroupKill);
            kill = (0..self.procs.len())
                .filter(|&j| {
                    !self.procs[j].exited && self.mem.memcg.is_descendant(self.procs[j].memcg, g)
                })
                .map(|j| (j, why(points)))
                .collect();
        }
        for (j, reason) in kill {
            self.stat.inc(VmEvent::OomKill);
            let m = self.procs[j].memcg;
            self.mem.memcg.event(m, MemcgEvent::OomKill);
            self.exit_process(j, Some(reason));
        }
    }

    /// `mem_cgroup_handle_over_high` on process `i`'s return to user space:
    /// each memcg of its ancestry over `memory.high` counts a `high` event
    /// and is reclaimed by the excess (`reclaim_high`); what excess is left
    /// puts the process to sleep for the kernel's penalty.
    pub(crate) fn memcg_handle_over_high(&mut self, i: usize, charged: u64) {
        let Some(over) = self.mem.memcg.over_high(self.procs[i].memcg) else {
            return;
        };
        let cpu = self.procs[i].cpu;
        let chain: Vec<MemcgId> = self.mem.memcg.ancestors(self.procs[i].memcg).collect();
        for m in chain {
            let g = self.mem.memcg.get(m);
            let Some(high) = g.limits.high else { continue };
            if g.usage <= high {
                continue;
            }
            let excess = g.usage - high;
            self.mem.memcg.event(m, MemcgEvent::High);
            self.reclaim.try_to_free_mem_cgroup_pages(
                &mut self.mem,
                &mut self.swap,
                m,
                excess,
                cpu,
                self.tick,
            );
        }
        let g = self.mem.memcg.get(over);
        let overage = g.limits.high.map_or(0, |h| calculate_overage(g.usage, h));
        let ms = calculate_high_delay(overage, charged);
        // The kernel skips penalties under 10 ms (HZ / 100).
        if ms > 10 {
            let ticks = ms / TICK_MS;
            let p = &mut self.procs[i];
            p.sleep_until = p.sleep_until.max(self.tick + ticks);
            p.throttled_until = p.throttled_until.max(self.tick + ticks);
            p.high_throttled_ticks += ticks;
        }
    }

    /// Unblocks processes waiting on a memcg charge that may retry.
    pub(crate) fn memcg_unblock(&mut self) {
        for j in 0..self.procs.len() {
            if let Some(Wait::Memcg(m)) = self.procs[j].blocked {
                if self.memcg_may_retry(m) {
                    self.procs[j].blocked = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalty_is_quadratic_and_capped() {
        assert_eq!(calculate_high_delay(calculate_overage(100, 100), 64), 0);
        let small = calculate_high_delay(calculate_overage(110, 100), 64);
        let big = calculate_high_delay(calculate_overage(200, 100), 64);
        assert!(small < big, "{small} < {big}");
        assert_eq!(
            calculate_high_delay(calculate_overage(10_000, 100), 64),
            MAX_HIGH_DELAY_MS
        );
    }
}

/// One cgroup's figures at the end of a run, under the cgroup v2 file
/// names (sizes in bytes, as the files give them).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CgroupReport {
    /// The path (`"/"`, `"/batch"`).
    pub path: String,
    /// `memory.current` (the root: every charged page).
    pub memory_current: u64,
    /// `memory.peak`.
    pub memory_peak: u64,
    /// `memory.max` (`None`: max).
    pub memory_max: Option<u64>,
    /// `memory.high`.
    pub memory_high: Option<u64>,
    /// `memory.low`.
    pub memory_low: u64,
    /// `memory.min`.
    pub memory_min: u64,
    /// `memory.swap.current`.
    pub swap_current: u64,
    /// `memory.swap.peak`.
    pub swap_peak: u64,
    /// `memory.swap.max`.
    pub swap_max: Option<u64>,
    /// `memory.events`: low, high, max, oom, oom_kill, oom_group_kill.
    pub events: Vec<(String, u64)>,
    /// `memory.swap.events`: max.
    pub swap_events_max: u64,
    /// `memory.stat`, the keys swapvm models, in the kernel's order.
    pub stat: Vec<(String, u64)>,
    /// Processes that ran in it (not below it).
    pub processes: u64,
    /// Ticks its processes slept as the `memory.high` penalty.
    pub high_throttled_ticks: u64,
    /// `memory.pressure`: its subtree's memory stalls.
    #[serde(default)]
    pub pressure: crate::psi::PsiReport,
}

/// `memory.stat` keys that are sums of vmstat events, with their events.
const STAT_EVENTS: &[(&str, &[VmEvent])] = &[
    ("pgfault", &[VmEvent::PgFault]),
    ("pgmajfault", &[VmEvent::PgMajFault]),
    ("workingset_refault_anon", &[VmEvent::WorkingsetRefaultAnon]),
    (
        "workingset_activate_anon",
        &[VmEvent::WorkingsetActivateAnon],
    ),
    ("workingset_restore_anon", &[VmEvent::WorkingsetRestoreAnon]),
    ("pswpin", &[VmEvent::PswpIn]),
    ("pswpout", &[VmEvent::PswpOut]),
    ("pgscan", &[VmEvent::PgScanKswapd, VmEvent::PgScanDirect]),
    ("pgsteal", &[VmEvent::PgStealKswapd, VmEvent::PgStealDirect]),
    ("pgscan_kswapd", &[VmEvent::PgScanKswapd]),
    ("pgscan_direct", &[VmEvent::PgScanDirect]),
    ("pgsteal_kswapd", &[VmEvent::PgStealKswapd]),
    ("pgsteal_direct", &[VmEvent::PgStealDirect]),
    ("pgactivate", &[VmEvent::PgActivate]),
    ("pgdeactivate", &[VmEvent::PgDeactivate]),
    ("pgrefill", &[VmEvent::PgRefill]),
    ("swpin_zero", &[VmEvent::SwpinZero]),
    ("swpout_zero", &[VmEvent::SwpoutZero]),
    ("thp_swpout", &[VmEvent::ThpSwpout]),
];

impl CgroupReport {
    /// `memory.stat` as the file prints it (`key value` lines).
    pub fn memory_stat_text(&self) -> String {
        self.stat
            .iter()
            .map(|(k, v)| format!("{k} {v}\n"))
            .collect()
    }
    /// A `memory.stat` value by key.
    pub fn stat(&self, key: &str) -> u64 {
        self.stat
            .iter()
            .find(|(k, _)| k == key)
            .map_or(0, |(_, v)| *v)
    }
}

impl Machine {
    /// The per-cgroup figures; empty for a machine with the root alone.
    pub(crate) fn cgroup_reports(&self) -> Vec<CgroupReport> {
        let c = &self.mem.memcg;
        if c.is_empty() {
            return Vec::new();
        }
        // Resident anon and shmem pages by memcg (`memory.stat` anon/shmem).
        let mut anon = vec![0u64; c.len()];
        let mut shmem = vec![0u64; c.len()];
        for i in 0..self.mem.nr_frames() as u32 {
            let p = self.mem.folios.get(swapvm_core::Pfn(i));
            if !p.test(swapvm_mm::pg::ALLOCATED) {
                continue;
            }
            let m = usize::from(
                self.mem
                    .folios
                    .get(self.mem.folio_of(swapvm_core::Pfn(i)))
                    .memcg,
            );
            let head = self.mem.folios.get(self.mem.folio_of(swapvm_core::Pfn(i)));
            if head.test(swapvm_mm::pg::SHMEM) {
                shmem[m] += 1;
            } else if head.test(swapvm_mm::pg::ANON | swapvm_mm::pg::SWAPBACKED) {
                anon[m] += 1;
            }
        }
        let page = swapvm_core::PAGE_SIZE as u64;
        let own_swap = |m: MemcgId| self.swap.swap_cgroup_usage(m.0);
        (0..c.len())
            .map(|k| {
                let id = MemcgId(k as u16);
                let g = c.get(id);
                let sub = c.subtree(id);
                let sum = |v: &[u64]| sub.iter().map(|m| v[usize::from(m.0)]).sum::<u64>();
                let cached = c.swap_current(id, |m| self.swap.swap_cgroup_cached(m.0));
                let mut stat = vec![
                    ("anon".to_owned(), sum(&anon) * page),
                    ("shmem".to_owned(), sum(&shmem) * page),
                    ("swapcached".to_owned(), cached * page),
                ];
                stat.extend(crate::zswap::memcg_stat(&self.swap, &sub));
                stat.extend(STAT_EVENTS.iter().map(|(key, evs)| {
                    let v = evs.iter().map(|&e| c.stat_recursive(id, e)).sum();
                    ((*key).to_owned(), v)
                }));
                let e = &g.events;
                let procs: Vec<_> = self.procs.iter().filter(|p| p.memcg == id).collect();
                CgroupReport {
                    path: g.limits.path.clone(),
                    memory_current: g.usage * page,
                    memory_peak: g.peak * page,
                    memory_max: g.limits.max.map(|x| x * page),
                    memory_high: g.limits.high.map(|x| x * page),
                    memory_low: g.limits.low.saturating_mul(page),
                    memory_min: g.limits.min.saturating_mul(page),
                    swap_current: c.swap_current(id, own_swap) * page,
                    swap_peak: g.swap_peak * page,
                    swap_max: g.limits.swap_max.map(|x| x * page),
                    events: [
                        ("low", e.low),
                        ("high", e.high),
                        ("max", e.max),
                        ("oom", e.oom),
                        ("oom_kill", e.oom_kill),
                        ("oom_group_kill", e.oom_group_kill),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
                    swap_events_max: e.swap_max,
                    stat,
                    processes: procs.len() as u64,
                    high_throttled_ticks: procs.iter().map(|p| p.high_throttled_ticks).sum(),
                    pressure: self.pressure(k),
                }
            })
            .collect()
    }
}

/// One cgroup interface file write a workload made, and what it did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CgroupWriteReport {
    /// Tick of the write.
    pub tick: u64,
    /// The writing process.
    pub pid: u32,
    /// The cgroup written to.
    pub cgroup: String,
    /// The file.
    pub file: String,
    /// What was written.
    pub value: String,
    /// `"ok"`, or the error the write returns (`EAGAIN` from
    /// `memory.reclaim` that fell short, `ENOENT` for a missing cgroup).
    pub result: String,
    /// Pages reclaimed by the write (or on their way out: swapvm frees a
    /// written folio when its write completes).
    pub reclaimed: u64,
}

impl Machine {
    /// `Op::CgroupWrite` of process `i`: applies the write its source holds.
    pub(crate) fn cgroup_write(&mut self, i: usize) {
        let Some(w) = self.procs[i].gen.take_cgroup_write() else {
            return;
        };
        let own = self.procs[i].memcg;
        let target = match &w.cgroup {
            Some(p) => self.mem.memcg.by_path(p),
            None => Some(own),
        };
        let mut value = w.value.clone();
        let (result, reclaimed) = match target {
            None => ("ENOENT".to_owned(), 0),
            Some(m) => match w.senpai {
                Some(c) => match self.senpai_round(i, m, &c) {
                    Some(v) => {
                        value = v;
                        self.apply_cgroup_write(i, m, &w.file, &value)
                    }
                    None => return,
                },
                None => self.apply_cgroup_write(i, m, &w.file, &value),
            },
        };
        let cgroup = target.map_or_else(
            || w.cgroup.clone().unwrap_or_default(),
            |m| self.mem.memcg.get(m).limits.path.clone(),
        );
        self.cgroup_writes.push(CgroupWriteReport {
            tick: self.tick,
            pid: self.procs[i].pid,
            cgroup,
            file: w.file,
            value,
            result,
            reclaimed,
        });
    }

    /// One round of the Senpai-like controller of process `i` on memcg
    /// `m`: the `memory.high` to write, or `None` for the first round,
    /// which takes the pressure baseline only (see
    /// [`swapvm_workload::phases::Senpai`] for the rule).
    fn senpai_round(
        &mut self,
        i: usize,
        m: MemcgId,
        c: &swapvm_workload::phases::Senpai,
    ) -> Option<String> {
        self.psi.flush_group(usize::from(m.0));
        let total = self.pressure(usize::from(m.0)).some.total_us;
        let last = self.procs[i].senpai_last_us.replace(total)?;
        let p = total.saturating_sub(last) as f64;
        let t = c.pressure_us as f64;
        let g = self.mem.memcg.get(m);
        // A limit above the usage does nothing: grow from what is used.
        let limit = g.limits.high.map_or(g.usage, |h| h.min(g.usage)).max(1) as f64;
        let adj = if p < t {
            -c.max_probe * (c.coeff_probe * (t - p) / t).min(1.0)
        } else {
            c.max_backoff * ((p - t) / t / c.coeff_backoff).min(1.0)
        };
        let pages = ((limit * (1.0 + adj)) as u64).max(c.min_pages);
        Some(format!("{}", pages * swapvm_core::PAGE_SIZE as u64))
    }

    /// The kernel's `memory_*_write` for file `file` of memcg `m`.
    fn apply_cgroup_write(
        &mut self,
        i: usize,
        m: MemcgId,
        file: &str,
        value: &str,
    ) -> (String, u64) {
        if file == "memory.reclaim" {
            let bytes = swapvm_core::size::memparse(value.trim(), false)
                .ok()
                .flatten()
                .unwrap_or(0);
            return self.memory_reclaim(i, m, bytes / swapvm_core::PAGE_SIZE as u64);
        }
        if m == MemcgId::ROOT {
            return ("EINVAL".into(), 0);
        }
        let lim = &mut self.mem.memcg.get_mut(m).limits;
        if swapvm_core::config::cgroup::write_file(lim, file, &toml::Value::String(value.into()))
            .is_err()
        {
            return ("EINVAL".into(), 0);
        }
        if file.starts_with("memory.zswap.") {
            crate::zswap::memcg_update(&self.mem, &mut self.swap, m);
        }
        let mut reclaimed = 0;
        if matches!(file, "memory.max" | "memory.high") {
            reclaimed = self.reclaim_to_limit(i, m, file == "memory.max");
        }
        ("ok".into(), reclaimed)
    }

    /// `memory_max_write`/`memory_high_write`'s loop: reclaim down to the new
    /// limit, [`MAX_RECLAIM_RETRIES`] times at most; a `memory.max` still
    /// exceeded with nothing in flight then calls the memcg OOM killer.
    fn reclaim_to_limit(&mut self, i: usize, m: MemcgId, max: bool) -> u64 {
        let cpu = self.procs[i].cpu;
        let mut total = 0;
        for _ in 0..MAX_RECLAIM_RETRIES {
            let g = self.mem.memcg.get(m);
            let limit = if max { g.limits.max } else { g.limits.high };
            // Folios under writeback leave the charge when their write
            // completes, which takes no time in the kernel's loop on a
            // fast device and emulated ticks here: count them as gone, or
            // the loop reclaims the excess again on every retry.
            let leaving = self.memcg_writeback(m);
            let Some(excess) = limit
                .and_then(|l| g.usage.saturating_sub(leaving).checked_sub(l))
                .filter(|&e| e > 0)
            else {
                return total;
            };
            let p = self.reclaim.try_to_free_mem_cgroup_pages(
                &mut self.mem,
                &mut self.swap,
                m,
                excess,
                cpu,
                self.tick,
            );
            total += p.reclaimed + p.writeback;
            if !p.made() {
                break;
            }
        }
        let g = self.mem.memcg.get(m);
        if max && g.limits.max.is_some_and(|l| g.usage > l) && self.memcg_writeback(m) == 0 {
            self.mem_cgroup_out_of_memory(m);
        }
        total
    }

    /// `memory_reclaim`: proactive reclaim of `nr` pages in shrinking
    /// batches (a quarter of what is left each time); `EAGAIN` once
    /// [`MAX_RECLAIM_RETRIES`] batches in all freed nothing.
    fn memory_reclaim(&mut self, i: usize, m: MemcgId, nr: u64) -> (String, u64) {
        let cpu = self.procs[i].cpu;
        let (mut done, mut retries) = (0u64, MAX_RECLAIM_RETRIES);
        while done < nr {
            let batch = (nr - done) / 4;
            let p = self.reclaim.try_to_free_mem_cgroup_pages(
                &mut self.mem,
                &mut self.swap,
                m,
                batch,
                cpu,
                self.tick,
            );
            let got = p.reclaimed + p.writeback;
            if got == 0 {
                if retries == 0 {
                    return ("EAGAIN".into(), done);
                }
                retries -= 1;
            }
            done += got;
        }
        ("ok".into(), done)
    }
}
