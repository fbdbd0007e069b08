#!/usr/bin/env bash
# damon-capture.sh: DAMON capture of a real program at native speed, and
# its replay beside the replay of a lackey trace of the same program.
#
# The program is python3 touching a bytearray of MIB MiB (default 640),
# one store per page, PASSES times over (default 20): benches/src/touch.py.
#
#   1. Speed: RUNS (default 3) alternating pairs of a native run and a
#      `swapvm trace record --damon` run of it; prints each wall time
#      (whole process, from start to exit), the medians and their ratio.
#   2. Replay: the last capture replayed on a machine whose RAM is a
#      quarter of the trace's footprint (swap: twice the footprint);
#      prints pswpin, pswpout, pgmajfault.
#   3. Beside lackey: a shorter run (LACKEY_MIB, default 24 MiB, 3 passes)
#      recorded both ways and both traces replayed at a quarter of each
#      one's footprint: the counters side by side.
#
# Needs root (pagemap frame numbers, DAMON's sysfs interface) and a free
# DAMON: with --pause-kdamonds, running kdamonds are stopped for the run,
# their whole sysfs configuration saved first and rebuilt at exit.
#
# Options: --mib N, --passes N, --runs N, --lackey-mib N, --pause-kdamonds
set -euo pipefail
cd "$(dirname "$0")/.."

mib=640 passes=20 runs=3 lackey_mib=24 pause=0
while [ $# -gt 0 ]; do
    case "$1" in
        --mib) mib=$2; shift 2 ;;
        --passes) passes=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --lackey-mib) lackey_mib=$2; shift 2 ;;
        --pause-kdamonds) pause=1; shift ;;
        *) echo "damon-capture.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "damon-capture.sh: needs root" >&2; exit 2; }

kd=/sys/kernel/mm/damon/admin/kdamonds
work=$(mktemp -d /var/tmp/swapvm-damon.XXXXXX)
saved=$work/kdamonds.saved
restore() {
    [ -s "$saved" ] || return 0
    # nr_* files first at each depth: they create the directories below.
    for s in "$kd"/*/state; do [ -f "$s" ] && echo off > "$s" 2>/dev/null || true; done
    grep '^\./nr_kdamonds=' "$saved" | cut -d= -f2 > "$kd/nr_kdamonds"
    grep -v '/state=\|^\./nr_kdamonds=\|tried_regions' "$saved" |
        awk -F= '{p=$1; d=gsub("/","/",p); print d, ($1 ~ /\/nr_[a-z_]+$/ ? 0 : 1), $0}' |
        sort -s -k1,1n -k2,2n | cut -d' ' -f3- |
        while IFS= read -r l; do
            v=${l#*=}; v=${v% }
            # An empty value is a new directory's default already.
            [ -z "$v" ] && continue
            echo "$v" > "$kd/${l%%=*}" 2>/dev/null || echo "restore: cannot write ${l%%=*}" >&2
        done
    grep '/state=on' "$saved" | while IFS= read -r l; do echo on > "$kd/${l%%=*}"; done
    echo "kdamonds restored" >&2
}
trap 'restore; rm -rf "$work"' EXIT
if grep -qx on "$kd"/*/state 2>/dev/null; then
    [ "$pause" = 1 ] || { echo "damon-capture.sh: a kdamond is on; pass --pause-kdamonds" >&2; exit 2; }
    (cd "$kd" && find . -type f -perm -u+w | sort | while read -r f; do
        echo "$f=$(head -c 4096 "$f" 2>/dev/null | tr '\n' ' ')"; done) > "$saved"
    for s in "$kd"/*/state; do echo off > "$s"; done
    echo 0 > "$kd/nr_kdamonds"
fi

cargo build --release -q -p swapvm-cli
sv=target/release/swapvm
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "== speed: python3 benches/src/touch.py $mib $passes, $runs alternating pairs"
: > "$work/native" ; : > "$work/damon"
for i in $(seq "$runs"); do
    t=$(now); python3 benches/src/touch.py "$mib" "$passes"; echo "$(now) - $t" | bc >> "$work/native"
    t=$(now); $sv trace record --damon --no-baseline -o "$work/big.damon.zst" -- \
        python3 benches/src/touch.py "$mib" "$passes" > /dev/null
    echo "$(now) - $t" | bc >> "$work/damon"
done
n=$(median < "$work/native"); d=$(median < "$work/damon")
echo "native s: $(tr '\n' ' ' < "$work/native")median $n"
echo "damon  s: $(tr '\n' ' ' < "$work/damon")median $d"
echo "ratio (damon / native): $(echo "scale=3; $d / $n" | bc)"

# Replays TRACE at a quarter of its footprint; prints its counters.
replay() {
    local fp ram swap
    fp=$($sv trace stats "$1" --json | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["footprint_bytes"]) >> 20)')
    ram=$(( fp / 4 )); swap=$(( fp * 2 + 64 ))
    $sv replay "$1" --json --set machine.ram_mib=$ram --set swap.0.size_mib=$swap \
        --set swap.0.path="$work/replay.img" | python3 -c '
import json, sys
r = json.load(sys.stdin); v = r["vmstat"]
print(f"footprint {'"$fp"'} MiB, RAM {'"$ram"'} MiB: " + ", ".join(f"{k} {v.get(k, 0)}" for k in ("pswpin", "pswpout", "pgmajfault")))'
    rm -f "$work/replay.img"
}
echo "== replay of the capture at a quarter of its footprint"
replay "$work/big.damon.zst"

echo "== beside lackey: python3 benches/src/touch.py $lackey_mib 3"
$sv trace record --damon --no-baseline -o "$work/small.damon.zst" -- python3 benches/src/touch.py "$lackey_mib" 3 | tail -1
$sv trace record --no-baseline -o "$work/small.swvmtrace.zst" -- python3 benches/src/touch.py "$lackey_mib" 3 | tail -1
echo -n "damon:  "; replay "$work/small.damon.zst"
echo -n "lackey: "; replay "$work/small.swvmtrace.zst"
