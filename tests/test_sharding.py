"""Generation split over torchrun ranks: 2 processes + merge == 1 process, byte for byte."""

import os
import subprocess
import sys

import numpy as np

from mnfn.cli import main
from mnfn.jobs import torchrun_shard

ZOO_ARGS = ["zoo", "make", "--dataset", "digits", "--num-nets", "4", "--activations", "relu", "--seed", "3",
            "--epochs", "1", "--no-progress"]


def _torchrun(args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29613",
           "-m", "mnfn", *args]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def test_no_torchrun_means_no_shard(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert torchrun_shard() is None
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert torchrun_shard() == (2, 4)


def test_zoo_make_under_torchrun_equals_single_process(tmp_path):
    assert main([*ZOO_ARGS, "--out", str(tmp_path / "single")]) == 0
    _torchrun([*ZOO_ARGS, "--out", str(tmp_path / "multi")], tmp_path)
    a = np.load(tmp_path / "single" / "weights.npy", allow_pickle=False)
    b = np.load(tmp_path / "multi" / "weights.npy", allow_pickle=False)
    assert a.shape == b.shape and np.array_equal(a, b)
    assert (tmp_path / "single" / "metrics.csv.gz").read_bytes() == (tmp_path / "multi" / "metrics.csv.gz").read_bytes()
