"""Equivariant layers, invariant pooling and equivariant activations."""

from .equivariant import EquivariantLinear, fold, unfold
from .terms import Term, enumerate_terms, resolve_symmetries, tensor_sites

__all__ = ["EquivariantLinear", "fold", "unfold", "Term", "enumerate_terms", "resolve_symmetries", "tensor_sites"]
