"""Image sets: scikit-learn digits (embedded), MNIST, Fashion-MNIST, CIFAR-10 (+ grayscale).

Every loader returns an :class:`ImageSet`: ``images`` float32 ``(N, C, H, W)`` in ``[0, 1]``,
``labels`` int64 ``(N,)``, the class names and the set's name.

Where the files are looked up (first hit wins):

1. the ``root`` argument, else the ``MNFN_DATA`` environment variable, else ``~/.cache/mnfn/data``;
   inside it ``mnist/``, ``fashion-mnist/`` and ``cifar10/`` (the files may also lie in the folder
   itself);
2. for Fashion-MNIST also Debian's ``/usr/share/datasets/fashion-mnist``.

Formats read (no pickle is ever loaded):

* MNIST / Fashion-MNIST: the four standard IDX files, gzip or not (``train-images-idx3-ubyte.gz``,
  ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``);
* CIFAR-10: the official *binary version* (``cifar-10-binary.tar.gz`` or its extracted
  ``cifar-10-batches-bin/``; exact pixels, preferred when present) or a tar.xz of class-folder JPEGs
  ``{train,test}/<class>/NNNN.jpg`` (``cifar10-jpeg.tar.xz``). Decoding 60000 JPEGs takes a while, so
  the decoded uint8 arrays are cached as ``.npz`` in ``MNFN_CACHE`` (default ``~/.cache/mnfn``), never
  in the (possibly read-only) data folder.

Grayscale uses ITU-R BT.601 luma ``Y = 0.299 R + 0.587 G + 0.114 B``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..io import DataFormatError, atomic_path, load_npz, save_npz

__all__ = [
    "ImageSet",
    "DATASETS",
    "CLASSES",
    "MissingDataError",
    "load_images",
    "data_root",
    "cache_dir",
    "to_grayscale",
    "find_files",
    "download",
    "dataset_files",
    "sha256_file",
]

#: Names ``load_images`` accepts.
DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar10-gray")

CLASSES: dict[str, tuple[str, ...]] = {
    "digits": tuple(str(i) for i in range(10)),
    "mnist": tuple(str(i) for i in range(10)),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                      "Bag", "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}
CLASSES["cifar10-gray"] = CLASSES["cifar10"]

SPLITS = ("train", "test")

# Digits: a fixed seeded split of sklearn's 1797 images into 1397 train / 400 test.
DIGITS_TEST_SIZE = 400
DIGITS_SPLIT_SEED = 0

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR_BIN_TAR = "cifar-10-binary.tar.gz"
CIFAR_BIN_DIR = "cifar-10-batches-bin"
CIFAR_JPEG_TAR = "cifar10-jpeg.tar.xz"
CIFAR_BIN_FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
CIFAR_RECORD = 1 + 3 * 32 * 32

FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Canonical download sources: dataset -> (subfolder, [(file, sha256)], [base URLs tried in order]).
SOURCES: dict[str, tuple[str, list[tuple[str, str]], list[str]]] = {
    "mnist": ("mnist", [
        ("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        ("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        ("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        ("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    ], ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"]),
    "fashion-mnist": ("fashion-mnist", [
        ("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        ("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        ("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        ("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    ], ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"]),
    "cifar10": ("cifar10", [
        (CIFAR_BIN_TAR, "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),
    ], ["https://www.cs.toronto.edu/~kriz/"]),
}

#: Other known-good copies (the offline mirror in ../shared/data: same pixels, other gzip/JPEG bytes).
KNOWN_MIRROR_SHA256 = {
    "cfeddb84311ecf044fc6a5b0f6ee8a24d265d4e83e388400186eb114082f4209": "mnist/t10k-images-idx3-ubyte.gz",
    "e41c74e484045d39b462a7790a4af51301bd9b0b24f0154798d713ec68c45920": "mnist/t10k-labels-idx1-ubyte.gz",
    "db8f937d487057fb14a9f0fbe97f0bc8d311ab41b750d41e1ff37c43b9e55e19": "mnist/train-images-idx3-ubyte.gz",
    "51fc562b6747b666fbf6e84ce29d43c3cb5f9c388c664d43b33f02095313405a": "mnist/train-labels-idx1-ubyte.gz",
    "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa": "fashion-mnist/t10k-images-idx3-ubyte.gz",
    "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05": "fashion-mnist/t10k-labels-idx1-ubyte.gz",
    "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7": "fashion-mnist/train-images-idx3-ubyte.gz",
    "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056": "fashion-mnist/train-labels-idx1-ubyte.gz",
    "6254f53a1bc70afc08c46178959354e8597763b03706815cc50b5e2cdff16569": "cifar10/cifar10-jpeg.tar.xz",
}


class MissingDataError(DataFormatError, FileNotFoundError):
    """The files of an image set were not found; the message says what to put where."""


@dataclass(frozen=True)
class ImageSet:
    """Images ``(N, C, H, W)`` float32 in [0, 1], labels ``(N,)`` int64, class names, set name."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    name: str
    split: str = "train"

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.float32:
            raise ValueError(f"images must be float32 (N, C, H, W), got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (self.images.shape[0],) or self.labels.dtype != np.int64:
            raise ValueError(f"labels must be int64 ({self.images.shape[0]},), got {self.labels.dtype} {self.labels.shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def tensors(self):
        """``(images, labels)`` as torch tensors (sharing memory with the arrays)."""
        import torch

        return torch.from_numpy(self.images), torch.from_numpy(self.labels)


# --- folders -------------------------------------------------------------------------------------

def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root``, else ``$MNFN_DATA``, else ``~/.cache/mnfn/data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("MNFN_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "mnfn" / "data"


def cache_dir() -> Path:
    """User-writable cache: ``$MNFN_CACHE``, else ``~/.cache/mnfn``."""
    env = os.environ.get("MNFN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mnfn"


def _candidate_dirs(name: str, root: Path) -> list[Path]:
    sub = {"mnist": "mnist", "fashion-mnist": "fashion-mnist", "cifar10": "cifar10"}[name]
    dirs = [root / sub, root]
    if name == "fashion-mnist":
        dirs.append(FASHION_SYSTEM_DIR)
    return dirs


def _expected_text(name: str, root: Path) -> str:
    """The 'what to put where' part of a missing-data message."""
    if name in ("mnist", "fashion-mnist"):
        files = ", ".join(f"{a}.gz, {b}.gz" for a, b in IDX_FILES.values())
        where = f"{root / name}/"
        extra = f" (or {FASHION_SYSTEM_DIR}/, Debian package dataset-fashion-mnist)" if name == "fashion-mnist" else ""
        return f"put {files} into {where}{extra}"
    return (f"put {CIFAR_BIN_TAR} (or its extracted {CIFAR_BIN_DIR}/) or {CIFAR_JPEG_TAR} "
            f"(class-folder JPEGs train/<class>/NNNN.jpg, test/<class>/NNNN.jpg) into {root / 'cifar10'}/")


def _missing(name: str, root: Path, detail: str) -> MissingDataError:
    dl = "" if name == "digits" else f"; with a network run `mnfn data download --dataset {name} --data {root}`"
    return MissingDataError(
        f"{name}: {detail}. Data folder is {root} (from --data, else $MNFN_DATA, else "
        f"~/.cache/mnfn/data): {_expected_text(name, root)}{dl}"
    )


def find_files(name: str, root: str | os.PathLike | None = None) -> dict[str, Path]:
    """Locate the source files of ``name`` (``mnist``, ``fashion-mnist``, ``cifar10``).

    Returns a dict: for IDX sets ``{"train-images-idx3-ubyte": path, ...}`` (all four or raises);
    for CIFAR-10 ``{"binary": path}`` (tarball or folder) or ``{"jpeg": path}``.
    """
    base = "cifar10" if name == "cifar10-gray" else name
    r = data_root(root)
    if base in ("mnist", "fashion-mnist"):
        for d in _candidate_dirs(base, r):
            found: dict[str, Path] = {}
            for stem in (s for pair in IDX_FILES.values() for s in pair):
                for cand in (d / f"{stem}.gz", d / stem, d / stem.replace("-idx", ".idx")):
                    if cand.is_file():
                        found[stem] = cand
                        break
            if len(found) == 4:
                return found
        raise _missing(base, r, "IDX files not found")
    if base == "cifar10":
        for d in _candidate_dirs(base, r):
            if (d / CIFAR_BIN_DIR).is_dir():
                return {"binary": d / CIFAR_BIN_DIR}
            if d.name == CIFAR_BIN_DIR and (d / "test_batch.bin").is_file():
                return {"binary": d}
            if (d / CIFAR_BIN_TAR).is_file():
                return {"binary": d / CIFAR_BIN_TAR}
            if (d / CIFAR_JPEG_TAR).is_file():
                return {"jpeg": d / CIFAR_JPEG_TAR}
        raise _missing(base, r, "no CIFAR-10 files found")
    raise ValueError(f"unknown image set {name!r}; choose from {DATASETS}")


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


def _load_digits(split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    n = len(d.target)
    perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(n)
    idx = np.sort(perm[:DIGITS_TEST_SIZE] if split == "test" else perm[DIGITS_TEST_SIZE:])
    if limit is not None:
        idx = idx[:limit]
    # sklearn's digits are 8x8 counts 0..16 (float64).
    imgs = (d.images[idx] / 16.0).astype(np.float32)[:, None]
    return imgs, d.target[idx].astype(np.int64)


def to_grayscale(images: np.ndarray) -> np.ndarray:
    """``(N, 3, H, W)`` -> ``(N, 1, H, W)`` with ITU-R BT.601 luma; one-channel input is returned as is."""
    if images.shape[1] == 1:
        return images
    if images.shape[1] != 3:
        raise ValueError(f"grayscale needs 1 or 3 channels, got {images.shape[1]}")
    w = np.array([0.299, 0.587, 0.114], dtype=np.float32).reshape(1, 3, 1, 1)
    return (images.astype(np.float32) * w).sum(1, keepdims=True, dtype=np.float32)


def load_images(name: str, split: str = "train", root: str | os.PathLike | None = None, grayscale: bool = False,
                limit: int | None = None, cache: bool = True) -> ImageSet:
    """Load an image set as float32 ``(N, C, H, W)`` in [0, 1].

    ``name``: one of :data:`DATASETS` (``cifar10-gray`` = ``cifar10`` with ``grayscale=True``);
    ``split``: ``train`` or ``test``; ``limit``: read only the first ``limit`` images (fast: IDX and
    binary files are read only that far, JPEGs only that many are decoded); ``cache``: use/write the
    decoded-JPEG cache. Missing files raise :class:`MissingDataError` saying what to put where.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown image set {name!r}; choose from {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    if name == "digits":
        imgs_f, labels = _load_digits(split, limit)
        images = imgs_f
    else:
        if name in ("mnist", "fashion-mnist"):
            raw, labels = _load_idx_set(name, split, root, limit)
        else:
            found = find_files("cifar10", root)
            if "binary" in found:
                raw, labels = _load_cifar_binary(found["binary"], split, limit)
            else:
                raw, labels = _load_cifar_jpeg(found["jpeg"], split, limit, cache)
        images = raw.astype(np.float32) / np.float32(255.0)
    if grayscale or name == "cifar10-gray":
        images = to_grayscale(images)
    return ImageSet(np.ascontiguousarray(images, dtype=np.float32), np.ascontiguousarray(labels, dtype=np.int64),
                    CLASSES[name], name, split)


# --- download / verification -------------------------------------------------------------------

def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def dataset_files(name: str) -> tuple[str, list[tuple[str, str]], list[str]]:
    """``(subfolder, [(file, sha256)], [mirror URLs])`` of the canonical download of ``name``."""
    base = "cifar10" if name == "cifar10-gray" else name
    if base not in SOURCES:
        raise ValueError(f"nothing to download for {name!r} (digits ships with scikit-learn); "
                         f"downloadable: {', '.join(SOURCES)}")
    return SOURCES[base]


def download(name: str, root: str | os.PathLike | None = None, force: bool = False, timeout: float = 60.0,
             log: Callable[[str], None] = print) -> list[Path]:
    """Fetch the canonical files of ``name`` into ``root/<name>/``, checking each sha256.

    Files already present with the right checksum are kept. Each download is written atomically
    and renamed into place only after its sha256 matched. Without a network this raises
    :class:`MissingDataError` listing the files to fetch by hand and where to put them.
    """
    sub, files, mirrors = dataset_files(name)
    r = data_root(root)
    dest = r / sub
    out: list[Path] = []
    for fname, sha in files:
        target = dest / fname
        if target.is_file() and not force:
            if sha256_file(target) == sha:
                log(f"{target}: present, sha256 ok")
                out.append(target)
                continue
            log(f"{target}: present but sha256 differs; downloading again")
        errors = []
        for base in mirrors:
            url = base + fname
            try:
                log(f"downloading {url}")
                with atomic_path(target) as tmp:
                    h = hashlib.sha256()
                    with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as fh:
                        for block in iter(lambda: resp.read(1 << 20), b""):
                            h.update(block)
                            fh.write(block)
                    if h.hexdigest() != sha:
                        raise DataFormatError(f"{url}: sha256 {h.hexdigest()} != expected {sha}")
                log(f"{target}: sha256 ok")
                out.append(target)
                break
            except (urllib.error.URLError, OSError, DataFormatError, ValueError) as exc:
                errors.append(f"{url}: {exc}")
        else:
            manual = "; ".join(f"{f} (sha256 {s}) from {mirrors[0]}{f}" for f, s in files)
            raise MissingDataError(
                f"{name}: could not download {fname} ({' | '.join(errors)}). Without a network, fetch by hand "
                f"and put into {dest}/: {manual}"
            )
    return out
