"""What Monomial-NFN cannot see, shown exactly (float64), and which models do see it.

The complete linear layer of the monomial group maps an entry of a hidden-to-hidden weight
``W(i)_{jk}`` (both neurons hidden, so it carries ``d_j / d_k``: no other entry carries the same
factor for every group element) only to itself, and the pooling averages over all entries. So on a
net with two hidden layers, Monomial-NFN's output does not change when the entries of ``W(2)`` are
shuffled among themselves, kernels kept whole: a change that is no symmetry and changes the net's
function a lot. StatNN is blind to it too (per-tensor statistics); the permutation models, whose
layers sum rows and columns, and the probe models, which read the function, are not.
This is what keeps ``monomial-inr`` near StatNN on SIRENs (docs/results.md, experiment 2).
``monomial-gmn`` (message passing along the wiring) is exactly invariant to the whole group and sees it.
"""

from __future__ import annotations

import pytest
import torch

from mnfn.models import build_model
from mnfn.weightspace import WeightSpaceFeatures, siren_spec, zoo_cnn_spec
from mnfn.networks import functional_forward
from symmetry_utils import randn_features, rel_err

SPECS = {"siren": siren_spec(1, hidden=8), "relu-zoo-cnn": zoo_cnn_spec("relu", channels=6, image_size=8),
         "tanh-zoo-cnn": zoo_cnn_spec("tanh", channels=6, image_size=8)}
BLIND = {"siren": ["monomial-inr", "monomial", "statnn"],
         "relu-zoo-cnn": ["monomial", "statnn"], "tanh-zoo-cnn": ["monomial", "statnn"]}
SEEING = {"siren": ["hybrid-inr", "hnp", "np", "monomial-inr-probe", "monomial-gmn"],
          "relu-zoo-cnn": ["hnp", "np", "canon-hnp", "monomial-probe", "monomial-gmn"],
          "tanh-zoo-cnn": ["hnp", "np", "monomial-probe", "monomial-gmn"]}
SMALL = {"monomial-inr": dict(hidden=(4, 3), head=(8,)), "hybrid-inr": dict(sign_channels=(3, 1), mapping_size=3,
         hnp_hidden=(4,), head=(8,)), "monomial-inr-probe": dict(hidden=(4, 3), head=(8,))}


def _shuffle_hidden_weights(f: WeightSpaceFeatures, seed: int = 0) -> WeightSpaceFeatures:
    """``W(2)``'s (out, in) positions shuffled, each kernel moved whole; everything else kept."""
    w = f.weights[1]
    B, C, n_out, n_in = w.shape[:4]
    perm = torch.randperm(n_out * n_in, generator=torch.Generator().manual_seed(seed))
    flat = w.reshape(B, C, n_out * n_in, *w.shape[4:])[:, :, perm]
    return WeightSpaceFeatures((f.weights[0], flat.reshape(w.shape), *f.weights[2:]), f.biases, f.spec)


