"""PyTorch side of bench/certify_vs_pytorch.sh: CERTIFY of randomized smoothing.

The algorithm and code shape of Cohen, Rosenfeld and Kolter (2019), `Smooth.certify` of
their reference implementation: n0 selection samples, n estimation samples in batches of
noisy copies of one image, a one-sided Clopper-Pearson lower bound (scipy's beta.ppf, which
their `proportion_confint(..., method="beta")` calls) and the radius sigma * norm.ppf(pA).
The model is the reference CNN with the weights of testdata/reference/cnn.safetensors,
evaluated without autograd. Prints one JSON object.

Usage: python pytorch_certify.py THREADS IMAGES SIGMA N0 N ALPHA BATCH
"""
import json
import sys
import time

import numpy as np
import torch
from safetensors.torch import load_file
from scipy.stats import beta, norm

import refcnn
from refcnn import RefCNN

THREADS, IMAGES = int(sys.argv[1]), int(sys.argv[2])
SIGMA, N0, N, ALPHA, BATCH = float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
torch.set_num_threads(THREADS)
torch.manual_seed(0)


def idx(name, offset):
    return refcnn.idx(name, offset, refcnn.BUNDLED)


def sample_noise(model, x, num):
    counts = np.zeros(10, dtype=np.int64)
    remaining = num
    while remaining > 0:
        this_batch = min(BATCH, remaining)
        remaining -= this_batch
        batch = x.repeat((this_batch, 1, 1, 1))
        noise = torch.randn_like(batch) * SIGMA
        predictions = model(batch + noise).argmax(1)
        counts += np.bincount(predictions.numpy(), minlength=10)
    return counts


def certify(model, x):
    c_hat = int(sample_noise(model, x, N0).argmax())
    n_a = int(sample_noise(model, x, N)[c_hat])
    p_a = beta.ppf(ALPHA, n_a, N - n_a + 1) if n_a > 0 else 0.0
    if p_a < 0.5:
        return None, 0.0
    return c_hat, SIGMA * norm.ppf(p_a)


images = torch.tensor(idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)[:IMAGES].astype(np.float32) / 255)
labels = idx("t10k-labels-idx1-ubyte.gz", 8)[:IMAGES].astype(np.int64)
model = RefCNN()
model.load_state_dict(load_file(str(refcnn.ROOT / "testdata/reference/cnn.safetensors")), strict=True)
model.eval()
results = []
with torch.inference_mode():
    sample_noise(model, images[:1], BATCH)  # warm-up
    t0 = time.perf_counter()
    for i in range(IMAGES):
        results.append(certify(model, images[i : i + 1]))
    seconds = time.perf_counter() - t0
radii = [r for (c, r), y in zip(results, labels) if c == y]
print(json.dumps({
    "images": IMAGES,
    "seconds": seconds,
    "seconds_per_image": seconds / IMAGES,
    "noisy_samples_per_second": (N0 + N) * IMAGES / seconds,
    "certified_accuracy": len(radii) / IMAGES,
    "certified_accuracy_at": {str(r): sum(x >= r for x in radii) / IMAGES for r in (0.25, 0.5, 0.75)},
    "abstained": sum(c is None for c, _ in results),
}))
