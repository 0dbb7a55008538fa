"""INR recipes (``mnfn inr make --recipe``), per-tensor statistics (``mnfn inr info``), merging
splits made apart, learning-rate warm-up and the learning-curve grid."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from mnfn.cli import main
from mnfn.data.inr import (NFN_MNIST_STDS, RECIPES, FitConfig, InrDataset, fit_sirens, init_sirens, make_inr_dataset,
                           merge_inr_datasets, net_seed, read_meta, recipe, recipe_name)
from mnfn.data.inr_stats import tensor_stats
from mnfn.training.train import Trainer, lr_factor
from mnfn.weightspace import siren_spec

DATA = os.environ.get("MNFN_DATA")
needs_data = pytest.mark.skipif(not DATA or not (Path(DATA) / "mnist").is_dir(), reason="MNFN_DATA/mnist absent")


def test_recipes_are_named_configs():
    assert set(RECIPES) == {"nfn", "dws", "fast"}
    assert recipe("nfn").target_psnr is None and recipe("nfn").max_steps == 300 and recipe("nfn").lr == 1e-3
    assert recipe("dws").init == "dws" and recipe("fast") == FitConfig()
    assert recipe_name(FitConfig(max_steps=300, lr=1e-3, target_psnr=None)) == "nfn"
    assert recipe_name(FitConfig(max_steps=7)) is None
    with pytest.raises(ValueError, match="unknown INR recipe 'bogus'"):
        recipe("bogus")
    with pytest.raises(ValueError, match="target_psnr"):
        FitConfig(target_psnr=float("nan"))
    # Older meta.json files have no "init" key: it defaults to the SIREN scheme.
    d = FitConfig().to_json()
    del d["init"]
    assert FitConfig.from_json(d) == FitConfig()


def test_dws_initialisation_zero_biases_and_uniform_first_layer():
    spec = siren_spec(1)
    p = init_sirens([3, 4], spec, "dws")
    bound = math.sqrt(6.0 / 2) / 30.0
    assert all(float(b.abs().max()) == 0.0 for b in p[1::2])
    assert float(p[0].abs().max()) <= bound and float(p[0].abs().max()) > 0.8 * bound
    assert float(p[2].abs().max()) <= math.sqrt(6.0 / 32) / 30.0
    siren = init_sirens([3], spec, "siren")
    assert float(siren[0].abs().max()) <= 0.5 and float(siren[1].abs().max()) > 0.1  # 1/n_in, biases nonzero
    with pytest.raises(ValueError, match="init scheme"):
        init_sirens([1], spec, "xavier")


def test_fixed_step_fit_has_no_early_stop():
    imgs = torch.rand(3, 1, 8, 8)
    res = fit_sirens(imgs, [1, 2, 3], FitConfig(target_psnr=None, max_steps=5, lr=1e-3))
    assert res.steps.tolist() == [5, 5, 5] and not bool(res.missed.any())


@needs_data
def test_nfn_recipe_reproduces_nfn_pooled_statistics(one_thread):
    """128 MNIST SIRENs of the nfn recipe: pooled std of every tensor within 5 % of NFN's 45,000."""
    from mnfn.data.images import load_images

    ims = load_images("mnist", split="train", limit=128)
    res = fit_sirens(ims.images, [net_seed(0, "train", i) for i in range(128)], recipe("nfn"))
    tensors = {}
    for i, (w, b) in enumerate(res.features):
        tensors[f"weight_{i + 1}"], tensors[f"bias_{i + 1}"] = w, b
    ratios = {k: float(t.std()) / NFN_MNIST_STDS[k] for k, t in tensors.items()}
    assert all(abs(r - 1.0) < 0.05 for r in ratios.values()), ratios
    assert float(res.psnr.median()) > 35.0


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_end_to_end_cli(name, tmp_path, capsys):
    out = tmp_path / name
    args = ["inr", "make", "--dataset", "digits", "--num", "6", "--split", "both", "--batch", "4", "--recipe", name,
            "--max-steps", "4", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    meta = read_meta(out)
    assert meta["recipe"] == f"{name} (max_steps=4)" and meta["fit"]["init"] == recipe(name).init
    capsys.readouterr()
    assert main(["inr", "info", str(out), "--json", str(tmp_path / "s.json")]) == 0
    text = capsys.readouterr().out
    assert f"recipe: {name} (max_steps=4)" in text and "weight_1" in text and "bias_3" in text
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["nets"] == 6 and set(stats["tensors"]) == set(NFN_MNIST_STDS)
    # dws biases start at zero, so "moved" is nan for them; every weight moved a little, by 4 steps
    w1 = stats["tensors"]["weight_1"]["moved"]
    assert w1 is not None and 0.0 < w1 < 1.0
    if name == "dws":
        assert math.isnan(stats["tensors"]["bias_1"]["moved"])
    # rerun = resume; another recipe into the same folder is refused, naming the folder's recipe
    assert main(args) == 0
    other = "fast" if name != "fast" else "nfn"
    capsys.readouterr()
    assert main([a if a != name else other for a in args]) == 2
    err = capsys.readouterr().err
    assert "different settings (fit)" in err and f"recipe '{name} (max_steps=4)'" in err


def test_old_folder_without_recipe_or_init_keys_resumes(tmp_path):
    root = tmp_path / "old"
    fit = FitConfig(max_steps=3)
    make_inr_dataset(root, "digits", num=8, batch_size=4, fit=fit, progress=False, max_chunks=1)
    meta = json.loads((root / "meta.json").read_text())
    del meta["recipe"], meta["fit"]["init"]
    (root / "meta.json").write_text(json.dumps(meta))
    s = make_inr_dataset(root, "digits", num=8, batch_size=4, fit=fit, progress=False)
    assert s.complete and s.reused == 4 and s.fitted_now == 4


def test_merge_train_and_test_made_apart(tmp_path):
    fit = FitConfig(max_steps=2)
    kw = dict(num=8, batch_size=4, fit=fit, progress=False)
    make_inr_dataset(tmp_path / "tr", "digits", splits=("train",), **kw)
    make_inr_dataset(tmp_path / "te", "digits", splits=("test",), **kw)
    s = merge_inr_datasets([tmp_path / "tr", tmp_path / "te"], tmp_path / "all")
    assert s.complete and s.nets == 16
    assert read_meta(tmp_path / "all")["plan"]["splits"] == ["train", "test"]
    both = make_inr_dataset(tmp_path / "both", "digits", splits=("train", "test"), **kw)
    assert both.nets == 16
    a, b = InrDataset(tmp_path / "all", "test"), InrDataset(tmp_path / "both", "test")
    assert torch.equal(a.features.weights[1], b.features.weights[1])  # the same nets as one run makes
    make_inr_dataset(tmp_path / "other", "digits", splits=("test",), **{**kw, "fit": FitConfig(max_steps=3)})
    with pytest.raises(ValueError, match="settings differ"):
        merge_inr_datasets([tmp_path / "tr", tmp_path / "other"], tmp_path / "bad")
    with pytest.raises(ValueError, match="overlap"):
        merge_inr_datasets([tmp_path / "tr", tmp_path / "both"], tmp_path / "bad2")
    # the splits may cover different numbers of images (e.g. 50,000 train images, the whole test split)
    make_inr_dataset(tmp_path / "tr4", "digits", splits=("train",), **{**kw, "num": 4})
    s = merge_inr_datasets([tmp_path / "tr4", tmp_path / "te"], tmp_path / "mixed")
    assert s.complete and s.nets == 12 and read_meta(tmp_path / "mixed")["plan"]["num"] == {"train": 4, "test": 8}
    assert len(InrDataset(tmp_path / "mixed", "train")) == 4 and len(InrDataset(tmp_path / "mixed", "test")) == 8


def test_tensor_stats_moved_is_zero_for_unfitted_nets(tmp_path):
    root = tmp_path / "frozen"
    make_inr_dataset(root, "digits", num=4, batch_size=4, fit=FitConfig(max_steps=0), progress=False)
    st = tensor_stats(root)
    assert st["nets"] == 4 and st["reference"] is None  # not MNIST
    assert all(r["moved"] == 0.0 for r in st["tensors"].values())


def test_lr_factor_warmup_and_cosine():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1) and lr_factor(9, 100, 10) == 1.0
    assert lr_factor(50, 100, 10, "constant") == 1.0
    assert lr_factor(10, 100, 10, "cosine") == 1.0 and lr_factor(99, 100, 10, "cosine") < 1e-3
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    with pytest.raises(ValueError):
        lr_factor(0, 10, 0, "step")


