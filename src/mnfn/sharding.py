"""Split a generation job (zoo, INR set) over the processes of a ``torchrun`` launch.

Zoo nets and INRs are pure functions of ``(seed, index)``, so a job split into N shards and merged
gives exactly the single-process result. Under ``torchrun --nproc_per_node N`` (``WORLD_SIZE > 1``,
no explicit ``--shard``) rank ``r`` makes shard ``r/N`` into ``OUT.shards/r-of-N``, all ranks wait
at a barrier, and rank 0 merges the shards into ``OUT``. On a job array, pass ``--shard K/N``
explicitly and ``merge`` afterwards instead.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any, Callable

import torch.distributed as dist

__all__ = ["torchrun_shard", "run_sharded"]


def torchrun_shard() -> tuple[int, int] | None:
    """``(rank, world_size)`` when launched by torchrun with more than one process, else ``None``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return int(os.environ.get("RANK", "0")), world


def run_sharded(out: str | Path, make: Callable[[Path, tuple[int, int] | None], Any],
                merge: Callable[[list[Path], Path], Any]) -> Any:
    """``make(out, None)`` in a single process; under torchrun, shard by rank and merge on rank 0.

    Returns what ``make`` returned on this rank (rank 0 also merged by then).
    """
    out = Path(out)
    shard = torchrun_shard()
    if shard is None:
        return make(out, None)
    rank, world = shard
    dirs = [Path(f"{out}.shards") / f"{r}-of-{world}" for r in range(world)]
    created = not dist.is_initialized()
    if created:
        # Generation can take hours per rank: a long barrier timeout; gloo works on any machine.
        dist.init_process_group("gloo", timeout=datetime.timedelta(hours=48))
    try:
        result = make(dirs[rank], (rank, world))
        dist.barrier()
        if rank == 0:
            merge(dirs, out)
        dist.barrier()
    finally:
        if created:
            dist.destroy_process_group()
    return result
