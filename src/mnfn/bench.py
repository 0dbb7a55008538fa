"""Speed and memory benchmarks: ``mnfn bench`` and ``benchmarks/bench_models.py`` run this module.

What is measured, for each architecture (the Small CNN Zoo CNN ``zoo_cnn_spec("relu")`` and the
SIREN ``siren_spec()``) and each model (``monomial``, ``hnp``, ``np``, ``statnn``, registry
defaults), on random weights of freshly initialised nets, batch 32, float32, on the CPU:

* **train step**: forward, loss (BCE-with-logits on one output for the zoo, cross-entropy on 10
  classes for SIREN), backward, Adam step (``make_optimizer``, as the trainer); nets per second = batch / median
  wall-clock seconds per step;
* **forward**: the forward pass under ``torch.no_grad()``; nets per second likewise;
* CPU seconds of this process per step beside the wall clock (``time.process_time``, all threads):
  on a busy shared machine wall-clock rates fall with the load, CPU-time rates much less;
* **peak memory** of one train step: the highest total of bytes held by PyTorch's CPU allocator
  during the step (forward, backward and Adam) above what it held before the step, replayed from
  ``torch.profiler``'s memory events (``profile_memory=True``) at operator granularity. It counts
  activations, gradients, optimizer state created by the step and temporaries; it does not count
  the Python heap or memory held before the step (parameters, the input batch);
* parameter count;
* **roofline**: the FLOPs of the matrix products and convolutions of one train step and one
  forward (``torch.utils.flop_counter``), and the best rate of a large matrix product in this
  process (a 2048^3 GEMM, or a 1x1 convolution where oneDNN is faster: :func:`gemm_rate`); their quotient is the *ceiling*, the nets/s no implementation of the same
  model can pass on this machine, and the table shows the fraction of it each model reached.

Every model of one architecture is built in the same process and timed *interleaved* (one train
step and one forward of each model in turn, repeated), so a change in machine load hits all of
them alike; the table gives each model's speed relative to ``hnp`` measured that way.

Optionally, through the data modules: seconds per net to generate
Small CNN Zoo nets (:func:`mnfn.data.zoo.make_zoo`) and SIREN INRs fitted per second
(:func:`mnfn.data.inr.fit_sirens`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import jobs
from .jobs import torch_threads, tune_malloc
from .layers.kernels import conv_products_help, product_precision
from .measure import (compile_available, compile_model, count_flops, cuda_peak_bytes, gemm_rate, peak_memory_bytes,
                      sync as _sync)
from .training.optim import make_optimizer
from .weightspace import WeightSpaceFeatures, WeightSpaceSpec, siren_spec, zoo_cnn_spec

__all__ = ["BenchConfig", "BENCH_SPECS", "BENCH_MODELS", "run_bench", "bench_models", "peak_memory_bytes", "tune_malloc",
           "compile_model", "compile_available", "format_report", "count_flops", "gemm_rate", "bench_zoo_generation",
           "bench_inr_fitting"]

#: Architectures benchmarked: name -> (spec factory, number of outputs of the benchmarked models).
BENCH_SPECS: dict[str, tuple[Callable[[], WeightSpaceSpec], int]] = {
    "zoo-cnn": (lambda: zoo_cnn_spec("relu"), 1),  # predict generalisation: one score
    "siren": (lambda: siren_spec(), 10),  # classify INRs: 10 classes
}
BENCH_MODELS: tuple[str, ...] = ("monomial", "hnp", "np", "statnn")
BASELINE = "hnp"


@dataclass
class BenchConfig:
    """Settings of one benchmark run (``quick`` picks small repeat counts and data sizes)."""

    specs: Sequence[str] = tuple(BENCH_SPECS)
    models: Sequence[str] = BENCH_MODELS
    batch: int = 32
    dtype: str = "float32"
    threads: int | None = None  # torch intra-op threads; None: leave torch's setting
    device: str = "cpu"  # "cuda": models, batches and the GEMM on the GPU (timings synchronised)
    warmup: int = 3
    repeats: int = 20
    memory: bool = True
    compile: bool = False
    tune_malloc: bool = False  # see tune_malloc()
    seed: int = 0
    data: bool = True  # zoo generation and INR fitting through mnfn.data
    zoo_nets: int = 4
    zoo_dataset: str = "digits"
    inr_nets: int = 128
    inr_batch: int = 64
    model_config: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-model build_model overrides
    # side of the square GEMM that sets the ceiling; --quick takes 512 (a CPU without bfloat16
    # instructions multiplies 2048^3 in bfloat16 at ~1 GFLOP/s: 17 s a product)
    gemm_size: int = 2048

    @classmethod
    def quick_config(cls, **kw: Any) -> "BenchConfig":
        base = dict(warmup=1, repeats=4, zoo_nets=1, inr_nets=32, inr_batch=32, gemm_size=512)
        base.update(kw)
        return cls(**base)


# --- one model -----------------------------------------------------------------------------------

def _loss_fn(out_dim: int) -> Callable[[Tensor, Tensor], Tensor]:
    if out_dim == 1:
        return lambda out, y: F.binary_cross_entropy_with_logits(out.squeeze(-1), y)
    return F.cross_entropy


def _targets(out_dim: int, batch: int, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
    if out_dim == 1:
        return torch.rand(batch, generator=gen, dtype=dtype)
    return torch.randint(0, out_dim, (batch,), generator=gen)


def random_batch(spec: WeightSpaceSpec, batch: int, dtype: torch.dtype, seed: int) -> WeightSpaceFeatures:
    """Weights of ``batch`` freshly initialised nets of ``spec`` (realistic magnitudes)."""
    from .networks import build_module, features_from_modules

    with _fork_rng(seed):
        nets = [build_module(spec) for _ in range(batch)]
    return features_from_modules(nets, dtype=dtype)


@contextlib.contextmanager
def _fork_rng(seed: int) -> Iterator[None]:
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


@dataclass
class _Runner:
    name: str
    model: nn.Module
    opt: torch.optim.Optimizer
    x: WeightSpaceFeatures
    y: Tensor
    loss: Callable[[Tensor, Tensor], Tensor]
    device: torch.device = torch.device("cpu")
    times: dict[str, list[float]] = field(default_factory=lambda: {"train": [], "forward": []})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {"train": [], "forward": []})

    def train(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.loss(self.model(self.x), self.y).backward()
        self.opt.step()

    def forward(self) -> None:
        with torch.no_grad():
            self.model(self.x)

    def eager(self) -> "_Runner":
        """This runner with the uncompiled model (the FLOP counter runs eager)."""
        orig = getattr(self.model, "_orig_mod", None)
        return self if orig is None else _Runner(self.name, orig, self.opt, self.x, self.y, self.loss, self.device)

    def timed(self, kind: str) -> None:
        fn = self.train if kind == "train" else self.forward
        _sync(self.device)
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        _sync(self.device)
        t1, c1 = time.perf_counter(), time.process_time()
        self.times[kind].append(t1 - t0)
        self.cpu[kind].append(c1 - c0)


def bench_models(spec_name: str, cfg: BenchConfig, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Time every model of ``cfg.models`` on architecture ``spec_name``, interleaved (see module doc)."""
    from .models import build_model, count_parameters

    make_spec, out_dim = BENCH_SPECS[spec_name]
    spec = make_spec()
    dtype = getattr(torch, cfg.dtype)
    device = torch.device(cfg.device)
    x = random_batch(spec, cfg.batch, dtype, cfg.seed).to(device)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    y = _targets(out_dim, cfg.batch, gen, dtype).to(device)
    runners: list[_Runner] = []
    params: dict[str, int] = {}
    for name in cfg.models:
        with _fork_rng(cfg.seed):
            model = build_model(name, spec, out_dim=out_dim, **cfg.model_config.get(name, {})).to(device=device,
                                                                                                 dtype=dtype)
        params[name] = count_parameters(model)
        if cfg.compile:
            model = compile_model(model)
        opt = make_optimizer(model.parameters(), "adam", 1e-3)  # what mnfn's trainer uses
        runners.append(_Runner(name, model, opt, x, y, _loss_fn(out_dim), device))
    compile_s: dict[str, float] = {}
    for r in runners:  # warm-up (and compilation): not timed
        t0 = time.perf_counter()
        for _ in range(max(cfg.warmup, 1 if cfg.compile else 0)):
            r.train()
            r.forward()
        compile_s[r.name] = time.perf_counter() - t0
        log(f"  {spec_name}/{r.name}: warmed up ({compile_s[r.name]:.1f} s)")
    for _ in range(cfg.repeats):
        for r in runners:
            r.timed("train")
            r.timed("forward")
    memory: dict[str, int | None] = {}
    for r in runners:
        memory[r.name] = (peak_memory_bytes(r.train) if device.type == "cpu" else cuda_peak_bytes(r.train, device)
                          ) if cfg.memory else None
    flops = {r.name: (count_flops(r.eager().train), count_flops(r.eager().forward)) for r in runners}
    out: dict[str, Any] = {"spec": spec.describe(), "out_dim": out_dim, "batch": cfg.batch, "models": {}}
    for r in runners:
        res: dict[str, Any] = {"params": params[r.name]}
        for kind in ("train", "forward"):
            med = statistics.median(r.times[kind])
            cpu = statistics.median(r.cpu[kind])
            res[f"{kind}_ms"] = 1e3 * med
            res[f"{kind}_ms_min"] = 1e3 * min(r.times[kind])
            res[f"{kind}_cpu_ms"] = 1e3 * cpu
            res[f"{kind}_nets_per_s"] = cfg.batch / med
            res[f"{kind}_nets_per_cpu_s"] = cfg.batch / cpu if cpu > 0 else None
        res["peak_train_memory_mb"] = None if memory[r.name] is None else memory[r.name] / 2 ** 20
        # Arithmetic of the matmuls/convolutions (torch's FlopCounterMode): with the GEMM rate of
        # this process (run_bench's "roofline") it gives the ceiling no implementation can pass.
        res["train_gflop"], res["forward_gflop"] = (f / 1e9 for f in flops[r.name])
        if cfg.compile:
            res["warmup_and_compile_s"] = compile_s[r.name]
        out["models"][r.name] = res
    base = out["models"].get(BASELINE)
    for res in out["models"].values():
        for key in ("train_nets_per_s", "forward_nets_per_s", "train_nets_per_cpu_s", "forward_nets_per_cpu_s",
                    "params", "peak_train_memory_mb"):
            b = base.get(key) if base else None
            res[f"{key}_vs_{BASELINE}"] = (res[key] / b) if (b and res[key] is not None) else None
    return out