def test_trainer_follows_the_schedule_across_a_resume(tmp_path):
    def run(folder, stop_after=None):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        x, y = torch.randn(16, 3), torch.randn(16, 1)
        t = Trainer(model, torch.nn.functional.mse_loss, (x, y), epochs=4, batch_size=4, lr=0.1, warmup_steps=6,
                    lr_schedule="cosine", out_dir=tmp_path / folder, progress=False, stop_after=stop_after)
        t.fit()
        return t, model

    t, full = run("full")
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(t.lr_at(15))
    assert t.lr_at(0) == pytest.approx(0.1 / 6)
    run("cut", 2)  # stopped after 2 epochs ...
    _, resumed = run("cut")  # ... and resumed: the same weights as a run that went through
    assert torch.equal(resumed.weight, full.weight) and torch.equal(resumed.bias, full.bias)
    with pytest.raises(ValueError, match="lr_schedule"):
        Trainer(full, torch.nn.functional.mse_loss, (torch.randn(4, 3), torch.randn(4, 1)), lr_schedule="step",
                progress=False)


def test_learning_curve_cli(tmp_path, capsys):
    root = tmp_path / "digits-inr"
    make_inr_dataset(root, "digits", num=24, splits=("train", "test"), fit=FitConfig(max_steps=3), batch_size=64,
                     progress=False)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("epochs: 1\nbatch_size: 8\nval_size: 4\nmodels:\n  mlp: {hidden: [8]}\n")
    out = tmp_path / "curve"
    args = ["experiment", "classify-inr", "--inrs", str(root), "--models", "mlp", "--seeds", "0,1", "--config", str(cfg),
            "--train-sizes", "16,8", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "learning_curve.png" in text and "| mlp | none |" in text
    res = json.loads((out / "learning_curve.json").read_text())
    assert res["train_sizes"] == [8, 16]
    assert sorted({r["n_train"] for r in res["summary"]}) == [8, 16] and all(r["n"] == 2 for r in res["summary"])
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG" and (out / "n8" / root.name).is_dir()
    # the forecast: one line per model through its two sizes
    assert "per decade" in text and [f["model"] for f in res["forecast"]] == ["mlp"]
    assert res["forecast"][0]["sizes"] == [8, 16]
    # rerun: every run is read back, nothing trains
    assert main(args) == 0
    assert capsys.readouterr().out.count("done before") == 4
    assert main(args[:-4] + ["--train-sizes", "0,4", "--out", str(out)]) == 2
    assert "--train-sizes" in capsys.readouterr().err


def test_val_from_start_and_max_train_beyond_the_set(tmp_path):
    from mnfn.tasks.classify_inr import load_splits, n_train

    root = tmp_path / "s"
    make_inr_dataset(root, "digits", num=12, splits=("train", "test"), fit=FitConfig(max_steps=1), batch_size=12,
                     progress=False)
    tr, va, te = load_splits(root, 4, val_from="start")
    assert va.image_index.tolist() == [0, 1, 2, 3] and tr.image_index.tolist() == list(range(4, 12))
    tr_end, va_end, _ = load_splits(root, 4)
    assert va_end.image_index.tolist() == [8, 9, 10, 11] and len(te) == 12
    assert n_train(tr, 5) == 5 and n_train(tr, None) == 8
    with pytest.raises(ValueError, match="max_train 9 but the set has 8 training nets"):
        n_train(tr, 9)
    with pytest.raises(ValueError, match="val_from"):
        InrDataset(root, "val", val_size=4, val_from="middle")


def test_curve_plot_keeps_one_colour_per_model_and_names_every_model(tmp_path, monkeypatch):
    """Panels of sets with different models: a model has the same colour in every panel and the one
    legend lists all models (not only those of the last panel)."""
    from mnfn.training import grid

    figs = []
    monkeypatch.setattr(grid, "save_png", lambda fig, path: figs.append(fig))
    row = {"std": 0.0, "n": 1}
    rows = [{**row, "set": "a", "model": m, "n_train": n, "mean": 0.5} for m in ("m1", "m2", "m3") for n in (10, 100)]
    rows += [{**row, "set": "b", "model": m, "n_train": 100, "mean": 0.4} for m in ("m3", "m1")]
    grid.save_curve_plot(tmp_path / "c.png", rows, "acc")
    (fig,) = figs
    ax_a, ax_b = fig.axes[:2]
    col = lambda ax: {l.get_label(): l.get_color() for l in ax.get_lines()}  # noqa: E731
    assert col(ax_b)["m1"] == col(ax_a)["m1"] and col(ax_b)["m3"] == col(ax_a)["m3"]
    assert [t.get_text() for t in ax_b.get_legend().get_texts()] == ["m1", "m2", "m3"]
