"""The autograd functions the grouped equivariant layer runs (:mod:`mnfn.layers.equivariant`).

Each computes what a plain composition of torch ops would, with a backward (or an in-place
forward) that makes fewer full-size passes over the ``(B, F, *hidden)`` tensors: on a CPU these
passes, not the arithmetic, are what the permutation layers (HNP, NP) spend most of their
non-GEMM time on. ``tests/test_compile.py`` checks values and gradients against the literal
per-term einsums in float64, and the float32 CPU products (1x1 convolutions, below) against
batched GEMMs.

Opt-in mixed precision (``MNFN_PRODUCT_PRECISION=bfloat16`` or :func:`set_product_precision`): the
large products of float32 layers take bfloat16 operands (each product still accumulates in float32
inside MKL / oneDNN / cuBLAS) and everything else, activations, pooling, sums, the optimiser, stays
float32. It changes the numbers (relative error of a model's output about 3e-3 measured), so it is off by default; float64
tensors never take it, so the exact float64 equivariance tests are unaffected.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from ..jobs import allocator_keeps_memory

__all__ = ["SharedMatmul", "AccumulateMatmul", "RowColSums", "OuterAdd", "NormalizedMean", "max_scaled",
           "conv_products_help", "product_precision", "set_product_precision", "products_in", "PRODUCT_PRECISIONS"]


#: Below this many matched hidden entries the weight gradient is one GEMM over (batch x hidden)
#: instead of per-net products summed over the batch (measured on a 2-core AVX2 CPU: 2.6x faster for
#: HNP's (304 x 304, H = 16) block; slower for H = 256, where each net's product is large enough).
_SMALL_HIDDEN = 64

#: float32 products on the CPU may run as 1x1 convolutions (oneDNN) rather than batched GEMMs (MKL):
#: the same sums, as one large product over batch x hidden. Which is faster depends on the CPU. On
#: an AMD EPYC Zen 5 (family 26: full-width AVX-512), where MKL keeps to AVX2 and oneDNN does not,
#: the forward plus both gradients of a block ran 1.2-2.1x faster for blocks of at least
#: ``_CONV_MIN_MACS`` multiply-adds per net and 16 input features (the zoo CNN's hidden weights), and
#: up to 2x slower for smaller ones (32 x 32 blocks over a SIREN layer's 32 neurons), which keep the
#: GEMMs. On an Intel Xeon (AVX-512 and AMX), where MKL uses AVX-512, whole zoo train steps were
#: 1.2-1.5x *slower* as convolutions, and on an AMD EPYC Zen 4 (family 25, whose AVX-512 runs on
#: 256-bit units) 1.1x slower (``benchmarks/bench_products.py``). So ``MNFN_CONV_PRODUCTS`` (read at
#: import) is ``auto`` by default: convolutions only on an AMD CPU of family 26 or later with
#: AVX-512 (:func:`conv_products_help`); ``1`` forces them, ``0`` keeps the GEMMs everywhere. Either
#: way only where the allocator keeps freed memory (:func:`mnfn.jobs.tune_malloc`, which every
#: ``mnfn`` command applies): otherwise oneDNN's buffers are page-faulted in on every call and the
#: convolutions ran 2x *slower* than the GEMMs. float64 and CUDA tensors always take the GEMMs. The
#: choice is fixed per machine (no timing), so a seeded run repeats its numbers.
CONV_PRODUCTS = os.environ.get("MNFN_CONV_PRODUCTS", "auto").strip().lower()
if CONV_PRODUCTS not in ("auto", "0", "1"):
    raise ValueError(f"MNFN_CONV_PRODUCTS must be auto, 0 or 1, got {CONV_PRODUCTS!r}")
_CONV_MIN_K = 16
_CONV_MIN_MACS = 300_000
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _cpu_info() -> tuple[str, int, set[str]]:
    """The CPU's vendor id, family and feature flags, from ``/proc/cpuinfo`` (empty, -1 and empty
    where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            head = f.read(1 << 16)
    except OSError:
        return "", -1, set()
    vendor, family, flags = "", -1, set()
    for line in head.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "cpu family" and family < 0:
            family = int(value) if value.strip().isdigit() else -1
        elif key == "flags" and not flags:
            flags = set(value.split())
    return vendor, family, flags


