"""Image sets: scikit-learn digits (embedded), MNIST, Fashion-MNIST, CIFAR-10 (+ grayscale).

Every loader returns an :class:`ImageSet`: ``images`` float32 ``(N, C, H, W)`` in ``[0, 1]``,
``labels`` int64 ``(N,)``, the class names and the set's name. No pickle is ever loaded.

One module per job, lower layers first (each imports only from the ones before it):

* :mod:`~mnfn.data.images.names`: the names: :data:`DATASETS`, :data:`CLASSES`, ``SPLITS``;
* :mod:`~mnfn.data.images.files`: where the files are: :func:`data_root`, :func:`cache_dir`,
  :func:`find_files` (and :class:`MissingDataError`, saying what to put where), the file names,
  the canonical sources with their sha256, :func:`download`, :func:`sha256_file`;
* :mod:`~mnfn.data.images.idx`: the IDX reader of MNIST / Fashion-MNIST (:func:`read_idx`);
* :mod:`~mnfn.data.images.cifar`: CIFAR-10's binary version and JPEG archive (with the cache of
  decoded JPEGs);
* :mod:`~mnfn.data.images.digits`: scikit-learn's digits and their fixed seeded split;
* :mod:`~mnfn.data.images.load`: the public API: :class:`ImageSet`, :func:`load_images`,
  :func:`to_grayscale`.

Every name of the former single module ``mnfn.data.images`` is importable from here as before (the
public ones and the constants the command line and the tests reach). To patch a function for a
test, patch it in the module that calls it (e.g. ``mnfn.data.images.files.data_root`` for
:func:`find_files`).
"""

from __future__ import annotations

# Beyond __all__, the other names the single module had are re-exported too (constants, the IDX
# reader): hence the noqa: F401 on these imports.
from .cifar import CIFAR_BIN_FILES, CIFAR_RECORD  # noqa: F401
from .digits import DIGITS_SPLIT_SEED, DIGITS_TEST_SIZE  # noqa: F401
from .files import (CIFAR_BIN_DIR, CIFAR_BIN_TAR, CIFAR_JPEG_TAR, FASHION_SYSTEM_DIR, IDX_FILES,  # noqa: F401
                    KNOWN_MIRROR_SHA256, SOURCES, MissingDataError, cache_dir, data_root, dataset_files, download,
                    find_files, sha256_file)
from .idx import MAX_IDX_BYTES, read_idx  # noqa: F401
from .load import ImageSet, load_images, to_grayscale
from .names import CLASSES, DATASETS, SPLITS  # noqa: F401

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
