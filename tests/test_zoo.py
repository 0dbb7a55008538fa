"""CNN zoos: Small CNN Zoo layout, generation (seeded, resumable, sharded), reading, splits, augmentation."""

from __future__ import annotations

import dataclasses
import gzip
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mnfn.cli import main as cli_main
from mnfn.data import zoo as Z
from mnfn.data.images import load_images
from mnfn.data.zoo import Augment, Recipe, ZooDataset, make_zoo, merge_zoos
from mnfn.groups import ScaleDist
from mnfn.io import STOP_ENV, DataFormatError
from mnfn.weightspace import WeightSpaceError, zoo_cnn_spec
from mnfn.networks import build_module, features_from_modules, functional_forward

# A tiny, fast recipe: digits' defaults with a 512-image pool, 2 epochs, the first 200 test images
# (exactly what `mnfn zoo make --epochs 2 --train-images 512 --test-images 200` builds).
TINY = dataclasses.replace(Z.default_recipe("digits"), epochs=2, train_images=512, test_images=200)
NUM = 6
FILES = ("weights.npy", "metrics.csv.gz", "layout.csv", "zoo.json")


def _same_files(a: Path, b: Path) -> None:
    for f in FILES:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f"{f} differs between {a} and {b}"


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zoo") / "single"
    res = make_zoo(out, "digits", NUM, seed=3, recipe=TINY, progress=False)
    assert res.complete and res.done == NUM and not (out / ".parts").exists()
    return out


# --- layout and order ----------------------------------------------------------------------------

def test_layout_matches_public_zoo():
    lay = Z.zoo_layout(zoo_cnn_spec("relu"))
    assert [e.varname for e in lay] == [
        "sequential/conv2d/bias:0", "sequential/conv2d/kernel:0",
        "sequential/conv2d_1/bias:0", "sequential/conv2d_1/kernel:0",
        "sequential/conv2d_2/bias:0", "sequential/conv2d_2/kernel:0",
        "sequential/dense/bias:0", "sequential/dense/kernel:0"]
    assert lay[1].shape == (3, 3, 1, 16) and lay[7].shape == (16, 10)
    assert lay[-1].end == 4970


def test_tf_torch_kernel_order():
    torch.manual_seed(1)
    net = build_module(zoo_cnn_spec("relu"))
    feats = features_from_modules(net)
    row = Z.features_to_rows(feats)[0]
    lay = {e.varname: e for e in Z.zoo_layout(feats.spec)}
    e = lay["sequential/conv2d_1/kernel:0"]
    tf = row[e.start:e.end].reshape(e.shape)  # (kh, kw, in, out)
    w = net[2].weight.detach().numpy()  # (out, in, kh, kw)
    for (o, i, a, b) in [(0, 0, 0, 0), (3, 5, 1, 2), (15, 7, 2, 0)]:
        assert tf[a, b, i, o] == w[o, i, a, b]
    e = lay["sequential/dense/kernel:0"]
    np.testing.assert_array_equal(row[e.start:e.end].reshape(16, 10), net[-1].weight.detach().numpy().T)
    back = Z.rows_to_features(row[None], Z.zoo_layout(feats.spec), feats.spec)
    for a, b in zip(back.weights + back.biases, feats.weights + feats.biases):
        assert torch.equal(a, b)


def test_layout_order_agnostic_reader(tmp_path):
    """Layouts with kernel-before-bias order (and an index column) read the same."""
    lay = Z.zoo_layout(zoo_cnn_spec("relu"))
    swapped = []
    for j in range(0, len(lay), 2):
        swapped += [lay[j + 1], lay[j]]
    p = tmp_path / "layout.csv"
    p.write_text(",varname,start_idx,end_idx,shape\n" + "".join(
        f"{i},{e.varname},{e.start},{e.end},\"{e.shape}\"\n" for i, e in enumerate(swapped)))
    back = Z.read_layout(p)
    assert back == swapped
    rows = np.random.default_rng(0).standard_normal((3, 4970)).astype(np.float32)
    spec = Z.spec_from_layout(back, "relu")
    f1 = Z.rows_to_features(rows, back, spec)
    f2 = Z.rows_to_features(rows, lay, spec)
    assert all(torch.equal(a, b) for a, b in zip(f1.weights + f1.biases, f2.weights + f2.biases))
    np.testing.assert_array_equal(Z.features_to_rows(f1, lay), rows)


# --- generation ----------------------------------------------------------------------------------