#: The first AMD family whose AVX-512 runs on full-width units (Zen 5); Zen 4 (family 25) splits
#: each 512-bit operation in two, and there the GEMMs were faster.
_AMD_FULL_AVX512_FAMILY = 26
_CONV_HELPS: bool | None = None


def conv_products_help() -> bool:
    """Whether this machine's float32 CPU products take the 1x1 convolutions: ``MNFN_CONV_PRODUCTS``
    ``1`` / ``0``, or for ``auto`` an AMD CPU of family 26 or later (Zen 5) with AVX-512, where MKL's
    GEMMs keep to AVX2 while oneDNN's convolutions use full-width AVX-512 (measurements in the
    comment above)."""
    global _CONV_HELPS
    if CONV_PRODUCTS != "auto":
        return CONV_PRODUCTS == "1"
    if _CONV_HELPS is None:
        vendor, family, flags = _cpu_info()
        _CONV_HELPS = vendor == "AuthenticAMD" and family >= _AMD_FULL_AVX512_FAMILY and "avx512f" in flags
    return _CONV_HELPS


#: Operand precision of the float32 layers' large products: ``float32`` or ``bfloat16`` (mixed
#: precision: bfloat16 operands, float32 accumulation and results). bfloat16 runs the products 2-3x
#: faster where the CPU has bfloat16 dot-product instructions (AVX512_BF16 on AMD Zen 4 / 5, AMX
#: on Intel Xeon) and on GPUs, and halves the memory they read; ``benchmarks/bench_products.py``
#: measures it. Read at import from ``MNFN_PRODUCT_PRECISION``; any other value is refused.
_PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}
PRODUCT_PRECISIONS = tuple(_PRECISIONS)
_PRODUCT_PRECISION = os.environ.get("MNFN_PRODUCT_PRECISION", "float32").strip().lower()
if _PRODUCT_PRECISION not in _PRECISIONS:
    raise ValueError(f"MNFN_PRODUCT_PRECISION must be one of {sorted(_PRECISIONS)}, got {_PRODUCT_PRECISION!r}")


def product_precision() -> str:
    """The operand precision of float32 layers' large products: ``"float32"`` or ``"bfloat16"``."""
    return _PRODUCT_PRECISION


def set_product_precision(name: str) -> str:
    """Set the operand precision of float32 layers' large products (``"float32"`` or
    ``"bfloat16"``) for this process; returns the previous setting. Applies to the products that
    run from then on, forward and backward."""
    global _PRODUCT_PRECISION
    if name not in _PRECISIONS:
        raise ValueError(f"product precision must be one of {sorted(_PRECISIONS)}, got {name!r}")
    prev, _PRODUCT_PRECISION = _PRODUCT_PRECISION, name
    return prev


@contextmanager
def products_in(name: str) -> Iterator[None]:
    """Run the enclosed code with :func:`set_product_precision` ``(name)``, restoring the previous
    setting afterwards."""
    prev = set_product_precision(name)
    try:
        yield
    finally:
        set_product_precision(prev)


#: Products with fewer multiply-adds per net stay float32 in the bfloat16 mode: casting their operands
#: costs about what the faster product saves (measured on an AMD EPYC Zen 4: ``(160 x 160) @ (160 x 16)``
#: per net, HNP's and NP's small blocks, was no faster in bfloat16).
_LOW_MIN_MACS = 1_000_000


def _low_dtype(x: Tensor, w: Tensor) -> torch.dtype | None:
    """The dtype a float32 product ``w @ x[b]``'s operands are cast to (``None``: keep float32)."""
    if x.dtype != torch.float32 or _PRODUCT_PRECISION == "float32" or w.shape[0] * w.shape[1] * x.shape[2] < _LOW_MIN_MACS:
        return None
    return _PRECISIONS[_PRODUCT_PRECISION]


def _use_conv(x: Tensor, w: Tensor) -> bool:
    f_out, k = w.shape
    return (conv_products_help() and k >= _CONV_MIN_K and f_out * k * x.shape[2] >= _CONV_MIN_MACS
            and x.dtype == torch.float32 and x.device.type == "cpu" and torch.backends.mkldnn.is_available()
            and allocator_keeps_memory())


