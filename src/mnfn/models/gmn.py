"""``monomial-gmn``: message passing along the network's own wiring, exactly invariant to the whole
monomial group, and not blind to how hidden layers are connected.

Monomial-NFN's complete *linear* layers can never combine a hidden-to-hidden weight ``W(l)_ij``
with anything outside itself (``tests/test_blind_spots.py``). Products can: ``W(l)_ij`` carries
``d_i / d_j`` (scales) or ``s_i s_j`` (signs), a feature of neuron ``j`` that carries ``d_j`` (or
``s_j``) times it carries ``d_i`` (``s_i``) alone. So, in the spirit of ScaleGMN (Kalogeropoulos
et al., 2024; this is not a reimplementation), the model sweeps the net from inputs to outputs:

* neuron ``j`` of hidden layer 1: ``h_j = phi_1([W(1)_j, b(1)_j])`` (its incoming weights, kernel
  positions and channels flattened, and its bias; all carry ``d_j``);
* neuron ``i`` of hidden layer ``l``: ``m_i = mean_j W(l)_ij (x) h_j`` (a message from every
  neuron of the layer below, weighted by the connection), ``h_i = phi_l([m_i, b(l)_i])``;
* with ``edge_hidden = e > 0`` the message is nonlinear in each connection: ``m_i = mean_j
  psi_l(W(l)_ij h_j)``, ``psi_l`` an odd / homogeneous map like ``phi_l`` (width ``e``): the product
  carries neuron ``i``'s factor alone, and ``psi_l`` keeps it;
* readout at the fixed output neurons ``o``: ``r_o = mean_i W(L)_oi (x) h_i`` and ``b(L)_o``
  (invariant), plus, per hidden layer, the mean over neurons of an invariant of ``h``
  (``|h|`` for signs, ``h / ||h||`` for scales), into an MLP head.

``phi_l`` is ``Linear (no bias) -> act -> Linear (no bias)`` with ``act`` chosen like
:class:`~mnfn.layers.pooling.EquivariantActivation`'s ``auto``: ReLU where scales act (positively
homogeneous), tanh where signs act (odd), so ``phi_l(d x) = d phi_l(x)``; the means over neurons
remove permutations. Dense nets (MLPs, SIRENs) and the zoo's CNNs (kernel positions are channels
of a connection). Invariance is checked in float64 by ``tests/test_models.py``.

``probe_grid=g`` (SIRENs): the maps start as the SIREN itself on a ``g x g`` grid of probe points
``x_k`` (``phi_1``'s first map has rows ``w0 (x_k, 1)`` and ``sin``, so ``h_jk`` is neuron ``j``'s
activation at ``x_k``; the next layers likewise), so the readout starts as the rendering and training
moves the probes and maps from there; sin is odd, so the model stays exactly invariant.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..activations import fast_tanh

from ..layers.equivariant import fold
from ..symmetry import Symmetry, WeightSpaceError
from ..weightspace import WeightSpaceFeatures, WeightSpaceSpec
from .parts import check_features, full_group, mlp_head
from .registry import ModelEntry, register_model

__all__ = ["MonomialGMN"]


class _Homogeneous(nn.Module):
    """``Linear (no bias) -> act -> Linear (no bias)``: odd (tanh or sin) or positively homogeneous
    (ReLU); commutes with the neuron's own factor. ``scale`` multiplies the first layer's initial
    weights (with ``sin``, large values make it a bank of the SIREN's own oscillations)."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, symmetry: str, odd: str = "tanh",
                 scale: float = 1.0) -> None:
        super().__init__()
        self.a = nn.Linear(d_in, d_hidden, bias=False)
        self.b = nn.Linear(d_hidden, d_out, bias=False)
        if scale != 1.0:
            with torch.no_grad():
                self.a.weight.mul_(scale)
        odd_act = _Sin() if odd == "sin" else _Tanh()
        self.act = odd_act if symmetry == Symmetry.SIGN else nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.b(self.act(self.a(x)))


