"""SIREN INR sets: batched fitting, storage, a dataset class, rendering and NFN-format interop.

Conventions (the same in fitting, rendering, import and export; they match the NFN SIREN sets):

* **Network**: ``siren_spec(C)``: ``2 -> 32 -> 32 -> C`` dense layers, hidden activation
  ``sin(w0 * (W x + b))`` with ``w0 = 30`` on every hidden layer, linear output.
* **Initialisation** (Sitzmann et al. 2020, as in their reference code): first layer
  ``W ~ U(-1/n_in, 1/n_in)``, later layers ``W ~ U(-sqrt(6/n_in)/w0, sqrt(6/n_in)/w0)``; biases keep
  ``nn.Linear``'s default ``U(-1/sqrt(n_in), 1/sqrt(n_in))`` (the reference code re-initialises only
  the weights). Every net draws from its own generator, seeded from ``(seed, split, image index)``
  (:func:`net_seed`), so a net's weights do not depend on which chunk, shard or run fitted it.
* **Coordinates**: pixel ``(r, c)`` of an ``H x W`` image sits at ``(y, x) = (linspace(-1, 1, H)[r],
  linspace(-1, 1, W)[c])`` (grid endpoints included); inputs are ordered ``(y, x)`` and pixels are
  flattened row-major, as ``torch.meshgrid(..., indexing="ij")`` gives them (NFN's ``get_mgrid``).
* **Pixels**: images in ``[0, 1]`` are fitted as ``2 p - 1`` in ``[-1, 1]``; channel ``k`` of the
  output is channel ``k`` of the image. :func:`render` maps back with ``(y + 1) / 2``.
* **PSNR**: ``10 log10(2^2 / MSE)`` with the MSE over all pixels and channels on the ``[-1, 1]``
  scale (peak-to-peak 2), which equals ``10 log10(1 / MSE)`` on the ``[0, 1]`` scale.

Fitting (:func:`fit_sirens`): all nets of a batch run at once with batched matrix products
(``baddbmm``/``bmm``) and hand-written gradients; every net has its own loss (the batch minimises
the *sum* of per-net mean squared errors, so nets never interact) and its own Adam moments. A net
stops, and its weights are frozen and taken out of the batch, as soon as its PSNR reaches the
target, or after ``max_steps`` updates.

Storage of a set (a folder, written by :func:`make_inr_dataset`, :func:`merge_inr_datasets` and
:func:`import_nfn`)::

    meta.json            format, dataset, architecture, conventions, the fitting plan and settings
    chunks/<split>-<k>.npz   one per chunk of up to ``batch`` nets: image_index, label, psnr, steps,
                         weight_1..weight_L (n, out, in), bias_1..bias_L (n, out), split, chunk
    index.csv            row, split, image_index, label, psnr, steps, chunk, pos (one line per net)

Every file is written atomically; chunks are plain ``.npz`` read with ``allow_pickle=False``.
"""

from __future__ import annotations

import contextlib
import csv
import math
import re
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..io import (DataFormatError, atomic_open, load_npz, load_torch, npz_shapes, read_json, save_npz, save_torch,
                  write_json)
from ..jobs import locks_output, parse_shard, refuse_overwrite, torch_threads  # noqa: F401  (parse_shard, torch_threads: re-exported)
from ..weightspace import WeightSpaceFeatures, WeightSpaceSpec, functional_forward, siren_spec

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INR_DATASETS",
    "NFN_PREFIX",
    "FitConfig",
    "FitResult",
    "RECIPES",
    "DEFAULT_RECIPE",
    "INIT_SCHEMES",
    "recipe",
    "recipe_name",
    "MakeSummary",
    "InrDataset",
    "make_coords",
    "images_to_targets",
    "psnr",
    "net_seed",
    "init_sirens",
    "fit_sirens",
    "render",
    "parse_shard",
    "plan_chunks",
    "make_inr_dataset",
    "merge_inr_datasets",
    "read_meta",
    "read_index",
    "load_chunk",
    "write_index",
    "summarize",
    "nfn_keys",
    "nfn_state_dict",
    "read_nfn_file",
    "import_nfn",
    "export_nfn",
]

FORMAT = "mnfn-inr"
FORMAT_VERSION = 1
#: Image sets ``mnfn inr make`` fits (names of :func:`mnfn.data.images.load_images`).
INR_DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar10-gray")
NFN_PREFIX = "randinit_smaller"
SPLITS = ("train", "test")
_SPLIT_CODE = {"train": 0, "test": 1}
# Train/test sizes of the full sets: NFN indices run over train + test concatenated, so the
# test offset must be known even for a folder holding only a few nets.
KNOWN_SPLIT_SIZES: dict[str, dict[str, int]] = {
    "mnist": {"train": 60000, "test": 10000},
    "fashion-mnist": {"train": 60000, "test": 10000},
    "cifar10": {"train": 50000, "test": 10000},
    "cifar10-gray": {"train": 50000, "test": 10000},
    "digits": {"train": 1397, "test": 400},
}
CONVENTIONS = {
    "coords": "input (y, x) = (linspace(-1,1,H)[row], linspace(-1,1,W)[col]), pixels row-major",
    "pixels": "network output = 2 * image - 1, image in [0, 1]; channel k -> output k",
    "psnr": "10*log10(2**2 / MSE) on the [-1, 1] scale (= 10*log10(1/MSE) on [0, 1]), MSE over pixels and channels",
    "activation": "sin(w0 * (W h + b)) on every hidden layer, linear output",
    "init": "W1 ~ U(-1/n_in, 1/n_in); later W ~ U(-sqrt(6/n_in)/w0, +sqrt(6/n_in)/w0); b ~ U(-1/sqrt(n_in), 1/sqrt(n_in))",
    "net_seed": "SeedSequence([seed, split (train 0, test 1), image_index]) -> torch.Generator",
}


# --- conventions as code -----------------------------------------------------------------------

