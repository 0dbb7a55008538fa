"""Making INR sets: :func:`make_inr_dataset` fits one SIREN per image into a set folder (plan,
fit, resume, shard, worker processes); :func:`merge_inr_datasets` joins such folders."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ...io import DataFormatError, write_json
from ...jobs import locks_output, parse_shard, process_map, progress_bar, settings_diff
from .fit import FitConfig, fit_sirens, recipe_name
from .format import (CONVENTIONS, FORMAT, FORMAT_VERSION, INR_DATASETS, KNOWN_SPLIT_SIZES, SPLITS, MakeSummary,
                     _chunk_files, _meta_spec, _save_chunk, chunk_name, load_chunk, read_meta, summarize,
                     write_index)
from .siren import INITS, _load_split, _resize, init_seeds

__all__ = [
    "plan_chunks",
    "make_inr_dataset",
    "merge_inr_datasets",
]


# --- make: plan, fit, resume, shard -----------------------------------------------------------

def select_indices(split_size: int, num: int | None, select: str) -> np.ndarray:
    """Image indices of a split to fit: the first ``num``, or ``num`` drawn at random (seed 0), sorted."""
    if num is None or num >= split_size:
        return np.arange(split_size, dtype=np.int64)
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    if select == "first":
        return np.arange(num, dtype=np.int64)
    if select == "random":
        # Fixed seed, independent of the init seed: runs with different init seeds fit the same images,
        # and a larger num takes a superset.
        return np.sort(np.random.default_rng(0).permutation(split_size)[:num]).astype(np.int64)
    raise ValueError(f"select must be 'first' or 'random', got {select!r}")


def plan_chunks(split_sizes: dict[str, int], splits: Sequence[str], num: int | None, select: str,
                batch: int) -> list[tuple[str, int, np.ndarray]]:
    """All chunks of a run, in order: ``(split, k, image indices)``; train chunks first."""
    plan = []
    for s in SPLITS:
        if s not in splits:
            continue
        idx = select_indices(split_sizes[s], num, select)
        for k, lo in enumerate(range(0, len(idx), batch)):
            plan.append((s, k, idx[lo:lo + batch]))
    return plan


_CONFIG_KEYS = ("dataset", "image_shape", "resize", "siren", "split_sizes", "plan", "fit")


def _fill_fit(v: Any) -> Any:
    return FitConfig.from_json(v).to_json()


def _config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Keys of :data:`_CONFIG_KEYS` whose values differ (:func:`mnfn.jobs.settings_diff`, the fit
    settings with their defaults filled in)."""
    return settings_diff(a, b, keys=_CONFIG_KEYS, fill={"fit": _fill_fit})


