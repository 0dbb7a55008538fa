"""Reliability: bad input, interrupted jobs, extreme weights (issue 11).

1. Every file format the project reads (zoo ``weights.npy`` / ``metrics.csv.gz`` / ``layout.csv`` /
   ``zoo.json``; INR ``chunks/*.npz`` / ``index.csv`` / ``meta.json``; NFN ``.pth``; training
   checkpoints ``best.pt`` / ``last.pt``; YAML configs; IDX and CIFAR-10 image files) is fed
   truncated files, wrong dtypes, wrong shapes, layout/weights mismatches, NaN/Inf weights, missing
   columns/keys and empty datasets. The library raises a project exception (``DataFormatError``,
   ``WeightSpaceError``, ``ConfigError``: all ``ValueError``) whose message names the file (or the
   field/shape) and the problem; the CLI prints one line ``mnfn <cmd>: error: ...`` and exits 2.
   Mixed architectures in one batch are refused.
2. ``mnfn zoo make``, ``mnfn inr make`` and ``mnfn train predict-gen|classify-inr|edit-inr`` are
   SIGKILLed (whole process group) at chosen points of progress (the run stops itself before its
   N-th rename onto a chosen file, :data:`mnfn.io.STOP_ENV`: mid-run and during the final write)
   and rerun: no file is ever half-written under its final name, and the result is the
   uninterrupted run's, byte for byte (zoo, INR chunks) or value for value (``metrics.json``).
3. Extreme weights: float32 Monomial-NFN, its editor and canon-HNP on zoo CNNs moved by group
   elements with scales from 1e-6 to 1e6 give finite outputs within 1e-3 (relative) of the
   unmoved ones; weights of 1e-15 and subnormal 1e-40 give finite outputs and gradients.

Cases marked ``xfail(strict=True)`` document a fault the library does not handle yet (the reason
names the function to fix); they turn into failures as soon as it is fixed, so the marker goes.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import pickle
import random
import shutil
import struct
import tarfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pytest
import torch

import fault_utils as fu
from mnfn.data import images as im
from mnfn.data import inr
from mnfn.data import zoo as Z
from mnfn.data.images import load_images
from mnfn.data.inr import InrDataset, make_inr_dataset, read_nfn_file
from mnfn.data.zoo import ZooDataset
from mnfn.groups import ScaleDist, sample_element
from mnfn.io import STOP_ENV, DataFormatError, atomic_open, load_torch, save_npz, save_torch
from mnfn.models import build_model
from mnfn.training.config import ConfigError
from mnfn.weightspace import WeightSpaceError, WeightSpaceFeatures, siren_spec, zoo_cnn_spec
from mnfn.networks import build_module, features_from_modules

# The fork server (imports torch + mnfn once) runs the commands the kill tests interrupt. It starts
# with the module's first test and warms up while the in-process format tests run.
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


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread per test (tests/conftest.py)


XFAIL = dict(strict=True)


def xfail(reason: str):
    return pytest.mark.xfail(reason=reason, **XFAIL)


# =================================================================================================
# fixtures: a tiny zoo, a tiny INR set, a finished predict-gen run
# =================================================================================================

ZOO_RECIPE = dataclasses.replace(Z.default_recipe("digits"), epochs=2)
ZOO_NETS = 16


@pytest.fixture(scope="module")
def zoo(request, tmp_path_factory) -> Path:
    """16 digits CNNs (ReLU and tanh), checkpoints at steps 0, 1, 2; cached across runs. Never modified:
    every fault works on a copy."""
    cache = getattr(request.config, "cache", None)
    base = Path(cache.mkdir("mnfn-faults")) if cache is not None else tmp_path_factory.mktemp("faults")
    out = base / "zoo-digits-16-e2"
    if not (out / "zoo.json").is_file():
        Z.make_zoo(out, "digits", ZOO_NETS, seed=0, recipe=ZOO_RECIPE, progress=False)
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# predict-gen settings small enough for a 2-core CPU (1 epoch of a tiny Monomial-NFN).
PG_SET = ["--set", "epochs=1", "--set", "steps=1,2", "--set", "split_seed=4", "--set", "models.monomial.hidden=[4,4]",
          "--set", "models.monomial.head=[8]", "--set", "eval_batch_size=64", "--set", "test_scales=[10.0,1000000.0]"]


def _pg_argv(zoo_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "predict-gen", "--zoo", str(zoo_dir), "--model", "monomial", "--activation", "relu",
            "--out", str(out), "--no-progress", "--threads", "1", *PG_SET, *extra]


@pytest.fixture(scope="module")
def pg_run(zoo, tmp_path_factory) -> Path:
    """A finished `mnfn train predict-gen` run folder (best.pt, last.pt, log.csv, metrics.json)."""
    out = tmp_path_factory.mktemp("pg") / "run"
    rc, _, err = fu.run_cli(_pg_argv(zoo, out))
    assert rc == 0, err
    return out


INR_FIT = inr.FitConfig(max_steps=30)


@pytest.fixture(scope="module")
def inr_set(tmp_path_factory) -> Path:
    """4 train + 4 test digits SIRENs in chunks of 4 (chunks train-00000, test-00000)."""
    out = tmp_path_factory.mktemp("inr") / "set"
    make_inr_dataset(out, "digits", num=4, splits=("train", "test"), seed=1, fit=INR_FIT, batch_size=4, progress=False)
    return out


def _raises(fn: Callable[[], Any], exc: type[BaseException], *needles: str) -> str:
    with pytest.raises(exc) as ei:
        fn()
    msg = str(ei.value)
    for n in needles:
        assert n in msg, f"error lacks {n!r}: {msg!r}"
    return msg


# =================================================================================================
# 1. bad input: zoo folders
# =================================================================================================

def _cut_end(path: Path, n: int) -> None:
    """Drop the last ``n`` bytes: a write killed inside the last line (a cut at a line boundary would
    leave a shorter but valid CSV)."""
    path.write_bytes(path.read_bytes()[:-n])


def _layout_lines(d: Path) -> list[str]:
    return (d / "layout.csv").read_text().splitlines()


def _set_layout(d: Path, lines: list[str]) -> None:
    (d / "layout.csv").write_text("\n".join(lines) + "\n")


def _save_weights(d: Path, arr: np.ndarray, allow_pickle: bool = False) -> None:
    with open(d / "weights.npy", "wb") as fh:
        np.save(fh, arr, allow_pickle=allow_pickle)


def _weights(d: Path) -> np.ndarray:
    return np.load(d / "weights.npy")


def _nan_column(d: Path) -> None:
    w = _weights(d)
    w[:, 200] = np.nan
    _save_weights(d, w)


def _inf_entries(d: Path) -> None:
    w = _weights(d)
    w[::3, -1] = np.inf
    _save_weights(d, w)


def _drop_dense(d: Path) -> None:
    _set_layout(d, _layout_lines(d)[:-2])


def _negative_span(d: Path) -> None:
    lines = _layout_lines(d)
    lines[1] = lines[1].replace("sequential/conv2d/bias:0,0,16", "sequential/conv2d/bias:0,-16,0")
    _set_layout(d, lines)


def _overlap_span(d: Path) -> None:
    # conv2d_1's bias rewritten onto the first 16 entries of conv2d's kernel: same total size.
    lines = _layout_lines(d)
    lines[3] = lines[3].replace("sequential/conv2d_1/bias:0,160,176", "sequential/conv2d_1/bias:0,16,32")
    _set_layout(d, lines)


def _transpose_dense(d: Path) -> None:
    _set_layout(d, [ln.replace('"(16, 10)"', '"(10, 16)"') for ln in _layout_lines(d)])


def _drop_metric_column(d: Path, col: str) -> None:
    lines = fu.read_gz_lines(d / "metrics.csv.gz")
    j = lines[0].split(",").index(col)
    fu.write_gz_lines(d / "metrics.csv.gz", [",".join(c for i, c in enumerate(ln.split(",")) if i != j) for ln in lines])


def _empty_zoo(d: Path) -> None:
    _save_weights(d, _weights(d)[:0])
    fu.write_gz_lines(d / "metrics.csv.gz", fu.read_gz_lines(d / "metrics.csv.gz")[:1])


def _all_activations(d: Path, value: str) -> None:
    lines = fu.read_gz_lines(d / "metrics.csv.gz")
    for r in range(len(lines) - 1):
        cells = lines[1 + r].split(",")
        cells[lines[0].split(",").index("config.activation")] = value
        lines[1 + r] = ",".join(cells)
    fu.write_gz_lines(d / "metrics.csv.gz", lines)


def _ragged_row(d: Path) -> None:
    lines = fu.read_gz_lines(d / "metrics.csv.gz")
    lines[3] = ",".join(lines[3].split(",")[:-3])
    fu.write_gz_lines(d / "metrics.csv.gz", lines)


ZOO_FIX = "src/mnfn/data/zoo/"
# (id, mutation, reader, cli, needles, xfail reason or None)
#   reader "read": read_zoo(d); "dataset": ZooDataset(d, relu, all).features (what training reads)
#   cli "info": mnfn zoo info d; "train": mnfn train predict-gen --zoo d
ZOO_CASES = [
    ("weights-truncated", lambda d: fu.truncate(d / "weights.npy", 0.9), "read", "info",
     ["weights.npy", "truncated"], None),
    ("weights-header-cut", lambda d: fu.truncate(d / "weights.npy", 50 / (d / "weights.npy").stat().st_size),
     "read", "info", ["weights.npy", "not a readable .npy"], None),
    ("weights-empty-file", lambda d: (d / "weights.npy").write_bytes(b""), "read", "info",
     ["weights.npy", "not a readable .npy"], None),
    ("weights-not-npy", lambda d: (d / "weights.npy").write_bytes(b"PK\x03\x04 definitely not numpy"), "read", "info",
     ["weights.npy", "not a readable .npy"], None),
    ("weights-object-dtype", lambda d: _save_weights(d, np.array([[1, "a"]], dtype=object), allow_pickle=True),
     "read", "info", ["weights.npy", "unpickle"], None),
    ("weights-1d", lambda d: _save_weights(d, _weights(d).reshape(-1)), "read", "info", ["weights.npy", "2-D"], None),
    ("weights-int-dtype", lambda d: _save_weights(d, (_weights(d) * 1000).astype(np.int32)), "read", "info",
     ["weights.npy", "int32"], None),
    ("weights-complex-dtype", lambda d: _save_weights(d, _weights(d).astype(np.complex64)), "read", "info",
     ["weights.npy", "complex64"], None),
    ("weights-nan", _nan_column, "dataset", "train", ["weights.npy", "NaN"], None),
    ("weights-inf", _inf_entries, "dataset", "train", ["weights.npy", "Inf"], None),
    ("layout-weights-mismatch", _drop_dense, "read", "info", ["weights.npy", "layout.csv", "4970"], None),
    ("layout-missing-column", lambda d: _set_layout(d, [_layout_lines(d)[0].replace("shape", "shp"),
                                                        *_layout_lines(d)[1:]]),
     "read", "info", ["layout.csv", "missing column", "shape"], None),
    ("layout-truncated", lambda d: _cut_end(d / "layout.csv", 8), "read", "info", ["layout.csv", "line 9"], None),
    ("layout-wrong-shape", _transpose_dense, "dataset", "train", ["layout.csv", "sequential/dense/bias:0"], None),
    ("layout-negative-span", _negative_span, "read", "info", ["layout.csv", "sequential/conv2d/bias:0"], None),
    ("layout-overlapping-spans", _overlap_span, "read", "info", ["layout.csv", "overlap"], None),
    ("metrics-truncated", lambda d: fu.truncate(d / "metrics.csv.gz", 0.5), "read", "info",
     ["metrics.csv.gz", "truncated or corrupt"], None),
    ("metrics-binary-garbage", lambda d: (d / "metrics.csv.gz").write_bytes(bytes(range(256))), "read", "info",
     ["metrics.csv.gz", "cannot read"], None),
    ("metrics-missing-column", lambda d: _drop_metric_column(d, "test_accuracy"), "read", "info",
     ["metrics.csv.gz", "missing column", "test_accuracy"], None),
    ("metrics-row-mismatch", lambda d: fu.write_gz_lines(d / "metrics.csv.gz", fu.read_gz_lines(d / "metrics.csv.gz")[:-1]),
     "read", "info", ["weights.npy has 48 rows", "metrics.csv.gz has 47"], None),
    ("metrics-ragged-row", _ragged_row, "read", "info", ["metrics.csv.gz", "line 4"], None),
    ("metrics-non-numeric-accuracy", lambda d: fu.set_metric(d / "metrics.csv.gz", "test_accuracy", 2, "abc"),
     "dataset", "info", ["metrics.csv.gz", "test_accuracy"], None),
    ("metrics-nan-accuracy", lambda d: fu.set_metric(d / "metrics.csv.gz", "test_accuracy", 2, "nan"),
     "dataset", "train", ["metrics.csv.gz", "test_accuracy"], None),
    ("zoo-json-corrupt", lambda d: (d / "zoo.json").write_text('{"format": '), "read", "info",
     ["zoo.json", "not valid JSON"], None),
    ("empty-zoo", _empty_zoo, "dataset", "train", ["no checkpoints"], None),
    ("unknown-activation", lambda d: _all_activations(d, "weird"), "dataset", "train",
     ["no checkpoints", "weird"], None),
    ("missing-layout", lambda d: (d / "layout.csv").unlink(), "read", "info", ["layout.csv", "not found"], None),
]


def _zoo_case_params():
    out = []
    for case in ZOO_CASES:
        marks = [xfail(case[5])] if case[5] else []
        out.append(pytest.param(*case[:5], marks=marks, id=case[0]))
    return out


@pytest.mark.parametrize("name,mutate,reader,cli,needles", _zoo_case_params())
def test_zoo_fault(zoo, tmp_path, name, mutate, reader, cli, needles):
    d = _copy(zoo, tmp_path / "zoo")
    mutate(d)
    if reader == "read":
        _raises(lambda: Z.read_zoo(d), DataFormatError, *needles)
    else:
        _raises(lambda: ZooDataset(d, activation="relu", split="all").features, ValueError, *needles)
    if cli == "info":
        fu.assert_cli_error(["zoo", "info", d], *needles)
    else:
        fu.assert_cli_error(_pg_argv(d, tmp_path / "run"), *needles)


def test_zoo_nonfinite_rows_dropped_with_a_count(zoo, tmp_path):
    """``nonfinite="drop"`` (config ``nonfinite_checkpoints=drop``): diverged checkpoints are left out
    after splitting, counted, and every other checkpoint stays in the split it was in."""
    d = _copy(zoo, tmp_path / "zoo")
    w = _weights(d)
    w[::5, 7] = np.nan  # some rows' weights
    _save_weights(d, w)
    fu.set_metric(d / "metrics.csv.gz", "test_accuracy", 1, "nan")  # one row's target
    bad = {r for r in range(0, len(w), 5)} | {1}
    total = 0
    for split in ("train", "test"):  # (this tiny zoo has no ReLU net in "val")
        clean = ZooDataset(zoo, activation="relu", split=split)
        with pytest.warns(UserWarning, match="left out"):
            ds = ZooDataset(d, activation="relu", split=split, nonfinite="drop")
        assert list(ds.rows) == [r for r in clean.rows if r not in bad]
        assert ds.dropped_nonfinite == sum(r in bad for r in clean.rows)
        assert torch.isfinite(ds.features.flatten()).all() and torch.isfinite(ds.targets).all()
        total += ds.dropped_nonfinite
    assert total > 0
    with pytest.raises(ValueError, match="nonfinite must be"):
        ZooDataset(d, activation="relu", nonfinite="ignore")
    fu.assert_cli_error(_pg_argv(d, tmp_path / "bad", "--set", "nonfinite_checkpoints=skip"),
                        "nonfinite_checkpoints", "'skip'")
    out = tmp_path / "run"
    rc, _, err = fu.run_cli(_pg_argv(d, out, "--set", "nonfinite_checkpoints=drop", "--set", "steps=all"))
    assert rc == 0, err
    m = json.loads((out / "metrics.json").read_text())
    with pytest.warns(UserWarning):
        expect = {k: ZooDataset(d, activation="relu", split=k, seed=4, nonfinite="drop").dropped_nonfinite
                  for k in ("train", "val", "test")}  # the CLI run's split_seed=4
    assert m["dropped_nonfinite"] == expect and sum(expect.values()) > 0


def test_zoo_info_on_empty_zoo(zoo, tmp_path):
    d = _copy(zoo, tmp_path / "zoo")
    _empty_zoo(d)
    fu.assert_cli_error(["zoo", "info", d], str(d), "no checkpoints")


def test_zoo_missing_folder_and_mixed_activations(zoo, tmp_path):
    fu.assert_cli_error(["zoo", "info", tmp_path / "nothing"], "nothing", "not found")
    # A selection that mixes ReLU and tanh nets has no single weight space: refused, not guessed.
    _raises(lambda: ZooDataset(zoo, split="all").features, WeightSpaceError, "mixes activations")


# =================================================================================================
# 1. bad input: INR sets and NFN files
# =================================================================================================

CHUNK = "chunks/train-00000.npz"


def _obj_label(a: dict) -> None:
    a["label"] = np.array([1, "x", None, 2], dtype=object)


INR_CASES = [
    ("chunk-truncated", lambda d: fu.truncate(d / CHUNK, 0.5), [CHUNK, "truncated or corrupt"]),
    ("chunk-not-zip", lambda d: (d / CHUNK).write_bytes(b"not a zip"), [CHUNK, "cannot read npz"]),
    ("chunk-missing-array", lambda d: fu.rewrite_npz(d / CHUNK, lambda a: a.pop("psnr")), [CHUNK, "missing arrays", "psnr"]),
    ("chunk-float64", lambda d: fu.rewrite_npz(d / CHUNK, lambda a: a.update(weight_1=a["weight_1"].astype(np.float64))),
     [CHUNK, "weight_1", "float64"]),
    ("chunk-nan", lambda d: fu.rewrite_npz(d / CHUNK, lambda a: a["weight_2"].__setitem__((1, 0, 0), np.nan)),
     [CHUNK, "weight_2", "NaN"]),
    ("chunk-inf", lambda d: fu.rewrite_npz(d / CHUNK, lambda a: a["bias_3"].__setitem__((0, 0), -np.inf)),
     [CHUNK, "bias_3", "Inf"]),
    ("chunk-wrong-shape", lambda d: fu.rewrite_npz(d / CHUNK, lambda a: a.update(weight_2=a["weight_2"][:, :, :16])),
     [CHUNK, "weight_2 has shape (4, 32, 16)"]),
    ("chunk-label-shape", lambda d: fu.rewrite_npz(d / CHUNK, lambda a: a.update(label=a["label"][:2])),
     [CHUNK, "label has shape (2,)"]),
    ("chunk-object-array", lambda d: fu.rewrite_npz(d / CHUNK, _obj_label), [CHUNK, "cannot read npz"]),
    ("chunk-missing", lambda d: (d / CHUNK).unlink(), [CHUNK, "not found"]),
    ("chunk-reordered", lambda d: fu.rewrite_npz(d / CHUNK, lambda a: a.update(image_index=a["image_index"][::-1].copy())),
     [CHUNK, "does not hold"]),
    ("index-truncated", lambda d: _cut_end(d / "index.csv", 5), ["index.csv", "malformed"]),
    ("index-missing-column", lambda d: (d / "index.csv").write_text(
        "\n".join(",".join(ln.split(",")[:-1]) for ln in (d / "index.csv").read_text().splitlines()) + "\n"),
     ["index.csv", "header"]),
    ("index-foreign-path", lambda d: (d / "index.csv").write_text(
        (d / "index.csv").read_text().replace("train-00000.npz", "../../elsewhere.npz")),
     ["index.csv", "not a chunk file name"]),
    ("index-missing", lambda d: (d / "index.csv").unlink(), ["index.csv", "not found"]),
    ("meta-truncated", lambda d: fu.truncate(d / "meta.json", 0.5), ["meta.json", "not valid JSON"]),
    ("meta-not-a-mapping", lambda d: (d / "meta.json").write_text("[1, 2]"), ["meta.json", "not an mnfn-inr meta file"]),
    ("meta-missing-key", lambda d: fu.json_edit(d / "meta.json", lambda m: m.pop("siren")), ["meta.json", "siren"]),
    ("meta-wrong-siren-type", lambda d: fu.json_edit(d / "meta.json", lambda m: m["siren"].update(hidden="32")),
     ["meta.json", "siren"]),
    ("meta-wrong-image-shape", lambda d: fu.json_edit(d / "meta.json", lambda m: m.update(image_shape=[1])),
     ["meta.json", "image_shape"]),
    ("meta-wrong-classes", lambda d: fu.json_edit(d / "meta.json", lambda m: m.update(classes=10)),
     ["meta.json", "classes"]),
    ("meta-binary", lambda d: (d / "meta.json").write_bytes(b"\xff\xfe\x00garbage"), ["meta.json", "cannot read"]),
]


@pytest.mark.parametrize("name,mutate,needles", [pytest.param(*c, id=c[0]) for c in INR_CASES])
def test_inr_fault(inr_set, tmp_path, name, mutate, needles):
    d = _copy(inr_set, tmp_path / "set")
    mutate(d)
    _raises(lambda: InrDataset(d, split="all"), DataFormatError, *needles)
    fu.assert_cli_error(["inr", "show", d, "--out", tmp_path / "grid.png"], *needles)


def test_inr_empty_set_and_resume_over_a_corrupt_chunk(inr_set, tmp_path):
    d = _copy(inr_set, tmp_path / "set")
    (d / "index.csv").write_text(",".join(inr.INDEX_COLUMNS) + "\n")  # no nets
    assert len(InrDataset(d, split="all")) == 0  # an empty split is a valid (empty) dataset ...
    fu.assert_cli_error(["inr", "show", d, "--out", tmp_path / "g.png"], str(d), "no nets")  # ... refused where used
    fu.assert_cli_error(["inr", "show", tmp_path / "nowhere", "--out", tmp_path / "g.png"], "meta.json", "not found")
    # A rerun of `inr make` over a corrupt chunk names it and says what to do.
    fu.truncate(d / CHUNK, 0.5)
    fu.assert_cli_error(["inr", "make", "--dataset", "digits", "--num", "4", "--split", "both", "--out", d, "--batch", "4",
                         "--recipe", "fast", "--max-steps", "30", "--seed", "1", "--no-progress"], CHUNK, "Delete")
    assert not list(d.rglob("*.tmp"))


def _nfn_state(inr_set: Path) -> dict[str, torch.Tensor]:
    return dict(inr.nfn_state_dict(InrDataset(inr_set, split="all").features, 0))


def _pickled_path(p: Path) -> None:
    p.write_bytes(pickle.dumps({"net.0.linear.weight": Path("/")}))


NFN_CASES = [
    ("truncated", lambda p, sd: (torch.save(sd, p), fu.truncate(p, 0.4)), "truncated"),
    ("empty-file", lambda p, sd: p.write_bytes(b""), "cannot load"),
    ("garbage", lambda p, sd: p.write_bytes(b"\x00" * 64), "cannot load"),
    ("unsafe-pickle", lambda p, sd: _pickled_path(p), "UnpicklingError"),
    ("not-a-dict", lambda p, sd: torch.save(torch.zeros(3), p), "state dict"),
    ("missing-key", lambda p, sd: torch.save({k: v for k, v in sd.items() if k != "net.1.linear.bias"}, p),
     "missing keys ['net.1.linear.bias']"),
    ("extra-key", lambda p, sd: torch.save({**sd, "net.9.weight": torch.zeros(1)}, p), "unexpected keys ['net.9.weight']"),
    ("int-dtype", lambda p, sd: torch.save({**sd, "net.0.linear.bias": torch.zeros(32, dtype=torch.int64)}, p),
     "net.0.linear.bias has dtype torch.int64"),
    ("complex-dtype", lambda p, sd: torch.save({**sd, "net.2.bias": sd["net.2.bias"].to(torch.complex64)}, p),
     "net.2.bias has dtype torch.complex64"),
    ("wrong-shape", lambda p, sd: torch.save({**sd, "net.1.linear.weight": torch.zeros(32, 31)}, p),
     "net.1.linear.weight has shape (32, 31)"),
    ("nested-value", lambda p, sd: torch.save({**sd, "net.2.weight": {"w": torch.zeros(1, 32)}}, p),
     "net.2.weight is a dict"),
    ("nan", lambda p, sd: torch.save({**sd, "net.1.linear.weight": sd["net.1.linear.weight"] * float("nan")}, p),
     "net.1.linear.weight has NaN/Inf"),
    ("inf", lambda p, sd: torch.save({**sd, "net.2.bias": sd["net.2.bias"] + float("inf")}, p), "net.2.bias has NaN/Inf"),
]


@pytest.mark.parametrize("name,write,needle", [pytest.param(*c, id=c[0]) for c in NFN_CASES])
def test_nfn_file_fault(inr_set, tmp_path, name, write, needle):
    src = tmp_path / "nfn-digits"
    folder = src / f"{inr.NFN_PREFIX}_0s"
    folder.mkdir(parents=True)
    path = folder / "net0.pth"
    write(path, _nfn_state(inr_set))
    _raises(lambda: read_nfn_file(path, siren_spec(1)), DataFormatError, str(path), needle)
    fu.assert_cli_error(["inr", "import-nfn", src, "--out", tmp_path / "imported", "--dataset", "digits",
                         "--no-progress"], "net0.pth", needle)


# =================================================================================================
# 1. bad input: training checkpoints
# =================================================================================================

TRAIN_FIX = "src/mnfn/training/train.py"


def _ck_edit(name: str, fn: Callable[[dict], Any]) -> Callable[[Path], None]:
    """Load checkpoint ``name``, let ``fn`` change it in place, save it back."""
    def mutate(d: Path) -> None:
        ck = torch.load(d / name, weights_only=True)
        fn(ck)
        torch.save(ck, d / name)
    return mutate


def _shrink_first_param(ck: dict) -> None:
    k = next(iter(ck["model"]))
    ck["model"][k] = ck["model"][k].flatten()[:1]


CKPT_CASES = [
    # (id, mutation, needles, load_torch refuses the file itself, xfail reason)
    ("last-truncated", lambda d: fu.truncate(d / "last.pt", 0.5), ["last.pt", "truncated, corrupt"], True, None),
    ("last-empty", lambda d: (d / "last.pt").write_bytes(b""), ["last.pt", "cannot load"], True, None),
    ("last-garbage", lambda d: (d / "last.pt").write_bytes(b"hello"), ["last.pt", "cannot load"], True, None),
    ("last-unsafe-pickle", lambda d: (d / "last.pt").write_bytes(pickle.dumps({"x": Path("/")})),
     ["last.pt", "UnpicklingError"], True, None),
    ("last-not-a-dict", lambda d: torch.save([1, 2], d / "last.pt"), ["last.pt"], False, None),
    ("last-missing-key", _ck_edit("last.pt", lambda ck: ck.pop("optimizer")), ["last.pt", "optimizer"], False, None),
    ("last-wrong-shape", _ck_edit("last.pt", _shrink_first_param), ["last.pt", "size mismatch"], False, None),
    ("best-truncated", lambda d: fu.truncate(d / "best.pt", 0.3), ["best.pt", "truncated, corrupt"], True, None),
    ("best-missing", lambda d: (d / "best.pt").unlink(), ["best.pt", "not found"], True, None),
    ("best-missing-key", _ck_edit("best.pt", lambda ck: ck.pop("model")), ["best.pt", "model"], False, None),
]


@pytest.mark.parametrize("name,mutate,needles,unloadable", [
    pytest.param(*c[:4], marks=[xfail(c[4])] if c[4] else [], id=c[0]) for c in CKPT_CASES])
def test_checkpoint_fault(zoo, pg_run, tmp_path, name, mutate, needles, unloadable):
    d = _copy(pg_run, tmp_path / "run")
    (d / "metrics.json").unlink()
    mutate(d)
    if unloadable:
        _raises(lambda: load_torch(d / needles[0]), DataFormatError, *needles)
    fu.assert_cli_error(_pg_argv(zoo, d), *needles)
    assert not (d / "metrics.json").exists()


def test_log_behind_last_checkpoint_is_repaired(zoo, pg_run, tmp_path):
    """The state a SIGKILL between `save_torch(last.pt)` and `_write_log(log.csv)` leaves."""
    d = _copy(pg_run, tmp_path / "run")
    (d / "metrics.json").unlink()
    head = (d / "log.csv").read_text().splitlines()[0]
    (d / "log.csv").write_text(head + "\n")  # last.pt has epoch 1; the log has not caught up
    rc, _, err = fu.run_cli(_pg_argv(zoo, d))
    assert rc == 0, err
    with open(d / "log.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 1


# =================================================================================================
# 1. bad input: YAML configs
# =================================================================================================

CONFIG_FIX = "src/mnfn/training/config.py"
CONFIG_CASES = [
    ("truncated", "epochs: 2\nmodels:\n  monomial: {hidden: [4,", ["bad.yaml", "not valid YAML"], None),
    ("not-a-mapping", "- 1\n- 2\n", ["bad.yaml", "mapping"], None),
    ("wrong-type", "epochs: two\n", ["bad.yaml", "epochs expects int"], None),
    ("wrong-list-type", "test_scales: 10\n", ["bad.yaml", "test_scales"], None),
    ("unknown-key", "epoch: 2\n", ["bad.yaml", "unknown config key 'epoch'", "did you mean 'epochs'"], None),
    ("missing-extends", "extends: nothere.yaml\n", ["nothere.yaml", "cannot read"], None),
    ("extends-loop", "extends: bad.yaml\n", ["bad.yaml", "'extends' loop"], None),
    ("binary", "\x00\x01\xff\xfe", ["bad.yaml"], None),
]


@pytest.mark.parametrize("name,text,needles", [
    pytest.param(*c[:3], marks=[xfail(c[3])] if c[3] else [], id=c[0]) for c in CONFIG_CASES])
def test_config_fault(zoo, tmp_path, name, text, needles):
    cfg = tmp_path / "bad.yaml"
    cfg.write_bytes(text.encode("latin-1"))
    fu.assert_cli_error(_pg_argv(zoo, tmp_path / "run", "--config", cfg), *needles)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_config_missing_and_bad_override(zoo, tmp_path):
    fu.assert_cli_error(_pg_argv(zoo, tmp_path / "r", "--config", tmp_path / "nothere.yaml"), "nothere.yaml", "not found")
    fu.assert_cli_error(_pg_argv(zoo, tmp_path / "r", "--set", "epochs"), "epochs", "key=value")
    fu.assert_cli_error(_pg_argv(zoo, tmp_path / "r", "--set", "models.monomial.hidden=[4,"), "cannot read value")
    with pytest.raises(ConfigError):
        from mnfn.training.config import load_config

        load_config({"a": 1}, overrides=["a.b=1"])


# =================================================================================================
# 1. bad input: image files
# =================================================================================================

def _idx(arr: np.ndarray, code: int = 8, dims: tuple[int, ...] | None = None) -> bytes:
    dims = dims or arr.shape
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + arr.tobytes()


def _idx_set(root: Path, n: int = 12) -> Path:
    folder = root / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, (a, b) in im.IDX_FILES.items():
        (folder / f"{a}.gz").write_bytes(gzip.compress(_idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))))
        (folder / f"{b}.gz").write_bytes(gzip.compress(_idx(rng.integers(0, 10, n, dtype=np.uint8))))
    return folder


IMG = "train-images-idx3-ubyte.gz"
LAB = "train-labels-idx1-ubyte.gz"
IDX_CASES = [
    ("gz-truncated", lambda f: fu.truncate(f / IMG, 0.5), [IMG, "truncated or corrupt"]),
    ("bad-gzip", lambda f: (f / IMG).write_bytes(b"\x1f\x8bgarbage-not-deflate"), [IMG, "cannot read"]),
    ("empty-file", lambda f: (f / IMG).write_bytes(b""), [IMG, "truncated"]),
    ("data-truncated", lambda f: (f / IMG).write_bytes(gzip.compress(_idx(np.zeros((12, 28, 28), np.uint8))[:-100])),
     [IMG, "truncated"]),
    ("float-dtype", lambda f: (f / IMG).write_bytes(gzip.compress(_idx(np.zeros((12, 28, 28), np.float32), code=0x0D))),
     [IMG, "not an unsigned-byte IDX"]),
    ("wrong-dims", lambda f: (f / IMG).write_bytes(gzip.compress(_idx(np.zeros((12, 28, 28), np.uint8), dims=(12, 28, 27)))),
     [IMG, "past the"]),
    ("images-2d", lambda f: (f / IMG).write_bytes(gzip.compress(_idx(np.zeros((12, 784), np.uint8)))), [IMG, "(12, 784)"]),
    ("count-mismatch", lambda f: (f / LAB).write_bytes(gzip.compress(_idx(np.zeros(11, np.uint8)))), [LAB, "(11,) labels"]),
    ("label-out-of-range", lambda f: (f / LAB).write_bytes(gzip.compress(_idx(np.full(12, 200, np.uint8)))),
     [LAB, "label 200"]),
    ("no-images", lambda f: ((f / IMG).write_bytes(gzip.compress(_idx(np.zeros((0, 28, 28), np.uint8)))),
                             (f / LAB).write_bytes(gzip.compress(_idx(np.zeros(0, np.uint8))))), [IMG, "no images"]),
    ("missing-file", lambda f: (f / LAB).unlink(), ["mnist", "not found"]),
]


@pytest.mark.parametrize("name,mutate,needles", [pytest.param(*c, id=c[0]) for c in IDX_CASES])
def test_idx_fault(tmp_path, name, mutate, needles):
    folder = _idx_set(tmp_path / "data")
    mutate(folder)
    _raises(lambda: load_images("mnist", "train", root=tmp_path / "data"), DataFormatError, *needles)
    fu.assert_cli_error(["zoo", "make", "--dataset", "mnist", "--data", tmp_path / "data", "--num-nets", "1",
                         "--out", tmp_path / "zoo", "--no-progress"], *needles)


def _cifar_tar(root: Path, records: dict[str, bytes] | None = None, mode: str = "w:gz") -> Path:
    folder = root / "src" / im.CIFAR_BIN_DIR
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for names in im.CIFAR_BIN_FILES.values():
        for n in names:
            rec = np.concatenate([rng.integers(0, 10, (2, 1), dtype=np.uint8),
                                  rng.integers(0, 256, (2, 3072), dtype=np.uint8)], 1).tobytes()
            data = (records or {}).get(n, rec)
            (folder / n).write_bytes(rec if data is None else data)
    (root / "cifar10").mkdir()
    tar_path = root / "cifar10" / im.CIFAR_BIN_TAR
    with tarfile.open(tar_path, mode) as tar:
        for n in sorted(p.name for p in folder.iterdir()):
            if records is None or records.get(n, b"x") is not None:
                tar.add(folder / n, arcname=f"{im.CIFAR_BIN_DIR}/{n}")
    return tar_path


TAR = im.CIFAR_BIN_TAR
CIFAR_CASES = [
    ("tar-truncated", lambda r: fu.truncate(_cifar_tar(r), 0.5), [TAR, "truncated or corrupt"]),
    ("tar-empty", lambda r: _cifar_tar(r).write_bytes(b""), [TAR, "cannot read tar.gz"]),
    ("not-gzip", lambda r: _cifar_tar(r, mode="w"), [TAR, "not a gzip file"]),
    ("missing-member", lambda r: _cifar_tar(r, {"data_batch_3.bin": None}), [TAR, "no data_batch_3.bin"]),
    ("partial-record", lambda r: _cifar_tar(r, {"data_batch_2.bin": b"\x00" * 100}), [TAR, "not a whole number"]),
    ("label-out-of-range", lambda r: _cifar_tar(r, {"data_batch_1.bin": bytes([42]) + b"\x00" * 3072}), [TAR, "label 42"]),
    ("empty-batches", lambda r: _cifar_tar(r, {n: b"" for n in im.CIFAR_BIN_FILES["train"]}), [TAR, "no images"]),
]


@pytest.mark.parametrize("name,make,needles", [pytest.param(*c, id=c[0]) for c in CIFAR_CASES])
def test_cifar_fault(tmp_path, name, make, needles):
    make(tmp_path / "data")
    _raises(lambda: load_images("cifar10", "train", root=tmp_path / "data"), DataFormatError, *needles)
    fu.assert_cli_error(["zoo", "make", "--dataset", "cifar10", "--data", tmp_path / "data", "--num-nets", "1",
                         "--out", tmp_path / "zoo", "--no-progress"], *needles)


# =================================================================================================
# 1. bad input: batches and models (mixed architectures, dtypes, NaN, empty)
# =================================================================================================

def test_mixed_architectures_dtypes_and_empty_batches_are_refused():
    spec = zoo_cnn_spec("relu", image_size=8)
    narrow = zoo_cnn_spec("relu", channels=8, image_size=8)
    torch.manual_seed(0)
    a = features_from_modules([build_module(spec) for _ in range(2)])
    b = features_from_modules([build_module(narrow) for _ in range(2)])
    t = a.with_spec(zoo_cnn_spec("tanh", image_size=8))  # same shapes, another symmetry group
    _raises(lambda: WeightSpaceFeatures.collate([a, b]), WeightSpaceError, "mixed architectures", "1->8")
    _raises(lambda: WeightSpaceFeatures.collate([a, t]), WeightSpaceError, "mixed architectures", "tanh")
    _raises(lambda: features_from_modules([build_module(spec), build_module(narrow)]), WeightSpaceError,
            "mixed architectures")
    _raises(lambda: a.map(lambda x: x * float("nan")).validate(), WeightSpaceError, "weight 1", "NaN")
    for name in ("monomial", "canon-hnp", "monomial-editor", "hnp", "statnn", "mlp"):
        model = build_model(name, spec, **({"hidden": [4]} if name in ("statnn", "mlp") else {}))
        _raises(lambda: model(b), WeightSpaceError, "1->16", "1->8")
        _raises(lambda: model(a.to(torch.float64)), WeightSpaceError, "float64")
        _raises(lambda: model(a.map(lambda x: (x * 100).long())), WeightSpaceError, "int64")
        _raises(lambda: model(a.weights[0]), WeightSpaceError, "WeightSpaceFeatures")
        if name not in ("statnn", "mlp"):
            _raises(lambda: model(a[0:0]), WeightSpaceError, "empty batch")


# =================================================================================================
# 2. interrupted jobs: SIGKILL at chosen points of progress, rerun, same result, nothing half-written
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


# =================================================================================================
# 3. extreme weights
# =================================================================================================

EXTREME_MODELS = {
    "monomial": dict(hidden=[8, 8, 4], head=[16]),
    "canon-hnp": dict(hidden=[8, 8, 4], head=[16]),
    "monomial-editor": dict(hidden=[8, 8]),
}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def _zoo_features(zoo: Path, activation: str) -> WeightSpaceFeatures:
    return ZooDataset(zoo, activation=activation, split="all").features[:12]  # steps 0 (zero biases), 1, 2


def _outputs(y: Any) -> list[torch.Tensor]:
    return [y] if isinstance(y, torch.Tensor) else list(y.weights) + list(y.biases)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("name", list(EXTREME_MODELS))
def test_extreme_group_elements_keep_outputs_finite_and_invariant(zoo, name, activation):
    feats = _zoo_features(zoo, activation)
    spec = feats.spec
    torch.manual_seed(0)
    model = build_model(name, spec, **EXTREME_MODELS[name]).eval()
    with torch.no_grad():
        y = model(feats)
    scale_ranges = [(1e-6, 1e-6), (1e6, 1e6), (1e-6, 1e6)] if activation == "relu" else [(1.0, 1.0)]
    for k, (lo, hi) in enumerate(scale_ranges):
        # Elements act in float64 (as the test-time transforms do), then the weights are float32:
        # hidden rows are multiplied by up to 1e6 and columns divided by up to 1e6 (ratios to 1e12).
        g = sample_element(spec, feats.batch_size, 100 + k, scale=ScaleDist("loguniform", lo, hi), dtype=torch.float64)
        moved = g.act(feats.to(torch.float64)).to(torch.float32)
        with torch.no_grad():
            y_g = model(moved)
        if name == "monomial-editor":  # equivariant: f(gU) = g f(U)
            target = _outputs(g.act(y.to(torch.float64)).to(torch.float32))
        else:
            target = _outputs(y)
        for got, want in zip(_outputs(y_g), target):
            assert torch.isfinite(got).all(), f"{name} {activation} scales [{lo:g}, {hi:g}]: non-finite output"
            assert _rel(got, want) < 1e-3, f"{name} {activation} scales [{lo:g}, {hi:g}]: error {_rel(got, want):.2e}"


@pytest.mark.parametrize("scale", [1e-15, 1e-40], ids=["1e-15", "subnormal-1e-40"])
@pytest.mark.parametrize("name", list(EXTREME_MODELS))
def test_tiny_weights_give_finite_outputs_and_gradients(zoo, name, scale):
    for activation in ("relu", "tanh"):
        base = _zoo_features(zoo, activation)
        # Whole nets scaled down, and (zoo-like) single rows/entries near zero inside normal nets.
        g = torch.Generator().manual_seed(0)
        mixed = base.map(lambda t: torch.where(torch.rand(t.shape, generator=g) < 0.3, t * scale, t))
        for feats in (base.map(lambda t: t * scale), mixed):
            torch.manual_seed(0)
            model = build_model(name, feats.spec, **EXTREME_MODELS[name])
            leaves = feats.map(lambda t: t.detach().clone().requires_grad_(True))
            out = model(leaves)
            outs = _outputs(out)
            assert all(torch.isfinite(o).all() for o in outs), f"{name} {activation} {scale:g}: non-finite output"
            loss = sum((o.double() ** 2).sum() for o in outs)
            loss.backward()
            for p_name, p in model.named_parameters():
                assert p.grad is None or torch.isfinite(p.grad).all(), f"{name} {activation} {scale:g}: {p_name} grad"
            for t in list(leaves.weights) + list(leaves.biases):
                assert t.grad is None or torch.isfinite(t.grad).all(), f"{name} {activation} {scale:g}: input grad"


def test_tiny_weights_train_one_step_without_nan(zoo):
    """One Adam step of Monomial-NFN on zoo nets whose weights are near 1e-15 stays finite (the paper's
    official code divides by weights and overflows here)."""
    feats = _zoo_features(zoo, "relu").map(lambda t: t * 1e-15)
    torch.manual_seed(0)
    model = build_model("monomial", feats.spec, **EXTREME_MODELS["monomial"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    target = torch.rand(feats.batch_size, 1)
    for _ in range(2):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(feats), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())
