"""The parts every model in this package is built from, each written once: the input check, the
MLP head, NP's input/output position embedding, the stack of equivariant layers, and the claims
(which symmetries a model respects) shared by several entries."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..layers.dropout import ChannelDropout
from ..layers.equivariant import EquivariantLinear
from ..layers.pooling import EquivariantActivation
from ..layers.terms import resolve_symmetries
from ..symmetry import Symmetry, WeightSpaceError
from ..weightspace import WeightSpaceFeatures, WeightSpaceSpec

__all__ = ["check_dtype", "check_features", "mlp_head", "IOEmbedding", "EquivariantStack", "full_group",
           "hidden_perm", "no_symmetry", "meet", "chain_claims", "needs_io_embedding"]


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


def check_features(features: WeightSpaceFeatures, spec: WeightSpaceSpec, channels: int, who: str,
                   module: nn.Module | None = None) -> None:
    """The one input check of every model: a ``WeightSpaceFeatures`` batch, not empty, of the
    architecture the model was built for and ``channels`` channels, floating point of the model's
    dtype. Shapes (not activations) decide: a zoo of ReLU and tanh nets of one architecture is a
    valid input to the same permutation baseline."""
    if not isinstance(features, WeightSpaceFeatures):
        raise WeightSpaceError(f"{who} takes WeightSpaceFeatures, got {type(features).__name__}")
    if (features.spec.weight_shapes() != spec.weight_shapes()
            or features.spec.bias_shapes() != spec.bias_shapes()):
        raise WeightSpaceError(
            f"{who} was built for [{spec.describe()}], got features of [{features.spec.describe()}] "
            "(mixed architectures cannot share one model)"
        )
    if features.channels != channels:
        raise WeightSpaceError(f"{who} expects {channels} input channel(s), features have {features.channels}")
    if features.batch_size == 0:
        raise WeightSpaceError(f"{who} got an empty batch (0 networks)")
    check_dtype(features, who, module)


def needs_io_embedding(symmetries: Sequence[str]) -> bool:
    """NP's rule: a model that permutes input or output neurons needs position embeddings to tell them apart."""
    return symmetries[0] != Symmetry.FIXED or symmetries[-1] != Symmetry.FIXED


class IOEmbedding(nn.Module):
    """Learned position embeddings for NP: added to the input columns of ``W(1)`` and the output
    rows of ``W(L)`` and ``b(L)``, so a model that treats input/output neurons as permutable can
    still tell them apart."""

    def __init__(self, spec: WeightSpaceSpec, channels: int) -> None:
        super().__init__()
        first, last = spec.layers[0], spec.layers[-1]
        self.w_in = nn.Parameter(0.1 * torch.randn(channels * first.kernel_size, 1, first.n_in))
        self.w_out = nn.Parameter(0.1 * torch.randn(channels * last.kernel_size, last.n_out, 1))
        self.b_out = nn.Parameter(0.1 * torch.randn(channels, last.n_out))

    def forward_folded(self, xs: list[Tensor]) -> list[Tensor]:
        xs = list(xs)
        xs[0] = xs[0] + self.w_in
        xs[-2] = xs[-2] + self.w_out
        xs[-1] = xs[-1] + self.b_out
        return xs


class EquivariantStack(nn.Module):
    """``[EquivariantLinear -> activation -> ChannelDropout] x n`` on folded features:
    ``channels[0] -> ... -> channels[-1]``, an activation between consecutive layers and, with
    ``final_activation``, after the last; ``dropout`` (NFN's ``feature_dropout``) drops whole
    channels after every activation (exactly equivariant, :class:`~mnfn.layers.ChannelDropout`)."""

    def __init__(self, spec: WeightSpaceSpec, channels: Sequence[int], symmetries: str | Sequence[str],
                 activation: str, final_activation: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if len(channels) < 2:
            raise WeightSpaceError(f"a stack needs at least one layer: channels {list(channels)}")
        self.layers = nn.ModuleList(
            EquivariantLinear(spec, a, b, symmetries) for a, b in zip(channels[:-1], channels[1:])
        )
        n_act = len(self.layers) if final_activation else len(self.layers) - 1
        self.acts = nn.ModuleList(EquivariantActivation(spec, activation, symmetries) for _ in range(n_act))
        # parameter-free, so the state-dict keys do not depend on the rate; a no-op at 0
        self.drops = nn.ModuleList(ChannelDropout(dropout) for _ in range(n_act))

    def forward_folded(self, xs: list[Tensor]) -> list[Tensor]:
        for i, layer in enumerate(self.layers):
            xs = layer.forward_folded(xs)
            if i < len(self.acts):
                xs = self.acts[i].forward_folded(xs, inplace=True)  # the layer's outputs are its own
                xs = self.drops[i].forward_folded(xs)
        return xs


def full_group(spec: WeightSpaceSpec) -> tuple[str, ...]:
    """Claims: every symmetry the nets' activations allow (scalings or sign flips, and permutations)."""
    return spec.neuron_symmetries()


def hidden_perm(spec: WeightSpaceSpec) -> tuple[str, ...]:
    """Claims: permutations of hidden neurons only."""
    return resolve_symmetries(spec, "hnp")


def no_symmetry(spec: WeightSpaceSpec) -> tuple[str, ...]:
    """Claims: none."""
    return tuple(Symmetry.FIXED for _ in spec.widths)


def meet(a: str, b: str) -> str:
    """The largest group both ``a`` and ``b`` contain, for one neuron layer (scale and sign share
    only permutations; nothing is below ``fixed``)."""
    if a == b:
        return a
    if Symmetry.FIXED in (a, b):
        return Symmetry.FIXED
    return Symmetry.PERM


def chain_claims(parts: nn.Sequential, spec: WeightSpaceSpec) -> tuple[str, ...]:
    """The symmetries an ``nn.Sequential`` of weight-space parts respects, derived from its parts.

    Every part up to the first :class:`~mnfn.layers.pooling.InvariantPool` declares the group it
    commutes with (``part.symmetries``: one per neuron layer); the chain respects their meet, layer
    by layer, starting from the nets' own group. After the pool the features are invariant, so
    whatever follows (an MLP head) changes nothing. A part that declares nothing is assumed to
    respect nothing. ``tests/test_models.py`` checks the result numerically.
    """
    from ..layers.pooling import InvariantPool

    claims = list(spec.neuron_symmetries())
    for part in parts:
        syms = getattr(part, "symmetries", None)
        if syms is None:
            return tuple(Symmetry.FIXED for _ in claims)
        claims = [meet(c, s) for c, s in zip(claims, syms)]
        if isinstance(part, InvariantPool):
            return tuple(claims)
    return tuple(claims)
