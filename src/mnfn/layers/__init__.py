"""Equivariant layers, invariant pooling, equivariant activations, Fourier features and channel dropout.

Every part takes :class:`~mnfn.weightspace.WeightSpaceFeatures` (``forward``), so models compose as
``nn.Sequential(EquivariantLinear(...), EquivariantActivation(...), ..., InvariantPool(...))``;
inside a model's stack the parts run on the folded layout (``forward_folded``) converted once.
"""

from .dropout import ChannelDropout
from .equivariant import EquivariantLinear, fold, unfold
from .fourier import FourierFeatures
from .pooling import EquivariantActivation, InvariantPool
from .terms import Term, enumerate_terms, resolve_symmetries, tensor_sites

__all__ = ["EquivariantLinear", "EquivariantActivation", "InvariantPool", "FourierFeatures", "ChannelDropout", "fold", "unfold",
           "Term", "enumerate_terms", "resolve_symmetries", "tensor_sites"]
