"""The figures of the chapter *Beyond the paper* and the rows they draw.

The rows are selections of the result tables as :func:`bridgeout.comparison.load` returns them
(each row with its ``arm``): the networks whose filters were removed (:func:`removed`), the
ranking criteria recorded (:func:`criteria_drawn`, :func:`criteria_at`), the same run zeroed and
removed (:func:`mask_vs_remove`), the measured speed-ups (:func:`speedups`) and the repairs
(:func:`repairs`). :mod:`bridgeout.beyond` writes the chapter's sentences from the same rows and
re-exports every name here. A figure or panel without rows says what has not been run
(:func:`placeholder`, :func:`bridgeout.plots.not_run`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import comparison, plots, speed

__all__ = ["CRITERIA", "CRITERION_LABELS", "REPAIRS", "placeholder", "removed", "plot_flops", "criteria_drawn",
           "criteria_at", "criteria_figure", "mask_vs_remove", "speedups", "speed_figure", "repairs", "plot_repairs"]

#: The ranking criteria in the order the chapter draws them, with their panel titles.
CRITERIA = ("l2", "l1", "random", "orthogonality", "bn_scale")
CRITERION_LABELS = {"l2": "L2 norm", "l1": "L1 norm", "random": "random", "orthogonality": "RePr orthogonality",
                    "bn_scale": "|γ| (slimming)"}
#: The repairs compared: panel title and the :func:`bridgeout.comparison.accuracy` variant.
REPAIRS = (("no repair", {"recalibrate_bn": False}), ("BatchNorm re-estimated", {"recalibrate_bn": True}),
           ("fine-tuned 1 epoch", {"recalibrate_bn": False, "finetune_epochs": 1}))


def placeholder(text: str, height: float = 1.4):
    """A section's figure when the tables hold no run for it (the caption still numbers it).

    Args:
        text: what has not been run, shown in a box.
        height: the figure's height in inches (its width is the book's column).

    Returns:
        the Figure, one empty axis with ``text``.
    """
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.8, height))
    ax.set_axis_off()
    plots.not_run(ax, text, loc="center")
    return fig


def removed(pruning: pd.DataFrame) -> pd.DataFrame:
    """The networks whose filters were removed (L2 ranking, no fine-tuning), with ``flops_kept``.

    Args:
        pruning: the joined pruning rows, with ``arm``.

    Returns:
        those rows, ``flops_kept`` = FLOPs / the same run's unpruned FLOPs.
    """
    rm = pruning[(pruning["mode"] == "remove") & (pruning["criterion"] == "l2")
                 & (pruning["finetune_epochs"] == 0)].copy()
    base = rm[rm["fraction"] == 0].groupby("run_id")["flops"].first()
    rm["flops_kept"] = rm["flops"] / rm["run_id"].map(base)
    return rm


def plot_flops(axes, rm: pd.DataFrame) -> None:
    """Test accuracy against the FLOPs kept (log scale, fewer to the right), a line per seed.

    Args:
        axes: two axes: one shot, BatchNorm re-estimated.
        rm: :func:`removed`.

    Returns:
        None; ``axes`` are drawn on.
    """
    for ax, recal, title in ((axes[0], False, "one shot"), (axes[1], True, "BatchNorm re-estimated")):
        sub = rm[rm["recalibrate_bn"].astype(bool) == recal]
        for a in comparison.arms_in(sub):
            comparison._per_seed(ax, sub[sub["arm"] == a], "flops_kept", "test_acc", a)
        ax.set(xlabel="FLOPs kept (%)", title=title, ylim=(0, 100))
        ax.set_xscale("log")
        ticks = [1, 2, 5, 10, 20, 50, 100]
        ax.set_xticks([t / 100 for t in ticks], [str(t) for t in ticks])
        ax.invert_xaxis()
    axes[0].set_ylabel("test accuracy (%)")


def _ranked(pruning: pd.DataFrame) -> pd.DataFrame:
    """The mask-mode rows with the BatchNorm statistics re-estimated and no fine-tuning (any criterion)."""
    return pruning[(pruning["mode"] == "mask") & (pruning["finetune_epochs"] == 0)
                   & pruning["recalibrate_bn"].astype(bool)]


def criteria_drawn(pruning: pd.DataFrame) -> list[str]:
    """The criteria of :data:`CRITERIA` with mask-mode rows, BatchNorm re-estimated, no fine-tuning.

    Args:
        pruning: the joined pruning rows.

    Returns:
        their names, in :data:`CRITERIA` order.
    """
    rows = _ranked(pruning)
    return [c for c in CRITERIA if (rows["criterion"] == c).any()]


def criteria_at(pruning: pd.DataFrame, fraction: float = 0.3) -> dict[str, pd.Series]:
    """Each drawn criterion's mean accuracy per arm at ``fraction``, BatchNorm re-estimated.

    Args:
        pruning: the joined pruning rows, with ``arm``.
        fraction: the pruned fraction.

    Returns:
        criterion -> Series of means indexed by arm.
    """
    out = {}
    for c in criteria_drawn(pruning):
        s = comparison.summary(comparison.accuracy(pruning, criterion=c, recalibrate_bn=True))
        out[c] = s[np.isclose(s["fraction"], fraction)].set_index("arm")["mean"]
    return out


def criteria_figure(pruning: pd.DataFrame):
    """One panel per drawn criterion (three to a row): accuracy against the filters zeroed.

    Args:
        pruning: the joined pruning rows, with ``arm``.

    Returns:
        the Figure (:func:`placeholder` when no criterion has rows).
    """
    import matplotlib.pyplot as plt
    crits = criteria_drawn(pruning)
    if not crits:
        return placeholder("no run pruned yet")
    ncol = 3 if len(crits) > 2 else len(crits)
    nrow = -(-len(crits) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.8, 2.7 * nrow + 0.8), sharey=True, squeeze=False,
                             layout="constrained")
    for ax, c in zip(axes.ravel(), crits):
        comparison.plot_pruning(ax, comparison.accuracy(pruning, criterion=c, recalibrate_bn=True),
                                title=CRITERION_LABELS.get(c, c))
        ax.title.set_fontsize(10)
        ax.set_xlabel("pruned per layer (%)")
        ax.tick_params(labelsize=9)
    for ax in axes.ravel()[len(crits):]:
        ax.set_visible(False)
    for ax in axes[:, 1:].ravel():
        ax.set_ylabel("")
    handles = comparison.arm_handles(comparison.arms_in(_ranked(pruning)))
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=9)
    return fig


def mask_vs_remove(pruning: pd.DataFrame) -> pd.DataFrame:
    """The same run and fraction zeroed and removed, one shot, side by side.

    Args:
        pruning: the joined pruning rows, with ``arm``.

    Returns:
        ``run_id, arm, seed, fraction, test_acc_mask, test_acc_remove`` (and the FLOPs of each).
    """
    m = comparison.accuracy(pruning, mode="mask", recalibrate_bn=False)
    r = comparison.accuracy(pruning, mode="remove", recalibrate_bn=False)
    return m.merge(r, on=["run_id", "arm", "seed", "fraction"], suffixes=("_mask", "_remove"))


def speedups(latency: pd.DataFrame) -> pd.DataFrame:
    """:func:`bridgeout.speed.speedups`, an empty frame for an empty latency table.

    Args:
        latency: the joined latency rows.

    Returns:
        the speed-ups.
    """
    return speed.speedups(latency) if len(latency) else pd.DataFrame()


def _plot_mask_remove(ax, both: pd.DataFrame) -> None:
    """Mean accuracy over seeds per arm, zeroed (dotted, open markers) and removed (solid)."""
    for a in comparison.arms_in(both):
        s = both[both["arm"] == a].groupby("fraction")[["test_acc_mask", "test_acc_remove"]].mean()
        c, mk = comparison.ARM_COLORS.get(a, "0.3"), comparison.ARM_MARKERS.get(a, "o")
        ax.plot(100 * s.index, 100 * s["test_acc_mask"], color=c, ls=":", marker=mk, mfc="white", ms=4)
        ax.plot(100 * s.index, 100 * s["test_acc_remove"], color=c, marker=mk, ms=4)
    ax.set(xlabel="pruned per layer (%)", ylabel="test accuracy (%)", ylim=(0, 100), title="zeroed vs removed")


def speed_figure(both: pd.DataFrame, sp: pd.DataFrame):
    """Left: accuracy zeroed (dotted) and removed (solid); right: the measured speed-up.

    Args:
        both: :func:`mask_vs_remove`.
        sp: :func:`speedups`.

    Returns:
        the Figure, a "not run" box in a panel without rows, one legend below both panels.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    fig, axes = plt.subplots(1, 2, figsize=(6.8, 4.3), layout="constrained")
    _plot_mask_remove(axes[0], both)
    if sp.empty:
        plots.not_run(axes[1], "not timed yet:\nthe latency pass\nhas not been run", loc="center")
        axes[1].set(xlabel="filters removed in each layer (%)", ylabel="speed-up (x)", xticks=[], yticks=[])
    else:
        speed.plot_speedups(axes[1], sp)   # its legend goes under the figure, with the arms'; here it covered the lines
    axes[1].set_title("measured speed" + (f", {int(sp['threads'].iloc[0])} thread" if len(sp) else ""))
    for ax in axes:
        ax.tick_params(labelsize=9)
    if both.empty:
        plots.not_run(axes[0], "no run pruned\nin both modes yet", loc="center")
        if not sp.empty:
            fig.legend(handles=axes[1].get_legend_handles_labels()[0], loc="outside lower center", ncol=3, fontsize=9)
    else:
        hs = comparison.arm_handles(comparison.arms_in(both), seeds=False)
        hs += [Line2D([], [], color="0.4", ls=":", marker="o", mfc="white", label="zeroed (mask)"),
               Line2D([], [], color="0.4", marker="o", label="removed")]
        hs += axes[1].get_legend_handles_labels()[0]
        fig.legend(handles=hs, loc="outside lower center", ncol=3, fontsize=9)
    return fig