# --- data generation (other modules; imported lazily) ----------------------------------------------

def bench_zoo_generation(num_nets: int, dataset: str = "digits", seed: int = 0, threads: int | None = 1
                         ) -> dict[str, Any]:
    """Seconds per net of :func:`mnfn.data.zoo.make_zoo` (the dataset's default recipe)."""
    try:
        from .data.zoo import default_recipe, make_zoo
    except ImportError as exc:  # pragma: no cover - depends on the data module's state
        return {"status": "unavailable", "reason": f"mnfn.data.zoo: {exc}"}
    recipe = default_recipe(dataset)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        res = make_zoo(d, dataset, num_nets, seed=seed, recipe=recipe, progress=False, threads=threads)
        wall = time.perf_counter() - t0
    per_net = list(res.net_seconds)
    per_cpu = list(getattr(res, "net_cpu_seconds", []) or [])
    return {
        "status": "ok", "dataset": dataset, "nets": num_nets, "threads": threads,
        "recipe": {"epochs": recipe.epochs, "batch_size": recipe.batch_size, "train_images": recipe.train_images},
        "seconds_per_net": statistics.median(per_net) if per_net else None,
        "cpu_seconds_per_net": statistics.median(per_cpu) if per_cpu else None,
        "total_seconds": wall,
    }


