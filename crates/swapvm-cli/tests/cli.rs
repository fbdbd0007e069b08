//! The `swapvm` binary as a user runs it: bad input gets an error naming the
//! file and the field or line (exit 2, never a panic), a good run prints its
//! summary, JSON and run folder, and mkswap/inspect round-trip a header that
//! util-linux recognises.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

/// Exit code of a Rust panic; no input may produce it.
const PANIC_EXIT: i32 = 101;

fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("swapvm-cli-test-")
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

/// Runs `swapvm` with string-like arguments.
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

/// `o` must be a clean failure (non-zero, not a panic) whose stderr has
/// every one of `needles`; returns stderr.
fn assert_fails(o: &Output, needles: &[&str]) -> String {
    let (stdout, stderr) = text(o);
    let code = o.status.code();
    assert!(
        code.is_some_and(|c| c != 0 && c != PANIC_EXIT),
        "want a clean failure, got {:?}\nstdout: {stdout}\nstderr: {stderr}",
        o.status
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}:\n{stderr}");
    }
    stderr
}

/// The machine of the machine crate's tests: 8 MiB of RAM, a 32 MiB swap
/// file created at `swap.img`, one 20 MiB usemem with two random passes.
struct Tiny {
    dir: TempDir,
}

const TINY_MACHINE: &str = "[machine]\nram_mib = 8\nseed = 3\n";
const TINY_SWAP: &str = "[[swap]]\npath = \"swap.img\"\nsize_mib = 32\n";
const TINY_WORKLOAD: &str = "name = \"tiny\"\n[[process]]\nkind = \"usemem\"\nsize_mib = 20\n\
                             passes = 2\npattern = \"random\"\nwrite_ratio = 0.5\n";

