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
    practical peak of the BLAS here, against which :func:`bench_models`' FLOP counts give ceilings."""
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen, dtype=dtype).to(dev)
    b = torch.randn(size, size, generator=gen, dtype=dtype).to(dev)
    torch.mm(a, b)  # warm-up: BLAS thread pool and packing buffers
    best = math.inf
    for _ in range(repeats):
        sync(dev)
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(dev)
        best = min(best, time.perf_counter() - t0)
    return {"gemm": f"{size}x{size}x{size} {str(dtype).replace('torch.', '')}", "gflops": 2 * size ** 3 / best / 1e9,
            "threads": torch.get_num_threads(), "device": str(dev)}
