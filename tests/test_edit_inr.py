"""Experiment 3 end to end on a handful of SIRENs fitted to sklearn digits, and the two edits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.ndimage import grey_dilation

from mnfn.cli import main
from mnfn.data.inr import FitConfig, InrDataset, images_to_targets, make_coords, make_inr_dataset
from mnfn.tasks.edit_inr import DEFAULTS, _EditForward, apply_edit, contrast, dilate, render_flat, train_editor
from mnfn.training.config import load_config
from mnfn.networks import functional_forward

TINY = """
epochs: 1
batch_size: 8
val_size: 6
samples: 4
models:
  monomial-editor: {hidden: [4, 4]}
  hybrid-editor: {sign_channels: [4, 1], mapping_size: 4, hidden: [4, 4]}
  np-editor: {hidden: [4, 4]}
  hnp-editor: {hidden: [4, 4]}
  mlp-editor: {hidden: [16]}
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
    p.write_text(TINY)
    return p


def test_dilate_is_a_3x3_grey_dilation_per_image():
    rng = np.random.default_rng(0)
    x = rng.random((3, 1, 9, 9)).astype(np.float32)
    y = dilate(x)
    assert y.shape == x.shape and (y >= x).all()
    for i in range(3):
        assert np.array_equal(y[i, 0], grey_dilation(x[i, 0], size=(3, 3)))
    # a single bright pixel grows into a 3x3 square, and images do not bleed into each other
    z = np.zeros((2, 1, 7, 7), np.float32)
    z[0, 0, 3, 3] = 1.0
    d = dilate(z)
    assert d[0, 0].sum() == 9 and d[0, 0, 2:5, 2:5].min() == 1.0 and d[1].sum() == 0


def test_contrast_is_clahe_on_lightness():
    from skimage.color import rgb2lab

    rng = np.random.default_rng(1)
    x = (0.3 + 0.2 * rng.random((2, 3, 16, 16))).astype(np.float32)  # a dull, low-contrast image
    y = contrast(x, kernel_size=8, clip_limit=0.05)
    assert y.shape == x.shape and y.min() >= 0.0 and y.max() <= 1.0
    light_in = rgb2lab(x[0].transpose(1, 2, 0))[..., 0]
    light_out = rgb2lab(y[0].transpose(1, 2, 0))[..., 0]
    assert light_out.std() > 1.5 * light_in.std()  # contrast raised
    with pytest.raises(ValueError, match="RGB"):
        contrast(x[:, :1])
    with pytest.raises(ValueError, match="unknown edit"):
        apply_edit("sharpen", x)


def test_loss_renders_the_edited_siren_on_the_fitting_grid(digit_inrs):
    ds = InrDataset(digit_inrs, "test", with_images=True)
    feats = ds.features[slice(0, 4)]
    coords = make_coords(*ds.image_shape[1:])
    target = images_to_targets(dilate(ds.images[:4].numpy()))
    zero = lambda f: f * 0.0  # noqa: E731 - the identity edit
    out, tgt = _EditForward(coords)(zero, (feats, target))
    assert torch.equal(out, functional_forward(feats, coords)) and tgt is target
    # the SIRENs draw their images on that grid (fitting PSNR), so the unedited loss is the edit's size
    fit_mse = (render_flat(feats, coords) - images_to_targets(ds.images[:4])).square().mean()
    assert fit_mse < 0.02


def test_train_cli_and_metrics(digit_inrs, tiny_config, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "edit-inr", "--inrs", str(digit_inrs), "--edit", "dilate", "--model", "monomial-editor",
               "--config", str(tiny_config), "--out", str(out), "--no-progress"])
    assert rc == 0 and "test MSE" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert (out / "best.pt").is_file() and (out / "samples.npz").is_file()
    assert m["n_train"] == 14 and m["n_val"] == 6 and m["n_test"] == 20 and m["claims"] == "signs x perms"
    assert m["test_mse"] > 0 and m["test_mse_unedited"] > m["test_mse_fit"]


def test_train_cli_in_mixed_precision(digit_inrs, tiny_config, tmp_path, capsys):
    # the config key reaches the trainer (bfloat16 products, layers/kernels.py) and is recorded
    from mnfn.layers import kernels
    out = tmp_path / "bf16"
    base = ["train", "edit-inr", "--inrs", str(digit_inrs), "--edit", "dilate", "--model", "np-editor",
            "--config", str(tiny_config), "--no-progress"]
    assert main(base + ["--out", str(out), "--set", "product_precision=bfloat16"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["product_precision"] == "bfloat16" and np.isfinite(m["test_mse"])
    assert kernels.product_precision() == "float32"
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "bad"), "--set", "product_precision=fp8"]) != 0
    assert "product_precision must be one of" in capsys.readouterr().err


def test_zero_editor_scores_the_unedited_mse(digit_inrs):
    cfg = load_config(DEFAULTS, None, ["epochs=0", "val_size=6", "models.monomial-editor.out_scale=0.0",
                                       "models.monomial-editor.hidden=[2]"], open_sections=["models"])
    r = train_editor(digit_inrs, "dilate", "monomial-editor", cfg, seed=0, device="cpu")
    assert r["test_mse"] == pytest.approx(r["test_mse_unedited"], rel=1e-5)


def test_experiment_grid_png_and_table(digit_inrs, tiny_config, tmp_path):
    out = tmp_path / "exp"
    rc = main(["experiment", "edit-inr", "--inrs", str(digit_inrs), "--edit", "dilate", "--models",
               "monomial-editor,hybrid-editor,mlp-editor", "--seeds", "0", "--config", str(tiny_config),
               "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert {r["model"] for r in res["runs"]} == {"monomial-editor", "hybrid-editor", "mlp-editor"}
    md = (out / "results.md").read_text()
    assert "| unedited (Delta = 0) |" in md and "| hybrid-editor | perms |" in md and "| mlp-editor | none |" in md
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    png = out / f"samples-{digit_inrs.name}.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_changing_one_edit_keeps_the_other_edits_runs(digit_inrs, tiny_config, tmp_path, capsys):
    """A cell's digest covers its own edit's settings only: new contrast settings reuse a finished
    dilate run, new dilate settings retrain it."""
    out = tmp_path / "exp"
    base = ["experiment", "edit-inr", "--inrs", str(digit_inrs), "--edit", "dilate", "--models", "monomial-editor",
            "--seeds", "0", "--config", str(tiny_config), "--out", str(out)]
    assert main(base) == 0
    capsys.readouterr()
    assert main(base + ["--set", "edits.contrast.clip_limit=0.5", "--set", "edits.contrast.method=opencv"]) == 0
    assert capsys.readouterr().out.count("done before") == 1
    assert main(base + ["--set", "edits.dilate.size=5", "--report-only"]) != 0  # nothing finished to report
    out_text = capsys.readouterr()
    assert "monomial-editor seed 0: not finished" in out_text.out and "done before" not in out_text.out
