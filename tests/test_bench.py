"""``mnfn bench`` smoke tests on tiny settings: the JSON has every field; no timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from mnfn.bench import (BENCH_MODELS, BenchConfig, count_flops, format_report, gemm_rate, peak_memory_bytes, run_bench,
                        tune_malloc)
from mnfn.cli import main

MODEL_FIELDS = ["params", "train_ms", "forward_ms", "train_cpu_ms", "forward_cpu_ms", "train_nets_per_s",
                "forward_nets_per_s", "train_nets_per_cpu_s", "forward_nets_per_cpu_s", "peak_train_memory_mb",
                "train_nets_per_s_vs_hnp", "forward_nets_per_s_vs_hnp", "params_vs_hnp", "peak_train_memory_mb_vs_hnp",
                "train_gflop", "forward_gflop", "train_ceiling_nets_per_s", "forward_ceiling_nets_per_s",
                "train_fraction_of_gemm_rate", "forward_fraction_of_gemm_rate"]


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread per test (tests/conftest.py)


def test_cli_quick_tiny_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--quick", "--specs", "siren", "--models", "monomial,hnp", "--repeats", "1", "--warmup", "0",
            "--batch", "4", "--no-data", "--json", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "siren" in text and "monomial" in text and "hnp" in text
    r = json.loads(out.read_text())
    assert r["baseline"] == "hnp"
    assert set(r["models"]) == {"siren"}
    block = r["models"]["siren"]
    assert set(block["models"]) == {"monomial", "hnp"}
    for name, m in block["models"].items():
        for key in MODEL_FIELDS:
            assert key in m, (name, key)
        assert m["params"] > 0 and m["train_nets_per_s"] > 0 and m["forward_nets_per_s"] > 0
        assert m["peak_train_memory_mb"] > 0
    assert block["models"]["hnp"]["train_nets_per_s_vs_hnp"] == pytest.approx(1.0)
    roof = r["roofline"]
    assert roof["gflops"] > 0 and roof["threads"] == 1
    for m in block["models"].values():
        # a train step also runs the backward matmuls: more FLOPs than the forward
        assert m["train_gflop"] > m["forward_gflop"] > 0
        assert m["train_ceiling_nets_per_s"] == pytest.approx(4 * roof["gflops"] / m["train_gflop"])
        assert 0 < m["train_fraction_of_gemm_rate"]
    assert "roofline" in text and "ceiling" in text
    assert r["config"]["batch"] == 4 and r["machine_before"]["cpus"] >= 1 and len(r["machine_after"]["loadavg"]) == 3
    # the record says which float32 product path ran (it is chosen per CPU)
    from mnfn.jobs import allocator_keeps_memory
    from mnfn.layers.kernels import conv_products_help
    assert r["machine_before"]["conv_products"] is (conv_products_help() and allocator_keeps_memory())
    assert r["machine_before"]["product_precision"] == "float32"


def test_run_bench_default_models_and_data(tmp_path):
    """Every default model on both architectures, plus the data measurements (tiny counts)."""
    small = {"hnp": dict(hidden=(4, 3), head=(8,)), "np": dict(hidden=(4, 3), head=(8,)),
             "monomial": dict(hidden=(4, 3), head=(8,)), "statnn": dict(hidden=(8,))}
    cfg = BenchConfig(batch=2, warmup=0, repeats=1, memory=False, zoo_nets=1, inr_nets=2, inr_batch=2,
                      model_config=small)
    r = run_bench(cfg)
    for spec in ("zoo-cnn", "siren"):
        assert list(r["models"][spec]["models"]) == list(BENCH_MODELS)
        assert r["models"][spec]["models"]["monomial"]["peak_train_memory_mb"] is None  # memory=False
    z, i = r["data"]["zoo_generation"], r["data"]["inr_fitting"]
    assert z["status"] == "ok", z
    assert z["seconds_per_net"] > 0 and z["nets"] == 1
    assert i["status"] == "ok", i
    assert i["inrs_per_s"] > 0 and i["nets"] == 2
    text = format_report(r)
    assert "zoo generation" in text and "SIREN fitting" in text
    json.dumps(r)  # JSON-ready


def test_count_flops_matmul_forward_and_backward():
    a = torch.randn(64, 32, requires_grad=True)
    b = torch.randn(32, 16, requires_grad=True)
    assert count_flops(lambda: a @ b) == 2 * 64 * 32 * 16
    # backward: one product for each input's gradient
    assert count_flops(lambda: (a @ b).sum().backward()) == 3 * 2 * 64 * 32 * 16
    assert count_flops(lambda: torch.relu(a)) == 0  # only matmuls/convolutions are counted


def test_gemm_rate_reports_a_rate():
    r = gemm_rate(size=64, repeats=2)
    assert r["gflops"] > 0 and r["threads"] == 1 and r["rates"]["mm"] > 0
    assert r["gflops"] == max(r["rates"].values())  # the faster of the BLAS and oneDNN's 1x1 convolution
    assert r["gemm"] in ("64^3 mm float32", "1x1 conv 16x512x256 float32")


def test_peak_memory_counts_a_step():
    n = 1 << 20

    def fn():
        a = torch.ones(n)  # 4 MiB
        b = a * 2  # another 4 MiB while a is alive
        del a, b

    assert peak_memory_bytes(fn) >= 8 * n * 0.99


def test_tune_malloc_reports_settings():
    s = tune_malloc()
    assert s is None or s["M_MMAP_THRESHOLD"] <= 32 * 2 ** 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_the_cli_tunes_the_allocator_by_default_and_for_its_workers():
    """`mnfn CMD` keeps freed memory in the process (and tells spawned workers to) unless MNFN_TUNE_MALLOC=0."""
    code = ("import os; from mnfn.cli import main; from mnfn.jobs import malloc_tuned; main(['models']); "
            "print('TUNED', malloc_tuned() is not None, os.environ.get('MALLOC_TRIM_THRESHOLD_'))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "MNFN_TUNE_MALLOC"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "TUNED True 1073741824" in out
    out = subprocess.run([sys.executable, "-c", code], env={**env, "MNFN_TUNE_MALLOC": "0"}, capture_output=True,
                         text=True, check=True).stdout
    assert "TUNED False None" in out


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown benchmark architectures"):
        run_bench(BenchConfig(specs=("resnet",), data=False))
    assert main(["bench", "--specs", "resnet", "--no-data"]) == 2
    if not torch.cuda.is_available():  # CI: one clear error instead of a CUDA traceback
        with pytest.raises(ValueError, match="no CUDA device"):
            run_bench(BenchConfig(device="cuda", data=False))
        assert main(["bench", "--device", "cuda", "--no-data", "--quick"]) == 2
        res = run_bench(BenchConfig(device="auto", data=False, specs=("siren",), models=("statnn",), repeats=1,
                                    warmup=0, memory=False))
        assert res["config"]["device"] == "cpu"  # auto: CUDA where there is one, else the CPU
    with pytest.raises(ValueError, match="unknown device"):
        run_bench(BenchConfig(device="gpu0", data=False))


def test_bench_gemm_script_runs():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gemm.py"
    spec = importlib.util.spec_from_file_location("bench_gemm", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = mod.run(batch=2, features=8, entries=4, repeats=1)
    assert set(r["layouts"]) == {"bmm", "mm, channels last", "mm, transposed copy"}
    assert all(v["gflops"] > 0 for v in r["layouts"].values()) and r["square_gemm"]["gflops"] > 0


def test_bench_layers_ab_script_runs():
    # the layers against an earlier commit's (here the checkout's own HEAD) in one process
    import importlib.util
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: the benchmark reads the baseline layers with git show")
    spec = importlib.util.spec_from_file_location("bench_layers_ab", root / "benchmarks" / "bench_layers_ab.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = mod.main(["--ref", "HEAD", "--spec", "siren", "--models", "np", "--batch", "2", "--reps", "1"])
    assert set(r) == {"np"} and all(v > 0 for k in ("train_ms", "forward_ms") for v in r["np"][k].values())
    r = mod.main(["--ref", "HEAD", "--spec", "siren", "--fourier-only", "4", "--batch", "2", "--reps", "1"])
    assert set(r) == {"train", "forward"} and all(v > 0 for k in r for v in r[k].values())


def test_bench_products_script_runs(tmp_path):
    # conv / GEMM / bfloat16 products of the same models in one process, and the setting restored
    import importlib.util
    from pathlib import Path

    from mnfn.layers import kernels
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_products.py"
    spec = importlib.util.spec_from_file_location("bench_products", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "p.json"
    r = mod.main(["--spec", "siren", "--models", "np,np-editor", "--batch", "2", "--reps", "1", "--width", "8",
                  "--json", str(out)])
    assert set(r["models"]) == {"np", "np-editor"} and json.loads(out.read_text())["auto"] in ("GEMMs", "convolutions")
    for m in r["models"].values():
        assert set(m["train_ms"]) == {"conv", "gemm", "bf16"} and all(v > 0 for v in m["forward_ms"].values())
    assert kernels.product_precision() == "float32" and kernels.CONV_PRODUCTS == "auto"
    with pytest.raises(SystemExit):
        mod.main(["--reps", "0"])


def test_bench_roofline_takes_the_bfloat16_rate_with_bfloat16_products(tmp_path, capsys):
    from mnfn.layers import kernels
    out = tmp_path / "bench.json"
    with kernels.products_in("bfloat16"):
        assert main(["bench", "--quick", "--specs", "siren", "--models", "monomial", "--repeats", "1", "--warmup", "0",
                     "--batch", "2", "--no-data", "--no-memory", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["machine_before"]["product_precision"] == "bfloat16" and "bfloat16" in r["roofline"]["gemm"]
