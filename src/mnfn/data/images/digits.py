"""scikit-learn's digits (embedded in scikit-learn, no files): 8x8, a fixed seeded split."""

from __future__ import annotations

import numpy as np

__all__: list[str] = []

# Digits: a fixed seeded split of sklearn's 1797 images into 1397 train / 400 test.
DIGITS_TEST_SIZE = 400
DIGITS_SPLIT_SEED = 0


def _load_digits(split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    n = len(d.target)
    perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(n)
    idx = np.sort(perm[:DIGITS_TEST_SIZE] if split == "test" else perm[DIGITS_TEST_SIZE:])
    if limit is not None:
        idx = idx[:limit]
    # sklearn's digits are 8x8 counts 0..16 (float64).
    imgs = (d.images[idx] / 16.0).astype(np.float32)[:, None]
    return imgs, d.target[idx].astype(np.int64)
