//! `swapvm replay` and `swapvm trace` as a user runs them: a real program
//! recorded with Valgrind lackey replays with the trace's own counts, a
//! trace bigger than RAM swaps and verifies, several pids become several
//! processes, conversions keep the figures, and every kind of malformed
//! trace gets an error naming the file and the line or record (exit 2,
//! never a panic).

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use swapvm_core::SimRng;
use swapvm_workload::trace::{native, AccessKind, Position, TraceFormat, TraceRecord, TraceWriter};
use tempfile::TempDir;

/// Exit code of a Rust panic; no input may produce it.
const PANIC_EXIT: i32 = 101;

fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("swapvm-replay-test-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

fn swapvm(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swapvm"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

macro_rules! swapvm {
    ($($arg:expr),* $(,)?) => {
        swapvm(&[$(std::ffi::OsStr::new(&$arg)),*])
    };
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A successful run's stdout as JSON.
fn json(o: &Output) -> serde_json::Value {
    let (stdout, stderr) = text(o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

fn counter(report: &serde_json::Value, name: &str) -> u64 {
    report["vmstat"][name].as_u64().unwrap_or(0)
}

/// A machine config in `dir` with `ram_mib` of RAM and `swap_mib` of swap.
fn config(dir: &Path, ram_mib: u64, swap_mib: u64) -> PathBuf {
    let path = dir.join("machine.toml");
    std::fs::write(
        &path,
        format!(
            "[machine]\nram_mib = {ram_mib}\nseed = 5\n[[swap]]\npath = \"swap.img\"\nsize_mib = {swap_mib}\n"
        ),
    )
    .unwrap();
    path
}

/// Stats of a trace as `swapvm trace stats --json` gives them.
fn stats(trace: &Path) -> serde_json::Value {
    json(&swapvm!("trace", "stats", trace, "--json"))
}

/// Counts a lackey trace the simplest way, independent of the reader:
/// (records, page accesses, distinct pages).
fn count_lackey(path: &Path) -> (u64, u64, u64) {
    let text = std::fs::read_to_string(path).unwrap();
    let (mut records, mut accesses) = (0, 0);
    let mut pages = HashSet::new();
    for line in text.lines() {
        let times = if line.starts_with("I  ") || line.starts_with(" L ") || line.starts_with(" S ")
        {
            1
        } else if line.starts_with(" M ") {
            2
        } else {
            assert!(line.starts_with("==") || line.trim().is_empty(), "{line:?}");
            continue;
        };
        let (addr, size) = line[3..].split_once(',').unwrap();
        let addr = u64::from_str_radix(addr, 16).unwrap();
        let size: u64 = size.trim().parse().unwrap();
        let (first, last) = (addr / 4096, (addr + size.max(1) - 1) / 4096);
        records += times;
        accesses += times * (last - first + 1);
        pages.extend(first..=last);
    }
    (records, accesses, pages.len() as u64)
}

/// Records `argv` with lackey into `out`; fails (never skips) without
/// valgrind, which `.ci/run` installs.
fn lackey_record(out: &Path, argv: &[&str]) {
    let status = Command::new("valgrind")
        .args(["--tool=lackey", "--trace-mem=yes"])
        .arg(format!("--log-file={}", out.display()))
        .args(argv)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "valgrind not runnable ({e}): install it (apt-get install valgrind); .ci/run does"
            )
        });
    assert!(status.success(), "valgrind {argv:?}: {status}");
}

#[test]
fn a_real_program_recorded_with_lackey_replays_with_its_own_counts() {
    let dir = tempdir();
    let trace = dir.path().join("ls.lackey");
    lackey_record(&trace, &["/bin/ls", "-l", "/usr"]);
    let (records, accesses, distinct) = count_lackey(&trace);
    assert!(records > 100_000, "only {records} records");

    let s = stats(&trace);
    assert_eq!(s["format"], "lackey");
    assert_eq!(s["records"], records);
    assert_eq!(s["page_accesses"], accesses);
    assert_eq!(s["distinct_pages"], distinct);
    assert_eq!(s["footprint_bytes"], distinct * 4096);
    assert_eq!(s["pids"].as_array().unwrap().len(), 1);

    // RAM far above the footprint: every distinct page faults in exactly
    // once and nothing is reclaimed, so the machine's own counters must
    // give the trace's figures back.
    let cfg = config(dir.path(), 64, 16);
    let r = json(&swapvm!("replay", &trace, "--config", &cfg, "--json"));
    assert_eq!(r["accesses"], accesses, "accesses");
    assert_eq!(counter(&r, "pgalloc_normal"), distinct, "frames allocated");
    assert_eq!(counter(&r, "pgfault"), distinct, "faults");
    assert_eq!(counter(&r, "pswpout"), 0);
    assert_eq!(r["mismatches"], 0);
    assert!(r["killed"].as_array().unwrap().is_empty(), "{r}");
}

/// Writes a native trace of `accesses` uniform accesses over `pages` pages
/// of one pid, a share `write` of them stores; returns its path.
fn random_native(dir: &Path, name: &str, pages: u64, accesses: u64, write: f64) -> PathBuf {
    let path = dir.join(name);
    let mut w = TraceWriter::create(&path, TraceFormat::Native).unwrap();
    let mut rng = SimRng::new(9);
    // Touch every page first, as a program initialising its heap would.
    for i in 0..pages + accesses {
        let page = if i < pages { i } else { rng.below(pages) };
        let kind = if i < pages || rng.chance(write) {
            AccessKind::Store
        } else {
            AccessKind::Load
        };
        let rec = TraceRecord {
            pid: 1,
            addr: 0x7f00_0000_0000 + page * 4096 + 8,
            size: 8,
            kind,
        };
        w.write(&rec, Position::Record(i)).unwrap();
    }
    w.finish().unwrap();
    path
}

#[test]
fn a_trace_four_times_ram_swaps_and_verifies() {
    let dir = tempdir();
    let pages = 16 * 256;
    let trace = random_native(dir.path(), "big.swvmtrace", pages, 3 * pages, 0.5);
    let cfg = config(dir.path(), 4, 32);
    let r = json(&swapvm!("replay", &trace, "--config", &cfg, "--json"));
    assert_eq!(r["accesses"], 4 * pages);
    assert!(counter(&r, "pswpout") > pages / 2, "{r}");
    assert!(counter(&r, "pswpin") > 0, "{r}");
    assert!(r["swapin_verified"].as_u64().unwrap() > 0);
    assert_eq!(r["mismatches"], 0);
    assert!(r["violations"].as_array().unwrap().is_empty(), "{r}");

    // Same trace, same seed: the same counters.
    let again = json(&swapvm!("replay", &trace, "--config", &cfg, "--json"));
    assert_eq!(r["vmstat"], again["vmstat"]);
}

#[test]
fn several_pids_are_several_processes() {
    let dir = tempdir();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workloads/two-pids.csv");
    let s = stats(&sample);
    let pids: Vec<u64> = s["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids, [200, 100], "in order of first appearance");
    let cfg = config(dir.path(), 8, 16);
    let o = swapvm!("replay", &sample, "--config", &cfg);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("pid 100: 80 records"), "{stdout}");
    assert!(stdout.contains("accesses/s"), "{stdout}");
    assert!(stdout.contains("result: PASS"), "{stdout}");
    let r = json(&swapvm!("replay", &sample, "--config", &cfg, "--json"));
    assert_eq!(r["accesses"], s["page_accesses"]);
    assert_eq!(
        counter(&r, "pgalloc_normal"),
        s["distinct_pages"].as_u64().unwrap()
    );
}

#[test]
fn set_overrides_the_replay_config_and_a_bad_one_names_the_key() {
    let dir = tempdir();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workloads/two-pids.csv");
    let cfg = config(dir.path(), 8, 16);
    let r = json(&swapvm!(
        "replay",
        &sample,
        "--config",
        &cfg,
        "--json",
        "--set",
        "machine.seed=9",
        "--set",
        "machine.ram_mib=12"
    ));
    assert_eq!(r["seed"], 9);
    assert_eq!(r["config_loaded"]["machine"]["ram_mib"], 12);
    let o = swapvm!(
        "replay",
        &sample,
        "--config",
        &cfg,
        "--set",
        "swap.0.bogus=1"
    );
    assert_fails(&o, &["--set swap.0.bogus=1", "unknown field `bogus`"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn out_writes_report_vmstat_and_trace_stats() {
    let dir = tempdir();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workloads/true-head.lackey");
    let cfg = config(dir.path(), 8, 16);
    let out = dir.path().join("run");
    let o = swapvm!("replay", &sample, "--config", &cfg, "--out", &out);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    for f in ["report.json", "vmstat", "trace-stats.json"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("trace-stats.json")).unwrap())
            .unwrap();
    assert_eq!(s["records"], 145);
}

#[test]
fn conversions_keep_the_figures() {
    let dir = tempdir();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workloads/true-head.lackey");
    let want = stats(&sample);
    let mut prev = sample.clone();
    for name in ["a.swvmtrace", "b.csv", "c.lackey", "d.swvmtrace"] {
        let next = dir.path().join(name);
        let o = swapvm!("trace", "convert", &prev, &next);
        assert_eq!(o.status.code(), Some(0), "{name}: {:?}", text(&o));
        let got = stats(&next);
        for k in [
            "records",
            "instr",
            "loads",
            "stores",
            "page_accesses",
            "distinct_pages",
        ] {
            assert_eq!(got[k], want[k], "{name}: {k}");
        }
        prev = next;
    }
    // oracleGeneral has one record per page access, all reads.
    let oracle = dir.path().join("e.oracleGeneral.bin");
    assert_eq!(
        swapvm!("trace", "convert", &prev, &oracle).status.code(),
        Some(0)
    );
    let got = stats(&oracle);
    assert_eq!(got["format"], "oracle-general");
    assert_eq!(got["records"], want["page_accesses"]);
    assert_eq!(got["distinct_pages"], want["distinct_pages"]);
    assert_eq!(got["stores"], 0);
    // A second pid cannot go into a one-pid format.
    let two = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workloads/two-pids.csv");
    let o = swapvm!("trace", "convert", &two, dir.path().join("x.lackey"));
    assert_fails(&o, &["x.lackey", "record 1", "pid 100 after pid 200"]);
    let o = swapvm!("trace", "convert", &two, dir.path().join("x.unknown"));
    assert_fails(&o, &["x.unknown", "--format"]);
    assert!(
        !dir.path().join("x.lackey").exists(),
        "a failed convert left its output"
    );
}

/// `.zst` outputs and `--compress` write zstd; lcs keeps loads and stores;
/// both read back with the sample's figures.
#[test]
fn compressed_and_lcs_conversions_keep_the_figures() {
    let dir = tempdir();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workloads/true-head.lackey");
    let want = stats(&sample);
    let lcs = dir.path().join("t.lcs");
    let cases = [
        (dir.path().join("a.swvmtrace.zst"), None),
        (dir.path().join("b.swvmtrace"), Some("--compress")),
        (lcs.clone(), None),
        (dir.path().join("c.lcs.zst"), None),
    ];
    for (out, flag) in cases {
        let o = match flag {
            Some(f) => swapvm!("trace", "convert", &sample, &out, f),
            None => swapvm!("trace", "convert", &sample, &out),
        };
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}: {:?}",
            out.display(),
            text(&o)
        );
        let zstd = std::fs::read(&out)
            .unwrap()
            .starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
        assert_eq!(zstd, out != lcs, "{}", out.display());
        let got = stats(&out);
        let native = got["format"] == "native";
        for k in ["page_accesses", "page_writes", "distinct_pages"] {
            assert_eq!(got[k], want[k], "{}: {k}", out.display());
        }
        if native {
            assert_eq!(got["records"], want["records"]);
        }
    }
}

/// `o` must be a clean failure (exit 2, not a panic) whose stderr has every
/// one of `needles`.
fn assert_fails(o: &Output, needles: &[&str]) -> String {
    let (stdout, stderr) = text(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "want exit 2, got {:?}\nstdout: {stdout}\nstderr: {stderr}",
        o.status
    );
    assert_ne!(o.status.code(), Some(PANIC_EXIT));
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}:\n{stderr}");
    }
    stderr
}

