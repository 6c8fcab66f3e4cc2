"""Where the one-shot collapse happens: one layer pruned at a time on the same weights.

The pass ``notebooks/passes/one-layer.yaml`` prunes the k-th prunable conv alone (scope
``only:<k>``, the paper's L2 ranking within that layer, plain zeroing, one shot, every other
layer intact). :func:`table` gives, per network, layer and fraction, the accuracy lost against
the same network unpruned; :func:`markdown` says which layer costs most per arm and how the
single-layer losses add up against pruning every layer at once; :func:`plot` draws the loss
per layer, a thin line per network and the arm's mean thick.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import comparison
from .comparison import ARM_COLORS, ARM_LABELS, ARM_MARKERS
from .fmt import mean_sd, plural
from .plots import not_run

__all__ = ["GRID", "table", "markdown", "plot"]

#: The networks the pass covers (the kept bf16 networks of the parity pilot).
GRID = "cpu-cifar10-bf16-parity"
COLUMNS = ["run_id", "arm", "seed", "unit", "layer", "channels", "fraction", "test_acc", "drop", "drop_all"]


def _layers(filters: pd.DataFrame) -> pd.DataFrame:
    """Per run: its prunable convs in order (``unit`` from 1), with their filter counts."""
    f = filters[["run_id", "layer"]]
    counts = f.groupby(["run_id", "layer"], sort=False).size().rename("channels").reset_index()
    counts["unit"] = counts.groupby("run_id").cumcount() + 1
    return counts


def table(root=None, grid: str = GRID) -> pd.DataFrame:
    """One row per (network, layer, fraction) of the one-layer rows: ``run_id, arm, seed,
    unit, layer, channels, fraction, test_acc``, ``drop`` (unpruned minus this accuracy) and
    ``drop_all`` (unpruned minus the accuracy with that fraction of *every* layer pruned, the
    paper's procedure, for comparison). Empty (with these columns) before the pass has run.

    Only L2, mask-mode rows without BatchNorm re-estimation or fine-tuning are used.

    Args:
        root: the folder of the result tables (default :func:`bridgeout.results.default_root`).
        grid: the grid whose runs are read.

    Returns:
        the table, sorted by arm, seed, fraction and unit.
    """
    comp = comparison.load(grid, root)
    pr = comp["pruning"]
    if not len(pr):
        return pd.DataFrame(columns=COLUMNS)
    pr = pr[(pr["criterion"] == "l2") & (pr["mode"] == "mask") & ~pr["recalibrate_bn"].astype(bool)
            & (pr["finetune_epochs"] == 0)]
    one = pr[pr["scope"].str.startswith("only:") & (pr["fraction"] > 0)].copy()
    if not len(one):
        return pd.DataFrame(columns=COLUMNS)
    every = pr[pr["scope"] == "layer"]
    base = every[np.isclose(every["fraction"], 0.0)].groupby("run_id")["test_acc"].first()
    all_at = every.set_index(["run_id", "fraction"])["test_acc"]
    one["unit"] = one["scope"].str.slice(len("only:")).astype(int)
    one = one.merge(_layers(comp["filters"]), on=["run_id", "unit"], how="left")
    one["drop"] = one["run_id"].map(base) - one["test_acc"]
    keys = pd.MultiIndex.from_arrays([one["run_id"], one["fraction"]])
    one["drop_all"] = one["run_id"].map(base).to_numpy() - all_at.reindex(keys).to_numpy()
    return one[COLUMNS].sort_values(["arm", "seed", "fraction", "unit"]).reset_index(drop=True)


def markdown(t: pd.DataFrame, fraction: float = 0.3) -> str:
    """Per arm, at ``fraction`` of one layer pruned: the costliest layer (mean ± sd over the
    networks), the share of the summed single-layer loss in the layers narrower than the widest,
    and the single-layer losses' sum against the loss of pruning every layer at once (the
    paper's procedure).

    Args:
        t: the table of :func:`table`.
        fraction: the fraction of one layer's filters zeroed.

    Returns:
        the paragraph (Markdown); a "not run yet" note when ``t`` has no row at ``fraction``.
    """
    at = t[np.isclose(t["fraction"], fraction)] if len(t) else t
    if not len(at):
        return ("**One layer at a time: not run yet** (pass `notebooks/passes/one-layer.yaml` on the kept "
                "parity networks).")
    f = f"{round(100 * fraction)} %"
    parts = []
    for arm, g in at.groupby("arm"):
        per = g.groupby("unit")["drop"]
        worst = int(per.mean().idxmax())
        layer = g[g["unit"] == worst].iloc[0]
        widest = int(g["channels"].max())
        narrow_units = g.loc[g["channels"] < widest, "unit"].nunique()
        narrow = g[g["channels"] < widest].groupby("run_id")["drop"].sum().clip(lower=0)
        total = g.groupby("run_id")["drop"].sum()
        share = (narrow / total.where(total > 0)).dropna()
        every = g.groupby("run_id")["drop_all"].first()
        parts.append(
            f"{ARM_LABELS.get(arm, arm)} ({plural(g['run_id'].nunique(), 'network')}): the costliest layer alone is "
            f"conv {worst} of {int(g['unit'].max())} ({int(layer['channels'])} filters), "
            f"{mean_sd(per.get_group(worst))} points; the {narrow_units} layers with fewer than {widest} filters carry "
            f"{mean_sd(share)} % of the summed single-layer losses ({mean_sd(total)} points, against "
            f"{mean_sd(every)} for every layer at once)")
    return (f"**One layer at a time**, {f} of one conv's filters zeroed (L2, one shot), accuracy lost against the "
            "unpruned network, mean ± sd over networks: " + "; ".join(parts) + ". Single-layer losses do not add up "
            "to the loss of pruning every layer (accuracy cannot fall below chance), so the sum says where the "
            "damage is, not how much.")


def plot(axes, t: pd.DataFrame, fractions=(0.3, 0.5)) -> None:
    """One panel per fraction: accuracy lost (points) against the pruned layer, a thin line per
    network, the arm's mean thick (colours of :data:`bridgeout.comparison.ARM_COLORS`); the
    x ticks give each layer's number and, where it changes, its filter count.

    Args:
        axes: one matplotlib axis per fraction.
        t: the table of :func:`table`.
        fractions: the fractions, one per axis (an axis without rows says so).
    """
    for ax, fraction in zip(axes, fractions):
        at = t[np.isclose(t["fraction"], fraction)]
        for arm, g in at.groupby("arm"):
            c = ARM_COLORS.get(arm, "0.4")
            for _, r in g.groupby("run_id"):
                ax.plot(r["unit"], 100 * r["drop"], color=c, lw=0.8, alpha=0.5)
            m = g.groupby("unit")["drop"].mean()
            ax.plot(m.index, 100 * m.to_numpy(), color=c, lw=2.2, marker=ARM_MARKERS.get(arm, "o"), ms=4,
                    label=f"{ARM_LABELS.get(arm, arm)}, {g['run_id'].nunique()} networks")
        if not len(at):
            not_run(ax, f"the one-layer pass has no rows at {round(100 * fraction)} % yet")
        else:
            ticks = at.drop_duplicates("unit").sort_values("unit")
            prev = ticks["channels"].shift()       # a width is named where it changes, so labels never collide
            ax.set_xticks(ticks["unit"], [f"{u}\n{c}" if c != p else f"{u}"
                                          for u, c, p in zip(ticks["unit"], ticks["channels"], prev)])
        ax.set_title(f"{round(100 * fraction)} % of one layer's filters zeroed", fontsize=10)
        ax.set(xlabel="conv layer (and its width where it changes)", ylabel="accuracy lost (points)")
        ax.tick_params(labelsize=9)
