//! Fuzzing on the stable toolchain: a seeded, bounded mutation fuzzer.
//!
//! What it is, honestly: not libFuzzer. There is no coverage feedback
//! (cargo-fuzz needs a nightly compiler for its sanitizer flags, and only
//! stable exists here). Each target starts from a corpus of valid inputs
//! (the shipped samples and configs, and traces written by swapvm's own
//! writers) and applies 1 to 4 random mutations per run: bit flips,
//! interesting bytes (`,` `\n` `0x` `-` `0xff`...), insertions, deletions,
//! truncation, duplicated ranges, splices of two inputs and huge numbers
//! in place of digit runs; one run in 16 is random bytes. Every run checks
//! that nothing panics and that the target's properties hold:
//!
//! - trace readers (plain, and zstd-compressed with the compressed bytes
//!   mutated): an error names the file and a line, record or header;
//!   the records read re-encode to the native format and read back equal;
//! - replay: the op stream maps every region before touching it, stays
//!   inside its regions and makes exactly the page accesses the scan
//!   counted;
//! - workload and machine-config TOML: parsing returns, and an error names
//!   the file.
//!
//! Budget: `SWAPVM_FUZZ_SECS` seconds per target (`.ci/run` sets it), else
//! [`DEFAULT_RUNS`] runs per target so a plain `cargo test` stays quick.
//! `SWAPVM_FUZZ_SEED` picks the seed (printed first); run `i` of a seed is
//! always the same input, so a failure names the command that replays it,
//! and the failing input is written to `target/fuzz-failures/`.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swapvm_core::{MachineConfig, SimRng};
use swapvm_workload::trace::{
    csv, damon, lackey, lcs, native, oracle, AccessKind, Position, TraceError, TraceFormat,
    TracePlan, TraceRecord, TraceWriter, REGION_PAGES,
};
use swapvm_workload::{Op, WorkloadSpec};

/// Runs per target without `SWAPVM_FUZZ_SECS`.
const DEFAULT_RUNS: u64 = 1500;
/// Largest input a mutation may grow to.
const INPUT_MAX: usize = 64 << 10;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn seed() -> u64 {
    std::env::var("SWAPVM_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed)
}

/// Runs `target` on mutations of `corpus` for the budget; panics with the
/// replay command on the first failure.
fn fuzz(name: &str, corpus: &[Vec<u8>], target: impl Fn(&[u8]) -> Result<(), String>) {
    assert!(!corpus.is_empty());
    let seed = seed();
    println!("SEED={seed} target={name}");
    let budget = std::env::var("SWAPVM_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map(Duration::from_secs_f64);
    let started = Instant::now();
    let mut runs = 0u64;
    // The corpus itself first, unmutated: valid inputs must pass too.
    for (i, input) in corpus.iter().enumerate() {
        check(name, seed, &format!("corpus[{i}]"), input, &target);
    }
    loop {
        match budget {
            Some(b) if started.elapsed() >= b => break,
            None if runs >= DEFAULT_RUNS => break,
            _ => {}
        }
        let input = mutant(corpus, seed, runs);
        check(name, seed, &format!("run {runs}"), &input, &target);
        runs += 1;
    }
    println!(
        "{name}: {runs} runs in {:.1} s, no failure",
        started.elapsed().as_secs_f64()
    );
}

fn check(
    name: &str,
    seed: u64,
    what: &str,
    input: &[u8],
    target: &impl Fn(&[u8]) -> Result<(), String>,
) {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| target(input)));
    let why = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(why)) => why,
        Err(p) => format!(
            "panic: {}",
            p.downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("?")
        ),
    };
    let dir = repo().join("target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(format!("{name}-{seed}-{}", what.replace(' ', "-")));
    let _ = std::fs::write(&file, input);
    panic!(
        "fuzz target {name}, {what}: {why}\ninput saved to {}\nreplay: SWAPVM_FUZZ_SEED={seed} cargo test -p swapvm-workload --test fuzz {name}",
        file.display()
    );
}

/// Input number `run` of `seed`: a mutation of a corpus entry.
fn mutant(corpus: &[Vec<u8>], seed: u64, run: u64) -> Vec<u8> {
    let mut rng = SimRng::derive(seed, run);
    if rng.below(16) == 0 {
        let mut b = vec![0u8; rng.below(512) as usize];
        rng.fill(&mut b);
        return b;
    }
    let mut b = corpus[rng.below(corpus.len() as u64) as usize].clone();
    for _ in 0..1 + rng.below(4) {
        mutate(&mut b, corpus, &mut rng);
    }
    b.truncate(INPUT_MAX);
    b
}

