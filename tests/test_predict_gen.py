"""Experiment 1 end to end on a tiny zoo generated with the zoo API (digits, few nets, 1 epoch)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from mnfn.cli import main
from mnfn.data.zoo import default_recipe, make_zoo
from mnfn.augment import Augment
from mnfn.tasks.predict_gen import DEFAULTS, eval_conditions
from mnfn.weightspace import zoo_cnn_spec

# Small model settings for CPU tests (every model the grid runs by default, shrunk).
# steps 1,2: the trained checkpoints. Step 0 has all-zero biases, on which Monomial-NFN's invariant
# pooling (layers/pooling.py robust_normalize) gives NaN gradients — see docs/results.md.
SMALL = ["--set", "epochs=2", "--set", "steps=1,2", "--set", "split_seed=4", "--set", "models.monomial.hidden=[8,8,4]",
         "--set", "models.monomial.head=[16]", "--set", "eval_batch_size=64"]


def tiny_zoo(cache_root: Path) -> Path:
    """16 nets (relu and tanh) on the 8x8 digits, 2 training epochs (checkpoints at steps 0, 1, 2);
    cached in pytest's cache folder (make_zoo returns at once when the zoo is complete)."""
    out = cache_root / "zoo-digits-16-e2"
    if (out / "zoo.json").is_file():  # complete (the folder name fixes the settings)
        return out
    recipe = dataclasses.replace(default_recipe("digits"), epochs=2)
    make_zoo(out, "digits", 16, seed=0, recipe=recipe, progress=False)
    return out


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread per test (tests/conftest.py)


@pytest.fixture(scope="module")
def zoo(request):
    return tiny_zoo(Path(request.config.cache.mkdir("mnfn-tiny-zoo")))


def _train(zoo, out, *extra):
    argv = ["train", "predict-gen", "--zoo", str(zoo), "--model", "monomial", "--activation", "relu",
            "--out", str(out), "--no-progress", *SMALL, *extra]
    assert main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


def test_end_to_end_reproducible_and_invariant(zoo, tmp_path, capsys):
    a = _train(zoo, tmp_path / "a", "--seed", "3")
    out = capsys.readouterr().out
    assert "scale:1,10000" in out and "tau" in out
    assert list(a["test"]) == ["original", "scale:1,10", "scale:1,100", "scale:1,1000", "scale:1,10000"]
    for cond, m in a["test"].items():
        assert set(m) >= {"tau", "r2", "mae"}
    # Monomial-NFN is invariant: every transformed test set gives the original's numbers
    for cond in ["scale:1,10", "scale:1,10000"]:
        assert a["test"][cond]["tau"] == pytest.approx(a["test"]["original"]["tau"], abs=1e-6)
        assert a["test"][cond]["mae"] == pytest.approx(a["test"]["original"]["mae"], rel=1e-3)
    for name in ("best.pt", "last.pt", "log.csv", "metrics.json"):
        assert (tmp_path / "a" / name).is_file()
    # same command, same seed -> the same tau
    b = _train(zoo, tmp_path / "b", "--seed", "3")
    assert b["test"] == a["test"] and b["best_epoch"] == a["best_epoch"]


def test_resume_after_interruption_equals_uninterrupted(zoo, tmp_path):
    full = _train(zoo, tmp_path / "full", "--seed", "1", "--set", "epochs=3")
    argv = ["train", "predict-gen", "--zoo", str(zoo), "--model", "monomial", "--activation", "relu",
            "--out", str(tmp_path / "part"), "--no-progress", *SMALL, "--seed", "1", "--set", "epochs=3"]
    assert main([*argv, "--stop-after", "1"]) == 0
    assert not (tmp_path / "part" / "metrics.json").exists()
    resumed = _train(zoo, tmp_path / "part", "--seed", "1", "--set", "epochs=3")
    assert resumed["test"] == full["test"] and resumed["best_epoch"] == full["best_epoch"]


def test_tanh_zoo_sign_condition_and_train_augment(zoo, tmp_path):
    argv = ["train", "predict-gen", "--zoo", str(zoo), "--model", "statnn", "--activation", "tanh",
            "--out", str(tmp_path / "t"), "--no-progress", "--train-augment", "sign", *SMALL,
            "--set", "epochs=1", "--set", "models.statnn.hidden=[16]"]
    assert main(argv) == 0
    m = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert list(m["test"]) == ["original", "sign"]
    assert m["num_train"] % 2 == 0  # original + one transformed copy


def test_errors_unknown_key_and_wrong_augment(zoo, tmp_path, capsys):
    base = ["train", "predict-gen", "--zoo", str(zoo), "--model", "monomial", "--activation", "relu",
            "--out", str(tmp_path / "x"), "--no-progress"]
    assert main([*base, "--set", "learning_rate=0.1"]) == 2
    assert "unknown config key 'learning_rate'" in capsys.readouterr().err
    assert main([*base, "--set", "models.monomial.widths=[4]"]) == 2
    assert "widths" in capsys.readouterr().err
    assert main([*base, "--train-augment", "sign", *SMALL]) == 2
    assert "sign" in capsys.readouterr().err
    with pytest.raises(ValueError, match="augmentation must be"):
        Augment.parse("scale=1,10")


def test_experiment_grid_resumable_with_report(zoo, tmp_path, capsys):
    argv = ["experiment", "predict-gen", "--zoo", str(zoo), "--out", str(tmp_path / "exp"),
            "--models", "monomial,statnn", "--seeds", "0,1", "--no-progress", *SMALL, "--set", "epochs=1",
            "--set", "models.statnn.hidden=[16]"]
    assert main([*argv, "--shard", "1/2"]) == 0  # half the cells (an array job's share)
    part = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert len(part["cells"]) == 2 and len(part["missing"]) == 2
    assert main(argv) == 0  # the rest; the report now covers all cells
    res = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert len(res["cells"]) == 4 and not res["missing"] and set(res["summary"]) == {"monomial", "statnn"}
    mean, std, n = res["summary"]["monomial"]["none"]["scale:1,1000"]["tau"]
    assert n == 2
    md = (tmp_path / "exp" / "results.md").read_text()
    assert "| monomial | none |" in md and "±" in md
    png = tmp_path / "exp" / "tau_vs_scale.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert main(argv) == 0  # a rerun skips every finished cell
    assert capsys.readouterr().out.count("done before") == 4


def test_transform_and_conditions():
    spec = zoo_cnn_spec("relu", image_size=8)
    assert eval_conditions(spec, DEFAULTS)[-1] == "scale:1,10000"
    assert eval_conditions(zoo_cnn_spec("tanh", image_size=8), DEFAULTS) == ["original", "sign"]
    from mnfn.weightspace import WeightSpaceFeatures

    g = torch.Generator().manual_seed(0)
    f = WeightSpaceFeatures(tuple(torch.randn(3, 1, *s, generator=g) for s in spec.weight_shapes()),
                            tuple(torch.randn(3, 1, *s, generator=g) for s in spec.bias_shapes()), spec)
    t1 = Augment.parse("scale:1,100").apply(f, torch.Generator().manual_seed(5))
    t2 = Augment.parse("scale:1,100").apply(f, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(t1.weights, t2.weights))
    assert torch.equal(t1.biases[-1], f.biases[-1])  # the output bias is invariant
    assert not torch.allclose(t1.weights[0], f.weights[0])
