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
from .fmt import plural

__all__ = ["ARMS", "ARM_LABELS", "ARM_COLORS", "arm_of", "arms_in", "load", "accuracy", "relative",
           "paper_relative", "summary", "versus_paper", "versus_paper_markdown", "training_check", "outcome",
           "outcome_sentence", "channel_energy", "energy_removed", "bn_recovery", "correlation", "plot_training", "plot_pruning", "plot_filter_norms", "arm_handles"]

#: Arms in display order, with their legend labels.
ARM_LABELS = {
    "weight_decay": "weight decay only",
    "dropout": "targeted Dropout",
    "bridgeout": "Batch Bridgeout (q = 1.5)",
    "targeted_dropconnect": "targeted DropConnect (signed, q = 2)",
    "slimming": "Network Slimming (L1 on γ)",
    "group_lasso": "group lasso (SSL)",
}
#: The paper's comparison (the two sparsity penalties are extra arms, drawn after these).
ARMS = ("weight_decay", "dropout", "bridgeout", "targeted_dropconnect")
#: Okabe-Ito colours, those of :data:`bridgeout.plots.PALETTE` for the shared regularizers.
ARM_COLORS = {"weight_decay": "#009E73", "dropout": "#E69F00", "bridgeout": "#0072B2",
              "targeted_dropconnect": "#CC79A7", "slimming": "#56B4E9", "group_lasso": "#000000"}
ARM_MARKERS = {"weight_decay": "^", "dropout": "s", "bridgeout": "o", "targeted_dropconnect": "D",
               "slimming": "P", "group_lasso": "X"}


def arm_of(regularizer: str, q: float, signed: bool) -> str:
    """The arm of a run: ``bridgeout`` with ``signed`` and ``q == 2`` is
    ``targeted_dropconnect``; other Bridgeout forms are ``bridgeout-q<q>[-signed]`` unless
    unsigned q = 1.5; other regularizers are their own arm.

    Args:
        regularizer: the run's regularizer.
        q: its bridge exponent.
        signed: its sign convention.

    Returns:
        the arm's name.
    """
    if regularizer != "bridgeout":
        return regularizer
    if bool(signed) and math.isclose(float(q), 2.0):
        return "targeted_dropconnect"
    if not signed and math.isclose(float(q), 1.5):
        return "bridgeout"
    return f"bridgeout-q{float(q):g}{'-signed' if signed else ''}"


