"""The learning-curve forecast (mnfn.training.extrapolate): the least-squares line against log10(n)
and the size at which it reaches a reference, for metrics that should rise (accuracy) or fall (MSE)."""

import math

import pytest

from mnfn.tasks.classify_inr import PAPER_ACCURACY, PEER_ACCURACY_DWS, reference_accuracy
from mnfn.training.extrapolate import curve_forecasts, forecast_table, log_linear_fit, size_to_reach


def test_line_through_exact_points():
    a, b = log_linear_fit([100, 1000, 10000], [20.0, 25.0, 30.0])
    assert b == pytest.approx(5.0) and a == pytest.approx(10.0)
    # 60 = 10 + 5 log10(n) -> n = 1e10
    assert size_to_reach(b, 60.0, 10000, 30.0) == pytest.approx(1e10)


def test_least_squares_not_interpolation():
    a, b = log_linear_fit([10, 100, 1000], [1.0, 3.0, 2.0])
    assert b == pytest.approx(0.5) and a == pytest.approx(1.0)


def test_reached_flat_and_moving_away():
    assert size_to_reach(5.0, 25.0, 10000, 30.0) == 10000  # measured already past the reference
    assert size_to_reach(0.0, 40.0, 10000, 30.0) is None  # flat
    assert size_to_reach(-2.0, 50.0, 10000, 32.0) is None  # accuracy falling
    assert math.isinf(size_to_reach(1e-4, 1.0, 100, 2e-4))
    # a line that overshoots a bending curve: anchored at the last measurement, not at the line
    a, b = log_linear_fit([1000, 5000, 20000], [77.85, 90.63, 96.47])
    assert a + b * math.log10(20000) > 96.6  # the line is already past 96.6 at 20,000 ...
    n = size_to_reach(b, 96.6, 20000, 96.47)
    assert n == pytest.approx(20000 * 10 ** (0.13 / b)) and n > 20000  # ... the measurement is not


def test_lower_is_better_for_mse():
    a, b = log_linear_fit([1000, 10000], [0.2, 0.15])
    assert b == pytest.approx(-0.05)
    n = size_to_reach(b, 0.05, 10000, 0.15, higher_is_better=False)
    assert n == pytest.approx(1e6)
    assert size_to_reach(b, 0.2, 10000, 0.15, higher_is_better=False) == 10000
    assert size_to_reach(b, 0.05, 10000, 0.15, higher_is_better=True) == 10000  # 0.15 >= 0.05: "reached"


def test_bad_input():
    with pytest.raises(ValueError, match="two distinct"):
        log_linear_fit([100, 100], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        log_linear_fit([0, 100], [1.0, 2.0])
    with pytest.raises(ValueError, match="2 sizes but 1"):
        log_linear_fit([1, 2], [1.0])


def test_forecasts_per_set_and_model_and_table():
    rows = [{"set": "s", "model": m, "n_train": n, "mean": v / 100} for m, pts in
            {"a": [(1000, 20.0), (10000, 30.0)], "b": [(1000, 50.0)]}.items() for n, v in pts]
    fs = curve_forecasts(rows, {"s": {"paper 60": 60.0, "low 10": 10.0}}, scale=100.0)
    assert [f["model"] for f in fs] == ["a"]  # one size: no line
    f = fs[0]
    assert f["per_decade"] == pytest.approx(10.0) and f["reach"]["paper 60"] == pytest.approx(1e7)
    assert f["reach"]["low 10"] == 10000
    text = forecast_table(fs)
    assert "| a | 1,000, 10,000 | +10.00 | ~1.0e+07 | reached |" in text


def test_reference_depends_on_recipe():
    assert reference_accuracy({"dataset": "mnist", "recipe": "dws"}) == PEER_ACCURACY_DWS["mnist"]
    assert reference_accuracy({"dataset": "mnist", "recipe": "nfn"}) == PAPER_ACCURACY["mnist"]
    assert reference_accuracy({"dataset": "digits"}) == {}
