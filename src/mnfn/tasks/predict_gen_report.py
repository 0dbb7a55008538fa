"""Experiment 1's report: mean +- std of Kendall tau / R^2 / MAE over seeds per model, train
augmentation and test condition, as a markdown table and the tau-vs-scale figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..training.grid import mean_std

__all__ = ["METRIC_NAMES", "summarize", "markdown_table", "plot_results"]

METRIC_NAMES = ("tau", "r2", "mae")


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``{model: {train_augment: {condition: {metric: [mean, std, n]}}}}`` over seeds."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in records:
        if (r.get("completed") or r.get("complete")) and "test" in r:
            groups.setdefault((r["model"], r["train_augment"]), []).append(r)
    out: dict[str, Any] = {}
    for (m, a), rs in groups.items():
        conds = list(rs[0]["test"])
        cell = {}
        for c in conds:
            cell[c] = {k: [*mean_std([r["test"][c][k] for r in rs]), len(rs)] for k in METRIC_NAMES}
        out.setdefault(m, {})[a] = cell
    return out


def markdown_table(report: Mapping[str, Any], metric: str = "tau") -> str:
    conds = report["conditions"]
    heads = {"original": "original"} | {c: ("U[1, " + c.split(",")[1] + "]" if c.startswith("scale:") else c)
                                        for c in conds if c != "original"}
    lines = [f"Kendall tau ({metric}) on the test split, mean +- std over seeds {report['seeds']} "
             f"({Path(str(report['zoo'])).name}, {report['activation']} nets)", "",
             "| model | train augment | " + " | ".join(heads[c] for c in conds) + " |",
             "|---|---|" + "---|" * len(conds)]
    for m, by_aug in report["summary"].items():
        for a, cell in by_aug.items():
            vals = []
            for c in conds:
                mean, std, n = cell[c][metric]
                vals.append(f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}")
            lines.append(f"| {m} | {a} | " + " | ".join(vals) + " |")
    lines.append("")
    return "\n".join(lines)


def plot_results(report: Mapping[str, Any], path: str | Path, metric: str = "tau") -> None:
    """Kendall tau vs the scale range's upper bound (log x; ``original`` at 1), one line per model
    (dashed: trained with augmentation); for sign-only zoos, original vs sign flips."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conds = report["conditions"]
    scale_conds = [c for c in conds if c.startswith("scale:")]
    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=120)
    if scale_conds:
        xs = [1.0] + [float(c.split(",")[1]) for c in scale_conds]
        several_seeds = len(report.get("seeds") or []) > 1
        for m, by_aug in report["summary"].items():
            for a, cell in by_aug.items():
                ys = [cell[c][metric][0] for c in ["original", *scale_conds]]
                es = [cell[c][metric][1] for c in ["original", *scale_conds]]
                label = m if a == "none" else f"{m} (train {a})"
                # a line through two measured scales would suggest values between them: markers only then
                style = ("-" if a == "none" else "--") if len(xs) > 2 else "none"
                if several_seeds:  # error bars (std over seeds) only where there is a spread to show
                    ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label, linestyle=style)
                else:
                    ax.plot(xs, ys, marker="o", label=label, linestyle=style)
        ax.set_xscale("log")
        ax.set_xlabel("upper bound of the scale range U[1, x] (x = 1: original weights)")
    else:
        labels = [f"{m}" if a == "none" else f"{m}\n(train {a})" for m, by in report["summary"].items() for a in by]
        width = 0.8 / max(1, len(conds))
        for j, c in enumerate(conds):
            ys = [cell[c][metric][0] for by in report["summary"].values() for cell in by.values()]
            es = [cell[c][metric][1] for by in report["summary"].values() for cell in by.values()]
            ax.bar(np.arange(len(ys)) + j * width, ys, width, yerr=es, capsize=3, label=c)
        ax.set_xticks(np.arange(len(labels)) + width * (len(conds) - 1) / 2)
        ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("Kendall's tau" if metric == "tau" else metric)
    n_seeds = len(report.get("seeds") or [])
    ax.set_title(f"Test {'Kendall tau' if metric == 'tau' else metric} of {report['activation']} nets, original and "
                 f"group-transformed ({n_seeds} seed{'s' if n_seeds != 1 else ''}"
                 f"{', mean +- std' if n_seeds > 1 else ''})", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    from ..io import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
