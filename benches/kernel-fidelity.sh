#!/usr/bin/env bash
# kernel-fidelity.sh: the fidelity harness of record. The same usemem-shaped
# workloads on this machine's kernel and on swapvm, counter by counter.
#
# Each row: a private anonymous region of SIZE_MIB (1 GiB) under a memory
# limit of LIMIT MiB (256 and 512): touch (store to every page, in order),
# two passes of as many accesses as pages (one per page on average),
# PATTERN sequential / random / hotcold (80% of the accesses to the first,
# contiguous 20% of the region), every access of OP read (loads) or write
# (stores), then a full read pass (a load of every page, in order); exit.
# 2 limits x 3 patterns x 2 ops = 12 rows. Counters: pswpin, pswpout,
# pgmajfault, swap_ra, swap_ra_hit, over the whole run (and per phase).
#
#   benches/kernel-fidelity.sh --kernel   (root) measure the kernel: REPS
#       repetitions of each row (default 2, all rows of one repetition
#       before the next), and write the raw counters to
#       benches/results/kernel-fidelity-<YYYY-MM-DD>-<uname -r>.txt.
#   benches/kernel-fidelity.sh            (no root needed) read the newest
#       results file, run swapvm on the same rows, print the table: per row
#       and counter the kernel's mean of the repetitions, its spread
#       (|rep1 - rep2| / mean; with more reps (max - min) / mean), swapvm's
#       figure, swapvm / kernel, and `ok` when swapvm is within 10% of the
#       kernel's mean (swap_ra_hit: or within the kernel's own spread),
#       else `miss`.
#
# Options:
#   --kernel          measure the kernel (see above) instead of comparing
#   --reps N          kernel repetitions per row (default 2)
#   --size-mib N      region size (default 1024; smaller for a quick try,
#                     the limits then scale by the same factor)
#   --limits "A B"    memory limits in MiB (default "256 512")
#   --dir DIR         where the kernel's swap file goes (default
#                     /var/tmp/swapvm-fidelity; it and the file are removed)
#   --results FILE    compare against FILE instead of the newest
#                     benches/results/kernel-fidelity-*.txt; with --kernel,
#                     write FILE instead
#   --phases          also print the table per phase (touch, pass1, pass2,
#                     read); swapvm's figure of phase K is the difference of
#                     runs of its first K and K-1 phases (runs are
#                     deterministic and share their op-stream prefix)
#   --csv             print CSV (one line per row, phase and counter)
#                     instead of the table
#   --ram-mib N       swapvm's machine RAM with the memcg limit (default 4096)
#   --ram-as-limit    run swapvm with RAM = LIMIT and no cgroup (how this
#                     harness ran before swapvm had memory cgroups)
#
# Kernel side: root only. A swap file of 2 GiB (or 2 x SIZE_MIB if larger)
# in DIR (fallocate, mkswap, swapon -p 32767), swapped off and removed at
# exit even on error; before each run it is swapped off and on again (a
# fresh, empty device as swapvm's is), the page cache is dropped and
# memory compacted, and a new memory cgroup is made with the limit: cgroup
# v2 memory.max where the unified hierarchy has the memory controller,
# else the v1 controller's memory.limit_in_bytes. The workload is
# benches/src/fidelity.c (cc -O2). pswpin, pswpout, swap_ra and swap_ra_hit
# are /proc/vmstat deltas (machine-wide: no other process swaps on a quiet
# machine with the limit only on the cgroup); pgmajfault is compared from
# the cgroup's own memory.stat (file-backed major faults of other processes
# are in the /proc/vmstat figure, which is kept too). The header records
# the date, kernel, memcg version, the rotational flag of the disk holding
# DIR (/sys/dev/block/MAJ:MIN/queue/rotational, from a partition up to its
# disk), page-cluster, vma_ra_enabled and the other knobs that matter.
# Note: while any rotational swap device is on, the kernel reads ahead by
# swap offset (swap_cluster_readahead), not by address, whatever
# vma_ra_enabled says (mm/swap_state.c: swap_use_vma_readahead() checks
# nr_rotate_swap); a virtio disk reports rotational = 1.
#
# swapvm side, as the kernel ran it: configs/vmstat-compare.toml on a
# machine of RAM_MIB (default 4096) whose workload runs in a memory cgroup
# with memory.max = LIMIT (memcg limit reclaim, no global pressure); with
# --ram-as-limit the old way instead, ram_mib = LIMIT and no cgroup. Its swap
# device sized as the kernel's swap file, metadata-only (machine.content =
# "none", swap backend = "null": the same counters as full content, much
# faster), and rotational = the kernel disk's flag if this swapvm's config
# has the [[swap]] `rotational` field (probed with a tiny run; the script
# says when it is left out). The workload is kind = "phases" with the
# phases above (mmap, touch, access x 3). Release build.
set -euo pipefail
cd "$(dirname "$0")/.."

