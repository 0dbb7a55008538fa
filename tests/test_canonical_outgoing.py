"""``orient_last="outgoing"``: the last hidden layer oriented by its outgoing column. Keeps the
network function, is idempotent, invariant to the diagonal part of the monomial group (float64,
scales log-uniform over [1e-2, 1e2]), gives the stated canonical form, and reaches the canon models."""

import pytest
import torch

from mnfn.canonical import Canonicalize, apply_neuron_factors, canonicalize, sign_statistic
from mnfn.groups import ScaleDist, sample_element
from mnfn.models import build_model
from mnfn.networks import functional_forward
from mnfn.weightspace import Symmetry, WeightSpaceError

from test_canonical import SPECS, feat_rel_err, perm_part, random_features, random_inputs, rel_err

OUT = {"orient_last": "outgoing"}


@pytest.mark.parametrize("name", list(SPECS))
def test_preserves_function_and_is_idempotent(name: str) -> None:
    spec = SPECS[name]
    U = random_features(spec)
    gU = sample_element(spec, batch=3, generator=7).act(U)
    x = random_inputs(spec)
    ref = functional_forward(U, x)
    for V in (U, gU):
        c = canonicalize(V, **OUT)
        assert rel_err(functional_forward(c, x), ref) < 1e-10, name
        assert feat_rel_err(canonicalize(c, **OUT), c) < 1e-13, name


@pytest.mark.parametrize("name", list(SPECS))
def test_orbit_invariance_up_to_permutation(name: str) -> None:
    spec = SPECS[name]
    U = random_features(spec, batch=4)
    g = sample_element(spec, batch=4, generator=11)
    cg = canonicalize(g.act(U), **OUT)
    assert feat_rel_err(cg, perm_part(g).act(canonicalize(U, **OUT))) < 1e-12, name


@pytest.mark.parametrize("name", ["relu-mlp-L2", "relu-mlp-L4", "tanh-mlp", "siren", "relu-zoo-cnn", "tanh-zoo-cnn"])
def test_canonical_form(name: str) -> None:
    """Last hidden layer: unit outgoing column (scale) or positive statistic of it (sign); earlier
    hidden layers as with ``incoming``; a one-output SIREN ends with a positive last weight."""
    spec = SPECS[name]
    U = sample_element(spec, batch=2, generator=5).act(random_features(spec, batch=2))
    c = canonicalize(U, **OUT)
    inc = canonicalize(U)
    L = spec.num_layers
    u = c.weights[L - 1][:, 0].transpose(1, 2).flatten(2)  # (B, n, D) outgoing columns
    sym = spec.neuron_symmetries()[L - 1]
    if sym == Symmetry.SCALE:
        torch.testing.assert_close(u.norm(dim=-1), torch.ones(u.shape[:2], dtype=u.dtype), rtol=0, atol=1e-13)
    else:
        assert sym == Symmetry.SIGN and (sign_statistic(u) > 0).all()
    if name == "siren":
        assert (c.weights[L - 1] > 0).all()
    for i in range(L - 2):  # layers before the last hidden one are canonicalised as with "incoming"
        torch.testing.assert_close(c.weights[i], inc.weights[i], rtol=0, atol=0)


def test_factors_map_the_net_to_its_representative() -> None:
    for name in ("relu-mlp-L4", "siren", "relu-zoo-cnn"):
        U = random_features(SPECS[name])
        c, d = canonicalize(U, return_factors=True, **OUT)
        assert feat_rel_err(apply_neuron_factors(U, d), c) < 1e-13
        assert feat_rel_err(apply_neuron_factors(c, d, inverse=True), U) < 1e-13


def test_extreme_scales_and_finite_gradients() -> None:
    spec = SPECS["relu-mlp-L4"]
    U = random_features(spec, batch=4)
    g = sample_element(spec, batch=4, generator=2, scale=ScaleDist("loguniform", 1e-6, 1e6))
    cg = canonicalize(g.act(U), **OUT)
    assert feat_rel_err(cg, perm_part(g).act(canonicalize(U, **OUT))) < 1e-9
    # A zero outgoing column is left alone and its gradient stays finite.
    V = random_features(spec, batch=2).map(lambda t: t.clone())
    V.weights[-1][:, :, :, 0] = 0.0
    V = V.map(lambda t: t.requires_grad_())
    out = canonicalize(V, **OUT)
    sum(t.sum() for t in (*out.weights, *out.biases)).backward()
    assert all(torch.isfinite(t.grad).all() for t in (*V.weights, *V.biases))


def test_canon_models_take_it_and_stay_invariant() -> None:
    spec = SPECS["siren"]
    U = random_features(spec, batch=3)
    g = sample_element(spec, batch=3, generator=4)
    for name, kw in (("canon-np", dict(hidden=[4, 4], head=[8], fourier=4)), ("canon-hnp", dict(hidden=[4, 4], head=[8]))):
        torch.manual_seed(0)
        m = build_model(name, spec, orient_last="outgoing", dropout=0.0, **kw).double().eval()
        a, b = m(U), m(g.act(U))
        assert rel_err(b, a) < 1e-10, name
        # ... and it is not blind: a change that is no symmetry moves the output.
        assert rel_err(m(U.map(lambda t: t * 1.5)), a) > 1e-3, name
        assert "outgoing" in repr(m.canon)
    torch.manual_seed(0)
    e = build_model("canon-np-editor", spec, orient_last="outgoing", hidden=[4, 4], out_scale=1.0).double()
    torch.testing.assert_close(e(g.act(U)).flatten(), g.act(e(U)).flatten(), rtol=1e-10, atol=1e-12)


def test_bad_orientation_is_refused() -> None:
    spec = SPECS["siren"]
    with pytest.raises(WeightSpaceError, match="orient_last must be one of"):
        canonicalize(random_features(spec), orient_last="sideways")
    with pytest.raises(WeightSpaceError, match="orient_last"):
        Canonicalize(spec, orient_last=None)  # type: ignore[arg-type]
    with pytest.raises(WeightSpaceError, match="orient_last"):
        build_model("canon-np", spec, orient_last="up")
