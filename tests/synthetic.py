"""Small synthetic datasets with the layout of the real archives, for tests that must not
depend on real data."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_synthetic_mnist(folder: Path, n_train=64, n_test=64, seed=0) -> Path:
    """A tiny MNIST-layout archive: class c has a bright band at rows 2c..2c+2."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % 10
        x = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
        for c in range(10):
            x[y == c, 2 * c:2 * c + 3, :] = 250
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y.astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "mnist.npz", **arrays)
    return folder
