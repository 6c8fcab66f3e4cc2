"""Accuracy kept after pruning as a share of the unpruned accuracy, which compares networks
trained to different accuracies: ours per run (:func:`relative`), the paper's published curve
per regularizer (:func:`paper_relative`). :mod:`bridgeout.comparison` re-exports both.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["relative", "paper_relative"]


def relative(acc: pd.DataFrame) -> pd.DataFrame:
    """``acc`` with ``test_acc`` divided by the same run's unpruned accuracy (fraction 0):
    the share of its own accuracy a network keeps, which compares networks trained to
    different accuracies (ours at a compressed schedule, the paper's at 230 epochs). Runs
    without a fraction-0 row are dropped.

    Args:
        acc: rows of :func:`accuracy`.

    Returns:
        a copy with relative ``test_acc``.
    """
    base = acc[np.isclose(acc["fraction"], 0.0)].set_index("run_id")["test_acc"]
    out = acc[acc["run_id"].isin(base.index)].copy()
    out["test_acc"] = out["test_acc"] / out["run_id"].map(base)
    return out.reset_index(drop=True)



def paper_relative(curve: pd.DataFrame) -> pd.DataFrame:
    """A published curve (:func:`bridgeout.paper.curve`) divided by its unpruned accuracy,
    per regularizer.

    Args:
        curve: the published curve (``regularizer``, ``fraction``, ``accuracy`` columns).

    Returns:
        a copy with relative ``accuracy``; regularizers without a fraction-0 point are dropped.
    """
    base = curve[np.isclose(curve["fraction"], 0.0)].set_index("regularizer")["accuracy"]
    out = curve[curve["regularizer"].isin(base.index)].copy()
    out["accuracy"] = out["accuracy"] / out["regularizer"].map(base)
    return out.reset_index(drop=True)
