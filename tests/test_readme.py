"""The README's walk-through runs as written: each command in order, in a fresh folder, exits 0
and prints no Python warnings."""

from __future__ import annotations

import re
import shlex
import warnings
from pathlib import Path

from mnfn.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def walkthrough_commands() -> list[list[str]]:
    text = README.read_text()
    m = re.search(r"<!-- walkthrough -->\s*```bash\n(.*?)```", text, re.S)
    assert m, "README.md has no <!-- walkthrough --> bash block"
    cmds = [shlex.split(ln) for ln in m.group(1).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert cmds and all(c[0] == "mnfn" for c in cmds), cmds
    return [c[1:] for c in cmds]


def test_readme_walkthrough_runs_in_order(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.chdir(tmp_path)
    cmds = walkthrough_commands()
    assert len(cmds) >= 6
    for argv in cmds:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rc = main(argv)
        out, err = capsys.readouterr()
        assert rc == 0, f"`mnfn {shlex.join(argv)}` exited {rc}: {err[-2000:]}"
        # a normal run prints no Python warnings
        assert not caught, f"`mnfn {shlex.join(argv)}` warned: {[str(w.message)[:200] for w in caught]}"
    # each command that writes says where
    assert (tmp_path / "runs/walk/curve/learning_curve.png").is_file()
    assert (tmp_path / "runs/walk/curve/epochs.png").is_file()
    assert (tmp_path / "runs/walk/predict-gen/metrics.json").is_file()
