"""``mnfn bench``: training/forward throughput, peak memory and parameters of the models (and,
through the data modules, zoo generation and SIREN fitting speed) on this machine."""

from __future__ import annotations

import argparse

NAME = "bench"
ORDER = 90
HELP = "benchmark models (train step, forward, peak memory, parameters) and data generation on this CPU"
DESCRIPTION = """Benchmark the models on the Small CNN Zoo CNN and the SIREN weight spaces (batch 32, float32):
train step (forward, backward, Adam) and forward throughput in nets per second, CPU time, peak memory
of a train step and parameter count, each model timed interleaved with the others in this process,
with ratios against hnp. Also zoo generation seconds per net and SIREN fitting INRs per second, and a
roofline: the matmul/conv FLOPs of each model's step against the GEMM rate measured in this process,
i.e. the nets/s that no implementation of the same model can pass here.

On a busy machine wall-clock rates drop with the load; the table also gives nets per CPU-second, and
the ratios are measured interleaved. Two torch threads on two busy cores can be many times slower
than one: use --threads 1, or run with OMP_WAIT_POLICY=PASSIVE."""
EXAMPLE = """examples:
  mnfn bench --quick
  mnfn bench --json bench.json
  mnfn bench --threads 1 --no-data --models monomial,hnp
  mnfn bench --quick --compile --specs zoo-cnn --models monomial,hnp"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="the smallest run: few repeats, 1 zoo net, 32 INRs, a 512^3 GEMM for the ceiling")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON")
    p.add_argument("--models", default=None, help="comma-separated registry names (default monomial,hnp,np,statnn)")
    p.add_argument("--specs", default=None, help="comma-separated architectures: zoo-cnn, siren (default both)")
    p.add_argument("--batch", type=int, default=32, help="nets per training/forward batch (default 32)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's setting)")
    p.add_argument("--device", default="cpu",
                   help="where the models run: cpu (default), cuda, cuda:1 ..., or auto (CUDA if present); on CUDA "
                        "timings are synchronised and peak memory comes from CUDA's allocator")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per model (default 20, quick 4)")
    p.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps per model (default 3, quick 1)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="precision (default float32)")
    p.add_argument("--compile", action="store_true", help="torch.compile every model first (slow to start)")
    p.add_argument("--tune-malloc", action="store_true",
                   help="keep freed memory in the process (glibc mallopt, mnfn.jobs.tune_malloc); the CLI "
                        "already does this unless MNFN_TUNE_MALLOC=0, which measures the untuned allocator")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory step")
    p.add_argument("--no-data", action="store_true", help="skip zoo generation and SIREN fitting")
    p.add_argument("--zoo-nets", type=int, default=None, help="nets to generate (default 4, quick 1)")
    p.add_argument("--zoo-dataset", default="digits", help="image set of the zoo nets (default digits: always available)")
    p.add_argument("--inr-nets", type=int, default=None, help="SIRENs to fit (default 128, quick 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random nets and inputs (default 0)")


def run(args: argparse.Namespace) -> int:
    from ..bench import BenchConfig, format_report, run_bench
    from ..io import write_json

    kw: dict = dict(batch=args.batch, dtype=args.dtype, threads=args.threads, device=args.device, compile=args.compile,
                    tune_malloc=args.tune_malloc,
                    memory=not args.no_memory, data=not args.no_data, zoo_dataset=args.zoo_dataset, seed=args.seed)
    if args.models:
        kw["models"] = tuple(m.strip() for m in args.models.split(",") if m.strip())
    if args.specs:
        kw["specs"] = tuple(s.strip() for s in args.specs.split(",") if s.strip())
    for key in ("repeats", "warmup", "zoo_nets", "inr_nets"):
        if getattr(args, key) is not None:
            kw[key] = getattr(args, key)
    if args.batch < 1 or kw.get("repeats", 1) < 1:
        raise ValueError("--batch and --repeats must be positive")
    cfg = BenchConfig.quick_config(**kw) if args.quick else BenchConfig(**kw)
    result = run_bench(cfg, log=lambda s: print(f"# {s}", flush=True))
    print(format_report(result))
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0
