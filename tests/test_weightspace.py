"""Weight-space specs, the feature batch, module <-> features conversion and the functional forward."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mnfn.weightspace import ACTIVATIONS, LayerSpec, Sine, Symmetry, WeightSpaceError, WeightSpaceFeatures, WeightSpaceSpec, activation_fn, cnn_spec, mlp_spec, siren_spec, zoo_cnn_spec
from mnfn.networks import build_module, features_from_modules, features_to_module, functional_forward, spec_from_module

DT = torch.float64


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||`` over the whole tensor (b must be non-zero)."""
    denom = b.norm().item()
    assert denom > 0, "reference is identically zero; the comparison would be vacuous"
    return (a - b).norm().item() / denom


def rand_features(spec: WeightSpaceSpec, batch: int = 3, channels: int = 1, seed: int = 0) -> WeightSpaceFeatures:
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


# A zoo of sequential models the library must read.
def _models() -> dict[str, callable]:
    return {
        "relu_mlp": lambda: nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)),
        "leaky_mlp": lambda: nn.Sequential(nn.Linear(3, 6), nn.LeakyReLU(0.2), nn.Linear(6, 2)),
        "tanh_mlp_dropout": lambda: nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Dropout(0.0), nn.Linear(5, 3)),
        "gelu_mlp": lambda: nn.Sequential(nn.Linear(2, 7), nn.GELU(), nn.Linear(7, 1)),
        "siren": lambda: nn.Sequential(nn.Linear(2, 8), Sine(30.0), nn.Linear(8, 8), Sine(30.0), nn.Linear(8, 1)),
        "nested_siren": lambda: nn.Sequential(
            nn.Sequential(nn.Linear(2, 8), Sine(30.0)), nn.Sequential(nn.Linear(8, 8), Sine(30.0)), nn.Linear(8, 3)
        ),
        "relu_cnn": lambda: nn.Sequential(
            nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3),
        ),
        "tanh_cnn": lambda: nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Tanh(),
            nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2),
        ),
        "conv_last_cnn": lambda: nn.Sequential(
            nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ),
    }


MODELS = _models()


# --- specs ---------------------------------------------------------------------------------------

def test_mlp_spec_facts():
    spec = mlp_spec([3, 5, 6, 2], ["relu", "tanh"])
    assert spec.num_layers == 3
    assert spec.widths == (3, 5, 6, 2)
    assert not spec.is_cnn
    assert spec.neuron_symmetries() == (Symmetry.FIXED, Symmetry.SCALE, Symmetry.SIGN, Symmetry.FIXED)
    assert spec.weight_shapes() == [(5, 3), (6, 5), (2, 6)]
    assert spec.bias_shapes() == [(5,), (6,), (2,)]
    assert spec.num_params() == 5 * 3 + 5 + 6 * 5 + 6 + 2 * 6 + 2
    assert "relu" in spec.describe() and "tanh" in spec.describe()


@pytest.mark.parametrize("act, sym", [("relu", "scale"), ("leaky_relu", "scale"), ("tanh", "sign"),
                                      ("sin", "sign"), ("gelu", "perm"), ("sigmoid", "perm")])
def test_activation_symmetry(act, sym):
    assert mlp_spec([2, 3, 1], act).neuron_symmetries()[1] == sym


def test_cnn_specs():
    spec = zoo_cnn_spec("relu")
    assert spec.widths == (1, 16, 16, 16, 10)
    assert spec.pool_after == 2 and spec.is_cnn
    assert spec.num_params() == 4970  # the Small CNN Zoo's parameter count
    assert spec.weight_shapes()[0] == (16, 1, 3, 3) and spec.weight_shapes()[-1] == (10, 16)
    last = cnn_spec(1, [4, 5], 3, "tanh", conv_last=True)
    assert [layer.kind for layer in last.layers] == ["conv", "conv", "conv"]
    assert last.pool_after == 2 and last.layers[-1].activation is None
    assert last.neuron_symmetries() == ("fixed", "sign", "sign", "fixed")
    siren = siren_spec(3, hidden=8)
    assert siren.widths == (2, 8, 8, 3) and siren.layers[0].act_param == 30.0