mod malformed {
    use super::*;

    /// Writes `bytes` to `dir/name`, and checks that stats and replay of it
    /// both fail naming the file and each of `needles`.
    fn rejected(name: &str, bytes: &[u8], format: Option<&str>, needles: &[&str]) {
        let dir = tempdir();
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        let shown = path.display().to_string();
        let mut all = vec![shown.as_str()];
        all.extend_from_slice(needles);
        let fmt: Vec<&str> = format.map(|f| vec!["--format", f]).unwrap_or_default();
        let mut args = vec!["trace", "stats", shown.as_str()];
        args.extend(&fmt);
        let os: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        assert_fails(&swapvm(&os), &all);
        let cfg = config(dir.path(), 8, 16);
        let cfg = cfg.display().to_string();
        let mut args = vec!["replay", shown.as_str(), "--config", cfg.as_str()];
        args.extend(&fmt);
        let os: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        assert_fails(&swapvm(&os), &all);
        assert!(
            !dir.path().join("swap.img").exists(),
            "nothing is set up for a bad trace"
        );
    }

    #[test]
    fn lackey_bad_hex() {
        rejected(
            "a.lackey",
            b"==1== x\nI  0400,4\n L 04g0,8\n",
            None,
            &["line 3", "bad hex \"04g0\""],
        );
    }

