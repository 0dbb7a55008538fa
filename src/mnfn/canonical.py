"""Canonical representatives of the scale / sign orbits of a weight vector.

For every hidden neuron layer ``i = 1..L-1`` (in order, since each step changes the incoming
weights of layer ``i + 1``), with ``v_j = (W(i)[j, ...], b(i)[j])`` the incoming weights (conv
kernel entries included) and bias of neuron ``j``:

* ``scale`` layers: ``v_j <- v_j / ||v_j||`` and ``W(i+1)[:, j, ...] <- ||v_j|| W(i+1)[:, j, ...]``.
  A positively homogeneous activation ``f(x / n) = f(x) / n`` keeps the network function.
* ``sign`` layers: ``v_j <- s_j v_j`` and ``W(i+1)[:, j, ...] <- s_j W(i+1)[:, j, ...]`` with
  ``s_j = sign(stat(v_j))`` so that ``stat(s_j v_j) > 0``; odd activations keep the function.
* ``perm`` (and ``fixed``) layers are left alone.

``orient_last="outgoing"`` orients the *last* hidden layer by its outgoing column ``u_j =
W(L)[:, j, ...]`` instead (the output neurons are fixed, so nothing else acts on it): ``u_j <- u_j /
||u_j||`` and the norm moves onto the incoming row (scale), or ``s_j = sign(stat(u_j))`` (sign). For a
SIREN with one output this makes every ``W(L)`` entry positive, so each last hidden neuron's row says
how it adds to the image; the incoming statistic of a 33-entry row is often near zero, where the
representative jumps.

Neurons with all-zero incoming weights and bias are left alone (no representative is better).

Since every diagonal group element ``D`` multiplies ``v_j`` by ``d_j`` and the pushed factor undoes
the ``1 / d_j`` on the next layer's columns, ``canon(D U) = canon(U)``; the statistics used are
invariant to permuting the entries of ``v_j``, so ``canon(P U) = P canon(U)`` for a permutation
``P``. Together: ``canon(g U) = h canon(U)`` with ``h`` the permutation part of ``g``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .weightspace import Symmetry, WeightSpaceError, WeightSpaceFeatures, WeightSpaceSpec

__all__ = ["canonicalize", "Canonicalize", "sign_statistic", "apply_neuron_factors", "ORIENTATIONS"]


def _incoming(w: Tensor, b: Tensor) -> Tensor:
    """``(B, n, D + 1)``: each neuron's incoming weights (all kernel entries) followed by its bias.

    The bias comes *first* so that the positional tie-break below looks at it before any entry
    indexed by (possibly permuted) input neurons.
    """
    B, n = b.shape[0], b.shape[2]
    return torch.cat([b[:, 0, :, None], w[:, 0].reshape(B, n, -1)], dim=-1)


def _outgoing(w_next: Tensor) -> Tensor:
    """``(B, n, D)``: each neuron's outgoing column of the next weight (all output neurons and kernel
    entries), the neuron axis first."""
    B, n = w_next.shape[0], w_next.shape[3]
    return w_next[:, 0].transpose(1, 2).reshape(B, n, -1)


#: How the last hidden layer is oriented (see the module docstring).
ORIENTATIONS = ("incoming", "outgoing")


def _check_orient(orient_last: str) -> str:
    if orient_last not in ORIENTATIONS:
        raise WeightSpaceError(f"orient_last must be one of {ORIENTATIONS}, got {orient_last!r}")
    return orient_last


def _rows(d: Tensor, t: Tensor) -> Tensor:
    """View a per-neuron ``(B, n)`` factor so it broadcasts over the rows (axis 2) of ``t``."""
    return d.view(d.shape[0], 1, d.shape[1], *([1] * (t.dim() - 3)))


def _cols(d: Tensor, t: Tensor) -> Tensor:
    """View a per-neuron ``(B, n)`` factor so it broadcasts over the columns (axis 3) of a weight ``t``."""
    return d.view(d.shape[0], 1, 1, d.shape[1], *([1] * (t.dim() - 4)))


def _safe_max_abs(v: Tensor) -> tuple[Tensor, Tensor]:
    """``(m, nonzero)``: max ``|v|`` over the last axis (1 where all entries are 0) and the mask ``m > 0``."""
    m = v.abs().amax(dim=-1)
    nonzero = m > 0
    return torch.where(nonzero, m, torch.ones_like(m)), nonzero


def sign_statistic(v: Tensor) -> Tensor:
    """An odd, permutation-invariant statistic of each row of ``v`` (``(..., D)``), nonzero unless ``v = 0``.

    ``stat(v) = sum(v / max|v|)``, summed in order of increasing ``|v|`` so that the value does not
    depend on the order of the entries and ``stat(-v) = -stat(v)`` exactly (round-to-nearest is
    symmetric and the summation order is the same). Ties (exactly 0): the sum of cubes
    ``sum((v / max|v|)^3)`` in the same order; if that vanishes too (the multiset of entries is
    symmetric under negation, e.g. ``(1, -1)``), the first nonzero entry in the fixed order
    ``(bias, weights...)``, the only rule that depends on positions. All-zero rows give 0.
    """
    m, _ = _safe_max_abs(v)
    # Dividing by the max abs keeps every term in [-1, 1]: no overflow for huge weights and the
    # cube of tiny weights does not underflow.
    u = v / m.unsqueeze(-1)
    order = torch.argsort(u.abs(), dim=-1, stable=True)
    us = torch.gather(u, -1, order)
    s1 = us.sum(-1)
    s3 = (us * us * us).sum(-1)
    first_idx = (u != 0).to(torch.uint8).argmax(dim=-1, keepdim=True)  # 0 when the row is all zero
    first = torch.gather(u, -1, first_idx).squeeze(-1)
    return torch.where(s1 != 0, s1, torch.where(s3 != 0, s3, first))


def _check_symmetries(spec: WeightSpaceSpec, symmetries: Sequence[str] | None) -> tuple[str, ...]:
    syms = tuple(symmetries) if symmetries is not None else spec.neuron_symmetries()
    if len(syms) != spec.num_layers + 1:
        raise WeightSpaceError(
            f"need {spec.num_layers + 1} neuron-layer symmetries (input, hidden..., output), got {len(syms)}"
        )
    bad = [s for s in syms if s not in Symmetry.ALL]
    if bad:
        raise WeightSpaceError(f"unknown symmetries {bad}; known: {Symmetry.ALL}")
    return syms


def canonicalize(features: WeightSpaceFeatures, symmetries: Sequence[str] | None = None,
                 return_factors: bool = False, orient_last: str = "incoming") -> Any:
    """Map every network of a batch to the canonical representative of its scale / sign orbit.

    ``features`` must have one channel (canonicalisation is defined on raw weights).
    ``symmetries`` overrides ``features.spec.neuron_symmetries()`` (one entry per neuron layer
    ``0..L``; the input and output entries are ignored since those neurons are fixed).
    Differentiable almost everywhere; returns new features, the input is not modified.

    ``return_factors=True`` also returns the diagonal group element ``D`` with ``canon(U) = D U``:
    one ``(B, n_i)`` tensor per hidden layer ``i = 1..L-1`` (``None`` where nothing was done), the
    factor ``d_j`` multiplying neuron ``j``'s incoming row and dividing its outgoing column
    (:func:`apply_neuron_factors`). An editor that works on ``canon(U)`` maps its change back with
    ``D^{-1}``.

    ``orient_last``: ``"incoming"`` (every hidden layer by its incoming weights and bias) or
    ``"outgoing"`` (the last hidden layer by its outgoing column; see the module docstring).
    """
    _check_orient(orient_last)
    spec = features.spec
    if features.channels != 1:
        raise WeightSpaceError(
            f"canonicalisation works on raw weights with one channel, got C={features.channels}"
        )
    syms = _check_symmetries(spec, symmetries)
    ws, bs = list(features.weights), list(features.biases)
    L = spec.num_layers
    factors: list[Tensor | None] = [None] * (L - 1)
    for i in range(1, L):  # hidden neuron layer i: rows of ws[i-1], bs[i-1]; columns of ws[i]
        sym = syms[i]
        if sym not in (Symmetry.SCALE, Symmetry.SIGN):
            continue
        w, b, w_next = ws[i - 1], bs[i - 1], ws[i]
        outgoing = orient_last == "outgoing" and i == L - 1
        v = _outgoing(w_next) if outgoing else _incoming(w, b)  # (B, n, D)
        if sym == Symmetry.SCALE:
            # ||v|| = m * ||v / m|| with m = max|v|: v / m lies in [-1, 1] with one entry of size 1,
            # so its squared norm is in [1, D+1] and neither under- nor overflows. Zero rows get
            # m = 1 and sq = 1 (factor 1: left alone), which also keeps gradients finite.
            m, nonzero = _safe_max_abs(v)
            # m is detached: the result depends on v only through v / ||v|| and ||v||, never on m
            # itself, and m's own gradient path divides by m^2, which underflows for tiny weights.
            m = m.detach()
            source = (w_next,) if outgoing else (w, b)
            if torch.is_grad_enabled() and any(t.requires_grad for t in source):
                # d(v / ||v||)/dv ~ 1 / ||v|| overflows for rows near zero (zoo weights reach 1e-42):
                # as in the invariant pooling, their values stay exact and only their gradient is cut,
                # below max|v| = eps^2 of the dtype.
                keep = m >= torch.finfo(v.dtype).eps ** 2
                if not bool(keep.all()):
                    if outgoing:
                        w_next = torch.where(_cols(keep, w_next), w_next, w_next.detach())
                    else:
                        w = torch.where(_rows(keep, w), w, w.detach())
                        b = torch.where(_rows(keep, b), b, b.detach())
                    v = torch.where(keep.unsqueeze(-1), v, v.detach())
            sq = (v / m.unsqueeze(-1)).square().sum(-1)
            r = torch.where(nonzero, sq, torch.ones_like(sq)).sqrt()
            # Apply m and r one after the other, never m * r, which could under/overflow. Incoming:
            # unit row, its norm moves onto the outgoing column; outgoing: the other way round.
            if outgoing:
                w = w * _rows(m, w) * _rows(r, w)
                b = b * _rows(m, b) * _rows(r, b)
                w_next = w_next / _cols(m, w_next) / _cols(r, w_next)
                factors[i - 1] = m * r
            else:
                w = w / _rows(m, w) / _rows(r, w)
                b = b / _rows(m, b) / _rows(r, b)
                w_next = w_next * _cols(m, w_next) * _cols(r, w_next)
                factors[i - 1] = 1.0 / m / r
        else:
            s = torch.where(sign_statistic(v) < 0, -1.0, 1.0).to(w.dtype)  # (B, n); all-zero rows: +1
            w = w * _rows(s, w)
            b = b * _rows(s, b)
            w_next = w_next * _cols(s, w_next)
            factors[i - 1] = s
        ws[i - 1], bs[i - 1], ws[i] = w, b, w_next
    out = WeightSpaceFeatures(tuple(ws), tuple(bs), spec)
    return (out, tuple(factors)) if return_factors else out


def apply_neuron_factors(features: WeightSpaceFeatures, factors: Sequence[Tensor | None],
                         inverse: bool = False) -> WeightSpaceFeatures:
    """``D U`` (or ``D^{-1} U``) for a diagonal element given as one ``(B, n_i)`` factor per hidden
    layer (``None``: identity), as returned by ``canonicalize(..., return_factors=True)``.

    Row ``j`` of ``W(i)``, ``b(i)`` is multiplied by ``d_j`` and column ``j`` of ``W(i+1)`` divided
    by it, in every channel: the action of the group on weights, which is linear, so it maps weight
    *changes* the same way.
    """
    L = features.spec.num_layers
    if len(factors) != L - 1:
        raise WeightSpaceError(f"need {L - 1} hidden-layer factors, got {len(factors)}")
    ws, bs = list(features.weights), list(features.biases)
    for i, d in enumerate(factors, start=1):
        if d is None:
            continue
        d = d.to(ws[i - 1].dtype)
        if inverse:
            d = 1.0 / d
        ws[i - 1] = ws[i - 1] * _rows(d, ws[i - 1])
        bs[i - 1] = bs[i - 1] * _rows(d, bs[i - 1])
        ws[i] = ws[i] / _cols(d, ws[i])
    return WeightSpaceFeatures(tuple(ws), tuple(bs), features.spec)


class Canonicalize(nn.Module):
    """``features -> canonicalize(features)``: a parameter-free first stage of a model (e.g. canon-hnp)."""

    def __init__(self, spec: WeightSpaceSpec, symmetries: Sequence[str] | None = None,
                 orient_last: str = "incoming") -> None:
        super().__init__()
        self.spec = spec
        self.symmetries = _check_symmetries(spec, symmetries)
        self.orient_last = _check_orient(orient_last)

    def forward(self, features: WeightSpaceFeatures) -> WeightSpaceFeatures:
        if features.spec.weight_shapes() != self.spec.weight_shapes():
            raise WeightSpaceError(
                f"Canonicalize was built for [{self.spec.describe()}] but got features of [{features.spec.describe()}]"
            )
        return canonicalize(features, self.symmetries, orient_last=self.orient_last)

    def extra_repr(self) -> str:
        return f"symmetries={self.symmetries}, orient_last={self.orient_last!r}"
