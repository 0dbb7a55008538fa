"""Helpers for the fault suite (tests/test_faults_*.py): an in-process CLI runner, killable CLI
processes, checks that every file under its final name is whole, and file mutations.

Killable processes: :class:`ForkServer` imports torch and mnfn once and forks one child per
``mnfn`` command; each child makes itself a process-group leader (``os.setsid``) and is killed with
``SIGKILL`` on its whole group, as a scheduler or the OOM killer would.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

# Imported here so that the forkserver (which preloads this module) has them ready for its children.
import torch  # noqa: F401

import mnfn.cli
from mnfn.tasks import registry as _registry

_registry.load_tasks()
mnfn.cli.build_parser()  # imports every command module (and what they import) once


# --- in-process CLI ----------------------------------------------------------------------------

def run_cli(argv: Sequence[str]) -> tuple[int, str, str]:
    """``mnfn.cli.main(argv)`` -> ``(exit code, stdout, stderr)``; an exception escaping ``main``
    (a bare traceback for a user) is re-raised as an AssertionError naming it."""
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = mnfn.cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors
        rc = exc.code if isinstance(exc.code, int) else 2
    except Exception as exc:  # noqa: BLE001 - this *is* the failure we test for
        raise AssertionError(f"`mnfn {' '.join(map(str, argv[:3]))} ...` crashed with a traceback: "
                             f"{type(exc).__name__}: {exc}") from exc
    finally:
        torch.set_num_threads(threads)  # `--threads 1` changes the process-wide setting
    return int(rc), out.getvalue(), err.getvalue()


def assert_cli_error(argv: Sequence[str], *needles: str) -> str:
    """The command fails (non-zero exit) with exactly one line ``mnfn <cmd>: error: ...`` on stderr
    that contains every needle (file names, field names, the problem)."""
    rc, _, err = run_cli(argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc != 0, f"`mnfn {' '.join(map(str, argv))}` exited 0 on bad input; stderr: {err!r}"
    err_lines = [ln for ln in lines if ln.startswith(f"mnfn {argv[0]}: error: ")]
    assert len(err_lines) == 1, f"expected one 'mnfn {argv[0]}: error:' line, got stderr {err!r}"
    line = err_lines[0]
    for n in needles:
        assert n in line, f"error line lacks {n!r}: {line!r}"
    return line


# --- killable CLI runs in their own process group ------------------------------------------------

_SERVER_CODE = r"""
import json, os, sys
sys.path[:0] = json.loads(sys.argv[1])
import fault_utils  # torch and mnfn, imported once
from mnfn.data.images import load_images
load_images("digits", "train")  # imports scikit-learn and reads the file (numpy only: no torch op before fork)
import statistics, torch._dynamo, torch.optim  # what the first optimizer step would import (seconds)
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "run":
        pid = os.fork()
        if pid == 0:
            os.environ.update(req.get("env") or {})
            fault_utils._child(req["argv"], req["log"], req["cwd"])  # never returns
        reply = {"pid": pid}
    else:  # status
        try:
            p, st = os.waitpid(req["pid"], os.WNOHANG)
            reply = {"done": p != 0, "code": os.waitstatus_to_exitcode(st) if p else None}
        except ChildProcessError:
            reply = {"done": True, "code": None}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
"""


class ForkServer:
    """A process that imported torch and mnfn once and forks one child per ``mnfn`` command.

    A fresh ``python -m mnfn`` pays ~10 s of imports on a loaded 2-core machine; a fork costs
    milliseconds. The server has run no torch operation, so forking it is safe. Each child makes
    itself a process-group leader (``os.setsid``) so ``SIGKILL`` can hit its whole group.
    """

    def __init__(self) -> None:
        import subprocess

        here = str(Path(__file__).resolve().parent)
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVER_CODE, json.dumps([here, *sys.path])],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.children: list[CliProcess] = []

    def _ask(self, req: dict) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fork server died (exit code {self.proc.poll()})")
        return json.loads(line)

    def run(self, argv: Sequence[str], log: Path, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> "CliProcess":
        """Fork a child running ``mnfn argv`` (stdout and stderr to ``log``), with ``env`` added to its
        environment (e.g. :data:`mnfn.io.STOP_ENV`)."""
        pid = self._ask({"op": "run", "argv": [str(a) for a in argv], "log": str(log),
                         "cwd": str(cwd or Path.cwd()), "env": dict(env or {})})["pid"]
        child = CliProcess(self, pid, log)
        self.children.append(child)
        return child

    def close(self) -> None:
        """Kill the children still running (never a reaped pid: it may belong to someone else now)."""
        for child in self.children:
            with contextlib.suppress(Exception):
                if child.poll() is None:
                    child.kill()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except Exception:  # noqa: BLE001
            self.proc.kill()


def _child(argv: list[str], log: str, cwd: str) -> None:
    """Body of a forked child: own process group, output to ``log``, exit with the CLI's code."""
    rc = 1
    try:
        os.setsid()  # own session and process group: killpg(pid) reaches everything it starts
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(cwd)
        rc = mnfn.cli.main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        rc = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(int(rc or 0))


class CliProcess:
    """One forked ``mnfn`` command."""

    def __init__(self, server: ForkServer, pid: int, log: Path) -> None:
        self.server, self.pid, self.log = server, pid, log
        self.exitcode: int | None = None

    def poll(self) -> int | None:
        if self.exitcode is None:
            r = self.server._ask({"op": "status", "pid": self.pid})
            if r["done"]:
                self.exitcode = r["code"] if r["code"] is not None else -999
        return self.exitcode

    def wait(self, timeout: float) -> int | None:
        t0 = time.monotonic()
        while self.poll() is None and time.monotonic() - t0 < timeout:
            time.sleep(0.02)
        return self.exitcode

    def kill(self) -> None:
        """SIGKILL the child's process group (the child itself if it has not made its group yet).
        A child already reaped is left alone: its pid may have been reused."""
        if self.exitcode is not None:
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.wait(30)


