"""Interrupted jobs (issue 11): ``mnfn zoo make``, ``mnfn inr make`` and ``mnfn train
predict-gen|classify-inr|edit-inr`` are SIGKILLed (whole process group) at chosen points of progress
(the run stops itself before its N-th rename onto a chosen file, :data:`mnfn.io.STOP_ENV`: mid-run and
during the final write) and rerun: no file is ever half-written under its final name, and the result
is the uninterrupted run's, byte for byte (zoo, INR chunks) or value for value (``metrics.json``)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
import torch

import fault_utils as fu
from fault_utils import pg_argv as _pg_argv
from mnfn.data import inr
from mnfn.io import STOP_ENV, atomic_open, load_torch, save_npz, save_torch

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread per test (tests/conftest.py)


@pytest.fixture(scope="module")
def zoo(request, tmp_path_factory) -> Path:
    """16 digits CNNs (ReLU and tanh), checkpoints at steps 0, 1, 2; cached across runs. Never modified:
    every fault works on a copy."""
    return fu.cached_zoo(request, tmp_path_factory)


# The fork server (imports torch + mnfn once, so each killed command starts in milliseconds) runs the
# commands the kill tests interrupt; it starts with the module's first test.
_SERVER: fu.ForkServer | None = None


def _server() -> fu.ForkServer:
    global _SERVER
    if _SERVER is None:
        _SERVER = fu.ForkServer()
    return _SERVER


@pytest.fixture(scope="module", autouse=True)
def _fork_server():
    _server()
    yield
    global _SERVER
    if _SERVER is not None:
        _SERVER.close()
        _SERVER = None

# =================================================================================================
# interrupted jobs: SIGKILL at chosen points of progress, rerun, same result, nothing half-written
# =================================================================================================

STOPPED = "mnfn: stopped before renaming"


def _kill_rounds(argv: list[str], out: Path, tmp: Path, stops: Sequence[tuple[str, int]]) -> list[str]:
    """First an uninterrupted reference run of ``argv`` into ``tmp/ref``; then, for each stop
    ``(pattern, n)``, a run into ``out`` that stops itself right before its ``n``-th rename onto a file
    matching ``pattern`` (:data:`mnfn.io.STOP_ENV`) and is SIGKILLed there (whole process group), so
    each kill lands at a chosen point of progress whatever the machine's speed. After every kill each
    file under ``out`` with a final name must load. Returns where each kill landed."""
    server = _server()
    ref_out = tmp / "ref"
    p = server.run([str(ref_out) if a == str(out) else a for a in argv], tmp / "ref.log")
    assert p.wait(300) == 0, (tmp / "ref.log").read_text()[-2000:]
    states = []
    for k, (pattern, n) in enumerate(stops):
        log = tmp / f"kill{k}.log"
        p = server.run(argv, log, env={STOP_ENV: f"{pattern}:{n}"})
        def said() -> str:  # the child creates its log after the fork
            return log.read_text(errors="replace") if log.exists() else ""

        reached = fu.wait_for(lambda: STOPPED in said(), 300, p)
        where = next((ln for ln in said().splitlines() if STOPPED in ln), "")
        assert reached, (f"kill {k}: the run never reached rename #{n} of {pattern!r} (exit {p.poll()}); "
                         f"earlier kills: {states}; log: {said()[-1500:]}")
        p.kill()
        temps = fu.check_tree_whole(out)
        assert all(fu.is_temp(t) for t in temps)
        states.append(f"kill {k}: {where.replace(str(tmp), '<tmp>')}")
    return states


def _rerun(argv: list[str], tmp: Path) -> None:
    p = _server().run(argv, tmp / "rerun.log")
    assert p.wait(300) == 0, (tmp / "rerun.log").read_text()[-2000:]


ZOO_MAKE = ["zoo", "make", "--dataset", "digits", "--num-nets", "8", "--seed", "5", "--epochs", "2",
            "--train-images", "256", "--test-images", "200", "--threads", "1", "--no-progress"]
ZOO_FILES = ("weights.npy", "metrics.csv.gz", "layout.csv", "zoo.json")


def test_zoo_make_killed_and_rerun_gives_the_same_zoo(tmp_path):
    out = tmp_path / "zoo"
    argv = [*ZOO_MAKE, "--out", str(out)]
    # two kills mid-run (2, then 3 nets trained), one during the final write (weights.npy renamed,
    # metrics.csv.gz not yet)
    states = _kill_rounds(argv, out, tmp_path, [("net*.npz", 3), ("net*.npz", 2), ("metrics.csv.gz", 1)])
    assert (out / "weights.npy").is_file() and not (out / "zoo.json").exists(), states
    _rerun(argv, tmp_path)
    ref = tmp_path / "ref"
    for f in ZOO_FILES:
        assert (out / f).read_bytes() == (ref / f).read_bytes(), f"{f} differs after kills: {states}"
    assert not (out / ".parts").exists()
    assert not [p for p in out.rglob("*") if p.is_file() and not fu.is_temp(p) and p.name not in ZOO_FILES]
    print(*states, sep="\n")


INR_MAKE = ["inr", "make", "--dataset", "digits", "--num", "12", "--split", "both", "--batch", "4", "--max-steps", "60",
            "--seed", "2", "--no-progress"]


def _chunk_bytes(root: Path) -> dict[str, dict[str, bytes]]:
    out = {}
    for p in sorted((root / "chunks").glob("*.npz")):
        with np.load(p, allow_pickle=False) as z:
            out[p.name] = {k: z[k].tobytes() for k in z.files}
    return out


def test_inr_make_killed_and_rerun_gives_the_same_set(tmp_path):
    out = tmp_path / "inr"
    argv = [*INR_MAKE, "--out", str(out)]
    # two kills mid-run (1, then 2 of 6 chunks written), one before the final index.csv
    states = _kill_rounds(argv, out, tmp_path, [("*-0*.npz", 2), ("*-0*.npz", 2), ("index.csv", 1)])
    assert len(list((out / "chunks").glob("*.npz"))) == 6 and not (out / "index.csv").exists(), states
    _rerun(argv, tmp_path)
    ref = tmp_path / "ref"
    assert _chunk_bytes(out) == _chunk_bytes(ref), states
    assert len(_chunk_bytes(out)) == 6
    assert (out / "index.csv").read_text() == (ref / "index.csv").read_text()
    assert json.loads((out / "meta.json").read_text()) == json.loads((ref / "meta.json").read_text())
    print(*states, sep="\n")


def _drop_seconds(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_seconds(v) for k, v in obj.items() if not k.startswith("seconds")}
    return obj


def test_predict_gen_killed_and_rerun_gives_the_same_metrics(zoo, tmp_path):
    out = tmp_path / "run"
    argv = _pg_argv(zoo, out, "--set", "epochs=3", "--seed", "2")
    # after epoch 1; again before epoch 2's last.pt (best.pt may already be newer); before metrics.json
    states = _kill_rounds(argv, out, tmp_path, [("last.pt", 2), ("last.pt", 1), ("metrics.json", 1)])
    assert (out / "last.pt").is_file() and not (out / "metrics.json").exists(), states
    _rerun(argv, tmp_path)
    ref = tmp_path / "ref"
    got, want = json.loads((out / "metrics.json").read_text()), json.loads((ref / "metrics.json").read_text())
    assert _drop_seconds(got) == _drop_seconds(want), states
    assert got["completed"] and got["epochs_done"] == 3

    def log(d: Path) -> list[dict]:
        with open(d / "log.csv") as fh:
            return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(fh)]

    assert log(out) == log(ref)
    for name in ("best.pt", "last.pt"):
        a, b = load_torch(out / name), load_torch(ref / name)
        assert a["epoch"] == b["epoch"]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
    print(*states, sep="\n")


INR_TRAIN_CFG = ("epochs: 3\nbatch_size: 8\nval_size: 4\nmodels:\n  monomial-inr: {hidden: [4, 4], head: [8]}\n"
                 "  monomial-editor: {hidden: [4, 4]}\n")


@pytest.fixture(scope="module")
def tiny_inrs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inrs") / "digits"
    inr.make_inr_dataset(root, "digits", num=16, splits=("train", "test"), fit=inr.FitConfig(max_steps=5),
                         batch_size=16, progress=False)
    return root


def _check_train_kills(argv: list[str], out: Path, tmp: Path, extra_files: Sequence[str] = ()) -> None:
    states = _kill_rounds(argv, out, tmp, [("last.pt", 2), ("last.pt", 1), ("metrics.json", 1)])
    assert (out / "last.pt").is_file() and not (out / "metrics.json").exists(), states
    _rerun(argv, tmp)
    ref = tmp / "ref"
    got, want = json.loads((out / "metrics.json").read_text()), json.loads((ref / "metrics.json").read_text())
    for d in (got, want):
        d.pop("config", None)
        d["inrs"] = None
    assert _drop_seconds(got) == _drop_seconds(want), states
    assert got["completed"] and got["epochs_done"] == 3, states
    a, b = load_torch(out / "best.pt"), load_torch(ref / "best.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"]), states
    for f in extra_files:
        x, y = np.load(out / f, allow_pickle=False), np.load(ref / f, allow_pickle=False)
        assert all(np.array_equal(x[k], y[k]) for k in y.files), (f, states)
    print(*states, sep="\n")


def test_classify_inr_killed_and_rerun_gives_the_same_metrics(tiny_inrs, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(INR_TRAIN_CFG)
    out = tmp_path / "run"
    argv = ["train", "classify-inr", "--inrs", str(tiny_inrs), "--model", "monomial-inr", "--config", str(cfg),
            "--seed", "4", "--out", str(out), "--no-progress", "--threads", "1"]
    _check_train_kills(argv, out, tmp_path)


def test_edit_inr_killed_and_rerun_gives_the_same_metrics(tiny_inrs, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(INR_TRAIN_CFG + "samples: 2\n")
    out = tmp_path / "run"
    argv = ["train", "edit-inr", "--inrs", str(tiny_inrs), "--edit", "dilate", "--model", "monomial-editor",
            "--config", str(cfg), "--seed", "4", "--out", str(out), "--no-progress", "--threads", "1"]
    _check_train_kills(argv, out, tmp_path, extra_files=("samples.npz",))


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    """What makes a kill harmless: writes go to a temporary file renamed over the target at the end."""

    class Unsavable:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("killed mid-write")

    npz, pt, log = tmp_path / "x.npz", tmp_path / "x.pt", tmp_path / "log.csv"
    save_npz(npz, a=np.ones(3))
    save_torch(pt, {"v": torch.ones(3)})
    before = npz.read_bytes(), pt.read_bytes()
    with pytest.raises(RuntimeError):
        save_npz(npz, a=np.zeros(1000), b=Unsavable())  # the first array is already written
    with pytest.raises(Exception):
        save_torch(pt, {"v": torch.zeros(1000), "f": lambda: 0})  # a lambda cannot be pickled
    with pytest.raises(RuntimeError):
        with atomic_open(log) as fh:
            fh.write("half a line")
            raise RuntimeError("killed")
    assert (npz.read_bytes(), pt.read_bytes()) == before
    assert not log.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz", "x.pt"]