def bench_inr_fitting(num: int, batch: int = 64, seed: int = 0) -> dict[str, Any]:
    """SIRENs fitted per second by :func:`mnfn.data.inr.fit_sirens` (default settings), on the
    scikit-learn digits upsampled to 28x28 (always available; MNIST-sized nets)."""
    try:
        from .data.images import load_images
        from .data.inr import FitConfig, fit_sirens, net_seed
    except ImportError as exc:  # pragma: no cover
        return {"status": "unavailable", "reason": f"mnfn.data.inr: {exc}"}
    d = load_images("digits", "train", limit=num)
    imgs = F.interpolate(torch.from_numpy(d.images), size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    cfg = FitConfig()
    seeds = [net_seed(seed, "train", i) for i in range(len(imgs))]
    t0, c0 = time.perf_counter(), time.process_time()
    res = fit_sirens(imgs, seeds, cfg, batch_size=batch)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "status": "ok", "images": "digits upsampled to 28x28", "nets": len(imgs), "batch": batch,
        "inrs_per_s": len(imgs) / wall, "inrs_per_cpu_s": len(imgs) / cpu if cpu > 0 else None,
        "seconds": wall, "median_psnr": float(res.psnr.median()), "target_psnr": cfg.target_psnr,
        "missed": int(res.missed.sum()),
    }


