//! `swapvm trace record --damon`: captures a program's memory access
//! pattern at native speed with DAMON's sysfs interface
//! (`/sys/kernel/mm/damon/admin`), as region reports of each aggregation
//! interval in the program's virtual address space
//! ([`swapvm_workload::trace::damon`] describes the file and the replay
//! model).
//!
//! DAMON watches physical memory (`paddr` operations), which every kernel
//! with DAMON has; per-process `vaddr` operations are often not built in
//! (not on this project's reference kernel). The program's pages are
//! found in `/proc/PID/pagemap` (virtual page to page frame; root only),
//! and the kdamond's monitoring target is the frames the program holds,
//! merged into at most `max regions / 2` ranges and re-committed as the
//! program grows. Each aggregation interval, a `stat` scheme matching
//! every region makes DAMON list its regions in the scheme's
//! `tried_regions` directory (`update_schemes_tried_regions`, which returns
//! once the scheme has been applied, so it paces the capture), and each of
//! the program's pages takes the frequency of the region its frame is in.
//! A page that became present during the interval was faulted in, so
//! accessed: it counts as accessed in every sample. Runs of virtual pages
//! with one frequency become the trace's regions. Frames of other
//! processes inside a merged range dilute a region's frequency; forked
//! children are not followed.
//!
//! DAMON's sysfs interface can add a kdamond only while none is running,
//! and adding one rebuilds every kdamond's directory. So the capture
//! refuses, naming it, when any kdamond is on, and leaves the interface as
//! it found it: the kdamond it made is turned off and removed at the end.

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swapvm_workload::trace::damon::{DamonHeader, DamonRegion};
use swapvm_workload::trace::TraceWriter;

/// The sysfs directory of DAMON's admin interface.
const ADMIN: &str = "/sys/kernel/mm/damon/admin";

/// What `trace record --damon` was asked to do.
pub struct DamonArgs {
    /// The trace to write.
    pub output: PathBuf,
    /// zstd-compress it.
    pub compress: bool,
    /// DAMON's sampling interval, microseconds.
    pub sample_us: u64,
    /// DAMON's aggregation interval, microseconds.
    pub aggr_us: u64,
    /// Bounds of DAMON's adaptive region count.
    pub regions: (u64, u64),
    /// Run the program natively first, for the slowdown.
    pub baseline: bool,
    /// A running process to monitor instead of a command.
    pub pid: Option<u32>,
    /// The program and its arguments.
    pub command: Vec<String>,
}

/// The kdamond this capture set up; turned off and removed when dropped.
struct Kdamond {
    dir: PathBuf,
}

fn write(path: &Path, value: impl std::fmt::Display) -> Result<()> {
    fs::write(path, value.to_string())
        .with_context(|| format!("cannot write {value} to {}", path.display()))
}

fn read(path: &Path) -> Result<String> {
    Ok(fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .trim()
        .to_owned())
}

impl Kdamond {
    /// Takes DAMON's interface: refuses when a kdamond is running.
    fn take(a: &DamonArgs) -> Result<Kdamond> {
        let admin = Path::new(ADMIN);
        if !admin.is_dir() {
            bail!(
                "trace record --damon needs DAMON's sysfs interface ({ADMIN}), which this kernel \
                 lacks (CONFIG_DAMON_SYSFS and CONFIG_DAMON_VADDR); use the lackey capture instead"
            );
        }
        let kd = admin.join("kdamonds");
        let n: u64 = read(&kd.join("nr_kdamonds"))?.parse().unwrap_or(0);
        for i in 0..n {
            let d = kd.join(i.to_string());
            if read(&d.join("state")).is_ok_and(|s| s == "on") {
                let ops = read(&d.join("contexts/0/operations")).unwrap_or_default();
                let pid = read(&d.join("pid")).unwrap_or_default();
                bail!(
                    "DAMON is busy: kdamond.{i} (pid {pid}, operations {ops}) is on, and DAMON's \
                     sysfs interface adds a kdamond only while none runs. Stop it for the capture \
                     (echo off > {}/state) and start it again after, or record with lackey",
                    d.display()
                );
            }
        }
        if n > 0 {
            bail!(
                "DAMON's sysfs interface holds {n} idle kdamond(s) that a capture would erase; \
                 remove them first (echo 0 > {}/nr_kdamonds)",
                kd.display()
            );
        }
        write(&kd.join("nr_kdamonds"), 1)?;
        let k = Kdamond { dir: kd.join("0") };
        k.configure(a)?;
        Ok(k)
    }

