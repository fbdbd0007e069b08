//! The commands of `/sys/kernel/debug/lru_gen` (`run_cmd`): `+` ages a
//! lruvec (`run_aging`), `-` evicts its old generations (`run_eviction`),
//! as proactive reclaim scripts drive MGLRU.

use crate::{Progress, Reclaimer, Who};
use swapvm_core::config::lru_gen::LruGenCmd;
use swapvm_mm::lru_gen::MIN_NR_GENS;
use swapvm_mm::{MemcgId, Memory, MAX_NR_GENS};
use swapvm_swap::SwapSubsystem;

/// Why a command failed, as the write's errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LruGenCmdError {
    /// `EINVAL`: no such memcg or node, or `seq` out of range.
    Inval,
    /// `ERANGE`: aging with `MAX_NR_GENS` generations, without force_scan.
    Range,
    /// `EOPNOTSUPP`: the multi-generational LRU is off.
    NotSupported,
}

impl LruGenCmdError {
    /// The errno's name.
    pub fn name(self) -> &'static str {
        match self {
            LruGenCmdError::Inval => "EINVAL",
            LruGenCmdError::Range => "ERANGE",
            LruGenCmdError::NotSupported => "EOPNOTSUPP",
        }
    }
}

impl Reclaimer {
    /// Runs one `lru_gen` command at `now`; returns the pages an eviction
    /// reclaimed (or has on their way out).
    ///
    /// # Errors
    /// See [`LruGenCmdError`].
    pub fn lru_gen_cmd(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        cmd: LruGenCmd,
        cpu: usize,
        now: u64,
    ) -> Result<u64, LruGenCmdError> {
        if !mem.lru.lru_gen_enabled() {
            return Err(LruGenCmdError::NotSupported);
        }
        let (memcg, node) = match cmd {
            LruGenCmd::Age { memcg, node, .. } | LruGenCmd::Evict { memcg, node, .. } => {
                (memcg, node)
            }
        };
        if node != 0 || usize::from(memcg) >= mem.lru.nr() {
            return Err(LruGenCmdError::Inval);
        }
        let lv = MemcgId(memcg);
        match cmd {
            LruGenCmd::Age {
                seq, force_scan, ..
            } => self.run_aging(mem, lv, seq, force_scan, now).map(|()| 0),
            // Swappiness 0 evicts only file folios, and swapvm has none.
            LruGenCmd::Evict {
                swappiness: Some(0),
                ..
            } => Ok(0),
            LruGenCmd::Evict {
                seq, nr_to_reclaim, ..
            } => {
                let want = nr_to_reclaim.unwrap_or(u64::MAX);
                let p = self.run_eviction(mem, swap, lv, seq, want, cpu, now)?;
                Ok(p.reclaimed + p.writeback)
            }
        }
    }

    /// `run_aging`: nothing if `seq` is older than `max_seq` (someone aged
    /// already); otherwise a new generation, unless all `MAX_NR_GENS` are
    /// in use and not `force_scan`.
    fn run_aging(
        &mut self,
        mem: &mut Memory,
        lv: MemcgId,
        seq: u64,
        force_scan: bool,
        now: u64,
    ) -> Result<(), LruGenCmdError> {
        let g = &mem.lru.vec(lv).lrugen;
        let (min_seq, max_seq) = (g.min_seq, g.max_seq);
        if seq < max_seq {
            return Ok(());
        }
        if seq > max_seq {
            return Err(LruGenCmdError::Inval);
        }
        if !force_scan && min_seq + MAX_NR_GENS - 1 <= max_seq {
            return Err(LruGenCmdError::Range);
        }
        self.try_to_inc_max_seq(mem, lv, max_seq, now);
        Ok(())
    }

    /// `run_eviction`: `evict_folios` while the oldest generation is at or
    /// below `seq` (which must leave `MIN_NR_GENS` younger ones) and fewer
    /// than `want` pages are reclaimed.
    #[allow(clippy::too_many_arguments)]
    fn run_eviction(
        &mut self,
        mem: &mut Memory,
        swap: &mut SwapSubsystem,
        lv: MemcgId,
        seq: u64,
        want: u64,
        cpu: usize,
        now: u64,
    ) -> Result<Progress, LruGenCmdError> {
        if seq + MIN_NR_GENS > mem.lru.vec(lv).lrugen.max_seq {
            return Err(LruGenCmdError::Inval);
        }
        let mut total = Progress::default();
        while seq >= mem.lru.vec(lv).lrugen.min_seq && total.reclaimed + total.writeback < want {
            let left = want - (total.reclaimed + total.writeback);
            let p = self.evict_folios(mem, swap, lv, left, Who::Direct, cpu, now);
            if p.scanned == 0 {
                break;
            }
            total.add(p);
        }
        Ok(total)
    }
}
