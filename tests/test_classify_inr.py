"""Experiment 2 end to end on a handful of SIRENs fitted to sklearn digits (seconds, no downloads)."""

from __future__ import annotations

import json

import pytest
import torch

from mnfn.cli import main
from mnfn.data.inr import FitConfig, InrDataset, make_inr_dataset
from mnfn.io import read_json
from mnfn.augment import FULL_GROUP
from mnfn.tasks.classify_inr import (DEFAULTS, markdown_table, mean_std, summarize_runs,
                                     train_classifier)
from mnfn.training.config import load_config

TINY_MODELS = """
epochs: 1
batch_size: 8
val_size: 6
models:
  monomial-inr: {hidden: [4, 4], head: [16], dropout: 0.0}
  hybrid-inr: {sign_channels: [4, 1], mapping_size: 4, hnp_hidden: [4, 4], head: [16]}
  hnp: {hidden: [4, 4], head: [16]}
  np: {hidden: [4, 4], head: [16]}
  mlp: {hidden: [16]}
"""


@pytest.fixture(scope="module")
def digit_inrs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inrs") / "digits-inr"
    make_inr_dataset(root, "digits", num=20, splits=("train", "test"), fit=FitConfig(max_steps=10),
                     batch_size=64, progress=False)
    return root


@pytest.fixture()
def tiny_config(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY_MODELS)
    return p


def test_train_cli_writes_test_accuracy_and_best_checkpoint(digit_inrs, tiny_config, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "classify-inr", "--inrs", str(digit_inrs), "--model", "monomial-inr", "--config",
               str(tiny_config), "--seed", "3", "--out", str(out), "--no-progress", "--set", "augment=true"])
    assert rc == 0
    assert "test accuracy" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    assert m["n_train"] == 14 and m["n_val"] == 6 and m["n_test"] == 20 and m["num_classes"] == 10
    assert 0.0 <= m["test_accuracy"] <= 1.0 and m["best_epoch"] == 1 and m["seed"] == 3
    assert m["claims"] == "signs x perms"


def test_same_seed_same_result(digit_inrs):
    cfg = load_config(DEFAULTS, None, ["epochs=1", "val_size=6", "batch_size=8", "models.mlp.hidden=[8]"],
                      open_sections=["models"])
    a = train_classifier(digit_inrs, "mlp", cfg, seed=1, device="cpu")
    b = train_classifier(digit_inrs, "mlp", cfg, seed=1, device="cpu")
    assert a["test_loss"] == b["test_loss"]


def test_group_augmentation_moves_every_net_and_keeps_labels(digit_inrs):
    ds = InrDataset(digit_inrs, "train")
    feats, labels = ds.features[slice(0, 5)], ds.labels[:5]
    f2, l2 = FULL_GROUP.batch_transform()((feats, labels), torch.Generator().manual_seed(0))
    assert torch.equal(l2, labels)
    assert not torch.equal(f2.weights[1], feats.weights[1])
    # the moved nets draw the same images
    from mnfn.data.inr import render
    assert torch.allclose(render(f2, ds.image_shape), render(feats, ds.image_shape), atol=1e-4)


def test_experiment_grid_table_and_resume(digit_inrs, tiny_config, tmp_path, capsys):
    out = tmp_path / "exp"
    args = ["experiment", "classify-inr", "--inrs", str(digit_inrs), "--models", "monomial-inr,hybrid-inr",
            "--seeds", "0,1", "--config", str(tiny_config), "--out", str(out)]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert len(res["runs"]) == 4 and {r["model"] for r in res["summary"]} == {"monomial-inr", "hybrid-inr"}
    md = (out / "results.md").read_text()
    assert "| monomial-inr | signs x perms |" in md and "14 train / 6 val / 20 test INRs" in md and "+-" in md
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(args) == 0  # every cell done: read back, not retrained
    assert capsys.readouterr().out.count("done before") == 4
    # --report-only trains nothing: an unfinished seed is left out of the tables
    assert main(args + ["--seeds", "0,1,2", "--report-only"]) == 0  # the last --seeds wins
    assert capsys.readouterr().out.count("not finished, left out") == 2
    assert not (out / digit_inrs.name / "monomial-inr" / "seed2").exists()
    assert len(json.loads((out / "results.json").read_text())["runs"]) == 4


