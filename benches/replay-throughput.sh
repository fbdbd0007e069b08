#!/usr/bin/env bash
# replay-throughput.sh: accesses per second of `swapvm replay`, for a trace
# that fits in RAM and for one of four times RAM, on configs/replay.toml
# (64 MiB RAM, 256 MiB swap image in disk-images/).
#
#   fit   8192 pages (32 MiB, half of RAM) stored to once, then FIT_ACCESSES
#         uniform random accesses, half stores: every access after the first
#         pass is a resident hit, so this measures the trace reader, the
#         tick loop and the page-table walk.
#   x4    65536 pages (256 MiB, 4x RAM), then X4_ACCESSES uniform random
#         accesses: about 3 in 4 are major faults that wait for a real
#         swap-in through io_uring, so this measures the swapping machine.
#   x4p4  the same footprint and accesses split over 4 pids (4 processes):
#         while one waits for its swap-in the others run, so waits overlap.
#
# Usage: benches/replay-throughput.sh [--fit-accesses N] [--x4-accesses N]
#            [--dir DIR] [--keep]
#   defaults: 20000000 and 500000 accesses (about 10 s, 75 s and 30 s here);
#   traces are written to DIR (default /var/tmp/swapvm-replay-bench) and
#   removed afterwards unless --keep.
set -euo pipefail
cd "$(dirname "$0")/.."

fit_accesses=20000000
x4_accesses=500000
dir=/var/tmp/swapvm-replay-bench
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --fit-accesses) fit_accesses="$2"; shift 2 ;;
    --x4-accesses) x4_accesses="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

cargo build --release -q -p swapvm-cli
swapvm=target/release/swapvm
mkdir -p "$dir"
[ "$keep" = 1 ] || trap 'rm -f "$dir"/fit.swvmtrace "$dir"/x4.swvmtrace "$dir"/x4p4.swvmtrace' EXIT

"$swapvm" trace synth "$dir/fit.swvmtrace" --pages 8192 --accesses "$fit_accesses" --seed 1
"$swapvm" trace synth "$dir/x4.swvmtrace" --pages 65536 --accesses "$x4_accesses" --seed 1
"$swapvm" trace synth "$dir/x4p4.swvmtrace" --pages 65536 --accesses "$x4_accesses" --pids 4 --seed 1
timed=()
# GNU time adds the peak RSS: constant memory shows as the same RSS for any
# trace length.
[ -x /usr/bin/time ] && timed=(/usr/bin/time -f "   max RSS %M KiB, %e s elapsed")
for t in fit x4 x4p4; do
  echo "== $t: $swapvm replay $dir/$t.swvmtrace --config configs/replay.toml"
  "${timed[@]}" "$swapvm" replay "$dir/$t.swvmtrace" --config configs/replay.toml |
    grep -E '^replay:|^  page accesses|pswpin|pswpout|^result'
done
