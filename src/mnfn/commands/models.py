"""``mnfn models``: the registered models and their parameter counts for an architecture."""

from __future__ import annotations

import argparse
import json

from .check import ARCHS, arch_spec

NAME = "models"
ORDER = 20
HELP = "list registered models with their parameter counts and claimed symmetries"
EXAMPLE = """examples:
  mnfn models --arch zoo-cnn
  mnfn models --arch siren --activation sin --json"""

_DEFAULT_ACT = {"mlp": "relu", "zoo-cnn": "relu", "siren": "sin"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", choices=ARCHS, default="zoo-cnn", help="sample architecture (default zoo-cnn)")
    p.add_argument("--activation", default=None, help="hidden activation (default: relu; sin for siren)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def model_table(arch: str, activation: str | None = None) -> list[dict]:
    """One row per registered model: name, kind, parameters, claimed hidden symmetries, description."""
    from ..models import MODELS, build_model, claimed_symmetries, count_parameters

    spec = arch_spec(arch, activation or _DEFAULT_ACT[arch])
    rows = []
    for name, entry in MODELS.items():
        if entry.unsupported(spec):
            continue
        model = build_model(name, spec)
        rows.append(dict(model=name, kind=entry.kind, parameters=count_parameters(model),
                         claims=",".join(claimed_symmetries(name, spec)[1:-1]), description=entry.description))
    return rows


def run(args: argparse.Namespace) -> int:
    rows = model_table(args.arch, args.activation)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    ref = {r["model"]: r["parameters"] for r in rows}
    print(f"{'model':20s} {'kind':12s} {'parameters':>11s} {'vs hnp':>7s}  claims (hidden layers)")
    for r in rows:
        base = ref["hnp-editor"] if r["kind"] == "equivariant" else ref["hnp"]
        print(f"{r['model']:20s} {r['kind']:12s} {r['parameters']:11,d} {r['parameters'] / base:7.3f}  {r['claims']}")
    return 0