def test_write_read_roundtrip_exact(zoo_dir, tmp_path):
    z = Z.read_zoo(zoo_dir)
    assert z.weights.dtype == np.float32 and z.weights.shape == (NUM * (TINY.epochs + 1), 4970)
    assert set(Z.METRIC_COLUMNS) <= set(z.metrics)
    rows = [{c: Z._py(z.metrics[c][r]) for c in Z.METRIC_COLUMNS} for r in range(len(z))]
    Z.write_zoo(tmp_path, np.asarray(z.weights), rows, z.layout, z.meta)
    _same_files(zoo_dir, tmp_path)
    z2 = Z.read_zoo(tmp_path)
    np.testing.assert_array_equal(z2.weights, z.weights)
    for c in z.metrics:
        np.testing.assert_array_equal(z2.metrics[c], z.metrics[c])
    assert np.isfinite(z.weights).all()
    with gzip.open(zoo_dir / "metrics.csv.gz", "rt") as fh:
        assert fh.readline().strip().split(",") == list(Z.METRIC_COLUMNS)


def test_rebuilt_nets_reproduce_recorded_accuracy(zoo_dir):
    """Stored rows, read back in torch order, give the recorded test accuracy on the test images."""
    test = load_images("digits", "test", limit=TINY.test_images)
    x, y = torch.from_numpy(test.images), torch.from_numpy(test.labels)
    for act in ("relu", "tanh"):
        try:
            ds = ZooDataset(zoo_dir, activation=act, split="all")
        except DataFormatError:
            continue  # this tiny zoo drew no net with that activation
        out = functional_forward(ds.features, x)  # (B, N, 10)
        acc = (out.argmax(-1) == y).float().mean(1)
        # Same weights, same images; grouped vs. plain conv may flip a near-tie: allow one image.
        assert torch.allclose(acc, ds.targets, atol=1.01 / len(y)), (act, acc, ds.targets)
        assert ds.spec.layers[0].activation == act


def test_resume_after_interruption_is_identical(zoo_dir, tmp_path):
    out = tmp_path / "resumed"
    r1 = make_zoo(out, "digits", NUM, seed=3, recipe=TINY, progress=False, max_new_nets=2)
    assert not r1.complete and r1.done == 2 and r1.trained_now == 2
    assert len(list((out / ".parts").glob("net*.npz"))) == 2 and not (out / "weights.npy").exists()
    # A leftover temporary file of a killed write must not count as a finished net.
    (out / ".parts" / ".net000002.npz.abc.npz.tmp").write_bytes(b"garbage")
    r2 = make_zoo(out, "digits", NUM, seed=3, recipe=TINY, progress=False, max_new_nets=1)
    assert r2.done == 3 and r2.trained_now == 1
    r3 = make_zoo(out, "digits", NUM, seed=3, recipe=TINY, progress=False)
    assert r3.complete and r3.trained_now == 3
    assert not (out / ".parts").exists()
    _same_files(zoo_dir, out)
    # Rerunning a finished zoo is a no-op; other settings are refused.
    assert make_zoo(out, "digits", NUM, seed=3, recipe=TINY, progress=False).trained_now == 0
    with pytest.raises(ValueError, match="other settings"):
        make_zoo(out, "digits", NUM, seed=4, recipe=TINY, progress=False)


