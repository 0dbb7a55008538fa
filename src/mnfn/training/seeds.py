"""Seeds and RNG state: one seed per run, derived seeds for its parts, and the global RNG states a
checkpoint saves so a resumed run continues the same random streams (as tensors and plain lists, so
checkpoints load with ``weights_only=True``)."""

from __future__ import annotations

import random
from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["derive_seed", "seed_everything", "rng_state", "set_rng_state"]


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from a tuple of ints/strings (stable across runs and platforms)."""
    ints = [abs(p) if isinstance(p, int) else int.from_bytes(str(p).encode(), "little") for p in parts]
    return int(np.random.SeedSequence(ints).generate_state(1, np.uint64)[0] % (2 ** 63 - 1))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Global RNG states as tensors / plain lists (weights-only loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "numpy_rest": [int(pos), int(has_gauss), float(cached)],
        "python": [int(py[0]), list(py[1]), py[2]],
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    pos, has_gauss, cached = state["numpy_rest"]
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), int(pos), int(has_gauss),
                         float(cached)))
    v, internal, gauss = state["python"]
    random.setstate((int(v), tuple(int(x) for x in internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