impl Tiny {
    /// A machine whose config is `config` and whose workload file is
    /// `workload` (None: no file at all).
    fn with(config: &str, workload: Option<&str>) -> Tiny {
        let dir = tempdir();
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        if let Some(w) = workload {
            std::fs::write(dir.path().join("workload.toml"), w).unwrap();
        }
        Tiny { dir }
    }
    fn new() -> Tiny {
        Self::with(
            &format!("workload = \"workload.toml\"\n{TINY_MACHINE}{TINY_SWAP}"),
            Some(TINY_WORKLOAD),
        )
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn config(&self) -> PathBuf {
        self.path("config.toml")
    }
    fn shows(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

// `run --out`: the run folder as a user sees it (tests/cli/run_folder.rs).
#[path = "cli/run_folder.rs"]
mod run_folder;

// `compare` on hand-made reports (tests/cli/compare.rs).
#[path = "cli/compare.rs"]
mod compare;
// `sweep`: studies (tests/cli/sweep.rs).
#[path = "cli/sweep.rs"]
mod sweep;

mod bad_input {
    use super::*;

    #[test]
    fn missing_config_file_names_the_path() {
        let dir = tempdir();
        let config = dir.path().join("no-such-config.toml");
        let o = swapvm!("run", config);
        assert_fails(
            &o,
            &[
                "swapvm: error:",
                &config.display().to_string(),
                "cannot read",
            ],
        );
        assert_eq!(o.status.code(), Some(2));
    }

    #[test]
    fn unknown_machine_field_names_file_field_and_line() {
        let t = Tiny::with(
            &format!(
                "workload = \"workload.toml\"\n[machine]\nram_mib = 8\nbogus = 1\n{TINY_SWAP}"
            ),
            Some(TINY_WORKLOAD),
        );
        let o = swapvm!("run", t.config());
        assert_fails(&o, &[&t.shows("config.toml"), "bogus", "line 4"]);
        assert_eq!(o.status.code(), Some(2));
        assert!(!t.path("swap.img").exists(), "a bad config created swap");
    }

    #[test]
    fn ram_below_minimum_names_the_field() {
        let t = Tiny::with(
            &format!("workload = \"workload.toml\"\n[machine]\nram_mib = 1\n{TINY_SWAP}"),
            Some(TINY_WORKLOAD),
        );
        let o = swapvm!("run", t.config());
        assert_fails(&o, &[&t.shows("config.toml"), "machine.ram_mib", "minimum"]);
        assert_eq!(o.status.code(), Some(2));
    }

    #[test]
    fn image_without_signature_names_the_image() {
        let t = Tiny::with(
            &format!("workload = \"workload.toml\"\n{TINY_MACHINE}{TINY_SWAP}create = false\n"),
            Some(TINY_WORKLOAD),
        );
        let image = t.path("swap.img");
        std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
        let o = swapvm!("run", t.config());
        assert_fails(&o, &[&t.shows("swap.img"), "not a swap area", "SWAPSPACE2"]);
        assert_eq!(o.status.code(), Some(2));
        // Nothing already written is lost: the image is left as it was.
        let after = std::fs::read(&image).unwrap();
        assert_eq!(after.len(), 1 << 20);
        assert!(after.iter().all(|&b| b == 0), "the image was modified");
    }

    #[test]
    fn missing_image_with_create_false_names_the_image() {
        let t = Tiny::with(
            &format!("workload = \"workload.toml\"\n{TINY_MACHINE}{TINY_SWAP}create = false\n"),
            Some(TINY_WORKLOAD),
        );
        let o = swapvm!("run", t.config());
        assert_fails(&o, &[&t.shows("swap.img")]);
        assert!(!t.path("swap.img").exists());
    }

    #[test]
    fn missing_workload_file_names_it() {
        let t = Tiny::with(
            &format!("workload = \"workload.toml\"\n{TINY_MACHINE}{TINY_SWAP}"),
            None,
        );
        let o = swapvm!("run", t.config());
        assert_fails(&o, &[&t.shows("workload.toml"), "cannot read"]);
        assert_eq!(o.status.code(), Some(2));
    }

    #[test]
    fn missing_workload_given_on_the_command_line_names_it() {
        let t = Tiny::new();
        let w = t.path("other.toml");
        let o = swapvm!("run", t.config(), "--workload", w);
        assert_fails(&o, &[&t.shows("other.toml"), "cannot read"]);
    }

    #[test]
    fn config_without_workload_says_how_to_give_one() {
        let t = Tiny::with(&format!("{TINY_MACHINE}{TINY_SWAP}"), None);
        let o = swapvm!("run", t.config());
        assert_fails(&o, &[&t.shows("config.toml"), "no workload", "--workload"]);
    }

    #[test]
    fn unknown_pattern_names_the_file_and_the_allowed_values() {
        let t = Tiny::with(
            &format!("workload = \"workload.toml\"\n{TINY_MACHINE}{TINY_SWAP}"),
            Some(&TINY_WORKLOAD.replace("\"random\"", "\"zigzag\"")),
        );
        let o = swapvm!("run", t.config());
        assert_fails(
            &o,
            &[
                &t.shows("workload.toml"),
                "zigzag",
                "line 6",
                "sequential",
                "random",
                "hotcold",
            ],
        );
        assert_eq!(o.status.code(), Some(2));
    }

    #[test]
    fn scale_above_one_is_rejected_by_the_parser() {
        let t = Tiny::new();
        let o = swapvm!("run", t.config(), "--scale", "2");
        assert_fails(&o, &["--scale", "outside 0 < scale <= 1"]);
        assert!(!t.path("swap.img").exists(), "ran despite a bad --scale");
        let o = swapvm!("run", t.config(), "--scale", "0");
        assert_fails(&o, &["--scale"]);
        let o = swapvm!("run", t.config(), "--scale", "half");
        assert_fails(&o, &["--scale", "not a number"]);
        // 20 MiB of workload on 8 MiB swaps; a tenth of it fits in the
        // smallest RAM, 4 MiB, and would not.
        let o = swapvm!("run", t.config(), "--scale", "0.1");
        assert_fails(
            &o,
            &[
                "machine.ram_mib",
                "--scale 0.1 would no longer swap",
                "--scale 0.21 or more",
            ],
        );
        assert_eq!(o.status.code(), Some(2));
    }

    /// A real ext4 filesystem (mkfs.ext4) where a swap image should be:
    /// `run` refuses it naming the filesystem and leaves it untouched.
    #[test]
    fn run_on_a_filesystem_names_it_and_leaves_it_alone() {
        let t = Tiny::new();
        let img = t.path("swap.img");
        std::fs::write(&img, vec![0u8; 32 << 20]).unwrap();
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&img)
            .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
            .status()
            .expect("mkfs.ext4 (e2fsprogs; .ci/run installs it)");
        assert!(mkfs.success());
        let before = std::fs::read(&img).unwrap();
        let o = swapvm!("run", t.config());
        assert_fails(&o, &["swap.img", "ext2/3/4 filesystem", "not a swap area"]);
        assert_eq!(o.status.code(), Some(2));
        assert!(
            std::fs::read(&img).unwrap() == before,
            "the filesystem was written"
        );
    }

    #[test]
    fn inspect_of_a_non_swap_file_names_it() {
        let dir = tempdir();
        let f = dir.path().join("plain.bin");
        std::fs::write(&f, vec![0x5au8; 8192]).unwrap();
        let o = swapvm!("inspect", f);
        assert_fails(
            &o,
            &[&f.display().to_string(), "not a swap area", "SWAPSPACE2"],
        );
        assert_eq!(o.status.code(), Some(2));
        let short = dir.path().join("short.bin");
        std::fs::write(&short, b"tiny").unwrap();
        let o = swapvm!("inspect", short);
        assert_fails(&o, &[&short.display().to_string()]);
        let missing = dir.path().join("missing.img");
        let o = swapvm!("inspect", missing);
        assert_fails(&o, &[&missing.display().to_string()]);
    }

    #[test]
    fn mkswap_rejects_a_long_label_and_a_bad_uuid() {
        let dir = tempdir();
        let img = dir.path().join("x.img");
        let o = swapvm!(
            "mkswap",
            img,
            "--size-mib",
            "1",
            "--label",
            "a-label-of-sixteen"
        );
        assert_fails(&o, &["label", "15"]);
        let o = swapvm!("mkswap", img, "--size-mib", "1", "--uuid", "not-a-uuid");
        assert_fails(&o, &["not-a-uuid"]);
        let o = swapvm!("mkswap", img, "--size-mib", "1500K");
        assert_fails(&o, &["--size-mib", "not a whole number of MiB"]);
        assert!(!img.exists(), "made an image of a bad size");
    }
}

mod run {
    use super::*;

    /// The ring's depth and the emulation's queue are two figures, named
    /// apart: requests beyond the ring wait in the engine, so the most
    /// queued may exceed `queue_depth` without the ring doing so.
    #[test]
    fn ring_depth_and_queued_requests_are_reported_apart() {
        let t = Tiny::with(
            &format!("workload = \"workload.toml\"\n{TINY_MACHINE}{TINY_SWAP}queue_depth = 8\n"),
            Some(TINY_WORKLOAD),
        );
        let o = swapvm!("run", t.config(), "--json");
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let dev = &v["devices"][0];
        assert_eq!(dev["ring_depth"], 8, "{dev}");
        assert!(dev["max_in_flight"].as_u64().unwrap() > 0, "{dev}");
        let o = swapvm!("run", t.config());
        let (stdout, _) = text(&o);
        let line = stdout
            .lines()
            .find(|l| l.contains("slots used"))
            .unwrap_or_else(|| panic!("no device line:\n{stdout}"));
        assert!(
            line.contains("io_uring ring depth 8, most requests queued "),
            "{line}"
        );
        assert!(!line.contains("most in flight"), "{line}");
    }

    #[test]
    fn run_prints_summary_and_exits_zero() {
        let t = Tiny::new();
        let o = swapvm!("run", t.config());
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
        for want in [
            "pswpout",
            "pswpin",
            "0 mismatches",
            "invariants: PASS",
            "warnings fired: 0",
            "result: PASS",
            &t.shows("swap.img"),
        ] {
            assert!(stdout.contains(want), "summary lacks {want:?}:\n{stdout}");
        }
        // The counters are printed with values above zero.
        for name in ["pswpout", "pswpin"] {
            let v: u64 = stdout
                .lines()
                .find_map(|l| {
                    let mut w = l.split_whitespace();
                    (w.next() == Some(name)).then(|| w.next().unwrap().parse().unwrap())
                })
                .unwrap_or_else(|| panic!("no {name} line:\n{stdout}"));
            assert!(v > 0, "{name} {v}");
        }
    }

    #[test]
    fn json_is_parseable_and_clean() {
        let t = Tiny::new();
        let o = swapvm!("run", t.config(), "--json", "--seed", "11");
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
        let v: serde_json::Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"));
        assert_eq!(v["mismatches"], 0, "{v}");
        assert_eq!(v["seed"], 11);
        assert_eq!(v["warnings"], 0);
        assert_eq!(v["violations"].as_array().unwrap().len(), 0);
        assert!(v["swapin_verified"].as_u64().unwrap() > 0, "{v}");
        assert!(v["vmstat"]["pswpout"].as_u64().unwrap() > 0, "{v}");
    }

    #[test]
    fn out_writes_report_and_vmstat() {
        let t = Tiny::new();
        let out = t.path("runs/first");
        let o = swapvm!("run", t.config(), "--out", out, "--check-every", "100");
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
        let json = std::fs::read_to_string(out.join("report.json")).unwrap();
        let report: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(report["mismatches"], 0);
        assert!(report["checks_run"].as_u64().unwrap() > 1, "{report}");
        let vmstat = std::fs::read_to_string(out.join("vmstat")).unwrap();
        // The vmstat file is the report's counters, `name value` a line, in
        // the order report.json's text has them.
        let typed: swapvm_machine::Report = serde_json::from_str(&json).unwrap();
        assert_eq!(vmstat, typed.vmstat_text());
        for l in vmstat.lines() {
            let (n, x) = l.split_once(' ').unwrap();
            assert_eq!(report["vmstat"][n].to_string(), x, "{l}");
        }
        assert!(
            vmstat.lines().any(|l| l.starts_with("pswpout ")),
            "{vmstat}"
        );
    }

    #[test]
    fn inspect_with_a_report_shows_cluster_usage() {
        let t = Tiny::new();
        let out = t.path("run");
        let o = swapvm!("run", t.config(), "--out", out);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        let o = swapvm!(
            "inspect",
            t.path("swap.img"),
            "--report",
            out.join("report.json")
        );
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("clusters") && stdout.contains("free"),
            "{stdout}"
        );
        // 32 MiB = 16 clusters: one usage row, the header cluster first.
        let row = stdout
            .lines()
            .find(|l| l.trim_start().starts_with("0  "))
            .unwrap();
        assert_eq!(row.split_whitespace().nth(1).unwrap().len(), 16, "{stdout}");
        // A report about another image is refused, naming the report.
        let other = t.path("other.img");
        assert_eq!(
            swapvm!("mkswap", &other, "--size-mib", "1").status.code(),
            Some(0)
        );
        let o = swapvm!("inspect", other, "--report", out.join("report.json"));
        assert_fails(&o, &["report.json", "uuid"]);
    }

    #[test]
    fn same_seed_gives_the_same_vmstat() {
        let seed = 7u64;
        println!("SEED={seed}");
        let vmstat = |t: &Tiny| {
            let out = t.path("out");
            let o = swapvm!("run", t.config(), "--seed", seed.to_string(), "--out", out);
            assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
            std::fs::read_to_string(out.join("vmstat")).unwrap()
        };
        let (a, b) = (Tiny::new(), Tiny::new());
        assert_eq!(vmstat(&a), vmstat(&b));
    }
}

mod set {
    use super::*;

