"""Models and the one registry every task builds them from.

* :class:`InvariantNFN` — equivariant layers, invariant pooling, MLP head. With
  ``symmetries="monomial"`` it is **Monomial-NFN** (invariant to permutations and to the
  scalings/sign flips the activations allow); ``"hnp"``/``"np"`` give NFN's HNP and NP models
  through the same code path (NP adds learned input/output position embeddings).
* :class:`EquivariantEditor` — equivariant layers only; returns a weight-space change of the
  input's shape, times a learned scale that starts small.
* ``statnn``, ``mlp`` (:mod:`mnfn.baselines`) and ``canon-hnp`` (canonicalise, then HNP).

``build_model(name, spec, **config)`` builds any of them; :func:`claimed_symmetries` says which
group a model promises to respect, so checks never fail a model for a symmetry it does not claim.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from .baselines import FlatMLP, StatNN, check_dtype, mlp_head
from .canonical import Canonicalize
from .layers.fourier import FourierFeatures
from .layers.equivariant import EquivariantLinear, fold, unfold
from .layers.pooling import EquivariantActivation, InvariantPool
from .layers.terms import resolve_symmetries
from .weightspace import Symmetry, WeightSpaceError, WeightSpaceFeatures, WeightSpaceSpec

__all__ = ["InvariantNFN", "EquivariantEditor", "MonomialNFN", "CanonHNP", "MODELS", "ModelEntry", "build_model",
           "claimed_symmetries", "model_names", "register_model", "count_parameters"]


class _IOEmbedding(nn.Module):
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


class _EquivariantStack(nn.Module):
    """``[EquivariantLinear -> activation] x n`` on folded features (no activation after the last
    layer when ``final_activation`` is False)."""

    def __init__(self, spec: WeightSpaceSpec, channels: Sequence[int], symmetries: str | Sequence[str],
                 activation: str, final_activation: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            EquivariantLinear(spec, a, b, symmetries) for a, b in zip(channels[:-1], channels[1:])
        )
        n_act = len(self.layers) if final_activation else len(self.layers) - 1
        self.acts = nn.ModuleList(EquivariantActivation(spec, activation, symmetries) for _ in range(n_act))

    def forward_folded(self, xs: list[Tensor]) -> list[Tensor]:
        for i, layer in enumerate(self.layers):
            xs = layer.forward_folded(xs)
            if i < len(self.acts):
                xs = self.acts[i].forward_folded(xs)
        return xs


def _check_features(features: WeightSpaceFeatures, spec: WeightSpaceSpec, channels: int, who: str,
                    module: nn.Module | None = None) -> None:
    if not isinstance(features, WeightSpaceFeatures):
        raise WeightSpaceError(f"{who} takes WeightSpaceFeatures, got {type(features).__name__}")
    if features.spec.weight_shapes() != spec.weight_shapes():
        raise WeightSpaceError(f"{who} was built for [{spec.describe()}], got features of [{features.spec.describe()}]")
    if features.channels != channels:
        raise WeightSpaceError(f"{who} expects {channels} input channels, features have {features.channels}")
    if features.batch_size == 0:
        raise WeightSpaceError(f"{who} got an empty batch (0 networks)")
    check_dtype(features, who, module)


class InvariantNFN(nn.Module):
    """Equivariant layers -> invariant pooling -> MLP head: ``(B, out_dim)`` scores or logits.

    Paper defaults for the CNN zoo: layers ``1 -> 16 -> 16 -> 5`` with ReLU between (scale
    group) or tanh, tanh, abs (sign group — ``activation="auto"`` does this), head 200, 200.
    ``fourier = m > 0`` (permutation models only) first maps every entry ``x`` to
    ``[sin(2 pi x B), cos(2 pi x B)]``, ``B ~ N(0, fourier_scale^2)`` of shape ``(C, m)``: NFN's
    input encoding for INR weights (m = 128, scale 3 on MNIST).
    """

    def __init__(self, spec: WeightSpaceSpec, symmetries: str | Sequence[str] = "monomial", in_channels: int = 1,
                 hidden: Sequence[int] = (16, 16, 5), activation: str = "auto", head: Sequence[int] = (200, 200),
                 out_dim: int = 1, dropout: float = 0.0, io_embedding: bool | None = None,
                 invariant_map: str = "auto", fourier: int = 0, fourier_scale: float = 3.0) -> None:
        super().__init__()
        self.spec = spec
        self.in_channels = in_channels
        self.symmetries = resolve_symmetries(spec, symmetries)
        if io_embedding is None:
            io_embedding = self.symmetries[0] != Symmetry.FIXED or self.symmetries[-1] != Symmetry.FIXED
        self.fourier = None
        c_in = in_channels
        if fourier:
            # sin/cos of each entry are neither odd nor homogeneous: only a permutation model may use them
            if any(s in (Symmetry.SCALE, Symmetry.SIGN) for s in self.symmetries):
                raise WeightSpaceError("fourier features break scale and sign symmetries; use them with hnp/np "
                                       "(or hybrid-inr, which applies them after a sign-invariant map)")
            self.fourier = FourierFeatures(spec, in_channels, int(fourier), fourier_scale)
            c_in = self.fourier.out_channels
        self.io_embedding = _IOEmbedding(spec, c_in) if io_embedding else None
        chans = [c_in, *hidden]
        self.stack = _EquivariantStack(spec, chans, self.symmetries, activation, final_activation=False)
        self.pool = InvariantPool(spec, chans[-1], self.symmetries, invariant_map)
        self.head = mlp_head(self.pool.out_dim, head, out_dim, dropout)

    def forward(self, features: WeightSpaceFeatures) -> Tensor:
        _check_features(features, self.spec, self.in_channels, type(self).__name__, self)
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
    edited network starts close to the input one."""

    def __init__(self, spec: WeightSpaceSpec, symmetries: str | Sequence[str] = "monomial", in_channels: int = 1,
                 hidden: Sequence[int] = (16, 16, 16), activation: str = "auto", out_scale: float = 1e-3,
                 io_embedding: bool | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.in_channels = in_channels
        self.symmetries = resolve_symmetries(spec, symmetries)
        if io_embedding is None:
            io_embedding = self.symmetries[0] != Symmetry.FIXED or self.symmetries[-1] != Symmetry.FIXED
        self.io_embedding = _IOEmbedding(spec, in_channels) if io_embedding else None
        self.stack = _EquivariantStack(spec, [in_channels, *hidden, 1], self.symmetries, activation,
                                       final_activation=False)
        self.out_scale = nn.Parameter(torch.tensor(float(out_scale)))

    def forward(self, features: WeightSpaceFeatures) -> WeightSpaceFeatures:
        _check_features(features, self.spec, self.in_channels, type(self).__name__, self)
        xs = fold(features)
        if self.io_embedding is not None:
            xs = self.io_embedding.forward_folded(xs)
        out = self.stack.forward_folded(xs)
        return unfold([t * self.out_scale for t in out], features.spec)


class CanonHNP(nn.Module):
    """Canonicalise each network's scale/sign orbit, then an HNP model: invariant to the whole
    monomial group (canonicalisation removes scales and signs, HNP handles permutations)."""

    def __init__(self, spec: WeightSpaceSpec, **config: Any) -> None:
        super().__init__()
        self.spec = spec
        self.canon = Canonicalize(spec)
        self.hnp = InvariantNFN(spec, symmetries="hnp", **config)

    def forward(self, features: WeightSpaceFeatures) -> Tensor:
        _check_features(features, self.spec, self.hnp.in_channels, type(self).__name__, self)
        return self.hnp(self.canon(features))


# --- registry ----------------------------------------------------------------------------------

def _hidden_perm(spec: WeightSpaceSpec) -> tuple[str, ...]:
    return resolve_symmetries(spec, "hnp")


def _no_symmetry(spec: WeightSpaceSpec) -> tuple[str, ...]:
    return tuple(Symmetry.FIXED for _ in spec.widths)


def _statnn(spec: WeightSpaceSpec, in_channels: int = 1, hidden: Sequence[int] = (1000, 1000), out_dim: int = 1,
            dropout: float = 0.0) -> nn.Module:
    return StatNN(spec, hidden=hidden, out_features=out_dim, dropout=dropout, channels=in_channels)


def _flat_mlp(spec: WeightSpaceSpec, in_channels: int = 1, hidden: Sequence[int] = (1000, 1000), out_dim: int = 1,
              dropout: float = 0.0) -> nn.Module:
    return FlatMLP(spec, hidden=hidden, out_features=out_dim, dropout=dropout, channels=in_channels)


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: how to build it, what it promises, and which config keys it takes."""

    name: str
    builder: Callable[..., nn.Module]
    description: str
    claims: Callable[[WeightSpaceSpec], tuple[str, ...]]  # per-neuron-layer symmetries it respects
    signature: Callable[..., Any]  # whose keyword arguments are the config keys
    kind: str = "invariant"  # "invariant" (features -> vector) or "equivariant" (features -> features)
    defaults: tuple[tuple[str, Any], ...] = ()  # the published configuration, overridable key by key
    supports: Callable[[WeightSpaceSpec], str | None] | None = None  # reason it cannot serve a spec, or None

    def unsupported(self, spec: WeightSpaceSpec) -> str | None:
        """Why this model cannot be built for ``spec`` (``None``: it can)."""
        return self.supports(spec) if self.supports is not None else None

    def config_keys(self) -> set[str]:
        params = inspect.signature(self.signature).parameters
        return {n for n, p in params.items() if n not in ("self", "spec", "symmetries")
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


# NFN's published HNP/NP models use an MLP head of two 1000-wide layers (Zhou et al. 2023);
# Monomial-NFN's paper model uses 200, 200.
_NFN_HEAD = (("head", (1000, 1000)),)


def _nfn(symmetries: str) -> Callable[..., nn.Module]:
    return lambda spec, **config: InvariantNFN(spec, symmetries=symmetries, **config)


def _editor(symmetries: str) -> Callable[..., nn.Module]:
    return lambda spec, **config: EquivariantEditor(spec, symmetries=symmetries, **config)


MODELS: dict[str, ModelEntry] = {
    e.name: e
    for e in [
        ModelEntry("monomial", _nfn("monomial"), "Monomial-NFN: invariant to permutations x scalings/sign flips",
                   lambda s: s.neuron_symmetries(), InvariantNFN.__init__),
        ModelEntry("hnp", _nfn("hnp"), "HNP (Zhou et al. 2023): invariant to hidden-neuron permutations",
                   _hidden_perm, InvariantNFN.__init__, defaults=_NFN_HEAD),
        ModelEntry("np", _nfn("np"), "NP (Zhou et al. 2023): permutation layers + IO position embeddings",
                   _hidden_perm, InvariantNFN.__init__, defaults=_NFN_HEAD),
        ModelEntry("canon-hnp", CanonHNP, "canonicalise scale/sign orbits, then HNP: monomial invariant",
                   lambda s: s.neuron_symmetries(), InvariantNFN.__init__, defaults=_NFN_HEAD),
        ModelEntry("statnn", _statnn, "StatNN (Unterthiner et al. 2020): 7 statistics per tensor -> MLP",
                   _hidden_perm, _statnn),
        ModelEntry("mlp", _flat_mlp, "MLP on the flattened weights (no symmetry)", _no_symmetry, _flat_mlp),
        ModelEntry("monomial-editor", _editor("monomial"),
                   "Monomial-NFN editor: weight change equivariant to permutations x scalings/sign flips",
                   lambda s: s.neuron_symmetries(), EquivariantEditor.__init__, kind="equivariant"),
        ModelEntry("hnp-editor", _editor("hnp"), "HNP editor: weight change equivariant to hidden permutations",
                   _hidden_perm, EquivariantEditor.__init__, kind="equivariant"),
        ModelEntry("np-editor", _editor("np"), "NP editor with IO position embeddings", _hidden_perm,
                   EquivariantEditor.__init__, kind="equivariant"),
    ]
}


def register_model(entry: ModelEntry) -> None:
    """Add a model to the registry (tasks may register task-specific variants)."""
    MODELS[entry.name] = entry


def model_names(kind: str | None = None) -> list[str]:
    return [n for n, e in MODELS.items() if kind is None or e.kind == kind]


def build_model(name: str, spec: WeightSpaceSpec, **config: Any) -> nn.Module:
    """Build registered model ``name`` for ``spec``; an unknown config key is an error."""
    if name not in MODELS:
        raise WeightSpaceError(f"unknown model {name!r}; registered: {', '.join(MODELS)}")
    entry = MODELS[name]
    reason = entry.unsupported(spec)
    if reason:
        raise WeightSpaceError(f"model {name!r} cannot serve [{spec.describe()}]: {reason}")
    unknown = sorted(set(config) - entry.config_keys())
    if unknown:
        raise WeightSpaceError(f"model {name!r} does not take config keys {unknown}; it takes {sorted(entry.config_keys())}")
    return entry.builder(spec, **{**dict(entry.defaults), **config})


def claimed_symmetries(name: str, spec: WeightSpaceSpec) -> tuple[str, ...]:
    """Per-neuron-layer symmetries model ``name`` promises to respect (``fixed`` = none)."""
    if name not in MODELS:
        raise WeightSpaceError(f"unknown model {name!r}; registered: {', '.join(MODELS)}")
    return MODELS[name].claims(spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# The INR models register themselves into the same registry; importing them here makes the registry
# the same whatever the caller imported first.
from . import inr_models as _inr_models  # noqa: E402,F401
