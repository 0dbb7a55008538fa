"""Grids of training runs, shared by every ``mnfn experiment``: the one cell engine
(:func:`run_cells`: resumable, shardable, a run whose ``metrics.json`` carries its config digest
and ``"completed": true`` is read, not rerun), the INR grids over sets x models x seeds
(:func:`run_grid`, learning curves over training-set sizes), the common command-line arguments,
and the ``mean +- std over seeds`` summaries, tables and figures."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .. import distributed as D
from ..io import atomic_open, read_json, save_png, write_json
from ..jobs import parse_shard
from ..models import model_entry
from .config import add_config_arguments, config_digest

__all__ = ["Cell", "run_cells", "finished_run", "narrow_config", "model_digest", "whole_config_digest", "mean_std", "run_grid", "summarize_runs", "markdown_table", "csv_list", "add_grid_arguments",
           "GridPlan", "plan_grid", "save_bar_chart", "write_reports", "run_learning_curve", "curve_rows",
           "curve_table", "save_curve_plot", "write_curve_reports", "parse_train_sizes"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


@dataclass(frozen=True)
class Cell:
    """One run of a grid: a label for the log, its folder, and the digest of everything that decides
    its result (a finished run with another digest is rerun)."""

    label: str
    run_dir: Path
    digest: str
    key: tuple = ()
    #: older digests of the same settings (runs written before the digest rule narrowed) that still count
    accept: tuple[str, ...] = ()


RESULT_FILE = "metrics.json"


def narrow_config(cfg: Mapping[str, Any], model: str) -> dict[str, Any]:
    """What decides one model's runs: the config without its ``experiment`` section (which models
    and seeds a grid lists) and with ``models`` cut down to ``model``'s own section, so editing
    another model's options, or adding a model, reuses every finished run of this one."""
    out = {k: v for k, v in cfg.items() if k not in ("experiment", "models")}
    if "models" in cfg:
        out["models"] = {model: (cfg["models"] or {}).get(model)}
    return out


def model_digest(cfg: Mapping[str, Any], model: str, extra: Mapping[str, Any] | None = None) -> str:
    """The digest a grid cell of ``model`` carries (:func:`narrow_config` plus ``extra``)."""
    return config_digest({**(extra or {}), **narrow_config(cfg, model)})


