"""Model speed and memory benchmark: the same code as ``mnfn bench`` (see ``mnfn.bench``).

Train step (forward, backward, Adam) and forward throughput in nets per second, CPU time, peak
memory of a train step and parameter count of monomial, hnp, np and statnn on the Small CNN Zoo
CNN and the SIREN weight spaces (batch 32, float32), every model timed interleaved with the others
in one process, with ratios against hnp; plus zoo generation and SIREN fitting speed.

    .venv/bin/python benchmarks/bench_models.py --quick
    .venv/bin/python benchmarks/bench_models.py --threads 1 --tune-malloc --json bench.json

Takes the same options as ``mnfn bench`` (``--help``).
"""

from __future__ import annotations

import sys

from mnfn.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
