#!/usr/bin/env python3
"""usemem.py SIZE_MIB PATTERN PASSES WRITE_RATIO SEED

The usemem shape swapvm runs (crates/swapvm-workload/src/usemem.rs), on the
real kernel: map SIZE_MIB anonymous, write every page once (the touch pass),
then PASSES passes of one access per page, `sequential` or uniform
`random`, each a store with probability WRITE_RATIO. Prints the
/proc/vmstat deltas of pswpin, pswpout and pgmajfault per phase, as
`phase pswpin pswpout pgmajfault` lines; with SWAPVM_CG_STAT set to a
memory cgroup's memory.stat, a fourth column: that cgroup's own
pgmajfault delta (the /proc/vmstat figures are machine-wide).
"""
import mmap
import os
import random
import sys

PAGE = 4096
NAMES = ("pswpin", "pswpout", "pgmajfault")


def vmstat():
    v = {}
    with open("/proc/vmstat") as f:
        for line in f:
            k, n = line.split()
            if k in NAMES:
                v[k] = int(n)
    return v


def cg_majfault():
    path = os.environ.get("SWAPVM_CG_STAT")
    if not path:
        return None
    with open(path) as f:
        for line in f:
            k, n = line.split()
            if k == "pgmajfault":
                return int(n)
    return None


def main():
    size_mib, pattern, passes, write_ratio, seed = sys.argv[1:6]
    pages = int(size_mib) * 256
    passes, write_ratio = int(passes), float(write_ratio)
    rng = random.Random(int(seed))
    m = mmap.mmap(-1, pages * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    before = vmstat()
    cg_before = cg_majfault()

    def report(phase):
        nonlocal before, cg_before
        now = vmstat()
        cg_now = cg_majfault()
        extra = [] if cg_now is None else [cg_now - cg_before]
        print(phase, *(now[k] - before[k] for k in NAMES), *extra, flush=True)
        before, cg_before = now, cg_now

    for p in range(pages):
        m[p * PAGE] = 1
    report("touch")
    for n in range(passes):
        for i in range(pages):
            p = i if pattern == "sequential" else rng.randrange(pages)
            if rng.random() < write_ratio:
                m[p * PAGE] = 2
            else:
                m[p * PAGE]
        report(f"pass{n + 1}")


if __name__ == "__main__":
    main()
