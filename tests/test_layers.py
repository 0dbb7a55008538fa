"""Equivariant linear layers, activations and pooling: exact symmetry and completeness."""

import math

import pytest
import torch

from mnfn import ScaleDist, WeightSpaceError, WeightSpaceFeatures, mlp_spec, sample_element, zoo_cnn_spec, cnn_spec
from mnfn.layers import EquivariantLinear, enumerate_terms, fold, resolve_symmetries, unfold
from mnfn.layers.pooling import EquivariantActivation, InvariantPool, robust_normalize
from symmetry_utils import SCALES, SPECS, randn_features, rel_err

PRESETS = ["monomial", "hnp", "np"]


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("preset", PRESETS)
def test_linear_layer_equivariant(name, preset):
    spec = SPECS[name]
    layer = EquivariantLinear(spec, 2, 3, preset).double()
    with torch.no_grad():  # nonzero constants so the bias terms are exercised too
        for t, p in zip(layer.terms, layer.params):
            if t.source is None:
                p.normal_()
    x = randn_features(spec, 4, 2)
    g = sample_element(spec, 4, 1, scale=SCALES, symmetries=layer.symmetries)
    assert rel_err(layer(g.act(x)), g.act(layer(x))) <= 1e-10


@pytest.mark.parametrize("name", ["relu-mlp-L3", "tanh-zoo-cnn", "relu-conv-last"])
def test_hnp_layer_is_not_scale_equivariant(name):
    """Negative control: permutation-only layers break under scalings/sign flips."""
    spec = SPECS[name]
    layer = EquivariantLinear(spec, 1, 2, "hnp").double()
    x = randn_features(spec, 4)
    g = sample_element(spec, 4, 1, scale=SCALES)
    assert rel_err(layer(g.act(x)), g.act(layer(x))) > 1e-3


def test_fold_unfold_roundtrip():
    spec = SPECS["relu-zoo-cnn"]
    x = randn_features(spec, 2, 3)
    y = unfold(fold(x), spec)
    assert all(torch.equal(a, b) for a, b in zip(x.weights + x.biases, y.weights + y.biases))


def test_scale_parameter_count_formula():
    """c_in c_out [(n0+1)^2 + 2(L-2) + 2 nL^2] + c_out nL for ReLU MLPs (our notes, section 3)."""
    for widths in ([3, 5, 6, 2], [4, 7, 7, 7, 3], [2, 9, 1]):
        spec = mlp_spec(widths, "relu")
        L, n0, nL = len(widths) - 1, widths[0], widths[-1]
        layer = EquivariantLinear(spec, 2, 3)
        expected = 2 * 3 * ((n0 + 1) ** 2 + 2 * (L - 2) + 2 * nL ** 2) + 3 * nL
        assert sum(p.numel() for p in layer.parameters()) == expected


def test_sign_layer_has_the_extra_couplings():
    """Sign groups add b(L-1) <-> W(L) columns, and for L = 2 the W1 rows/b1/W2 columns coupling."""
    def pairs(spec):
        return {(t.target, t.source) for t in enumerate_terms(spec, spec.neuron_symmetries())}
    # indices: W1=0, b1=1, W2=2, b2=3, W3=4, b3=5
    relu3, tanh3 = pairs(mlp_spec([3, 5, 6, 2], "relu")), pairs(mlp_spec([3, 5, 6, 2], "tanh"))
    assert (4, 3) in tanh3 and (3, 4) in tanh3 and (4, 3) not in relu3
    tanh2, relu2 = pairs(mlp_spec([3, 5, 2], "tanh")), pairs(mlp_spec([3, 5, 2], "relu"))
    assert {(2, 0), (0, 2), (2, 1), (1, 2)} <= tanh2
    assert not {(2, 0), (0, 2), (2, 1), (1, 2)} & relu2
    conv = cnn_spec(1, [4], 3, "tanh", conv_last=True)  # L = 2, conv last: the official code crashes here
    assert {(2, 0), (2, 1)} <= pairs(conv)


# --- completeness: our layer spans exactly the commutant ----------------------------------------

def _rep_matrices(spec, symmetries, n):
    P = spec.num_params()
    eye = WeightSpaceFeatures.unflatten(torch.eye(P, dtype=torch.float64), spec, 1)
    # Moderate scales: the group is generated just as well, and the SVD rank cut stays clean.
    g = sample_element(spec, n, 0, scale=ScaleDist("loguniform", 0.5, 2.0), symmetries=symmetries)
    mats = []
    for k in range(n):
        gk = type(g)(tuple(p[k:k + 1] for p in g.perms), tuple(d[k:k + 1] for d in g.scales), spec)
        mats.append(gk.act(eye).flatten().T.contiguous())  # column j = g e_j
    return mats


def _null_dim(M: torch.Tensor) -> int:
    s = torch.linalg.svdvals(M)
    return int((s <= 1e-9 * s[0]).sum()) + max(0, M.shape[1] - M.shape[0])


