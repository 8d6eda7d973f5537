"""torchattacks side of bench/attack_vs_torchattacks.sh: PGD-Linf, APGD-CE and Square on the
reference CNN (testdata/reference/cnn.safetensors loaded into its PyTorch definition) and the
first N Fashion-MNIST test images, in batches, with a fixed thread count.

Prints one JSON object per attack: wall seconds (median of REPEATS runs), images per second and
robust accuracy.

Usage: python torchattacks_cnn.py WEIGHTS THREADS N BATCH REPEATS [ATTACK ...]
  ATTACK: pgd (eps 0.1, alpha 0.01, 20 steps, random start), apgd (APGD-CE, eps 0.1, 100 steps,
          1 restart), square (eps 0.1, 1000 queries, p_init 0.8); default: all three
"""
import json
import statistics
import sys
import time

import numpy as np
import torch
import torchattacks
from safetensors.torch import load_file

from refcnn import RefCNN, idx

WEIGHTS, THREADS, N, BATCH, REPEATS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
WANTED = sys.argv[6:] or ["pgd", "apgd", "square"]
torch.set_num_threads(THREADS)


model = RefCNN()
model.load_state_dict(load_file(WEIGHTS), strict=True)
model.eval()
x = torch.tensor(idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)[:N].astype(np.float32) / 255)
y = torch.tensor(idx("t10k-labels-idx1-ubyte.gz", 8)[:N].astype(np.int64))

ATTACKS = {
    "pgd": lambda: torchattacks.PGD(model, eps=0.1, alpha=0.01, steps=20, random_start=True),
    "apgd": lambda: torchattacks.APGD(model, norm="Linf", eps=0.1, steps=100, n_restarts=1, loss="ce", seed=0),
    "square": lambda: torchattacks.Square(model, norm="Linf", eps=0.1, n_queries=1000, p_init=0.8, n_restarts=1, seed=0),
}
for name in WANTED:
    times, robust = [], None
    for _ in range(REPEATS):
        torch.manual_seed(0)
        attack = ATTACKS[name]()
        t0 = time.perf_counter()
        correct = 0
        for i in range(0, N, BATCH):
            xa = attack(x[i:i + BATCH], y[i:i + BATCH])
            with torch.no_grad():
                correct += (model(xa).argmax(1) == y[i:i + BATCH]).sum().item()
        times.append(time.perf_counter() - t0)
        robust = correct / N
    wall = statistics.median(times)
    print(json.dumps({"tool": "torchattacks " + torchattacks.__version__, "attack": name, "images": N,
                      "threads": torch.get_num_threads(), "wall_seconds": wall,
                      "images_per_second": N / wall, "robust_accuracy": robust}), flush=True)
