"""Random Gaussian Fourier features of every weight-space entry (NFN's input encoding for INR weights)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from ..weightspace import WeightSpaceFeatures, WeightSpaceSpec
from .equivariant import fold, unfold
from .terms import resolve_symmetries, tensor_sites

__all__ = ["FourierFeatures", "sincos"]


class _SinCos(torch.autograd.Function):
    """``z (B, m, ...) -> [sin z, cos z] (B, 2m, ...)`` written into one tensor (no ``cat``), whose
    backward reuses the saved output, ``dz = g_sin cos z - g_cos sin z``, instead of evaluating
    sin and cos again: two full-size transcendental passes and a copy fewer per step."""

    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:  # type: ignore[override]
        m = z.shape[1]
        out = z.new_empty((z.shape[0], 2 * m) + tuple(z.shape[2:]))
        torch.sin(z, out=out[:, :m])
        torch.cos(z, out=out[:, m:])
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
        (out,) = ctx.saved_tensors
        m = out.shape[1] // 2
        dz = g[:, :m] * out[:, m:]
        dz.addcmul_(g[:, m:], out[:, :m], value=-1.0)
        return dz


def sincos(z: Tensor) -> Tensor:
    """``torch.cat([sin(z), cos(z)], dim=1)`` with a cheaper backward (:class:`_SinCos`)."""
    return _SinCos.apply(z)


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
        # 2 pi goes on the (C, m) matrix, once, not on each full-size projection
        B = self.B.to(xs[0].dtype) * (2 * math.pi)
        for k, x in zip(self.kernels, xs):
            Bsz = x.shape[0]
            axes = x.shape[2:]
            x = x.reshape(Bsz, self.in_channels, k, *axes)
            proj = torch.einsum("bck...,cm->bmk...", x, B)
            y = sincos(proj)
            out.append(y.reshape(Bsz, self.out_channels * k, *axes))
        return out

    def forward(self, features: WeightSpaceFeatures) -> WeightSpaceFeatures:
        return unfold(self.forward_folded(fold(features)), features.spec)
