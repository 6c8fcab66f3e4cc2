"""Batch Bridgeout: the method, models, training, pruning and result tables of the
reproducible companion to "Pruning Convolutional Filters using Batch Bridgeout"
(Khan & Stavness, 2020).

Submodules are imported lazily, so ``import bridgeout`` stays cheap::

    import bridgeout.functional as BF
    from bridgeout.nn import BridgeoutConv2d
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "functional", "nn", "models", "data", "train", "prune",
    "results", "grid", "plots", "paper",
)
__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'bridgeout' has no attribute {name!r}")
