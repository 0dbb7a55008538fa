"""``mnfn train TASK ...``: train one model on one task.

Tasks register themselves in :mod:`mnfn.tasks.registry` (``register_train_task``); this module only
builds one subcommand per registered task, so adding a task never touches it. Every task runs
unchanged under ``torchrun --nproc_per_node N`` (data-parallel; see docs/scaling.md).
"""

from __future__ import annotations

import argparse

from ..tasks import registry

NAME = "train"
ORDER = 40
HELP = "train a model on a task (predict-gen, ...); runs unchanged under torchrun"
EXAMPLE = """examples:
  mnfn train predict-gen --zoo runs/zoo --model monomial --activation relu --config predict_gen_fast
  mnfn train predict-gen --zoo runs/zoo --model hnp --activation relu --train-augment scale:1,10 --set lr=3e-4
  torchrun --nproc_per_node 2 -m mnfn train predict-gen --zoo runs/zoo --model monomial --activation relu"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    registry.add_command_arguments(p, registry.TRAIN_TASKS)


def run(args: argparse.Namespace) -> int:
    return registry.run_command(args)
