#!/usr/bin/env bash
# Scan throughput of `nnguard scan` against picklescan on the same ~200 MB benign checkpoint.
#
# Needs: python3 with torch and picklescan (pip install torch picklescan), and a release
# build of the CLI (cargo build --release -p nnguard-cli), or NNGUARD=/path/to/nnguard.
# Usage: bench/scan_vs_picklescan.sh [RUNS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
runs="${1:-7}"
target="${CARGO_TARGET_DIR:-$here/../target}"
nnguard="${NNGUARD:-$target/release/nnguard}"
work="${BENCH_DIR:-$(mktemp -d)}"
ckpt="$work/checkpoint-200mb.pt"

[ -x "$nnguard" ] || { echo "no nnguard binary at $nnguard (build it or set NNGUARD)" >&2; exit 2; }
command -v picklescan >/dev/null || { echo "picklescan is not installed (pip install picklescan)" >&2; exit 2; }
[ -f "$ckpt" ] || python3 "$here/make_checkpoint.py" "$ckpt"

python3 - "$ckpt" "$runs" "$nnguard" <<'PY'
import statistics, subprocess, sys, time, os
ckpt, runs, nnguard = sys.argv[1], int(sys.argv[2]), sys.argv[3]
size_mb = os.path.getsize(ckpt) / 1e6
cmds = {
    "nnguard scan": [nnguard, "scan", ckpt],
    "nnguard scan --verify-crc": [nnguard, "scan", "--verify-crc", ckpt],
    "picklescan -p": ["picklescan", "-p", ckpt],
}
results = {}
for name, cmd in cmds.items():
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # warm the cache
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        times.append(time.perf_counter() - t)
        if rc != 0:
            sys.exit(f"{name} exited {rc} on a benign checkpoint")
    results[name] = statistics.median(times)
print(f"checkpoint: {ckpt} ({size_mb:.1f} MB), median of {runs} runs, wall time per process")
for name, t in results.items():
    print(f"{name:28s} {t*1000:9.1f} ms  {size_mb/t:9.0f} MB/s")
base = results["picklescan -p"]
for name in ("nnguard scan", "nnguard scan --verify-crc"):
    print(f"ratio {name} / picklescan: {base/results[name]:.1f}x")
PY
