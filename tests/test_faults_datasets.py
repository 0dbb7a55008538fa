"""Bad input, datasets (issue 11): zoo folders (``weights.npy`` / ``metrics.csv.gz`` / ``layout.csv`` /
``zoo.json``), INR sets (``chunks/*.npz`` / ``index.csv`` / ``meta.json``) and NFN ``.pth`` files, fed
truncated files, wrong dtypes and shapes, layout/weights mismatches, NaN/Inf weights, missing columns
and keys, empty sets. The library raises a project exception (``DataFormatError``,
``WeightSpaceError``: both ``ValueError``) naming the file (or field, shape) and the problem; the CLI
prints one line ``mnfn <cmd>: error: ...`` and exits 2. The other faults: ``test_faults_files.py``
(checkpoints, configs, image files, batches), ``test_faults_kill.py`` (interrupted jobs),
``test_faults_extreme.py`` (extreme weights).

Cases marked ``xfail(strict=True)`` document a fault the library does not handle yet (the reason
names the function to fix); they turn into failures as soon as it is fixed, so the marker goes.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import fault_utils as fu
from fault_utils import copy_tree as _copy, pg_argv as _pg_argv, raises as _raises, xfail
from mnfn.data import inr
from mnfn.data import zoo as Z
from mnfn.data.inr import InrDataset, make_inr_dataset, read_nfn_file
from mnfn.data.zoo import ZooDataset
from mnfn.io import DataFormatError
from mnfn.weightspace import WeightSpaceError, siren_spec

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread per test (tests/conftest.py)


@pytest.fixture(scope="module")
def zoo(request, tmp_path_factory) -> Path:
    """16 digits CNNs (ReLU and tanh), checkpoints at steps 0, 1, 2; cached across runs. Never modified:
    every fault works on a copy."""
    return fu.cached_zoo(request, tmp_path_factory)

INR_FIT = inr.FitConfig(max_steps=30)


@pytest.fixture(scope="module")
def inr_set(tmp_path_factory) -> Path:
    """4 train + 4 test digits SIRENs in chunks of 4 (chunks train-00000, test-00000)."""
    out = tmp_path_factory.mktemp("inr") / "set"
    make_inr_dataset(out, "digits", num=4, splits=("train", "test"), seed=1, fit=INR_FIT, batch_size=4, progress=False)
    return out


# =================================================================================================
# zoo folders
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
# INR sets and NFN files
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


