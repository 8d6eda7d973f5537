"""Builds the small ONNX models of testdata/onnx/ and their expected outputs.

Each model exercises a group of the operators nnguard's ONNX interpreter supports. The
expected logits come from onnxruntime, the input gradients from PyTorch autograd (float64,
so they are the exact values up to float32 rounding of the weights), for a fixed input.

Run with torch, onnx and onnxruntime installed:  python make_models.py
"""
import json

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)


class ResidualBn(nn.Module):
    """Conv with padding and stride, BatchNorm, residual Add, GlobalAveragePool, Flatten, Gemm."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(h + self.bn2(self.conv2(h)))
        h = F.relu(self.down(h))
        h = F.adaptive_avg_pool2d(h, 1)
        return self.fc(torch.flatten(h, 1))


class OpsMix(nn.Module):
    """Pooling variants, activations, Concat, Transpose, MatMul, view() via Shape/Gather."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.w = nn.Parameter(torch.randn(4 * 5 * 5 + 4 * 7 * 7, 12) * 0.05)
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        h = self.conv(x)  # [N,4,12,12]
        a = F.max_pool2d(F.leaky_relu(h, 0.1), 3, stride=2, padding=1, ceil_mode=True)  # [N,4,7,7]
        b = F.avg_pool2d(torch.sigmoid(h), 3, stride=2, padding=0)  # [N,4,5,5]
        b = torch.tanh(b) * 2.0 - 0.5
        a = F.gelu(a) / 1.5
        flat = torch.cat([b.view(b.size(0), -1), a.reshape(a.size(0), -1)], dim=1)
        z = flat @ self.w
        z = torch.clamp(z, -3.0, 3.0)
        z = z.transpose(0, 1).transpose(0, 1)
        z = F.dropout(z, 0.5, training=self.training)
        return F.log_softmax(self.fc(z), dim=1) + F.softmax(self.fc(z), dim=-1)


class AvgPad(nn.Module):
    """AveragePool with and without padding counted, Transpose, elementwise math (opset 11)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2 * 2 * 4 * 4, 3)

    def forward(self, x):
        x = torch.sqrt(torch.abs(x - 0.5) + 1e-3) ** 2 + torch.exp(-x)
        a = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=True)
        b = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        return self.fc(torch.cat([a, b], 1).permute(0, 2, 3, 1).flatten(1))


class Unsupported(nn.Module):
    """Uses interpolation (ONNX Resize), which nnguard does not evaluate."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1 * 16 * 16, 2)

    def forward(self, x):
        return self.fc(F.interpolate(x, scale_factor=2.0, mode="nearest").flatten(1))


def export(name, model, shape, opset):
    model.eval()
    if isinstance(model, ResidualBn):
        # Non-trivial running statistics.
        for bn in (model.bn1, model.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.2, 0.2)
    x = torch.rand(*shape)
    path = f"{name}.onnx"
    torch.onnx.export(
        model, (x,), path, input_names=["input"], output_names=["logits"],
        opset_version=opset, dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
        # Keep BatchNormalization nodes instead of folding them into the convolutions.
        do_constant_folding=not isinstance(model, ResidualBn),
    )
    onnx.checker.check_model(onnx.load(path))
    if name == "unsupported":
        return
    logits = ort.InferenceSession(path).run(None, {"input": x.numpy()})[0]
    m64 = model.double()
    x64 = x.double().requires_grad_(True)
    labels = torch.arange(shape[0]) % logits.shape[1]
    loss = F.cross_entropy(m64(x64), labels, reduction="sum")
    loss.backward()
    with open(f"{name}.json", "w") as f:
        json.dump({
            "opset": opset,
            "input_shape": list(shape),
            "input": x.flatten().tolist(),
            "labels": labels.tolist(),
            "logits_onnxruntime": logits.flatten().tolist(),
            "ops": sorted({n.op_type for n in onnx.load(path).graph.node}),
            "ce_sum_float64": loss.item(),
            "input_grad_float64": x64.grad.flatten().tolist(),
            "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
        }, f)


export("residual_bn", ResidualBn(), (3, 3, 8, 8), 13)
export("ops_mix", OpsMix(), (2, 1, 14, 14), 17)
export("avg_pad", AvgPad(), (2, 2, 7, 7), 11)
export("unsupported", Unsupported(), (1, 1, 8, 8), 13)