def wait_for(cond: Callable[[], bool], timeout: float, proc: CliProcess | None = None, poll: float = 0.01) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        if proc is not None and proc.poll() is not None:
            return cond()
        time.sleep(poll)
    return cond()


# --- no half-written file under a final name ------------------------------------------------------

def is_temp(path: Path) -> bool:
    """A temporary file of an atomic write (``.NAME.XXXX[.suffix].tmp``): never read by any reader."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def check_whole(path: Path) -> None:
    """Load one file by its type; raises if it is truncated or corrupt."""
    from mnfn.data.zoo import read_layout, read_metrics, read_weights
    from mnfn.io import load_npz, load_torch, read_json

    name = path.name
    if name.endswith(".npy"):
        arr = read_weights(path, mmap=False)  # checks the size against the header
        assert arr.size >= 0
    elif name.endswith(".npz"):
        load_npz(path)
    elif name.endswith(".pt") or name.endswith(".pth"):
        load_torch(path)
    elif name.endswith(".json"):
        read_json(path)
    elif name.endswith(".csv.gz"):
        read_metrics(path, required=())
    elif name == "layout.csv":
        read_layout(path)
    elif name.endswith(".csv"):
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
        assert rows, f"{path}: empty"
        assert all(len(r) == len(rows[0]) for r in rows), f"{path}: ragged rows (half-written?)"
    elif name.endswith(".png"):
        assert path.read_bytes()[:4] == b"\x89PNG"


def check_tree_whole(root: Path) -> list[Path]:
    """Every non-temporary file under ``root`` loads; returns the temporary files found."""
    temps = []
    if not root.exists():
        return temps
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        if is_temp(p):
            temps.append(p)
            continue
        try:
            check_whole(p)
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"half-written file under its final name: {p} ({type(exc).__name__}: {exc})") from exc
    return temps


# --- file mutations -------------------------------------------------------------------------------

def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def rewrite_npz(path: Path, fn: Callable[[dict[str, np.ndarray]], None]) -> None:
    with np.load(path, allow_pickle=False) as z:
        arrs = {k: z[k] for k in z.files}
    fn(arrs)
    with open(path, "wb") as fh:
        np.savez(fh, **arrs)


def read_gz_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        return fh.read().splitlines()


def write_gz_lines(path: Path, lines: Sequence[str]) -> None:
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")


def set_metric(path: Path, column: str, row: int, value: str) -> None:
    """Set one cell of ``metrics.csv.gz`` (no quoting in these files)."""
    lines = read_gz_lines(path)
    head = lines[0].split(",")
    j = head.index(column)
    cells = lines[1 + row].split(",")
    cells[j] = value
    lines[1 + row] = ",".join(cells)
    write_gz_lines(path, lines)


def json_edit(path: Path, fn: Callable[[Any], Any]) -> None:
    """Load a JSON file, let ``fn`` change the object in place, write it back."""
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj))


# --- shared pieces of the fault modules (tests/test_faults_*.py) ---------------------------------

def xfail(reason: str) -> Any:
    """A strict xfail: the case turns into a failure as soon as the fault is handled."""
    import pytest

    return pytest.mark.xfail(reason=reason, strict=True)


def raises(fn: Callable[[], Any], exc: type[BaseException], *needles: str) -> str:
    """Assert ``fn()`` raises ``exc`` whose message contains every needle; return the message."""
    import pytest

    with pytest.raises(exc) as ei:
        fn()
    msg = str(ei.value)
    for n in needles:
        assert n in msg, f"error lacks {n!r}: {msg!r}"
    return msg


ZOO_NETS = 16


def cached_zoo(request: Any, tmp_path_factory: Any) -> Path:
    """16 digits CNNs (ReLU and tanh), checkpoints at steps 0, 1, 2, kept in pytest's cache across runs
    (and shared by the fault modules). Callers never modify it: every fault works on a copy."""
    import dataclasses

    from mnfn.data import zoo as Z

    cache = getattr(request.config, "cache", None)
    base = Path(cache.mkdir("mnfn-faults")) if cache is not None else tmp_path_factory.mktemp("faults")
    out = base / "zoo-digits-16-e2"
    if not (out / "zoo.json").is_file():
        recipe = dataclasses.replace(Z.default_recipe("digits"), epochs=2)
        Z.make_zoo(out, "digits", ZOO_NETS, seed=0, recipe=recipe, progress=False)
    return out


# predict-gen settings small enough for a 2-core CPU (1 epoch of a tiny Monomial-NFN).
PG_SET = ["--set", "epochs=1", "--set", "steps=1,2", "--set", "split_seed=4", "--set", "models.monomial.hidden=[4,4]",
          "--set", "models.monomial.head=[8]", "--set", "eval_batch_size=64", "--set", "test_scales=[10.0,1000000.0]"]


def pg_argv(zoo_dir: Path, out: Path, *extra: str) -> list[str]:
    """``mnfn train predict-gen`` on ``zoo_dir`` into ``out`` with :data:`PG_SET` (and ``extra``)."""
    return ["train", "predict-gen", "--zoo", str(zoo_dir), "--model", "monomial", "--activation", "relu",
            "--out", str(out), "--no-progress", "--threads", "1", *PG_SET, *extra]


def copy_tree(src: Path, dst: Path) -> Path:
    """Copy folder ``src`` to ``dst`` (which must not exist) and return ``dst``."""
    import shutil

    shutil.copytree(src, dst)
    return dst
