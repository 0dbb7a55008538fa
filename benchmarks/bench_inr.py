"""Benchmark: SIREN INR fitting speed (INRs/s) and quality (median PSNR) on this CPU.

Cases:
* 28x28 grayscale: MNIST from ``$MNFN_DATA`` (else Fashion-MNIST, else sklearn digits upsampled to 28x28);
* 32x32 RGB: CIFAR-10 (skipped when not available);
* batched (``--batch``, default 64) against one net at a time on the same images (speed ratio);
* optionally ``--workers N`` processes through ``make_inr_dataset`` (what ``mnfn inr make --workers`` does).

Prints wall-clock rates and, because shared machines are often busy, the load average and a
CPU-time rate (nets per CPU-second of this process) beside them.

    python benchmarks/bench_inr.py                 # 512 MNIST + 256 CIFAR-10 nets, ratio on 64
    python benchmarks/bench_inr.py --quick         # 128 + 64, ratio on 32
    python benchmarks/bench_inr.py --workers 2 --json bench-inr.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

from mnfn.data.images import ImageSet, load_images
from mnfn.data.inr import INR_DATASETS, FitConfig, fit_sirens, make_inr_dataset, net_seed
from mnfn.io import DataFormatError, write_json


def grayscale_28(n: int) -> ImageSet:
    for name in ("mnist", "fashion-mnist"):
        try:
            return load_images(name, "train", limit=n)
        except (DataFormatError, FileNotFoundError) as exc:
            print(f"# {name} not available ({str(exc).splitlines()[0][:80]}...)", file=sys.stderr)
    d = load_images("digits", "train", limit=n)
    x = torch.nn.functional.interpolate(torch.from_numpy(d.images), size=(28, 28), mode="bilinear",
                                        align_corners=False).clamp(0, 1).numpy()
    return ImageSet(np.ascontiguousarray(x, dtype=np.float32), d.labels, d.classes, "digits-28x28", d.split)


def rgb_32(n: int) -> ImageSet | None:
    try:
        return load_images("cifar10", "train", limit=n)
    except (DataFormatError, FileNotFoundError) as exc:
        print(f"# cifar10 not available ({str(exc).splitlines()[0][:80]}...)", file=sys.stderr)
        return None


def run_fit(images: np.ndarray, cfg: FitConfig, batch: int) -> dict:
    seeds = [net_seed(0, "train", i) for i in range(len(images))]
    load0 = os.getloadavg()[0]
    t, c = time.perf_counter(), time.process_time()
    res = fit_sirens(images, seeds, cfg, batch_size=batch)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    n = len(images)
    return {
        "nets": n, "batch": batch, "seconds": round(wall, 2), "inrs_per_s": round(n / wall, 2),
        "inrs_per_cpu_s": round(n / cpu, 2), "median_psnr": round(float(res.psnr.median()), 2),
        "min_psnr": round(float(res.psnr.min()), 2), "missed": int(res.missed.sum()),
        "mean_steps": round(float(res.steps.float().mean()), 1), "max_steps_taken": int(res.steps.max()),
        "loadavg_1min_before": round(load0, 2), "loadavg_1min_after": round(os.getloadavg()[0], 2),
    }


def run_naive(images: np.ndarray, cfg: FitConfig) -> dict:
    """The usual way, one net at a time: an nn.Sequential SIREN, autograd and torch.optim.Adam (same init,
    lr, stopping rule; one torch thread like the batched fit: two threads were far slower on busy cores)."""
    from mnfn.data.inr import _params_to_features, images_to_targets, init_sirens, make_coords
    from mnfn.networks import features_to_module

    n, c, h, w = images.shape
    spec = cfg.spec(c)
    coords = make_coords(h, w)
    targets = images_to_targets(images)
    load0 = os.getloadavg()[0]
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t, cpu0 = time.perf_counter(), time.process_time()
    ps, steps = [], []
    for j in range(n):
        params = init_sirens([net_seed(0, "train", j)], spec)
        model = features_to_module(_params_to_features(params, spec))
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
        for k in range(cfg.max_steps + 1):
            mse = (model(coords) - targets[j]).square().mean()
            p_db = 10 * torch.log10(4 / mse.detach())
            if p_db >= cfg.target_psnr or k == cfg.max_steps:
                break
            opt.zero_grad(set_to_none=True)
            mse.backward()
            opt.step()
        ps.append(float(p_db))
        steps.append(k)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu0
    torch.set_num_threads(old_threads)
    return {"nets": n, "batch": 1, "seconds": round(wall, 2), "inrs_per_s": round(n / wall, 2),
            "inrs_per_cpu_s": round(n / cpu, 2), "median_psnr": round(float(np.median(ps)), 2),
            "min_psnr": round(float(np.min(ps)), 2), "missed": int(np.sum(np.array(ps) < cfg.target_psnr)),
            "mean_steps": round(float(np.mean(steps)), 1), "max_steps_taken": int(np.max(steps)),
            "loadavg_1min_before": round(load0, 2), "loadavg_1min_after": round(os.getloadavg()[0], 2)}


def run_workers(images: ImageSet, cfg: FitConfig, batch: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        load0 = os.getloadavg()[0]
        # The images are passed in; the dataset name only labels the folder's meta.json.
        name = images.name if images.name in INR_DATASETS else "digits"
        s = make_inr_dataset(tmp, name, fit=cfg, batch_size=batch,
                             workers=workers, progress=False, images={"train": images})
    return {"nets": s.nets, "workers": workers, "seconds": round(s.seconds, 2),
            "inrs_per_s": round(s.fitted_now / s.seconds, 2), "median_psnr": round(s.median_psnr, 2),
            "missed": s.missed, "loadavg_1min_before": round(load0, 2), "loadavg_1min_after": round(os.getloadavg()[0], 2)}


def show(label: str, r: dict) -> None:
    extra = f", {r['inrs_per_cpu_s']:.1f} per CPU-s" if "inrs_per_cpu_s" in r else ""
    steps = f", mean steps {r['mean_steps']}" if "mean_steps" in r else ""
    print(f"{label}: {r['nets']} nets in {r['seconds']:.1f} s = {r['inrs_per_s']:.1f} INRs/s{extra}; "
          f"median PSNR {r['median_psnr']:.2f} dB, missed {r['missed']}{steps} "
          f"(load {r['loadavg_1min_before']:.1f} -> {r['loadavg_1min_after']:.1f})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num", type=int, default=512, help="28x28 nets (default 512)")
    p.add_argument("--num-rgb", type=int, default=256, help="32x32 RGB nets (default 256)")
    p.add_argument("--num-single", type=int, default=64, help="nets for the batched vs one-at-a-time ratio")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="also time make_inr_dataset with this many processes")
    p.add_argument("--quick", action="store_true", help="128 + 64 nets, ratio on 16")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.num, args.num_rgb, args.num_single = 128, 64, 32
    cfg = FitConfig()
    print(f"# torch {torch.__version__}, {os.cpu_count()} CPUs, fit: lr {cfg.lr:g}, target {cfg.target_psnr:g} dB, "
          f"max {cfg.max_steps} steps, one torch thread per fit")
    results: dict = {"config": cfg.to_json(), "cpus": os.cpu_count()}

    gray = grayscale_28(max(args.num, args.num_single))
    results["gray28"] = r = run_fit(gray.images[:args.num], cfg, args.batch)
    r["images"] = gray.name
    show(f"{gray.name} 28x28 gray, batch {args.batch}", r)

    sub = gray.images[:args.num_single]
    b = run_fit(sub, cfg, args.batch)
    s = run_fit(sub, cfg, 1)
    nv = run_naive(sub, cfg)
    results["batched_vs_single"] = {
        "batched": b, "single": s, "naive": nv,
        "speedup": round(b["inrs_per_s"] / s["inrs_per_s"], 2),
        "speedup_cpu": round(b["inrs_per_cpu_s"] / s["inrs_per_cpu_s"], 2),
        "speedup_vs_naive": round(b["inrs_per_s"] / nv["inrs_per_s"], 2),
        "speedup_vs_naive_cpu": round(b["inrs_per_cpu_s"] / nv["inrs_per_cpu_s"], 2)}
    show(f"{gray.name} batched ({args.num_single} nets, batch {args.batch})", b)
    show(f"{gray.name} one at a time, same kernels ({args.num_single} nets, batch 1)", s)
    show(f"{gray.name} one at a time, nn.Module + autograd + torch.optim.Adam", nv)
    bs = results["batched_vs_single"]
    print(f"batched / one-at-a-time speed: {bs['speedup']:.2f}x wall ({bs['speedup_cpu']:.2f}x CPU time) with the "
          f"same kernels; {bs['speedup_vs_naive']:.2f}x wall ({bs['speedup_vs_naive_cpu']:.2f}x CPU time) against "
          "the usual nn.Module loop")

    if args.workers > 1:
        results["workers"] = w = run_workers(ImageSet(gray.images[:args.num], gray.labels[:args.num], gray.classes,
                                                      gray.name, "train"), cfg, args.batch, args.workers)
        show(f"{gray.name} via make_inr_dataset, {args.workers} worker processes", w)

    rgb = rgb_32(args.num_rgb)
    if rgb is not None:
        results["rgb32"] = r = run_fit(rgb.images, cfg, args.batch)
        r["images"] = rgb.name
        show(f"{rgb.name} 32x32 RGB, batch {args.batch}", r)
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
