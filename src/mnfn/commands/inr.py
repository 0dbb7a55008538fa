"""``mnfn inr``: SIREN INR sets: fit (``make``), ``merge`` shards, NFN-format ``import-nfn``/``export-nfn``,
``show`` originals beside reconstructions. The work is done by :mod:`mnfn.data.inr`."""

from __future__ import annotations

import argparse

from . import add_subcommand
from pathlib import Path

NAME = "inr"
ORDER = 30
HELP = "SIREN INR sets: fit one per image (make), merge shards, NFN import/export, show reconstructions"
EXAMPLE = """examples:
  mnfn inr make --dataset mnist --num 1000 --out runs/inr-mnist
  mnfn inr make --dataset mnist --split both --out runs/inr-mnist --shard 0/4   # + 1/4, 2/4, 3/4 elsewhere
  mnfn inr merge runs/shard0 runs/shard1 --out runs/inr-mnist
  mnfn inr show runs/inr-mnist --out grid.png --num 16
  mnfn inr info runs/inr-mnist
  mnfn inr import-nfn ~/data/mnist-inrs --out runs/nfn-mnist --dataset mnist
  mnfn inr export-nfn runs/inr-mnist --out runs/inr-mnist-nfn"""

DESCRIPTION = """SIREN INR sets (see docs/inr.md).

Each net is a SIREN 2 -> 32 -> 32 -> C with sin(30 x) hidden activations, fitted to one image
(coordinates (y, x) on [-1,1]^2, pixels scaled to [-1,1]) until it reaches --target-psnr or
--max-steps Adam updates; 64 nets are fitted at once with batched matrix products."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..data.inr import DEFAULT_RECIPE, INITS, INR_DATASETS, NFN_PREFIX, RECIPES

    sub = p.add_subparsers(dest="inr_command", metavar="SUBCOMMAND")
    sub.required = True

    m = add_subcommand(sub, "make", "fit one SIREN per image into a folder (seeded, resumable, shardable)",
                       "mnfn inr make --dataset mnist --num 1000 --out runs/inr-mnist\n"
                       "mnfn inr make --dataset mnist --recipe dws --split train --shard 0/4 --out runs/dws-0")
    m.add_argument("--dataset", required=True, choices=INR_DATASETS)
    m.add_argument("--out", required=True, help="output folder (rerun the same command to resume)")
    m.add_argument("--num", type=int, default=None, help="images per split (default: all)")
    m.add_argument("--split", choices=("train", "test", "both"), default="both",
                   help="which image split(s) to fit: the classifiers and editors need both (default both)")
    m.add_argument("--select", choices=("first", "random"), default="first",
                   help="which NUM images: the first, or a fixed random sample (seed 0) (default first)")
    m.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    m.add_argument("--init", choices=INITS, default="independent",
                   help="each net from its own initialisation (default, like NFN's randinit sets) or all "
                        "nets from one shared initialisation")
    m.add_argument("--shard", default=None, metavar="K/N", help="fit only shard K of N (0-based like torch ranks), e.g. 1/4; under torchrun the rank decides")
    m.add_argument("--recipe", choices=tuple(RECIPES), default=DEFAULT_RECIPE,
                   help="initialisation and fitting settings: nfn = NFN's public sets (Adam 1e-3, 300 steps), "
                        "dws = DWSNets-style (zero biases, Adam 2e-3 to 30 dB), fast = Adam 6e-3 to 30 dB "
                        f"(~8x cheaper); see docs/inr.md (default {DEFAULT_RECIPE})")
    m.add_argument("--target-psnr", type=float, default=None,
                   help="stop a net at this PSNR in dB (default: the recipe's; nfn has no early stop)")
    m.add_argument("--max-steps", type=int, default=None, help="Adam steps per net at most (default: the recipe's)")
    m.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the recipe's)")
    m.add_argument("--batch", type=int, default=64, help="nets fitted at once = nets per chunk (default 64)")
    m.add_argument("--resize", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="fit the images resized to H x W (bilinear), e.g. 28 28 for digits")
    m.add_argument("--max-chunks", type=int, default=None, help="stop after fitting this many chunks")
    m.add_argument("--workers", type=int, default=1,
                   help="processes fitting chunks in parallel, one torch thread each (default 1; 2 on a quiet 2-core CPU)")
    m.add_argument("--data", default=None, help="image data folder (default $MNFN_DATA)")
    m.add_argument("--device", default="cpu",
                   help="fit on cpu (default), cuda, cuda:1 or auto (CUDA when there is one); on a GPU use "
                        "--workers 1 and a large --batch, e.g. 4096 (weights equal a CPU fit's to float32 "
                        "precision, not bit for bit)")
    m.add_argument("--no-progress", action="store_true", help="no progress bar")

    g = add_subcommand(sub, "merge", "merge INR set folders of one run (shards, or splits made apart) into one",
                       "mnfn inr merge runs/inr-train runs/inr-test --out runs/inr")
    g.add_argument("dirs", nargs="+", help="INR set folders")
    g.add_argument("--out", required=True, help="output folder")

    i = add_subcommand(sub, "import-nfn", "read an NFN SIREN set (<prefix>_<label>s/net<idx>.pth)",
                       "mnfn inr import-nfn ~/data/mnist-inrs --out runs/nfn-mnist --dataset mnist")
    i.add_argument("src", help="folder holding the <prefix>_<label>s class folders")
    i.add_argument("--out", required=True, help="output INR set folder")
    i.add_argument("--dataset", choices=INR_DATASETS, default=None,
                   help="image set the nets were fitted to (default: from mnfn-export.json or the folder name)")
    i.add_argument("--prefix", default=NFN_PREFIX, help=f"class folder prefix (default {NFN_PREFIX})")
    i.add_argument("--train-size", type=int, default=None, help="first test index (default: the set's train size)")
    i.add_argument("--psnr", action="store_true", help="render every net against its image to record its PSNR")
    i.add_argument("--data", default=None, help="image data folder (default $MNFN_DATA)")
    i.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = add_subcommand(sub, "export-nfn", "write an INR set as NFN SIREN .pth files",
                       "mnfn inr export-nfn runs/inr-mnist --out runs/inr-mnist-nfn")
    e.add_argument("dir", help="INR set folder")
    e.add_argument("--out", required=True, help="output folder (must not hold an NFN set already)")
    e.add_argument("--prefix", default=NFN_PREFIX, help=f"class folder prefix (default {NFN_PREFIX})")
    e.add_argument("--overwrite", action="store_true", help="write into a folder that holds something else")
    e.add_argument("--renumber", action="store_true", help="number the nets 0..n-1 instead of by image index")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")

    f = add_subcommand(sub, "info", "a set's size, PSNR, recipe and per-tensor weight statistics",
                       "mnfn inr info runs/inr-mnist --json stats.json")
    f.add_argument("dir", help="INR set folder")
    f.add_argument("--split", choices=("train", "test", "all"), default="train", help="nets to describe (default train)")
    f.add_argument("--max-nets", type=int, default=2000, help="statistics over the first N nets (default 2000)")
    f.add_argument("--json", default=None, metavar="FILE", help="also write the statistics as JSON")

    s = add_subcommand(sub, "show", "save originals beside reconstructions as a PNG grid",
                       "mnfn inr show runs/inr-mnist --out grid.png --num 16")
    s.add_argument("dir", help="INR set folder")
    s.add_argument("--out", required=True, help="PNG file")
    s.add_argument("--num", type=int, default=16, help="nets to show (default 16)")
    s.add_argument("--split", choices=("train", "test", "all"), default="all", help="which nets (default all)")
    s.add_argument("--data", default=None, help="image data folder (default $MNFN_DATA)")


def run(args: argparse.Namespace) -> int:
    from ..data import inr

    cmd = args.inr_command
    if cmd == "make":
        overrides = {"target_psnr": args.target_psnr, "max_steps": args.max_steps, "lr": args.lr}
        fit = inr.recipe(args.recipe).replace(**overrides)
        changed = [f"{k}={v:g}" for k, v in overrides.items() if v is not None and getattr(inr.recipe(args.recipe), k) != v]
        label = args.recipe + (f" ({', '.join(changed)})" if changed else "")
        splits = ("train", "test") if args.split == "both" else (args.split,)
        from ..jobs import run_sharded

        def make(out, shard):  # under torchrun (no explicit --shard) each rank fits shard rank/world
            return inr.make_inr_dataset(
                out, args.dataset, num=args.num, splits=splits, seed=args.seed,
                shard=args.shard if args.shard is not None else shard, fit=fit,
                batch_size=args.batch, select=args.select, resize=tuple(args.resize) if args.resize else None,
                data_root=args.data, max_chunks=args.max_chunks, workers=args.workers,
                progress=not args.no_progress, init=args.init, recipe_label=label, device=args.device)

        summary = make(args.out, None) if args.shard is not None else run_sharded(args.out, make,
                                                                                 inr.merge_inr_datasets)
        print("\n".join(summary.lines()))
        return 0
    if cmd == "merge":
        summary = inr.merge_inr_datasets(args.dirs, args.out)
        print("\n".join(summary.lines()))
        return 0
    if cmd == "import-nfn":
        summary = inr.import_nfn(args.src, args.out, dataset=args.dataset, prefix=args.prefix,
                                 train_size=args.train_size, compute_psnr=args.psnr, data_root=args.data,
                                 progress=not args.no_progress)
        print("\n".join(summary.lines()))
        return 0
    if cmd == "export-nfn":
        n = inr.export_nfn(args.dir, args.out, prefix=args.prefix, renumber=args.renumber,
                           progress=not args.no_progress, overwrite=args.overwrite)
        print(f"wrote {n} NFN SIREN files under {args.out}")
        return 0
    if cmd == "info":
        from ..data.inr_stats import stats_table, tensor_stats
        from ..io import write_json

        if args.max_nets < 1:
            raise ValueError(f"--max-nets must be >= 1, got {args.max_nets}")
        meta = inr.read_meta(args.dir)
        print("\n".join(inr.summarize(args.dir).lines()))
        fit = meta.get("fit")
        print(f"recipe: {meta.get('recipe') or (inr.recipe_name(inr.FitConfig.from_json(fit)) if fit else None) or 'custom'}"
              + (f" ({', '.join(f'{k}={v}' for k, v in fit.items() if k not in ('betas', 'eps'))})" if fit else ""))
        stats = tensor_stats(args.dir, split=args.split, max_nets=args.max_nets)
        print(stats_table(stats))
        if args.json:
            write_json(args.json, stats)
            print(f"wrote {args.json}")
        return 0
    if cmd == "show":
        path = show_grid(args.dir, args.out, num=args.num, split=args.split, data_root=args.data)
        print(f"wrote {path}")
        return 0
    raise ValueError(f"unknown inr subcommand {cmd!r}")


def show_grid(root: str | Path, out: str | Path, num: int = 16, split: str = "all",
              data_root: str | Path | None = None) -> Path:
    """Save a PNG: for the first ``num`` nets, the original image beside its SIREN rendering (with PSNR)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..data.inr import InrDataset, psnr
    from ..io import atomic_path

    ds = InrDataset(root, split=split, data_root=data_root)
    if len(ds) == 0:
        raise ValueError(f"{root}: no nets in split {split!r}")
    n = max(1, min(num, len(ds)))
    idx = list(range(n))
    _, labels, originals = ds.batch(idx, with_images=True)
    recon = ds.render(idx)
    ps = psnr(recon, originals)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2 * cols * 1.3, rows * 1.75 + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    gray = ds.image_shape[0] == 1
    for j in range(n):
        r, c = divmod(j, cols)
        for k, (img, title) in enumerate(((originals[j], f"{ds.classes[int(labels[j])]}"),
                                          (recon[j], f"{float(ps[j]):.1f} dB"))):
            ax = axes[r, 2 * c + k]
            arr = img.permute(1, 2, 0).numpy()
            ax.imshow(arr[..., 0] if gray else np.clip(arr, 0, 1), cmap="gray" if gray else None, vmin=0, vmax=1)
            ax.set_title(title, fontsize=7)
    fig.suptitle(f"{ds.meta['dataset']}: original (class) | SIREN (PSNR)", fontsize=9)
    fig.tight_layout(h_pad=1.2)  # room for each row's titles below the row above
    out = Path(out)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out
