"""Random Gaussian Fourier features of every weight-space entry (NFN's input encoding for INR weights)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from ..weightspace import WeightSpaceFeatures, WeightSpaceSpec
from .equivariant import fold, unfold
from .terms import resolve_symmetries, tensor_sites

__all__ = ["FourierFeatures"]


class FourierFeatures(nn.Module):
    """Random Gaussian Fourier features of every entry's channel vector (Tancik et al. 2020).

    Folded ``(B, C*k, *axes)`` -> ``(B, 2m*k, *axes)``: per entry (and kernel position)
    ``x -> [sin(2 pi x B), cos(2 pi x B)]`` with a fixed ``B ~ N(0, scale^2)`` of shape ``(C, m)``
    drawn from ``seed``. Entrywise, so it commutes with permutations; it is neither odd nor
    homogeneous, so it breaks sign flips and scalings unless its input is already invariant to them.
    """

    def __init__(self, spec: WeightSpaceSpec, in_channels: int, mapping_size: int = 32, scale: float = 3.0,
                 seed: int = 0) -> None:
        super().__init__()
        self.kernels = [s.kernel_size for s in tensor_sites(spec)]
        # entrywise: it commutes with every permutation, and (neither odd nor homogeneous) nothing else
        self.symmetries = resolve_symmetries(spec, "hnp")
        self.in_channels = in_channels
        self.mapping_size = mapping_size
        g = torch.Generator().manual_seed(int(seed))
        self.register_buffer("B", torch.randn(in_channels, mapping_size, generator=g) * float(scale))

    @property
    def out_channels(self) -> int:
        return 2 * self.mapping_size

    def forward_folded(self, xs: Sequence[Tensor]) -> list[Tensor]:
        out = []
        for k, x in zip(self.kernels, xs):
            Bsz = x.shape[0]
            axes = x.shape[2:]
            x = x.reshape(Bsz, self.in_channels, k, *axes)
            proj = 2 * math.pi * torch.einsum("bck...,cm->bmk...", x, self.B.to(x.dtype))
            y = torch.cat([torch.sin(proj), torch.cos(proj)], dim=1)
            out.append(y.reshape(Bsz, self.out_channels * k, *axes))
        return out

    def forward(self, features: WeightSpaceFeatures) -> WeightSpaceFeatures:
        return unfold(self.forward_folded(fold(features)), features.spec)