counters=(pswpin pswpout pgmajfault swap_ra swap_ra_hit)
patterns=(sequential random hotcold)
ops=(read write)

kernel=0
reps=2
size_mib=1024
limits=""
dir=/var/tmp/swapvm-fidelity
results=""
phases=0
csv=0
ram_mib=4096
ram_as_limit=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

# The whole-disk block device holding folder $1: prints "NAME MAJ:MIN
# ROTATIONAL", walking up from a partition to its disk.
disk_of() {
  local mm sys src
  mm=$(findmnt -no MAJ:MIN -T "$1" | head -1 | tr -d ' ')
  sys=""
  if [ -n "$mm" ] && [ -e "/sys/dev/block/$mm" ]; then
    sys=$(readlink -f "/sys/dev/block/$mm")
  else
    # btrfs and the like report an anonymous device: ask for the source.
    src=$(findmnt -no SOURCE -T "$1" | head -1 | sed 's/\[.*//')
    if [ -b "$src" ]; then
      sys=$(readlink -f "/sys/class/block/$(basename "$(readlink -f "$src")")")
    fi
  fi
  if [ -z "$sys" ] || [ ! -d "$sys" ]; then echo "unknown - -"; return; fi
  if [ -e "$sys/partition" ]; then sys=$(dirname "$sys"); fi
  if [ -r "$sys/queue/rotational" ]; then
    echo "$(basename "$sys") $(cat "$sys/dev") $(cat "$sys/queue/rotational")"
  else
    echo "$(basename "$sys") $(cat "$sys/dev" 2>/dev/null || echo -) -"
  fi
}

