"""The one protocol every weight dataset speaks (zoos, INR sets, materialised copies): what the
trainer, the tasks and user code may rely on, and the one batching loop behind it."""

from __future__ import annotations

from typing import Callable, Iterator, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..weightspace import WeightSpaceFeatures, WeightSpaceSpec

__all__ = ["WeightDataset", "iterate_batches"]


@runtime_checkable
class WeightDataset(Protocol):
    """``spec`` (the nets' architecture), ``features`` (all nets, ``(N, C, ...)``), ``targets``
    (``(N,)``: test accuracy for zoos, class labels for INR sets), ``len()``, and
    ``batches(batch_size, shuffle, generator, drop_last)`` yielding ``(features, targets)``."""

    @property
    def spec(self) -> WeightSpaceSpec: ...

    @property
    def features(self) -> WeightSpaceFeatures: ...

    @property
    def targets(self) -> Tensor: ...

    def __len__(self) -> int: ...

    def batches(self, batch_size: int, shuffle: bool = True, generator: torch.Generator | None = None,
                drop_last: bool = False) -> Iterator[tuple[WeightSpaceFeatures, Tensor]]: ...


def iterate_batches(features: WeightSpaceFeatures, targets: Tensor, batch_size: int, shuffle: bool = True,
                    generator: torch.Generator | None = None, drop_last: bool = False,
                    transform: Callable[[WeightSpaceFeatures, torch.Generator | None], WeightSpaceFeatures] | None = None,
                    ) -> Iterator[tuple[WeightSpaceFeatures, Tensor]]:
    """``(features[idx], targets[idx])`` over a (seeded, if ``shuffle``) order of the items;
    ``transform(batch_features, generator)`` moves each batch (augmentation)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = features.batch_size
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for s in range(0, n, batch_size):
        idx = order[s:s + batch_size]
        if drop_last and len(idx) < batch_size:
            break
        fb = features[idx]
        if transform is not None:
            fb = transform(fb, generator)
        yield fb, targets[idx]
