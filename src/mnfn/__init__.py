"""mnfn: learning on neural-network weights with their full monomial symmetry group (Monomial-NFN).

The names below are loaded on first use (PEP 562), so ``import mnfn`` and ``mnfn --help`` do not
import torch; ``from mnfn import features_from_modules`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    **{name: "weightspace" for name in (
        "ACTIVATIONS", "LayerSpec", "Sine", "Symmetry", "WeightSpaceError", "WeightSpaceFeatures", "WeightSpaceSpec",
        "cnn_spec", "mlp_spec", "siren_spec", "zoo_cnn_spec")},
    **{name: "networks" for name in (
        "build_module", "features_from_modules", "features_to_module", "functional_forward", "spec_from_module")},
    **{name: "groups" for name in ("MonomialElement", "ScaleDist", "identity_element", "sample_element")},
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mnfn' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
