"""CNN model zoos in the public Small CNN Zoo layout: generate, store, merge, read.

A zoo folder holds (exactly the files of Unterthiner et al. 2020, "Predicting Neural Network
Accuracy from Weights"):

* ``weights.npy``: float32 ``(R, P)``, one row per checkpoint (``P = 4970`` for the 1-channel zoo
  architecture);
* ``metrics.csv.gz``: one row per checkpoint, the original columns :data:`METRIC_COLUMNS`
  (``config.*`` hyperparameters, ``modeldir`` naming the net, ``step``, ``test_accuracy``, ...);
* ``layout.csv``: ``varname,start_idx,end_idx,shape``: where each tensor sits in a row, in
  TensorFlow order: conv kernels ``(kh, kw, in, out)``, dense kernels ``(in, out)``, varnames
  ``sequential/conv2d/bias:0``, ``sequential/conv2d/kernel:0``, ..., ``sequential/dense/kernel:0``.

Zoos made here add ``zoo.json`` (the recipe, the test images used, the net indices): the reader
never needs it. Torch order is ``(out, in, kh, kw)`` / ``(out, in)``: the reader transposes
``(kh, kw, in, out) -> (out, in, kh, kw)`` and ``(in, out) -> (out, in)``.

Generation (:func:`make_zoo`) trains ``num_nets`` CNNs of the zoo architecture (3 conv 3x3 stride 2
layers of 16 channels, global average pooling, dense to 10) with hyperparameters drawn like the
original (activation, weight init and std, learning rate, optimizer, l2, dropout, train fraction)
and saves a checkpoint after every epoch (and at initialisation, step 0). Net ``i`` is a function of
``(seed, i)`` alone, so runs are reproducible, shards merge into exactly the single-run zoo, and a
killed run resumes from per-net part files in ``DIR/.parts/`` with no net lost or duplicated.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import gzip
import io
import json
import math
import os
import random
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..groups import ScaleDist, sample_element
from ..jobs import locks_output, parse_shard, refuse_overwrite
from ..io import DataFormatError, atomic_open, atomic_path, load_npz, read_json, save_npz, write_json
from ..weightspace import (
    ACTIVATIONS,
    LayerSpec,
    WeightSpaceError,
    WeightSpaceFeatures,
    WeightSpaceSpec,
    build_module,
    cnn_spec,
)
from .images import ImageSet, load_images

__all__ = [
    "METRIC_COLUMNS",
    "ZOO_DATASETS",
    "LayoutEntry",
    "Recipe",
    "MakeZooResult",
    "Zoo",
    "Augment",
    "ZooDataset",
    "default_recipe",
    "ZOO_RECIPES",
    "public_checkpoints",
    "zoo_padding",
    "comparable_settings",
    "accuracy_histogram",
    "zoo_layout",
    "write_layout",
    "read_layout",
    "read_metrics",
    "write_metrics",
    "read_weights",
    "read_zoo",
    "write_zoo",
    "rows_to_features",
    "features_to_rows",
    "spec_from_layout",
    "make_zoo",
    "merge_zoos",
    "zoo_info",
    "read_split_file",
    "split_nets",
]

#: The columns of the public ``metrics.csv.gz``, in its order.
METRIC_COLUMNS: tuple[str, ...] = (
    "config.activation", "config.b_init", "config.dataset", "config.dnn_architecture", "config.dropout",
    "config.epochs", "config.epochs_between_checkpoints", "config.init_std", "config.l2reg",
    "config.learning_rate", "config.num_layers", "config.num_units", "config.optimizer", "config.random_seed",
    "config.train_fraction", "config.w_init", "modeldir", "step", "test_accuracy", "test_loss",
    "train_accuracy", "train_loss",
)
#: Columns the reader needs.
REQUIRED_COLUMNS = ("config.activation", "modeldir", "step", "test_accuracy")
#: Columns that must hold numbers (empty cells and ``nan`` read as NaN).
NUMERIC_COLUMNS = ("step", "test_accuracy", "test_loss", "train_accuracy", "train_loss")

#: Image sets a zoo can be trained on.
ZOO_DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10-gray", "cifar10")

W_INITS = ("he_normal", "glorot_normal", "orthogonal", "RandomNormal", "TruncatedNormal")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
TRAIN_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
FORMAT_VERSION = 1


# =================================================================================================
# layout and row <-> features conversion
# =================================================================================================

@dataclass(frozen=True)
class LayoutEntry:
    """One tensor of a row: ``row[start:end].reshape(shape)`` in TensorFlow order."""

    varname: str
    start: int
    end: int
    shape: tuple[int, ...]

    @property
    def is_kernel(self) -> bool:
        return self.varname.endswith("kernel:0")

    @property
    def is_bias(self) -> bool:
        return self.varname.endswith("bias:0")


def _keras_name(kind: str, k: int) -> str:
    base = "conv2d" if kind == "conv" else "dense"
    return base if k == 0 else f"{base}_{k}"


def zoo_layout(spec: WeightSpaceSpec) -> list[LayoutEntry]:
    """The public layout of ``spec``: per layer its bias then its kernel (Keras names, TF shapes)."""
    out: list[LayoutEntry] = []
    off = 0
    counts = {"conv": 0, "dense": 0}
    for layer in spec.layers:
        name = "sequential/" + _keras_name(layer.kind, counts[layer.kind])
        counts[layer.kind] += 1
        kshape = (*layer.kernel, layer.n_in, layer.n_out) if layer.kind == "conv" else (layer.n_in, layer.n_out)
        for suffix, shape in (("bias:0", (layer.n_out,)), ("kernel:0", kshape)):
            n = math.prod(shape)
            out.append(LayoutEntry(f"{name}/{suffix}", off, off + n, tuple(shape)))
            off += n
    return out


def write_layout(path: str | os.PathLike, layout: Sequence[LayoutEntry]) -> None:
    with atomic_open(path, "w") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["varname", "start_idx", "end_idx", "shape"])
        for e in layout:
            w.writerow([e.varname, e.start, e.end, str(tuple(e.shape))])


def read_layout(path: str | os.PathLike) -> list[LayoutEntry]:
    """Parse ``layout.csv`` (an optional leading index column, as pandas writes it, is ignored)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found (a zoo folder needs layout.csv)")
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise DataFormatError(f"{path}: empty file")
    head = rows[0]
    need = ("varname", "start_idx", "end_idx", "shape")
    missing = [c for c in need if c not in head]
    if missing:
        raise DataFormatError(f"{path}: missing column(s) {missing}; has {head}")
    col = {c: head.index(c) for c in need}
    out = []
    for i, r in enumerate(rows[1:], start=2):
        if not r:
            continue
        try:
            shape = ast.literal_eval(r[col["shape"]])
            shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
            e = LayoutEntry(r[col["varname"]], int(r[col["start_idx"]]), int(r[col["end_idx"]]), shape)
        except (ValueError, SyntaxError, IndexError, TypeError) as exc:
            raise DataFormatError(f"{path}: line {i}: cannot parse {r} ({exc})") from None
        if not 0 <= e.start <= e.end:
            raise DataFormatError(f"{path}: line {i}: {e.varname} spans [{e.start}, {e.end}); "
                                  "need 0 <= start_idx <= end_idx")
        if e.end - e.start != math.prod(e.shape):
            raise DataFormatError(f"{path}: line {i}: {e.varname} spans {e.end - e.start} values but shape {e.shape} "
                                  f"has {math.prod(e.shape)}")
        if not (e.is_kernel or e.is_bias):
            raise DataFormatError(f"{path}: line {i}: varname {e.varname!r} ends in neither kernel:0 nor bias:0")
        out.append(e)
    if not out:
        raise DataFormatError(f"{path}: no layout rows")
    spans = sorted((e for e in out if e.end > e.start), key=lambda e: (e.start, e.end))
    for a, b in zip(spans, spans[1:]):
        if b.start < a.end:
            raise DataFormatError(f"{path}: spans overlap: {a.varname} [{a.start}, {a.end}) and "
                                  f"{b.varname} [{b.start}, {b.end})")
    return out