# ---------------------------------------------------------------- kernel
kernel_main() {
  [ "$(id -u)" -eq 0 ] || { echo "--kernel needs root (swapon, cgroups)" >&2; exit 1; }
  [ -n "$limits" ] || limits="$(( 256 * size_mib / 1024 )) $(( 512 * size_mib / 1024 ))"
  local swap_mib=$(( size_mib * 2 > 2048 ? size_mib * 2 : 2048 ))
  mkdir -p target/bench benches/results
  cc -O2 -o target/bench/fidelity benches/src/fidelity.c
  local bin=$PWD/target/bench/fidelity
  [ -n "$results" ] || results="benches/results/kernel-fidelity-$(date +%F)-$(uname -r).txt"

  mkdir -p "$dir"
  kswap="$dir/kernel-swap.img"
  cg=""
  partial="$results.partial"
  trap kernel_cleanup EXIT
  if awk 'NR > 1' /proc/swaps | grep -q .; then
    echo "warning: swap already active here (the counters are machine-wide):" >&2
    cat /proc/swaps >&2
  fi
  rm -f "$kswap"
  fallocate -l "${swap_mib}M" "$kswap"
  chmod 600 "$kswap"
  mkswap -q "$kswap"
  swapon -p 32767 "$kswap"

  local cgv cgroot limit_file
  if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    cgv=v2; cgroot=/sys/fs/cgroup; limit_file=memory.max
  elif grep -qw memory /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null; then
    cgv=v2; cgroot=/sys/fs/cgroup/unified; limit_file=memory.max
  elif [ -d /sys/fs/cgroup/memory ]; then
    cgv=v1; cgroot=/sys/fs/cgroup/memory; limit_file=memory.limit_in_bytes
  else
    echo "no memory cgroup controller (v2 or v1) available" >&2; exit 1
  fi
  if [ "$cgv" = v2 ] && ! grep -qw memory "$cgroot/cgroup.subtree_control"; then
    echo +memory > "$cgroot/cgroup.subtree_control"
  fi

  local disk rot
  disk=$(disk_of "$dir")
  rot=$(echo "$disk" | cut -d' ' -f3)
  local thp=/sys/kernel/mm/transparent_hugepage
  {
    echo "# kernel-fidelity raw kernel counters (benches/kernel-fidelity.sh --kernel)"
    echo "# date: $(date -u +%FT%TZ)"
    echo "# kernel: $(uname -r)"
    echo "# memcg: $cgv ($limit_file)"
    echo "# rotational: $rot (disk $(echo "$disk" | cut -d' ' -f1) $(echo "$disk" | cut -d' ' -f2), holding $dir)"
    echo "# page_cluster: $(cat /proc/sys/vm/page-cluster)"
    echo "# vma_ra_enabled: $(cat /sys/kernel/mm/swap/vma_ra_enabled 2>/dev/null || echo -)"
    if [ "$rot" = 1 ]; then
      echo "# swap_readahead: by swap offset (a rotational swap device is on: swap_use_vma_readahead() is false whatever vma_ra_enabled says)"
    fi
    echo "# swappiness: $(cat /proc/sys/vm/swappiness)"
    echo "# watermark_scale_factor: $(cat /proc/sys/vm/watermark_scale_factor)"
    echo "# zswap: $(cat /sys/module/zswap/parameters/enabled 2>/dev/null || echo -)"
    echo "# thp: $(cat $thp/enabled 2>/dev/null || echo -) (region is MADV_NOHUGEPAGE)"
    echo "# machine: $(nproc) cpus, $(awk '/MemTotal/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo)"
    echo "# swap_mib: $swap_mib (file on $(findmnt -no FSTYPE -T "$dir"), priority 32767)"
    echo "# size_mib: $size_mib"
    echo "# accesses_per_pass: $(( size_mib * 256 ))"
    echo "# reps: $reps"
    echo "# workload: benches/src/fidelity.c $(git hash-object benches/src/fidelity.c)"
    echo "# pgmajfault_cg is the cgroup's own memory.stat pgmajfault (compared); pgmajfault is /proc/vmstat's"
    echo "# columns: limit_mib pattern op rep phase seconds pswpin pswpout pgmajfault swap_ra swap_ra_hit pgmajfault_cg"
  } > "$partial"
  cat "$partial"

  local t_start rep limit pattern op
  t_start=$(date +%s)
  for rep in $(seq 1 "$reps"); do
    for limit in $limits; do
      for pattern in "${patterns[@]}"; do
        for op in "${ops[@]}"; do
          # A fresh, empty swap device, as swapvm starts with.
          swapoff "$kswap"
          swapon -p 32767 "$kswap"
          sync
          echo 1 > /proc/sys/vm/drop_caches
          echo 1 > /proc/sys/vm/compact_memory
          cg=$cgroot/swapvm-fidelity-$$
          mkdir "$cg"
          echo $(( limit << 20 )) > "$cg/$limit_file"
          local out t0
          t0=$(date +%s.%N)
          out=$(FIDELITY_CG_STAT="$cg/memory.stat" sh -c \
            "echo \$\$ > $cg/cgroup.procs && exec $bin $size_mib $pattern $op")
          rmdir "$cg"; cg=""
          echo "$out" | sed "s/^/$limit $pattern $op $rep /" | tee -a "$partial" | grep ' total ' || true
          echo "   ($(echo "$(date +%s.%N) - $t0" | bc) s; $(( $(date +%s) - t_start )) s so far)"
        done
      done
    done
  done
  echo "# elapsed_s: $(( $(date +%s) - t_start ))" >> "$partial"
  mv "$partial" "$results"
  echo "wrote $results"
}

