"""Opt-in mixed precision of the layers' large products (``MNFN_PRODUCT_PRECISION``,
``kernels.set_product_precision``): bfloat16 operands, float32 results, close to the float32 model;
float64 never affected; trainers set and restore it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mnfn.bench import random_batch
from mnfn.layers import kernels
from mnfn.models import build_model
from mnfn.training.train import ArrayData, Trainer
from mnfn.weightspace import siren_spec, zoo_cnn_spec


def _tensors(out) -> list[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else [t for o in out for t in _tensors(o)]


def _run(model, x, dtype):
    model.zero_grad(set_to_none=True)
    out = torch.cat([t.flatten() for t in _tensors(model(x))])
    (out.double() ** 2).sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return out.detach(), grads


MODELS = [("monomial", "zoo", {"out_dim": 1}), ("np", "zoo", {"out_dim": 1}), ("hnp", "zoo", {"out_dim": 1}),
          ("np-editor", "siren", {"hidden": [32, 32, 32]}), ("monomial-inr", "siren", {"out_dim": 10})]


@pytest.mark.parametrize("conv", ["0", "1"])
@pytest.mark.parametrize("name,kind,cfg", MODELS)
def test_bfloat16_products_are_close_to_float32(name, kind, cfg, conv, monkeypatch):
    monkeypatch.setattr(kernels, "_LOW_MIN_MACS", 1)  # every product, whatever its size
    monkeypatch.setattr(kernels, "CONV_PRODUCTS", conv)
    if conv == "1":  # every large-enough block as a 1x1 convolution, whatever the allocator
        monkeypatch.setattr(kernels, "allocator_keeps_memory", lambda: True)
    spec = zoo_cnn_spec("relu") if kind == "zoo" else siren_spec()
    torch.manual_seed(0)
    model = build_model(name, spec, **cfg).eval()
    x = random_batch(spec, 4, torch.float32, 0)
    out32, g32 = _run(model, x, torch.float32)
    with kernels.products_in("bfloat16"):
        out16, g16 = _run(model, x, torch.bfloat16)
    assert kernels.product_precision() == "float32"
    assert out16.dtype == torch.float32 and all(g.dtype == torch.float32 for g in g16)
    rel = ((out16 - out32).norm() / out32.norm()).item()
    assert 0 < rel < 2e-2  # it did run in bfloat16, and stays close
    a, b = torch.cat([g.flatten() for g in g16]), torch.cat([g.flatten() for g in g32])
    assert ((a - b).norm() / b.norm()).item() < 2e-2  # all gradients together (single tiny ones cancel)


def test_float64_never_takes_the_low_precision():
    spec = zoo_cnn_spec("relu", channels=6, image_size=8)
    torch.manual_seed(0)
    model = build_model("monomial", spec, out_dim=1).double().eval()
    x = random_batch(spec, 3, torch.float64, 0)
    ref, gref = _run(model, x, torch.float64)
    with kernels.products_in("bfloat16"):
        out, g = _run(model, x, torch.float64)
    assert torch.equal(out, ref) and all(torch.equal(a, b) for a, b in zip(g, gref))


def test_precision_setting_is_checked_and_restored():
    with pytest.raises(ValueError, match="product precision must be one of"):
        kernels.set_product_precision("fp8")
    with pytest.raises(RuntimeError):
        with kernels.products_in("bfloat16"):
            assert kernels.product_precision() == "bfloat16"
            raise RuntimeError("inside")
    assert kernels.product_precision() == "float32"
    env = dict(os.environ, MNFN_PRODUCT_PRECISION="half")
    proc = subprocess.run([sys.executable, "-c", "import mnfn.layers"], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "MNFN_PRODUCT_PRECISION must be one of" in proc.stderr


def test_trainer_trains_in_bfloat16_and_restores_the_setting(tmp_path):
    spec = zoo_cnn_spec("relu", channels=6, image_size=8)
    x = random_batch(spec, 24, torch.float32, 0)
    y = torch.rand(24, 1)
    with pytest.raises(ValueError, match="product_precision must be one of"):
        Trainer(build_model("monomial", spec, out_dim=1), F.mse_loss, ArrayData(x, y), product_precision="int8")
    seen = []
    real = kernels._low_dtype
    torch.manual_seed(0)
    model = build_model("monomial", spec, out_dim=1)
    kernels._LOW_MIN_MACS, min_macs = 1, kernels._LOW_MIN_MACS
    trainer = Trainer(model, F.mse_loss, ArrayData(x, y), ArrayData(x[:8], y[:8]), epochs=2, batch_size=8,
                      progress=False, out_dir=tmp_path, product_precision="bfloat16")
    try:
        kernels._low_dtype = lambda t, w: seen.append(real(t, w)) or real(t, w)
        res = trainer.fit()
        ev = trainer.evaluate(ArrayData(x, y))
    finally:
        kernels._low_dtype, kernels._LOW_MIN_MACS = real, min_macs
    assert res.completed and torch.isfinite(torch.tensor(ev["loss"]))
    assert seen and all(d == torch.bfloat16 for d in seen)  # every float32 product, training and evaluation
    kernels.set_product_precision("bfloat16")
    try:  # small products stay float32 (casting them costs what bfloat16 saves)
        assert kernels._low_dtype(torch.zeros(24, 1, 4), torch.zeros(4, 1)) is None
        assert kernels._low_dtype(torch.zeros(2, 256, 256), torch.zeros(64, 256)) == torch.bfloat16
    finally:
        kernels.set_product_precision("float32")
    assert kernels.product_precision() == "float32"
