"""The regularizer comparison of one grid: arms, per-run tables, the outcome, its figures.

An *arm* is a regularizer with its noise form: the four arms of the paper's comparison are

========================  ================================================================
``weight_decay``          weight decay only (every arm has weight decay 5e-4)
``dropout``               targeted Dropout on activations (p, target fraction 0.75)
``bridgeout``             Batch Bridgeout, unsigned, q = 1.5 (the repository README's command)
``targeted_dropconnect``  signed Bridgeout with q = 2: targeted DropConnect, the path the
                          authors' scripts take with their default ``--act_norm None``
========================  ================================================================

:func:`load` reads a grid's rows from the result tables with their arm attached;
:func:`accuracy` gives one row per (run, pruned fraction); :func:`summary` the mean, sd and
number of seeds per arm and fraction; :func:`training_check` says per run whether it trained
(and whether its training accuracy levelled off before the last decay); :func:`outcome`
compares Bridgeout with both baselines. The figures draw a thin line per seed behind the
mean, so a seed that behaves differently stays visible.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from . import results
from .armplots import _per_seed, _relative, arm_handles, plot_filter_norms, plot_pruning, plot_training  # noqa: F401 - re-exported
from .arms import ARM_COLORS, ARM_LABELS, ARM_MARKERS, ARMS, _with_arm, arm_of, arms_in  # noqa: F401 - re-exported
from .fmt import plural
from .mechanism import bn_recovery, channel_energy, correlation, energy_removed  # noqa: F401 - re-exported
from .retention import paper_relative, relative  # noqa: F401 - re-exported

__all__ = ["ARMS", "ARM_LABELS", "ARM_COLORS", "arm_of", "arms_in", "load", "accuracy", "relative",
           "paper_relative", "summary", "versus_paper", "versus_paper_markdown", "training_check", "outcome",
           "outcome_sentence", "channel_energy", "energy_removed", "bn_recovery", "correlation", "plot_training", "plot_pruning", "plot_filter_norms", "arm_handles"]

def load(grid: str | Sequence[str], root=None) -> dict[str, pd.DataFrame]:
    """The finished runs of a grid (or of several grids run under one protocol, e.g. the
    paper's arms and the sparsity baselines) from the result tables, each row with its
    ``arm``: ``{"runs", "pruning", "history", "filters", "latency"}`` (all but ``runs``
    joined with their run's parameters by :func:`bridgeout.results.load_joined`).

    Args:
        grid: a grid name or a sequence of them.
        root: the folder of the result tables (default :func:`bridgeout.results.default_root`).

    Returns:
        the five tables (``pruning`` rows of the plain pruner only, as
        :func:`bridgeout.results.load_joined` gives them).

    Raises:
        ValueError: a malformed result table.
    """
    grids = [grid] if isinstance(grid, str) else list(grid)
    runs = results.load("runs", root)
    runs = _with_arm(runs[runs["grid"].isin(grids)])
    out = {"runs": runs.reset_index(drop=True)}
    for table in ("pruning", "history", "filters", "latency"):
        j = results.load_joined(root, table)
        out[table] = _with_arm(j[j["grid"].isin(grids)]).reset_index(drop=True)
    return out


def accuracy(pruning: pd.DataFrame, *, mode: str = "mask", recalibrate_bn: bool = False,
             criterion: str = "l2", scope: str = "layer", finetune_epochs: int = 0) -> pd.DataFrame:
    """One row per (run, fraction) of one pruning variant: ``run_id, arm, seed, fraction,
    test_acc, flops_effective`` (sorted); one-shot unless ``finetune_epochs``.

    Args:
        pruning: ``pruning`` rows with their arm (:func:`load`).
        mode: keyword-only; the pruning mode.
        recalibrate_bn: keyword-only; with or without BatchNorm re-estimation.
        criterion: keyword-only; the ranking criterion.
        scope: keyword-only; the scope.
        finetune_epochs: keyword-only; epochs of fine-tuning after pruning.

    Returns:
        the rows, sorted by arm, seed and fraction.
    """
    sel = pruning[(pruning["mode"] == mode) & (pruning["recalibrate_bn"].astype(bool) == recalibrate_bn)
                  & (pruning["criterion"] == criterion) & (pruning["scope"] == scope)
                  & (pruning["finetune_epochs"] == finetune_epochs)]
    cols = ["run_id", "arm", "seed", "fraction", "test_acc", "flops_effective"]
    return sel[cols].sort_values(["arm", "seed", "fraction"]).reset_index(drop=True)


def versus_paper(acc: pd.DataFrame, curve: pd.DataFrame,
                 fractions: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)) -> pd.DataFrame:
    """Per arm drawn in ``acc`` and fraction: our ``mean``, ``sd``, ``n`` (seeds), the
    published ``paper`` value of the same regularizer (NaN for an arm the paper did not
    draw: targeted DropConnect) and ``diff`` = mean - paper. Accuracies in [0, 1].

    Args:
        acc: rows of :func:`accuracy`.
        curve: the published curve (:func:`bridgeout.paper.curve`).
        fractions: the fractions compared.

    Returns:
        the :func:`summary` table with ``paper`` and ``diff`` added.
    """
    s = summary(acc, fractions)
    pub = {(r.regularizer, round(float(r.fraction), 4)): float(r.accuracy) for r in curve.itertuples()}
    s["paper"] = [pub.get((a, round(float(f), 4)), math.nan) for a, f in zip(s["arm"], s["fraction"])]
    s["diff"] = s["mean"] - s["paper"]
    return s


def _pct(mean: float, sd: float = math.nan) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{100 * mean:.1f}" + (f" ± {100 * sd:.1f}" if math.isfinite(sd) else "")


def versus_paper_markdown(table: pd.DataFrame) -> str:
    """:func:`versus_paper` as a Markdown table: a row per arm (seeds in brackets), a column
    per fraction holding "ours ± sd / published".

    Args:
        table: the table of :func:`versus_paper`.

    Returns:
        the Markdown table (accuracies in %), ``""`` for an empty table.
    """
    if table.empty:
        return ""
    fr = sorted(table["fraction"].unique())
    head = "| arm (seeds) | " + " | ".join("unpruned" if f == 0 else f"{round(100 * f)} %" for f in fr) + " |"
    lines = [head, "| --- |" + " --- |" * len(fr)]
    for arm in arms_in(table):
        t = table[table["arm"] == arm].set_index("fraction")
        cells = []
        for f in fr:
            if f not in t.index:
                cells.append("–")
                continue
            r = t.loc[f]
            paper = f" / {100 * r['paper']:.1f}" if math.isfinite(r["paper"]) else ""
            cells.append(_pct(r["mean"], r["sd"]) + paper)
        lines.append(f"| {ARM_LABELS.get(arm, arm)} ({int(t['n'].max())}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def outcome_sentence(summ: pd.DataFrame, *, fractions: Sequence[float] = (0.2, 0.3, 0.4),
                     what: str = "one shot") -> str:
    """One sentence: at ``fractions``, does Batch Bridgeout keep more than both baselines
    (weight decay, targeted Dropout), by how much, against the larger seed sd; "" when an
    arm is missing. Accuracies in [0, 1].

    Fractions where every arm is within :data:`CHANCE_MARGIN` of chance (10 %) are named as
    meaningless.

    Args:
        summ: the table of :func:`summary`.
        fractions: keyword-only; the fractions compared (:func:`outcome`).
        what: keyword-only; the pruning variant, opening the sentence (capitalised).

    Returns:
        the sentence.
    """
    o = outcome(summ, fractions=fractions)
    if o.empty:
        return ""
    ahead, clear = int(o["ahead"].sum()), int(o["clearly_ahead"].sum())
    parts = [f"{round(100 * r.fraction)} %: {100 * r.difference:+.1f} points against "
             f"{ARM_LABELS[r.best_baseline]}" for r in o.itertuples()]
    verdict = ("keeps more than both baselines at every one of these fractions" if ahead == len(o) else
               "keeps less than the better baseline at every one of these fractions" if ahead == 0 else
               f"keeps more than both baselines at {ahead} of {len(o)} fractions")
    at = summ[summ["fraction"].round(4).isin([round(f, 4) for f in o["fraction"]])]
    top = at.groupby("fraction")["mean"].max()
    dead = [f"{round(100 * f)} %" for f, m in top.items() if m <= 0.1 + CHANCE_MARGIN]
    return (f"{what[:1].upper() + what[1:]}, Batch Bridgeout {verdict} ({'; '.join(parts)}; {plural(o['n'].min(), 'seed')} "
            f"per arm); the lead exceeds the larger seed sd at {clear} of {len(o)}"
            + (f", and at {' and '.join(dead)} every arm is within {round(100 * CHANCE_MARGIN)} points of chance, "
               "so a lead there means nothing" if dead else "")
            + ". The claims table tests each lead with a Welch interval.")


def summary(acc: pd.DataFrame, fractions: Iterable[float] | None = None) -> pd.DataFrame:
    """Mean, sample sd (NaN for one seed) and number of seeds per (arm, fraction).

    Args:
        acc: rows of :func:`accuracy`.
        fractions: keep only these fractions (compared to 4 decimals); None: all.

    Returns:
        columns ``arm, fraction, mean, sd, n``, arms in :data:`ARM_LABELS` order (others last).
    """
    a = acc if fractions is None else acc[acc["fraction"].round(4).isin([round(f, 4) for f in fractions])]
    g = a.groupby(["arm", "fraction"], sort=False)["test_acc"]
    out = g.agg(mean="mean", sd="std", n="count").reset_index()
    order = {k: i for i, k in enumerate(ARM_LABELS)}
    out["_o"] = out["arm"].map(lambda k: order.get(k, len(order)))
    return out.sort_values(["_o", "fraction"]).drop(columns="_o").reset_index(drop=True)


#: A run "did not train" when its final test accuracy is within this of chance, ...
CHANCE_MARGIN = 0.05
#: ... or this far below the median of its group (the other seeds of the same setting).
BELOW_MEDIAN = 0.20


def did_not_train(final_acc: pd.Series, groups=None, *, chance: float = 0.1) -> pd.Series:
    """The book's one rule for a run that did not train (used by every chapter): its final
    (unpruned) test accuracy is within :data:`CHANCE_MARGIN` of ``chance``, or more than
    :data:`BELOW_MEDIAN` below the median of its group. ``groups``: a Series (or list of
    Series) aligned with ``final_acc`` naming each run's setting; None: one group. Returns a
    boolean Series aligned with ``final_acc``.

    Args:
        final_acc: the runs' final test accuracies.
        groups: the runs' settings, see above.
        chance: keyword-only; the chance accuracy.

    Returns:
        the boolean Series.
    """
    acc = pd.Series(final_acc, dtype=float)
    median = (acc.groupby(groups).transform("median") if groups is not None
              else pd.Series(acc.median(), index=acc.index))
    return (acc <= chance + CHANCE_MARGIN) | (acc < median - BELOW_MEDIAN)


def training_check(history: pd.DataFrame, runs: pd.DataFrame, *, chance: float = 0.1,
                   margin: float = 0.05, flat: float = 0.02) -> pd.DataFrame:
    """Per run: did it train? Columns ``run_id, arm, seed, final_train_acc, final_test_acc,
    plateau_change, levelled, at_chance``.

    ``plateau_change`` is the change of training accuracy over the last two epochs before
    the last learning-rate decay (the end of the second-to-last lr phase); ``levelled`` is
    ``|plateau_change| <= flat``. ``at_chance``: final test accuracy within ``margin`` of
    ``chance``.

    Args:
        history: ``history`` rows with their arm (:func:`load`).
        runs: the ``runs`` rows with their arm.
        chance: keyword-only; the chance accuracy.
        margin: keyword-only; see ``at_chance``.
        flat: keyword-only; see ``levelled``.

    Returns:
        one row per run of ``history`` (``plateau_change`` NaN and ``levelled`` False with
        fewer than three epochs before the last decay).
    """
    rows = []
    for rid, h in history.sort_values("epoch").groupby("run_id", sort=False):
        r = runs[runs["run_id"] == rid].iloc[0]
        lrs = h["lr"].to_numpy(float)
        last_phase_start = int(np.flatnonzero(~np.isclose(lrs, lrs[-1]))[-1]) + 1 if \
            (~np.isclose(lrs, lrs[-1])).any() else len(lrs)
        pre = h["train_acc"].to_numpy(float)[:last_phase_start]
        change = float(pre[-1] - pre[-3]) if len(pre) >= 3 else math.nan
        rows.append({"run_id": rid, "arm": r["arm"], "seed": int(r["seed"]),
                     "final_train_acc": float(h["train_acc"].iloc[-1]),
                     "final_test_acc": float(r["final_test_acc"]), "plateau_change": change,
                     "levelled": bool(abs(change) <= flat) if math.isfinite(change) else False,
                     "at_chance": bool(r["final_test_acc"] <= chance + margin)})
    return pd.DataFrame(rows)


def outcome(summ: pd.DataFrame, *, arm: str = "bridgeout", baselines: Sequence[str] = ("weight_decay", "dropout"),
            fractions: Sequence[float] = (0.2, 0.3, 0.4, 0.5)) -> pd.DataFrame:
    """At each fraction, ``arm``'s mean minus the best baseline mean, and whether ``arm`` is
    ahead of every baseline (``ahead``) and by more than the larger seed sd of the two
    (``clearly_ahead``). Fractions missing for any arm are left out.

    Args:
        summ: the table of :func:`summary`.
        arm: keyword-only; the arm tested.
        baselines: keyword-only; the arms it is compared with.
        fractions: keyword-only; the fractions.

    Returns:
        one row per fraction: ``fraction, arm_mean, best_baseline, baseline_mean, difference,
        ahead, clearly_ahead, n`` (``n`` the fewest seeds of any arm there).
    """
    rows = []
    for f in fractions:
        at = summ[np.isclose(summ["fraction"], f)].set_index("arm")
        if arm not in at.index or not all(b in at.index for b in baselines):
            continue
        best = max(baselines, key=lambda b: at.loc[b, "mean"])
        diff = float(at.loc[arm, "mean"] - at.loc[best, "mean"])
        sd = np.nanmax([at.loc[arm, "sd"], at.loc[best, "sd"]]) if at["sd"].notna().any() else math.nan
        rows.append({"fraction": f, "arm_mean": float(at.loc[arm, "mean"]), "best_baseline": best,
                     "baseline_mean": float(at.loc[best, "mean"]), "difference": diff,
                     "ahead": diff > 0, "clearly_ahead": bool(math.isfinite(sd) and diff > sd),
                     "n": int(at["n"].min())})
    return pd.DataFrame(rows)