kernel_cleanup() {
  if [ -n "${cg:-}" ] && [ -d "$cg" ]; then rmdir "$cg" 2>/dev/null || true; fi
  if grep -q "^$kswap " /proc/swaps; then swapoff "$kswap" || true; fi
  rm -f "$kswap"
  rmdir "$dir" 2>/dev/null || true
  if [ -n "${partial:-}" ] && [ -f "$partial" ]; then
    echo "incomplete run: its counters so far are in $partial" >&2
  fi
}

# ---------------------------------------------------------------- swapvm
# The phases workload of one row, with only its first $4 phases after the
# mmap (4: all of them).
workload() {
  local pattern=$1 op=$2 size=$3 nphases=$4 acc=$(( $3 * 256 )) wr hot=""
  wr=$([ "$op" = write ] && echo 1.0 || echo 0.0)
  [ "$pattern" = hotcold ] && hot=$'hot_fraction = 0.2\nhot_probability = 0.8'
  cat <<W
name = "kernel-fidelity-$pattern-$op"
description = "$size MiB: touch, 2 $pattern $op passes of one access per page, a sequential read pass"
[[process]]
kind = "phases"
$([ "$ram_as_limit" -eq 1 ] || echo 'cgroup = "/fidelity"')
[[process.phase]]
op = "mmap"
region = 0
size_mib = $size
W
  [ "$nphases" -ge 1 ] && printf '[[process.phase]]\nop = "touch"\nregion = 0\n'
  local k
  for k in 2 3; do
    [ "$nphases" -ge "$k" ] && printf '[[process.phase]]\nop = "access"\nregion = 0\naccesses = %d\npattern = "%s"\nwrite_ratio = %s\n%s\n' \
      "$acc" "$pattern" "$wr" "$hot"
  done
  [ "$nphases" -ge 4 ] && printf '[[process.phase]]\nop = "access"\nregion = 0\naccesses = %d\npattern = "sequential"\nwrite_ratio = 0.0\n' "$acc"
  return 0
}

# The config for limit $1, swap of $2 MiB, rotational $3 ("" to leave out):
# a machine of $ram_mib with a cgroup limited to $1, or of $1 itself.
config() {
  local rot_line="" ram=$ram_mib
  [ -n "$3" ] && rot_line="\\nrotational = $3"
  [ "$ram_as_limit" -eq 1 ] && ram=$1
  {
  sed -e "s/^ram_mib = .*/ram_mib = $ram/" \
      -e "s/^size_mib = .*/size_mib = $2/" \
      -e "s|^path = \"../disk-images/|path = \"$PWD/disk-images/|" \
      -e 's/^\[machine\]$/[machine]\ncontent = "none"/' \
      -e "s/^\\[\\[swap\\]\\]\$/[[swap]]\\nbackend = \"null\"$rot_line/" \
      configs/vmstat-compare.toml
  [ "$ram_as_limit" -eq 1 ] || printf '\n[[cgroup]]\npath = "/fidelity"\n"memory.max" = "%dM"\n' "$1"
  }
}

# "pswpin pswpout pgmajfault swap_ra swap_ra_hit" of swapvm's report $1.
vmstat_of() {
  python3 - "$1" <<'P'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["mismatches"] == 0 and not r["violations"], "swapvm run failed its checks"
v = dict(r["vmstat"])
print(*(v.get(k, 0) for k in ("pswpin", "pswpout", "pgmajfault", "swap_ra", "swap_ra_hit")))
P
}

