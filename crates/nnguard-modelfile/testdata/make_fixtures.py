"""Regenerates the benign fixtures of this directory with real torch and numpy.

Run from this directory: python3 make_fixtures.py
Needs torch and numpy; the tests only read the files it writes.
"""

import collections
import io
import pickle

import numpy as np
import torch

torch.manual_seed(0)
rng = np.random.default_rng(0)

# A small state dict as torch.save writes it (zip format, protocol 2).
model = torch.nn.Sequential(
    torch.nn.Conv2d(1, 4, 3),
    torch.nn.ReLU(),
    torch.nn.Flatten(),
    torch.nn.Linear(4 * 6 * 6, 10),
)
sd = model.state_dict()
torch.save(sd, "state_dict.pt")

# The same state dict with a transposed (non-contiguous) view and an int64 buffer.
sd2 = collections.OrderedDict(sd)
sd2["transposed"] = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()
sd2["steps"] = torch.tensor([7], dtype=torch.int64)
torch.save({"model": sd2, "epoch": 3}, "checkpoint_nested.pt")

# Legacy (pre-1.6) stacked-pickle format.
torch.save(sd, "state_dict_legacy.pt", _use_new_zipfile_serialization=False)

# NumPy arrays.
np.save("array_f32.npy", rng.standard_normal((3, 4)).astype(np.float32))
np.savez("arrays.npz", a=np.arange(10, dtype=np.int64), b=np.ones((2, 2), dtype=np.float64))

# A plain protocol-4 pickle of builtins (no imports at all).
with open("plain_p4.pkl", "wb") as f:
    pickle.dump({"lr": 0.1, "layers": [1, 2, 3], "name": "net"}, f, protocol=4)

# Expected values for the conversion test.
with open("state_dict_expected.txt", "w") as f:
    for k, v in sd.items():
        f.write(f"{k} {list(v.shape)} {float(v.double().sum()):.9e}\n")