def _with_arm(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["arm"] = [arm_of(r, q, s) for r, q, s in zip(out["regularizer"], out["q"], out["signed"])]
    return out


def arms_in(frame: pd.DataFrame) -> list[str]:
    """The arms present in ``frame``, in display order: :data:`ARMS`, then the other known
    arms of :data:`ARM_LABELS`, then any other (sorted).

    Args:
        frame: a table with an ``arm`` column.

    Returns:
        the arm names.
    """
    have = set(frame["arm"]) if len(frame) else set()
    known = [a for a in ARM_LABELS if a in have]
    return known + sorted(have - set(known))


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


_relative = relative     # plot_pruning's keyword shadows the name


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


# ------------------------------------------------------------------------------ mechanism
def channel_energy(filters: pd.DataFrame, eps: float = 1e-5) -> pd.Series:
    """Second moment of each channel's BatchNorm output in eval mode when its input has the
    recorded running mean and variance: ``gamma**2 * var / (var + eps) + beta**2``
    (:class:`torch.nn.BatchNorm2d`'s default ``eps``). NaN where the row has no BatchNorm or
    no running statistics (rows written before ``bn_var`` was recorded).

    Args:
        filters: ``filters`` rows (``gamma``, ``beta``, ``bn_var``).
        eps: the BatchNorm's epsilon.

    Returns:
        the energy per row.
    """
    var = filters["bn_var"].astype(float)
    return filters["gamma"].astype(float) ** 2 * var / (var + eps) + filters["beta"].astype(float) ** 2


def energy_removed(filters: pd.DataFrame, fraction: float, eps: float = 1e-5) -> pd.DataFrame:
    """Per run: the share of the post-BatchNorm channel energy (:func:`channel_energy`) that
    the channels of the pruned filters carry, when the ``fraction`` of smallest-L2-norm filters
    of every layer is pruned (:func:`bridgeout.prune.n_pruned` per layer, ties to the lower
    index, as :func:`bridgeout.prune.select`). Columns ``run_id, share`` (pooled over the
    layers: removed energy / total energy) and ``layer_mean`` (the mean of the per-layer
    shares), plus ``arm`` and ``seed`` when the rows have them. Layers without running
    statistics are left out; a run with none gets NaN.

    Args:
        filters: ``filters`` rows.
        fraction: the fraction of filters pruned per layer.
        eps: the BatchNorm's epsilon (:func:`channel_energy`).

    Returns:
        one row per run.
    """
    from .prune import n_pruned  # deferred: loads torch
    f = filters.assign(energy=channel_energy(filters, eps))
    rows = []
    for rid, run in f.groupby("run_id", sort=False):
        removed = total = 0.0
        shares = []
        for _, layer in run.groupby("layer", sort=False):
            if layer["energy"].isna().any():
                continue
            order = layer.sort_values(["norm", "filter"], kind="stable")
            k = n_pruned(len(order), fraction)
            gone, all_ = float(order["energy"].iloc[:k].sum()), float(order["energy"].sum())
            removed, total = removed + gone, total + all_
            shares.append(gone / all_ if all_ > 0 else math.nan)
        row = {"run_id": rid, "share": removed / total if total > 0 else math.nan,
               "layer_mean": float(np.nanmean(shares)) if shares else math.nan}
        for col in ("arm", "seed"):
            if col in run:
                row[col] = run[col].iloc[0]
        rows.append(row)
    return pd.DataFrame(rows)


def bn_recovery(acc: pd.DataFrame, acc_recal: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Per run: how much of the one-shot loss at ``fraction`` re-estimating the BatchNorm
    statistics wins back, ``(recal - one_shot) / (unpruned - one_shot)`` (``recovered``; NaN when
    one shot lost nothing), beside ``unpruned``, ``one_shot`` and ``recal`` (accuracies of
    :func:`accuracy` without and with ``recalibrate_bn``, same run and fraction).

    Args:
        acc: rows of :func:`accuracy` without re-estimation.
        acc_recal: rows of :func:`accuracy` with re-estimation.
        fraction: the fraction pruned.

    Returns:
        one row per run present in both at ``fraction`` and unpruned: ``run_id, arm, seed,
        unpruned, one_shot, recal, recovered``.
    """
    def at(a, f):
        return a[np.isclose(a["fraction"], f)].set_index("run_id")
    one, rec, base = at(acc, fraction), at(acc_recal, fraction), at(acc, 0.0)
    ids = [r for r in one.index if r in rec.index and r in base.index]
    out = pd.DataFrame({"run_id": ids, "arm": [one.loc[r, "arm"] for r in ids],
                        "seed": [one.loc[r, "seed"] for r in ids],
                        "unpruned": [float(base.loc[r, "test_acc"]) for r in ids],
                        "one_shot": [float(one.loc[r, "test_acc"]) for r in ids],
                        "recal": [float(rec.loc[r, "test_acc"]) for r in ids]})
    lost = out["unpruned"] - out["one_shot"]
    out["recovered"] = np.where(lost > 0, (out["recal"] - out["one_shot"]) / lost.where(lost > 0), np.nan)
    return out


def correlation(x, y) -> tuple[float, int]:
    """Pearson's r of the finite pairs of ``x`` and ``y`` and their number (NaN below 3).

    Args:
        x: the first values.
        y: the second values, aligned with ``x``.

    Returns:
        ``(r, n)``; ``r`` is NaN with fewer than 3 pairs or no spread on either side.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 3 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
        return math.nan, n
    return float(np.corrcoef(x[ok], y[ok])[0, 1]), n


# ------------------------------------------------------------------------------ figures
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