def whole_config_digest(cfg: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> str:
    """The digest grids wrote before :func:`model_digest` (every model's section in it); still
    accepted, so runs finished under that rule are reused while the config is unchanged."""
    return config_digest({**(extra or {}), **{k: v for k, v in cfg.items() if k != "experiment"}})


def finished_run(run_dir: Path, digest: str, accept: Sequence[str] = ()) -> dict[str, Any] | None:
    """The result in ``run_dir/metrics.json`` if it is complete and was made with ``digest`` or one
    of ``accept`` (``"complete"`` is the key older predict-gen cells wrote)."""
    path = Path(run_dir) / RESULT_FILE
    if not path.is_file():
        return None
    prev = read_json(path)
    if (isinstance(prev, dict) and prev.get("grid_digest") in (digest, *accept)
            and (prev.get("completed") or prev.get("complete"))):
        return prev
    return None


def run_cells(cells: Sequence[Cell], run_one: Callable[[Cell], dict[str, Any]], *,
              log: Callable[[str], None] = print, report_only: bool = False,
              shard: tuple[int, int] | str = (0, 1)) -> tuple[list[dict[str, Any]], list[Cell]]:
    """Run every cell not finished yet; return ``(results, missing)`` in cell order.

    A finished cell (:func:`finished_run`) is read, not rerun. ``shard=K/N`` runs only the unfinished
    cells ``i`` with ``i % N == K`` (N processes or array jobs sharing a grid folder); ``report_only``
    runs nothing. The result of ``run_one`` gets the digest and ``"completed"`` (the run's own, default
    true) and is written atomically to ``metrics.json`` by rank 0;
    under torchrun every rank sees rank 0's view of what is finished."""
    k_shard, n_shard = parse_shard(shard)
    results: list[dict[str, Any]] = []
    missing: list[Cell] = []
    say = log if D.is_main() else (lambda _msg: None)
    for i, cell in enumerate(cells):
        head = f"[{i + 1}/{len(cells)}] {cell.label}"
        done = D.broadcast_object(finished_run(cell.run_dir, cell.digest, cell.accept))
        if done is not None:
            if done.get("grid_digest") != cell.digest and D.is_main():
                # found by an older digest rule: store today's, so later edits elsewhere still reuse it
                done["grid_digest"] = cell.digest
                write_json(Path(cell.run_dir) / RESULT_FILE, done)
            say(f"{head}: done before")
            results.append(done)
            continue
        if report_only or i % n_shard != k_shard:
            if report_only:
                say(f"{head}: not finished, left out (--report-only)")
            missing.append(cell)
            continue
        say(f"{head} ...")
        r = run_one(cell)
        r["grid_digest"] = cell.digest
        r["completed"] = bool(r.get("completed", True))
        if D.is_main():
            write_json(Path(cell.run_dir) / RESULT_FILE, r)
        results.append(r)
    return results, missing


def run_grid(out: str | Path, sets: Sequence[str | Path], models: Sequence[str], seeds: Sequence[int],
             run_one: Callable[[str | Path, str, int, Path], dict[str, Any]], cfg: Mapping[str, Any],
             digest_extra: Mapping[str, Any] | None = None,
             log: Callable[[str], None] = print, report_only: bool = False,
             also_accept: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """Run ``run_one(inrs, model, seed, run_dir)`` for every combination (:func:`run_cells`); a
    cell's digest is :func:`model_digest` of ``cfg`` (+ ``digest_extra``).
    ``report_only``: train nothing, return the finished runs only (a grid still in progress).
    ``also_accept``: configs that an older digest rule wrote for the same runs (their model digests
    are accepted too, so a task that narrows what its digest covers keeps its finished cells)."""
    out = Path(out)
    legacy = (whole_config_digest(cfg, digest_extra),)
    cells = [Cell(f"{Path(inrs).name} {name} seed {seed}", out / Path(inrs).name / name / f"seed{seed}",
                  model_digest(cfg, name, digest_extra), (inrs, name, seed),
                  legacy + tuple(d for a in also_accept
                                 for d in (model_digest(a, name, digest_extra), whole_config_digest(a, digest_extra))))
             for inrs in sets for name in models for seed in seeds]

    def one(cell: Cell) -> dict[str, Any]:
        inrs, name, seed = cell.key
        r = run_one(inrs, name, seed, cell.run_dir)
        r["set"] = Path(inrs).name
        return r

    results, _ = run_cells(cells, one, log=log, report_only=report_only)
    return results


def summarize_runs(runs: Sequence[Mapping[str, Any]], metric: str) -> list[dict[str, Any]]:
    """One row per (set, model): mean, std and count of ``metric`` over seeds."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["set"], r["model"]), []).append(r)
    rows = []
    for (s, m), rs in groups.items():
        mu, sd = mean_std([r[metric] for r in rs])
        rows.append({"set": s, "model": m, "metric": metric, "mean": mu, "std": sd, "n": len(rs),
                     "seeds": [r["seed"] for r in rs], "n_train": rs[0]["n_train"], "n_val": rs[0]["n_val"],
                     "n_test": rs[0]["n_test"], "params": rs[0]["params"], "claims": rs[0].get("claims"),
                     "dataset": rs[0].get("dataset"), "epochs": rs[0].get("epochs"),
                     "seconds_mean": float(np.mean([r.get("seconds", float("nan")) for r in rs]))})
    return rows


def markdown_table(rows: Sequence[Mapping[str, Any]], scale: float = 1.0, digits: int = 2,
                   metric_label: str = "test accuracy (%)", extra: Mapping[str, Mapping[str, str]] | None = None,
                   ) -> str:
    """Models as rows, INR sets as columns: ``mean +- std (n seeds)``, then a line per set with its sizes."""
    sets = list(dict.fromkeys(r["set"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    cell = {(r["set"], r["model"]): r for r in rows}
    lines = ["| model | symmetry claimed | params | " + " | ".join(f"{s}: {metric_label}" for s in sets) + " |",
             "|---|---|---|" + "---|" * len(sets)]
    for m in models:
        any_r = next(cell[(s, m)] for s in sets if (s, m) in cell)
        vals = []
        for s in sets:
            r = cell.get((s, m))
            if r is None:
                vals.append("-")
            elif r["n"] == 0:  # a reference value, not trained (e.g. the unedited SIRENs)
                vals.append(f"{r['mean'] * scale:.{digits}f}")
            else:
                v = f"{r['mean'] * scale:.{digits}f} +- {r['std'] * scale:.{digits}f} ({r['n']})"
                if extra and m in extra and s in extra[m]:
                    v += f" {extra[m][s]}"
                vals.append(v)
        lines.append(f"| {m} | {any_r.get('claims') or '-'} | {any_r['params']:,} | " + " | ".join(vals) + " |")
    lines.append("")
    for s in sets:
        r = next(cell[(s, m)] for m in models if (s, m) in cell)
        lines.append(f"- `{s}` ({r.get('dataset')}): {r['n_train']} train / {r['n_val']} val / {r['n_test']} test "
                     f"INRs, {r.get('epochs')} epochs; cells: mean +- std over seeds (number of seeds)")
    return "\n".join(lines) + "\n"


def csv_list(text: str | None, cast: Callable[[str], Any] = str) -> list[Any] | None:
    """``"a, b"`` -> ``[cast("a"), cast("b")]``; ``None`` stays ``None`` (use the config's list)."""
    if text is None:
        return None
    return [cast(x.strip()) for x in text.split(",") if x.strip()]


def add_grid_arguments(p: argparse.ArgumentParser, what: str, default_out: str) -> None:
    """The arguments every INR experiment grid takes (a task adds its own, e.g. ``--edit``)."""
    p.add_argument("--inrs", action="append", required=True,
                   help="INR set folder; repeat for several sets (columns of the table)")
    p.add_argument("--models", default=None, help=f"comma-separated {what} names (default: the config's experiment.models)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the config's experiment.seeds)")
    p.add_argument("--out", default=None, help=f"experiment folder (default {default_out})")
    p.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 ... (default auto)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; 0 = torch's default)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar per run")
    p.add_argument("--progress", dest="progress", action="store_true", help=argparse.SUPPRESS)  # old spelling
    p.add_argument("--train-sizes", default=None, metavar="N1,N2,...",
                   help="learning curve: run the grid once per training-set size (the first N training nets; "
                        "same validation and test nets) and write learning_curve.{json,md,png} (default: off)")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: tables from the runs finished so far (e.g. while the grid runs)")
    add_config_arguments(p)


@dataclass(frozen=True)
class GridPlan:
    """What a grid runs: models x seeds over ``args.inrs``, into ``out``."""

    models: list[str]
    seeds: list[int]
    out: Path


def plan_grid(args: argparse.Namespace, cfg: Mapping[str, Any], default_out: str | Path) -> GridPlan:
    """Models and seeds from the command line or the config's ``experiment`` section (unknown model
    names are an error before anything trains) and the output folder. Which finished runs are
    reused is decided per cell by :func:`model_digest`."""
    models = csv_list(args.models) or list(cfg["experiment"]["models"])
    seeds = csv_list(args.seeds, int) or [int(s) for s in cfg["experiment"]["seeds"]]
    for m in models:
        model_entry(m)
    return GridPlan(models, seeds, Path(args.out or default_out))


def save_bar_chart(path: str | Path, rows: Sequence[Mapping[str, Any]], metric_label: str, scale: float = 1.0,
                   title: str | None = None) -> None:
    """A PNG of grouped bars: one group per INR set, one bar per model (mean, error bar = std over
    seeds); reference rows (``n == 0``, e.g. the unedited SIRENs) are drawn as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(r["set"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows if r["n"] > 0))
    cell = {(r["set"], r["model"]): r for r in rows}
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(5.5, 2.6 + 0.5 * len(sets) * len(models)), 3.2))
    for k, m in enumerate(models):
        xs, ys, es = [], [], []
        for i, s in enumerate(sets):
            r = cell.get((s, m))
            if r is not None:
                xs.append(i - 0.4 + (k + 0.5) * width)
                ys.append(r["mean"] * scale)
                es.append(r["std"] * scale)
        ax.bar(xs, ys, width, yerr=es, capsize=2, label=m)
    for i, s in enumerate(sets):
        for r in rows:
            if r["set"] == s and r["n"] == 0:
                ax.hlines(r["mean"] * scale, i - 0.45, i + 0.45, colors="k", linestyles="--", linewidth=1)
                ax.annotate(r["model"], (i + 0.45, r["mean"] * scale), fontsize=6, ha="right", va="bottom")
    ax.set_xticks(range(len(sets)))
    ax.set_xticklabels(sets, fontsize=8)
    ax.set_ylabel(metric_label)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: bars stay visible
    save_png(fig, path)


def write_reports(out: Path, heading: str, rows: Sequence[Mapping[str, Any]], payload: Mapping[str, Any], *,
                  metric_label: str, scale: float = 1.0, digits: int = 2, footer: str = "",
                  plot_title: str | None = None) -> str:
    """A grid's reports, each written atomically: ``results.json`` (``payload`` + the summary
    rows), ``results.md`` (``heading``, the table, ``footer``) and ``results.png``; returns the
    table (the caller prints it)."""
    table = markdown_table(rows, scale=scale, digits=digits, metric_label=metric_label)
    write_json(out / "results.json", {**payload, "summary": list(rows)})
    with atomic_open(out / "results.md") as f:
        f.write(f"# {heading}\n\n{table}{footer}")
    save_bar_chart(out / "results.png", rows, metric_label, scale=scale, title=plot_title)
    return table



# --- learning curves: the same grid at several training-set sizes -------------------------------

def parse_train_sizes(text: str | None) -> list[int] | None:
    """``"1000,5000"`` -> ``[1000, 5000]`` (sorted, unique, each a positive integer); ``None`` -> ``None``."""
    if text is None:
        return None
    try:
        sizes = csv_list(text, int) or []
    except ValueError:
        raise ValueError(f"--train-sizes must be comma-separated positive integers, got {text!r}") from None
    if not sizes or any(n < 1 for n in sizes):
        raise ValueError(f"--train-sizes must be comma-separated positive integers, got {text!r}")
    return sorted(set(sizes))


def run_learning_curve(out: str | Path, sets: Sequence[str | Path], models: Sequence[str], seeds: Sequence[int],
                       sizes: Sequence[int], cfg: Mapping[str, Any],
                       make_run_one: Callable[[Mapping[str, Any]], Callable[[str | Path, str, int, Path],
                                                                           dict[str, Any]]],
                       digest_extra: Mapping[str, Any] | None = None, log: Callable[[str], None] = print,
                       report_only: bool = False, also_accept: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """:func:`run_grid` once per training-set size ``n`` (config ``max_train = n``, folder ``out/n<n>``);
    ``make_run_one(cfg_n)`` returns the grid's ``run_one`` for that config. Finished runs are
    reused by the same digest rule, so a curve can be extended by adding sizes."""
    runs: list[dict[str, Any]] = []
    for n in sizes:
        cfg_n = {**cfg, "max_train": int(n)}
        log(f"-- training-set size {n}")
        for r in run_grid(Path(out) / f"n{n}", sets, models, seeds, make_run_one(cfg_n), cfg_n, digest_extra,
                          log=log, report_only=report_only,
                          also_accept=[{**a, "max_train": int(n)} for a in also_accept]):
            r["train_size"] = int(n)
            runs.append(r)
    return runs


def curve_rows(runs: Sequence[Mapping[str, Any]], metric: str) -> list[dict[str, Any]]:
    """One row per (set, model, training nets actually used): mean and std of ``metric`` over seeds."""
    groups: dict[tuple[str, str, int], list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["set"], r["model"], int(r["n_train"])), []).append(r)
    rows = []
    order_s = list(dict.fromkeys(r["set"] for r in runs))
    order_m = list(dict.fromkeys(r["model"] for r in runs))
    for (s, m, n), rs in sorted(groups.items(), key=lambda kv: (order_s.index(kv[0][0]), order_m.index(kv[0][1]),
                                                                 kv[0][2])):
        mu, sd = mean_std([r[metric] for r in rs])
        rows.append({"set": s, "model": m, "n_train": n, "mean": mu, "std": sd, "n": len(rs),
                     "seeds": [r["seed"] for r in rs], "n_val": rs[0]["n_val"], "n_test": rs[0]["n_test"],
                     "params": rs[0]["params"], "claims": rs[0].get("claims"), "epochs": rs[0].get("epochs")})
    return rows


def curve_table(rows: Sequence[Mapping[str, Any]], scale: float = 1.0, digits: int = 2,
                metric_label: str = "test accuracy (%)") -> str:
    """Per set: models as rows, training-set sizes as columns, ``mean +- std (seeds)`` cells."""
    out = []
    for s in dict.fromkeys(r["set"] for r in rows):
        rs = [r for r in rows if r["set"] == s]
        sizes = sorted({r["n_train"] for r in rs})
        cell = {(r["model"], r["n_train"]): r for r in rs}
        out.append(f"{s}: {metric_label} against training INRs ({rs[0]['n_val']} val / {rs[0]['n_test']} test)\n")
        out.append("| model | symmetry claimed | " + " | ".join(f"{n:,}" for n in sizes) + " |")
        out.append("|---|---|" + "---|" * len(sizes))
        for m in dict.fromkeys(r["model"] for r in rs):
            vals = []
            for n in sizes:
                r = cell.get((m, n))
                vals.append("-" if r is None else
                            f"{r['mean'] * scale:.{digits}f} +- {r['std'] * scale:.{digits}f} ({r['n']})")
            claims = next(r.get("claims") for r in rs if r["model"] == m) or "-"
            out.append(f"| {m} | {claims} | " + " | ".join(vals) + " |")
        out.append("")
    return "\n".join(out) + "\n"


def save_curve_plot(path: str | Path, rows: Sequence[Mapping[str, Any]], metric_label: str, scale: float = 1.0,
                    title: str | None = None, reference: Mapping[str, Mapping[str, float]] | None = None) -> None:
    """A PNG per-set panel of ``metric`` against training-set size (log axis), one line per model
    with markers at the measured sizes (error bars = std over seeds where there are several);
    ``reference`` (set -> {label: value}, already scaled) is drawn as dotted horizontal lines
    (e.g. the paper's numbers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(r["set"] for r in rows))
    # one colour per model across all panels, and one legend naming every model
    models = list(dict.fromkeys(r["model"] for r in rows))
    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    color = {m: cycle[i % len(cycle)] for i, m in enumerate(models)}
    handles: dict[str, Any] = {}
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets) + 1.6, 3.2), squeeze=False)
    for ax, s in zip(axes[0], sets):
        rs = [r for r in rows if r["set"] == s]
        for m in dict.fromkeys(r["model"] for r in rs):
            pts = sorted((r["n_train"], r["mean"] * scale, r["std"] * scale, r["n"]) for r in rs if r["model"] == m)
            xs, ys, es, ns = zip(*pts)
            line, = ax.plot(xs, ys, marker="o", label=m, color=color[m])
            handles.setdefault(m, line)
            if any(n > 1 for n in ns):
                ax.errorbar(xs, ys, yerr=es, fmt="none", ecolor=line.get_color(), capsize=2)
        for j, (label, v) in enumerate(sorted(((reference or {}).get(s) or {}).items(), key=lambda kv: kv[1])):
            ax.axhline(v, color="k", linestyle=":", linewidth=1)
            # x in axes fraction (the log axis has no 0), alternately below / above the lines
            ax.annotate(label, xy=(0.02, v), xycoords=("axes fraction", "data"), fontsize=6,
                        va="top" if j % 2 == 0 else "bottom")
        ax.set_xscale("log")
        ax.set_xlabel("training INRs")
        ax.set_ylabel(metric_label)
        ax.set_title(s, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend([handles[m] for m in models], models, fontsize=7, frameon=False, loc="upper left",
                       bbox_to_anchor=(1.0, 1.0))
    if title:
        fig.suptitle(title, fontsize=9)
    save_png(fig, path)


def write_curve_reports(out: Path, heading: str, rows: Sequence[Mapping[str, Any]], payload: Mapping[str, Any], *,
                        metric_label: str, scale: float = 1.0, digits: int = 2, plot_title: str | None = None,
                        reference: Mapping[str, Mapping[str, float]] | None = None,
                        higher_is_better: bool = True) -> str:
    """``learning_curve.json`` / ``.md`` / ``.png`` in ``out`` (atomic writes); returns the table, with
    the forecast of :mod:`mnfn.training.extrapolate` (slope per decade, size reaching each reference)
    below it where a model has two sizes or more."""
    from .extrapolate import curve_forecasts, forecast_table

    table = curve_table(rows, scale=scale, digits=digits, metric_label=metric_label)
    forecasts = curve_forecasts(rows, reference, scale=scale, higher_is_better=higher_is_better)
    if forecasts:
        table += "\n" + forecast_table(forecasts, digits=digits)
    write_json(out / "learning_curve.json", {**payload, "summary": list(rows), "forecast": forecasts})
    with atomic_open(out / "learning_curve.md") as f:
        f.write(f"# {heading}: learning curve\n\n{table}")
    save_curve_plot(out / "learning_curve.png", rows, metric_label, scale=scale, title=plot_title, reference=reference)
    return table
