"""The activation record: one registration makes an activation known everywhere (specs, torch modules
both ways, the group, equivariant layers and models), with the right symmetry."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mnfn.activations import ACTIVATIONS, Activation, Sine, activation_fn, activation_for_module, register_activation
from mnfn.groups import sample_element
from mnfn.layers.pooling import EquivariantActivation
from mnfn.models import build_model
from mnfn.weightspace import Symmetry, WeightSpaceError, mlp_spec
from mnfn.networks import build_module, features_from_modules, functional_forward, spec_from_module
from symmetry_utils import SCALES, randn_features, rel_err


@pytest.fixture
def softsign():
    """The worked example of docs/architecture.md: softsign x / (1 + |x|) is odd, so it keeps signs."""
    act = register_activation(Activation("softsign", (Symmetry.SIGN,), lambda x, p: nn.functional.softsign(x),
                                         lambda p: nn.Softsign(), (nn.Softsign,)))
    yield act
    del ACTIVATIONS["softsign"]


def test_every_record_is_consistent():
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)
    for name, act in ACTIVATIONS.items():
        mod = act.make_module()
        assert torch.allclose(mod(x), activation_fn(name)(x)), name
        if act.module_types:  # read back from its module with the same parameter
            assert activation_for_module(act.make_module(0.3 if act.param_of else None)) == \
                (name, 0.3 if act.param_of else None), name
        a = torch.tensor(2.5, dtype=torch.float64)
        if Symmetry.SCALE in act.symmetries:
            assert torch.allclose(act.bind()(a * x), a * act.bind()(x)), name
        if Symmetry.SIGN in act.symmetries:
            assert torch.allclose(act.bind()(-x), -act.bind()(x)), name
    assert ACTIVATIONS["identity"].symmetry == Symmetry.SCALE and ACTIVATIONS["identity"].preserves(Symmetry.SIGN)
    assert ACTIVATIONS["gelu"].symmetry == Symmetry.PERM and not ACTIVATIONS["gelu"].preserves(Symmetry.SCALE)


def test_sine_default_agrees_with_the_record():
    assert Sine().w0 == ACTIVATIONS["sin"].default_param == 1.0
    x = torch.randn(5)
    assert torch.equal(Sine()(x), activation_fn("sin")(x))
    assert spec_from_module(nn.Sequential(nn.Linear(2, 4), Sine(30.0), nn.Linear(4, 1))).layers[0].act_param == 30.0


def test_registration_refuses_duplicates_and_bad_symmetries():
    with pytest.raises(WeightSpaceError, match="already registered"):
        register_activation(ACTIVATIONS["relu"])
    with pytest.raises(WeightSpaceError, match="already reads as"):
        register_activation(Activation("relu2", (Symmetry.SCALE,), lambda x, p: x.clamp_min(0), lambda p: nn.ReLU(),
                                       (nn.ReLU,)))
    with pytest.raises(WeightSpaceError, match="may only list"):
        Activation("bad", (Symmetry.PERM,), lambda x, p: x, lambda p: nn.Identity())


def test_one_record_makes_a_new_activation_work_everywhere(softsign):
    spec = mlp_spec([3, 5, 4, 2], "softsign")
    assert spec.neuron_symmetries() == (Symmetry.FIXED, Symmetry.SIGN, Symmetry.SIGN, Symmetry.FIXED)
    net = build_module(spec).double()
    assert isinstance(net[1], nn.Softsign) and spec_from_module(net).layers == spec.layers
    f = features_from_modules([net, build_module(spec).double()])
    x = torch.randn(7, 3, dtype=torch.float64)
    g = sample_element(spec, 2, generator=torch.Generator().manual_seed(0))
    assert rel_err(functional_forward(g.act(f), x), functional_forward(f, x)) <= 1e-10  # the group is its symmetry
    # the equivariant activation accepts it where only signs act, and refuses it where scales act
    EquivariantActivation(spec, "softsign")
    with pytest.raises(WeightSpaceError, match="not positively homogeneous"):
        EquivariantActivation(mlp_spec([3, 5, 2], "relu"), "softsign")
    model = build_model("monomial", spec).double().eval()
    ff = randn_features(spec, batch=3, seed=1)
    h = sample_element(spec, 3, generator=torch.Generator().manual_seed(2), scale=SCALES)
    assert rel_err(model(h.act(ff)), model(ff)) <= 1e-10


def test_fast_tanh_is_tanh_exactly_odd_and_differentiable():
    """The models' own tanh (inside equivariant activations and gmn maps) is torch.tanh to float
    rounding, exactly odd (sign groups need sigma(-x) = -sigma(x)), with the same gradient."""
    from mnfn.activations import ACTIVATIONS, fast_tanh

    g = torch.Generator().manual_seed(0)
    for dtype, tol in ((torch.float32, 3e-7), (torch.float64, 1e-15)):
        x = torch.randn(4096, generator=g, dtype=dtype) * 3
        x = torch.cat([x, torch.tensor([0.0, 1e-30, -1e-30, 40.0, -40.0], dtype=dtype)])
        assert (fast_tanh(x) - torch.tanh(x)).abs().max() <= tol
        assert torch.equal(fast_tanh(-x), -fast_tanh(x))
    x = torch.randn(30, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fast_tanh, (x,))
    # networks described by weights still run torch.tanh itself; the features path uses the fast one
    y = torch.randn(100, generator=g)
    assert torch.equal(ACTIVATIONS["tanh"].bind()(y), torch.tanh(y))
    assert torch.equal(ACTIVATIONS["tanh"].bind(features=True)(y), fast_tanh(y))