@locks_output("out", "mnfn inr make")
def make_inr_dataset(out: str | Path, dataset: str, *, num: int | None = None,
                     splits: Sequence[str] = ("train",), seed: int = 0, shard: str | tuple[int, int] | None = None,
                     fit: FitConfig = FitConfig(), batch_size: int = 64, select: str = "first",
                     resize: tuple[int, int] | None = None, data_root: str | Path | None = None,
                     max_chunks: int | None = None, workers: int = 1, progress: bool = True,
                     images: dict[str, Any] | None = None, init: str = "independent",
                     recipe_label: str | None = None, device: str = "cpu") -> MakeSummary:
    """Fit one SIREN per image of ``dataset`` into the folder ``out`` (see :mod:`mnfn.data.inr.format`).

    ``num`` images per split (``None``: all), chosen by ``select``; chunks of ``batch_size`` nets;
    ``shard=(K, N)`` fits only every N-th chunk starting at chunk K (so N machines can share a run
    and ``merge_inr_datasets`` joins their folders). Chunks already in ``out`` are kept (resume);
    ``max_chunks`` stops after fitting that many (a time-boxed job). ``workers`` processes fit chunks
    in parallel (each with one torch thread). Same arguments -> same weights, bit for bit, however
    the work is split into shards, runs and workers. ``images`` (``{split: ImageSet}``)
    skips loading them (tests, benchmarks). ``init``: see :data:`INITS` and :func:`init_seeds`.
    ``recipe_label`` is recorded as ``meta["recipe"]`` (default: the :data:`RECIPES` name ``fit``
    equals, or ``"custom"``); only ``fit`` itself decides whether a rerun may resume. ``device``:
    where the fits run (``"cpu"``, ``"cuda"``, ``"auto"``: CUDA when there is one); a GPU fits in this
    process (``workers`` must be 1; give it a large ``batch_size``) and rounds differently from the CPU.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if dataset not in INR_DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(INR_DATASETS)}")
    splits = tuple(splits)
    if not splits or any(s not in SPLITS for s in splits):
        raise ValueError(f"splits must be a non-empty subset of {SPLITS}, got {splits}")
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    k_shard, n_shard = parse_shard(shard)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(device).type != "cpu" and int(workers) > 1:
        raise ValueError(f"workers={workers} fit on CPU cores; on {device} use one worker and a larger batch size")
    out = Path(out)

    # Images (and split sizes: num/select need them; NFN export needs the train size).
    sets = dict(images or {})
    split_sizes: dict[str, int] = {}
    for s in SPLITS:
        if s in sets:
            split_sizes[s] = len(sets[s])
        elif s in splits:
            sets[s] = _load_split(dataset, s, data_root)
            split_sizes[s] = len(sets[s])
        else:
            split_sizes[s] = KNOWN_SPLIT_SIZES.get(dataset, {}).get(s, -1)
    first = sets[splits[0]]
    native = tuple(int(v) for v in first.images.shape[1:])
    image_shape = (native[0], *(resize or native[1:]))
    meta = {
        "format": FORMAT, "version": FORMAT_VERSION, "origin": "fit", "dataset": dataset,
        "classes": list(first.classes), "num_classes": len(first.classes),
        "image_shape": list(image_shape), "native_shape": list(native),
        "resize": list(resize) if resize else None,
        "siren": {"hidden": fit.hidden, "depth": fit.depth, "w0": fit.w0},
        "split_sizes": split_sizes,
        "plan": {"splits": list(splits), "num": num, "select": select, "batch": batch_size, "seed": seed,
                 # recorded only when not the default, so folders made before the option still resume
                 **({"init": init} if init != "independent" else {})},
        "fit": fit.to_json(),
        # the recipe these settings equal (informational: "fit" is what resume compares)
        "recipe": recipe_label or recipe_name(fit) or "custom",
        "conventions": CONVENTIONS,
    }
    plan = plan_chunks(split_sizes, splits, num, select, batch_size)
    meta["chunks_expected"] = len(plan)
    meta_path = out / "meta.json"
    if meta_path.exists():
        old = read_meta(out)
        diff = _config_diff(old, meta)
        if diff:
            hint = ""
            if "fit" in diff:
                old_recipe = old.get("recipe") or recipe_name(FitConfig.from_json(old.get("fit") or {})) or "custom"
                hint = f" (it was made with recipe {old_recipe!r}, this run asks for {meta['recipe']!r})"
            raise ValueError(f"{meta_path}: this folder holds a run with different settings ({', '.join(diff)})"
                             f"{hint}; use another --out folder or the original arguments")
    else:
        write_json(meta_path, meta)
    spec = fit.spec(image_shape[0])

    mine = [(s, k, idx) for c, (s, k, idx) in enumerate(plan) if c % n_shard == k_shard]
    todo, reused = [], 0
    for s, k, idx in mine:
        path = out / "chunks" / chunk_name(s, k)
        if path.exists():
            try:
                a = load_chunk(path, spec)
            except DataFormatError as exc:
                raise DataFormatError(f"{exc}. Delete {path} and rerun to fit that chunk again") from None
            if not np.array_equal(a["image_index"], idx):
                raise DataFormatError(f"{path}: holds images {a['image_index'][:5].tolist()}... but the plan "
                                      f"says {idx[:5].tolist()}...; the folder was made with other settings")
            reused += len(idx)
        else:
            todo.append((s, k, idx))
    if max_chunks is not None:
        todo = todo[:max(0, max_chunks)]

    jobs = [(out / "chunks" / chunk_name(s, k), s, k, idx, sets[s].labels[idx],
             _resize(np.ascontiguousarray(sets[s].images[idx]), resize),
             init_seeds(seed, s, idx, init), fit.to_json(), batch_size, device) for s, k, idx in todo]
    fitted = 0
    bar = progress_bar(progress and bool(jobs), sum(len(j[3]) for j in jobs), f"fitting {dataset} SIRENs")
    all_ps: list[float] = []

    def done(ps: list[float], from_worker: bool) -> None:
        nonlocal fitted
        fitted += len(ps)
        all_ps.extend(ps)
        if bar is not None:
            if from_worker:
                bar.update(len(ps))
            bar.set_postfix(median_psnr=f"{np.median(all_ps):.2f}")

    t_fit = time.perf_counter()
    try:
        workers = max(1, min(int(workers), len(jobs)))
        if workers == 1:
            for job in jobs:
                done(_fit_chunk_job(job, (lambda j: bar.update(j)) if bar is not None else None), False)
        else:
            for ps in process_map(_fit_chunk_job, jobs, workers, initializer=_worker_init):
                done(ps, True)
    finally:
        if bar is not None:
            bar.close()
    fit_seconds = time.perf_counter() - t_fit
    rows = write_index(out, spec)
    summary = summarize(out, rows)
    summary.fitted_now, summary.reused, summary.seconds = fitted, reused, fit_seconds
    return summary


def _fit_chunk_job(job: tuple, progress: Callable[[int], None] | None = None) -> list[float]:
    """Fit one chunk and write its file; returns the nets' PSNRs (runs in the main process or a worker)."""
    path, split, k, idx, labels, images, seeds, fit_json, batch_size, device = job
    res = fit_sirens(images, seeds, FitConfig.from_json(fit_json), batch_size=batch_size, progress=progress,
                     device=device)
    params = []
    for w, b in res.features:
        params += [w[:, 0].numpy(), b[:, 0].numpy()]
    _save_chunk(path, split, k, idx, labels, res.psnr.numpy(), res.steps.numpy(), params)
    return res.psnr.tolist()


