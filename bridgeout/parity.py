"""The bf16 parity pilot: bf16-trained networks against their fp32 twins.

Grid ``cpu-cifar10-bf16-parity`` trains the weight-decay and Batch Bridgeout arms of
``cpu-cifar10-vgg`` again, cell for cell, with ``precision="bf16"``; the fp32 twin of each
bf16 run is the ``cpu-cifar10-vgg`` run of the same arm and seed. :func:`pairs` joins them;
:func:`table` gives, per arm and measure (unpruned accuracy; one-shot and BatchNorm
re-estimated accuracy at the pruned fractions), the mean and sd of each precision, the
difference of the means with its Welch 95 % interval, and a verdict against the pilot's goal
(:func:`verdict`): unpruned means within 1 point; pruned means within the seed spread (the
larger of the two sds). :func:`plot` draws both precisions' curves, :func:`sentence` says it
in words.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import comparison
from .comparison import ARM_LABELS
from .stats import t975, welch  # re-exported: parity.welch, parity.t975 (the pilot's own names)

__all__ = ["GRID", "TWIN_GRID", "UNPRUNED_GOAL", "pairs", "welch", "t975", "table", "verdict", "sentence", "plot",
           "handles", "markdown_table"]

GRID = "cpu-cifar10-bf16-parity"
TWIN_GRID = "cpu-cifar10-vgg"
#: Largest difference of unpruned mean accuracy the pilot accepts (1 point).
UNPRUNED_GOAL = 0.01
FRACTIONS = (0.2, 0.3, 0.5)
MEASURES = (("unpruned", False, 0.0), *(("one-shot", False, f) for f in FRACTIONS),
            *(("BN re-estimated", True, f) for f in FRACTIONS))


def pairs(root=None) -> pd.DataFrame:
    """One row per (arm, seed, measure) with both precisions' accuracy: columns ``arm, seed,
    measure, recalibrate_bn, fraction, fp32, bf16`` (``bf16`` NaN where that run is not in
    yet). Only the arms and seeds the parity grid covers.

    Measures: unpruned, then one-shot and BatchNorm re-estimated at 20, 30 and 50 % (mask mode,
    L2, per layer); before any bf16 run is in, the arms are weight decay and Batch Bridgeout.

    Args:
        root: the folder of the result tables (default :func:`bridgeout.results.default_root`).

    Returns:
        the rows.
    """
    both = comparison.load([GRID, TWIN_GRID], root)
    runs, pr = both["runs"], both["pruning"]
    bf = runs[runs["grid"] == GRID]
    arms = set(bf["arm"]) if len(bf) else {"weight_decay", "bridgeout"}
    rows = []
    for measure, recal, f in MEASURES:
        acc = comparison.accuracy(pr, mode="mask", recalibrate_bn=recal)
        acc = acc[np.isclose(acc["fraction"], f) & acc["arm"].isin(arms)]
        acc = acc.merge(runs[["run_id", "grid"]], on="run_id")
        for (arm, seed), g in acc.groupby(["arm", "seed"]):
            val = {grid: g.loc[g["grid"] == grid, "test_acc"] for grid in (GRID, TWIN_GRID)}
            rows.append({"arm": arm, "seed": int(seed), "measure": measure, "recalibrate_bn": recal, "fraction": f,
                         "fp32": float(val[TWIN_GRID].iloc[0]) if len(val[TWIN_GRID]) else math.nan,
                         "bf16": float(val[GRID].iloc[0]) if len(val[GRID]) else math.nan})
    return pd.DataFrame(rows, columns=["arm", "seed", "measure", "recalibrate_bn", "fraction", "fp32", "bf16"])


def verdict(measure: str, diff: float, sd: float, n_bf16: int) -> str:
    """``in`` / ``out`` of the pilot's goal, or ``pending`` while no bf16 run is in: unpruned
    means within :data:`UNPRUNED_GOAL`; pruned means within the larger seed sd.

    Args:
        measure: the measure (``"unpruned"`` or a pruned one).
        diff: bf16 mean minus fp32 mean.
        sd: the larger seed sd of the two precisions.
        n_bf16: the number of bf16 runs.

    Returns:
        ``"in"``, ``"out"`` (also when the bound is not finite) or ``"pending"`` (also when
        ``diff`` is not finite).
    """
    if n_bf16 == 0 or not math.isfinite(diff):
        return "pending"
    bound = UNPRUNED_GOAL if measure == "unpruned" else sd
    return "in" if math.isfinite(bound) and abs(diff) <= bound else "out"


def table(root=None) -> pd.DataFrame:
    """Per arm and measure: ``fp32_mean, fp32_sd, fp32_n, bf16_mean, bf16_sd, bf16_n, diff``
    (bf16 minus fp32), the Welch 95 % interval ``low, high``, ``spread`` (the larger sd) and
    ``verdict`` (:func:`verdict`). Accuracies in [0, 1].

    Args:
        root: the folder of the result tables (default :func:`bridgeout.results.default_root`).

    Returns:
        one row per arm, measure and fraction (with ``arm``, ``measure``, ``fraction`` columns).
    """
    p = pairs(root)
    rows = []
    for (arm, measure, f), g in p.groupby(["arm", "measure", "fraction"], sort=False):
        a, b = g["fp32"].dropna(), g["bf16"].dropna()
        diff, lo, hi, _ = welch(a, b)
        sd = float(np.nanmax([a.std(ddof=1) if len(a) > 1 else np.nan, b.std(ddof=1) if len(b) > 1 else np.nan])) \
            if len(a) > 1 or len(b) > 1 else math.nan
        rows.append({"arm": arm, "measure": measure, "fraction": f,
                     "fp32_mean": a.mean() if len(a) else math.nan, "fp32_sd": a.std(ddof=1) if len(a) > 1 else math.nan,
                     "fp32_n": len(a), "bf16_mean": b.mean() if len(b) else math.nan,
                     "bf16_sd": b.std(ddof=1) if len(b) > 1 else math.nan, "bf16_n": len(b),
                     "diff": diff, "low": lo, "high": hi, "spread": sd,
                     "verdict": verdict(measure, diff, sd, len(b))})
    return pd.DataFrame(rows)


def _arm_label(arm: str) -> str:
    return ARM_LABELS.get(arm, arm)


def sentence(root=None) -> str:
    """The pilot's outcome in words (how many bf16 runs are in, and per arm where the
    measures fall against the goal).

    Args:
        root: the folder of the result tables (default :func:`bridgeout.results.default_root`).

    Returns:
        the sentence; "(not complete yet)" while an arm and measure has fewer than 3 bf16 runs.
    """
    t = table(root)
    n = int(t.loc[t["measure"] == "unpruned", "bf16_n"].sum()) if len(t) else 0
    if n == 0:
        return "No bf16 run of the parity pilot is in the tables yet; fp32 stays the default of every grid."
    parts = []
    for arm, g in t.groupby("arm", sort=False):
        u = g[g["measure"] == "unpruned"].iloc[0]
        pruned = g[g["measure"] != "unpruned"]
        outs = [f"{m} at {100 * f:.0f} %" for m, f, v in zip(pruned["measure"], pruned["fraction"], pruned["verdict"])
                if v == "out"]
        seeds = f"{int(u['bf16_n'])} bf16 seed{'s' if u['bf16_n'] != 1 else ''} against {int(u['fp32_n'])} fp32"
        unp = (f"unpruned {100 * u['bf16_mean']:.1f} % against {100 * u['fp32_mean']:.1f} % "
               f"({100 * u['diff']:+.1f} points; goal within {100 * UNPRUNED_GOAL:.0f})")
        pr = ("every pruned measure within the seed spread" if not outs else
              f"outside the seed spread: {', '.join(outs)}")
        parts.append(f"{_arm_label(arm)} ({seeds}): {unp}; {pr}")
    complete = bool((t["bf16_n"] >= 3).all())
    head = "bf16 parity pilot" + ("" if complete else " (not complete yet)")
    return f"{head}: " + "; ".join(parts) + "."


def plot(axes, root=None):
    """Two panels (one shot, BatchNorm re-estimated): test accuracy against filters pruned,
    fp32 solid and bf16 dashed per arm, a thin line per seed behind each mean.

    Chance (10 %) is a dotted line.

    Args:
        axes: two matplotlib axes.
        root: the folder of the result tables (default :func:`bridgeout.results.default_root`).

    Returns:
        the arms drawn (for :func:`handles`).
    """
    both = comparison.load([GRID, TWIN_GRID], root)
    runs, pr = both["runs"], both["pruning"]
    arms = comparison.arms_in(runs[runs["grid"] == GRID]) or ["weight_decay", "bridgeout"]
    for ax, recal, title in zip(axes, (False, True), ("one shot", "BatchNorm re-estimated")):
        acc = comparison.accuracy(pr, mode="mask", recalibrate_bn=recal)
        acc = acc.merge(runs[["run_id", "grid"]], on="run_id")
        for arm in arms:
            for grid, ls in ((TWIN_GRID, "-"), (GRID, "--")):
                g = acc[(acc["arm"] == arm) & (acc["grid"] == grid)]
                if not len(g):
                    continue
                color = comparison.ARM_COLORS.get(arm, "0.3")
                for _, s in g.groupby("seed"):
                    ax.plot(100 * s["fraction"], 100 * s["test_acc"], color=color, ls=ls, lw=0.7, alpha=0.45)
                m = g.groupby("fraction")["test_acc"].mean()
                ax.plot(100 * m.index, 100 * m.to_numpy(), color=color, ls=ls, lw=2.0,
                        marker=comparison.ARM_MARKERS.get(arm, "o"), ms=3.5, mfc="white" if ls == "--" else color)
        ax.axhline(10, color="0.5", lw=0.8, ls=":")
        ax.set(xlabel="filters pruned in each layer (%)", ylabel="test accuracy (%)", ylim=(0, 100),
               xlim=(-3, 93), title=title)
    return arms


def handles(arms):
    """Legend proxies for :func:`plot`: one per arm, then what solid, dashed and thin mean.

    Args:
        arms: the arms drawn (:func:`plot`'s return value).

    Returns:
        a list of :class:`matplotlib.lines.Line2D` (the last one: chance).
    """
    from matplotlib.lines import Line2D

    h = [Line2D([], [], color=comparison.ARM_COLORS.get(a, "0.3"), lw=2, marker=comparison.ARM_MARKERS.get(a, "o"),
                label=_arm_label(a)) for a in arms]
    h += [Line2D([], [], color="0.3", lw=2, label="fp32 (cpu-cifar10-vgg)"),
          Line2D([], [], color="0.3", lw=2, ls="--", label="bf16 autocast"),
          Line2D([], [], color="0.3", lw=0.7, alpha=0.5, label="one seed"),
          Line2D([], [], color="0.5", lw=0.8, ls=":", label="chance (10 %)")]
    return h


def _ms(mean, sd, n) -> str:
    if not n:
        return "–"
    return f"{100 * mean:.1f}" + (f" ± {100 * sd:.1f}" if n > 1 and math.isfinite(sd) else "") + f" ({int(n)})"


def markdown_table(root=None) -> str:
    """:func:`table` as a Markdown table for the book: accuracy in %, mean ± sd (seeds) per
    precision, the difference with its Welch 95 % interval in points, and the goal's verdict
    (– for a value not in yet).

    Args:
        root: the folder of the result tables (default :func:`bridgeout.results.default_root`).

    Returns:
        the Markdown table.
    """
    t = table(root)
    lines = ["| arm | measure | fp32 | bf16 | bf16 − fp32 (95 % CI) | goal |", "| --- | --- | --- | --- | --- | --- |"]
    goal = {"in": "met", "out": "missed", "pending": "–"}
    for _, r in t.iterrows():
        what = r["measure"] if r["measure"] == "unpruned" else f"{r['measure']}, {100 * r['fraction']:.0f} %"
        d = "–" if not math.isfinite(r["diff"]) else f"{100 * r['diff']:+.1f}" + (
            f" ({100 * r['low']:+.1f} to {100 * r['high']:+.1f})" if math.isfinite(r["low"]) else "")
        lines.append(f"| {_arm_label(r['arm'])} | {what} | {_ms(r['fp32_mean'], r['fp32_sd'], r['fp32_n'])} | "
                     f"{_ms(r['bf16_mean'], r['bf16_sd'], r['bf16_n'])} | {d} | {goal[r['verdict']]} |")
    return "\n".join(lines)