const INTERESTING: &[u8] = b",\n\r #=0x-+9fFgGILSMRW\0\x7f\x80\xff";

fn mutate(b: &mut Vec<u8>, corpus: &[Vec<u8>], rng: &mut SimRng) {
    let pos = |rng: &mut SimRng, len: usize| rng.below(len as u64 + 1) as usize;
    match rng.below(8) {
        0 if !b.is_empty() => {
            let i = pos(rng, b.len() - 1);
            b[i] ^= 1 << rng.below(8);
        }
        1 if !b.is_empty() => {
            let i = pos(rng, b.len() - 1);
            b[i] = INTERESTING[rng.below(INTERESTING.len() as u64) as usize];
        }
        2 => {
            let i = pos(rng, b.len());
            let mut ins = vec![0u8; 1 + rng.below(8) as usize];
            rng.fill(&mut ins);
            b.splice(i..i, ins);
        }
        3 if !b.is_empty() => {
            let i = pos(rng, b.len() - 1);
            let n = (1 + rng.below(32) as usize).min(b.len() - i);
            b.drain(i..i + n);
        }
        4 => {
            let i = pos(rng, b.len());
            b.truncate(i);
        }
        5 if !b.is_empty() => {
            let i = pos(rng, b.len() - 1);
            let n = (1 + rng.below(64) as usize).min(b.len() - i);
            let chunk = b[i..i + n].to_vec();
            let j = pos(rng, b.len());
            b.splice(j..j, chunk);
        }
        6 => {
            let other = &corpus[rng.below(corpus.len() as u64) as usize];
            let i = pos(rng, b.len());
            let j = pos(rng, other.len());
            b.truncate(i);
            b.extend_from_slice(&other[j..]);
        }
        _ => {
            // A huge number in place of a run of digits or hex.
            let Some(start) = b.iter().position(u8::is_ascii_hexdigit) else {
                return;
            };
            let end = b[start..]
                .iter()
                .position(|c| !c.is_ascii_hexdigit())
                .map_or(b.len(), |n| start + n);
            let huge: &[u8] = match rng.below(3) {
                0 => b"18446744073709551616",
                1 => b"fffffffffffffffff",
                _ => b"4294967296",
            };
            b.splice(start..end, huge.iter().copied());
        }
    }
}

/// The error must name the file and a position.
fn names_position(e: &TraceError, path: &str) -> Result<(), String> {
    let msg = e.to_string();
    let positioned = [": line ", ": record ", ": header", "error at "]
        .iter()
        .any(|at| msg.contains(at));
    if msg.starts_with(path) && (positioned || matches!(e, TraceError::Undetected { .. })) {
        Ok(())
    } else {
        Err(format!("error without file and position: {msg}"))
    }
}

/// Reads all records of `iter`, checking errors; returns the records.
fn drain(
    iter: impl Iterator<Item = Result<TraceRecord, TraceError>>,
    path: &str,
) -> Result<Vec<TraceRecord>, String> {
    let mut out = Vec::new();
    for r in iter {
        match r {
            Ok(rec) => {
                if rec.size == 0 || rec.addr.checked_add(u64::from(rec.size) - 1).is_none() {
                    return Err(format!("reader yielded an invalid record {rec:?}"));
                }
                out.push(rec);
            }
            Err(e) => {
                names_position(&e, path)?;
                break;
            }
        }
    }
    Ok(out)
}

/// Records re-encoded in the native format read back equal.
fn round_trips(recs: &[TraceRecord]) -> Result<(), String> {
    let path: Arc<Path> = Arc::from(Path::new("/fuzz/rt.swvmtrace"));
    let mut bytes = Vec::new();
    let mut w =
        native::NativeWriter::new(&mut bytes, Arc::clone(&path)).map_err(|e| e.to_string())?;
    for (i, r) in recs.iter().enumerate() {
        w.write(r, Position::Record(i as u64))
            .map_err(|e| e.to_string())?;
    }
    w.finish().map_err(|e| e.to_string())?;
    let back = native::NativeReader::new(&bytes[..], path).map_err(|e| e.to_string())?;
    let back: Result<Vec<_>, _> = back.collect();
    match back {
        Ok(b) if b == recs => Ok(()),
        Ok(_) => Err("native round trip changed the records".into()),
        Err(e) => Err(format!("native round trip failed: {e}")),
    }
}

