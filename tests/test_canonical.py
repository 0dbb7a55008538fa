"""Canonicalisation: keeps the network function, is idempotent, and is invariant to the diagonal
part of the monomial group (equivariant to its permutation part), from tiny to huge weights."""

import math

import pytest
import torch

from mnfn.canonical import Canonicalize, canonicalize, sign_statistic
from mnfn.groups import MonomialElement, ScaleDist, sample_element
from mnfn.weightspace import Symmetry, WeightSpaceError, WeightSpaceFeatures, WeightSpaceSpec, cnn_spec, mlp_spec, siren_spec, zoo_cnn_spec
from mnfn.networks import functional_forward

SPECS = {
    "relu-mlp-L2": mlp_spec([3, 7, 2], "relu"),
    "relu-mlp-L3": mlp_spec([3, 5, 6, 2], "relu"),
    "relu-mlp-L4": mlp_spec([4, 6, 5, 7, 3], "relu"),
    "tanh-mlp": mlp_spec([3, 5, 6, 2], "tanh"),
    "siren": siren_spec(1, hidden=8, depth=2),
    "relu-zoo-cnn": zoo_cnn_spec("relu", channels=4),
    "tanh-zoo-cnn": zoo_cnn_spec("tanh", channels=4),
    "mixed-mlp": mlp_spec([3, 5, 6, 2], ["relu", "tanh"]),
    "conv-last-cnn": cnn_spec(2, [4, 5], 3, conv_last=True),
    "leaky-gelu-mlp": mlp_spec([3, 5, 4, 6, 2], ["leaky_relu", "gelu", "relu"]),
}


def random_features(spec: WeightSpaceSpec, batch: int = 3, seed: int = 0, dtype=torch.float64) -> WeightSpaceFeatures:
    """Gaussian weights with std 1/sqrt(fan_in), biases with std 0.5: outputs of order 1."""
    g = torch.Generator().manual_seed(seed)
    ws, bs = [], []
    for layer in spec.layers:
        fan_in = layer.n_in * layer.kernel_size
        ws.append(torch.randn(batch, 1, *layer.weight_shape, generator=g, dtype=dtype) / math.sqrt(fan_in))
        bs.append(0.5 * torch.randn(batch, 1, layer.n_out, generator=g, dtype=dtype))
    return WeightSpaceFeatures(tuple(ws), tuple(bs), spec)


def random_inputs(spec: WeightSpaceSpec, n: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    first = spec.layers[0]
    shape = (n, first.n_in) if first.kind == "dense" else (n, first.n_in, 8, 8)
    return torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def feat_rel_err(a: WeightSpaceFeatures, b: WeightSpaceFeatures) -> float:
    return rel_err(a.flatten(), b.flatten())


def perm_part(g: MonomialElement) -> MonomialElement:
    """``h``: the permutations of ``g`` with unit scales. ``g = h D`` for a diagonal ``D``, and
    ``canon(D U) = canon(U)``, ``canon(h X) = h canon(X)``, hence ``canon(g U) = h canon(U)``."""
    return MonomialElement(g.perms, tuple(torch.ones_like(d) for d in g.scales), g.spec)


@pytest.mark.parametrize("name", list(SPECS))
def test_preserves_function(name: str) -> None:
    spec = SPECS[name]
    U = random_features(spec)
    gU = sample_element(spec, batch=3, generator=7).act(U)  # scales log-uniform in [1e-2, 1e2], random signs
    x = random_inputs(spec)
    ref = functional_forward(U, x)
    for V in (U, gU):
        c = canonicalize(V)
        assert rel_err(functional_forward(c, x), ref) < 1e-10, name


@pytest.mark.parametrize("name", list(SPECS))
def test_idempotent(name: str) -> None:
    spec = SPECS[name]
    c = canonicalize(sample_element(spec, batch=3, generator=3).act(random_features(spec)))
    assert feat_rel_err(canonicalize(c), c) < 1e-13


@pytest.mark.parametrize("name", list(SPECS))
def test_orbit_invariance_up_to_permutation(name: str) -> None:
    spec = SPECS[name]
    U = random_features(spec, batch=4)
    g = sample_element(spec, batch=4, generator=11)
    cg = canonicalize(g.act(U))
    hc = perm_part(g).act(canonicalize(U))
    assert feat_rel_err(cg, hc) < 1e-12, name
    if all(s in (Symmetry.FIXED, Symmetry.SIGN, Symmetry.PERM) for s in spec.neuron_symmetries()):
        # Sign flips and permutations are exact in floating point, and so is the sign statistic.
        assert all(torch.equal(a, b) for a, b in zip(cg.flatten(), hc.flatten()))


@pytest.mark.parametrize("name", ["relu-mlp-L4", "tanh-mlp", "relu-zoo-cnn", "mixed-mlp"])
def test_canonical_form_properties(name: str) -> None:
    """Scale layers: unit incoming norm; sign layers: positive sign statistic."""
    spec = SPECS[name]
    c = canonicalize(sample_element(spec, batch=2, generator=5).act(random_features(spec, batch=2)))
    syms = spec.neuron_symmetries()
    for i in range(1, spec.num_layers):
        w, b = c.weights[i - 1][:, 0], c.biases[i - 1][:, 0]
        v = torch.cat([b[..., None], w.flatten(2)], -1)
        if syms[i] == Symmetry.SCALE:
            torch.testing.assert_close(v.norm(dim=-1), torch.ones_like(b), rtol=0, atol=1e-13)
        elif syms[i] == Symmetry.SIGN:
            assert (sign_statistic(v) > 0).all()


def test_extreme_scales_stay_finite_and_consistent() -> None:
    spec = SPECS["relu-mlp-L4"]
    U = random_features(spec, batch=4)
    g = sample_element(spec, batch=4, generator=2, scale=ScaleDist("loguniform", 1e-6, 1e6))
    gU = g.act(U)
    cg = canonicalize(gU)
    assert all(torch.isfinite(t).all() for t in (*cg.weights, *cg.biases))
    # Products of scales reach 1e12 between layers; the canonical forms still agree.
    assert feat_rel_err(cg, perm_part(g).act(canonicalize(U))) < 1e-9
    x = random_inputs(spec)
    assert rel_err(functional_forward(cg, x), functional_forward(U, x)) < 1e-9


@pytest.mark.parametrize("factor", [1e-15, 1e6])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tiny_and_huge_weights(factor: float, dtype: torch.dtype) -> None:
    """Zoo-CNN weights near 1e-15 (seen in the real zoo) or near 1e6: no NaN/Inf, unit norms."""
    spec = zoo_cnn_spec("relu", channels=4)
    U = random_features(spec, batch=2).map(lambda t: t * factor).to(dtype)
    c = canonicalize(U)
    assert all(torch.isfinite(t).all() for t in (*c.weights, *c.biases))
    w, b = c.weights[0][:, 0], c.biases[0][:, 0]
    norms = torch.cat([b[..., None], w.flatten(2)], -1).norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-13)
    if dtype == torch.float64:
        x = random_inputs(spec)
        assert rel_err(functional_forward(c, x), functional_forward(U, x)) < 1e-10