@pytest.mark.parametrize("make, match", [
    (lambda: WeightSpaceSpec(()), "at least one layer"),
    (lambda: WeightSpaceSpec((LayerSpec("dense", 4, 3, activation="relu"), LayerSpec("dense", 2, 5))), "takes 5 inputs"),
    (lambda: WeightSpaceSpec((LayerSpec("dense", 4, 3), LayerSpec("dense", 2, 4))), "needs an activation"),
    (lambda: WeightSpaceSpec((LayerSpec("dense", 2, 3, activation="relu"),)), "last layer must not have an activation"),
    (lambda: WeightSpaceSpec((LayerSpec("dense", 4, 3, activation="relu"), LayerSpec("conv", 2, 4, (3, 3)))),
     "conv layer 2 after a dense layer"),
    (lambda: WeightSpaceSpec((LayerSpec("conv", 4, 3, (3, 3), activation="relu"), LayerSpec("dense", 2, 4))),
     "needs pool_after"),
    (lambda: LayerSpec("pool", 2, 3), "'dense' or 'conv'"),
    (lambda: LayerSpec("conv", 2, 3), r"\(kh, kw\) kernel"),
    (lambda: LayerSpec("dense", 0, 3), "positive"),
    (lambda: mlp_spec([3, 4, 5, 2], ["relu"]), "need 2 hidden activations"),
])
def test_bad_specs(make, match):
    with pytest.raises(WeightSpaceError, match=match):
        make()


def test_unknown_activation_name():
    with pytest.raises(WeightSpaceError, match=r"unknown activation 'swish'.*known:.*relu"):
        mlp_spec([2, 3, 1], "swish")
    with pytest.raises(WeightSpaceError, match="unknown activation 'swish'"):
        activation_fn("swish")
    with pytest.raises(WeightSpaceError, match="unknown activation"):
        cnn_spec(1, [4], 2, "swish")


def test_activation_fn_params():
    x = torch.linspace(-2, 2, 9, dtype=DT)
    assert torch.equal(activation_fn("leaky_relu", 0.2)(x), torch.nn.functional.leaky_relu(x, 0.2))
    assert torch.equal(activation_fn("sin", 30.0)(x), torch.sin(30.0 * x))
    assert torch.equal(activation_fn("sin")(x), torch.sin(x))
    for name, act in ACTIVATIONS.items():
        if act.symmetry == Symmetry.SIGN:  # odd: f(-x) = -f(x)
            f = activation_fn(name, 3.0)
            assert torch.equal(f(-x), -f(x)), name


# --- the feature batch ---------------------------------------------------------------------------

def test_feature_facts():
    spec = mlp_spec([3, 4, 2])
    f = rand_features(spec, batch=5, channels=2)
    assert (f.batch_size, f.channels, f.dtype, f.device.type, len(f)) == (5, 2, DT, "cpu", 2)
    pairs = list(f)
    assert len(pairs) == 2 and pairs[0][0] is f.weights[0] and pairs[1][1] is f.biases[1]


def test_validate_shape_errors():
    spec = mlp_spec([3, 4, 2])
    f = rand_features(spec, batch=2)
    w, b = f.weights, f.biases
    with pytest.raises(WeightSpaceError, match="expected 2 weight and bias tensors"):
        WeightSpaceFeatures(w[:1], b[:1], spec)
    with pytest.raises(WeightSpaceError, match=r"weight 1 has shape \(2, 1, 4, 5\), expected \(B, C, 4, 3\)"):
        WeightSpaceFeatures((torch.zeros(2, 1, 4, 5, dtype=DT), w[1]), b, spec)
    with pytest.raises(WeightSpaceError, match=r"weight 2 has shape \(2, 2, 5\)"):  # channel axis missing
        WeightSpaceFeatures((w[0], torch.zeros(2, 2, 5)), b, spec)
    with pytest.raises(WeightSpaceError, match=r"bias 2 has shape \(2, 1, 3\), expected \(B, C, 2\)"):
        WeightSpaceFeatures(w, (b[0], torch.zeros(2, 1, 3, dtype=DT)), spec)
    with pytest.raises(WeightSpaceError, match=r"bias 1 has shape \(2, 4\)"):
        WeightSpaceFeatures(w, (torch.zeros(2, 4), b[1]), spec)
    with pytest.raises(WeightSpaceError, match="batch/channel dims"):
        WeightSpaceFeatures((w[0], torch.zeros(3, 1, 2, 4, dtype=DT)), b, spec)
    with pytest.raises(WeightSpaceError, match="batch/channel dims"):
        WeightSpaceFeatures(w, (b[0], torch.zeros(2, 2, 2, dtype=DT)), spec)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_validate_finite(bad):
    spec = mlp_spec([3, 4, 2])
    f = rand_features(spec, batch=4)
    w = f.weights[1].clone()
    w[2, 0, 1, 1] = bad
    g = WeightSpaceFeatures((f.weights[0], w), f.biases, spec)  # constructing checks shapes only
    assert g.validate(check_finite=False) is g
    with pytest.raises(WeightSpaceError, match=r"weight 2 has NaN/Inf values \(batch items \[2\]\)"):
        g.validate(check_finite=True)
    b = f.biases[0].clone()
    b[0, 0, 3] = bad
    with pytest.raises(WeightSpaceError, match=r"bias 1 has NaN/Inf values \(batch items \[0\]\)"):
        WeightSpaceFeatures(f.weights, (b, f.biases[1]), spec).validate()
    assert f.validate() is f


