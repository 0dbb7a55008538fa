"""Evaluation metrics on whole prediction sets (numpy in, float out).

Every metric takes ``(pred, target)`` array-likes over *all* evaluated items: rank metrics such as
Kendall's tau are not averages of per-batch values, so the trainer gathers predictions (across
ranks too) before calling them. ``METRICS`` maps names to functions; :func:`compute_metrics`
evaluates several by name. ``HIGHER_IS_BETTER`` tells the trainer which way to select checkpoints.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

import numpy as np

__all__ = ["kendall_tau", "r2", "mae", "mse", "rmse", "accuracy", "METRICS", "HIGHER_IS_BETTER",
           "compute_metrics", "register_metric", "is_better"]


def _vec(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    p, t = _vec(pred), _vec(target)
    if p.shape != t.shape:
        raise ValueError(f"predictions ({p.size}) and targets ({t.size}) differ in length")
    return p, t


def kendall_tau(pred: Any, target: Any) -> float:
    """Kendall's tau-b (``scipy.stats.kendalltau``).

    Constant predictions (a saturated model) rank nothing: tau is 0 for them, where scipy says NaN,
    so means over seeds and plots stay defined. NaN when the targets are constant or there are
    fewer than 2 items.
    """
    from scipy.stats import kendalltau

    p, t = _pair(pred, target)
    if p.size < 2 or np.all(t == t[0]):
        return float("nan")
    if np.all(p == p[0]):
        return 0.0
    return float(kendalltau(p, t).statistic)


def r2(pred: Any, target: Any) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (NaN for a constant target)."""
    p, t = _pair(pred, target)
    ss_tot = float(((t - t.mean()) ** 2).sum()) if t.size else 0.0
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(((t - p) ** 2).sum()) / ss_tot


def mae(pred: Any, target: Any) -> float:
    p, t = _pair(pred, target)
    return float(np.abs(p - t).mean()) if p.size else float("nan")


def mse(pred: Any, target: Any) -> float:
    p, t = _pair(pred, target)
    return float(((p - t) ** 2).mean()) if p.size else float("nan")


def rmse(pred: Any, target: Any) -> float:
    return math.sqrt(mse(pred, target))


def accuracy(pred: Any, target: Any) -> float:
    """Classification accuracy. ``pred``: class scores ``(N, K)`` (argmax taken) or labels ``(N,)``."""
    if hasattr(pred, "detach"):
        pred = pred.detach().cpu().numpy()
    if hasattr(target, "detach"):
        target = target.detach().cpu().numpy()
    pred, target = np.asarray(pred), np.asarray(target).reshape(-1)
    labels = pred.argmax(axis=-1) if pred.ndim == 2 else pred.reshape(-1)
    if labels.shape != target.shape:
        raise ValueError(f"predictions ({labels.size}) and targets ({target.size}) differ in length")
    return float((labels == target).mean()) if target.size else float("nan")


MetricFn = Callable[[Any, Any], float]

METRICS: dict[str, MetricFn] = {
    "tau": kendall_tau, "r2": r2, "mae": mae, "mse": mse, "rmse": rmse, "accuracy": accuracy,
}
HIGHER_IS_BETTER: dict[str, bool] = {
    "tau": True, "r2": True, "mae": False, "mse": False, "rmse": False, "accuracy": True, "loss": False,
}


def register_metric(name: str, fn: MetricFn, higher_is_better: bool) -> None:
    METRICS[name] = fn
    HIGHER_IS_BETTER[name] = higher_is_better


def compute_metrics(names: Iterable[str] | Mapping[str, MetricFn], pred: Any, target: Any) -> dict[str, float]:
    """``{name: metric(pred, target)}`` for registered names (or a mapping of name -> function)."""
    fns = dict(names) if isinstance(names, Mapping) else {}
    if not isinstance(names, Mapping):
        for n in names:
            if n not in METRICS:
                raise ValueError(f"unknown metric {n!r}; known: {', '.join(METRICS)}")
            fns[n] = METRICS[n]
    return {n: float(f(pred, target)) for n, f in fns.items()}


def is_better(value: float, best: float | None, higher: bool) -> bool:
    """Strictly better; NaN is worse than anything, and anything beats no value yet."""
    if best is None:
        return True
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value > best if higher else value < best
