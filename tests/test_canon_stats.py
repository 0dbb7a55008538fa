"""canon-statnn and monomial-stat (mnfn/models/canon_stats.py): exactly invariant to the whole
monomial group in float64, and changed by changes that are not symmetries."""

import pytest
import torch

from mnfn.groups import sample_element
from mnfn.models import build_model
from mnfn.weightspace import WeightSpaceError, WeightSpaceFeatures, mlp_spec, zoo_cnn_spec
from symmetry_utils import SCALES, randn_features, rel_err

MODELS = {"canon-statnn": dict(hidden=[16, 16]), "monomial-stat": dict(hidden=[4, 4, 3], head=[16])}

CANON_SPECS = {
    "relu-mlp-L2": mlp_spec([3, 5, 2], "relu"),
    "relu-mlp-L3": mlp_spec([3, 5, 6, 2], "relu"),
    "tanh-mlp-L3": mlp_spec([3, 5, 6, 2], "tanh"),
    "relu-zoo-cnn": zoo_cnn_spec("relu", channels=6, image_size=8),
    "tanh-zoo-cnn": zoo_cnn_spec("tanh", channels=6, image_size=8),
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("arch", list(CANON_SPECS))
def test_invariant_to_the_whole_group(name: str, arch: str) -> None:
    """float64, scales log-uniform over [1e-2, 1e2], permutations and sign flips: the output does not
    move (relative 1e-10), where StatNN's does."""
    spec = CANON_SPECS[arch]
    torch.manual_seed(0)
    model = build_model(name, spec, **MODELS[name]).double().eval()
    stat = build_model("statnn", spec, hidden=[16, 16]).double().eval()
    f = randn_features(spec, batch=5, seed=1)
    y, y_stat = model(f), stat(f)
    moved = 0.0
    for k in range(3):
        g = sample_element(spec, 5, generator=torch.Generator().manual_seed(k), scale=SCALES, dtype=torch.float64)
        assert rel_err(model(g.act(f)), y) <= 1e-10
        moved = max(moved, rel_err(stat(g.act(f)), y_stat))
    assert moved > 1e-3  # the group does move the weights' statistics


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("arch", ["relu-mlp-L3", "relu-zoo-cnn", "tanh-zoo-cnn"])
def test_changes_under_changes_that_are_not_symmetries(name: str, arch: str) -> None:
    """Doubling one hidden neuron's incoming weights and bias without compensating its outgoing
    weights (the net's function changes; for ReLU this is what Monomial-NFN cannot see), or moving
    one weight, changes the output."""
    spec = CANON_SPECS[arch]
    torch.manual_seed(0)
    model = build_model(name, spec, **MODELS[name]).double().eval()
    f = randn_features(spec, batch=2, seed=2)
    y = model(f)
    w = [t.clone() for t in f.weights]
    b = [t.clone() for t in f.biases]
    w[0][:, :, 1] *= 2.0
    b[0][:, :, 1] *= 2.0
    assert rel_err(model(WeightSpaceFeatures(tuple(w), tuple(b), spec)), y) > 1e-4
    w2 = [t.clone() for t in f.weights]
    w2[1].view(2, -1)[:, 3] += 0.5
    assert rel_err(model(WeightSpaceFeatures(tuple(w2), f.biases, spec)), y) > 1e-4


@pytest.mark.parametrize("name", list(MODELS))
def test_rejects_channels(name: str) -> None:
    with pytest.raises(WeightSpaceError, match="one channel"):
        build_model(name, CANON_SPECS["relu-mlp-L2"], in_channels=2)
