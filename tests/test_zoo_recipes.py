"""Named zoo recipes (`mnfn zoo make --recipe`): the public-like recipe, old zoos still resume, the
accuracy histogram of `mnfn zoo info`."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mnfn.cli import main as cli_main
from mnfn.data import zoo as Z
from mnfn.data.images import load_images
from mnfn.io import read_json
from mnfn.networks import functional_forward

DATA = os.environ.get("MNFN_DATA")
needs_mnist = pytest.mark.skipif(not DATA or not (Path(DATA) / "mnist").is_dir(), reason="MNFN_DATA/mnist absent")

# The public recipe at test size: 4 epochs of 256 examples, checkpoints 0..4, the first 300 test images.
SMALL_PUBLIC = dataclasses.replace(Z.default_recipe("mnist", "public"), epochs=4, train_images=256,
                                   test_images=300, checkpoint_epochs=Z.public_checkpoints(4))


@pytest.fixture(scope="module")
def public_zoo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zoo") / "public"
    res = Z.make_zoo(out, "mnist", 4, seed=2, recipe=SMALL_PUBLIC, progress=False)
    assert res.complete
    return out


def test_public_checkpoints_scale_the_public_schedule():
    assert Z.public_checkpoints(86) == Z.PUBLIC_CHECKPOINTS
    twelve = Z.public_checkpoints(12)
    assert len(twelve) == 9 and twelve[:4] == (0, 1, 2, 3) and twelve[-1] == 12
    assert list(twelve) == sorted(set(twelve))
    assert Z.public_checkpoints(3) == (0, 1, 2, 3)


def test_public_recipe_settings():
    r = Z.default_recipe("cifar10-gray", "public")
    assert (r.name, r.input_range, r.padding, r.test_images, r.batch_size) == ("public", "symmetric", 0, None, 32)
    assert r.saved_epochs == Z.public_checkpoints(r.epochs) and len(r.saved_epochs) == 9
    fast = Z.default_recipe("cifar10-gray")
    assert (fast.name, fast.input_range, fast.padding, fast.checkpoint_epochs) == ("fast", "unit", 1, None)
    assert fast.saved_epochs == tuple(range(fast.epochs + 1))


def test_public_recipe_refuses_small_images_and_bad_settings():
    with pytest.raises(ValueError, match="15x15"):
        Z.default_recipe("digits", "public")
    with pytest.raises(ValueError, match="unknown zoo recipe 'nope'"):
        Z.default_recipe("mnist", "nope")
    with pytest.raises(ValueError, match="checkpoint_epochs"):
        dataclasses.replace(SMALL_PUBLIC, checkpoint_epochs=(0, 3, 2, 4))
    with pytest.raises(ValueError, match="checkpoint_epochs"):
        dataclasses.replace(SMALL_PUBLIC, checkpoint_epochs=(0, 1, 2))  # must end at epochs
    with pytest.raises(ValueError, match="input_range"):
        dataclasses.replace(SMALL_PUBLIC, input_range="centered")
    with pytest.raises(ValueError, match="padding"):
        dataclasses.replace(SMALL_PUBLIC, padding=2)


@needs_mnist
def test_public_zoo_records_its_recipe_and_reproduces_its_accuracy(public_zoo):
    """Rows at exactly the saved epochs; the rebuilt nets (valid padding read from zoo.json, inputs in
    [-1, 1]) give the recorded test accuracy, so padding and input range are used consistently."""
    meta = read_json(public_zoo / "zoo.json")
    assert meta["recipe"]["name"] == "public" and meta["recipe"]["padding"] == 0
    assert meta["recipe"]["input_range"] == "symmetric"
    zoo = Z.read_zoo(public_zoo)
    steps = np.asarray(zoo.metrics["step"])
    assert len(zoo) == 4 * len(SMALL_PUBLIC.saved_epochs)
    assert sorted(set(steps.tolist())) == list(SMALL_PUBLIC.saved_epochs)
    assert set(np.asarray(zoo.metrics["config.epochs_between_checkpoints"]).tolist()) == {1}
    test = load_images("mnist", "test", limit=SMALL_PUBLIC.test_images)
    x, y = torch.from_numpy(test.images) * 2 - 1, torch.from_numpy(test.labels)
    checked = 0
    for act in ("relu", "tanh"):
        try:
            ds = Z.ZooDataset(public_zoo, activation=act, split="all")
        except Exception:
            continue  # this tiny zoo drew no net with that activation
        assert all(l.padding == 0 for l in ds.spec.layers if l.kind == "conv")
        out = functional_forward(ds.features, x)
        acc = (out.argmax(-1) == y).float().mean(1)
        assert torch.allclose(acc, ds.targets, atol=1.01 / len(y)), (act, acc, ds.targets)
        # The same nets with padding 1 or inputs in [0, 1] compute something else.
        wrong = functional_forward(ds.features, (x + 1) / 2)
        assert not torch.allclose(out, wrong)
        checked += len(acc)
    assert checked == len(zoo)


def test_zoo_padding_rule():
    assert Z.zoo_padding(None) == 0  # a public Small CNN Zoo: Keras 'valid'
    assert Z.zoo_padding({"recipe": {"epochs": 3}}) == 1  # made here before recipes named their padding
    assert Z.zoo_padding({"recipe": {"padding": 0}}) == 0


def test_zoo_written_before_recipe_names_still_resumes(tmp_path):
    """A half-made zoo whose saved settings predate the recipe's new fields resumes: defaults fill them in."""
    recipe = dataclasses.replace(Z.default_recipe("digits"), epochs=1, train_images=128, test_images=50)
    out = tmp_path / "old"
    r1 = Z.make_zoo(out, "digits", 3, seed=1, recipe=recipe, progress=False, max_new_nets=1)
    assert not r1.complete
    cfg = out / ".parts" / "config.json"
    old = json.loads(cfg.read_text())
    for key in ("name", "input_range", "padding", "checkpoint_epochs"):
        del old["recipe"][key]
    cfg.write_text(json.dumps(old))
    r2 = Z.make_zoo(out, "digits", 3, seed=1, recipe=recipe, progress=False)
    assert r2.complete and r2.trained_now == 2
    other = dataclasses.replace(recipe, input_range="symmetric")
    with pytest.raises(ValueError, match="other settings"):
        Z.make_zoo(out, "digits", 3, seed=1, recipe=other, progress=False)


