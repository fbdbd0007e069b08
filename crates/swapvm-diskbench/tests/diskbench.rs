//! Integration tests of `swapvm diskbench`: `swapvm_diskbench::run` on
//! temporary files, the same code path as the command, whose JSON is this
//! report serialised. No assertion depends on timing: runs are bounded by
//! a request count, and figures are only checked to be present and
//! consistent.

// Tests may unwrap; clippy's allow-unwrap-in-tests does not reach the
// helpers of an integration-test crate.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use swapvm_diskbench::{self as diskbench, BenchConfig, BenchEngine, DiskbenchError, Pattern};
use swapvm_io::BLOCK_SIZE;
use tempfile::NamedTempFile;

/// Directory for test files: a disk-backed filesystem with O_DIRECT
/// (/tmp may be tmpfs).
const TEST_DIR: &str = "/var/tmp";

const MIB: u64 = 1 << 20;

/// A sparse temporary file of `len` bytes in [`TEST_DIR`].
fn temp_file(len: u64) -> NamedTempFile {
    let file = tempfile::Builder::new()
        .prefix("swapvm-diskbench-test-")
        .tempfile_in(TEST_DIR)
        .unwrap_or_else(|e| panic!("cannot create a temp file in {TEST_DIR}: {e}"));
    file.as_file().set_len(len).unwrap();
    file
}

fn config(path: &Path, pattern: Pattern, ops: u64) -> BenchConfig {
    BenchConfig {
        duration: None,
        ops: Some(ops),
        queue_depth: 8,
        ..BenchConfig::new(path, pattern)
    }
}

fn run(cfg: &BenchConfig) -> Result<diskbench::BenchReport, DiskbenchError> {
    diskbench::run(cfg, &mut |_| {})
}

/// The report as JSON, parsed back.
fn json(report: &diskbench::BenchReport) -> serde_json::Value {
    serde_json::from_str(&serde_json::to_string_pretty(report).unwrap()).unwrap()
}

fn assert_sane(j: &serde_json::Value, dir: &str, ops: u64, request_bytes: u64) {
    let d = &j[dir];
    assert_eq!(d["ops"].as_u64(), Some(ops), "{dir}: {d}");
    assert_eq!(d["bytes"].as_u64(), Some(ops * request_bytes), "{dir}: {d}");
    let num = |k: &str| {
        d[k].as_f64()
            .unwrap_or_else(|| panic!("{dir}.{k} missing: {d}"))
    };
    assert!(num("iops") > 0.0 && num("mb_per_s") > 0.0, "{dir}: {d}");
    let (p50, p99, p999, max) = (
        num("latency_us_p50"),
        num("latency_us_p99"),
        num("latency_us_p999"),
        num("latency_us_max"),
    );
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
        "{dir}: {d}"
    );
}

/// A missing file is created at the size asked and filled; a short run
/// of every pattern gives sane JSON with non-zero IOPS.
#[test]
fn short_runs_produce_sane_json() {
    let dir = tempfile::tempdir_in(TEST_DIR).unwrap();
    let path = dir.path().join("bench.img");
    for (i, pattern) in Pattern::ALL.into_iter().enumerate() {
        let cfg = BenchConfig {
            create_bytes: Some(16 * MIB),
            ..config(&path, pattern, 200)
        };
        let report = run(&cfg).unwrap_or_else(|e| panic!("{pattern}: {e:#}"));
        assert_eq!(report.created, i == 0, "{pattern}");
        let j = json(&report);
        assert_eq!(j["pattern"], pattern.name());
        assert_eq!(j["device"], path.display().to_string());
        assert_eq!(j["device_kind"], "file");
        assert_eq!(j["device_bytes"].as_u64(), Some(16 * MIB));
        assert_eq!(j["queue_depth"].as_u64(), Some(8));
        assert_eq!(j["engine"], "uring");
        assert_eq!(j["errors"].as_u64(), Some(0), "{j}");
        assert!(j["seconds"].as_f64().unwrap() > 0.0);
        let bytes = pattern.request_bytes() as u64;
        assert_sane(&j, "total", 200, bytes);
        let reads = j["read"]["ops"].as_u64().unwrap();
        let writes = j["write"]["ops"].as_u64().unwrap();
        assert_eq!(reads + writes, 200, "{pattern}");
        assert_eq!(writes > 0, pattern.writes(), "{pattern}");
        if pattern == Pattern::Mixed {
            assert_sane(&j, "read", reads, bytes);
            assert_sane(&j, "write", writes, bytes);
        }
    }
    // Created means filled: no hole reads as zeros in the middle.
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, 16 * MIB);
    assert!(bytes[8 * MIB as usize..][..4096].iter().any(|&b| b != 0));
}

