"""The equivariant models: Monomial-NFN and NFN's HNP/NP through one code path, the editor, and
canonicalise-then-HNP.

* :class:`InvariantNFN` — equivariant layers, invariant pooling, MLP head. With
  ``symmetries="monomial"`` it is **Monomial-NFN** (invariant to permutations and to the
  scalings/sign flips the activations allow); ``"hnp"``/``"np"`` give NFN's HNP and NP models
  (NP adds learned input/output position embeddings).
* :class:`EquivariantEditor` — equivariant layers only; returns a weight-space change of the
  input's shape, times a learned scale that starts small.
* :class:`CanonHNP` — canonicalise each net's scale/sign orbit, then HNP.
* :class:`CanonEditor` — canonicalise, edit with an NP/HNP editor, map the change back: an editor
  equivariant to the whole monomial group that sees the wiring like NP does.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from ..canonical import Canonicalize, apply_neuron_factors, canonicalize
from ..layers.equivariant import fold, unfold
from ..layers.fourier import FourierFeatures
from ..layers.pooling import InvariantPool
from ..layers.terms import resolve_symmetries
from ..symmetry import Symmetry, WeightSpaceError
from ..weightspace import WeightSpaceFeatures, WeightSpaceSpec
from .parts import (EquivariantStack, IOEmbedding, check_features, full_group, hidden_perm, mlp_head,
                    needs_io_embedding)
from .registry import ModelEntry, register_model

__all__ = ["InvariantNFN", "EquivariantEditor", "MonomialNFN", "CanonHNP", "CanonEditor"]


def _fourier_front(spec: WeightSpaceSpec, symmetries: Sequence[str], in_channels: int, fourier: int,
                   fourier_scale: float) -> FourierFeatures | None:
    """NFN's Gaussian Fourier input encoding (``fourier = m`` maps), or ``None`` for ``m = 0``."""
    if not fourier:
        return None
    # sin/cos of each entry are neither odd nor homogeneous: only a permutation model may use them
    if any(s in (Symmetry.SCALE, Symmetry.SIGN) for s in symmetries):
        raise WeightSpaceError("fourier features break scale and sign symmetries; use them with hnp/np, on "
                               "canonical weights (canon-np, canon-np-editor), or after a sign-invariant map "
                               "(hybrid-inr)")
    return FourierFeatures(spec, in_channels, int(fourier), fourier_scale)


class InvariantNFN(nn.Module):
    """Equivariant layers -> invariant pooling -> MLP head: ``(B, out_dim)`` scores or logits.

    Paper defaults for the CNN zoo: layers ``1 -> 16 -> 16 -> 5`` with ReLU between (scale
    group) or tanh, tanh, abs (sign group — ``activation="auto"`` does this), head 200, 200.
    ``fourier = m > 0`` (permutation models only) first maps every entry ``x`` to
    ``[sin(2 pi x B), cos(2 pi x B)]``, ``B ~ N(0, fourier_scale^2)`` of shape ``(C, m)``: NFN's
    input encoding for INR weights (m = 128, scale 3 on MNIST). ``feature_dropout`` drops whole
    channels after every hidden activation in training (exactly equivariant); ``dropout`` is the head's.
    """

    def __init__(self, spec: WeightSpaceSpec, symmetries: str | Sequence[str] = "monomial", in_channels: int = 1,
                 hidden: Sequence[int] = (16, 16, 5), activation: str = "auto", head: Sequence[int] = (200, 200),
                 out_dim: int = 1, dropout: float = 0.0, io_embedding: bool | None = None,
                 invariant_map: str = "auto", fourier: int = 0, fourier_scale: float = 3.0,
                 feature_dropout: float = 0.0) -> None:
        super().__init__()
        self.spec = spec
        self.in_channels = in_channels
        self.symmetries = resolve_symmetries(spec, symmetries)
        if io_embedding is None:
            io_embedding = needs_io_embedding(self.symmetries)
        self.fourier = _fourier_front(spec, self.symmetries, in_channels, fourier, fourier_scale)
        c_in = self.fourier.out_channels if self.fourier is not None else in_channels
        self.io_embedding = IOEmbedding(spec, c_in) if io_embedding else None
        chans = [c_in, *hidden]
        self.stack = EquivariantStack(spec, chans, self.symmetries, activation, final_activation=False,
                                      dropout=feature_dropout)
        self.pool = InvariantPool(spec, chans[-1], self.symmetries, invariant_map)
        self.head = mlp_head(self.pool.out_dim, head, out_dim, dropout)

    def forward(self, features: WeightSpaceFeatures) -> Tensor:
        check_features(features, self.spec, self.in_channels, type(self).__name__, self)
        xs = fold(features)
        if self.fourier is not None:
            xs = self.fourier.forward_folded(xs)
        if self.io_embedding is not None:
            xs = self.io_embedding.forward_folded(xs)
        return self.head(self.pool.forward_folded(self.stack.forward_folded(xs)))


