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
