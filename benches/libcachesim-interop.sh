#!/usr/bin/env bash
# Interop with libCacheSim: swapvm writes a trace as lcs and as
# zstd-compressed oracleGeneral, libCacheSim's Python package (`libcachesim`
# on PyPI, installed into a venv) reads both, and the request counts must
# equal the records swapvm wrote and `swapvm trace stats` reads back.
# Needs the network for pip the first time; exits 0 with a note (not a
# failure) when pip cannot install the package.
#
#   bash benches/libcachesim-interop.sh [PAGES] [ACCESSES]
set -euo pipefail
cd "$(dirname "$0")/.."
pages="${1:-20000}"
accesses="${2:-200000}"
venv="${LIBCACHESIM_VENV:-target/libcachesim-venv}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import libcachesim' 2>/dev/null; then
  python3 -m venv "$venv"
  if ! "$venv/bin/pip" install -q 'libcachesim==0.3.5'; then
    echo "libcachesim-interop: pip could not install libcachesim (no network?); skipped"
    exit 0
  fi
fi

cargo build -q --release -p swapvm-cli
swapvm=target/release/swapvm
[ -n "${CARGO_TARGET_DIR:-}" ] && swapvm="$CARGO_TARGET_DIR/release/swapvm"

"$swapvm" trace synth "$work/t.lcs" --pages "$pages" --accesses "$accesses" --seed 7
"$swapvm" trace synth "$work/t.oracleGeneral.zst" --pages "$pages" --accesses "$accesses" --seed 7
want=$((pages + accesses))

"$venv/bin/python" - "$work/t.lcs" "$work/t.oracleGeneral.zst" "$want" <<'PY'
import sys
import libcachesim as lcs

def count(path, kind):
    r = lcs.TraceReader(path, kind)
    n = 0
    while True:
        try:
            req = r.read_one_req()
        except RuntimeError:
            break
        if not req.valid:
            break
        n += 1
    return n, r.get_num_of_req()

want = int(sys.argv[3])
ok = True
for path, kind in [(sys.argv[1], lcs.TraceType.LCS_TRACE),
                   (sys.argv[2], lcs.TraceType.ORACLE_GENERAL_TRACE)]:
    n, told = count(path, kind)
    print(f"libcachesim {path.rsplit('/', 1)[-1]}: {n} requests read, "
          f"get_num_of_req {told} (swapvm wrote {want})")
    ok &= n == want == told
sys.exit(0 if ok else 1)
PY
echo "libcachesim-interop: same request count in lcs and oracleGeneral.zst"
