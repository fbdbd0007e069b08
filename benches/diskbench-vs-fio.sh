#!/usr/bin/env bash
# diskbench-vs-fio.sh: `swapvm diskbench` and fio side by side, on one file.
#
# For each row below, runs fio (ioengine=io_uring, direct=1) and swapvm
# diskbench with the same block size, queue depth and file, alternately:
# ROUNDS rounds of each, the order swapped every round (fio first, then
# swapvm first, ...) so that neither always runs on a disk the other has just
# warmed or tired. Then prints the mean of each tool and the ratio
# swapvm/fio per row. Only the ratio means anything: absolute figures on a
# shared or virtual disk move by 15-20% from one run to the next.
#
#   row                  fio                       swapvm diskbench
#   4K random write QD32 --rw=randwrite --bs=4k    --pattern randwrite-4k
#   4K random read QD32  --rw=randread  --bs=4k    --pattern randread-4k
#   4K random read QD1   --rw=randread  --bs=4k    --pattern randread-4k --qd 1
#   64K seq. write QD32  --rw=write     --bs=64k   --pattern seqwrite-64k
#
# Usage: benches/diskbench-vs-fio.sh [--file PATH] [--size 2G]
#            [--duration SECONDS] [--rounds N] [--keep]
#
#   --file      the test file (default disk-images/diskbench-vs-fio.img; it
#               must be on a disk filesystem that supports O_DIRECT, not
#               tmpfs). Created and filled by swapvm diskbench if missing.
#   --size      its size when created (default 2G)
#   --duration  seconds per run (default 4); the whole script takes about
#               4 rows x 2 tools x rounds x duration, plus ~15 s
#   --rounds    rounds per row and tool (default 4, at least 2)
#   --keep      keep the file afterwards (default: remove it if this script
#               created it)
#
# Environment: SWAPVM=path/to/swapvm skips the cargo build.
# Installs fio and jq with apt-get if they are missing.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FILE="$ROOT/disk-images/diskbench-vs-fio.img"
SIZE=2G
DURATION=4
ROUNDS=4
KEEP=0

while [ $# -gt 0 ]; do
    case "$1" in
        --file) FILE=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "diskbench-vs-fio: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
if [ "$ROUNDS" -lt 2 ]; then
    echo "diskbench-vs-fio: --rounds must be at least 2" >&2
    exit 2
fi

say() { printf '%s\n' "$*" >&2; }

# --- tools -----------------------------------------------------------------

need_pkgs=()
command -v fio >/dev/null 2>&1 || need_pkgs+=(fio)
command -v jq >/dev/null 2>&1 || need_pkgs+=(jq)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    say "installing ${need_pkgs[*]} with apt-get"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get install -y "${need_pkgs[@]}" >/dev/null 2>&1 ||
        { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y "${need_pkgs[@]}" >/dev/null; }
fi

if [ -z "${SWAPVM:-}" ]; then
    say "building swapvm (release)"
    (cd "$ROOT" && cargo build --release -q -p swapvm-cli)
    SWAPVM="${CARGO_TARGET_DIR:-$ROOT/target}/release/swapvm"
fi
[ -x "$SWAPVM" ] || { say "diskbench-vs-fio: no swapvm binary at $SWAPVM"; exit 2; }

# --- the file --------------------------------------------------------------

WORK=$(mktemp -d)
CREATED=0
cleanup() {
    rm -rf "$WORK"
    if [ "$CREATED" = 1 ] && [ "$KEEP" = 0 ]; then rm -f "$FILE"; fi
}
trap cleanup EXIT

mkdir -p "$(dirname "$FILE")"
if [ ! -e "$FILE" ]; then
    say "creating and filling $FILE ($SIZE)"
    CREATED=1
    # A one-second sequential run creates the file, writes every byte of it
    # first (like fio's layout), and warms the disk up.
    "$SWAPVM" diskbench "$FILE" --size "$SIZE" --pattern seqwrite-64k --duration 1 >/dev/null
fi
BYTES=$(stat -c %s "$FILE")

# --- one measurement -------------------------------------------------------

# fio_run RW BS QD -> prints "IOPS MB/s"
fio_run() {
    local out="$WORK/fio.json"
    fio --name=diskbench-vs-fio --filename="$FILE" --size="$BYTES" \
        --ioengine=io_uring --direct=1 --rw="$1" --bs="$2" --iodepth="$3" \
        --runtime="$DURATION" --time_based --output-format=json --output="$out" >/dev/null
    jq -r '.jobs[0] | (if .read.io_bytes > 0 then .read else .write end)
           | "\(.iops) \(.bw_bytes / 1e6)"' "$out"
}

# swapvm_run PATTERN QD -> prints "IOPS MB/s"
swapvm_run() {
    local out="$WORK/swapvm.json"
    "$SWAPVM" diskbench "$FILE" --pattern "$1" --qd "$2" --duration "$DURATION" \
        --json-file "$out" >/dev/null
    jq -r '.total | "\(.iops) \(.mb_per_s)"' "$out"
}

# --- the rows --------------------------------------------------------------

#      label                 fio-rw    bs   qd pattern       unit
ROWS=("4K random write QD32|randwrite|4k|32|randwrite-4k|IOPS"
      "4K random read QD32|randread|4k|32|randread-4k|IOPS"
      "4K random read QD1|randread|4k|1|randread-4k|IOPS"
      "64K seq. write QD32|write|64k|32|seqwrite-64k|MB/s")

say "file $FILE ($BYTES bytes), $ROUNDS rounds x ${DURATION} s per tool and row"
say "kernel $(uname -r), $(nproc) CPUs, $(fio --version), load $(cut -d' ' -f1-3 /proc/loadavg)"

RESULTS="$WORK/results"
: >"$RESULTS"
for row in "${ROWS[@]}"; do
    IFS='|' read -r label rw bs qd pattern unit <<<"$row"
    for round in $(seq 1 "$ROUNDS"); do
        if [ $((round % 2)) = 1 ]; then order="fio swapvm"; else order="swapvm fio"; fi
        for tool in $order; do
            if [ "$tool" = fio ]; then
                res=$(fio_run "$rw" "$bs" "$qd")
            else
                res=$(swapvm_run "$pattern" "$qd")
            fi
            read -r iops mbs <<<"$res"
            if [ "$unit" = IOPS ]; then value=$iops; else value=$mbs; fi
            say "  $(printf '%-20s round %d %-6s %10.0f %s' "$label" "$round" "$tool" "$value" "$unit")"
            printf '%s|%s|%s|%s\n' "$label" "$unit" "$tool" "$value" >>"$RESULTS"
        done
    done
done

# --- the table -------------------------------------------------------------

echo
printf '%-20s %14s %14s %7s   %s\n' "row" "fio" "swapvm" "ratio" "per-round swapvm/fio"
for row in "${ROWS[@]}"; do
    IFS='|' read -r label _ _ _ _ unit <<<"$row"
    awk -F'|' -v label="$label" -v unit="$unit" '
        $1 == label && $3 == "fio"    { f[++nf] = $4; fs += $4 }
        $1 == label && $3 == "swapvm" { s[++ns] = $4; ss += $4 }
        END {
            fm = fs / nf; sm = ss / ns
            rounds = ""
            for (i = 1; i <= nf && i <= ns; i++)
                rounds = rounds sprintf("%s%.2f", i > 1 ? " " : "", s[i] / f[i])
            printf "%-20s %9.0f %-4s %9.0f %-4s %7.2f   %s\n", label, fm, unit, sm, unit, sm / fm, rounds
        }' "$RESULTS"
done
say "load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
