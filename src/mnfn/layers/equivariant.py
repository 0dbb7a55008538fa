"""Equivariant linear layers between weight-space features (Monomial-NFN, HNP and NP in one class).

The symmetry of every neuron layer is data (``"monomial"`` reads it from the activations,
``"hnp"``/``"np"`` are the permutation-only presets of Zhou et al. 2023), and the layer is the sum
of the terms :func:`~mnfn.layers.terms.enumerate_terms` allows — nothing is written per layer
position. Internally tensors use a *folded* layout ``(B, C*k, *axes)`` with conv kernel positions
folded into channels; models stay in that layout between layers (:func:`fold` / :func:`unfold`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from ..weightspace import WeightSpaceError, WeightSpaceFeatures, WeightSpaceSpec
from .terms import EinsumPlan, Term, enumerate_terms, plan_term, resolve_symmetries, tensor_sites

__all__ = ["EquivariantLinear", "fold", "unfold"]


def fold(features: WeightSpaceFeatures) -> list[Tensor]:
    """``[W1, b1, ...]`` with conv kernels folded into channels: ``(B, C*kh*kw, n_out, n_in)``."""
    out = []
    for w, b in features:
        if w.dim() > 4:
            B, C, n_out, n_in = w.shape[:4]
            w = w.permute(0, 1, *range(4, w.dim()), 2, 3).reshape(B, -1, n_out, n_in)
        out += [w, b]
    return out


def unfold(tensors: Sequence[Tensor], spec: WeightSpaceSpec) -> WeightSpaceFeatures:
    """Inverse of :func:`fold`."""
    ws, bs = [], []
    for i, layer in enumerate(spec.layers):
        w, b = tensors[2 * i], tensors[2 * i + 1]
        if layer.kernel:
            B, Ck, n_out, n_in = w.shape
            k = layer.kernel_size
            w = w.reshape(B, Ck // k, *layer.kernel, n_out, n_in)
            nk = len(layer.kernel)
            w = w.permute(0, 1, 2 + nk, 3 + nk, *range(2, 2 + nk))
        ws.append(w)
        bs.append(b)
    return WeightSpaceFeatures(tuple(ws), tuple(bs), spec)


class EquivariantLinear(nn.Module):
    """A complete equivariant linear map ``c_in -> c_out`` channels on the weight space of ``spec``.

    ``T_out = sum_{terms S -> T} einsum(theta_term, reduce(S))`` (+ a learned constant where the
    group allows one). With ``symmetries="monomial"`` a ReLU layer gets the scale rules, a tanh/sin
    layer the sign rules, any other activation the permutation (HNP) rules.
    """

    def __init__(self, spec: WeightSpaceSpec, c_in: int, c_out: int, symmetries: str | Sequence[str] = "monomial",
                 bias: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.c_in, self.c_out = c_in, c_out
        self.symmetries = resolve_symmetries(spec, symmetries)
        self.sites = tensor_sites(spec)
        terms = enumerate_terms(spec, self.symmetries)
        if not bias:
            terms = [t for t in terms if t.source is not None]
        self.terms: tuple[Term, ...] = tuple(terms)
        self.plans: tuple[EinsumPlan, ...] = tuple(plan_term(t, self.sites, c_in, c_out) for t in terms)
        self.params = nn.ParameterList([nn.Parameter(torch.empty(p.param_shape)) for p in self.plans])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Fan-in aware init: each output entry sums ``fan_in`` inputs over all of its terms, so
        ``std = 1/sqrt(fan_in)`` keeps the output variance near the input variance at any depth."""
        fan_in = [0] * len(self.sites)
        for term, plan in zip(self.terms, self.plans):
            if term.source is not None:
                fan_in[term.target] += plan.fan_in
        with torch.no_grad():
            for term, plan, p in zip(self.terms, self.plans, self.params):
                if term.source is None:
                    p.zero_()
                else:
                    bound = math.sqrt(3.0 / max(fan_in[term.target], 1))
                    p.uniform_(-bound, bound)

    def num_terms(self) -> int:
        return len(self.terms)

    def forward_folded(self, xs: Sequence[Tensor]) -> list[Tensor]:
        """The layer on folded tensors ``(B, c_in*k, *axes)`` -> ``(B, c_out*k, *axes)``."""
        B = xs[0].shape[0]
        outs: list[Tensor | None] = [None] * len(self.sites)
        reduced: dict[tuple[int, tuple[int, ...]], Tensor] = {}
        for term, plan, p in zip(self.terms, self.plans, self.params):
            if term.source is None:
                y = torch.einsum(plan.equation.replace("->bo", "->o"), p).unsqueeze(0)
            else:
                key = (term.source, plan.reduce_dims)
                x = reduced.get(key)
                if x is None:
                    x = xs[term.source]
                    if plan.reduce_dims:
                        x = x.mean(dim=tuple(d + 2 for d in plan.reduce_dims))
                    reduced[key] = x
                y = torch.einsum(plan.equation, x, p)
            for pos, _ in plan.broadcast:
                y = y.unsqueeze(pos + 2)
            prev = outs[term.target]
            outs[term.target] = y if prev is None else prev + y
        result = []
        for site, y in zip(self.sites, outs):
            assert y is not None
            result.append(y.expand(B, self.c_out * site.kernel_size, *site.sizes))
        return result

    def forward(self, features: WeightSpaceFeatures) -> WeightSpaceFeatures:
        if features.channels != self.c_in:
            raise WeightSpaceError(f"layer expects {self.c_in} channels, features have {features.channels}")
        if features.spec.weight_shapes() != self.spec.weight_shapes():
            raise WeightSpaceError(
                f"layer built for [{self.spec.describe()}] got features of [{features.spec.describe()}]"
            )
        return unfold(self.forward_folded(fold(features)), features.spec)

    def extra_repr(self) -> str:
        return f"{self.c_in}->{self.c_out}, symmetries={self.symmetries}, terms={len(self.terms)}"