def repairs(pruning: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The accuracies of each repair of :data:`REPAIRS` that the tables hold.

    Args:
        pruning: the joined pruning rows, with ``arm``.

    Returns:
        repair name -> :func:`bridgeout.comparison.accuracy` (L2, mask mode), in :data:`REPAIRS` order.
    """
    have = {name: comparison.accuracy(pruning, **kw) for name, kw in REPAIRS}
    return {name: acc for name, acc in have.items() if len(acc)}


def plot_repairs(axes, have: dict[str, pd.DataFrame]) -> None:
    """One panel per repair of :data:`REPAIRS`; a repair without rows says it was not run.

    Args:
        axes: three axes, sharing their y axis.
        have: :func:`repairs`.

    Returns:
        None; ``axes`` are drawn on.
    """
    for ax, (name, _) in zip(axes, REPAIRS):
        acc = have.get(name)
        if acc is None:
            ax.set(xlabel="pruned per layer (%)", ylim=(0, 100), xlim=(-3, 93), xticks=[])
            plots.not_run(ax, "fine-tuning pass\nnot run yet" if name.startswith("fine") else "not run yet",
                          loc="center")
        else:
            comparison.plot_pruning(ax, acc)
            ax.set_xlabel("pruned per layer (%)")
        ax.set_title(name, fontsize=10)
        ax.tick_params(labelsize=9)
    for ax in axes[1:]:
        ax.set_ylabel("")
