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

from .weightspace import WeightSpaceError, WeightSpaceFeatures, WeightSpaceSpec

__all__ = ["mlp_head", "StatNN", "FlatMLP", "tensor_statistics", "NUM_STATS", "QUANTILES"]

#: Quantile levels of the StatNN statistics (0 = min, 1 = max).
QUANTILES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Statistics per tensor and channel: mean, variance and the quantiles.
NUM_STATS = 2 + len(QUANTILES)


def mlp_head(in_dim: int, hidden: Sequence[int], out_dim: int, dropout: float = 0.0, *,
             activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """``Linear -> activation -> Dropout`` for every width in ``hidden``, then ``Linear(., out_dim)``.

    Dropout modules are always present (``p = dropout``, a no-op at 0) so the state-dict keys do not
    depend on the dropout rate. No activation after the last layer: outputs are raw scalars/logits.
    """
    if in_dim < 1 or out_dim < 1 or any(h < 1 for h in hidden):
        raise ValueError(f"mlp_head widths must be positive: in {in_dim}, hidden {tuple(hidden)}, out {out_dim}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    mods: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        mods += [nn.Linear(d, h), activation(), nn.Dropout(dropout)]
        d = h
    mods.append(nn.Linear(d, out_dim))
    return nn.Sequential(*mods)


def check_dtype(features: WeightSpaceFeatures, who: str, module: nn.Module | None = None) -> None:
    """Floating-point features of the same dtype as ``module``'s parameters, or a clear error."""
    if not features.dtype.is_floating_point:
        raise WeightSpaceError(f"{who} takes floating-point features, got {features.dtype}")
    p = next(module.parameters(), None) if module is not None else None
    if p is not None and p.dtype != features.dtype:
        raise WeightSpaceError(f"{who} has {p.dtype} parameters but got {features.dtype} features; convert one "
                               f"(features.to({p.dtype}) or model.to({features.dtype}))")


def _check_input(features: WeightSpaceFeatures, spec: WeightSpaceSpec, channels: int, who: str,
                 module: nn.Module | None = None) -> None:
    """Shapes (not activations) decide whether a model can read a batch: a zoo of ReLU and tanh nets
    of one architecture is a valid input to the same baseline."""
    if not isinstance(features, WeightSpaceFeatures):
        raise WeightSpaceError(f"{who} takes WeightSpaceFeatures, got {type(features).__name__}")
    check_dtype(features, who, module)
    if (features.spec.weight_shapes() != spec.weight_shapes()
            or features.spec.bias_shapes() != spec.bias_shapes()):
        raise WeightSpaceError(
            f"{who} was built for [{spec.describe()}] but got features of [{features.spec.describe()}] "
            "(mixed architectures cannot share one model)"
        )
    if features.channels != channels:
        raise WeightSpaceError(f"{who} was built for {channels} channel(s), got features with C={features.channels}")


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
        _check_input(features, self.spec, self.channels, "StatNN", self)
        parts = []
        for w, b in features:
            parts.append(tensor_statistics(w).flatten(1))
            parts.append(tensor_statistics(b).flatten(1))
        return torch.cat(parts, dim=1)

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
        _check_input(features, self.spec, self.channels, "FlatMLP", self)
        return self.head(features.flatten())
