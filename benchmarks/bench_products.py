"""Whole steps with the layers' large products run three ways, in one process.

The equivariant layers' large float32 products run as 1x1 convolutions (oneDNN) or as batched GEMMs
(MKL), chosen per CPU (``MNFN_CONV_PRODUCTS``), and optionally with bfloat16 operands
(``MNFN_PRODUCT_PRECISION``, mixed precision; ``layers/kernels.py``). This script times the same
models as ``conv`` (float32), ``gemm`` (float32) and ``bf16`` (bfloat16 operands, the products of
the kind ``auto`` takes), interleaved (each repetition runs every model once each way, the settings
switched between calls), medians of process CPU time per train step (forward, loss, backward, fused
Adam) and per no-grad forward. It checks that conv and gemm give the same loss and reports the
bfloat16 loss's relative difference. It prints which kind ``auto`` takes on this CPU, so a new CPU
can be checked in a minute:

    .venv/bin/python benchmarks/bench_products.py --models monomial,hnp,np --reps 20
    .venv/bin/python benchmarks/bench_products.py --spec siren --models np-editor --width 128

Ratios (x) are the float32 time of the kind ``auto`` takes over each kind's: > 1 is faster.
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


#: each kind: (MNFN_CONV_PRODUCTS, product precision); both are read by every product at call time
KINDS = {"conv": ("1", "float32"), "gemm": ("0", "float32"), "bf16": ("auto", "bfloat16")}


def _set(kind: str) -> None:
    conv, precision = KINDS[kind]
    kernels.CONV_PRODUCTS = conv
    kernels.set_product_precision(precision)


def _timed(fn, kind: str) -> float:
    _set(kind)
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
    ap.add_argument("--width", type=int, default=None,
                    help="channels of each hidden layer of an editor (--spec siren; default: the model's)")
    ap.add_argument("--json", default=None, help="also write the medians here")
    args = ap.parse_args(argv)
    if args.reps < 1 or args.batch < 1 or args.threads < 1 or (args.width is not None and args.width < 1):
        ap.error("--reps, --batch, --threads and --width must be positive")
    torch.set_num_threads(args.threads)
    tune_malloc()
    if not allocator_keeps_memory():
        raise SystemExit("the allocator setting did not take (mnfn.jobs.tune_malloc): the convolutions "
                         "are never used without it, so there is nothing to compare")
    auto, precision = kernels.CONV_PRODUCTS, kernels.product_precision()
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
        if editor:
            cfg = {"hidden": [args.width] * 3, "out_scale": 0.01} if args.width else {}
            model = build_model(name, spec, **cfg)
        else:
            model = build_model(name, spec, out_dim=out_dim)
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

        losses = {}
        with torch.no_grad():
            for k in KINDS:
                _set(k)
                losses[k] = loss().item()
        if abs(losses["conv"] - losses["gemm"]) > 1e-4 * abs(losses["gemm"]) + 1e-6:
            raise SystemExit(f"{name}: conv and gemm give different losses ({losses['conv']} vs {losses['gemm']})")
        runs[name] = (step, forward, abs(losses["bf16"] - losses["gemm"]) / max(abs(losses["gemm"]), 1e-30))
    times = {(n, k): ([], []) for n in runs for k in KINDS}
    for step, forward, _ in runs.values():
        for k in KINDS:
            _timed(step, k), _timed(step, k), _timed(forward, k)
    for _ in range(args.reps):
        for n, (step, forward, _) in runs.items():
            for k in KINDS:
                for i, fn in enumerate((step, forward)):
                    times[(n, k)][i].append(_timed(fn, k))
    kernels.CONV_PRODUCTS = auto
    kernels.set_product_precision(precision)
    base = "conv" if takes == "convolutions" else "gemm"
    print(f"CPU {vendor or 'unknown'} family {family}, avx512f {'avx512f' in flags}, avx512_bf16 "
          f"{'avx512_bf16' in flags}, amx_bf16 {'amx_bf16' in flags}; auto takes the {takes}")
    print(f"{args.spec}, batch {args.batch}, {args.threads} thread(s), {args.reps} interleaved repetitions; "
          f"median CPU ms per call; x: {base} float32 / this kind")
    head = "".join(f"{'train ' + k:>12s} {'x':>5s}" for k in KINDS) + "".join(f"{'fwd ' + k:>10s} {'x':>5s}" for k in KINDS)
    print(f"{'model':14s}{head} {'bf16 loss rel.':>15s}")
    result: dict = {"vendor": vendor, "family": family, "flags": sorted(f for f in flags if "avx512" in f or "amx" in f),
                    "auto": takes, "threads": args.threads, "batch": args.batch, "reps": args.reps, "spec": args.spec,
                    "width": args.width, "models": {}}
    for n, (_, _, rel) in runs.items():
        med = {k: [1000 * statistics.median(v) for v in times[(n, k)]] for k in KINDS}
        row = "".join(f"{med[k][0]:12.1f} {med[base][0] / med[k][0]:5.2f}" for k in KINDS)
        row += "".join(f"{med[k][1]:10.1f} {med[base][1] / med[k][1]:5.2f}" for k in KINDS)
        print(f"{n:14s}{row} {rel:15.1e}")
        result["models"][n] = {"train_ms": {k: med[k][0] for k in KINDS}, "forward_ms": {k: med[k][1] for k in KINDS},
                               "bf16_loss_rel_diff": rel}
    if args.json:
        from mnfn.io import write_json
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
