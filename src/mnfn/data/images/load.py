"""The public API: :class:`ImageSet`, :func:`load_images`, :func:`to_grayscale`.

Every loader returns an :class:`ImageSet`: ``images`` float32 ``(N, C, H, W)`` in ``[0, 1]``,
``labels`` int64 ``(N,)``, the class names and the set's name.

Grayscale uses ITU-R BT.601 luma ``Y = 0.299 R + 0.587 G + 0.114 B``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .cifar import _load_cifar_binary, _load_cifar_jpeg
from .digits import _load_digits
from .files import find_files
from .idx import _load_idx_set
from .names import CLASSES, DATASETS, SPLITS

__all__ = [
    "ImageSet",
    "load_images",
    "to_grayscale",
]


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
