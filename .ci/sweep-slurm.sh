#!/usr/bin/env bash
# The Slurm engine, end to end (issue 19): the 24-run shipped study
# studies/allocators.toml run by the local engine and submitted as a job
# array to the single-node cluster that .ci/slurm-cluster.sh started;
# waits for the array, collects, and checks that every counter of every
# run equals the local engine's (results.csv without its two wall-time
# columns, and each run folder's vmstat file).
#
# Usage: .ci/sweep-slurm.sh SWAPVM_BINARY
set -euo pipefail
cd "$(dirname "$0")/.."
swapvm=$(realpath "$1")
study=studies/allocators.toml
# A real disk for O_DIRECT swap images, shared by every node (one here).
work=$(mktemp -d /var/tmp/swapvm-ci-sweep.XXXXXX)
trap 'rm -rf "$work"' EXIT
started=$(date +%s)

"$swapvm" sweep "$study" --out "$work/local" 2>"$work/local.log" || { cat "$work/local.log" >&2; exit 1; }
echo "sweep-slurm: local engine: $(tail -1 "$work/local.log")"

submitted=$("$swapvm" sweep "$study" --out "$work/slurm" --engine slurm --partition ci --time 10)
echo "sweep-slurm: $submitted"
job=$(head -1 "$work/slurm/slurm/jobs")
deadline=$(( $(date +%s) + 900 ))
while squeue -h -j "$job" 2>/dev/null | grep -q .; do
  if [ "$(date +%s)" -gt "$deadline" ]; then
    echo "sweep-slurm: job $job still queued after 15 min" >&2
    squeue >&2 || true
    scancel "$job" || true
    exit 1
  fi
  sleep 1
done
"$swapvm" sweep "$study" --out "$work/slurm" --status
if ! "$swapvm" sweep "$study" --out "$work/slurm" --collect; then
  echo "sweep-slurm: not every array task finished; their output:" >&2
  tail -n 20 "$work"/slurm/slurm/*.out >&2 || true
  exit 1
fi

# Every column but wall_ms and run_wall_ms (8 and 9, results.rs).
strip() { cut -d, -f1-7,10- "$1"; }
if ! diff <(strip "$work/local/results.csv") <(strip "$work/slurm/results.csv"); then
  echo "sweep-slurm: the Slurm engine's counters differ from the local engine's" >&2
  exit 1
fi
runs=0
for d in "$work"/local/*/; do
  id=$(basename "$d")
  cmp "$d/vmstat" "$work/slurm/$id/vmstat"
  runs=$((runs + 1))
done
[ "$runs" -eq "$(( $(wc -l <"$work/local/results.csv") - 1 ))" ]
echo "sweep-slurm: $runs runs, every counter equal between the local and Slurm engines ($(( $(date +%s) - started )) s)"
