"""The teaching chapter's figures (:mod:`bridgeout.teaching` re-exports them): each network's
sorted filter norms, the seed curves of the teaching grids, and the L2 ranking against random
rankings."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import plots
from .fmt import plural

__all__ = ["REGULARIZERS", "LABELS", "plot_norms", "plot_seeds", "plot_random"]

#: the chapter's three networks, in the order of its figures and sentences
REGULARIZERS = ("bridgeout", "dropout", "weight_decay")
LABELS = plots.LABELS


def plot_norms(ax, weights: dict) -> dict[str, np.ndarray]:
    """Each network's conv2 filter norms, sorted, over its largest (a line per regularizer).

    Args:
        ax: the matplotlib axes to draw on (its legend goes lower right).
        weights: regularizer -> the layer's weight (tensor or array, filters first).

    Returns:
        Regularizer -> its filters' relative norms, ascending (the weakest first).
    """
    import torch  # the norms exactly as the pruning computes them (float32)

    rel = {}
    for reg, w in weights.items():
        norms = torch.as_tensor(w).detach().flatten(1).norm(dim=1)
        rel[reg] = torch.sort(norms / norms.max()).values.numpy()
        ax.plot(np.arange(1, len(rel[reg]) + 1), rel[reg], marker=plots.MARKERS[reg], color=plots.PALETTE[reg],
                lw=2, label=LABELS[reg])
    ax.set(xlabel="conv2 filter (sorted by norm)", ylabel="L2 norm / largest", ylim=(0, 1.05))
    ax.legend(fontsize="small", loc="lower right")
    return rel


def plot_seeds(axes, grids: dict[str, pd.DataFrame], chance: float) -> list[dict]:
    """A panel per grid: each seed's L2 curve and the mean over the seeds that trained.

    Args:
        axes: one matplotlib axes per grid.
        grids: panel name (the grid's schedule) -> its :func:`l2_rows`.
        chance: the dataset's chance accuracy.

    Returns:
        What each panel drew (:func:`bridgeout.plots.seed_curves`), for :func:`bridgeout.plots.seed_handles`.
    """
    drawn = []
    for ax, (name, rows) in zip(axes, grids.items()):
        n_seeds = rows["seed"].nunique() if len(rows) else 0
        drawn.append(plots.seed_curves(ax, rows, chance=chance, title=f"{name}, {plural(n_seeds, 'seed')}"))
        if rows.empty:
            plots.not_run(ax, "no run of this grid\nhas finished yet", loc="center")
    return drawn


def _draws(random_curves: pd.DataFrame, reg: str) -> pd.DataFrame:
    """One network's random-ranking accuracies: fractions x draws."""
    return random_curves[random_curves["regularizer"] == reg].pivot(index="fraction", columns="draw", values="test_acc")


def plot_random(axes, random_curves: pd.DataFrame, wide: pd.DataFrame, draws: int) -> list:
    """A panel per network: its L2 curve over the random rankings' mean (dotted) and range (band).

    Args:
        axes: three matplotlib axes sharing y, in the order of :data:`REGULARIZERS`.
        random_curves: ``prune.sweep(..., criteria=("random",))`` rows with ``regularizer, draw`` added.
        wide: the L2 accuracy per fraction (index) and regularizer (columns).
        draws: random rankings per network, for the legend.

    Returns:
        Legend handles for the figure: the L2 line, the random mean, the random range.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    for ax, reg in zip(axes, REGULARIZERS):
        color, rnd = plots.PALETTE[reg], _draws(random_curves, reg)
        ax.fill_between(100 * rnd.index, 100 * rnd.min(axis=1), 100 * rnd.max(axis=1), color=color, alpha=0.25, lw=0)
        ax.plot(100 * rnd.index, 100 * rnd.mean(axis=1), color=color, ls=":", lw=2)
        ax.plot(100 * wide.index, 100 * wide[reg], color=color, lw=2, marker=plots.MARKERS[reg], ms=4)
        ax.set_title(LABELS[reg].replace(" only", ""), fontsize="medium")
        ax.set(xlabel="pruned (%)", ylim=(0, 100), xticks=(0, 40, 80))
    return [Line2D([], [], color="0.4", lw=2, marker="o", ms=4, label="smallest L2 norm first"),
            Line2D([], [], color="0.4", ls=":", lw=2, label=f"random: mean of {draws} draws"),
            Patch(color="0.4", alpha=0.25, label="random: range of the draws")]
