#!/usr/bin/env bash
# thp-swap-allocator.sh: the kernel selftest thp_swap_allocator_test
# (tools/testing/selftests/mm/) on swapvm, in both of its modes (-s, and
# -a -s) under both slot allocators, and the 64 KiB swap-out fallback share
# per iteration and once fragmented (mean of the second half).
#
# What the kernel's history shows: before the per-order cluster lists, a
# 64 KiB folio got contiguous slots only from a wholly free cluster, and
# once the device fragmented most large folios were split on swap-out;
# with them the selftest expects 0% fallback with or without -s.
#
#   benches/thp-swap-allocator.sh [--iterations N] [--seed S] [--every K]
#
# --every K prints every K-th iteration's share (default 10).
# Environment: SWAPVM=path/to/swapvm skips the cargo build.
set -euo pipefail

ITER=100 SEED=1 EVERY=10
while [ $# -gt 0 ]; do
  case "$1" in
    --iterations) ITER=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --every) EVERY=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "thp-swap-allocator.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${SWAPVM:-}" ]; then
  (cd "$ROOT" && cargo build --release -q -p swapvm-cli)
  SWAPVM="${CARGO_TARGET_DIR:-$ROOT/target}/release/swapvm"
fi

echo "# thp-swap-allocator.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) iterations=$ITER seed=$SEED"
echo "# $("$SWAPVM" --version)"
printf '%-20s %-6s %10s %10s  %s\n' allocator mode first last-half "every $EVERY"
for alloc in free-clusters-only per-order; do
  for mode in "-s" "-a -s"; do
    # shellcheck disable=SC2086 # $mode is two flags
    "$SWAPVM" thp-swap-allocator-test $mode --allocator "$alloc" \
      --iterations "$ITER" --seed "$SEED" 2>/dev/null |
      awk -v alloc="$alloc" -v mode="$mode" -v n="$ITER" -v every="$EVERY" '
        /^Iteration/ {
          i++; split($0, a, "Fallback percentage: "); v = a[2] + 0
          if (i == 1) first = v
          if (i > n / 2) { s += v; k++ }
          if (i % every == 0) line = line sprintf(" %.0f", v)
        }
        END {
          if (i != n) { print "thp-swap-allocator.sh: " alloc " " mode ": " i " of " n " iterations" > "/dev/stderr"; exit 1 }
          printf "%-20s %-6s %9.2f%% %9.2f%% %s\n", alloc, mode, first, s / k, line
        }'
  done
done