    #[test]
    fn set_overrides_show_in_report_json() {
        let t = Tiny::new();
        let out = t.path("run");
        let o = swapvm!(
            "run",
            t.config(),
            "--set",
            "machine.seed=7",
            "--set",
            "swap.0.allocator=free-clusters-only",
            "--set",
            "reclaim.page_cluster=0",
            "--out",
            out
        );
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        let c = &v["config_loaded"];
        assert_eq!(c["machine"]["seed"], 7);
        assert_eq!(v["seed"], 7, "the run used the overridden seed");
        assert_eq!(c["swap"][0]["allocator"], "free-clusters-only");
        assert_eq!(c["reclaim"]["page_cluster"], 0);
        assert_eq!(c["machine"]["ram_mib"], 8, "fields not set stay the file's");
    }

    #[test]
    fn sizes_take_units_on_set_and_in_the_file() {
        let t = Tiny::with(
            "workload = \"workload.toml\"\n[machine]\nram_mib = \"8MiB\"\nseed = 3\n\
             [[swap]]\npath = \"swap.img\"\nsize_mib = \"16M\"\n",
            Some(TINY_WORKLOAD),
        );
        let out = t.path("run");
        let o = swapvm!(
            "run",
            t.config(),
            "--set",
            "swap.0.size_mib=32MiB",
            "--set",
            "machine.ram_mib=0.0078125G",
            "--out",
            out
        );
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        let c = &v["config_loaded"];
        assert_eq!(c["machine"]["ram_mib"], 8, "0.0078125 GiB is 8 MiB");
        assert_eq!(c["swap"][0]["size_mib"], 32);
        assert_eq!(
            std::fs::metadata(t.path("swap.img")).unwrap().len(),
            32 << 20
        );
    }

