"""Shared helpers for symmetry tests: specs, random features, relative errors."""

from __future__ import annotations

import torch

from mnfn import ScaleDist, WeightSpaceFeatures, cnn_spec, mlp_spec, siren_spec, zoo_cnn_spec

SCALES = ScaleDist("loguniform", 1e-2, 1e2)

# Every architecture family the layers must serve: MLPs with L = 2, 3, 4, both groups, the zoo CNN,
# a CNN whose last layer is a conv, SIREN, a mixed ReLU/tanh net, and a permutation-only net.
SPECS = {
    "relu-mlp-L2": mlp_spec([3, 5, 2], "relu"),
    "relu-mlp-L3": mlp_spec([3, 5, 6, 2], "relu"),
    "relu-mlp-L4": mlp_spec([3, 5, 6, 4, 2], "relu"),
    "tanh-mlp-L2": mlp_spec([3, 5, 2], "tanh"),
    "tanh-mlp-L3": mlp_spec([3, 5, 6, 2], "tanh"),
    "tanh-mlp-L4": mlp_spec([3, 5, 6, 4, 2], "tanh"),
    "siren": siren_spec(1, hidden=8),
    "relu-zoo-cnn": zoo_cnn_spec("relu", channels=6, image_size=8),
    "tanh-zoo-cnn": zoo_cnn_spec("tanh", channels=6, image_size=8),
    "relu-conv-last": cnn_spec(2, [4, 5], 3, "relu", conv_last=True),
    "tanh-conv-last": cnn_spec(2, [4, 5], 3, "tanh", conv_last=True),
    "mixed-mlp": mlp_spec([3, 5, 6, 4, 2], ["relu", "tanh", "relu"]),
    "gelu-mlp": mlp_spec([3, 5, 6, 2], "gelu"),
}


def randn_features(spec, batch: int = 3, channels: int = 1, seed: int = 0, dtype=torch.float64) -> WeightSpaceFeatures:
    gen = torch.Generator().manual_seed(seed)
    return WeightSpaceFeatures.zeros_like_spec(spec, batch, channels, dtype).map(
        lambda t: torch.randn(t.shape, generator=gen, dtype=dtype))


def rel_err(a, b) -> float:
    """Max over tensors/batch of ||a - b|| / ||b|| (features or plain tensors)."""
    if isinstance(a, WeightSpaceFeatures):
        return max(rel_err(x, y) for x, y in zip(a.weights + a.biases, b.weights + b.biases))
    a, b = a.flatten(1), b.flatten(1)
    return ((a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-300)).max().item()
