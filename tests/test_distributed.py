"""Data-parallel training under torchrun: 2 gloo processes on CPU reach the metrics of 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnfn import distributed as D
from mnfn.cli import main

from test_predict_gen import SMALL, tiny_zoo  # the same cached tiny zoo


@pytest.fixture(scope="module")
def zoo(request):
    return tiny_zoo(Path(request.config.cache.mkdir("mnfn-tiny-zoo")))


def test_shard_indices_cover_every_item_once_per_rank_padding():
    order = torch.arange(7)
    parts = [D.shard_indices(order, r, 2) for r in range(2)]
    assert [len(p) for p in parts] == [4, 4]
    assert sorted(torch.cat(parts).tolist()) == [0, 0, 1, 2, 3, 4, 5, 6]  # one wrapped item pads
    assert torch.equal(D.shard_indices(order, 0, 1), order)
    assert not D.is_distributed() and D.is_main() and D.world_size() == 1


@pytest.mark.slow
def test_two_process_gloo_training_matches_one_process(zoo, tmp_path):
    args = ["train", "predict-gen", "--zoo", str(zoo), "--model", "monomial", "--activation", "relu",
            "--no-progress", "--seed", "2", *SMALL, "--set", "epochs=3", "--device", "cpu"]
    torch.set_num_threads(1)
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mnfn", *args, "--out", str(tmp_path / "two")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Warning" not in proc.stderr, proc.stderr[-3000:]  # e.g. DDP's "Grad strides do not match"
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["num_train"] == one["num_train"] and two["num_test"] == one["num_test"]
    # the global batch is the same, so the averaged gradients match up to float summation order
    for k in ("val_loss", "val_mae", "val_tau"):
        assert two["best_val"][k] == pytest.approx(one["best_val"][k], abs=2e-3), k
    for cond in one["test"]:
        assert two["test"][cond]["mae"] == pytest.approx(one["test"][cond]["mae"], abs=2e-3)
        assert two["test"][cond]["tau"] == pytest.approx(one["test"][cond]["tau"], abs=0.05)
    # rank 0 alone wrote the files: one table printed, one log with one row per epoch
    assert proc.stdout.count("test condition") == 1
    assert proc.stdout.count("wrote ") == 1 and "terminate called" not in proc.stderr
    log = (tmp_path / "two" / "log.csv").read_text().strip().splitlines()
    assert len(log) == 1 + 3
    ck = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    assert ck["world_size"] == 2 and ck["torch_rng_per_rank"].shape[0] == 2
