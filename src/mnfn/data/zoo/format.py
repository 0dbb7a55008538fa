"""The zoo format: the files of a zoo folder, read and written, and rows <-> weight-space features.

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
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ...io import DataFormatError, atomic_open, atomic_path, read_json, write_json
from ...weightspace import LayerSpec, WeightSpaceError, WeightSpaceFeatures, WeightSpaceSpec

__all__ = [
    "METRIC_COLUMNS",
    "ZOO_DATASETS",
    "LayoutEntry",
    "Zoo",
    "zoo_padding",
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


def zoo_padding(meta: dict[str, Any] | None) -> int:
    """The conv padding of a zoo's nets: its recipe's (zoos made here; 1 before recipes named it),
    or 0 for a zoo without ``zoo.json`` (the public Small CNN Zoo used Keras ``valid`` padding)."""
    if meta is None:
        return 0
    recipe = meta.get("recipe")
    if isinstance(recipe, dict):
        return int(recipe.get("padding", 1))
    return 1