def make_coords(height: int, width: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(H*W, 2)`` input coordinates ``(y, x)`` on ``[-1, 1]^2``, pixels in row-major order."""
    ys = torch.linspace(-1.0, 1.0, height, dtype=torch.float64)
    xs = torch.linspace(-1.0, 1.0, width, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)
    return grid.reshape(-1, 2).to(dtype)


def images_to_targets(images: Tensor | np.ndarray) -> Tensor:
    """Images ``(N, C, H, W)`` in ``[0, 1]`` -> fitting targets ``(N, H*W, C)`` in ``[-1, 1]``."""
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    return (x.permute(0, 2, 3, 1).reshape(n, h * w, c) * 2.0 - 1.0).contiguous()


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """PSNR in dB per item of images in ``[0, 1]``: ``10 log10(1 / MSE)`` over all but the first axis.

    Identical to ``10 log10(2^2 / MSE)`` of the same images on the ``[-1, 1]`` scale.
    """
    mse = (pred.double() - target.double()).square().flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse)


def net_seed(seed: int, split: str, image_index: int) -> int:
    """The 63-bit seed of the net fitted to image ``image_index`` of ``split`` in a run seeded ``seed``."""
    if seed < 0 or image_index < 0:
        raise ValueError(f"seed and image index must be non-negative, got {seed}, {image_index}")
    state = np.random.SeedSequence([int(seed), _SPLIT_CODE[split], int(image_index)]).generate_state(1, np.uint64)
    return int(state[0]) & ((1 << 63) - 1)


#: How the nets of a set are initialised: each from its own seed (NFN's "randinit" sets), or all
#: from one shared initialisation (then the weights differ from net to net only by what fitting
#: changed, which is known to make INR sets easier to learn on).
INITS = ("independent", "shared")


def init_seeds(seed: int, split: str, image_indices: Sequence[int], init: str = "independent") -> list[int]:
    """Initialisation seeds of the nets fitted to ``image_indices`` of ``split``: :func:`net_seed`
    per net, or with ``init="shared"`` one seed for every net of every split."""
    if init == "independent":
        return [net_seed(seed, split, int(i)) for i in image_indices]
    if init == "shared":
        state = np.random.SeedSequence([int(seed), len(_SPLIT_CODE)]).generate_state(1, np.uint64)
        return [int(state[0]) & ((1 << 63) - 1)] * len(image_indices)
    raise ValueError(f"init must be one of {INITS}, got {init!r}")


def _siren_layers(spec: WeightSpaceSpec) -> list[tuple[int, int]]:
    return [(layer.n_out, layer.n_in) for layer in spec.layers]


#: Distributions a SIREN starts from (``FitConfig.init``). ``"siren"``: Sitzmann et al.'s reference
#: code, as in NFN's sets: first layer ``W ~ U(+-1/n_in)``, later ``W ~ U(+-sqrt(6/n_in)/w0)``, biases
#: ``nn.Linear``'s ``U(+-1/sqrt(n_in))``. ``"dws"``: DWSNets' sets: every layer, the first included,
#: ``W ~ U(+-sqrt(6/n_in)/w0)`` and all biases zero, so fitting must move the first layer too.
INIT_SCHEMES = ("siren", "dws")


def init_sirens(seeds: Sequence[int], spec: WeightSpaceSpec, scheme: str = "siren") -> list[Tensor]:
    """Initialisation of ``len(seeds)`` SIRENs: ``[W1 (n, o, i), b1 (n, o), W2, b2, ...]``.

    Net ``j`` draws ``W1, b1, W2, b2, ...`` in that order from ``torch.Generator().manual_seed(seeds[j])``
    (``scheme="dws"`` draws no biases). ``scheme``: see :data:`INIT_SCHEMES`.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init scheme must be one of {INIT_SCHEMES}, got {scheme!r}")
    w0 = float(spec.layers[0].act_param or 1.0)
    shapes = _siren_layers(spec)
    out = [[] for _ in range(2 * len(shapes))]
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        for i, (n_out, n_in) in enumerate(shapes):
            if scheme == "siren":
                wb = 1.0 / n_in if i == 0 else math.sqrt(6.0 / n_in) / w0
                bb = 1.0 / math.sqrt(n_in)  # nn.Linear's default bias range, kept by the SIREN reference
                out[2 * i].append((torch.rand(n_out, n_in, generator=g) * 2 - 1) * wb)
                out[2 * i + 1].append((torch.rand(n_out, generator=g) * 2 - 1) * bb)
            else:
                out[2 * i].append((torch.rand(n_out, n_in, generator=g) * 2 - 1) * (math.sqrt(6.0 / n_in) / w0))
                out[2 * i + 1].append(torch.zeros(n_out))
    return [torch.stack(t) for t in out]


def _params_to_features(params: Sequence[Tensor], spec: WeightSpaceSpec) -> WeightSpaceFeatures:
    ws = tuple(params[2 * i][:, None].contiguous() for i in range(spec.num_layers))
    bs = tuple(params[2 * i + 1][:, None].contiguous() for i in range(spec.num_layers))
    return WeightSpaceFeatures(ws, bs, spec)


# --- fitting ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FitConfig:
    """How :func:`fit_sirens` fits: from ``init`` (:data:`INIT_SCHEMES`), Adam (``lr``, ``betas``, ``eps``)
    until ``target_psnr`` (``None``: no early stop) or ``max_steps`` updates.

    The defaults are the ``fast`` recipe (:data:`RECIPES`): ``lr`` 6e-3 reaches 30 dB in 35-37 steps on
    average on 256 MNIST / Fashion-MNIST / CIFAR-10 images (max 46 / 45 / 150); 3e-3 takes 55 steps,
    the usual SIREN rate 1e-4 hundreds, and 8e-3 is no faster.
    """

    target_psnr: float | None = 30.0
    max_steps: int = 500
    lr: float = 6e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    hidden: int = 32
    depth: int = 2
    w0: float = 30.0
    init: str = "siren"

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if not isinstance(self.max_steps, int) or self.max_steps < 0:
            raise ValueError(f"max_steps must be an integer >= 0, got {self.max_steps!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if self.target_psnr is not None and not (isinstance(self.target_psnr, (int, float))
                                                 and math.isfinite(self.target_psnr)):
            raise ValueError(f"target_psnr must be a finite number of dB or None (no early stop), "
                             f"got {self.target_psnr!r}")
        if self.init not in INIT_SCHEMES:
            raise ValueError(f"init must be one of {INIT_SCHEMES}, got {self.init!r}")

    @property
    def early_stop(self) -> bool:
        return self.target_psnr is not None

    def spec(self, channels: int) -> WeightSpaceSpec:
        return siren_spec(channels, hidden=self.hidden, depth=self.depth, w0=self.w0)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "FitConfig":
        """Inverse of :meth:`to_json`; keys missing in older ``meta.json`` files take their defaults."""
        d = dict(d)
        d["betas"] = tuple(d.get("betas", (0.9, 0.999)))
        return cls(**d)

    def replace(self, **changes: Any) -> "FitConfig":
        """A copy with ``changes`` (``None`` values are ignored, so CLI defaults can pass through)."""
        from dataclasses import replace

        return replace(self, **{k: v for k, v in changes.items() if v is not None})


#: Named INR recipes (``mnfn inr make --recipe NAME``), see ``docs/inr.md``:
#:
#: * ``nfn``: NFN's public SIREN sets (the paper's experiments 2 and 3): SIREN init, Adam 1e-3 for
#:   300 steps, no early stop. On MNIST it reproduces the pooled per-tensor standard deviations of
#:   NFN's 45,000 training nets (W1 0.2868, W2 0.01711, W3 0.06391, b1 0.4090, b2 0.1041, b3 0.0970).
#: * ``dws``: DWSNets-style sets: first layer initialised like the others, zero biases, Adam 2e-3
#:   until 30 dB (at most 800 steps). Fitted signal lands in every tensor.
#: * ``fast``: SIREN init, Adam 6e-3 until 30 dB (~37 steps): 8x cheaper, weights further from NFN's.
RECIPES: dict[str, FitConfig] = {
    "nfn": FitConfig(target_psnr=None, max_steps=300, lr=1e-3, init="siren"),
    "dws": FitConfig(target_psnr=30.0, max_steps=800, lr=2e-3, init="dws"),
    "fast": FitConfig(target_psnr=30.0, max_steps=500, lr=6e-3, init="siren"),
}
DEFAULT_RECIPE = "nfn"

#: Pooled standard deviations per tensor of NFN's 45,000 MNIST training SIRENs (published with the
#: Neural Graphs code as that set's statistics); the ``nfn`` recipe is tested against them.
NFN_MNIST_STDS: dict[str, float] = {"weight_1": 0.2868, "weight_2": 0.01711, "weight_3": 0.06391,
                                    "bias_1": 0.4090, "bias_2": 0.1041, "bias_3": 0.0970}


def recipe(name: str) -> FitConfig:
    """The :class:`FitConfig` of the recipe ``name`` (:data:`RECIPES`)."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown INR recipe {name!r}; choose from {', '.join(RECIPES)}") from None


def recipe_name(fit: FitConfig) -> str | None:
    """The name of the recipe ``fit`` equals, or ``None`` for custom settings."""
    return next((k for k, v in RECIPES.items() if v == fit), None)


@dataclass
class FitResult:
    """Fitted nets (``features``: C = 1, spec ``siren_spec(C)``), their PSNR (dB) and Adam steps taken."""

    features: WeightSpaceFeatures
    psnr: Tensor
    steps: Tensor
    seconds: float = 0.0
    target_psnr: float | None = 30.0

    @property
    def missed(self) -> Tensor:
        """Nets whose PSNR stayed below the target (boolean ``(N,)``; none without a target)."""
        if self.target_psnr is None:
            return torch.zeros_like(self.psnr, dtype=torch.bool)
        return ~(self.psnr >= self.target_psnr)


def _loss_and_grads(params: list[Tensor], coords: Tensor, target: Tensor, w0: float,
                    need_grad: bool) -> tuple[Tensor, list[Tensor] | None]:
    """Per-net MSE ``(n,)`` and, on request, its gradients, for ``n`` SIRENs at once.

    Forward: ``h_0 = coords``, ``h_i = sin(w0 (h_{i-1} W_i^T + b_i))``, ``y = h_{L-1} W_L^T + b_L``.
    Backward by hand (autograd costs about a third more here): with ``r = y - t`` and
    ``d_L = 2 r / (P C)``: ``dW_i = d_i^T h_{i-1}``, ``db_i = sum_p d_i``,
    ``d_{i-1} = (d_i W_i) * w0 cos(w0 (h_{i-2} W_{i-1}^T + b_{i-1}))``.
    The kernel choices below were timed on a 2-core CPU (batch 64, 28x28): each avoids a slow
    path of batched GEMM (stride-0 operands, inner dimension 1 or 2) or a pass over a big tensor.
    """
    L = len(params) // 2
    n, P, C = target.shape
    hs: list[Tensor] = [coords]
    coss: list[Tensor] = []
    for i in range(L - 1):
        W, b = params[2 * i], params[2 * i + 1]
        if i == 0:
            # K = 2: baddbmm on the broadcast grid is the fastest; it computes w0 * (x W^T + b) in one go.
            z = torch.baddbmm(b.unsqueeze(1), coords.expand(n, *coords.shape), W.transpose(1, 2), beta=w0, alpha=w0)
        else:
            # bmm + in-place bias is cheaper than baddbmm (which first copies the broadcast bias); w0 rides on W.
            z = torch.bmm(hs[-1], W.transpose(1, 2) * w0).add_((b * w0).unsqueeze(1))
        if need_grad:
            coss.append(torch.cos(z))
        hs.append(z.sin_())
    y = torch.baddbmm(params[-1].unsqueeze(1), hs[-1], params[-2].transpose(1, 2))
    r = y.sub_(target)
    mse = r.square().mean(dim=(1, 2))
    if not need_grad:
        return mse, None
    grads: list[Tensor] = [None] * len(params)  # type: ignore[list-item]
    d = r.mul_(2.0 / (P * C))
    for i in range(L - 1, -1, -1):
        if i == 0:
            # (P, 2)^T @ (n, P, h) as one broadcast GEMM: much faster than bmm with a K = 2 result.
            grads[0] = torch.matmul(coords.t(), d).transpose(1, 2)
        else:
            grads[2 * i] = torch.bmm(d.transpose(1, 2), hs[i])
        grads[2 * i + 1] = d.sum(1)
        if i > 0:
            Ww = params[2 * i] * w0  # w0 of the cos factor folded into the small matrix
            if d.shape[-1] == 1:
                d = (d * Ww).mul_(coss[i - 1])  # an outer product: bmm with K = 1 is slow
            else:
                d = torch.bmm(d, Ww).mul_(coss[i - 1])
    return mse, grads


def fit_sirens(images: Tensor | np.ndarray, seeds: Sequence[int], config: FitConfig = FitConfig(), *,
               batch_size: int = 64, progress: Callable[[int], None] | None = None,
               num_threads: int | None = 1) -> FitResult:
    """Fit one SIREN per image (``(N, C, H, W)`` in ``[0, 1]``), ``batch_size`` nets at a time.

    Net ``j`` starts from :func:`init_sirens` with ``seeds[j]``. Each step evaluates every active net
    (PSNR of its current weights), freezes those at ``config.target_psnr`` or more (and any after
    ``config.max_steps`` updates), then takes one Adam step on the rest. ``progress(k)`` is called
    when ``k`` more nets have finished. Returns features of the frozen weights, the PSNR of exactly
    those weights and the number of Adam updates each took.

    ``num_threads`` (default 1) is torch's intra-op thread count during the fit: the kernels are
    too small to gain from a second thread (on 2 busy cores two threads were 5x slower), and one
    thread makes the result bit-for-bit independent of the machine's core count. Use processes
    for parallelism (``make_inr_dataset(workers=...)``).
    """
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(x.shape)}")
    if len(seeds) != x.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {len(seeds)} seeds")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n, c, h, w = x.shape
    spec = config.spec(c)
    coords = make_coords(h, w)
    t0 = time.perf_counter()
    parts = []
    with torch_threads(num_threads):
        for lo in range(0, n, batch_size):
            parts.append(_fit_batch(x[lo:lo + batch_size], list(seeds[lo:lo + batch_size]), spec, coords, config,
                                    progress))
    if not parts:
        empty = [torch.zeros(0, *s) for s in _flat_shapes(spec)]
        return FitResult(_params_to_features(empty, spec), torch.zeros(0), torch.zeros(0, dtype=torch.int64),
                         0.0, config.target_psnr)
    params = [torch.cat([p[0][k] for p in parts]) for k in range(2 * spec.num_layers)]
    res = FitResult(_params_to_features(params, spec), torch.cat([p[1] for p in parts]),
                    torch.cat([p[2] for p in parts]), time.perf_counter() - t0, config.target_psnr)
    return res


def _flat_shapes(spec: WeightSpaceSpec) -> list[tuple[int, ...]]:
    out = []
    for n_out, n_in in _siren_layers(spec):
        out += [(n_out, n_in), (n_out,)]
    return out


def _fit_batch(images: Tensor, seeds: list[int], spec: WeightSpaceSpec, coords: Tensor, cfg: FitConfig,
               progress: Callable[[int], None] | None) -> tuple[list[Tensor], Tensor, Tensor]:
    n = images.shape[0]
    target = images_to_targets(images)
    params = init_sirens(seeds, spec, cfg.init)
    final = [p.clone() for p in params]
    psnr_out = torch.full((n,), float("nan"), dtype=torch.float32)
    steps_out = torch.zeros(n, dtype=torch.int64)
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    active = torch.arange(n)
    b1, b2 = cfg.betas
    w0 = float(cfg.w0)
    for t in range(cfg.max_steps + 1):
        last = t == cfg.max_steps
        mse, grads = _loss_and_grads(params, coords, target, w0, need_grad=not last)
        if not torch.isfinite(mse).all():
            bad = active[~torch.isfinite(mse)].tolist()
            raise FloatingPointError(f"SIREN fit diverged (non-finite loss) at step {t} for nets with seeds "
                                     f"{[seeds[i] for i in bad[:5]]}; lower the learning rate (now {cfg.lr})")
        p_db = 10.0 * torch.log10(4.0 / mse.double())
        if last:
            done = torch.ones_like(mse, dtype=torch.bool)
        elif cfg.target_psnr is None:
            done = torch.zeros_like(mse, dtype=torch.bool)
        else:
            done = p_db >= cfg.target_psnr
        if bool(done.any()):
            idx = active[done]
            for f_, p_ in zip(final, params):
                f_[idx] = p_[done]
            psnr_out[idx] = p_db[done].float()
            steps_out[idx] = t
            if progress is not None:
                progress(int(done.sum()))
            keep = ~done
            if not bool(keep.any()):
                break
            # Frozen nets leave the batch: later steps cost only what the remaining nets need.
            params = [p_[keep].contiguous() for p_ in params]
            m = [a[keep].contiguous() for a in m]
            v = [a[keep].contiguous() for a in v]
            grads = [g[keep] for g in grads]  # type: ignore[union-attr]
            target = target[keep].contiguous()
            active = active[keep]
        # Adam (torch.optim.Adam's update, elementwise, so nets stay independent).
        k = t + 1
        bc1 = 1.0 - b1 ** k
        bc2 = 1.0 - b2 ** k
        step_size = cfg.lr / bc1
        for p_, g, m_, v_ in zip(params, grads, m, v):  # type: ignore[arg-type]
            m_.mul_(b1).add_(g, alpha=1.0 - b1)
            v_.mul_(b2).addcmul_(g, g, value=1.0 - b2)
            denom = (v_.sqrt() / math.sqrt(bc2)).add_(cfg.eps)
            p_.addcdiv_(m_, denom, value=-step_size)
    return final, psnr_out, steps_out


# --- rendering -------------------------------------------------------------------------------

def render(features: WeightSpaceFeatures, image_shape: Sequence[int], clamp: bool = True,
           channel: int = 0) -> Tensor:
    """Images ``(B, C, H, W)`` in ``[0, 1]`` drawn by a batch of SIRENs (``(y + 1) / 2`` of their output).

    ``image_shape`` is ``(C, H, W)`` or ``(H, W)``; ``clamp`` clips to ``[0, 1]`` (off: the raw map,
    e.g. to recompute the fitting PSNR exactly). Runs :func:`mnfn.weightspace.functional_forward`
    on the coordinate grid of :func:`make_coords`.
    """
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (features.spec.layers[-1].n_out, *shape)
    if len(shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W) or (H, W), got {image_shape!r}")
    c, h, w = shape
    if features.spec.layers[-1].n_out != c:
        raise ValueError(f"the nets output {features.spec.layers[-1].n_out} channels, image_shape asks for {c}")
    coords = make_coords(h, w, dtype=features.dtype).to(features.device)
    y = functional_forward(features, coords, channel=channel)  # (B, H*W, C)
    img = (y.reshape(y.shape[0], h, w, c).permute(0, 3, 1, 2) + 1.0) / 2.0
    return img.clamp(0.0, 1.0) if clamp else img


# --- storage ---------------------------------------------------------------------------------

INDEX_COLUMNS = ("row", "split", "image_index", "label", "psnr", "steps", "chunk", "pos")
_CHUNK_RE = re.compile(r"^(train|test)-(\d{5,})\.npz$")


def chunk_name(split: str, k: int) -> str:
    return f"{split}-{k:05d}.npz"


def read_meta(root: str | Path) -> dict[str, Any]:
    """``meta.json`` of an INR set, checked for the format; errors name the file."""
    path = Path(root) / "meta.json"
    if not path.exists():
        raise DataFormatError(f"{path}: file not found; {Path(root)} is not an INR set folder "
                              "(make one with `mnfn inr make` or `mnfn inr import-nfn`)")
    meta = read_json(path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataFormatError(f"{path}: not an {FORMAT} meta file")
    if meta.get("version") != FORMAT_VERSION:
        raise DataFormatError(f"{path}: format version {meta.get('version')}, this code reads {FORMAT_VERSION}")
    for key in ("dataset", "image_shape", "siren", "classes"):
        if key not in meta:
            raise DataFormatError(f"{path}: missing key {key!r}")
    _check_meta_types(path, meta)
    return meta


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_meta_types(path: Path, meta: dict[str, Any]) -> None:
    """The fields that build the architecture and label the nets must have the right types."""
    s = meta["siren"]
    if not (isinstance(s, dict) and _is_int(s.get("hidden")) and s["hidden"] > 0 and _is_int(s.get("depth"))
            and s["depth"] > 0 and isinstance(s.get("w0"), (int, float)) and not isinstance(s.get("w0"), bool)
            and math.isfinite(s["w0"])):
        raise DataFormatError(f"{path}: 'siren' must be {{hidden: int > 0, depth: int > 0, w0: number}}, got {s!r}")
    shape = meta["image_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_int(v) and v > 0 for v in shape)):
        raise DataFormatError(f"{path}: 'image_shape' must be [C, H, W] (positive integers), got {shape!r}")
    classes = meta["classes"]
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise DataFormatError(f"{path}: 'classes' must be a non-empty list of class names, got {classes!r}")


def _meta_spec(meta: dict[str, Any]) -> WeightSpaceSpec:
    s = meta["siren"]
    return siren_spec(int(meta["image_shape"][0]), hidden=int(s["hidden"]), depth=int(s["depth"]), w0=float(s["w0"]))


#: The most nets one chunk file may hold (``mnfn inr make --batch`` writes 64 by default).
MAX_CHUNK_NETS = 1 << 16


def load_chunk(path: str | Path, spec: WeightSpaceSpec) -> dict[str, np.ndarray]:
    """Read and check one chunk file against ``spec``; every problem raises an error naming the file."""
    path = Path(path)
    L = spec.num_layers
    req = ("image_index", "label", "psnr", "steps", "split") + tuple(
        f"{kind}_{i + 1}" for i in range(L) for kind in ("weight", "bias"))
    # Shapes from the member headers before any data is read: a member that claims gigabytes (a
    # zip bomb, a wrong file) is refused without allocating it.
    heads = npz_shapes(path)
    idx_shape = heads.get("image_index", ((0,), None))[0]
    n_head = idx_shape[0] if len(idx_shape) == 1 else 0
    if n_head > MAX_CHUNK_NETS:
        raise DataFormatError(f"{path}: image_index announces {n_head:,} nets; a chunk holds at most {MAX_CHUNK_NETS:,}")
    for i, layer in enumerate(spec.layers):
        for kind, shape in (("weight", (n_head, layer.n_out, layer.n_in)), ("bias", (n_head, layer.n_out))):
            key = f"{kind}_{i + 1}"
            if key in heads and heads[key][0] != shape:
                raise DataFormatError(f"{path}: {key} has shape {heads[key][0]}, expected {shape} "
                                      f"for [{spec.describe()}]")
    for key, (shape, _) in heads.items():
        if key not in req and int(np.prod(shape, dtype=np.int64)) > 16 * MAX_CHUNK_NETS:
            raise DataFormatError(f"{path}: unexpected array {key} of shape {shape}")
        if key in ("label", "psnr", "steps") and shape != (n_head,):
            raise DataFormatError(f"{path}: {key} has shape {shape}, expected ({n_head},)")
    arrs = load_npz(path, required=req)
    n = arrs["image_index"].shape[0] if arrs["image_index"].ndim == 1 else -1
    if n < 0:
        raise DataFormatError(f"{path}: image_index must be 1-D, got shape {arrs['image_index'].shape}")
    for k in ("label", "psnr", "steps"):
        if arrs[k].shape != (n,):
            raise DataFormatError(f"{path}: {k} has shape {arrs[k].shape}, expected ({n},)")
    for i, layer in enumerate(spec.layers):
        for kind, shape in (("weight", (n, layer.n_out, layer.n_in)), ("bias", (n, layer.n_out))):
            a = arrs[f"{kind}_{i + 1}"]
            if a.shape != shape:
                raise DataFormatError(f"{path}: {kind}_{i + 1} has shape {a.shape}, expected {shape} "
                                      f"for [{spec.describe()}]")
            if a.dtype != np.float32:
                raise DataFormatError(f"{path}: {kind}_{i + 1} has dtype {a.dtype}, expected float32")
            if not np.isfinite(a).all():
                raise DataFormatError(f"{path}: {kind}_{i + 1} has NaN/Inf values")
    if str(arrs["split"]) not in SPLITS:
        raise DataFormatError(f"{path}: split {arrs['split']!r} is not train or test")
    return arrs


def _save_chunk(path: Path, split: str, k: int, image_index: np.ndarray, label: np.ndarray, psnr_db: np.ndarray,
                steps: np.ndarray, params: Sequence[Tensor | np.ndarray]) -> None:
    arrays: dict[str, np.ndarray] = {
        "image_index": np.asarray(image_index, dtype=np.int64),
        "label": np.asarray(label, dtype=np.int64),
        "psnr": np.asarray(psnr_db, dtype=np.float32),
        "steps": np.asarray(steps, dtype=np.int64),
        "split": np.array(split),
        "chunk": np.array(k, dtype=np.int64),
    }
    for i in range(len(params) // 2):
        arrays[f"weight_{i + 1}"] = np.ascontiguousarray(np.asarray(params[2 * i], dtype=np.float32))
        arrays[f"bias_{i + 1}"] = np.ascontiguousarray(np.asarray(params[2 * i + 1], dtype=np.float32))
    save_npz(path, **arrays)


def _chunk_files(root: Path) -> list[Path]:
    d = root / "chunks"
    if not d.is_dir():
        return []
    files = [p for p in d.iterdir() if _CHUNK_RE.match(p.name)]
    return sorted(files, key=lambda p: (_SPLIT_CODE[_CHUNK_RE.match(p.name).group(1)],  # type: ignore[union-attr]
                                        int(_CHUNK_RE.match(p.name).group(2))))  # type: ignore[union-attr]


def write_index(root: str | Path, spec: WeightSpaceSpec | None = None) -> list[dict[str, Any]]:
    """Rebuild ``index.csv`` from the chunk files present (train first, then test, by image index)."""
    root = Path(root)
    spec = spec or _meta_spec(read_meta(root))
    rows: list[dict[str, Any]] = []
    for path in _chunk_files(root):
        a = load_chunk(path, spec)
        split = str(a["split"])
        if not path.name.startswith(split + "-"):
            raise DataFormatError(f"{path}: holds split {split!r} but its name says otherwise")
        for pos in range(a["image_index"].shape[0]):
            rows.append(dict(split=split, image_index=int(a["image_index"][pos]), label=int(a["label"][pos]),
                             psnr=float(a["psnr"][pos]), steps=int(a["steps"][pos]), chunk=path.name, pos=pos))
    rows.sort(key=lambda r: (_SPLIT_CODE[r["split"]], r["image_index"]))
    seen: dict[tuple[str, int], str] = {}
    for r in rows:
        key = (r["split"], r["image_index"])
        if key in seen:
            raise DataFormatError(f"{root / 'chunks'}: {r['split']} image {r['image_index']} is in both "
                                  f"{seen[key]} and {r['chunk']}")
        seen[key] = r["chunk"]
    with atomic_open(root / "index.csv", "w") as fh:
        wr = csv.writer(fh)
        wr.writerow(INDEX_COLUMNS)
        for i, r in enumerate(rows):
            r["row"] = i
            wr.writerow([i, r["split"], r["image_index"], r["label"], f"{r['psnr']:.6g}", r["steps"], r["chunk"],
                         r["pos"]])
    return rows


def read_index(root: str | Path) -> list[dict[str, Any]]:
    """Rows of ``index.csv`` (typed); errors name the file and line."""
    path = Path(root) / "index.csv"
    if not path.exists():
        raise DataFormatError(f"{path}: file not found; finish the run (rerun `mnfn inr make` with the same "
                              "arguments: it resumes) or rebuild it with `mnfn inr merge`")
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            _read_index_rows(path, fh, rows)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataFormatError(f"{path}: not a readable CSV ({type(exc).__name__}: {exc})") from None
    return rows


def _read_index_rows(path: Path, fh: Any, rows: list[dict[str, Any]]) -> None:
    rd = csv.reader(fh)
    header = next(rd, None)
    if header is None or tuple(header) != INDEX_COLUMNS:
        raise DataFormatError(f"{path}: header {header} is not {list(INDEX_COLUMNS)}"[:500])
    for ln, rec in enumerate(rd, start=2):
        try:
            if len(rec) != len(INDEX_COLUMNS) or rec[1] not in SPLITS:
                raise ValueError("wrong field count or split")
            if not _CHUNK_RE.match(rec[6]):
                raise ValueError(f"chunk {rec[6]!r} is not a chunk file name like train-00000.npz")
            rows.append(dict(row=int(rec[0]), split=rec[1], image_index=int(rec[2]), label=int(rec[3]),
                             psnr=float(rec[4]), steps=int(rec[5]), chunk=rec[6], pos=int(rec[7])))
        except ValueError as exc:
            raise DataFormatError(f"{path}: line {ln} is malformed ({exc}): {rec}"[:500]) from None


@dataclass
class MakeSummary:
    """What a make/merge/import left in a folder."""

    root: str
    nets: int
    median_psnr: float
    missed: int
    target_psnr: float | None
    fitted_now: int = 0
    reused: int = 0
    seconds: float = 0.0
    chunks_done: int = 0
    chunks_expected: int | None = None
    mean_steps: float = float("nan")
    unknown_psnr: int = 0

    @property
    def complete(self) -> bool:
        return self.chunks_expected is None or self.chunks_done >= self.chunks_expected

    def lines(self) -> list[str]:
        out = [f"INR set: {self.root}: {self.nets} nets in {self.chunks_done}"
               + (f" of {self.chunks_expected}" if self.chunks_expected is not None else "") + " chunks"]
        if self.fitted_now or self.reused:
            rate = self.fitted_now / self.seconds if self.seconds > 0 else float("nan")
            out.append(f"fitted now: {self.fitted_now} nets in {self.seconds:.1f} s ({rate:.1f} INRs/s); "
                       f"kept from earlier runs: {self.reused}")
        out.append(f"median PSNR: {self.median_psnr:.2f} dB")
        if self.target_psnr is not None:
            out.append(f"missed target ({self.target_psnr:g} dB): {self.missed} of {self.nets - self.unknown_psnr}")
        if self.unknown_psnr:
            out.append(f"PSNR not known for {self.unknown_psnr} nets (imported without --psnr)")
        if not math.isnan(self.mean_steps):
            out.append(f"mean Adam steps: {self.mean_steps:.1f}")
        if not self.complete:
            out.append("incomplete: rerun the same command to resume, run the other shards, or merge shard folders")
        return out


def summarize(root: str | Path, rows: list[dict[str, Any]] | None = None) -> MakeSummary:
    """Summary of an INR set folder from its index."""
    root = Path(root)
    meta = read_meta(root)
    rows = read_index(root) if rows is None else rows
    ps = np.array([r["psnr"] for r in rows], dtype=np.float64)
    target = meta.get("fit", {}).get("target_psnr") if meta.get("fit") else None
    finite = ps[np.isfinite(ps)]
    steps = np.array([r["steps"] for r in rows if r["steps"] >= 0], dtype=np.float64)
    return MakeSummary(
        root=str(root), nets=len(rows), median_psnr=float(np.median(finite)) if finite.size else float("nan"),
        missed=int((finite < target).sum()) if target is not None else 0, target_psnr=target,
        chunks_done=len({r["chunk"] for r in rows}), chunks_expected=meta.get("chunks_expected"),
        mean_steps=float(steps.mean()) if steps.size else float("nan"), unknown_psnr=int((~np.isfinite(ps)).sum()))


# --- make: plan, fit, resume, shard -----------------------------------------------------------

def select_indices(split_size: int, num: int | None, select: str) -> np.ndarray:
    """Image indices of a split to fit: the first ``num``, or ``num`` drawn at random (seed 0), sorted."""
    if num is None or num >= split_size:
        return np.arange(split_size, dtype=np.int64)
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    if select == "first":
        return np.arange(num, dtype=np.int64)
    if select == "random":
        # Fixed seed, independent of the init seed: runs with different init seeds fit the same images,
        # and a larger num takes a superset.
        return np.sort(np.random.default_rng(0).permutation(split_size)[:num]).astype(np.int64)
    raise ValueError(f"select must be 'first' or 'random', got {select!r}")


def plan_chunks(split_sizes: dict[str, int], splits: Sequence[str], num: int | None, select: str,
                batch: int) -> list[tuple[str, int, np.ndarray]]:
    """All chunks of a run, in order: ``(split, k, image indices)``; train chunks first."""
    plan = []
    for s in SPLITS:
        if s not in splits:
            continue
        idx = select_indices(split_sizes[s], num, select)
        for k, lo in enumerate(range(0, len(idx), batch)):
            plan.append((s, k, idx[lo:lo + batch]))
    return plan


def _resize(images: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or tuple(images.shape[-2:]) == tuple(size):
        return images
    # Bilinear (align_corners=False), e.g. 8x8 digits -> 28x28 "MNIST-like"; clipped back to [0, 1].
    x = F.interpolate(torch.from_numpy(images), size=tuple(size), mode="bilinear", align_corners=False)
    return x.clamp_(0.0, 1.0).numpy()


def _load_split(dataset: str, split: str, data_root: str | Path | None, limit: int | None = None):
    from .images import load_images  # images are needed only to fit/compare, not to read INR sets

    return load_images(dataset, split=split, root=data_root, limit=limit)


_CONFIG_KEYS = ("dataset", "image_shape", "resize", "siren", "split_sizes", "plan", "fit")


def _config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Keys of :data:`_CONFIG_KEYS` whose values differ, with defaults filled in (so a folder written
    before a setting existed compares equal to one that states its default)."""
    def norm(m: dict[str, Any], k: str) -> Any:
        v = m.get(k)
        if k == "fit" and isinstance(v, dict):
            try:
                v = FitConfig.from_json(v).to_json()
            except (TypeError, ValueError):
                pass
        return _jsonable(v)

    return [k for k in _CONFIG_KEYS if norm(a, k) != norm(b, k)]


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


@locks_output("out", "mnfn inr make")
def make_inr_dataset(out: str | Path, dataset: str, *, num: int | None = None,
                     splits: Sequence[str] = ("train",), seed: int = 0, shard: str | tuple[int, int] | None = None,
                     fit: FitConfig = FitConfig(), batch_size: int = 64, select: str = "first",
                     resize: tuple[int, int] | None = None, data_root: str | Path | None = None,
                     max_chunks: int | None = None, workers: int = 1, progress: bool = True,
                     images: dict[str, Any] | None = None, init: str = "independent",
                     recipe_label: str | None = None) -> MakeSummary:
    """Fit one SIREN per image of ``dataset`` into the folder ``out`` (see the module docstring).

    ``num`` images per split (``None``: all), chosen by ``select``; chunks of ``batch_size`` nets;
    ``shard=(K, N)`` fits only every N-th chunk starting at chunk K (so N machines can share a run
    and ``merge_inr_datasets`` joins their folders). Chunks already in ``out`` are kept (resume);
    ``max_chunks`` stops after fitting that many (a time-boxed job). ``workers`` processes fit chunks
    in parallel (each with one torch thread). Same arguments -> same weights, bit for bit, however
    the work is split into shards, runs and workers. ``images`` (``{split: ImageSet}``)
    skips loading them (tests, benchmarks). ``init``: see :data:`INITS` and :func:`init_seeds`.
    ``recipe_label`` is recorded as ``meta["recipe"]`` (default: the :data:`RECIPES` name ``fit``
    equals, or ``"custom"``); only ``fit`` itself decides whether a rerun may resume.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if dataset not in INR_DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(INR_DATASETS)}")
    splits = tuple(splits)
    if not splits or any(s not in SPLITS for s in splits):
        raise ValueError(f"splits must be a non-empty subset of {SPLITS}, got {splits}")
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    k_shard, n_shard = parse_shard(shard)
    out = Path(out)

    # Images (and split sizes: num/select need them; NFN export needs the train size).
    sets = dict(images or {})
    split_sizes: dict[str, int] = {}
    for s in SPLITS:
        if s in sets:
            split_sizes[s] = len(sets[s])
        elif s in splits:
            sets[s] = _load_split(dataset, s, data_root)
            split_sizes[s] = len(sets[s])
        else:
            split_sizes[s] = KNOWN_SPLIT_SIZES.get(dataset, {}).get(s, -1)
    first = sets[splits[0]]
    native = tuple(int(v) for v in first.images.shape[1:])
    image_shape = (native[0], *(resize or native[1:]))
    meta = {
        "format": FORMAT, "version": FORMAT_VERSION, "origin": "fit", "dataset": dataset,
        "classes": list(first.classes), "num_classes": len(first.classes),
        "image_shape": list(image_shape), "native_shape": list(native),
        "resize": list(resize) if resize else None,
        "siren": {"hidden": fit.hidden, "depth": fit.depth, "w0": fit.w0},
        "split_sizes": split_sizes,
        "plan": {"splits": list(splits), "num": num, "select": select, "batch": batch_size, "seed": seed,
                 # recorded only when not the default, so folders made before the option still resume
                 **({"init": init} if init != "independent" else {})},
        "fit": fit.to_json(),
        # the recipe these settings equal (informational: "fit" is what resume compares)
        "recipe": recipe_label or recipe_name(fit) or "custom",
        "conventions": CONVENTIONS,
    }
    plan = plan_chunks(split_sizes, splits, num, select, batch_size)
    meta["chunks_expected"] = len(plan)
    meta_path = out / "meta.json"
    if meta_path.exists():
        old = read_meta(out)
        diff = _config_diff(old, meta)
        if diff:
            hint = ""
            if "fit" in diff:
                old_recipe = old.get("recipe") or recipe_name(FitConfig.from_json(old.get("fit") or {})) or "custom"
                hint = f" (it was made with recipe {old_recipe!r}, this run asks for {meta['recipe']!r})"
            raise ValueError(f"{meta_path}: this folder holds a run with different settings ({', '.join(diff)})"
                             f"{hint}; use another --out folder or the original arguments")
    else:
        write_json(meta_path, meta)
    spec = fit.spec(image_shape[0])

    mine = [(s, k, idx) for c, (s, k, idx) in enumerate(plan) if c % n_shard == k_shard]
    todo, reused = [], 0
    for s, k, idx in mine:
        path = out / "chunks" / chunk_name(s, k)
        if path.exists():
            try:
                a = load_chunk(path, spec)
            except DataFormatError as exc:
                raise DataFormatError(f"{exc}. Delete {path} and rerun to fit that chunk again") from None
            if not np.array_equal(a["image_index"], idx):
                raise DataFormatError(f"{path}: holds images {a['image_index'][:5].tolist()}... but the plan "
                                      f"says {idx[:5].tolist()}...; the folder was made with other settings")
            reused += len(idx)
        else:
            todo.append((s, k, idx))
    if max_chunks is not None:
        todo = todo[:max(0, max_chunks)]

    jobs = [(out / "chunks" / chunk_name(s, k), s, k, idx, sets[s].labels[idx],
             _resize(np.ascontiguousarray(sets[s].images[idx]), resize),
             init_seeds(seed, s, idx, init), fit.to_json(), batch_size) for s, k, idx in todo]
    fitted = 0
    bar = None
    if progress and jobs:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(j[3]) for j in jobs), unit="net", desc=f"fitting {dataset} SIRENs",
                   dynamic_ncols=True)
    all_ps: list[float] = []

    def done(ps: list[float], from_worker: bool) -> None:
        nonlocal fitted
        fitted += len(ps)
        all_ps.extend(ps)
        if bar is not None:
            if from_worker:
                bar.update(len(ps))
            bar.set_postfix(median_psnr=f"{np.median(all_ps):.2f}")

    t_fit = time.perf_counter()
    try:
        workers = max(1, min(int(workers), len(jobs)))
        if workers == 1:
            for job in jobs:
                done(_fit_chunk_job(job, (lambda j: bar.update(j)) if bar is not None else None), False)
        else:
            _run_jobs_in_processes(jobs, workers, lambda ps: done(ps, True))
    finally:
        if bar is not None:
            bar.close()
    fit_seconds = time.perf_counter() - t_fit
    rows = write_index(out, spec)
    summary = summarize(out, rows)
    summary.fitted_now, summary.reused, summary.seconds = fitted, reused, fit_seconds
    return summary


def _fit_chunk_job(job: tuple, progress: Callable[[int], None] | None = None) -> list[float]:
    """Fit one chunk and write its file; returns the nets' PSNRs (runs in the main process or a worker)."""
    path, split, k, idx, labels, images, seeds, fit_json, batch_size = job
    res = fit_sirens(images, seeds, FitConfig.from_json(fit_json), batch_size=batch_size, progress=progress)
    params = []
    for w, b in res.features:
        params += [w[:, 0].numpy(), b[:, 0].numpy()]
    _save_chunk(path, split, k, idx, labels, res.psnr.numpy(), res.steps.numpy(), params)
    return res.psnr.tolist()


def _worker_init() -> None:
    torch.set_num_threads(1)


def _run_jobs_in_processes(jobs: list[tuple], workers: int, on_done: Callable[[list[float]], None]) -> None:
    """Fit chunks in ``workers`` spawned processes, at most two jobs in flight per worker."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # spawn, not fork: forking a process whose OpenMP pool already ran can deadlock.
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_worker_init) as pool:
        pending: set = set()
        queue = list(jobs)
        try:
            while queue or pending:
                while queue and len(pending) < 2 * workers:
                    pending.add(pool.submit(_fit_chunk_job, queue.pop(0)))
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    on_done(f.result())
        except BaseException:
            for f in pending:
                f.cancel()
            raise


# --- merge -----------------------------------------------------------------------------------

_PER_SPLIT_PLAN = ("splits", "num", "select")


def _without_splits(meta: dict[str, Any]) -> dict[str, Any]:
    plan = {k: v for k, v in (meta.get("plan") or {}).items() if k not in _PER_SPLIT_PLAN}
    return {**meta, "plan": plan}


def _merged_meta(sources: Sequence[str | Path], metas: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``meta.json`` of the union of ``sources``: shards of one run, or runs with the same settings
    that fitted different splits (e.g. ``--split train --num 50000`` and ``--split test`` made apart;
    which images of a split were fitted, ``num`` and ``select``, may then differ by split)."""
    base = metas[0]
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    for src, m in zip(sources, metas):
        diff = _config_diff(_without_splits(base), _without_splits(m))
        if diff:
            raise ValueError(f"{Path(src) / 'meta.json'}: settings differ from {Path(sources[0]) / 'meta.json'} "
                             f"({', '.join(diff)}); only folders of one run, or of one run's settings for "
                             "different splits, can be merged")
        splits = tuple((m.get("plan") or {}).get("splits") or ())
        if splits in groups and _config_diff(groups[splits], m):
            raise ValueError(f"{Path(src) / 'meta.json'}: fits the same splits ({'+'.join(splits)}) as another "
                             f"source with other settings ({', '.join(_config_diff(groups[splits], m))})")
        groups.setdefault(splits, m)
    seen: set[str] = set()
    for splits in groups:
        if seen & set(splits):
            raise ValueError(f"cannot merge folders whose split lists overlap without being equal "
                             f"({', '.join('+'.join(g) for g in groups)})")
        seen |= set(splits)
    if len(groups) == 1:
        return base
    plan = {k: v for k, v in base["plan"].items() if k not in _PER_SPLIT_PLAN}
    for key in ("num", "select"):
        per = {s: (m.get("plan") or {}).get(key) for splits, m in groups.items() for s in splits}
        vals = set(map(str, per.values()))
        plan[key] = next(iter(per.values())) if len(vals) == 1 else {s: per[s] for s in SPLITS if s in per}
    merged = {**base, "plan": {"splits": [s for s in SPLITS if s in seen], **plan}}
    merged["chunks_expected"] = sum(int(m.get("chunks_expected") or 0) for m in groups.values())
    return merged


@locks_output("out", "mnfn inr merge")
def merge_inr_datasets(sources: Sequence[str | Path], out: str | Path) -> MakeSummary:
    """Join INR set folders into ``out``: shards of one run, or folders made with the same settings
    for different splits; a chunk present twice must be identical."""
    if not sources:
        raise ValueError("nothing to merge")
    out = Path(out)
    metas = [read_meta(s) for s in sources]
    base = _merged_meta(sources, metas)
    if (out / "meta.json").exists():
        diff = _config_diff(read_meta(out), base)
        if diff:
            raise ValueError(f"{out / 'meta.json'}: the output folder holds another run ({', '.join(diff)})")
    else:
        write_json(out / "meta.json", base)
    spec = _meta_spec(base)
    for src in sources:
        for path in _chunk_files(Path(src)):
            a = load_chunk(path, spec)
            dst = out / "chunks" / path.name
            if dst.resolve() == path.resolve():
                continue
            if dst.exists():
                b = load_chunk(dst, spec)
                if set(a) != set(b) or any(not np.array_equal(a[k], b[k]) for k in a):
                    raise DataFormatError(f"{path}: differs from {dst} (same chunk, different contents)")
                continue
            _save_chunk(dst, str(a["split"]), int(a["chunk"]) if "chunk" in a else 0, a["image_index"], a["label"],
                        a["psnr"], a["steps"],
                        [a[f"{kind}_{i + 1}"] for i in range(spec.num_layers) for kind in ("weight", "bias")])
    rows = write_index(out, spec)
    return summarize(out, rows)


# --- NFN SIREN format ------------------------------------------------------------------------

def nfn_keys(depth: int = 2) -> list[str]:
    """State-dict keys of the NFN SIREN, in order: ``net.{i}.linear.weight/bias`` (sine layers), ``net.{depth}.weight/bias``."""
    keys = []
    for i in range(depth):
        keys += [f"net.{i}.linear.weight", f"net.{i}.linear.bias"]
    return keys + [f"net.{depth}.weight", f"net.{depth}.bias"]


def nfn_state_dict(features: WeightSpaceFeatures, index: int) -> "OrderedDict[str, Tensor]":
    """NFN state dict of net ``index`` (channel 0): fresh contiguous tensors (``torch.save`` of a view would save the whole batch)."""
    keys = nfn_keys(features.spec.num_layers - 1)
    sd: OrderedDict[str, Tensor] = OrderedDict()
    for i, (w, b) in enumerate(features):
        sd[keys[2 * i]] = w[index, 0].detach().clone().contiguous()
        sd[keys[2 * i + 1]] = b[index, 0].detach().clone().contiguous()
    return sd


def read_nfn_file(path: str | Path, spec: WeightSpaceSpec | None = None, depth: int = 2) -> list[Tensor]:
    """Read one NFN SIREN ``.pth`` (``torch.load(weights_only=True)``) -> ``[W1, b1, ..., WL, bL]`` float32.

    Checks the keys and, given ``spec``, the shapes (without: a consistent SIREN with 2 inputs);
    every problem raises :class:`DataFormatError` naming the file.
    """
    path = Path(path)
    sd = load_torch(path)
    if not isinstance(sd, dict):
        raise DataFormatError(f"{path}: expected a state dict, got {type(sd).__name__}")
    keys = nfn_keys(spec.num_layers - 1 if spec is not None else depth)
    missing = [k for k in keys if k not in sd]
    extra = [k for k in sd if k not in keys]
    if missing or extra:
        raise DataFormatError(f"{path}: not an NFN SIREN state dict: missing keys {missing}, unexpected keys {extra}")
    out = []
    for k in keys:
        t = sd[k]
        if not isinstance(t, Tensor):
            raise DataFormatError(f"{path}: {k} is a {type(t).__name__}, expected a tensor")
        if not t.is_floating_point():
            raise DataFormatError(f"{path}: {k} has dtype {t.dtype}, expected floating point")
        out.append(t.detach().to(torch.float32).contiguous())
    if spec is not None:
        expected = _flat_shapes(spec)
    else:
        L = len(keys) // 2
        widths = [2] + [int(out[2 * i].shape[0]) if out[2 * i].dim() == 2 else -1 for i in range(L)]
        expected = []
        for i in range(L):
            expected += [(widths[i + 1], widths[i]), (widths[i + 1],)]
    for k, t, shp in zip(keys, out, expected):
        if tuple(t.shape) != tuple(shp):
            raise DataFormatError(f"{path}: {k} has shape {tuple(t.shape)}, expected {tuple(shp)}")
    for k, t in zip(keys, out):
        if not torch.isfinite(t).all():
            raise DataFormatError(f"{path}: {k} has NaN/Inf values")
    return out


_NFN_DIR_RE_T = r"^{prefix}_(\d+)s$"
_NFN_FILE_RE = re.compile(r"^net(\d+)\.pth$")
EXPORT_META = "mnfn-export.json"


def _guess_dataset(src: Path) -> str | None:
    # The folder's own name and its parent's (e.g. .../mnist-inrs or .../fashion/sirens), as NFN's loader guesses.
    r = src.resolve()
    name = f"{r.parent.name}/{r.name}".lower()
    if "fashion" in name:
        return "fashion-mnist"
    if "mnist" in name:
        return "mnist"
    if "cifar" in name:
        return "cifar10"
    return None


@locks_output("out", "mnfn inr import-nfn")
def import_nfn(src: str | Path, out: str | Path, *, dataset: str | None = None, prefix: str = NFN_PREFIX,
               train_size: int | None = None, image_shape: Sequence[int] | None = None, batch_size: int = 64,
               compute_psnr: bool = False, data_root: str | Path | None = None,
               progress: bool = True) -> MakeSummary:
    """Read an NFN SIREN set (``SRC/<prefix>_<label>s/net<idx>.pth``) into an INR set folder ``out``.

    ``idx`` runs over train then test images of ``dataset``: ``idx < train_size`` is train image
    ``idx``, else test image ``idx - train_size``. The dataset, train size and image shape come from
    an ``mnfn-export.json`` beside the class folders when present, else from the arguments, else
    from the folder name (``mnist``, ``fashion``, ``cifar`` as NFN's own loader guesses).
    ``compute_psnr`` renders every net against its image (needs the images); else PSNR is NaN.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DataFormatError(f"{src}: not a folder")
    exp = read_json(src / EXPORT_META) if (src / EXPORT_META).exists() else {}
    if not isinstance(exp, dict):
        raise DataFormatError(f"{src / EXPORT_META}: must hold a JSON object, got {type(exp).__name__}")
    dataset = dataset or exp.get("dataset") or _guess_dataset(src)
    if dataset is None:
        raise ValueError(f"{src}: cannot tell which image set the nets were fitted to; pass --dataset "
                         f"({', '.join(INR_DATASETS)})")
    if dataset not in INR_DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(INR_DATASETS)}")
    sizes = dict(exp.get("split_sizes") or KNOWN_SPLIT_SIZES.get(dataset, {}))
    if train_size is not None:
        sizes["train"] = int(train_size)
    if "train" not in sizes:
        raise ValueError(f"unknown train size of {dataset!r}; pass train_size")
    dir_re = re.compile(_NFN_DIR_RE_T.format(prefix=re.escape(prefix)))
    files: dict[int, tuple[int, Path]] = {}
    for d in sorted(p for p in src.iterdir() if p.is_dir()):
        m = dir_re.match(d.name)
        if not m:
            continue  # e.g. randinit_smaller_aug0_3s: another realisation, imported with prefix=...
        label = int(m.group(1))
        for f in d.iterdir():
            fm = _NFN_FILE_RE.match(f.name)
            if not fm:
                continue
            idx = int(fm.group(1))
            if idx in files:
                raise DataFormatError(f"{f}: net index {idx} also in {files[idx][1]}")
            files[idx] = (label, f)
    if not files:
        raise DataFormatError(f"{src}: no {prefix}_<label>s/net<idx>.pth files")
    ordered = sorted(files)
    # The first file fixes the architecture; every other file must match it.
    first = read_nfn_file(files[ordered[0]][1])
    channels, hidden, depth = int(first[-2].shape[0]), int(first[0].shape[0]), len(first) // 2 - 1
    ref_spec = siren_spec(channels, hidden=hidden, depth=depth, w0=float(exp.get("w0", 30.0)))
    native = {"digits": (8, 8), "cifar10": (32, 32)}.get(dataset, (28, 28))
    shape = tuple(image_shape or exp.get("image_shape") or (channels, *native))
    if len(shape) == 2:
        shape = (channels, *shape)
    if shape[0] != channels:
        raise ValueError(f"{files[ordered[0]][1]}: nets output {channels} channels, image shape {shape} has {shape[0]}")
    from .images import CLASSES

    items = []
    for idx in ordered:
        split, ii = ("train", idx) if idx < sizes["train"] else ("test", idx - sizes["train"])
        items.append((split, ii, files[idx][0], files[idx][1]))
    if (out / "meta.json").exists():
        raise ValueError(f"{out}: already holds an INR set; import into a new folder")
    meta = {
        "format": FORMAT, "version": FORMAT_VERSION, "origin": "nfn-import", "source": str(src), "prefix": prefix,
        "dataset": dataset, "classes": list(CLASSES.get(dataset, [str(i) for i in range(10)])),
        "num_classes": len(CLASSES.get(dataset, range(10))), "image_shape": list(shape),
        "native_shape": [channels, *native], "resize": exp.get("resize"),
        "siren": {"hidden": hidden, "depth": depth, "w0": ref_spec.layers[0].act_param},
        "split_sizes": sizes, "plan": None, "fit": exp.get("fit"), "chunks_expected": None,
        "conventions": CONVENTIONS,
    }
    sets = {}
    if compute_psnr:
        for s in SPLITS:
            if any(it[0] == s for it in items):
                sets[s] = _load_split(dataset, s, data_root)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), unit="net", desc="importing NFN SIRENs", dynamic_ncols=True)
    try:
        for s in SPLITS:
            sub = [it for it in items if it[0] == s]
            for k, lo in enumerate(range(0, len(sub), batch_size)):
                part = sub[lo:lo + batch_size]
                per = [read_nfn_file(p, ref_spec) for _, _, _, p in part]
                params = [torch.stack([q[j] for q in per]) for j in range(len(per[0]))]
                idx = np.array([it[1] for it in part], dtype=np.int64)
                labels = np.array([it[2] for it in part], dtype=np.int64)
                ps = np.full(len(part), np.nan, dtype=np.float32)
                if compute_psnr:
                    feats = _params_to_features(params, ref_spec)
                    imgs = torch.from_numpy(_resize(np.ascontiguousarray(sets[s].images[idx]),
                                                    tuple(shape[1:]) if meta["resize"] else None))
                    if tuple(imgs.shape[1:]) != shape:
                        raise ValueError(f"images of {dataset} have shape {tuple(imgs.shape[1:])}, nets draw {shape}")
                    ps = psnr(render(feats, shape, clamp=False), imgs).numpy().astype(np.float32)
                _save_chunk(out / "chunks" / chunk_name(s, k), s, k, idx, labels, ps, np.full(len(part), -1),
                            [p.numpy() for p in params])
                if bar is not None:
                    bar.update(len(part))
    finally:
        if bar is not None:
            bar.close()
    write_json(out / "meta.json", meta)
    rows = write_index(out, ref_spec)
    return summarize(out, rows)


@locks_output("dst", "mnfn inr export-nfn")
def export_nfn(root: str | Path, dst: str | Path, *, prefix: str = NFN_PREFIX, renumber: bool = False,
               progress: bool = True, overwrite: bool = False) -> int:
    """Write an INR set as NFN SIRENs: ``DST/<prefix>_<label>s/net<idx>.pth`` (+ ``mnfn-export.json``).

    ``idx`` = train image index, or ``train_size`` + test image index (NFN's train + test order);
    with ``renumber`` the nets are numbered ``0..n-1`` in index order instead (NFN's loader asserts
    contiguous indices, which a subset does not have). Returns the number of files written.
    ``dst`` may hold an earlier export (it has ``mnfn-export.json``); anything else, e.g. an NFN set
    downloaded there, needs ``overwrite``.
    """
    root, dst = Path(root), Path(dst)
    refuse_overwrite(dst, lambda d: (d / EXPORT_META).is_file(), "an export made by `mnfn inr export-nfn`", overwrite)
    meta = read_meta(root)
    spec = _meta_spec(meta)
    rows = read_index(root)
    train_size = int(meta.get("split_sizes", {}).get("train", -1))
    if not renumber and any(r["split"] == "test" for r in rows) and train_size < 0:
        raise ValueError(f"{root / 'meta.json'}: train size unknown; export with renumber=True")
    by_chunk: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_chunk.setdefault(r["chunk"], []).append(r)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(rows), unit="net", desc="exporting NFN SIRENs", dynamic_ncols=True)
    n = 0
    try:
        for chunk, rs in by_chunk.items():
            path = root / "chunks" / chunk
            a = load_chunk(path, spec)
            params = [torch.from_numpy(a[f"{kind}_{i + 1}"]) for i in range(spec.num_layers)
                      for kind in ("weight", "bias")]
            feats = _params_to_features(params, spec)
            for r in rs:
                _check_row(path, a, r)
                idx = r["row"] if renumber else r["image_index"] + (train_size if r["split"] == "test" else 0)
                save_torch(dst / f"{prefix}_{r['label']}s" / f"net{idx}.pth", nfn_state_dict(feats, r["pos"]))
                n += 1
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    write_json(dst / EXPORT_META, {
        "exported_from": str(root), "dataset": meta["dataset"], "split_sizes": meta.get("split_sizes"),
        "image_shape": meta["image_shape"], "resize": meta.get("resize"), "w0": meta["siren"]["w0"],
        "fit": meta.get("fit"), "renumbered": renumber, "prefix": prefix, "conventions": CONVENTIONS,
    })
    return n


def _check_row(path: Path, arrs: dict[str, np.ndarray], r: dict[str, Any]) -> None:
    pos = r["pos"]
    n = arrs["image_index"].shape[0]
    if not 0 <= pos < n or int(arrs["image_index"][pos]) != r["image_index"] or int(arrs["label"][pos]) != r["label"] \
            or str(arrs["split"]) != r["split"]:
        raise DataFormatError(f"{path}: position {pos} does not hold {r['split']} image {r['image_index']} "
                              f"(label {r['label']}) as index.csv says; rebuild the index with `mnfn inr merge`")


# --- dataset ---------------------------------------------------------------------------------

class InrDataset(torch.utils.data.Dataset):
    """SIRENs of an INR set folder as weight-space features, with labels and (on request) the images.

    ``split``: ``train``, ``val``, ``test`` or ``all``. ``val_size`` (a count, or a fraction < 1) moves
    the *last* train items (by image index, like NFN's 45000/5000 split; ``val_from="start"``: the
    first) from ``train`` into ``val``.
    ``split_points=(a, b)`` instead splits by the NFN net index ``g`` (train images first, then test
    images: ``g = image_index (+ train size for test images)``): train ``g < a``, val ``a <= g < b``,
    test ``g >= b``; NFN's experiments use ``(45000, 50000)``.
    All weights of the split are loaded into memory (float32: about 4.7 kB per grayscale net).

    ``ds[i]`` -> ``(features, label)`` or ``(features, label, image)`` with ``features`` a
    :class:`WeightSpaceFeatures` of batch 1, ``C = 1``; ``ds.batch(indices)`` builds a whole batch at
    once (use it, or :meth:`collate` as a DataLoader ``collate_fn``). Images are ``(C, H, W)`` float32
    in ``[0, 1]``, resized as they were for fitting.
    """

    def __init__(self, root: str | Path, split: str = "train", *, with_images: bool = False,
                 val_size: int | float = 0, split_points: tuple[int, int] | None = None,
                 data_root: str | Path | None = None, dtype: torch.dtype = torch.float32,
                 val_from: str = "end") -> None:
        if split not in ("train", "val", "test", "all"):
            raise ValueError(f"split must be train, val, test or all, got {split!r}")
        if val_from not in ("start", "end"):
            raise ValueError(f"val_from must be 'start' or 'end', got {val_from!r}")
        self.val_from = val_from
        self.root = Path(root)
        self.meta = read_meta(self.root)
        self.spec: WeightSpaceSpec = _meta_spec(self.meta)
        self.split = split
        self.with_images = with_images
        self.data_root = data_root
        rows = self._select(read_index(self.root), split, val_size, split_points)
        self.rows = rows
        L = self.spec.num_layers
        ws: list[list[np.ndarray]] = [[] for _ in range(L)]
        bs: list[list[np.ndarray]] = [[] for _ in range(L)]
        by_chunk: dict[str, list[int]] = {}
        for j, r in enumerate(rows):
            by_chunk.setdefault(r["chunk"], []).append(j)
        order = []
        for chunk, js in by_chunk.items():
            path = self.root / "chunks" / chunk
            a = load_chunk(path, self.spec)
            for j in js:
                _check_row(path, a, rows[j])
            pos = np.array([rows[j]["pos"] for j in js])
            for i in range(L):
                ws[i].append(a[f"weight_{i + 1}"][pos])
                bs[i].append(a[f"bias_{i + 1}"][pos])
            order += js
        inv = np.argsort(np.array(order, dtype=np.int64)) if order else np.zeros(0, dtype=np.int64)

        def stack(parts: list[np.ndarray], shape: tuple[int, ...]) -> Tensor:
            arr = np.concatenate(parts) if parts else np.zeros((0, *shape), np.float32)
            return torch.from_numpy(arr[inv]).to(dtype).unsqueeze(1)

        self._features = WeightSpaceFeatures(
            tuple(stack(ws[i], self.spec.layers[i].weight_shape) for i in range(L)),
            tuple(stack(bs[i], (self.spec.layers[i].n_out,)) for i in range(L)), self.spec)
        self.labels = torch.tensor([r["label"] for r in rows], dtype=torch.int64)
        self.psnr = torch.tensor([r["psnr"] for r in rows], dtype=torch.float32)
        self.steps = torch.tensor([r["steps"] for r in rows], dtype=torch.int64)
        self.image_index = torch.tensor([r["image_index"] for r in rows], dtype=torch.int64)
        self.splits = [r["split"] for r in rows]
        self._images: Tensor | None = None

    def _select(self, rows: list[dict[str, Any]], split: str, val_size: int | float,
                split_points: tuple[int, int] | None) -> list[dict[str, Any]]:
        if split_points is not None:
            if val_size:
                raise ValueError("give val_size or split_points, not both")
            a, b = (int(v) for v in split_points)
            n_train = int(self.meta.get("split_sizes", {}).get("train", -1))
            if n_train < 0 and any(r["split"] == "test" for r in rows):
                raise ValueError(f"{self.root / 'meta.json'}: train size unknown, cannot use split_points")
            lo, hi = {"train": (0, a), "val": (a, b), "test": (b, None), "all": (0, None)}[split]

            def g(r: dict[str, Any]) -> int:
                return r["image_index"] + (n_train if r["split"] == "test" else 0)

            return [r for r in rows if g(r) >= lo and (hi is None or g(r) < hi)]
        train_rows = [r for r in rows if r["split"] == "train"]
        n_val = int(round(val_size * len(train_rows))) if isinstance(val_size, float) and val_size < 1 else int(val_size)
        if n_val < 0 or n_val > len(train_rows):
            raise ValueError(f"val_size {val_size} does not fit {len(train_rows)} train items")
        # val_from="end": the last train items validate (NFN's 45000/5000); "start": the first ones,
        # so a set still being fitted in image order has its validation nets from the beginning
        if self.val_from == "end":
            train_part, val_part = train_rows[:len(train_rows) - n_val], train_rows[len(train_rows) - n_val:]
        else:
            train_part, val_part = train_rows[n_val:], train_rows[:n_val]
        if split == "train":
            return train_part
        if split == "val":
            if n_val == 0:
                raise ValueError("split 'val' needs val_size > 0 (or split_points)")
            return val_part
        if split == "test":
            return [r for r in rows if r["split"] == "test"]
        return rows

    # -- facts ---------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return int(self.meta.get("num_classes", len(self.meta["classes"])))

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.meta["classes"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.meta["image_shape"])  # type: ignore[return-value]

    @property
    def features(self) -> WeightSpaceFeatures:
        """All nets of the split: per layer ``W (N, 1, out, in)``, ``b (N, 1, out)``."""
        return self._features

    def __len__(self) -> int:
        return len(self.rows)

    # -- images --------------------------------------------------------------------------------
    @property
    def images(self) -> Tensor:
        """Original images of the split ``(N, C, H, W)`` in ``[0, 1]`` (loaded on first use)."""
        if self._images is None:
            native = tuple(self.meta.get("native_shape") or self.image_shape)
            out = torch.zeros(len(self), *self.image_shape)
            for s in SPLITS:
                sel = [j for j, sp in enumerate(self.splits) if sp == s]
                if not sel:
                    continue
                idx = self.image_index[sel].numpy()
                imgs = _load_split(self.meta["dataset"], s, self.data_root, limit=int(idx.max()) + 1).images
                if tuple(imgs.shape[1:]) != native:
                    raise DataFormatError(f"{self.root / 'meta.json'}: nets were fitted to {native} images, "
                                          f"{self.meta['dataset']} {s} images have shape {tuple(imgs.shape[1:])}")
                resize = self.meta.get("resize")
                out[sel] = torch.from_numpy(_resize(np.ascontiguousarray(imgs[idx]), tuple(resize) if resize else None))
            self._images = out
        return self._images

    # -- access --------------------------------------------------------------------------------
    def __getitem__(self, i: int) -> tuple:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        i = i % len(self)
        feats = self._features[i]
        if self.with_images:
            return feats, int(self.labels[i]), self.images[i]
        return feats, int(self.labels[i])

    def batch(self, indices: Sequence[int] | Tensor, with_images: bool | None = None) -> tuple:
        """``(features (B, 1, ...), labels (B,))``, plus images ``(B, C, H, W)`` when asked (default: ``with_images``)."""
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        feats = self._features.map(lambda t: t[idx])
        if self.with_images if with_images is None else with_images:
            return feats, self.labels[idx], self.images[idx]
        return feats, self.labels[idx]

    @staticmethod
    def collate(items: Sequence[tuple]) -> tuple:
        """DataLoader ``collate_fn`` for items of ``ds[i]``."""
        feats = WeightSpaceFeatures.collate([it[0] for it in items])
        labels = torch.tensor([it[1] for it in items], dtype=torch.int64)
        if len(items[0]) == 3:
            return feats, labels, torch.stack([it[2] for it in items])
        return feats, labels

    def render(self, indices: Sequence[int] | Tensor | None = None, clamp: bool = True) -> Tensor:
        """Images drawn by the nets ``indices`` (all by default), ``(B, C, H, W)`` in ``[0, 1]``."""
        feats = self._features if indices is None else self.batch(indices, with_images=False)[0]
        return render(feats, self.image_shape, clamp=clamp)