fn samples(ext: &str) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for dir in ["workloads", "configs"] {
        for e in std::fs::read_dir(repo().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.to_string_lossy().ends_with(ext) {
                v.push(std::fs::read(p).unwrap());
            }
        }
    }
    v
}

/// A small valid trace of every kind of record, written as `format`.
fn written(format: TraceFormat, pids: &[u32]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    let mut w = TraceWriter::create(&path, format).unwrap();
    let mut rng = SimRng::new(1);
    for i in 0..40u64 {
        let kind = [AccessKind::Instr, AccessKind::Load, AccessKind::Store][i as usize % 3];
        let rec = TraceRecord {
            pid: pids[i as usize % pids.len()],
            addr: 0x7f00_0000_0000 + rng.below(1 << 24),
            size: 1 + rng.below(16) as u32,
            kind,
        };
        w.write(&rec, Position::Record(i)).unwrap();
    }
    w.finish().unwrap();
    std::fs::read(path).unwrap()
}

fn shared(path: &str) -> Arc<Path> {
    Arc::from(Path::new(path))
}

#[test]
fn lackey_reader() {
    let mut corpus = samples(".lackey");
    corpus.push(written(TraceFormat::Lackey, &[1]));
    fuzz("lackey_reader", &corpus, |b| {
        let p = "/fuzz/a.lackey";
        round_trips(&drain(lackey::LackeyReader::new(b, shared(p)), p)?)
    });
}

#[test]
fn csv_reader() {
    let mut corpus = samples(".csv");
    corpus.push(written(TraceFormat::Csv, &[1, 2, 3]));
    fuzz("csv_reader", &corpus, |b| {
        let p = "/fuzz/a.csv";
        round_trips(&drain(csv::CsvReader::new(b, shared(p)), p)?)
    });
}

#[test]
fn oracle_reader() {
    let corpus = vec![written(TraceFormat::OracleGeneral, &[1])];
    fuzz("oracle_reader", &corpus, |b| {
        let p = "/fuzz/a.oracleGeneral.bin";
        round_trips(&drain(oracle::OracleReader::new(b, shared(p)), p)?)
    });
}

#[test]
fn native_reader() {
    let corpus = vec![
        written(TraceFormat::Native, &[1, 7]),
        written(TraceFormat::Native, &[u32::MAX]),
    ];
    fuzz("native_reader", &corpus, |b| {
        let p = "/fuzz/a.swvmtrace";
        match native::NativeReader::new(b, shared(p)) {
            Ok(r) => round_trips(&drain(r, p)?),
            Err(e) => names_position(&e, p),
        }
    });
}

#[test]
fn lcs_reader() {
    let corpus = vec![written(TraceFormat::Lcs, &[1])];
    fuzz("lcs_reader", &corpus, |b| {
        let p = "/fuzz/a.lcs";
        match lcs::LcsReader::new(b, shared(p)) {
            Ok(r) => round_trips(&drain(r, p)?),
            Err(e) => names_position(&e, p),
        }
    });
}

/// DAMON region traces: a region's accesses are bounded (the model
/// visits each page of a region once an interval), so a mutant's
/// expansion is read only so far.
#[test]
fn damon_reader() {
    let mut corpus = samples(".damon");
    corpus.push(
        b"# swapvm damon regions v1\n# sample_us=5000\n# aggr_us=100000\n# seed=1\n\
          interval,pid,start,end,nr_accesses,age\n0,7,0x7f0000000000,0x7f0000010000,20,0\n\
          1,7,0x7f0000000000,0x7f0000008000,3,1\n1,8,0x1000,0x3000,0,0\n"
            .to_vec(),
    );
    fuzz("damon_reader", &corpus, |b| {
        let p = "/fuzz/a.damon";
        match damon::DamonReader::new(b, shared(p)) {
            Ok(r) => drain(r.take(100_000), p).map(|_| ()),
            Err(e) => names_position(&e, p),
        }
    });
}