#[test]
fn every_engine_runs() {
    let file = temp_file(8 * MIB);
    for engine in BenchEngine::ALL {
        let cfg = BenchConfig {
            engine,
            ..config(file.path(), Pattern::Mixed, 300)
        };
        let report = run(&cfg).unwrap_or_else(|e| panic!("{}: {e:#}", engine.name()));
        assert_eq!(report.engine, engine.name());
        assert_sane(&json(&report), "total", 300, 4096);
    }
}

#[test]
fn missing_file_without_size_is_an_error_naming_it() {
    let dir = tempfile::tempdir_in(TEST_DIR).unwrap();
    let path = dir.path().join("absent.img");
    let err = run(&config(&path, Pattern::SwapOut4k, 10)).unwrap_err();
    assert!(matches!(err, DiskbenchError::Missing { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(!path.exists());
}

fn with_bytes_at(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
    f.sync_all().unwrap();
}

/// An ext4 superblock magic (0xEF53 at byte 1080) makes a writing
/// pattern refuse without --force, naming the file and the reason, and
/// leaves the file untouched; reading patterns and --force proceed.
#[test]
fn filesystem_magic_is_refused_without_force() {
    let file = temp_file(8 * MIB);
    with_bytes_at(file.path(), 1080, &[0x53, 0xef]);
    let before = std::fs::read(file.path()).unwrap();
    for pattern in [Pattern::SwapOut4k, Pattern::RandWrite4k, Pattern::Mixed] {
        let err = run(&config(file.path(), pattern, 100)).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, DiskbenchError::Refused { .. }),
            "{pattern}: {err:?}"
        );
        assert!(msg.contains(&file.path().display().to_string()), "{msg}");
        assert!(msg.contains("ext2/3/4") && msg.contains("--force"), "{msg}");
    }
    assert!(
        std::fs::read(file.path()).unwrap() == before,
        "a refused run wrote"
    );
    run(&config(file.path(), Pattern::RandRead4k, 100)).unwrap();
    let forced = BenchConfig {
        force: true,
        ..config(file.path(), Pattern::RandWrite4k, 100)
    };
    assert_eq!(run(&forced).unwrap().total.ops, 100);
}

/// A hand-made swap header (mkswap's layout: version 1 at 1024, last
/// page at 1028, label at 1052, SWAPSPACE2 at 4086) survives a random
/// write run that covers the file many times over, and the report says
/// it was kept.
#[test]
fn swap_header_is_preserved() {
    let pages = 64u64;
    let file = temp_file(pages * BLOCK_SIZE as u64);
    let mut header = vec![0u8; BLOCK_SIZE];
    header[1024..1028].copy_from_slice(&1u32.to_le_bytes());
    header[1028..1032].copy_from_slice(&(pages as u32 - 1).to_le_bytes());
    header[1052..1058].copy_from_slice(b"keepme");
    header[4086..4096].copy_from_slice(b"SWAPSPACE2");
    with_bytes_at(file.path(), 0, &header);
    for pattern in [
        Pattern::RandWrite4k,
        Pattern::SeqWrite64k,
        Pattern::SwapOut4k,
    ] {
        let report = run(&config(file.path(), pattern, 2000)).unwrap();
        assert!(report.header_preserved, "{pattern}");
        assert_eq!(report.region_start, BLOCK_SIZE as u64, "{pattern}");
        let bytes = std::fs::read(file.path()).unwrap();
        assert!(
            bytes[..BLOCK_SIZE] == header[..],
            "{pattern} overwrote the header"
        );
        // The rest was written over (the run reached past the header).
        assert!(bytes[BLOCK_SIZE..].iter().any(|&b| b != 0), "{pattern}");
    }
}

/// The JSON carries fio's fields for each direction (io_bytes, bw in
/// KiB/s, iops, runtime in ms, lat_ns with the percentile list) and
/// the CPU usage; the bandwidth log's intervals add up to the run.
#[test]
fn fio_fields_and_bandwidth_log() {
    let file = temp_file(8 * MIB);
    let cfg = BenchConfig {
        bw_log_interval: Some(std::time::Duration::from_micros(200)),
        ..config(file.path(), Pattern::Mixed, 2000)
    };
    let report = run(&cfg).unwrap();
    let j = json(&report);
    for dir in ["read", "write"] {
        let d = &j[dir];
        assert_eq!(d["io_bytes"], d["bytes"], "{d}");
        assert!(d["bw"].as_f64().unwrap() > 0.0, "{d}");
        assert!(d["runtime"].as_u64().is_some(), "{d}");
        let lat = &d["lat_ns"];
        assert_eq!(lat["N"], d["ops"], "{lat}");
        let pct = lat["percentile"].as_object().unwrap();
        assert_eq!(pct.len(), diskbench::PERCENTILES.len(), "{lat}");
        let p = |k: &str| pct[k].as_u64().unwrap();
        assert!(p("50.000000") <= p("90.000000") && p("99.000000") <= p("99.990000"));
        assert!(lat["min"].as_u64().unwrap() <= p("1.000000"), "{lat}");
        assert!(d["latency_us_p90"].as_f64().unwrap() > 0.0, "{d}");
        assert!(d["latency_us_p9999"].as_f64().unwrap() > 0.0, "{d}");
    }
    assert!(j["usr_cpu"].as_f64().unwrap() >= 0.0, "{j}");
    assert!(j["sys_cpu"].as_f64().unwrap() >= 0.0, "{j}");
    assert!(j.get("bw_log").is_none(), "the log is CSV, not JSON");
    let log = &report.bw_log;
    assert!(!log.is_empty());
    let reads: u64 = log.iter().map(|s| s.read_ops).sum();
    let writes: u64 = log.iter().map(|s| s.write_ops).sum();
    assert_eq!((reads, writes), (report.read.ops, report.write.ops));
    let span: std::time::Duration = log.iter().map(|s| s.length).sum();
    assert_eq!(span, log.last().unwrap().end);
    assert!(log.windows(2).all(|w| w[0].end < w[1].end));
    // No log unless asked for.
    assert!(run(&config(file.path(), Pattern::Mixed, 10))
        .unwrap()
        .bw_log
        .is_empty());
}

#[test]
fn bad_options_are_refused() {
    let file = temp_file(MIB);
    let cfg = BenchConfig {
        queue_depth: 0,
        ..config(file.path(), Pattern::SwapIn4k, 10)
    };
    assert!(matches!(run(&cfg), Err(DiskbenchError::Config { .. })));
    let cfg = BenchConfig {
        ops: None,
        ..config(file.path(), Pattern::SwapIn4k, 10)
    };
    assert!(matches!(run(&cfg), Err(DiskbenchError::Config { .. })));
    let cfg = BenchConfig {
        bw_log_interval: Some(std::time::Duration::ZERO),
        ..config(file.path(), Pattern::SwapIn4k, 10)
    };
    assert!(matches!(run(&cfg), Err(DiskbenchError::Config { .. })));
    let err = run(&config(file.path(), Pattern::SwapOut2m, 10)).unwrap_err();
    assert!(matches!(err, DiskbenchError::TooSmall { .. }), "{err:?}");
}
