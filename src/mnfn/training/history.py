"""Per-epoch training curves of finished or running runs: the ``log.csv`` every training run writes
(:mod:`mnfn.training.checkpoints`), found under one or more folders, summarised as a table and drawn
as one PNG (``mnfn curves``).

Long runs on weight spaces often sit on a plateau for many epochs before they learn (NFN-style INR
classifiers: near 30 % for ~10,000 steps, then a climb); the epoch curves, not only the final
number, say whether a run needed more steps, more capacity or more data.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..io import DataFormatError, read_json, save_png
from .checkpoints import LOG_FILE

__all__ = ["RunHistory", "find_runs", "read_history", "summarize", "format_table", "plot_histories",
           "MAX_LOG_BYTES", "MAX_RUNS"]

#: A log has one short row per epoch: a few hundred bytes each. Anything larger is not one of ours.
MAX_LOG_BYTES = 16 << 20
#: More runs than this in one figure is unreadable (and a sign the wrong folder was named).
MAX_RUNS = 64


@dataclass
class RunHistory:
    """One run: its folder, a label, the rows of its ``log.csv`` and (when written) its ``metrics.json``."""

    path: Path
    label: str
    rows: list[dict[str, float]]
    metrics: dict[str, Any] = field(default_factory=dict)

    def column(self, key: str) -> list[float]:
        return [r.get(key, math.nan) for r in self.rows]

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys(k for r in self.rows for k in r))


def read_history(path: str | Path) -> list[dict[str, float]]:
    """Rows of one ``log.csv`` as dicts of floats; a missing, oversized, binary or malformed file
    raises :class:`DataFormatError` naming it and, for a bad value, its line."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found")
    size = path.stat().st_size
    if size > MAX_LOG_BYTES:
        raise DataFormatError(f"{path}: {size:,} bytes, more than the {MAX_LOG_BYTES:,} a training log may have")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = []
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise DataFormatError(f"{path}: line {reader.line_num} has {len(row) - (None in row)} fields, "
                                          f"the header {len(reader.fieldnames or [])}")
                try:
                    rows.append({k: float(v) for k, v in row.items()})
                except ValueError as exc:
                    raise DataFormatError(f"{path}: line {reader.line_num}: not a number ({exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataFormatError(f"{path}: not a training log ({type(exc).__name__}: {exc})") from None
    if not rows or "epoch" not in rows[0]:
        raise DataFormatError(f"{path}: not a training log (needs a header with 'epoch' and one row per epoch)")
    return rows


def find_runs(paths: Sequence[str | Path]) -> list[RunHistory]:
    """Every run folder (one holding a ``log.csv``) at or below ``paths``, in the order given and then
    sorted; labels are the folders relative to the deepest folder they share. At most
    :data:`MAX_RUNS`."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise DataFormatError(f"{p}: no such file or folder")
        if p.is_file():
            if p.name != LOG_FILE:
                raise DataFormatError(f"{p}: not a {LOG_FILE} (name a run folder, a log.csv or a folder of runs)")
            logs = [p]
        else:
            logs = sorted(p.rglob(LOG_FILE))
        if not logs:
            raise DataFormatError(f"{p}: no {LOG_FILE} at or below it: no training run has started there")
        found.extend(log.parent for log in logs if log.parent not in found)
        if len(found) > MAX_RUNS:
            raise DataFormatError(f"more than {MAX_RUNS} runs under {', '.join(map(str, paths))}: name fewer folders")
    labels = _labels(found)
    runs = []
    for folder, label in zip(found, labels):
        metrics = read_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else {}
        runs.append(RunHistory(folder, label, read_history(folder / LOG_FILE),
                               metrics if isinstance(metrics, dict) else {}))
    return runs


def _labels(folders: Sequence[Path]) -> list[str]:
    if len(folders) == 1:
        return [str(folders[0])]
    parts = [f.resolve().parts for f in folders]
    common = 0
    while all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    return ["/".join(p[common:]) for p in parts]


def _selected(run: RunHistory) -> tuple[int | None, float | None, str | None]:
    """The epoch a run selected and its value: ``metrics.json``'s ``best_epoch`` when there is one,
    else the best epoch of the first ``val_*`` metric other than the loss (highest) or of
    ``val_loss`` (lowest)."""
    cols = run.columns
    key = next((c for c in cols if c.startswith("val_") and c != "val_loss"), "val_loss" if "val_loss" in cols else None)
    if key is None:
        return None, None, None
    vals = run.column(key)
    best = run.metrics.get("best_epoch")
    epochs = [int(e) for e in run.column("epoch")]
    if isinstance(best, int) and best in epochs:
        i = epochs.index(best)
    else:
        finite = [(v, i) for i, v in enumerate(vals) if math.isfinite(v)]
        if not finite:
            return None, None, key
        i = (min if key == "val_loss" else max)(finite)[1]
    return epochs[i], vals[i], key


def summarize(runs: Sequence[RunHistory]) -> list[dict[str, Any]]:
    """One dict per run: epochs done (of the configured total, when known), the selected epoch and
    its validation value, the last training and validation loss, median seconds per epoch, and the
    test metrics of a finished run."""
    out = []
    for r in runs:
        epoch, value, key = _selected(r)
        secs = sorted(v for v in r.column("seconds") if math.isfinite(v))
        row: dict[str, Any] = dict(run=r.label, epochs_done=len(r.rows), epochs=r.metrics.get("epochs"),
                                   best_epoch=epoch, select=key, best_value=value,
                                   last_train_loss=r.rows[-1].get("train_loss"), last_val_loss=r.rows[-1].get("val_loss"),
                                   seconds_per_epoch=secs[len(secs) // 2] if secs else None)
        row.update({k: v for k, v in r.metrics.items() if k.startswith("test_") and isinstance(v, (int, float))})
        out.append(row)
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def format_table(summary: Sequence[dict[str, Any]]) -> str:
    """The summary as a markdown table (one row per run; test columns where any run has them)."""
    tests = list(dict.fromkeys(k for s in summary for k in s if k.startswith("test_")))
    head = ["run", "epochs", "selected epoch", "its val value", "last train loss", "last val loss", "s/epoch", *tests]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        done = f"{s['epochs_done']}" + (f"/{s['epochs']}" if s.get("epochs") else "")
        val = "-" if s["best_value"] is None else f"{_fmt(s['best_value'])} ({s['select']})"
        cells = [s["run"], done, _fmt(s["best_epoch"]), val, _fmt(s["last_train_loss"]), _fmt(s["last_val_loss"]),
                 _fmt(s["seconds_per_epoch"]), *(_fmt(s.get(t)) for t in tests)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_histories(runs: Sequence[RunHistory], path: str | Path, metrics: Sequence[str] | None = None,
                   x: str = "epoch") -> Path:
    """One PNG panel per metric against ``x`` (``epoch``, or ``hours``: the logged seconds per epoch,
    cumulated), one colour per run; the loss panel draws training solid and validation dashed.
    ``metrics`` default: ``loss`` and every ``val_*`` column other than the loss. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = list(dict.fromkeys(c for r in runs for c in r.columns))
    if metrics is None:
        metrics = ["loss"] + [c for c in cols if c.startswith("val_") and c != "val_loss"]
    for m in metrics:
        if m != "loss" and m not in cols:
            raise ValueError(f"no run logs a column {m!r} (columns: {', '.join(cols)})")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.4 * len(metrics) + 2.2, 3.3), squeeze=False)
    cycle = run_colours(len(runs))
    for ax, m in zip(axes[0], metrics):
        for i, r in enumerate(runs):
            xs = _xs(r, x)
            color = cycle[i % len(cycle)]
            if m == "loss":
                ax.plot(xs, r.column("train_loss"), color=color, label=r.label)
                if "val_loss" in r.columns:
                    ax.plot(xs, r.column("val_loss"), color=color, linestyle="--")
            elif m in r.columns:
                ax.plot(xs, r.column(m), color=color, marker="." if len(xs) < 40 else None, label=r.label)
        ax.set_xlabel("hours of training" if x == "hours" else "epoch")
        ax.set_ylabel("loss (train solid, val dashed)" if m == "loss" else m)
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    axes[0][-1].legend(handles, labels, fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save_png(fig, path)


def run_colours(n: int) -> list[Any]:
    """One distinct colour per run: the default cycle (ten colours), then tab20 up to 20 runs, then turbo."""
    import matplotlib.pyplot as plt

    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    if n <= len(cycle):
        return list(cycle[:n])
    if n <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n)]
    return [plt.get_cmap("turbo")(i / (n - 1)) for i in range(n)]


def _xs(run: RunHistory, x: str) -> list[float]:
    if x == "epoch":
        return run.column("epoch")
    if x == "hours":
        total, xs = 0.0, []
        for s in run.column("seconds"):
            total += s if math.isfinite(s) else 0.0
            xs.append(total / 3600.0)
        return xs
    raise ValueError(f"x must be 'epoch' or 'hours', not {x!r}")
