"""CIFAR-10: the binary-version reader and the JPEG-archive reader with its decoded cache.

Two formats are read (no pickle is ever loaded):

* the official *binary version* (``cifar-10-binary.tar.gz`` or its extracted
  ``cifar-10-batches-bin/``; exact pixels, preferred when present);
* a tar.xz of class-folder JPEGs ``{train,test}/<class>/NNNN.jpg`` (``cifar10-jpeg.tar.xz``).
  Decoding 60000 JPEGs takes a while, so the decoded uint8 arrays are cached as ``.npz`` in
  ``MNFN_CACHE`` (default ``~/.cache/mnfn``), never in the (possibly read-only) data folder.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import Iterable

import numpy as np

from ...io import DataFormatError, load_npz, save_npz
from .files import cache_dir
from .names import CLASSES

__all__: list[str] = []

CIFAR_BIN_FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
CIFAR_RECORD = 1 + 3 * 32 * 32


def _read_cifar_records(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    if len(data) % CIFAR_RECORD:
        raise DataFormatError(f"{source}: {len(data)} bytes is not a whole number of {CIFAR_RECORD}-byte records; truncated?")
    if not data:
        raise DataFormatError(f"{source}: holds no images (empty batch files)")
    rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = rec[:, 0].astype(np.int64)
    if labels.size and labels.max() > 9:
        raise DataFormatError(f"{source}: label {labels.max()} out of range 0..9; not CIFAR-10 binary?")
    # The binary version stores each image as R, G, B planes of 32x32: already (C, H, W).
    return rec[:, 1:].reshape(-1, 3, 32, 32), labels


def _load_cifar_binary(path: Path, split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    names = CIFAR_BIN_FILES[split]
    need = None if limit is None else int(limit) * CIFAR_RECORD
    chunks: list[bytes] = []
    got = 0

    def take(blob: bytes) -> bool:
        nonlocal got
        if need is not None:
            blob = blob[: need - got]
        chunks.append(blob)
        got += len(blob)
        return need is not None and got >= need

    if path.is_dir():
        for n in names:
            f = path / n
            if not f.is_file():
                raise DataFormatError(f"{path}: missing {n} (the binary CIFAR-10 folder needs {', '.join(names)})")
            if take(f.read_bytes()):
                break
    else:
        try:
            with tarfile.open(path, "r:gz") as tar:
                members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
                for n in names:
                    if n not in members:
                        raise DataFormatError(f"{path}: archive has no {n}; not the CIFAR-10 binary version?")
                    fh = tar.extractfile(members[n])
                    assert fh is not None
                    if take(fh.read()):
                        break
        except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
            raise DataFormatError(f"{path}: cannot read tar.gz ({type(exc).__name__}: {exc}); truncated or corrupt?") from None
    return _read_cifar_records(b"".join(chunks), str(path))


def _iter_tar_bytes(data: bytes, source: Path):
    """Yield ``(name, payload)`` for the regular files of an uncompressed tar held in memory.

    A direct header walk: ``tarfile`` spends seconds on 60000 tiny members. Handles ustar name
    prefixes, GNU long names (``L``) and pax ``path=`` records.
    """
    off, n = 0, len(data)
    long_name: str | None = None
    while off + 512 <= n:
        hdr = data[off:off + 512]
        if hdr == b"\0" * 512:
            break
        try:
            size = int(hdr[124:136].rstrip(b"\0 ").decode() or "0", 8)
        except ValueError:
            raise DataFormatError(f"{source}: corrupt tar header at byte {off}") from None
        flag = hdr[156:157]
        name = hdr[0:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        if hdr[257:262] == b"ustar":
            prefix = hdr[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
            if prefix:
                name = prefix + "/" + name
        start = off + 512
        end = start + size
        if end > n:
            raise DataFormatError(f"{source}: truncated tar: member {name!r} needs {size} bytes past byte {start}")
        payload = data[start:end]
        off = start + (size + 511) // 512 * 512
        if flag == b"L":
            long_name = payload.split(b"\0", 1)[0].decode("utf-8", "replace")
            continue
        if flag == b"x":
            for rec in payload.decode("utf-8", "replace").split("\n"):
                if " path=" in rec:
                    long_name = rec.split(" path=", 1)[1]
            continue
        if long_name is not None:
            name, long_name = long_name, None
        if flag in (b"0", b"\0"):
            yield name, payload


def _decompress_xz(path: Path) -> bytes:
    import lzma

    try:
        with lzma.open(path) as fh:
            return fh.read()
    except (lzma.LZMAError, EOFError, OSError) as exc:
        raise DataFormatError(f"{path}: cannot decompress xz ({type(exc).__name__}: {exc}); truncated or corrupt?") from None


def _jpeg_members(path: Path, split: str) -> list[tuple[tuple, int, bytes]]:
    """All ``split/<class>/<file>.jpg`` members as (sort key, label, bytes), in canonical order.

    Canonical order interleaves the classes (sorted by file number, then class index), so the first
    ``limit`` images cover all classes; it does not depend on the order inside the archive.
    """
    classes = CLASSES["cifar10"]
    out = []
    for name, payload in _iter_tar_bytes(_decompress_xz(path), path):
        parts = Path(name).parts
        if len(parts) < 3 or parts[-3] != split or parts[-2] not in classes:
            continue
        stem = Path(parts[-1]).stem
        label = classes.index(parts[-2])
        out.append(((int(stem) if stem.isdigit() else 1 << 62, stem, label), label, payload))
    if not out:
        raise DataFormatError(f"{path}: no {split}/<class>/*.jpg members (classes {', '.join(classes)})")
    out.sort(key=lambda t: t[0])
    return out


def _decode_jpegs(blobs: Iterable[bytes], source: Path) -> np.ndarray:
    from PIL import Image  # Pillow ships with matplotlib

    arrs = []
    for i, b in enumerate(blobs):
        try:
            with Image.open(io.BytesIO(b)) as im:
                a = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except Exception as exc:  # PIL raises several types for bad data
            raise DataFormatError(f"{source}: JPEG number {i} cannot be decoded ({exc})") from None
        if a.shape != (32, 32, 3):
            raise DataFormatError(f"{source}: JPEG number {i} has shape {a.shape}, expected 32x32 RGB")
        arrs.append(a)
    return np.stack(arrs).transpose(0, 3, 1, 2).copy()


def _jpeg_cache_path(path: Path, split: str) -> Path:
    st = path.stat()
    # Key on the source's size and mtime so a replaced archive is decoded afresh.
    return cache_dir() / "images" / f"cifar10-jpeg-{split}-{st.st_size}-{int(st.st_mtime)}.npz"


def _load_cifar_jpeg(path: Path, split: str, limit: int | None, use_cache: bool) -> tuple[np.ndarray, np.ndarray]:
    cpath = _jpeg_cache_path(path, split)
    if use_cache and cpath.is_file():
        try:
            z = load_npz(cpath, required=("images", "labels"))
            imgs, labs = z["images"], z["labels"]
            if limit is not None:
                imgs, labs = imgs[:limit], labs[:limit]
            return imgs, labs.astype(np.int64)
        except DataFormatError:
            pass  # a broken cache is rebuilt below
    members = _jpeg_members(path, split)
    if limit is not None and limit < len(members):
        members = members[:limit]
        imgs = _decode_jpegs((m[2] for m in members), path)
        return imgs, np.array([m[1] for m in members], dtype=np.int64)
    imgs = _decode_jpegs((m[2] for m in members), path)
    labs = np.array([m[1] for m in members], dtype=np.int64)
    if use_cache:
        try:
            save_npz(cpath, images=imgs, labels=labs)
        except OSError:
            pass  # an unwritable cache only costs time
    return imgs, labs