def spec_from_layout(layout: Sequence[LayoutEntry], activation: str = "relu", stride: int = 2, padding: int = 1,
                     image_size: int | None = None, source: str = "layout") -> WeightSpaceSpec:
    """The architecture a layout describes: conv kernels ``(kh, kw, in, out)``, then dense ``(in, out)``.

    The layout does not store strides or padding: the zoo's are stride 2; ``padding`` is 0 for the
    public Small CNN Zoo (Keras ``valid``) and for ``--recipe public`` zoos, 1 for the ``fast``
    recipe (:func:`zoo_padding` reads it from ``zoo.json``). Weight-space features do not depend
    on it; only running a net (its function, probes) does.
    """
    kernels = [e for e in layout if e.is_kernel]
    biases = [e for e in layout if e.is_bias]
    if len(kernels) != len(biases) or not kernels:
        raise DataFormatError(f"{source}: {len(kernels)} kernels but {len(biases)} biases")
    layers = []
    for i, (k, b) in enumerate(zip(kernels, biases)):
        if len(k.shape) == 4:
            kh, kw, n_in, n_out = k.shape
            kind, kern = "conv", (kh, kw)
        elif len(k.shape) == 2:
            n_in, n_out = k.shape
            kind, kern = "dense", ()
        else:
            raise DataFormatError(f"{source}: {k.varname} has shape {k.shape}; expected (kh, kw, in, out) or (in, out)")
        if b.shape != (n_out,):
            raise DataFormatError(f"{source}: {b.varname} has shape {b.shape}, expected ({n_out},) to match {k.varname}")
        last = i == len(kernels) - 1
        layers.append(LayerSpec(kind, n_out, n_in, kern, activation=None if last else activation,
                                stride=stride if kind == "conv" else 1, padding=padding if kind == "conv" else 0))
    convs = [i for i, l in enumerate(layers) if l.kind == "conv"]
    pool = convs[-1] if convs and layers[-1].kind == "dense" else None
    in_shape = (layers[0].n_in, image_size, image_size) if image_size and layers[0].kind == "conv" else None
    try:
        return WeightSpaceSpec(tuple(layers), pool_after=pool, in_shape=in_shape)
    except WeightSpaceError as exc:
        raise DataFormatError(f"{source}: unsupported architecture ({exc})") from None


def rows_to_features(rows: np.ndarray, layout: Sequence[LayoutEntry], spec: WeightSpaceSpec,
                     dtype: torch.dtype = torch.float32) -> WeightSpaceFeatures:
    """Rows ``(N, P)`` in TF order -> features ``(N, 1, out, in[, kh, kw])`` / ``(N, 1, out)``.

    Kernels and biases are matched to layers in layout order (as the NFN reader does).
    """
    rows = np.asarray(rows)
    N = rows.shape[0]
    ws, bs = [], []
    for e in layout:
        arr = torch.from_numpy(np.ascontiguousarray(rows[:, e.start:e.end])).reshape(N, *e.shape)
        if e.is_kernel:
            arr = arr.permute(0, 4, 3, 1, 2) if arr.dim() == 5 else arr.transpose(1, 2)
            ws.append(arr)
        else:
            bs.append(arr)
    return WeightSpaceFeatures(tuple(w.unsqueeze(1).to(dtype).contiguous() for w in ws),
                               tuple(b.unsqueeze(1).to(dtype).contiguous() for b in bs), spec)


def features_to_rows(features: WeightSpaceFeatures, layout: Sequence[LayoutEntry] | None = None,
                     channel: int = 0) -> np.ndarray:
    """Features -> float32 rows ``(N, P)`` in the public TF order (inverse of :func:`rows_to_features`)."""
    layout = list(layout) if layout is not None else zoo_layout(features.spec)
    N = features.batch_size
    P = max(e.end for e in layout)
    out = np.zeros((N, P), dtype=np.float32)
    ki = bi = 0
    for e in layout:
        if e.is_kernel:
            w = features.weights[ki][:, channel].detach().cpu()
            ki += 1
            # (N, out, in, kh, kw) -> (N, kh, kw, in, out); (N, out, in) -> (N, in, out)
            t = w.permute(0, 3, 4, 2, 1) if w.dim() == 5 else w.transpose(1, 2)
        else:
            t = features.biases[bi][:, channel].detach().cpu()
            bi += 1
        if tuple(t.shape[1:]) != e.shape:
            raise WeightSpaceError(f"{e.varname}: features give shape {tuple(t.shape[1:])}, layout says {e.shape}")
        out[:, e.start:e.end] = t.reshape(N, -1).to(torch.float32).numpy()
    return out


def _module_row(model: nn.Sequential, layout: Sequence[LayoutEntry]) -> np.ndarray:
    """One trained ``nn.Sequential`` -> its float32 row (TF order)."""
    mods = [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
    ws = [m.weight.detach() for m in mods]
    bs = [m.bias.detach() for m in mods]
    row = np.empty(max(e.end for e in layout), dtype=np.float32)
    ki = bi = 0
    for e in layout:
        if e.is_kernel:
            w = ws[ki]
            ki += 1
            t = w.permute(2, 3, 1, 0) if w.dim() == 4 else w.t()  # (out,in,kh,kw)->(kh,kw,in,out); (out,in)->(in,out)
        else:
            t = bs[bi]
            bi += 1
        row[e.start:e.end] = t.reshape(-1).numpy()
    return row


# =================================================================================================
# file I/O
# =================================================================================================

def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)  # shortest exact round trip
    return str(v)


def write_metrics(path: str | os.PathLike, rows: Sequence[dict[str, Any]], columns: Sequence[str] = METRIC_COLUMNS) -> None:
    """Write ``metrics.csv.gz`` atomically and byte-reproducibly (gzip mtime 0)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_fmt(r.get(c, "")) for c in columns])
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            gz.write(buf.getvalue().encode())


def _convert_column(values: list[str]) -> np.ndarray:
    """Numeric columns become float64 (int-valued ones int64); others stay strings."""
    try:
        arr = np.array([float(v) if v not in ("", "nan", "NaN") else np.nan for v in values], dtype=np.float64)
    except ValueError:
        return np.array(values, dtype=object)
    if arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)) and all("." not in v and "e" not in v.lower() for v in values[:50]):
        return arr.astype(np.int64)
    return arr


def read_metrics(path: str | os.PathLike, required: Sequence[str] = REQUIRED_COLUMNS) -> dict[str, np.ndarray]:
    """Read ``metrics.csv.gz`` (or plain ``.csv``) into ``{column: array}``; a leading pandas index column is kept as ``""``."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found (a zoo folder needs metrics.csv.gz)")
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8")
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: cannot read ({type(exc).__name__}: {exc}); truncated or corrupt?") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise DataFormatError(f"{path}: empty file")
    head = rows[0]
    body = [r for r in rows[1:] if r]
    bad = [i for i, r in enumerate(body, start=2) if len(r) != len(head)]
    if bad:
        raise DataFormatError(f"{path}: line {bad[0]} has {len(body[bad[0] - 2])} fields, header has {len(head)}; truncated?")
    missing = [c for c in required if c not in head]
    if missing:
        raise DataFormatError(f"{path}: missing column(s) {missing} (has {len(head)} columns: {', '.join(head[:8])}...)")
    cols = list(zip(*body)) if body else [()] * len(head)
    out = {name: _convert_column(list(vals)) for name, vals in zip(head, cols)}
    for name in NUMERIC_COLUMNS:
        if name in out and out[name].dtype == object:
            for ln, v in enumerate(out[name], start=2):
                try:
                    float(v) if v != "" else None
                except ValueError:
                    raise DataFormatError(f"{path}: column {name!r}, line {ln}: {v!r} is not a number") from None
    return out


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            return shape, dtype, fortran, fh.tell()
    except Exception as exc:  # ValueError for a bad magic/header, EOFError
        raise DataFormatError(f"{path}: not a readable .npy file ({type(exc).__name__}: {exc})") from None