def _conv_product(w: Tensor, x: Tensor, bias: Tensor | None, hidden: tuple[int, ...]) -> Tensor:
    """``w @ x[b] + bias`` for ``x (B, F_in, H)`` as a 1x1 convolution, returned as a fresh
    ``(B, F_out, *hidden)`` tensor (``prod(hidden) = H``)."""
    if len(hidden) not in _CONV:
        hidden = (math.prod(hidden),)
    nd = len(hidden)
    xs = x.reshape(x.shape[0], x.shape[1], *hidden)
    y = _CONV[nd](xs, w.reshape(*w.shape, *([1] * nd)), bias)
    return y if y.is_contiguous() else y.contiguous()


def _conv_grads(w: Tensor, x: Tensor, g: Tensor, need_x: bool, need_w: bool) -> tuple[Tensor | None, Tensor | None]:
    """Input and weight gradients of :func:`_conv_product` for ``g (B, F_out, H)``, one oneDNN call
    each (asking for both in one call measured slower)."""
    w3 = w.unsqueeze(-1)
    gx = gw = None
    if need_x:
        gx = torch.ops.aten.convolution_backward(g, x, w3, None, [1], [0], [1], False, [0], 1,
                                                 [True, False, False])[0]
    if need_w:
        gw = torch.ops.aten.convolution_backward(g, x, w3, None, [1], [0], [1], False, [0], 1,
                                                 [False, True, False])[1].squeeze(-1)
    return gx, gw


def _product(w: Tensor, x: Tensor, conv: bool) -> Tensor:
    """``w @ x[b]`` for ``x (B, F_in, H)`` as a fresh ``(B, F_out, H)`` tensor of their dtype (a 1x1
    convolution or a batched GEMM)."""
    if conv:
        return _conv_product(w, x, None, (x.shape[2],))
    return torch.bmm(w.expand(x.shape[0], *w.shape), x)


def _low_shared_matmul(ctx, w: Tensor, x: Tensor, bias: Tensor | None, shape: tuple[int, ...] | None,
                       low: torch.dtype) -> Tensor:
    """:class:`SharedMatmul`'s forward with ``low``-precision operands (saved as such for the
    backward) and a float32 result, the bias added in float32."""
    wl, xl = w.to(low), x.to(low)
    ctx.save_for_backward(wl, xl)
    p = _product(wl, xl, ctx.conv)
    y = x.new_empty(shape if shape is not None else p.shape)
    flat = y.view(p.shape)
    if bias is not None:
        torch.add(p, bias.unsqueeze(-1), out=flat)
    else:
        flat.copy_(p)
    return y


class SharedMatmul(torch.autograd.Function):
    """``y[b] = w @ x[b] + bias`` for a weight shared by the batch, with a backward that computes
    ``dw = sum_b dy[b] x[b]^T`` as one GEMM when the hidden size is small (autograd's own backward of
    ``baddbmm(w.expand(B))`` makes ``B`` products with ``K = H`` and a ``(B, F_out, F_in)`` temporary)."""

    @staticmethod
    def forward(ctx, w: Tensor, x: Tensor, bias: Tensor | None,  # type: ignore[override]
                shape: tuple[int, ...] | None = None) -> Tensor:
        """``shape``: return ``y`` as this ``(B, F_out, *H)`` tensor (a base, not a view of the
        product, so an activation may overwrite it in place)."""
        ctx.conv = _use_conv(x, w)
        ctx.has_bias = bias is not None
        low = _low_dtype(x, w)
        if ctx.conv:
            # contiguous (a permuted input would make the convolution, and so every layer after
            # it, channels-last: 6x slower ReLU backward on mismatched strides)
            x = x.contiguous()
        if low is not None:
            return _low_shared_matmul(ctx, w, x, bias, shape, low)
        ctx.save_for_backward(w, x)
        if ctx.conv:
            return _conv_product(w, x, bias, tuple(shape[2:]) if shape is not None else (x.shape[2],))
        wb = w.expand(x.shape[0], *w.shape)
        if shape is None:
            return torch.baddbmm(bias.unsqueeze(-1), wb, x) if bias is not None else torch.bmm(wb, x)
        y = x.new_empty(shape)
        flat = y.view(x.shape[0], w.shape[0], x.shape[2])
        if bias is not None:
            torch.baddbmm(bias.unsqueeze(-1), wb, x, out=flat)
        else:
            torch.bmm(wb, x, out=flat)
        return y

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        return (*_shared_matmul_grads(ctx, g.reshape(g.shape[0], g.shape[1], -1)), None)


