"""Batched SIREN fitting: the settings (:class:`FitConfig`), the named recipes (:data:`RECIPES`) and
:func:`fit_sirens`.

Fitting (:func:`fit_sirens`): all nets of a batch run at once with batched matrix products
(``baddbmm``/``bmm``) and hand-written gradients; every net has its own loss (the batch minimises
the *sum* of per-net mean squared errors, so nets never interact) and its own Adam moments. A net
stops, and its weights are frozen and taken out of the batch, as soon as its PSNR reaches the
target, or after ``max_steps`` updates.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ...jobs import torch_threads
from ...weightspace import WeightSpaceFeatures, WeightSpaceSpec, siren_spec
from .siren import INIT_SCHEMES, _flat_shapes, _params_to_features, images_to_targets, init_sirens, make_coords

__all__ = [
    "FitConfig",
    "FitResult",
    "RECIPES",
    "DEFAULT_RECIPE",
    "recipe",
    "recipe_name",
    "fit_sirens",
]


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
               num_threads: int | None = 1, device: str | torch.device = "cpu") -> FitResult:
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

    ``device`` (default ``"cpu"``) runs the fit there, e.g. ``"cuda"`` with a large ``batch_size``;
    the initialisation is drawn on the CPU either way, and the results come back to the CPU. A GPU
    rounds differently, so its weights equal a CPU fit's only to float32 precision, not bit for bit.
    """
    device = torch.device(device)
    x = torch.as_tensor(images, dtype=torch.float32).to(device)
    if x.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(x.shape)}")
    if len(seeds) != x.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {len(seeds)} seeds")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n, c, h, w = x.shape
    spec = config.spec(c)
    coords = make_coords(h, w).to(device)
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
    params = [torch.cat([p[0][k] for p in parts]).cpu() for k in range(2 * spec.num_layers)]
    res = FitResult(_params_to_features(params, spec), torch.cat([p[1] for p in parts]).cpu(),
                    torch.cat([p[2] for p in parts]).cpu(), time.perf_counter() - t0, config.target_psnr)
    return res


def _fit_batch(images: Tensor, seeds: list[int], spec: WeightSpaceSpec, coords: Tensor, cfg: FitConfig,
               progress: Callable[[int], None] | None) -> tuple[list[Tensor], Tensor, Tensor]:
    n = images.shape[0]
    target = images_to_targets(images)
    dev = images.device
    params = [p.to(dev) for p in init_sirens(seeds, spec, cfg.init)]  # drawn on the CPU: same init anywhere
    final = [p.clone() for p in params]
    psnr_out = torch.full((n,), float("nan"), dtype=torch.float32, device=dev)
    steps_out = torch.zeros(n, dtype=torch.int64, device=dev)
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    active = torch.arange(n, device=dev)
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
