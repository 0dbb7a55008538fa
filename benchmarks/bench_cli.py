"""Start-up time of the CLI: ``mnfn --help`` against a bare ``python -c pass`` and ``import torch``,
each a fresh process, interleaved, median of ``--repeats`` (the ratios are what to compare across
machines; the absolute times depend on the load, printed alongside).

    .venv/bin/python benchmarks/bench_cli.py --repeats 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "mnfn --help": [sys.executable, "-m", "mnfn", "--help"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "mnfn train --help": [sys.executable, "-m", "mnfn", "train", "--help"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="runs of each command (default 5)")
    args = p.parse_args()
    times: dict[str, list[float]] = {k: [] for k in CASES}
    for _ in range(args.repeats):
        for name, cmd in CASES.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["python -c pass"])
    print(f"load average {os.getloadavg()[0]:.2f}; median wall seconds of {args.repeats} fresh processes")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<28} {med:7.3f} s  ({med / base:5.1f}x python -c pass)")


if __name__ == "__main__":
    main()
