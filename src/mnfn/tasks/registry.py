"""Registries of task subcommands: ``mnfn train <TASK>`` and ``mnfn experiment <TASK>``.

A task module in ``mnfn/tasks/`` registers itself when imported::

    from .registry import register_train_task, register_experiment

    register_train_task("classify-inr", help="...", add_arguments=add_train_arguments, run=run_train,
                        example="mnfn train classify-inr --data DIR --model monomial")
    register_experiment("classify-inr", help="...", add_arguments=..., run=...)

``add_arguments(parser)`` fills an ``argparse`` parser, ``run(args) -> int`` does the work.
:func:`load_tasks` imports every module of the package once, so the commands never list task
modules by hand. Every module here except this one is a task (the shared training infrastructure
lives in :mod:`mnfn.training`). A module that fails to import raises: a programming error is not
hidden behind a working CLI.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

__all__ = ["TaskEntry", "TRAIN_TASKS", "EXPERIMENTS", "register_train_task", "register_experiment",
           "load_tasks", "add_task_subparsers"]


@dataclass(frozen=True)
class TaskEntry:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None
    example: str | None = None
    order: int = 100


TRAIN_TASKS: dict[str, TaskEntry] = {}
EXPERIMENTS: dict[str, TaskEntry] = {}
_loaded = False


def _register(table: dict[str, TaskEntry], kind: str, entry: TaskEntry) -> TaskEntry:
    old = table.get(entry.name)
    if old is not None and old.run is not entry.run:
        raise ValueError(f"{kind} task {entry.name!r} registered twice")
    table[entry.name] = entry
    return entry


def register_train_task(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                        run: Callable[[argparse.Namespace], int], description: str | None = None,
                        example: str | None = None, order: int = 100) -> TaskEntry:
    """Make ``mnfn train NAME`` available."""
    return _register(TRAIN_TASKS, "train", TaskEntry(name, help, add_arguments, run, description, example, order))


def register_experiment(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                        run: Callable[[argparse.Namespace], int], description: str | None = None,
                        example: str | None = None, order: int = 100) -> TaskEntry:
    """Make ``mnfn experiment NAME`` available."""
    return _register(EXPERIMENTS, "experiment", TaskEntry(name, help, add_arguments, run, description, example, order))


def load_tasks() -> None:
    """Import every task module of :mod:`mnfn.tasks` (once) so it registers its subcommands."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from .. import tasks as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_") and info.name != "registry":
            importlib.import_module(f"{pkg.__name__}.{info.name}")


def add_task_subparsers(parser: argparse.ArgumentParser, table: dict[str, TaskEntry], dest: str) -> None:
    """One subparser per registered task; sets ``args._task_run``."""
    sub = parser.add_subparsers(dest=dest, metavar="TASK")
    for entry in sorted(table.values(), key=lambda e: (e.order, e.name)):
        example = entry.example or ""
        if example and not example.startswith("example"):
            example = "example:\n  " + "\n  ".join(example.strip().splitlines())
        p = sub.add_parser(entry.name, help=entry.help, description=entry.description or entry.help,
                           epilog=example or None, formatter_class=argparse.RawDescriptionHelpFormatter)
        entry.add_arguments(p)
        p.set_defaults(_task_run=entry.run)


def add_command_arguments(parser: argparse.ArgumentParser, table: dict[str, TaskEntry]) -> None:
    """``mnfn train`` / ``mnfn experiment``: load the tasks, one subcommand per task in ``table``."""
    load_tasks()
    add_task_subparsers(parser, table, "task")
    parser.set_defaults(_parser=parser)


def run_command(args: argparse.Namespace) -> int:
    """Run the chosen task; without one, print the help."""
    fn = getattr(args, "_task_run", None)
    if fn is None:
        args._parser.print_help()
        return 0
    return int(fn(args) or 0)
