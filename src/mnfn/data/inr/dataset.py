""":class:`InrDataset`: the SIRENs of an INR set folder as weight-space features, with labels and
(on request) the images."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from ...io import DataFormatError
from ...weightspace import WeightSpaceFeatures, WeightSpaceSpec
from ..protocol import iterate_batches
from .format import SPLITS, _check_row, _meta_spec, load_chunk, read_index, read_meta
from .siren import _load_split, _resize, render

__all__ = [
    "InrDataset",
]


class InrDataset(torch.utils.data.Dataset):
    """SIRENs of an INR set folder as weight-space features, with labels and (on request) the images.

    ``split``: ``train``, ``val``, ``test`` or ``all``. ``val_size`` (a count, or a fraction < 1) moves
    the *last* train items (by image index, like NFN's 45000/5000 split; ``val_from="start"``: the
    first) from ``train`` into ``val``.
    ``split_points=(a, b)`` instead splits by the NFN net index ``g`` (train images first, then test
    images: ``g = image_index (+ train size for test images)``): train ``g < a``, val ``a <= g < b``,
    test ``g >= b``; NFN's experiments use ``(45000, 50000)``.
    All weights of the split are loaded into memory (float32: about 4.7 kB per grayscale net).

    ``ds[i]`` -> ``(features, label)`` or ``(features, label, image)`` with ``features`` a
    :class:`WeightSpaceFeatures` of batch 1, ``C = 1``; ``ds.batch(indices)`` builds a whole batch at
    once (use it, or :meth:`collate` as a DataLoader ``collate_fn``). Images are ``(C, H, W)`` float32
    in ``[0, 1]``, resized as they were for fitting.
    """

    def __init__(self, root: str | Path, split: str = "train", *, with_images: bool = False,
                 val_size: int | float = 0, split_points: tuple[int, int] | None = None,
                 data_root: str | Path | None = None, dtype: torch.dtype = torch.float32,
                 val_from: str = "end") -> None:
        if split not in ("train", "val", "test", "all"):
            raise ValueError(f"split must be train, val, test or all, got {split!r}")
        if val_from not in ("start", "end"):
            raise ValueError(f"val_from must be 'start' or 'end', got {val_from!r}")
        self.val_from = val_from
        self.root = Path(root)
        self.meta = read_meta(self.root)
        self.spec: WeightSpaceSpec = _meta_spec(self.meta)
        self.split = split
        self.with_images = with_images
        self.data_root = data_root
        rows = self._select(read_index(self.root), split, val_size, split_points)
        self.rows = rows
        L = self.spec.num_layers
        ws: list[list[np.ndarray]] = [[] for _ in range(L)]
        bs: list[list[np.ndarray]] = [[] for _ in range(L)]
        by_chunk: dict[str, list[int]] = {}
        for j, r in enumerate(rows):
            by_chunk.setdefault(r["chunk"], []).append(j)
        order = []
        for chunk, js in by_chunk.items():
            path = self.root / "chunks" / chunk
            a = load_chunk(path, self.spec)
            for j in js:
                _check_row(path, a, rows[j])
            pos = np.array([rows[j]["pos"] for j in js])
            for i in range(L):
                ws[i].append(a[f"weight_{i + 1}"][pos])
                bs[i].append(a[f"bias_{i + 1}"][pos])
            order += js
        inv = np.argsort(np.array(order, dtype=np.int64)) if order else np.zeros(0, dtype=np.int64)

        def stack(parts: list[np.ndarray], shape: tuple[int, ...]) -> Tensor:
            arr = np.concatenate(parts) if parts else np.zeros((0, *shape), np.float32)
            return torch.from_numpy(arr[inv]).to(dtype).unsqueeze(1)

        self._features = WeightSpaceFeatures(
            tuple(stack(ws[i], self.spec.layers[i].weight_shape) for i in range(L)),
            tuple(stack(bs[i], (self.spec.layers[i].n_out,)) for i in range(L)), self.spec)
        self.labels = torch.tensor([r["label"] for r in rows], dtype=torch.int64)
        self.psnr = torch.tensor([r["psnr"] for r in rows], dtype=torch.float32)
        self.steps = torch.tensor([r["steps"] for r in rows], dtype=torch.int64)
        self.image_index = torch.tensor([r["image_index"] for r in rows], dtype=torch.int64)
        self.splits = [r["split"] for r in rows]
        self._images: Tensor | None = None

    def _select(self, rows: list[dict[str, Any]], split: str, val_size: int | float,
                split_points: tuple[int, int] | None) -> list[dict[str, Any]]:
        if split_points is not None:
            if val_size:
                raise ValueError("give val_size or split_points, not both")
            a, b = (int(v) for v in split_points)
            n_train = int(self.meta.get("split_sizes", {}).get("train", -1))
            if n_train < 0 and any(r["split"] == "test" for r in rows):
                raise ValueError(f"{self.root / 'meta.json'}: train size unknown, cannot use split_points")
            lo, hi = {"train": (0, a), "val": (a, b), "test": (b, None), "all": (0, None)}[split]

            def g(r: dict[str, Any]) -> int:
                return r["image_index"] + (n_train if r["split"] == "test" else 0)

            return [r for r in rows if g(r) >= lo and (hi is None or g(r) < hi)]
        train_rows = [r for r in rows if r["split"] == "train"]
        n_val = int(round(val_size * len(train_rows))) if isinstance(val_size, float) and val_size < 1 else int(val_size)
        if n_val < 0 or n_val > len(train_rows):
            raise ValueError(f"val_size {val_size} does not fit {len(train_rows)} train items")
        # val_from="end": the last train items validate (NFN's 45000/5000); "start": the first ones,
        # so a set still being fitted in image order has its validation nets from the beginning
        if self.val_from == "end":
            train_part, val_part = train_rows[:len(train_rows) - n_val], train_rows[len(train_rows) - n_val:]
        else:
            train_part, val_part = train_rows[n_val:], train_rows[:n_val]
        if split == "train":
            return train_part
        if split == "val":
            if n_val == 0:
                raise ValueError("split 'val' needs val_size > 0 (or split_points)")
            return val_part
        if split == "test":
            return [r for r in rows if r["split"] == "test"]
        return rows

    # -- facts ---------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return int(self.meta.get("num_classes", len(self.meta["classes"])))

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.meta["classes"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.meta["image_shape"])  # type: ignore[return-value]

    @property
    def features(self) -> WeightSpaceFeatures:
        """All nets of the split: per layer ``W (N, 1, out, in)``, ``b (N, 1, out)``."""
        return self._features

    @property
    def targets(self) -> Tensor:
        """The class labels ``(N,)`` (the :class:`~mnfn.data.protocol.WeightDataset` name for them)."""
        return self.labels

    def __len__(self) -> int:
        return len(self.rows)

    def batches(self, batch_size: int, shuffle: bool = True, generator: torch.Generator | None = None,
                drop_last: bool = False) -> Iterator[tuple[WeightSpaceFeatures, Tensor]]:
        """``(features, labels)`` batches (:func:`~mnfn.data.protocol.iterate_batches`)."""
        return iterate_batches(self._features, self.labels, batch_size, shuffle, generator, drop_last)

    # -- images --------------------------------------------------------------------------------
    @property
    def images(self) -> Tensor:
        """Original images of the split ``(N, C, H, W)`` in ``[0, 1]`` (loaded on first use)."""
        if self._images is None:
            native = tuple(self.meta.get("native_shape") or self.image_shape)
            out = torch.zeros(len(self), *self.image_shape)
            for s in SPLITS:
                sel = [j for j, sp in enumerate(self.splits) if sp == s]
                if not sel:
                    continue
                idx = self.image_index[sel].numpy()
                imgs = _load_split(self.meta["dataset"], s, self.data_root, limit=int(idx.max()) + 1).images
                if tuple(imgs.shape[1:]) != native:
                    raise DataFormatError(f"{self.root / 'meta.json'}: nets were fitted to {native} images, "
                                          f"{self.meta['dataset']} {s} images have shape {tuple(imgs.shape[1:])}")
                resize = self.meta.get("resize")
                out[sel] = torch.from_numpy(_resize(np.ascontiguousarray(imgs[idx]), tuple(resize) if resize else None))
            self._images = out
        return self._images

    # -- access --------------------------------------------------------------------------------
    def __getitem__(self, i: int) -> tuple:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        i = i % len(self)
        feats = self._features[i]
        if self.with_images:
            return feats, int(self.labels[i]), self.images[i]
        return feats, int(self.labels[i])

    def batch(self, indices: Sequence[int] | Tensor, with_images: bool | None = None) -> tuple:
        """``(features (B, 1, ...), labels (B,))``, plus images ``(B, C, H, W)`` when asked (default: ``with_images``)."""
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        feats = self._features.map(lambda t: t[idx])
        if self.with_images if with_images is None else with_images:
            return feats, self.labels[idx], self.images[idx]
        return feats, self.labels[idx]

    @staticmethod
    def collate(items: Sequence[tuple]) -> tuple:
        """DataLoader ``collate_fn`` for items of ``ds[i]``."""
        feats = WeightSpaceFeatures.collate([it[0] for it in items])
        labels = torch.tensor([it[1] for it in items], dtype=torch.int64)
        if len(items[0]) == 3:
            return feats, labels, torch.stack([it[2] for it in items])
        return feats, labels

    def render(self, indices: Sequence[int] | Tensor | None = None, clamp: bool = True) -> Tensor:
        """Images drawn by the nets ``indices`` (all by default), ``(B, C, H, W)`` in ``[0, 1]``."""
        feats = self._features if indices is None else self.batch(indices, with_images=False)[0]
        return render(feats, self.image_shape, clamp=clamp)