def MonomialNFN(spec: WeightSpaceSpec, **config: Any) -> InvariantNFN:
    """Monomial-NFN: :class:`InvariantNFN` with the symmetries read from the activations."""
    return InvariantNFN(spec, symmetries="monomial", **config)


class EquivariantEditor(nn.Module):
    """Equivariant layers ``in_channels -> hidden -> 1``: a weight change ``Delta(U)`` with
    ``Delta(gU) = g Delta(U)``, scaled by a learned scalar that starts at ``out_scale`` so the
    edited network starts close to the input one; with ``scale_per_tensor`` one learned scalar per
    weight and bias tensor (NFN's ``LearnedScale``). A scalar per tensor commutes with every
    permutation, scaling and sign flip of its entries, so either keeps the equivariance."""

    def __init__(self, spec: WeightSpaceSpec, symmetries: str | Sequence[str] = "monomial", in_channels: int = 1,
                 hidden: Sequence[int] = (16, 16, 16), activation: str = "auto", out_scale: float = 1e-3,
                 io_embedding: bool | None = None, fourier: int = 0, fourier_scale: float = 3.0,
                 scale_per_tensor: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.in_channels = in_channels
        self.symmetries = resolve_symmetries(spec, symmetries)
        if io_embedding is None:
            io_embedding = needs_io_embedding(self.symmetries)
        self.fourier = _fourier_front(spec, self.symmetries, in_channels, fourier, fourier_scale)
        c_in = self.fourier.out_channels if self.fourier is not None else in_channels
        self.io_embedding = IOEmbedding(spec, c_in) if io_embedding else None
        self.stack = EquivariantStack(spec, [c_in, *hidden, 1], self.symmetries, activation,
                                       final_activation=False)
        if not isinstance(scale_per_tensor, bool):
            raise WeightSpaceError(f"scale_per_tensor must be true or false, got {scale_per_tensor!r}")
        n = 2 * spec.num_layers if scale_per_tensor else 0
        self.out_scale = nn.Parameter(torch.full((n,), float(out_scale)) if n else torch.tensor(float(out_scale)))

    def forward(self, features: WeightSpaceFeatures) -> WeightSpaceFeatures:
        check_features(features, self.spec, self.in_channels, type(self).__name__, self)
        xs = fold(features)
        if self.fourier is not None:
            xs = self.fourier.forward_folded(xs)
        if self.io_embedding is not None:
            xs = self.io_embedding.forward_folded(xs)
        out = self.stack.forward_folded(xs)
        scales = self.out_scale.unbind() if self.out_scale.dim() else [self.out_scale] * len(out)
        return unfold([t * c for t, c in zip(out, scales)], features.spec)


class CanonHNP(nn.Module):
    """Canonicalise each network's scale/sign orbit, then an HNP (or NP) model: invariant to the
    whole monomial group (canonicalisation removes scales and signs, HNP handles permutations).
    The permutation model may use Fourier features (``fourier=m``): they would break the sign
    symmetry of raw weights, but canonical weights have no signs left to flip. ``orient_last``
    chooses how the last hidden layer is oriented (``incoming`` or ``outgoing``, :mod:`mnfn.canonical`)."""

    def __init__(self, spec: WeightSpaceSpec, inner: str = "hnp", orient_last: str = "incoming",
                 **config: Any) -> None:
        super().__init__()
        if inner not in ("np", "hnp"):
            raise WeightSpaceError(f"canon model: inner must be 'np' or 'hnp', got {inner!r}")
        self.spec = spec
        self.canon = Canonicalize(spec, orient_last=orient_last)
        self.hnp = InvariantNFN(spec, symmetries=inner, **config)

    @property
    def head_owner(self) -> nn.Module:
        """The module whose ``head`` is the MLP head (for :func:`mnfn.models.inr.add_feature_norm`)."""
        return self.hnp

    def forward(self, features: WeightSpaceFeatures) -> Tensor:
        check_features(features, self.spec, self.hnp.in_channels, type(self).__name__, self)
        return self.hnp(self.canon(features))


class CanonEditor(nn.Module):
    """``Delta(U) = D_U^{-1} E(D_U U)``: canonicalise (``canon(U) = D_U U``, :mod:`mnfn.canonical`),
    edit with a permutation-equivariant editor ``E`` (NP by default), map the change back.

    Exactly equivariant to the whole group: for ``g = P D``, ``canon(gU) = P canon(U)`` so
    ``D_{gU} g = P D_U`` on ``U``, and ``Delta(gU) = g D_U^{-1} P^{-1} E(P D_U U) = g Delta(U)``
    because ``E`` commutes with ``P``. Unlike the monomial editor's linear layers (which, for sign
    flips, cannot sum a row or a column of a hidden weight), ``E`` sees which neurons a weight connects.
    """

    def __init__(self, spec: WeightSpaceSpec, inner: str = "np", in_channels: int = 1,
                 hidden: Sequence[int] = (16, 16, 16), activation: str = "auto", out_scale: float = 1e-3,
                 io_embedding: bool | None = None, fourier: int = 0, fourier_scale: float = 3.0,
                 scale_per_tensor: bool = False, orient_last: str = "incoming") -> None:
        super().__init__()
        if inner not in ("np", "hnp"):
            raise WeightSpaceError(f"canon editor: inner must be 'np' or 'hnp', got {inner!r}")
        if in_channels != 1:
            raise WeightSpaceError(f"canon editor works on raw weights (in_channels=1), got {in_channels}")
        self.spec = spec
        self.in_channels = in_channels
        # parameter-free: resolves and checks the symmetries and the orientation once
        self.canon = Canonicalize(spec, orient_last=orient_last)
        self.editor = EquivariantEditor(spec, symmetries=inner, in_channels=in_channels, hidden=hidden,
                                        activation=activation, out_scale=out_scale, io_embedding=io_embedding,
                                        fourier=fourier, fourier_scale=fourier_scale,
                                        scale_per_tensor=scale_per_tensor)

    def forward(self, features: WeightSpaceFeatures) -> WeightSpaceFeatures:
        check_features(features, self.spec, self.in_channels, type(self).__name__, self)
        canon, factors = canonicalize(features, self.canon.symmetries, return_factors=True,
                                      orient_last=self.canon.orient_last)
        return apply_neuron_factors(self.editor(canon), factors, inverse=True)


# --- registry ----------------------------------------------------------------------------------

# NFN's published HNP/NP models use an MLP head of two 1000-wide layers (Zhou et al. 2023);
# Monomial-NFN's paper model uses 200, 200.
_NFN_HEAD = (("head", (1000, 1000)),)


def _nfn(symmetries: str) -> Callable[..., nn.Module]:
    return lambda spec, **config: InvariantNFN(spec, symmetries=symmetries, **config)


def _editor(symmetries: str) -> Callable[..., nn.Module]:
    return lambda spec, **config: EquivariantEditor(spec, symmetries=symmetries, **config)


for _entry in [
    ModelEntry("monomial", _nfn("monomial"), "Monomial-NFN: invariant to permutations x scalings/sign flips",
               full_group, InvariantNFN.__init__),
    ModelEntry("hnp", _nfn("hnp"), "HNP (Zhou et al. 2023): invariant to hidden-neuron permutations",
               hidden_perm, InvariantNFN.__init__, defaults=_NFN_HEAD),
    ModelEntry("np", _nfn("np"), "NP (Zhou et al. 2023): permutation layers + IO position embeddings",
               hidden_perm, InvariantNFN.__init__, defaults=_NFN_HEAD),
    ModelEntry("canon-hnp", CanonHNP, "canonicalise scale/sign orbits, then HNP: monomial invariant",
               full_group, InvariantNFN.__init__, defaults=_NFN_HEAD, extra_keys=("orient_last",)),
    ModelEntry("canon-np", lambda spec, **config: CanonHNP(spec, inner="np", **config),
               "canonicalise scale/sign orbits, then NP (Fourier features allowed): monomial invariant",
               full_group, InvariantNFN.__init__, defaults=_NFN_HEAD, extra_keys=("orient_last",)),
    ModelEntry("monomial-editor", _editor("monomial"),
               "Monomial-NFN editor: weight change equivariant to permutations x scalings/sign flips",
               full_group, EquivariantEditor.__init__, kind="equivariant"),
    ModelEntry("hnp-editor", _editor("hnp"), "HNP editor: weight change equivariant to hidden permutations",
               hidden_perm, EquivariantEditor.__init__, kind="equivariant"),
    ModelEntry("np-editor", _editor("np"), "NP editor with IO position embeddings", hidden_perm,
               EquivariantEditor.__init__, kind="equivariant"),
    ModelEntry("canon-np-editor", CanonEditor,
               "canonicalise scale/sign orbits, NP editor, map the change back: monomial equivariant",
               full_group, CanonEditor.__init__, kind="equivariant"),
]:
    register_model(_entry)
del _entry