def test_zero_neurons_are_left_alone_and_gradients_are_finite() -> None:
    spec = mlp_spec([3, 4, 4, 2], ["relu", "tanh"])
    U = random_features(spec, batch=2)
    w0, b0, w1, b1 = (t.clone() for t in (U.weights[0], U.biases[0], U.weights[1], U.biases[1]))
    w0[:, :, 1] = 0
    b0[:, :, 1] = 0
    w1[:, :, 2] = 0
    b1[:, :, 2] = 0
    U = WeightSpaceFeatures((w0, w1, U.weights[2]), (b0, b1, U.biases[2]), spec)
    U = U.map(lambda t: t.detach().requires_grad_())
    c = canonicalize(U)
    assert (c.weights[0][:, :, 1] == 0).all() and (c.biases[0][:, :, 1] == 0).all()
    assert (c.weights[1][:, :, 2] == 0).all() and (c.biases[1][:, :, 2] == 0).all()
    # The dead neuron 1 of layer 1 is not rescaled: its outgoing weights change only by the sign
    # flips of the (tanh) layer 2 rows.
    torch.testing.assert_close(c.weights[1][:, :, :, 1].abs(), w1[:, :, :, 1].abs(), rtol=0, atol=0)
    c.flatten().square().sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (*U.weights, *U.biases))


def test_sign_statistic_ties() -> None:
    v = torch.tensor([[0.0, 1.0, -1.0], [0.0, 0.0, 0.0], [2.0, 1.0, -3.0], [-0.5, 1.0, -1.0]], dtype=torch.float64)
    s = sign_statistic(v)
    assert s[0] == 1.0  # sum and cubes vanish: first nonzero entry in order (bias, weights...)
    assert s[1] == 0.0  # all-zero: no flip
    assert s[2] < 0  # sum 0, sum of cubes (8 + 1 - 27) / 27 < 0
    assert s[3] < 0  # sum -0.5
    assert torch.equal(sign_statistic(-v), -s)
    perm = torch.tensor([2, 0, 1])
    assert torch.equal(sign_statistic(v[2:, perm]), s[2:])  # order-free unless the positional rule is used


def test_symmetry_override_and_perm_layers() -> None:
    spec = SPECS["relu-mlp-L3"]
    U = random_features(spec)
    # Treating every hidden layer as permutation-only: nothing to canonicalise.
    c = canonicalize(U, [Symmetry.FIXED, Symmetry.PERM, Symmetry.PERM, Symmetry.FIXED])
    assert feat_rel_err(c, U) == 0.0
    with pytest.raises(WeightSpaceError, match="neuron-layer symmetries"):
        canonicalize(U, [Symmetry.FIXED, Symmetry.SCALE])
    with pytest.raises(WeightSpaceError, match="unknown symmetries"):
        canonicalize(U, [Symmetry.FIXED, "bogus", Symmetry.SCALE, Symmetry.FIXED])


def test_errors_and_module() -> None:
    spec = SPECS["relu-mlp-L3"]
    U = random_features(spec)
    with pytest.raises(WeightSpaceError, match="one channel"):
        canonicalize(U.cat_channels(U))
    mod = Canonicalize(spec)
    assert sum(p.numel() for p in mod.parameters()) == 0
    assert feat_rel_err(mod(U), canonicalize(U)) == 0.0
    with pytest.raises(WeightSpaceError, match="built for"):
        mod(random_features(SPECS["relu-mlp-L2"]))