def test_resume_after_kill(zoo_dir, tmp_path):
    """SIGKILL a real `mnfn zoo make` (its whole process group) mid-run; rerunning in-process completes
    it to the same zoo, with no net lost or doubled."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "mnfn", "zoo", "make", "--dataset", "digits", "--num-nets", str(NUM), "--out",
           str(out), "--seed", "3", "--epochs", str(TINY.epochs), "--train-images", str(TINY.train_images),
           "--test-images", str(TINY.test_images), "--no-progress"]
    # The run stops itself right before renaming its 3rd net (mnfn.io.STOP_ENV): the kill lands after
    # exactly 2 nets, however fast the machine.
    log = tmp_path / "killed.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                                env={**os.environ, STOP_ENV: "net*.npz:3"})
    parts = out / ".parts"
    t0 = time.time()
    while time.time() - t0 < 300 and b"stopped before renaming" not in log.read_bytes() and proc.poll() is None:
        time.sleep(0.01)
    assert b"stopped before renaming #3" in log.read_bytes(), log.read_text()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI process (and any worker processes it started)
    proc.wait()
    n_done = len(list(parts.glob("net*.npz")))
    assert n_done == 2 and not (out / "zoo.json").exists()
    res = make_zoo(out, "digits", NUM, seed=3, recipe=TINY, progress=False)
    assert res.complete and res.trained_now == NUM - n_done
    _same_files(zoo_dir, out)


def test_worker_path_writes_the_same_nets(zoo_dir, tmp_path):
    """The code a `--workers N` process runs (initialiser + per-net task), here in-process to keep the
    suite fast, writes parts that assemble into the same zoo."""
    out = tmp_path / "w"
    make_zoo(out, "digits", NUM, seed=3, recipe=TINY, progress=False, max_new_nets=0)  # writes .parts/config.json
    # threads=1 as make_zoo uses: float reductions (and so the bits) depend on the thread count.
    from mnfn.data.zoo import make as zoo_make  # the module whose worker state this is

    job = zoo_make._Job(3, ("relu", "tanh"), TINY, "digits", str(out / ".parts"), None, 1)
    threads = torch.get_num_threads()
    zoo_make._worker_init(job)
    try:
        for i in (4, 1):
            assert zoo_make._worker_net(i)[0] == i
    finally:
        zoo_make._WORKER = None
        torch.set_num_threads(threads)
    res = make_zoo(out, "digits", NUM, seed=3, recipe=TINY, progress=False)
    assert res.complete and res.trained_now == NUM - 2
    _same_files(zoo_dir, out)


def test_shards_merge_equals_single_run(zoo_dir, tmp_path):
    dirs = []
    for k in range(3):
        d = tmp_path / f"shard{k}"
        res = make_zoo(d, "digits", NUM, seed=3, recipe=TINY, progress=False, shard=f"{k}/3")
        assert res.complete and res.total == 2
        dirs.append(d)
    merge_zoos([dirs[2], dirs[0], dirs[1]], tmp_path / "merged")
    _same_files(zoo_dir, tmp_path / "merged")
    with pytest.raises(ValueError, match="both"):
        merge_zoos([dirs[0], dirs[0]], tmp_path / "dup")


def test_seed_changes_zoo(zoo_dir, tmp_path):
    make_zoo(tmp_path / "s4", "digits", 1, seed=4, recipe=TINY, progress=False)
    a = Z.read_zoo(zoo_dir).weights[0]
    b = Z.read_zoo(tmp_path / "s4").weights[0]
    assert not np.array_equal(a, b)


# --- reading, filters, splits --------------------------------------------------------------------

def _nfn_split(n: int) -> dict[str, list[int]]:
    """NFN's _split_indices_iid, written out independently."""
    cut = int(0.5 * n)
    tv = list(range(cut))
    random.Random(0).shuffle(tv)
    vp = int(0.8 * len(tv))
    return {"test": list(range(cut, n)), "train": tv[:vp], "val": tv[vp:]}


def test_split_nets_matches_nfn():
    for n in (10, 37, 1000):
        ref = _nfn_split(n)
        for s in ("train", "val", "test"):
            assert Z.split_nets(n, s) == ref[s]


def test_splits_by_net_and_activation_filter(zoo_dir):
    z = Z.read_zoo(zoo_dir)
    seen: dict[str, str] = {}
    total = 0
    for split in ("train", "val", "test"):
        ds = ZooDataset(zoo_dir, split=split)
        total += len(ds)
        for name in ds.metrics["modeldir"].astype(str):
            assert seen.setdefault(name, split) == split  # a net's checkpoints never straddle splits
    assert total == len(z)
    acts = z.metrics["config.activation"].astype(str)
    for act in sorted(set(acts)):
        ds = ZooDataset(zoo_dir, activation=act, split="all")
        assert len(ds) == int((acts == act).sum())
        assert set(ds.metrics["config.activation"].astype(str)) == {act}
        assert ds.features.batch_size == len(ds)
    final = ZooDataset(zoo_dir, split="all", steps="final")
    assert len(final) == NUM and set(final.metrics["step"].tolist()) == {TINY.epochs}
    assert len(ZooDataset(zoo_dir, split="all", steps=[0, 1])) == 2 * NUM
    if len(set(acts)) > 1:
        mixed = ZooDataset(zoo_dir, split="all")
        with pytest.raises(WeightSpaceError, match="mixes activations"):
            mixed.features
    with pytest.raises(DataFormatError, match="no checkpoints left"):
        ZooDataset(zoo_dir, activation="sin", split="all")


def test_split_file_protocol(zoo_dir, tmp_path):
    """NFN split file: permute rows, keep the final step, test = second half, train/val = 80/20 of the first."""
    z = Z.read_zoo(zoo_dir)
    perm = np.random.default_rng(0).permutation(len(z))
    f = tmp_path / "split.csv"
    f.write_text("".join(f"{i}\n" for i in perm))
    step = z.metrics["step"]
    final_rows = [r for r in perm if step[r] == step.max()]
    ref = _nfn_split(len(final_rows))
    for split in ("train", "val", "test"):
        ds = ZooDataset(zoo_dir, split=split, steps="final", split_file=f)
        assert ds.rows.tolist() == [final_rows[i] for i in ref[split]]
    f.write_text("0\n0\n")
    with pytest.raises(DataFormatError, match="repeated"):
        ZooDataset(zoo_dir, split_file=f)


