"""The mechanics every long, resumable job shares (zoo and INR generation, merges, exports, training
runs): shard arguments, torch thread settings, an exclusive lock on the output folder, the refusal
to replace a folder that holds something else, and splitting a generation job over ``torchrun``.

Zoo nets and INRs are pure functions of ``(seed, index)``, so a job split into N shards and merged
gives exactly the single-process result. Under ``torchrun --nproc_per_node N`` (``WORLD_SIZE > 1``,
no explicit ``--shard``) rank ``r`` makes shard ``r/N`` into ``OUT.shards/r-of-N``, all ranks wait
at a barrier, and rank 0 merges the shards into ``OUT``. On a job array, pass ``--shard K/N``
explicitly and ``merge`` afterwards instead.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

__all__ = ["settings_diff", "jsonable", "process_map", "progress_bar", "parse_shard", "torch_threads", "apply_threads", "output_lock", "locks_output", "FolderLockedError", "tune_malloc",
           "malloc_tuned", "allocator_keeps_memory", "MALLOC_ENV",
           "refuse_overwrite", "torchrun_shard", "run_sharded", "LOCK_NAME"]


# --- shards ------------------------------------------------------------------------------------------

def jsonable(x: Any) -> Any:
    """``x`` as JSON would give it back: tuples become lists (recursively), so settings compare equal
    whether they were just built or read from a file."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


def settings_diff(old: Any, new: Any, *, keys: Sequence[str] | None = None, volatile: Sequence[str] = (),
                  fill: Mapping[str, Callable[[Any], Any]] | None = None) -> list[str]:
    """The one rule every resumable job and merge uses for "made with the same settings?": the keys
    whose values differ, compared as JSON values.

    ``keys``: compare only these (default: every key of either, minus ``volatile``, the keys that
    change while a job runs, like the list of finished nets). ``fill[key]`` maps a stored value to
    the same value with every default filled in (e.g. ``Recipe.from_dict(v).to_dict()``), so a folder
    written before a setting existed matches a run that states its default; a value it cannot read is
    compared as stored (and then differs)."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return ["(settings are not a mapping)"]
    fill = fill or {}

    def norm(m: Mapping[str, Any], k: str) -> Any:
        v = m.get(k)
        if k in fill and v is not None:
            try:
                v = fill[k](v)
            except (TypeError, ValueError):
                pass
        return jsonable(v)

    names = list(keys) if keys is not None else sorted((set(old) | set(new)) - set(volatile))
    return [k for k in names if norm(old, k) != norm(new, k)]


def progress_bar(enabled: bool, total: int, desc: str, unit: str = "net", initial: int = 0, **kw: Any) -> Any:
    """The one progress bar of long jobs (tqdm, width following the terminal), or ``None`` when
    disabled (``--no-progress``) so callers write ``if bar is not None: bar.update(n)``."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, **kw)


