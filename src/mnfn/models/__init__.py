"""Models for weight spaces, one file per family, all in one registry.

============================= ================================================================
file                          what it holds
============================= ================================================================
``registry.py``               :class:`ModelEntry`, :data:`MODELS`, :func:`build_model`,
                              :func:`claimed_symmetries` (the one unknown-model check)
``parts.py``                  what models share: the input check, the MLP head, NP's position
                              embedding, the stack of equivariant layers, common claims
``nfn.py``                    ``monomial`` (Monomial-NFN), ``hnp``, ``np``, ``canon-hnp`` and the
                              editors ``monomial-editor``, ``hnp-editor``, ``np-editor``
``baselines.py``              ``statnn`` (StatNN), ``mlp`` (flat MLP)
``canon_stats.py``            statistics of canonical weights: ``canon-statnn``, ``monomial-stat``
``inr.py``                    SIREN models: ``monomial-inr``, the paper's hybrids ``hybrid-inr`` /
                              ``hybrid-editor``, ``mlp-editor``, per-tensor input scaling
``probes.py``                 probe features (what a net computes at fixed inputs):
                              ``monomial-inr-probe``, ``monomial-probe``, ``probe-mlp``
``gmn.py``                    ``monomial-gmn``: message passing along each net's wiring
============================= ================================================================

``build_model(name, spec, **config)`` builds any of them; :func:`claimed_symmetries` says which
group a model promises to respect, so checks never fail a model for a symmetry it does not claim.
Adding a model is one new file here that calls :func:`register_model`: it is imported (and so
registered) with the package.
"""

from __future__ import annotations

import importlib
import pkgutil

from .registry import (MODELS, ModelEntry, build_model, claimed_symmetries, count_parameters, model_entry,
                       model_names, register_model)
from .nfn import CanonHNP, EquivariantEditor, InvariantNFN, MonomialNFN
from . import baselines, inr, probes  # noqa: F401  (register their models, in this order)

# Any other model file of this package registers itself on import too (errors are not swallowed).
for _m in pkgutil.iter_modules(__path__):
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")
del _m

__all__ = ["MODELS", "ModelEntry", "build_model", "claimed_symmetries", "count_parameters", "model_entry",
           "model_names", "register_model", "InvariantNFN", "MonomialNFN", "EquivariantEditor", "CanonHNP"]
