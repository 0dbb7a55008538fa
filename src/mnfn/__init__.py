"""mnfn: learning on neural-network weights with their full monomial symmetry group (Monomial-NFN)."""

from .weightspace import (
    ACTIVATIONS,
    LayerSpec,
    Sine,
    Symmetry,
    WeightSpaceError,
    WeightSpaceFeatures,
    WeightSpaceSpec,
    build_module,
    cnn_spec,
    features_from_modules,
    features_to_module,
    functional_forward,
    mlp_spec,
    siren_spec,
    spec_from_module,
    zoo_cnn_spec,
)
from .groups import MonomialElement, ScaleDist, identity_element, sample_element

__version__ = "0.1.0"
