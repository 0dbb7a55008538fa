"""Experiment 1: predict a CNN's test accuracy from its weights, robust to scalings and sign flips.

``mnfn train predict-gen --zoo DIR --model NAME --activation {relu,tanh}`` trains one registered
model (``monomial``, ``hnp``, ``np``, ``statnn``, ``canon-hnp``, ``mlp``) on the checkpoints of a
zoo in the Small CNN Zoo layout (:class:`mnfn.data.zoo.ZooDataset`; NFN split: test = second half
of the nets, train/val = 80/20 of the first half, fixed by ``split_seed``), with a sigmoid output
and BCE (``loss: mse`` for MSE), Adam, keeping the checkpoint with the best validation Kendall tau.
The best checkpoint is then evaluated on

* ``original``: the test split as it is;
* ``scale:1,10`` ... ``scale:1,10000`` (ReLU zoos): the test split moved by random group elements
  with scales uniform in [1, 10^k] (and random permutations);
* ``sign`` (tanh zoos): random sign flips (and permutations).

Every transformed test set is drawn from ``test_seed`` alone, so all models and seeds see the same
transformed nets. Reported per condition: Kendall tau, R^2, MAE (and the loss) on the transformed
copy (``test``), and on the paper's "original + one transformed copy" set (``test_with_original``).

``--train-augment scale:LO,HI|sign`` is the paper's training protocol: the train and validation
splits are replaced by the original checkpoints plus one copy moved by random group elements
(materialised once, seeded). ``none`` trains on the original weights.

``mnfn experiment predict-gen`` runs the grid (models x train augmentation x seeds; every cell
evaluates every test condition), skips finished cells, and writes ``results.json``, ``results.md``
(mean +- std over seeds) and ``tau_vs_scale.png`` (Kendall tau against the upper bound of the scale
range, log x-axis, one line per model).
"""

from __future__ import annotations

import argparse
import textwrap
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import distributed as D
from ..augment import Augment
from ..io import atomic_open, write_json
from ..jobs import apply_threads
from ..models import MODELS, build_model, count_parameters, model_entry
from ..weightspace import Symmetry, WeightSpaceSpec
from ..training.config import ConfigError, add_config_arguments, config_digest, load_config
from ..training.grid import Cell, narrow_config, run_cells
from ..training.metrics import compute_metrics
from .predict_gen_report import METRIC_NAMES, markdown_table, plot_results, summarize
from .registry import register_experiment, register_train_task
from ..training.train import ArrayData, Trainer, add_train_arguments, derive_seed, load_best, seed_everything

__all__ = ["DEFAULTS", "TASK", "eval_conditions", "load_zoo_splits",
           "train_predict_gen", "run_experiment", "summarize", "markdown_table", "plot_results", "format_table"]

TASK = "predict-gen"

#: Defaults = the paper's settings (Monomial-NFN paper, experiment 1). ``configs/predict_gen.yaml``
#: repeats them; ``configs/predict_gen_fast.yaml`` is the CPU-sized variant.
DEFAULTS: dict[str, Any] = {
    "epochs": 50,
    "batch_size": 8,
    "eval_batch_size": 256,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "optimizer": "adam",
    "grad_clip": 0.0,             # 0: no clipping
    "product_precision": "float32",  # or bfloat16: mixed-precision products (layers/kernels.py)
    "loss": "bce",                # bce (sigmoid output, the paper) or mse (on the sigmoid output)
    "steps": "final",             # checkpoints used: final | all | comma-separated steps ("2,3")
    "val_fraction": 0.2,
    "split_seed": 0,              # the NFN split of the nets; fixed across training seeds
    "select": "tau",              # validation metric that picks best.pt
    "max_train": 0,               # 0: all; else cap the number of training checkpoints (quick runs)
    "train_copies": 1,            # transformed copies added per checkpoint with --train-augment
    "test_scales": [10.0, 100.0, 1000.0, 10000.0],  # upper bounds 10^k of U[1, 10^k] (ReLU zoos)
    "test_permute": True,         # transformed test copies are also permuted
    "test_seed": 12345,
    "on_nonfinite": "raise",      # raise | skip (steps with NaN/Inf loss or gradients)
    "nonfinite_checkpoints": "error",  # error | drop: zoo checkpoints with NaN/Inf weights or accuracy
    # Per-model settings; a model left out (or {}) gets its registry defaults, which are the
    # published configurations (HNP/NP/canon-hnp: NFN's 1000x1000 head; StatNN: 1000x1000).
    "models": {
        "monomial": {"hidden": [16, 16, 5], "head": [200, 200]},
    },
    # What `mnfn experiment predict-gen` runs when --models / --seeds are not given (not part of a
    # cell's digest: adding a model or a seed reuses every finished cell).
    "experiment": {"models": ["monomial", "hnp", "np", "statnn", "canon-hnp"], "seeds": [0, 1]},
}
OPEN_SECTIONS = ("models",)


