//! `op = "lru_gen"`: a process writes a command to
//! `/sys/kernel/debug/lru_gen`; the write is reported beside the cgroup
//! writes (file `lru_gen`, the command as value, the errno or `ok`).

use crate::memcg::CgroupWriteReport;
use crate::Machine;
use swapvm_core::config::lru_gen::LruGenCmd;

impl Machine {
    /// Runs process `i`'s `lru_gen` command and records it.
    pub(crate) fn lru_gen_write(&mut self, i: usize, cmd: LruGenCmd) {
        let cpu = self.procs[i].cpu;
        let r = self
            .reclaim
            .lru_gen_cmd(&mut self.mem, &mut self.swap, cmd, cpu, self.tick);
        let (memcg, value) = match cmd {
            LruGenCmd::Age {
                memcg,
                node,
                seq,
                swappiness,
                force_scan,
            } => (
                memcg,
                format!(
                    "+ {memcg} {node} {seq} {} {}",
                    swappiness.map_or("-".into(), |s| s.to_string()),
                    u8::from(force_scan)
                ),
            ),
            LruGenCmd::Evict {
                memcg,
                node,
                seq,
                swappiness,
                nr_to_reclaim,
            } => (
                memcg,
                format!(
                    "- {memcg} {node} {seq} {} {}",
                    swappiness.map_or("-".into(), |s| s.to_string()),
                    nr_to_reclaim.map_or("-".into(), |n| n.to_string())
                ),
            ),
        };
        let cgroup = if usize::from(memcg) < self.mem.memcg.len() {
            let m = swapvm_mm::MemcgId(memcg);
            self.mem.memcg.get(m).limits.path.clone()
        } else {
            String::new()
        };
        let (result, reclaimed) = match r {
            Ok(n) => ("ok".to_owned(), n),
            Err(e) => (e.name().to_owned(), 0),
        };
        self.cgroup_writes.push(CgroupWriteReport {
            tick: self.tick,
            pid: self.procs[i].pid,
            cgroup,
            file: "lru_gen".into(),
            value,
            result,
            reclaimed,
        });
    }
}