def test_features_from_modules_finite_check():
    model = MODELS["relu_mlp"]()
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    with pytest.raises(WeightSpaceError, match="weight 2 has NaN/Inf"):
        features_from_modules(model)
    f = features_from_modules(model, check_finite=False)
    assert torch.isnan(f.weights[1]).any()


def test_to_detach_arithmetic_map():
    spec = mlp_spec([3, 4, 2])
    a, b = rand_features(spec, 3, seed=0), rand_features(spec, 3, seed=1)
    f32 = a.to(torch.float32)
    assert f32.dtype == torch.float32 and all(t.dtype == torch.float32 for t in f32.biases)
    assert f32.spec is spec and a.dtype == DT  # immutable: a is untouched

    req = a.map(lambda t: t.clone().requires_grad_(True))
    assert all(t.requires_grad for t in req.weights)
    det = req.detach()
    assert not any(t.requires_grad for t in (*det.weights, *det.biases))

    for op, fn in ((lambda x, y: x + y, torch.add), (lambda x, y: x - y, torch.sub)):
        out = op(a, b)
        for x, y, z in zip((*a.weights, *a.biases), (*b.weights, *b.biases), (*out.weights, *out.biases)):
            assert torch.equal(z, fn(x, y))
    for out in (a * 2.5, 2.5 * a):
        assert all(torch.equal(z, x * 2.5) for x, z in zip((*a.weights, *a.biases), (*out.weights, *out.biases)))
    sq = a.map(torch.square)
    assert all(torch.equal(z, x.square()) for x, z in zip((*a.weights, *a.biases), (*sq.weights, *sq.biases)))
    cat = a.cat_channels(b)
    assert cat.channels == 2 and torch.equal(cat.weights[0][:, 1], b.weights[0][:, 0])


def test_arithmetic_rejects_other_architecture():
    a = rand_features(mlp_spec([3, 5, 2]), 2)
    b = rand_features(mlp_spec([3, 1, 2]), 2)  # would broadcast silently against a
    with pytest.raises(WeightSpaceError, match="different architectures"):
        a + b
    with pytest.raises(WeightSpaceError, match="different architectures"):
        a - rand_features(mlp_spec([3, 5, 5, 2]), 2)


def test_collate():
    spec = mlp_spec([3, 4, 2])
    parts = [rand_features(spec, n, seed=n) for n in (1, 2, 3)]
    c = WeightSpaceFeatures.collate(parts)
    assert c.batch_size == 6 and c.spec is spec
    assert torch.equal(c.weights[1][1:3], parts[1].weights[1])
    assert torch.equal(c.biases[0][3:], parts[2].biases[0])
    models = [MODELS["relu_cnn"]() for _ in range(3)]
    singles = WeightSpaceFeatures.collate([features_from_modules(m) for m in models])
    batch = features_from_modules(models)
    assert all(torch.equal(x, y) for x, y in zip((*singles.weights, *singles.biases), (*batch.weights, *batch.biases)))


def test_collate_errors():
    a = rand_features(mlp_spec([3, 4, 2]), 2)
    b = rand_features(mlp_spec([3, 5, 2]), 2)
    with pytest.raises(WeightSpaceError, match=r"mixed architectures in one batch: item 0 is \[.*\], item 1 is"):
        WeightSpaceFeatures.collate([a, b])
    with pytest.raises(WeightSpaceError, match="empty"):
        WeightSpaceFeatures.collate([])


@pytest.mark.parametrize("spec", [mlp_spec([3, 4, 5, 2]), cnn_spec(2, [3, 4], 5), cnn_spec(1, [3], 2, conv_last=True)],
                         ids=["mlp", "cnn", "conv_last"])
