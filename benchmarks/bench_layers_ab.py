"""The equivariant layers and Fourier features of this checkout against those of an earlier commit,
in one process.

Loads ``src/mnfn/layers/equivariant.py`` and ``src/mnfn/layers/fourier.py`` as they were at ``--ref``
(``git show``; they must still import against today's package), builds each model twice from the
same seed, swaps the old classes into the second copy (and, with them, the stacks' out-of-place
activations), checks both
give the same outputs, then times a train step (forward, loss, backward, fused Adam) and a no-grad
forward of every copy interleaved (each repetition runs each copy once), medians of process CPU time.
Ratios old / new > 1 mean this checkout is faster.

    .venv/bin/python benchmarks/bench_layers_ab.py --ref a9f2c8a --models hnp,np,monomial --reps 30
    .venv/bin/python benchmarks/bench_layers_ab.py --ref a9f2c8a --spec siren --models monomial-inr,np,hnp
    .venv/bin/python benchmarks/bench_layers_ab.py --ref 68deb5b --spec siren --models hybrid-inr
    .venv/bin/python benchmarks/bench_layers_ab.py --ref 68deb5b --spec siren --fourier-only 32
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mnfn.bench import random_batch
from mnfn.jobs import tune_malloc
from mnfn.layers import EquivariantLinear, FourierFeatures, fold
from mnfn.models import build_model
from mnfn.models.parts import EquivariantStack
from mnfn.training.optim import make_optimizer
from mnfn.weightspace import siren_spec, zoo_cnn_spec

ROOT = Path(__file__).resolve().parents[1]


def _old_class(ref: str, module: str, cls: str) -> type:
    """Class ``cls`` of ``src/mnfn/layers/<module>.py`` as it was at ``ref``, imported inside today's
    ``mnfn.layers`` package (so its relative imports resolve)."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:src/mnfn/layers/{module}.py"],
                         check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / f"{module}_old.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"mnfn.layers._{module}_old", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return getattr(mod, cls)


def _swap_layer(mod: EquivariantLinear, old_cls: type) -> None:
    """Turn ``mod`` into an ``old_cls`` layer holding the same per-term values (layers that kept one
    parameter per term, ``params.N``, get that storage back)."""
    values = [p.detach().clone() for p in mod.params]
    mod.__class__ = old_cls
    if not isinstance(getattr(old_cls, "params", None), property):
        for name in ("weights", "extra"):
            if name in mod._modules:
                delattr(mod, name)
        mod.params = torch.nn.ParameterList([torch.nn.Parameter(v) for v in values])
    mod._build_execution_plan()


def _ref_has(ref: str, path: str, text: str) -> bool:
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:{path}"], check=True, capture_output=True,
                         text=True).stdout
    return text in src


class _OutOfPlaceStack(EquivariantStack):
    def forward_folded(self, xs):  # the stacks before in-place activations
        for i, layer in enumerate(self.layers):
            xs = layer.forward_folded(xs)
            if i < len(self.acts):
                xs = self.acts[i].forward_folded(xs)
        return xs


