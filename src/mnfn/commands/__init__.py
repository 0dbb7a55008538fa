"""Subcommands of the ``mnfn`` CLI, one module each (discovered by :mod:`mnfn.cli`)."""

from __future__ import annotations

import argparse


def add_subcommand(sub: "argparse._SubParsersAction", name: str, help: str, example: str) -> argparse.ArgumentParser:
    """A nested subcommand (``mnfn inr make``, ...) whose ``--help`` ends with ``example`` (one or
    more command lines), like every command's."""
    rows = example.strip().splitlines()
    head = "examples:" if len(rows) > 1 else "example:"
    return sub.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".",
                          epilog="\n".join([head, *(f"  {r}" for r in rows)]),
                          formatter_class=argparse.RawDescriptionHelpFormatter)
