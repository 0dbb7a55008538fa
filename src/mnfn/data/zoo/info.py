"""Summaries of a zoo: counts and test-accuracy statistics per activation (:func:`zoo_info`) and
the histogram of final accuracies (:func:`accuracy_histogram`, :func:`plot_accuracy_histogram`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...io import DataFormatError, atomic_path, load_npz, read_json
from .format import read_zoo

__all__ = [
    "accuracy_histogram",
    "zoo_info",
]


HIST_BINS = 20


def accuracy_histogram(acc: np.ndarray, bins: int = HIST_BINS) -> list[int]:
    """Counts of accuracies in ``bins`` equal bins over [0, 1] (1.0 falls in the last bin)."""
    a = np.clip(np.asarray(acc, dtype=np.float64), 0.0, 1.0)
    counts, _ = np.histogram(a[np.isfinite(a)], bins=bins, range=(0.0, 1.0))
    return [int(c) for c in counts]


def zoo_info(root: str | os.PathLike) -> dict[str, Any]:
    """Counts and test-accuracy statistics (all checkpoints and final step), per activation, with a
    histogram of the final accuracies (:func:`accuracy_histogram`) and the share of nets left near
    chance (final accuracy below ``1.5 / classes``): a zoo that is mostly "trained or not" is bimodal.

    On a zoo still being made (``mnfn zoo make`` running or interrupted: ``.parts/`` but no
    ``weights.npy``) it summarises the nets finished so far and says so (``unfinished``)."""
    rootp = Path(root)
    parts = rootp / ".parts"
    if not (rootp / "weights.npy").exists() and (parts / "config.json").is_file():
        return _parts_info(rootp)
    z = read_zoo(root)
    if len(z) == 0:
        raise DataFormatError(f"{z.root}: no checkpoints (weights.npy and metrics.csv.gz have 0 rows)")
    return _summary(str(z.root), z.metrics, z.meta, z.num_params)


def _parts_info(root: Path) -> dict[str, Any]:
    meta = read_json(root / ".parts" / "config.json")
    rows: list[dict[str, Any]] = []
    for f in sorted((root / ".parts").glob("net*.npz")):
        rows.extend(json.loads(str(load_npz(f, required=("weights", "metrics"))["metrics"])))
    if not rows:
        raise DataFormatError(f"{root}: a zoo is being made here, but no net is finished yet")
    cols = ("config.activation", "test_accuracy", "step", "modeldir", "config.optimizer")
    m = {c: np.asarray([r[c] for r in rows]) for c in cols if all(c in r for r in rows)}
    out = _summary(str(root), m, meta, int(meta.get("num_params", 0)))
    shard = meta.get("shard") or [0, 1]
    total = len(range(int(shard[0]), int(meta.get("num_nets", 0)), int(shard[1])))
    out["unfinished"] = {"nets_done": out["nets"], "nets_total": total}
    return out


def _summary(root: str, m: dict[str, np.ndarray], meta: dict[str, Any] | None, params: int) -> dict[str, Any]:
    acts = m["config.activation"].astype(str)
    acc = np.asarray(m["test_accuracy"], dtype=np.float64)
    step = np.asarray(m["step"])
    final = step == step.max()
    nets = m["modeldir"].astype(str)
    out: dict[str, Any] = {"root": root, "checkpoints": int(len(acc)), "nets": len(set(nets.tolist())),
                           "params": params, "steps": sorted(set(step.tolist())), "by_activation": {}}
    classes = 10
    if meta:
        out["dataset"] = meta.get("dataset")
        out["seed"] = meta.get("seed")
        if isinstance(meta.get("recipe"), dict):
            out["recipe"] = meta["recipe"].get("name", "fast")
    near_chance = 1.5 / classes
    out["near_chance_below"] = near_chance
    out["hist_bins"] = HIST_BINS
    for a in sorted(set(acts.tolist())):
        sel = acts == a
        fa = acc[sel & final]
        out["by_activation"][a] = {
            "nets": len(set(nets[sel].tolist())), "checkpoints": int(sel.sum()),
            "acc_mean": float(acc[sel].mean()), "acc_std": float(acc[sel].std()),
            "final_acc_mean": float(fa.mean()) if fa.size else float("nan"),
            "final_acc_std": float(fa.std()) if fa.size else float("nan"),
            "final_acc_min": float(fa.min()) if fa.size else float("nan"),
            "final_acc_max": float(fa.max()) if fa.size else float("nan"),
            "final_near_chance": float((fa < near_chance).mean()) if fa.size else float("nan"),
            "final_hist": accuracy_histogram(fa),
        }
        if "config.optimizer" in m:  # which hyperparameter family leaves nets untrained
            opts = m["config.optimizer"].astype(str)
            out["by_activation"][a]["by_optimizer"] = {
                o: {"nets": int((sel & final & (opts == o)).sum()),
                    "final_acc_mean": float(acc[sel & final & (opts == o)].mean()),
                    "final_near_chance": float((acc[sel & final & (opts == o)] < near_chance).mean())}
                for o in sorted(set(opts[sel & final].tolist()))}
    return out


def plot_accuracy_histogram(info: dict[str, Any], path: str | os.PathLike) -> Path:
    """PNG of :func:`zoo_info`'s final-accuracy histograms, one bar series per activation (atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = int(info.get("hist_bins", HIST_BINS))
    edges = np.linspace(0.0, 1.0, bins + 1)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    acts = list(info["by_activation"].items())
    width = (edges[1] - edges[0]) / max(len(acts), 1)
    for j, (a, st) in enumerate(acts):
        ax.bar(edges[:-1] + j * width, st["final_hist"], width=width, align="edge", label=f"{a} ({st['nets']} nets)")
    ax.axvline(info.get("near_chance_below", 0.15), color="grey", lw=0.8, ls="--")
    ax.set_xlabel("final test accuracy")
    ax.set_ylabel("nets")
    title = f"{Path(str(info['root'])).name}: {info['nets']} nets"
    if info.get("unfinished"):
        title += f" of {info['unfinished']['nets_total']} so far"
    if info.get("recipe"):
        title += f", recipe {info['recipe']}"
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out
