"""`mnfn curves`: per-epoch curves of finished and running runs, as a table, JSON and PNG; bad logs
get one clear error naming the file."""

from __future__ import annotations

import json

import pytest

from mnfn.cli import main
from mnfn.io import DataFormatError, write_json
from mnfn.training.history import MAX_LOG_BYTES, find_runs, format_table, read_history, run_colours, summarize


def _log(folder, rows, metrics=None):
    folder.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0])
    text = ",".join(cols) + "\n" + "".join(",".join(repr(float(r[c])) for c in cols) + "\n" for r in rows)
    (folder / "log.csv").write_text(text)
    if metrics is not None:
        write_json(folder / "metrics.json", metrics)


def _rows(n, acc0=0.2, step=0.05):
    return [dict(epoch=e, train_loss=2.0 - 0.1 * e, val_loss=2.1 - 0.1 * e, val_accuracy=acc0 + step * e, seconds=60.0 + e)
            for e in range(1, n + 1)]


@pytest.fixture
def two_runs(tmp_path):
    exp = tmp_path / "exp"
    # finished: metrics.json selects epoch 3 (not the last), and has test metrics
    _log(exp / "n100" / "np" / "seed0", _rows(4), dict(epochs=4, best_epoch=3, test_accuracy=0.41, test_loss=1.5))
    # still running: no metrics.json; best by validation accuracy, which dips at the end
    rows = _rows(3)
    rows[-1]["val_accuracy"] = 0.1
    _log(exp / "n100" / "hybrid" / "seed0", rows)
    return exp


def test_summary_selects_the_recorded_or_best_epoch(two_runs):
    runs = find_runs([two_runs])
    assert [r.label for r in runs] == ["hybrid/seed0", "np/seed0"]
    s = {r["run"]: r for r in summarize(runs)}
    assert s["np/seed0"]["best_epoch"] == 3 and s["np/seed0"]["best_value"] == pytest.approx(0.35)
    assert s["np/seed0"]["epochs_done"] == 4 and s["np/seed0"]["epochs"] == 4
    assert s["np/seed0"]["test_accuracy"] == pytest.approx(0.41)
    assert s["hybrid/seed0"]["best_epoch"] == 2 and s["hybrid/seed0"]["best_value"] == pytest.approx(0.3)
    assert s["hybrid/seed0"]["seconds_per_epoch"] == pytest.approx(62.0)
    assert s["hybrid/seed0"]["last_train_loss"] == pytest.approx(1.7)
    table = format_table(summarize(runs))
    assert "| np/seed0 | 4/4 | 3 | 0.35 (val_accuracy) |" in table and "| hybrid/seed0 | 3 | 2 |" in table


def test_cli_writes_table_png_and_json(two_runs, tmp_path, capsys):
    png, js = tmp_path / "out" / "c.png", tmp_path / "out" / "c.json"
    assert main(["curves", str(two_runs), "--png", str(png), "--json", str(js), "--x", "hours"]) == 0
    out = capsys.readouterr().out
    assert "np/seed0" in out and f"wrote {png}" in out and f"wrote {js}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert len(data["curves"]["np/seed0"]) == 4 and data["summary"][1]["best_epoch"] == 3
    # one run folder and one log.csv name the same run
    assert main(["curves", str(two_runs / "n100" / "np" / "seed0" / "log.csv"), "--metrics", "val_accuracy",
                 "--png", str(png)]) == 0


@pytest.mark.parametrize("content, needle", [
    ("epoch,train_loss\n1,2.0\n2,abc\n", "line 3: not a number"),
    ("epoch,train_loss\n1,2.0,7\n", "line 2 has"),
    ("epoch,train_loss\n1\n", "line 2 has"),
    ("", "not a training log"),
    ("loss\n1.0\n", "not a training log"),
    (b"\xff\xfe\x00garbage\x00", "not a training log"),
])
def test_bad_logs_name_the_file(tmp_path, content, needle):
    p = tmp_path / "run" / "log.csv"
    p.parent.mkdir()
    (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
    with pytest.raises(DataFormatError, match=needle) as e:
        read_history(p)
    assert str(p) in str(e.value)


def test_oversized_log_is_refused_without_reading(tmp_path):
    p = tmp_path / "log.csv"
    with open(p, "wb") as fh:
        fh.truncate(MAX_LOG_BYTES + 1)  # sparse: no memory, no time
    with pytest.raises(DataFormatError, match="more than"):
        read_history(p)


def test_cli_errors_are_one_line(tmp_path, capsys, two_runs):
    (tmp_path / "empty").mkdir()
    assert main(["curves", str(tmp_path / "empty")]) == 2
    assert "no log.csv at or below it" in capsys.readouterr().err
    assert main(["curves", str(tmp_path / "missing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["curves", str(two_runs), "--png", str(tmp_path / "x.png"), "--metrics", "val_mse"]) == 2
    err = capsys.readouterr().err
    assert "no run logs a column 'val_mse'" in err and "val_accuracy" in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("n", [1, 10, 11, 20, 33])
def test_every_run_gets_its_own_colour(n: int) -> None:
    """The default cycle repeats after ten runs; a figure of eleven or more must not reuse colours."""
    import matplotlib.colors as mcolors

    colours = [mcolors.to_hex(c, keep_alpha=True) for c in run_colours(n)]
    assert len(colours) == n
    assert len(set(colours)) == n