def _layer_span_rank(spec, symmetries) -> tuple[int, int]:
    """(#parameters, rank of the affine maps they generate) for c_in = c_out = 1."""
    layer = EquivariantLinear(spec, 1, 1, symmetries).double()
    P = spec.num_params()
    basis = WeightSpaceFeatures.unflatten(torch.eye(P, dtype=torch.float64), spec, 1)
    zero = WeightSpaceFeatures.unflatten(torch.zeros(1, P, dtype=torch.float64), spec, 1)
    params = list(layer.parameters())
    cols = []
    with torch.no_grad():
        for p in params:
            p.zero_()
        for p in params:
            for i in range(p.numel()):
                p.view(-1)[i] = 1.0
                const = layer(zero).flatten()[0]
                lin = layer(basis).flatten() - const  # (P, P): the linear part
                cols.append(torch.cat([lin.flatten(), const]))
                p.view(-1)[i] = 0.0
    A = torch.stack(cols)
    return A.shape[0], int(torch.linalg.matrix_rank(A))


COMPLETENESS_SPECS = {
    "relu-mlp-L2": mlp_spec([2, 3, 2], "relu"),
    "tanh-mlp-L2": mlp_spec([2, 3, 2], "tanh"),
    "relu-mlp-L3": mlp_spec([2, 2, 3, 2], "relu"),
    "tanh-mlp-L3": mlp_spec([2, 2, 3, 2], "tanh"),
    "mixed-mlp-L3": mlp_spec([2, 2, 3, 2], ["relu", "tanh"]),
    "relu-cnn": cnn_spec(1, [2], 2, "relu", kernel=2, stride=1, padding=0),
    "tanh-cnn-conv-last": cnn_spec(1, [2], 2, "tanh", kernel=2, stride=1, padding=0, conv_last=True),
}


@pytest.mark.parametrize("name", list(COMPLETENESS_SPECS) + ["hnp:relu-mlp-L2"])
def test_completeness(name):
    """dim{A : A rho(g) = rho(g) A for all g} + dim{v : rho(g) v = v} == #independent parameters."""
    preset = "monomial"
    if name.startswith("hnp:"):
        preset, name = "hnp", name[4:]
    spec = COMPLETENESS_SPECS[name]
    syms = resolve_symmetries(spec, preset)
    P = spec.num_params()
    mats = _rep_matrices(spec, syms, 12)  # enough random elements to generate the group
    I = torch.eye(P, dtype=torch.float64)
    commutant = _null_dim(torch.cat([torch.kron(R, I) - torch.kron(I, R.T.contiguous()) for R in mats]))
    invariants = _null_dim(torch.cat([R - I for R in mats]))
    n_params, rank = _layer_span_rank(spec, preset)
    assert rank == n_params, "our terms are linearly dependent"
    assert n_params == commutant + invariants, f"layer has {n_params}, the group allows {commutant}+{invariants}"


# --- activations and pooling --------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SPECS))
def test_auto_activation_and_pool_are_symmetric(name):
    spec = SPECS[name]
    act = EquivariantActivation(spec, "auto")
    pool = InvariantPool(spec, 3).double()
    with torch.no_grad():
        for p in pool.affine.values():
            if p.numel():
                p.normal_()
    x = randn_features(spec, 4, 3)
    g = sample_element(spec, 4, 2, scale=SCALES)
    y, y_g = act.forward_folded(fold(x)), act.forward_folded(fold(g.act(x)))
    assert rel_err(unfold(y_g, spec), g.act(unfold(y, spec))) <= 1e-10
    assert rel_err(pool.forward_folded(fold(g.act(x))), pool.forward_folded(fold(x))) <= 1e-10


@pytest.mark.parametrize("spec_name,act", [("relu-mlp-L3", "gelu"), ("relu-mlp-L3", "tanh"), ("tanh-mlp-L3", "relu"),
                                           ("siren", "leaky_relu"), ("mixed-mlp", "relu")])
def test_activation_that_breaks_the_group_is_refused(spec_name, act):
    with pytest.raises(WeightSpaceError, match="does not commute"):
        EquivariantActivation(SPECS[spec_name], act)


def test_activation_allowed_for_permutation_only():
    EquivariantActivation(SPECS["gelu-mlp"], "gelu")
    EquivariantActivation(SPECS["relu-mlp-L3"], "gelu", symmetries="hnp")


def test_robust_normalize_extreme_magnitudes():
    x = torch.randn(5, 7, 3, dtype=torch.float32)
    ref = robust_normalize(x.double())
    for s in (1e-30, 1e-15, 1e6, 1e30):
        y = robust_normalize(x * s)
        assert torch.isfinite(y).all()
        assert (y.double() - ref).abs().max() < 1e-5
    assert torch.equal(robust_normalize(torch.zeros(2, 3)), torch.zeros(2, 3))


