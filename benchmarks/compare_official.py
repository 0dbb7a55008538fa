"""mnfn against the official Monomial-NFN code, side by side in one process.

Builds the official code's predict-gen models for the Small CNN Zoo architecture (its
``experiments/predict_gen_configs``: Monomial-NFN = ``InvariantNFN`` mode ``HNPS``, channels
16-16-5, head ``HNPS_param_mul_L2`` 200; HNP = mode ``HNP`` with the 1000-wide head; NP = mode
``NP-PosEmb``) and mnfn's ``monomial``, ``hnp`` and ``np``, reports the parameter counts of both,
and times a train step (forward, BCE, backward, Adam) and a forward pass (no grad) at batch 32,
float32, interleaved (every repetition runs every model once, in turn), for 1 and 2 torch threads.
Figures: medians per step in wall-clock and process-CPU milliseconds; ratios official / mnfn (> 1:
mnfn is faster) per wall second and per CPU second.

**Bounds** (``--bounds``, on by default; one thread): what ratio any faster mnfn could reach on this
machine. Each side's matmul/conv FLOPs per step (``torch.utils.flop_counter``), and, from
``torch.profiler`` over interleaved steps, each side's step time and the self time of its
matrix-product operators (``mm``, ``bmm``, ``addmm``, ``baddbmm``, ``matmul``, ``conv``). Two
bounds on official / mnfn: *GEMMs at their rate* = official step / mnfn's matrix-product time
(everything but mnfn's own products free, the products as fast as they run now), and *GEMMs at the
square rate* = official step / (mnfn FLOPs / the best rate of a large product in this process:
:func:`mnfn.measure.gemm_rate`, a 2048^3 GEMM or a 1x1 convolution, whichever is faster).

The official code (MIT licence) is not part of mnfn: fetch it yourself and point ``--official``
at the checkout. It needs ``einops`` (``pip install einops``, or ``pip install -e .[bench]``).

    git clone https://github.com/MathematicalAI-NUS/Monomial-NFN /tmp/Monomial-NFN
    .venv/bin/python benchmarks/compare_official.py --official /tmp/Monomial-NFN --json runs/bench/official.json
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from mnfn.io import write_json
from mnfn.jobs import tune_malloc
from mnfn.measure import count_flops, gemm_rate
from mnfn.models import build_model, count_parameters
from mnfn.weightspace import WeightSpaceFeatures, zoo_cnn_spec
from mnfn.training.optim import make_optimizer

PAIRS = ("monomial", "hnp", "np")


def _official_models(root: Path, batch: int):
    """The official models and an input batch in the official feature class."""
    for p in (root, root / "experiments" / "perceiver-pytorch"):
        sys.path.insert(0, str(p))
    try:
        from experiments.models import InvariantNFN, MlpHead  # type: ignore[import-not-found]
        from nfn.common import WeightSpaceFeatures as OffFeatures  # type: ignore[import-not-found]
        from nfn.common import network_spec_from_wsfeat  # type: ignore[import-not-found]
    except ImportError as exc:
        raise SystemExit(f"cannot import the official code from {root}: {exc} "
                         "(is it a Monomial-NFN checkout? is einops installed?)") from exc
    g = torch.Generator().manual_seed(0)
    shapes_w = [(16, 1, 3, 3), (16, 16, 3, 3), (16, 16, 3, 3), (10, 16)]
    ws = [torch.randn(batch, 1, *s, generator=g) * 0.2 for s in shapes_w]
    bs = [torch.randn(batch, 1, s[0], generator=g) * 0.05 for s in shapes_w]
    feats = OffFeatures(ws, bs)
    spec = network_spec_from_wsfeat(feats)
    head = partial(MlpHead, sigmoid=True, num_out=1, lnorm=False, dropout=0)
    models = {
        "monomial": InvariantNFN(spec, hchannels=[16, 16, 5], mode="HNPS", init_type="xavier_normal",
                                 head_cls=partial(head, pool_mode="HNPS_param_mul_L2", h_size=200)),
        "hnp": InvariantNFN(spec, hchannels=[16, 16, 5], mode="HNP", init_type="xavier_uniform",
                            head_cls=partial(head, pool_mode="HNP", h_size=1000)),
        "np": InvariantNFN(spec, hchannels=[16, 16, 5], mode="NP-PosEmb", init_type="pytorch_default",
                           head_cls=partial(head, pool_mode="HNP", h_size=1000)),
    }
    return models, feats, ws, bs


def _step_fns(model, feats, y, sigmoid_out: bool, opt):

    def train() -> None:
        out = model(feats).reshape(-1)
        loss = F.binary_cross_entropy(out, y) if sigmoid_out else F.binary_cross_entropy_with_logits(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def forward() -> None:
        model(feats)

    return {"train": train, "forward": forward}


#: operators counted as matrix products in the bounds (their own time, not their children's): the
#: GEMM family and every convolution forward/backward kernel (the official layers mix channels with convs)
MATMUL_OPS = re.compile(r"^aten::(mm|bmm|addmm|baddbmm|addbmm|matmul|linear|einsum|mv|dot)_?$|conv")


def _profiled_ms(fns: dict, reps: int) -> dict:
    """Per model: median over ``reps`` interleaved profiled steps of (step ms, matrix-product self ms)."""
    from torch.profiler import ProfilerActivity, profile

    samples: dict = {k: ([], []) for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                fn()
            ev = prof.key_averages()
            total = sum(e.self_cpu_time_total for e in ev) / 1e3
            mat = sum(e.self_cpu_time_total for e in ev if MATMUL_OPS.search(e.key)) / 1e3
            samples[k][0].append(total)
            samples[k][1].append(mat)
    return {k: (statistics.median(a), statistics.median(b)) for k, (a, b) in samples.items()}


def bounds(runs: dict, names: list, reps: int) -> list:
    """The two bounds of the module docstring, for train step and forward, one thread."""
    torch.set_num_threads(1)
    best = gemm_rate()
    rate = best["gflops"]
    out = []
    for what in ("train", "forward"):
        fns = {k: v[what] for k, v in runs.items()}
        for fn in fns.values():
            fn()
        flops = {k: count_flops(fn) for k, fn in fns.items()}
        prof = _profiled_ms(fns, reps)
        for n in names:
            off_ms, _ = prof[(n, "official")]
            ours_ms, ours_mat = prof[(n, "mnfn")]
            out.append({"model": n, "what": what, "gflop_mnfn": flops[(n, "mnfn")] / 1e9,
                        "gflop_official": flops[(n, "official")] / 1e9, "mnfn_ms": ours_ms, "official_ms": off_ms,
                        "mnfn_matmul_ms": ours_mat, "official_matmul_ms": prof[(n, "official")][1],
                        "gemm_gflops": rate, "gemm": best["gemm"], "ratio_now": off_ms / ours_ms,
                        "bound_gemms_at_their_rate": off_ms / ours_mat,
                        "bound_gemms_at_square_rate": off_ms / (1e3 * flops[(n, "mnfn")] / (rate * 1e9))})
    return out


def _time(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--official", required=True, type=Path, help="checkout of MathematicalAI-NUS/Monomial-NFN")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--reps", type=int, default=30, help="timed repetitions per model and setting (default 30)")
    p.add_argument("--threads", default="1,2", help="torch thread counts to measure (default 1,2)")
    p.add_argument("--models", default=",".join(PAIRS), help=f"which pairs (default {','.join(PAIRS)})")
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    p.add_argument("--no-bounds", dest="bounds", action="store_false", help="skip the FLOP / matmul-time bounds")
    p.add_argument("--bound-reps", type=int, default=10, help="profiled repetitions for the bounds (default 10)")
    p.add_argument("--tune-malloc", action="store_true",
                   help="keep freed memory in this process, as every mnfn command does (mnfn.jobs.tune_malloc); "
                        "both codes run with it")
    args = p.parse_args()
    tuned = tune_malloc() if args.tune_malloc else None
    if not (args.official / "experiments" / "models.py").is_file():
        raise SystemExit(f"{args.official}: no experiments/models.py; give a checkout of the official Monomial-NFN code")
    torch.manual_seed(0)
    names = [m for m in args.models.split(",") if m]
    off, off_feats, ws, bs = _official_models(args.official, args.batch)
    spec = zoo_cnn_spec("relu")
    ours_feats = WeightSpaceFeatures(tuple(ws), tuple(bs), spec)  # same numbers, mnfn's (out, in, kh, kw) order
    y = torch.rand(args.batch, generator=torch.Generator().manual_seed(1))
    runs = {}
    params = {}
    for n in names:
        mine = build_model(n, spec)
        params[n] = {"mnfn": count_parameters(mine), "official": count_parameters(off[n])}
        # each side's optimizer as its own training code makes it (the official scripts: torch.optim.Adam)
        runs[(n, "mnfn")] = _step_fns(mine, ours_feats, y, False, make_optimizer(mine.parameters(), "adam", 1e-3))
        runs[(n, "official")] = _step_fns(off[n], off_feats, y, True, torch.optim.Adam(off[n].parameters(), lr=1e-3))
    results = []
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for what in ("train", "forward"):
            for fns in runs.values():  # warm-up: allocator, first-call overheads
                for _ in range(3):
                    fns[what]()
            times: dict = {k: ([], []) for k in runs}
            for _ in range(args.reps):  # interleaved: load changes hit every model alike
                for k, fns in runs.items():
                    w, c = _time(fns[what])
                    times[k][0].append(w)
                    times[k][1].append(c)
            for n in names:
                mw, mc = (statistics.median(v) for v in times[(n, "mnfn")])
                ow, oc = (statistics.median(v) for v in times[(n, "official")])
                results.append({"model": n, "what": what, "threads": threads, "mnfn_ms": 1e3 * mw,
                                "official_ms": 1e3 * ow, "mnfn_cpu_ms": 1e3 * mc, "official_cpu_ms": 1e3 * oc,
                                "ratio_wall": ow / mw, "ratio_cpu": oc / mc})
    load = os.getloadavg()[0]
    print(f"batch {args.batch}, float32, {args.reps} interleaved repetitions, load average {load:.2f}, "
          f"allocator {'tuned' if tuned else 'default'}")
    print(f"{'model':<10}{'params mnfn':>13}{'official':>11}")
    for n in names:
        print(f"{n:<10}{params[n]['mnfn']:>13,}{params[n]['official']:>11,}")
    print(f"\n{'model':<10}{'step':<9}{'thr':>4}{'mnfn ms':>9}{'off. ms':>9}{'mnfn cpu':>10}{'off. cpu':>10}"
          f"{'x wall':>8}{'x cpu':>7}")
    for r in results:
        print(f"{r['model']:<10}{r['what']:<9}{r['threads']:>4}{r['mnfn_ms']:>9.1f}{r['official_ms']:>9.1f}"
              f"{r['mnfn_cpu_ms']:>10.1f}{r['official_cpu_ms']:>10.1f}{r['ratio_wall']:>8.2f}{r['ratio_cpu']:>7.2f}")
    print("(x: official time / mnfn time; > 1 means mnfn is faster)")
    bound_rows = bounds(runs, names, args.bound_reps) if args.bounds else []
    if bound_rows:
        print(f"\nbounds, 1 thread, profiled ({args.bound_reps} interleaved steps; best product "
              f"{bound_rows[0]['gemm']} at {bound_rows[0]['gemm_gflops']:.1f} GFLOP/s)")
        print(f"{'model':<10}{'step':<9}{'GFLOP mnfn':>11}{'off.':>7}{'mnfn ms':>9}{'matmul':>8}{'off. ms':>9}"
              f"{'matmul':>8}{'x now':>7}{'x max@rate':>11}{'x max@sq':>9}")
        for r in bound_rows:
            print(f"{r['model']:<10}{r['what']:<9}{r['gflop_mnfn']:>11.3f}{r['gflop_official']:>7.3f}{r['mnfn_ms']:>9.1f}"
                  f"{r['mnfn_matmul_ms']:>8.1f}{r['official_ms']:>9.1f}{r['official_matmul_ms']:>8.1f}"
                  f"{r['ratio_now']:>7.2f}{r['bound_gemms_at_their_rate']:>11.2f}{r['bound_gemms_at_square_rate']:>9.2f}")
        print("(x max@rate: official step / mnfn's matrix-product time, i.e. everything else free; "
              "x max@sq: official step / (mnfn FLOPs at that best product's rate))")
    if args.json:
        write_json(args.json, {"batch": args.batch, "reps": args.reps, "load_average": load, "malloc_tuned": bool(tuned), "params": params,
                               "results": results, "bounds": bound_rows, "torch": torch.__version__})
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
