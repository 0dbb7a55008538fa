"""``mnfn curves``: the per-epoch training curves of runs (their ``log.csv``) as a table and a PNG."""

from __future__ import annotations

import argparse

NAME = "curves"
ORDER = 55
HELP = "per-epoch training curves of runs (log.csv under the folders named): table, JSON and PNG"
DESCRIPTION = """Find every training run (a folder with a log.csv) at or below the folders named, finished
or still running, and print one row per run: epochs done, the selected epoch and its validation
value, the last training and validation loss, seconds per epoch and the test metrics of a finished
run. With --png, draw the loss and every validation metric against the epoch (or hours), one colour
per run: whether a run was still climbing, sat on a plateau or overfitted."""
EXAMPLE = """examples:
  mnfn curves runs/experiments/classify-inr --png runs/experiments/classify-inr/curves.png
  mnfn curves runs/a/n45000/inr-mnist/np/seed0 runs/b --metrics loss,val_accuracy --x hours --json curves.json"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="run folders, folders of runs, or log.csv files")
    p.add_argument("--png", default=None, metavar="FILE", help="draw the curves into this PNG")
    p.add_argument("--json", default=None, metavar="FILE", help="write the summary and every curve as JSON")
    p.add_argument("--metrics", default=None,
                   help="comma-separated panels: loss (train and val) and/or logged columns such as val_accuracy "
                        "(default: loss and every val_* metric)")
    p.add_argument("--x", choices=("epoch", "hours"), default="epoch", help="horizontal axis (default epoch)")


def run(args: argparse.Namespace) -> int:
    from ..io import write_json
    from ..training.history import find_runs, format_table, plot_histories, summarize

    runs = find_runs(args.paths)
    summary = summarize(runs)
    print(format_table(summary), end="")
    if args.png:
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
        print(f"wrote {plot_histories(runs, args.png, metrics, x=args.x)}")
    if args.json:
        write_json(args.json, dict(summary=summary, curves={r.label: r.rows for r in runs}))
        print(f"wrote {args.json}")
    return 0