    #[test]
    fn lackey_unknown_op() {
        rejected(
            "a.lackey",
            b"I  0400,4\n X 0400,8\n",
            None,
            &["line 2", "unknown op \"X\""],
        );
    }

    #[test]
    fn lackey_truncated_line() {
        rejected(
            "a.lackey",
            b"I  0400,4\n L 0400",
            None,
            &["line 2", "truncated"],
        );
    }

    #[test]
    fn lackey_out_of_range_size() {
        rejected(
            "a.lackey",
            b" S 0400,4000000\n",
            None,
            &["line 1", "`size`", "out of range"],
        );
    }

    #[test]
    fn csv_bad_hex_unknown_op_and_range() {
        rejected(
            "a.csv",
            b"time,pid,op,address\n0,1,R,0x1q\n",
            None,
            &["line 2", "bad hex"],
        );
        rejected(
            "a.csv",
            b"0,1,R,0x10\n1,1,Z,0x10\n",
            None,
            &["line 2", "unknown op \"Z\""],
        );
        rejected(
            "a.csv",
            b"0,1,R\n",
            None,
            &["line 1", "truncated", "address"],
        );
        rejected(
            "a.csv",
            b"0,70000000000,R,0x10\n",
            None,
            &["line 1", "`pid`"],
        );
    }

