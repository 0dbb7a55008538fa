"""The one registry every task builds its models from: :class:`ModelEntry`, :data:`MODELS`,
:func:`build_model`, :func:`claimed_symmetries`. A model file in this package registers its
entries when imported (``mnfn.models`` imports them all)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from ..symmetry import WeightSpaceError
from ..weightspace import WeightSpaceSpec

__all__ = ["ModelEntry", "MODELS", "register_model", "model_entry", "model_names", "build_model",
           "claimed_symmetries", "count_parameters"]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: how to build it, what it promises, and which config keys it takes."""

    name: str
    builder: Callable[..., nn.Module]
    description: str
    claims: Callable[[WeightSpaceSpec], tuple[str, ...]]  # per-neuron-layer symmetries it respects
    signature: Callable[..., Any]  # whose keyword arguments are the config keys
    kind: str = "invariant"  # "invariant" (features -> vector) or "equivariant" (features -> features)
    defaults: tuple[tuple[str, Any], ...] = ()  # the published configuration, overridable key by key
    supports: Callable[[WeightSpaceSpec], str | None] | None = None  # reason it cannot serve a spec, or None
    extra_keys: tuple[str, ...] = ()  # config keys the builder takes beyond ``signature``'s

    def unsupported(self, spec: WeightSpaceSpec) -> str | None:
        """Why this model cannot be built for ``spec`` (``None``: it can)."""
        return self.supports(spec) if self.supports is not None else None

    def config_keys(self) -> set[str]:
        params = inspect.signature(self.signature).parameters
        return {n for n, p in params.items() if n not in ("self", "spec", "symmetries")
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} | set(self.extra_keys)


_KIND_WORDS = {"invariant": "a classifier or regressor (features -> scores)",
               "equivariant": "an editor (features -> weight change)"}

#: Every registered model, in registration order.
MODELS: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry, replace: bool = False) -> ModelEntry:
    """Add a model to the registry; a name already taken is an error unless ``replace``."""
    if entry.name in MODELS and not replace:
        raise WeightSpaceError(f"model {entry.name!r} is already registered (pass replace=True to override it)")
    MODELS[entry.name] = entry
    return entry


def model_entry(name: str, kind: str | None = None) -> ModelEntry:
    """The entry of model ``name``: *the* check for an unknown model name (and, with ``kind``, a model
    of the wrong kind) that every task and command uses."""
    if name not in MODELS:
        raise WeightSpaceError(f"unknown model {name!r}; registered: {', '.join(MODELS)}")
    entry = MODELS[name]
    if kind is not None and entry.kind != kind:
        want = _KIND_WORDS.get(kind, f"an {kind} model")
        raise WeightSpaceError(f"model {name!r} is not {want}; use one of {', '.join(model_names(kind))}")
    return entry


def model_names(kind: str | None = None) -> list[str]:
    return [n for n, e in MODELS.items() if kind is None or e.kind == kind]


def build_model(name: str, spec: WeightSpaceSpec, **config: Any) -> nn.Module:
    """Build registered model ``name`` for ``spec``; an unknown config key is an error."""
    entry = model_entry(name)
    reason = entry.unsupported(spec)
    if reason:
        raise WeightSpaceError(f"model {name!r} cannot serve [{spec.describe()}]: {reason}")
    unknown = sorted(set(config) - entry.config_keys())
    if unknown:
        raise WeightSpaceError(f"model {name!r} does not take config keys {unknown}; it takes {sorted(entry.config_keys())}")
    return entry.builder(spec, **{**dict(entry.defaults), **config})


def claimed_symmetries(name: str, spec: WeightSpaceSpec) -> tuple[str, ...]:
    """Per-neuron-layer symmetries model ``name`` promises to respect (``fixed`` = none)."""
    return model_entry(name).claims(spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
