"""NFN SIREN format: state-dict keys, one ``.pth`` file read and checked (:func:`read_nfn_file`),
whole sets imported (:func:`import_nfn`) and exported (:func:`export_nfn`) in NFN's folder layout."""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from ...io import DataFormatError, load_torch, read_json, save_torch, write_json
from ...jobs import locks_output, progress_bar, refuse_overwrite
from ...weightspace import WeightSpaceFeatures, WeightSpaceSpec, siren_spec
from .format import (CONVENTIONS, FORMAT, FORMAT_VERSION, INR_DATASETS, KNOWN_SPLIT_SIZES, NFN_PREFIX, SPLITS,
                     MakeSummary, _check_row, _meta_spec, _save_chunk, chunk_name, load_chunk, read_index,
                     read_meta, summarize, write_index)
from .siren import _flat_shapes, _load_split, _params_to_features, _resize, psnr, render

__all__ = [
    "nfn_keys",
    "nfn_state_dict",
    "read_nfn_file",
    "import_nfn",
    "export_nfn",
]


def nfn_keys(depth: int = 2) -> list[str]:
    """State-dict keys of the NFN SIREN, in order: ``net.{i}.linear.weight/bias`` (sine layers), ``net.{depth}.weight/bias``."""
    keys = []
    for i in range(depth):
        keys += [f"net.{i}.linear.weight", f"net.{i}.linear.bias"]
    return keys + [f"net.{depth}.weight", f"net.{depth}.bias"]


def nfn_state_dict(features: WeightSpaceFeatures, index: int) -> "OrderedDict[str, Tensor]":
    """NFN state dict of net ``index`` (channel 0): fresh contiguous tensors (``torch.save`` of a view would save the whole batch)."""
    keys = nfn_keys(features.spec.num_layers - 1)
    sd: OrderedDict[str, Tensor] = OrderedDict()
    for i, (w, b) in enumerate(features):
        sd[keys[2 * i]] = w[index, 0].detach().clone().contiguous()
        sd[keys[2 * i + 1]] = b[index, 0].detach().clone().contiguous()
    return sd


def read_nfn_file(path: str | Path, spec: WeightSpaceSpec | None = None, depth: int = 2) -> list[Tensor]:
    """Read one NFN SIREN ``.pth`` (``torch.load(weights_only=True)``) -> ``[W1, b1, ..., WL, bL]`` float32.

    Checks the keys and, given ``spec``, the shapes (without: a consistent SIREN with 2 inputs);
    every problem raises :class:`DataFormatError` naming the file.
    """
    path = Path(path)
    sd = load_torch(path)
    if not isinstance(sd, dict):
        raise DataFormatError(f"{path}: expected a state dict, got {type(sd).__name__}")
    keys = nfn_keys(spec.num_layers - 1 if spec is not None else depth)
    missing = [k for k in keys if k not in sd]
    extra = [k for k in sd if k not in keys]
    if missing or extra:
        raise DataFormatError(f"{path}: not an NFN SIREN state dict: missing keys {missing}, unexpected keys {extra}")
    out = []
    for k in keys:
        t = sd[k]
        if not isinstance(t, Tensor):
            raise DataFormatError(f"{path}: {k} is a {type(t).__name__}, expected a tensor")
        if not t.is_floating_point():
            raise DataFormatError(f"{path}: {k} has dtype {t.dtype}, expected floating point")
        out.append(t.detach().to(torch.float32).contiguous())
    if spec is not None:
        expected = _flat_shapes(spec)
    else:
        L = len(keys) // 2
        widths = [2] + [int(out[2 * i].shape[0]) if out[2 * i].dim() == 2 else -1 for i in range(L)]
        expected = []
        for i in range(L):
            expected += [(widths[i + 1], widths[i]), (widths[i + 1],)]
    for k, t, shp in zip(keys, out, expected):
        if tuple(t.shape) != tuple(shp):
            raise DataFormatError(f"{path}: {k} has shape {tuple(t.shape)}, expected {tuple(shp)}")
    for k, t in zip(keys, out):
        if not torch.isfinite(t).all():
            raise DataFormatError(f"{path}: {k} has NaN/Inf values")
    return out


_NFN_DIR_RE_T = r"^{prefix}_(\d+)s$"
_NFN_FILE_RE = re.compile(r"^net(\d+)\.pth$")
EXPORT_META = "mnfn-export.json"


