"""Training checkpoints and logs: ``last.pt`` (resume), ``best.pt`` (the selected weights) and
``log.csv`` (one row per epoch), written atomically and read back with ``weights_only=True``
(:func:`mnfn.io.load_torch`); a file that is not a complete checkpoint gets a ``DataFormatError``
naming it."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from torch import Tensor, nn

from ..io import DataFormatError, atomic_open, load_torch

__all__ = ["FitResult", "read_log", "load_best", "CHECKPOINT_LAST", "CHECKPOINT_BEST", "LOG_FILE", "CHECKPOINT_VERSION",
           "LAST_KEYS", "BEST_KEYS"]

CHECKPOINT_LAST = "last.pt"
CHECKPOINT_BEST = "best.pt"
LOG_FILE = "log.csv"
CHECKPOINT_VERSION = 1



@dataclass
class FitResult:
    """What :meth:`Trainer.fit` did. ``history``: one dict per finished epoch (``epoch``,
    ``train_loss``, ``val_loss``, ``val_<metric>`` ..., ``seconds``)."""

    select: str
    best_epoch: int | None
    best_value: float | None
    best_metrics: dict[str, float]
    history: list[dict[str, float]]
    epochs_done: int
    epochs: int
    out_dir: Path | None = None

    @property
    def completed(self) -> bool:
        return self.epochs_done >= self.epochs


def read_log(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``log.csv`` as dicts of floats."""
    with open(path) as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def _write_log(path: Path, history: list[dict[str, float]]) -> None:
    cols: list[str] = []
    for h in history:
        for k in h:
            if k not in cols:
                cols.append(k)
    with atomic_open(path, "w") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for h in history:
            w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in h.items()})


#: Keys a checkpoint must hold for :meth:`Trainer._try_resume` (``last.pt``) and :func:`load_best` (``best.pt``).
LAST_KEYS = ("epoch", "model", "optimizer", "rng", "best", "history", "config")
BEST_KEYS = ("model",)


def _check_keys(path: Path, ck: Any, keys: Sequence[str]) -> None:
    if not isinstance(ck, dict):
        raise DataFormatError(f"{path}: not a training checkpoint (holds a {type(ck).__name__}, expected a dict)")
    missing = [k for k in keys if k not in ck]
    if missing:
        raise DataFormatError(f"{path}: not a complete training checkpoint: missing key(s) {', '.join(missing)}")


def _load_state(path: Path, what: str, target: Any, state: Any) -> None:
    """``target.load_state_dict(state)``, with a failure reported as a DataFormatError naming ``path``."""
    try:
        target.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise DataFormatError(f"{path}: cannot restore the {what} ({type(exc).__name__}: {exc})") from None


def load_best(model: nn.Module, out_dir: str | Path, name: str = CHECKPOINT_BEST) -> dict[str, Any]:
    """Load the best checkpoint's weights into ``model`` (explicitly, after training); returns its record."""
    path = Path(out_dir) / name
    ck = load_torch(path)
    _check_keys(path, ck, BEST_KEYS)
    _load_state(path, "model", _unwrap(model), ck["model"])
    return ck


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _state_to_cpu(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in sd.items()}


def _jsonable(cfg: Any) -> str:
    return json.dumps(cfg, sort_keys=True, default=str)
