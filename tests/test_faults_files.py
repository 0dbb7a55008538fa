"""Bad input, files and batches (issue 11): training checkpoints (``best.pt`` / ``last.pt``), YAML
configs, IDX and CIFAR-10 image files, and batches that mix architectures or dtypes, hold NaN or are
empty. Each gets one project exception (``DataFormatError``, ``WeightSpaceError``, ``ConfigError``: all
``ValueError``) naming the file or field and the problem; the CLI exits 2 with one line."""
from __future__ import annotations

import csv
import gzip
import pickle
import struct
import tarfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

import fault_utils as fu
from fault_utils import copy_tree as _copy, pg_argv as _pg_argv, raises as _raises, xfail
from mnfn.data import images as im
from mnfn.data import inr
from mnfn.data.images import load_images
from mnfn.io import DataFormatError, load_torch
from mnfn.models import build_model
from mnfn.training.config import ConfigError
from mnfn.weightspace import WeightSpaceError, WeightSpaceFeatures, zoo_cnn_spec
from mnfn.networks import build_module, features_from_modules

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread per test (tests/conftest.py)


@pytest.fixture(scope="module")
def zoo(request, tmp_path_factory) -> Path:
    """16 digits CNNs (ReLU and tanh), checkpoints at steps 0, 1, 2; cached across runs. Never modified:
    every fault works on a copy."""
    return fu.cached_zoo(request, tmp_path_factory)

@pytest.fixture(scope="module")
def pg_run(zoo, tmp_path_factory) -> Path:
    """A finished `mnfn train predict-gen` run folder (best.pt, last.pt, log.csv, metrics.json)."""
    out = tmp_path_factory.mktemp("pg") / "run"
    rc, _, err = fu.run_cli(_pg_argv(zoo, out))
    assert rc == 0, err
    return out


INR_FIT = inr.FitConfig(max_steps=30)


# =================================================================================================
# training checkpoints
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
# YAML configs
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
# image files
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
# batches and models (mixed architectures, dtypes, NaN, empty)
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

