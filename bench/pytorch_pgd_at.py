"""PyTorch side of bench/pgd_at_vs_pytorch.sh: PGD adversarial training of the reference CNN.

The recipe `nnguard train --defense pgd-at` uses (Madry et al. 2018): Adam (lr 1e-3), batch 128,
seed 0; every batch replaced by L-inf PGD examples (uniform random start in the eps-ball, STEPS
signed-gradient steps of STEP on the cross-entropy, projection onto the ball and [0, 1]) crafted
on the current network; cross-entropy on them. Writes the model as ONNX (opset 17, input
`input`, output `logits`) and its weights as safetensors beside it (PyTorch names, loadable with
`--arch cnn`), and prints one JSON object with the time and test accuracy per epoch.

Usage: python pytorch_pgd_at.py THREADS EPOCHS EPS STEPS STEP OUT.onnx [IMAGES]
"""
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from refcnn import RefCNN, idx

THREADS, EPOCHS = int(sys.argv[1]), int(sys.argv[2])
EPS, STEPS, STEP = float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
OUT = sys.argv[6]
IMAGES = int(sys.argv[7]) if len(sys.argv) > 7 else 60000
torch.set_num_threads(THREADS)
torch.manual_seed(0)


def pgd(model, x, y):
    """L-inf PGD with a uniform random start; returns the last iterate."""
    delta = torch.empty_like(x).uniform_(-EPS, EPS)
    x_adv = (x + delta).clamp(0, 1)
    for _ in range(STEPS):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (g,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + STEP * g.sign()
        x_adv = torch.min(torch.max(x_adv, x - EPS), x + EPS).clamp(0, 1)
    return x_adv.detach()


x_train = torch.tensor(idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)[:IMAGES].astype(np.float32) / 255)
y_train = torch.tensor(idx("train-labels-idx1-ubyte.gz", 8)[:IMAGES].astype(np.int64))
x_test = torch.tensor(idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28).astype(np.float32) / 255)
y_test = torch.tensor(idx("t10k-labels-idx1-ubyte.gz", 8).astype(np.int64))
model = RefCNN()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
log = []
for epoch in range(EPOCHS):
    perm = torch.randperm(len(x_train))
    t0 = time.perf_counter()
    total = 0.0
    for i in range(0, len(perm), 128):
        b = perm[i:i + 128]
        x, y = x_train[b], y_train[b]
        for p in model.parameters():
            p.requires_grad_(False)
        x_adv = pgd(model, x, y)
        for p in model.parameters():
            p.requires_grad_(True)
        opt.zero_grad()
        loss = F.cross_entropy(model(x_adv), y)
        loss.backward()
        opt.step()
        total += loss.item() * len(b)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    log.append({"epoch": epoch + 1, "train_loss": total / len(perm), "test_acc": acc,
                "epoch_seconds": seconds, "images_per_second": len(perm) / seconds})
    print(f"epoch {epoch + 1}: loss {total / len(perm):.4f}, test accuracy {100 * acc:.2f}%, "
          f"{seconds:.1f} s", file=sys.stderr, flush=True)

model.eval()
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, OUT.rsplit(".", 1)[0] + ".safetensors")
torch.onnx.export(model, torch.zeros(1, 1, 28, 28), OUT, input_names=["input"],
                  output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                  opset_version=17, dynamo=False)
print(json.dumps({"what": "pytorch pgd-at cnn", "threads": torch.get_num_threads(), "images": len(x_train),
                  "batch_size": 128, "eps": EPS, "steps": STEPS, "step": STEP, "log": log,
                  "torch": torch.__version__, "out": OUT}))
