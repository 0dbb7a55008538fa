"""Models for SIREN weights (experiments 2 and 3: classifying and editing INRs), registered in
:data:`mnfn.models.MODELS` when this module is imported.

Every SIREN hidden neuron carries the *sign* group (``sin`` is odd) and permutations; input and
output neurons are fixed. What each model promises is stated in the registry (``claims``) and is
checked numerically by the tests (float64, relative error 1e-10):

=================== ============ ===================================================================
name                kind         symmetry (SIREN weights)
=================== ============ ===================================================================
``monomial-inr``    invariant    the whole group (sign flips x hidden permutations): sign-equivariant
                                 layers with odd activations, then ``abs`` and averaging over hidden
                                 axes (:class:`~mnfn.models.InvariantNFN`), then an MLP head
``hybrid-inr``      invariant    the whole group too, but built as the paper's "Monomial-NFN" for
                                 INRs really is: a few sign-equivariant layers, ``abs`` (entrywise
                                 sign-invariant, still permutation-equivariant), random Fourier
                                 features entrywise, then an ordinary HNP or NP network
``hybrid-editor``   equivariant  hidden permutations only; **not** sign-equivariant: sign-equivariant
                                 layers followed by Fourier features and HNP/NP layers with ReLU (the
                                 paper's INR editor, which it labelled "Monomial")
``mlp-editor``      equivariant  none: an MLP on the flattened weights -> a flattened weight change
=================== ============ ===================================================================

(``kind="equivariant"`` is the registry's word for "features -> features"; the symmetry claim is
what says whether the map respects any group.) The fully sign-equivariant editor is the existing
``monomial-editor``; ``hnp``/``np``/``mlp`` classifiers and ``hnp-editor``/``np-editor`` too.

:class:`TensorScale` wraps any of these with a fixed positive scale per weight/bias tensor (RMS of
the training set): SIREN tensors differ in magnitude by orders of magnitude, and a positive scalar
per tensor commutes with every monomial group element, so the wrapper keeps all symmetries.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers.equivariant import fold, unfold
from ..layers.fourier import FourierFeatures
from ..layers.pooling import InvariantPool
from ..symmetry import Symmetry, WeightSpaceError
from ..weightspace import WeightSpaceFeatures, WeightSpaceSpec
from .nfn import InvariantNFN
from .parts import EquivariantStack, IOEmbedding, check_features, full_group, hidden_perm, mlp_head, no_symmetry
from .registry import ModelEntry, register_model

__all__ = [
    "FourierFeatures",
    "HybridInrClassifier",
    "HybridEditor",
    "MLPEditor",
    "TensorScale",
    "tensor_rms",
    "add_feature_norm",
    "HeadNorm",
    "monomial_inr",
    "INR_CLASSIFIERS",
    "INR_EDITORS",
]

#: Classifier and editor names the INR tasks offer by default (all registered in ``MODELS``).
INR_CLASSIFIERS = ("monomial-inr", "hybrid-inr", "np", "hnp", "mlp")
INR_EDITORS = ("monomial-editor", "hybrid-editor", "np-editor", "hnp-editor", "mlp-editor")


def _require_sign(spec: WeightSpaceSpec, who: str) -> None:
    syms = spec.neuron_symmetries()[1:-1]
    if any(s != Symmetry.SIGN for s in syms):
        raise WeightSpaceError(
            f"{who} is built for networks with odd activations (sin, tanh) on every hidden layer; "
            f"[{spec.describe()}] has hidden symmetries {syms}"
        )


def _sign_only(spec: WeightSpaceSpec) -> str | None:
    """Registry ``supports``: why a hybrid cannot serve ``spec`` (``None``: it can)."""
    syms = spec.neuron_symmetries()[1:-1]
    if any(s != Symmetry.SIGN for s in syms):
        return (f"the hybrids need odd activations (sin, tanh) on every hidden layer, this net has hidden "
                f"symmetries {syms}")
    return None


def _sign_claims(spec: WeightSpaceSpec) -> tuple[str, ...]:
    """Sign flips where the weights have them, permutations elsewhere (hidden layers); fixed ends."""
    syms = spec.neuron_symmetries()
    return tuple(s if s in (Symmetry.FIXED, Symmetry.SIGN) else Symmetry.PERM for s in syms)


# --- building blocks ---------------------------------------------------------------------------

def _sign_front(spec: WeightSpaceSpec, in_channels: int, sign_channels: Sequence[int], sign_activation: str,
                final_activation: bool) -> EquivariantStack:
    if not sign_channels:
        raise WeightSpaceError("sign_channels must name at least one sign-equivariant layer")
    return EquivariantStack(spec, [in_channels, *sign_channels], "monomial", sign_activation, final_activation)


def _hybrid_front(model: nn.Module, spec: WeightSpaceSpec, who: str, in_channels: int, sign_channels: Sequence[int],
                  sign_activation: str, mapping_size: int, fourier_scale: float, fourier_seed: int, mode: str) -> int:
    """The paper's hybrid front, shared by its classifier and editor: sign-equivariant layers, then
    Fourier features (and NP's position embedding); sets them on ``model``, returns their channels."""
    _require_sign(spec, who)
    if mode not in ("hnp", "np"):
        raise WeightSpaceError(f"mode must be 'hnp' or 'np', got {mode!r}")
    model.spec = spec
    model.in_channels = in_channels
    model.mode = mode
    model.sign = _sign_front(spec, in_channels, sign_channels, sign_activation, final_activation=False)
    model.fourier = FourierFeatures(spec, sign_channels[-1], mapping_size, fourier_scale, fourier_seed)
    c = model.fourier.out_channels
    model.io_embedding = IOEmbedding(spec, c) if mode == "np" else None
    return c


# --- classifiers -------------------------------------------------------------------------------

def monomial_inr(spec: WeightSpaceSpec, in_channels: int = 1, hidden: Sequence[int] = (32, 32, 16),
                 activation: str = "auto", head: Sequence[int] = (256, 256), out_dim: int = 10,
                 dropout: float = 0.1, invariant_map: str = "auto", feature_dropout: float = 0.0) -> InvariantNFN:
    """The fully monomial INR classifier: :class:`~mnfn.models.InvariantNFN` with the symmetries read
    from the activations (sign for SIRENs), odd activations between layers (``auto``: tanh), the
    sign-invariant map ``abs`` and averaging over hidden axes, then an MLP head to ``out_dim`` logits."""
    return InvariantNFN(spec, symmetries="monomial", in_channels=in_channels, hidden=hidden, activation=activation,
                        head=head, out_dim=out_dim, dropout=dropout, invariant_map=invariant_map,
                        feature_dropout=feature_dropout)


class HybridInrClassifier(nn.Module):
    """The paper's INR classifier, named for what it is: *sign-equivariant layers -> abs -> Fourier
    features -> HNP (or NP) -> pooling -> MLP head*.

    ``sign_channels`` layers ``in -> ... -> c`` of the complete sign-equivariant linear layer with an
    odd ``sign_activation`` between them (the paper: ``1 -> 16 -> 16 -> 1``, sin); ``abs`` makes
    every entry invariant to sign flips while keeping permutation equivariance; Fourier features
    (``mapping_size``, ``fourier_scale``) and ``hnp_hidden`` HNP/NP layers with ReLU (``mode``) then
    see a sign-invariant input; mean pooling over permuted axes and the MLP head make the whole map
    invariant to sign flips and hidden permutations — the full group of a SIREN. ``feature_dropout``
    drops whole channels after every HNP/NP ReLU in training (the official MNIST config: 0.1),
    ``dropout`` is the head's. Not for ReLU nets
    (positive scalings would not be removed); the builder refuses non-odd hidden activations.
    """

    def __init__(self, spec: WeightSpaceSpec, in_channels: int = 1, sign_channels: Sequence[int] = (16, 16, 1),
                 sign_activation: str = "sin", mapping_size: int = 32, fourier_scale: float = 3.0,
                 fourier_seed: int = 0, mode: str = "hnp", hnp_hidden: Sequence[int] = (64, 64, 64),
                 head: Sequence[int] = (256, 256), out_dim: int = 10, dropout: float = 0.1,
                 feature_dropout: float = 0.0) -> None:
        super().__init__()
        c = _hybrid_front(self, spec, "hybrid-inr", in_channels, sign_channels, sign_activation, mapping_size,
                          fourier_scale, fourier_seed, mode)
        self.perm = EquivariantStack(spec, [c, *hnp_hidden], mode, "relu", final_activation=True,
                                     dropout=feature_dropout)
        self.pool = InvariantPool(spec, ([c, *hnp_hidden])[-1], mode)
        self.head = mlp_head(self.pool.out_dim, head, out_dim, dropout)

    def forward(self, features: WeightSpaceFeatures) -> Tensor:
        check_features(features, self.spec, self.in_channels, type(self).__name__)
        xs = self.sign.forward_folded(fold(features))
        xs = [x.abs() for x in xs]  # sign-invariant entrywise, permutation-equivariant
        xs = self.fourier.forward_folded(xs)
        if self.io_embedding is not None:
            xs = self.io_embedding.forward_folded(xs)
        return self.head(self.pool.forward_folded(self.perm.forward_folded(xs)))


# --- editors -----------------------------------------------------------------------------------

class HybridEditor(nn.Module):
    """The paper's INR editor (its "Monomial" editor), labelled honestly: sign-equivariant layers
    (``sign_channels``, an odd activation between them; the paper used none), Fourier features of the result,
    then HNP/NP layers with ReLU down to one channel, times a learned scale starting at ``out_scale``.

    Equivariant to hidden permutations (every stage is); **not** sign-equivariant: Fourier features,
    ReLU and the HNP/NP averaging terms are not odd maps.
    """

    def __init__(self, spec: WeightSpaceSpec, in_channels: int = 1, sign_channels: Sequence[int] = (16, 1),
                 sign_activation: str = "auto", mapping_size: int = 32, fourier_scale: float = 3.0,
                 fourier_seed: int = 0, mode: str = "np", hidden: Sequence[int] = (64, 64, 64),
                 out_scale: float = 1e-3) -> None:
        super().__init__()
        c = _hybrid_front(self, spec, "hybrid-editor", in_channels, sign_channels, sign_activation, mapping_size,
                          fourier_scale, fourier_seed, mode)
        self.perm = EquivariantStack(spec, [c, *hidden, 1], mode, "relu", final_activation=False)
        self.out_scale = nn.Parameter(torch.tensor(float(out_scale)))

    def forward(self, features: WeightSpaceFeatures) -> WeightSpaceFeatures:
        check_features(features, self.spec, self.in_channels, type(self).__name__)
        xs = self.fourier.forward_folded(self.sign.forward_folded(fold(features)))
        if self.io_embedding is not None:
            xs = self.io_embedding.forward_folded(xs)
        out = self.perm.forward_folded(xs)
        return unfold([t * self.out_scale for t in out], features.spec)


class MLPEditor(nn.Module):
    """An MLP on the flattened weights that outputs a flattened weight change (no symmetry)."""

    def __init__(self, spec: WeightSpaceSpec, in_channels: int = 1, hidden: Sequence[int] = (512, 512),
                 dropout: float = 0.0, out_scale: float = 1e-3) -> None:
        super().__init__()
        self.spec = spec
        self.in_channels = in_channels
        n = spec.num_params()
        self.net = mlp_head(in_channels * n, hidden, n, dropout)
        self.out_scale = nn.Parameter(torch.tensor(float(out_scale)))

    def forward(self, features: WeightSpaceFeatures) -> WeightSpaceFeatures:
        check_features(features, self.spec, self.in_channels, type(self).__name__)
        delta = self.net(features.flatten()) * self.out_scale
        return WeightSpaceFeatures.unflatten(delta, features.spec, channels=1)


# --- normalisation ----------------------------------------------------------------------------

class HeadNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` that uses its running statistics for a training batch of one (where batch
    statistics do not exist), instead of failing."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def add_feature_norm(model: nn.Module) -> nn.Module:
    """Put a ``BatchNorm1d`` in front of the model's MLP head (``model.head``, a Sequential that starts
    with a Linear layer): the head then sees standardised invariant features.

    Mean-pooled invariant features of SIRENs vary little from net to net compared with their size,
    and an unnormalised head barely trains on them (chance level for tens of epochs); standardised,
    the same features are informative (a logistic regression on them beats StatNN). The norm acts
    on the invariant vector, so it keeps every symmetry of the model. Returns ``model`` (changed in place).
    """
    owner = getattr(model, "head_owner", model)  # a wrapper (e.g. canon-np) names the module with the head
    head = getattr(owner, "head", None)
    if not isinstance(head, nn.Sequential) or not isinstance(head[0], nn.Linear):
        raise WeightSpaceError(f"{type(model).__name__} has no MLP head (model.head) to normalise the input of")
    if isinstance(head[0], nn.BatchNorm1d):
        return model
    owner.head = nn.Sequential(HeadNorm(head[0].in_features), *head)
    return model


# --- input scaling ----------------------------------------------------------------------------

def tensor_rms(features: WeightSpaceFeatures, floor: float = 1e-8) -> Tensor:
    """``(2L,)``: root mean square of every tensor ``W1, b1, ..., WL, bL`` over the whole batch."""
    out = []
    for w, b in features:
        out += [w.double().square().mean().sqrt(), b.double().square().mean().sqrt()]
    return torch.stack(out).clamp_min(floor).float()


class TensorScale(nn.Module):
    """``model(U / s)`` (invariant models) or ``s * model(U / s)`` (editors), with a fixed positive
    scale ``s`` per tensor (e.g. :func:`tensor_rms` of the training set).

    Multiplying a tensor by a positive constant commutes with every permutation, sign flip and
    positive scaling of hidden neurons, so the wrapper keeps whatever symmetry ``model`` has. The
    scales are buffers: they travel with the checkpoint.
    """

    def __init__(self, model: nn.Module, scales: Tensor, rescale_output: bool) -> None:
        super().__init__()
        self.model = model
        self.rescale_output = rescale_output
        self.register_buffer("scales", torch.as_tensor(scales, dtype=torch.float32).clone())

    def _apply_scales(self, features: WeightSpaceFeatures, inverse: bool) -> WeightSpaceFeatures:
        s = self.scales.to(device=features.device, dtype=features.dtype)
        if s.numel() != 2 * features.spec.num_layers:
            raise WeightSpaceError(f"{s.numel()} scales for {2 * features.spec.num_layers} tensors")
        f = (lambda t, v: t / v) if inverse else (lambda t, v: t * v)
        return WeightSpaceFeatures(tuple(f(w, s[2 * i]) for i, w in enumerate(features.weights)),
                                   tuple(f(b, s[2 * i + 1]) for i, b in enumerate(features.biases)), features.spec)

    def forward(self, features: WeightSpaceFeatures) -> Any:
        out = self.model(self._apply_scales(features, inverse=True))
        if self.rescale_output:
            return self._apply_scales(out, inverse=False)
        return out


# --- registry ----------------------------------------------------------------------------------

def _hybrid_editor(spec: WeightSpaceSpec, **config: Any) -> nn.Module:
    return HybridEditor(spec, **config)


for _entry in [
    ModelEntry("monomial-inr", monomial_inr,
               "fully monomial INR classifier: sign-equivariant layers -> abs + mean pooling -> MLP; "
               "invariant to the whole group (sign flips x hidden permutations)",
               full_group, monomial_inr),
    ModelEntry("hybrid-inr", HybridInrClassifier,
               "hybrid (the paper's INR 'Monomial-NFN'): sign-equivariant layers -> abs -> Fourier features "
               "-> HNP/NP -> pooling -> MLP; invariant to sign flips x hidden permutations",
               _sign_claims, HybridInrClassifier.__init__, supports=_sign_only),
    ModelEntry("hybrid-editor", _hybrid_editor,
               "hybrid editor (the paper's INR 'Monomial' editor): sign-equivariant layers -> Fourier features "
               "-> NP/HNP + ReLU; equivariant to hidden permutations only, NOT sign-equivariant",
               hidden_perm, HybridEditor.__init__, kind="equivariant", supports=_sign_only),
    ModelEntry("mlp-editor", MLPEditor,
               "MLP editor: flattened weights -> MLP -> flattened weight change (no symmetry)",
               no_symmetry, MLPEditor.__init__, kind="equivariant"),
]:
    register_model(_entry)
del _entry
