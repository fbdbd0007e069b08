//! The Slurm engine: one job array, one array task per run, each task
//! `swapvm sweep SPEC --run-index $SLURM_ARRAY_TASK_ID --out OUT` into
//! the shared output folder. Only `sbatch`, `squeue` and `sacct` are used.
//!
//! `OUT/slurm/` keeps the job script (`job.sh`), the job ids submitted
//! (`jobs`, one a line) and the tasks' output (`%A_%a.out`).

use super::spec::Spec;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// What a job array asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    /// `--partition`, or the cluster's default.
    pub partition: Option<String>,
    /// `--time`, or the partition's default.
    pub time: Option<String>,
    /// `--mem` per task, MiB.
    pub mem_mib: u64,
}

/// Indexes as Slurm's `--array` list: `0-3,5,7-9`.
pub fn array_list(indexes: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indexes.len() {
        let start = indexes[i];
        let mut end = start;
        while i + 1 < indexes.len() && indexes[i + 1] == end + 1 {
            i += 1;
            end = indexes[i];
        }
        parts.push(if end == start {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// A word quoted for bash.
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@%".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The job script's text. `exe`, `spec` and `out` are absolute paths, on
/// the folder every node shares.
pub fn job_script(
    exe: &Path,
    spec: &Path,
    out: &Path,
    indexes: &[usize],
    req: &JobRequest,
    sets: &[String],
) -> String {
    let name: String = spec
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut s = String::from("#!/bin/bash\n");
    s.push_str(&format!("#SBATCH --job-name=swapvm-sweep-{name}\n"));
    s.push_str(&format!("#SBATCH --array={}\n", array_list(indexes)));
    s.push_str(&format!(
        "#SBATCH --output={}\n",
        out.join("slurm").join("%A_%a.out").display()
    ));
    s.push_str("#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=1\n");
    s.push_str(&format!("#SBATCH --mem={}M\n", req.mem_mib));
    if let Some(p) = &req.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if let Some(t) = &req.time {
        s.push_str(&format!("#SBATCH --time={t}\n"));
    }
    s.push_str("# One run of the study per array task; a finished run's folder is\n");
    s.push_str("# complete, a failed or cancelled one is redone by the next submission.\n");
    let mut cmd = vec![
        "exec".to_owned(),
        sh_quote(&exe.display().to_string()),
        "sweep".into(),
        sh_quote(&spec.display().to_string()),
        "--run-index".into(),
        "\"$SLURM_ARRAY_TASK_ID\"".into(),
        "--out".into(),
        sh_quote(&out.display().to_string()),
    ];
    for set in sets {
        cmd.push("--set".into());
        cmd.push(sh_quote(set));
    }
    s.push_str(&cmd.join(" "));
    s.push('\n');
    s
}

/// Writes the job script for `indexes` and submits it; returns the job id.
pub fn submit(
    spec: &Spec,
    out: &Path,
    indexes: &[usize],
    req: &JobRequest,
    sets: &[String],
) -> Result<String> {
    let exe = std::env::current_exe().context("cannot find the swapvm executable")?;
    let spec_path = std::path::absolute(&spec.path)?;
    let out = std::path::absolute(out)?;
    let dir = out.join("slurm");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let script = dir.join("job.sh");
    std::fs::write(
        &script,
        job_script(&exe, &spec_path, &out, indexes, req, sets),
    )
    .with_context(|| format!("{}: cannot write", script.display()))?;
    let o = Command::new("sbatch")
        .arg("--parsable")
        .arg(&script)
        .output()
        .context("cannot run sbatch (is Slurm's client on the PATH?)")?;
    if !o.status.success() {
        bail!(
            "sbatch {}: {}: {}",
            script.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    // `--parsable` prints `jobid[;cluster]`.
    let text = String::from_utf8_lossy(&o.stdout);
    let id = text
        .trim()
        .split(';')
        .next()
        .filter(|s| !s.is_empty())
        .with_context(|| format!("sbatch printed no job id: {text:?}"))?
        .to_owned();
    let jobs = dir.join("jobs");
    let mut prev = std::fs::read_to_string(&jobs).unwrap_or_default();
    prev.push_str(&id);
    prev.push('\n');
    std::fs::write(&jobs, prev).with_context(|| format!("{}: cannot write", jobs.display()))?;
    Ok(id)
}

/// The job ids submitted for `out`, oldest first.
pub fn job_ids(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("slurm").join("jobs"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Array tasks of the jobs still in the queue, by state (`PENDING`,
/// `RUNNING`, ...), from `squeue`; `None` when squeue cannot be run.
pub fn queued(jobs: &[String]) -> Option<Vec<(String, usize)>> {
    if jobs.is_empty() {
        return Some(Vec::new());
    }
    let o = Command::new("squeue")
        .args(["-h", "-r", "-o", "%T", "-j", &jobs.join(",")])
        .output()
        .ok()?;
    // squeue fails on a job id it has forgotten: nothing queued then.
    let text = String::from_utf8_lossy(&o.stdout);
    let mut counts: Vec<(String, usize)> = Vec::new();
    for state in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match counts.iter_mut().find(|(s, _)| s == state) {
            Some((_, n)) => *n += 1,
            None => counts.push((state.to_owned(), 1)),
        }
    }
    Some(counts)
}

/// Tasks of the jobs that Slurm ended other than COMPLETED (FAILED,
/// TIMEOUT, OUT_OF_MEMORY, CANCELLED ...), from `sacct`, as lines
/// `jobid_task state`; empty when sacct cannot say (no accounting).
pub fn ended_badly(jobs: &[String]) -> Vec<String> {
    if jobs.is_empty() {
        return Vec::new();
    }
    let Ok(o) = Command::new("sacct")
        .args(["-n", "-X", "-P", "-o", "JobID,State", "-j", &jobs.join(",")])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once('|'))
        .filter(|(_, st)| {
            !["COMPLETED", "PENDING", "RUNNING"]
                .iter()
                .any(|ok| st.starts_with(ok))
        })
        .map(|(id, st)| format!("{id} {st}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_lists_compress_runs_of_indexes() {
        assert_eq!(array_list(&[0, 1, 2, 3]), "0-3");
        assert_eq!(array_list(&[0, 2, 3, 4, 7]), "0,2-4,7");
        assert_eq!(array_list(&[5]), "5");
        assert_eq!(array_list(&[]), "");
    }

    #[test]
    fn job_script_is_an_array_of_sweep_tasks() {
        let req = JobRequest {
            partition: Some("debug".into()),
            time: Some("00:10:00".into()),
            mem_mib: 300,
        };
        let s = job_script(
            Path::new("/opt/swapvm"),
            Path::new("/shared/studies/ra.toml"),
            Path::new("/shared/out dir"),
            &[0, 1, 2, 5],
            &req,
            &["machine.cpus=1".into()],
        );
        assert_eq!(
            s,
            "#!/bin/bash\n\
             #SBATCH --job-name=swapvm-sweep-ra\n\
             #SBATCH --array=0-2,5\n\
             #SBATCH --output=/shared/out dir/slurm/%A_%a.out\n\
             #SBATCH --ntasks=1\n\
             #SBATCH --cpus-per-task=1\n\
             #SBATCH --mem=300M\n\
             #SBATCH --partition=debug\n\
             #SBATCH --time=00:10:00\n\
             # One run of the study per array task; a finished run's folder is\n\
             # complete, a failed or cancelled one is redone by the next submission.\n\
             exec /opt/swapvm sweep /shared/studies/ra.toml --run-index \"$SLURM_ARRAY_TASK_ID\" \
             --out '/shared/out dir' --set machine.cpus=1\n"
        );
    }

    #[test]
    fn job_script_leaves_partition_and_time_to_the_cluster_when_unset() {
        let req = JobRequest {
            partition: None,
            time: None,
            mem_mib: 64,
        };
        let s = job_script(
            Path::new("/x"),
            Path::new("/s.toml"),
            Path::new("/o"),
            &[0],
            &req,
            &[],
        );
        assert!(!s.contains("--partition") && !s.contains("--time"), "{s}");
        assert!(s.contains("#SBATCH --array=0\n"), "{s}");
    }
}