def _fourier_only(args: argparse.Namespace, spec, x, old_cls: type) -> dict:
    """Old and new Fourier features alone: no-grad forward, and forward + backward of a sum."""
    xs = fold(x)
    new = FourierFeatures(spec, 1, args.fourier_only)
    old = FourierFeatures(spec, 1, args.fourier_only)
    old.__class__ = old_cls
    a, b = new.forward_folded(xs), old.forward_folded(xs)
    if not all(torch.allclose(u, v, rtol=1e-4, atol=1e-5) for u, v in zip(a, b)):
        raise SystemExit("fourier features differ between the two versions")
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.reps):
        for tag, m in (("new", new), ("old", old)):
            t0 = time.process_time()
            with torch.no_grad():
                m.forward_folded(xs)
            times.setdefault((tag, "forward"), []).append(time.process_time() - t0)
            xg = [t.clone().requires_grad_(True) for t in xs]
            t0 = time.process_time()
            sum(o.sum() for o in m.forward_folded(xg)).backward()
            times.setdefault((tag, "train"), []).append(time.process_time() - t0)
    med = {k: 1000 * statistics.median(v) for k, v in times.items()}
    print(f"fourier features alone, {args.fourier_only} maps, {args.spec}, batch {args.batch}, {args.threads} "
          f"thread(s), {args.reps} interleaved repetitions, baseline {args.ref}; median CPU ms per call")
    for kind in ("train", "forward"):
        o, n = med[("old", kind)], med[("new", kind)]
        print(f"{kind:8s} old {o:8.3f} new {n:8.3f} x {o / n:6.3f}")
    return {kind: {"old": med[("old", kind)], "new": med[("new", kind)]} for kind in ("train", "forward")}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, help="git commit whose layers are the baseline")
    ap.add_argument("--models", default="hnp,np,monomial")
    ap.add_argument("--spec", choices=["zoo-cnn", "siren"], default="zoo-cnn")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fourier-only", type=int, default=0, metavar="M",
                    help="time only the Fourier features (M maps, one input channel) on the spec's weights")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    tune_malloc()
    old_cls = _old_class(args.ref, "equivariant", "EquivariantLinear")
    old_fourier = _old_class(args.ref, "fourier", "FourierFeatures")  # same attributes and buffer
    # refs from before the in-place activations get the stacks of their time too
    old_stack = not _ref_has(args.ref, "src/mnfn/models/parts.py", "inplace=True")
    spec = zoo_cnn_spec("relu") if args.spec == "zoo-cnn" else siren_spec()
    out_dim = 1 if args.spec == "zoo-cnn" else 10
    x = random_batch(spec, args.batch, torch.float32, 0)
    g = torch.Generator().manual_seed(0)
    y = torch.rand(args.batch, 1, generator=g) if out_dim == 1 else torch.randint(0, 10, (args.batch,), generator=g)
    loss_fn = F.binary_cross_entropy_with_logits if out_dim == 1 else F.cross_entropy
    if args.fourier_only:
        return _fourier_only(args, spec, x, old_fourier)
    runs = {}
    for name in args.models.split(","):
        for tag in ("new", "old"):
            torch.manual_seed(0)
            model = build_model(name, spec, out_dim=out_dim).eval()  # eval: no dropout, outputs comparable
            if tag == "old":
                for mod in model.modules():
                    if isinstance(mod, EquivariantLinear):
                        _swap_layer(mod, old_cls)
                    elif isinstance(mod, EquivariantStack) and old_stack:
                        mod.__class__ = _OutOfPlaceStack
                    elif isinstance(mod, FourierFeatures):
                        mod.__class__ = old_fourier
            opt = make_optimizer(model.parameters(), lr=1e-3)

            def step(m=model, o=opt) -> None:
                o.zero_grad(set_to_none=True)
                loss_fn(m(x), y).backward()
                o.step()

            def forward(m=model) -> torch.Tensor:
                with torch.no_grad():
                    return m(x)

            runs[(name, tag)] = (step, forward)
        a, b = runs[(name, "new")][1](), runs[(name, "old")][1]()
        if not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
            raise SystemExit(f"{name}: outputs differ between the two layer versions ({(a - b).abs().max():.3g})")
    times = {k: ([], []) for k in runs}
    for step, forward in runs.values():
        step(), step(), forward()
    for _ in range(args.reps):
        for k, fns in runs.items():
            for i, fn in enumerate(fns):
                t0 = time.process_time()
                fn()
                times[k][i].append(time.process_time() - t0)
    print(f"{args.spec}, batch {args.batch}, {args.threads} thread(s), {args.reps} interleaved repetitions, "
          f"baseline {args.ref}; median CPU ms per call")
    print(f"{'model':14s} {'train old':>10s} {'new':>8s} {'x':>6s} {'fwd old':>9s} {'new':>8s} {'x':>6s}")
    result = {}
    for name in args.models.split(","):
        new = [1000 * statistics.median(v) for v in times[(name, "new")]]
        old = [1000 * statistics.median(v) for v in times[(name, "old")]]
        print(f"{name:14s} {old[0]:10.1f} {new[0]:8.1f} {old[0] / new[0]:6.3f} {old[1]:9.1f} {new[1]:8.1f} "
              f"{old[1] / new[1]:6.3f}")
        result[name] = {"train_ms": {"old": old[0], "new": new[0]}, "forward_ms": {"old": old[1], "new": new[1]}}
    return result


if __name__ == "__main__":
    main()
