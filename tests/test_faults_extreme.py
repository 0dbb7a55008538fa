"""Extreme weights (issue 11): float32 Monomial-NFN, its editor and canon-HNP on zoo CNNs moved by
group elements with scales from 1e-6 to 1e6 give finite outputs within 1e-3 (relative) of the unmoved
ones; weights of 1e-15 and subnormal 1e-40 give finite outputs and gradients."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import fault_utils as fu
from mnfn.data.zoo import ZooDataset
from mnfn.groups import ScaleDist, sample_element
from mnfn.models import build_model
from mnfn.weightspace import WeightSpaceFeatures

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread per test (tests/conftest.py)


@pytest.fixture(scope="module")
def zoo(request, tmp_path_factory) -> Path:
    """16 digits CNNs (ReLU and tanh), checkpoints at steps 0, 1, 2; cached across runs. Never modified:
    every fault works on a copy."""
    return fu.cached_zoo(request, tmp_path_factory)


# =================================================================================================
# extreme weights
# =================================================================================================

EXTREME_MODELS = {
    "monomial": dict(hidden=[8, 8, 4], head=[16]),
    "canon-hnp": dict(hidden=[8, 8, 4], head=[16]),
    "monomial-editor": dict(hidden=[8, 8]),
}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def _zoo_features(zoo: Path, activation: str) -> WeightSpaceFeatures:
    return ZooDataset(zoo, activation=activation, split="all").features[:12]  # steps 0 (zero biases), 1, 2


def _outputs(y: Any) -> list[torch.Tensor]:
    return [y] if isinstance(y, torch.Tensor) else list(y.weights) + list(y.biases)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("name", list(EXTREME_MODELS))
def test_extreme_group_elements_keep_outputs_finite_and_invariant(zoo, name, activation):
    feats = _zoo_features(zoo, activation)
    spec = feats.spec
    torch.manual_seed(0)
    model = build_model(name, spec, **EXTREME_MODELS[name]).eval()
    with torch.no_grad():
        y = model(feats)
    scale_ranges = [(1e-6, 1e-6), (1e6, 1e6), (1e-6, 1e6)] if activation == "relu" else [(1.0, 1.0)]
    for k, (lo, hi) in enumerate(scale_ranges):
        # Elements act in float64 (as the test-time transforms do), then the weights are float32:
        # hidden rows are multiplied by up to 1e6 and columns divided by up to 1e6 (ratios to 1e12).
        g = sample_element(spec, feats.batch_size, 100 + k, scale=ScaleDist("loguniform", lo, hi), dtype=torch.float64)
        moved = g.act(feats.to(torch.float64)).to(torch.float32)
        with torch.no_grad():
            y_g = model(moved)
        if name == "monomial-editor":  # equivariant: f(gU) = g f(U)
            target = _outputs(g.act(y.to(torch.float64)).to(torch.float32))
        else:
            target = _outputs(y)
        for got, want in zip(_outputs(y_g), target):
            assert torch.isfinite(got).all(), f"{name} {activation} scales [{lo:g}, {hi:g}]: non-finite output"
            assert _rel(got, want) < 1e-3, f"{name} {activation} scales [{lo:g}, {hi:g}]: error {_rel(got, want):.2e}"


@pytest.mark.parametrize("scale", [1e-15, 1e-40], ids=["1e-15", "subnormal-1e-40"])
@pytest.mark.parametrize("name", list(EXTREME_MODELS))
def test_tiny_weights_give_finite_outputs_and_gradients(zoo, name, scale):
    for activation in ("relu", "tanh"):
        base = _zoo_features(zoo, activation)
        # Whole nets scaled down, and (zoo-like) single rows/entries near zero inside normal nets.
        g = torch.Generator().manual_seed(0)
        mixed = base.map(lambda t: torch.where(torch.rand(t.shape, generator=g) < 0.3, t * scale, t))
        for feats in (base.map(lambda t: t * scale), mixed):
            torch.manual_seed(0)
            model = build_model(name, feats.spec, **EXTREME_MODELS[name])
            leaves = feats.map(lambda t: t.detach().clone().requires_grad_(True))
            out = model(leaves)
            outs = _outputs(out)
            assert all(torch.isfinite(o).all() for o in outs), f"{name} {activation} {scale:g}: non-finite output"
            loss = sum((o.double() ** 2).sum() for o in outs)
            loss.backward()
            for p_name, p in model.named_parameters():
                assert p.grad is None or torch.isfinite(p.grad).all(), f"{name} {activation} {scale:g}: {p_name} grad"
            for t in list(leaves.weights) + list(leaves.biases):
                assert t.grad is None or torch.isfinite(t.grad).all(), f"{name} {activation} {scale:g}: input grad"


def test_tiny_weights_train_one_step_without_nan(zoo):
    """One Adam step of Monomial-NFN on zoo nets whose weights are near 1e-15 stays finite (the paper's
    official code divides by weights and overflows here)."""
    feats = _zoo_features(zoo, "relu").map(lambda t: t * 1e-15)
    torch.manual_seed(0)
    model = build_model("monomial", feats.spec, **EXTREME_MODELS["monomial"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    target = torch.rand(feats.batch_size, 1)
    for _ in range(2):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(feats), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())
