#!/usr/bin/env bash
# usemem-vs-kernel.sh: the same usemem-shaped workload (store to every page
# of SIZE_MIB once, then SIZE_MIB/4 KiB uniform random page accesses, half
# stores) on swapvm with RAM_MIB of emulated RAM and an O_DIRECT swap file,
# and on this machine's kernel in a memory cgroup limited to RAM_MIB with a
# swap file of the same size on the same disk (DIR). Prints both wall times
# and the ratio.
#
# Defaults are the issue's 1 GiB in 256 MiB; --size-mib / --ram-mib scale it.
# Needs root (swapon, cgroups). cgroup v2 `memory.max` is used when the
# unified hierarchy has the memory controller; otherwise the v1 memory
# controller's `memory.limit_in_bytes` (the script says which it used).
# The kernel's swap file is swapped on with priority 32767 so the kernel
# swaps there first, and swapped off and removed at the end.
#
# swapvm's last run folder (report.json, timeseries.csv, plots) stays in
# DIR/run.
#
# Usage: benches/usemem-vs-kernel.sh [--size-mib N] [--ram-mib N] [--dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

size_mib=1024
ram_mib=256
dir=/var/tmp/swapvm-usemem-bench
runs=3
submit=inline
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --swapvm-submit) submit="$2"; shift 2 ;;
    --size-mib) size_mib="$2"; shift 2 ;;
    --ram-mib) ram_mib="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
swap_mib=$(( size_mib * 2 ))

cargo build --release -q -p swapvm-cli
swapvm=$PWD/target/release/swapvm
mkdir -p "$dir" target/bench
cc -O2 -o target/bench/usemem benches/src/usemem.c
cg=""
kswap="$dir/kernel-swap.img"
cleanup() {
  if [ -n "$cg" ] && [ -d "$cg" ]; then rmdir "$cg" 2>/dev/null || true; fi
  if grep -q "^$kswap " /proc/swaps; then swapoff "$kswap"; fi
  rm -f "$kswap" "$dir/swap.img"
}
trap cleanup EXIT

# --- swapvm
cat > "$dir/usemem.toml" <<TOML
name = "usemem-vs-kernel"
description = "usemem: $size_mib MiB, one random pass, half stores"
[[process]]
kind = "usemem"
count = 1
size_mib = $size_mib
passes = 1
pattern = "random"
write_ratio = 0.5
TOML
cat > "$dir/machine.toml" <<TOML
workload = "usemem.toml"
[machine]
ram_mib = $ram_mib
cpus = 2
seed = 1
[[swap]]
path = "swap.img"
size_mib = $swap_mib
direct = true
create = true
submit = "$submit"
TOML

# --- kernel set-up
fallocate -l "${swap_mib}M" "$kswap"
chmod 600 "$kswap"
mkswap -q "$kswap"
swapon -p 32767 "$kswap"
if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
  cg=/sys/fs/cgroup/swapvm-usemem-$$
  mkdir "$cg"
  echo $(( ram_mib << 20 )) > "$cg/memory.max"
  echo "   cgroup v2 $cg memory.max = $ram_mib MiB"
elif grep -qw memory /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null; then
  cg=/sys/fs/cgroup/unified/swapvm-usemem-$$
  mkdir "$cg"
  echo $(( ram_mib << 20 )) > "$cg/memory.max"
  echo "   cgroup v2 $cg memory.max = $ram_mib MiB"
elif [ -d /sys/fs/cgroup/memory ]; then
  cg=/sys/fs/cgroup/memory/swapvm-usemem-$$
  mkdir "$cg"
  echo $(( ram_mib << 20 )) > "$cg/memory.limit_in_bytes"
  echo "   no cgroup v2 memory controller here; cgroup v1 $cg memory.limit_in_bytes = $ram_mib MiB"
else
  echo "no memory cgroup controller (v2 or v1) available" >&2
  exit 1
