"""CNN model zoos in the public Small CNN Zoo layout: generate, store, merge, read.

One module per job, lower layers first (each imports only from the ones before it):

* :mod:`~mnfn.data.zoo.format`: the files of a zoo folder (``weights.npy``, ``metrics.csv.gz``,
  ``layout.csv``, ``zoo.json``): their constants, layout / metrics / weights read and write,
  :class:`Zoo`, :func:`read_zoo`, :func:`write_zoo`, rows <-> features, :func:`spec_from_layout`,
  :func:`zoo_padding`;
* :mod:`~mnfn.data.zoo.recipe`: how nets are trained: :class:`Recipe`, the named recipes
  (:func:`default_recipe`), the public checkpoint epochs, each net's drawn :class:`NetConfig`;
* :mod:`~mnfn.data.zoo.train`: training one net (initialisers, optimizers, dropout, evaluation,
  retries after divergence, loading the images);
* :mod:`~mnfn.data.zoo.make`: :func:`make_zoo` (resumable, sharded, worker processes) and
  :func:`merge_zoos`;
* :mod:`~mnfn.data.zoo.dataset`: reading for learning: NFN splits (augmentation: :mod:`mnfn.augment`),
  :class:`ZooDataset`, :class:`MaterializedZoo`;
* :mod:`~mnfn.data.zoo.info`: :func:`zoo_info` and the final-accuracy histogram.

Every name of the former single module ``mnfn.data.zoo`` is importable from here as before (the
public ones and the private ones tests reach). ``_WORKER``, the state of a ``--workers`` process,
lives in :mod:`~mnfn.data.zoo.make` (use it there).
"""

from __future__ import annotations


# Beyond __all__, the other names the single module had are re-exported too (constants, the
# helpers tests use): hence the noqa: F401 on these imports.
from .dataset import Augment, MaterializedZoo, ZooDataset, read_split_file, split_nets  # noqa: F401
from .format import (FORMAT_VERSION, METRIC_COLUMNS, NUMERIC_COLUMNS, OPTIMIZERS, REQUIRED_COLUMNS,  # noqa: F401
                     TRAIN_FRACTIONS, W_INITS, ZOO_DATASETS, LayoutEntry, Zoo, features_to_rows, read_layout,
                     read_metrics, read_weights, read_zoo, rows_to_features, spec_from_layout, write_layout,
                     write_metrics, write_zoo, zoo_layout, zoo_padding)
from .info import HIST_BINS, accuracy_histogram, plot_accuracy_histogram, zoo_info  # noqa: F401
from .make import (MakeZooResult, _Job, _py, _worker_init, _worker_net, comparable_settings,  # noqa: F401
                   make_zoo, merge_zoos)
from .recipe import (INPUT_RANGES, PUBLIC_CHECKPOINTS, ZOO_RECIPES, NetConfig, Recipe,  # noqa: F401
                     default_recipe, draw_config, public_checkpoints)
from .train import MAX_ATTEMPTS  # noqa: F401

__all__ = [
    "METRIC_COLUMNS",
    "ZOO_DATASETS",
    "LayoutEntry",
    "Recipe",
    "MakeZooResult",
    "Zoo",
    "Augment",
    "ZooDataset",
    "default_recipe",
    "ZOO_RECIPES",
    "public_checkpoints",
    "zoo_padding",
    "comparable_settings",
    "accuracy_histogram",
    "zoo_layout",
    "write_layout",
    "read_layout",
    "read_metrics",
    "write_metrics",
    "read_weights",
    "read_zoo",
    "write_zoo",
    "rows_to_features",
    "features_to_rows",
    "spec_from_layout",
    "make_zoo",
    "merge_zoos",
    "zoo_info",
    "read_split_file",
    "split_nets",
]
