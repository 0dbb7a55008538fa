"""Invariant pooling and equivariant activations, both derived from the per-axis symmetries.

Pooling (paper, section 4 of our notes): make each entry invariant to its own factor, then
average over every permuted axis.

* an entry whose factor contains a positive scale ``d``: normalise its channel vector
  (``x / ||x||``; kernel positions count as channels), then a learned per-channel affine map;
* an entry whose factor contains a sign: an even function (``abs``) — after the normalisation
  and before the affine map when both kinds are present;
* the output bias ``b(L)`` (trivial factor) is kept raw.

Activations: an entrywise ``f`` commutes with a positive scale iff positively homogeneous (ReLU,
LeakyReLU) and with a sign flip iff odd (tanh, sin). An activation the group does not commute
with is refused.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..weightspace import ACTIVATIONS, Symmetry, WeightSpaceError, WeightSpaceSpec
from .terms import TensorSite, resolve_symmetries, tensor_sites

__all__ = ["InvariantPool", "EquivariantActivation", "robust_normalize"]


def robust_normalize(x: Tensor, dim: int = 1) -> Tensor:
    """``x / ||x||`` along ``dim``, exact for any magnitude: dividing by the max first keeps the
    squares away from float under/overflow (weights of 1e-15 or 1e6); a zero vector stays zero."""
    m = x.abs().amax(dim=dim, keepdim=True)
    tiny = torch.finfo(x.dtype).tiny
    y = x / m.clamp_min(tiny)
    return y / torch.linalg.vector_norm(y, dim=dim, keepdim=True).clamp_min(tiny)


def _site_symmetries(site: TensorSite, symmetries: Sequence[str]) -> set[str]:
    return {symmetries[a.layer] for a in site.axes}


class InvariantPool(nn.Module):
    """Folded features ``[(B, C*k, *axes)]`` -> invariant vector ``(B, out_dim)``."""

    def __init__(self, spec: WeightSpaceSpec, channels: int, symmetries: str | Sequence[str] = "monomial",
                 invariant_map: str = "auto") -> None:
        super().__init__()
        if invariant_map not in ("auto", "none"):
            raise WeightSpaceError(f"invariant_map must be 'auto' or 'none', got {invariant_map!r}")
        self.spec = spec
        self.channels = channels
        self.symmetries = resolve_symmetries(spec, symmetries)
        self.sites = tensor_sites(spec)
        self.normalize: list[bool] = []
        self.even: list[bool] = []
        self.pool_dims: list[tuple[int, ...]] = []
        out_dim = 0
        affine = []
        for site in self.sites:
            syms = _site_symmetries(site, self.symmetries)
            norm = invariant_map == "auto" and Symmetry.SCALE in syms
            self.normalize.append(norm)
            self.even.append(invariant_map == "auto" and Symmetry.SIGN in syms)
            self.pool_dims.append(tuple(n + 2 for n, a in enumerate(site.axes) if self.symmetries[a.layer] != Symmetry.FIXED))
            kept = 1
            for n, a in enumerate(site.axes):
                if self.symmetries[a.layer] == Symmetry.FIXED:
                    kept *= site.sizes[n]
            out_dim += channels * site.kernel_size * kept
            affine.append(nn.Parameter(torch.tensor([1.0, 0.0]).repeat(channels * site.kernel_size, 1)) if norm else None)
        self.affine = nn.ParameterList([p if p is not None else nn.Parameter(torch.zeros(0)) for p in affine])
        self.out_dim = out_dim

    def forward_folded(self, xs: Sequence[Tensor]) -> Tensor:
        outs = []
        for i, (site, x) in enumerate(zip(self.sites, xs)):
            if self.normalize[i]:
                x = robust_normalize(x, dim=1)
            if self.even[i]:
                x = x.abs()  # before the affine map: a shift would not commute with a sign flip
            if self.normalize[i]:
                a = self.affine[i]
                shape = (1, -1) + (1,) * (x.dim() - 2)
                x = x * a[:, 0].view(shape) + a[:, 1].view(shape)
            if self.pool_dims[i]:
                x = x.mean(dim=self.pool_dims[i])
            outs.append(x.flatten(1))
        return torch.cat(outs, 1)


# Which symmetries an activation commutes with (permutations always).
def _commutes(act: str, sym: str) -> bool:
    if sym in (Symmetry.FIXED, Symmetry.PERM):
        return True
    if act == "identity":
        return True
    return ACTIVATIONS[act].symmetry == sym


class EquivariantActivation(nn.Module):
    """Entrywise activation applied to folded features, checked against the group.

    ``name="auto"`` picks per tensor: ReLU where only scales act, tanh where only signs act,
    identity where both do (only linear maps are both odd and positively homogeneous), ReLU on
    permutation-only/invariant tensors.
    """

    def __init__(self, spec: WeightSpaceSpec, name: str = "auto", symmetries: str | Sequence[str] = "monomial") -> None:
        super().__init__()
        syms = resolve_symmetries(spec, symmetries)
        self.names: list[str] = []
        for site in tensor_sites(spec):
            s = _site_symmetries(site, syms)
            if name == "auto":
                if Symmetry.SCALE in s and Symmetry.SIGN in s:
                    chosen = "identity"
                elif Symmetry.SIGN in s:
                    chosen = "tanh"
                else:
                    chosen = "relu"
            else:
                if name not in ACTIVATIONS:
                    raise WeightSpaceError(f"unknown activation {name!r}; known: auto, {sorted(ACTIVATIONS)}")
                bad = [x for x in s if not _commutes(name, x)]
                if bad:
                    raise WeightSpaceError(
                        f"activation {name!r} does not commute with the {bad[0]} symmetry acting on {site.name}: "
                        f"{'it is not positively homogeneous' if bad[0] == Symmetry.SCALE else 'it is not odd'}; "
                        "use 'auto', relu/leaky_relu for scale groups, tanh/sin for sign groups"
                    )
                chosen = name
            self.names.append(chosen)
        self._fns = [_FNS[n] for n in self.names]

    def forward_folded(self, xs: Sequence[Tensor]) -> list[Tensor]:
        return [fn(x) for fn, x in zip(self._fns, xs)]

    def extra_repr(self) -> str:
        return f"{sorted(set(self.names))}"


_FNS = {
    "relu": F.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.01),
    "identity": lambda x: x,
    "tanh": torch.tanh,
    "sin": torch.sin,
    "gelu": F.gelu,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "elu": F.elu,
    "silu": F.silu,
}