@pytest.mark.parametrize("channels", [1, 3])
def test_flatten_unflatten_round_trip(spec, channels):
    f = rand_features(spec, batch=4, channels=channels)
    flat = f.flatten()
    assert flat.shape == (4, channels * spec.num_params())
    g = WeightSpaceFeatures.unflatten(flat, spec, channels=channels)
    assert all(torch.equal(x, y) for x, y in zip((*f.weights, *f.biases), (*g.weights, *g.biases)))
    assert torch.equal(g.flatten(), flat)
    # layer by layer, weight then bias
    n0 = channels * math.prod(spec.weight_shapes()[0])
    assert torch.equal(flat[:, :n0], f.weights[0].flatten(1))
    with pytest.raises(WeightSpaceError, match="expected"):
        WeightSpaceFeatures.unflatten(flat[:, 1:], spec, channels=channels)


def test_indexing():
    spec = mlp_spec([3, 4, 2])
    f = rand_features(spec, batch=5)
    one = f[2]
    assert one.batch_size == 1 and torch.equal(one.weights[0][0], f.weights[0][2])
    last = f[-1]
    assert last.batch_size == 1 and torch.equal(last.biases[1][0], f.biases[1][4])
    assert torch.equal(f[-5].weights[1], f[0].weights[1])
    sl = f[1:4]
    assert sl.batch_size == 3 and torch.equal(sl.weights[1], f.weights[1][1:4])
    mask = torch.tensor([True, False, True, False, True])
    m = f[mask]
    assert m.batch_size == 3 and torch.equal(m.biases[0], f.biases[0][mask])
    idx = f[torch.tensor([4, 0])]
    assert torch.equal(idx.weights[0][0], f.weights[0][4])
    for bad in (5, -6):
        with pytest.raises(IndexError, match="out of range"):
            f[bad]


def test_zeros_like_spec():
    spec = zoo_cnn_spec(channels=4, image_size=8)
    z = WeightSpaceFeatures.zeros_like_spec(spec, batch=2, channels=3, dtype=DT)
    assert z.batch_size == 2 and z.channels == 3 and z.dtype == DT
    assert z.weights[0].shape == (2, 3, 4, 1, 3, 3) and z.biases[-1].shape == (2, 3, 10)
    assert float(z.flatten().abs().sum()) == 0.0


# --- modules <-> features ------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(MODELS))
def test_module_round_trip_exact(name):
    model = MODELS[name]().to(DT)
    spec = spec_from_module(model)
    f = features_from_modules(model)
    assert f.batch_size == 1 and f.channels == 1 and f.dtype == DT
    back = features_to_module(f)
    assert spec_from_module(back) == spec
    src = [p for p in model.parameters()]
    dst = [p for p in back.parameters()]
    assert len(src) == len(dst)
    for p, q in zip(src, dst):
        assert p.dtype == q.dtype and torch.equal(p, q)
    x = inputs_for(spec, 5)
    assert torch.equal(back(x), model(x))
    # and features of the rebuilt module are the same features
    f2 = features_from_modules(back)
    assert all(torch.equal(x, y) for x, y in zip((*f.weights, *f.biases), (*f2.weights, *f2.biases)))


def test_round_trip_float32_and_index():
    models = [MODELS["siren"]() for _ in range(3)]
    f = features_from_modules(models)
    assert f.dtype == torch.float32 and f.batch_size == 3
    for i, model in enumerate(models):
        back = features_to_module(f, index=i)
        assert all(torch.equal(p, q) for p, q in zip(model.parameters(), back.parameters()))
        sines = [m for m in back if isinstance(m, Sine)]
        assert [s.w0 for s in sines] == [30.0, 30.0]
    f64 = features_from_modules(models, dtype=DT)
    assert f64.dtype == DT and torch.equal(f64.weights[0].float(), f.weights[0])
    with pytest.raises(WeightSpaceError, match="out of range"):
        features_to_module(f, index=3)


def test_spec_from_module_reads_activation_params():
    spec = spec_from_module(MODELS["leaky_mlp"]())
    assert spec.layers[0].activation == "leaky_relu" and spec.layers[0].act_param == pytest.approx(0.2)
    spec = spec_from_module(MODELS["nested_siren"]())
    assert [layer.activation for layer in spec.layers] == ["sin", "sin", None]
    assert spec.layers[1].act_param == 30.0
    spec = spec_from_module(MODELS["tanh_cnn"]())
    assert spec.pool_after == 1 and [layer.kind for layer in spec.layers] == ["conv", "conv", "dense", "dense"]
    assert spec.layers[1].stride == 2 and spec.layers[0].padding == 1


