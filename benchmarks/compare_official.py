"""mnfn against the official Monomial-NFN code, side by side in one process.

Builds the official code's predict-gen models for the Small CNN Zoo architecture (its
``experiments/predict_gen_configs``: Monomial-NFN = ``InvariantNFN`` mode ``HNPS``, channels
16-16-5, head ``HNPS_param_mul_L2`` 200; HNP = mode ``HNP`` with the 1000-wide head; NP = mode
``NP-PosEmb``) and mnfn's ``monomial``, ``hnp`` and ``np``, reports the parameter counts of both,
and times a train step (forward, BCE, backward, Adam) and a forward pass (no grad) at batch 32,
float32, interleaved (every repetition runs every model once, in turn), for 1 and 2 torch threads.
Figures: medians per step in wall-clock and process-CPU milliseconds; ratios official / mnfn (> 1:
mnfn is faster) per wall second and per CPU second.

The official code (MIT licence) is not part of mnfn: fetch it yourself and point ``--official``
at the checkout. It needs ``einops`` (``pip install einops``, or ``pip install -e .[bench]``).

    git clone https://github.com/MathematicalAI-NUS/Monomial-NFN /tmp/Monomial-NFN
    .venv/bin/python benchmarks/compare_official.py --official /tmp/Monomial-NFN --json runs/bench/official.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from mnfn.io import write_json
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
    args = p.parse_args()
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
    print(f"batch {args.batch}, float32, {args.reps} interleaved repetitions, load average {load:.2f}")
    print(f"{'model':<10}{'params mnfn':>13}{'official':>11}")
    for n in names:
        print(f"{n:<10}{params[n]['mnfn']:>13,}{params[n]['official']:>11,}")
    print(f"\n{'model':<10}{'step':<9}{'thr':>4}{'mnfn ms':>9}{'off. ms':>9}{'mnfn cpu':>10}{'off. cpu':>10}"
          f"{'x wall':>8}{'x cpu':>7}")
    for r in results:
        print(f"{r['model']:<10}{r['what']:<9}{r['threads']:>4}{r['mnfn_ms']:>9.1f}{r['official_ms']:>9.1f}"
              f"{r['mnfn_cpu_ms']:>10.1f}{r['official_cpu_ms']:>10.1f}{r['ratio_wall']:>8.2f}{r['ratio_cpu']:>7.2f}")
    print("(x: official time / mnfn time; > 1 means mnfn is faster)")
    if args.json:
        write_json(args.json, {"batch": args.batch, "reps": args.reps, "load_average": load, "params": params,
                               "results": results, "torch": torch.__version__})
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