fi
vm() { grep -E "^$1 " /proc/vmstat | cut -d' ' -f2; }
# The disk under DIR: its request counts (/sys/class/block/*/stat) show how
# many requests each side sent, after merging.
dev=$(basename "$(df --output=source "$dir" | tail -1)")
dstat=/sys/class/block/$dev/stat
[ -r "$dstat" ] || dstat=""
disk() { if [ -n "$dstat" ]; then cat "$dstat"; fi; }
# Prints the read and write requests (and pages) between two `disk` lines.
disk_delta() {
  [ -n "$dstat" ] || return 0
  echo "$1 $2" | awk '{ n = NF / 2; printf "   disk %s over the run (all its traffic): %d read requests (%d pages), %d write requests (%d pages)\n", "'"$dev"'", $(n+1) - $1, ($(n+3) - $3) / 8, $(n+5) - $5, ($(n+7) - $7) / 8 }'
}

# One swapvm run: appends "command-seconds run-seconds" to $sv_times.
swapvm_run() {
  echo "== swapvm run $1/$runs: usemem $size_mib MiB on $ram_mib MiB emulated RAM, $swap_mib MiB O_DIRECT swap file in $dir, submit = $submit"
  local t0 t1 out d0
  d0=$(disk)
  t0=$(date +%s.%N)
  rm -rf "$dir/run"
  out=$("$swapvm" run "$dir/machine.toml" --out "$dir/run")
  t1=$(date +%s.%N)
  echo "$out" | grep -E 'wall time|waiting for the disk|pgmajfault|pswpin |pswpout |^result|verif' | sed 's/^/   /' || true
  # The storing pass ends where the random pass's first swap-in comes
  # (the time series' first row with pswpin, one row per 100 ticks).
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "pswpin_pages") c = i; next }
           $c > 0 { printf "   first (storing) pass about %.2f s\n", $2 / 1000; exit }' "$dir/run/timeseries.csv"
  disk_delta "$d0" "$(disk)"
  # The run's own wall time (from the machine's start; without creating
  # the swap image and starting the process).
  sv_times+=("$(echo "$t1 - $t0" | bc) $(echo "$out" | sed -n 's/.*wall time \([0-9.]*\) s.*/\1/p')")
}

# One kernel run: appends "command-seconds usemem-seconds" to $k_times.
kernel_run() {
  echo "== kernel $(uname -r) run $1/$runs: usemem $size_mib MiB in a cgroup limited to $ram_mib MiB, $swap_mib MiB swap file in $dir"
  local in0 out0 maj0 t0 t1 inner d0
  in0=$(vm pswpin); out0=$(vm pswpout); maj0=$(vm pgmajfault)
  d0=$(disk)
  t0=$(date +%s.%N)
  inner=$(sh -c "echo \$\$ > $cg/cgroup.procs && exec target/bench/usemem $size_mib")
  t1=$(date +%s.%N)
  echo "   usemem's own wall time ${inner%% *} s, first (storing) pass ${inner##* } s; deltas of /proc/vmstat over the run (the whole machine: other processes are not limited, so they rarely swap):"
  echo "   pgmajfault $(( $(vm pgmajfault) - maj0 )), pswpin $(( $(vm pswpin) - in0 )), pswpout $(( $(vm pswpout) - out0 ))"
  disk_delta "$d0" "$(disk)"
  k_times+=("$(echo "$t1 - $t0" | bc) ${inner%% *}")
}

sv_times=()
k_times=()
for i in $(seq 1 "$runs"); do
  swapvm_run "$i"
  kernel_run "$i"
done
# Median of column $1 of the lines on stdin.
median() { sort -n -k"$1" | awk -v c="$1" '{ v[NR] = $c } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "runs (command s, workload s): swapvm ${sv_times[*]/%/;} kernel ${k_times[*]/%/;}"
sv=$(printf '%s\n' "${sv_times[@]}" | median 1); sv_run=$(printf '%s\n' "${sv_times[@]}" | median 2)
kw=$(printf '%s\n' "${k_times[@]}" | median 1); k_run=$(printf '%s\n' "${k_times[@]}" | median 2)
awk -v s="$sv" -v k="$kw" -v sr="$sv_run" -v kr="$k_run" -v n="$runs" 'BEGIN {
  printf "medians of %d runs each\n", n
  printf "whole command: swapvm %.2f s, kernel %.2f s, ratio swapvm / kernel %.2f\n", s, k, s / k
  printf "workload only: swapvm %.2f s (report wall time), kernel %.2f s (usemem clock), ratio %.2f\n", sr, kr, sr / kr
}'
