"""The canonicalising models: the canonicalise-edit-map-back editor (``canon-np-editor``), the factors
it relies on, and ``canon-np`` with Fourier features:
``canon(U) = D_U U`` exactly, and ``Delta(gU) = g Delta(U)`` for the whole monomial group
(float64, log-uniform scales in [1e-2, 1e2], random signs), MLPs L = 2 and deeper, zoo CNNs, SIRENs."""

import pytest
import torch

from mnfn.canonical import apply_neuron_factors, canonicalize
from mnfn.groups import MonomialElement, sample_element
from mnfn.models import build_model
from mnfn.weightspace import WeightSpaceError, WeightSpaceFeatures, mlp_spec, siren_spec, zoo_cnn_spec
from symmetry_utils import SCALES

SPECS = {
    "relu-mlp-L2": mlp_spec([3, 7, 2], "relu"),
    "relu-mlp-L4": mlp_spec([4, 6, 5, 7, 3], "relu"),
    "tanh-mlp-L3": mlp_spec([3, 5, 6, 2], "tanh"),
    "siren-L3": siren_spec(1, hidden=8, depth=2),
    "relu-zoo-cnn": zoo_cnn_spec("relu", channels=4),
    "tanh-zoo-cnn": zoo_cnn_spec("tanh", channels=4),
}
CFG = dict(hidden=[6, 6], out_scale=0.5)


def _features(spec, batch=3, seed=0) -> WeightSpaceFeatures:
    g = torch.Generator().manual_seed(seed)
    ws = tuple(torch.randn(batch, 1, *l.weight_shape, generator=g, dtype=torch.float64) / (l.n_in * l.kernel_size) ** 0.5
               for l in spec.layers)
    bs = tuple(0.5 * torch.randn(batch, 1, l.n_out, generator=g, dtype=torch.float64) for l in spec.layers)
    return WeightSpaceFeatures(ws, bs, spec)


def _rel(a: WeightSpaceFeatures, b: WeightSpaceFeatures) -> float:
    a, b = a.flatten(), b.flatten()
    return ((a - b).norm() / b.norm()).item()


def _editor(spec, seed=0):
    torch.manual_seed(seed)
    return build_model("canon-np-editor", spec, **CFG).double().eval()


@pytest.mark.parametrize("name", list(SPECS))
def test_factors_reproduce_the_canonical_form(name):
    spec = SPECS[name]
    U = sample_element(spec, 3, generator=4, scale=SCALES).act(_features(spec))
    c, factors = canonicalize(U, return_factors=True)
    assert _rel(apply_neuron_factors(U, factors), c) < 1e-13
    assert _rel(apply_neuron_factors(c, factors, inverse=True), U) < 1e-13
    assert _rel(canonicalize(U), c) == 0.0  # the flag changes nothing else


@pytest.mark.parametrize("name", list(SPECS))
def test_canon_editor_is_monomial_equivariant(name):
    spec = SPECS[name]
    model = _editor(spec)
    U = _features(spec, batch=4, seed=1)
    with torch.no_grad():
        base = model(U)
        for trial in range(3):
            g = sample_element(spec, 4, generator=10 + trial, scale=SCALES)
            assert _rel(model(g.act(U)), g.act(base)) < 1e-9, (name, trial)


@pytest.mark.parametrize("name", ["relu-mlp-L4", "siren-L3", "tanh-zoo-cnn"])
def test_canon_editor_changes_under_non_symmetries(name):
    """Flipping (or rescaling) a hidden neuron's incoming row *without* its outgoing column changes
    the function; the edit must not follow it as if it were a group element."""
    spec = SPECS[name]
    model = _editor(spec)
    U = _features(spec, batch=2, seed=2)
    ws, bs = list(U.weights), list(U.biases)
    factor = -1.0 if "relu" not in name else 7.0
    ws[0] = ws[0].clone()
    bs[0] = bs[0].clone()
    ws[0][:, :, 0] *= factor
    bs[0][:, :, 0] *= factor
    V = WeightSpaceFeatures(tuple(ws), tuple(bs), spec)
    # the element that would match V's first layer if the outgoing column were compensated
    d = [torch.ones(2, l.n_out, dtype=torch.float64) for l in spec.layers[:-1]]
    d[0][:, 0] = factor
    g = MonomialElement(tuple(torch.arange(l.n_out).expand(2, -1) for l in spec.layers[:-1]), tuple(d), spec)
    with torch.no_grad():
        assert _rel(model(V), g.act(model(U))) > 1e-3