# --- augmentation / test conditions ---------------------------------------------------------

def _fmt_bound(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def eval_conditions(spec: WeightSpaceSpec, cfg: Mapping[str, Any]) -> list[str]:
    """``original`` plus ``scale:1,10^k`` (scale-symmetric nets) or ``sign`` (sign-symmetric nets)."""
    syms = set(spec.neuron_symmetries()[1:-1])
    conds = ["original"]
    if Symmetry.SCALE in syms:
        conds += [f"scale:1,{_fmt_bound(hi)}" for hi in cfg["test_scales"]]
    if Symmetry.SIGN in syms:
        conds.append("sign")
    return conds


# --- data -------------------------------------------------------------------------------------

def _steps(value: Any) -> Any:
    """Config ``steps`` -> ZooDataset ``steps``: ``all`` -> None, ``final``, ``"2,3"`` -> [2, 3]."""
    if value in (None, "all"):
        return None
    if value == "final":
        return "final"
    try:
        return [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"steps must be final, all or comma-separated integers; got {value!r}") from None


def load_zoo_splits(zoo: str | Path, activation: str, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train", "val", "test"}`` ZooDatasets of one activation (features float32, targets = test accuracy)."""
    from ..data.zoo import ZooDataset

    if cfg["nonfinite_checkpoints"] not in ("error", "drop"):
        raise ConfigError(f"nonfinite_checkpoints must be 'error' or 'drop', got {cfg['nonfinite_checkpoints']!r}")
    out = {}
    for split in ("train", "val", "test"):
        out[split] = ZooDataset(zoo, activation=activation, steps=_steps(cfg["steps"]), split=split,
                                val_fraction=cfg["val_fraction"], seed=cfg["split_seed"],
                                nonfinite=cfg["nonfinite_checkpoints"])
    return out


def _materialise(ds: Any, aug: Augment | None, copies: int, seed: int) -> ArrayData:
    """The split as arrays; with ``aug``, the originals plus ``copies`` transformed copies."""
    if aug is None:
        return ArrayData(ds.features, ds.targets)
    return ArrayData(*aug.with_copies(ds.features, ds.targets, copies, torch.Generator().manual_seed(seed)))


def _loss_fn(kind: str):
    if kind == "bce":
        return lambda out, t: F.binary_cross_entropy_with_logits(out.reshape(-1), t.reshape(-1).to(out.dtype))
    if kind == "mse":
        return lambda out, t: F.mse_loss(torch.sigmoid(out.reshape(-1)), t.reshape(-1).to(out.dtype))
    raise ConfigError(f"loss must be bce or mse, got {kind!r}")


def _predict(out: Tensor) -> Tensor:
    return torch.sigmoid(out.reshape(-1))


def model_config(cfg: Mapping[str, Any], model: str) -> dict[str, Any]:
    model_entry(model)
    unknown = [m for m in cfg["models"] if m not in MODELS]
    if unknown:
        raise ConfigError(f"config section models names unknown models {unknown}; registered: {', '.join(MODELS)}")
    mcfg = dict(cfg["models"].get(model) or {})
    bad = sorted(set(mcfg) - MODELS[model].config_keys())
    if bad:
        raise ConfigError(f"unknown config keys {['models.' + model + '.' + k for k in bad]} for model {model!r}; "
                          f"it takes {sorted(MODELS[model].config_keys())}")
    return mcfg


def default_out(zoo: str | Path, model: str, activation: str, augment: str | None, seed: int) -> Path:
    aug = (augment or "none").replace(":", "").replace(",", "-")
    return Path("runs") / "predict-gen" / f"{Path(zoo).name}-{activation}-{model}-{aug}-s{seed}"


def train_predict_gen(zoo: str | Path, model: str, activation: str, cfg: Mapping[str, Any],
                      train_augment: str | None = None, seed: int = 0, out_dir: str | Path | None = None,
                      progress: bool = True, device: str | None = None, restart: bool = False,
                      stop_after: int | None = None, splits: Mapping[str, Any] | None = None,
                      verbose: bool = True, verbose_epochs: bool = False) -> dict[str, Any]:
    """Train one model and evaluate it on every test condition; returns (and writes) ``metrics.json``'s dict.

    ``splits``: preloaded :func:`load_zoo_splits` output (the experiment grid reuses it across cells).
    """
    t_start = time.perf_counter()
    aug = Augment.parse(train_augment, permute=cfg["test_permute"])
    out = Path(out_dir) if out_dir is not None else default_out(zoo, model, activation, train_augment, seed)
    mcfg = model_config(cfg, model)
    splits = splits if splits is not None else load_zoo_splits(zoo, activation, cfg)
    spec = splits["train"].spec
    if aug is not None:
        aug.check(spec, "--train-augment")
    copies = int(cfg["train_copies"])
    train_ds, val_ds, test_ds = splits["train"], splits["val"], splits["test"]
    train = _materialise(train_ds, aug, copies, derive_seed(cfg["split_seed"], "train-augment", str(train_augment)))
    if cfg["max_train"] and len(train) > cfg["max_train"]:
        keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[: int(cfg["max_train"])]
        train = ArrayData(train.inputs[keep], train.targets[keep])
    val = _materialise(val_ds, aug, copies, derive_seed(cfg["split_seed"], "val-augment", str(train_augment)))

    seed_everything(seed)
    net = build_model(model, spec, **mcfg)
    run_cfg = {"task": TASK, "zoo": str(Path(zoo).resolve()), "model": model, "activation": activation,
               "train_augment": train_augment or "none", "seed": seed, "model_config": mcfg,
               **{k: v for k, v in cfg.items() if k not in ("models", "experiment")}}
    trainer = Trainer(net, _loss_fn(cfg["loss"]), train, val, metrics=list(METRIC_NAMES), predict_fn=_predict,
                      epochs=int(cfg["epochs"]), batch_size=int(cfg["batch_size"]),
                      eval_batch_size=int(cfg["eval_batch_size"]), lr=float(cfg["lr"]),
                      weight_decay=float(cfg["weight_decay"]), optimizer=cfg["optimizer"],
                      grad_clip=float(cfg["grad_clip"]) or None, seed=seed, out_dir=out, select=cfg["select"],
                      resume=not restart, progress=progress, device=device, config=run_cfg,
                      stop_after=stop_after, desc=f"{model} {activation} {train_augment or 'none'} s{seed}",
                      on_nonfinite=cfg["on_nonfinite"], verbose=verbose_epochs,
                      product_precision=cfg.get("product_precision", "float32"))
    fit = trainer.fit()
    result: dict[str, Any] = {
        "task": TASK, "zoo": str(zoo), "model": model, "activation": activation,
        "train_augment": train_augment or "none", "seed": seed, "config_digest": config_digest(run_cfg),
        "params": count_parameters(net), "num_train": len(train), "num_val": len(val), "num_test": len(test_ds),
        "dropped_nonfinite": {k: int(getattr(d, "dropped_nonfinite", 0)) for k, d in splits.items()},
        "epochs": fit.epochs, "epochs_done": fit.epochs_done, "completed": fit.completed,
        "best_epoch": fit.best_epoch, "best_val": {k: v for k, v in fit.best_metrics.items() if k.startswith("val_")},
    }
    if not fit.completed:
        result["seconds_train"] = time.perf_counter() - t_start
        return result
    load_best(trainer.model, out)  # explicitly, after training: evaluate the best-validation checkpoint
    conditions = eval_conditions(spec, cfg)
    tests: dict[str, dict[str, float]] = {}
    with_orig: dict[str, dict[str, float]] = {}
    p0, t0_, _ = trainer.predict(ArrayData(test_ds.features, test_ds.targets))
    for cond in conditions:
        if cond == "original":
            feats = test_ds.features
        else:
            g = torch.Generator().manual_seed(derive_seed(cfg["test_seed"], cond))
            feats = Augment.parse(cond, permute=cfg["test_permute"]).apply(test_ds.features, g)
        p, t, loss = trainer.predict(ArrayData(feats, test_ds.targets))
        tests[cond] = {**compute_metrics(METRIC_NAMES, p, t), "loss": loss}
        if cond != "original":
            with_orig[cond] = compute_metrics(METRIC_NAMES, torch.cat([p0, p]), torch.cat([t0_, t]))
    result.update(test=tests, test_with_original=with_orig, seconds=time.perf_counter() - t_start)
    if D.is_main():
        write_json(out / "metrics.json", result)
        if verbose:
            print(format_table(result))
    return result


def format_table(result: Mapping[str, Any]) -> str:
    rows = [f"{result['model']} on {Path(result['zoo']).name} ({result['activation']}), train augment "
            f"{result['train_augment']}, seed {result['seed']}, best epoch {result['best_epoch']}/{result['epochs']}, "
            f"{result['params']:,} parameters",
            f"{'test condition':<18} {'tau':>8} {'R^2':>8} {'MAE':>8}"]
    for cond, m in result["test"].items():
        rows.append(f"{cond:<18} {m['tau']:>8.4f} {m['r2']:>8.4f} {m['mae']:>8.4f}")
    return "\n".join(rows)


# --- CLI: mnfn train predict-gen ------------------------------------------------------------

def _cli_config(args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_config(DEFAULTS, args.config, args.overrides, open_sections=OPEN_SECTIONS)
    if getattr(args, "epochs", None) is not None:
        cfg["epochs"] = int(args.epochs)
    return cfg


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--zoo", required=True, help="zoo folder (Small CNN Zoo layout: weights.npy, metrics.csv.gz, layout.csv)")
    p.add_argument("--model", required=True, help=f"registered model: {', '.join(n for n in MODELS if MODELS[n].kind == 'invariant')}")
    p.add_argument("--activation", required=True, choices=("relu", "tanh"), help="which nets of the zoo")
    p.add_argument("--train-augment", default="none", help="none (default), scale:LO,HI (ReLU) or sign (tanh): train/val = "
                   "original + transformed copy (the paper's protocol)")
    add_config_arguments(p)
    add_train_arguments(p)


def run_train(args: argparse.Namespace) -> int:
    apply_threads(args.threads)
    cfg = _cli_config(args)
    res = train_predict_gen(args.zoo, args.model, args.activation, cfg, train_augment=args.train_augment,
                            seed=args.seed, out_dir=args.out, progress=args.progress, device=args.device,
                            restart=args.restart, stop_after=args.stop_after, verbose_epochs=not args.progress)
    if not res["completed"]:
        print(f"stopped after epoch {res['epochs_done']}/{res['epochs']}; run the same command to resume")
    out = Path(args.out) if args.out else default_out(args.zoo, args.model, args.activation, args.train_augment, args.seed)
    if D.is_main():  # under torchrun only rank 0 writes
        print(f"wrote {out / 'metrics.json'} (checkpoints and log.csv beside it)")
    return 0


register_train_task(
    TASK, help="predict CNN test accuracy from weights (experiment 1)", add_arguments=add_train_args, run=run_train,
    description=textwrap.fill("Train a registered model to predict CNN test accuracy from the weights of a zoo (Small CNN Zoo "
                 "layout; NFN split), keep the best-validation-tau checkpoint (best.pt), and evaluate it on the "
                 "original test split and on the test split moved by random group elements: scales U[1, 10^k], "
                 "k = 1..4, for ReLU nets, random sign flips for tanh nets (plus permutations). Writes "
                 "metrics.json (Kendall tau, R^2, MAE per condition), log.csv, last.pt. Without --config the "
                 "paper's settings apply (configs/predict_gen.yaml); rerunning the same command resumes."),
    order=10,
    example="""examples:
  mnfn train predict-gen --zoo runs/zoo-fmnist --model monomial --activation relu --config predict_gen_fast
  mnfn train predict-gen --zoo runs/zoo-fmnist --model hnp --activation relu --train-augment scale:1,10 --seed 1
  mnfn train predict-gen --zoo runs/zoo-fmnist --model monomial --activation tanh --set epochs=5 --set models.monomial.hidden=[8,8,4]""",
)


# --- the experiment grid ----------------------------------------------------------------------

def _cell_name(model: str, augment: str, seed: int) -> str:
    return f"{model}__{augment.replace(':', '').replace(',', '-')}__s{seed}"


def expand_augments(augments: Sequence[str], spec: WeightSpaceSpec, cfg: Mapping[str, Any]) -> list[str]:
    """``match`` expands to every transformed test condition (train on what you test on: the paper)."""
    out: list[str] = []
    for a in augments:
        items = [c for c in eval_conditions(spec, cfg) if c != "original"] if a == "match" else [a]
        for it in items:
            if it not in out:
                out.append(it)
    return out


def run_experiment(zoo: str | Path, out_dir: str | Path, models: Sequence[str], seeds: Sequence[int],
                   activation: str, cfg: Mapping[str, Any], augments: Sequence[str] = ("none",),
                   progress: bool = True, device: str | None = None,
                   shard: tuple[int, int] | str = (0, 1)) -> dict[str, Any]:
    """Run every (model, train augmentation, seed) cell not finished yet; write the report files.

    ``shard=K/N`` runs only cells ``i`` with ``i % N == K`` (0-based, as ``mnfn zoo make --shard``):
    N processes or array jobs share a grid folder; the report covers the cells finished so far
    (``missing`` lists the others), and a final run without a shard assembles it.
    """
    out = Path(out_dir)
    for m in models:
        model_config(cfg, m)
    splits = load_zoo_splits(zoo, activation, cfg)
    spec = splits["train"].spec
    augs = expand_augments(augments, spec, cfg)
    for a in augs:
        parsed = Augment.parse(a)
        if parsed is not None:
            parsed.check(spec, "train augmentation")
    zoo_id = str(Path(zoo).resolve())
    whole = {k: v for k, v in cfg.items() if k != "experiment"}

    def cell(m: str, a: str | None, s: int) -> Cell:
        # the digest covers this model's settings only; the older whole-config one still reuses finished cells
        rest = {"model": m, "aug": a, "seed": s, "act": activation, "zoo": zoo_id}
        return Cell(_cell_name(m, a, s), out / "cells" / _cell_name(m, a, s),
                    config_digest({"cfg": narrow_config(cfg, m), **rest}), (m, a, s),
                    accept=(config_digest({"cfg": whole, **rest}),))

    cells = [cell(m, a, s) for a in augs for m in models for s in seeds]
    t0 = time.perf_counter()

    def one(cell: Cell) -> dict[str, Any]:
        m, a, s = cell.key
        res = train_predict_gen(zoo, m, activation, cfg, train_augment=a, seed=s, out_dir=cell.run_dir,
                                progress=progress, device=device, splits=splits, verbose=False,
                                verbose_epochs=not progress)
        if D.is_main():
            print(format_table(res), flush=True)
        return res

    records, missing_cells = run_cells(cells, one, log=lambda msg: print(msg, flush=True), shard=shard)
    missing = [c.label for c in missing_cells]
    summary = summarize(records)
    report = {"task": TASK, "zoo": str(zoo), "activation": activation, "models": list(models), "seeds": list(seeds),
              "train_augments": augs, "conditions": eval_conditions(spec, cfg), "config": dict(cfg),
              "summary": summary, "cells": records, "missing": missing, "seconds": time.perf_counter() - t0}
    if D.is_main():
        write_json(out / "results.json", report)
        md = markdown_table(report)
        if missing:
            md += f"\n({len(missing)} of {len(cells)} cells not finished yet: {', '.join(missing)})\n"
        with atomic_open(out / "results.md") as fh:
            fh.write(md)
        plot_results(report, out / "tau_vs_scale.png")
        print(md)
    return report


# --- CLI: mnfn experiment predict-gen -------------------------------------------------------

def add_experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--zoo", required=True, help="zoo folder")
    p.add_argument("--out", required=True, help="experiment folder (cells/, results.json, results.md, tau_vs_scale.png)")
    p.add_argument("--models", default=None,
                   help="comma-separated registered models (default: the config's experiment.models, "
                        "monomial,hnp,np,statnn,canon-hnp)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the config's experiment.seeds, 0,1)")
    p.add_argument("--activation", default="relu", choices=("relu", "tanh"), help="which nets of the zoo (default relu)")
    p.add_argument("--train-augment", dest="train_augments", action="append", default=None, metavar="AUG",
                   help="repeatable: none (default), scale:LO,HI, sign, or match (one run per transformed test "
                        "condition, trained on the same distribution: the paper's protocol)")
    p.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    p.add_argument("--shard", default="0/1", metavar="K/N",
                   help="run only cells i with i %% N == K (0-based; parallel processes or array jobs on one --out; "
                        "default 0/1: all)")
    add_config_arguments(p)
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 ... (default auto)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; 0 = torch's default)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def run_experiment_cli(args: argparse.Namespace) -> int:
    apply_threads(args.threads)
    cfg = _cli_config(args)
    models = ([m.strip() for m in args.models.split(",") if m.strip()] if args.models is not None
              else list(cfg["experiment"]["models"]))
    try:
        seeds = ([int(s) for s in args.seeds.split(",") if s.strip()] if args.seeds is not None
                 else [int(s) for s in cfg["experiment"]["seeds"]])
    except (TypeError, ValueError):
        raise ConfigError(f"seeds must be integers, got {args.seeds or cfg['experiment']['seeds']!r}") from None
    run_experiment(args.zoo, args.out, models, seeds, args.activation, cfg, augments=args.train_augments or ["none"],
                   progress=args.progress, device=args.device, shard=args.shard)
    out = Path(args.out)
    print(f"wrote {out / 'results.json'}, {out / 'results.md'} and {out / 'tau_vs_scale.png'} (runs in {out})")
    return 0


register_experiment(
    TASK, help="experiment 1 grid: models x train augmentation x test condition x seeds", order=10,
    description=textwrap.fill("Train every (model, train augmentation, seed) cell with `mnfn train predict-gen`'s settings, "
                 "evaluate every test condition, and write results.json, results.md (mean +- std over seeds) "
                 "and tau_vs_scale.png (Kendall tau vs the upper bound of the scale range, log x, one line per "
                 "model). Finished cells are skipped when the command runs again; --shard K/N splits the grid "
                 "between processes or array jobs."),
    add_arguments=add_experiment_args, run=run_experiment_cli,
    example="""examples:
  mnfn experiment predict-gen --zoo runs/zoo-fmnist --out runs/exp1-relu --config predict_gen_fast
  mnfn experiment predict-gen --zoo runs/zoo-fmnist --out runs/exp1-tanh --activation tanh --models monomial,hnp
  mnfn experiment predict-gen --zoo runs/zoo-fmnist --out runs/exp1-aug --train-augment none --train-augment match""",
)
