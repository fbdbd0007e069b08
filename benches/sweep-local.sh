#!/usr/bin/env bash
# sweep-local.sh: what issue 19 asks of `swapvm sweep` with the local
# engine, measured on this machine with the 24-run study
# studies/allocators.toml:
#
# 1. speed: the sweep's wall time against the sum of its runs' wall times
#    (each task's own, results.csv `wall_ms`); the target is <= 0.6x;
# 2. resume: a second sweep is killed (SIGKILL, then a third with SIGINT)
#    once about half its runs are done, and restarted: it must finish
#    without rerunning a finished run (each finished run's sweep-run.json,
#    written once by its task, is unchanged);
# 3. equality: every run's `vmstat` in each sweep equals that of the same
#    command run alone, one after another (the commands `--list` prints).
#
# The machine's load is printed before and after (a shared machine
# changes the speed figure, not the others).
#
# Usage: benches/sweep-local.sh [--study studies/allocators.toml] [-j N]
#   SWAPVM=path/to/swapvm to use a built binary (default: cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
study=studies/allocators.toml
jobs=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    --study) study=$2; shift 2 ;;
    -j) jobs=$2; shift 2 ;;
    *) echo "usage: $0 [--study SPEC] [-j N]" >&2; exit 2 ;;
  esac
done
if [ -z "${SWAPVM:-}" ]; then
  cargo build --release -q -p swapvm-cli
  SWAPVM="${CARGO_TARGET_DIR:-target}/release/swapvm"
fi
work=$(mktemp -d /var/tmp/swapvm-sweep-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "date: $(date -u +%FT%TZ); host: $(hostname), $(nproc) CPUs; study: $study; -j $jobs"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. Speed.
t0=$(date +%s.%N)
"$SWAPVM" sweep "$study" --out "$work/a" -j "$jobs" 2>"$work/a.log"
t1=$(date +%s.%N)
python3 - "$work/a/results.csv" "$t0" "$t1" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
wall = float(sys.argv[3]) - float(sys.argv[2])
runs = sum(int(r["wall_ms"]) for r in rows) / 1000
assert all(r["status"] == "done" for r in rows), "a run is not done"
print(f"speed: {len(rows)} runs; sweep wall {wall:.1f} s; sum of run walls {runs:.1f} s; "
      f"ratio {wall / runs:.2f} (target <= 0.6)")
PY

# 2. Resume after SIGKILL and after SIGINT.
half=$(( $(wc -l <"$work/a/results.csv") / 2 ))
for sig in KILL INT; do
  out="$work/resume-$sig"
  "$SWAPVM" sweep "$study" --out "$out" -j "$jobs" 2>"$out.log1" &
  pid=$!
  while [ "$(find "$out" -name sweep-run.json 2>/dev/null | wc -l)" -lt "$half" ]; do sleep 0.05; done
  kill -s "$sig" "$pid"
  wait "$pid" || true
  # Let the children notice (SIGKILL: their parent-death signal; SIGINT:
  # they stop at a tick boundary).
  sleep 1
  before=$(cd "$out" && find . -name sweep-run.json | sort | xargs sha256sum)
  nbefore=$(printf '%s\n' "$before" | grep -c . || true)
  "$SWAPVM" sweep "$study" --out "$out" -j "$jobs" 2>"$out.log2"
  after=$(cd "$out" && find . -name sweep-run.json | sort | xargs sha256sum)
  # Every marker present before the restart is unchanged after it.
  changed=$(comm -23 <(printf '%s\n' "$before" | sort) <(printf '%s\n' "$after" | sort) | grep -c . || true)
  echo "resume after SIG$sig: $nbefore runs had finished; restart: $(grep -o '[0-9]* already finished, [0-9]* to run' "$out.log2"); finished runs rerun: $changed"
  [ "$changed" = 0 ]
  grep -q ',missing,\|,failed,' "$out/results.csv" && { echo "a run is not done" >&2; exit 1; }
done

# 3. One by one: each run's command alone, into another folder.
"$SWAPVM" sweep "$study" --out "$work/a" --list | while IFS=$'\t' read -r head cmd; do
  read -r -a argv <<<"$cmd"
  argv=("${argv[@]/#$work\/a/$work/one}")
  argv=("${argv[@]//$work\/a\//$work/one/}")
  "$SWAPVM" "${argv[@]:1}" >/dev/null
done
diffs=0
for d in "$work"/a/*/; do
  id=$(basename "$d")
  for other in "$work/one" "$work/resume-KILL" "$work/resume-INT"; do
    cmp -s "$d/vmstat" "$other/$id/vmstat" || { echo "differs: $id in $other"; diffs=$((diffs + 1)); }
  done
done
echo "equality: $(ls -d "$work"/a/*/ | wc -l) runs x 3 (one by one, resumed after SIGKILL, after SIGINT): $diffs vmstat files differ"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$diffs" = 0 ]
