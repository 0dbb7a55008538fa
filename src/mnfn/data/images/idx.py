"""MNIST / Fashion-MNIST: the IDX reader (no pickle is ever loaded).

The four standard IDX files, gzip or not (``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``);
:func:`read_idx` reads one, bounded by what the file really holds.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from ...io import DataFormatError
from .files import IDX_FILES, find_files
from .names import CLASSES

__all__: list[str] = []


# --- readers -------------------------------------------------------------------------------------

def _open_maybe_gz(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


#: The largest IDX payload read (MNIST's training images are 47 MB): a header may announce any size.
MAX_IDX_BYTES = 1 << 30


def _read_exact(fh, n: int, path: Path, what: str) -> bytes:
    """Exactly ``n`` bytes, read in bounded pieces: a header that announces more than the file holds
    fails when the data runs out, having allocated only what was really there."""
    parts: list[bytes] = []
    got = 0
    try:
        while got < n:
            piece = fh.read(min(n - got, 1 << 24))
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
    except (EOFError, OSError, gzip.BadGzipFile) as exc:
        raise DataFormatError(f"{path}: cannot read {what} ({type(exc).__name__}: {exc}); truncated or corrupt?") from None
    if got != n:
        raise DataFormatError(f"{path}: truncated: expected {n} bytes of {what}, got {got}")
    return b"".join(parts)


def read_idx(path: str | os.PathLike, limit: int | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes (magic ``0x0000 08 nd``), gzip or plain; first ``limit`` items."""
    path = Path(path)
    with _open_maybe_gz(path) as fh:
        head = _read_exact(fh, 4, path, "the IDX header")
        zero, dtype_code, ndim = struct.unpack(">HBB", head)
        if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 4:
            raise DataFormatError(f"{path}: not an unsigned-byte IDX file (header {head.hex()})")
        dims = list(struct.unpack(f">{ndim}I", _read_exact(fh, 4 * ndim, path, "the IDX dimensions")))
        if limit is not None:
            dims[0] = min(dims[0], int(limit))
        n = int(np.prod(dims, dtype=np.int64))
        if n > MAX_IDX_BYTES:
            raise DataFormatError(f"{path}: the header announces {tuple(dims)} = {n:,} bytes, more than the "
                                  f"{MAX_IDX_BYTES:,} an image or label file may hold")
        if not isinstance(fh, gzip.GzipFile) and path.stat().st_size < 4 + 4 * ndim + n:
            raise DataFormatError(f"{path}: truncated: the header announces {tuple(dims)} ({n:,} bytes) but the "
                                  f"file has {path.stat().st_size:,} bytes")
        data = _read_exact(fh, n, path, f"{dims[0]} items")
        if limit is None:
            try:
                extra = fh.read(1)
            except (EOFError, OSError, gzip.BadGzipFile) as exc:
                raise DataFormatError(f"{path}: cannot read past the items ({type(exc).__name__}: {exc}); "
                                      "corrupt?") from None
            if extra:
                raise DataFormatError(f"{path}: data continues past the {tuple(dims)} items the header announces; "
                                      "wrong header dimensions or not an IDX file?")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _load_idx_set(name: str, split: str, root: str | os.PathLike | None, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    files = find_files(name, root)
    img_stem, lab_stem = IDX_FILES[split]
    images = read_idx(files[img_stem], limit)
    labels = read_idx(files[lab_stem], limit)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataFormatError(
            f"{files[img_stem]} / {files[lab_stem]}: {images.shape} images do not match {labels.shape} labels"
        )
    if len(images) == 0:
        raise DataFormatError(f"{files[img_stem]}: holds no images")
    if labels.max() >= len(CLASSES[name]):
        raise DataFormatError(f"{files[lab_stem]}: label {int(labels.max())} out of range 0..{len(CLASSES[name]) - 1}")
    return images[:, None], labels.astype(np.int64)