class _Sin(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(x)


class _Tanh(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return fast_tanh(x)  # tanh to float rounding, exactly odd, faster on CPU


class MonomialGMN(nn.Module):
    """See the module docstring. ``dim``: neuron feature size; ``phi_hidden``: width inside each
    ``phi``; ``odd``: the odd activation of sign-symmetric layers (``tanh`` or ``sin``);
    ``first_scale``: initial scale of layer 1's ``phi`` (see :class:`_Homogeneous`); ``edge_hidden``:
    width of the per-connection message map ``psi`` (0: the bilinear message); ``head``: the
    MLP head's widths; ``out_dim`` outputs (1 score, or class logits)."""

    def __init__(self, spec: WeightSpaceSpec, in_channels: int = 1, dim: int = 32, phi_hidden: int = 64,
                 odd: str = "tanh", first_scale: float = 1.0, probe_grid: int = 0, head: Sequence[int] = (200, 200),
                 out_dim: int = 1, dropout: float = 0.0, edge_hidden: int = 0) -> None:
        super().__init__()
        self.probe_grid = int(probe_grid)
        if not isinstance(edge_hidden, int) or isinstance(edge_hidden, bool) or edge_hidden < 0:
            raise WeightSpaceError(f"edge_hidden must be an integer >= 0, got {edge_hidden!r}")
        if edge_hidden and self.probe_grid:
            raise WeightSpaceError("edge_hidden > 0 and probe_grid > 0 cannot be combined: the probe "
                                   "initialisation needs the bilinear message")
        if self.probe_grid:
            # Start as the SIREN itself evaluated on a g x g grid (learned from there): sin activations,
            # D = g*g, and weights set in _probe_init; it then reads the raw weights.
            if _probe_unsupported(spec):
                raise WeightSpaceError(f"probe_grid needs a SIREN (dense, sin hidden layers): {_probe_unsupported(spec)}")
            dim = phi_hidden = self.probe_grid ** 2
            odd = "sin"
        if spec.num_layers < 2:
            raise WeightSpaceError("monomial-gmn needs at least one hidden layer")
        self.spec = spec
        self.in_channels = in_channels
        self.syms = spec.neuron_symmetries()
        self.dim = dim
        ks = [layer.kernel_size for layer in spec.layers]
        first = spec.layers[0]
        self.phis = nn.ModuleList()
        # layer 1: incoming weights (n_in * C * k) and bias (C)
        if odd not in ("tanh", "sin"):
            raise WeightSpaceError(f"odd must be 'tanh' or 'sin', got {odd!r}")
        self.phis.append(_Homogeneous(first.n_in * in_channels * ks[0] + in_channels, phi_hidden, dim, self.syms[1],
                                      odd, first_scale))
        for l in range(1, spec.num_layers - 1):  # hidden layers 2 .. L-1: message (C * k * dim) and bias (C)
            self.phis.append(_Homogeneous(in_channels * ks[l] * dim + in_channels, phi_hidden, dim, self.syms[l + 1],
                                          odd))
        # psi_l for the messages into layers 2 .. L (the last one into the fixed output neurons)
        self.psis = nn.ModuleList()
        if edge_hidden:
            for l in range(1, spec.num_layers):
                d_msg = in_channels * ks[l] * dim
                self.psis.append(_Homogeneous(d_msg, edge_hidden, d_msg, self.syms[l + 1], odd))
        n_out = spec.layers[-1].n_out
        self.read_dim = n_out * in_channels * ks[-1] * dim + n_out * in_channels + (spec.num_layers - 1) * dim
        self.head = mlp_head(self.read_dim, head, out_dim, dropout)
        self.register_buffer("input_scales", torch.ones(2 * spec.num_layers))
        if self.probe_grid:
            self._probe_init()

    def _probe_init(self) -> None:
        """``phi_1``: row k of its first map is ``w0 (x_k, 1)``, so ``h_jk = sin(w0 (W1_j x_k + b1_j))``, the
        neuron's activation at probe point ``x_k``; ``phi_l``: ``w0 (n_{l-1} m_ik + b_l_i)``, the next
        layer's; second maps the identity. The readout is then the SIREN's output at the points."""
        from .probes import probe_points

        x = probe_points(self.probe_grid, self.spec.layers[0].n_in)  # (P, n_in)
        P = x.shape[0]
        with torch.no_grad():
            w0 = float(self.spec.layers[0].act_param or 1.0)
            self.phis[0].a.weight.copy_(w0 * torch.cat([x, torch.ones(P, 1)], dim=1))
            self.phis[0].b.weight.copy_(torch.eye(P))
            for l in range(1, self.spec.num_layers - 1):
                w0 = float(self.spec.layers[l].act_param or 1.0)
                n_prev = self.spec.layers[l].n_in
                self.phis[l].a.weight.copy_(w0 * torch.cat([n_prev * torch.eye(P), torch.ones(P, 1)], dim=1))
                self.phis[l].b.weight.copy_(torch.eye(P))

    def set_input_scales(self, scales: Tensor) -> None:
        """Divide each weight/bias tensor by a positive constant (the training set's RMS) before the
        model, as :class:`~mnfn.models.inr.TensorScale` would; with ``probe_grid`` the weights stay raw
        (the probe initialisation is in the SIREN's own units)."""
        if not self.probe_grid:
            self.input_scales.copy_(torch.as_tensor(scales, dtype=self.input_scales.dtype))

    def _message(self, l: int, w: Tensor, h: Tensor) -> Tensor:
        """Into layer ``l + 1`` (``l`` = 1 .. L-1): ``mean_j W_ij (x) h_j``, or ``mean_j psi_l(W_ij (x) h_j)``
        with ``edge_hidden``; ``w`` folded ``(B, Ck, n_out, n_in)``, ``h`` ``(B, n_in, D)`` ->
        ``(B, n_out, Ck * D)``."""
        B, Ck, n_out, n_in = w.shape
        if not len(self.psis):
            m = torch.einsum("bcij,bjd->bicd", w, h) / n_in
            return m.reshape(B, n_out, Ck * h.shape[-1])
        e = torch.einsum("bcij,bjd->bijcd", w, h).reshape(B, n_out, n_in, Ck * h.shape[-1])
        return self.psis[l - 1](e).mean(dim=2)

    def _invariant(self, h: Tensor, symmetry: str) -> Tensor:
        if symmetry == Symmetry.SIGN:
            h = h.abs()
        elif symmetry == Symmetry.SCALE:
            h = h / h.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(h.dtype).tiny ** 0.5)
        return h.mean(dim=1)

    def forward(self, features: WeightSpaceFeatures) -> Tensor:
        check_features(features, self.spec, self.in_channels, type(self).__name__, self)
        xs = [x / s for x, s in zip(fold(features), self.input_scales.to(features.dtype))]
        B = features.batch_size
        w1, b1 = xs[0], xs[1]  # (B, C k, n1, n0), (B, C, n1)
        inp = torch.cat([w1.permute(0, 2, 1, 3).reshape(B, w1.shape[2], -1), b1.transpose(1, 2)], dim=-1)
        h = self.phis[0](inp)  # (B, n1, D): carries each neuron's own factor
        pooled = [self._invariant(h, self.syms[1])]
        for l in range(1, self.spec.num_layers - 1):
            w, b = xs[2 * l], xs[2 * l + 1]
            h = self.phis[l](torch.cat([self._message(l, w, h), b.transpose(1, 2)], dim=-1))
            pooled.append(self._invariant(h, self.syms[l + 1]))
        w_last, b_last = xs[-2], xs[-1]
        read = self._message(self.spec.num_layers - 1, w_last, h).reshape(B, -1)  # output neurons are fixed: invariant
        return self.head(torch.cat([read, b_last.reshape(B, -1), *pooled], dim=1))


def _probe_unsupported(spec: WeightSpaceSpec) -> str | None:
    if any(layer.kind != "dense" for layer in spec.layers):
        return "not a dense net"
    if any(layer.activation != "sin" for layer in spec.layers[:-1]):
        return "hidden activations are not sin"
    return None


def _gmn_supports(spec: WeightSpaceSpec) -> str | None:
    if spec.num_layers < 2:
        return "needs at least one hidden layer"
    return None


register_model(ModelEntry(
    "monomial-gmn", MonomialGMN,
    "message passing along the net's wiring (neuron features times connection weights, homogeneous/odd "
    "maps): invariant to the whole monomial group, not blind to how hidden layers connect",
    full_group, MonomialGMN.__init__, supports=_gmn_supports))