    /// One paddr context, one target (its regions set by [`Self::aim`]),
    /// one `stat` scheme matching every region.
    fn configure(&self, a: &DamonArgs) -> Result<()> {
        write(&self.dir.join("contexts/nr_contexts"), 1)?;
        let c = self.dir.join("contexts/0");
        write(&c.join("operations"), "paddr")?;
        let iv = c.join("monitoring_attrs/intervals");
        write(&iv.join("sample_us"), a.sample_us)?;
        write(&iv.join("aggr_us"), a.aggr_us)?;
        write(&iv.join("update_us"), a.aggr_us)?;
        let nr = c.join("monitoring_attrs/nr_regions");
        write(&nr.join("min"), a.regions.0)?;
        write(&nr.join("max"), a.regions.1)?;
        write(&c.join("targets/nr_targets"), 1)?;
        write(&c.join("schemes/nr_schemes"), 1)?;
        let s = c.join("schemes/0");
        write(&s.join("action"), "stat")?;
        let p = s.join("access_pattern");
        let all = [
            ("sz", u64::MAX),
            ("nr_accesses", u64::from(u32::MAX)),
            ("age", u64::from(u32::MAX)),
        ];
        for (f, max) in all {
            write(&p.join(f).join("min"), 0)?;
            write(&p.join(f).join("max"), max)?;
        }
        Ok(())
    }

    /// Sets the target's physical ranges (byte addresses, end exclusive);
    /// a running kdamond takes them with `commit`.
    fn aim(&self, ranges: &[(u64, u64)], running: bool) -> Result<()> {
        let r = self.dir.join("contexts/0/targets/0/regions");
        write(&r.join("nr_regions"), ranges.len())?;
        for (i, &(start, end)) in ranges.iter().enumerate() {
            let d = r.join(i.to_string());
            // Widening first keeps start < end at every step.
            write(&d.join("start"), 0)?;
            write(&d.join("end"), end)?;
            write(&d.join("start"), start)?;
        }
        let cmd = if running { "commit" } else { "on" };
        write(&self.dir.join("state"), cmd).context("DAMON refused the monitoring target")
    }

    /// The regions of the last aggregation interval, by physical start,
    /// or `None` once the kdamond has stopped.
    fn snapshot(&self, out: &mut Vec<PhysRegion>) -> Result<Option<()>> {
        out.clear();
        if read(&self.dir.join("state"))? != "on" {
            return Ok(None);
        }
        if fs::write(self.dir.join("state"), "update_schemes_tried_regions").is_err() {
            return Ok(None);
        }
        let tried = self.dir.join("contexts/0/schemes/0/tried_regions");
        let ids = fs::read_dir(&tried)
            .with_context(|| format!("cannot list {}", tried.display()))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok());
        for i in ids {
            let d = tried.join(i.to_string());
            let num = |f: &str| -> Result<u64> {
                let s = read(&d.join(f))?;
                s.parse()
                    .with_context(|| format!("{}: not a number: {s:?}", d.join(f).display()))
            };
            out.push(PhysRegion {
                start: num("start")?,
                end: num("end")?,
                nr_accesses: num("nr_accesses")?,
                age: num("age")?,
            });
        }
        out.sort_unstable_by_key(|r| r.start);
        Ok(Some(()))
    }
}

/// A region DAMON reports, in physical byte addresses.
#[derive(Debug, Clone, Copy)]
struct PhysRegion {
    start: u64,
    end: u64,
    nr_accesses: u64,
    age: u64,
}

impl Drop for Kdamond {
    fn drop(&mut self) {
        let _ = fs::write(self.dir.join("state"), "off");
        if let Some(kd) = self.dir.parent() {
            let _ = fs::write(kd.join("nr_kdamonds"), "0");
        }
    }
}

/// The state of a capture between aggregation intervals.
struct Capture {
    pid: u32,
    aggr_us: u64,
    max_nr_accesses: u64,
    /// Ranges at most: half DAMON's region bound, so it can split them.
    cap: usize,
    aimed: Vec<(u64, u64)>,
    running: bool,
    pages: Vec<crate::pagemap::Present>,
    /// Virtual pages present at the interval before, in order.
    before: Vec<u64>,
    regions: Vec<PhysRegion>,
    rows: u64,
    intervals: u64,
}