@pytest.mark.parametrize("name", list(MODELS))
def test_functional_forward_matches_modules(name):
    models = [MODELS[name]().to(DT) for _ in range(3)]
    f = features_from_modules(models)
    spec = f.spec
    x = inputs_for(spec, 6)
    y = functional_forward(f, x)
    ref = torch.stack([m(x) for m in models])
    assert y.shape == ref.shape and y.dtype == DT
    assert rel_err(y, ref) <= 1e-12
    # per-network inputs (B, N, ...)
    xs = torch.stack([inputs_for(spec, 6, seed=s) for s in range(3)])
    y = functional_forward(f, xs)
    ref = torch.stack([m(xi) for m, xi in zip(models, xs)])
    assert y.shape == ref.shape and rel_err(y, ref) <= 1e-12


def test_functional_forward_channel_and_spec_constructors():
    # Features built from a constructor spec with random values; the module rebuilt from them agrees.
    for spec in (siren_spec(2, hidden=6), mlp_spec([3, 5, 6, 2], ["relu", "tanh"]),
                 zoo_cnn_spec("tanh", channels=4, image_size=8), cnn_spec(1, [3, 4], 2, "relu", conv_last=True)):
        f = rand_features(spec, batch=2, channels=2)
        x = inputs_for(spec, 4)
        for c in (0, 1):
            y = functional_forward(f, x, channel=c)
            ref = torch.stack([features_to_module(f, index=i, channel=c)(x) for i in range(2)])
            assert rel_err(y, ref) <= 1e-12, spec.describe()


def test_functional_forward_input_errors():
    f = rand_features(mlp_spec([3, 4, 2]), batch=2)
    with pytest.raises(WeightSpaceError, match="network takes 3"):
        functional_forward(f, torch.zeros(5, 4, dtype=DT))
    with pytest.raises(WeightSpaceError, match=r"expected \(N, d\) or \(B=2, N, ...\)"):
        functional_forward(f, torch.zeros(3, 5, 3, dtype=DT))
    with pytest.raises(WeightSpaceError, match="expected"):
        functional_forward(f, torch.zeros(3, dtype=DT))
    g = rand_features(zoo_cnn_spec(channels=4), batch=2)
    with pytest.raises(WeightSpaceError, match="takes 1"):
        functional_forward(g, torch.zeros(5, 3, 8, 8, dtype=DT))
    with pytest.raises(WeightSpaceError, match=r"\(N, C, H, W\)"):
        functional_forward(g, torch.zeros(5, 8, 8, dtype=DT))


# --- unsupported models: clear errors that say why -------------------------------------------------

class NotSequential(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(x)


@pytest.mark.parametrize("make, match", [
    (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3), nn.Tanh(),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)),
     r"MaxPool2d.*sign flips.*tanh/sin"),
    (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Tanh(), nn.Conv2d(4, 4, 3), nn.Tanh(),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)),
     r"MaxPool2d.*sign flips"),
    (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 2)),
     r"MaxPool2d.*global average pooling"),
    (lambda: NotSequential(), r"only nn.Sequential models are supported \(got NotSequential\)"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)),
     r"BatchNorm1d\) is not supported.*Linear/Conv2d"),
    (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2)),
     r"Linear after Conv2d needs global average pooling"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), "without an activation between"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Tanh(), nn.Linear(4, 2)), "two activations in a row"),
    (lambda: nn.Sequential(nn.ReLU(), nn.Linear(3, 4)), "activation before the first weight layer"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Tanh()), "ends with an activation"),
    (lambda: nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2)), "without bias"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Conv2d(4, 2, 1)), "Conv2d after a Linear"),
    (lambda: nn.Sequential(nn.Conv2d(1, 4, 3, groups=1, dilation=2), nn.ReLU(), nn.Conv2d(4, 2, 1)),
     "dilated"),
    (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 2)),
     "only global average pooling"),
    (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.ReLU(), nn.Flatten(),
                           nn.Linear(4, 2)),
     "two activations in a row|activation after global pooling"),
    (lambda: nn.Sequential(nn.Dropout(0.1)), "no Linear or Conv2d layer"),
])
def test_unsupported_models(make, match):
    with pytest.raises(WeightSpaceError, match=match):
        spec_from_module(make())
    with pytest.raises(WeightSpaceError, match=match):
        features_from_modules(make())


def test_activation_after_global_pooling():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(WeightSpaceError, match="activation after global pooling"):
        spec_from_module(model)


def test_mismatched_batch_of_models():
    a = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    b = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(WeightSpaceError, match=r"mixed architectures: model 0 is \[.*3->4.*\] but model 1 is \[.*3->5"):
        features_from_modules([a, b])
    c = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))  # same shapes, other symmetry
    with pytest.raises(WeightSpaceError, match="mixed architectures"):
        features_from_modules([a, c])
    with pytest.raises(WeightSpaceError, match="no models"):
        features_from_modules([])
