"""Reading a zoo for learning: splits, filters, features, augmentation (:class:`ZooDataset`)."""

from __future__ import annotations

import os
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from ...augment import Augment
from ..protocol import iterate_batches
from ...io import DataFormatError
from ...weightspace import ACTIVATIONS, WeightSpaceError, WeightSpaceFeatures, WeightSpaceSpec
from .format import Zoo, read_zoo, rows_to_features, spec_from_layout, zoo_padding

__all__ = [
    "Augment",
    "ZooDataset",
    "read_split_file",
    "split_nets",
]


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
        g = generator if generator is not None else self._gen
        move = None if self.augment is None else (lambda fb, gen: self.augment.apply(fb, gen))
        return iterate_batches(self.features, self.targets, batch_size, shuffle, g, drop_last, move)

    @staticmethod
    def collate(items: Sequence[tuple[WeightSpaceFeatures, Tensor]]) -> tuple[WeightSpaceFeatures, Tensor]:
        """Stack ``dataset[i]`` items into one batch."""
        return WeightSpaceFeatures.collate([f for f, _ in items]), torch.cat([t.reshape(-1) for _, t in items])

    def with_transformed_copies(self, copies: int = 1, augment: Augment | None = None) -> "MaterializedZoo":
        """The paper's robustness protocol: the original checkpoints plus ``copies`` transformed copies,
        each by its own random group element (seeded by ``augment.seed``)."""
        aug = augment or self.augment or Augment()
        feats, targets = aug.with_copies(self.features, self.targets, copies, torch.Generator().manual_seed(aug.seed))
        return MaterializedZoo(feats, targets)


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
        return iterate_batches(self.features, self.targets, batch_size, shuffle, generator, drop_last)