    #[test]
    fn a_bad_size_in_the_file_names_file_line_and_field() {
        let t = Tiny::with(
            "workload = \"workload.toml\"\n[machine]\nram_mib = \"8.5MiB\"\n",
            Some(TINY_WORKLOAD),
        );
        let o = swapvm!("run", t.config());
        assert_fails(
            &o,
            &[
                &t.shows("config.toml"),
                "line 3",
                "ram_mib",
                "whole number of MiB",
            ],
        );
        assert_eq!(o.status.code(), Some(2));
    }

    #[test]
    fn bad_set_exits_2_naming_the_key() {
        let t = Tiny::new();
        let cases: [(&str, &[&str]); 6] = [
            (
                "machine.bogus=1",
                &["--set machine.bogus=1", "unknown field `bogus`"],
            ),
            (
                "machine.ram_mib=abc",
                &["--set machine.ram_mib=abc", "is not a size"],
            ),
            (
                "swap.3.path=x.img",
                &["--set swap.3.path: no [[swap]] entry 3 (the config has 1)"],
            ),
            (
                "reclaim.swappiness=300",
                &["--set reclaim.swappiness=300", "0..=200"],
            ),
            (
                "machine.ram_mib=1000KiB",
                &["--set machine.ram_mib=1000KiB", "not a whole number of MiB"],
            ),
            (
                "swap.0.size_mib=32parsecs",
                &["--set swap.0.size_mib=32parsecs", "is not a size"],
            ),
        ];
        for (arg, needles) in cases {
            let o = swapvm!("run", t.config(), "--set", arg);
            let stderr = assert_fails(&o, needles);
            assert_eq!(o.status.code(), Some(2), "{arg}: {stderr}");
            assert!(!stderr.contains("line "), "{arg}: names a line: {stderr}");
        }
        assert!(!t.path("swap.img").exists(), "a bad --set created swap");
        // No `=`: the argument parser refuses it, naming the flag.
        let o = swapvm!("run", t.config(), "--set", "machine.seed");
        assert_fails(&o, &["--set", "machine.seed", "KEY=VALUE"]);
        assert_eq!(o.status.code(), Some(2));
    }
}

mod images {
    use super::*;

