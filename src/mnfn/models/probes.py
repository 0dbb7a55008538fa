"""Probe features: what each network *computes* at fixed inputs, for SIRENs, MLPs and CNNs alike.

Every element of the monomial group leaves the function of a net unchanged, so anything read off
the function is exactly invariant. For a SIREN with hidden activations ``h_i = sin(w0 (W_i h_{i-1} + b_i))``
evaluated at ``P`` fixed probe points ``X`` (a ``g x g`` grid on ``[-1, 1]^2``, the square the
nets were fitted on, see :func:`mnfn.data.inr.make_coords`; fixed random points for other input sizes):

* the output ``y(X) = W_L h_{L-1}(X) + b_L``, ``(C_out, P)``: invariant to every symmetry of the net
  (it is a coarse rendering of the image);
* per hidden layer ``i``, ``mean_j |h_{i,j}(X)|`` over the neurons ``j``, ``(P,)``: a permutation of
  neurons permutes the rows ``h_{i,j}``, a sign flip of neuron ``j`` flips the sign of row ``j``
  (``sin`` is odd), and ``abs`` then the mean over ``j`` remove both.

For any other net (ReLU or tanh MLPs and CNNs, e.g. a CNN zoo) :class:`FunctionProbe` keeps the
output part: the net's outputs on fixed inputs (seeded uniform points for MLPs, seeded Gaussian
images of the spec's input shape for CNNs). That is exactly invariant to every positive scaling,
sign flip and permutation of hidden neurons, *and* it changes when the function changes, which
Monomial-NFN's features alone cannot promise: its complete linear layers never connect entries whose
neurons carry different scale factors and its pooling normalises each entry, so two ReLU nets
that differ by one neuron's incoming weights and bias doubled (a different function) look the
same to it (``tests/test_probes.py`` shows both).

Probing the function of weight-space inputs is the idea of "probe features" in Neural Graphs
(Kofinas et al., ICLR 2024) and of ProbeGen (Kahana et al., 2024). Here it is an *addition* to
Monomial-NFN's invariant features, so the model stays exactly invariant to the whole group, and it
is registered under its own names (``monomial-inr-probe`` and ``monomial-probe``; ``probe-mlp`` is
the probes alone, the ablation) so results never mix it up with the paper's model.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..symmetry import Symmetry, WeightSpaceError
from ..weightspace import WeightSpaceFeatures, WeightSpaceSpec
from ..networks import functional_forward
from .nfn import InvariantNFN
from .parts import check_features, full_group, mlp_head
from .registry import ModelEntry, register_model

__all__ = ["SirenProbe", "FunctionProbe", "ProbeClassifier", "probe_points", "probe_inputs"]


def probe_points(g: int, dim: int = 2, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(g*g, dim)`` probe inputs: for ``dim = 2`` the grid ``(y, x)`` on ``[-1, 1]^2`` (ends included,
    row-major like the fitting grid); otherwise ``g*g`` fixed uniform points in ``[-1, 1]^dim`` (seed 0)."""
    if dim == 2:
        ax = torch.linspace(-1.0, 1.0, g, dtype=dtype)
        yy, xx = torch.meshgrid(ax, ax, indexing="ij")
        return torch.stack([yy.reshape(-1), xx.reshape(-1)], dim=-1)
    return (torch.rand(g * g, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1).to(dtype)


class SirenProbe(nn.Module):
    """``(B, P * (C_out + L - 1))``: each net's output at the probe points and, per hidden layer,
    the mean over neurons of ``|activation|`` there (see the module docstring). No parameters."""

    def __init__(self, spec: WeightSpaceSpec, grid: int = 14) -> None:
        super().__init__()
        if any(layer.kind != "dense" for layer in spec.layers):
            raise WeightSpaceError("SirenProbe needs a dense net (an MLP or a SIREN)")
        if any(layer.activation not in ("sin", "tanh") for layer in spec.layers[:-1]):
            raise WeightSpaceError("SirenProbe needs odd hidden activations (sin or tanh): |h| is then "
                                   "invariant to sign flips")
        if grid < 1:
            raise ValueError(f"probe grid must be >= 1, got {grid}")
        self.spec = spec
        self.grid = int(grid)
        p = self.grid * self.grid
        self.out_dim = p * (spec.layers[-1].n_out + spec.num_layers - 1)

    def forward(self, features: WeightSpaceFeatures) -> Tensor:
        # made in the input's dtype (not a float32 buffer): w0 = 30 amplifies rounding of the points
        x = probe_points(self.grid, self.spec.layers[0].n_in, features.dtype).to(features.device)
        h = x.unsqueeze(0).expand(features.batch_size, *x.shape)  # (B, P, d)
        parts = []
        for layer, w, b in zip(self.spec.layers, features.weights, features.biases):
            h = torch.baddbmm(b[:, 0].unsqueeze(1), h, w[:, 0].transpose(1, 2))  # (B, P, n_out)
            if layer.activation is not None:
                scale = float(layer.act_param) if layer.act_param is not None else 1.0
                h = torch.sin(scale * h) if layer.activation == "sin" else torch.tanh(scale * h)
                parts.append(h.abs().mean(dim=2))  # (B, P): invariant to perms and sign flips of layer i
        parts.insert(0, h.transpose(1, 2).reshape(h.shape[0], -1))  # output (B, C_out * P): invariant
        return torch.cat(parts, dim=1)


def probe_inputs(spec: WeightSpaceSpec, num: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``num`` fixed inputs for nets of ``spec`` (seed 0): points in ``[-1, 1]^n_in`` for MLPs,
    standard Gaussian images of ``spec.in_shape`` (default ``(C, 16, 16)``) for CNNs."""
    g = torch.Generator().manual_seed(0)
    if spec.is_cnn:
        shape = spec.in_shape or (spec.widths[0], 16, 16)
        return torch.randn(num, *shape, generator=g, dtype=torch.float64).to(dtype)
    return (torch.rand(num, spec.layers[0].n_in, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)


class FunctionProbe(nn.Module):
    """``(B, num * n_out)``: each net's outputs on ``num`` fixed inputs (:func:`probe_inputs`),
    computed by :func:`mnfn.networks.functional_forward`. Invariant to every symmetry of the nets
    and sensitive to every change of their function. No parameters."""

    def __init__(self, spec: WeightSpaceSpec, num: int = 32) -> None:
        super().__init__()
        if num < 1:
            raise ValueError(f"number of probe inputs must be >= 1, got {num}")
        self.spec = spec
        self.num = int(num)
        self.out_dim = self.num * spec.layers[-1].n_out

    def forward(self, features: WeightSpaceFeatures) -> Tensor:
        x = probe_inputs(self.spec, self.num, features.dtype).to(features.device)
        y = functional_forward(features, x)  # (B, num, n_out)
        return y.reshape(y.shape[0], -1)


class ProbeClassifier(nn.Module):
    """Monomial-NFN's invariant features (``use_nfn``) concatenated with probe features
    (:class:`SirenProbe` for SIRENs, :class:`FunctionProbe` otherwise), then an MLP head: exactly
    invariant to the nets' whole monomial group (scalings, sign flips, hidden permutations).

    The Monomial-NFN branch sees the weights divided by ``input_scales`` (one positive constant per
    tensor: it commutes with the group, see :class:`mnfn.models.inr.TensorScale`); the probes see the
    raw weights, so they read the function the SIREN really computes. ``set_input_scales`` sets the
    constants (the INR tasks pass the training set's per-tensor RMS).
    """

    def __init__(self, spec: WeightSpaceSpec, in_channels: int = 1, hidden: Sequence[int] = (32, 32, 16),
                 activation: str = "auto", head: Sequence[int] = (256, 256), out_dim: int = 10, dropout: float = 0.1,
                 probe_grid: int = 14, use_nfn: bool = True, num_probes: int | None = None) -> None:
        super().__init__()
        if in_channels != 1:
            raise WeightSpaceError("probe models read raw weights: in_channels must be 1")
        self.spec = spec
        self.in_channels = in_channels
        self.nfn: InvariantNFN | None = None
        dim = 0
        if use_nfn:
            self.nfn = InvariantNFN(spec, symmetries="monomial", in_channels=in_channels, hidden=hidden,
                                    activation=activation, head=(), out_dim=1, dropout=0.0)
            self.nfn.head = nn.Identity()  # its pooled invariant features, not a score
            dim += self.nfn.pool.out_dim
        # SIREN-like nets (dense, odd activations): the grid probe with hidden summaries; any other
        # net (or num_probes given): its outputs on fixed inputs
        self.probe: nn.Module = (SirenProbe(spec, probe_grid) if num_probes is None and _odd_dense_inr(spec) is None
                                 else FunctionProbe(spec, num_probes or probe_grid * probe_grid))
        dim += self.probe.out_dim
        self.register_buffer("input_scales", torch.ones(2 * spec.num_layers))
        self.head = mlp_head(dim, head, out_dim, dropout)

    def set_input_scales(self, scales: Tensor) -> None:
        s = torch.as_tensor(scales, dtype=torch.float32).reshape(-1)
        if s.numel() != 2 * self.spec.num_layers or not bool((s > 0).all()):
            raise WeightSpaceError(f"input_scales must be {2 * self.spec.num_layers} positive numbers")
        self.input_scales.copy_(s)

    def forward(self, features: WeightSpaceFeatures) -> Tensor:
        check_features(features, self.spec, self.in_channels, type(self).__name__, self)
        parts = []
        if self.nfn is not None:
            s = self.input_scales.to(device=features.device, dtype=features.dtype)
            scaled = WeightSpaceFeatures(tuple(w / s[2 * i] for i, w in enumerate(features.weights)),
                                         tuple(b / s[2 * i + 1] for i, b in enumerate(features.biases)), features.spec)
            parts.append(self.nfn(scaled))
        parts.append(self.probe(features))
        return self.head(torch.cat(parts, dim=1))


def _odd_dense_inr(spec: WeightSpaceSpec) -> str | None:
    if any(layer.kind != "dense" for layer in spec.layers):
        return "probe models take dense nets (MLPs, SIRENs)"
    if any(s != Symmetry.SIGN for s in spec.neuron_symmetries()[1:-1]):
        return "probe models need odd hidden activations (sign symmetry)"
    return None


def _monomial_probe(spec: WeightSpaceSpec, **config) -> ProbeClassifier:
    return ProbeClassifier(spec, **{**dict(hidden=(16, 16, 5), head=(200, 200), out_dim=1, dropout=0.0,
                                           num_probes=32), **config})


def _monomial_probe_signature(spec: WeightSpaceSpec, in_channels: int = 1, hidden: Sequence[int] = (16, 16, 5),
                              activation: str = "auto", head: Sequence[int] = (200, 200), out_dim: int = 1,
                              dropout: float = 0.0, num_probes: int = 32) -> None:
    """The config keys of ``monomial-probe`` (the paper's zoo model sizes, 32 probe inputs)."""


def _probe_mlp(spec: WeightSpaceSpec, **config) -> ProbeClassifier:
    return ProbeClassifier(spec, use_nfn=False, **config)


def _probe_mlp_signature(spec: WeightSpaceSpec, in_channels: int = 1, head: Sequence[int] = (256, 256),
                         out_dim: int = 10, dropout: float = 0.1, probe_grid: int = 14) -> None:
    """The config keys of ``probe-mlp``."""


for _entry in [
    ModelEntry("monomial-inr-probe", ProbeClassifier,
               "monomial-inr + probe features (the SIREN's output and mean |activation| on a fixed grid): "
               "invariant to the whole group (sign flips x hidden permutations)",
               full_group, ProbeClassifier.__init__, supports=_odd_dense_inr),
    ModelEntry("monomial-probe", _monomial_probe,
               "Monomial-NFN + the nets' outputs on fixed inputs (any MLP or CNN; not blind to changes "
               "Monomial-NFN cannot see): invariant to the whole monomial group",
               full_group, _monomial_probe_signature),
    ModelEntry("probe-mlp", _probe_mlp,
               "probe features alone -> MLP (ablation of monomial-inr-probe); invariant to the whole group",
               full_group, _probe_mlp_signature, supports=_odd_dense_inr),
]:
    register_model(_entry)
del _entry