def _inputs(spec, n: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if spec.is_cnn:
        return torch.randn(n, *spec.in_shape, generator=g, dtype=torch.float64)
    return torch.rand(n, spec.layers[0].n_in, generator=g, dtype=torch.float64) * 2 - 1


@pytest.mark.parametrize("arch", list(SPECS))
def test_shuffling_hidden_to_hidden_weights_is_invisible_to_monomial_nfn(arch):
    spec = SPECS[arch]
    f = randn_features(spec, batch=3, seed=4)
    g = _shuffle_hidden_weights(f)
    x = _inputs(spec)
    assert rel_err(functional_forward(g, x), functional_forward(f, x)) > 0.1  # another function
    torch.manual_seed(0)
    for name in BLIND[arch]:
        model = build_model(name, spec, **SMALL.get(name, {})).double().eval()
        with torch.no_grad():
            assert rel_err(model(g), model(f)) < 1e-12, name
    for name in SEEING[arch]:
        model = build_model(name, spec, **SMALL.get(name, {})).double().eval()
        with torch.no_grad():
            assert rel_err(model(g), model(f)) > 1e-5, name


def test_monomial_gmn_sees_an_uncompensated_relu_rescaling():
    """Doubling one hidden ReLU neuron's incoming weights and bias without compensating its outgoing
    weights changes the net's function: Monomial-NFN does not move, monomial-gmn does."""
    from mnfn.weightspace import mlp_spec

    spec = mlp_spec([3, 5, 6, 4, 2], "relu")
    torch.manual_seed(0)
    nfn = build_model("monomial", spec).double().eval()
    gmn = build_model("monomial-gmn", spec).double().eval()
    f = randn_features(spec, batch=2, seed=6)
    w, b = [t.clone() for t in f.weights], [t.clone() for t in f.biases]
    w[1][:, :, 2] *= 2.0
    b[1][:, :, 2] *= 2.0
    changed = WeightSpaceFeatures(tuple(w), tuple(b), spec)
    x = _inputs(spec)
    assert rel_err(functional_forward(changed, x), functional_forward(f, x)) > 1e-3
    with torch.no_grad():
        assert rel_err(nfn(changed), nfn(f)) < 1e-12
        assert rel_err(gmn(changed), gmn(f)) > 1e-5


def test_monomial_gmn_probe_init_starts_as_the_siren_and_stays_invariant():
    """With ``probe_grid`` the message passing starts as the SIREN evaluated on a grid (its readout is
    the rendering, up to the mean's 1/n and the output bias) and is exactly invariant in float64."""
    from mnfn.groups import sample_element
    from mnfn.layers.equivariant import fold
    from mnfn.models.probes import probe_points

    spec = siren_spec(1, hidden=8)
    torch.manual_seed(0)
    model = build_model("monomial-gmn", spec, probe_grid=3, out_dim=4, head=(8,)).double().eval()
    f = randn_features(spec, batch=3, seed=1).map(lambda t: 0.1 * t)
    xs = fold(f)
    h = model.phis[0](torch.cat([xs[0].permute(0, 2, 1, 3).reshape(3, 8, -1), xs[1].transpose(1, 2)], dim=-1))
    h = model.phis[1](torch.cat([model._message(1, xs[2], h), xs[3].transpose(1, 2)], dim=-1))
    rendering = model._message(2, xs[4], h).reshape(3, -1) * 8 + xs[5].reshape(3, -1)
    expected = functional_forward(f, probe_points(3, 2).double()).reshape(3, -1)
    assert rel_err(rendering, expected) < 1e-5  # float32 initial weights
    g = sample_element(spec, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert rel_err(model(g.act(f)), model(f)) <= 1e-10
    with pytest.raises(Exception, match="probe_grid needs a SIREN"):
        build_model("monomial-gmn", SPECS["relu-zoo-cnn"], probe_grid=3)


@pytest.mark.parametrize("arch", ["siren", "relu-zoo-cnn", "tanh-zoo-cnn", "relu-mlp-L4", "tanh-mlp-L4"])
def test_monomial_gmn_with_nonlinear_edge_messages_is_invariant_and_sees_the_wiring(arch):
    """``edge_hidden``: ``m_i = mean_j psi(W_ij h_j)`` keeps the exact invariance (float64, scales
    log-uniform over [1e-2, 1e2], signs, permutations) and still sees a shuffle of ``W(2)``."""
    from mnfn.groups import sample_element
    from mnfn.weightspace import mlp_spec
    from symmetry_utils import SCALES

    spec = SPECS.get(arch) or mlp_spec([3, 5, 6, 4, 2], "relu" if arch.startswith("relu") else "tanh")
    torch.manual_seed(0)
    model = build_model("monomial-gmn", spec, dim=6, phi_hidden=8, edge_hidden=5, head=(8,)).double().eval()
    assert len(model.psis) == spec.num_layers - 1
    f = randn_features(spec, batch=3, seed=3)
    g = sample_element(spec, 3, 7, scale=SCALES)
    with torch.no_grad():
        y = model(f)
        assert rel_err(model(g.act(f)), y) <= 1e-10
        assert rel_err(model(_shuffle_hidden_weights(f)), y) > 1e-5
    with pytest.raises(Exception, match="edge_hidden must be an integer"):
        build_model("monomial-gmn", spec, edge_hidden=-1)
    if arch == "siren":
        with pytest.raises(Exception, match="cannot be combined"):
            build_model("monomial-gmn", spec, edge_hidden=4, probe_grid=3)
