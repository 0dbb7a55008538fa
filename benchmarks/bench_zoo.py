"""Zoo generation speed and accuracy spread for the default recipe.

Trains ``--num-nets`` nets of the Small CNN Zoo architecture with the dataset's default recipe
(28x28 sets: 3 epochs of a 3072-image pool at batch 128, test accuracy on the first 2000 test
images) and prints the median seconds per net and the spread (std) of test accuracies across
nets: at the final checkpoint and over all checkpoints.

    MNFN_DATA=../shared/data .venv/bin/python benchmarks/bench_zoo.py --dataset fashion-mnist --num-nets 24

CPU timings depend on the machine's load: the 1-minute load average is printed alongside.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

from mnfn.data.zoo import ZOO_DATASETS, default_recipe, make_zoo, read_zoo


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist", choices=ZOO_DATASETS)
    p.add_argument("--num-nets", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    recipe = default_recipe(args.dataset)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        res = make_zoo(d, args.dataset, args.num_nets, seed=args.seed, recipe=recipe, progress=False,
                       threads=args.threads)
        wall = time.perf_counter() - t0
        z = read_zoo(d)
        acc = np.asarray(z.metrics["test_accuracy"], dtype=np.float64)
        step = np.asarray(z.metrics["step"])
        acts = z.metrics["config.activation"].astype(str)
        final = step == step.max()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"dataset {args.dataset}, {args.num_nets} nets, seed {args.seed}, threads {args.threads}, "
          f"recipe: {recipe.epochs} epochs x {recipe.train_images or 'all'} images, batch {recipe.batch_size}, "
          f"test on {recipe.test_images or 'all'} images")
    print(f"median seconds per net: {statistics.median(res.net_seconds):.3f} wall, "
          f"{statistics.median(res.net_cpu_seconds):.3f} CPU "
          f"(wall mean {statistics.mean(res.net_seconds):.3f}, min {min(res.net_seconds):.3f}, max {max(res.net_seconds):.3f}; "
          f"total {wall:.1f} s incl. data loading; 1-min load average at the end {load:.2f} on {os.cpu_count()} CPUs)")
    print(f"test accuracy std across nets, final checkpoint: {acc[final].std():.3f} "
          f"(mean {acc[final].mean():.3f}, min {acc[final].min():.3f}, max {acc[final].max():.3f})")
    print(f"test accuracy std over all {len(acc)} checkpoints: {acc.std():.3f}")
    for a in sorted(set(acts.tolist())):
        s = final & (acts == a)
        print(f"  {a}: {int(s.sum())} nets, final accuracy mean {acc[s].mean():.3f}, std {acc[s].std():.3f}")


if __name__ == "__main__":
    main()
