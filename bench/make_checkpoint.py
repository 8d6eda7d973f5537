"""Writes a benign ~200 MB PyTorch checkpoint for the scan benchmark.

A 12-layer transformer-shaped state dict (d=576, vocab 8000), saved with torch.save.
Usage: python3 make_checkpoint.py OUT.pt
"""

import sys

import torch

torch.manual_seed(0)
d, ff, layers, vocab = 576, 2304, 12, 8000
sd = {"embed.weight": torch.randn(vocab, d)}
for i in range(layers):
    p = f"layers.{i}."
    for name in ("q", "k", "v", "o"):
        sd[p + f"attn.{name}.weight"] = torch.randn(d, d)
        sd[p + f"attn.{name}.bias"] = torch.randn(d)
    sd[p + "mlp.up.weight"] = torch.randn(ff, d)
    sd[p + "mlp.up.bias"] = torch.randn(ff)
    sd[p + "mlp.down.weight"] = torch.randn(d, ff)
    sd[p + "mlp.down.bias"] = torch.randn(d)
    for ln in ("ln1", "ln2"):
        sd[p + f"{ln}.weight"] = torch.ones(d)
        sd[p + f"{ln}.bias"] = torch.zeros(d)
sd["head.weight"] = torch.randn(10, d)
torch.save(sd, sys.argv[1])
