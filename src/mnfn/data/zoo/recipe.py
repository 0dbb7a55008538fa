"""How the nets of a zoo are trained: the :class:`Recipe` (one per zoo; the named ones are
:data:`ZOO_RECIPES`) and each net's drawn hyperparameters (:class:`NetConfig`, :func:`draw_config`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .format import OPTIMIZERS, TRAIN_FRACTIONS, W_INITS

__all__ = [
    "Recipe",
    "default_recipe",
    "ZOO_RECIPES",
    "public_checkpoints",
]


@dataclass(frozen=True)
class Recipe:
    """How every net of a zoo is trained (the per-net hyperparameters are drawn, see :func:`draw_config`).

    ``train_images``: size of the training pool a net draws its ``train_fraction`` from (``None`` =
    the whole training split); one epoch is that many examples (``ceil(pool / batch_size)`` steps),
    drawn by cycling through the net's own subset; ``test_images``: the first ``test_images`` test images measure
    ``test_accuracy``/``test_loss`` (``None`` = all); ``train_eval_images``: images of the net's own
    training subset that measure ``train_accuracy``/``train_loss`` at each checkpoint.

    ``name``: the named recipe it started from (:data:`ZOO_RECIPES`); ``input_range``: pixels in
    ``unit`` [0, 1] or ``symmetric`` [-1, 1] (the public zoo); ``padding``: zero padding of every
    3x3 stride-2 convolution (1 here by default; 0 is Keras ``valid``, the public zoo's);
    ``checkpoint_epochs``: the epochs saved (``None`` = every epoch, 0 = at initialisation).
    """

    name: str = "fast"
    epochs: int = 3
    batch_size: int = 128
    train_images: int | None = 3072
    test_images: int | None = 2000
    train_eval_images: int = 512
    channels: int = 16
    num_conv: int = 3
    lr_range: tuple[float, float] = (5e-4, 5e-2)
    init_std_range: tuple[float, float] = (1e-3, 0.5)
    l2_range: tuple[float, float] = (1e-8, 1e-2)
    dropout_range: tuple[float, float] = (0.0, 0.5)
    w_inits: tuple[str, ...] = W_INITS
    optimizers: tuple[str, ...] = OPTIMIZERS
    train_fractions: tuple[float, ...] = TRAIN_FRACTIONS
    input_range: str = "unit"
    padding: int = 1
    checkpoint_epochs: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.input_range not in INPUT_RANGES:
            raise ValueError(f"input_range must be one of {', '.join(INPUT_RANGES)}, got {self.input_range!r}")
        if self.padding not in (0, 1):
            raise ValueError(f"padding must be 0 (valid) or 1, got {self.padding}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.checkpoint_epochs is not None:
            ce = tuple(self.checkpoint_epochs)
            if not ce or list(ce) != sorted(set(ce)) or ce[0] < 0 or ce[-1] != self.epochs:
                raise ValueError(f"checkpoint_epochs must be increasing, >= 0 and end at epochs={self.epochs}; "
                                 f"got {list(ce)}")

    @property
    def saved_epochs(self) -> tuple[int, ...]:
        """The epochs whose weights become rows (0 = at initialisation)."""
        if self.checkpoint_epochs is None:
            return tuple(range(self.epochs + 1))
        return tuple(self.checkpoint_epochs)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Recipe":
        names = {f.name for f in dataclasses.fields(Recipe)}
        return Recipe(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names})


INPUT_RANGES = ("unit", "symmetric")

#: The public zoo's checkpoint epochs (of 86), which ``public_checkpoints`` scales to a shorter schedule.
PUBLIC_CHECKPOINTS = (0, 1, 2, 3, 20, 40, 60, 80, 86)


def public_checkpoints(epochs: int) -> tuple[int, ...]:
    """The public zoo's 9 checkpoint epochs ``0, 1, 2, 3, 20, 40, 60, 80, 86`` scaled to ``epochs``:
    the first three epochs kept, the later ones at the same fractions of the schedule."""
    late = [max(4, round(e * epochs / PUBLIC_CHECKPOINTS[-1])) for e in PUBLIC_CHECKPOINTS[4:]]
    return tuple(sorted({e for e in (0, 1, 2, 3, *late) if e <= epochs} | {epochs}))


#: Named zoo recipes (``mnfn zoo make --recipe NAME``); docs/zoo.md says what each costs.
ZOO_RECIPES = ("fast", "public")


def default_recipe(dataset: str, name: str = "fast") -> Recipe:
    """A named recipe for ``dataset``.

    ``fast`` (the default, cheap enough for tests and the demo): the 8x8 digits draw from all 1397
    training images, 4 epochs at batch 64, tested on all 400 test images; the 28x28/32x32 sets draw
    from 3072 training images, 3 epochs at batch 128 (72 steps), tested on the first 2000 test
    images; inputs in [0, 1], padding 1, a checkpoint after every epoch.

    ``public`` follows the public Small CNN Zoo (Unterthiner et al. 2020) where this CPU allows:
    the same hyperparameter families, inputs in [-1, 1], Keras ``valid`` padding, the full test set,
    batch 32, and 9 checkpoints placed like the public ones (epochs 0, 1, 2, 3 and four more at the
    public fractions of the schedule) over 12 epochs of 2048 examples (768 steps instead of 72;
    about 3.4 CPU-s per net on one core, 11x the fast recipe).
    Needs images of at least 15 x 15 (three valid stride-2 convolutions).
    """
    if name not in ZOO_RECIPES:
        raise ValueError(f"unknown zoo recipe {name!r}; choose from {', '.join(ZOO_RECIPES)}")
    if name == "public":
        if dataset == "digits":
            raise ValueError("the public recipe needs images of at least 15x15 (three 'valid' stride-2 3x3 "
                             "convolutions); digits are 8x8: use --recipe fast, or mnist/fashion-mnist/cifar10-gray")
        epochs = 12
        return Recipe(name="public", epochs=epochs, batch_size=32, train_images=2048, test_images=None,
                      train_eval_images=512, input_range="symmetric", padding=0,
                      checkpoint_epochs=public_checkpoints(epochs))
    if dataset == "digits":
        return Recipe(epochs=4, batch_size=64, train_images=None, test_images=None, train_eval_images=256)
    return Recipe()


@dataclass(frozen=True)
class NetConfig:
    """The drawn hyperparameters of one net (``config.*`` columns)."""

    index: int
    activation: str
    w_init: str
    init_std: float
    learning_rate: float
    optimizer: str
    l2reg: float
    dropout: float
    train_fraction: float
    random_seed: int


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def draw_config(seed: int, index: int, activations: Sequence[str], recipe: Recipe, attempt: int = 0) -> NetConfig:
    """Hyperparameters of net ``index``: a function of ``(seed, index, attempt)`` only."""
    ss = np.random.SeedSequence([int(seed), int(index), int(attempt)])
    rng = np.random.default_rng(ss)
    return NetConfig(
        index=index,
        activation=str(activations[rng.integers(len(activations))]),
        w_init=str(recipe.w_inits[rng.integers(len(recipe.w_inits))]),
        init_std=_loguniform(rng, *recipe.init_std_range),
        learning_rate=_loguniform(rng, *recipe.lr_range),
        optimizer=str(recipe.optimizers[rng.integers(len(recipe.optimizers))]),
        l2reg=_loguniform(rng, *recipe.l2_range),
        dropout=float(rng.uniform(*recipe.dropout_range)),
        train_fraction=float(recipe.train_fractions[rng.integers(len(recipe.train_fractions))]),
        random_seed=int(ss.generate_state(1, dtype=np.uint32)[0]),
    )
