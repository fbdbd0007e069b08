#!/usr/bin/env bash
# replay-vs-libcachesim.sh: the same oracleGeneral trace through
# libCacheSim's LRU (Python package `libcachesim`, its C core via
# c_process_trace) and through `swapvm replay`, in one run, printing the
# accesses per second of both and their ratio, for two cases:
#
# fits      a real program's memory trace that fits in RAM: COMMAND (default
#           `sort` of 5,000 shuffled numbers, about 19 M accesses over 2 MiB)
#           run under `valgrind --tool=lackey --trace-mem=yes`, converted by
#           `swapvm trace convert` to oracleGeneral (one record per page
#           access, every record a load: the format has no operation).
#           Cache and RAM are RAM_MIB (default 64 MiB), far above the
#           footprint: after the first touch of each page every access is a
#           hit. This is the issue's "replay of a trace that fits in RAM".
# pressure  the under-pressure case: OBJECTS objects (default 1M), REQUESTS
#           requests (default 2M) drawn from a Zipf(ALPHA = 0.9) popularity
#           over the objects (bounded support, inverse-CDF sampling, numpy
#           seed 1), object ranks shuffled over the ids so hot objects are
#           not neighbours; 24-byte records, obj_size 4096,
#           next_access_vtime -1 (neither reader uses it). RAM_MIB of RAM
#           (default 64 MiB, a quarter of the objects).
#
# swapvm maps object i to page i of pid 1 and replays every request as a
# load. Cache size: swapvm's RAM in pages (RAM_MIB * 256); libCacheSim
# counts bytes, so its cache is RAM_MIB MiB of 4096-byte objects. swapvm
# runs on a generated config: RAM_MIB of RAM, an O_DIRECT swap file big
# enough for every object, in DIR.
#
# Rates. libCacheSim: requests over the time of `process_trace` (its reader
# is opened before the clock starts). swapvm: the `replay:` line's
# accesses/s (the tick loop, trace decoding included), and "with scan":
# the same accesses over the replay plus `swapvm replay`'s validating first
# pass over the file (`trace stats`, which rejects a malformed trace before
# any swap image is touched). Each simulator runs RUNS times (default 3),
# alternating, on the same file; every run is printed, and the ratios are
# of the medians.
#
# What the ratio compares: libCacheSim is a cache simulator (a hash table
# and a list per request, no data); swapvm is a machine (page-table walk,
# 4 KiB of real bytes per page, each load's content stamp checked,
# rmap-driven reclaim, swap slots and swap cache). oracleGeneral records no
# operation, so every request is a load and no page is ever written: every
# page stays zero, so reclaim records it in the swap zeromap instead of
# writing it (swpout_zero) and a refault reads no block (swpin_zero). The
# swap file sees no I/O in this comparison: it measures the emulation's
# bookkeeping, not the disk (benches/replay-throughput.sh and `swapvm
# bench` measure replay with real swap I/O).
#
# --content none runs swapvm in metadata-only mode (`content = "none"`, a
# null swap device): the issue's under-pressure comparison is
#   --case pressure --content none --ram-mib 400
# (zipf 0.9 over 1M pages, RAM 10% of the footprint).
#
# Usage: benches/replay-vs-libcachesim.sh [--case fits|pressure|both]
#            [--runs N] [--ram-mib M] [--dir DIR] [--keep] [--swapvm BIN]...
#            [--content full|none]
#            [--command 'CMD ...'] [--trace FILE]          (fits)
#            [--objects N] [--requests N] [--alpha A]       (pressure)
# --trace FILE replays an existing oracleGeneral trace in the fits case
# instead of recording COMMAND. --keep keeps the traces in DIR (a second
# run with --keep reuses the recorded fits trace). --swapvm BIN replays
# with another swapvm binary (e.g. one built from an older commit, for a
# before/after in the same run) instead of building this tree's; give it
# several times (--swapvm A --swapvm B) to compare them side by side.
set -euo pipefail
cd "$(dirname "$0")/.."

case_=both
runs=3
objects=1000000
requests=2000000
alpha=0.9
ram_mib=64
dir=/var/tmp/swapvm-lcs-bench
keep=0
content=full
command=""
fits_trace=""
bins=()
while [ $# -gt 0 ]; do
  case "$1" in
    --case) case_="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --objects) objects="$2"; shift 2 ;;
    --requests) requests="$2"; shift 2 ;;
    --alpha) alpha="$2"; shift 2 ;;
    --ram-mib) ram_mib="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --command) command="$2"; shift 2 ;;
    --trace) fits_trace="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --content) content="$2"; shift 2 ;;
    --swapvm) bins+=("$(realpath "$2")"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
case "$content" in
  full|none) ;;
  *) echo "--content is full or none, not $content" >&2; exit 2 ;;
