"""torch.distributed helpers: every ``mnfn train ...`` runs unchanged under ``torchrun``.

Under ``torchrun --nproc_per_node N`` (or multi-node torchrun, or any launcher that sets
``WORLD_SIZE``/``RANK``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``) :func:`init_distributed`
joins the process group: NCCL when CUDA is available (one GPU per local rank), gloo on CPU.
Without those variables everything here is a no-op for one process, so task code calls the same
functions either way.

The trainer shards data by rank itself (:func:`shard_indices`, the ``DistributedSampler`` rule:
pad to a multiple of the world size by wrapping, then every ``world``-th item), averages gradients
with ``DistributedDataParallel`` and gathers predictions with :func:`all_gather_cat` so rank
metrics (Kendall's tau) are computed over the whole split, identically on every rank. Only rank 0
writes files (:func:`is_main`).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["DistInfo", "init_distributed", "info", "is_distributed", "is_main", "rank", "world_size", "barrier",
           "all_reduce_sum", "all_gather_cat", "broadcast_object", "shard_indices", "cleanup", "env_world_size"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


_INFO: DistInfo | None = None


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init_distributed(device: str | torch.device | None = None, backend: str | None = None,
                     timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group when launched with ``WORLD_SIZE > 1``; return rank facts and the device.

    ``device``: ``None``/``"auto"`` picks ``cuda:LOCAL_RANK`` when CUDA is available, else CPU;
    ``"cpu"`` forces CPU (then gloo). Idempotent: a second call returns the same :class:`DistInfo`.
    """
    global _INFO
    want = None if device in (None, "auto") else torch.device(device)
    use_cuda = torch.cuda.is_available() if want is None else want.type == "cuda"
    ws = env_world_size()
    if ws <= 1:
        if _INFO is not None and not _INFO.distributed:
            return _INFO
        dev = want if want is not None else torch.device("cuda" if use_cuda else "cpu")
        _INFO = DistInfo(device=dev)
        return _INFO
    if dist.is_initialized():
        if _INFO is None:
            _INFO = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                             dist.get_backend(), torch.device("cpu"))
        return _INFO
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = backend or ("nccl" if use_cuda else "gloo")
    if use_cuda:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    _INFO = DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, backend, dev)
    return _INFO


def info() -> DistInfo:
    """The current :class:`DistInfo` (one CPU process until :func:`init_distributed` ran)."""
    if _INFO is not None:
        return _INFO
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                        dist.get_backend())
    return DistInfo()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup() -> bool:
    """Leave the process group (if this process joined one); whether it had joined one."""
    global _INFO
    joined = dist.is_available() and dist.is_initialized()
    if joined:
        dist.destroy_process_group()
    _INFO = None
    return joined


def _comm_device() -> torch.device:
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum over ranks (returns a new tensor on the input's device)."""
    if not is_distributed():
        return t.clone()
    x = t.detach().to(_comm_device()).clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x.to(t.device)


def all_gather_cat(t: Tensor) -> Tensor:
    """Concatenate every rank's tensor along dim 0, in rank order; sizes may differ between ranks."""
    if not is_distributed():
        return t
    dev = _comm_device()
    x = t.detach().to(dev).contiguous()
    n = torch.tensor([x.shape[0]], device=dev, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    sizes_i = [int(s.item()) for s in sizes]
    m = max(sizes_i)
    if x.shape[0] < m:
        pad = torch.zeros((m - x.shape[0], *x.shape[1:]), dtype=x.dtype, device=dev)
        x = torch.cat([x, pad])
    out = [torch.empty_like(x) for _ in sizes_i]
    dist.all_gather(out, x)
    return torch.cat([o[:s] for o, s in zip(out, sizes_i)]).to(t.device)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s (picklable, trusted in-process) object on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def shard_indices(order: Tensor, rank_: int | None = None, world: int | None = None, pad: bool = True) -> Tensor:
    """This rank's share of ``order``: ``order[rank::world]`` after wrapping ``order`` to a multiple of
    ``world`` (``pad``, as ``DistributedSampler``, so every rank runs the same number of steps)."""
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    if w <= 1:
        return order
    n = len(order)
    if pad and n % w:
        extra = w - n % w
        reps = (extra + n - 1) // max(n, 1)
        order = torch.cat([order, order.repeat(reps)[:extra]]) if n else order
    return order[r::w]
