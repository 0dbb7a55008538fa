"""The monomial group: its action preserves network functions; inverse, composition, identity, batching."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mnfn.groups import MonomialElement, ScaleDist, identity_element, sample_element
from mnfn.weightspace import Sine, Symmetry, WeightSpaceError, WeightSpaceFeatures, WeightSpaceSpec, cnn_spec, mlp_spec, siren_spec, zoo_cnn_spec
from mnfn.networks import build_module, features_from_modules, features_to_module, functional_forward

DT = torch.float64
WIDE = ScaleDist("loguniform", 1e-3, 1e3)
FUNC_TOL = 1e-10
EXACT_TOL = 1e-12


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    denom = b.norm().item()
    assert denom > 0, "reference is identically zero; the comparison would be vacuous"
    return (a - b).norm().item() / denom


def feats_rel_err(a: WeightSpaceFeatures, b: WeightSpaceFeatures) -> float:
    """Largest per-tensor relative error."""
    return max(rel_err(x, y) for x, y in zip((*a.weights, *a.biases), (*b.weights, *b.biases)))


def feats_equal(a: WeightSpaceFeatures, b: WeightSpaceFeatures) -> bool:
    return all(torch.equal(x, y) for x, y in zip((*a.weights, *a.biases), (*b.weights, *b.biases)))


def random_features(spec: WeightSpaceSpec, batch: int, seed: int = 0, channels: int = 1) -> WeightSpaceFeatures:
    g = torch.Generator().manual_seed(seed)
    return WeightSpaceFeatures(
        tuple(torch.randn(batch, channels, *s, generator=g, dtype=DT) for s in spec.weight_shapes()),
        tuple(torch.randn(batch, channels, *s, generator=g, dtype=DT) for s in spec.bias_shapes()),
        spec,
    )


def inputs_for(spec: WeightSpaceSpec, n: int, image: int = 8, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if spec.is_cnn:
        return torch.randn(n, spec.widths[0], image, image, generator=g, dtype=DT)
    return torch.rand(n, spec.widths[0], generator=g, dtype=DT) * 2 - 1


# id -> spec; every architecture the Done-when list names.
SPECS = {
    "relu_mlp_L2": mlp_spec([3, 7, 2], "relu"),
    "relu_mlp_L3": mlp_spec([3, 6, 5, 2], "relu"),
    "relu_mlp_L4": mlp_spec([3, 6, 5, 4, 2], "relu"),
    "leaky_relu_mlp": mlp_spec([3, 6, 5, 2], "leaky_relu", act_param=0.1),
    "tanh_mlp": mlp_spec([3, 6, 5, 2], "tanh"),
    "siren": siren_spec(out_channels=3, hidden=8),
    "relu_zoo_cnn": zoo_cnn_spec("relu", channels=5, image_size=8),
    "tanh_zoo_cnn": zoo_cnn_spec("tanh", channels=5, image_size=8),
    "sin_cnn": cnn_spec(2, [4, 3], 3, "sin", image_size=8),
    "relu_conv_last_cnn": cnn_spec(1, [4, 5], 3, "relu", conv_last=True, image_size=8),
    "tanh_conv_last_cnn": cnn_spec(1, [4, 5], 3, "tanh", conv_last=True, image_size=8),
    "mixed_relu_tanh_mlp": mlp_spec([3, 5, 6, 2], ["relu", "tanh"]),
    "mixed_cnn": cnn_spec(1, [4, 5], 2, ["tanh", "leaky_relu"], image_size=8),
    "gelu_mlp": mlp_spec([3, 6, 5, 2], "gelu"),
}


def _nets(spec: WeightSpaceSpec, batch: int, seed: int) -> list[nn.Sequential]:
    torch.manual_seed(seed)
    return [build_module(spec).to(DT) for _ in range(batch)]


def _assert_nontrivial(g: MonomialElement, f: WeightSpaceFeatures) -> None:
    """The element must actually move the weights, else a function check proves nothing."""
    if any(n > 1 for n in f.spec.widths[1:-1]):
        assert feats_rel_err(g.act(f), f) > 1e-2


# --- the action preserves the network function --------------------------------------------------

@pytest.mark.parametrize("name", list(SPECS))
def test_action_preserves_function_functional(name):
    spec = SPECS[name]
    f = features_from_modules(_nets(spec, 4, seed=0))
    g = sample_element(spec, batch=4, generator=1, scale=WIDE, dtype=DT)
    _assert_nontrivial(g, f)
    x = inputs_for(spec, 16)
    y = functional_forward(f, x)
    y_g = functional_forward(g.act(f), x)
    for i in range(4):  # per network, so one large output cannot hide another's error
        assert rel_err(y_g[i], y[i]) <= FUNC_TOL, (name, i)


@pytest.mark.parametrize("name", list(SPECS))
def test_action_preserves_function_modules(name):
    spec = SPECS[name]
    nets = _nets(spec, 2, seed=3)
    f = features_from_modules(nets)
    g = sample_element(spec, batch=2, generator=4, scale=WIDE, dtype=DT)
    gf = g.act(f)
    x = inputs_for(spec, 16, seed=5)
    for i, net in enumerate(nets):
        moved = features_to_module(gf, index=i)
        assert type(moved) is nn.Sequential
        assert rel_err(moved(x), net(x)) <= FUNC_TOL, (name, i)


def test_sign_layers_flip_and_scale_layers_scale():
    spec = mlp_spec([3, 64, 64, 2], ["tanh", "relu"])
    g = sample_element(spec, batch=3, generator=0, scale=WIDE)
    d1, d2 = g.scales
    assert set(d1.unique().tolist()) == {-1.0, 1.0}  # sign layer: both signs occur among 192 draws
    assert (d2 >= 1e-3).all() and (d2 <= 1e3).all()
    assert d2.min() < 1e-1 and d2.max() > 1e1  # log-uniform over six decades reaches both ends
    for p in g.perms:
        assert torch.equal(p.sort(dim=1).values, torch.arange(64).expand(3, 64))
        assert not torch.equal(p, torch.arange(64).expand(3, 64))
    perm_only = sample_element(mlp_spec([3, 8, 2], "gelu"), batch=2, generator=0, scale=WIDE)
    assert torch.equal(perm_only.scales[0], torch.ones(2, 8, dtype=DT))


def test_sampling_options_and_seeding():
    spec = mlp_spec([3, 6, 5, 2], ["relu", "sin"])
    a = sample_element(spec, 2, generator=7, scale=WIDE)
    b = sample_element(spec, 2, generator=torch.Generator().manual_seed(7), scale=WIDE)
    assert all(torch.equal(x, y) for x, y in zip((*a.perms, *a.scales), (*b.perms, *b.scales)))
    c = sample_element(spec, 2, generator=8, scale=WIDE)
    assert not all(torch.equal(x, y) for x, y in zip(a.scales, c.scales))
    fixed = sample_element(spec, 2, generator=7, scale=None, permute=False, flip_signs=False)
    assert all(torch.equal(p, torch.arange(p.shape[1]).expand_as(p)) for p in fixed.perms)
    assert all(torch.equal(d, torch.ones_like(d)) for d in fixed.scales)
    uni = sample_element(spec, 4, generator=0, scale=ScaleDist("uniform", 1.0, 10.0), dtype=torch.float32)
    assert uni.scales[0].dtype == torch.float32
    assert (uni.scales[0] >= 1.0).all() and (uni.scales[0] <= 10.0).all()
    # symmetries override: treat the sin layer as a scale layer
    over = sample_element(spec, 2, generator=0, scale=ScaleDist("uniform", 2.0, 3.0),
                          symmetries=(Symmetry.FIXED, Symmetry.SCALE, Symmetry.SCALE, Symmetry.FIXED))
    assert (over.scales[1] >= 2.0).all()


def test_scale_dist():
    gen = torch.Generator().manual_seed(0)
    s = WIDE.sample((10_000,), gen, DT)
    assert (s >= 1e-3).all() and (s <= 1e3).all()
    assert abs(torch.log10(s).mean().item()) < 0.1  # log-uniform: symmetric in log scale
    assert ScaleDist.parse("uniform:1,1000") == ScaleDist("uniform", 1.0, 1000.0)
    assert ScaleDist.parse("scale:1,10") == ScaleDist("uniform", 1.0, 10.0)
    assert ScaleDist.parse("loguniform:0.01,100") == ScaleDist("loguniform", 0.01, 100.0)
    for bad in ("uniform", "uniform:1", "uniform:a,b"):
        with pytest.raises(ValueError, match="KIND:LO,HI"):
            ScaleDist.parse(bad)
    with pytest.raises(ValueError, match="'uniform' or 'loguniform'"):
        ScaleDist("normal", 1, 2)
    with pytest.raises(ValueError, match="0 < lo <= hi"):
        ScaleDist("uniform", 0.0, 2.0)
    with pytest.raises(ValueError, match="0 < lo <= hi"):
        ScaleDist("uniform", 3.0, 2.0)


@pytest.mark.parametrize("spec, syms", [
    (mlp_spec([3, 6, 5, 2], "tanh"), ("fixed", "scale", "scale", "fixed")),  # tanh is not homogeneous
    (mlp_spec([3, 6, 5, 2], "gelu"), ("fixed", "scale", "scale", "fixed")),
    (mlp_spec([3, 6, 5, 2], "gelu"), ("fixed", "sign", "sign", "fixed")),  # gelu is not odd
    (mlp_spec([3, 6, 5, 2], "relu"), ("fixed", "sign", "sign", "fixed")),  # relu is not odd
])
def test_wrong_symmetry_changes_function(spec, syms):
    """Control: scalings/flips the activation does not commute with do change the function."""
    f = features_from_modules(_nets(spec, 2, seed=0))
    g = sample_element(spec, 2, generator=0, scale=ScaleDist("uniform", 2.0, 5.0), symmetries=syms)
    x = inputs_for(spec, 16)
    assert rel_err(functional_forward(g.act(f), x), functional_forward(f, x)) > 1e-3


# --- group laws ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SPECS))
def test_inverse(name):
    spec = SPECS[name]
    f = random_features(spec, batch=3, channels=2)
    g = sample_element(spec, 3, generator=11, scale=WIDE)
    gf = g.act(f)
    assert feats_rel_err(g.inverse().act(gf), f) <= EXACT_TOL
    assert feats_rel_err(g.act(g.inverse().act(f)), f) <= EXACT_TOL
    # g * g^-1 = g^-1 * g = identity
    for e in (g * g.inverse(), g.inverse() * g):
        for p, d in zip(e.perms, e.scales):
            assert torch.equal(p, torch.arange(p.shape[1]).expand_as(p))
            assert (d - 1).abs().max().item() <= EXACT_TOL
    # the inverse of the inverse is the element
    gii = g.inverse().inverse()
    assert all(torch.equal(p, q) for p, q in zip(gii.perms, g.perms))
    assert all(torch.allclose(d, e, rtol=EXACT_TOL, atol=0) for d, e in zip(gii.scales, g.scales))


@pytest.mark.parametrize("name", ["relu_mlp_L4", "mixed_relu_tanh_mlp", "tanh_zoo_cnn", "relu_conv_last_cnn", "gelu_mlp"])
def test_composition(name):
    spec = SPECS[name]
    f = random_features(spec, batch=3)
    g = sample_element(spec, 3, generator=1, scale=WIDE)
    h = sample_element(spec, 3, generator=2, scale=WIDE)
    k = sample_element(spec, 3, generator=3, scale=WIDE)
    assert feats_rel_err((g * h).act(f), g.act(h.act(f))) <= EXACT_TOL
    assert feats_rel_err(g.compose(h).act(f), g(h(f))) <= EXACT_TOL
    # associativity, and (gh)^-1 = h^-1 g^-1
    assert feats_rel_err(((g * h) * k).act(f), (g * (h * k)).act(f)) <= EXACT_TOL
    assert feats_rel_err((g * h).inverse().act(f), (h.inverse() * g.inverse()).act(f)) <= EXACT_TOL
    # a batch-1 element composes with a batch-3 one by broadcasting
    g1 = sample_element(spec, 1, generator=4, scale=WIDE)
    assert (g1 * h).batch_size == 3
    assert feats_rel_err((g1 * h).act(f), g1.act(h.act(f))) <= EXACT_TOL


@pytest.mark.parametrize("name", ["relu_mlp_L3", "tanh_zoo_cnn", "siren"])
def test_identity_acts_trivially(name):
    spec = SPECS[name]
    f = random_features(spec, batch=3, channels=2)
    for e in (identity_element(spec), identity_element(spec, batch=3)):
        assert feats_equal(e.act(f), f)
    g = sample_element(spec, 3, generator=0, scale=WIDE)
    e = identity_element(spec)
    assert feats_equal((e * g).act(f), g.act(f))
    assert feats_equal((g * e).act(f), g.act(f))


def test_single_layer_network_has_trivial_group():
    spec = mlp_spec([3, 2])
    f = random_features(spec, batch=2)
    g = sample_element(spec, 2, generator=0, scale=WIDE)
    assert g.perms == () and feats_equal(g.act(f), f)
    assert feats_equal(g.inverse().act(f), f)


# --- batching ------------------------------------------------------------------------------------

def _item(g: MonomialElement, i: int) -> MonomialElement:
    return MonomialElement(tuple(p[i:i + 1] for p in g.perms), tuple(d[i:i + 1] for d in g.scales), g.spec)


@pytest.mark.parametrize("name", ["relu_mlp_L3", "tanh_zoo_cnn", "mixed_relu_tanh_mlp"])
def test_batched_elements_act_per_item(name):
    spec = SPECS[name]
    f = random_features(spec, batch=4, channels=2)
    g = sample_element(spec, 4, generator=0, scale=WIDE)
    gf = g.act(f)
    for i in range(4):
        assert feats_equal(gf[i], _item(g, i).act(f[i]))
    # every channel is moved alike
    one = f.map(lambda t: t[:, :1])
    two = f.map(lambda t: t[:, 1:])
    assert feats_equal(gf, g.act(one).cat_channels(g.act(two)))
    # different items really get different elements
    assert not feats_equal(_item(g, 0).act(f), gf)


@pytest.mark.parametrize("name", ["relu_mlp_L3", "sin_cnn"])
def test_single_element_broadcasts_over_batch(name):
    spec = SPECS[name]
    f = random_features(spec, batch=4)
    g = sample_element(spec, 1, generator=0, scale=WIDE)
    gf = g.act(f)
    assert gf.batch_size == 4
    for i in range(4):
        assert feats_equal(gf[i], g.act(f[i]))
    rep = MonomialElement(tuple(p.expand(4, -1) for p in g.perms), tuple(d.expand(4, -1) for d in g.scales), spec)
    assert feats_equal(rep.act(f), gf)


def test_action_errors():
    spec = mlp_spec([3, 4, 2])
    f = random_features(spec, batch=4)
    with pytest.raises(WeightSpaceError, match="3 group elements for a batch of 4"):
        sample_element(spec, 3, generator=0).act(f)
    other = mlp_spec([3, 5, 2])
    with pytest.raises(WeightSpaceError, match="cannot act on features"):
        sample_element(other, 4, generator=0).act(f)
    with pytest.raises(WeightSpaceError, match=r"expected \(B, 4\)"):
        MonomialElement((torch.arange(5)[None],), (torch.ones(1, 5),), spec)
    with pytest.raises(WeightSpaceError, match="needs 1 hidden layers"):
        MonomialElement((), (), spec)


def test_float32_features_and_dtype_handling():
    spec = zoo_cnn_spec("relu", channels=4, image_size=8)
    torch.manual_seed(0)
    nets = [build_module(spec) for _ in range(2)]
    f = features_from_modules(nets)
    g = sample_element(spec, 2, generator=0, scale=ScaleDist("loguniform", 0.1, 10.0))  # float64 scales
    gf = g.act(f)
    assert gf.dtype == torch.float32
    x = inputs_for(spec, 8).float()
    assert rel_err(functional_forward(gf, x), functional_forward(f, x)) <= 1e-4
    assert g.to(dtype=torch.float32).scales[0].dtype == torch.float32


def test_siren_module_signs():
    """A hand-built SIREN (Sine modules, w0=30) under sign flips and permutations, via modules only."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), Sine(30.0), nn.Linear(8, 8), Sine(30.0), nn.Linear(8, 1)).to(DT)
    f = features_from_modules(net)
    g = sample_element(f.spec, 1, generator=0)
    assert all(set(d.unique().tolist()) <= {-1.0, 1.0} for d in g.scales)
    x = inputs_for(f.spec, 64)
    assert rel_err(features_to_module(g.act(f))(x), net(x)) <= FUNC_TOL


