"""Channel dropout (NFN's ``feature_dropout``): whole channels dropped, exactly equivariant for the
same random draw (float64, log-uniform scales over [1e-2, 1e2]), and reachable from the configs."""

from __future__ import annotations

import pytest
import torch

from mnfn import sample_element
from mnfn.layers import ChannelDropout, fold, unfold
from mnfn.models import MODELS, build_model
from mnfn.models.parts import EquivariantStack
from symmetry_utils import SCALES, SPECS, randn_features, rel_err

TOL = 1e-10


def _seeded(fn, x, seed=7):
    torch.manual_seed(seed)  # the same masks for x and g x
    return fn(x)


def test_drops_whole_channels_and_rescales_the_rest():
    drop = ChannelDropout(0.4).train()
    xs = [torch.rand(64, 8, 5, 3, dtype=torch.float64) + 0.5, torch.rand(64, 8, 5, dtype=torch.float64) + 0.5]
    torch.manual_seed(0)
    out = drop.forward_folded(xs)
    for x, y in zip(xs, out):
        kept = (y != 0).flatten(2)
        per_channel = kept[..., 0]
        assert torch.equal(kept, per_channel.unsqueeze(-1).expand_as(kept))  # one draw per channel
        assert torch.allclose(y[y != 0], (x / 0.6)[y != 0], rtol=1e-14, atol=0)  # the kept are rescaled
        assert 0.25 < 1 - per_channel.double().mean().item() < 0.55
    drop.eval()
    assert all(torch.equal(x, y) for x, y in zip(xs, drop.forward_folded(xs)))
    assert all(torch.equal(x, y) for x, y in zip(xs, ChannelDropout(0.0).train().forward_folded(xs)))


@pytest.mark.parametrize("p", [-0.1, 1.0, 2.0, float("nan"), "abc", True, None])
def test_rate_outside_zero_one_is_refused(p):
    with pytest.raises(ValueError, match=r"feature_dropout must be a number in \[0, 1\)"):
        ChannelDropout(p)
    with pytest.raises(ValueError, match=r"feature_dropout must be a number in \[0, 1\)"):
        build_model("hybrid-inr", SPECS["siren"], feature_dropout=p)


@pytest.mark.parametrize("spec_name", ["relu-mlp-L2", "relu-mlp-L4", "tanh-mlp-L3", "relu-zoo-cnn", "tanh-zoo-cnn",
                                       "siren"])
def test_stack_with_dropout_is_equivariant_in_training(spec_name):
    spec = SPECS[spec_name]
    act = "relu" if spec_name.startswith("relu") else "tanh"
    torch.manual_seed(0)
    stack = EquivariantStack(spec, [1, 5, 4, 3], "monomial", act, final_activation=True, dropout=0.5).double().train()
    fn = lambda f: unfold(stack.forward_folded(fold(f)), spec)  # noqa: E731
    x = randn_features(spec, 4)
    g = sample_element(spec, 4, 3, scale=SCALES)
    with torch.no_grad():
        y, y_g = _seeded(fn, x), _seeded(fn, g.act(x))
        assert rel_err(y_g, g.act(y)) <= TOL
        stack.eval()
        assert rel_err(y, fn(x)) > 1e-2  # the dropout did act in training


@pytest.mark.parametrize("name, cfg", [
    ("hybrid-inr", {"sign_channels": [3, 2], "mapping_size": 3, "hnp_hidden": [4, 3], "head": [8], "out_dim": 3}),
    ("monomial-inr", {"hidden": [4, 3], "head": [8], "out_dim": 3}),
])
def test_inr_classifiers_with_feature_dropout_stay_invariant_in_training(name, cfg):
    assert "feature_dropout" in MODELS[name].config_keys()
    spec = SPECS["siren"]
    torch.manual_seed(0)
    model = build_model(name, spec, feature_dropout=0.3, **cfg).double().train()
    x = randn_features(spec, 4)
    g = sample_element(spec, 4, 5, scale=SCALES)
    with torch.no_grad():
        y = _seeded(model, x)
        assert rel_err(_seeded(model, g.act(x)), y) <= TOL
        assert rel_err(_seeded(model, x * 2.0), y) > 1e-3  # not a symmetry: the output moves
        assert rel_err(_seeded(model, x, seed=8), y) > 1e-6  # another draw, other channels dropped
