//! `swapvm bench`: throughput and footprint figures for fixed seeds, in one
//! run, each beside what it is compared with (a bare page-table walk, the
//! kernel's per-page metadata), so ratios come from the same moment on a
//! shared machine.

use anyhow::{Context, Result};
use std::path::PathBuf;
use swapvm_core::config::ContentMode;
use swapvm_machine::bench::{self, ResidentFigures, RunFigures};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A short run (seconds): smaller regions, streams and machines.
    #[arg(long)]
    quick: bool,
    /// Also measure resident accesses at 16 GiB of emulated RAM (faults in
    /// 8 GiB of host memory).
    #[arg(long)]
    big: bool,
    /// Folder for the swap files and traces (a temporary folder in it is
    /// created and removed).
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Seed of the random address streams and traces.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Internal: run only the footprint machine `RAM_MIB:full|none` in
    /// `--dir` and print its figures on one line (`swapvm bench` runs each
    /// in its own process, so its peak RSS is that machine's alone).
    #[arg(long, hide = true, value_name = "RAM_MIB:CONTENT")]
    footprint: Option<String>,
}

/// The child side of `--footprint`: one machine, one `FOOTPRINT` line.
fn footprint_child(a: &BenchArgs, spec: &str) -> Result<i32> {
    let (ram, content) = spec
        .split_once(':')
        .with_context(|| format!("--footprint {spec}: expected RAM_MIB:full|none"))?;
    let ram: u64 = ram
        .parse()
        .with_context(|| format!("--footprint {spec}: RAM_MIB is not a number"))?;
    let content = match content {
        "full" => ContentMode::Full,
        "none" => ContentMode::None,
        _ => anyhow::bail!("--footprint {spec}: content must be full or none"),
    };
    let f = bench::footprint(&a.dir, ram, content)?;
    println!(
        "FOOTPRINT {} {} {} {} {} {}",
        bench::peak_rss_kib().unwrap_or(0),
        f.ram_mapped_bytes,
        f.run.accesses,
        f.run.secs,
        f.run.pswpout,
        u8::from(f.run.passed)
    );
    Ok(0)
}

