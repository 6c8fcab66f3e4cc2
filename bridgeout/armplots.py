"""The figures of a regularizer comparison, a thin line per seed behind the mean so that a
seed that behaves differently stays visible: training and test accuracy per epoch
(:func:`plot_training`), accuracy against filters pruned (:func:`plot_pruning`), the
distribution of filter norms and BatchNorm scales (:func:`plot_filter_norms`), and legend
proxies for them (:func:`arm_handles`). :mod:`bridgeout.comparison` re-exports these names.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from .arms import ARM_COLORS, ARM_LABELS, ARM_MARKERS, arms_in
from .retention import paper_relative, relative as _relative     # plot_pruning's keyword shadows the name

__all__ = ["plot_training", "plot_pruning", "plot_filter_norms", "arm_handles"]


def arm_handles(arms: Iterable[str], *, seeds: bool = True):
    """Legend proxies: one per arm drawn, then (``seeds``) what thin and thick lines mean.

    Args:
        arms: the arms drawn (put in display order, :func:`arms_in`).
        seeds: keyword-only; add the "one seed" and "mean over seeds" entries.

    Returns:
        a list of :class:`matplotlib.lines.Line2D`.
    """
    from matplotlib.lines import Line2D
    arms = arms_in(pd.DataFrame({"arm": list(arms)}))
    h = [Line2D([], [], color=ARM_COLORS.get(a, "0.3"), marker=ARM_MARKERS.get(a, "o"), lw=2.2,
                label=ARM_LABELS.get(a, a)) for a in arms]
    if seeds:
        h.append(Line2D([], [], color="0.3", lw=0.8, alpha=0.6, label="one seed"))
        h.append(Line2D([], [], color="0.3", lw=2.2, label="mean over seeds"))
    return h


def _per_seed(ax, frame: pd.DataFrame, x: str, y: str, arm: str, *, scale=100.0, marker=True):
    color = ARM_COLORS.get(arm, "0.3")
    for _, g in frame.groupby("seed"):
        g = g.sort_values(x)
        ax.plot(g[x] * (100 if x == "fraction" else 1), scale * g[y], color=color, lw=0.8, alpha=0.55)
    mean = frame.groupby(x, sort=True)[y].mean()
    ax.plot(mean.index * (100 if x == "fraction" else 1), scale * mean.to_numpy(), color=color, lw=2.2,
            marker=ARM_MARKERS.get(arm, "o") if marker else None, ms=4)


def plot_training(axes, history: pd.DataFrame):
    """Training accuracy (left axis) and test accuracy (right axis) per epoch: a thin line
    per seed, the mean thick, one colour per arm.

    Learning-rate decays are marked with dotted vertical lines.

    Args:
        axes: two matplotlib axes (training, test).
        history: ``history`` rows with their arm (:func:`load`).
    """
    ax_tr, ax_te = axes
    for arm in arms_in(history):
        h = history[history["arm"] == arm]
        _per_seed(ax_tr, h, "epoch", "train_acc", arm, marker=False)
        _per_seed(ax_te, h.dropna(subset=["test_acc"]), "epoch", "test_acc", arm, marker=False)
    decays = history.sort_values("epoch").drop_duplicates("epoch")
    lr = decays["lr"].to_numpy(float)
    for e in decays["epoch"].to_numpy()[1:][~np.isclose(lr[1:], lr[:-1])]:
        for ax in axes:
            ax.axvline(e - 0.5, color="0.6", lw=0.8, ls=":")
    ax_tr.set(xlabel="epoch", ylabel="training accuracy (%)", title="training (noise on)")
    ax_te.set(xlabel="epoch", ylabel="test accuracy (%)", title="test (noise off)")


def plot_pruning(ax, acc: pd.DataFrame, paper_curve: pd.DataFrame | None = None, *, title: str | None = None,
                 relative: bool = False):
    """Test accuracy against filters pruned per layer: a thin line per seed, the mean thick;
    the published curve of the same model dashed (a different scale: shape only).
    ``relative``: ``acc`` and the published curve as shares of their unpruned accuracy
    (:func:`relative`, :func:`paper_relative`; pass ``acc`` as it is).

    Args:
        ax: the matplotlib axis.
        acc: rows of :func:`accuracy`.
        paper_curve: the published curve (:func:`bridgeout.paper.curve`), or None.
        title: keyword-only; the panel title.
        relative: keyword-only; see above.
    """
    if relative:
        acc = _relative(acc)
        paper_curve = paper_relative(paper_curve) if paper_curve is not None and len(paper_curve) else paper_curve
    for arm in arms_in(acc):
        _per_seed(ax, acc[acc["arm"] == arm], "fraction", "test_acc", arm)
    if paper_curve is not None and len(paper_curve):
        for reg, arm in (("bridgeout", "bridgeout"), ("dropout", "dropout"), ("weight_decay", "weight_decay")):
            pc = paper_curve[paper_curve["regularizer"] == reg].sort_values("fraction")
            if len(pc):
                ax.plot(100 * pc["fraction"], 100 * pc["accuracy"], color=ARM_COLORS[arm], ls="--", lw=1.2,
                        marker=ARM_MARKERS[arm], mfc="white", ms=3.5, alpha=0.9)
    ax.set(xlabel="filters pruned in each layer (%)",
           ylabel="% of its unpruned accuracy" if relative else "test accuracy (%)", xlim=(-3, 93),
           ylim=(0, 105) if relative else (0, 100))
    ax.set_xticks(range(0, 100, 20))
    if title:
        ax.set_title(title)


def plot_filter_norms(axes, filters: pd.DataFrame):
    """Left: the distribution (ECDF) of every filter's L2 norm divided by the largest norm
    of its layer, pooled over layers and seeds, per arm (log scale: a mass of filters near
    zero is what the paper's explanation predicts for Bridgeout). Right: the same for the
    |gamma| of the BatchNorm after each conv, divided by its layer's largest |gamma|.

    Exact zeros are drawn at the axis' floor (1e-4 at the lowest).

    Args:
        axes: two matplotlib axes (norms, scales).
        filters: ``filters`` rows with their arm (:func:`load`).
    """
    ax_n, ax_g = axes
    f = filters.copy()
    keys = ["run_id", "layer"]
    f["rel_norm"] = f["norm"] / f.groupby(keys)["norm"].transform("max")
    f["abs_gamma"] = f["gamma"].abs()
    f["rel_gamma"] = f["abs_gamma"] / f.groupby(keys)["abs_gamma"].transform("max")
    for arm in arms_in(f):
        sub = f[f["arm"] == arm]
        for ax, col in ((ax_n, "rel_norm"), (ax_g, "rel_gamma")):
            v = np.sort(sub[col].dropna().to_numpy(float))
            if len(v):
                v = np.clip(v, 1e-4, None)          # exact zeros drawn at the axis' floor
                ax.step(v, 100 * np.arange(1, len(v) + 1) / len(v), where="post",
                        color=ARM_COLORS.get(arm, "0.3"), lw=1.8)
    low = np.nanmin(f[["rel_norm", "rel_gamma"]].to_numpy(float)) if len(f) else 1e-2
    low = 10 ** np.floor(np.log10(max(min(low, 1e-2), 1e-4)))     # at least two decades shown
    for ax, what in ((ax_n, "filter L2 norm / layer max"), (ax_g, "|BatchNorm γ| / layer max")):
        ax.set_xscale("log")
        ax.set(xlabel=what, ylabel="filters at or below (%)", xlim=(low, 1.05), ylim=(0, 100))
    ax_n.set_title("filter norms")
    ax_g.set_title("BatchNorm scales")
