"""The demo: experiment 1 in miniature, on data that ships with scikit-learn.

1. train a small CNN zoo on the bundled 8x8 digits (ReLU nets, several checkpoints each);
2. train Monomial-NFN, HNP and StatNN to predict each checkpoint's test accuracy;
3. evaluate Kendall tau on the original test nets and on test nets rescaled (and permuted) by
   random monomial group elements with scales U[1, 1e3].

Monomial-NFN is invariant to the rescaling, so its tau should not move; the others have no
reason to. Everything is seeded: the same command gives the same numbers.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from ..data.zoo import make_zoo
from .predict_gen import DEFAULTS, run_experiment

__all__ = ["DEMO_CONFIG", "run_demo"]

#: CPU-sized settings: every checkpoint of every net, larger batches, few epochs, one test scale.
DEMO_CONFIG: dict[str, Any] = {
    **copy.deepcopy(DEFAULTS),
    "epochs": 12,
    "batch_size": 32,
    "steps": "all",
    "test_scales": [1000.0],
    "models": {
        "monomial": {"hidden": [16, 16, 5], "head": [200, 200]},
        "hnp": {"hidden": [16, 16, 5], "head": [200, 200]},
        "statnn": {"hidden": [200, 200]},
    },
}
DEMO_MODELS = ("monomial", "hnp", "statnn")


def run_demo(out_dir: str | Path = "runs/demo", num_nets: int = 200, epochs: int | None = None, seed: int = 0,
             models: tuple[str, ...] = DEMO_MODELS, progress: bool = True) -> dict[str, Any]:
    """Run the demo end to end; returns the experiment report (also written under ``out_dir``)."""
    out = Path(out_dir)
    t0 = time.perf_counter()
    if (out / "zoo" / "zoo.json").is_file():  # make_zoo still checks the settings and resumes nothing
        print(f"[1/2] zoo of {num_nets} ReLU CNNs already made: {out / 'zoo'} (reused)", flush=True)
    else:
        print(f"[1/2] training a zoo of {num_nets} ReLU CNNs on scikit-learn's 8x8 digits -> {out / 'zoo'}", flush=True)
    make_zoo(out / "zoo", "digits", num_nets, activations=("relu",), seed=seed, progress=progress)
    t_zoo = time.perf_counter() - t0
    cfg = copy.deepcopy(DEMO_CONFIG)
    if epochs is not None:
        cfg["epochs"] = int(epochs)
    print(f"[2/2] predicting test accuracy from weights with {', '.join(models)} -> {out / 'predict-gen'}", flush=True)
    report = run_experiment(out / "zoo", out / "predict-gen", list(models), [seed], "relu", cfg, progress=progress)
    report["seconds_zoo"] = t_zoo
    report["seconds_total"] = time.perf_counter() - t0
    return report


def summary_lines(report: dict[str, Any], out_dir: str | Path) -> list[str]:
    """A closing summary: tau before/after rescaling per model, and where the outputs are."""
    out = Path(out_dir)
    conds = report["conditions"]
    lines = ["", "Kendall tau of predicted vs true test accuracy (test nets):",
             f"{'model':<10} " + " ".join(f"{('rescaled ' + c.split(',')[1]) if c != 'original' else c:>14}" for c in conds)]
    for m, by_aug in report["summary"].items():
        cell = by_aug["none"]
        lines.append(f"{m:<10} " + " ".join(f"{cell[c]['tau'][0]:>14.3f}" for c in conds))
    lines += ["",
              f"done in {report['seconds_total'] / 60:.1f} min (zoo {report['seconds_zoo'] / 60:.1f} min). Outputs:",
              f"  table  {out / 'predict-gen' / 'results.md'}",
              f"  JSON   {out / 'predict-gen' / 'results.json'}",
              f"  figure {out / 'predict-gen' / 'tau_vs_scale.png'}",
              f"  zoo    {out / 'zoo'} (Small CNN Zoo format: weights.npy, metrics.csv.gz, layout.csv)"]
    return lines
