"""The CLI a newcomer meets: every (sub)command's help ends with an example and states each
option's default; `mnfn --help` imports no torch."""

from __future__ import annotations

import argparse
import subprocess
import sys

from mnfn.cli import build_parser


def _walk(p: argparse.ArgumentParser, path: list[str]):
    yield path, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield from _walk(sp, [*path, name])


def _has_default(a: argparse.Action) -> bool:
    if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction, argparse._StoreTrueAction,
                      argparse._StoreFalseAction)) or a.help == argparse.SUPPRESS:
        return False
    return a.default is not None and a.default is not False and a.default != [] and a.default != argparse.SUPPRESS


def test_every_help_has_an_example_and_states_defaults():
    no_example, no_default = [], []
    parsers = list(_walk(build_parser(), ["mnfn"]))
    assert len(parsers) > 25  # every command, nested subcommand and task
    for path, p in parsers:
        if len(path) > 1 and not (p.epilog and "example" in p.epilog and "mnfn " in p.epilog):
            no_example.append(" ".join(path))
        for a in p._actions:
            if _has_default(a) and "default" not in (a.help or ""):
                no_default.append(f"{' '.join(path)} {'/'.join(a.option_strings) or a.dest} (default {a.default!r})")
    assert not no_example, f"help without an example: {no_example}"
    assert not no_default, f"options whose help does not state the default: {no_default}"


def test_top_level_help_imports_no_torch():
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "mnfn", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "COMMAND" in r.stdout
    imported = [ln.rsplit("|", 1)[-1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")]
    assert imported and not [m for m in imported if m == "torch" or m.startswith("torch.")], "torch imported"
    assert "numpy" not in imported


def test_old_flag_spellings_still_parse():
    p = build_parser()
    a = p.parse_args(["data", "info", "--root", "/x"])
    assert a.root == "/x"
    a = p.parse_args(["train", "edit-inr", "--inrs", "d", "--edit", "dilate", "--model", "m", "--data-root", "/y"])
    assert a.data_root == "/y"
    a = p.parse_args(["experiment", "classify-inr", "--inrs", "d", "--progress"])
    assert a.progress is True
    assert p.parse_args(["experiment", "classify-inr", "--inrs", "d", "--no-progress"]).progress is False


def test_closed_pipe_is_not_an_error():
    """`mnfn models | head -1`: the reader closes the pipe; the command exits 0 without a message."""
    import os

    r, w = os.pipe()
    os.close(r)  # every write to w now fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "mnfn", "models"], stdout=w, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(w)
    assert proc.returncode == 0, proc.stderr
    assert "Broken pipe" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
