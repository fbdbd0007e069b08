//! The local engine: every run its own process (`swapvm sweep SPEC
//! --run-index I`), up to `-j` at once, admitted only while the runs'
//! expected memory fits the host's.

use super::results::{self, Status};
use super::spec::{Run, Spec};
use super::task::{self, PARENT_ENV};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use swapvm_core::config::{ContentMode, SwapBackend};
use swapvm_core::MachineConfig;

/// Host memory a process of swapvm takes besides its machine: the binary,
/// tokio, the io_uring rings and buffers, the report (measured: a 4 MiB
/// metadata-only run peaks at about 12 MiB).
const OVERHEAD_MIB: u64 = 32;
/// Metadata per emulated 4 KiB frame, with slack over DESIGN.md's target
/// of 64 B (struct page), for page tables and rmap.
const FRAME_META_BYTES: u64 = 128;
/// Metadata per swap slot (the swap table and the cluster lists).
const SLOT_META_BYTES: u64 = 16;

/// A run's expected peak RSS in MiB, from its config: the RAM arena (the
/// emulated RAM's bytes when content is kept, a word per frame when not),
/// the metadata per frame and per slot, zram's stored pages (taken as
/// incompressible: the worst case), and a fixed overhead.
pub fn expected_rss_mib(cfg: &MachineConfig) -> u64 {
    let frames = cfg.ram_pages();
    let page_bytes = cfg.machine.content.page_bytes() as u64;
    let slots: u64 = cfg.swap.iter().map(|s| s.size_mib * 256).sum();
    let zram: u64 = cfg
        .swap
        .iter()
        .filter(|s| s.backend == SwapBackend::Zram)
        .map(|s| match cfg.machine.content {
            ContentMode::Full => s.size_mib << 20,
            ContentMode::None => s.size_mib * 256 * page_bytes,
        })
        .sum();
    let bytes = frames * (page_bytes + FRAME_META_BYTES) + slots * SLOT_META_BYTES + zram;
    OVERHEAD_MIB + bytes.div_ceil(1 << 20)
}

/// `MemAvailable` of /proc/meminfo in MiB, if it can be read.
pub fn host_available_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// The local engine's knobs.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Most runs at once.
    pub jobs: usize,
    /// Memory the runs may take together (MiB).
    pub mem_budget_mib: u64,
    /// The sweep command's `--set`s, passed on to each task.
    pub sets: Vec<String>,
}

struct Running {
    run: usize,
    child: Child,
    rss_mib: u64,
}

