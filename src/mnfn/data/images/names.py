"""The names of the image sets: :data:`DATASETS` (what ``load_images`` accepts), their
:data:`CLASSES` and the :data:`SPLITS`."""

from __future__ import annotations

__all__ = [
    "DATASETS",
    "CLASSES",
]

#: Names ``load_images`` accepts.
DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar10-gray")

CLASSES: dict[str, tuple[str, ...]] = {
    "digits": tuple(str(i) for i in range(10)),
    "mnist": tuple(str(i) for i in range(10)),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                      "Bag", "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}
CLASSES["cifar10-gray"] = CLASSES["cifar10"]

SPLITS = ("train", "test")
