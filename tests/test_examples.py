"""The scripts under examples/ run as a newcomer would run them."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_runs_and_is_invariant():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    last = out.strip().splitlines()[-1]
    assert last.startswith("max relative invariance error:")
    assert float(last.split(":")[1]) < 1e-4


def test_paper_regime_script_runs_end_to_end_on_a_tiny_cpu_set(tmp_path):
    """examples/paper_regime_gpu.sh with the device, sizes and widths shrunk: fit, merge, info, train,
    curves, every file where the script says."""
    import json
    import os

    import pytest

    data = os.environ.get("MNFN_DATA")
    if not data or not (Path(data) / "mnist").is_dir():
        pytest.skip("needs MNFN_DATA with mnist/")
    out = tmp_path / "paper"
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(out), DEVICE="cpu", NUM_TRAIN="24", NUM_TEST="8",
               EPOCHS="1", OMP_NUM_THREADS="1")
    small = "{sign_channels: [4, 1], mapping_size: 4, hnp_hidden: [4], head: [8]}"
    subprocess.run(["bash", str(ROOT / "examples" / "paper_regime_gpu.sh"), "--set", "val_size=8",
                    "--set", f"models.hybrid-inr={small}"], env=env, cwd=tmp_path, capture_output=True,
                   text=True, timeout=600, check=True)
    res = json.loads((out / "classify-hybrid-inr-s0" / "results.json").read_text())
    assert "hybrid-inr" in json.dumps(res)
    assert (out / "curves-hybrid-inr-s0.png").stat().st_size > 0
    assert json.loads((out / "inr-stats.json").read_text())
    assert "fitted in" in (out / "machine.txt").read_text()