def test_a_model_reruns_only_when_its_own_settings_change(digit_inrs, tiny_config, tmp_path, capsys):
    """A cell's digest covers the shared settings and its own model section: editing another model's
    options (or adding a model) reuses it; a run stored under the older whole-config digest is reused
    and relabelled."""
    from mnfn.training.grid import whole_config_digest

    out = tmp_path / "exp"
    args = ["experiment", "classify-inr", "--inrs", str(digit_inrs), "--models", "monomial-inr,mlp",
            "--seeds", "0", "--config", str(tiny_config), "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args + ["--set", "models.hnp.dropout=0.3", "--report-only"]) == 0
    assert capsys.readouterr().out.count("done before") == 2
    assert main(args + ["--set", "models.mlp.dropout=0.3", "--report-only"]) == 0
    log = capsys.readouterr().out
    assert "monomial-inr seed 0: done before" in log and "mlp seed 0: not finished" in log
    # an older grid: metrics.json carries the digest of the whole config
    cfg = load_config(DEFAULTS, tiny_config, [], open_sections=["models"])
    path = out / digit_inrs.name / "monomial-inr" / "seed0" / "metrics.json"
    old = {**read_json(path), "grid_digest": whole_config_digest(cfg)}
    path.write_text(json.dumps(old))
    assert main(args + ["--report-only"]) == 0
    assert capsys.readouterr().out.count("done before") == 2
    assert read_json(path)["grid_digest"] != old["grid_digest"]  # relabelled: later edits elsewhere still reuse it
    assert main(args + ["--set", "models.hnp.dropout=0.3", "--report-only"]) == 0
    assert capsys.readouterr().out.count("done before") == 2


def test_mean_std_and_table():
    assert mean_std([0.5, 0.7]) == pytest.approx((0.6, 0.1414213562))
    assert mean_std([0.5]) == (0.5, 0.0)
    runs = [{"set": "s", "model": "m", "seed": k, "test_accuracy": v, "n_train": 9, "n_val": 1, "n_test": 5,
             "params": 1234, "claims": "sign", "dataset": "digits", "epochs": 2} for k, v in enumerate([0.5, 0.7])]
    table = markdown_table(summarize_runs(runs, "test_accuracy"), scale=100.0)
    assert "| m | sign | 1,234 | 60.00 +- 14.14 (2) |" in table
    ref = {**summarize_runs(runs, "test_accuracy")[0], "model": "ref", "mean": 0.25, "n": 0}
    assert "| ref | sign | 1,234 | 25.00 |" in markdown_table([ref], scale=100.0)


def test_unknown_model_is_a_clear_error(digit_inrs, capsys):
    rc = main(["train", "classify-inr", "--inrs", str(digit_inrs), "--model", "monomial-editor",
               "--out", "/nonexistent/x", "--no-progress"])
    assert rc == 2
    assert "not a classifier" in capsys.readouterr().err


def test_resume_through_another_path_to_the_same_set(digit_inrs, tmp_path, monkeypatch):
    """The set is recorded by its resolved path: naming it another way resumes, not refuses."""
    monkeypatch.chdir(digit_inrs.parent)
    out = tmp_path / "run"
    common = ["--model", "statnn", "--epochs", "2", "--no-progress", "--out", str(out)]
    assert main(["train", "classify-inr", "--inrs", digit_inrs.name, *common, "--stop-after", "1"]) == 0
    assert main(["train", "classify-inr", "--inrs", str(digit_inrs.resolve()) + "/", *common]) == 0
    assert read_json(out / "metrics.json")["epochs_done"] == 2