def test_canon_editor_sees_the_wiring():
    """A hidden-to-hidden weight's change depends on the other weights of its row (what an NP layer
    sums), which the fully sign-equivariant linear editor cannot do for sign-flip layers."""
    spec = SPECS["siren-L3"]
    model = _editor(spec)
    U = _features(spec, batch=1, seed=3)
    ws = list(U.weights)
    ws[1] = ws[1].clone()
    ws[1][:, :, 0, 1:] += 0.3  # the rest of row 0 of W2
    V = WeightSpaceFeatures(tuple(ws), U.biases, spec)
    with torch.no_grad():
        assert (model(V).weights[1][0, 0, 0, 0] - model(U).weights[1][0, 0, 0, 0]).abs() > 1e-6


def test_canon_editor_arguments():
    with pytest.raises(WeightSpaceError, match="inner"):
        build_model("canon-np-editor", SPECS["siren-L3"], inner="mlp")
    with pytest.raises(WeightSpaceError, match="in_channels"):
        build_model("canon-np-editor", SPECS["siren-L3"], in_channels=2)
    with pytest.raises(WeightSpaceError, match="factors"):
        apply_neuron_factors(_features(SPECS["siren-L3"]), [None])


@pytest.mark.parametrize("name", ["siren-L3", "tanh-mlp-L3", "relu-mlp-L4"])
def test_canon_np_with_fourier_features_is_invariant(name):
    """Fourier features of raw weights break sign symmetry; of canonical weights they do not."""
    from mnfn.models.inr import add_feature_norm
    spec = SPECS[name]
    torch.manual_seed(0)
    model = add_feature_norm(build_model("canon-np", spec, hidden=[6, 6], head=[8], fourier=4, out_dim=3)).double().eval()
    U = _features(spec, batch=4, seed=5)
    with torch.no_grad():
        base = model(U)
        for trial in range(3):
            g = sample_element(spec, 4, generator=20 + trial, scale=SCALES)
            out = model(g.act(U))
            assert ((out - base).norm() / base.norm()).item() < 1e-9, (name, trial)
        ws = list(U.weights)
        ws[0] = ws[0].clone()
        ws[0][:, :, 0] *= -1.0 if "relu" not in name else 5.0  # no compensating column: not a symmetry
        moved = model(WeightSpaceFeatures(tuple(ws), U.biases, spec))
        assert ((moved - base).norm() / base.norm()).item() > 1e-4
    with pytest.raises(WeightSpaceError, match="inner"):
        from mnfn.models.nfn import CanonHNP
        CanonHNP(spec, inner="mlp")


@pytest.mark.parametrize("name", ["siren-L3", "relu-zoo-cnn"])
def test_editors_with_fourier_features(name):
    """NFN's Fourier encoding in an editor: exact for the canonicalising editor under the whole group,
    for the NP editor under permutations, and refused by the monomial editor (it would break signs)."""
    spec = SPECS[name]
    torch.manual_seed(0)
    canon = build_model("canon-np-editor", spec, fourier=3, fourier_scale=0.5, **CFG).double().eval()
    np_ed = build_model("np-editor", spec, fourier=3, fourier_scale=0.5, **CFG).double().eval()
    U = _features(spec, batch=3, seed=6)
    g = sample_element(spec, 3, generator=30, scale=SCALES)
    perm_only = MonomialElement(g.perms, tuple(torch.ones_like(d) for d in g.scales), spec)
    with torch.no_grad():
        assert _rel(canon(g.act(U)), g.act(canon(U))) < 1e-9
        assert _rel(np_ed(perm_only.act(U)), perm_only.act(np_ed(U))) < 1e-9
        assert _rel(np_ed(g.act(U)), g.act(np_ed(U))) > 1e-3  # Fourier features see the signs / scales
    with pytest.raises(WeightSpaceError, match="fourier"):
        build_model("monomial-editor", spec, fourier=3)