    /// The path of a util-linux tool; fails (never skips) if it is missing.
    fn util_linux(tool: &str) -> PathBuf {
        for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
            let p = Path::new(dir).join(tool);
            if p.exists() {
                return p;
            }
        }
        panic!(
            "{tool} not found: install util-linux (apt-get install util-linux) to run this test"
        );
    }

    const UUID: &str = "0123abcd-4567-89ef-0123-456789abcdef";

    #[test]
    fn mkswap_then_inspect() {
        let dir = tempdir();
        let img = dir.path().join("made.img");
        let o = swapvm!(
            "mkswap",
            img,
            "--size-mib",
            "4MiB",
            "--label",
            "roundtrip",
            "--uuid",
            UUID
        );
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("roundtrip") && stdout.contains(UUID),
            "{stdout}"
        );
        assert_eq!(std::fs::metadata(&img).unwrap().len(), 4 << 20);

        let o = swapvm!("inspect", img);
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
        let field = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
                .unwrap_or_else(|| panic!("no {name} in:\n{stdout}"))
        };
        assert_eq!(field("label"), "\"roundtrip\"");
        assert_eq!(field("uuid"), UUID);
        assert_eq!(field("version"), "1");
        assert_eq!(field("size"), "4 MiB (1024 pages incl. header)");
        assert_eq!(field("bad pages"), "0");
    }

    #[test]
    fn blkid_recognises_a_swapvm_image() {
        let dir = tempdir();
        let img = dir.path().join("blk.img");
        let o = swapvm!(
            "mkswap",
            img,
            "--size-mib",
            "2",
            "--label",
            "seen-by-blkid",
            "--uuid",
            UUID
        );
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        let o = Command::new(util_linux("blkid"))
            .args(["-p", "-o", "export"])
            .arg(&img)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&o);
        assert!(o.status.success(), "blkid failed: {stdout}{stderr}");
        let tags: Vec<&str> = stdout.lines().collect();
        for want in ["TYPE=swap", "LABEL=seen-by-blkid", &format!("UUID={UUID}")] {
            assert!(tags.contains(&want), "blkid lacks {want}: {tags:?}");
        }
    }

    #[test]
    fn inspect_reads_a_util_linux_image() {
        let dir = tempdir();
        let img = dir.path().join("ul.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(4 << 20)
            .unwrap();
        let o = Command::new(util_linux("mkswap"))
            .args(["-L", "from-ul", "-U", UUID])
            .arg(&img)
            .output()
            .unwrap();
        assert!(o.status.success(), "mkswap failed: {:?}", text(&o));
        let o = swapvm!("inspect", img);
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(stdout.contains("\"from-ul\""), "{stdout}");
        assert!(stdout.contains(UUID), "{stdout}");
    }

    /// A loop device over a file of `bytes`, detached on drop. Fails (never
    /// skips) when none can be set up: the test needs root and util-linux.
    struct Loop {
        dev: PathBuf,
        _dir: TempDir,
    }

    impl Loop {
        fn new(bytes: usize) -> Loop {
            let dir = tempdir();
            let backing = dir.path().join("loop.bin");
            std::fs::write(&backing, vec![0u8; bytes]).unwrap();
            let o = Command::new(util_linux("losetup"))
                .args(["-f", "--show"])
                .arg(&backing)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "losetup -f --show {} failed (this test needs root and a free loop device): {:?}",
                backing.display(),
                text(&o)
            );
            let dev = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            Loop { dev, _dir: dir }
        }
    }

    impl Drop for Loop {
        fn drop(&mut self) {
            let _ = Command::new(util_linux("losetup"))
                .arg("-d")
                .arg(&self.dev)
                .status();
        }
    }

    /// mkswap on a block device takes the device's size (BLKGETSIZE64):
    /// it used to fail with "Invalid argument" from ftruncate. A smaller
    /// --size-mib is honoured, a larger one refused naming the device.
    #[test]
    fn mkswap_on_a_loop_device_takes_its_size() {
        let lo = Loop::new(8 << 20);
        let o = swapvm!("mkswap", lo.dev, "--label", "loopy", "--uuid", UUID);
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
        // 8 MiB is 2048 pages; the header page is not a slot.
        assert!(stdout.contains("2047 slots"), "{stdout}");
        let o = Command::new(util_linux("blkid"))
            .args(["-p", "-o", "export"])
            .arg(&lo.dev)
            .output()
            .unwrap();
        let (blk, _) = text(&o);
        assert!(blk.contains("TYPE=swap"), "blkid: {blk}");
        assert!(blk.contains("LABEL=loopy"), "blkid: {blk}");
        assert!(blk.contains(UUID), "blkid: {blk}");

        let o = swapvm!("mkswap", lo.dev, "--size-mib", "4");
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(stdout.contains("1023 slots"), "{stdout}");

        let o = swapvm!("mkswap", lo.dev, "--size-mib", "16");
        assert_fails(
            &o,
            &[&lo.dev.display().to_string(), "8388608 bytes", "--size-mib"],
        );
    }

    /// An existing image whose size or label is not the config's is used
    /// as it is, with a warning naming the image and the field; an image
    /// that agrees gets none.
    #[test]
    fn an_image_that_disagrees_with_its_config_is_warned_about() {
        let t = Tiny::with(
            &format!("workload = \"workload.toml\"\n{TINY_MACHINE}{TINY_SWAP}label = \"new\"\n"),
            Some(TINY_WORKLOAD),
        );
        let img = t.path("swap.img");
        let o = swapvm!("mkswap", img, "--size-mib", "48", "--label", "old");
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        let o = swapvm!("run", t.config());
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
        let shown = t.shows("swap.img");
        for want in [
            format!("{shown}: swap[0].size_mib = 32 but the existing image holds 48 MiB"),
            format!("{shown}: swap[0].label = \"new\" but the existing image's label is \"old\""),
        ] {
            assert!(stderr.contains(&want), "stderr lacks {want:?}:\n{stderr}");
        }
        // The image was used as it was, not remade.
        assert_eq!(std::fs::metadata(&img).unwrap().len(), 48 << 20);

        let o = swapvm!("mkswap", img, "--size-mib", "32", "--label", "new");
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        let o = swapvm!("run", t.config());
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(!stderr.contains("existing image"), "{stderr}");
    }

    #[test]
    fn mkswap_of_a_file_needs_a_size() {
        let dir = tempdir();
        let img = dir.path().join("x.img");
        let o = swapvm!("mkswap", img);
        assert_fails(&o, &["x.img", "--size-mib"]);
        assert!(!img.exists());
    }
}

