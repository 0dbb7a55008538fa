"""Experiment 2: classify SIRENs (INRs) by the class of the image they draw.

``mnfn train classify-inr --inrs DIR --model NAME [--config FILE] [--seed S]`` trains one model on
an INR set made by ``mnfn inr make`` (:mod:`mnfn.data.inr`): the last ``val_size`` of the train
split is the validation set, the checkpoint with the best validation accuracy is kept
(``best.pt``) and evaluated once on the test split (``metrics.json``).

``mnfn experiment classify-inr --inrs DIR [--inrs DIR2 ...] --models a,b --seeds 0,1,2`` runs the
grid (finished runs are skipped, interrupted ones resume), and writes ``results.json`` and a
markdown table (mean +- std of test accuracy over seeds, with the INR set sizes).

Every model sees the weights divided by a fixed positive scale per tensor (RMS over the training
set, :class:`mnfn.models.inr.TensorScale`); this keeps every symmetry (a positive scalar per tensor
commutes with permutations and sign flips) and puts all models on the same footing.

The helpers at the bottom (run folders, grids, tables) are shared with :mod:`.edit_inr`.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.inr import InrDataset, read_meta
from ..augment import FULL_GROUP
from ..models.inr import INR_CLASSIFIERS, TensorScale, add_feature_norm, tensor_rms
from ..io import write_json
from ..models import MODELS, build_model, claimed_symmetries, count_parameters, model_entry
from ..weightspace import Symmetry, siren_spec
from ..training.config import add_config_arguments, config_digest, load_config
from ..training.grid import (add_grid_arguments, curve_rows, markdown_table, mean_std, parse_train_sizes, plan_grid, run_grid,
                   run_learning_curve, summarize_runs, write_curve_reports, write_reports)
from .registry import register_experiment, register_train_task
from ..jobs import apply_threads
from ..training.train import ArrayData, Trainer, add_train_arguments, derive_seed, load_best, seed_everything

__all__ = ["DEFAULTS", "MODEL_DEFAULTS", "load_splits", "model_config", "build_inr_model", "train_classifier",
           "run_grid", "summarize_runs", "markdown_table", "mean_std"]

TASK = "classify-inr"

#: Per-model configs for INR classification (CPU-sized; ``models.NAME.KEY`` in a config overrides).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "monomial-inr": {"hidden": [32, 32, 16], "head": [256, 256], "dropout": 0.1},
    "hybrid-inr": {"sign_channels": [16, 16, 1], "mapping_size": 32, "fourier_scale": 3.0, "mode": "hnp",
                   "hnp_hidden": [64, 64, 64], "head": [256, 256], "dropout": 0.1},
    "hnp": {"hidden": [64, 64, 64], "head": [256, 256], "dropout": 0.1},
    "np": {"hidden": [64, 64, 64], "head": [256, 256], "dropout": 0.1},
    "mlp": {"hidden": [512, 512], "dropout": 0.1},
}

DEFAULTS: dict[str, Any] = {
    "epochs": 20,
    "batch_size": 32,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "optimizer": "adam",
    "warmup_steps": 0,  # linear learning-rate warm-up over this many optimizer steps
    "lr_schedule": "constant",  # after warm-up: constant or cosine (to 0 at the last step)
    "product_precision": "float32",  # or bfloat16: mixed-precision products (layers/kernels.py)
    "grad_clip": None,
    "val_size": 0.1,  # fraction (or count) of the train split held out for checkpoint selection
    "val_from": "end",  # which end of the train split (in image order) validates: end (NFN's) or start
    "max_train": None,  # use at most this many training nets (None: all)
    "normalize": True,  # divide each tensor by its training-set RMS (keeps every symmetry)
    "augment": False,  # random sign flips x permutations of each training batch
    "feature_norm": True,  # BatchNorm1d on the (invariant) features entering the MLP head
    "label_smoothing": 0.0,
    "models": copy.deepcopy(MODEL_DEFAULTS),
    "experiment": {"models": list(INR_CLASSIFIERS), "seeds": [0, 1, 2]},
}


#: Test accuracies (%) the paper reports without augmentation, drawn beside learning curves.
PAPER_ACCURACY: dict[str, dict[str, float]] = {
    "mnist": {"paper: Monomial-NFN 68.43": 68.43, "paper: NP 69.82": 69.82},
    "fashion-mnist": {"paper: Monomial-NFN 61.15": 61.15, "paper: NP 58.21": 58.21},
    "cifar10": {"paper: Monomial-NFN 34.23": 34.23, "paper: NP 33.74": 33.74},
}
#: On dws-recipe sets the comparable numbers are those peers report on DWSNets' INRs.
PEER_ACCURACY_DWS: dict[str, dict[str, float]] = {
    "mnist": {"ScaleGMN 96.6": 96.6, "DWSNets 85.7": 85.7, "NFN-NP 78.5": 78.5},
    "fashion-mnist": {"ScaleGMN 80.5": 80.5, "NFN-NP 68.2": 68.2, "DWSNets 67.1": 67.1},
}


def reference_accuracy(meta: Mapping[str, Any]) -> dict[str, float]:
    """Published accuracies (%) an INR set's curve is drawn and forecast against: peers' numbers on
    DWSNets' INRs for ``dws``-recipe sets, the paper's (NFN's sets) for every other set."""
    if str(meta.get("recipe") or "").startswith("dws"):
        return PEER_ACCURACY_DWS.get(str(meta.get("dataset")), {})
    return PAPER_ACCURACY.get(str(meta.get("dataset")), {})


# --- data --------------------------------------------------------------------------------------

def load_splits(inrs: str | Path, val_size: int | float, with_images: bool = False,
                data_root: str | Path | None = None, val_from: str = "end") -> tuple[InrDataset, InrDataset, InrDataset]:
    """Train, validation and test :class:`InrDataset` of an INR set folder (``val_size`` training
    nets from the ``val_from`` end of the train split validate)."""
    root = Path(inrs)
    if not (root / "meta.json").is_file():
        raise FileNotFoundError(f"{root}: not an INR set (no meta.json); make one with `mnfn inr make`")
    kw = dict(val_size=val_size, with_images=with_images, data_root=data_root, val_from=val_from)
    train = InrDataset(root, "train", **kw)
    val = InrDataset(root, "val", **kw)
    test = InrDataset(root, "test", **kw)
    if len(test) == 0:
        raise ValueError(f"{root}: the INR set has no test split; make it with `mnfn inr make --split both`")
    return train, val, test


def n_train(train: InrDataset, max_train: int | None) -> int:
    """How many training nets a run uses: all, or the first ``max_train`` (more than the set has is an
    error, so a learning-curve point is never silently smaller than its label)."""
    if max_train is None:
        return len(train)
    if int(max_train) < 1:
        raise ValueError(f"max_train must be >= 1, got {max_train}")
    if int(max_train) > len(train):
        raise ValueError(f"{train.root}: max_train {int(max_train)} but the set has {len(train)} training nets "
                         f"(after validation); fit more, or ask for fewer")
    return int(max_train)


# --- models ------------------------------------------------------------------------------------

def model_config(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The model's config section (lists as lists), or ``{}``."""
    sec = cfg.get("models", {}).get(name, {}) or {}
    if not isinstance(sec, Mapping):
        raise ValueError(f"config models.{name} must be a mapping of model options, got {sec!r}")
    return dict(sec)


def build_inr_model(name: str, spec, cfg: Mapping[str, Any], scales: torch.Tensor | None, *,
                    out_dim: int | None = None, kind: str = "invariant") -> nn.Module:
    """Build registry model ``name`` with its config section (and ``out_dim`` for classifiers),
    with a feature norm before the head when ``cfg["feature_norm"]`` (classifiers), wrapped in
    :class:`TensorScale` when ``scales`` is given."""
    model_entry(name, kind)
    mcfg = model_config(cfg, name)
    if out_dim is not None:
        mcfg["out_dim"] = out_dim
    model = build_model(name, spec, **mcfg)
    if kind == "invariant" and cfg.get("feature_norm", False):
        add_feature_norm(model)
    if scales is not None:
        if hasattr(model, "set_input_scales"):  # models that also read the raw weights (probes) scale inside
            model.set_input_scales(scales)
        else:
            model = TensorScale(model, scales, rescale_output=(kind == "equivariant"))
    return model


def set_spec(root: str | Path):
    """The SIREN architecture of an INR set folder, from its ``meta.json`` (no weights loaded)."""
    meta = read_meta(root)
    sir = meta["siren"]
    return siren_spec(int(meta["image_shape"][0]), hidden=int(sir["hidden"]), depth=int(sir["depth"]),
                      w0=float(sir["w0"]))


def refresh_claims(runs: Sequence[dict[str, Any]]) -> None:
    """Recompute every run's ``claims`` text from the registry (runs read back from older files)."""
    specs: dict[str, Any] = {}
    for r in runs:
        root = r.get("root")
        if root and Path(root, "meta.json").is_file() and r["model"] in MODELS:
            if root not in specs:
                specs[root] = set_spec(root)
            r["claims"] = describe_claims(r["model"], specs[root])


def describe_claims(name: str, spec) -> str:
    """What a model promises on the hidden neurons, in words: ``signs x perms``, ``perms`` or ``none``."""
    syms = set(claimed_symmetries(name, spec)[1:-1])
    if syms <= {Symmetry.FIXED}:
        return "none"
    words = {Symmetry.SIGN: "signs", Symmetry.SCALE: "scales"}
    extra = sorted(words[s] for s in syms if s in words)
    return " x ".join([*extra, "perms"])


# --- one run -----------------------------------------------------------------------------------

def _set_info(ds: InrDataset) -> dict[str, Any]:
    return {"dataset": ds.meta.get("dataset"), "image_shape": list(ds.image_shape), "root": str(ds.root)}


def train_classifier(inrs: str | Path, model_name: str, cfg: Mapping[str, Any], *, seed: int = 0,
                     out_dir: str | Path | None = None, device: str | None = "auto", progress: bool = False,
                     resume: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Train ``model_name`` on the INR set ``inrs``; returns (and writes to ``out_dir/metrics.json``)
    the test accuracy of the best-validation checkpoint and the facts of the run."""
    t0 = time.perf_counter()
    train, val, test = load_splits(inrs, cfg["val_size"], val_from=cfg.get("val_from", "end"))
    spec = train.spec
    n = n_train(train, cfg.get("max_train"))
    feats, labels = train.features[slice(0, n)], train.labels[:n]
    seed_everything(derive_seed(seed, "model", model_name))
    scales = tensor_rms(feats) if cfg["normalize"] else None
    model = build_inr_model(model_name, spec, cfg, scales, out_dim=train.num_classes, kind="invariant")
    smoothing = float(cfg.get("label_smoothing", 0.0))

    def loss_fn(out, target):
        return F.cross_entropy(out, target, label_smoothing=smoothing)

    run_cfg = {"task": TASK, "model": model_name, "inrs": str(Path(inrs).resolve()), "seed": seed,
               **{k: v for k, v in cfg.items() if k not in ("models", "experiment")},
               "model_config": model_config(cfg, model_name)}
    trainer = Trainer(model, loss_fn, ArrayData(feats, labels), ArrayData(val.features, val.labels),
                      metrics=["accuracy"], predict_fn=lambda out: out, select="accuracy",
                      transform=FULL_GROUP.batch_transform() if cfg["augment"] else None,
                      epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                      weight_decay=cfg["weight_decay"], optimizer=cfg["optimizer"], grad_clip=cfg["grad_clip"],
                      warmup_steps=int(cfg.get("warmup_steps", 0)), lr_schedule=cfg.get("lr_schedule", "constant"),
                      product_precision=cfg.get("product_precision", "float32"),
                      seed=seed, out_dir=out_dir, select_mode="max", resume=resume, progress=progress,
                      device=None if device == "auto" else device, config=run_cfg, stop_after=stop_after,
                      desc=f"{TASK} {model_name} s{seed}")
    res = trainer.fit()
    if out_dir is not None and res.best_epoch is not None:
        load_best(model, out_dir)
    test_metrics = trainer.evaluate(ArrayData(test.features, test.labels), prefix="test_")
    out = {
        "task": TASK, "model": model_name, "description": MODELS[model_name].description,
        "claims": describe_claims(model_name, spec), "seed": seed, **_set_info(train),
        "n_train": n, "n_val": len(val), "n_test": len(test), "num_classes": train.num_classes,
        "params": count_parameters(model), "epochs": cfg["epochs"], "epochs_done": res.epochs_done,
        "completed": res.completed, "best_epoch": res.best_epoch,
        "val_accuracy": res.best_metrics.get("val_accuracy"),
        "test_accuracy": test_metrics["test_accuracy"], "test_loss": test_metrics["test_loss"],
        "seconds": time.perf_counter() - t0, "config_digest": config_digest(run_cfg), "config": run_cfg,
    }
    if out_dir is not None:
        write_json(Path(out_dir) / "metrics.json", out)
    return out


# --- grids, summaries, tables (shared with edit_inr) -------------------------------------------

# --- commands ----------------------------------------------------------------------------------

def _load_cfg(args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_config(DEFAULTS, args.config, args.overrides, open_sections=["models"])
    if getattr(args, "epochs", None) is not None:
        cfg["epochs"] = int(args.epochs)
    return cfg


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inrs", required=True, help="INR set folder (from `mnfn inr make`, with a test split)")
    p.add_argument("--model", required=True, help=f"classifier name ({', '.join(INR_CLASSIFIERS)}, ...)")
    add_config_arguments(p)
    add_train_arguments(p)


def run_train(args: argparse.Namespace) -> int:
    apply_threads(args.threads)
    cfg = _load_cfg(args)
    out = args.out or str(Path("runs") / TASK / f"{Path(args.inrs).name}-{args.model}-seed{args.seed}")
    r = train_classifier(args.inrs, args.model, cfg, seed=args.seed, out_dir=out, device=args.device,
                         progress=args.progress, resume=not args.restart, stop_after=args.stop_after)
    print(f"{args.model} on {r['root']} ({r['n_train']} train / {r['n_val']} val / {r['n_test']} test INRs): "
          f"test accuracy {100 * r['test_accuracy']:.2f}% (best val {100 * (r['val_accuracy'] if r['val_accuracy'] is not None else float('nan')):.2f}% "
          f"at epoch {r['best_epoch']}/{r['epochs']}); {r['params']:,} parameters; {r['seconds']:.0f} s")
    print(f"wrote {Path(out) / 'metrics.json'}")
    return 0


def add_experiment_args(p: argparse.ArgumentParser) -> None:
    add_grid_arguments(p, "classifier", f"runs/experiments/{TASK}")


def run_experiment(args: argparse.Namespace) -> int:
    apply_threads(args.threads)
    cfg = _load_cfg(args)
    sizes = parse_train_sizes(args.train_sizes)
    plan = plan_grid(args, cfg, Path("runs") / "experiments" / TASK)

    def make_run_one(c):
        def run_one(inrs, name, seed, run_dir):
            return train_classifier(inrs, name, c, seed=seed, out_dir=run_dir, device=args.device,
                                    progress=args.progress)
        return run_one

    if sizes:
        runs = run_learning_curve(plan.out, args.inrs, plan.models, plan.seeds, sizes, cfg, make_run_one,
                                  report_only=args.report_only)
    else:
        runs = run_grid(plan.out, args.inrs, plan.models, plan.seeds, make_run_one(cfg), cfg,
                        report_only=args.report_only)
    if not runs:
        raise ValueError(f"{plan.out}: no finished runs of this grid yet")
    refresh_claims(runs)
    payload = {"task": TASK, "config": cfg, "models": plan.models, "seeds": plan.seeds,
               "sets": [str(s) for s in args.inrs], "runs": runs}
    if sizes:
        refs = {Path(s).name: reference_accuracy(read_meta(s)) for s in args.inrs}
        table = write_curve_reports(plan.out, TASK, curve_rows(runs, "test_accuracy"), {**payload, "train_sizes": sizes},
                                    metric_label="test accuracy (%)", scale=100.0, reference=refs,
                                    plot_title="INR classification: test accuracy against training-set size")
        print(table)
        print(f"wrote {plan.out / 'learning_curve.json'}, {plan.out / 'learning_curve.md'} and "
              f"{plan.out / 'learning_curve.png'}")
        return 0
    rows = summarize_runs(runs, "test_accuracy")
    table = write_reports(plan.out, TASK, rows, payload, metric_label="test accuracy (%)", scale=100.0,
                          plot_title="INR classification: mean +- std over seeds")
    print(table)
    print(f"wrote {plan.out / 'results.json'}, {plan.out / 'results.md'} and {plan.out / 'results.png'}")
    return 0


register_train_task(TASK, help="train a classifier of SIRENs by image class (experiment 2)",
                    add_arguments=add_train_args, run=run_train, description=__doc__.split("\n\n")[0],
                    example="mnfn train classify-inr --inrs runs/inr-mnist-2000 --model monomial-inr --seed 0",
                    order=20)
register_experiment(TASK, help="grid of INR classifiers x seeds: results.json + markdown table",
                    add_arguments=add_experiment_args, run=run_experiment,
                    example="mnfn experiment classify-inr --inrs runs/inr-mnist-2000 --models monomial-inr,hnp "
                            "--seeds 0,1,2 --config classify_inr_cpu",
                    order=20)
