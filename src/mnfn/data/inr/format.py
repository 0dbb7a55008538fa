"""INR set folders on disk: ``meta.json``, chunk files and ``index.csv``, checked on every read.

Storage of a set (a folder, written by :func:`make_inr_dataset`, :func:`merge_inr_datasets` and
:func:`import_nfn`)::

    meta.json            format, dataset, architecture, conventions, the fitting plan and settings
    chunks/<split>-<k>.npz   one per chunk of up to ``batch`` nets: image_index, label, psnr, steps,
                         weight_1..weight_L (n, out, in), bias_1..bias_L (n, out), split, chunk
    index.csv            row, split, image_index, label, psnr, steps, chunk, pos (one line per net)

Every file is written atomically; chunks are plain ``.npz`` read with ``allow_pickle=False``.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import Tensor

from ...io import DataFormatError, atomic_open, load_npz, npz_shapes, read_json, save_npz
from ...weightspace import WeightSpaceSpec, siren_spec

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INR_DATASETS",
    "NFN_PREFIX",
    "MakeSummary",
    "read_meta",
    "read_index",
    "load_chunk",
    "write_index",
    "summarize",
]

FORMAT = "mnfn-inr"
FORMAT_VERSION = 1
#: Image sets ``mnfn inr make`` fits (names of :func:`mnfn.data.images.load_images`).
INR_DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar10-gray")
NFN_PREFIX = "randinit_smaller"
SPLITS = ("train", "test")
_SPLIT_CODE = {"train": 0, "test": 1}
# Train/test sizes of the full sets: NFN indices run over train + test concatenated, so the
# test offset must be known even for a folder holding only a few nets.
KNOWN_SPLIT_SIZES: dict[str, dict[str, int]] = {
    "mnist": {"train": 60000, "test": 10000},
    "fashion-mnist": {"train": 60000, "test": 10000},
    "cifar10": {"train": 50000, "test": 10000},
    "cifar10-gray": {"train": 50000, "test": 10000},
    "digits": {"train": 1397, "test": 400},
}
CONVENTIONS = {
    "coords": "input (y, x) = (linspace(-1,1,H)[row], linspace(-1,1,W)[col]), pixels row-major",
    "pixels": "network output = 2 * image - 1, image in [0, 1]; channel k -> output k",
    "psnr": "10*log10(2**2 / MSE) on the [-1, 1] scale (= 10*log10(1/MSE) on [0, 1]), MSE over pixels and channels",
    "activation": "sin(w0 * (W h + b)) on every hidden layer, linear output",
    "init": "W1 ~ U(-1/n_in, 1/n_in); later W ~ U(-sqrt(6/n_in)/w0, +sqrt(6/n_in)/w0); b ~ U(-1/sqrt(n_in), 1/sqrt(n_in))",
    "net_seed": "SeedSequence([seed, split (train 0, test 1), image_index]) -> torch.Generator",
}


# --- storage ---------------------------------------------------------------------------------

INDEX_COLUMNS = ("row", "split", "image_index", "label", "psnr", "steps", "chunk", "pos")
_CHUNK_RE = re.compile(r"^(train|test)-(\d{5,})\.npz$")


def chunk_name(split: str, k: int) -> str:
    return f"{split}-{k:05d}.npz"


def read_meta(root: str | Path) -> dict[str, Any]:
    """``meta.json`` of an INR set, checked for the format; errors name the file."""
    path = Path(root) / "meta.json"
    if not path.exists():
        raise DataFormatError(f"{path}: file not found; {Path(root)} is not an INR set folder "
                              "(make one with `mnfn inr make` or `mnfn inr import-nfn`)")
    meta = read_json(path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataFormatError(f"{path}: not an {FORMAT} meta file")
    if meta.get("version") != FORMAT_VERSION:
        raise DataFormatError(f"{path}: format version {meta.get('version')}, this code reads {FORMAT_VERSION}")
    for key in ("dataset", "image_shape", "siren", "classes"):
        if key not in meta:
            raise DataFormatError(f"{path}: missing key {key!r}")
    _check_meta_types(path, meta)
    return meta


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_meta_types(path: Path, meta: dict[str, Any]) -> None:
    """The fields that build the architecture and label the nets must have the right types."""
    s = meta["siren"]
    if not (isinstance(s, dict) and _is_int(s.get("hidden")) and s["hidden"] > 0 and _is_int(s.get("depth"))
            and s["depth"] > 0 and isinstance(s.get("w0"), (int, float)) and not isinstance(s.get("w0"), bool)
            and math.isfinite(s["w0"])):
        raise DataFormatError(f"{path}: 'siren' must be {{hidden: int > 0, depth: int > 0, w0: number}}, got {s!r}")
    shape = meta["image_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_int(v) and v > 0 for v in shape)):
        raise DataFormatError(f"{path}: 'image_shape' must be [C, H, W] (positive integers), got {shape!r}")
    classes = meta["classes"]
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise DataFormatError(f"{path}: 'classes' must be a non-empty list of class names, got {classes!r}")


def _meta_spec(meta: dict[str, Any]) -> WeightSpaceSpec:
    s = meta["siren"]
    return siren_spec(int(meta["image_shape"][0]), hidden=int(s["hidden"]), depth=int(s["depth"]), w0=float(s["w0"]))


#: The most nets one chunk file may hold (``mnfn inr make --batch`` writes 64 by default).
MAX_CHUNK_NETS = 1 << 16


def load_chunk(path: str | Path, spec: WeightSpaceSpec) -> dict[str, np.ndarray]:
    """Read and check one chunk file against ``spec``; every problem raises an error naming the file."""
    path = Path(path)
    L = spec.num_layers
    req = ("image_index", "label", "psnr", "steps", "split") + tuple(
        f"{kind}_{i + 1}" for i in range(L) for kind in ("weight", "bias"))
    # Shapes from the member headers before any data is read: a member that claims gigabytes (a
    # zip bomb, a wrong file) is refused without allocating it.
    heads = npz_shapes(path)
    idx_shape = heads.get("image_index", ((0,), None))[0]
    n_head = idx_shape[0] if len(idx_shape) == 1 else 0
    if n_head > MAX_CHUNK_NETS:
        raise DataFormatError(f"{path}: image_index announces {n_head:,} nets; a chunk holds at most {MAX_CHUNK_NETS:,}")
    for i, layer in enumerate(spec.layers):
        for kind, shape in (("weight", (n_head, layer.n_out, layer.n_in)), ("bias", (n_head, layer.n_out))):
            key = f"{kind}_{i + 1}"
            if key in heads and heads[key][0] != shape:
                raise DataFormatError(f"{path}: {key} has shape {heads[key][0]}, expected {shape} "
                                      f"for [{spec.describe()}]")
    for key, (shape, _) in heads.items():
        if key not in req and int(np.prod(shape, dtype=np.int64)) > 16 * MAX_CHUNK_NETS:
            raise DataFormatError(f"{path}: unexpected array {key} of shape {shape}")
        if key in ("label", "psnr", "steps") and shape != (n_head,):
            raise DataFormatError(f"{path}: {key} has shape {shape}, expected ({n_head},)")
    arrs = load_npz(path, required=req)
    n = arrs["image_index"].shape[0] if arrs["image_index"].ndim == 1 else -1
    if n < 0:
        raise DataFormatError(f"{path}: image_index must be 1-D, got shape {arrs['image_index'].shape}")
    for k in ("label", "psnr", "steps"):
        if arrs[k].shape != (n,):
            raise DataFormatError(f"{path}: {k} has shape {arrs[k].shape}, expected ({n},)")
    for i, layer in enumerate(spec.layers):
        for kind, shape in (("weight", (n, layer.n_out, layer.n_in)), ("bias", (n, layer.n_out))):
            a = arrs[f"{kind}_{i + 1}"]
            if a.shape != shape:
                raise DataFormatError(f"{path}: {kind}_{i + 1} has shape {a.shape}, expected {shape} "
                                      f"for [{spec.describe()}]")
            if a.dtype != np.float32:
                raise DataFormatError(f"{path}: {kind}_{i + 1} has dtype {a.dtype}, expected float32")
            if not np.isfinite(a).all():
                raise DataFormatError(f"{path}: {kind}_{i + 1} has NaN/Inf values")
    if str(arrs["split"]) not in SPLITS:
        raise DataFormatError(f"{path}: split {arrs['split']!r} is not train or test")
    return arrs


def _save_chunk(path: Path, split: str, k: int, image_index: np.ndarray, label: np.ndarray, psnr_db: np.ndarray,
                steps: np.ndarray, params: Sequence[Tensor | np.ndarray]) -> None:
    arrays: dict[str, np.ndarray] = {
        "image_index": np.asarray(image_index, dtype=np.int64),
        "label": np.asarray(label, dtype=np.int64),
        "psnr": np.asarray(psnr_db, dtype=np.float32),
        "steps": np.asarray(steps, dtype=np.int64),
        "split": np.array(split),
        "chunk": np.array(k, dtype=np.int64),
    }
    for i in range(len(params) // 2):
        arrays[f"weight_{i + 1}"] = np.ascontiguousarray(np.asarray(params[2 * i], dtype=np.float32))
        arrays[f"bias_{i + 1}"] = np.ascontiguousarray(np.asarray(params[2 * i + 1], dtype=np.float32))
    save_npz(path, **arrays)


def _chunk_files(root: Path) -> list[Path]:
    d = root / "chunks"
    if not d.is_dir():
        return []
    files = [p for p in d.iterdir() if _CHUNK_RE.match(p.name)]
    return sorted(files, key=lambda p: (_SPLIT_CODE[_CHUNK_RE.match(p.name).group(1)],  # type: ignore[union-attr]
                                        int(_CHUNK_RE.match(p.name).group(2))))  # type: ignore[union-attr]


def write_index(root: str | Path, spec: WeightSpaceSpec | None = None) -> list[dict[str, Any]]:
    """Rebuild ``index.csv`` from the chunk files present (train first, then test, by image index)."""
    root = Path(root)
    spec = spec or _meta_spec(read_meta(root))
    rows: list[dict[str, Any]] = []
    for path in _chunk_files(root):
        a = load_chunk(path, spec)
        split = str(a["split"])
        if not path.name.startswith(split + "-"):
            raise DataFormatError(f"{path}: holds split {split!r} but its name says otherwise")
        for pos in range(a["image_index"].shape[0]):
            rows.append(dict(split=split, image_index=int(a["image_index"][pos]), label=int(a["label"][pos]),
                             psnr=float(a["psnr"][pos]), steps=int(a["steps"][pos]), chunk=path.name, pos=pos))
    rows.sort(key=lambda r: (_SPLIT_CODE[r["split"]], r["image_index"]))
    seen: dict[tuple[str, int], str] = {}
    for r in rows:
        key = (r["split"], r["image_index"])
        if key in seen:
            raise DataFormatError(f"{root / 'chunks'}: {r['split']} image {r['image_index']} is in both "
                                  f"{seen[key]} and {r['chunk']}")
        seen[key] = r["chunk"]
    with atomic_open(root / "index.csv", "w") as fh:
        wr = csv.writer(fh)
        wr.writerow(INDEX_COLUMNS)
        for i, r in enumerate(rows):
            r["row"] = i
            wr.writerow([i, r["split"], r["image_index"], r["label"], f"{r['psnr']:.6g}", r["steps"], r["chunk"],
                         r["pos"]])
    return rows


def read_index(root: str | Path) -> list[dict[str, Any]]:
    """Rows of ``index.csv`` (typed); errors name the file and line."""
    path = Path(root) / "index.csv"
    if not path.exists():
        raise DataFormatError(f"{path}: file not found; finish the run (rerun `mnfn inr make` with the same "
                              "arguments: it resumes) or rebuild it with `mnfn inr merge`")
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            _read_index_rows(path, fh, rows)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataFormatError(f"{path}: not a readable CSV ({type(exc).__name__}: {exc})") from None
    return rows


def _read_index_rows(path: Path, fh: Any, rows: list[dict[str, Any]]) -> None:
    rd = csv.reader(fh)
    header = next(rd, None)
    if header is None or tuple(header) != INDEX_COLUMNS:
        raise DataFormatError(f"{path}: header {header} is not {list(INDEX_COLUMNS)}"[:500])
    for ln, rec in enumerate(rd, start=2):
        try:
            if len(rec) != len(INDEX_COLUMNS) or rec[1] not in SPLITS:
                raise ValueError("wrong field count or split")
            if not _CHUNK_RE.match(rec[6]):
                raise ValueError(f"chunk {rec[6]!r} is not a chunk file name like train-00000.npz")
            rows.append(dict(row=int(rec[0]), split=rec[1], image_index=int(rec[2]), label=int(rec[3]),
                             psnr=float(rec[4]), steps=int(rec[5]), chunk=rec[6], pos=int(rec[7])))
        except ValueError as exc:
            raise DataFormatError(f"{path}: line {ln} is malformed ({exc}): {rec}"[:500]) from None


@dataclass
class MakeSummary:
    """What a make/merge/import left in a folder."""

    root: str
    nets: int
    median_psnr: float
    missed: int
    target_psnr: float | None
    fitted_now: int = 0
    reused: int = 0
    seconds: float = 0.0
    chunks_done: int = 0
    chunks_expected: int | None = None
    mean_steps: float = float("nan")
    unknown_psnr: int = 0

    @property
    def complete(self) -> bool:
        return self.chunks_expected is None or self.chunks_done >= self.chunks_expected

    def lines(self) -> list[str]:
        out = [f"INR set: {self.root}: {self.nets} nets in {self.chunks_done}"
               + (f" of {self.chunks_expected}" if self.chunks_expected is not None else "") + " chunks"]
        if self.fitted_now or self.reused:
            rate = self.fitted_now / self.seconds if self.seconds > 0 else float("nan")
            out.append(f"fitted now: {self.fitted_now} nets in {self.seconds:.1f} s ({rate:.1f} INRs/s); "
                       f"kept from earlier runs: {self.reused}")
        out.append(f"median PSNR: {self.median_psnr:.2f} dB")
        if self.target_psnr is not None:
            out.append(f"missed target ({self.target_psnr:g} dB): {self.missed} of {self.nets - self.unknown_psnr}")
        if self.unknown_psnr:
            out.append(f"PSNR not known for {self.unknown_psnr} nets (imported without --psnr)")
        if not math.isnan(self.mean_steps):
            out.append(f"mean Adam steps: {self.mean_steps:.1f}")
        if not self.complete:
            out.append("incomplete: rerun the same command to resume, run the other shards, or merge shard folders")
        return out


def summarize(root: str | Path, rows: list[dict[str, Any]] | None = None) -> MakeSummary:
    """Summary of an INR set folder from its index."""
    root = Path(root)
    meta = read_meta(root)
    rows = read_index(root) if rows is None else rows
    ps = np.array([r["psnr"] for r in rows], dtype=np.float64)
    target = meta.get("fit", {}).get("target_psnr") if meta.get("fit") else None
    finite = ps[np.isfinite(ps)]
    steps = np.array([r["steps"] for r in rows if r["steps"] >= 0], dtype=np.float64)
    return MakeSummary(
        root=str(root), nets=len(rows), median_psnr=float(np.median(finite)) if finite.size else float("nan"),
        missed=int((finite < target).sum()) if target is not None else 0, target_psnr=target,
        chunks_done=len({r["chunk"] for r in rows}), chunks_expected=meta.get("chunks_expected"),
        mean_steps=float(steps.mean()) if steps.size else float("nan"), unknown_psnr=int((~np.isfinite(ps)).sum()))


def _check_row(path: Path, arrs: dict[str, np.ndarray], r: dict[str, Any]) -> None:
    pos = r["pos"]
    n = arrs["image_index"].shape[0]
    if not 0 <= pos < n or int(arrs["image_index"][pos]) != r["image_index"] or int(arrs["label"][pos]) != r["label"] \
            or str(arrs["split"]) != r["split"]:
        raise DataFormatError(f"{path}: position {pos} does not hold {r['split']} image {r['image_index']} "
                              f"(label {r['label']}) as index.csv says; rebuild the index with `mnfn inr merge`")