mod trust {
    use super::*;

    #[test]
    fn bad_fault_and_seed_bug_name_the_field() {
        let t = Tiny::new();
        let o = swapvm!("run", t.config(), "--fault", "bogus=1");
        assert_eq!(o.status.code(), Some(2));
        assert_fails(&o, &["--fault", "fault.bogus", "read_error_rate"]);
        let o = swapvm!("run", t.config(), "--fault", "write_error_rate=2");
        assert_fails(&o, &["fault.write_error_rate", "probability"]);
        let o = swapvm!("run", t.config(), "--seed-bug", "nope");
        assert_fails(&o, &["seed_bugs.nope", "hib-free-exclusive-end"]);
        let o = swapvm!("fuzz", "--seeds", "5..5");
        assert_fails(&o, &["empty"]);
    }

    #[test]
    fn run_with_faults_reports_them() {
        let t = Tiny::new();
        let o = swapvm!("run", t.config(), "--fault", "write_error_rate=0.2");
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(stdout.contains("faults injected:"), "{stdout}");
        assert!(stdout.contains("result: PASS"), "{stdout}");
    }

    #[test]
    fn fuzz_prints_seed_first_and_a_replay_command_on_failure() {
        let dir = tempdir();
        let o = swapvm!("fuzz", "--seeds", "3..5", "--dir", dir.path());
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(stdout.starts_with("SEED=3\n"), "{stdout}");
        assert!(
            stdout.contains("SEED=4\n") && stdout.contains("ok: 2 seeds"),
            "{stdout}"
        );
        let o = swapvm!(
            "fuzz",
            "--seeds",
            "0..3",
            "--dir",
            dir.path(),
            "--seed-bug",
            "hib-alloc-double-dec"
        );
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
        assert!(stdout.starts_with("SEED=0\n"), "{stdout}");
        assert!(
            stdout.contains("replay: swapvm fuzz --seeds 0..1 --seed-bug hib-alloc-double-dec"),
            "{stdout}"
        );
        assert!(
            stdout.contains("--- config.toml") && stdout.contains("[seed_bugs]"),
            "{stdout}"
        );
    }
}

/// An OOM kill is the workload's outcome on a machine too small for it:
/// exit code 3, distinct from a failed check (1) and bad input (2).
#[test]
fn an_oom_kill_exits_3_with_the_kill_in_the_summary() {
    let small_swap = "[[swap]]\npath = \"swap.img\"\nsize_mib = 4\n";
    let t = Tiny::with(
        &format!("workload = \"workload.toml\"\n{TINY_MACHINE}{small_swap}"),
        Some(TINY_WORKLOAD),
    );
    let o = swapvm!("run", t.config());
    let (stdout, stderr) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(3),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains("KILLED pid 1 usemem.0: oom-kill"),
        "{stdout}"
    );
    assert!(stdout.contains("result: OOM-KILLED"), "{stdout}");
    assert!(stdout.contains("invariants: PASS"), "{stdout}");
}

