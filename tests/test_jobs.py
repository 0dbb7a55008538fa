"""The job mechanics of :mod:`mnfn.jobs`: one shard parser, the output-folder lock (two writers:
one refuses, naming the other's pid; a killed writer's lock is taken over), and the refusal to
write over a folder that holds something else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mnfn.cli import main
from mnfn.data.inr import FitConfig, make_inr_dataset
from mnfn.io import STOP_ENV
from mnfn.jobs import LOCK_NAME, FolderLockedError, output_lock, parse_shard

SRC = Path(__file__).resolve().parents[1] / "src"


def test_one_shard_parser():
    assert parse_shard("2/4") == (2, 4) and parse_shard((0, 1)) == (0, 1) and parse_shard(None) == (0, 1)
    for bad in ("4/4", "1/0", "a/b", "-1/3"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
    import subprocess as sp

    out = sp.run(["grep", "-rc", "def .*parse_shard", str(SRC)], capture_output=True, text=True).stdout
    assert sum(int(line.rsplit(":", 1)[1]) for line in out.splitlines()) == 1


def test_lock_is_exclusive_reentrant_and_leaves_nothing(tmp_path):
    with output_lock(tmp_path / "o", "test") as d:
        assert (d / LOCK_NAME).read_text() == str(os.getpid())
        with output_lock(tmp_path / "o"):  # the same process may nest
            pass
        child = subprocess.run([sys.executable, "-c", (
            "import sys; from mnfn.jobs import output_lock\n"
            f"with output_lock({str(tmp_path / 'o')!r}, 'child'): pass")], capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": str(SRC)})
        assert child.returncode != 0 and "FolderLockedError" in child.stderr
        assert f"process {os.getpid()} is writing this folder" in child.stderr
    assert not (tmp_path / "o" / LOCK_NAME).exists()


def test_a_killed_writers_lock_is_taken_over(tmp_path):
    d = tmp_path / "o"
    p = subprocess.Popen([sys.executable, "-c", (
        "import os, time; from mnfn.jobs import output_lock\n"
        f"with output_lock({str(d)!r}):\n    print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert p.stdout.readline().strip() == "locked"
    with pytest.raises(FolderLockedError, match=str(p.pid)):
        with output_lock(d):
            pass
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert (d / LOCK_NAME).exists()  # left behind by the kill, but no longer held
    with output_lock(d):
        pass


INR = ["inr", "make", "--dataset", "digits", "--num", "12", "--split", "both", "--batch", "4", "--recipe", "fast",
       "--max-steps", "20", "--seed", "3", "--no-progress"]


def test_two_writers_into_one_folder(tmp_path, capsys):
    """A second `inr make` into a folder a first one is writing refuses (naming its pid); the first,
    killed and rerun, ends with exactly a single run's set."""
    out = tmp_path / "set"
    log = tmp_path / "first.log"
    with open(log, "wb") as err:
        first = subprocess.Popen([sys.executable, "-m", "mnfn", *INR, "--out", str(out)], stdout=subprocess.DEVNULL,
                                 stderr=err, start_new_session=True,
                                 env={**os.environ, "PYTHONPATH": str(SRC), STOP_ENV: "*-0*.npz:2"})
    t0 = time.time()
    while b"stopped before renaming" not in log.read_bytes() and first.poll() is None and time.time() - t0 < 300:
        time.sleep(0.02)
    assert b"stopped before renaming" in log.read_bytes(), log.read_text()[-2000:]
    try:
        assert main([*INR, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"process {first.pid} is writing this folder" in err and err.startswith("mnfn inr: error:")
        assert main([*INR, "--seed", "4", "--out", str(out)]) == 2  # another seed: refused the same way
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert main([*INR, "--out", str(out)]) == 0  # resumes
    assert main([*INR, "--out", str(tmp_path / "single")]) == 0
    a, b = sorted((out / "chunks").glob("*.npz")), sorted((tmp_path / "single" / "chunks").glob("*.npz"))
    assert [p.name for p in a] == [p.name for p in b]
    for x, y in zip(a, b):
        with np.load(x) as zx, np.load(y) as zy:
            assert all(np.array_equal(zx[k], zy[k]) for k in zy.files)
    assert not (out / LOCK_NAME).exists()
    capsys.readouterr()
    assert main([*INR, "--seed", "4", "--out", str(out)]) == 2  # a finished set with other settings: refused
    assert "different settings" in capsys.readouterr().err


def test_writers_refuse_to_replace_what_they_did_not_make(tmp_path, capsys):
    foreign = tmp_path / "public-zoo"
    foreign.mkdir()
    (foreign / "weights.npy").write_bytes(b"not ours")
    zoo = ["zoo", "make", "--dataset", "digits", "--num-nets", "2", "--epochs", "1", "--train-images", "64",
           "--test-images", "64", "--no-progress"]
    assert main([*zoo, "--out", str(foreign)]) == 2
    assert "holds something other than a zoo made by `mnfn zoo make`" in capsys.readouterr().err
    assert (foreign / "weights.npy").read_bytes() == b"not ours"
    assert main([*zoo, "--out", str(tmp_path / "z")]) == 0
    capsys.readouterr()
    assert main(["zoo", "merge", str(tmp_path / "z"), "--out", str(foreign)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["zoo", "merge", str(tmp_path / "z"), "--out", str(foreign), "--overwrite"]) == 0
    assert main(["zoo", "merge", str(tmp_path / "z"), "--out", str(foreign)]) == 0  # a rerun of the same merge

    make_inr_dataset(tmp_path / "inr", "digits", num=4, fit=FitConfig(max_steps=1), batch_size=4, progress=False)
    nfn = tmp_path / "nfn-set"
    (nfn / "randinit_smaller_0s").mkdir(parents=True)
    (nfn / "randinit_smaller_0s" / "net0.pth").write_bytes(b"theirs")
    capsys.readouterr()
    assert main(["inr", "export-nfn", str(tmp_path / "inr"), "--out", str(nfn), "--no-progress"]) == 2
    assert "holds something other than an export" in capsys.readouterr().err
    assert (nfn / "randinit_smaller_0s" / "net0.pth").read_bytes() == b"theirs"
    assert main(["inr", "export-nfn", str(tmp_path / "inr"), "--out", str(tmp_path / "mine"), "--no-progress"]) == 0
    assert main(["inr", "export-nfn", str(tmp_path / "inr"), "--out", str(tmp_path / "mine"), "--no-progress"]) == 0


def test_settings_diff_is_the_one_rule():
    """Values compare as JSON (tuples = lists); volatile keys are ignored; keys= whitelists; fill
    completes a stored value's defaults, and a value fill cannot read is compared as stored."""
    from mnfn.jobs import settings_diff

    assert settings_diff({"a": (1, 2), "b": 3}, {"a": [1, 2], "b": 3}) == []
    assert settings_diff({"a": 1, "n": [1]}, {"a": 1, "n": [1, 2]}, volatile=("n",)) == []
    assert settings_diff({"a": 1, "x": 5}, {"a": 2, "x": 6}, keys=("a",)) == ["a"]
    assert settings_diff({"a": 1}, {"a": 1, "new": 0}) == ["new"]

    def fill(v):
        if not isinstance(v, dict):
            raise TypeError("not a recipe")
        return {"lr": 1e-3, **v}

    assert settings_diff({"r": {}}, {"r": {"lr": 1e-3}}, fill={"r": fill}) == []
    assert settings_diff({"r": {"lr": 2e-3}}, {"r": {"lr": 1e-3}}, fill={"r": fill}) == ["r"]
    assert settings_diff({"r": "garbage"}, {"r": {"lr": 1e-3}}, fill={"r": fill}) == ["r"]
    assert settings_diff(None, {"a": 1}) == ["(settings are not a mapping)"]


def test_process_map_runs_everything_and_raises_worker_errors():
    """The one worker pool: every item once (completion order), a worker's exception reaches the caller."""
    from mnfn.jobs import process_map

    assert sorted(process_map(abs, [-3, 1, -2, 5, -4], 2)) == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="invalid literal"):
        list(process_map(int, ["1", "2", "x", "4"], 2))
