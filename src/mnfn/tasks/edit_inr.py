"""Experiment 3: edit SIRENs (INRs) so that they draw an edited image.

An editor maps a SIREN's weights ``U`` to a weight change ``Delta(U)``; the edited SIREN ``U + Delta(U)``
is rendered with :func:`mnfn.networks.functional_forward` on the coordinate grid of
:mod:`mnfn.data.inr` (:func:`~mnfn.data.inr.make_coords`), and the loss is the pixel MSE against the
edited *original image*, both on the SIRENs' ``[-1, 1]`` pixel scale (as the paper's code). Edits:

* ``dilate``: 3x3 grey dilation (``scipy.ndimage.grey_dilation``), for MNIST digits;
* ``contrast``: CLAHE (``skimage.exposure.equalize_adapthist``) on the lightness channel of
  ``skimage.color.rgb2lab``, back to RGB, for CIFAR-10 images.

``mnfn train edit-inr --inrs DIR --edit {dilate,contrast} --model NAME`` trains one editor (best
validation loss kept in ``best.pt``; the test MSE of that checkpoint in ``metrics.json``, with the
MSE of the *unedited* SIRENs against the same targets for reference). ``mnfn experiment edit-inr``
runs editors x seeds, writes ``results.json``, a markdown table and ``samples.png`` (original /
target / edited renderings of test SIRENs, one row per editor). The original images are read
with :func:`mnfn.data.images.load_images` (``--data-root`` or ``MNFN_DATA``).
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..data.images.clahe import contrast_opencv
from ..data.inr import images_to_targets, make_coords
from ..models.inr import INR_EDITORS, tensor_rms
from ..io import atomic_path, load_npz, save_npz, write_json
from ..models import MODELS, count_parameters
from ..weightspace import WeightSpaceFeatures
from ..networks import functional_forward
from .classify_inr import build_inr_model, describe_claims, load_splits, model_config, n_train, refresh_claims
from ..training.grid import (add_grid_arguments, curve_rows, parse_train_sizes, plan_grid, run_grid, run_learning_curve,
                   summarize_runs, write_curve_reports, write_reports)
from ..training.config import add_config_arguments, config_digest, load_config
from .registry import register_experiment, register_train_task
from ..jobs import apply_threads
from ..training.train import ArrayData, Trainer, add_train_arguments, derive_seed, load_best, seed_everything

__all__ = ["EDITS", "DEFAULTS", "MODEL_DEFAULTS", "dilate", "contrast", "apply_edit", "render_flat",
           "train_editor", "save_sample_grid"]

#: Test MSE reported in NFN's edit protocol (``../shared/docs/monomial-nfn.md`` section 7), drawn on the
#: learning-curve figure and forecast against.
PAPER_MSE: dict[str, dict[str, float]] = {
    "dilate": {"NFN paper: NP 0.068": 0.068},
    "contrast": {"NFN paper: NP 0.020": 0.020},
}

TASK = "edit-inr"

#: Per-model configs for INR editing (CPU-sized; ``models.NAME.KEY`` in a config overrides).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "monomial-editor": {"hidden": [32, 32, 32], "out_scale": 0.01},
    "hybrid-editor": {"sign_channels": [16, 1], "mapping_size": 16, "fourier_scale": 3.0, "mode": "np",
                      "hidden": [32, 32, 32], "out_scale": 0.01},
    "np-editor": {"hidden": [32, 32, 32], "out_scale": 0.01},
    "hnp-editor": {"hidden": [32, 32, 32], "out_scale": 0.01},
    "mlp-editor": {"hidden": [512, 512], "out_scale": 0.01},
}

DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 32,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "optimizer": "adam",
    "warmup_steps": 0,  # linear learning-rate warm-up over this many optimizer steps
    "lr_schedule": "constant",  # after warm-up: constant or cosine (to 0 at the last step)
    "product_precision": "float32",  # or bfloat16: mixed-precision products (layers/kernels.py)
    "grad_clip": None,
    "val_size": 0.1,
    "val_from": "end",  # which end of the train split (in image order) validates: end or start
    "max_train": None,
    "normalize": True,  # editors see U / s and output s * Delta, s = per-tensor training RMS
    "samples": 8,  # test SIRENs rendered into samples.npz (and the experiment's samples.png)
    "edits": {
        "dilate": {"size": 3},
        # method skimage: kernel_size ~ a tile of a 3x3 grid on 32x32 images, clip_limit is skimage's
        # normalised limit (this release's first edit). method opencv: NFN's edit (OpenCV's clipLimit,
        # tiles x tiles grid, its red/blue swap); configs/edit_inr.yaml selects it.
        "contrast": {"kernel_size": 11, "clip_limit": 0.02, "method": "skimage", "tiles": 3, "swap_rb": True},
    },
    "models": copy.deepcopy(MODEL_DEFAULTS),
    "experiment": {"models": list(INR_EDITORS), "seeds": [0, 1, 2]},
}


# --- edits -------------------------------------------------------------------------------------

def dilate(images: np.ndarray, size: int = 3) -> np.ndarray:
    """Grey dilation of every channel of ``(N, C, H, W)`` images with a ``size x size`` window."""
    from scipy.ndimage import grey_dilation

    x = np.asarray(images, dtype=np.float32)
    return grey_dilation(x, size=(1, 1, int(size), int(size))).astype(np.float32)


def contrast(images: np.ndarray, kernel_size: int | None = 11, clip_limit: float = 0.02, method: str = "skimage",
             tiles: int = 3, swap_rb: bool = True) -> np.ndarray:
    """CLAHE on the lightness of RGB ``(N, 3, H, W)`` images in ``[0, 1]``.

    ``method="skimage"``: ``rgb2lab``, ``equalize_adapthist(L / 100, kernel_size, clip_limit)``,
    ``lab2rgb``, clipped to ``[0, 1]`` (this release's earlier edit). ``method="opencv"``: NFN's edit,
    OpenCV's CLAHE with ``clipLimit=clip_limit`` on a ``tiles x tiles`` grid in 8-bit Lab, with NFN's
    red/blue swap when ``swap_rb`` (:func:`mnfn.data.images.clahe.contrast_opencv`); a much milder
    edit at NFN's ``clip_limit=1.0``.
    """
    from skimage.color import lab2rgb, rgb2lab
    from skimage.exposure import equalize_adapthist

    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"the contrast edit works on RGB images (N, 3, H, W); got shape {x.shape} "
                         "(use a CIFAR-10 INR set)")
    if method == "opencv":
        return contrast_opencv(x, clip_limit=clip_limit, tiles=tiles, swap_rb=swap_rb)
    if method != "skimage":
        raise ValueError(f"contrast: method must be 'skimage' or 'opencv', got {method!r}")
    out = np.empty_like(x)
    with warnings.catch_warnings():
        # lab2rgb warns when a raised lightness leaves the sRGB gamut; the result is clipped below.
        warnings.filterwarnings("ignore", message=".*negative Z values.*")
        for i in range(x.shape[0]):
            lab = rgb2lab(np.clip(x[i].transpose(1, 2, 0), 0.0, 1.0))
            light = np.clip(lab[..., 0] / 100.0, 0.0, 1.0)
            lab[..., 0] = equalize_adapthist(light, kernel_size=kernel_size, clip_limit=clip_limit) * 100.0
            out[i] = np.clip(lab2rgb(lab), 0.0, 1.0).transpose(2, 0, 1)
    return out.astype(np.float32)


EDITS = {"dilate": dilate, "contrast": contrast}


def apply_edit(name: str, images: np.ndarray | Tensor, params: Mapping[str, Any] | None = None) -> np.ndarray:
    if name not in EDITS:
        raise ValueError(f"unknown edit {name!r}; choose from {', '.join(EDITS)}")
    x = images.numpy() if isinstance(images, Tensor) else np.asarray(images)
    return EDITS[name](x, **dict(params or {}))


# --- rendering -------------------------------------------------------------------------------

def render_flat(features: WeightSpaceFeatures, coords: Tensor) -> Tensor:
    """Raw SIREN outputs ``(B, H*W, C)`` on the ``[-1, 1]`` pixel scale (what the loss compares)."""
    return functional_forward(features, coords.to(device=features.device, dtype=features.dtype))


def _to_images(flat: Tensor, shape: Sequence[int]) -> np.ndarray:
    c, h, w = shape
    img = (flat.reshape(flat.shape[0], h, w, c).permute(0, 3, 1, 2) + 1.0) / 2.0
    return img.clamp(0.0, 1.0).detach().cpu().numpy().astype(np.float32)


class _EditForward:
    """``forward_fn`` of the trainer: render ``U + Delta(U)``; the target is the edited image."""

    def __init__(self, coords: Tensor) -> None:
        self.coords = coords

    def __call__(self, model: torch.nn.Module, batch: Any) -> tuple[Tensor, Tensor]:
        feats, target = batch
        edited = feats + model(feats)
        return render_flat(edited, self.coords), target


def _mse(out: Tensor, target: Tensor) -> Tensor:
    return (out - target).square().mean()


@torch.no_grad()
def _mse_per_set(feats: WeightSpaceFeatures, targets: Tensor, coords: Tensor, batch: int = 256) -> float:
    tot, n = 0.0, 0
    for lo in range(0, feats.batch_size, batch):
        f = feats[slice(lo, lo + batch)]
        out = render_flat(f, coords)
        tot += float((out - targets[lo:lo + batch]).square().mean()) * f.batch_size
        n += f.batch_size
    return tot / max(n, 1)


# --- one run -----------------------------------------------------------------------------------

def _edit_targets(ds, edit: str, cfg: Mapping[str, Any], limit: int | None = None) -> Tensor:
    imgs = ds.images if limit is None else ds.images[:limit]
    return images_to_targets(apply_edit(edit, imgs, cfg["edits"].get(edit, {})))


def train_editor(inrs: str | Path, edit: str, model_name: str, cfg: Mapping[str, Any], *, seed: int = 0,
                 out_dir: str | Path | None = None, device: str | None = "auto", progress: bool = False,
                 resume: bool = True, stop_after: int | None = None,
                 data_root: str | Path | None = None) -> dict[str, Any]:
    """Train editor ``model_name`` for ``edit`` on the INR set ``inrs``; returns (and writes to
    ``out_dir/metrics.json``) the test MSE of the best-validation checkpoint, and saves rendered
    test samples to ``out_dir/samples.npz``."""
    if edit not in EDITS:
        raise ValueError(f"unknown edit {edit!r}; choose from {', '.join(EDITS)}")
    t0 = time.perf_counter()
    train, val, test = load_splits(inrs, cfg["val_size"], with_images=True, data_root=data_root,
                                   val_from=cfg.get("val_from", "end"))
    spec = train.spec
    shape = train.image_shape
    n = n_train(train, cfg.get("max_train"))
    feats = train.features[slice(0, n)]
    y_train = _edit_targets(train, edit, cfg, n)
    y_val = _edit_targets(val, edit, cfg)
    y_test = _edit_targets(test, edit, cfg)
    coords = make_coords(shape[1], shape[2])

    seed_everything(derive_seed(seed, "model", model_name))
    scales = tensor_rms(feats) if cfg["normalize"] else None
    model = build_inr_model(model_name, spec, cfg, scales, kind="equivariant")
    run_cfg = {"task": TASK, "edit": edit, "edit_params": dict(cfg["edits"].get(edit, {})), "model": model_name,
               "inrs": str(Path(inrs).resolve()), "seed": seed,
               **{k: v for k, v in cfg.items() if k not in ("models", "experiment", "edits", "samples")},
               "model_config": model_config(cfg, model_name)}
    trainer = Trainer(model, _mse, ArrayData(feats, y_train), ArrayData(val.features, y_val),
                      forward_fn=_EditForward(coords), select="loss", epochs=cfg["epochs"],
                      batch_size=cfg["batch_size"], eval_batch_size=128, lr=cfg["lr"],
                      weight_decay=cfg["weight_decay"], optimizer=cfg["optimizer"], grad_clip=cfg["grad_clip"],
                      warmup_steps=int(cfg.get("warmup_steps", 0)), lr_schedule=cfg.get("lr_schedule", "constant"),
                      product_precision=cfg.get("product_precision", "float32"),
                      seed=seed, out_dir=out_dir, resume=resume, progress=progress,
                      device=None if device == "auto" else device, config=run_cfg, stop_after=stop_after,
                      desc=f"{TASK} {edit} {model_name} s{seed}")
    res = trainer.fit()
    if out_dir is not None and res.best_epoch is not None:
        load_best(model, out_dir)
    test_metrics = trainer.evaluate(ArrayData(test.features, y_test), prefix="test_")
    unedited = _mse_per_set(test.features, y_test, coords)
    fit_err = _mse_per_set(test.features, images_to_targets(test.images), coords)
    out = {
        "task": TASK, "edit": edit, "model": model_name, "description": MODELS[model_name].description,
        "claims": describe_claims(model_name, spec), "seed": seed, "dataset": train.meta.get("dataset"),
        "image_shape": list(shape), "root": str(train.root), "n_train": n, "n_val": len(val), "n_test": len(test),
        "params": count_parameters(model), "epochs": cfg["epochs"], "epochs_done": res.epochs_done,
        "completed": res.completed, "best_epoch": res.best_epoch, "val_mse": res.best_metrics.get("val_loss"),
        "test_mse": test_metrics["test_loss"], "test_mse_unedited": unedited, "test_mse_fit": fit_err,
        "mse_scale": "pixels on [-1, 1] (SIREN output scale)",
        "seconds": time.perf_counter() - t0, "config_digest": config_digest(run_cfg), "config": run_cfg,
    }
    k = min(int(cfg.get("samples", 8)), len(test))
    if out_dir is not None and k > 0:
        model.eval()
        with torch.no_grad():
            f = test.features[slice(0, k)].to(next(model.parameters()).device)
            edited = render_flat(f + model(f), coords)
            original = render_flat(f, coords)
        save_npz(Path(out_dir) / "samples.npz", original=_to_images(original, shape),
                 target=_to_images(y_test[:k], shape), edited=_to_images(edited, shape),
                 image=test.images[:k].numpy().astype(np.float32))
    if out_dir is not None:
        write_json(Path(out_dir) / "metrics.json", out)
    return out


# --- sample grid -------------------------------------------------------------------------------

def save_sample_grid(path: str | Path, rows: Sequence[tuple[str, np.ndarray]], dpi: int = 100) -> None:
    """A PNG with one labelled row per ``(label, images (k, C, H, W) in [0, 1])``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = max(len(imgs) for _, imgs in rows)
    fig, axes = plt.subplots(len(rows), k, figsize=(1.2 * k + 1.6, 1.25 * len(rows)), squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(k):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < len(imgs):
                im = np.clip(imgs[c], 0.0, 1.0)
                if im.shape[0] == 1:
                    ax.imshow(im[0], cmap="gray", vmin=0.0, vmax=1.0)
                else:
                    ax.imshow(im.transpose(1, 2, 0))
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


# --- commands ----------------------------------------------------------------------------------

def _load_cfg(args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_config(DEFAULTS, args.config, args.overrides, open_sections=["models"])
    if getattr(args, "epochs", None) is not None:
        cfg["epochs"] = int(args.epochs)
    return cfg


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inrs", required=True, help="INR set folder (from `mnfn inr make`, with a test split)")
    p.add_argument("--edit", required=True, choices=sorted(EDITS), help="dilate (MNIST) or contrast (CIFAR-10)")
    p.add_argument("--model", required=True, help=f"editor name ({', '.join(INR_EDITORS)})")
    p.add_argument("--data", "--data-root", dest="data_root", default=None,
                   help="image data folder (default $MNFN_DATA, else ~/.cache/mnfn/data)")
    add_config_arguments(p)
    add_train_arguments(p)


def run_train(args: argparse.Namespace) -> int:
    apply_threads(args.threads)
    cfg = _load_cfg(args)
    out = args.out or str(Path("runs") / TASK / f"{Path(args.inrs).name}-{args.edit}-{args.model}-seed{args.seed}")
    r = train_editor(args.inrs, args.edit, args.model, cfg, seed=args.seed, out_dir=out, device=args.device,
                     progress=args.progress, resume=not args.restart, stop_after=args.stop_after,
                     data_root=args.data_root)
    print(f"{args.model} ({args.edit}) on {r['root']} ({r['n_train']} train / {r['n_val']} val / {r['n_test']} test "
          f"INRs): test MSE {r['test_mse']:.5f} (unedited SIRENs: {r['test_mse_unedited']:.5f}; "
          f"best epoch {r['best_epoch']}/{r['epochs']}); {r['params']:,} parameters; {r['seconds']:.0f} s")
    print(f"wrote {Path(out) / 'metrics.json'}")
    return 0


def add_experiment_args(p: argparse.ArgumentParser) -> None:
    add_grid_arguments(p, "editor", f"runs/experiments/{TASK}-EDIT")
    p.add_argument("--edit", required=True, choices=sorted(EDITS), help="dilate (MNIST) or contrast (CIFAR-10)")
    p.add_argument("--data", "--data-root", dest="data_root", default=None,
                   help="image data folder (default $MNFN_DATA, else ~/.cache/mnfn/data)")


#: The contrast edit's settings before it gained ``method`` (cells made then hashed every edit's settings).
_LEGACY_CONTRAST = {"kernel_size": 11, "clip_limit": 0.02}


def _edit_views(cfg: Mapping[str, Any], edit: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(cfg with only this edit's settings, [the config as older digest rules saw it])``: a run
    depends on its own edit only, so changing the contrast settings must not retrain dilate runs.
    Older cells hashed every edit's settings: today's, or those before ``method`` existed."""
    own = {**cfg, "edits": {edit: cfg["edits"].get(edit, {})}}
    contrast = dict(cfg["edits"].get("contrast", {}))
    same_as_legacy = (contrast.get("method", "skimage") == "skimage"
                      and all(contrast.get(k) == v for k, v in _LEGACY_CONTRAST.items()))
    older = [dict(cfg)]
    if edit != "contrast" or same_as_legacy:
        older.append({**cfg, "edits": {**cfg["edits"], "contrast": dict(_LEGACY_CONTRAST)}})
    return own, older


def run_experiment(args: argparse.Namespace) -> int:
    apply_threads(args.threads)
    cfg, legacy = _edit_views(_load_cfg(args), args.edit)
    plan = plan_grid(args, cfg, Path("runs") / "experiments" / f"{TASK}-{args.edit}")
    out, models, seeds = plan.out, plan.models, plan.seeds

    sizes = parse_train_sizes(args.train_sizes)

    def make_run_one(c):
        def run_one(inrs, name, seed, run_dir):
            return train_editor(inrs, args.edit, name, c, seed=seed, out_dir=run_dir, device=args.device,
                                progress=args.progress, data_root=args.data_root)
        return run_one

    if sizes:
        runs = run_learning_curve(out, args.inrs, models, seeds, sizes, cfg, make_run_one,
                                  digest_extra={"edit": args.edit}, report_only=args.report_only,
                                  also_accept=legacy)
    else:
        runs = run_grid(out, args.inrs, models, seeds, make_run_one(cfg), cfg, {"edit": args.edit},
                        report_only=args.report_only, also_accept=legacy)
    if not runs:
        raise ValueError(f"{out}: no finished runs of this grid yet")
    refresh_claims(runs)
    if sizes:
        table = write_curve_reports(out, f"{TASK} ({args.edit})", curve_rows(runs, "test_mse"),
                                    {"task": TASK, "edit": args.edit, "config": cfg, "models": models, "seeds": seeds,
                                     "sets": [str(s) for s in args.inrs], "runs": runs, "train_sizes": sizes},
                                    metric_label=f"test MSE ({args.edit})", digits=4, higher_is_better=False,
                                    reference={Path(s).name: PAPER_MSE.get(args.edit, {}) for s in args.inrs},
                                    plot_title=f"INR editing ({args.edit}): test MSE against training-set size")
        print(table)
        print(f"wrote {out / 'learning_curve.json'}, {out / 'learning_curve.md'} and {out / 'learning_curve.png'}")
        return 0
    rows = summarize_runs(runs, "test_mse")
    # The unedited SIRENs against the edited targets: what an editor must beat.
    for s in dict.fromkeys(r["set"] for r in runs):
        r0 = next(r for r in runs if r["set"] == s)
        rows.append({**{k: v for k, v in next(x for x in rows if x["set"] == s).items()},
                     "model": "unedited (Delta = 0)", "mean": r0["test_mse_unedited"], "std": 0.0, "n": 0,
                     "params": 0, "claims": "-"})
    table = write_reports(out, f"{TASK} ({args.edit})", rows,
                          {"task": TASK, "edit": args.edit, "config": cfg, "models": models, "seeds": seeds,
                           "sets": [str(s) for s in args.inrs], "runs": runs, "mse_scale": "pixels on [-1, 1]"},
                          metric_label=f"test MSE ({args.edit})", digits=4,
                          footer="\nMSE on the SIRENs' [-1, 1] pixel scale.\n",
                          plot_title=f"INR editing ({args.edit}), mean +- std over seeds")
    # Sample grid per set: original render / target / each editor's edit (first seed).
    for inrs in args.inrs:
        tag = Path(inrs).name
        grid_rows: list[tuple[str, np.ndarray]] = []
        for name in models:
            f = out / tag / name / f"seed{seeds[0]}" / "samples.npz"
            if not f.is_file():
                continue
            a = load_npz(f)
            if not grid_rows:
                grid_rows += [("original SIREN", a["original"]), (f"target ({args.edit})", a["target"])]
            grid_rows.append((name, a["edited"]))
        if grid_rows:
            save_sample_grid(out / f"samples-{tag}.png", grid_rows)
            print(f"wrote {out / f'samples-{tag}.png'}")
    print(table)
    print(f"wrote {out / 'results.json'}, {out / 'results.md'} and {out / 'results.png'}")
    return 0


register_train_task(TASK, help="train an editor of SIRENs: dilate digits / raise contrast (experiment 3)",
                    add_arguments=add_train_args, run=run_train, description=__doc__.split("\n\n")[0],
                    example="mnfn train edit-inr --inrs runs/inr-mnist-2000 --edit dilate --model monomial-editor",
                    order=30)
register_experiment(TASK, help="grid of INR editors x seeds: results.json, markdown table, samples PNG",
                    add_arguments=add_experiment_args, run=run_experiment,
                    example="mnfn experiment edit-inr --inrs runs/inr-mnist-2000 --edit dilate --seeds 0,1,2 "
                            "--config edit_inr_cpu",
                    order=30)