# --- property test -------------------------------------------------------------------------------

ACTS = ("relu", "tanh", "sin", "leaky_relu", "gelu")


@st.composite
def mlp_cases(draw):
    L = draw(st.integers(2, 5))
    widths = draw(st.lists(st.integers(1, 8), min_size=L + 1, max_size=L + 1))
    acts = draw(st.lists(st.sampled_from(ACTS), min_size=L - 1, max_size=L - 1))
    seed = draw(st.integers(0, 2**31 - 1))
    return widths, acts, seed


@settings(max_examples=25, deadline=None)
@given(mlp_cases())
def test_property_random_mlps(case):
    widths, acts, seed = case
    spec = mlp_spec(widths, acts)
    gen = torch.Generator().manual_seed(seed)
    B = 3
    # Unit-variance weights keep the signal alive through depth-5 stacks of width-1 layers.
    f = WeightSpaceFeatures(
        tuple(torch.randn(B, 1, *s, generator=gen, dtype=DT) for s in spec.weight_shapes()),
        tuple(torch.randn(B, 1, *s, generator=gen, dtype=DT) for s in spec.bias_shapes()),
        spec,
    )
    g = sample_element(spec, B, generator=gen, scale=WIDE)
    x = torch.rand(16, widths[0], generator=gen, dtype=DT) * 2 - 1
    y = functional_forward(f, x)
    y_g = functional_forward(g.act(f), x)
    for i in range(B):
        scale = y[i].norm().item()
        if scale == 0.0:
            assert torch.equal(y_g[i], y[i])
        else:
            assert rel_err(y_g[i], y[i]) <= FUNC_TOL, (widths, acts, i)
    # g^-1 g = id, on the features and as group elements
    assert feats_rel_err(g.inverse().act(g.act(f)), f) <= EXACT_TOL
    for p, d in zip((g.inverse() * g).perms, (g.inverse() * g).scales):
        assert torch.equal(p, torch.arange(p.shape[1]).expand_as(p))
        assert (d - 1).abs().max().item() <= EXACT_TOL
    # and the modules agree with the functional forward on the moved weights
    net = features_to_module(g.act(f), index=0)
    assert rel_err(net(x), y[0]) <= FUNC_TOL if y[0].norm().item() > 0 else torch.equal(net(x), y[0])
