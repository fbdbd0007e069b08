#!/usr/bin/env bash
# replay-vs-libcachesim.sh: the same oracleGeneral trace through
# libCacheSim's LRU (Python package `libcachesim`, its C core via
# c_process_trace) and through `swapvm replay`, in one run, printing the
# requests per second of both and their ratio.
#
# The trace: OBJECTS objects (default 1M), REQUESTS requests (default 2M)
# drawn from a Zipf(ALPHA = 0.9) popularity over the objects (bounded
# support, inverse-CDF sampling, numpy seed 1), object ranks shuffled over
# the ids so hot objects are not neighbours; 24-byte oracleGeneral records,
# obj_size 4096, next_access_vtime -1 (neither reader uses it). swapvm maps
# object i to page i of pid 1 and replays every request as a load.
#
# Cache size: swapvm's RAM in pages (RAM_MIB * 256); libCacheSim counts
# bytes, so its cache is RAM_MIB MiB of 4096-byte objects. swapvm runs on a
# generated config: RAM_MIB of RAM, an O_DIRECT swap file big enough for
# every object, in DIR.
#
# What the ratio compares: libCacheSim is a cache simulator (a hash table
# and a list per request, no data); swapvm is a machine (page-table walk,
# 4 KiB of real bytes per page verified on every load, rmap-driven reclaim,
# swap slots and swap cache). oracleGeneral records no operation, so every
# request is a load and no page is ever written: every page stays zero, so
# reclaim records it in the swap zeromap instead of writing it
# (swpout_zero) and a refault reads no block (swpin_zero). The swap file
# sees no I/O in this comparison: it measures the emulation's bookkeeping,
# not the disk (benches/replay-throughput.sh and `swapvm bench` measure
# replay with real swap I/O).
#
# Usage: benches/replay-vs-libcachesim.sh [--objects N] [--requests N]
#            [--alpha A] [--ram-mib M] [--dir DIR] [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."

objects=1000000
requests=2000000
alpha=0.9
ram_mib=64
dir=/var/tmp/swapvm-lcs-bench
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --objects) objects="$2"; shift 2 ;;
    --requests) requests="$2"; shift 2 ;;
    --alpha) alpha="$2"; shift 2 ;;
    --ram-mib) ram_mib="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

venv=target/libcachesim-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import libcachesim, numpy' 2>/dev/null; then
  "$venv/bin/pip" install -q libcachesim numpy
fi
cargo build --release -q -p swapvm-cli
swapvm=$PWD/target/release/swapvm
mkdir -p "$dir"
trace="$dir/zipf.oracleGeneral.bin"
[ "$keep" = 1 ] || trap 'rm -f "$trace" "$dir/swap.img"' EXIT

"$venv/bin/python" - "$trace" "$objects" "$requests" "$alpha" <<'PY'
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

swap_mib=$(( objects / 256 + 64 ))
cat > "$dir/machine.toml" <<TOML
[machine]
ram_mib = $ram_mib
cpus = 2
seed = 1

[[swap]]
path = "swap.img"
size_mib = $swap_mib
direct = true
create = true
TOML

echo "== libCacheSim LRU, cache $ram_mib MiB = $(( ram_mib * 256 )) pages of 4096 B"
lcs=$("$venv/bin/python" - "$trace" "$ram_mib" <<'PY'
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
)
read -r lcs_s lcs_miss lcs_n <<<"$lcs"
echo "   $lcs_n requests in $lcs_s s, miss ratio $lcs_miss"

echo "== swapvm replay --config $dir/machine.toml ($ram_mib MiB RAM, $swap_mib MiB swap, O_DIRECT)"
out=$("$swapvm" replay "$trace" --config "$dir/machine.toml" --format oracle-general)
echo "$out" | grep -E '^replay:|pgmajfault|swpin_zero|swpout_zero|pswpin|pswpout| reads .* writes|^result' | sed 's/^/   /' || true
sw_rate=$(echo "$out" | sed -n 's/^replay: .* s: \([0-9]*\) accesses\/s.*/\1/p')
sw_n=$(echo "$out" | sed -n 's/^replay: \([0-9]*\) page accesses.*/\1/p')
majf=$(echo "$out" | grep -oE 'pgmajfault +[0-9]+' | grep -oE '[0-9]+$' || true)

awk -v n="$lcs_n" -v s="$lcs_s" -v r="$sw_rate" -v sn="$sw_n" -v mj="$majf" -v lm="$lcs_miss" 'BEGIN {
  l = n / s
  printf "libCacheSim LRU: %.0f requests/s (miss ratio %s)\n", l, lm
  printf "swapvm replay:   %.0f accesses/s (%s accesses, %s major faults = %.4f of accesses)\n", r, sn, mj, (sn > 0 ? mj / sn : 0)
  printf "ratio swapvm / libCacheSim: %.4f (libCacheSim %.0fx faster)\n", r / l, l / r
}'
