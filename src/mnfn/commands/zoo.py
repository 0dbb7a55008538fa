"""``mnfn zoo``: train CNN model zoos in the Small CNN Zoo format, merge shards, summarise a zoo."""

from __future__ import annotations

import argparse

from . import add_subcommand
import dataclasses
import json

NAME = "zoo"
ORDER = 30
HELP = "make (train), merge and inspect CNN model zoos in the public Small CNN Zoo format"
EXAMPLE = """examples:
  mnfn zoo make --dataset digits --num-nets 300 --out zoos/digits
  mnfn zoo make --dataset cifar10-gray --recipe public --num-nets 4000 --workers 2 --out zoos/cifar-gs
  mnfn zoo make --dataset fashion-mnist --num-nets 2000 --out zoos/fm-0 --shard 0/2
  mnfn zoo make --dataset fashion-mnist --num-nets 2000 --out zoos/fm-1 --shard 1/2
  mnfn zoo merge zoos/fm-0 zoos/fm-1 --out zoos/fashion-mnist
  mnfn zoo info zoos/fashion-mnist

A killed `zoo make` resumes when rerun with the same arguments (finished nets are kept in OUT/.parts/)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..data.zoo import ZOO_DATASETS

    sub = p.add_subparsers(dest="zoo_cmd", metavar="ACTION")
    mk = add_subcommand(sub, "make", "train a zoo (seeded, resumable, shardable)",
                        "mnfn zoo make --dataset digits --num-nets 200 --activations relu --out runs/zoo")
    mk.add_argument("--dataset", required=True, choices=ZOO_DATASETS)
    mk.add_argument("--num-nets", type=int, required=True, help="nets in the whole zoo (all shards together)")
    mk.add_argument("--out", required=True, help="output folder")
    mk.add_argument("--activations", default="relu,tanh", help="comma-separated, drawn uniformly per net (default relu,tanh)")
    mk.add_argument("--seed", type=int, default=0, help="seed of every net's init, data order and recipe draw (default 0)")
    mk.add_argument("--shard", default=None,
                    help="K/N (0-based): train only nets i with i %% N == K; under torchrun the rank decides")
    mk.add_argument("--data", default=None, help="image data folder (default $MNFN_DATA, else ~/.cache/mnfn/data)")
    mk.add_argument("--recipe", default="fast", choices=("fast", "public"),
                    help="how every net trains: fast = 72 steps, inputs [0, 1], padding 1 (tests, demo); public = "
                         "like the public Small CNN Zoo: inputs [-1, 1], 'valid' padding, full test set, 9 checkpoints "
                         "over 768 steps (~11x the cost); see docs/zoo.md (default fast)")
    mk.add_argument("--epochs", type=int, default=None,
                    help="override the recipe's epochs (checkpoints at 0..E; public: the public zoo's 9, rescaled)")
    mk.add_argument("--batch-size", type=int, default=None, help="override the recipe's batch size")
    mk.add_argument("--train-images", type=int, default=None, help="training pool per net (one epoch = this many examples)")
    mk.add_argument("--test-images", type=int, default=None, help="first N test images measure test accuracy")
    mk.add_argument("--threads", type=int, default=1, help="torch CPU threads per worker (default 1: fastest for these tiny nets)")
    mk.add_argument("--workers", type=int, default=1, help="train in this many processes (same zoo; default 1)")
    mk.add_argument("--max-new-nets", type=int, default=None, help="stop after training this many nets (resume later)")
    mk.add_argument("--no-progress", action="store_true", help="no progress bar")
    mk.add_argument("--overwrite", action="store_true",
                    help="write into a folder that holds something else (e.g. a downloaded public zoo)")

    mg = add_subcommand(sub, "merge", "merge shard zoos into one (identical to a single run)",
                        "mnfn zoo merge runs/zoo-0 runs/zoo-1 --out runs/zoo")
    mg.add_argument("dirs", nargs="+", help="shard folders")
    mg.add_argument("--out", required=True, help="output folder")
    mg.add_argument("--overwrite", action="store_true", help="replace whatever the output folder holds")

    inf = add_subcommand(sub, "info", "counts and accuracy statistics by activation", "mnfn zoo info runs/zoo --json")
    inf.add_argument("dir")
    inf.add_argument("--json", action="store_true", help="print JSON")
    inf.add_argument("--plot", default=None, metavar="PNG", help="also draw the final-accuracy histogram into this PNG")


def _histogram_text(info: dict, width: int = 40) -> str:
    """The final-accuracy histograms as text bars, one block per activation."""
    bins = int(info["hist_bins"])
    lines = [f"final test accuracy (share of nets below {info['near_chance_below']:.2f}, near chance, in brackets):"]
    for a, s in info["by_activation"].items():
        counts = s["final_hist"]
        top = max(max(counts), 1)
        lines.append(f"  {a} [{100 * s['final_near_chance']:.1f} %]")
        for j, c in enumerate(counts):
            lo, hi = j / bins, (j + 1) / bins
            lines.append(f"    {lo:4.2f}-{hi:4.2f} {c:>6} {'#' * round(width * c / top)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..data import zoo as Z

    cmd = getattr(args, "zoo_cmd", None)
    if cmd == "make":
        recipe = Z.default_recipe(args.dataset, args.recipe)
        over = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size),
                                  ("train_images", args.train_images), ("test_images", args.test_images)) if v is not None}
        if args.epochs is not None and recipe.checkpoint_epochs is not None:
            over["checkpoint_epochs"] = Z.public_checkpoints(args.epochs)
        if over:
            recipe = dataclasses.replace(recipe, **over)
        acts = tuple(a.strip() for a in args.activations.split(",") if a.strip())
        from ..jobs import run_sharded

        def make(out, shard):  # under torchrun (no explicit --shard) each rank makes shard rank/world
            return Z.make_zoo(out, args.dataset, args.num_nets, activations=acts, seed=args.seed,
                              shard=args.shard if args.shard is not None else (shard or (0, 1)), recipe=recipe,
                              data_root=args.data, progress=not args.no_progress, threads=args.threads,
                              max_new_nets=args.max_new_nets, workers=args.workers, overwrite=args.overwrite)

        if args.shard is not None:
            res = make(args.out, None)
        else:
            res = run_sharded(args.out, make, Z.merge_zoos)
        state = "complete" if res.complete else "unfinished (rerun the same command to continue)"
        extra = ""
        if res.net_seconds:
            import statistics

            extra = f", median {statistics.median(res.net_seconds):.2f} s/net"
        print(f"{res.out_dir}: {res.done}/{res.total} nets of this shard, {res.trained_now} trained now{extra}; {state}")
        return 0
    if cmd == "merge":
        out = Z.merge_zoos(args.dirs, args.out, overwrite=args.overwrite)
        info = Z.zoo_info(out)
        print(f"{out}: {info['nets']} nets, {info['checkpoints']} checkpoints")
        return 0
    if cmd == "info":
        info = Z.zoo_info(args.dir)
        if args.json:
            print(json.dumps(info, indent=2))
            return 0
        head = f"{info['root']}: {info['nets']} nets, {info['checkpoints']} checkpoints, {info['params']} parameters"
        if info.get("unfinished"):
            u = info["unfinished"]
            head = (f"{info['root']}: UNFINISHED, {u['nets_done']} of {u['nets_total']} nets so far, "
                    f"{info['checkpoints']} checkpoints, {info['params']} parameters")
        if info.get("dataset"):
            head += f", dataset {info['dataset']}, seed {info.get('seed')}"
        print(head)
        print(f"steps: {', '.join(map(str, info['steps']))}")
        print(f"{'activation':<12}{'nets':>7}{'ckpts':>8}{'acc mean':>10}{'acc std':>9}"
              f"{'final mean':>12}{'final std':>11}{'final min':>11}{'final max':>11}")
        for a, s in info["by_activation"].items():
            print(f"{a:<12}{s['nets']:>7}{s['checkpoints']:>8}{s['acc_mean']:>10.3f}{s['acc_std']:>9.3f}"
                  f"{s['final_acc_mean']:>12.3f}{s['final_acc_std']:>11.3f}{s['final_acc_min']:>11.3f}{s['final_acc_max']:>11.3f}")
        print(_histogram_text(info))
        by_opt = [(a, o, r) for a, s in info["by_activation"].items() for o, r in s.get("by_optimizer", {}).items()]
        if by_opt:
            print("final test accuracy by optimizer:")
            for a, o, r in by_opt:
                print(f"  {a:<6} {o:<8} {r['nets']:>6} nets  mean {r['final_acc_mean']:.3f}  "
                      f"{100 * r['final_near_chance']:5.1f} % near chance")
        if args.plot:
            print(f"wrote {Z.plot_accuracy_histogram(info, args.plot)}")
        return 0
    print("usage: mnfn zoo {make,merge,info} ...  (see mnfn zoo --help)")
    return 2
