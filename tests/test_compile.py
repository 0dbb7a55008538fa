"""Execution paths of the equivariant layers agree: the grouped batched matmuls the layers run,
the literal per-term einsums of the term table, and ``torch.compile`` of a whole model."""

from __future__ import annotations

import pytest
import torch

from mnfn import mlp_spec
from mnfn.bench import compile_available, compile_model, random_batch
from mnfn.layers import EquivariantLinear, fold, kernels
from mnfn.models import build_model
from symmetry_utils import SPECS, randn_features


CASES = [(name, preset, True) for name in SPECS for preset in ("monomial", "hnp", "np")]
CASES += [(name, preset, False) for name in ("relu-mlp-L3", "tanh-mlp-L2", "relu-conv-last") for preset in ("monomial", "hnp")]


@pytest.mark.parametrize("wgrad", ["per-net", "one-gemm"])
@pytest.mark.parametrize("name,preset,bias", CASES)
def test_grouped_execution_equals_per_term_einsums(name, preset, bias, wgrad, monkeypatch):
    # both ways the shared-weight matmul computes its weight gradient (chosen by the hidden size)
    monkeypatch.setattr(kernels, "_SMALL_HIDDEN", 0 if wgrad == "per-net" else 10 ** 9)
    spec = SPECS[name]
    layer = EquivariantLinear(spec, 2, 3, preset, bias=bias).double()
    with torch.no_grad():
        for p in layer.params:
            p.normal_()
    _assert_grouped_equals_einsums(layer, fold(randn_features(spec, 3, 2)))


def _assert_grouped_equals_einsums(layer: EquivariantLinear, inputs: list) -> None:
    """The grouped execution gives the per-term einsums' outputs and gradients (float64, 1e-12)."""
    xs = [t.requires_grad_() for t in inputs]
    fast, ref = layer.forward_folded(xs), layer.forward_reference(xs)
    for a, b in zip(fast, ref):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    w = [torch.randn_like(b) for b in ref]
    g_fast = torch.autograd.grad(sum((a * c).sum() for a, c in zip(fast, w)), [*xs, *layer.parameters()])
    g_ref = torch.autograd.grad(sum((b * c).sum() for b, c in zip(ref, w)), [*xs, *layer.parameters()])
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("preset", ["hnp", "np"])
def test_pooled_sources_scaled_on_either_operand(preset):
    # a group reading pooled sums takes its 1/N on the matrix or on the input, whichever is smaller
    # (it depends on the batch): both ways give the per-term einsums' outputs and gradients
    spec = SPECS["relu-zoo-cnn"]
    layer = EquivariantLinear(spec, 2, 3, preset).double()
    scaled = [g for gi, g in enumerate(layer.groups) if layer._scaled[gi]]
    for batch in (1, 40):
        on_input = [batch * g.hidden_size < g.out_features for g in scaled]
        assert any(on_input) and (batch == 1 or not all(on_input))
        _assert_grouped_equals_einsums(layer, fold(randn_features(spec, batch, 2)))


@pytest.mark.parametrize("name,preset", [("relu-mlp-L3", "monomial"), ("relu-mlp-L3", "hnp"), ("relu-conv-last", "np"),
                                         ("zoo", "monomial"), ("zoo", "hnp")])