esac
case "$case_" in
  fits|pressure|both) ;;
  *) echo "--case is fits, pressure or both, not $case_" >&2; exit 2 ;;
esac

venv=target/libcachesim-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import libcachesim, numpy' 2>/dev/null; then
  "$venv/bin/pip" install -q libcachesim numpy
fi
if [ ${#bins[@]} -eq 0 ]; then
  cargo build --release -q -p swapvm-cli
  bins=("$PWD/target/release/swapvm")
fi
swapvm=${bins[0]}
mkdir -p "$dir"
zipf="$dir/zipf.oracleGeneral.bin"
lackey_bin="$dir/lackey.oracleGeneral.bin"
[ "$keep" = 1 ] || trap 'rm -f "$zipf" "$lackey_bin" "$dir/program.lackey" "$dir"/swap-*.img' EXIT

# One libCacheSim LRU run of $1 with a cache of $2 MiB: "seconds missratio n".
lcs_run() {
  "$venv/bin/python" - "$1" "$2" <<'PY'
import sys, time, libcachesim as lcs
path, ram_mib = sys.argv[1], int(sys.argv[2])
reader = lcs.TraceReader(path, lcs.TraceType.ORACLE_GENERAL_TRACE)
cache = lcs.LRU(ram_mib << 20)
t = time.perf_counter()
miss, byte_miss = cache.process_trace(reader)
s = time.perf_counter() - t
n = reader.get_num_of_req() if hasattr(reader, "get_num_of_req") else None
print(f"{s:.3f} {miss:.4f} {n}")
PY
}

# The machine config of case $2 for $1 objects: swap big enough for all
# of them, in an image of the case's own (an existing image is used at its
# size, so cases must not share one).
machine_config() {
  local swap_mib=$(( $1 / 256 + 64 ))
  rm -f "$dir/swap-$2.img"
  if [ "$content" = none ]; then
    # Metadata-only: no page bytes, a null device (counted, never done).
    cat > "$dir/machine-$2.toml" <<TOML
[machine]
ram_mib = $ram_mib
cpus = 2
seed = 1
content = "none"

[[swap]]
path = "null-$2"
size_mib = $swap_mib
backend = "null"
TOML
  else
    cat > "$dir/machine-$2.toml" <<TOML
[machine]
ram_mib = $ram_mib
cpus = 2
seed = 1

[[swap]]
path = "swap-$2.img"
size_mib = $swap_mib
direct = true
create = true
TOML
  fi
  echo "$swap_mib"
}

# Median of the numbers on stdin.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# compare NAME TRACE OBJECTS: RUNS alternating runs of libCacheSim and of
# each swapvm binary on TRACE.
compare() {
  local name="$1" trace="$2" objs="$3"
  local swap_mib
  swap_mib=$(machine_config "$objs" "$name")
  echo "== $name: libCacheSim LRU (cache $ram_mib MiB = $(( ram_mib * 256 )) objects of 4096 B) and"
  echo "   swapvm replay --config $dir/machine-$name.toml ($ram_mib MiB RAM, $swap_mib MiB swap, content $content), $runs runs each"
  local -a lcs_rates=()
  local -A sw_rates=() sw_scan_rates=()
  local out="" r k
  for r in $(seq 1 "$runs"); do
    local lcs lcs_s lcs_miss lcs_n l
    lcs=$(lcs_run "$trace" "$ram_mib")
    read -r lcs_s lcs_miss lcs_n <<<"$lcs"
    l=$(awk -v n="$lcs_n" -v s="$lcs_s" 'BEGIN { printf "%.0f", n / s }')
    lcs_rates+=("$l")
    printf '   run %d: libCacheSim %.2f M req/s (%s requests in %s s, miss ratio %s)\n' \
      "$r" "$(awk -v x="$l" 'BEGIN { print x / 1e6 }')" "$lcs_n" "$lcs_s" "$lcs_miss"
    for k in "${!bins[@]}"; do
      if ! out=$("${bins[$k]}" replay "$trace" --config "$dir/machine-$name.toml" --format oracle-general 2>&1); then
        echo "$out" | tail -20 >&2
        echo "swapvm[$k] failed on $trace" >&2
        exit 1
      fi
      local line sw_rate sw_n sw_s scan_s ws
      line=$(echo "$out" | grep '^replay:')
      sw_n=$(echo "$line" | sed -n 's/^replay: \([0-9]*\) page accesses.*/\1/p')
      sw_s=$(echo "$line" | sed -n 's/.* in \([0-9.]*\) s:.*/\1/p')
      sw_rate=$(echo "$line" | sed -n 's/.* s: \([0-9]*\) accesses\/s.*/\1/p')
      scan_s=$(echo "$line" | sed -n 's/.*(scan \([0-9.]*\) s).*/\1/p')
      ws=$(awk -v n="$sw_n" -v a="$sw_s" -v b="$scan_s" 'BEGIN { printf "%.0f", n / (a + b) }')
      printf '          swapvm[%d] %.2f M accesses/s, %.2f M with scan (%s accesses in %s s + scan %s s)\n' \
        "$k" "$(awk -v x="$sw_rate" 'BEGIN { print x / 1e6 }')" "$(awk -v x="$ws" 'BEGIN { print x / 1e6 }')" \
        "$sw_n" "$sw_s" "$scan_s"
      sw_rates[$k]+="$sw_rate "
      sw_scan_rates[$k]+="$ws "
    done
  done
  echo "   last run of swapvm[$(( ${#bins[@]} - 1 ))]:"
  echo "$out" | grep -E 'pgfault|pgmajfault|swpin_zero|swpout_zero|pswpin|pswpout|^verification|^result' | sed 's/^/     /' || true
  local ml ms mw
  ml=$(printf '%s\n' "${lcs_rates[@]}" | median)
  printf '%s: libCacheSim LRU %.2f M requests/s [median]\n' "$name" "$(awk -v x="$ml" 'BEGIN { print x / 1e6 }')"
  for k in "${!bins[@]}"; do
    # shellcheck disable=SC2086 # a space-separated list, split on purpose
    ms=$(printf '%s\n' ${sw_rates[$k]} | median)
    # shellcheck disable=SC2086
    mw=$(printf '%s\n' ${sw_scan_rates[$k]} | median)
    awk -v l="$ml" -v s="$ms" -v w="$mw" -v name="$name" -v k="$k" -v bin="${bins[$k]}" 'BEGIN {
      printf "%s: swapvm[%d] %.2f M accesses/s (%.2f M with scan) [medians]: ratio swapvm / libCacheSim %.3f (%.3f with scan)  (%s)\n", name, k, s / 1e6, w / 1e6, s / l, w / l, bin
    }'
  done
}

if [ "$case_" != pressure ]; then
  if [ -n "$fits_trace" ]; then
    lackey_bin="$fits_trace"
  elif [ ! -s "$lackey_bin" ]; then
    if ! command -v valgrind >/dev/null; then
      echo "valgrind is not installed (apt-get install -y valgrind)" >&2
      exit 1
    fi
    if [ -z "$command" ]; then
      seq 1 5000 | shuf --random-source=<(yes) > "$dir/input.txt"
      command="sort $dir/input.txt -o /dev/null"
    fi
    echo "== recording: valgrind --tool=lackey --trace-mem=yes $command"
    # shellcheck disable=SC2086 # COMMAND is a command line, split on purpose
    valgrind --tool=lackey --trace-mem=yes --log-file="$dir/program.lackey" $command
    "$swapvm" trace convert "$dir/program.lackey" "$lackey_bin" --to oracle-general
    rm -f "$dir/program.lackey"
  fi
  "$swapvm" trace stats "$lackey_bin" | sed -n 's/^  page accesses/   page accesses/p'
  # The swap file only needs to exist: the footprint fits in RAM.
  compare fits "$lackey_bin" 0
fi

if [ "$case_" != fits ]; then
  "$venv/bin/python" - "$zipf" "$objects" "$requests" "$alpha" <<'PY'
import sys, numpy as np
path, n, m, a = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rng = np.random.default_rng(1)
cdf = np.cumsum(1.0 / np.arange(1, n + 1) ** a)
cdf /= cdf[-1]
ranks = np.searchsorted(cdf, rng.random(m), side="right").clip(0, n - 1)
ids = rng.permutation(n)[ranks]
rec = np.zeros(m, dtype=[("t", "<u4"), ("id", "<u8"), ("sz", "<u4"), ("next", "<i8")])
rec["t"] = np.arange(m, dtype=np.uint32)
rec["id"] = ids
rec["sz"] = 4096
rec["next"] = -1
rec.tofile(path)
print(f"trace {path}: {m} requests, {len(np.unique(ids))} distinct of {n} objects, zipf {a}")
PY
  compare pressure "$zipf" "$objects"
fi
