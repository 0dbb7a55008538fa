"""``mnfn experiment TASK ...``: a whole grid of runs (models x settings x seeds) and its report.

Tasks register themselves in :mod:`mnfn.tasks.registry` (``register_experiment``); this module only
builds one subcommand per registered task, so adding a task never touches it. A finished cell is
skipped when the same command runs again.
"""

from __future__ import annotations

import argparse

from ..tasks import registry

NAME = "experiment"
ORDER = 50
HELP = "run an experiment grid (models x augmentation x test condition x seeds); resumable"
EXAMPLE = """examples:
  mnfn experiment predict-gen --zoo runs/zoo --out runs/exp1 --models monomial,hnp --seeds 0,1 --config predict_gen_fast
  mnfn experiment predict-gen --zoo runs/zoo --out runs/exp1-tanh --activation tanh"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    registry.add_command_arguments(p, registry.EXPERIMENTS)


def run(args: argparse.Namespace) -> int:
    return registry.run_command(args)