/// zstd-compressed traces, read through detection and the format's
/// reader: mutations hit the compressed bytes (a corrupt or cut stream
/// must be an error naming the file and a position, never a panic).
#[test]
fn zstd_reader() {
    let zst = |b: Vec<u8>| zstd::encode_all(&b[..], 3).unwrap();
    let corpus = vec![
        zst(written(TraceFormat::Native, &[1, 2])),
        zst(written(TraceFormat::Csv, &[5, 6])),
        zst(written(TraceFormat::Lackey, &[1])),
    ];
    let dir = tempfile::tempdir().unwrap();
    fuzz("zstd_reader", &corpus, |b| {
        let path = dir.path().join("t.zst");
        std::fs::write(&path, b).map_err(|e| e.to_string())?;
        let shown = path.display().to_string();
        match swapvm_workload::trace::TraceReader::open(&path, None) {
            Ok(r) => round_trips(&drain(r, &shown)?),
            Err(e) => names_position(&e, &shown),
        }
    });
}

/// The whole replay path on a real file: detection, scan, one process per
/// pid, and the op stream's shape.
#[test]
fn replay() {
    let corpus = vec![
        written(TraceFormat::Native, &[1, 2]),
        written(TraceFormat::Csv, &[5, 6, 7]),
        written(TraceFormat::Lackey, &[1]),
        written(TraceFormat::OracleGeneral, &[1]),
        zstd::encode_all(&written(TraceFormat::Native, &[3, 4])[..], 3).unwrap(),
        written(TraceFormat::Lcs, &[1]),
    ];
    let dir = tempfile::tempdir().unwrap();
    fuzz("replay", &corpus, |b| {
        let path = dir.path().join("t.trace");
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(b))
            .map_err(|e| e.to_string())?;
        let shown = path.display().to_string();
        // oracleGeneral has no magic: what detection cannot tell is read as
        // oracleGeneral, so that format is fuzzed through this path too.
        let plan = match TracePlan::scan(&path, None, |_| {}) {
            Err(TraceError::Undetected { .. }) => {
                TracePlan::scan(&path, Some(TraceFormat::OracleGeneral), |_| {})
            }
            other => other,
        };
        let plan = match plan {
            Ok(p) => p,
            Err(e) => return names_position(&e, &shown),
        };
        let mut accesses = 0u64;
        for mut p in plan.processes().map_err(|e| e.to_string())? {
            let mut mapped: Vec<bool> = Vec::new();
            let mut exited = false;
            while let Some(op) = p
                .next_op()
                .map_err(|e| format!("after the scan passed: {e}"))?
            {
                if exited {
                    return Err("an op after Exit".into());
                }
                match op {
                    Op::Mmap { region, pages } => {
                        if region as usize != mapped.len() || pages != REGION_PAGES {
                            return Err(format!("Mmap {region} of {pages} out of order"));
                        }
                        mapped.push(true);
                    }
                    Op::Access { region, page, .. } => {
                        if !mapped.get(region as usize).copied().unwrap_or(false)
                            || page >= REGION_PAGES
                        {
                            return Err(format!("access to {region}:{page} outside a region"));
                        }
                        accesses += 1;
                    }
                    Op::Exit => exited = true,
                    other => return Err(format!("a trace emitted {other:?}")),
                }
            }
            if !exited || p.accesses_done() != p.accesses_total() {
                return Err(format!(
                    "pid {}: {} of {} accesses, exited {exited}",
                    p.pid(),
                    p.accesses_done(),
                    p.accesses_total()
                ));
            }
        }
        if accesses == plan.total_accesses() {
            Ok(())
        } else {
            Err(format!(
                "{accesses} accesses, scan said {}",
                plan.total_accesses()
            ))
        }
    });
}

fn toml_text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn workload_toml() {
    let corpus: Vec<Vec<u8>> = samples(".toml");
    fuzz("workload_toml", &corpus, |b| {
        let p = Path::new("/fuzz/w.toml");
        match WorkloadSpec::from_toml(&toml_text(b), p) {
            Ok(w) => {
                let _ = w.total_accesses();
                Ok(())
            }
            Err(e) if e.to_string().starts_with("/fuzz/w.toml") => Ok(()),
            Err(e) => Err(format!("error without the file: {e}")),
        }
    });
}

#[test]
fn machine_config_toml() {
    let corpus: Vec<Vec<u8>> = samples(".toml");
    fuzz("machine_config_toml", &corpus, |b| {
        let p = Path::new("/fuzz/m.toml");
        match MachineConfig::from_toml(&toml_text(b), p) {
            Ok(c) => {
                let _ = c.ram_pages();
                Ok(())
            }
            Err(e) if e.to_string().starts_with("/fuzz/m.toml") => Ok(()),
            Err(e) => Err(format!("error without the file: {e}")),
        }
    });
}