/// Runs every run of `spec` that is not finished in `out`; writes the
/// results; returns the sweep's exit code (0 every run done, 1 a run
/// failed, 130 interrupted).
pub fn run(spec: &Spec, runs: &[Run], out: &Path, o: &LocalOptions) -> Result<i32> {
    let exe = std::env::current_exe().context("cannot find the swapvm executable")?;
    let spec_path = std::path::absolute(&spec.path)?;
    let mut todo: Vec<usize> = Vec::new();
    let mut skipped = 0;
    for (i, r) in runs.iter().enumerate() {
        if results::state(out, r).finished() {
            skipped += 1;
        } else {
            todo.push(i);
        }
    }
    eprintln!(
        "swapvm sweep: {} runs, {skipped} already finished, {} to run, {} at once, memory budget {} MiB",
        runs.len(),
        todo.len(),
        o.jobs,
        o.mem_budget_mib
    );
    let interrupt = crate::interrupt_flag()?;
    let bar = ProgressBar::new(runs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} runs ({msg}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(skipped as u64);
    // The ETA covers the runs of this invocation only.
    bar.reset_eta();
    let mut running: Vec<Running> = Vec::new();
    let (mut failed, mut next) = (0usize, 0usize);
    let started = Instant::now();
    let mut forwarded = false;
    loop {
        let stopping = interrupt.load(Ordering::Relaxed);
        if stopping && !forwarded {
            // A SIGINT sent to the sweep alone (not to the terminal's
            // process group) reaches the runs too: each stops at a tick
            // boundary, its folder marked interrupted, to be redone.
            forwarded = true;
            for x in &running {
                let pid = rustix::process::Pid::from_child(&x.child);
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
            }
        }
        // Admit: within -j and the memory budget; one run always, however
        // large, so a study of big runs goes on one at a time.
        while !stopping && next < todo.len() && running.len() < o.jobs {
            let r = &runs[todo[next]];
            let need = expected_rss_mib(&r.config);
            let used: u64 = running.iter().map(|x| x.rss_mib).sum();
            if !running.is_empty() && used + need > o.mem_budget_mib {
                break;
            }
            if running.is_empty() && need > o.mem_budget_mib {
                bar.suspend(|| {
                    eprintln!(
                        "swapvm sweep: warning: run {} expects {need} MiB, more than the budget of {} MiB; running it alone",
                        r.index, o.mem_budget_mib
                    )
                });
            }
            let child = spawn(&exe, &spec_path, out, r, &o.sets)?;
            running.push(Running {
                run: todo[next],
                child,
                rss_mib: need,
            });
            next += 1;
        }
        let mut i = 0;
        while i < running.len() {
            if let Some(status) = running[i].child.try_wait()? {
                let done = running.swap_remove(i);
                let r = &runs[done.run];
                let st = results::state(out, r);
                if st.status != Status::Done && !stopping {
                    failed += 1;
                    bar.suspend(|| {
                        eprintln!(
                            "swapvm sweep: run {} ({}) {}: see {}",
                            r.index,
                            super::spec::describe(&r.axis_values),
                            status,
                            task::run_dir(out, r).join(task::LOG).display()
                        )
                    });
                }
                bar.inc(1);
            } else {
                i += 1;
            }
        }
        bar.set_message(format!("{} running, {failed} failed", running.len()));
        if running.is_empty() && (stopping || next >= todo.len()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bar.finish_and_clear();
    let [done, failed, missing] = results::write(spec, runs, out)?;
    eprintln!(
        "swapvm sweep: {done} done, {failed} failed, {missing} missing, in {:.1} s; results in {}",
        started.elapsed().as_secs_f64(),
        out.join("results.csv").display()
    );
    Ok(if interrupt.load(Ordering::Relaxed) {
        130
    } else if failed + missing > 0 {
        1
    } else {
        0
    })
}

/// Starts one task; its output goes to its folder's log.
fn spawn(exe: &Path, spec: &Path, out: &Path, r: &Run, sets: &[String]) -> Result<Child> {
    let dir: PathBuf = task::run_dir(out, r);
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let log_path = dir.join(task::LOG);
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("{}: cannot create", log_path.display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("sweep")
        .arg(spec)
        .arg("--run-index")
        .arg(r.index.to_string())
        .arg("--out")
        .arg(out);
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    cmd.env(PARENT_ENV, std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    cmd.spawn()
        .with_context(|| format!("cannot start {}", exe.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg(text: &str) -> MachineConfig {
        MachineConfig::from_toml(text, Path::new("c.toml")).unwrap()
    }

    #[test]
    fn expected_rss_counts_ram_bytes_only_when_content_is_kept() {
        let swap = "[[swap]]\npath = \"s.img\"\nsize_mib = 1024\n";
        let full = cfg(&format!("[machine]\nram_mib = 256\n{swap}"));
        // 256 MiB of bytes, 2 MiB of frame metadata (65536 x 128 B), 4 MiB
        // of slot metadata (262144 x 16 B), 32 MiB overhead.
        assert_eq!(expected_rss_mib(&full), 256 + 8 + 4 + 32);
        let none = cfg(&format!(
            "[machine]\nram_mib = 256\ncontent = \"none\"\n{}",
            swap.replace("size_mib", "backend = \"null\"\nsize_mib")
        ));
        assert_eq!(
            expected_rss_mib(&none),
            (65536 * 136u64).div_ceil(1 << 20) + 4 + 32
        );
        let zram = cfg(
            "[machine]\nram_mib = 64\n[[swap]]\npath = \"z\"\nbackend = \"zram\"\nsize_mib = 128\n",
        );
        // 64 + 2 + 0.5 (slots) + 128 (zram, incompressible), rounded up, + 32.
        assert_eq!(expected_rss_mib(&zram), 195 + 32);
    }
}
