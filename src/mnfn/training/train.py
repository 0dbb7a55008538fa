"""The generic training loop every task uses: :class:`Trainer` / :func:`fit`.

What it does, in order:

* seeds everything (:func:`seed_everything`; data order and per-batch augmentation are pure
  functions of ``(seed, epoch, rank)``, so they need no saved state);
* trains with Adam (or AdamW/SGD), optional gradient clipping, a tqdm progress bar;
* after every epoch evaluates the validation data: the loss and the metrics, computed over the
  *whole* split (predictions are gathered across ranks, so Kendall's tau is not a batch mean);
* keeps the checkpoint with the best validation metric in ``best.pt`` **without ever touching the
  live model** (the official code rolled training back to the best checkpoint at every
  evaluation; here training always continues from where it is — load ``best.pt`` explicitly
  with :func:`load_best` after training);
* writes ``last.pt`` after every epoch (model, optimizer, RNG states of every rank, epoch, best
  value, history, config) and ``log.csv`` (one row per epoch), atomically; a rerun with the same
  ``out_dir`` resumes from ``last.pt`` and ends with exactly the result of an uninterrupted run;
* under ``torchrun`` (``WORLD_SIZE > 1``): joins the process group (gloo on CPU, NCCL on CUDA),
  wraps the model in ``DistributedDataParallel``, gives every rank its share of each epoch's
  permutation (the ``DistributedSampler`` rule), takes ``batch_size`` as the *global* batch
  (``ceil(batch_size / world)`` per rank, so the averaged gradient matches one process), reduces
  losses and gathers predictions across ranks, and writes files on rank 0 only.

Data: anything with ``__len__`` and ``take(idx: LongTensor) -> batch`` (see :class:`ArrayData`);
objects with ``.features`` and ``.targets`` (``ZooDataset``, ``MaterializedZoo``), ``(inputs,
targets)`` pairs and map-style datasets with a ``collate`` are adapted by :func:`as_data`.
A batch is ``(inputs, targets)``; ``forward_fn(model, batch) -> (output, target)`` (default
``model(inputs), targets``), ``loss_fn(output, target) -> scalar`` (mean over the batch),
``predict_fn(output) -> Tensor`` (what the metrics see, e.g. ``sigmoid``; ``None``: loss only),
``transform(batch, generator) -> batch`` (training-time augmentation, optional).

Checkpoints hold tensors and plain containers only and load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from .. import distributed as D
from ..io import load_torch, save_torch
from ..layers.kernels import PRODUCT_PRECISIONS, products_in
from ..jobs import apply_threads, output_lock, progress_bar, settings_diff  # noqa: F401  (apply_threads: re-exported)
from .batches import ArrayData, as_data, default_forward, to_device
from .checkpoints import (CHECKPOINT_BEST, CHECKPOINT_LAST, CHECKPOINT_VERSION, LAST_KEYS, LOG_FILE, FitResult, _check_keys,
                          _jsonable, _load_state, _state_to_cpu, _write_log, load_best, read_log)
from .metrics import HIGHER_IS_BETTER, METRICS, compute_metrics, is_better
from .optim import LR_SCHEDULES, lr_factor, make_optimizer
from .seeds import derive_seed, rng_state, seed_everything, set_rng_state

__all__ = ["Trainer", "fit", "make_optimizer", "FitResult", "ArrayData", "as_data", "seed_everything", "derive_seed",
           "rng_state", "set_rng_state", "to_device", "load_best", "read_log", "add_train_arguments", "apply_threads",
           "CHECKPOINT_LAST", "CHECKPOINT_BEST", "LOG_FILE"]

# --- the trainer ------------------------------------------------------------------------------

def _match_grad_layouts(model: nn.Module) -> None:
    """Give every parameter's gradient the parameter's own strides. Some products hand back a
    gradient whose stride on a size-1 axis differs from the parameter's (same values, same order);
    DDP then copies it into its bucket and warns "Grad strides do not match bucket view strides"
    on every step. Re-striding those few small gradients costs a copy and silences nothing else."""
    for p in model.parameters():
        if not p.requires_grad:
            continue

        def hook(g: Tensor, p: nn.Parameter = p) -> Tensor:
            if g.stride() == p.stride():
                return g
            out = torch.empty_strided(p.shape, p.stride(), dtype=g.dtype, device=g.device)
            return out.copy_(g)

        p.register_hook(hook)


class Trainer:
    """See the module docstring. ``select``: ``"loss"`` (validation loss, lower is better) or a
    metric name (validation value, direction from :data:`HIGHER_IS_BETTER` unless ``select_mode``
    is ``"max"``/``"min"``). Without validation data ``select="loss"`` uses the training loss.

    ``out_dir=None`` trains without files (no checkpoints, no resume). ``resume=False`` ignores an
    existing ``last.pt`` (and overwrites it). ``stop_after``: train at most that many epochs in this
    call (time-sliced jobs, tests of resume). ``on_nonfinite``: ``"raise"`` stops at a NaN/Inf
    training loss; ``"skip"`` skips steps whose loss or gradients are not finite (counted in the
    log's ``skipped_steps``) — a workaround, never silent. ``find_unused_parameters`` (DDP):
    ``None`` decides by a probe (:meth:`unused_parameters`). ``verbose``: one line per epoch on
    stdout (for logs of runs without a progress bar). ``config``: a JSON-able dict stored in checkpoints; a
    resume with a different config (apart from ``epochs``) is refused. ``product_precision``:
    ``"bfloat16"`` runs the equivariant layers' large products with bfloat16 operands (float32
    results) while this trainer trains and evaluates (:func:`mnfn.layers.kernels.set_product_precision`).
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[[Any, Any], Tensor], train_data: Any,
                 val_data: Any = None, *, metrics: Sequence[str] | Mapping[str, Callable] = (),
                 predict_fn: Callable[[Any], Tensor] | None = None,
                 forward_fn: Callable[[nn.Module, Any], tuple[Any, Any]] | None = None,
                 transform: Callable[[Any, torch.Generator], Any] | None = None,
                 epochs: int = 1, batch_size: int = 8, eval_batch_size: int | None = None, lr: float = 1e-3,
                 weight_decay: float = 0.0, optimizer: str = "adam", grad_clip: float | None = None, seed: int = 0,
                 out_dir: str | Path | None = None, select: str = "loss", select_mode: str | None = None,
                 resume: bool = True, progress: bool = True, device: str | torch.device | None = None,
                 config: Mapping[str, Any] | None = None, find_unused_parameters: bool | None = None,
                 stop_after: int | None = None, desc: str = "train", collate: Callable | None = None,
                 on_nonfinite: str = "raise", verbose: bool = False, warmup_steps: int = 0,
                 lr_schedule: str = "constant", product_precision: str = "float32") -> None:
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dist = D.init_distributed(device)
        self.device = self.dist.device
        self.model = model.to(self.device)
        self.loss_fn = loss_fn
        self.train_data = as_data(train_data, collate)
        self.val_data = as_data(val_data, collate)
        if isinstance(metrics, Mapping):
            self.metric_fns = dict(metrics)
        else:
            unknown = [m for m in metrics if m not in METRICS]
            if unknown:
                raise ValueError(f"unknown metrics {unknown}; known: {', '.join(METRICS)}")
            self.metric_fns = {m: METRICS[m] for m in metrics}
        self.predict_fn = predict_fn
        self.forward_fn = forward_fn or default_forward
        self.transform = transform
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or max(batch_size, 256))
        self.lr, self.weight_decay, self.optimizer_name, self.grad_clip = float(lr), float(weight_decay), optimizer, grad_clip
        if not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
        self.warmup_steps, self.lr_schedule = warmup_steps, lr_schedule
        if product_precision not in PRODUCT_PRECISIONS:
            raise ValueError(f"product_precision must be one of {PRODUCT_PRECISIONS}, got {product_precision!r}")
        # operand precision of the equivariant layers' large products while this trainer trains and
        # evaluates (bfloat16: mixed precision, layers/kernels.py); restored afterwards
        self.product_precision = product_precision
        self.seed = int(seed)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.select = select
        if select != "loss" and select not in self.metric_fns:
            raise ValueError(f"select={select!r} is neither 'loss' nor one of the metrics {list(self.metric_fns)}")
        if select_mode is None:
            self.higher = HIGHER_IS_BETTER.get(select, False)
        elif select_mode in ("max", "min"):
            self.higher = select_mode == "max"
        else:
            raise ValueError(f"select_mode must be 'max' or 'min', got {select_mode!r}")
        self.resume = resume
        self.progress = progress
        self.config = dict(config or {})
        self.stop_after = stop_after
        if on_nonfinite not in ("raise", "skip"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
        self.on_nonfinite = on_nonfinite
        self.verbose = verbose
        self.desc = desc
        self.optimizer = self._make_optimizer()
        if self.dist.distributed:
            if find_unused_parameters is None:
                find_unused_parameters = bool(self.unused_parameters())
            _match_grad_layouts(self.model)
            self.ddp: nn.Module = nn.parallel.DistributedDataParallel(
                self.model, device_ids=None, find_unused_parameters=find_unused_parameters)
        else:
            self.ddp = self.model

    # -- pieces --------------------------------------------------------------------------------
    def unused_parameters(self) -> list[str]:
        """Names of trainable parameters that get no gradient from a probe forward/backward on a
        few training items (eval mode, no optimizer step; gradients are cleared again). DDP needs
        ``find_unused_parameters=True`` for such models; ``None`` (the default) decides by this probe."""
        n = min(2, len(self.train_data))
        batch = to_device(self.train_data.take(torch.arange(n)), self.device)
        was = self.model.training
        self.model.eval()
        try:
            out, target = self.forward_fn(self.model, batch)
            self.loss_fn(out, target).backward()
            unused = [k for k, p in self.model.named_parameters() if p.requires_grad and p.grad is None]
        finally:
            self.model.zero_grad(set_to_none=True)
            self.model.train(was)
        return unused


    def _make_optimizer(self) -> torch.optim.Optimizer:
        return make_optimizer(self.model.parameters(), self.optimizer_name, self.lr, self.weight_decay)

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based): :func:`lr_factor` times ``lr``."""
        return self.lr * lr_factor(step, self.epochs * self.steps_per_epoch(), self.warmup_steps, self.lr_schedule)

    def _epoch_indices(self, epoch: int) -> Tensor:
        g = torch.Generator().manual_seed(derive_seed(self.seed, "order", epoch))
        order = torch.randperm(len(self.train_data), generator=g)
        return D.shard_indices(order, self.dist.rank, self.dist.world_size)

    def _per_rank_batch(self) -> int:
        return max(1, math.ceil(self.batch_size / self.dist.world_size))

    def steps_per_epoch(self) -> int:
        n = len(self.train_data)
        per_rank = math.ceil(n / self.dist.world_size)
        return math.ceil(per_rank / self._per_rank_batch())

    # -- evaluation ----------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, data: Any, model: nn.Module | None = None) -> tuple[Tensor | None, Any, float]:
        """Run ``model`` (default: the live model) over all of ``data`` in order.

        Returns ``(predictions, targets, mean loss)`` over the whole data (gathered across ranks);
        predictions/targets are ``None`` when there is no ``predict_fn`` or the targets are not tensors.
        """
        data = as_data(data)
        model = model if model is not None else self.model
        was_training = model.training
        model.eval()
        n = len(data)
        mine = torch.arange(n)[self.dist.rank::self.dist.world_size] if self.dist.distributed else torch.arange(n)
        preds, targs, loss_sum, count = [], [], 0.0, 0
        for s in range(0, len(mine), self.eval_batch_size):
            idx = mine[s:s + self.eval_batch_size]
            batch = to_device(data.take(idx), self.device)
            out, target = self.forward_fn(model, batch)
            loss = self.loss_fn(out, target)
            loss_sum += float(loss) * len(idx)
            count += len(idx)
            if self.predict_fn is not None and isinstance(target, Tensor):
                preds.append(self.predict_fn(out).detach().float().cpu())
                targs.append(target.detach().cpu())
        model.train(was_training)
        tot = D.all_reduce_sum(torch.tensor([loss_sum, float(count)], dtype=torch.float64))
        mean_loss = float(tot[0] / tot[1]) if tot[1] > 0 else float("nan")
        if not preds:
            return None, None, mean_loss
        p, t = torch.cat(preds), torch.cat(targs)
        if self.dist.distributed:
            p, t = D.all_gather_cat(p), D.all_gather_cat(t)
            pos = D.all_gather_cat(mine)
            inv = torch.empty_like(pos)
            inv[pos] = torch.arange(len(pos))
            p, t = p[inv], t[inv]
        return p, t, mean_loss

    def evaluate(self, data: Any, model: nn.Module | None = None, prefix: str = "") -> dict[str, float]:
        """``{prefix+"loss": ..., prefix+metric: ...}`` over all of ``data``."""
        with products_in(self.product_precision):
            p, t, loss = self.predict(data, model)
        out = {prefix + "loss": loss}
        if p is not None and self.metric_fns:
            out.update({prefix + k: v for k, v in compute_metrics(self.metric_fns, p, t).items()})
        return out

    # -- checkpoints ---------------------------------------------------------------------------
    def _ckpt_config(self) -> str:
        return _jsonable({k: v for k, v in self.config.items() if k != "epochs"})

    def _save_last(self, epoch: int, best: dict[str, Any], history: list[dict[str, float]]) -> None:
        states = D.all_gather_cat(torch.get_rng_state().unsqueeze(0)) if self.dist.distributed else None
        if not self.dist.is_main or self.out_dir is None:
            return
        ck = {
            "version": CHECKPOINT_VERSION,
            "epoch": epoch,
            "model": _state_to_cpu(self.model.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(),
            "torch_rng_per_rank": states,
            "world_size": self.dist.world_size,
            "best": best,
            "history": history,
            "config": self._ckpt_config(),
            "seed": self.seed,
        }
        save_torch(self.out_dir / CHECKPOINT_LAST, ck)
        _write_log(self.out_dir / LOG_FILE, history)

    def _save_best(self, epoch: int, value: float, metrics: dict[str, float]) -> None:
        if not self.dist.is_main or self.out_dir is None:
            return
        save_torch(self.out_dir / CHECKPOINT_BEST, {
            "version": CHECKPOINT_VERSION, "epoch": epoch, "select": self.select, "value": value,
            "metrics": metrics, "model": _state_to_cpu(self.model.state_dict()), "config": self._ckpt_config(),
        })

    def _try_resume(self) -> tuple[int, dict[str, Any], list[dict[str, float]]]:
        fresh = (0, {"epoch": None, "value": None, "metrics": {}}, [])
        if self.out_dir is None or not self.resume:
            return fresh
        path = self.out_dir / CHECKPOINT_LAST
        exists = D.broadcast_object(path.is_file())
        if not exists:
            return fresh
        ck = load_torch(path, map_location="cpu")
        _check_keys(path, ck, LAST_KEYS)
        try:
            saved = json.loads(ck.get("config") or "null")
        except (TypeError, ValueError):
            saved = None
        now = json.loads(self._ckpt_config())
        diff = settings_diff(saved, now, volatile=("epochs",))
        if diff:
            show = {k: ((saved or {}).get(k) if isinstance(saved, dict) else None, now.get(k)) for k in diff[:5]}
            raise ValueError(f"{path}: was written with another configuration (differs in {', '.join(diff)}: "
                             f"saved -> now {show}); use another --out folder or start over (--restart)")
        if int(ck["epoch"]) > self.epochs:
            raise ValueError(f"{path}: this run already trained {int(ck['epoch'])} epochs, more than the "
                             f"{self.epochs} asked for now; rerun with --epochs {int(ck['epoch'])} or more (more "
                             "epochs continue it), use another --out folder, or start over (--restart)")
        _load_state(path, "model", self.model, ck["model"])
        _load_state(path, "optimizer", self.optimizer, ck["optimizer"])
        set_rng_state(ck["rng"])
        per_rank = ck.get("torch_rng_per_rank")
        if per_rank is not None and int(ck.get("world_size", 1)) == self.dist.world_size:
            torch.set_rng_state(per_rank[self.dist.rank].clone())
        return int(ck["epoch"]), dict(ck["best"]), list(ck["history"])

    # -- the loop ------------------------------------------------------------------------------
    def fit(self) -> FitResult:
        """Train (resuming from ``last.pt`` when allowed); the output folder is locked meanwhile
        (:func:`mnfn.jobs.output_lock`: a second trainer writing the same folder is refused)."""
        with products_in(self.product_precision):
            if self.out_dir is None or not self.dist.is_main:
                return self._fit()
            with output_lock(self.out_dir, "a training run"):
                return self._fit()

    def _fit(self) -> FitResult:
        if self.out_dir is not None and self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        start, best, history = self._try_resume()
        if start > 0 and self.dist.is_main and self.out_dir is not None:
            # A kill between writing last.pt and log.csv leaves the log an epoch behind: rewrite it.
            _write_log(self.out_dir / LOG_FILE, history)
        if start == 0:
            # Per-rank stream for dropout & co.; model init happened before, seeded by the caller.
            torch.manual_seed(derive_seed(self.seed, "train", self.dist.rank))
        end = self.epochs if self.stop_after is None else min(self.epochs, start + max(0, self.stop_after))
        steps = self.steps_per_epoch()
        bar = progress_bar(self.progress and self.dist.is_main and end > start, self.epochs * steps, self.desc,
                           unit="step", initial=start * steps, leave=False)
        bs = self._per_rank_batch()
        try:
            for epoch in range(start, end):
                t0 = time.perf_counter()
                self.model.train()
                mine = self._epoch_indices(epoch)
                gen = torch.Generator().manual_seed(derive_seed(self.seed, "transform", epoch, self.dist.rank))
                loss_sum, count, skipped = 0.0, 0, 0
                for k_step, s in enumerate(range(0, len(mine), bs)):
                    idx = mine[s:s + bs]
                    batch = self.train_data.take(idx)
                    if self.transform is not None:
                        batch = self.transform(batch, gen)
                    batch = to_device(batch, self.device)
                    out, target = self.forward_fn(self.ddp, batch)
                    loss = self.loss_fn(out, target)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if self.on_nonfinite == "skip":
                        # one flag for all ranks, so every rank skips the same steps
                        bad = torch.tensor([0.0 if torch.isfinite(loss.detach()) and all(
                            torch.isfinite(p.grad).all() for p in self.model.parameters() if p.grad is not None)
                            else 1.0], dtype=torch.float64)
                        if float(D.all_reduce_sum(bad)) > 0:
                            skipped += 1
                            if bar is not None:
                                bar.update(1)
                            continue
                    elif not torch.isfinite(loss.detach()):
                        raise FloatingPointError(f"epoch {epoch + 1}: training loss is {float(loss.detach())} "
                                                 "(on_nonfinite='skip' skips such steps)")
                    if self.grad_clip:
                        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
                    if self.warmup_steps or self.lr_schedule != "constant":
                        # a function of the global step, so a resumed run follows the same schedule
                        lr_now = self.lr_at(epoch * steps + k_step)
                        for group in self.optimizer.param_groups:
                            group["lr"] = lr_now
                    self.optimizer.step()
                    loss_value = float(loss.detach())
                    loss_sum += loss_value * len(idx)
                    count += len(idx)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(epoch=epoch + 1, loss=f"{loss_value:.4f}", refresh=False)
                tot = D.all_reduce_sum(torch.tensor([loss_sum, float(count)], dtype=torch.float64))
                row: dict[str, float] = {"epoch": epoch + 1, "train_loss": float(tot[0] / max(tot[1], 1))}
                if self.on_nonfinite == "skip":
                    row["skipped_steps"] = skipped
                if self.val_data is not None:
                    row.update(self.evaluate(self.val_data, prefix="val_"))
                    value = row["val_" + self.select]
                else:
                    value = row["train_loss"] if self.select == "loss" else float("nan")
                row["seconds"] = time.perf_counter() - t0
                history.append(row)
                if is_better(value, best["value"], self.higher) or best["epoch"] is None:
                    best = {"epoch": epoch + 1, "value": value,
                            "metrics": {k: v for k, v in row.items() if k not in ("epoch", "seconds")}}
                    self._save_best(epoch + 1, value, best["metrics"])
                self._save_last(epoch + 1, best, history)
                if self.verbose and self.dist.is_main:
                    vals = " ".join(f"{k}={v:.4f}" for k, v in row.items() if k not in ("epoch", "seconds"))
                    print(f"{self.desc}: epoch {epoch + 1}/{self.epochs} {vals} ({row['seconds']:.1f}s) "
                          f"best {self.select}={best['value']:.4f}@{best['epoch']}", flush=True)
                if bar is not None:
                    shown = "val_" + self.select if self.val_data is not None else "train_loss"
                    bar.set_postfix(epoch=epoch + 1, **{shown: f"{row.get(shown, value):.4f}"},
                                    best=f"{best['value']:.4f}@{best['epoch']}")
        finally:
            if bar is not None:
                bar.close()
        D.barrier()
        return FitResult(self.select, best["epoch"], best["value"], dict(best["metrics"]), history,
                         epochs_done=len(history), epochs=self.epochs, out_dir=self.out_dir)


def fit(model: nn.Module, loss_fn: Callable[[Any, Any], Tensor], train_data: Any, val_data: Any = None,
        **kwargs: Any) -> FitResult:
    """``Trainer(model, loss_fn, train_data, val_data, **kwargs).fit()``."""
    return Trainer(model, loss_fn, train_data, val_data, **kwargs).fit()


def add_train_arguments(p: Any, default_epochs: int | None = None) -> None:
    """Arguments every ``mnfn train TASK`` shares: seed, output folder, epochs, device, threads, resume."""
    p.add_argument("--seed", type=int, default=0, help="seed for model init, data order and augmentation (default 0)")
    p.add_argument("--out", default=None, help="output folder (checkpoints, log.csv, metrics.json)")
    p.add_argument("--epochs", type=int, default=default_epochs, help="override the config's epochs")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 ... (default auto)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: fastest for these small tensors on a shared CPU; 0 = torch's default)")
    p.add_argument("--restart", action="store_true", help="ignore an existing last.pt and train from scratch")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="stop after N epochs of this call (resume later with the same command)")