def _worker_init() -> None:
    torch.set_num_threads(1)


# --- merge -----------------------------------------------------------------------------------

_PER_SPLIT_PLAN = ("splits", "num", "select")


def _without_splits(meta: dict[str, Any]) -> dict[str, Any]:
    plan = {k: v for k, v in (meta.get("plan") or {}).items() if k not in _PER_SPLIT_PLAN}
    return {**meta, "plan": plan}


def _merged_meta(sources: Sequence[str | Path], metas: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``meta.json`` of the union of ``sources``: shards of one run, or runs with the same settings
    that fitted different splits (e.g. ``--split train --num 50000`` and ``--split test`` made apart;
    which images of a split were fitted, ``num`` and ``select``, may then differ by split)."""
    base = metas[0]
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    for src, m in zip(sources, metas):
        diff = _config_diff(_without_splits(base), _without_splits(m))
        if diff:
            raise ValueError(f"{Path(src) / 'meta.json'}: settings differ from {Path(sources[0]) / 'meta.json'} "
                             f"({', '.join(diff)}); only folders of one run, or of one run's settings for "
                             "different splits, can be merged")
        splits = tuple((m.get("plan") or {}).get("splits") or ())
        if splits in groups and _config_diff(groups[splits], m):
            raise ValueError(f"{Path(src) / 'meta.json'}: fits the same splits ({'+'.join(splits)}) as another "
                             f"source with other settings ({', '.join(_config_diff(groups[splits], m))})")
        groups.setdefault(splits, m)
    seen: set[str] = set()
    for splits in groups:
        if seen & set(splits):
            raise ValueError(f"cannot merge folders whose split lists overlap without being equal "
                             f"({', '.join('+'.join(g) for g in groups)})")
        seen |= set(splits)
    if len(groups) == 1:
        return base
    plan = {k: v for k, v in base["plan"].items() if k not in _PER_SPLIT_PLAN}
    for key in ("num", "select"):
        per = {s: (m.get("plan") or {}).get(key) for splits, m in groups.items() for s in splits}
        vals = set(map(str, per.values()))
        plan[key] = next(iter(per.values())) if len(vals) == 1 else {s: per[s] for s in SPLITS if s in per}
    merged = {**base, "plan": {"splits": [s for s in SPLITS if s in seen], **plan}}
    merged["chunks_expected"] = sum(int(m.get("chunks_expected") or 0) for m in groups.values())
    return merged


@locks_output("out", "mnfn inr merge")
def merge_inr_datasets(sources: Sequence[str | Path], out: str | Path) -> MakeSummary:
    """Join INR set folders into ``out``: shards of one run, or folders made with the same settings
    for different splits; a chunk present twice must be identical."""
    if not sources:
        raise ValueError("nothing to merge")
    out = Path(out)
    metas = [read_meta(s) for s in sources]
    base = _merged_meta(sources, metas)
    if (out / "meta.json").exists():
        diff = _config_diff(read_meta(out), base)
        if diff:
            raise ValueError(f"{out / 'meta.json'}: the output folder holds another run ({', '.join(diff)})")
    else:
        write_json(out / "meta.json", base)
    spec = _meta_spec(base)
    for src in sources:
        for path in _chunk_files(Path(src)):
            a = load_chunk(path, spec)
            dst = out / "chunks" / path.name
            if dst.resolve() == path.resolve():
                continue
            if dst.exists():
                b = load_chunk(dst, spec)
                if set(a) != set(b) or any(not np.array_equal(a[k], b[k]) for k in a):
                    raise DataFormatError(f"{path}: differs from {dst} (same chunk, different contents)")
                continue
            _save_chunk(dst, str(a["split"]), int(a["chunk"]) if "chunk" in a else 0, a["image_index"], a["label"],
                        a["psnr"], a["steps"],
                        [a[f"{kind}_{i + 1}"] for i in range(spec.num_layers) for kind in ("weight", "bias")])
    rows = write_index(out, spec)
    return summarize(out, rows)