# --- the whole run ---------------------------------------------------------------------------------

def _machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "malloc_tuned": jobs.malloc_tuned() is not None or any(k.startswith("MALLOC_") for k in os.environ),
        # which float32 CPU products ran (1x1 convolutions or GEMMs; layers/kernels.py), set per CPU
        "conv_products": conv_products_help() and jobs.allocator_keeps_memory(),
        "product_precision": product_precision(),  # float32, or bfloat16 operands (opt-in mixed precision)
        "loadavg": [round(v, 2) for v in load],
    }


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Run the benchmark described by ``cfg``; returns a JSON-ready dict (see :func:`format_report`)."""
    unknown = [s for s in cfg.specs if s not in BENCH_SPECS]
    if unknown:
        raise ValueError(f"unknown benchmark architectures {unknown}; choose from {list(BENCH_SPECS)}")
    if cfg.device == "auto":
        cfg = dataclasses.replace(cfg, device="cuda" if torch.cuda.is_available() else "cpu")
    try:
        kind = torch.device(cfg.device).type
    except (RuntimeError, ValueError):
        raise ValueError(f"--device: unknown device {cfg.device!r} (auto, cpu, cuda, cuda:1 ...)") from None
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or a CUDA device, got {cfg.device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {cfg.device}: no CUDA device is available to this torch build")
    if cfg.compile:
        ok, why = compile_available()
        if not ok:
            raise RuntimeError(f"--compile: torch.compile is unavailable: {why}")
    t0 = time.perf_counter()
    result: dict[str, Any] = {"config": {k: v for k, v in cfg.__dict__.items()}, "baseline": BASELINE}
    if cfg.tune_malloc:
        result["malloc"] = tune_malloc()
    with torch_threads(cfg.threads):
        result["machine_before"] = _machine()
        # with bfloat16 products (MNFN_PRODUCT_PRECISION) the ceiling is a bfloat16 product's rate
        low = cfg.dtype == "float32" and product_precision() == "bfloat16"
        result["roofline"] = gemm_rate(size=cfg.gemm_size, dtype=torch.bfloat16 if low else getattr(torch, cfg.dtype),
                                       device=cfg.device)
        if torch.device(cfg.device).type == "cuda":
            result["machine_before"]["gpu"] = torch.cuda.get_device_name(torch.device(cfg.device))
        result["models"] = {}
        for name in cfg.specs:
            log(f"timing models on {name} ...")
            result["models"][name] = bench_models(name, cfg, log)
            _add_ceilings(result["models"][name], result["roofline"]["gflops"], cfg.batch)
        result["data"] = {}
        if cfg.data:
            log("timing zoo generation ...")
            result["data"]["zoo_generation"] = _guarded(lambda: bench_zoo_generation(cfg.zoo_nets, cfg.zoo_dataset,
                                                                                     cfg.seed))
            log("timing INR fitting ...")
            result["data"]["inr_fitting"] = _guarded(lambda: bench_inr_fitting(cfg.inr_nets, cfg.inr_batch, cfg.seed))
        result["machine_after"] = _machine()
    result["seconds"] = time.perf_counter() - t0
    return result


def _add_ceilings(block: dict[str, Any], gflops: float, batch: int) -> None:
    """Per model: nets/s if every FLOP ran at the measured GEMM rate and nothing else cost time
    (``*_ceiling_nets_per_s``), and the fraction of that rate the timed step reached."""
    for res in block["models"].values():
        for kind in ("train", "forward"):
            g = res.get(f"{kind}_gflop") or 0.0
            res[f"{kind}_ceiling_nets_per_s"] = batch * gflops / g if g > 0 else None
            res[f"{kind}_fraction_of_gemm_rate"] = (g * 1e3 / res[f"{kind}_ms"]) / gflops if g > 0 else None


def _guarded(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return fn()
    except Exception as exc:  # the data modules are optional to the model benchmark: report, go on
        return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}


def _fmt(v: Any, spec: str = ".0f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def format_report(result: dict[str, Any]) -> str:
    """The human-readable table of a :func:`run_bench` result."""
    cfg = result["config"]
    mb, ma = result["machine_before"], result["machine_after"]
    lines = [
        f"mnfn bench: batch {cfg['batch']}, {cfg['dtype']}, {cfg['repeats']} interleaved repeats (median), "
        f"{mb['torch_threads']} torch thread(s), {mb['cpus']} CPUs, torch {mb['torch']}"
        + (f", on {mb.get('gpu', 'cuda')}" if str(cfg.get("device", "cpu")).startswith("cuda") else "")
        + (", torch.compile" if cfg.get("compile") else "")
        + (", malloc tuned" if mb.get("malloc_tuned") else ""),
        f"load average (1 min) {mb['loadavg'][0]:.2f} before, {ma['loadavg'][0]:.2f} after"
        + ("  -- the machine is busy: wall-clock rates are low; compare CPU-time rates and ratios"
           if max(mb["loadavg"][0], ma["loadavg"][0]) > (mb["cpus"] or 1) else ""),
    ]
    if (mb["torch_threads"] > 1 and (mb.get("omp_wait_policy") or "").lower() != "passive"
            and max(mb["loadavg"][0], ma["loadavg"][0]) > (mb["cpus"] or 1) - 0.5):
        lines.append("WARNING: several torch threads on busy cores spin-wait for each other (often many times "
                     "slower); rerun with --threads 1 or OMP_WAIT_POLICY=PASSIVE")
    for spec_name, block in result["models"].items():
        lines.append("")
        lines.append(f"{spec_name}: {block['spec']}  (ratios: model / {result['baseline']}, same process)")
        head = (f"{'model':10s} {'params':>10s} {'train n/s':>10s} {'x':>6s} {'fwd n/s':>10s} {'x':>6s} "
                f"{'train n/cpu-s':>13s} {'fwd n/cpu-s':>12s} {'train ms':>9s} {'fwd ms':>8s} {'peak MB':>8s} {'x':>6s}")
        lines.append(head)
        lines.append("-" * len(head))
        for name, r in block["models"].items():
            lines.append(
                f"{name:10s} {r['params']:>10,d} {_fmt(r['train_nets_per_s']):>10s} "
                f"{_fmt(r['train_nets_per_s_vs_' + result['baseline']], '.2f'):>6s} "
                f"{_fmt(r['forward_nets_per_s']):>10s} {_fmt(r['forward_nets_per_s_vs_' + result['baseline']], '.2f'):>6s} "
                f"{_fmt(r['train_nets_per_cpu_s']):>13s} {_fmt(r['forward_nets_per_cpu_s']):>12s} "
                f"{_fmt(r['train_ms'], '.1f'):>9s} {_fmt(r['forward_ms'], '.1f'):>8s} "
                f"{_fmt(r['peak_train_memory_mb'], '.1f'):>8s} "
                f"{_fmt(r['peak_train_memory_mb_vs_' + result['baseline']], '.2f'):>6s}")
    roof = result.get("roofline")
    if roof:
        lines.append("")
        rates = ", ".join(f"{k} {v:.1f}" for k, v in roof.get("rates", {}).items())
        lines.append(f"roofline: best product {roof['gemm']} at {roof['gflops']:.1f} GFLOP/s here "
                     f"({roof['threads']} thread(s){'; ' + rates if rates else ''}); "
                     "ceiling = nets/s if every matmul/conv FLOP ran at that rate and nothing else cost time")
        head = (f"{'arch/model':18s} {'train GFLOP':>11s} {'ceiling n/s':>11s} {'reached':>8s} "
                f"{'fwd GFLOP':>10s} {'ceiling n/s':>11s} {'reached':>8s}")
        lines.append(head)
        lines.append("-" * len(head))
        for spec_name, block in result["models"].items():
            for name, r in block["models"].items():
                if r.get("train_gflop") is None:
                    continue
                lines.append(
                    f"{spec_name + '/' + name:18s} {_fmt(r['train_gflop'], '.3f'):>11s} "
                    f"{_fmt(r.get('train_ceiling_nets_per_s')):>11s} {_pct(r.get('train_fraction_of_gemm_rate')):>8s} "
                    f"{_fmt(r['forward_gflop'], '.3f'):>10s} {_fmt(r.get('forward_ceiling_nets_per_s')):>11s} "
                    f"{_pct(r.get('forward_fraction_of_gemm_rate')):>8s}")
    data = result.get("data") or {}
    if data:
        lines.append("")
        z = data.get("zoo_generation")
        if z:
            if z.get("status") == "ok":
                lines.append(f"zoo generation ({z['dataset']}, {z['nets']} net(s), default recipe, "
                             f"{z['threads']} thread): {_fmt(z['seconds_per_net'], '.2f')} s/net wall, "
                             f"{_fmt(z['cpu_seconds_per_net'], '.2f')} CPU-s/net")
            else:
                lines.append(f"zoo generation: {z.get('status')} ({z.get('reason')})")
        i = data.get("inr_fitting")
        if i:
            if i.get("status") == "ok":
                lines.append(f"SIREN fitting ({i['images']}, {i['nets']} nets, batch {i['batch']}): "
                             f"{_fmt(i['inrs_per_s'], '.1f')} INRs/s wall, {_fmt(i['inrs_per_cpu_s'], '.1f')} "
                             f"per CPU-s, median PSNR {i['median_psnr']:.1f} dB (target {i['target_psnr']:g})")
            else:
                lines.append(f"SIREN fitting: {i.get('status')} ({i.get('reason')})")
    lines.append("")
    lines.append("peak MB: PyTorch CPU-allocator bytes of one train step above its start (torch.profiler "
                 "memory events); n/s = nets per wall-clock second; n/cpu-s = nets per CPU-second of this process")
    lines.append(f"total {result['seconds']:.1f} s")
    return "\n".join(lines)