def test_float32_convolution_products_equal_the_gemms(name, preset, monkeypatch):
    # float32 on the CPU runs the products as 1x1 convolutions (kernels.CONV_PRODUCTS); the same
    # layer with the batched GEMMs gives the same outputs and gradients to float32 rounding
    from mnfn.weightspace import zoo_cnn_spec
    monkeypatch.setattr(kernels, "_CONV_MIN_K", 1)  # every block, whatever its width
    monkeypatch.setattr(kernels, "_CONV_MIN_MACS", 1)
    monkeypatch.setattr(kernels, "allocator_keeps_memory", lambda: True)
    calls = []
    real = kernels._conv_product
    monkeypatch.setattr(kernels, "_conv_product", lambda *a: calls.append(1) or real(*a))
    spec = zoo_cnn_spec("relu", channels=6, image_size=8) if name == "zoo" else SPECS[name]
    layer = EquivariantLinear(spec, 3, 4, preset).float()
    xs = [t.float().requires_grad_() for t in fold(randn_features(spec, 3, 3))]
    w = None
    results = []
    for conv in ("1", "0"):
        monkeypatch.setattr(kernels, "CONV_PRODUCTS", conv)
        out = layer.forward_folded(xs)
        if w is None:
            w = [torch.randn_like(y) for y in out]
        grads = torch.autograd.grad(sum((y * c).sum() for y, c in zip(out, w)), [*xs, *layer.parameters()])
        results.append(([y.detach() for y in out], grads))
    assert calls or not torch.backends.mkldnn.is_available()
    for a, b in zip(results[0][0] + list(results[0][1]), results[1][0] + list(results[1][1])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("vendor,family,flags,setting,expected", [
    ("AuthenticAMD", 26, {"avx2", "avx512f"}, "auto", True),   # Zen 5: MKL keeps to AVX2, oneDNN does not
    ("AuthenticAMD", 25, {"avx2", "avx512f"}, "auto", False),  # Zen 4: half-width AVX-512, GEMMs faster
    ("AuthenticAMD", 26, {"avx2"}, "auto", False),             # no AVX-512: nothing for oneDNN to gain
    ("GenuineIntel", 6, {"avx2", "avx512f"}, "auto", False),   # MKL uses AVX-512 itself
    ("HygonGenuine", 26, {"avx512f"}, "auto", False),          # measured on AMD only
    ("", -1, set(), "auto", False),                            # no /proc/cpuinfo (macOS, Windows)
    ("GenuineIntel", 6, {"avx512f"}, "1", True),
    ("AuthenticAMD", 26, {"avx512f"}, "0", False),
])
def test_convolution_products_are_chosen_per_cpu(vendor, family, flags, setting, expected, monkeypatch):
    monkeypatch.setattr(kernels, "_cpu_info", lambda: (vendor, family, flags))
    monkeypatch.setattr(kernels, "_CONV_HELPS", None)
    monkeypatch.setattr(kernels, "CONV_PRODUCTS", setting)
    assert kernels.conv_products_help() is expected


def test_cpu_info_reads_this_machine():
    vendor, family, flags = kernels._cpu_info()
    assert isinstance(vendor, str) and isinstance(family, int) and isinstance(flags, set)
    if vendor:  # Linux: /proc/cpuinfo names the family and the flags
        assert family >= 0 and flags


def test_convolution_products_setting_is_checked():
    import os
    import subprocess
    import sys
    env = dict(os.environ, MNFN_CONV_PRODUCTS="yes")
    proc = subprocess.run([sys.executable, "-c", "import mnfn.layers"], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "MNFN_CONV_PRODUCTS must be auto, 0 or 1, got 'yes'" in proc.stderr


def test_reductions_are_shared_and_products_accumulate_in_place():
    # the execution plan the equality test above checks: on a hidden conv weight of HNP the total is
    # taken from the row sums, and the full product is added in place onto the broadcast parts
    from mnfn.weightspace import zoo_cnn_spec
    layer = EquivariantLinear(zoo_cnn_spec("relu"), 2, 3, "hnp").double()
    derived = [(key, base) for key, base, _ in layer._reductions if base is not None]
    assert derived and all(set(base[1]) < set(key[1]) for key, base in derived)
    assert layer._pair_sums  # row and column sums of the hidden conv weights in one pass
    assert any(layer._accumulate) and layer._early_bias
    order = [layer._accumulate[gi] for gi in layer._order]
    assert order == sorted(order)  # accumulating groups run after every group they add onto
    xs = [t.requires_grad_() for t in fold(randn_features(zoo_cnn_spec("relu"), 2, 2))]
    first = [y.detach().clone() for y in layer.forward_folded(xs)]
    again = layer.forward_folded(xs)  # nothing the first call wrote in place is reused
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_groups_cover_every_term_once():
    for spec in SPECS.values():
        for preset in ("monomial", "hnp", "np"):
            layer = EquivariantLinear(spec, 1, 2, preset)
            in_groups = [n for g in layer.groups for row in g.blocks for n in row if n is not None]
            constants = [n for n, t in enumerate(layer.terms) if t.source is None]
            assert sorted(in_groups + constants) == list(range(len(layer.terms)))
            assert sum(g.zero_blocks for g in layer.groups) == 0  # no wasted work on these specs


@pytest.mark.slow
def test_compiled_model_equals_eager():
    ok, why = compile_available()
    if not ok:
        pytest.skip(f"torch.compile unavailable here: {why}")
    torch.set_num_threads(1)
    spec = mlp_spec([3, 5, 2], "relu")
    torch.manual_seed(0)
    model = build_model("monomial", spec, hidden=(4, 3), head=(8,))
    x = random_batch(spec, 4, torch.float32, seed=1)
    compiled = compile_model(model)
    y_c = compiled(x)
    y_e = model(x)
    torch.testing.assert_close(y_c, y_e, rtol=1e-5, atol=1e-6)
    params = list(model.parameters())  # some are empty placeholders (pooling of unnormalised tensors)
    g_c = torch.autograd.grad(y_c.square().sum(), params, allow_unused=True)
    g_e = torch.autograd.grad(model(x).square().sum(), params, allow_unused=True)
    assert sum(g is not None for g in g_e) > len(params) // 2
    for p, a, b in zip(params, g_c, g_e):
        if a is None or b is None:
            assert a is None and b is None or p.numel() == 0
            continue
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
