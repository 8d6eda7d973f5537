"""PyTorch side of bench/train_vs_pytorch.sh: the reference CNN on CPU.

Measures (1) one training epoch of Adam (lr 1e-3, batch 128) on Fashion-MNIST and
(2) forward + backward to the input (cross-entropy) on the first 1000 test images in
batches of 250, the work of a gradient attack. Prints one JSON object per measurement,
in the shape `nnguard bench ... --json` prints, so the script can compare them.

Usage: python pytorch_cnn.py THREADS IMAGES EPOCHS REPEAT
"""
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from refcnn import RefCNN, idx

THREADS, IMAGES, EPOCHS, REPEAT = (int(a) for a in sys.argv[1:5])
torch.set_num_threads(THREADS)
torch.manual_seed(0)


x_train = torch.tensor(idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)[:IMAGES].astype(np.float32) / 255)
y_train = torch.tensor(idx("train-labels-idx1-ubyte.gz", 8)[:IMAGES].astype(np.int64))
model = RefCNN()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
seconds = []
for epoch in range(EPOCHS):
    perm = torch.randperm(len(x_train))
    t0 = time.perf_counter()
    for i in range(0, len(perm), 128):
        b = perm[i:i + 128]
        opt.zero_grad()
        loss = F.cross_entropy(model(x_train[b]), y_train[b])
        loss.backward()
        opt.step()
    seconds.append(time.perf_counter() - t0)
print(json.dumps({
    "what": "pytorch train cnn (Adam, one epoch)", "threads": torch.get_num_threads(),
    "images": len(x_train), "batch_size": 128, "seconds": seconds,
    "images_per_second": len(x_train) / sorted(seconds)[len(seconds) // 2],
    "torch": torch.__version__,
}))

x_test = torch.tensor(idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)[:1000].astype(np.float32) / 255)
y_test = torch.tensor(idx("t10k-labels-idx1-ubyte.gz", 8)[:1000].astype(np.int64))
model.eval()
for p in model.parameters():
    p.requires_grad_(False)
seconds = []
for r in range(REPEAT + 1):
    t0 = time.perf_counter()
    for i in range(0, 1000, 250):
        x = x_test[i:i + 250].clone().requires_grad_(True)
        F.cross_entropy(model(x), y_test[i:i + 250], reduction="sum").backward()
        _ = x.grad.numpy()
    seconds.append(time.perf_counter() - t0)
seconds = seconds[1:]
print(json.dumps({
    "what": "pytorch forward + backward to the input", "threads": torch.get_num_threads(),
    "images": 1000, "batch_size": 250, "seconds": seconds,
    "images_per_second": 1000 / sorted(seconds)[len(seconds) // 2], "torch": torch.__version__,
}))