def test_fused_normalized_mean_equals_the_composition():
    # the pool's fused kernel: same values and gradients as normalise-then-mean, in float64,
    # over magnitudes 1e-3..1e3 per entry, with a zero vector (value 0, gradient 0) and a vector
    # below eps^2 (exact value, no gradient)
    from mnfn.layers.kernels import NormalizedMean
    from mnfn.layers.pooling import _scaled_and_inverse_norm

    torch.manual_seed(0)
    x = torch.randn(4, 5, 9, dtype=torch.float64) * torch.logspace(-3, 3, 9, dtype=torch.float64)
    x[0, :, 0] = 0
    x[1, :, 1] = 1e-40
    a_in, b_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    y, r = _scaled_and_inverse_norm(b_in, 1)
    ref = (y * r).mean(2)
    out = NormalizedMean.apply(a_in)
    g = torch.randn(4, 5, dtype=torch.float64)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    assert ((out - ref).abs().max() / ref.abs().max()) < 1e-14
    assert ((a_in.grad - b_in.grad).abs().max() / b_in.grad.abs().max()) < 1e-12
    assert torch.equal(a_in.grad[0, :, 0], torch.zeros(5, dtype=torch.float64))
    assert torch.equal(a_in.grad[1, :, 1], torch.zeros(5, dtype=torch.float64))
    z = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(NormalizedMean.apply, (z,))


def test_pool_uses_the_fused_kernel_with_the_same_result():
    # zoo CNN, scale group: the fused path and the unfused one give the same invariant vector
    spec = zoo_cnn_spec("relu", channels=6, image_size=8)
    pool = InvariantPool(spec, 3, "monomial").double()
    xs = fold(randn_features(spec, 2, 3))
    fused = pool.forward_folded(xs)
    pool._pools_all = lambda x, dims: False  # type: ignore[method-assign]
    assert torch.allclose(fused, pool.forward_folded(xs), rtol=1e-12, atol=1e-14)


def test_layer_rejects_wrong_input():
    layer = EquivariantLinear(SPECS["relu-mlp-L3"], 2, 3)
    with pytest.raises(WeightSpaceError, match="channels"):
        layer(randn_features(SPECS["relu-mlp-L3"], 2, 1, dtype=torch.float32))
    with pytest.raises(WeightSpaceError, match="built for"):
        layer(randn_features(SPECS["relu-mlp-L2"], 2, 2, dtype=torch.float32))


def test_inplace_activation_never_writes_views_or_inputs():
    # the stacks let ReLU overwrite their layers' fresh outputs; a view (a broadcast part, a
    # parameter) or the caller's own tensors must come through untouched
    from mnfn.layers.pooling import EquivariantActivation
    from mnfn.models.parts import EquivariantStack

    spec = zoo_cnn_spec("relu", channels=6, image_size=8)
    act = EquivariantActivation(spec, "relu", "hnp")
    base = torch.randn(2, 3, 4, 4)
    view = base[:, :, :, :]
    xs = fold(randn_features(spec, 2, 3))
    xs[0] = view
    before = [t.clone() for t in xs]
    act.forward_folded(xs, inplace=True)
    torch.testing.assert_close(xs[0], before[0], rtol=0, atol=0)  # a view is never written
    stack = EquivariantStack(spec, [1, 4, 4, 2], "hnp", "relu").double()
    inputs = fold(randn_features(spec, 3, 1))
    copies = [t.clone() for t in inputs]
    params = [p.detach().clone() for p in stack.parameters()]
    with torch.no_grad():
        out1 = stack.forward_folded(list(inputs))
    out2 = stack.forward_folded(list(inputs))
    for a, b in zip(inputs, copies):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for p, q in zip(stack.parameters(), params):
        torch.testing.assert_close(p.detach(), q, rtol=0, atol=0)
    for a, b in zip(out1, out2):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)
    sum(t.sum() for t in out2).backward()  # autograd accepts the in-place ReLU


@pytest.mark.parametrize("preset", ["hnp", "np", "monomial"])
def test_group_matrices_are_the_parameters_and_old_checkpoints_load(preset):
    # each zero-free group's block matrix is one parameter and the per-term tensors are views of it;
    # a checkpoint in the earlier one-parameter-per-term layout (params.N) loads into it
    spec = SPECS["relu-zoo-cnn"]
    layer = EquivariantLinear(spec, 2, 3, preset).double()
    assert len(layer.weights) > 0
    assert sum(p.numel() for p in layer.parameters()) == sum(math.prod(p.param_shape) for p in layer.plans)
    n = next(n for n, slot in enumerate(layer._slots) if slot[0] == "w")
    before = layer.params[n].detach().clone()
    with torch.no_grad():
        layer.params[n].add_(1.0)  # a view: writing it writes the layer
    torch.testing.assert_close(layer.params[n].detach(), before + 1.0, rtol=0, atol=0)
    old_style = {f"params.{n}": torch.randn_like(p) for n, p in enumerate(layer.params)}
    fresh = EquivariantLinear(spec, 2, 3, preset).double()
    fresh.load_state_dict(old_style)
    for n, p in enumerate(fresh.params):
        torch.testing.assert_close(p, old_style[f"params.{n}"], rtol=0, atol=0)
    x = randn_features(spec, 2, 2)
    ref = fresh.forward_reference(fold(x))
    for a, b in zip(fresh.forward_folded(fold(x)), ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    with pytest.raises(WeightSpaceError, match="lacks"):
        EquivariantLinear(spec, 2, 3, preset).double().load_state_dict({"params.0": old_style["params.0"]})
