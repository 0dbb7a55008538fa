"""INR models: the symmetries each one claims hold (float64, relative error 1e-10), and those it
does not claim are really broken (so the registry's labels are neither too weak nor too strong)."""

from __future__ import annotations

import pytest
import torch

from mnfn import WeightSpaceFeatures, siren_spec
from mnfn.checks import measure
from mnfn.groups import sample_element
from mnfn.models.inr import (INR_CLASSIFIERS, INR_EDITORS, FourierFeatures, HybridInrClassifier, TensorScale,
                             tensor_rms)
from mnfn.layers.equivariant import fold
from mnfn.models import MODELS, build_model, claimed_symmetries
from mnfn.weightspace import Symmetry, WeightSpaceError, mlp_spec

TOL = 1e-10
SPEC = siren_spec(1, hidden=6)  # 2 -> 6 -> 6 -> 1, sin(30 x)
SPEC_RGB = siren_spec(3, hidden=5, depth=3)  # L = 4, three outputs

# Small configs: the symmetry does not depend on the widths.
SMALL = {
    "monomial-inr": {"hidden": [4, 3], "head": [8], "out_dim": 3},
    "hybrid-inr": {"sign_channels": [3, 2], "mapping_size": 3, "hnp_hidden": [4, 3], "head": [8], "out_dim": 3},
    "monomial-editor": {"hidden": [4, 3], "out_scale": 1.0},
    "hybrid-editor": {"sign_channels": [3, 1], "mapping_size": 3, "hidden": [4, 3], "out_scale": 1.0},
    "mlp-editor": {"hidden": [16], "out_scale": 1.0},
}