impl Capture {
    fn new(a: &DamonArgs, pid: u32) -> Capture {
        Capture {
            pid,
            aggr_us: a.aggr_us.max(1),
            max_nr_accesses: (a.aggr_us / a.sample_us.max(1)).max(1),
            cap: (a.regions.1 / 2).max(1) as usize,
            aimed: Vec::new(),
            running: false,
            pages: Vec::new(),
            before: Vec::new(),
            regions: Vec::new(),
            rows: 0,
            intervals: 0,
        }
    }

    /// Whether enough present frames lie outside the aimed ranges to aim
    /// again: a sixteenth of them (or any, before the first aim).
    fn stale(&self) -> bool {
        let outside = self
            .pages
            .iter()
            .filter(|p| {
                let b = p.pfn << 12;
                let i = self.aimed.partition_point(|r| r.1 <= b);
                self.aimed.get(i).is_none_or(|r| r.0 > b)
            })
            .count();
        !self.running || outside * 16 > self.pages.len()
    }

    /// One aggregation interval: aims DAMON at the program's frames when
    /// they moved, waits for its report, writes the virtual regions.
    /// `false` once the program or the kdamond is gone.
    fn interval(&mut self, kd: &Kdamond, w: &mut TraceWriter, t0: Instant) -> Result<bool> {
        let t = Instant::now();
        let mut pages = std::mem::take(&mut self.pages);
        let alive = crate::pagemap::present_pages(self.pid, &mut pages)?;
        self.pages = pages;
        if alive.is_none() {
            return Ok(false);
        }
        if self.pages.is_empty() {
            std::thread::sleep(Duration::from_micros(self.aggr_us));
            return Ok(true);
        }
        if self.stale() {
            self.aimed = crate::pagemap::frame_ranges(&self.pages, self.cap);
            kd.aim(&self.aimed, self.running)?;
            self.running = true;
        }
        let t_pages = t.elapsed();
        if kd.snapshot(&mut self.regions)?.is_none() {
            return Ok(false);
        }
        let t_snap = t.elapsed();
        let interval = t0.elapsed().as_micros() as u64 / self.aggr_us;
        self.write_runs(w, interval)?;
        tracing::debug!(
            "interval {interval}: {} pages, {} regions; pagemap and aim {:?}, report {:?}, rows {:?}",
            self.pages.len(),
            self.regions.len(),
            t_pages,
            t_snap - t_pages,
            t.elapsed() - t_snap
        );
        self.before.clear();
        self.before.extend(self.pages.iter().map(|p| p.vpage));
        self.intervals += 1;
        Ok(true)
    }

    /// Each present page's frequency: its frame's region's, or every
    /// sample's for a page faulted in since the interval before.
    fn frequencies(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::with_capacity(self.pages.len());
        for p in &self.pages {
            let b = p.pfn << 12;
            let i = self.regions.partition_point(|r| r.end <= b);
            let r = self.regions.get(i).filter(|r| r.start <= b);
            let new = self.before.binary_search(&p.vpage).is_err();
            out.push(match (new, r) {
                (true, _) => (self.max_nr_accesses, 0),
                (false, Some(r)) => (r.nr_accesses.min(self.max_nr_accesses), r.age),
                (false, None) => (0, 0),
            });
        }
        out
    }

    /// Runs of consecutive virtual pages of one frequency, as regions.
    fn write_runs(&mut self, w: &mut TraceWriter, interval: u64) -> Result<()> {
        let freq = self.frequencies();
        let mut run: Option<DamonRegion> = None;
        for (p, &(nr_accesses, age)) in self.pages.iter().zip(&freq) {
            let (start, end) = (p.vpage << 12, (p.vpage + 1) << 12);
            match run.as_mut() {
                Some(r) if r.end == start && r.nr_accesses == nr_accesses => {
                    r.end = end;
                    r.age = r.age.min(age);
                }
                _ => {
                    if let Some(r) = run.take() {
                        w.write_region(&r)?;
                        self.rows += 1;
                    }
                    run = Some(DamonRegion {
                        interval,
                        pid: self.pid,
                        start,
                        end,
                        nr_accesses,
                        age,
                    });
                }
            }
        }
        if let Some(r) = run {
            w.write_region(&r)?;
            self.rows += 1;
        }
        Ok(())
    }
}

