"""Models on the statistics of *canonical* weights: exactly invariant to the whole monomial group.

:func:`mnfn.canonical.canonicalize` maps each network to one representative of its scale / sign
orbit (every hidden ReLU neuron's incoming weights and bias to unit norm, the factor moved onto its
outgoing weights; tanh/sin neurons to a fixed sign), so ``canon(g U)`` is ``canon(U)`` up to a
permutation of the hidden neurons, which StatNN's per-tensor statistics
(:func:`mnfn.models.baselines.weight_statistics`) do not see. Unlike Monomial-NFN's features these
are not linear in the weights before pooling: the canonical last layer carries the products of
hidden scales along paths (the size of the network's function), the first layers the distribution
of neuron directions.

* ``canon-statnn`` (:class:`CanonStatNN`): ``mlp_head(asinh(phi(canon(U))))``, StatNN with the
  weights canonicalised first: the ablation that measures what the (function-preserving) scales
  tell StatNN.
* ``monomial-stat`` (:class:`MonomialStat`): Monomial-NFN's pooled invariant features next to the
  same statistics, into one head.

``asinh`` (odd, monotone, about the identity below 1) compresses the canonical last layer's
statistics, which reach 1e3 (variances 1e5) on the public-recipe CIFAR-10 zoo: an MLP on them raw
does not train. Raw weights only (one channel).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..canonical import Canonicalize
from ..weightspace import WeightSpaceError, WeightSpaceFeatures, WeightSpaceSpec
from .baselines import NUM_STATS, weight_statistics
from .nfn import InvariantNFN
from .parts import check_features, full_group, mlp_head
from .registry import ModelEntry, register_model

__all__ = ["CanonicalStatistics", "CanonStatNN", "MonomialStat"]


class CanonicalStatistics(nn.Module):
    """``features -> asinh(weight_statistics(canonicalize(features)))``, ``(B, 2L * 7)``; no parameters."""

    def __init__(self, spec: WeightSpaceSpec) -> None:
        super().__init__()
        self.canon = Canonicalize(spec)
        self.out_dim = 2 * spec.num_layers * NUM_STATS

    def forward(self, features: WeightSpaceFeatures) -> Tensor:
        return torch.asinh(weight_statistics(self.canon(features)))


def _one_channel(name: str, channels: int) -> None:
    if int(channels) != 1:
        raise WeightSpaceError(f"{name} canonicalises raw weights (one channel), got {channels} channels")


class CanonStatNN(nn.Module):
    """``mlp_head(asinh(phi(canon(U))))``: see the module docstring. With ``hidden=(1000, 1000)``
    the same MLP as the paper's StatNN."""

    def __init__(self, spec: WeightSpaceSpec, hidden: Sequence[int] = (1000, 1000), out_features: int = 1,
                 dropout: float = 0.0, channels: int = 1) -> None:
        super().__init__()
        _one_channel("canon-statnn", channels)
        self.spec = spec
        self.stats = CanonicalStatistics(spec)
        self.head = mlp_head(self.stats.out_dim, hidden, out_features, dropout)

    def forward(self, features: WeightSpaceFeatures) -> Tensor:
        check_features(features, self.spec, 1, "CanonStatNN", self)
        return self.head(self.stats(features))


class MonomialStat(nn.Module):
    """Monomial-NFN's pooled invariant features (the paper's zoo model: layers 16-16-5) concatenated
    with :class:`CanonicalStatistics`, then an MLP head: exactly invariant to the whole monomial group."""

    def __init__(self, spec: WeightSpaceSpec, in_channels: int = 1, hidden: Sequence[int] = (16, 16, 5),
                 activation: str = "auto", head: Sequence[int] = (200, 200), out_dim: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        _one_channel("monomial-stat", in_channels)
        self.spec = spec
        self.nfn = InvariantNFN(spec, symmetries="monomial", in_channels=1, hidden=hidden, activation=activation,
                                head=(), out_dim=1, dropout=0.0)
        self.nfn.head = nn.Identity()  # its pooled invariant features, not a score
        self.stats = CanonicalStatistics(spec)
        self.head = mlp_head(self.nfn.pool.out_dim + self.stats.out_dim, head, out_dim, dropout)

    def forward(self, features: WeightSpaceFeatures) -> Tensor:
        check_features(features, self.spec, 1, "MonomialStat", self)
        return self.head(torch.cat([self.nfn(features), self.stats(features)], dim=1))


def _canon_statnn(spec: WeightSpaceSpec, in_channels: int = 1, hidden: Sequence[int] = (1000, 1000), out_dim: int = 1,
                  dropout: float = 0.0) -> nn.Module:
    return CanonStatNN(spec, hidden=hidden, out_features=out_dim, dropout=dropout, channels=in_channels)


for _entry in [
    ModelEntry("canon-statnn", _canon_statnn, "canonicalise scale/sign orbits, then StatNN: monomial invariant",
               full_group, _canon_statnn),
    ModelEntry("monomial-stat", MonomialStat,
               "Monomial-NFN + StatNN statistics of the canonical weights: invariant to the whole monomial group",
               full_group, MonomialStat.__init__),
]:
    register_model(_entry)
del _entry