def process_map(fn: Callable[[Any], Any], items: Sequence[Any], workers: int,
                initializer: Callable[..., None] | None = None, initargs: tuple = ()) -> Iterator[Any]:
    """``fn(item)`` for every item in ``workers`` spawned processes; results in completion order.

    The one worker pool of every long job (zoo nets, INR chunks). Spawned, not forked: forking a
    process whose OpenMP pool already ran can deadlock. At most two items per worker are in flight,
    so large items (image batches) are not all pickled at once. ``initializer(*initargs)`` runs once
    per worker (load data, set threads). An exception in a worker cancels what is pending and is
    raised here."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=initializer, initargs=initargs) as pool:
        pending: set = set()
        queue = list(items)
        try:
            while queue or pending:
                while queue and len(pending) < 2 * workers:
                    pending.add(pool.submit(fn, queue.pop(0)))
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    yield f.result()
        except BaseException:
            for f in pending:
                f.cancel()
            raise


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int]:
    """``"K/N"`` (0-based like torch ranks: ``0 <= K < N``) or ``(K, N)`` -> ``(K, N)``; ``None`` -> ``(0, 1)``."""
    if shard is None:
        return (0, 1)
    if isinstance(shard, str):
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if not m:
            raise ValueError(f"--shard must look like K/N (0-based, e.g. 0/4), got {shard!r}")
        k, n = int(m.group(1)), int(m.group(2))
    else:
        k, n = (int(v) for v in shard)
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"shard {k}/{n}: need 0 <= K < N (shards are numbered from 0)")
    return (k, n)


# --- the C allocator ------------------------------------------------------------------------------

_MALLOC_TUNED: dict[str, int] | None = None


def tune_malloc(mmap_threshold: int = 32 * 2 ** 20, trim_threshold: int = 2 ** 30, top_pad: int = 64 * 2 ** 20
                ) -> dict[str, int] | None:
    """Keep freed memory in the process instead of handing it back to the OS (glibc only).

    PyTorch's CPU allocator has no cache: every tensor of a few MB is a fresh ``malloc``, which
    glibc serves with ``mmap`` and returns with ``munmap`` (or trims from the heap), so the next
    step page-faults the same memory in again, and the kernel zeroes every page. For the Monomial-NFN
    zoo model that costs ~10-15 % of a training step on a 2-core VM (ReLU and its backward run 2-3x
    slower). This sets glibc's ``M_MMAP_THRESHOLD`` (max 32 MiB), ``M_TRIM_THRESHOLD`` and
    ``M_TOP_PAD`` with ``mallopt``; the same as starting Python with ``MALLOC_MMAP_THRESHOLD_=33554432
    MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=67108864``. The process keeps its peak heap.
    Returns the settings, or ``None`` where it cannot apply them (not glibc). The ``mnfn`` CLI calls
    it at start (and sets the ``MALLOC_*`` variables for the processes it spawns) unless
    ``MNFN_TUNE_MALLOC=0``.
    """
    global _MALLOC_TUNED
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    settings = {"M_TRIM_THRESHOLD": (-1, trim_threshold), "M_TOP_PAD": (-2, top_pad),
                "M_MMAP_THRESHOLD": (-3, min(mmap_threshold, 32 * 2 ** 20))}
    if not all(mallopt(ctypes.c_int(k), ctypes.c_int(v)) == 1 for k, v in settings.values()):
        return None
    _MALLOC_TUNED = {k: v for k, (_, v) in settings.items()}
    return dict(_MALLOC_TUNED)


#: the variables glibc reads at process start for the same settings (inherited by spawned workers)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1073741824",
              "MALLOC_TOP_PAD_": "67108864"}


def malloc_tuned() -> dict[str, int] | None:
    """The settings :func:`tune_malloc` applied in this process, or ``None``."""
    return dict(_MALLOC_TUNED) if _MALLOC_TUNED is not None else None


def allocator_keeps_memory() -> bool:
    """Whether this process keeps freed memory: :func:`tune_malloc` ran here, or it was started with
    the :data:`MALLOC_ENV` variables (the CLI's workers)."""
    return _MALLOC_TUNED is not None or all(os.environ.get(k) == v for k, v in MALLOC_ENV.items())


# --- threads -----------------------------------------------------------------------------------------

@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(n)`` (``None``: unchanged), restoring the old value."""
    import torch

    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def apply_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` for the rest of the process when positive (``--threads``;
    0 or ``None`` keep torch's default)."""
    if threads and threads > 0:
        import torch

        torch.set_num_threads(int(threads))


# --- the output folder -------------------------------------------------------------------------------

LOCK_NAME = ".mnfn.lock"


class FolderLockedError(OSError):
    """Another live process is writing the folder (the message names its pid)."""


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return "another process"
    return f"process {text}" if text else "another process"


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, what: str = "job") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if missing) while a job writes into it.

    The lock is ``fcntl.flock`` on ``folder/.mnfn.lock``, which holds the owner's pid and is removed
    when the job ends. A second writer gets :class:`FolderLockedError` naming that pid at once (it
    never waits). A lock file left by a killed process is not a lock: the kernel released its
    flock with the process, so the next job takes it over. The same process may take the lock
    again (nested jobs, e.g. a merge inside a sharded run). Without ``flock`` (Windows) it is a no-op.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = str(folder.resolve())
    if key in _HELD:
        yield folder
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield folder
        return
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise FolderLockedError(f"{folder}: {_holder(path)} is writing this folder ({what}); wait for it "
                                    "to finish, or use another output folder") from None
        try:  # the holder we waited behind may have removed the file: lock the one on disk
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        _HELD.add(key)
        try:
            yield folder
        finally:
            _HELD.discard(key)
            with contextlib.suppress(OSError):
                path.unlink()  # before unlocking: a newcomer then creates a fresh file
    finally:
        os.close(fd)  # releases the flock


def locks_output(param: str, what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: run the function under :func:`output_lock` on its argument ``param`` (a folder;
    ``None`` = no folder, no lock)."""
    import functools
    import inspect

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            folder = sig.bind(*args, **kwargs).arguments.get(param)
            if folder is None:
                return fn(*args, **kwargs)
            with output_lock(folder, what):
                return fn(*args, **kwargs)

        return wrapper

    return deco


_HELD: set[str] = set()


def refuse_overwrite(folder: str | os.PathLike, ours: Callable[[Path], bool], what: str,
                     overwrite: bool = False) -> None:
    """Refuse to write into ``folder`` when it exists, is not empty (the lock file aside) and
    ``ours(folder)`` says it does not hold this job's earlier output (which a rerun resumes);
    ``overwrite`` allows it (the job's files then replace theirs)."""
    folder = Path(folder)
    if overwrite or not folder.exists():
        return
    if not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a folder")
    if not [p for p in folder.iterdir() if p.name != LOCK_NAME] or ours(folder):
        return
    raise ValueError(f"{folder}: holds something other than {what}; pass --overwrite to write over it, "
                     "or choose another output folder")


# --- torchrun ----------------------------------------------------------------------------------------

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
    import torch.distributed as dist

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
