"""Numerical symmetry checks of registered models (used by ``mnfn check --model`` and the tests)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .groups import MonomialElement, ScaleDist, sample_element
from .models import MODELS, build_model, claimed_symmetries
from .weightspace import Symmetry, WeightSpaceFeatures, WeightSpaceSpec
from .networks import build_module, features_from_modules

__all__ = ["SymmetryReport", "symmetry_error", "check_model", "random_features"]


def _rel(a: Tensor, b: Tensor) -> Tensor:
    """Per batch item ``||a - b|| / ||b||``."""
    a, b = a.flatten(1), b.flatten(1)
    return (a - b).norm(dim=1) / b.norm(dim=1).clamp_min(torch.finfo(b.dtype).tiny)


def random_features(spec: WeightSpaceSpec, batch: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> WeightSpaceFeatures:
    """Features of ``batch`` freshly initialised networks of ``spec`` (realistic magnitudes)."""
    torch.manual_seed(seed)
    return features_from_modules([build_module(spec) for _ in range(batch)], dtype=dtype)


def symmetry_error(model: torch.nn.Module, features: WeightSpaceFeatures, g: MonomialElement, kind: str) -> float:
    """Max relative error of ``f(gU) = f(U)`` (invariant) or ``f(gU) = g f(U)`` (equivariant)."""
    with torch.no_grad():
        y = model(features)
        y_g = model(g.act(features))
        if kind == "equivariant":
            target = g.act(y)
            errs = torch.stack([_rel(a, b) for a, b in zip(y_g.weights + y_g.biases, target.weights + target.biases)])
            return errs.max().item()
        return _rel(y_g, y).max().item()


@dataclass
class SymmetryReport:
    model: str
    kind: str
    claimed: tuple[str, ...]
    full: tuple[str, ...]
    error_full: float  # under the spec's whole monomial group
    error_claimed: float  # under the subgroup the model claims
    claims_full: bool


def _restrict(full: tuple[str, ...], claimed: tuple[str, ...]) -> tuple[str, ...]:
    """The part of the full group a model claims: drop scale/sign where only permutations are claimed."""
    out = []
    for f, c in zip(full, claimed):
        if c == Symmetry.FIXED:
            out.append(Symmetry.FIXED)
        elif c == f:
            out.append(f)
        else:
            out.append(Symmetry.PERM)
    return tuple(out)


def measure(name: str, spec: WeightSpaceSpec, dtype: torch.dtype = torch.float64, trials: int = 8,
            scale: ScaleDist = ScaleDist(), seed: int = 0) -> SymmetryReport:
    torch.manual_seed(seed)
    model = build_model(name, spec).to(dtype).eval()
    feats = random_features(spec, trials, dtype, seed)
    full = spec.neuron_symmetries()
    claimed = _restrict(full, claimed_symmetries(name, spec))
    kind = MODELS[name].kind
    g_full = sample_element(spec, trials, seed + 1, scale=scale, symmetries=full, dtype=dtype)
    if all(c == Symmetry.FIXED for c in claimed[1:-1]):
        err_claimed = 0.0  # claims nothing: nothing to fail
    else:
        g_claim = sample_element(spec, trials, seed + 2, scale=scale, symmetries=claimed, dtype=dtype)
        err_claimed = symmetry_error(model, feats, g_claim, kind)
    err_full = symmetry_error(model, feats, g_full, kind)
    return SymmetryReport(name, kind, claimed, full, err_full, err_claimed, claimed == full)


def check_model(name: str, spec: WeightSpaceSpec, dtype: torch.dtype = torch.float64, trials: int = 8,
                scale: ScaleDist = ScaleDist(), seed: int = 0, tol: float = 1e-10) -> int:
    """Print a model's symmetry errors; return 0 unless a *claimed* symmetry fails (> ``tol``)."""
    r = measure(name, spec, dtype, trials, scale, seed)
    word = "equivariance" if r.kind == "equivariant" else "invariance"
    print(f"model: {name} ({MODELS[name].description})")
    print(f"architecture: {spec.describe()}")
    print(f"group of the weights (hidden layers): {', '.join(r.full[1:-1])}")
    print(f"symmetry the model claims (hidden layers): {', '.join(r.claimed[1:-1])}")
    print(f"max relative {word} error under the claimed group: {r.error_claimed:.3e} (tolerance {tol:g})")
    if not r.claims_full:
        print(f"note: {name} does not claim the full monomial group; the error below is measured, not a failure")
    ok = r.error_claimed <= tol
    if not ok:
        print(f"FAILED: {name} breaks a symmetry it claims")
    print(f"max relative {word} error: {r.error_full:.3e}")
    return 0 if ok else 1
