"""Benchmark: how fast this CPU runs the matrix product that dominates the Monomial-NFN zoo model.

The 16 -> 16 channel layer of the zoo model mixes the 144 features (16 channels x 9 kernel
positions) of each of the 256 entries of a hidden conv weight with a 144 x 144 matrix, for every
net of the batch. This script times that product, forward and both backward products (what one
train step runs per term), in three layouts, beside a large square GEMM (the rate ``mnfn bench``
uses for its roofline), all in one process:

* ``bmm``: the layer's layout ``(B, F, H)``, the matrix expanded over the batch (what
  :class:`mnfn.layers.EquivariantLinear` runs);
* ``mm, channels last``: ``(B*H, F) @ (F, F)``, one GEMM;
* ``mm, transposed copy``: ``(F, F) @ (F, B*H)`` after copying the input to that layout.

    python benchmarks/bench_gemm.py                  # torch's default threads
    python benchmarks/bench_gemm.py --threads 1 --json gemm.json
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from mnfn.bench import gemm_rate
from mnfn.io import write_json


def _time(fn: Callable[[], None], repeats: int) -> float:
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(batch: int = 32, features: int = 144, entries: int = 256, repeats: int = 20) -> dict:
    gen = torch.Generator().manual_seed(0)
    B, F, H = batch, features, entries
    w = torch.randn(F, F, generator=gen, requires_grad=True)
    x3 = torch.randn(B, F, H, generator=gen, requires_grad=True)
    x2 = torch.randn(B * H, F, generator=gen, requires_grad=True)
    g3, g2 = torch.ones(B, F, H), torch.ones(B * H, F)

    def bmm() -> None:
        torch.bmm(w.expand(B, F, F), x3).backward(g3)

    def mm_last() -> None:
        (x2 @ w.t()).backward(g2)

    def mm_copy() -> None:
        y = w @ x3.transpose(0, 1).reshape(F, B * H)
        y.view(F, B, H).transpose(0, 1).backward(g3)

    flop = 3 * 2 * B * H * F * F  # forward, grad of input, grad of matrix
    out = {"shape": f"({B}*{H}, {F}) x ({F}, {F})", "threads": torch.get_num_threads(),
           "square_gemm": gemm_rate(), "layouts": {}}
    for name, fn in (("bmm", bmm), ("mm, channels last", mm_last), ("mm, transposed copy", mm_copy)):
        s = _time(fn, repeats)
        out["layouts"][name] = {"ms": 1e3 * s, "gflops": flop / s / 1e9}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    r = run(repeats=args.repeats)
    sq = r["square_gemm"]
    print(f"{r['threads']} thread(s); square GEMM {sq['gemm']}: {sq['gflops']:.1f} GFLOP/s")
    print(f"zoo-model product {r['shape']}, forward + both backward products (best of {args.repeats}):")
    for name, v in r["layouts"].items():
        print(f"  {name:22s} {v['ms']:7.2f} ms  {v['gflops']:6.1f} GFLOP/s  ({v['gflops'] / sq['gflops']:.0%} of square)")
    if args.json:
        write_json(args.json, r)


if __name__ == "__main__":
    main()