def _guess_dataset(src: Path) -> str | None:
    # The folder's own name and its parent's (e.g. .../mnist-inrs or .../fashion/sirens), as NFN's loader guesses.
    r = src.resolve()
    name = f"{r.parent.name}/{r.name}".lower()
    if "fashion" in name:
        return "fashion-mnist"
    if "mnist" in name:
        return "mnist"
    if "cifar" in name:
        return "cifar10"
    return None


@locks_output("out", "mnfn inr import-nfn")
def import_nfn(src: str | Path, out: str | Path, *, dataset: str | None = None, prefix: str = NFN_PREFIX,
               train_size: int | None = None, image_shape: Sequence[int] | None = None, batch_size: int = 64,
               compute_psnr: bool = False, data_root: str | Path | None = None,
               progress: bool = True) -> MakeSummary:
    """Read an NFN SIREN set (``SRC/<prefix>_<label>s/net<idx>.pth``) into an INR set folder ``out``.

    ``idx`` runs over train then test images of ``dataset``: ``idx < train_size`` is train image
    ``idx``, else test image ``idx - train_size``. The dataset, train size and image shape come from
    an ``mnfn-export.json`` beside the class folders when present, else from the arguments, else
    from the folder name (``mnist``, ``fashion``, ``cifar`` as NFN's own loader guesses).
    ``compute_psnr`` renders every net against its image (needs the images); else PSNR is NaN.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DataFormatError(f"{src}: not a folder")
    exp = read_json(src / EXPORT_META) if (src / EXPORT_META).exists() else {}
    if not isinstance(exp, dict):
        raise DataFormatError(f"{src / EXPORT_META}: must hold a JSON object, got {type(exp).__name__}")
    dataset = dataset or exp.get("dataset") or _guess_dataset(src)
    if dataset is None:
        raise ValueError(f"{src}: cannot tell which image set the nets were fitted to; pass --dataset "
                         f"({', '.join(INR_DATASETS)})")
    if dataset not in INR_DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(INR_DATASETS)}")
    sizes = dict(exp.get("split_sizes") or KNOWN_SPLIT_SIZES.get(dataset, {}))
    if train_size is not None:
        sizes["train"] = int(train_size)
    if "train" not in sizes:
        raise ValueError(f"unknown train size of {dataset!r}; pass train_size")
    dir_re = re.compile(_NFN_DIR_RE_T.format(prefix=re.escape(prefix)))
    files: dict[int, tuple[int, Path]] = {}
    for d in sorted(p for p in src.iterdir() if p.is_dir()):
        m = dir_re.match(d.name)
        if not m:
            continue  # e.g. randinit_smaller_aug0_3s: another realisation, imported with prefix=...
        label = int(m.group(1))
        for f in d.iterdir():
            fm = _NFN_FILE_RE.match(f.name)
            if not fm:
                continue
            idx = int(fm.group(1))
            if idx in files:
                raise DataFormatError(f"{f}: net index {idx} also in {files[idx][1]}")
            files[idx] = (label, f)
    if not files:
        raise DataFormatError(f"{src}: no {prefix}_<label>s/net<idx>.pth files")
    ordered = sorted(files)
    # The first file fixes the architecture; every other file must match it.
    first = read_nfn_file(files[ordered[0]][1])
    channels, hidden, depth = int(first[-2].shape[0]), int(first[0].shape[0]), len(first) // 2 - 1
    ref_spec = siren_spec(channels, hidden=hidden, depth=depth, w0=float(exp.get("w0", 30.0)))
    native = {"digits": (8, 8), "cifar10": (32, 32)}.get(dataset, (28, 28))
    shape = tuple(image_shape or exp.get("image_shape") or (channels, *native))
    if len(shape) == 2:
        shape = (channels, *shape)
    if shape[0] != channels:
        raise ValueError(f"{files[ordered[0]][1]}: nets output {channels} channels, image shape {shape} has {shape[0]}")
    from ..images import CLASSES

    items = []
    for idx in ordered:
        split, ii = ("train", idx) if idx < sizes["train"] else ("test", idx - sizes["train"])
        items.append((split, ii, files[idx][0], files[idx][1]))
    if (out / "meta.json").exists():
        raise ValueError(f"{out}: already holds an INR set; import into a new folder")
    meta = {
        "format": FORMAT, "version": FORMAT_VERSION, "origin": "nfn-import", "source": str(src), "prefix": prefix,
        "dataset": dataset, "classes": list(CLASSES.get(dataset, [str(i) for i in range(10)])),
        "num_classes": len(CLASSES.get(dataset, range(10))), "image_shape": list(shape),
        "native_shape": [channels, *native], "resize": exp.get("resize"),
        "siren": {"hidden": hidden, "depth": depth, "w0": ref_spec.layers[0].act_param},
        "split_sizes": sizes, "plan": None, "fit": exp.get("fit"), "chunks_expected": None,
        "conventions": CONVENTIONS,
    }
    sets = {}
    if compute_psnr:
        for s in SPLITS:
            if any(it[0] == s for it in items):
                sets[s] = _load_split(dataset, s, data_root)
    bar = progress_bar(progress, len(items), "importing NFN SIRENs")
    try:
        for s in SPLITS:
            sub = [it for it in items if it[0] == s]
            for k, lo in enumerate(range(0, len(sub), batch_size)):
                part = sub[lo:lo + batch_size]
                per = [read_nfn_file(p, ref_spec) for _, _, _, p in part]
                params = [torch.stack([q[j] for q in per]) for j in range(len(per[0]))]
                idx = np.array([it[1] for it in part], dtype=np.int64)
                labels = np.array([it[2] for it in part], dtype=np.int64)
                ps = np.full(len(part), np.nan, dtype=np.float32)
                if compute_psnr:
                    feats = _params_to_features(params, ref_spec)
                    imgs = torch.from_numpy(_resize(np.ascontiguousarray(sets[s].images[idx]),
                                                    tuple(shape[1:]) if meta["resize"] else None))
                    if tuple(imgs.shape[1:]) != shape:
                        raise ValueError(f"images of {dataset} have shape {tuple(imgs.shape[1:])}, nets draw {shape}")
                    ps = psnr(render(feats, shape, clamp=False), imgs).numpy().astype(np.float32)
                _save_chunk(out / "chunks" / chunk_name(s, k), s, k, idx, labels, ps, np.full(len(part), -1),
                            [p.numpy() for p in params])
                if bar is not None:
                    bar.update(len(part))
    finally:
        if bar is not None:
            bar.close()
    write_json(out / "meta.json", meta)
    rows = write_index(out, ref_spec)
    return summarize(out, rows)


@locks_output("dst", "mnfn inr export-nfn")
def export_nfn(root: str | Path, dst: str | Path, *, prefix: str = NFN_PREFIX, renumber: bool = False,
               progress: bool = True, overwrite: bool = False) -> int:
    """Write an INR set as NFN SIRENs: ``DST/<prefix>_<label>s/net<idx>.pth`` (+ ``mnfn-export.json``).

    ``idx`` = train image index, or ``train_size`` + test image index (NFN's train + test order);
    with ``renumber`` the nets are numbered ``0..n-1`` in index order instead (NFN's loader asserts
    contiguous indices, which a subset does not have). Returns the number of files written.
    ``dst`` may hold an earlier export (it has ``mnfn-export.json``); anything else, e.g. an NFN set
    downloaded there, needs ``overwrite``.
    """
    root, dst = Path(root), Path(dst)
    refuse_overwrite(dst, lambda d: (d / EXPORT_META).is_file(), "an export made by `mnfn inr export-nfn`", overwrite)
    meta = read_meta(root)
    spec = _meta_spec(meta)
    rows = read_index(root)
    train_size = int(meta.get("split_sizes", {}).get("train", -1))
    if not renumber and any(r["split"] == "test" for r in rows) and train_size < 0:
        raise ValueError(f"{root / 'meta.json'}: train size unknown; export with renumber=True")
    by_chunk: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_chunk.setdefault(r["chunk"], []).append(r)
    bar = progress_bar(progress, len(rows), "exporting NFN SIRENs")
    n = 0
    try:
        for chunk, rs in by_chunk.items():
            path = root / "chunks" / chunk
            a = load_chunk(path, spec)
            params = [torch.from_numpy(a[f"{kind}_{i + 1}"]) for i in range(spec.num_layers)
                      for kind in ("weight", "bias")]
            feats = _params_to_features(params, spec)
            for r in rs:
                _check_row(path, a, r)
                idx = r["row"] if renumber else r["image_index"] + (train_size if r["split"] == "test" else 0)
                save_torch(dst / f"{prefix}_{r['label']}s" / f"net{idx}.pth", nfn_state_dict(feats, r["pos"]))
                n += 1
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    write_json(dst / EXPORT_META, {
        "exported_from": str(root), "dataset": meta["dataset"], "split_sizes": meta.get("split_sizes"),
        "image_shape": meta["image_shape"], "resize": meta.get("resize"), "w0": meta["siren"]["w0"],
        "fit": meta.get("fit"), "renumbered": renumber, "prefix": prefix, "conventions": CONVENTIONS,
    })
    return n
