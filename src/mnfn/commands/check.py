"""``mnfn check``: verify numerically that the monomial group preserves a network's function
(or, with ``--model``, that a model is equivariant/invariant)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and the library load when a command runs, not for `mnfn --help`
    import torch

    from ..weightspace import WeightSpaceSpec

NAME = "check"
ORDER = 10
HELP = "check that random group elements preserve a network's function (or a model's symmetry)"
EXAMPLE = """examples:
  mnfn check --arch zoo-cnn --activation relu
  mnfn check --arch siren --activation sin --dtype float64"""

ARCHS = ("mlp", "zoo-cnn", "siren")


def arch_spec(arch: str, activation: str) -> WeightSpaceSpec:
    """The sample architecture ``arch`` with hidden ``activation``."""
    from ..weightspace import mlp_spec, siren_spec, zoo_cnn_spec

    if arch == "mlp":
        return mlp_spec([4, 16, 16, 3], activation)
    if arch == "zoo-cnn":
        return zoo_cnn_spec(activation, image_size=16)
    if arch == "siren":
        if activation != "sin":
            spec = siren_spec()
            return mlp_spec(list(spec.widths), activation)
        return siren_spec()
    raise ValueError(f"unknown arch {arch!r}; choose from {ARCHS}")


def sample_inputs(spec: WeightSpaceSpec, n: int, dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    import torch

    if spec.is_cnn:
        shape = spec.in_shape or (spec.widths[0], 16, 16)
        return torch.randn(n, *shape, generator=generator, dtype=dtype)
    return torch.rand(n, spec.widths[0], generator=generator, dtype=dtype) * 2 - 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", choices=ARCHS, default="mlp", help="sample architecture (default mlp)")
    p.add_argument("--activation", default="relu", help="relu, leaky_relu, tanh, sin, ... (default relu)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                   help="precision of nets, group elements and models (default float64)")
    p.add_argument("--trials", type=int, default=8, help="number of random group elements (default 8)")
    p.add_argument("--scale-lo", type=float, default=1e-2,
                   help="scale factors are log-uniform on [LO, HI] (ReLU nets; default 1e-2)")
    p.add_argument("--scale-hi", type=float, default=1e2, help="upper end of the scale range (default 1e2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the nets, inputs and group elements (default 0)")
    p.add_argument("--tol", type=float, default=None, help="tolerance (default 1e-10 float64, 1e-4 float32)")
    p.add_argument("--model", default=None, help="check a registered model's equivariance/invariance instead")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..groups import ScaleDist, sample_element
    from ..networks import build_module, features_from_modules, functional_forward

    dtype = getattr(torch, args.dtype)
    tol = args.tol if args.tol is not None else (1e-10 if dtype == torch.float64 else 1e-4)
    spec = arch_spec(args.arch, args.activation)
    scale = ScaleDist("loguniform", args.scale_lo, args.scale_hi)
    if args.model:
        from ..checks import check_model  # models arrive with the layers issue

        return check_model(args.model, spec, dtype=dtype, trials=args.trials, scale=scale, seed=args.seed, tol=tol)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    nets = [build_module(spec).to(dtype) for _ in range(args.trials)]
    feats = features_from_modules(nets)
    x = sample_inputs(spec, 32, dtype, gen)
    g = sample_element(spec, args.trials, gen, scale=scale, dtype=dtype)
    y = functional_forward(feats, x)
    y_g = functional_forward(g.act(feats), x)
    err = ((y_g - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1).clamp_min(1e-300)).max().item()
    print(f"architecture: {spec.describe()}")
    print(f"hidden symmetries: {', '.join(spec.neuron_symmetries()[1:-1])}")
    print(f"trials: {args.trials}, dtype: {args.dtype}, scales log-uniform on [{args.scale_lo:g}, {args.scale_hi:g}], tolerance {tol:g}")
    print(f"max relative function error: {err:.3e}")
    return 0 if err <= tol else 1