    fn native_bytes(records: &[[u8; 16]]) -> Vec<u8> {
        let mut b = native::MAGIC.to_vec();
        b.extend(1u16.to_le_bytes());
        b.extend(16u16.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        for r in records {
            b.extend(r);
        }
        b
    }

    fn native_record(addr: u64, pid: u32, word: u32) -> [u8; 16] {
        let mut r = [0u8; 16];
        r[..8].copy_from_slice(&addr.to_le_bytes());
        r[8..12].copy_from_slice(&pid.to_le_bytes());
        r[12..].copy_from_slice(&word.to_le_bytes());
        r
    }

    #[test]
    fn native_wrong_magic_truncated_unknown_op_and_range() {
        let good = native_record(0x1000, 1, (8 << 2) | 1);
        let mut bad = native_bytes(&[good]);
        bad[..4].copy_from_slice(b"ELF\x7f");
        rejected("a.bin", &bad, Some("native"), &["header", "wrong magic"]);
        let mut cut = native_bytes(&[good, good]);
        cut.truncate(cut.len() - 3);
        rejected("a.swvmtrace", &cut, None, &["record 1", "truncated"]);
        let op = native_bytes(&[good, good, native_record(0x1000, 1, (8 << 2) | 3)]);
        rejected("a.swvmtrace", &op, None, &["record 2", "unknown op"]);
        let size = native_bytes(&[native_record(0x1000, 1, (((1 << 20) + 1) << 2) | 1)]);
        rejected(
            "a.swvmtrace",
            &size,
            None,
            &["record 0", "`size`", "out of range"],
        );
    }

    #[test]
    fn oracle_truncated_and_out_of_range() {
        let rec = |obj: u64| {
            let mut r = [0u8; 24];
            r[4..12].copy_from_slice(&obj.to_le_bytes());
            r[16..].copy_from_slice(&(-1i64).to_le_bytes());
            r
        };
        let mut b = [rec(1), rec(2)].concat();
        b.truncate(40);
        rejected("a.oracleGeneral.bin", &b, None, &["record 1", "truncated"]);
        let b = [rec(1), rec(2), rec(u64::MAX)].concat();
        rejected("a.oracleGeneral.bin", &b, None, &["record 2", "`obj_id`"]);
    }

    #[test]
    fn undetectable_format_says_pass_format() {
        rejected("a.dat", b"\x00\x01 not a trace\n", None, &["--format"]);
    }

    #[test]
    fn missing_trace_names_it() {
        let dir = tempdir();
        let path = dir.path().join("absent.lackey");
        assert_fails(
            &swapvm!("trace", "stats", &path),
            &["absent.lackey", "cannot open"],
        );
        let o = swapvm!("trace", "stats", &path, "--format", "bogus");
        let (_, stderr) = text(&o);
        assert!(stderr.contains("unknown trace format"), "{stderr}");
    }
}
