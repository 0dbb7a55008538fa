"""Per-tensor statistics of an INR set (``mnfn inr info``): what a recipe made, in numbers.

For each tensor ``weight_i`` / ``bias_i`` of the SIRENs the *pooled* statistics over all entries of
all nets of a split (mean, standard deviation, mean absolute value, min, max) and the mean
relative distance of each net's tensor from its initialisation, ``||T - T_init|| / ||T_init||``
(recomputed from the seeds, so it needs no stored copy; ``nan`` for zero-initialised tensors).
The pooled standard deviations are the numbers the peers publish for NFN's sets
(:data:`mnfn.data.inr.NFN_MNIST_STDS`), so a set can be compared with them directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .inr import NFN_MNIST_STDS, FitConfig, InrDataset, init_seeds, init_sirens

__all__ = ["tensor_stats", "stats_table"]


def _names(num_layers: int) -> list[str]:
    return [f"{kind}_{i + 1}" for i in range(num_layers) for kind in ("weight", "bias")]


def tensor_stats(root: str | Path, split: str = "train", max_nets: int | None = 2000) -> dict[str, Any]:
    """Statistics of ``split`` of the INR set ``root`` (the first ``max_nets`` nets; ``None``: all).

    Returns ``{"nets": n, "split": split, "tensors": {name: {mean, std, abs_mean, min, max,
    moved}}, "reference": NFN's pooled stds or None}``; ``moved`` is the mean relative change
    from initialisation (``None`` for sets imported from elsewhere, whose seeds are unknown)."""
    ds = InrDataset(root, split=split)
    n = len(ds) if max_nets is None else min(len(ds), int(max_nets))
    if n == 0:
        raise ValueError(f"{root}: no nets in split {split!r}")
    feats = ds.features
    tensors = [t[:n, 0] for wb in zip(feats.weights, feats.biases) for t in wb]
    init = None
    meta = ds.meta
    plan, fit = meta.get("plan") or {}, meta.get("fit")
    if meta.get("origin") == "fit" and fit is not None and "seed" in plan:
        cfg = FitConfig.from_json(fit)
        seeds = []
        for s, i in zip(ds.splits[:n], ds.image_index[:n].tolist()):
            seeds += init_seeds(int(plan["seed"]), s, [i], plan.get("init", "independent"))
        init = init_sirens(seeds, ds.spec, cfg.init)
    out: dict[str, dict[str, float | None]] = {}
    for k, (name, t) in enumerate(zip(_names(ds.spec.num_layers), tensors)):
        a = t.double()
        row: dict[str, float | None] = {"mean": float(a.mean()), "std": float(a.std()),
                                        "abs_mean": float(a.abs().mean()), "min": float(a.min()), "max": float(a.max())}
        if init is not None:
            t0 = init[k].double()
            norm0 = t0.flatten(1).norm(dim=1)
            rel = (a - t0).flatten(1).norm(dim=1) / norm0
            row["moved"] = float(rel.mean()) if bool((norm0 > 0).all()) else float("nan")
        else:
            row["moved"] = None
        out[name] = row
    ref = NFN_MNIST_STDS if meta.get("dataset") == "mnist" and ds.spec.num_layers == 3 else None
    return {"nets": n, "split": split, "tensors": out, "reference": ref}


def stats_table(stats: dict[str, Any]) -> str:
    """The statistics as a fixed-width terminal table (with NFN's pooled std and the ratio when known)."""
    ref = stats.get("reference")
    head = f"{'tensor':<9} {'mean':>9} {'std':>9} {'|x| mean':>9} {'min':>9} {'max':>9} {'moved':>7}"
    if ref:
        head += f" {'NFN std':>9} {'ratio':>6}"
    lines = [f"per-tensor statistics over {stats['nets']} {stats['split']} nets (pooled over entries):", head]
    for name, r in stats["tensors"].items():
        moved = "-" if r["moved"] is None else ("nan" if np.isnan(r["moved"]) else f"{r['moved']:.3f}")
        line = (f"{name:<9} {r['mean']:>9.5f} {r['std']:>9.5f} {r['abs_mean']:>9.5f} {r['min']:>9.4f} "
                f"{r['max']:>9.4f} {moved:>7}")
        if ref and name in ref:
            line += f" {ref[name]:>9.5f} {r['std'] / ref[name]:>6.3f}"
        lines.append(line)
    lines.append("moved: mean ||T - T_init|| / ||T_init|| per net (nan: zero-initialised tensor)")
    return "\n".join(lines)

