"""Where the files of an image set are: lookup, the cache folder, download with checksums.

Where the files are looked up (first hit wins):

1. the ``root`` argument, else the ``MNFN_DATA`` environment variable, else ``~/.cache/mnfn/data``;
   inside it ``mnist/``, ``fashion-mnist/`` and ``cifar10/`` (the files may also lie in the folder
   itself);
2. for Fashion-MNIST also Debian's ``/usr/share/datasets/fashion-mnist``.

The file names searched for: the four standard IDX files of MNIST / Fashion-MNIST, gzip or not
(``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
``t10k-labels-idx1-ubyte.gz``); for CIFAR-10 the official *binary version*
(``cifar-10-binary.tar.gz`` or its extracted ``cifar-10-batches-bin/``; preferred when present),
else the tar.xz of class-folder JPEGs (``cifar10-jpeg.tar.xz``). The decoded-JPEG cache lies in
:func:`cache_dir` (``MNFN_CACHE``, default ``~/.cache/mnfn``), never in the (possibly read-only)
data folder.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from ...io import DataFormatError, atomic_path
from .names import DATASETS

__all__ = [
    "MissingDataError",
    "data_root",
    "cache_dir",
    "find_files",
    "download",
    "dataset_files",
    "sha256_file",
]

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR_BIN_TAR = "cifar-10-binary.tar.gz"
CIFAR_BIN_DIR = "cifar-10-batches-bin"
CIFAR_JPEG_TAR = "cifar10-jpeg.tar.xz"

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
