"""`mnfn demo` end to end at toy size (the full demo runs with `make demo`)."""

import json

from mnfn.cli import main


def test_demo_tiny(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--num-nets", "16", "--epochs", "1", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "Kendall tau of predicted vs true test accuracy" in text
    assert "figure" in text
    report = json.loads((out / "predict-gen" / "results.json").read_text())
    assert set(report["summary"]) == {"monomial", "hnp", "statnn"}
    assert (out / "predict-gen" / "tau_vs_scale.png").stat().st_size > 1000
    # Monomial-NFN's predictions do not move under rescaling: the same error before and after
    # (MAE rather than tau: after one epoch of a toy run the predictions may all tie, leaving tau undefined).
    cell = report["summary"]["monomial"]["none"]
    assert abs(cell["original"]["mae"][0] - cell["scale:1,1000"]["mae"][0]) < 1e-4
