#!/usr/bin/env bash
# PGD adversarial training of the reference CNN on Fashion-MNIST: nnguard against PyTorch with
# the same recipe (eps 0.1 L-inf, 10 PGD steps of 0.025 with a random start, Adam 1e-3, batch
# 128, 3 epochs), one after the other on the same machine with the same thread count; then the
# robust accuracy of both models under the full `nnguard eval` ensemble on the first 1000 test
# images at eps 0.1.
#
# Usage: bench/pgd_at_vs_pytorch.sh train|eval|all DIR [THREADS] [EPOCHS]
#   train  trains both models into DIR (nnguard: pgd-at.safetensors, PyTorch: pytorch-pgd-at.onnx
#          and pytorch-pgd-at.safetensors)
#   eval   evaluates both models in DIR (JSON reports eval-*.json)
#   all    both
# Needs: Fashion-MNIST in /usr/share/datasets/fashion-mnist, a release build of nnguard, and a
# Python with torch, numpy and onnx (PYTHON, default python3).
set -euo pipefail
what=${1:?train|eval|all}
dir=${2:?output directory}
THREADS=${3:-2}
EPOCHS=${4:-3}
PYTHON=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)
NNGUARD=${NNGUARD:-${CARGO_TARGET_DIR:-$here/../target}/release/nnguard}
mkdir -p "$dir"

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads $THREADS; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "nnguard: $("$NNGUARD" --version); torch: $("$PYTHON" -c 'import torch; print(torch.__version__)')"

if [ "$what" = train ] || [ "$what" = all ]; then
    RAYON_NUM_THREADS=$THREADS "$NNGUARD" train --arch cnn --data fashion-mnist --epochs "$EPOCHS" \
        --defense pgd-at --eps 0.1 --attack-steps 10 --attack-step 0.025 --seed 0 \
        --out "$dir/pgd-at.safetensors" --json > "$dir/nnguard-train.json"
    OMP_NUM_THREADS=$THREADS "$PYTHON" "$here/pytorch_pgd_at.py" "$THREADS" "$EPOCHS" 0.1 10 0.025 \
        "$dir/pytorch-pgd-at.onnx" > "$dir/pytorch-train.json"
    "$PYTHON" - "$dir/nnguard-train.json" "$dir/pytorch-train.json" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))["training"]["log"]
theirs = json.load(open(sys.argv[2]))["log"]
for a, b in zip(ours, theirs):
    print(f"epoch {a['epoch']}: nnguard {a['epoch_seconds']:7.1f} s (test acc {100 * a['test_acc']:.2f}%)"
          f"   pytorch {b['epoch_seconds']:7.1f} s (test acc {100 * b['test_acc']:.2f}%)"
          f"   time ratio pytorch/nnguard {b['epoch_seconds'] / a['epoch_seconds']:.2f}")
PY
fi

if [ "$what" = eval ] || [ "$what" = all ]; then
    # The PyTorch model is evaluated from its safetensors weights on nnguard's native CNN (the
    # same backbone as nnguard's model; its ONNX export gives the same predictions).
    RAYON_NUM_THREADS=$THREADS "$NNGUARD" eval --model "$dir/pgd-at.safetensors" --data fashion-mnist \
        --norm linf --eps 0.1 --limit 1000 --json > "$dir/eval-pgd-at.json" || true
    RAYON_NUM_THREADS=$THREADS "$NNGUARD" eval --model "$dir/pytorch-pgd-at.safetensors" --arch cnn \
        --data fashion-mnist --norm linf --eps 0.1 --limit 1000 --json > "$dir/eval-pytorch-pgd-at.json" || true
    "$PYTHON" - "$dir/eval-pgd-at.json" "$dir/eval-pytorch-pgd-at.json" <<'PY'
import json, sys
for path in sys.argv[1:]:
    r = json.load(open(path))
    s = r["summary"]
    p = s["curve"][s["headline"]]
    steps = ", ".join(f"{a['attack']} -{a['broken']}" for a in p["after_attack"])
    print(f"{path}: clean {100 * s['clean_accuracy']:.2f}%, robust {100 * p['robust_accuracy']:.2f}% "
          f"at eps {p['eps']} ({steps})")
PY
fi
