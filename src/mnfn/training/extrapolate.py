"""What a learning curve predicts: a least-squares line of the metric against ``log10`` of the
training-set size, per (set, model), and the size at which that line would reach a reference value.

Accuracy (and, over a decade or two, test MSE) of weight-space models is close to linear in
``log n`` in our measurements, so ``m(n) ~ a + b log10(n)`` is the simplest honest forecast: ``b`` is
the gain per decade of training nets, and ``n* = n_last 10^((ref - m_last) / b)`` the size where a
reference is met going on from the last measurement at that slope. It is a forecast, not a promise: curves usually bend down, so ``n*`` is a lower bound on
the data needed, and a line fitted to two or three sizes is rough.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

__all__ = ["log_linear_fit", "size_to_reach", "curve_forecasts", "forecast_table"]


def log_linear_fit(sizes: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """``(a, b)`` of the least-squares line ``value = a + b log10(size)`` (needs two distinct sizes > 0)."""
    if len(sizes) != len(values):
        raise ValueError(f"{len(sizes)} sizes but {len(values)} values")
    if any(not (s > 0) for s in sizes):
        raise ValueError(f"training-set sizes must be positive, got {list(sizes)}")
    xs = [math.log10(s) for s in sizes]
    if len(set(xs)) < 2:
        raise ValueError("a line needs at least two distinct training-set sizes")
    mx, my = sum(xs) / len(xs), sum(values) / len(values)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, values)) / sxx
    return my - b * mx, b


def size_to_reach(b: float, ref: float, largest: float, measured: float,
                  higher_is_better: bool = True) -> float | None:
    """The size at which ``ref`` is reached going on from the last measurement (``measured`` at
    ``largest``) along the fitted slope ``b``: ``largest * 10^((ref - measured) / b)``. Anchored at the
    last point rather than at the line, so a line that overshoots a bending curve never claims a
    value not yet measured. ``largest`` if ``measured`` is already at least as good as ``ref``;
    ``None`` if the slope is flat or moves away from ``ref``; ``inf`` beyond 1e300 nets."""
    better = 1.0 if higher_is_better else -1.0
    if (measured - ref) * better >= 0:
        return float(largest)
    if b * better <= 0:
        return None
    exponent = math.log10(largest) + (ref - measured) / b
    return math.inf if exponent > 300 else 10.0 ** exponent


def curve_forecasts(rows: Sequence[Mapping[str, Any]],
                    reference: Mapping[str, Mapping[str, float]] | None = None,
                    scale: float = 1.0, higher_is_better: bool = True) -> list[dict[str, Any]]:
    """Per (set, model) with at least two sizes in ``rows`` (:func:`~mnfn.training.grid.curve_rows`):
    the fitted line through the per-size means (scaled by ``scale``), its slope per decade, and
    for each reference value of the set (``reference``: set -> {label: value}, already scaled) the
    size at which the line reaches it (:func:`size_to_reach`)."""
    out = []
    for s in dict.fromkeys(r["set"] for r in rows):
        for m in dict.fromkeys(r["model"] for r in rows if r["set"] == s):
            pts = sorted((r["n_train"], r["mean"] * scale) for r in rows if r["set"] == s and r["model"] == m)
            if len({n for n, _ in pts}) < 2:
                continue
            a, b = log_linear_fit([n for n, _ in pts], [v for _, v in pts])
            largest = pts[-1][0]
            refs = (reference or {}).get(s) or {}
            reach = {label: size_to_reach(b, v, largest, pts[-1][1], higher_is_better) for label, v in refs.items()}
            out.append({"set": s, "model": m, "sizes": [n for n, _ in pts], "intercept": a, "per_decade": b,
                        "at_largest": a + b * math.log10(largest), "reach": reach})
    return out


def _fmt_size(n: float | None, largest: float) -> str:
    if n is None:
        return "never (flat or moving away)"
    if n <= largest:
        return "reached"
    if math.isinf(n):
        return "> 1e300"
    return f"~{n:,.0f}" if n < 1e6 else f"~{n:.1e}"


def forecast_table(forecasts: Sequence[Mapping[str, Any]], digits: int = 2) -> str:
    """Markdown: per set, one row per model: slope per decade and the size that reaches each reference."""
    out = []
    for s in dict.fromkeys(f["set"] for f in forecasts):
        fs = [f for f in forecasts if f["set"] == s]
        labels = list(dict.fromkeys(k for f in fs for k in f["reach"]))
        out.append(f"{s}: least-squares line against log10(training INRs) (a forecast; curves usually bend down)\n")
        out.append("| model | sizes fitted | per decade | " + " | ".join(f"reaches {k} at" for k in labels) + " |")
        out.append("|---|---|---|" + "---|" * len(labels))
        for f in fs:
            largest = f["sizes"][-1]
            cells = [_fmt_size(f["reach"].get(k), largest) if k in f["reach"] else "-" for k in labels]
            out.append(f"| {f['model']} | {', '.join(f'{n:,}' for n in f['sizes'])} | {f['per_decade']:+.{digits}f} | "
                       + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out) + "\n"
