#!/usr/bin/env bash
# Training and input-gradient throughput of the reference CNN: nnguard against PyTorch on the
# same machine, in the same run, with the same thread count.
#
# Usage: bench/train_vs_pytorch.sh [THREADS] [IMAGES] [EPOCHS] [REPEAT]
#   THREADS  threads for both (default 2)
#   IMAGES   training images per epoch (default 60000, all of Fashion-MNIST)
#   EPOCHS   timed epochs (the median is compared; default 1)
#   REPEAT   timed passes of the gradient benchmark (default 5)
# Needs: Fashion-MNIST in /usr/share/datasets/fashion-mnist (apt-get install
# dataset-fashion-mnist), a release build of nnguard, and a Python with torch and numpy
# (PYTHON, default python3).
set -euo pipefail
THREADS=${1:-2}
IMAGES=${2:-60000}
EPOCHS=${3:-1}
REPEAT=${4:-5}
PYTHON=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)
NNGUARD=${NNGUARD:-${CARGO_TARGET_DIR:-$here/../target}/release/nnguard}

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads $THREADS"
echo "nnguard: $("$NNGUARD" --version); torch: $("$PYTHON" -c 'import torch; print(torch.__version__)')"

ours_train=$(RAYON_NUM_THREADS=$THREADS "$NNGUARD" bench train --images "$IMAGES" --epochs "$EPOCHS" --json)
ours_grad=$(RAYON_NUM_THREADS=$THREADS "$NNGUARD" bench grad --model "$here/../testdata/reference/cnn.onnx" --repeat "$REPEAT" --json)
theirs=$(OMP_NUM_THREADS=$THREADS "$PYTHON" "$here/pytorch_cnn.py" "$THREADS" "$IMAGES" "$EPOCHS" "$REPEAT")

"$PYTHON" - "$ours_train" "$ours_grad" "$theirs" <<'PY'
import json, sys
ours_train, ours_grad = json.loads(sys.argv[1]), json.loads(sys.argv[2])
theirs = [json.loads(l) for l in sys.argv[3].splitlines() if l.strip()]
for name, ours, ref in [("training epoch", ours_train, theirs[0]), ("forward+backward to input", ours_grad, theirs[1])]:
    print(f"{name:28s} nnguard {ours['images_per_second']:8.0f} img/s  pytorch {ref['images_per_second']:8.0f} img/s"
          f"  ratio {ours['images_per_second'] / ref['images_per_second']:.2f}x"
          f"  (seconds: nnguard {[round(s, 2) for s in ours['seconds']]}, pytorch {[round(s, 2) for s in ref['seconds']]})")
PY