def read_weights(path: str | os.PathLike, mmap: bool = True) -> np.ndarray:
    """Open ``weights.npy`` (float32 ``(R, P)``) memory-mapped, checking its size against its header."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found (a zoo folder needs weights.npy)")
    shape, dtype, fortran, offset = _npy_header(path)
    if dtype.hasobject:
        raise DataFormatError(f"{path}: holds Python objects; refusing to unpickle")
    if dtype.kind != "f":
        raise DataFormatError(f"{path}: weights must be floating point (float32), header says dtype {dtype}")
    if len(shape) != 2:
        raise DataFormatError(f"{path}: expected a 2-D (checkpoints, parameters) array, header says shape {shape}")
    need = offset + int(np.prod(shape)) * dtype.itemsize
    have = path.stat().st_size
    if have < need:
        rows_present = (have - offset) // max(1, shape[1] * dtype.itemsize)
        raise DataFormatError(f"{path}: truncated: header says {shape} {dtype} ({need} bytes), file has {have} bytes "
                              f"(about {rows_present} of {shape[0]} rows)")
    arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    return arr


@dataclass
class Zoo:
    """A zoo read from disk: weights ``(R, P)`` (memory-mapped), metrics columns, layout, optional meta."""

    root: Path
    weights: np.ndarray
    metrics: dict[str, np.ndarray]
    layout: list[LayoutEntry]
    meta: dict[str, Any] | None = None

    def __len__(self) -> int:
        return int(self.weights.shape[0])

    @property
    def num_params(self) -> int:
        return int(self.weights.shape[1])


def read_zoo(root: str | os.PathLike, mmap: bool = True) -> Zoo:
    """Read and cross-check a zoo folder (ours or the public Small CNN Zoo)."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: zoo folder not found")
    layout = read_layout(root / "layout.csv")
    weights = read_weights(root / "weights.npy", mmap=mmap)
    metrics = read_metrics(root / "metrics.csv.gz")
    P = max(e.end for e in layout)
    if weights.shape[1] != P:
        raise DataFormatError(f"{root / 'weights.npy'}: rows have {weights.shape[1]} values but "
                              f"{root / 'layout.csv'} describes {P}")
    n_metrics = len(next(iter(metrics.values())))
    if n_metrics != weights.shape[0]:
        raise DataFormatError(f"{root}: weights.npy has {weights.shape[0]} rows but metrics.csv.gz has {n_metrics}")
    meta = None
    if (root / "zoo.json").is_file():
        meta = read_json(root / "zoo.json")
    return Zoo(root, weights, metrics, layout, meta)


