"""StatNN and FlatMLP: shapes, gradients, permutation invariance of the statistics, clear errors."""

import pytest
import torch
from torch import nn

from mnfn.models.baselines import NUM_STATS, FlatMLP, StatNN, mlp_head, tensor_statistics
from mnfn.groups import sample_element
from mnfn.weightspace import (
    WeightSpaceError,
    WeightSpaceFeatures,
    WeightSpaceSpec,
    cnn_spec,
    mlp_spec,
    siren_spec,
    zoo_cnn_spec,
)

SPECS = {
    "mlp": mlp_spec([3, 5, 6, 2], "relu"),
    "zoo-cnn": zoo_cnn_spec("relu"),
    "siren": siren_spec(1),
    "conv-last-cnn": cnn_spec(2, [4, 5], 3, conv_last=True),
}


def random_features(spec: WeightSpaceSpec, batch: int = 4, channels: int = 1, dtype=torch.float32,
                    seed: int = 0) -> WeightSpaceFeatures:
    g = torch.Generator().manual_seed(seed)
    return WeightSpaceFeatures(
        tuple(torch.randn(batch, channels, *s, generator=g, dtype=dtype) for s in spec.weight_shapes()),
        tuple(torch.randn(batch, channels, *s, generator=g, dtype=dtype) for s in spec.bias_shapes()),
        spec,
    )


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("cls", [StatNN, FlatMLP])
@pytest.mark.parametrize("channels", [1, 2])
def test_shapes_and_gradients(name: str, cls, channels: int) -> None:
    spec = SPECS[name]
    model = cls(spec, hidden=(16, 8), out_features=3, dropout=0.1, channels=channels)
    U = random_features(spec, channels=channels).map(lambda t: t.requires_grad_())
    out = model(U)
    assert out.shape == (4, 3)
    out.square().sum().backward()
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert any(t.grad.abs().sum() > 0 for t in (*U.weights, *U.biases))  # gradients reach the input


def test_statistics_values() -> None:
    t = torch.randn(3, 2, 5, 7, dtype=torch.float64)
    s = tensor_statistics(t)
    x = t.flatten(2)
    assert s.shape == (3, 2, NUM_STATS)
    torch.testing.assert_close(s[..., 0], x.mean(-1))
    torch.testing.assert_close(s[..., 1], x.var(-1, correction=0))
    q = torch.quantile(x, torch.tensor([0, 0.25, 0.5, 0.75, 1], dtype=torch.float64), dim=-1).permute(1, 2, 0)
    torch.testing.assert_close(s[..., 2:], q)
    one = tensor_statistics(torch.tensor([[[2.5]]]))  # a 1-entry tensor (an output bias of size 1)
    torch.testing.assert_close(one, torch.tensor([[[2.5, 0.0, 2.5, 2.5, 2.5, 2.5, 2.5]]]))


@pytest.mark.parametrize("name", list(SPECS))
def test_statnn_permutation_invariant(name: str) -> None:
    spec = SPECS[name]
    model = StatNN(spec, hidden=(32, 32), channels=2).double()
    U = random_features(spec, channels=2, dtype=torch.float64)
    g = sample_element(spec, batch=4, generator=3, scale=None, flip_signs=False)  # permutations only
    ref = model(U)
    assert ((model(g.act(U)) - ref).abs().max() / ref.abs().max()).item() < 1e-10
    # Not a claim of scale invariance: a scaling changes the statistics.
    if spec.neuron_symmetries()[1] == "scale":
        h = sample_element(spec, batch=4, generator=3)
        assert not torch.allclose(model.statistics(h.act(U)), model.statistics(U))


@pytest.mark.parametrize("cls", [StatNN, FlatMLP])
def test_wrong_spec_or_channels_is_a_clear_error(cls) -> None:
    model = cls(SPECS["mlp"], hidden=(8,))
    with pytest.raises(WeightSpaceError, match="mixed architectures"):
        model(random_features(mlp_spec([3, 5, 7, 2])))
    with pytest.raises(WeightSpaceError, match="channel"):
        model(random_features(SPECS["mlp"], channels=2))
    # Same shapes with another activation is the same input format (zoo of ReLU and tanh nets).
    assert model(random_features(mlp_spec([3, 5, 6, 2], "tanh"))).shape == (4, 1)


def test_flat_mlp_outputs_raw_logits() -> None:
    """No sigmoid at the end (the official baseline's bug): outputs leave [0, 1]."""
    model = FlatMLP(SPECS["mlp"], hidden=(8,))
    with torch.no_grad():
        model.head[-1].bias.fill_(5.0)
    assert (model(random_features(SPECS["mlp"])) > 1).all()
    assert not any(isinstance(m, nn.Sigmoid) for m in model.modules())


def test_mlp_head_and_paper_param_count() -> None:
    head = mlp_head(10, [20, 30], 4, 0.2)
    assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert head(torch.randn(5, 10)).shape == (5, 4)
    assert isinstance(mlp_head(3, [], 1)[0], nn.Linear)
    assert isinstance(mlp_head(3, [4], 1, activation=nn.Tanh)[1], nn.Tanh)
    # The paper's StatNN on the Small CNN Zoo: 2*4*7 = 56 statistics -> 1000 -> 1000 -> 1.
    statnn = StatNN(zoo_cnn_spec(), hidden=(1000, 1000))
    assert sum(p.numel() for p in statnn.parameters()) == 1_059_001
    flat = FlatMLP(zoo_cnn_spec(), hidden=(16,))
    assert flat.in_dim == 4970 == zoo_cnn_spec().num_params()
    with pytest.raises(ValueError):
        mlp_head(0, [4], 1)
    with pytest.raises(ValueError):
        mlp_head(3, [4], 1, dropout=1.0)
