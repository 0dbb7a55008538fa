"""Probe-feature INR classifiers (``monomial-inr-probe``, ``probe-mlp``): exact invariance in float64,
sensitivity to changes that are not symmetries, and probes that equal the SIREN's rendering."""

from __future__ import annotations

import pytest
import torch

from symmetry_utils import randn_features, rel_err

from mnfn.data.inr import make_coords
from mnfn.groups import sample_element
from mnfn.models.probes import ProbeClassifier, SirenProbe
from mnfn.models import build_model
from mnfn.tasks.classify_inr import build_inr_model
from mnfn.weightspace import WeightSpaceError, mlp_spec, siren_spec
from mnfn.networks import functional_forward

SPECS = {"siren-L3": siren_spec(1, hidden=8), "siren-rgb-L4": siren_spec(3, hidden=6, depth=3),
         "tanh-mlp-L2": mlp_spec([3, 5, 2], "tanh")}


@pytest.mark.parametrize("name", ["monomial-inr-probe", "probe-mlp"])
@pytest.mark.parametrize("arch", list(SPECS))
def test_invariant_to_sign_flips_and_permutations(name, arch):
    spec = SPECS[arch]
    torch.manual_seed(0)
    model = build_model(name, spec, out_dim=5, probe_grid=5).double().eval()
    if hasattr(model, "set_input_scales"):
        model.set_input_scales(torch.linspace(0.5, 2.0, 2 * spec.num_layers))
    f = randn_features(spec, batch=6, seed=1).map(lambda t: 0.3 * t)
    y = model(f)
    for k in range(3):
        g = sample_element(spec, 6, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
        assert rel_err(model(g.act(f)), y) <= 1e-10


@pytest.mark.parametrize("name", ["monomial-inr-probe", "probe-mlp"])
def test_changes_under_changes_that_are_not_symmetries(name):
    """Doubling one hidden neuron's incoming weights and bias (a scaling: not a symmetry of a sine
    net) or perturbing one weight changes the function and so the output."""
    spec = SPECS["siren-L3"]
    torch.manual_seed(0)
    model = build_model(name, spec, out_dim=5, probe_grid=5).double().eval()
    f = randn_features(spec, batch=2, seed=2).map(lambda t: 0.3 * t)
    y = model(f)
    w = [t.clone() for t in f.weights]
    b = [t.clone() for t in f.biases]
    w[0][:, :, 3] *= 2.0
    b[0][:, :, 3] *= 2.0
    scaled = type(f)(tuple(w), tuple(b), spec)
    assert rel_err(model(scaled), y) > 1e-3
    w2 = [t.clone() for t in f.weights]
    w2[1][:, 0, 2, 5] += 0.1
    assert rel_err(model(type(f)(tuple(w2), f.biases, spec)), y) > 1e-4


def test_probe_output_is_the_rendering_on_the_fitting_grid():
    spec = siren_spec(1, hidden=8)
    f = randn_features(spec, batch=3, seed=3).map(lambda t: 0.2 * t)
    probe = SirenProbe(spec, grid=7).double()
    got = probe(f)[:, :49]
    want = functional_forward(f, make_coords(7, 7, dtype=torch.float64))[..., 0]
    assert torch.allclose(got, want, atol=1e-12)
    assert probe(f).shape == (3, 49 * 3)  # output + mean |h| of two hidden layers


def test_build_inr_model_scales_inside_and_probes_see_raw_weights():
    spec = siren_spec(1, hidden=8)
    scales = torch.full((6,), 3.0)
    m = build_inr_model("monomial-inr-probe", spec, {"feature_norm": True}, scales, out_dim=4)
    assert isinstance(m, ProbeClassifier) and torch.equal(m.input_scales, scales)
    assert type(m.head[0]).__name__ == "HeadNorm"
    with pytest.raises(WeightSpaceError, match="positive"):
        m.set_input_scales(torch.zeros(6))
    with pytest.raises(WeightSpaceError, match="odd hidden activations"):
        SirenProbe(mlp_spec([2, 4, 1], "relu"))
    with pytest.raises(WeightSpaceError):
        build_model("probe-mlp", mlp_spec([2, 4, 1], "relu"))


# --- monomial-probe: any MLP or CNN, both groups -------------------------------------------------------

from symmetry_utils import SCALES  # noqa: E402

from mnfn.weightspace import zoo_cnn_spec  # noqa: E402

ANY_SPECS = {"relu-mlp-L2": mlp_spec([3, 5, 2], "relu"), "relu-mlp-L4": mlp_spec([3, 5, 6, 4, 2], "relu"),
             "tanh-mlp-L3": mlp_spec([3, 5, 6, 2], "tanh"),
             "relu-zoo-cnn": zoo_cnn_spec("relu", channels=6, image_size=8),
             "tanh-zoo-cnn": zoo_cnn_spec("tanh", channels=6, image_size=8)}


@pytest.mark.parametrize("arch", list(ANY_SPECS))
def test_monomial_probe_invariant_to_the_whole_group(arch):
    spec = ANY_SPECS[arch]
    torch.manual_seed(0)
    model = build_model("monomial-probe", spec, num_probes=6).double().eval()
    f = randn_features(spec, batch=4, seed=5)
    y = model(f)
    for k in range(3):
        g = sample_element(spec, 4, generator=torch.Generator().manual_seed(k), scale=SCALES, dtype=torch.float64)
        assert rel_err(model(g.act(f)), y) <= 1e-10, arch


def test_monomial_probe_sees_what_monomial_nfn_cannot():
    """Doubling one hidden ReLU neuron's incoming weights and bias, without compensating its outgoing
    weights, changes the net's function; Monomial-NFN's output does not move, monomial-probe's does."""
    spec = ANY_SPECS["relu-mlp-L4"]
    torch.manual_seed(0)
    nfn = build_model("monomial", spec).double().eval()
    probe = build_model("monomial-probe", spec, num_probes=8).double().eval()
    f = randn_features(spec, batch=2, seed=6)
    w = [t.clone() for t in f.weights]
    b = [t.clone() for t in f.biases]
    w[1][:, :, 2] *= 2.0
    b[1][:, :, 2] *= 2.0
    changed = type(f)(tuple(w), tuple(b), spec)
    x = torch.rand(16, 3, dtype=torch.float64) * 2 - 1
    assert rel_err(functional_forward(changed, x), functional_forward(f, x)) > 1e-3  # another function
    assert rel_err(nfn(changed), nfn(f)) < 1e-12  # Monomial-NFN: blind to it
    assert rel_err(probe(changed), probe(f)) > 1e-4  # the probe model: not
