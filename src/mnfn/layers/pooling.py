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

import math

from typing import Sequence

import torch
from torch import Tensor, nn

from ..weightspace import ACTIVATIONS, Symmetry, WeightSpaceError, WeightSpaceFeatures, WeightSpaceSpec
from .equivariant import fold
from .kernels import NormalizedMean, max_scaled
from .terms import TensorSite, resolve_symmetries, tensor_sites

__all__ = ["InvariantPool", "EquivariantActivation", "robust_normalize"]


def _mean(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """``x.mean(dims)`` as a sum scaled afterwards: the backward of a sum is a broadcast view, that of
    a mean a full-size scaled copy of the gradient."""
    return x.sum(dim=dims) * (1.0 / math.prod(x.shape[d] for d in dims))


def _scaled_and_inverse_norm(x: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """``(y, r)`` with ``x / ||x|| = y * r`` along ``dim``: ``y = x / max|x|`` (so the squares in the
    norm stay away from float under/overflow for weights of 1e-15 or 1e30) and ``r = 1 / ||y||``
    (``r`` keeps ``dim`` with size 1).

    A zero vector gives ``r = 0``, so its normalised value is 0 *and* its gradient is 0 rather
    than NaN (``x / ||x||`` has no derivative at 0): it is swapped for a vector of ones before the
    norm (:func:`mnfn.layers.kernels.max_scaled`), and ``r`` is masked.
    """
    y, r, m = max_scaled(x, dim)
    if torch.is_grad_enabled() and x.requires_grad:
        # d(x/||x||)/dx ~ 1/||x||: for entries near zero (zoo weights reach 1e-42) the backward
        # overflows to inf, then NaN. Their normalised *value* stays exact (invariance untouched);
        # only their gradient is cut, below max|x| = eps^2 of the dtype.
        keep = m >= torch.finfo(x.dtype).eps ** 2
        y = torch.where(keep, y, y.detach())
        r = torch.where(keep, r, r.detach())
    return y, r


def robust_normalize(x: Tensor, dim: int = 1) -> Tensor:
    """``x / ||x||`` along ``dim``, exact for any magnitude: dividing by the max first keeps the
    squares away from float under/overflow (weights of 1e-15 or 1e6); a zero vector stays zero
    (with a zero gradient)."""
    y, r = _scaled_and_inverse_norm(x, dim)
    return y * r


def _check_layer_input(features: WeightSpaceFeatures, spec: WeightSpaceSpec, channels: int | None, who: str) -> None:
    if not isinstance(features, WeightSpaceFeatures):
        raise WeightSpaceError(f"{who} takes WeightSpaceFeatures, got {type(features).__name__}")
    if features.spec.weight_shapes() != spec.weight_shapes():
        raise WeightSpaceError(f"{who} built for [{spec.describe()}] got features of [{features.spec.describe()}]")
    if channels is not None and features.channels != channels:
        raise WeightSpaceError(f"{who} expects {channels} channels, features have {features.channels}")


def _site_symmetries(site: TensorSite, symmetries: Sequence[str]) -> set[str]:
    return {symmetries[a.layer] for a in site.axes}


class InvariantPool(nn.Module):
    """Features -> invariant vector ``(B, out_dim)`` (``forward``: :class:`WeightSpaceFeatures`;
    ``forward_folded``: the folded ``[(B, C*k, *axes)]`` list a stack works on)."""

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
        # Only the normalised tensors have an affine map (keyed by tensor index): no unused parameters.
        self.affine = nn.ParameterDict({str(i): p for i, p in enumerate(affine) if p is not None})
        self.out_dim = out_dim

    def forward_folded(self, xs: Sequence[Tensor]) -> Tensor:
        # Per entry: normalise the channel vector, abs (sign groups), learned affine map; then
        # average over the permuted axes. The affine map is per channel, so it commutes with the
        # mean and is applied to the (small) pooled tensor.
        outs = []
        for i, (site, x) in enumerate(zip(self.sites, xs)):
            dims = self.pool_dims[i]
            if self.normalize[i] and not self.even[i] and dims and self._pools_all(x, dims):
                # every axis pooled (or of size 1): normalise and average in one fused function
                x = NormalizedMean.apply(x.reshape(x.shape[0], x.shape[1], -1))
                a = self.affine[str(i)]
                x = torch.addcmul(a[:, 1], x, a[:, 0])
            elif self.normalize[i]:
                x, r = _scaled_and_inverse_norm(x, 1)
                if self.even[i]:
                    x = x.abs()  # before the affine map: a shift would not commute with a sign flip
                x = x * r
                if dims:
                    x = _mean(x, dims)
                a = self.affine[str(i)]
                shape = (1, -1) + (1,) * (x.dim() - 2)
                x = torch.addcmul(a[:, 1].view(shape), x, a[:, 0].view(shape))
            else:
                if self.even[i]:
                    x = x.abs()
                if dims:
                    x = _mean(x, dims)
            outs.append(x.flatten(1))
        return torch.cat(outs, 1)

    @staticmethod
    def _pools_all(x: Tensor, dims: tuple[int, ...]) -> bool:
        """Whether every axis of ``x`` but batch and channel is pooled or has size 1."""
        return all(d in dims or x.shape[d] == 1 for d in range(2, x.dim()))

    def forward(self, features: WeightSpaceFeatures) -> Tensor:
        _check_layer_input(features, self.spec, self.channels, "InvariantPool")
        return self.forward_folded(fold(features))


class EquivariantActivation(nn.Module):
    """Entrywise activation applied to folded features, checked against the group.

    ``name="auto"`` picks per tensor: ReLU where only scales act, tanh where only signs act,
    identity where both do (only linear maps are both odd and positively homogeneous), ReLU on
    permutation-only/invariant tensors.
    """

    def __init__(self, spec: WeightSpaceSpec, name: str = "auto", symmetries: str | Sequence[str] = "monomial") -> None:
        super().__init__()
        syms = resolve_symmetries(spec, symmetries)
        self.spec = spec
        self.symmetries = syms
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
                bad = [x for x in s if not ACTIVATIONS[name].preserves(x)]
                if bad:
                    raise WeightSpaceError(
                        f"activation {name!r} does not commute with the {bad[0]} symmetry acting on {site.name}: "
                        f"{'it is not positively homogeneous' if bad[0] == Symmetry.SCALE else 'it is not odd'}; "
                        "use 'auto', relu/leaky_relu for scale groups, tanh/sin for sign groups"
                    )
                chosen = name
            self.names.append(chosen)
        self._fns = [ACTIVATIONS[n].bind(features=True) for n in self.names]
        self._inplace = [(lambda x, f=ACTIVATIONS[n].inplace_fn, p=ACTIVATIONS[n].default_param: f(x, p))
                         if ACTIVATIONS[n].inplace_fn is not None else None for n in self.names]

    def forward_folded(self, xs: Sequence[Tensor], inplace: bool = False) -> list[Tensor]:
        """``inplace=True`` (for fresh outputs of an :class:`EquivariantLinear`, as the stacks pass
        them): ReLU overwrites every tensor that is not a view, saving a full-size allocation and
        write; views (broadcast parts, parameters) are never written."""
        if not inplace:
            return [fn(x) for fn, x in zip(self._fns, xs)]
        out = []
        for fn, ip, x in zip(self._fns, self._inplace, xs):
            own = ip is not None and x._base is None and x.is_contiguous() and not isinstance(x, nn.Parameter)
            out.append(ip(x) if own else fn(x))
        return out

    def forward(self, features: WeightSpaceFeatures) -> WeightSpaceFeatures:
        """Entrywise, so no folding is needed: the activation of each weight and bias tensor."""
        _check_layer_input(features, self.spec, None, "EquivariantActivation")
        fns = iter(self._fns)
        ws, bs = [], []
        for w, b in features:
            ws.append(next(fns)(w))
            bs.append(next(fns)(b))
        return WeightSpaceFeatures(tuple(ws), tuple(bs), features.spec)

    def extra_repr(self) -> str:
        return f"{sorted(set(self.names))}"


