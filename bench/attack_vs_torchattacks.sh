#!/usr/bin/env bash
# Attack throughput on the reference CNN: `nnguard attack` against torchattacks, one after the
# other on the same machine with the same thread count, on the first N Fashion-MNIST test images
# in batches of 250. Attacks: PGD-Linf (eps 0.1, 20 steps of 0.01, random start), APGD-CE
# (eps 0.1, 100 steps) and Square-Linf (eps 0.1, 1000 queries, p_init 0.8).
#
# nnguard's time is the whole process (start, loading the model and data, the attack, the
# harness's re-check of every result and the report), the median of REPEATS runs; torchattacks'
# is the attack loop plus a final forward pass per batch, also the median of REPEATS runs.
#
# Usage: bench/attack_vs_torchattacks.sh [N] [THREADS] [REPEATS]
# Needs: Fashion-MNIST in /usr/share/datasets/fashion-mnist, a release build of nnguard, and a
# Python with torch, torchattacks and safetensors (PYTHON, default python3).
set -euo pipefail
N=${1:-1000}
THREADS=${2:-2}
REPEATS=${3:-3}
PYTHON=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)
NNGUARD=${NNGUARD:-${CARGO_TARGET_DIR:-$here/../target}/release/nnguard}
weights="$here/../testdata/reference/cnn.safetensors"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads $THREADS; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "nnguard: $("$NNGUARD" --version); torchattacks: $("$PYTHON" -c 'import torchattacks, torch; print(torchattacks.__version__, "torch", torch.__version__)')"

run_nnguard() { # name, extra flags...
    local name=$1
    shift
    for r in $(seq "$REPEATS"); do
        local t0 t1
        t0=$(date +%s.%N)
        RAYON_NUM_THREADS=$THREADS "$NNGUARD" attack "$name" --model "$weights" --data fashion-mnist \
            --limit "$N" --eps 0.1 --batch-size 250 "$@" --json > "$tmp/$name-$r.json"
        t1=$(date +%s.%N)
        echo "$t0 $t1" > "$tmp/$name-$r.time"
    done
    "$PYTHON" - "$tmp" "$name" "$REPEATS" "$N" <<'PY'
import json, statistics, sys
tmp, name, repeats, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
walls, attack = [], []
for r in range(1, repeats + 1):
    t0, t1 = map(float, open(f"{tmp}/{name}-{r}.time").read().split())
    walls.append(t1 - t0)
    report = json.load(open(f"{tmp}/{name}-{r}.json"))
    attack.append(report["timings"]["attack_seconds"])
robust = report["summary"]["curve"][0]["robust_accuracy"]
wall = statistics.median(walls)
print(json.dumps({"tool": "nnguard", "attack": name, "images": n, "wall_seconds": wall,
                  "attack_seconds": statistics.median(attack), "images_per_second": n / wall,
                  "robust_accuracy": robust}))
PY
}

run_nnguard pgd --steps 20 --step 0.01 | tee "$tmp/nnguard-pgd.json"
OMP_NUM_THREADS=$THREADS "$PYTHON" "$here/torchattacks_cnn.py" "$weights" "$THREADS" "$N" 250 "$REPEATS" pgd | tee "$tmp/ta-pgd.json"
run_nnguard apgd-ce --steps 100 | tee "$tmp/nnguard-apgd.json"
OMP_NUM_THREADS=$THREADS "$PYTHON" "$here/torchattacks_cnn.py" "$weights" "$THREADS" "$N" 250 "$REPEATS" apgd | tee "$tmp/ta-apgd.json"
run_nnguard square --queries 1000 | tee "$tmp/nnguard-square.json"
OMP_NUM_THREADS=$THREADS "$PYTHON" "$here/torchattacks_cnn.py" "$weights" "$THREADS" "$N" 250 "$REPEATS" square | tee "$tmp/ta-square.json"

"$PYTHON" - "$tmp" <<'PY'
import json, sys
tmp = sys.argv[1]
print("| attack | nnguard img/s | torchattacks img/s | ratio | robust acc nnguard | robust acc torchattacks |")
print("| --- | --- | --- | --- | --- | --- |")
for a in ["pgd", "apgd", "square"]:
    ours, theirs = json.load(open(f"{tmp}/nnguard-{a}.json")), json.load(open(f"{tmp}/ta-{a}.json"))
    print(f"| {a} | {ours['images_per_second']:.1f} | {theirs['images_per_second']:.1f} | "
          f"{ours['images_per_second'] / theirs['images_per_second']:.2f}× | "
          f"{100 * ours['robust_accuracy']:.1f}% | {100 * theirs['robust_accuracy']:.1f}% |")
PY
