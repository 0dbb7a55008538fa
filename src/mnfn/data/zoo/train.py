"""Training one net of a zoo: Keras-style initialisers, the optimizers, fast dropout, evaluation,
the training loop that turns each saved epoch into a row (:func:`_train_net`), redraws of nets
that diverge (:func:`_train_with_retries`) and the images they train on (:func:`_load_data`).

Nothing here is public: :mod:`mnfn.data.zoo.make` runs it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...weightspace import cnn_spec
from ...networks import build_module
from ..images import ImageSet, load_images
from .format import ZOO_DATASETS, LayoutEntry, _module_row
from .recipe import NetConfig, Recipe, draw_config

__all__: list[str] = []


def _init_weights(model: nn.Sequential, cfg: NetConfig) -> None:
    """Keras-style initialisers (fans count the kernel window); biases zero (``b_init = zeros``)."""
    with torch.no_grad():
        for m in model:
            if not isinstance(m, (nn.Conv2d, nn.Linear)):
                continue
            w = m.weight
            rf = w[0, 0].numel()
            fan_in, fan_out = w.shape[1] * rf, w.shape[0] * rf
            if cfg.w_init == "he_normal":
                w.normal_(0.0, math.sqrt(2.0 / fan_in))
            elif cfg.w_init == "glorot_normal":
                w.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)))
            elif cfg.w_init == "orthogonal":
                nn.init.orthogonal_(w)
            elif cfg.w_init == "RandomNormal":
                w.normal_(0.0, cfg.init_std)
            elif cfg.w_init == "TruncatedNormal":
                nn.init.trunc_normal_(w, 0.0, cfg.init_std, -2 * cfg.init_std, 2 * cfg.init_std)
            else:
                raise ValueError(f"unknown weight init {cfg.w_init!r}")
            m.bias.zero_()


def _make_optimizer(params: list[Tensor], cfg: NetConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.learning_rate, eps=1e-7)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.learning_rate, alpha=0.9, eps=1e-7)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.learning_rate)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def _dropout(h: Tensor, p: float) -> Tensor:
    """Elementwise dropout with the drop probability rounded to a multiple of 1/256.

    Why not ``F.dropout``: drawing one random float per element dominates the step time of these
    tiny nets on a CPU. Here every random 64-bit integer gives eight bytes, each compared with
    ``round(256 p)``: about 3x faster. Kept values are scaled by the exact ``1 / P(keep)``.
    """
    thr = int(round(p * 256))
    if thr <= 0:
        return h
    n = h.numel()
    r = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64).view(torch.uint8)[:n].view(h.shape)
    return h * (r >= thr) * (256.0 / (256 - thr))


def _forward(model: nn.Sequential, x: Tensor, dropout: float, train: bool) -> Tensor:
    """The zoo net with dropout after every hidden activation (only while training)."""
    h = x
    for m in model:
        h = m(h)
        if train and dropout > 0 and not isinstance(m, (nn.Conv2d, nn.Linear, nn.AdaptiveAvgPool2d, nn.Flatten)):
            h = _dropout(h, dropout)
    return h


@torch.no_grad()
def _evaluate(model: nn.Sequential, x: Tensor, y: Tensor, batch: int = 512) -> tuple[float, float]:
    """Accuracy and mean cross-entropy (non-finite outputs count as wrong / infinite loss).

    Batches of 512 keep the activations in cache: 2.4x faster than 2048 on the full 10k test set."""
    correct, loss = 0, 0.0
    for i in range(0, len(x), batch):
        out = _forward(model, x[i:i + batch], 0.0, False)
        yy = y[i:i + batch]
        correct += int((out.argmax(1) == yy).sum())
        loss += float(F.cross_entropy(out, yy, reduction="sum"))
    n = len(x)
    return correct / n, loss / n


class _Diverged(Exception):
    pass


@dataclass
class _Data:
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    spec_in: tuple[int, int, int]


def _train_net(cfg: NetConfig, data: _Data, recipe: Recipe, layout: list[LayoutEntry], dataset: str,
               num_classes: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Train one net; return its checkpoint rows and metrics rows (steps 0..epochs)."""
    spec = cnn_spec(data.spec_in[0], [recipe.channels] * recipe.num_conv, num_classes, cfg.activation,
                    kernel=3, stride=2, padding=recipe.padding, image_size=data.spec_in[1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.random_seed)
        g = torch.Generator().manual_seed(cfg.random_seed)
        n_pool = len(data.x_train) if recipe.train_images is None else min(recipe.train_images, len(data.x_train))
        n_train = max(min(recipe.batch_size, n_pool), int(round(cfg.train_fraction * n_pool)))
        idx = torch.randperm(len(data.x_train), generator=g)[:n_train]
        xt, yt = data.x_train[idx], data.y_train[idx]
        n_ev = min(recipe.train_eval_images, n_train)
        model = build_module(spec)
        _init_weights(model, cfg)
        params = list(model.parameters())
        kernels = [m.weight for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
        opt = _make_optimizer(params, cfg)
        rows, metrics = [], []

        def checkpoint(step: int) -> None:
            row = _module_row(model, layout)
            if not np.isfinite(row).all():
                raise _Diverged()
            te_acc, te_loss = _evaluate(model, data.x_test, data.y_test)
            tr_acc, tr_loss = _evaluate(model, xt[:n_ev], yt[:n_ev])
            rows.append(row)
            metrics.append({
                "config.activation": cfg.activation, "config.b_init": "zeros", "config.dataset": dataset,
                "config.dnn_architecture": "cnn", "config.dropout": cfg.dropout, "config.epochs": recipe.epochs,
                "config.epochs_between_checkpoints": gap, "config.init_std": cfg.init_std, "config.l2reg": cfg.l2reg,
                "config.learning_rate": cfg.learning_rate, "config.num_layers": recipe.num_conv,
                "config.num_units": recipe.channels, "config.optimizer": cfg.optimizer,
                "config.random_seed": cfg.random_seed, "config.train_fraction": cfg.train_fraction,
                "config.w_init": cfg.w_init, "modeldir": f"net{cfg.index:06d}", "step": step,
                "test_accuracy": te_acc, "test_loss": te_loss, "train_accuracy": tr_acc, "train_loss": tr_loss,
            })

        saved = set(recipe.saved_epochs)
        ep = recipe.saved_epochs
        gap = max((b - a for a, b in zip(ep, ep[1:])), default=1)  # the public zoo's column: the regular gap
        if 0 in saved:
            checkpoint(0)
        bs = min(recipe.batch_size, n_train)
        # Every net gets the same compute: an epoch is n_pool examples, cycling through the net's own
        # (train_fraction-sized) subset, so a small fraction means more passes over fewer images.
        steps_per_epoch = max(1, math.ceil(n_pool / bs))
        perm, pos = torch.randperm(n_train, generator=g), 0
        for epoch in range(1, recipe.epochs + 1):
            for _ in range(steps_per_epoch):
                if pos + bs > n_train:
                    perm, pos = torch.randperm(n_train, generator=g), 0
                b = perm[pos:pos + bs]
                pos += bs
                out = _forward(model, xt[b], cfg.dropout, True)
                loss = F.cross_entropy(out, yt[b])
                if cfg.l2reg > 0:  # Keras kernel_regularizer: l2 * sum(w^2), kernels only
                    loss = loss + cfg.l2reg * sum((k * k).sum() for k in kernels)
                if not torch.isfinite(loss):
                    raise _Diverged()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if epoch in saved:
                checkpoint(epoch)
    return np.stack(rows), metrics


MAX_ATTEMPTS = 20


def _train_with_retries(seed: int, index: int, activations: Sequence[str], recipe: Recipe, data: _Data,
                        layout: list[LayoutEntry], dataset: str, num_classes: int) -> tuple[np.ndarray, list[dict], int]:
    """Train net ``index``; a net whose weights or loss become non-finite is redrawn (attempt + 1).

    Redraws depend on ``(seed, index, attempt)`` only, so they are as reproducible as the first try.
    """
    for attempt in range(MAX_ATTEMPTS):
        cfg = draw_config(seed, index, activations, recipe, attempt)
        try:
            rows, metrics = _train_net(cfg, data, recipe, layout, dataset, num_classes)
            return rows, metrics, attempt
        except _Diverged:
            continue
    raise RuntimeError(f"net {index}: training diverged in {MAX_ATTEMPTS} hyperparameter draws")


def _load_data(dataset: str, recipe: Recipe, root: str | os.PathLike | None) -> tuple[_Data, ImageSet]:
    if dataset not in ZOO_DATASETS:
        raise ValueError(f"unknown zoo dataset {dataset!r}; choose from {', '.join(ZOO_DATASETS)}")
    tr = load_images(dataset, "train", root=root)
    te = load_images(dataset, "test", root=root, limit=recipe.test_images)
    x_tr, x_te = torch.from_numpy(tr.images), torch.from_numpy(te.images)
    if recipe.input_range == "symmetric":  # the public zoo feeds pixels in [-1, 1]
        x_tr, x_te = x_tr * 2 - 1, x_te * 2 - 1
    data = _Data(x_tr, torch.from_numpy(tr.labels), x_te,
                 torch.from_numpy(te.labels), tuple(tr.images.shape[1:]))  # type: ignore[arg-type]
    if recipe.padding == 0 and min(data.spec_in[1:]) < 15:
        raise ValueError(f"{dataset}: {data.spec_in[1]}x{data.spec_in[2]} images are too small for 'valid' padding "
                         "(three stride-2 3x3 convolutions need at least 15x15); use a recipe with padding 1")
    return data, tr
