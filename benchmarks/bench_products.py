"""Whole steps with the float32 products as 1x1 convolutions against batched GEMMs, in one process.

``MNFN_CONV_PRODUCTS`` picks, per CPU, whether the equivariant layers' large float32 products run as
1x1 convolutions (oneDNN) or as batched GEMMs (MKL) (``layers/kernels.py``). This script times the
same models both ways, interleaved (each repetition runs every model once with each kind of
product, the setting switched between calls), medians of process CPU time per train step (forward,
loss, backward, fused Adam) and per no-grad forward, and checks that both kinds give the same
outputs. It prints which kind ``auto`` takes on this CPU, so a new CPU can be checked in a minute:

    .venv/bin/python benchmarks/bench_products.py --models monomial,hnp,np --reps 20
    .venv/bin/python benchmarks/bench_products.py --spec siren --models np-editor --threads 2

Ratios GEMM / conv > 1 mean the convolutions are faster.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from mnfn.bench import random_batch
from mnfn.jobs import allocator_keeps_memory, tune_malloc
from mnfn.layers import kernels
from mnfn.models import build_model
from mnfn.training.optim import make_optimizer
from mnfn.weightspace import siren_spec, zoo_cnn_spec


def _tensors(out) -> list[torch.Tensor]:
    """Every tensor of an editor's output (nested tuples/lists of weight and bias changes)."""
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _tensors(o)]


def _timed(fn, kind: str) -> float:
    kernels.CONV_PRODUCTS = kind  # read by every product at call time
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="monomial,hnp,np")
    ap.add_argument("--spec", choices=["zoo-cnn", "siren"], default="zoo-cnn")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the medians here")
    args = ap.parse_args(argv)
    if args.reps < 1 or args.batch < 1 or args.threads < 1:
        ap.error("--reps, --batch and --threads must be positive")
    torch.set_num_threads(args.threads)
    tune_malloc()
    if not allocator_keeps_memory():
        raise SystemExit("the allocator setting did not take (mnfn.jobs.tune_malloc): the convolutions "
                         "are never used without it, so there is nothing to compare")
    auto = kernels.CONV_PRODUCTS
    kernels.CONV_PRODUCTS = "auto"
    takes = "convolutions" if kernels.conv_products_help() else "GEMMs"
    vendor, family, flags = kernels._cpu_info()
    spec = zoo_cnn_spec("relu") if args.spec == "zoo-cnn" else siren_spec()
    x = random_batch(spec, args.batch, torch.float32, 0)
    g = torch.Generator().manual_seed(0)
    runs = {}
    for name in args.models.split(","):
        torch.manual_seed(0)
        editor = name.endswith("editor")
        out_dim = 1 if args.spec == "zoo-cnn" else 10
        model = build_model(name, spec, out_dim=out_dim) if not editor else build_model(name, spec)
        model.eval()  # no dropout: the two kinds' outputs are comparable
        opt = make_optimizer(model.parameters(), lr=1e-3)
        if editor:
            def loss(m=model) -> torch.Tensor:
                return sum(t.pow(2).mean() for t in _tensors(m(x)))
        elif out_dim == 1:
            y = torch.rand(args.batch, 1, generator=g)
            def loss(m=model, y=y) -> torch.Tensor:
                return F.binary_cross_entropy_with_logits(m(x), y)
        else:
            y = torch.randint(0, 10, (args.batch,), generator=g)
            def loss(m=model, y=y) -> torch.Tensor:
                return F.cross_entropy(m(x), y)

        def step(m=model, o=opt, loss=loss) -> None:
            o.zero_grad(set_to_none=True)
            loss().backward()
            o.step()

        def forward(m=model, loss=loss) -> None:
            with torch.no_grad():
                loss()

        with torch.no_grad():
            kernels.CONV_PRODUCTS = "1"
            a = loss()
            kernels.CONV_PRODUCTS = "0"
            b = loss()
        if not torch.allclose(a, b, rtol=1e-4, atol=1e-6):
            raise SystemExit(f"{name}: the two kinds of product give different losses ({a.item()} vs {b.item()})")
        runs[name] = (step, forward)
    times = {(n, k): ([], []) for n in runs for k in ("1", "0")}
    for step, forward in runs.values():
        for k in ("1", "0"):
            _timed(step, k), _timed(step, k), _timed(forward, k)
    for _ in range(args.reps):
        for n, fns in runs.items():
            for k in ("1", "0"):
                for i, fn in enumerate(fns):
                    times[(n, k)][i].append(_timed(fn, k))
    kernels.CONV_PRODUCTS = auto
    print(f"CPU {vendor or 'unknown'} family {family}, avx512f {'avx512f' in flags}; auto takes the {takes}")
    print(f"{args.spec}, batch {args.batch}, {args.threads} thread(s), {args.reps} interleaved repetitions; "
          f"median CPU ms per call")
    print(f"{'model':14s} {'train conv':>11s} {'GEMM':>8s} {'x':>6s} {'fwd conv':>9s} {'GEMM':>8s} {'x':>6s}")
    result: dict = {"vendor": vendor, "family": family, "avx512f": "avx512f" in flags, "auto": takes, "threads": args.threads,
                    "batch": args.batch, "reps": args.reps, "spec": args.spec, "models": {}}
    for n in runs:
        conv = [1000 * statistics.median(v) for v in times[(n, "1")]]
        gemm = [1000 * statistics.median(v) for v in times[(n, "0")]]
        print(f"{n:14s} {conv[0]:11.1f} {gemm[0]:8.1f} {gemm[0] / conv[0]:6.3f} {conv[1]:9.1f} {gemm[1]:8.1f} "
              f"{gemm[1] / conv[1]:6.3f}")
        result["models"][n] = {"train_ms": {"conv": conv[0], "gemm": gemm[0]},
                               "forward_ms": {"conv": conv[1], "gemm": gemm[1]}}
    if args.json:
        from mnfn.io import write_json
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
