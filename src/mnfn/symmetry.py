"""The vocabulary every other module shares: which symmetry a neuron layer carries, and the error
raised for an architecture, module or feature batch the library cannot handle."""

from __future__ import annotations

__all__ = ["Symmetry", "WeightSpaceError"]


class WeightSpaceError(ValueError):
    """Raised for an architecture, module or feature batch the library cannot handle."""


class Symmetry:
    """Symmetry of a neuron layer, declared as data (compare e3nn's ``Irreps``)."""

    FIXED = "fixed"  # input/output neurons: the group does not act
    PERM = "perm"  # permutations only
    SCALE = "scale"  # permutations x positive scalings
    SIGN = "sign"  # permutations x sign flips

    ALL = (FIXED, PERM, SCALE, SIGN)
