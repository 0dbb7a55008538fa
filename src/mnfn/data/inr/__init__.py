"""SIREN INR sets: batched fitting, storage, a dataset class, rendering and NFN-format interop.

One module per job, lower layers first (each imports only from the ones before it):

* :mod:`~mnfn.data.inr.format`: an INR set folder (``meta.json``, ``chunks/*.npz``, ``index.csv``):
  its constants, checked reads (:func:`read_meta`, :func:`load_chunk`, :func:`read_index`),
  atomic writes, :func:`write_index`, :class:`MakeSummary` and :func:`summarize`;
* :mod:`~mnfn.data.inr.siren`: the conventions shared by fitting, rendering, import and export, as
  code: :func:`make_coords`, :func:`images_to_targets`, :func:`psnr`, :func:`net_seed`,
  :func:`init_seeds`, :func:`init_sirens`, :func:`render`, and the images nets are fitted to;
* :mod:`~mnfn.data.inr.fit`: batched fitting: :class:`FitConfig`, the named recipes
  (:data:`RECIPES`, :func:`recipe`), :func:`fit_sirens`;
* :mod:`~mnfn.data.inr.make`: :func:`make_inr_dataset` (plan, fit, resume, shard, worker
  processes) and :func:`merge_inr_datasets`;
* :mod:`~mnfn.data.inr.nfn`: NFN's SIREN format: :func:`nfn_keys`, :func:`nfn_state_dict`,
  :func:`read_nfn_file`, :func:`import_nfn`, :func:`export_nfn`;
* :mod:`~mnfn.data.inr.dataset`: :class:`InrDataset`.

Every name of the former single module ``mnfn.data.inr`` is importable from here as before (the
public ones and the private ones tests and benchmarks reach).
"""

from __future__ import annotations

# Beyond __all__, the other names the single module had are re-exported too (constants, the
# helpers tests and benchmarks use): hence the noqa: F401 on these imports.
from ...jobs import parse_shard, torch_threads  # noqa: F401  (re-exported, as before)
from .dataset import InrDataset
from .fit import (DEFAULT_RECIPE, NFN_MNIST_STDS, RECIPES, FitConfig, FitResult, _loss_and_grads,  # noqa: F401
                  fit_sirens, recipe, recipe_name)
from .format import (CONVENTIONS, FORMAT, FORMAT_VERSION, INDEX_COLUMNS, INR_DATASETS,  # noqa: F401
                     KNOWN_SPLIT_SIZES, MAX_CHUNK_NETS, NFN_PREFIX, SPLITS, MakeSummary, chunk_name, load_chunk,
                     read_index, read_meta, summarize, write_index)
from .make import make_inr_dataset, merge_inr_datasets, plan_chunks, select_indices  # noqa: F401
from .nfn import EXPORT_META, export_nfn, import_nfn, nfn_keys, nfn_state_dict, read_nfn_file  # noqa: F401
from .siren import (INIT_SCHEMES, INITS, _params_to_features, images_to_targets, init_seeds,  # noqa: F401
                    init_sirens, make_coords, net_seed, psnr, render)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INR_DATASETS",
    "NFN_PREFIX",
    "FitConfig",
    "FitResult",
    "RECIPES",
    "DEFAULT_RECIPE",
    "INIT_SCHEMES",
    "recipe",
    "recipe_name",
    "MakeSummary",
    "InrDataset",
    "make_coords",
    "images_to_targets",
    "psnr",
    "net_seed",
    "init_sirens",
    "fit_sirens",
    "render",
    "parse_shard",
    "plan_chunks",
    "make_inr_dataset",
    "merge_inr_datasets",
    "read_meta",
    "read_index",
    "load_chunk",
    "write_index",
    "summarize",
    "nfn_keys",
    "nfn_state_dict",
    "read_nfn_file",
    "import_nfn",
    "export_nfn",
]
