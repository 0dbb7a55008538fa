"""``mnfn demo``: experiment 1 in miniature on scikit-learn's digits (no data folder, no network)."""

from __future__ import annotations

import argparse

NAME = "demo"
ORDER = 1
HELP = "the demo: a small CNN zoo, Monomial-NFN vs HNP vs StatNN, robustness to rescaled weights"
EXAMPLE = """examples:
  mnfn demo
  mnfn demo --out runs/demo --num-nets 100 --epochs 5"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo); rerunning resumes")
    p.add_argument("--num-nets", type=int, default=200, help="CNNs in the zoo (default 200)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs of each model (default 12)")
    p.add_argument("--seed", type=int, default=0, help="seed of the zoo, the split and the models (default 0)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..tasks.demo import run_demo, summary_lines
    from ..jobs import apply_threads

    apply_threads(1)  # many tiny matmuls: one thread avoids oversubscription on small CPUs
    report = run_demo(args.out, args.num_nets, args.epochs, args.seed, progress=args.progress)
    print("\n".join(summary_lines(report, args.out)))
    return 0
