"""Measurement primitives of the benchmarks: peak allocator memory (CPU and CUDA), FLOP counts, the
GEMM rate that sets a model's ceiling, device synchronisation and ``torch.compile`` of a model.

:mod:`mnfn.bench` times models with these; ``benchmarks/`` scripts use them directly.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from typing import Any, Callable, Iterator

import torch
from torch import nn

__all__ = ["compile_available", "compile_model", "peak_memory_bytes", "cuda_peak_bytes", "count_flops", "gemm_rate",
           "sync"]


# --- torch.compile -------------------------------------------------------------------------------

def compile_available() -> tuple[bool, str]:
    """Whether ``torch.compile`` can run here, and why not. Cheap checks only (no compilation):
    the function exists, and the inductor backend finds a C++ compiler for CPU kernels."""
    if not hasattr(torch, "compile"):
        return False, f"torch {torch.__version__} has no torch.compile"
    if sys.platform == "win32":
        return False, "torch.compile's inductor backend needs a C++ toolchain not set up on Windows here"
    import shutil

    cxx = os.environ.get("CXX") or next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)
    if cxx is None:
        return False, "no C++ compiler (g++/c++/clang++) on PATH for inductor's CPU kernels"
    return True, ""


def compile_model(model: nn.Module, **kwargs: Any) -> nn.Module:
    """``torch.compile`` a model of the registry (any ``nn.Module`` taking ``WeightSpaceFeatures``).

    The model is compiled as a whole (``dynamic=False``: one graph per batch shape, recompiled when
    the batch size changes); extra keyword arguments go to ``torch.compile``. The first call
    compiles (tens of seconds on a small CPU); the result computes the same function, up to float
    rounding. Raises ``RuntimeError`` with the reason when torch.compile is unavailable.
    """
    ok, why = compile_available()
    if not ok:
        raise RuntimeError(f"torch.compile is unavailable: {why}")
    kwargs.setdefault("dynamic", False)
    return torch.compile(model, **kwargs)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (C++ log lines) for a moment; a no-op where it cannot."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_bytes(fn: Callable[[], Any]) -> int:
    """Peak bytes held by PyTorch's CPU allocator while ``fn()`` runs, above the level at its start.

    Replays ``torch.profiler`` memory events (``profile_memory=True``) in time order: each
    operator's own allocations minus its own frees, and the frees that happen between operators
    (tensors released by Python). Operator granularity: a temporary allocated and freed inside one
    operator is not seen; nor are frees of memory allocated before the start (e.g. the previous
    step's gradients released by ``zero_grad``), so the figure leans high by at most that much.
    """
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_stderr():  # the profiler's C++ side logs a line at start and stop
        prof.start()
    try:
        with _quiet_stderr():  # and its warnings about frees of memory allocated before the start
            fn()
    finally:
        with _quiet_stderr():
            prof.stop()
    events = [e for e in prof.events() if e.self_cpu_memory_usage]
    events.sort(key=lambda e: e.time_range.start)
    cur = peak = 0
    for e in events:
        cur += e.self_cpu_memory_usage
        peak = max(peak, cur)
    return int(peak)


def sync(device: torch.device) -> None:
    """Wait for the device's queued kernels (CUDA launches are asynchronous); no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cuda_peak_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak CUDA-allocator bytes during ``fn()`` above what was allocated before it."""
    sync(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return int(torch.cuda.max_memory_allocated(device) - before)


def count_flops(fn: Callable[[], Any]) -> int:
    """Floating-point operations of the matrix products and convolutions ``fn()`` runs (forward and
    backward), counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add is 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def gemm_rate(size: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32,
              device: str | torch.device = "cpu") -> dict[str, Any]:
    """Best GFLOP/s of a ``size``-cubed matrix product on this process's threads (or the GPU): the
    practical peak here, against which :func:`bench_models`' FLOP counts give ceilings. On the CPU
    (float32) a product also runs as a 1x1 convolution (oneDNN, which the layers use): on an
    AVX-512 AMD CPU MKL keeps to AVX2 and oneDNN runs up to 1.8x faster, so the rate is the faster of
    the two (both are returned under ``rates``)."""
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen, dtype=dtype).to(dev)
    b = torch.randn(size, size, generator=gen, dtype=dtype).to(dev)
    ways = {"mm": (lambda: torch.mm(a, b), 2 * size ** 3)}
    if dev.type == "cpu" and dtype == torch.float32 and torch.backends.mkldnn.is_available():
        # oneDNN's fastest shape among those tried (batch 16, 512 -> 512 channels, length 256: 157
        # GFLOP/s on one Zen 5 core; a 2048-channel batch of 1 ran at the BLAS's 88)
        x = torch.randn(16, 512, 256, generator=gen, dtype=dtype)
        w = torch.randn(512, 512, 1, generator=gen, dtype=dtype)
        ways["conv1x1"] = (lambda: torch.nn.functional.conv1d(x, w), 2 * 16 * 512 * 512 * 256)
    rates = {}
    for name, (fn, flops) in ways.items():
        fn()  # warm-up: thread pool, packing buffers
        best = math.inf
        for _ in range(repeats):
            sync(dev)
            t0 = time.perf_counter()
            fn()
            sync(dev)
            best = min(best, time.perf_counter() - t0)
        rates[name] = flops / best / 1e9
    top = max(rates, key=rates.__getitem__)
    what = f"{size}^3 mm" if top == "mm" else "1x1 conv 16x512x256"
    return {"gemm": f"{what} {str(dtype).replace('torch.', '')}", "gflops": rates[top],
            "rates": rates, "threads": torch.get_num_threads(), "device": str(dev)}
