"""Making zoos: :func:`make_zoo` trains one (resumable, sharded, in worker processes if asked) and
:func:`merge_zoos` joins shards.

Generation (:func:`make_zoo`) trains ``num_nets`` CNNs of the zoo architecture (3 conv 3x3 stride 2
layers of 16 channels, global average pooling, dense to 10) with hyperparameters drawn like the
original (activation, weight init and std, learning rate, optimizer, l2, dropout, train fraction)
and saves a checkpoint after every epoch (and at initialisation, step 0). Net ``i`` is a function of
``(seed, i)`` alone, so runs are reproducible, shards merge into exactly the single-run zoo, and a
killed run resumes from per-net part files in ``DIR/.parts/`` with no net lost or duplicated.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ...io import DataFormatError, load_npz, read_json, save_npz, write_json
from ...jobs import locks_output, parse_shard, process_map, progress_bar, refuse_overwrite, settings_diff
from ...weightspace import ACTIVATIONS, cnn_spec
from .format import FORMAT_VERSION, METRIC_COLUMNS, ZOO_DATASETS, LayoutEntry, read_zoo, write_zoo, zoo_layout
from .recipe import Recipe, default_recipe
from .train import _Data, _load_data, _train_with_retries

__all__ = [
    "MakeZooResult",
    "comparable_settings",
    "make_zoo",
    "merge_zoos",
]


@dataclass
class MakeZooResult:
    """What :func:`make_zoo` did: nets finished in total / in this call, and whether the zoo is assembled."""

    out_dir: Path
    total: int
    done: int
    trained_now: int
    complete: bool
    net_seconds: list[float] = field(default_factory=list)  # wall-clock seconds per net trained now
    net_cpu_seconds: list[float] = field(default_factory=list)  # process CPU seconds per net (robust to load)


def _zoo_meta(dataset: str, num_nets: int, activations: Sequence[str], seed: int, recipe: Recipe,
              shard: tuple[int, int], layout: list[LayoutEntry], image_shape: tuple[int, ...]) -> dict[str, Any]:
    return {
        "format": "small-cnn-zoo", "mnfn_zoo_version": FORMAT_VERSION, "dataset": dataset, "num_nets": num_nets,
        "activations": list(activations), "seed": seed, "shard": list(shard), "recipe": recipe.to_dict(),
        "image_shape": list(image_shape), "test_images": recipe.test_images,
        "test_images_note": "test_accuracy is measured on the first test_images images of the test split (all if null)",
        "num_params": max(e.end for e in layout),
    }


def _fill_recipe(v: Any) -> Any:
    return Recipe.from_dict(v).to_dict()


#: How a zoo's settings compare (:func:`mnfn.jobs.settings_diff`): the recipe with its defaults
#: filled in, so a zoo written before a recipe field existed still matches.
_FILL = {"recipe": _fill_recipe}
_RUN_KEYS = ("net_indices",)  # change while a zoo is made
_MERGE_KEYS = ("shard", "net_indices")  # differ between the shards of one zoo


def comparable_settings(meta: Any, volatile: Sequence[str] = _RUN_KEYS) -> Any:
    """A zoo's settings without ``volatile`` keys and with the recipe's defaults filled in (what a
    merge writes as the merged zoo's settings)."""
    if not isinstance(meta, dict):
        return meta
    out = {k: v for k, v in meta.items() if k not in volatile}
    if isinstance(out.get("recipe"), dict):
        try:
            out["recipe"] = _fill_recipe(out["recipe"])
        except (TypeError, ValueError):
            pass  # left as written: it then differs, and the caller says so
    return out


def _assemble(out: Path, parts: Path, indices: list[int], meta: dict[str, Any], layout: list[LayoutEntry]) -> None:
    ws, ms = [], []
    for i in indices:
        z = load_npz(parts / f"net{i:06d}.npz", required=("weights", "metrics"))
        ws.append(z["weights"])
        ms.extend(json.loads(str(z["metrics"])))
    meta = dict(meta, net_indices=indices)
    write_zoo(out, np.concatenate(ws), ms, layout, meta)


@dataclass(frozen=True)
class _Job:
    seed: int
    activations: tuple[str, ...]
    recipe: Recipe
    dataset: str
    parts: str
    data_root: str | None
    threads: int | None


class _WorkerState:
    """Trains nets of one job and saves each as ``parts/net<i>.npz`` (atomically)."""

    def __init__(self, job: _Job, data: _Data, layout: list[LayoutEntry], num_classes: int) -> None:
        self.job, self.data, self.layout, self.num_classes = job, data, layout, num_classes

    def run(self, i: int) -> tuple[int, float, float, float | None]:
        j = self.job
        t0, c0 = time.perf_counter(), time.process_time()
        rows, metrics, _ = _train_with_retries(j.seed, i, j.activations, j.recipe, self.data, self.layout,
                                               j.dataset, self.num_classes)
        save_npz(Path(j.parts) / f"net{i:06d}.npz", weights=rows, metrics=np.array(json.dumps(metrics)))
        acc = metrics[-1]["test_accuracy"] if metrics else None
        return i, time.perf_counter() - t0, time.process_time() - c0, acc


_WORKER: _WorkerState | None = None


def _worker_init(job: _Job) -> None:
    global _WORKER
    if job.threads is not None:
        torch.set_num_threads(job.threads)
    data, tr = _load_data(job.dataset, job.recipe, job.data_root)
    spec = cnn_spec(data.spec_in[0], [job.recipe.channels] * job.recipe.num_conv, tr.num_classes,
                    job.activations[0], image_size=data.spec_in[1])
    _WORKER = _WorkerState(job, data, zoo_layout(spec), tr.num_classes)


def _worker_net(i: int) -> tuple[int, float, float, float | None]:
    assert _WORKER is not None
    return _WORKER.run(i)


@locks_output("out_dir", "mnfn zoo make")
def make_zoo(out_dir: str | os.PathLike, dataset: str, num_nets: int, activations: Sequence[str] = ("relu", "tanh"),
             seed: int = 0, shard: tuple[int, int] | str = (0, 1), recipe: Recipe | None = None,
             data_root: str | os.PathLike | None = None, progress: bool = True, threads: int | None = 1,
             max_new_nets: int | None = None, keep_parts: bool = False, workers: int = 1,
             on_net: Callable[[int, float], None] | None = None, overwrite: bool = False) -> MakeZooResult:
    """Train a zoo of ``num_nets`` CNNs on ``dataset`` into ``out_dir`` (public Small CNN Zoo files).

    Net ``i`` (``0 <= i < num_nets``) belongs to shard ``K/N`` iff ``i % N == K``; its hyperparameters,
    data subset, initialisation, dropout and batch order come from ``(seed, i)`` alone. Every finished
    net is saved atomically to ``out_dir/.parts/net<i>.npz``; a rerun of the same command skips those,
    so a killed run resumes with no net lost or duplicated. When all nets of the shard are done the
    public files are written (rows sorted by net index, then step) and the parts removed (unless
    ``keep_parts``). ``max_new_nets`` stops after that many newly trained nets (time-sliced jobs;
    ``complete`` is then False). ``threads``: torch CPU threads while training (1 is fastest for these
    tiny convolutions on a small shared CPU); ``None`` leaves the setting alone. ``workers > 1``
    trains nets in that many spawned processes (``threads`` each); the zoo is the same.
    """
    if num_nets < 1:
        raise ValueError(f"num_nets must be positive, got {num_nets}")
    acts = tuple(activations)
    if not acts:
        raise ValueError("need at least one activation")
    for a in acts:
        if a not in ACTIVATIONS:
            raise ValueError(f"unknown activation {a!r}; known: {', '.join(sorted(ACTIVATIONS))}")
    k, n = parse_shard(shard)
    recipe = recipe or default_recipe(dataset)
    if dataset not in ZOO_DATASETS:
        raise ValueError(f"unknown zoo dataset {dataset!r}; choose from {', '.join(ZOO_DATASETS)}")
    out = Path(out_dir)
    # a folder holding a public-format zoo (or anything) that this command did not start is not resumed
    refuse_overwrite(out, lambda d: (d / "zoo.json").is_file() or (d / ".parts").is_dir(),
                     "a zoo made by `mnfn zoo make`", overwrite)
    parts = out / ".parts"
    indices = list(range(k, num_nets, n))

    data, tr = _load_data(dataset, recipe, data_root)
    num_classes = tr.num_classes
    spec = cnn_spec(data.spec_in[0], [recipe.channels] * recipe.num_conv, num_classes, acts[0],
                    padding=recipe.padding, image_size=data.spec_in[1])
    layout = zoo_layout(spec)
    meta = _zoo_meta(dataset, num_nets, acts, seed, recipe, (k, n), layout, data.spec_in)

    if (out / "zoo.json").is_file():
        diff = settings_diff(read_json(out / "zoo.json"), meta, volatile=_RUN_KEYS, fill=_FILL)
        if diff:
            raise ValueError(f"{out}: already holds a zoo made with other settings (differs in {diff}); "
                             "choose another folder")
        return MakeZooResult(out, len(indices), len(indices), 0, True)
    parts.mkdir(parents=True, exist_ok=True)
    cfg_path = parts / "config.json"
    if cfg_path.is_file():
        diff = settings_diff(read_json(cfg_path), meta, volatile=_RUN_KEYS, fill=_FILL)
        if diff:
            raise ValueError(f"{out}: an unfinished zoo with other settings is there (differs in {diff}); "
                             f"rerun with its settings to resume, or choose another folder")
    else:
        write_json(cfg_path, meta)

    done = {i for i in indices if (parts / f"net{i:06d}.npz").is_file()}
    todo = [i for i in indices if i not in done]
    if max_new_nets is not None:
        todo = todo[:max(0, max_new_nets)]
    times: list[float] = []
    cpu_times: list[float] = []
    bar = progress_bar(progress, len(indices), f"zoo {dataset} shard {k}/{n}", initial=len(done))

    def finished(i: int, dt: float, cpu: float, acc: float | None) -> None:
        times.append(dt)
        cpu_times.append(cpu)
        done.add(i)
        if on_net is not None:
            on_net(i, dt)
        if bar is not None:
            bar.update(1)
            if acc is not None:
                bar.set_postfix(acc=f"{acc:.3f}", s=f"{dt:.2f}")

    job = _Job(seed, acts, recipe, dataset, str(parts), None if data_root is None else str(data_root), threads)
    if workers > 1 and len(todo) > 1:
        for res in process_map(_worker_net, todo, min(workers, len(todo)), initializer=_worker_init, initargs=(job,)):
            finished(*res)
    else:
        old_threads = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            state = _WorkerState(job, data, layout, num_classes)
            for i in todo:
                finished(*state.run(i))
        finally:
            if threads is not None:
                torch.set_num_threads(old_threads)
    if bar is not None:
        bar.close()
    complete = len(done) == len(indices)
    if complete:
        _assemble(out, parts, indices, meta, layout)
        if not keep_parts:
            for i in indices:
                (parts / f"net{i:06d}.npz").unlink(missing_ok=True)
            cfg_path.unlink(missing_ok=True)
            for junk in parts.glob(".net*.tmp"):  # temporary files of writes killed mid-way
                junk.unlink(missing_ok=True)
            try:
                parts.rmdir()
            except OSError:
                pass
    return MakeZooResult(out, len(indices), len(done), len(times), complete, times, cpu_times)


_NET_RE = re.compile(r"net(\d+)$")


@locks_output("out", "mnfn zoo merge")
def merge_zoos(dirs: Sequence[str | os.PathLike], out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Merge shard zoos (made here, same settings, disjoint nets) into one, ordered by net index.

    When the shards cover all nets the result is byte-identical to a single run with the same seed.
    ``out`` may hold an earlier merge of the same settings (rerun); anything else needs ``overwrite``.
    """
    if not dirs:
        raise ValueError("no zoo folders to merge")
    zoos = [read_zoo(d, mmap=True) for d in dirs]
    metas = []
    for z in zoos:
        if z.meta is None:
            raise DataFormatError(f"{z.root}: no zoo.json; only zoos made by `mnfn zoo make` (complete shards) can be merged")
        metas.append(z.meta)
    base = comparable_settings(metas[0], _MERGE_KEYS)

    def same_run(d: Path) -> bool:
        if not (d / "zoo.json").is_file():
            return False
        old = read_json(d / "zoo.json")
        return not settings_diff(old, base, volatile=_MERGE_KEYS, fill=_FILL)

    refuse_overwrite(Path(out), same_run, "a merge of these zoos", overwrite)
    for z, m in zip(zoos[1:], metas[1:]):
        diff = settings_diff(m, base, volatile=_MERGE_KEYS, fill=_FILL)
        if diff:
            raise ValueError(f"{z.root}: made with other settings than {zoos[0].root} (differs in {diff})")
        if z.layout != zoos[0].layout:
            raise DataFormatError(f"{z.root}: layout.csv differs from {zoos[0].root}")
    # Row order: by net index, then the row order inside the shard (steps ascending).
    keyed: list[tuple[int, int, int]] = []
    seen: dict[int, Path] = {}
    for zi, z in enumerate(zoos):
        md = z.metrics["modeldir"]
        for r, name in enumerate(md):
            mt = _NET_RE.search(str(name))
            if not mt:
                raise DataFormatError(f"{z.root / 'metrics.csv.gz'}: modeldir {name!r} does not name a net (netNNNNNN)")
            keyed.append((int(mt.group(1)), zi, r))
        for idx in {int(_NET_RE.search(str(x)).group(1)) for x in md}:  # type: ignore[union-attr]
            if idx in seen:
                raise ValueError(f"net {idx} is in both {seen[idx]} and {z.root}")
            seen[idx] = z.root
    keyed.sort(key=lambda t: (t[0], t[2]))
    weights = np.stack([zoos[zi].weights[r] for _, zi, r in keyed]) if keyed else np.zeros((0, zoos[0].num_params), np.float32)
    cols = [c for c in METRIC_COLUMNS]
    rows = []
    for _, zi, r in keyed:
        m = zoos[zi].metrics
        rows.append({c: _py(m[c][r]) for c in cols if c in m})
    indices = sorted(seen)
    full = indices == list(range(int(base["num_nets"])))
    meta = dict(base, shard=[0, 1] if full else None, net_indices=indices)
    # Keep key order identical to a single run's zoo.json.
    order = list(metas[0].keys())
    meta = {kk: meta[kk] for kk in order if kk in meta}
    if not full:
        meta["shard"] = "partial"
    write_zoo(out, weights, rows, zoos[0].layout, meta)
    return Path(out)


def _py(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v
