"""The why-section's energy figure: per CIFAR-10 network, the post-BatchNorm energy its pruned
filters carry against the accuracy it keeps (:func:`energy_retention`, drawn by
:func:`plot_energy` with the legend of :func:`energy_handles`), over the grids of
:data:`ENERGY_GRIDS`, among them the grids that test one candidate cause each
(:data:`RESNET_GRID`, :data:`LENGTH_GRID`, :data:`NOISE_GRID`). :mod:`bridgeout.why`
re-exports these names.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import comparison
from .summary import CPU_GRID

__all__ = ["RESNET_GRID", "LENGTH_GRID", "NOISE_GRID", "ENERGY_GRIDS", "energy_retention", "energy_handles",
           "plot_energy"]

#: The grids that test one candidate cause each (the issue "Why our curves differ").
RESNET_GRID, LENGTH_GRID, NOISE_GRID = "cpu-cifar10-resnet", "cpu-cifar10-vgg-e52", "cpu-cifar10-dropconnect-matched"
ENERGY_GRIDS = (CPU_GRID, "cpu-cifar10-bf16-parity", RESNET_GRID, LENGTH_GRID, NOISE_GRID, "cpu-cifar10-sparsity")


def energy_retention(root=None, fraction: float = 0.3) -> pd.DataFrame:
    """Per CIFAR-10 network whose BatchNorm running statistics are recorded: ``run_id, arm,
    grid, model, share`` (the post-BatchNorm channel energy its pruned filters carry at
    ``fraction``, :func:`bridgeout.comparison.energy_removed`) and ``kept`` (its one-shot
    accuracy at ``fraction`` over its unpruned accuracy).

    Args:
        root: the folder of the result tables (default :func:`bridgeout.results.default_root`).
        fraction: the fraction pruned.

    Returns:
        one row per network of :data:`ENERGY_GRIDS` (empty, with these columns, before any).
    """
    comp = comparison.load(list(ENERGY_GRIDS), root)
    if not len(comp["filters"]) or not len(comp["pruning"]):
        return pd.DataFrame(columns=["run_id", "arm", "grid", "model", "share", "kept"])
    energy = comparison.energy_removed(comp["filters"], fraction).dropna(subset=["share"])
    acc = comparison.accuracy(comp["pruning"])
    base = acc[np.isclose(acc["fraction"], 0.0)].set_index("run_id")["test_acc"]
    at = acc[np.isclose(acc["fraction"], fraction)].set_index("run_id")["test_acc"]
    out = energy.assign(kept=energy["run_id"].map(at / base)).dropna(subset=["kept"])
    runs = comp["runs"].set_index("run_id")
    out["grid"], out["model"] = out["run_id"].map(runs["grid"]), out["run_id"].map(runs["model"])
    return out[["run_id", "arm", "grid", "model", "share", "kept"]].reset_index(drop=True)


def energy_handles(table: pd.DataFrame) -> list:
    """Legend proxies for :func:`plot_energy`: a colour per arm drawn, then a marker per model
    drawn (circles VGG-16, squares ResNet), nothing that is not on the figure.

    Args:
        table: the table of :func:`energy_retention`.

    Returns:
        a list of :class:`matplotlib.lines.Line2D`.
    """
    from matplotlib.lines import Line2D

    labels = {"vgg16": "VGG-16 ×0.25", "resnet": "ResNet ×1"}
    h = [Line2D([], [], ls="none", marker="o", ms=7, color=comparison.ARM_COLORS.get(a, "0.4"),
                label=comparison.ARM_LABELS.get(a, a)) for a in comparison.arms_in(table)]
    h += [Line2D([], [], ls="none", marker={"vgg16": "o", "resnet": "s"}.get(m, "D"), ms=7, color="0.35",
                 mfc="none", label=labels.get(m, m)) for m in sorted(set(table["model"]), reverse=True)]
    return h


def plot_energy(ax, table: pd.DataFrame, fraction: float = 0.3):
    """One point per network (:func:`energy_retention`): energy share removed against accuracy
    kept, coloured by arm (circles VGG-16, squares ResNet); returns ``(r, n)``.

    Args:
        ax: the matplotlib axis.
        table: the table of :func:`energy_retention`.
        fraction: the fraction pruned, for the axis labels.

    Returns:
        ``(r, n)``: Pearson's r of share and kept and the number of networks
        (:func:`bridgeout.comparison.correlation`; ``(nan, 0)`` for an empty table).
    """
    markers = {"vgg16": "o", "resnet": "s"}
    for (arm, model), g in table.groupby(["arm", "model"]):
        ax.plot(100 * g["share"], 100 * g["kept"], ls="none", color=comparison.ARM_COLORS.get(arm, "0.4"),
                marker=markers.get(model, "D"), ms=6, mec="white", mew=0.5, zorder=3)
    f = f"{round(100 * fraction)} %"
    ax.set(xlabel=f"post-BatchNorm energy of the filters\npruned at {f} (% of their layers')",
           ylabel=f"accuracy kept at {f}, one shot\n(% of unpruned)")
    return comparison.correlation(table["share"], table["kept"]) if len(table) else (math.nan, 0)
