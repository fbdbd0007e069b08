//! `swapvm trace record`: runs a program under Valgrind lackey and turns
//! its memory trace into a trace file as it is produced, with no text file
//! in between.
//!
//! Each process valgrind runs (`--trace-children=yes` follows forks and
//! execs) connects to a TCP socket on the loopback of its own
//! (`--log-socket`), so the processes' traces arrive apart: one connection
//! per process, its pid read from valgrind's `==PID==` preamble. Records
//! of different processes are written in the order they arrive, which is
//! the order of valgrind's output buffers, not of the accesses themselves
//! (lackey timestamps nothing).

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use swapvm_workload::trace::lackey::LackeyReader;
use swapvm_workload::trace::{Position, TraceError, TraceFormat, TraceRecord, TraceWriter};

/// Records are sent to the writer in batches of this many.
const BATCH: usize = 4096;

/// What `trace record` was asked to do.
pub struct RecordArgs {
    /// The trace to write.
    pub output: PathBuf,
    /// Its format (native or lackey).
    pub format: TraceFormat,
    /// zstd-compress it.
    pub compress: bool,
    /// Run the program natively first, for the slowdown.
    pub baseline: bool,
    /// The program and its arguments.
    pub command: Vec<String>,
}

/// A batch of one process's records, or the error that ended its stream.
type Batch = Result<Vec<TraceRecord>, TraceError>;

/// Runs `trace record`; returns the exit code.
pub fn record(a: RecordArgs) -> Result<i32> {
    let Some((prog, args)) = a.command.split_first() else {
        bail!(
            "trace record: no command to run (usage: swapvm trace record -o FILE -- CMD ARGS...)"
        );
    };
    find_valgrind()?;
    let native_s = if a.baseline {
        Some(native_run(prog, args)?)
    } else {
        None
    };
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot listen on the loopback")?;
    let addr = listener.local_addr()?;
    let mut writer = TraceWriter::create_with(&a.output, a.format, a.compress)?;
    let (tx, rx) = crossbeam_channel::bounded::<Batch>(64);
    let stop = Arc::new(AtomicBool::new(false));
    let acceptor = spawn_acceptor(listener, tx, Arc::clone(&stop));
    let started = Instant::now();
    let mut child = Command::new("valgrind")
        .args([
            "--tool=lackey",
            "--trace-mem=yes",
            "--trace-children=yes",
            &format!("--log-socket={addr}"),
        ])
        .arg(prog)
        .args(args)
        .spawn()
        .context("cannot start valgrind")?;
    let waiter = std::thread::spawn(move || {
        let st = child.wait();
        // Unblock the acceptor: no process starts after the command ends.
        stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(addr);
        st
    });
    let mut bar = crate::trace::DelayedBar::new(None, "records traced");
    let (mut n, mut pids) = (0u64, std::collections::BTreeSet::new());
    let mut failed = None;
    for batch in rx {
        match batch {
            Ok(recs) => {
                for r in &recs {
                    pids.insert(r.pid);
                    writer.write(r, Position::Record(n))?;
                    n += 1;
                }
                bar.set(n);
            }
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    bar.finish();
    let traced_s = started.elapsed().as_secs_f64();
    let status = waiter
        .join()
        .map_err(|_| anyhow::anyhow!("the valgrind waiter panicked"))?
        .context("cannot wait for valgrind")?;
    let _ = acceptor.join();
    if let Some(e) = failed {
        return Err(e).context("valgrind's lackey output could not be read; no trace written");
    }
    writer.finish()?;
    summary(&a.output, n, pids.len(), traced_s, native_s, prog, status)?;
    Ok(0)
}

/// Runs the program natively, for the slowdown; its wall time in seconds.
pub fn native_run(prog: &str, args: &[String]) -> Result<f64> {
    let t = Instant::now();
    let st = Command::new(prog)
        .args(args)
        .status()
        .with_context(|| format!("cannot run {prog}"))?;
    if !st.success() {
        tracing::warn!("{prog} exited with {st} when run natively");
    }
    Ok(t.elapsed().as_secs_f64())
}

/// A clear error when valgrind is missing.
fn find_valgrind() -> Result<()> {
    match Command::new("valgrind").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => bail!(
            "trace record needs Valgrind (its lackey tool), which is not on the PATH; \
             install it (Debian: apt-get install valgrind)"
        ),
    }
}

/// Accepts each traced process's connection and reads it on a thread of
/// its own; ends once `stop` is set.
fn spawn_acceptor(
    listener: TcpListener,
    tx: crossbeam_channel::Sender<Batch>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut readers = Vec::new();
        for (k, conn) in listener.incoming().enumerate() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                read_process(conn, k as u32 + 1, &tx)
            }));
        }
        for r in readers {
            let _ = r.join();
        }
    })
}

/// Streams one process's lackey output into record batches; the pid is
/// valgrind's (`fallback` if the preamble does not give it).
fn read_process(conn: TcpStream, fallback: u32, tx: &crossbeam_channel::Sender<Batch>) {
    let mut r = BufReader::with_capacity(1 << 16, conn);
    let pid = preamble_pid(&mut r).unwrap_or(fallback);
    let name: Arc<Path> = Arc::from(Path::new(&format!("<valgrind pid {pid}>")));
    let mut batch = Vec::with_capacity(BATCH);
    for rec in LackeyReader::new(r, name) {
        match rec {
            Ok(mut rec) => {
                rec.pid = pid;
                batch.push(rec);
                if batch.len() == BATCH && tx.send(Ok(std::mem::take(&mut batch))).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
    let _ = tx.send(Ok(batch));
}

/// Reads lines up to valgrind's first `==PID==` line and returns the pid.
/// Lackey's data lines come after the preamble, so nothing is lost.
fn preamble_pid(r: &mut impl BufRead) -> Option<u32> {
    let mut line = String::new();
    for _ in 0..64 {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(rest) = line.strip_prefix("==") {
            if let Some((pid, _)) = rest.split_once("==") {
                if let Ok(pid) = pid.parse() {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// The closing lines: records, pids, size on disk, time and slowdown.
fn summary(
    out: &Path,
    n: u64,
    pids: usize,
    traced_s: f64,
    native_s: Option<f64>,
    prog: &str,
    status: std::process::ExitStatus,
) -> Result<()> {
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    if !status.success() {
        tracing::warn!("{prog} exited with {status} under valgrind; its trace up to then is kept");
    }
    println!(
        "{}: {n} records from {pids} processes, {:.1} MiB ({:.2} bytes/record)",
        out.display(),
        bytes as f64 / f64::from(1 << 20),
        bytes as f64 / n.max(1) as f64
    );
    match native_s {
        Some(t) => println!(
            "traced in {traced_s:.2} s; natively {t:.3} s: {:.0}x slower",
            traced_s / t.max(1e-6)
        ),
        None => println!("traced in {traced_s:.2} s"),
    }
    Ok(())
}