/// Runs the footprint machine `ram`/`content` in a child `swapvm bench
/// --footprint` and prints its line.
fn footprint(dir: &std::path::Path, ram: u64, content: ContentMode) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the swapvm binary to re-run")?;
    let out = std::process::Command::new(&exe)
        .arg("bench")
        .arg("--dir")
        .arg(dir)
        .arg("--footprint")
        .arg(format!("{ram}:{}", content.name()))
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("FOOTPRINT "))
        .with_context(|| {
            format!(
                "footprint run {ram} MiB {} failed: {}",
                content.name(),
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let v: Vec<f64> = line.split(' ').filter_map(|x| x.parse().ok()).collect();
    anyhow::ensure!(v.len() == 6, "footprint line `{line}` has not six figures");
    let frames = (ram * 256) as f64;
    let hwm_mib = v[0] / 1024.0;
    println!(
        "footprint content = {:<4} ram {:>5} MiB, swap {:>5} MiB {}: peak RSS {:.1} MiB ({:.0} B per emulated page), page content mapped {:.1} MiB ({:.0} B per frame); usemem 1.25x RAM {:.0} accesses/s, pswpout {:.0}, {}",
        content.name(),
        ram,
        ram * 2,
        if content == ContentMode::Full { "O_DIRECT file" } else { "null device" },
        hwm_mib,
        v[0] * 1024.0 / frames,
        v[1] / (1024.0 * 1024.0),
        v[1] / frames,
        v[2] / v[3],
        v[4],
        match (content, v[5] > 0.0) {
            (ContentMode::Full, true) => "verified",
            (ContentMode::Full, false) => "NOT verified",
            (ContentMode::None, true) => "checker passed, verification off",
            (ContentMode::None, false) => "checker FAILED",
        }
    );
    Ok(())
}

fn mps(x: f64) -> String {
    format!("{:.1} M/s", x / 1e6)
}

fn print_resident(label: &str, f: &ResidentFigures) {
    for (pattern, r) in [("sequential", f.sequential), ("random", f.random)] {
        println!(
            "resident {label} {pattern:<10} ram {:>5} MiB region {:>7} pages: swapvm {:>10}  baseline 4-level walk {:>10}  ratio {:.2}",
            f.ram_mib,
            f.region_pages,
            mps(r.swapvm_per_s),
            mps(r.baseline_per_s),
            r.ratio()
        );
    }
}

fn print_run(label: &str, f: &RunFigures) {
    println!(
        "{label}: {} accesses in {:.2} s: {:.0} accesses/s, {} faults ({} major) {:.0} faults/s, pswpout {}, verified {}",
        f.accesses,
        f.secs,
        f.accesses_per_s(),
        f.faults,
        f.major_faults,
        f.faults_per_s(),
        f.pswpout,
        if f.passed { "yes" } else { "NO" }
    );
}

pub fn run(a: BenchArgs) -> Result<i32> {
    if let Some(spec) = &a.footprint {
        return footprint_child(&a, spec);
    }
    let tmp = tempfile::Builder::new()
        .prefix("swapvm-bench-")
        .tempdir_in(&a.dir)
        .with_context(|| format!("{}: cannot create a bench folder", a.dir.display()))?;
    let q = a.quick;
    println!(
        "swapvm bench{} (seed {}, files in {})",
        if q { " --quick" } else { "" },
        a.seed,
        tmp.path().display()
    );

    // Resident accesses: half of RAM mapped and faulted in, loads only.
    let (accesses, rounds) = if q { (1 << 20, 2) } else { (1 << 23, 5) };
    let mut sizes: Vec<u64> = if q { vec![64, 256] } else { vec![256, 2048] };
    if a.big {
        sizes.push(16384);
    }
    let mut pgtable = 0.0;
    for &mib in &sizes {
        let f = bench::resident(mib, mib * 128, accesses, rounds, a.seed)
            .with_context(|| format!("cannot map {mib} MiB of emulated RAM"))?;
        print_resident("access", &f);
        pgtable = f.pgtable_bytes_per_page;
    }

    // Faults under pressure: usemem at 4x RAM on a real swap file.
    let (ram, each) = if q { (8, 8) } else { (32, 32) };
    let f = bench::usemem(tmp.path(), ram, 4, each)?;
    print_run(
        &format!("usemem 4 x {each} MiB on {ram} MiB RAM, O_DIRECT swap file"),
        &f,
    );

    // Replay of synthetic native traces: fits in RAM, then 4x RAM.
    let (ram, fit_acc) = if q {
        (16u64, 1u64 << 19)
    } else {
        (64, 1 << 22)
    };
    let fit_pages = ram * 256 / 2;
    let f = bench::replay(tmp.path(), ram, fit_pages, fit_acc, a.seed)?;
    print_run(
        &format!("replay fits  ({fit_pages} pages on {ram} MiB RAM)"),
        &f,
    );
    let (ram, big_pages) = if q { (8u64, 8192u64) } else { (32, 32768) };
    let f = bench::replay(tmp.path(), ram, big_pages, big_pages, a.seed)?;
    print_run(
        &format!("replay 4xRAM ({big_pages} pages on {ram} MiB RAM)"),
        &f,
    );

    let m = bench::metadata(pgtable);
    println!(
        "metadata per 4 KiB page: struct Page {} B + LRU link {} B (kernel 64 B), page table {:.2} B per mapped page (kernel 8 B PTE + upper levels), swap table {:.3} B per slot (kernel 8 B); swapvm total {:.2} B vs kernel 80 B; verification checksum {} B per slot on top",
        m.page,
        m.lru_link,
        m.pgtable,
        m.swap_slot,
        (m.page + m.lru_link) as f64 + m.pgtable + m.swap_slot,
        m.verify_slot
    );
    // Host memory with page bytes and without: the same usemem at 1.25x
    // RAM in both modes, each machine alone in a child process (so its
    // peak RSS is its own), then metadata-only alone at larger sizes
    // (16 GiB with --big).
    let both = if q { 64 } else { 256 };
    let mut runs = vec![(both, ContentMode::Full), (both, ContentMode::None)];
    if !q {
        // (Full mode at 2 GiB takes minutes of swap-file I/O on a shared
        // disk; its RSS is the 2 GiB arena plus what 256 MiB shows.)
        runs.push((2048, ContentMode::None));
    }
    if a.big {
        runs.push((16384, ContentMode::None));
    }
    for (ram, content) in runs {
        footprint(tmp.path(), ram, content)?;
    }
    println!(
        "metadata-only per 4 KiB page: struct Page {} B + LRU link {} B + content word 8 B (instead of 4096 B of page bytes) + page table {:.2} B + swap table {:.3} B + null device word 8 B per slot (instead of the verifier's 8 B checksum and 4096 B on disk)",
        m.page, m.lru_link, m.pgtable, m.swap_slot
    );
    match bench::peak_rss_kib() {
        Some(kib) => println!("peak RSS (VmHWM) {:.1} MiB", kib as f64 / 1024.0),
        None => println!("peak RSS (VmHWM) unavailable: no /proc/self/status"),
    }
    Ok(0)
}
