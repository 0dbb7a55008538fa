"""What the trainer accepts as data: anything with ``__len__`` and ``take(idx) -> batch``
(:class:`ArrayData` for in-memory inputs and targets; :func:`as_data` adapts datasets with
``.features``/``.targets``, ``(inputs, targets)`` pairs and map-style datasets with a ``collate``),
and moving a batch to a device."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..weightspace import WeightSpaceFeatures

__all__ = ["ArrayData", "as_data", "to_device", "default_forward"]


def _map_batch(obj: Any, leaf: Callable[[Any], Any]) -> Any:
    """``leaf`` applied to every non-container in a (nested) tuple/list/dict, structure kept."""
    if isinstance(obj, tuple):
        return tuple(_map_batch(o, leaf) for o in obj)
    if isinstance(obj, list):
        return [_map_batch(o, leaf) for o in obj]
    if isinstance(obj, dict):
        return {k: _map_batch(v, leaf) for k, v in obj.items()}
    return leaf(obj)


def _index(obj: Any, idx: Tensor) -> Any:
    def take(o: Any) -> Any:
        if isinstance(o, (Tensor, WeightSpaceFeatures)):
            return o[idx]
        if isinstance(o, np.ndarray):
            return o[idx.numpy()]
        raise TypeError(f"cannot index a {type(o).__name__} by a batch of indices")

    return _map_batch(obj, take)


def _length(obj: Any) -> int:
    if isinstance(obj, WeightSpaceFeatures):
        return obj.batch_size
    if isinstance(obj, (tuple, list)):
        return _length(obj[0])
    if isinstance(obj, dict):
        return _length(next(iter(obj.values())))
    return len(obj)


class ArrayData:
    """In-memory data: ``inputs`` (features, tensor, or tuple/dict of them) and ``targets`` indexed together."""

    def __init__(self, inputs: Any, targets: Any) -> None:
        n, m = _length(inputs), _length(targets)
        if n != m:
            raise ValueError(f"{n} inputs but {m} targets")
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return _length(self.inputs)

    def take(self, idx: Tensor) -> tuple[Any, Any]:
        return _index(self.inputs, idx), _index(self.targets, idx)


class _ItemData:
    """A map-style dataset (``ds[i]``) and a ``collate(list of items) -> batch``."""

    def __init__(self, ds: Any, collate: Callable[[list], Any]) -> None:
        self.ds, self.collate = ds, collate

    def __len__(self) -> int:
        return len(self.ds)

    def take(self, idx: Tensor) -> Any:
        return self.collate([self.ds[int(i)] for i in idx])


def as_data(obj: Any, collate: Callable[[list], Any] | None = None) -> Any:
    """Adapt ``obj`` to the ``__len__`` + ``take(idx)`` protocol the trainer uses."""
    if obj is None or hasattr(obj, "take"):
        return obj
    if hasattr(obj, "features") and hasattr(obj, "targets"):
        return ArrayData(obj.features, obj.targets)
    if isinstance(obj, tuple) and len(obj) == 2:
        return ArrayData(*obj)
    if hasattr(obj, "__getitem__") and hasattr(obj, "__len__"):
        coll = collate or getattr(obj, "collate", None)
        if coll is None:
            from torch.utils.data import default_collate

            coll = default_collate
        return _ItemData(obj, coll)
    raise TypeError(f"cannot use a {type(obj).__name__} as training data; give it __len__ and take(idx)")


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` (features, tensors, and tuples/lists/dicts of them) on ``device``; anything else as is."""
    return _map_batch(obj, lambda o: o.to(device) if isinstance(o, (Tensor, WeightSpaceFeatures)) else o)


def default_forward(model: nn.Module, batch: Any) -> tuple[Any, Any]:
    """The trainer's default ``forward_fn``: ``(model(inputs), targets)``."""
    inputs, target = batch
    return model(inputs), target