def _feats(spec, batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return WeightSpaceFeatures.zeros_like_spec(spec, batch, 1, torch.float64).map(
        lambda t: 0.5 * torch.randn(t.shape, generator=g, dtype=torch.float64))


def _rel(a, b):
    if isinstance(a, WeightSpaceFeatures):
        return max(_rel(x, y) for x, y in zip(a.weights + a.biases, b.weights + b.biases))
    a, b = a.flatten(1), b.flatten(1)
    return ((a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-300)).max().item()


def _build(name, spec, **extra):
    torch.manual_seed(0)
    return build_model(name, spec, **{**SMALL.get(name, {}), **extra}).double().eval()


def _errors(model, spec, kind, seed=1, **sample_kw):
    f = _feats(spec)
    g = sample_element(spec, f.batch_size, seed, **sample_kw)
    with torch.no_grad():
        y, y_g = model(f), model(g.act(f))
    return _rel(y_g, g.act(y) if kind == "equivariant" else y)


@pytest.mark.parametrize("spec", [SPEC, SPEC_RGB], ids=["siren", "siren-rgb-L4"])
def test_monomial_classifier_invariant_to_the_whole_group(spec):
    model = _build("monomial-inr", spec)
    assert claimed_symmetries("monomial-inr", spec) == spec.neuron_symmetries()
    assert _errors(model, spec, "invariant") < TOL
    # not trivially: the output depends on the weights
    f = _feats(spec)
    with torch.no_grad():
        assert _rel(model(f * 2.0), model(f)) > 1e-3


@pytest.mark.parametrize("spec", [SPEC, SPEC_RGB], ids=["siren", "siren-rgb-L4"])
def test_sign_equivariant_editor_is_equivariant(spec):
    model = _build("monomial-editor", spec)
    assert claimed_symmetries("monomial-editor", spec) == spec.neuron_symmetries()
    assert _errors(model, spec, "equivariant") < TOL
    with torch.no_grad():
        assert model(_feats(spec)).flatten().abs().max() > 1e-6


@pytest.mark.parametrize("mode", ["hnp", "np"])
def test_hybrid_classifier_invariant_to_signs_and_permutations(mode):
    model = _build("hybrid-inr", SPEC, mode=mode)
    claims = claimed_symmetries("hybrid-inr", SPEC)
    assert claims[1:-1] == (Symmetry.SIGN, Symmetry.SIGN)
    assert _errors(model, SPEC, "invariant") < TOL  # sign flips x permutations together
    assert _errors(model, SPEC, "invariant", permute=False) < TOL  # sign flips alone
    assert _errors(model, SPEC, "invariant", flip_signs=False) < TOL  # permutations alone


def test_hybrid_classifier_needs_abs_for_its_sign_invariance():
    """The Fourier features after the sign-equivariant layers are what would break sign flips:
    without ``abs`` the same network is only permutation-invariant."""
    model = _build("hybrid-inr", SPEC)
    f = _feats(SPEC)
    g = sample_element(SPEC, f.batch_size, 3, permute=False)

    def no_abs(feats):
        xs = model.sign.forward_folded(fold(feats))
        xs = model.fourier.forward_folded(xs)
        return model.head(model.pool.forward_folded(model.perm.forward_folded(xs)))

    with torch.no_grad():
        assert _rel(no_abs(g.act(f)), no_abs(f)) > 1e-3


def test_hybrid_editor_is_permutation_equivariant_but_not_sign_equivariant():
    model = _build("hybrid-editor", SPEC)
    claims = claimed_symmetries("hybrid-editor", SPEC)
    assert Symmetry.SIGN not in claims and claims[1:-1] == (Symmetry.PERM, Symmetry.PERM)
    assert _errors(model, SPEC, "equivariant", flip_signs=False) < TOL
    assert _errors(model, SPEC, "equivariant", permute=False) > 1e-3  # honest label: signs are not respected
    assert "NOT sign-equivariant" in MODELS["hybrid-editor"].description


def test_mlp_editor_claims_nothing_and_has_no_symmetry():
    model = _build("mlp-editor", SPEC)
    assert set(claimed_symmetries("mlp-editor", SPEC)) == {Symmetry.FIXED}
    assert _errors(model, SPEC, "equivariant", flip_signs=False) > 1e-3
    out = model(_feats(SPEC))
    assert out.spec.weight_shapes() == SPEC.weight_shapes() and out.channels == 1


@pytest.mark.parametrize("name", ["monomial-inr", "monomial-editor"])
def test_tensor_scale_keeps_the_symmetry(name):
    f = _feats(SPEC, batch=6, seed=5)
    kind = MODELS[name].kind
    model = TensorScale(_build(name, SPEC), tensor_rms(f) * 3.0, rescale_output=kind == "equivariant").double()
    assert _errors(model, SPEC, kind) < TOL
    # the scales really rescale: U -> U / s in, Delta -> s * Delta out
    inner = model.model
    s = model.scales.double()
    scaled = WeightSpaceFeatures(tuple(w / s[2 * i] for i, w in enumerate(f.weights)),
                                 tuple(b / s[2 * i + 1] for i, b in enumerate(f.biases)), f.spec)
    with torch.no_grad():
        if kind == "invariant":
            assert torch.allclose(model(f), inner(scaled))
        else:
            assert torch.allclose(model(f).weights[1], inner(scaled).weights[1] * s[2])


def test_registry_mcheck_agrees():
    """``mnfn check --model`` (checks.measure) passes every INR model on a SIREN."""
    for name in ("monomial-inr", "hybrid-inr", "hybrid-editor", "mlp-editor"):
        r = measure(name, SPEC, trials=1)
        assert r.error_claimed <= TOL, (name, r)


def test_defaults_build_on_the_real_sirens():
    for out in (1, 3):
        spec = siren_spec(out)
        for name in (*INR_CLASSIFIERS, *INR_EDITORS):
            assert name in MODELS
        m = build_model("hybrid-inr", spec, out_dim=10)
        f = _feats(spec, batch=2).to(torch.float32)
        assert m(f).shape == (2, 10)


def test_hybrid_refuses_relu_nets():
    relu = mlp_spec([2, 4, 1], "relu")
    with pytest.raises(WeightSpaceError, match="odd activations"):
        HybridInrClassifier(relu)
    for name in ("hybrid-inr", "hybrid-editor"):
        assert "odd activations" in MODELS[name].unsupported(relu)
        assert MODELS[name].unsupported(SPEC) is None
        with pytest.raises(WeightSpaceError, match="cannot serve"):
            build_model(name, relu)


def test_fourier_features_are_entrywise_and_seeded():
    ff = FourierFeatures(SPEC, 2, mapping_size=3, scale=2.0, seed=7)
    ff2 = FourierFeatures(SPEC, 2, mapping_size=3, scale=2.0, seed=7)
    assert torch.equal(ff.B, ff2.B)
    f = _feats(SPEC).cat_channels(_feats(SPEC, seed=9)).to(torch.float32)
    xs = ff.forward_folded(fold(f))
    assert xs[2].shape == (4, 6, 6, 6)
    # entry (j, k) of the output depends only on entry (j, k) of the input
    x = fold(f)[2]
    proj = 2 * torch.pi * torch.einsum("bc,cm->bm", x[:, :, 1, 2], ff.B)
    assert torch.allclose(xs[2][:, :, 1, 2], torch.cat([proj.sin(), proj.cos()], 1), atol=1e-5)


def test_sincos_matches_sin_cos_and_its_gradient():
    """The fused [sin, cos] of the Fourier features: the same values as ``cat``, and a backward
    from the saved output that agrees with finite differences (float64)."""
    from mnfn.layers.fourier import sincos

    z = torch.randn(3, 4, 5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.equal(sincos(z), torch.cat([z.sin(), z.cos()], 1))
    assert torch.autograd.gradcheck(sincos, (z,))
    ff = FourierFeatures(SPEC, 1, mapping_size=3).double()
    x = fold(_feats(SPEC))
    xs = [t.clone().requires_grad_(True) for t in x]
    assert torch.autograd.gradcheck(lambda *ts: tuple(ff.forward_folded(list(ts))), tuple(xs))


@pytest.mark.parametrize("train_mode", [False, True])
def test_feature_norm_keeps_invariance(train_mode):
    from mnfn.models.inr import HeadNorm, add_feature_norm

    model = add_feature_norm(_build("monomial-inr", SPEC)).double()
    assert isinstance(model.head[0], HeadNorm)
    model.train(train_mode)
    if train_mode:
        for m in model.head:  # dropout would make two calls differ; the norm is what is tested
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    assert _errors(model, SPEC, "invariant") < TOL
    model.train()
    assert model(_feats(SPEC, batch=1)).shape == (1, 3)  # a training batch of one does not fail
    with pytest.raises(WeightSpaceError, match="no MLP head"):
        add_feature_norm(_build("monomial-editor", SPEC))


def test_permutation_models_with_fourier_inputs():
    """hnp/np with NFN's Fourier input encoding: still invariant to hidden permutations (float64),
    not to sign flips (the encoding is not odd), and refused for the monomial model."""
    torch.manual_seed(0)
    f = _feats(SPEC, batch=3, seed=2)
    for name in ("hnp", "np"):
        model = build_model(name, SPEC, fourier=8, fourier_scale=3.0, out_dim=10).double().eval()
        y = model(f)
        for k in range(3):
            g = sample_element(SPEC, 3, generator=torch.Generator().manual_seed(k), scale=None, flip_signs=False)
            assert _rel(model(g.act(f)), y) <= TOL, name
        g = sample_element(SPEC, 3, generator=torch.Generator().manual_seed(5), scale=None, permute=False)
        assert _rel(model(g.act(f)), y) > 1e-6, name  # sign flips are not its symmetry
    with pytest.raises(WeightSpaceError, match="fourier features break"):
        build_model("monomial", SPEC, fourier=8)
