"""Shared by the PyTorch bench scripts: the reference CNN's PyTorch definition and a reader of
gzip IDX files (Fashion-MNIST as installed by dataset-fashion-mnist, or the bundled subset)."""
import gzip
from pathlib import Path

import numpy as np
import torch.nn as nn
import torch.nn.functional as F

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "crates/nnguard-data/data/bundled"


def idx(name, offset, root=FASHION_MNIST):
    """The bytes of gzip IDX file `name` under `root` after its `offset`-byte header."""
    return np.frombuffer(gzip.open(Path(root) / name).read()[offset:], dtype=np.uint8)


class RefCNN(nn.Module):
    """conv 1->32, conv 32->64 (3x3, ReLU, 2x2 max pool each), fc 1600->128->10: the names and
    layouts of testdata/reference/cnn.safetensors and of `nnguard train --arch cnn`."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(1600, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))
