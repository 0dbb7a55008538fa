"""The ``mnfn`` command. Thin: each subcommand lives in ``mnfn/commands/<name>.py`` and calls the library.

A command module defines ``NAME``, ``HELP`` (one line), ``ORDER`` (position in ``--help``),
``add_arguments(parser)`` and ``run(args) -> int``. Modules are discovered automatically, so
adding a command never touches this file.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from typing import Sequence

# OpenMP threads that spin-wait between parallel regions collapse on a busy machine (two threads
# measured 3.4x slower than one passive pair on 2 loaded cores; benchmarks/bench_threads.py):
# wait passively unless the user chose otherwise. Set before torch (and its OpenMP) loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import commands as _commands_pkg


def _command_modules() -> list:
    mods = []
    for info in pkgutil.iter_modules(_commands_pkg.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{_commands_pkg.__name__}.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``mnfn`` parser. ``only``: fill in the arguments of that command alone (the others are
    listed with their one-line help): building every command's options imports the library and
    torch, which ``mnfn --help`` and a single command should not pay for."""
    parser = argparse.ArgumentParser(
        prog="mnfn",
        description="Monomial-NFN: learning on neural-network weights with their permutation, scaling and sign symmetries.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           epilog=getattr(mod, "EXAMPLE", None), formatter_class=argparse.RawDescriptionHelpFormatter)
        if only is None or only == mod.NAME:
            mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``mnfn`` command; returns its exit status."""
    try:
        code = _main(argv)
    except BaseException:
        _leave_process_group()
        raise
    if _leave_process_group():
        # Under torchrun: end without the interpreter's teardown. A gloo thread still alive there
        # aborts the process ("terminate called without an active exception", rank 1, twice in CI)
        # even after the group was destroyed; every file was written and closed before this point.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _leave_process_group() -> bool:
    dist_mod = sys.modules.get("mnfn.distributed")
    return bool(dist_mod is not None and dist_mod.cleanup())


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    # `mnfn --help` (no command before it) builds only the command list; `mnfn CMD ...` only CMD's options
    parser = build_parser(only=first if first is not None else "")
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    if os.environ.get("MNFN_TUNE_MALLOC", "1") != "0":
        # Keep freed memory in the process: without it every multi-MB tensor of a training step is
        # page-faulted in again (~10 % of a zoo train step; mnfn.jobs.tune_malloc). Workers this
        # process spawns read the same settings from the environment at their start.
        from .jobs import MALLOC_ENV, tune_malloc

        if tune_malloc() is not None:
            for key, value in MALLOC_ENV.items():
                os.environ.setdefault(key, value)
    try:
        from .argcheck import check_args

        check_args(args)  # option values in range, before any work (one rule per option name)
        return int(args._run(args) or 0)
    except BrokenPipeError:
        # The reader went away (`mnfn zoo info DIR | head`): not an error of this command. Point
        # stdout at /dev/null so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (ValueError, OSError, FloatingPointError) as exc:  # WeightSpaceError is a ValueError
        # Known, user-facing failures: one clear line instead of a traceback. ValueError covers
        # DataFormatError and ConfigError; OSError covers missing files, unwritable folders and a
        # full disk (the message names the path); FloatingPointError is a diverged training run.
        msg = " ".join(str(exc).split())  # one line, also for multi-line messages (YAML parser errors)
        print(f"mnfn {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
