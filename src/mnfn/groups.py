"""The monomial group of a weight space: permutations times diagonal scalings per hidden layer.

An element holds, for every hidden neuron layer ``i = 1..L-1``, an index array ``p_i`` (the
inverse permutation: new neuron ``j`` is old neuron ``p_i[j]``) and a diagonal ``d_i`` (positive
for ``scale`` layers, +-1 for ``sign`` layers, 1 for ``perm`` layers). It acts by

    (gW)(i)[j, k] = d_i[j] / d_{i-1}[k] * W(i)[p_i[j], p_{i-1}[k]]
    (gb)(i)[j]    = d_i[j] * b(i)[p_i[j]]

with ``d_0 = d_L = 1`` and identity permutations at the input and output. Elements are batched:
item ``n`` of a feature batch is moved by element ``n`` (a batch of 1 is broadcast).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from .weightspace import Symmetry, WeightSpaceError, WeightSpaceFeatures, WeightSpaceSpec

__all__ = ["MonomialElement", "sample_element", "identity_element", "ScaleDist"]


@dataclass(frozen=True)
class ScaleDist:
    """Distribution of positive scales: ``uniform`` on [lo, hi] (the paper) or ``loguniform``."""

    kind: str = "loguniform"
    lo: float = 1e-2
    hi: float = 1e2

    def __post_init__(self) -> None:
        if self.kind not in ("uniform", "loguniform"):
            raise ValueError(f"scale distribution must be 'uniform' or 'loguniform', got {self.kind!r}")
        if not 0 < self.lo <= self.hi:
            raise ValueError(f"scale range must satisfy 0 < lo <= hi, got [{self.lo}, {self.hi}]")

    def sample(self, shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype) -> Tensor:
        u = torch.rand(shape, generator=generator, dtype=torch.float64)
        if self.kind == "uniform":
            out = self.lo + (self.hi - self.lo) * u
        else:
            lo, hi = torch.log(torch.tensor(self.lo, dtype=torch.float64)), torch.log(torch.tensor(self.hi, dtype=torch.float64))
            out = torch.exp(lo + (hi - lo) * u)
        return out.to(dtype)

    @staticmethod
    def parse(text: str) -> "ScaleDist":
        """``"uniform:1,1000"`` or ``"loguniform:0.01,100"`` (``"scale:LO,HI"`` means uniform)."""
        try:
            kind, rng = text.split(":")
            lo, hi = (float(v) for v in rng.split(","))
        except ValueError:
            raise ValueError(f"cannot parse scale distribution {text!r}; expected KIND:LO,HI") from None
        return ScaleDist("uniform" if kind == "scale" else kind, lo, hi)


@dataclass(frozen=True)
class MonomialElement:
    """A batch of group elements: ``perms[i]`` and ``scales[i]`` of shape ``(B, n_{i+1})`` per hidden layer."""

    perms: tuple[Tensor, ...]
    scales: tuple[Tensor, ...]
    spec: WeightSpaceSpec

    def __post_init__(self) -> None:
        widths = self.spec.widths[1:-1]
        if len(self.perms) != len(widths) or len(self.scales) != len(widths):
            raise WeightSpaceError(f"an element needs {len(widths)} hidden layers, got {len(self.perms)}")
        for i, (p, d, n) in enumerate(zip(self.perms, self.scales, widths)):
            if p.dim() != 2 or p.shape[1] != n or d.shape != p.shape:
                raise WeightSpaceError(
                    f"hidden layer {i + 1}: perm {tuple(p.shape)} / scale {tuple(d.shape)}, expected (B, {n})"
                )

    @property
    def batch_size(self) -> int:
        return self.perms[0].shape[0] if self.perms else 1

    # -- group operations ----------------------------------------------------------------------
    def inverse(self) -> "MonomialElement":
        """``g^-1``: ``p' = p^-1``, ``d'[j] = 1 / d[p'[j]]``."""
        perms, scales = [], []
        for p, d in zip(self.perms, self.scales):
            q = torch.argsort(p, dim=1)
            perms.append(q)
            scales.append(1.0 / torch.gather(d, 1, q))
        return MonomialElement(tuple(perms), tuple(scales), self.spec)

    def compose(self, other: "MonomialElement") -> "MonomialElement":
        """``self * other``: act with ``other`` first, then ``self``. ``p = p_o[p_s]``, ``d = d_s * d_o[p_s]``."""
        perms, scales = [], []
        for ps, ds, po, do in zip(self.perms, self.scales, other.perms, other.scales):
            ps, po = torch.broadcast_tensors(ps, po)
            ds, do = torch.broadcast_tensors(ds, do)
            perms.append(torch.gather(po, 1, ps))
            scales.append(ds * torch.gather(do, 1, ps))
        return MonomialElement(tuple(perms), tuple(scales), self.spec)

    def __mul__(self, other: "MonomialElement") -> "MonomialElement":
        return self.compose(other)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "MonomialElement":
        return MonomialElement(
            tuple(p.to(device=device) for p in self.perms),
            tuple(d.to(dtype=dtype, device=device) for d in self.scales),
            self.spec,
        )

    # -- action --------------------------------------------------------------------------------
    def _layer(self, i: int, B: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor | None, Tensor | None]:
        """Permutation and scale of neuron layer ``i`` (None for the fixed input/output layers)."""
        if i == 0 or i == self.spec.num_layers:
            return None, None
        p = self.perms[i - 1].to(device)
        d = self.scales[i - 1].to(device=device, dtype=dtype)
        return p.expand(B, -1), d.expand(B, -1)

    def act(self, features: WeightSpaceFeatures) -> WeightSpaceFeatures:
        """``g U``: permute and rescale hidden neurons of every batch item, every channel alike."""
        if features.spec.weight_shapes() != self.spec.weight_shapes():
            raise WeightSpaceError(
                f"group element of [{self.spec.describe()}] cannot act on features of [{features.spec.describe()}]"
            )
        B = features.batch_size
        if self.batch_size not in (1, B):
            raise WeightSpaceError(f"{self.batch_size} group elements for a batch of {B}")
        dtype, device = features.dtype, features.device
        L = self.spec.num_layers
        ws, bs = [], []
        for i in range(1, L + 1):
            w, b = features.weights[i - 1], features.biases[i - 1]
            C = w.shape[1]
            extra = w.dim() - 4  # conv kernel axes ride along
            p_out, d_out = self._layer(i, B, dtype, device)
            p_in, d_in = self._layer(i - 1, B, dtype, device)
            if p_out is not None:
                idx = p_out.view(B, 1, -1, *([1] * (w.dim() - 3))).expand(B, C, -1, *w.shape[3:])
                w = torch.gather(w, 2, idx)
                w = w * d_out.view(B, 1, -1, *([1] * (w.dim() - 3)))
                b = torch.gather(b, 2, p_out.view(B, 1, -1).expand(B, C, -1)) * d_out.view(B, 1, -1)
            if p_in is not None:
                idx = p_in.view(B, 1, 1, -1, *([1] * extra)).expand(B, C, w.shape[2], -1, *w.shape[4:])
                w = torch.gather(w, 3, idx)
                w = w / d_in.view(B, 1, 1, -1, *([1] * extra))
            ws.append(w)
            bs.append(b)
        return WeightSpaceFeatures(tuple(ws), tuple(bs), features.spec)

    def __call__(self, features: WeightSpaceFeatures) -> WeightSpaceFeatures:
        return self.act(features)


def identity_element(spec: WeightSpaceSpec, batch: int = 1, dtype: torch.dtype = torch.float64) -> MonomialElement:
    widths = spec.widths[1:-1]
    return MonomialElement(
        tuple(torch.arange(n).expand(batch, n).clone() for n in widths),
        tuple(torch.ones(batch, n, dtype=dtype) for n in widths),
        spec,
    )


def sample_element(
    spec: WeightSpaceSpec,
    batch: int = 1,
    generator: torch.Generator | int | None = None,
    scale: ScaleDist | None = ScaleDist(),
    permute: bool = True,
    flip_signs: bool = True,
    symmetries: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float64,
) -> MonomialElement:
    """Sample ``batch`` random elements of the spec's monomial group.

    Per hidden layer: a uniform random permutation (if ``permute``), and a diagonal from the
    layer's symmetry: ``scale`` layers draw from ``scale`` (``None`` = no scaling), ``sign``
    layers draw uniform +-1 (if ``flip_signs``), ``perm`` layers get 1. ``symmetries`` overrides
    the neuron symmetries read from the spec (``spec.neuron_symmetries()``).
    """
    if generator is None or isinstance(generator, int):
        seed = generator
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
    syms = tuple(symmetries) if symmetries is not None else spec.neuron_symmetries()
    widths = spec.widths
    perms, scales = [], []
    for i in range(1, spec.num_layers):
        n = widths[i]
        if permute:
            # float64 keys: each from its own draw (float32 keys can come in correlated pairs)
            p = torch.argsort(torch.rand(batch, n, generator=generator, dtype=torch.float64), dim=1)
        else:
            p = torch.arange(n).expand(batch, n).clone()
        sym = syms[i]
        if sym == Symmetry.SCALE and scale is not None:
            d = scale.sample((batch, n), generator, dtype)
        elif sym == Symmetry.SIGN and flip_signs:
            d = torch.randint(0, 2, (batch, n), generator=generator).to(dtype) * 2 - 1
        else:
            d = torch.ones(batch, n, dtype=dtype)
        perms.append(p)
        scales.append(d)
    return MonomialElement(tuple(perms), tuple(scales), spec)
