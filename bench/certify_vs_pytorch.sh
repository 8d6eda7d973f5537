#!/usr/bin/env bash
# Randomized-smoothing CERTIFY throughput on the reference CNN: `nnguard certify smooth`
# against a PyTorch implementation of the same algorithm (bench/pytorch_certify.py), on the
# same first bundled test images, same machine, same run, same thread count. Each side runs
# ROUNDS times, alternating, so machine load affects both alike.
#
# Usage: bench/certify_vs_pytorch.sh [THREADS] [IMAGES] [N] [ROUNDS]
#   THREADS  threads for both (default 2)
#   IMAGES   images certified (default 20)
#   N        estimation samples (default 10000; n0 = 100, sigma = 0.25, alpha = 0.001,
#            batches of 1000 noisy copies)
#   ROUNDS   alternating rounds (default 2)
# Needs: a release build of nnguard, and a Python with torch, numpy, scipy and safetensors
# (PYTHON, default python3).
set -euo pipefail
THREADS=${1:-2}
IMAGES=${2:-20}
N=${3:-10000}
ROUNDS=${4:-2}
PYTHON=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)
NNGUARD=${NNGUARD:-${CARGO_TARGET_DIR:-$here/../target}/release/nnguard}
SIGMA=0.25 N0=100 ALPHA=0.001 BATCH=1000

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads $THREADS; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "nnguard: $("$NNGUARD" --version); torch: $("$PYTHON" -c 'import torch; print(torch.__version__)')"
echo "CERTIFY: $IMAGES images, sigma $SIGMA, n0 $N0, n $N, alpha $ALPHA, batch $BATCH"

for round in $(seq "$ROUNDS"); do
    ours=$(RAYON_NUM_THREADS=$THREADS "$NNGUARD" certify smooth --model "$here/../testdata/reference/cnn.onnx" \
        --data bundled --limit "$IMAGES" --sigma $SIGMA --n0 $N0 --n "$N" --alpha $ALPHA --batch $BATCH --json)
    theirs=$(OMP_NUM_THREADS=$THREADS "$PYTHON" "$here/pytorch_certify.py" "$THREADS" "$IMAGES" $SIGMA $N0 "$N" $ALPHA $BATCH)
    "$PYTHON" - "$round" "$ours" "$theirs" <<'PY'
import json, sys
rnd, ours, ref = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
o_rad = sorted(ours["certified_radii"])
o_at = {r: sum(x >= r for x in o_rad) / ours["images"] for r in (0.25, 0.5, 0.75)}
print(f"round {rnd}: nnguard {ours['seconds_per_image']:.2f} s/image ({ours['noisy_samples_per_second']:.0f} samples/s), "
      f"pytorch {ref['seconds_per_image']:.2f} s/image ({ref['noisy_samples_per_second']:.0f} samples/s), "
      f"ratio {ref['seconds_per_image'] / ours['seconds_per_image']:.2f}x")
print(f"  certified accuracy at r = 0 / 0.25 / 0.5 / 0.75: nnguard {ours['certified_accuracy']:.2f} / "
      + " / ".join(f"{o_at[r]:.2f}" for r in (0.25, 0.5, 0.75))
      + f", pytorch {ref['certified_accuracy']:.2f} / "
      + " / ".join(f"{ref['certified_accuracy_at'][str(r)]:.2f}" for r in (0.25, 0.5, 0.75)))
PY
done
