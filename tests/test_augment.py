"""The one augmentation mechanism (mnfn.augment): parsing, refusals, reproducibility, copies, and
that it moves weights by real symmetries (the nets' functions do not change)."""

from __future__ import annotations

import pytest
import torch

from mnfn.augment import FULL_GROUP, Augment
from mnfn.groups import ScaleDist
from mnfn.weightspace import siren_spec, zoo_cnn_spec
from mnfn.networks import functional_forward
from symmetry_utils import randn_features, rel_err


def test_parse_and_refusals():
    assert Augment.parse("none") is None and Augment.parse(None) is None
    sign = Augment.parse("sign")
    assert sign.scale is None and sign.flip_signs and sign.name == "sign"
    sc = Augment.parse("scale:1,100", permute=False)
    assert sc.scale == ScaleDist("uniform", 1.0, 100.0) and not sc.flip_signs and not sc.permute
    with pytest.raises(ValueError, match="augmentation must be"):
        Augment.parse("rotate")
    with pytest.raises(ValueError, match="use 'sign' for tanh nets"):
        sc.check(zoo_cnn_spec("tanh", image_size=8))
    with pytest.raises(ValueError, match="use scale:LO,HI for ReLU nets"):
        sign.check(zoo_cnn_spec("relu", image_size=8))
    sc.check(zoo_cnn_spec("relu", image_size=8))
    Augment().check(zoo_cnn_spec("tanh", image_size=8))  # the generic one moves whatever the group has


@pytest.mark.parametrize("spec", [zoo_cnn_spec("relu", channels=4, image_size=8), siren_spec(1, hidden=6)],
                         ids=["relu-cnn", "siren"])
def test_moves_weights_keeps_functions_reproducibly(spec):
    f = randn_features(spec, batch=5, seed=3).to(torch.float32)
    aug = Augment(scale=ScaleDist("loguniform", 1e-2, 1e2)) if spec.is_cnn else FULL_GROUP
    a = aug.apply(f, torch.Generator().manual_seed(1))
    b = aug.apply(f, torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip(a.weights, b.weights))  # same seed, same bits
    assert a.dtype == f.dtype and not torch.allclose(a.weights[0], f.weights[0])
    x = (torch.randn(4, *spec.in_shape) if spec.is_cnn else torch.rand(4, 2) * 2 - 1).double()
    assert rel_err(functional_forward(a.to(torch.float64), x), functional_forward(f.to(torch.float64), x)) < 1e-4
    targets = torch.arange(5.0)
    feats, t = aug.with_copies(f, targets, 2, torch.Generator().manual_seed(2))
    assert feats.batch_size == 15 and torch.equal(t, targets.repeat(3))
    assert all(torch.equal(x, y) for x, y in zip(feats[:5].weights, f.weights))  # the originals come first
    moved, same = aug.batch_transform()((f, targets), torch.Generator().manual_seed(1))
    assert torch.equal(same, targets) and all(torch.equal(x, y) for x, y in zip(moved.weights, a.weights))


def test_zoo_and_inr_sets_speak_one_protocol(tmp_path):
    """ZooDataset, MaterializedZoo and InrDataset: spec, features, targets, len, batches."""
    import dataclasses

    from mnfn.data import zoo as Z
    from mnfn.data.inr import FitConfig, InrDataset, make_inr_dataset
    from mnfn.data.protocol import WeightDataset

    Z.make_zoo(tmp_path / "zoo", "digits", 4, seed=0, progress=False,
               recipe=dataclasses.replace(Z.default_recipe("digits"), epochs=1, train_images=128, test_images=50))
    make_inr_dataset(tmp_path / "inr", "digits", num=6, splits=("train",), fit=FitConfig(max_steps=3), progress=False)
    zoo = Z.ZooDataset(tmp_path / "zoo", split="all", activation=None)
    one = Z.ZooDataset(tmp_path / "zoo", split="all", activation=str(zoo.activations[0]))
    sets = [one, one.with_transformed_copies(1), InrDataset(tmp_path / "inr", "train")]
    for ds in sets:
        assert isinstance(ds, WeightDataset)
        got = list(ds.batches(4, shuffle=True, generator=torch.Generator().manual_seed(0)))
        assert sum(f.batch_size for f, _ in got) == len(ds) == len(ds.targets) == ds.features.batch_size
        assert got[0][0].spec.weight_shapes() == ds.spec.weight_shapes()