def write_zoo(out_dir: str | os.PathLike, weights: np.ndarray, metrics: Sequence[dict[str, Any]],
              layout: Sequence[LayoutEntry], meta: dict[str, Any] | None = None) -> None:
    """Write the public files (and ``zoo.json`` when ``meta`` is given), each atomically.

    ``zoo.json`` goes last: its presence marks a complete zoo made here.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    if weights.ndim != 2 or weights.shape[0] != len(metrics) or weights.shape[1] != max(e.end for e in layout):
        raise ValueError(f"weights {weights.shape} do not match {len(metrics)} metric rows / layout")
    with atomic_path(out / "weights.npy", suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, weights, allow_pickle=False)
    write_metrics(out / "metrics.csv.gz", metrics)
    write_layout(out / "layout.csv", layout)
    if meta is not None:
        write_json(out / "zoo.json", meta)


# =================================================================================================
# generation
# =================================================================================================

@dataclass(frozen=True)
class Recipe:
    """How every net of a zoo is trained (the per-net hyperparameters are drawn, see :func:`draw_config`).

    ``train_images``: size of the training pool a net draws its ``train_fraction`` from (``None`` =
    the whole training split); one epoch is that many examples (``ceil(pool / batch_size)`` steps),
    drawn by cycling through the net's own subset; ``test_images``: the first ``test_images`` test images measure
    ``test_accuracy``/``test_loss`` (``None`` = all); ``train_eval_images``: images of the net's own
    training subset that measure ``train_accuracy``/``train_loss`` at each checkpoint.

    ``name``: the named recipe it started from (:data:`ZOO_RECIPES`); ``input_range``: pixels in
    ``unit`` [0, 1] or ``symmetric`` [-1, 1] (the public zoo); ``padding``: zero padding of every
    3x3 stride-2 convolution (1 here by default; 0 is Keras ``valid``, the public zoo's);
    ``checkpoint_epochs``: the epochs saved (``None`` = every epoch, 0 = at initialisation).
    """

    name: str = "fast"
    epochs: int = 3
    batch_size: int = 128
    train_images: int | None = 3072
    test_images: int | None = 2000
    train_eval_images: int = 512
    channels: int = 16
    num_conv: int = 3
    lr_range: tuple[float, float] = (5e-4, 5e-2)
    init_std_range: tuple[float, float] = (1e-3, 0.5)
    l2_range: tuple[float, float] = (1e-8, 1e-2)
    dropout_range: tuple[float, float] = (0.0, 0.5)
    w_inits: tuple[str, ...] = W_INITS
    optimizers: tuple[str, ...] = OPTIMIZERS
    train_fractions: tuple[float, ...] = TRAIN_FRACTIONS
    input_range: str = "unit"
    padding: int = 1
    checkpoint_epochs: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.input_range not in INPUT_RANGES:
            raise ValueError(f"input_range must be one of {', '.join(INPUT_RANGES)}, got {self.input_range!r}")
        if self.padding not in (0, 1):
            raise ValueError(f"padding must be 0 (valid) or 1, got {self.padding}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.checkpoint_epochs is not None:
            ce = tuple(self.checkpoint_epochs)
            if not ce or list(ce) != sorted(set(ce)) or ce[0] < 0 or ce[-1] != self.epochs:
                raise ValueError(f"checkpoint_epochs must be increasing, >= 0 and end at epochs={self.epochs}; "
                                 f"got {list(ce)}")

    @property
    def saved_epochs(self) -> tuple[int, ...]:
        """The epochs whose weights become rows (0 = at initialisation)."""
        if self.checkpoint_epochs is None:
            return tuple(range(self.epochs + 1))
        return tuple(self.checkpoint_epochs)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Recipe":
        names = {f.name for f in dataclasses.fields(Recipe)}
        return Recipe(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names})


INPUT_RANGES = ("unit", "symmetric")

#: The public zoo's checkpoint epochs (of 86), which ``public_checkpoints`` scales to a shorter schedule.
PUBLIC_CHECKPOINTS = (0, 1, 2, 3, 20, 40, 60, 80, 86)


def public_checkpoints(epochs: int) -> tuple[int, ...]:
    """The public zoo's 9 checkpoint epochs ``0, 1, 2, 3, 20, 40, 60, 80, 86`` scaled to ``epochs``:
    the first three epochs kept, the later ones at the same fractions of the schedule."""
    late = [max(4, round(e * epochs / PUBLIC_CHECKPOINTS[-1])) for e in PUBLIC_CHECKPOINTS[4:]]
    return tuple(sorted({e for e in (0, 1, 2, 3, *late) if e <= epochs} | {epochs}))


#: Named zoo recipes (``mnfn zoo make --recipe NAME``); docs/zoo.md says what each costs.
ZOO_RECIPES = ("fast", "public")


def default_recipe(dataset: str, name: str = "fast") -> Recipe:
    """A named recipe for ``dataset``.

    ``fast`` (the default, cheap enough for tests and the demo): the 8x8 digits draw from all 1397
    training images, 4 epochs at batch 64, tested on all 400 test images; the 28x28/32x32 sets draw
    from 3072 training images, 3 epochs at batch 128 (72 steps), tested on the first 2000 test
    images; inputs in [0, 1], padding 1, a checkpoint after every epoch.

    ``public`` follows the public Small CNN Zoo (Unterthiner et al. 2020) where this CPU allows:
    the same hyperparameter families, inputs in [-1, 1], Keras ``valid`` padding, the full test set,
    batch 32, and 9 checkpoints placed like the public ones (epochs 0, 1, 2, 3 and four more at the
    public fractions of the schedule) over 12 epochs of 2048 examples (768 steps instead of 72;
    about 3.4 CPU-s per net on one core, 11x the fast recipe).
    Needs images of at least 15 x 15 (three valid stride-2 convolutions).
    """
    if name not in ZOO_RECIPES:
        raise ValueError(f"unknown zoo recipe {name!r}; choose from {', '.join(ZOO_RECIPES)}")
    if name == "public":
        if dataset == "digits":
            raise ValueError("the public recipe needs images of at least 15x15 (three 'valid' stride-2 3x3 "
                             "convolutions); digits are 8x8: use --recipe fast, or mnist/fashion-mnist/cifar10-gray")
        epochs = 12
        return Recipe(name="public", epochs=epochs, batch_size=32, train_images=2048, test_images=None,
                      train_eval_images=512, input_range="symmetric", padding=0,
                      checkpoint_epochs=public_checkpoints(epochs))
    if dataset == "digits":
        return Recipe(epochs=4, batch_size=64, train_images=None, test_images=None, train_eval_images=256)
    return Recipe()


@dataclass(frozen=True)
class NetConfig:
    """The drawn hyperparameters of one net (``config.*`` columns)."""

    index: int
    activation: str
    w_init: str
    init_std: float
    learning_rate: float
    optimizer: str
    l2reg: float
    dropout: float
    train_fraction: float
    random_seed: int


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def draw_config(seed: int, index: int, activations: Sequence[str], recipe: Recipe, attempt: int = 0) -> NetConfig:
    """Hyperparameters of net ``index``: a function of ``(seed, index, attempt)`` only."""
    ss = np.random.SeedSequence([int(seed), int(index), int(attempt)])
    rng = np.random.default_rng(ss)
    return NetConfig(
        index=index,
        activation=str(activations[rng.integers(len(activations))]),
        w_init=str(recipe.w_inits[rng.integers(len(recipe.w_inits))]),
        init_std=_loguniform(rng, *recipe.init_std_range),
        learning_rate=_loguniform(rng, *recipe.lr_range),
        optimizer=str(recipe.optimizers[rng.integers(len(recipe.optimizers))]),
        l2reg=_loguniform(rng, *recipe.l2_range),
        dropout=float(rng.uniform(*recipe.dropout_range)),
        train_fraction=float(recipe.train_fractions[rng.integers(len(recipe.train_fractions))]),
        random_seed=int(ss.generate_state(1, dtype=np.uint32)[0]),
    )


def _init_weights(model: nn.Sequential, cfg: NetConfig) -> None:
    """Keras-style initialisers (fans count the kernel window); biases zero (``b_init = zeros``)."""
    with torch.no_grad():
        for m in model:
            if not isinstance(m, (nn.Conv2d, nn.Linear)):
                continue
            w = m.weight
            rf = w[0, 0].numel()
            fan_in, fan_out = w.shape[1] * rf, w.shape[0] * rf
            if cfg.w_init == "he_normal":
                w.normal_(0.0, math.sqrt(2.0 / fan_in))
            elif cfg.w_init == "glorot_normal":
                w.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)))
            elif cfg.w_init == "orthogonal":
                nn.init.orthogonal_(w)
            elif cfg.w_init == "RandomNormal":
                w.normal_(0.0, cfg.init_std)
            elif cfg.w_init == "TruncatedNormal":
                nn.init.trunc_normal_(w, 0.0, cfg.init_std, -2 * cfg.init_std, 2 * cfg.init_std)
            else:
                raise ValueError(f"unknown weight init {cfg.w_init!r}")
            m.bias.zero_()


def _make_optimizer(params: list[Tensor], cfg: NetConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.learning_rate, eps=1e-7)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.learning_rate, alpha=0.9, eps=1e-7)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.learning_rate)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def _dropout(h: Tensor, p: float) -> Tensor:
    """Elementwise dropout with the drop probability rounded to a multiple of 1/256.

    Why not ``F.dropout``: drawing one random float per element dominates the step time of these
    tiny nets on a CPU. Here every random 64-bit integer gives eight bytes, each compared with
    ``round(256 p)``: about 3x faster. Kept values are scaled by the exact ``1 / P(keep)``.
    """
    thr = int(round(p * 256))
    if thr <= 0:
        return h
    n = h.numel()
    r = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64).view(torch.uint8)[:n].view(h.shape)
    return h * (r >= thr) * (256.0 / (256 - thr))


def _forward(model: nn.Sequential, x: Tensor, dropout: float, train: bool) -> Tensor:
    """The zoo net with dropout after every hidden activation (only while training)."""
    h = x
    for m in model:
        h = m(h)
        if train and dropout > 0 and not isinstance(m, (nn.Conv2d, nn.Linear, nn.AdaptiveAvgPool2d, nn.Flatten)):
            h = _dropout(h, dropout)
    return h


@torch.no_grad()
def _evaluate(model: nn.Sequential, x: Tensor, y: Tensor, batch: int = 512) -> tuple[float, float]:
    """Accuracy and mean cross-entropy (non-finite outputs count as wrong / infinite loss).

    Batches of 512 keep the activations in cache: 2.4x faster than 2048 on the full 10k test set."""
    correct, loss = 0, 0.0
    for i in range(0, len(x), batch):
        out = _forward(model, x[i:i + batch], 0.0, False)
        yy = y[i:i + batch]
        correct += int((out.argmax(1) == yy).sum())
        loss += float(F.cross_entropy(out, yy, reduction="sum"))
    n = len(x)
    return correct / n, loss / n


class _Diverged(Exception):
    pass


@dataclass
class _Data:
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    spec_in: tuple[int, int, int]


def _train_net(cfg: NetConfig, data: _Data, recipe: Recipe, layout: list[LayoutEntry], dataset: str,
               num_classes: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Train one net; return its checkpoint rows and metrics rows (steps 0..epochs)."""
    spec = cnn_spec(data.spec_in[0], [recipe.channels] * recipe.num_conv, num_classes, cfg.activation,
                    kernel=3, stride=2, padding=recipe.padding, image_size=data.spec_in[1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.random_seed)
        g = torch.Generator().manual_seed(cfg.random_seed)
        n_pool = len(data.x_train) if recipe.train_images is None else min(recipe.train_images, len(data.x_train))
        n_train = max(min(recipe.batch_size, n_pool), int(round(cfg.train_fraction * n_pool)))
        idx = torch.randperm(len(data.x_train), generator=g)[:n_train]
        xt, yt = data.x_train[idx], data.y_train[idx]
        n_ev = min(recipe.train_eval_images, n_train)
        model = build_module(spec)
        _init_weights(model, cfg)
        params = list(model.parameters())
        kernels = [m.weight for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
        opt = _make_optimizer(params, cfg)
        rows, metrics = [], []

        def checkpoint(step: int) -> None:
            row = _module_row(model, layout)
            if not np.isfinite(row).all():
                raise _Diverged()
            te_acc, te_loss = _evaluate(model, data.x_test, data.y_test)
            tr_acc, tr_loss = _evaluate(model, xt[:n_ev], yt[:n_ev])
            rows.append(row)
            metrics.append({
                "config.activation": cfg.activation, "config.b_init": "zeros", "config.dataset": dataset,
                "config.dnn_architecture": "cnn", "config.dropout": cfg.dropout, "config.epochs": recipe.epochs,
                "config.epochs_between_checkpoints": gap, "config.init_std": cfg.init_std, "config.l2reg": cfg.l2reg,
                "config.learning_rate": cfg.learning_rate, "config.num_layers": recipe.num_conv,
                "config.num_units": recipe.channels, "config.optimizer": cfg.optimizer,
                "config.random_seed": cfg.random_seed, "config.train_fraction": cfg.train_fraction,
                "config.w_init": cfg.w_init, "modeldir": f"net{cfg.index:06d}", "step": step,
                "test_accuracy": te_acc, "test_loss": te_loss, "train_accuracy": tr_acc, "train_loss": tr_loss,
            })

        saved = set(recipe.saved_epochs)
        ep = recipe.saved_epochs
        gap = max((b - a for a, b in zip(ep, ep[1:])), default=1)  # the public zoo's column: the regular gap
        if 0 in saved:
            checkpoint(0)
        bs = min(recipe.batch_size, n_train)
        # Every net gets the same compute: an epoch is n_pool examples, cycling through the net's own
        # (train_fraction-sized) subset, so a small fraction means more passes over fewer images.
        steps_per_epoch = max(1, math.ceil(n_pool / bs))
        perm, pos = torch.randperm(n_train, generator=g), 0
        for epoch in range(1, recipe.epochs + 1):
            for _ in range(steps_per_epoch):
                if pos + bs > n_train:
                    perm, pos = torch.randperm(n_train, generator=g), 0
                b = perm[pos:pos + bs]
                pos += bs
                out = _forward(model, xt[b], cfg.dropout, True)
                loss = F.cross_entropy(out, yt[b])
                if cfg.l2reg > 0:  # Keras kernel_regularizer: l2 * sum(w^2), kernels only
                    loss = loss + cfg.l2reg * sum((k * k).sum() for k in kernels)
                if not torch.isfinite(loss):
                    raise _Diverged()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if epoch in saved:
                checkpoint(epoch)
    return np.stack(rows), metrics


MAX_ATTEMPTS = 20


def _train_with_retries(seed: int, index: int, activations: Sequence[str], recipe: Recipe, data: _Data,
                        layout: list[LayoutEntry], dataset: str, num_classes: int) -> tuple[np.ndarray, list[dict], int]:
    """Train net ``index``; a net whose weights or loss become non-finite is redrawn (attempt + 1).

    Redraws depend on ``(seed, index, attempt)`` only, so they are as reproducible as the first try.
    """
    for attempt in range(MAX_ATTEMPTS):
        cfg = draw_config(seed, index, activations, recipe, attempt)
        try:
            rows, metrics = _train_net(cfg, data, recipe, layout, dataset, num_classes)
            return rows, metrics, attempt
        except _Diverged:
            continue
    raise RuntimeError(f"net {index}: training diverged in {MAX_ATTEMPTS} hyperparameter draws")


def _load_data(dataset: str, recipe: Recipe, root: str | os.PathLike | None) -> tuple[_Data, ImageSet]:
    if dataset not in ZOO_DATASETS:
        raise ValueError(f"unknown zoo dataset {dataset!r}; choose from {', '.join(ZOO_DATASETS)}")
    tr = load_images(dataset, "train", root=root)
    te = load_images(dataset, "test", root=root, limit=recipe.test_images)
    x_tr, x_te = torch.from_numpy(tr.images), torch.from_numpy(te.images)
    if recipe.input_range == "symmetric":  # the public zoo feeds pixels in [-1, 1]
        x_tr, x_te = x_tr * 2 - 1, x_te * 2 - 1
    data = _Data(x_tr, torch.from_numpy(tr.labels), x_te,
                 torch.from_numpy(te.labels), tuple(tr.images.shape[1:]))  # type: ignore[arg-type]
    if recipe.padding == 0 and min(data.spec_in[1:]) < 15:
        raise ValueError(f"{dataset}: {data.spec_in[1]}x{data.spec_in[2]} images are too small for 'valid' padding "
                         "(three stride-2 3x3 convolutions need at least 15x15); use a recipe with padding 1")
    return data, tr


@dataclass
class MakeZooResult:
    """What :func:`make_zoo` did: nets finished in total / in this call, and whether the zoo is assembled."""

    out_dir: Path
    total: int
    done: int
    trained_now: int
    complete: bool
    net_seconds: list[float] = field(default_factory=list)  # wall-clock seconds per net trained now
    net_cpu_seconds: list[float] = field(default_factory=list)  # process CPU seconds per net (robust to load)


def _zoo_meta(dataset: str, num_nets: int, activations: Sequence[str], seed: int, recipe: Recipe,
              shard: tuple[int, int], layout: list[LayoutEntry], image_shape: tuple[int, ...]) -> dict[str, Any]:
    return {
        "format": "small-cnn-zoo", "mnfn_zoo_version": FORMAT_VERSION, "dataset": dataset, "num_nets": num_nets,
        "activations": list(activations), "seed": seed, "shard": list(shard), "recipe": recipe.to_dict(),
        "image_shape": list(image_shape), "test_images": recipe.test_images,
        "test_images_note": "test_accuracy is measured on the first test_images images of the test split (all if null)",
        "num_params": max(e.end for e in layout),
    }


def zoo_padding(meta: dict[str, Any] | None) -> int:
    """The conv padding of a zoo's nets: its recipe's (zoos made here; 1 before recipes named it),
    or 0 for a zoo without ``zoo.json`` (the public Small CNN Zoo used Keras ``valid`` padding)."""
    if meta is None:
        return 0
    recipe = meta.get("recipe")
    if isinstance(recipe, dict):
        return int(recipe.get("padding", 1))
    return 1


def comparable_settings(meta: Any, volatile: Sequence[str] = ("net_indices",)) -> Any:
    """A zoo's settings as compared on resume and merge: ``volatile`` keys dropped and the recipe with
    every field filled in (so a zoo written before a recipe field existed still matches its defaults)."""
    if not isinstance(meta, dict):
        return meta
    out = {k: v for k, v in meta.items() if k not in volatile}
    if isinstance(out.get("recipe"), dict):
        try:
            out["recipe"] = Recipe.from_dict(out["recipe"]).to_dict()
        except (TypeError, ValueError):
            pass  # left as written: it then differs, and the caller says so
    return out


def _assemble(out: Path, parts: Path, indices: list[int], meta: dict[str, Any], layout: list[LayoutEntry]) -> None:
    ws, ms = [], []
    for i in indices:
        z = load_npz(parts / f"net{i:06d}.npz", required=("weights", "metrics"))
        ws.append(z["weights"])
        ms.extend(json.loads(str(z["metrics"])))
    meta = dict(meta, net_indices=indices)
    write_zoo(out, np.concatenate(ws), ms, layout, meta)


@dataclass(frozen=True)
class _Job:
    seed: int
    activations: tuple[str, ...]
    recipe: Recipe
    dataset: str
    parts: str
    data_root: str | None
    threads: int | None


class _WorkerState:
    """Trains nets of one job and saves each as ``parts/net<i>.npz`` (atomically)."""

    def __init__(self, job: _Job, data: _Data, layout: list[LayoutEntry], num_classes: int) -> None:
        self.job, self.data, self.layout, self.num_classes = job, data, layout, num_classes

    def run(self, i: int) -> tuple[int, float, float, float | None]:
        j = self.job
        t0, c0 = time.perf_counter(), time.process_time()
        rows, metrics, _ = _train_with_retries(j.seed, i, j.activations, j.recipe, self.data, self.layout,
                                               j.dataset, self.num_classes)
        save_npz(Path(j.parts) / f"net{i:06d}.npz", weights=rows, metrics=np.array(json.dumps(metrics)))
        acc = metrics[-1]["test_accuracy"] if metrics else None
        return i, time.perf_counter() - t0, time.process_time() - c0, acc


_WORKER: _WorkerState | None = None


def _worker_init(job: _Job) -> None:
    global _WORKER
    if job.threads is not None:
        torch.set_num_threads(job.threads)
    data, tr = _load_data(job.dataset, job.recipe, job.data_root)
    spec = cnn_spec(data.spec_in[0], [job.recipe.channels] * job.recipe.num_conv, tr.num_classes,
                    job.activations[0], image_size=data.spec_in[1])
    _WORKER = _WorkerState(job, data, zoo_layout(spec), tr.num_classes)


def _worker_net(i: int) -> tuple[int, float, float, float | None]:
    assert _WORKER is not None
    return _WORKER.run(i)


@locks_output("out_dir", "mnfn zoo make")
def make_zoo(out_dir: str | os.PathLike, dataset: str, num_nets: int, activations: Sequence[str] = ("relu", "tanh"),
             seed: int = 0, shard: tuple[int, int] | str = (0, 1), recipe: Recipe | None = None,
             data_root: str | os.PathLike | None = None, progress: bool = True, threads: int | None = 1,
             max_new_nets: int | None = None, keep_parts: bool = False, workers: int = 1,
             on_net: Callable[[int, float], None] | None = None, overwrite: bool = False) -> MakeZooResult:
    """Train a zoo of ``num_nets`` CNNs on ``dataset`` into ``out_dir`` (public Small CNN Zoo files).

    Net ``i`` (``0 <= i < num_nets``) belongs to shard ``K/N`` iff ``i % N == K``; its hyperparameters,
    data subset, initialisation, dropout and batch order come from ``(seed, i)`` alone. Every finished
    net is saved atomically to ``out_dir/.parts/net<i>.npz``; a rerun of the same command skips those,
    so a killed run resumes with no net lost or duplicated. When all nets of the shard are done the
    public files are written (rows sorted by net index, then step) and the parts removed (unless
    ``keep_parts``). ``max_new_nets`` stops after that many newly trained nets (time-sliced jobs;
    ``complete`` is then False). ``threads``: torch CPU threads while training (1 is fastest for these
    tiny convolutions on a small shared CPU); ``None`` leaves the setting alone. ``workers > 1``
    trains nets in that many spawned processes (``threads`` each); the zoo is the same.
    """
    if num_nets < 1:
        raise ValueError(f"num_nets must be positive, got {num_nets}")
    acts = tuple(activations)
    if not acts:
        raise ValueError("need at least one activation")
    for a in acts:
        if a not in ACTIVATIONS:
            raise ValueError(f"unknown activation {a!r}; known: {', '.join(sorted(ACTIVATIONS))}")
    k, n = parse_shard(shard)
    recipe = recipe or default_recipe(dataset)
    if dataset not in ZOO_DATASETS:
        raise ValueError(f"unknown zoo dataset {dataset!r}; choose from {', '.join(ZOO_DATASETS)}")
    out = Path(out_dir)
    # a folder holding a public-format zoo (or anything) that this command did not start is not resumed
    refuse_overwrite(out, lambda d: (d / "zoo.json").is_file() or (d / ".parts").is_dir(),
                     "a zoo made by `mnfn zoo make`", overwrite)
    parts = out / ".parts"
    indices = list(range(k, num_nets, n))

    data, tr = _load_data(dataset, recipe, data_root)
    num_classes = tr.num_classes
    spec = cnn_spec(data.spec_in[0], [recipe.channels] * recipe.num_conv, num_classes, acts[0],
                    padding=recipe.padding, image_size=data.spec_in[1])
    layout = zoo_layout(spec)
    meta = _zoo_meta(dataset, num_nets, acts, seed, recipe, (k, n), layout, data.spec_in)

    if (out / "zoo.json").is_file():
        old_cmp = comparable_settings(read_json(out / "zoo.json"))
        if old_cmp != meta:
            diff = sorted(kk for kk in set(old_cmp) | set(meta) if old_cmp.get(kk) != meta.get(kk))
            raise ValueError(f"{out}: already holds a zoo made with other settings (differs in {diff}); "
                             "choose another folder")
        return MakeZooResult(out, len(indices), len(indices), 0, True)
    parts.mkdir(parents=True, exist_ok=True)
    cfg_path = parts / "config.json"
    if cfg_path.is_file():
        old = comparable_settings(read_json(cfg_path))
        if old != meta:
            diff = sorted(kk for kk in set(old) | set(meta) if old.get(kk) != meta.get(kk))
            raise ValueError(f"{out}: an unfinished zoo with other settings is there (differs in {diff}); "
                             f"rerun with its settings to resume, or choose another folder")
    else:
        write_json(cfg_path, meta)

    done = {i for i in indices if (parts / f"net{i:06d}.npz").is_file()}
    todo = [i for i in indices if i not in done]
    if max_new_nets is not None:
        todo = todo[:max(0, max_new_nets)]
    times: list[float] = []
    cpu_times: list[float] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(indices), initial=len(done), desc=f"zoo {dataset} shard {k}/{n}", unit="net")

    def finished(i: int, dt: float, cpu: float, acc: float | None) -> None:
        times.append(dt)
        cpu_times.append(cpu)
        done.add(i)
        if on_net is not None:
            on_net(i, dt)
        if bar is not None:
            bar.update(1)
            if acc is not None:
                bar.set_postfix(acc=f"{acc:.3f}", s=f"{dt:.2f}")

    job = _Job(seed, acts, recipe, dataset, str(parts), None if data_root is None else str(data_root), threads)
    if workers > 1 and len(todo) > 1:
        import multiprocessing as mp

        # spawn, not fork: a forked torch process can deadlock in its thread pools.
        ctx = mp.get_context("spawn")
        with ctx.Pool(min(workers, len(todo)), initializer=_worker_init, initargs=(job,)) as pool:
            for res in pool.imap_unordered(_worker_net, todo):
                finished(*res)
    else:
        old_threads = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            state = _WorkerState(job, data, layout, num_classes)
            for i in todo:
                finished(*state.run(i))
        finally:
            if threads is not None:
                torch.set_num_threads(old_threads)
    if bar is not None:
        bar.close()
    complete = len(done) == len(indices)
    if complete:
        _assemble(out, parts, indices, meta, layout)
        if not keep_parts:
            for i in indices:
                (parts / f"net{i:06d}.npz").unlink(missing_ok=True)
            cfg_path.unlink(missing_ok=True)
            for junk in parts.glob(".net*.tmp"):  # temporary files of writes killed mid-way
                junk.unlink(missing_ok=True)
            try:
                parts.rmdir()
            except OSError:
                pass
    return MakeZooResult(out, len(indices), len(done), len(times), complete, times, cpu_times)


_NET_RE = re.compile(r"net(\d+)$")


@locks_output("out", "mnfn zoo merge")
def merge_zoos(dirs: Sequence[str | os.PathLike], out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Merge shard zoos (made here, same settings, disjoint nets) into one, ordered by net index.

    When the shards cover all nets the result is byte-identical to a single run with the same seed.
    ``out`` may hold an earlier merge of the same settings (rerun); anything else needs ``overwrite``.
    """
    if not dirs:
        raise ValueError("no zoo folders to merge")
    zoos = [read_zoo(d, mmap=True) for d in dirs]
    metas = []
    for z in zoos:
        if z.meta is None:
            raise DataFormatError(f"{z.root}: no zoo.json; only zoos made by `mnfn zoo make` (complete shards) can be merged")
        metas.append(z.meta)
    volatile = ("shard", "net_indices")
    base = comparable_settings(metas[0], volatile)

    def same_run(d: Path) -> bool:
        if not (d / "zoo.json").is_file():
            return False
        old = read_json(d / "zoo.json")
        return isinstance(old, dict) and comparable_settings(old, volatile) == base

    refuse_overwrite(Path(out), same_run, "a merge of these zoos", overwrite)
    for z, m in zip(zoos[1:], metas[1:]):
        mm = comparable_settings(m, volatile)
        if mm != base:
            diff = sorted(kk for kk in set(mm) | set(base) if mm.get(kk) != base.get(kk))
            raise ValueError(f"{z.root}: made with other settings than {zoos[0].root} (differs in {diff})")
        if z.layout != zoos[0].layout:
            raise DataFormatError(f"{z.root}: layout.csv differs from {zoos[0].root}")
    # Row order: by net index, then the row order inside the shard (steps ascending).
    keyed: list[tuple[int, int, int]] = []
    seen: dict[int, Path] = {}
    for zi, z in enumerate(zoos):
        md = z.metrics["modeldir"]
        for r, name in enumerate(md):
            mt = _NET_RE.search(str(name))
            if not mt:
                raise DataFormatError(f"{z.root / 'metrics.csv.gz'}: modeldir {name!r} does not name a net (netNNNNNN)")
            keyed.append((int(mt.group(1)), zi, r))
        for idx in {int(_NET_RE.search(str(x)).group(1)) for x in md}:  # type: ignore[union-attr]
            if idx in seen:
                raise ValueError(f"net {idx} is in both {seen[idx]} and {z.root}")
            seen[idx] = z.root
    keyed.sort(key=lambda t: (t[0], t[2]))
    weights = np.stack([zoos[zi].weights[r] for _, zi, r in keyed]) if keyed else np.zeros((0, zoos[0].num_params), np.float32)
    cols = [c for c in METRIC_COLUMNS]
    rows = []
    for _, zi, r in keyed:
        m = zoos[zi].metrics
        rows.append({c: _py(m[c][r]) for c in cols if c in m})
    indices = sorted(seen)
    full = indices == list(range(int(base["num_nets"])))
    meta = dict(base, shard=[0, 1] if full else None, net_indices=indices)
    # Keep key order identical to a single run's zoo.json.
    order = list(metas[0].keys())
    meta = {kk: meta[kk] for kk in order if kk in meta}
    if not full:
        meta["shard"] = "partial"
    write_zoo(out, weights, rows, zoos[0].layout, meta)
    return Path(out)


def _py(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


# =================================================================================================
# reading for learning: splits, filters, features, augmentation
# =================================================================================================

def read_split_file(path: str | os.PathLike, num_rows: int) -> np.ndarray:
    """NFN split file: one row index per line (no header) -> int64 array, checked to be a permutation."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: split file not found")
    vals = []
    with open(path) as fh:
        for ln, line in enumerate(fh, 1):
            s = line.strip().split(",")[-1].strip()
            if not s:
                continue
            try:
                vals.append(int(float(s)))
            except ValueError:
                if ln == 1:
                    continue  # a header line
                raise DataFormatError(f"{path}: line {ln}: {line.strip()!r} is not a row index") from None
    idx = np.asarray(vals, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= num_rows):
        raise DataFormatError(f"{path}: row indices must lie in [0, {num_rows}), found {idx.min()}..{idx.max()}")
    if len(np.unique(idx)) != len(idx):
        raise DataFormatError(f"{path}: repeated row indices")
    return idx


def split_nets(num: int, split: str, val_fraction: float = 0.2, seed: int = 0) -> list[int]:
    """Positions (into an ordered list of ``num`` nets) of ``split``; the NFN protocol.

    ``test`` is the second half ``[int(num/2), num)``; the first half is shuffled with
    ``random.Random(seed)`` and cut at ``int((1 - val_fraction) * half)`` into ``train`` and ``val``.
    With ``seed=0, val_fraction=0.2`` this is exactly NFN's ``_split_indices_iid``.
    """
    cut = int(0.5 * num)
    if split == "test":
        return list(range(cut, num))
    if split == "all":
        return list(range(num))
    tv = list(range(cut))
    random.Random(seed).shuffle(tv)
    vp = int((1.0 - val_fraction) * len(tv))
    if split == "train":
        return tv[:vp]
    if split == "val":
        return tv[vp:]
    raise ValueError(f"split must be train, val, test or all; got {split!r}")


@dataclass(frozen=True)
class Augment:
    """Random monomial group elements applied to weights (targets are invariant).

    ``scale``: distribution of positive scales for ReLU layers (``None``: no scaling); sign flips for
    tanh layers when ``flip_signs``; random permutations when ``permute``. ``seed`` seeds the stream.
    """

    scale: ScaleDist | None = ScaleDist("uniform", 1.0, 10.0)
    permute: bool = True
    flip_signs: bool = True
    seed: int = 0

    def sample(self, spec: WeightSpaceSpec, batch: int, generator: torch.Generator):
        return sample_element(spec, batch, generator, scale=self.scale, permute=self.permute,
                              flip_signs=self.flip_signs)


class ZooDataset:
    """Checkpoints of a zoo as weight-space features with test accuracy targets.

    Pipeline: rows (optionally reordered by an NFN ``split_file``; otherwise a ``seed``-ed permutation
    of the nets) -> keep ``steps`` -> group rows by net (``modeldir``) -> NFN split over nets
    (:func:`split_nets`; all checkpoints of a net stay in one split) -> keep ``activation``.
    Filtering the activation after splitting keeps each net in the same split whatever the filter.

    ``steps``: ``None`` all checkpoints, ``"final"`` each zoo's last step (86 in the public zoo),
    an int or a sequence of ints. Features need one activation (a spec has one): a dataset that
    still mixes activations refuses ``features``/``batches`` until filtered.

    ``nonfinite``: what to do with checkpoints whose weights or test accuracy hold NaN/Inf
    (diverged nets). ``"error"`` (default) refuses the zoo, naming the rows; ``"drop"`` leaves
    them out of this split *after* splitting, so every net stays in the split it would be in
    anyway, and counts them in ``self.dropped_nonfinite`` (with a warning).
    """

    def __init__(self, root: str | os.PathLike, activation: str | None = None,
                 steps: int | Sequence[int] | str | None = None, split: str = "train",
                 split_file: str | os.PathLike | None = None, val_fraction: float = 0.2, seed: int = 0,
                 augment: Augment | None = None, dtype: torch.dtype = torch.float32,
                 stride: int = 2, padding: int | None = None, nonfinite: str = "error") -> None:
        if nonfinite not in ("error", "drop"):
            raise ValueError(f"nonfinite must be 'error' or 'drop', got {nonfinite!r}")
        zoo = read_zoo(root, mmap=True)
        self.root = Path(root)
        self.split = split
        self.dtype = dtype
        self.augment = augment
        self.layout = zoo.layout
        m = zoo.metrics
        R = len(zoo)
        if split_file is not None:
            order = read_split_file(split_file, R)
        else:
            # Random order of nets (not of rows): permute the distinct nets, keep each net's rows together.
            names = m["modeldir"]
            uniq, first = np.unique(names.astype(str), return_index=True)
            net_order = np.random.default_rng(seed).permutation(len(uniq))
            pos = {uniq[j]: r for r, j in enumerate(net_order)}
            order = np.array(sorted(range(R), key=lambda r: (pos[str(names[r])], r)), dtype=np.int64)
        if nonfinite == "error":
            self._refuse_nonfinite(zoo, order)
        step_col = m["step"]
        if steps is None:
            keep = np.ones(R, dtype=bool)
        elif isinstance(steps, str):
            if steps != "final":
                raise ValueError(f"steps must be None, 'final', an int or a list of ints; got {steps!r}")
            keep = step_col == np.max(step_col)
        else:
            want = [int(steps)] if isinstance(steps, (int, np.integer)) else [int(s) for s in steps]
            keep = np.isin(step_col, want)
        order = order[keep[order]]
        # Group by net in order of first appearance.
        names = m["modeldir"].astype(str)
        net_ids: dict[str, int] = {}
        for r in order:
            net_ids.setdefault(names[r], len(net_ids))
        positions = set(split_nets(len(net_ids), split, val_fraction, seed))
        rows = np.array([r for r in order if net_ids[names[r]] in positions], dtype=np.int64)
        acts = m["config.activation"].astype(str)
        if activation is not None:
            rows = rows[acts[rows] == activation]
        self.dropped_nonfinite = 0
        if nonfinite == "drop" and len(rows):
            ok = self._finite_rows(zoo, rows)
            self.dropped_nonfinite = int((~ok).sum())
            if self.dropped_nonfinite:
                warnings.warn(f"{self.root}: split {split!r}: left out {self.dropped_nonfinite} of {len(rows)} "
                              "checkpoints with NaN/Inf weights or test accuracy", stacklevel=2)
            rows = rows[ok]
        if len(rows) == 0:
            have = sorted(set(acts.tolist()))
            have_steps = sorted(set(np.asarray(step_col).tolist()))[:20]
            raise DataFormatError(
                f"{self.root}: no checkpoints left in split {split!r} after filtering "
                f"(activation={activation!r}, steps={steps!r}; the zoo has activations {have}, steps {have_steps})"
            )
        self.rows = rows
        self.metrics = {c: v[rows] for c, v in m.items()}
        self.activations = tuple(sorted(set(acts[rows].tolist())))
        self.activation = activation if activation is not None else (self.activations[0] if len(self.activations) == 1 else None)
        self.targets = torch.tensor(np.asarray(m["test_accuracy"], dtype=np.float64)[rows], dtype=dtype)
        image_size = None
        if zoo.meta and zoo.meta.get("image_shape"):
            image_size = int(zoo.meta["image_shape"][-1])
        self._weights = np.asarray(zoo.weights[np.sort(rows)])[np.argsort(np.argsort(rows))] if len(rows) else None
        if padding is None:
            padding = zoo_padding(zoo.meta)
        self._spec_args = dict(stride=stride, padding=padding, image_size=image_size)
        self._spec: WeightSpaceSpec | None = None
        self._features: WeightSpaceFeatures | None = None
        self._gen = torch.Generator().manual_seed(augment.seed if augment is not None else seed)

    @staticmethod
    def _finite_rows(zoo: Zoo, rows: np.ndarray, block: int = 4096) -> np.ndarray:
        """Mask over ``rows``: weights and test accuracy all finite (read in blocks: the weights may
        be a memory map of a large zoo)."""
        ok = np.isfinite(np.asarray(zoo.metrics["test_accuracy"], dtype=np.float64)[rows])
        for s in range(0, len(rows), block):
            ok[s:s + block] &= np.isfinite(np.asarray(zoo.weights[np.sort(rows[s:s + block])])).all(axis=1)[
                np.argsort(np.argsort(rows[s:s + block]))]
        return ok

    def _refuse_nonfinite(self, zoo: Zoo, order: np.ndarray, block: int = 4096) -> None:
        """Refuse non-finite weights or test accuracies in the rows the dataset draws from (all of the
        zoo's, or the split file's, before the step/split/activation filters): they would reach training."""
        m = zoo.metrics
        cand = np.sort(order)

        def where(bad: np.ndarray) -> str:
            return ", ".join(f"{m['modeldir'][r]} step {m['step'][r]}" for r in cand[bad][:3])

        bad = np.zeros(len(cand), dtype=bool)
        for s in range(0, len(cand), block):
            bad[s:s + block] = ~np.isfinite(np.asarray(zoo.weights[cand[s:s + block]])).all(axis=1)
        if bad.any():
            raise DataFormatError(f"{self.root / 'weights.npy'}: {int(bad.sum())} of {len(cand)} rows hold NaN/Inf "
                                  f"weights (first: {where(bad)}); nonfinite='drop' leaves such rows out")
        bad = ~np.isfinite(np.asarray(m["test_accuracy"], dtype=np.float64)[cand])
        if bad.any():
            raise DataFormatError(f"{self.root / 'metrics.csv.gz'}: {int(bad.sum())} of {len(cand)} rows have a "
                                  f"non-finite test_accuracy (first: {where(bad)}); nonfinite='drop' leaves such "
                                  "rows out")

    # -- basics ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    def _need_one_activation(self) -> str:
        if self.activation is None:
            raise WeightSpaceError(
                f"{self.root}: this selection mixes activations {list(self.activations)}; a weight-space spec has "
                "one activation, so pass activation='relu' (or 'tanh', ...) to use features"
            )
        return self.activation

    @property
    def spec(self) -> WeightSpaceSpec:
        """Architecture of the nets, with the filtered activation on every hidden layer."""
        if self._spec is None:
            act = self._need_one_activation()
            if act not in ACTIVATIONS:
                raise WeightSpaceError(f"{self.root}: activation {act!r} of these nets is not supported; "
                                       f"known: {sorted(ACTIVATIONS)}")
            self._spec = spec_from_layout(self.layout, act, source=str(self.root / "layout.csv"), **self._spec_args)
        return self._spec

    @property
    def features(self) -> WeightSpaceFeatures:
        """All selected checkpoints as features ``(N, 1, ...)`` in torch order (no augmentation)."""
        if self._features is None:
            self._features = rows_to_features(self._weights, self.layout, self.spec, self.dtype)
        return self._features

    def weights_rows(self) -> np.ndarray:
        """The selected raw rows (TF order), ``(N, P)`` float32."""
        return self._weights

    def __getitem__(self, i: int) -> tuple[WeightSpaceFeatures, Tensor]:
        return self.features[i], self.targets[i:i + 1]

    # -- batching --------------------------------------------------------------------------------
    def batches(self, batch_size: int, shuffle: bool = True, generator: torch.Generator | None = None,
                drop_last: bool = False) -> Iterator[tuple[WeightSpaceFeatures, Tensor]]:
        """Yield ``(features, targets)`` batches; with ``augment`` set, each batch is moved by fresh
        random group elements drawn from ``generator`` (default: the dataset's own seeded stream)."""
        feats = self.features
        g = generator if generator is not None else self._gen
        n = len(self)
        order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            if drop_last and len(idx) < batch_size:
                break
            fb = feats[idx]
            if self.augment is not None:
                el = self.augment.sample(self.spec, len(idx), g)
                fb = el.to(dtype=fb.dtype).act(fb)
            yield fb, self.targets[idx]

    @staticmethod
    def collate(items: Sequence[tuple[WeightSpaceFeatures, Tensor]]) -> tuple[WeightSpaceFeatures, Tensor]:
        """Stack ``dataset[i]`` items into one batch."""
        return WeightSpaceFeatures.collate([f for f, _ in items]), torch.cat([t.reshape(-1) for _, t in items])

    def with_transformed_copies(self, copies: int = 1, augment: Augment | None = None) -> "MaterializedZoo":
        """The paper's robustness protocol: the original checkpoints plus ``copies`` transformed copies,
        each by its own random group element (seeded by ``augment.seed``)."""
        aug = augment or self.augment or Augment()
        g = torch.Generator().manual_seed(aug.seed)
        base = self.features
        parts = [base]
        for _ in range(copies):
            el = aug.sample(self.spec, base.batch_size, g)
            parts.append(el.to(dtype=base.dtype).act(base))
        feats = WeightSpaceFeatures.collate(parts)
        return MaterializedZoo(feats, self.targets.repeat(copies + 1))


@dataclass
class MaterializedZoo:
    """Fixed features and targets (e.g. original + transformed copies) with the same batching API."""

    features: WeightSpaceFeatures
    targets: Tensor

    def __len__(self) -> int:
        return self.features.batch_size

    @property
    def spec(self) -> WeightSpaceSpec:
        return self.features.spec

    def __getitem__(self, i: int) -> tuple[WeightSpaceFeatures, Tensor]:
        return self.features[i], self.targets[i:i + 1]

    def batches(self, batch_size: int, shuffle: bool = True, generator: torch.Generator | None = None,
                drop_last: bool = False) -> Iterator[tuple[WeightSpaceFeatures, Tensor]]:
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            if drop_last and len(idx) < batch_size:
                break
            yield self.features[idx], self.targets[idx]


# =================================================================================================
# summaries
# =================================================================================================

HIST_BINS = 20


def accuracy_histogram(acc: np.ndarray, bins: int = HIST_BINS) -> list[int]:
    """Counts of accuracies in ``bins`` equal bins over [0, 1] (1.0 falls in the last bin)."""
    a = np.clip(np.asarray(acc, dtype=np.float64), 0.0, 1.0)
    counts, _ = np.histogram(a[np.isfinite(a)], bins=bins, range=(0.0, 1.0))
    return [int(c) for c in counts]


def zoo_info(root: str | os.PathLike) -> dict[str, Any]:
    """Counts and test-accuracy statistics (all checkpoints and final step), per activation, with a
    histogram of the final accuracies (:func:`accuracy_histogram`) and the share of nets left near
    chance (final accuracy below ``1.5 / classes``): a zoo that is mostly "trained or not" is bimodal."""
    z = read_zoo(root)
    if len(z) == 0:
        raise DataFormatError(f"{z.root}: no checkpoints (weights.npy and metrics.csv.gz have 0 rows)")
    m = z.metrics
    acts = m["config.activation"].astype(str)
    acc = np.asarray(m["test_accuracy"], dtype=np.float64)
    step = np.asarray(m["step"])
    final = step == step.max()
    nets = m["modeldir"].astype(str)
    out: dict[str, Any] = {"root": str(z.root), "checkpoints": len(z), "nets": len(set(nets.tolist())),
                           "params": z.num_params, "steps": sorted(set(step.tolist())), "by_activation": {}}
    classes = 10
    if z.meta:
        out["dataset"] = z.meta.get("dataset")
        out["seed"] = z.meta.get("seed")
        if isinstance(z.meta.get("recipe"), dict):
            out["recipe"] = z.meta["recipe"].get("name", "fast")
    near_chance = 1.5 / classes
    out["near_chance_below"] = near_chance
    out["hist_bins"] = HIST_BINS
    for a in sorted(set(acts.tolist())):
        sel = acts == a
        fa = acc[sel & final]
        out["by_activation"][a] = {
            "nets": len(set(nets[sel].tolist())), "checkpoints": int(sel.sum()),
            "acc_mean": float(acc[sel].mean()), "acc_std": float(acc[sel].std()),
            "final_acc_mean": float(fa.mean()) if fa.size else float("nan"),
            "final_acc_std": float(fa.std()) if fa.size else float("nan"),
            "final_acc_min": float(fa.min()) if fa.size else float("nan"),
            "final_acc_max": float(fa.max()) if fa.size else float("nan"),
            "final_near_chance": float((fa < near_chance).mean()) if fa.size else float("nan"),
            "final_hist": accuracy_histogram(fa),
        }
    return out


def plot_accuracy_histogram(info: dict[str, Any], path: str | os.PathLike) -> Path:
    """PNG of :func:`zoo_info`'s final-accuracy histograms, one bar series per activation (atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = int(info.get("hist_bins", HIST_BINS))
    edges = np.linspace(0.0, 1.0, bins + 1)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    acts = list(info["by_activation"].items())
    width = (edges[1] - edges[0]) / max(len(acts), 1)
    for j, (a, st) in enumerate(acts):
        ax.bar(edges[:-1] + j * width, st["final_hist"], width=width, align="edge", label=f"{a} ({st['nets']} nets)")
    ax.axvline(info.get("near_chance_below", 0.15), color="grey", lw=0.8, ls="--")
    ax.set_xlabel("final test accuracy")
    ax.set_ylabel("nets")
    title = f"{Path(str(info['root'])).name}: {info['nets']} nets"
    if info.get("recipe"):
        title += f", recipe {info['recipe']}"
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out