compare_main() {
  if [ -z "$results" ]; then
    results=$(ls benches/results/kernel-fidelity-*.txt 2>/dev/null | sort | tail -1 || true)
    [ -n "$results" ] || { echo "no benches/results/kernel-fidelity-*.txt: run $0 --kernel (root) first" >&2; exit 1; }
  fi
  hdr() { sed -n "s/^# $1: //p" "$results" | head -1; }
  local fsize swap_mib rot
  fsize=$(hdr size_mib); swap_mib=$(hdr swap_mib | cut -d' ' -f1)
  rot=$(hdr rotational | cut -d' ' -f1)
  case "$rot" in 1) rot=true ;; 0) rot=false ;; *) rot="" ;; esac

  cargo build --release -q -p swapvm-cli
  local bin=${CARGO_TARGET_DIR:-$PWD/target}/release/swapvm
  tmp=$(mktemp -d /tmp/swapvm-fidelity.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT

  # Does this swapvm take [[swap]] rotational? A tiny run tells.
  local rot_note
  if [ -n "$rot" ]; then
    config 16 64 "$rot" > "$tmp/probe.toml"
    workload sequential read 1 1 > "$tmp/probe-w.toml"
    if "$bin" run "$tmp/probe.toml" --workload "$tmp/probe-w.toml" --json > "$tmp/probe.json" 2> "$tmp/probe.err"; then
      rot_note="rotational = $rot (the kernel's swap disk)"
    else
      rot_note="rotational left out: this swapvm refused it ($(head -c 200 "$tmp/probe.err" | tr '\n' ' '))"
      rot=""
    fi
  else
    rot_note="rotational left out: the results file does not give the kernel disk's flag"
  fi

  local t0 limit pattern op n
  t0=$(date +%s.%N)
  : > "$tmp/swapvm.txt"
  # The rows, in the results file's order.
  awk '!/^#/ && $5 == "total" && !seen[$1 " " $2 " " $3]++ { print $1, $2, $3 }' "$results" > "$tmp/rows"
  while read -r limit pattern op; do
    config "$limit" "$swap_mib" "$rot" > "$tmp/c-$limit.toml"
    local first=4
    [ "$phases" -eq 1 ] && first=1
    local prev=(0 0 0 0 0) cur
    for n in $(seq "$first" 4); do
      workload "$pattern" "$op" "$fsize" "$n" > "$tmp/w.toml"
      "$bin" run "$tmp/c-$limit.toml" --workload "$tmp/w.toml" --json > "$tmp/r.json"
      read -r -a cur <<< "$(vmstat_of "$tmp/r.json")"
      if [ "$phases" -eq 1 ]; then
        local name
        name=$(echo touch pass1 pass2 read | cut -d' ' -f"$n")
        echo "$limit $pattern $op $name $((cur[0] - prev[0])) $((cur[1] - prev[1])) $((cur[2] - prev[2])) $((cur[3] - prev[3])) $((cur[4] - prev[4]))" >> "$tmp/swapvm.txt"
        prev=("${cur[@]}")
      fi
    done
    echo "$limit $pattern $op total ${cur[*]}" >> "$tmp/swapvm.txt"
  done < "$tmp/rows"
  local took
  took=$(echo "$(date +%s.%N) - $t0" | bc)

  local machine="RAM $ram_mib MiB, workload in a memory cgroup with memory.max = the limit"
  [ "$ram_as_limit" -eq 1 ] && machine="RAM = the limit, no cgroup"
  python3 - "$results" "$tmp/swapvm.txt" "$csv" "$phases" "$rot_note" "$took" "$(git describe --always --dirty 2>/dev/null || echo -)" "$machine" <<'P'
import sys
res, svf, csv, phases, rot_note, took, describe, machine = sys.argv[1:9]
csv, phases = csv == "1", phases == "1"
C = ["pswpin", "pswpout", "pgmajfault", "swap_ra", "swap_ra_hit"]
header, kern, order = [], {}, []
for line in open(res):
    if line.startswith("#"):
        header.append(line.rstrip("\n"))
        continue
    f = line.split()
    if len(f) < 12:
        continue
    limit, pattern, op, rep, phase = f[:5]
    v = dict(zip(["pswpin", "pswpout", "pgmajfault_all", "swap_ra", "swap_ra_hit", "pgmajfault_cg"],
                 map(int, f[6:12])))
    v["pgmajfault"] = v["pgmajfault_cg"] if v["pgmajfault_cg"] >= 0 else v["pgmajfault_all"]
    key = (limit, pattern, op, phase)
    if key not in kern:
        kern[key] = []
        order.append(key)
    kern[key].append(v)
sv = {}
for line in open(svf):
    f = line.split()
    sv[tuple(f[:4])] = dict(zip(C, map(int, f[4:9])))

def judge(c, reps, s):
    vals = [r[c] for r in reps]
    mean = sum(vals) / len(vals)
    spread = (max(vals) - min(vals)) / mean if mean else (0.0 if max(vals) == 0 else float("inf"))
    if mean == 0:
        ratio, ok = None, s == 0
    else:
        ratio = s / mean
        ok = abs(ratio - 1) <= 0.10 or (c == "swap_ra_hit" and abs(ratio - 1) <= spread)
    return vals, mean, spread, ratio, "ok" if ok else "miss"

rows = [k for k in order if k in sv and (phases or k[3] == "total")]
if csv:
    print("limit_mib,pattern,op,phase,counter,kernel_reps,kernel_mean,kernel_spread_pct,swapvm,ratio,mark")
    for k in rows:
        for c in C:
            vals, mean, spread, ratio, mark = judge(c, kern[k], sv[k][c])
            print(",".join([*k, c, " ".join(map(str, vals)), "%.1f" % mean,
                            "%.1f" % (100 * spread), str(sv[k][c]),
                            "" if ratio is None else "%.3f" % ratio, mark]))
    sys.exit(0)
for h in header:
    if any(h.startswith("# " + x) for x in ("date", "kernel:", "memcg", "rotational", "page_cluster",
                                            "vma_ra", "swap_mib", "size_mib", "reps", "elapsed")):
        print(h)
print(f"# swapvm {describe}: configs/vmstat-compare.toml, {machine}, content none, backend null, {rot_note}; "
      f"{took.strip()} s for its runs")
print("# kernel = mean of the reps; spread = (max - min) / mean; ok = within 10% "
      "(swap_ra_hit: or within the kernel's spread); kernel pgmajfault = the cgroup's own")
misses = total = 0
for phase in (["total"] + (["touch", "pass1", "pass2", "read"] if phases else [])):
    print()
    print(f"== {phase}" + (" (whole run)" if phase == "total" else ""))
    print("%-24s %-12s %10s %8s %10s %7s  %s" % ("row", "counter", "kernel", "spread", "swapvm", "ratio", "mark"))
    for k in rows:
        if k[3] != phase:
            continue
        for c in C:
            vals, mean, spread, ratio, mark = judge(c, kern[k], sv[k][c])
            if phase == "total":
                total += 1
                misses += mark == "miss"
            print("%-24s %-12s %10.0f %7.1f%% %10d %7s  %s" % (
                " ".join(k[:3]), c, mean, 100 * spread, sv[k][c],
                "-" if ratio is None else "%.3f" % ratio, mark))
print()
print(f"whole-run cells ok: {total - misses} of {total}")
P
}

main() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --kernel) kernel=1; shift ;;
      --reps) reps="$2"; shift 2 ;;
      --size-mib) size_mib="$2"; shift 2 ;;
      --limits) limits="$2"; shift 2 ;;
      --dir) dir="$2"; shift 2 ;;
      --results) results="$2"; shift 2 ;;
      --phases) phases=1; shift ;;
      --csv) csv=1; shift ;;
      --ram-mib) ram_mib="$2"; shift 2 ;;
      --ram-as-limit) ram_as_limit=1; shift ;;
      -h|--help) usage ;;
      *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
  done
  if [ "$kernel" -eq 1 ]; then kernel_main; else compare_main; fi
}

# Everything above is functions: bash has read the whole file before main
# runs, so editing the script during a long --kernel run is safe.
main "$@"; exit $?