def test_batches_and_augmentation(zoo_dir):
    act = Z.read_zoo(zoo_dir).metrics["config.activation"].astype(str)[0]
    ds = ZooDataset(zoo_dir, activation=act, split="all", augment=Augment(ScaleDist("uniform", 1, 10), seed=1))
    plain = ZooDataset(zoo_dir, activation=act, split="all")
    fb, tb = next(ds.batches(4, shuffle=False))
    fp, tp = next(plain.batches(4, shuffle=False))
    assert torch.equal(tb, tp) and fb.batch_size == min(4, len(ds))
    assert not torch.equal(fb.weights[1], fp.weights[1])  # moved by a group element...
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y1 = functional_forward(fb.to(torch.float64), x.double())
    y2 = functional_forward(fp.to(torch.float64), x.double())
    torch.testing.assert_close(y1, y2, rtol=1e-4, atol=1e-4)  # ...that keeps each net's function
    # Seeded: a fresh dataset with the same augment seed gives the same batches.
    again = ZooDataset(zoo_dir, activation=act, split="all", augment=Augment(ScaleDist("uniform", 1, 10), seed=1))
    fa, _ = next(again.batches(4, shuffle=False))
    assert torch.equal(fa.weights[0], fb.weights[0])
    n = sum(t.numel() for _, t in plain.batches(3, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert n == len(plain)
    mat = plain.with_transformed_copies(1, Augment(ScaleDist("uniform", 1, 100), seed=2))
    assert len(mat) == 2 * len(plain) and torch.equal(mat.targets[: len(plain)], plain.targets)
    assert torch.equal(mat.features.weights[0][: len(plain)], plain.features.weights[0])
    f, t = ZooDataset.collate([plain[0], plain[1]])
    assert f.batch_size == 2 and t.shape == (2,)


# --- clear errors --------------------------------------------------------------------------------

def _copy(zoo_dir: Path, tmp_path: Path) -> Path:
    d = tmp_path / "copy"
    shutil.copytree(zoo_dir, d)
    return d


def test_truncated_weights(zoo_dir, tmp_path):
    d = _copy(zoo_dir, tmp_path)
    p = d / "weights.npy"
    p.write_bytes(p.read_bytes()[:-1000])
    with pytest.raises(DataFormatError, match=r"weights\.npy: truncated"):
        Z.read_zoo(d)
    p.write_bytes(b"not numpy")
    with pytest.raises(DataFormatError, match=r"weights\.npy"):
        ZooDataset(d)


def test_layout_weights_mismatch(zoo_dir, tmp_path):
    d = _copy(zoo_dir, tmp_path)
    lines = (d / "layout.csv").read_text().splitlines()
    (d / "layout.csv").write_text("\n".join(lines[:-2]) + "\n")  # drop the dense layer
    with pytest.raises(DataFormatError, match=r"weights\.npy: rows have 4970 values but .*layout\.csv describes 4800"):
        Z.read_zoo(d)
    (d / "layout.csv").write_text(lines[0] + "\nsequential/conv2d/bias:0,0,16,\"(15,)\"\n")
    with pytest.raises(DataFormatError, match=r"layout\.csv: line 2"):
        Z.read_zoo(d)


def test_missing_column_and_row_mismatch(zoo_dir, tmp_path):
    d = _copy(zoo_dir, tmp_path)
    with gzip.open(d / "metrics.csv.gz", "rt") as fh:
        lines = fh.read().splitlines()
    head = lines[0].split(",")
    j = head.index("test_accuracy")
    cut = [",".join(c for i, c in enumerate(l.split(",")) if i != j) for l in lines]
    with gzip.open(d / "metrics.csv.gz", "wt") as fh:
        fh.write("\n".join(cut) + "\n")
    with pytest.raises(DataFormatError, match=r"metrics\.csv\.gz: missing column\(s\) \['test_accuracy'\]"):
        ZooDataset(d)
    with gzip.open(d / "metrics.csv.gz", "wt") as fh:
        fh.write("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataFormatError, match="has 18 rows but metrics.csv.gz has 17"):
        Z.read_zoo(d)


# --- CLI -----------------------------------------------------------------------------------------

def test_cli_make_info_merge(tmp_path, capsys):
    base = ["zoo", "make", "--dataset", "digits", "--num-nets", "2", "--seed", "5", "--epochs", "1",
            "--train-images", "128", "--test-images", "50", "--no-progress"]
    assert cli_main(base + ["--out", str(tmp_path / "a"), "--shard", "0/2"]) == 0
    assert cli_main(base + ["--out", str(tmp_path / "b"), "--shard", "1/2"]) == 0
    assert cli_main(["zoo", "merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")]) == 0
    capsys.readouterr()
    assert cli_main(["zoo", "info", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "2 nets, 4 checkpoints, 4970 parameters" in out and "final mean" in out
    assert cli_main(["zoo", "make", "--dataset", "digits", "--num-nets", "2", "--out", str(tmp_path / "c"),
                     "--shard", "3/2", "--no-progress"]) == 2
