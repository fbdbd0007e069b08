//! Records the build's `git describe` and `rustc -V` for the run report.
//!
//! Both are best effort: without git (a source tarball) or outside a
//! checkout the report says `null`. The script reruns when HEAD, the branch
//! it points at, or the index moves; an edit to a tracked file alone does
//! not rerun it, so a `-dirty` mark can lag until the next commit or
//! `git add`.

use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(d) = run("git", &["describe", "--always", "--dirty", "--tags"]) {
        println!("cargo:rustc-env=SWAPVM_GIT_DESCRIBE={d}");
        // A branch ref may live only in packed-refs (a fresh clone); watch
        // both. A watched path that does not exist would rerun the script
        // on every build, so only existing ones are named.
        let mut watch = vec![
            "HEAD".to_owned(),
            "index".to_owned(),
            "packed-refs".to_owned(),
        ];
        if let Some(branch) = run("git", &["symbolic-ref", "-q", "HEAD"]) {
            watch.push(branch);
        }
        for w in watch {
            let path = run(
                "git",
                &["rev-parse", "--path-format=absolute", "--git-path", &w],
            );
            if let Some(p) = path.filter(|p| std::path::Path::new(p).exists()) {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    if let Some(v) = run(&rustc, &["-V"]) {
        println!("cargo:rustc-env=SWAPVM_RUSTC_VERSION={v}");
    }
}