/// A closed stdout (`swapvm inspect IMG | head -c0`) ends the command
/// quietly, by SIGPIPE as coreutils end, never with a panic.
#[test]
fn a_closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempdir();
    let img = dir.path().join("x.img");
    assert_eq!(
        swapvm!("mkswap", img, "--size-mib", "1").status.code(),
        Some(0)
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_swapvm"))
        .arg("inspect")
        .arg(&img)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the child writes its first line.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.status.signal() == Some(libc_sigpipe()) || out.status.code() == Some(0),
        "{:?}: {stderr}",
        out.status
    );
}

/// SIGPIPE's number on Linux.
fn libc_sigpipe() -> i32 {
    13
}

/// Log lines to a pipe carry no terminal colour codes.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let t = Tiny::new();
    let o = swapvm!("-v", "run", t.config());
    let (_, stderr) = text(&o);
    assert!(stderr.contains("swapon"), "no info log: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "escape codes: {stderr:?}");
}

/// SIGINT during a run: the run stops at a tick boundary, drains its I/O,
/// runs the checker, prints a summary marked interrupted, writes the run
/// folder and exits 130; the image is still a valid swap area.
#[test]
fn sigint_stops_the_run_with_a_summary_and_exit_130() {
    let t = Tiny::with(
        &format!("workload = \"workload.toml\"\n{TINY_MACHINE}{TINY_SWAP}"),
        Some(
            "name = \"long\"\n[[process]]\nkind = \"usemem\"\nsize_mib = 24\n\
             passes = 400\npattern = \"random\"\nwrite_ratio = 0.5\n",
        ),
    );
    let out = t.path("run");
    let child = Command::new(env!("CARGO_BIN_EXE_swapvm"))
        .arg("run")
        .arg(t.config())
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Long enough to be swapping, far short of the 400 passes.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(stdout.contains("result: INTERRUPTED"), "{stdout}");
    assert!(stdout.contains("interrupted at tick"), "{stdout}");
    assert!(stdout.contains("invariants: PASS"), "{stdout}");
    let report = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(report.contains("\"interrupted\": true"), "{report}");
    let inspect = swapvm!("inspect", t.path("swap.img"));
    assert_eq!(inspect.status.code(), Some(0), "{:?}", text(&inspect));
}

/// A disk that fails many writes: the first 20 failures are logged one by
/// one, the rest as one count at the end, not a line each.
#[test]
fn repeated_io_errors_are_logged_a_few_times_then_counted() {
    let t = Tiny::new();
    let o = swapvm!("run", t.config(), "--fault", "write_error_rate=0.5");
    let (_, stderr) = text(&o);
    let lines = stderr.lines().filter(|l| l.contains("failed: ")).count();
    assert_eq!(lines, 20, "{stderr}");
    assert!(
        stderr.contains("more swap I/O errors were not logged"),
        "{stderr}"
    );
}

/// A second run into the same --out folder is refused before it runs
/// (the first run's results stay), and goes ahead with --force.
#[test]
fn an_out_folder_in_use_needs_force() {
    let t = Tiny::new();
    let out = t.path("run");
    assert_eq!(
        swapvm!("run", t.config(), "--out", out).status.code(),
        Some(0)
    );
    let first = std::fs::read(out.join("report.json")).unwrap();
    let o = swapvm!("run", t.config(), "--out", out, "--seed", "9");
    assert_fails(&o, &["--out", "not empty", "--force"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read(out.join("report.json")).unwrap(), first);
    let o = swapvm!("run", t.config(), "--out", out, "--seed", "9", "--force");
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_ne!(std::fs::read(out.join("report.json")).unwrap(), first);
    let o = swapvm!("run", t.config(), "--out", t.config());
    assert_fails(&o, &["not a folder"]);
}

/// `swapvm diskbench` as fio users read it: the percentile list in the
/// text, `--json` on stdout with fio's fields, `--json-file`, and the
/// bandwidth log.
mod diskbench {
    use super::*;

    #[test]
    fn text_has_the_percentile_list_and_cpu() {
        let dir = tempdir();
        let img = dir.path().join("bench.img");
        let o = swapvm!(
            "diskbench",
            img,
            "--size",
            "8M",
            "--pattern",
            "mixed",
            "--ops",
            "500"
        );
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
        for needle in [
            "p90 us",
            "p99.99 us",
            "read lat (us): min ",
            "write lat percentiles (us):",
            " 1.00th=[",
            "99.99th=[",
            "cpu: usr ",
        ] {
            assert!(stdout.contains(needle), "no {needle:?}:\n{stdout}");
        }
    }

    #[test]
    fn json_goes_to_stdout_and_json_file_bw_log_to_files() {
        let dir = tempdir();
        let img = dir.path().join("bench.img");
        let (jf, log) = (dir.path().join("r.json"), dir.path().join("bw.csv"));
        let o = swapvm!(
            "diskbench",
            img,
            "--size",
            "8M",
            "--pattern",
            "mixed",
            "--duration",
            "0.3",
            "--json",
            "--json-file",
            jf,
            "--bw-log",
            log,
            "--bw-log-interval",
            "0.05"
        );
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
        let v: serde_json::Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"));
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&jf).unwrap()).unwrap();
        assert_eq!(v, file);
        for dir in ["read", "write"] {
            let d = &v[dir];
            for k in ["iops", "bw", "bw_bytes", "io_bytes", "runtime"] {
                assert!(d[k].as_f64().is_some_and(|x| x > 0.0), "{dir}.{k}: {d}");
            }
            let pct = &d["lat_ns"]["percentile"];
            for p in [
                "50.000000",
                "90.000000",
                "99.000000",
                "99.900000",
                "99.990000",
            ] {
                assert!(pct[p].as_u64().is_some_and(|ns| ns > 0), "{dir} p{p}: {d}");
            }
        }
        assert!(v["usr_cpu"].as_f64().is_some() && v["sys_cpu"].as_f64().is_some());
        let csv = std::fs::read_to_string(&log).unwrap();
        let mut lines = csv.lines();
        assert!(lines
            .next()
            .unwrap()
            .starts_with("end_ms,interval_ms,read_ops"));
        let rows: Vec<Vec<f64>> = lines
            .map(|l| l.split(',').map(|x| x.parse().unwrap()).collect())
            .collect();
        assert!(rows.len() >= 3, "{csv}");
        assert!(rows.iter().all(|r| r.len() == 10), "{csv}");
        let reads: f64 = rows.iter().map(|r| r[2]).sum();
        assert_eq!(reads as u64, v["read"]["ops"].as_u64().unwrap(), "{csv}");
    }

    #[test]
    fn a_bad_interval_is_refused_by_the_parser() {
        let o = swapvm!(
            "diskbench",
            "/nonexistent",
            "--bw-log",
            "x",
            "--bw-log-interval",
            "0"
        );
        assert_fails(&o, &["--bw-log-interval", "positive"]);
    }
}

