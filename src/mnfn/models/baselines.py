"""Non-equivariant baselines the paper compares with, in the library's feature API.

* :class:`StatNN` (Unterthiner et al. 2020): 7 statistics of every weight and bias tensor
  (mean, variance, quantiles 0/25/50/75/100) per channel, concatenated, into an MLP. The
  statistics are invariant to permutations of hidden neurons, but not to scalings or sign flips.
* :class:`FlatMLP`: an MLP on all entries, flattened. No symmetry at all. It outputs raw
  scalars / logits (the official code put a sigmoid before cross-entropy; we do not).
* :func:`mlp_head`: the small MLP both use, shared with the equivariant models' heads.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..weightspace import WeightSpaceFeatures, WeightSpaceSpec
from .parts import check_dtype, check_features, hidden_perm, mlp_head, no_symmetry
from .registry import ModelEntry, register_model

__all__ = ["mlp_head", "check_dtype", "StatNN", "FlatMLP", "tensor_statistics", "weight_statistics", "NUM_STATS", "QUANTILES"]

#: Quantile levels of the StatNN statistics (0 = min, 1 = max).
QUANTILES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Statistics per tensor and channel: mean, variance and the quantiles.
NUM_STATS = 2 + len(QUANTILES)


def _quantiles(x: Tensor, qs: Sequence[float]) -> Tensor:
    """Quantiles of the last axis with linear interpolation (``torch.quantile``'s default), by one sort.

    ``x (..., N) -> (..., len(qs))``. Sort-based: batched, differentiable through the sorted values,
    and without ``torch.quantile``'s size limit.
    """
    n = x.shape[-1]
    xs = torch.sort(x, dim=-1).values
    pos = torch.tensor(qs, dtype=torch.float64) * (n - 1)
    lo = pos.floor().long()
    hi = pos.ceil().long()
    frac = (pos - lo).to(x.dtype).to(x.device)
    lo, hi = lo.to(x.device), hi.to(x.device)
    return xs[..., lo] + frac * (xs[..., hi] - xs[..., lo])


def tensor_statistics(t: Tensor) -> Tensor:
    """``(B, C, ...) -> (B, C, 7)``: mean, variance (population, so 1-entry tensors give 0) and
    quantiles 0/25/50/75/100 over all entries of each batch item and channel."""
    x = t.flatten(2)
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, correction=0, keepdim=True)
    return torch.cat([mean, var, _quantiles(x, QUANTILES)], dim=-1)


def weight_statistics(features: WeightSpaceFeatures) -> Tensor:
    """``(B, 2L * 7 * C)``: :func:`tensor_statistics` of every tensor, layer by layer, weight then
    bias, channel-major (StatNN's features)."""
    parts = []
    for w, b in features:
        parts.append(tensor_statistics(w).flatten(1))
        parts.append(tensor_statistics(b).flatten(1))
    return torch.cat(parts, dim=1)


class StatNN(nn.Module):
    """Statistics of every tensor into an MLP (Unterthiner et al. 2020).

    Input: ``2L`` tensors (``W(i)``, ``b(i)``), ``C`` channels each; features
    ``phi = concat_i,c [mean, var, q0, q25, q50, q75, q100](tensor_i[c])`` of size ``2L * 7 * C``;
    output ``mlp_head(phi)`` of shape ``(B, out_features)``. With ``hidden=(1000, 1000)`` on the
    zoo CNN this is the paper's 1,059,001-parameter StatNN.
    """

    def __init__(self, spec: WeightSpaceSpec, hidden: Sequence[int] = (1000, 1000), out_features: int = 1,
                 dropout: float = 0.0, channels: int = 1) -> None:
        super().__init__()
        self.spec = spec
        self.channels = int(channels)
        self.in_dim = 2 * spec.num_layers * NUM_STATS * self.channels
        self.head = mlp_head(self.in_dim, hidden, out_features, dropout)

    def statistics(self, features: WeightSpaceFeatures) -> Tensor:
        """``(B, 2L * 7 * C)``: the statistics, ordered layer by layer, weight then bias, channel-major."""
        check_features(features, self.spec, self.channels, "StatNN", self)
        return weight_statistics(features)

    def forward(self, features: WeightSpaceFeatures) -> Tensor:
        return self.head(self.statistics(features))


class FlatMLP(nn.Module):
    """An MLP on ``features.flatten()`` (all ``C * P`` entries): ``(B, out_features)`` raw outputs."""

    def __init__(self, spec: WeightSpaceSpec, hidden: Sequence[int] = (1000, 1000), out_features: int = 1,
                 dropout: float = 0.0, channels: int = 1) -> None:
        super().__init__()
        self.spec = spec
        self.channels = int(channels)
        self.in_dim = self.channels * spec.num_params()
        self.head = mlp_head(self.in_dim, hidden, out_features, dropout)

    def forward(self, features: WeightSpaceFeatures) -> Tensor:
        check_features(features, self.spec, self.channels, "FlatMLP", self)
        return self.head(features.flatten())


def _statnn(spec: WeightSpaceSpec, in_channels: int = 1, hidden: Sequence[int] = (1000, 1000), out_dim: int = 1,
            dropout: float = 0.0) -> nn.Module:
    return StatNN(spec, hidden=hidden, out_features=out_dim, dropout=dropout, channels=in_channels)


def _flat_mlp(spec: WeightSpaceSpec, in_channels: int = 1, hidden: Sequence[int] = (1000, 1000), out_dim: int = 1,
              dropout: float = 0.0) -> nn.Module:
    return FlatMLP(spec, hidden=hidden, out_features=out_dim, dropout=dropout, channels=in_channels)


register_model(ModelEntry("statnn", _statnn, "StatNN (Unterthiner et al. 2020): 7 statistics per tensor -> MLP",
                          hidden_perm, _statnn))
register_model(ModelEntry("mlp", _flat_mlp, "MLP on the flattened weights (no symmetry)", no_symmetry, _flat_mlp))