def _shared_matmul_grads(ctx, g: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    w, x = ctx.saved_tensors
    B, f_out, h = g.shape
    gw = gx = gb = None
    if ctx.has_bias and ctx.needs_input_grad[2]:
        gb = g.sum(dim=(0, 2))
    low = w.dtype != g.dtype  # mixed precision: the saved operands are low precision, the results float32
    if low:
        g = g.to(w.dtype)
    if ctx.conv:
        gx, gw = _conv_grads(w, x, g, ctx.needs_input_grad[1], ctx.needs_input_grad[0])
    else:
        if ctx.needs_input_grad[1]:
            gx = torch.bmm(w.t().expand(B, *w.t().shape), g)
        if ctx.needs_input_grad[0]:
            if h <= _SMALL_HIDDEN:
                gw = torch.mm(g.transpose(0, 1).reshape(f_out, B * h), x.transpose(0, 1).reshape(-1, B * h).t())
            else:
                # a permuted x (the first layer reads the input through a view) makes this product
                # 2.5x slower than a contiguous copy of it (measured: (144 x 256) @ (256 x 9) per net)
                gw = torch.bmm(g, x.contiguous().transpose(1, 2)).sum(0, dtype=torch.float32 if low else None)
    if low:
        gx = gx.float() if gx is not None else None
        gw = gw.float() if gw is not None else None
    return gw, gx, gb


class AccumulateMatmul(torch.autograd.Function):
    """``acc[b] += w @ x[b]`` in place (``acc`` a fresh ``(B, F_out, *H)`` tensor, ``x`` ``(B, F_in, prod H)``)
    for a weight shared by the batch; the gradient of ``acc`` passes through unchanged."""

    @staticmethod
    def forward(ctx, w: Tensor, x: Tensor, acc: Tensor) -> Tensor:  # type: ignore[override]
        ctx.conv = _use_conv(x, w)
        if ctx.conv:
            x = x.contiguous()
        ctx.has_bias = False
        flat = acc.view(x.shape[0], w.shape[0], x.shape[2])
        low = _low_dtype(x, w)
        if low is not None:  # mixed precision: low-precision operands, saved as such for the backward
            w, x = w.to(low), x.to(low)
        ctx.save_for_backward(w, x)
        if low is not None or ctx.conv:
            flat.add_(_product(w, x, ctx.conv))
        else:
            # the out= form of baddbmm (not baddbmm_): the same in-place product, and FLOP counters see it
            torch.baddbmm(flat, w.expand(x.shape[0], *w.shape), x, out=flat)
        ctx.mark_dirty(acc)
        return acc

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        gw, gx, _ = _shared_matmul_grads(ctx, g.reshape(g.shape[0], g.shape[1], -1))
        return gw, gx, g


_ONES: dict[tuple[int, torch.dtype, torch.device], Tensor] = {}


def _ones(n: int, like: Tensor) -> Tensor:
    key = (n, like.dtype, like.device)
    v = _ONES.get(key)
    if v is None:
        v = _ONES[key] = torch.ones(n, dtype=like.dtype, device=like.device)
    return v


def _row_col_sums(x: Tensor) -> tuple[Tensor, Tensor]:
    """Row sums ``(..., n0)`` and column sums ``(..., n1)`` of ``x (..., n0, n1)``: the row sums as one
    matrix-vector product with ones, the column sums as a reduction over the second-last axis. Both
    are single memory-bound passes; ``x.sum(-1)`` over the short contiguous axis is 2x slower than
    either, and one GEMM with a 0/1 ``(n0*n1, n0+n1)`` matrix (the previous kernel) was 1.5x faster
    than two ``sum`` calls on an AVX-512 Xeon but 2x slower on an AMD EPYC Zen 5 (MKL keeps to AVX2 there): this is 3.5x faster
    than it there, on ``(32, 144, 16, 16)``."""
    n0, n1 = x.shape[-2:]
    lead = x.shape[:-2]
    rows = torch.mv(x.reshape(-1, n1), _ones(n1, x)).view(*lead, n0)
    return rows, x.sum(dim=-2)


class RowColSums(torch.autograd.Function):
    """Row sums ``(B, F, n0)`` and column sums ``(B, F, n1)`` of ``x (B, F, n0 * n1)`` read as
    ``(B, F, n0, n1)``, in one call (:func:`_row_col_sums`); the backward writes the gradient once
    (``g_row[..., None] + g_col[..., None, :]``) instead of accumulating two expanded gradients."""

    @staticmethod
    def forward(ctx, x: Tensor, n0: int, n1: int) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return _row_col_sums(x.view(*x.shape[:2], n0, n1))

    @staticmethod
    def backward(ctx, g_row: Tensor, g_col: Tensor):  # type: ignore[override]
        g = g_row.unsqueeze(-1) + g_col.unsqueeze(-2)
        return g.view(*g.shape[:2], -1), None, None


class OuterAdd(torch.autograd.Function):
    """``r + c`` for ``r (B, F, n0, 1)`` and ``c (B, F, 1, n1)``; the backward reduces the
    full-size gradient to both with :func:`_row_col_sums` instead of two ``sum`` calls."""

    @staticmethod
    def forward(ctx, r: Tensor, c: Tensor) -> Tensor:  # type: ignore[override]
        return r + c

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        g_r, g_c = _row_col_sums(g)
        return g_r.unsqueeze(-1), g_c.unsqueeze(-2)


def max_scaled(x: Tensor, dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(y, r, m)`` with ``x / ||x|| = y * r`` along ``dim``: ``m = max|x|``, ``y = x / m`` (so the
    squares in the norm stay away from float under/overflow for weights of 1e-15 or 1e30) and
    ``r = 1 / ||y||``; ``r`` and ``m`` keep ``dim`` with size 1. A zero vector gets ``y = 1`` (one
    fused ``addcdiv`` pass, no division by zero) and ``r = 0``, so its normalised value is 0."""
    # amax/amin and a sum of squares: reductions that stay fast whatever the memory layout
    # (``aminmax`` and ``vector_norm`` over a strided channel axis are several times slower).
    m = torch.maximum(x.amax(dim=dim, keepdim=True), -x.amin(dim=dim, keepdim=True))
    zero = m == 0
    # m is detached: x/||x|| does not depend on m, so its gradient path cancels exactly, and it is
    # the path that overflows (it divides by m^2, which underflows to 0 for tiny weights).
    y = torch.addcdiv(zero.to(x.dtype), x, m.detach().clamp_min(torch.finfo(x.dtype).tiny))
    r = (~zero).to(x.dtype) * torch.rsqrt((y * y).sum(dim=dim, keepdim=True))  # ||y|| >= 1
    return y, r, m


class NormalizedMean(torch.autograd.Function):
    """``mean_e x[:, :, e] / ||x[:, :, e]||`` for ``x (B, C, E)``: the mean over the entries ``e`` of
    each entry's channel vector normalised to unit length (the scale-invariant pooling), ``(B, C)``.

    Exact for any magnitude: ``y = x / max|x|`` first, then ``x / ||x|| = y r`` with
    ``r = 1 / ||y||``; the mean is one batched product ``y @ r``. Backward, with ``G`` the
    gradient of the mean: ``dx_e = (r / m)_e (G - y_e r_e^2 (y_e . G)) / E``, in two passes
    over ``x``'s size (autograd's backward of the composition makes about ten). A zero vector
    gives 0 and a zero gradient; a vector with ``max|x| < eps^2`` of the dtype keeps its exact
    value but gets no gradient (``1 / ||x||`` would overflow), as in
    :func:`mnfn.layers.pooling.robust_normalize`.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        y, r, m = max_scaled(x, 1)
        ctx.save_for_backward(y, r, m)
        return torch.bmm(y, r.transpose(1, 2)).squeeze(2) * (1.0 / x.shape[2])

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        y, r, m = ctx.saved_tensors
        gs = g * (1.0 / y.shape[2])                                   # (B, C)
        dot = torch.bmm(gs.unsqueeze(1), y)                           # (B, 1, E): y_e . G / E
        keep = m >= torch.finfo(y.dtype).eps ** 2
        coef = torch.where(keep, r / m.clamp_min(torch.finfo(y.dtype).tiny), torch.zeros_like(r))  # 1/||x_e||
        gx = y * (coef * r * r * dot).neg_()
        return gx.baddbmm_(gs.unsqueeze(2), coef)
