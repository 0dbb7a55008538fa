"""Channel dropout on weight-space features (NFN's ``feature_dropout``), exactly equivariant."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..weightspace import WeightSpaceFeatures
from .equivariant import fold, unfold

__all__ = ["ChannelDropout"]


class ChannelDropout(nn.Module):
    """In training, zero each channel of each weight or bias tensor of each net with probability ``p``
    and scale the kept ones by ``1 / (1 - p)``; the identity in eval mode or at ``p = 0``.

    One draw per (net, tensor, channel), shared by every entry of that tensor: ``x_c -> m_c x_c``.
    A group element acts on the entries of a tensor identically in every channel (permuting them,
    scaling or flipping their signs), so it commutes with ``m_c``: for the same draw,
    ``D(gU) = g D(U)`` under every monomial symmetry. (The official code drops bias *entries*, which
    is equivariant only in distribution; we drop bias channels like weight channels.)
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        # the config key's name, so a bad value in a YAML file or --set is found at once
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) < 1.0:
            raise ValueError(f"feature_dropout must be a number in [0, 1), got {p!r}")
        self.p = float(p)

    def forward_folded(self, xs: Sequence[Tensor]) -> list[Tensor]:
        if not self.training or self.p == 0.0:
            return list(xs)
        keep = 1.0 - self.p
        out = []
        for x in xs:  # folded: (B, C, *entry axes)
            mask = torch.empty(x.shape[:2] + (1,) * (x.dim() - 2), dtype=x.dtype, device=x.device)
            out.append(x * mask.bernoulli_(keep).div_(keep))
        return out

    def forward(self, features: WeightSpaceFeatures) -> WeightSpaceFeatures:
        return unfold(self.forward_folded(fold(features)), features.spec)

    def extra_repr(self) -> str:
        return f"p={self.p}"
