"""Thread policy on a loaded machine: the Monomial-NFN zoo train step (batch 32) with 1 and 2 torch
threads, OpenMP threads spin-waiting (``OMP_WAIT_POLICY=ACTIVE``) or passive (``PASSIVE``, what
``mnfn`` sets by default), while ``--load`` busy processes of its own keep the cores occupied.
Each setting runs in a fresh process (the policy is read when OpenMP starts); medians of
``--steps`` steps; ratios against the best setting of the same run.

    .venv/bin/python benchmarks/bench_threads.py --load 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

STEP = r"""
import sys, time, torch
from mnfn.models import build_model
from mnfn.weightspace import WeightSpaceFeatures, zoo_cnn_spec
torch.set_num_threads(int(sys.argv[1]))
spec = zoo_cnn_spec("relu")
f = WeightSpaceFeatures.zeros_like_spec(spec, 32, 1, torch.float32).map(lambda t: torch.randn(t.shape))
m = build_model("monomial", spec); opt = torch.optim.Adam(m.parameters()); y = torch.rand(32, 1)
def step():
    loss = torch.nn.functional.mse_loss(m(f), y); opt.zero_grad(); loss.backward(); opt.step()
for _ in range(3):
    step()
ts = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter(); step(); ts.append(time.perf_counter() - t)
print(sorted(ts)[len(ts) // 2])
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--load", type=int, default=2, help="busy processes to start (default 2: one per core here)")
    p.add_argument("--steps", type=int, default=15, help="timed train steps per setting (default 15)")
    p.add_argument("--spincounts", default="",
                   help="also measure OpenMP's default policy with these GOMP_SPINCOUNT values (e.g. 1000,100000; "
                        "'default' = the library's own)")
    args = p.parse_args()
    settings = [("ACTIVE", {"OMP_WAIT_POLICY": "ACTIVE"}), ("PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"})]
    for sc in [x for x in args.spincounts.split(",") if x]:
        settings.append((f"spin={sc}", {} if sc == "default" else {"GOMP_SPINCOUNT": sc}))
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        time.sleep(1.0)
        res = {}
        for policy, extra in settings:
            for threads in (1, 2):
                env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
                env.update(extra)
                out = subprocess.run([sys.executable, "-c", STEP, str(threads), str(args.steps)], env=env,
                                     capture_output=True, text=True, check=True).stdout
                res[(policy, threads)] = float(out.strip().splitlines()[-1])
    finally:
        for b in burners:
            b.kill()
    best = min(res.values())
    print(f"load average {os.getloadavg()[0]:.2f} with {args.load} busy processes of this benchmark")
    for (policy, threads), s in res.items():
        tag = ""
        if policy == "PASSIVE":  # what the mnfn CLI sets; `mnfn train` uses 1 thread, torch's default is all cores
            tag = "  <- mnfn train's default" if threads == 1 else "  <- mnfn with torch's thread count"
        print(f"{policy:<14} threads={threads}: {1000 * s:6.0f} ms/step  {s / best:5.2f}x best{tag}")


if __name__ == "__main__":
    main()