@needs_mnist
def test_zoo_info_histogram_and_plot(public_zoo, tmp_path, capsys):
    info = Z.zoo_info(public_zoo)
    for st in info["by_activation"].values():
        assert len(st["final_hist"]) == info["hist_bins"] and sum(st["final_hist"]) == st["nets"]
        assert 0.0 <= st["final_near_chance"] <= 1.0
    assert info["recipe"] == "public"
    assert Z.accuracy_histogram(np.array([0.0, 0.049, 0.05, 1.0, np.nan]), bins=20)[:2] == [2, 1]
    assert Z.accuracy_histogram(np.array([1.0]), bins=4) == [0, 0, 0, 1]
    png = tmp_path / "hist.png"
    assert cli_main(["zoo", "info", str(public_zoo), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "final test accuracy" in out and f"wrote {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the split by optimizer (which family leaves nets untrained) covers every final net
    for st in info["by_activation"].values():
        assert sum(r["nets"] for r in st["by_optimizer"].values()) == st["nets"]
    assert "final test accuracy by optimizer:" in out


@needs_mnist
def test_cli_recipe_flag(tmp_path, capsys):
    out = tmp_path / "z"
    assert cli_main(["zoo", "make", "--dataset", "mnist", "--recipe", "public", "--num-nets", "1", "--epochs", "2",
                     "--train-images", "64", "--test-images", "50", "--no-progress", "--out", str(out)]) == 0
    meta = read_json(out / "zoo.json")
    assert meta["recipe"]["name"] == "public" and meta["recipe"]["checkpoint_epochs"] == [0, 1, 2]
    assert cli_main(["zoo", "make", "--dataset", "digits", "--recipe", "public", "--num-nets", "1",
                     "--no-progress", "--out", str(tmp_path / "d")]) == 2
    assert "15x15" in capsys.readouterr().err


def test_zoo_info_on_a_zoo_still_being_made(tmp_path, capsys):
    """While `zoo make` runs (or after it was stopped), `zoo info` summarises the finished nets and says so."""
    recipe = dataclasses.replace(Z.default_recipe("digits"), epochs=1, train_images=128, test_images=50)
    out = tmp_path / "half"
    Z.make_zoo(out, "digits", 3, seed=1, recipe=recipe, progress=False, max_new_nets=2)
    info = Z.zoo_info(out)
    assert info["unfinished"] == {"nets_done": 2, "nets_total": 3} and info["nets"] == 2
    assert sum(r["nets"] for st in info["by_activation"].values() for r in st["by_optimizer"].values()) == 2
    assert sum(sum(st["final_hist"]) for st in info["by_activation"].values()) == 2
    assert cli_main(["zoo", "info", str(out)]) == 0
    assert "UNFINISHED, 2 of 3 nets so far" in capsys.readouterr().out
    empty = tmp_path / "empty"
    Z.make_zoo(empty, "digits", 3, seed=1, recipe=recipe, progress=False, max_new_nets=0)
    with pytest.raises(Exception, match="no net is finished yet"):
        Z.zoo_info(empty)