/// `swapvm trace record` runs a real program under Valgrind lackey.
mod record {
    use super::*;

    #[test]
    fn a_forking_shell_is_traced_with_a_pid_per_process() {
        let d = tempdir();
        let out = d.path().join("t.swvmtrace.zst");
        let o = swapvm!(
            "trace",
            "record",
            "-o",
            out,
            "--no-baseline",
            "--",
            "sh",
            "-c",
            "/bin/true; /bin/true"
        );
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(stdout.contains("records from 3 processes"), "{stdout}");
        let o = swapvm!("trace", "stats", out, "--json");
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["format"], "native", "{v}");
        let pids = v["pids"].as_array().unwrap();
        assert_eq!(pids.len(), 3, "{v}");
        assert!(v["records"].as_u64().unwrap() > 10_000, "{v}");
    }

    /// With DAMON free (root), a capture of a 32 MiB program replays as a
    /// `damon` trace of its footprint; with a kdamond on (this project's
    /// reference machine boots with one), the capture refuses, naming it,
    /// and writes nothing. Either way, the interface is left as found.
    #[test]
    fn damon_capture_records_a_program_or_names_the_busy_kdamond() {
        let kd = Path::new("/sys/kernel/mm/damon/admin/kdamonds");
        let states = || -> Vec<String> {
            let n: usize = std::fs::read_to_string(kd.join("nr_kdamonds"))
                .map_or(0, |s| s.trim().parse().unwrap_or(0));
            (0..n)
                .map(|i| std::fs::read_to_string(kd.join(format!("{i}/state"))).unwrap_or_default())
                .collect()
        };
        let before = states();
        let d = tempdir();
        let out = d.path().join("t.damon.zst");
        let touch = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/src/touch.py");
        let o = swapvm!(
            "trace",
            "record",
            "--damon",
            "--no-baseline",
            "-o",
            &out,
            "--",
            "python3",
            &touch,
            "32",
            "30"
        );
        let (stdout, stderr) = text(&o);
        if before.iter().any(|s| s.trim() == "on") {
            assert_fails(&o, &["DAMON is busy: kdamond.", "echo off"]);
            assert!(!out.exists());
        } else {
            assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
            assert!(stdout.contains("aggregation intervals"), "{stdout}");
            let o = swapvm!("trace", "stats", &out, "--json");
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(v["format"], "damon", "{v}");
            assert!(v["footprint_bytes"].as_u64().unwrap() >= 30 << 20, "{v}");
        }
        assert_eq!(states(), before, "the DAMON interface is left as found");
    }

    #[test]
    fn without_valgrind_it_says_how_to_install_it_and_writes_nothing() {
        let d = tempdir();
        let out = d.path().join("t.swvmtrace.zst");
        let o = Command::new(env!("CARGO_BIN_EXE_swapvm"))
            .args(["trace", "record", "-o"])
            .arg(&out)
            .args(["--", "/bin/true"])
            .env("PATH", d.path())
            .output()
            .unwrap();
        assert_fails(&o, &["Valgrind", "apt-get install valgrind"]);
        assert!(!out.exists());
    }
}
