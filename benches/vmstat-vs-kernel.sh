#!/usr/bin/env bash
# vmstat-vs-kernel.sh: the same usemem workload (a region of 4x RAM written
# once, then sequential or uniform-random passes of one access per page, a
# quarter of them stores) on swapvm and, with --kernel, on this machine's
# real kernel in a memory cgroup limited to swapvm's RAM. Prints pswpin,
# pswpout and pgmajfault per phase (touch, pass1, pass2) for each side.
#
# swapvm side: configs/vmstat-compare.toml (32 MiB RAM, 256 MiB swap
# image). Runs are deterministic, so the figures of pass N are the
# difference between a run with N passes and one with N-1 (the op streams
# share their prefix); `touch` is the run with no passes.
#
# Kernel side (--kernel, root only): a 256 MiB swap file in /var/tmp is
# enabled with swapon for the duration (and disabled after, even on
# error), a memory cgroup of 32 MiB (cgroup v2 memory.max, else v1
# memory.limit_in_bytes) runs benches/usemem.py, which prints the deltas
# of /proc/vmstat per phase. /proc/vmstat is global: run it on a quiet
# machine. The Python interpreter's own few MiB count against the limit.
#
# Usage: benches/vmstat-vs-kernel.sh [--kernel] [--ram-mib N] [--passes N]
set -euo pipefail
cd "$(dirname "$0")/.."

kernel=0
ram_mib=32
passes=2
while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) kernel=1; shift ;;
    --ram-mib) ram_mib="$2"; shift 2 ;;
    --passes) passes="$2"; shift 2 ;;
    *) echo "usage: $0 [--kernel] [--ram-mib N] [--passes N]" >&2; exit 2 ;;
  esac
done
size_mib=$((4 * ram_mib))
write_ratio=0.25
tmp=$(mktemp -d /var/tmp/swapvm-vmstat-cmp.XXXXXX)
swapfile=""
cg=""
cleanup() {
  if [ -n "$swapfile" ]; then swapoff "$swapfile" 2>/dev/null || true; rm -f "$swapfile"; fi
  if [ -n "$cg" ]; then rmdir "$cg" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

cargo build --release -q -p swapvm-cli
bin=target/release/swapvm
sed "s/^ram_mib = .*/ram_mib = $ram_mib/" configs/vmstat-compare.toml > "$tmp/config.toml"
sed -i "s|^path = \"../disk-images/|path = \"$PWD/disk-images/|" "$tmp/config.toml"

# counters PATTERN PASSES: "pswpin pswpout pgmajfault" of one swapvm run.
counters() {
  cat > "$tmp/w.toml" <<W
name = "usemem-4x-$1"
description = "usemem over 4x RAM: touch, then $2 $1 passes, a quarter stores"
[[process]]
kind = "usemem"
size_mib = $size_mib
passes = $2
pattern = "$1"
write_ratio = $write_ratio
W
  "$bin" run "$tmp/config.toml" --workload "$tmp/w.toml" --json > "$tmp/r.json"
  python3 - "$tmp/r.json" <<'P'
import json, sys
r = json.load(open(sys.argv[1]))
v = dict(r["vmstat"])
assert r["mismatches"] == 0 and not r["violations"], "swapvm run failed its checks"
print(v["pswpin"], v["pswpout"], v["pgmajfault"])
P
}

echo "# usemem ${size_mib} MiB over ${ram_mib} MiB RAM, write_ratio $write_ratio"
echo "# side pattern phase pswpin pswpout pgmajfault"
for pattern in sequential random; do
  prev=(0 0 0)
  for n in $(seq 0 "$passes"); do
    read -r -a cur <<< "$(counters "$pattern" "$n")"
    phase=$([ "$n" -eq 0 ] && echo touch || echo "pass$n")
    echo "swapvm $pattern $phase $((cur[0] - prev[0])) $((cur[1] - prev[1])) $((cur[2] - prev[2]))"
    prev=("${cur[@]}")
  done
done

[ "$kernel" -eq 1 ] || exit 0
if [ "$(id -u)" -ne 0 ]; then echo "--kernel needs root" >&2; exit 1; fi
swapfile=/var/tmp/swapvm-vmstat-cmp.swap
fallocate -l $((size_mib * 2))M "$swapfile"
chmod 600 "$swapfile"
mkswap -q "$swapfile"
swapon "$swapfile"
limit=$((ram_mib << 20))
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  cg=/sys/fs/cgroup/swapvm-vmstat-cmp
  mkdir -p "$cg"
  echo "$limit" > "$cg/memory.max"
  procs="$cg/cgroup.procs"
else
  cg=/sys/fs/cgroup/memory/swapvm-vmstat-cmp
  mkdir -p "$cg"
  echo "$limit" > "$cg/memory.limit_in_bytes"
  procs="$cg/cgroup.procs"
fi
echo "# kernel: last column is the cgroup's own pgmajfault (memory.stat)"
grep -H . /proc/swaps | sed 's/^/# /'
for pattern in sequential random; do
  SWAPVM_CG_STAT="$cg/memory.stat" sh -c "echo \$\$ > $procs; exec python3 benches/usemem.py $size_mib $pattern $passes $write_ratio 1" |
    sed "s/^/kernel $pattern /"
done