/// Starts the command stopped (a shell that stops itself, then execs it,
/// keeping its pid), so DAMON watches it from its first instruction.
fn spawn_stopped(command: &[String]) -> Result<Child> {
    let child = Command::new("sh")
        .arg("-c")
        .arg("kill -STOP $$; exec \"$@\"")
        .arg("sh")
        .args(command)
        .spawn()
        .context("cannot start sh")?;
    let stat = format!("/proc/{}/stat", child.id());
    let t = Instant::now();
    while !fs::read_to_string(&stat).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('T'))
    }) {
        if t.elapsed() > Duration::from_secs(5) {
            bail!("{} did not stop before its exec", command[0]);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(child)
}

fn resume(pid: u32) -> Result<()> {
    let pid = rustix::process::Pid::from_raw(pid as i32).context("bad pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::CONT)
        .context("cannot resume the program")
}

/// Runs `trace record --damon`; returns the exit code.
pub fn record(a: DamonArgs) -> Result<i32> {
    let native_s = match (&a.pid, a.baseline, a.command.split_first()) {
        (None, true, Some((prog, args))) => Some(crate::record::native_run(prog, args)?),
        _ => None,
    };
    let kd = Kdamond::take(&a)?;
    let mut meta = vec![("method".to_owned(), "damon".to_owned())];
    let (child, pid) = match a.pid {
        Some(pid) => (None, pid),
        None if a.command.is_empty() => {
            bail!("trace record --damon: give a command after `--`, or --pid")
        }
        None => {
            let c = spawn_stopped(&a.command)?;
            let pid = c.id();
            (Some(c), pid)
        }
    };
    meta.push((
        "command".into(),
        if a.command.is_empty() {
            format!("pid {pid}")
        } else {
            a.command.join(" ")
        },
    ));
    let header = DamonHeader {
        sample_us: a.sample_us,
        aggr_us: a.aggr_us,
        seed: 0,
        meta,
    };
    let mut w = TraceWriter::create_damon(&a.output, &header, a.compress)?;
    let started = Instant::now();
    if child.is_some() {
        resume(pid)?;
    }
    // Reaped at once: a zombie keeps its pid.
    let exited = Arc::new(AtomicBool::new(false));
    let waiter = child.map(|mut c| {
        let exited = Arc::clone(&exited);
        std::thread::spawn(move || {
            let st = c.wait();
            exited.store(true, Ordering::SeqCst);
            st
        })
    });
    let mut cap = Capture::new(&a, pid);
    let mut bar = crate::trace::DelayedBar::new(None, "DAMON regions recorded");
    while !exited.load(Ordering::SeqCst) && cap.interval(&kd, &mut w, started)? {
        bar.set(cap.rows);
    }
    bar.finish();
    let status = match waiter {
        Some(t) => Some(
            t.join()
                .map_err(|_| anyhow::anyhow!("the program's waiter panicked"))?
                .context("cannot wait for the program")?,
        ),
        None => None,
    };
    let traced_s = started.elapsed().as_secs_f64();
    drop(kd);
    w.finish()?;
    summary(
        &a.output,
        cap.rows,
        cap.intervals,
        traced_s,
        native_s,
        status,
    )?;
    Ok(0)
}

fn summary(
    out: &Path,
    regions: u64,
    intervals: u64,
    traced_s: f64,
    native_s: Option<f64>,
    status: Option<std::process::ExitStatus>,
) -> Result<()> {
    if let Some(st) = status.filter(|s| !s.success()) {
        tracing::warn!("the program exited with {st}; its capture up to then is kept");
    }
    let bytes = fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    println!(
        "{}: {regions} regions in {intervals} aggregation intervals, {:.2} MiB",
        out.display(),
        bytes as f64 / f64::from(1 << 20)
    );
    match native_s {
        Some(t) => println!(
            "recorded in {traced_s:.2} s; natively {t:.2} s: {:.2}x",
            traced_s / t.max(1e-6)
        ),
        None => println!("recorded in {traced_s:.2} s"),
    }
    Ok(())
}
