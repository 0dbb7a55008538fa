"""One check of command-line values for every ``mnfn`` command, run before any work starts.

Options mean the same in every command that has them (``--epochs``, ``--batch``, ``--workers`` ...),
so the rules are keyed by the option's name; a value outside its range is a ``ValueError`` that
the CLI prints as one line naming the option (``mnfn zoo: error: --batch-size must be ...``).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

__all__ = ["check_args", "RULES", "MAX_IMAGE_SIDE"]

#: The largest image side ``--resize`` accepts (SIRENs are fitted on H*W coordinates at once).
MAX_IMAGE_SIDE = 1024

_POSITIVE = ("at least 1", lambda v: v >= 1)
_NONNEG = ("at least 0", lambda v: v >= 0)
_FINITE = ("a finite number", lambda v: math.isfinite(v))
_POS_FINITE = ("a positive finite number", lambda v: math.isfinite(v) and v > 0)

#: dest name -> (what it must be, test); applied to every command that has the option (unset = None: skipped)
RULES: dict[str, tuple[str, Any]] = {
    "epochs": _POSITIVE, "stop_after": _POSITIVE, "batch": _POSITIVE, "batch_size": _POSITIVE,
    "num": _POSITIVE, "num_nets": _POSITIVE, "train_images": _POSITIVE, "test_images": _POSITIVE,
    "workers": _POSITIVE, "trials": _POSITIVE, "repeats": _POSITIVE, "max_nets": _POSITIVE,
    "zoo_nets": _POSITIVE, "inr_nets": _POSITIVE,
    "threads": _NONNEG, "max_new_nets": _NONNEG, "max_chunks": _NONNEG, "train_size": _NONNEG,
    "max_steps": _NONNEG, "warmup": _NONNEG, "seed": _NONNEG,
    "target_psnr": _FINITE, "lr": _POS_FINITE, "timeout": _POS_FINITE, "scale_lo": _POS_FINITE,
    "scale_hi": _POS_FINITE, "tol": ("a finite number >= 0", lambda v: math.isfinite(v) and v >= 0),
}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_args(args: argparse.Namespace) -> None:
    """Raise ``ValueError`` naming the first option of ``args`` whose value is out of range."""
    for dest, (what, ok) in RULES.items():
        v = getattr(args, dest, None)
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not ok(v):
            raise ValueError(f"{_flag(dest)} must be {what}, got {v!r}")
    lo, hi = getattr(args, "scale_lo", None), getattr(args, "scale_hi", None)
    if isinstance(lo, float) and isinstance(hi, float) and lo > hi:
        raise ValueError(f"--scale-lo {lo:g} is above --scale-hi {hi:g}")
    resize = getattr(args, "resize", None)
    if resize is not None and not all(isinstance(s, int) and 1 <= s <= MAX_IMAGE_SIDE for s in resize):
        raise ValueError(f"--resize takes two sides from 1 to {MAX_IMAGE_SIDE}, got {' '.join(map(str, resize))}")
    device = getattr(args, "device", None)
    if isinstance(device, str) and device != "auto":
        check_device(device)


def check_device(device: str) -> None:
    """``--device``: a name torch knows, and CUDA only where it is available."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device: unknown device {device!r} (auto, cpu, cuda, cuda:1 ...)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available on this machine (use cpu or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type not in ("cpu", "mps"):
        raise ValueError(f"--device {device}: mnfn runs on cpu or cuda")
